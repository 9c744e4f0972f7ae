//! What the site sends to a Kubernetes cluster, checked offline before any host is touched.
//!
//! A stand-in API server accepts what the real one refuses; this module asks the real programs
//! that can run without a cluster instead. Each `helm_release`, `k8s_manifest` and `k8s_secret`
//! says what it would send ([`Sent`]); the render gate ([`gate`]) has the real `helm template`
//! render every release from the kept chart (`charts/NAME-VERSION.tgz`) with the rendered values,
//! then validates every object strictly ([`schema`]: unknown fields, types, required fields and
//! enums, as an API server with field validation `Strict` does) against the Kubernetes schemas of
//! the pinned minor for built-in kinds and the `openAPIV3Schema` of the CRDs the charts install
//! for custom resources, and runs the rules that span objects ([`rules`]: namespaces and CRDs
//! before use, NodePorts, referenced Secrets/ConfigMaps and their keys, Service selectors).
//!
//! What it cannot see: CEL rules (`x-kubernetes-validations`), admission webhooks, immutable
//! fields on update, and anything a node does. Secrets never reach helm, a file or output here:
//! every secret string is replaced by [`REDACTED`] before values leave the compiled site.

pub mod gate;
pub mod rules;
pub mod schema;

use serde_json::Value;

/// What a secret value is replaced with in everything `render` writes and `helm template` reads.
pub const REDACTED: &str = "<secret>";

/// What one resource would send to the cluster. Values are already redacted.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A chart release: `helm upgrade --install NAME CHART --version V -n NS -f VALUES`.
    Release {
        name: String,
        namespace: String,
        /// `REPO/CHART` or `oci://…/CHART`.
        chart: String,
        version: String,
        values: Value,
        create_namespace: bool,
    },
    /// Objects applied as they are (server-side apply of a manifest, or a Secret).
    Objects(Vec<Value>),
    /// A release or objects being removed: nothing to render, nothing to check.
    Removal,
}

/// One object as the cluster would receive it, and where it came from.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The resource that sends it: `role/kind:name`.
    pub origin: String,
    /// For chart output: the chart template it came from (helm's `# Source:` line).
    pub source: Option<String>,
    /// Position in the site's order (the index of the resource): a later object may rely on
    /// an earlier one (its namespace, its CRD), never the other way round.
    pub order: usize,
    /// The release that rendered it: a release installs its own CRDs before its templates.
    pub release: Option<String>,
    /// The namespace the object lands in when the kind is namespaced: `metadata.namespace`,
    /// else the release's namespace (helm's `-n`), else `default`.
    pub namespace: String,
    pub value: Value,
}

impl Placed {
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// `Kind ns/name` for messages (the namespace only where the kind has one).
    pub fn label(&self, namespaced: bool) -> String {
        if namespaced {
            format!("{} {}/{}", self.kind(), self.namespace, self.name())
        } else {
            format!("{} {}", self.kind(), self.name())
        }
    }
    /// Where to look: the resource, and the chart template when there is one.
    pub fn whence(&self) -> String {
        match &self.source {
            Some(s) => format!("{} ({s})", self.origin),
            None => self.origin.clone(),
        }
    }
}

/// One thing the cluster would refuse (or that would never work there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `role/kind:name` (and the chart template), as `Placed::whence`.
    pub whence: String,
    /// `Kind ns/name`.
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.whence, self.object, self.message)
    }
}

/// `apps/v1` → ("apps", "v1"); `v1` → ("", "v1").
pub fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Is a kind namespaced? Built-in kinds from the list of cluster-scoped ones; custom kinds from
/// their CRD's `scope`. None: nothing known of the kind (the schema check reports that).
pub trait Scopes {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool>;
}

/// Every secret string replaced by [`REDACTED`], recursively (keys stay: they are names).
pub fn redact(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s)
            if secrets
                .iter()
                .any(|x| !x.is_empty() && s.contains(x.as_str())) =>
        {
            *s = REDACTED.to_string();
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| redact(x, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_any_string_holding_a_secret_and_keeps_keys() {
        let mut v = serde_json::json!({"smtp": {"password": "xx-s3cret-yy", "user": "me"},
            "list": ["s3cret"], "s3cret": 1});
        redact(&mut v, &["s3cret".into(), "".into()]);
        assert_eq!(
            v,
            serde_json::json!({"smtp": {"password": REDACTED, "user": "me"},
                "list": [REDACTED], "s3cret": 1})
        );
    }

    #[test]
    fn group_version_splits_core_and_named_groups() {
        assert_eq!(group_version("v1"), ("", "v1"));
        assert_eq!(group_version("apps/v1"), ("apps", "v1"));
    }
}
