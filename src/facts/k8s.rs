//! Kubernetes facts through `kubectl`: one object as JSON, or one Secret as per-key hashes.
//!
//! A Secret's values never come back from the host: the snippet decodes each value and prints
//! its sha256, so facts (and `labctl facts`) never hold the cleartext. Outputs that may hold any
//! text travel base64-encoded. A host without kubectl, a kubeconfig or a reachable cluster
//! answers `unavailable REASON`/`error B64` instead of failing the probe.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::{parse_err, q, Fact, FactError, FactQuery};

/// What `kubectl get` saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<T> {
    Present(T),
    Absent,
    /// No kubectl, no kubeconfig, cluster unreachable, unknown kind…: the reason.
    Unavailable(String),
}

/// The `kubectl get` resource argument: `Kind.version.group` for grouped APIs, so a CRD kind
/// that shares a short name with a core kind is never confused with it.
pub fn resource_arg(api_version: &str, kind: &str) -> String {
    match api_version.split_once('/') {
        Some((group, version)) => format!("{kind}.{version}.{group}"),
        None => kind.to_string(),
    }
}

fn guard(kc: &str) -> String {
    format!(
        "if ! command -v kubectl >/dev/null 2>&1; then echo 'unavailable kubectl is not installed'; exit 0; fi; \
         if [ ! -r {kc} ]; then echo 'unavailable no kubeconfig at '{kc}; exit 0; fi; "
    )
}

/// `get` fails for absent objects and for real errors; only a NotFound is "absent".
fn classify(get: &str) -> String {
    format!(
        "e=$({get} 2>&1 >/dev/null); case \"$e\" in *NotFound*|*'not found'*) echo absent;; \
         *) printf 'error '; printf '%s' \"$e\" | head -n1 | base64 -w0; echo;; esac"
    )
}

fn object_key(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    kubeconfig: &str,
) -> String {
    format!(
        "k8s:{kubeconfig}:{api_version}/{kind}/{}/{name}",
        namespace.unwrap_or("-")
    )
}

fn object_query(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    kubeconfig: &str,
) -> FactQuery {
    let kc = q(kubeconfig);
    let ns = namespace
        .map(|n| format!(" -n {}", q(n)))
        .unwrap_or_default();
    let get = format!(
        "kubectl get {} {}{ns} --kubeconfig {kc} -o json --show-managed-fields",
        q(&resource_arg(api_version, kind)),
        q(name)
    );
    FactQuery::single(
        object_key(api_version, kind, namespace, name, kubeconfig),
        format!(
            "{}if o=$({get} 2>/dev/null); then printf 'json '; printf '%s' \"$o\" | base64 -w0; echo; else {}; fi",
            guard(&kc),
            classify(&get)
        ),
    )
}

fn parse_object(k: &str, out: &str) -> Result<Seen<Value>, FactError> {
    let k = k.to_string();
    let line = out
        .lines()
        .find(|l| !l.is_empty())
        .ok_or_else(|| parse_err(&k, "no answer"))?;
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    match tag {
        "json" => {
            let b = b64(&k, rest)?;
            serde_json::from_slice(&b)
                .map(Seen::Present)
                .map_err(|e| parse_err(&k, format!("kubectl printed no JSON ({e})")))
        }
        _ => common(&k, tag, rest),
    }
}

fn common<T>(k: &str, tag: &str, rest: &str) -> Result<Seen<T>, FactError> {
    match tag {
        "absent" => Ok(Seen::Absent),
        "unavailable" => Ok(Seen::Unavailable(rest.trim().to_string())),
        "error" => {
            let why = String::from_utf8_lossy(&b64(k, rest)?).trim().to_string();
            Ok(Seen::Unavailable(if why.is_empty() {
                "kubectl failed without a message".into()
            } else {
                why
            }))
        }
        _ => Err(parse_err(
            k,
            format!(
                "unexpected answer `{}`",
                tag.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn b64(k: &str, s: &str) -> Result<Vec<u8>, FactError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| parse_err(k, "answer is not base64"))
}

/// A live Secret: its type and, per key, the sha256 of the decoded value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretFact {
    pub type_: String,
    pub sha256: BTreeMap<String, String>,
}

fn secret_key(namespace: &str, name: &str, kubeconfig: &str) -> String {
    format!("k8s-secret:{kubeconfig}:{namespace}/{name}")
}

/// The go-template prints `TYPE` then `KEY BASE64` lines; the shell turns each value into its
/// sha256 on the host, so no value leaves it.
pub const SECRET_TEMPLATE: &str =
    r#"{{.type}}{{"\n"}}{{range $k, $v := .data}}{{$k}} {{$v}}{{"\n"}}{{end}}"#;

fn secret_query(namespace: &str, name: &str, kubeconfig: &str) -> FactQuery {
    let kc = q(kubeconfig);
    let get = format!(
        "kubectl get secret {} -n {} --kubeconfig {kc} -o {}",
        q(name),
        q(namespace),
        q(&format!("go-template={SECRET_TEMPLATE}"))
    );
    FactQuery::single(
        secret_key(namespace, name, kubeconfig),
        format!(
            "{}if o=$({get} 2>/dev/null); then printf '%s\\n' \"$o\" | {{ read -r t; echo \"present $t\"; \
             while read -r k v; do [ -n \"$k\" ] || continue; h=$(printf '%s' \"$v\" | base64 -d | sha256sum | cut -d' ' -f1); echo \"key $k $h\"; done; }}; \
             else {}; fi",
            guard(&kc),
            classify(&get)
        ),
    )
}

fn parse_secret(k: &str, out: &str) -> Result<Seen<SecretFact>, FactError> {
    let k = k.to_string();
    let mut lines = out.lines().filter(|l| !l.is_empty());
    let first = lines.next().ok_or_else(|| parse_err(&k, "no answer"))?;
    let (tag, rest) = first.split_once(' ').unwrap_or((first, ""));
    if tag != "present" {
        return common(&k, tag, rest);
    }
    let mut f = SecretFact {
        type_: rest.trim().to_string(),
        sha256: BTreeMap::new(),
    };
    for l in lines {
        let mut parts = l.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("key"), Some(key), Some(h)) if h.len() == 64 => {
                f.sha256.insert(key.to_string(), h.to_string());
            }
            _ => return Err(parse_err(&k, "unexpected secret line")),
        }
    }
    Ok(Seen::Present(f))
}

/// One object as the cluster has it (`kubectl get -o json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectQuery {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub kubeconfig: String,
}

/// A Secret's type and the sha256 of each value (values never leave the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretQuery {
    pub namespace: String,
    pub name: String,
    pub kubeconfig: String,
}

impl ObjectQuery {
    pub fn new(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        kubeconfig: &str,
    ) -> Self {
        ObjectQuery {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
            kubeconfig: kubeconfig.into(),
        }
    }
}

impl SecretQuery {
    pub fn new(namespace: &str, name: &str, kubeconfig: &str) -> Self {
        SecretQuery {
            namespace: namespace.into(),
            name: name.into(),
            kubeconfig: kubeconfig.into(),
        }
    }
}

impl Fact for ObjectQuery {
    type Output = Seen<Value>;
    fn key(&self) -> String {
        object_key(
            &self.api_version,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
            &self.kubeconfig,
        )
    }
    fn script(&self) -> String {
        object_query(
            &self.api_version,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
            &self.kubeconfig,
        )
        .script
    }
    fn parse(&self, out: &str) -> Result<Seen<Value>, FactError> {
        parse_object(&self.key(), out)
    }
}

impl Fact for SecretQuery {
    type Output = Seen<SecretFact>;
    fn key(&self) -> String {
        secret_key(&self.namespace, &self.name, &self.kubeconfig)
    }
    fn script(&self) -> String {
        secret_query(&self.namespace, &self.name, &self.kubeconfig).script
    }
    fn parse(&self, out: &str) -> Result<Seen<SecretFact>, FactError> {
        parse_secret(&self.key(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;

    fn run_with_fake_kubectl(script: &str, body: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("kubectl");
        std::fs::write(&exe, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let kc = d.path().join("kc");
        std::fs::write(&kc, "").unwrap();
        let script = script.replace("/KC", &kc.display().to_string());
        let path = format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn facts_of(q: &FactQuery, out: &str) -> Facts {
        crate::resources::testutil::facts(&[(&q.key, out)])
    }

    #[test]
    fn secret_values_are_hashed_on_the_host() {
        let qy = secret_query("db", "pg", "/KC");
        // base64("s3cret") = czNjcmV0
        let out = run_with_fake_kubectl(&qy.script, "printf 'Opaque\\npassword czNjcmV0\\n'");
        assert!(
            !out.contains("czNjcmV0") && !out.contains("s3cret"),
            "{out}"
        );
        let Seen::Present(f) = facts_of(&qy, &out)
            .get(&SecretQuery::new("db", "pg", "/KC"))
            .unwrap()
        else {
            panic!("{out}")
        };
        assert_eq!(f.type_, "Opaque");
        assert_eq!(f.sha256["password"], crate::digest::sha256_hex(b"s3cret"));
    }

    #[test]
    fn not_found_is_absent_and_other_errors_are_unavailable() {
        let qy = object_query("v1", "ConfigMap", Some("db"), "x", "/KC");
        let out = run_with_fake_kubectl(
            &qy.script,
            "echo 'Error from server (NotFound): configmaps \"x\" not found' >&2; exit 1",
        );
        assert_eq!(
            facts_of(&qy, &out)
                .get(&ObjectQuery::new("v1", "ConfigMap", Some("db"), "x", "/KC"))
                .unwrap(),
            Seen::Absent
        );
        let out = run_with_fake_kubectl(
            &qy.script,
            "echo 'The connection to the server 127.0.0.1:6443 was refused' >&2; exit 1",
        );
        match facts_of(&qy, &out)
            .get(&ObjectQuery::new("v1", "ConfigMap", Some("db"), "x", "/KC"))
            .unwrap()
        {
            Seen::Unavailable(why) => assert!(why.contains("refused"), "{why}"),
            other => panic!("{other:?}"),
        }
        let out = run_with_fake_kubectl(&qy.script, "echo '{\"kind\":\"ConfigMap\"}'");
        assert!(matches!(
            facts_of(&qy, &out)
                .get(&ObjectQuery::new("v1", "ConfigMap", Some("db"), "x", "/KC"))
                .unwrap(),
            Seen::Present(_)
        ));
    }

    #[test]
    fn missing_kubectl_or_kubeconfig_is_unavailable() {
        let f = crate::resources::testutil::facts(&[(
            "k8s-secret:/kc:db/pg",
            "unavailable kubectl is not installed\n",
        )]);
        assert_eq!(
            f.get(&SecretQuery::new("db", "pg", "/kc")).unwrap(),
            Seen::Unavailable("kubectl is not installed".into())
        );
        assert_eq!(
            resource_arg("argoproj.io/v1alpha1", "Application"),
            "Application.v1alpha1.argoproj.io"
        );
        assert_eq!(resource_arg("v1", "Secret"), "Secret");
    }
}
