//! `k8s_secret`: a namespaced Secret holding exactly the keys given, usually vault values.
//!
//! ```yaml
//! - k8s_secret:
//!     name: postgres-auth
//!     namespace: db
//!     type: Opaque                      # the default
//!     data:
//!       postgres-password: "{{ vault_postgres_admin_password }}"
//!       password: "{{ vault_postgres_app_password }}"
//!     kubeconfig: /etc/rancher/k3s/k3s.yaml
//!     state: present                    # absent: delete the Secret (`data` not needed)
//! ```
//!
//! Values are always treated as secret, whatever their origin: the probe hashes each live value
//! on the host (no cleartext comes back), the plan shows keyed hashes only, and the Secret
//! travels as JSON on stdin. A live key we do not list is drift and is removed (`kubectl
//! replace`), so a chart never reads a stale key. `state: absent` deletes the Secret if it exists.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::support::kube::{check_kubeconfig, default_kubeconfig};
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource, State};
use crate::facts::k8s::{self, Seen};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};
use crate::secret::Secret;

pub struct K8sSecret;

fn opaque() -> String {
    "Opaque".into()
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub namespace: String,
    /// Scalars only; numbers and booleans are stored as their text.
    #[serde(default)]
    data: BTreeMap<String, Value>,
    #[serde(default)]
    pub state: State,
    #[serde(default = "opaque", rename = "type")]
    pub type_: String,
    #[serde(default = "default_kubeconfig")]
    pub kubeconfig: String,
    #[serde(skip)]
    pub values: BTreeMap<String, Secret<String>>,
}

/// The one query `facts` asks and `diff` reads.
fn secret_query(spec: &Spec) -> k8s::SecretQuery {
    k8s::SecretQuery::new(&spec.namespace, &spec.name, &spec.kubeconfig)
}

impl Resource for K8sSecret {
    const KIND: &'static str = "k8s_secret";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        format!("{}/{}", spec.namespace, spec.name)
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        spec.take_values()
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![secret_query(spec).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        let seen = facts.get(&secret_query(spec))?;
        if spec.state == State::Absent {
            // Without a cluster there is no Secret to delete.
            return Ok(match seen {
                Seen::Present(_) => Some(Drift::new(
                    Action::Remove,
                    vec!["present".into()],
                    vec![Step::sh(format!(
                        "kubectl delete secret {} -n {} --kubeconfig {} --wait=true",
                        q(&spec.name),
                        q(&spec.namespace),
                        q(&spec.kubeconfig)
                    ))],
                )),
                Seen::Absent | Seen::Unavailable(_) => None,
            });
        }
        let shown = |keys: &mut dyn Iterator<Item = &String>| {
            keys.map(|k| {
                format!(
                    "{k}: (secret: {})",
                    cx.keyed_hash(spec.values[k].expose().as_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
        };
        let live = match seen {
            Seen::Absent | Seen::Unavailable(_) => {
                let why = match seen {
                    Seen::Unavailable(w) => format!("absent (kubectl unavailable: {w})"),
                    _ => "absent".into(),
                };
                let d = Drift::new(Action::Create, vec![why], vec![apply_step(spec)]);
                return Ok(Some(d.with_diff(Some(shown(&mut spec.values.keys())))));
            }
            Seen::Present(l) => l,
        };
        let mut reasons = Vec::new();
        let mut changed = Vec::new();
        for (k, v) in &spec.values {
            match live.sha256.get(k) {
                None => {
                    reasons.push(format!("key {k} missing"));
                    changed.push(k);
                }
                Some(h) if *h != crate::digest::sha256_hex(v.expose().as_bytes()) => {
                    reasons.push(format!("key {k} changed"));
                    changed.push(k);
                }
                Some(_) => {}
            }
        }
        let extra: Vec<&String> = live
            .sha256
            .keys()
            .filter(|k| !spec.values.contains_key(*k))
            .collect();
        reasons.extend(extra.iter().map(|k| format!("extra key {k}")));
        let type_changed = live.type_ != spec.type_;
        if type_changed {
            reasons.push(format!("type {} → {}", live.type_, spec.type_));
        }
        if reasons.is_empty() {
            return Ok(None);
        }
        let target = format!(
            "secret {} -n {} --kubeconfig {}",
            q(&spec.name),
            q(&spec.namespace),
            q(&spec.kubeconfig)
        );
        let steps = if type_changed {
            // A Secret's type is immutable: recreate it.
            vec![
                Step::sh(format!("kubectl delete {target} --wait=true")),
                apply_step(spec),
            ]
        } else if !extra.is_empty() {
            // Server-side apply keeps keys other managers set; replace makes the key set exact.
            vec![Step::Stdin {
                script: format!("kubectl replace --kubeconfig {} -f -", q(&spec.kubeconfig)),
                data: manifest(spec),
            }]
        } else {
            vec![apply_step(spec)]
        };
        let mut diff = shown(&mut changed.into_iter());
        for k in extra {
            diff.push_str(&format!("\n{k}: (removed)"));
        }
        Ok(Some(
            Drift::new(Action::Update, reasons, steps)
                .with_diff(Some(diff.trim_start().to_string())),
        ))
    }

    /// The Secret with every value already replaced: its keys are what the cluster checks need.
    fn sends(spec: &Spec) -> Option<crate::cluster::Sent> {
        if spec.state == State::Absent {
            return Some(crate::cluster::Sent::Removal);
        }
        let data: serde_json::Map<String, Value> = spec
            .values
            .keys()
            .map(|k| (k.clone(), Value::String(crate::cluster::REDACTED.into())))
            .collect();
        Some(crate::cluster::Sent::Objects(vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": spec.name, "namespace": spec.namespace},
            "type": spec.type_,
            "stringData": data,
        })]))
    }
}

impl Spec {
    fn take_values(&mut self) -> Result<(), ResourceError> {
        check_kubeconfig(&self.kubeconfig)?;
        let dns = |what: &str, v: &str, max: usize| {
            if v.is_empty()
                || v.len() > max
                || !v
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                Err(ResourceError::spec(format!(
                    "{what} `{v}` must be lowercase letters, digits, `-` or `.`"
                )))
            } else {
                Ok(())
            }
        };
        dns("secret name", &self.name, 253)?;
        dns("namespace", &self.namespace, 63)?;
        if self.type_.is_empty() || self.type_.chars().any(|c| c.is_whitespace()) {
            return Err(ResourceError::spec(format!(
                "type `{}` is not a Secret type",
                self.type_
            )));
        }
        if self.state == State::Present && self.data.is_empty() {
            return Err(ResourceError::spec("`data` must list at least one key"));
        }
        for (k, v) in std::mem::take(&mut self.data) {
            if k.is_empty()
                || k.len() > 253
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(ResourceError::spec(format!(
                    "data key `{k}` must be letters, digits, `-`, `_` or `.`"
                )));
            }
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                // Never echo the value: it is likely a secret.
                _ => {
                    return Err(ResourceError::spec(format!(
                        "data key `{k}` must be a string, number or boolean"
                    )))
                }
            };
            self.values.insert(k, Secret::new(s));
        }
        Ok(())
    }
}

fn manifest(spec: &Spec) -> Secret<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = spec
        .values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64.encode(v.expose()))))
        .collect();
    let obj = json!({
        "apiVersion": "v1",
        "data": data,
        "kind": "Secret",
        "metadata": {"labels": {"app.kubernetes.io/managed-by": "labctl"}, "name": spec.name, "namespace": spec.namespace},
        "type": spec.type_,
    });
    let mut bytes = serde_json::to_vec(&obj).expect("JSON values serialize");
    bytes.push(b'\n');
    Secret::new(bytes)
}

fn apply_step(spec: &Spec) -> Step {
    Step::Stdin {
        script: format!("kubectl apply --server-side --field-manager=labctl --force-conflicts --kubeconfig {} -f -", q(&spec.kubeconfig)),
        data: manifest(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;
    use crate::resources::support::kube::DEFAULT_KUBECONFIG;
    use crate::resources::testutil::*;

    fn prepared(yaml: &str) -> Spec {
        let mut s = spec::<K8sSecret>(yaml);
        s.take_values().unwrap();
        s
    }

    const SPEC: &str = "name: pg\nnamespace: db\ndata:\n  postgres-password: canary-admin-1\n  password: canary-app-2\n";

    fn live(type_: &str, keys: &[(&str, &str)]) -> Facts {
        let key = k8s::SecretQuery::new("db", "pg", DEFAULT_KUBECONFIG).key();
        let mut out = format!("present {type_}\n");
        for (k, v) in keys {
            out.push_str(&format!("key {k} {}\n", sha256_hex(v.as_bytes())));
        }
        facts(&[(&key, &out)])
    }

    fn assert_no_canary(d: &Drift) {
        let shown = format!("{:?} {:?} {:?} {}", d.diff, d.reasons, d.steps, scripts(d));
        assert!(!shown.contains("canary"), "{shown}");
    }

    #[test]
    fn absent_is_created_over_stdin() {
        let s = prepared(SPEC);
        let key = k8s::SecretQuery::new("db", "pg", DEFAULT_KUBECONFIG).key();
        let d = K8sSecret::diff(&s, &facts(&[(&key, "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_no_canary(&d);
        match &d.steps[0] {
            Step::Stdin { script, data } => {
                assert!(
                    script.starts_with("kubectl apply --server-side"),
                    "{script}"
                );
                let v: Value = serde_json::from_slice(data.expose()).unwrap();
                assert_eq!(
                    v["data"]["password"],
                    base64::engine::general_purpose::STANDARD.encode("canary-app-2")
                );
                assert_eq!(
                    (v["type"].as_str(), v["metadata"]["namespace"].as_str()),
                    (Some("Opaque"), Some("db"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(d.diff.unwrap().contains("password: (secret: hmac-sha256:"));
    }

    #[test]
    fn state_absent_deletes_an_existing_secret() {
        let s = prepared("name: pg\nnamespace: db\nstate: absent\n");
        let d = K8sSecret::diff(&s, &live("Opaque", &[("password", "x")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Remove);
        assert_eq!(
            scripts(&d),
            format!("kubectl delete secret pg -n db --kubeconfig {DEFAULT_KUBECONFIG} --wait=true")
        );
        let key = k8s::SecretQuery::new("db", "pg", DEFAULT_KUBECONFIG).key();
        assert!(K8sSecret::diff(&s, &facts(&[(&key, "absent\n")]), &cx())
            .unwrap()
            .is_none());
        // `data` may stay (a role flips only `state`); it is not needed.
        let with = prepared("name: pg\nnamespace: db\nstate: absent\ndata: {a: b}\n");
        assert!(K8sSecret::diff(&with, &facts(&[(&key, "absent\n")]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn equal_is_in_sync() {
        let s = prepared(SPEC);
        assert!(K8sSecret::diff(
            &s,
            &live(
                "Opaque",
                &[
                    ("postgres-password", "canary-admin-1"),
                    ("password", "canary-app-2")
                ]
            ),
            &cx()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn changed_and_extra_keys_are_drift_shown_as_keyed_hashes() {
        let s = prepared(SPEC);
        let d = K8sSecret::diff(
            &s,
            &live(
                "Opaque",
                &[
                    ("postgres-password", "canary-admin-1"),
                    ("password", "canary-old"),
                ],
            ),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (Action::Update, vec!["key password changed".to_string()])
        );
        assert_no_canary(&d);
        assert!(scripts(&d).contains("kubectl apply --server-side"));

        let d = K8sSecret::diff(
            &s,
            &live(
                "Opaque",
                &[
                    ("postgres-password", "canary-admin-1"),
                    ("password", "canary-app-2"),
                    ("stale", "x"),
                ],
            ),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["extra key stale"]);
        assert!(
            scripts(&d).starts_with("<stdin> | kubectl replace"),
            "{}",
            scripts(&d)
        );
        assert_no_canary(&d);

        let d = K8sSecret::diff(
            &s,
            &live(
                "kubernetes.io/basic-auth",
                &[
                    ("postgres-password", "canary-admin-1"),
                    ("password", "canary-app-2"),
                ],
            ),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert!(
            scripts(&d).starts_with("kubectl delete secret pg -n db"),
            "{}",
            scripts(&d)
        );
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_values() {
        let mut s = spec::<K8sSecret>("name: pg\nnamespace: db\ndata:\n  'bad key': canary\n");
        let e = s.take_values().unwrap_err().to_string();
        assert!(e.contains("bad key") && !e.contains("canary"), "{e}");
        let mut s = spec::<K8sSecret>("name: pg\nnamespace: db\ndata:\n  k: {nested: canary}\n");
        assert!(!s.take_values().unwrap_err().to_string().contains("canary"));
    }
}
