//! Kubernetes access shared by the k8s and helm types: where the kubeconfig is, and YAML errors
//! that never quote secret text.

/// k3s writes its admin kubeconfig here.
pub const DEFAULT_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

pub fn default_kubeconfig() -> String {
    DEFAULT_KUBECONFIG.to_string()
}

pub fn check_kubeconfig(p: &str) -> Result<(), crate::resources::ResourceError> {
    super::fs::check_path(p)
        .map_err(|e| crate::resources::ResourceError::spec(format!("kubeconfig: {e}")))
}

pub fn yaml_error(what: &str, message: &str, secret: bool) -> String {
    if secret {
        // The parser quotes the offending text, which may be a secret: keep only its position.
        static POS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"line \d+,? col(umn)? \d+").expect("static regex")
        });
        let pos = POS.find(message).map(|m| m.as_str().to_string());
        return format!(
            "{what} is not valid YAML{} (details hidden: it holds a secret)",
            pos.map(|p| format!(" at {p}")).unwrap_or_default()
        );
    }
    format!("{what} is not valid YAML: {message}")
}
