//! `helm_release`: a chart installed at a pinned version with our values.
//!
//! ```yaml
//! - helm_release:
//!     name: postgres
//!     namespace: db
//!     chart: bitnami/postgresql          # REPO/CHART (a `helm_repo` earlier) or oci://…
//!     version: "16.7.4"                  # pinned, required
//!     values_template: postgres.yaml.j2  # roles/R/templates/ or values/…
//!     values: {primary: {resources: {}}} # optional, deep-merged over the template
//!     create_namespace: true
//!     wait: true
//!     timeout: 5m
//!     kubeconfig: /etc/rancher/k3s/k3s.yaml
//!     state: present                     # absent: `helm uninstall` (chart/version not needed)
//! ```
//!
//! Upgraded only when the deployed chart version, the release status or the values differ:
//! desired values (YAML → JSON, canonical) against `helm get values -o json`. Values travel on
//! stdin (`-f -`, as JSON, which is YAML), never in argv; when they hold a secret the plan shows
//! only which keys changed and a keyed hash. `state: absent` uninstalls an installed release
//! (`helm uninstall --wait`; helm keeps the CRDs a chart installed).
//!
//! A chart version change over a deployed release names its way back in the plan file, the
//! apply recap (`way back …`) and the run log: `helm rollback NAME REVISION` to the revision
//! helm keeps in its history, then the old `version` pinned again so the next apply does not
//! upgrade once more.

use serde::Deserialize;
use serde_json::Value;

use super::support::json::{canonical, merge, paths, summarize, value_diff};
use super::support::kube::{check_kubeconfig, default_kubeconfig, yaml_error};
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource, State};
use crate::facts::helm::ReleaseQuery;
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};
use crate::secret::Secret;

pub struct HelmRelease;

fn yes() -> bool {
    true
}
fn five_minutes() -> String {
    "5m".into()
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub chart: String,
    #[serde(default)]
    pub version: String,
    /// `absent`: uninstall the release (helm keeps the CRDs a chart installed, as always).
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub values_template: Option<String>,
    #[serde(default)]
    pub values: Option<Value>,
    #[serde(default = "yes")]
    pub create_namespace: bool,
    #[serde(default = "yes")]
    pub wait: bool,
    #[serde(default = "five_minutes")]
    pub timeout: String,
    #[serde(default = "default_kubeconfig")]
    pub kubeconfig: String,
    /// Template merged with inline values, canonical. Filled by `prepare`.
    #[serde(skip)]
    pub desired: Option<Secret<Value>>,
}

impl Spec {
    fn desired(&self) -> Value {
        self.desired
            .as_ref()
            .map(|d| d.expose().clone())
            .unwrap_or_else(|| Value::Object(Default::default()))
    }

    /// `bitnami/postgresql` → (Some("bitnami"), "postgresql"); `oci://r/x/chart` → (None, "chart").
    fn repo_and_chart(&self) -> (Option<&str>, &str) {
        if self.chart.starts_with("oci://") {
            return (None, self.chart.rsplit('/').next().unwrap_or(&self.chart));
        }
        match self.chart.split_once('/') {
            Some((r, c)) => (Some(r), c),
            None => (None, &self.chart),
        }
    }
}

/// DNS-1123 label: helm and Kubernetes refuse anything else, so say it at `check` time.
fn check_label(what: &str, v: &str, max: usize) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{v}` must be lowercase letters, digits and `-` (at most {max})"
        ))
    }
}

/// The one query `facts` asks and `diff` reads.
fn release_query(spec: &Spec) -> ReleaseQuery {
    ReleaseQuery::new(&spec.namespace, &spec.name, &spec.kubeconfig)
}

impl Resource for HelmRelease {
    const KIND: &'static str = "helm_release";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        format!("{}/{}", spec.namespace, spec.name)
    }

    fn prepare(spec: &mut Spec, cx: &PrepareCx) -> Result<(), ResourceError> {
        check_label("release name", &spec.name, 53).map_err(ResourceError::Spec)?;
        check_label("namespace", &spec.namespace, 63).map_err(ResourceError::Spec)?;
        check_kubeconfig(&spec.kubeconfig)?;
        if spec.state == State::Absent {
            return Ok(());
        }
        let (repo, chart) = spec.repo_and_chart();
        if repo.is_none() && !spec.chart.starts_with("oci://") {
            return Err(ResourceError::Spec(format!(
                "chart `{}` must be REPO/CHART (from a `helm_repo`) or oci://…",
                spec.chart
            )));
        }
        if chart.is_empty() || spec.chart.chars().any(|c| c.is_whitespace()) {
            return Err(ResourceError::Spec(format!(
                "chart `{}` is not a chart reference",
                spec.chart
            )));
        }
        let v = spec.version.trim();
        if v.is_empty()
            || v.contains(['^', '~', '*', '>', '<', ' ', ',', '|'])
            || v.ends_with(".x")
            || v == "latest"
        {
            return Err(ResourceError::Spec(format!(
                "version `{}` must be pinned to one exact chart version (like \"16.7.4\")",
                spec.version
            )));
        }
        static TIMEOUT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"^(\d+h)?(\d+m)?(\d+s)?$").expect("static regex")
        });
        if !TIMEOUT.is_match(&spec.timeout) || spec.timeout.is_empty() {
            return Err(ResourceError::Spec(format!(
                "timeout `{}` must look like 5m, 90s or 1h30m",
                spec.timeout
            )));
        }
        let mut values = Value::Object(Default::default());
        if let Some(t) = &spec.values_template {
            let text = String::from_utf8(cx.render_template(t)?.into_inner())
                .map_err(|_| format!("{t}: not UTF-8"))
                .map_err(ResourceError::Spec)?;
            let parsed: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_saphyr::from_str(&text)
                    .map_err(|e| {
                        yaml_error(
                            &format!("values template {t}"),
                            &e.to_string(),
                            cx.tainted.get(),
                        )
                    })
                    .map_err(ResourceError::Spec)?
            };
            match parsed {
                Value::Null => {}
                Value::Object(_) => values = parsed,
                _ => {
                    return Err(ResourceError::Spec(format!(
                        "values template {t} must render to a mapping"
                    )))
                }
            }
        }
        match spec.values.take() {
            None | Some(Value::Null) => {}
            Some(inline @ Value::Object(_)) => merge(&mut values, &inline),
            Some(_) => return Err(ResourceError::Spec("`values` must be a mapping".into())),
        }
        spec.desired = Some(Secret::new(canonical(&values)));
        Ok(())
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![release_query(spec).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        let want = spec.desired();
        let label = format!("{}/{} values", spec.namespace, spec.name);
        let seen = facts.get(&release_query(spec))?;
        if spec.state == State::Absent {
            // Without helm or a cluster there is no release to uninstall.
            return Ok(match seen {
                Ok(Some(r)) => Some(Drift::new(
                    Action::Remove,
                    vec![format!("installed ({})", r.chart)],
                    vec![Step::sh(format!(
                        "helm uninstall {} -n {} --wait --timeout {} --kubeconfig {}",
                        q(&spec.name),
                        q(&spec.namespace),
                        q(&spec.timeout),
                        q(&spec.kubeconfig)
                    ))],
                )),
                Ok(None) | Err(_) => None,
            });
        }
        let release = match seen {
            Err(why) => {
                let d = Drift::new(
                    Action::Create,
                    vec![format!("absent (helm unavailable: {why})")],
                    vec![upgrade_step(spec, &want)],
                );
                return Ok(Some(d.with_diff(Some(value_diff(&label, None, &want, cx)))));
            }
            Ok(None) => {
                let d = Drift::new(
                    Action::Create,
                    vec!["absent".into()],
                    vec![upgrade_step(spec, &want)],
                );
                return Ok(Some(d.with_diff(Some(value_diff(&label, None, &want, cx)))));
            }
            Ok(Some(r)) => r,
        };
        let mut reasons = Vec::new();
        let want_chart = format!("{}-{}", spec.repo_and_chart().1, spec.version);
        if release.chart != want_chart {
            reasons.push(format!("chart {} → {want_chart}", release.chart));
        }
        if release.status != "deployed" {
            reasons.push(format!(
                "status {} (not deployed)",
                if release.status.is_empty() {
                    "unknown"
                } else {
                    &release.status
                }
            ));
        }
        let live = canonical(&release.values);
        let mut diff = None;
        if live != want {
            let mut p = Vec::new();
            paths(&want, Some(&live), false, "", &mut p);
            reasons.push(format!("values differ at {}", summarize(&p)));
            diff = Some(value_diff(&label, Some(&live), &want, cx));
        }
        if reasons.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            Drift::new(Action::Update, reasons, vec![upgrade_step(spec, &want)])
                .with_diff(diff)
                .with_way_back(way_back(spec, &release, &want_chart)),
        ))
    }

    fn sends(spec: &Spec) -> Option<crate::cluster::Sent> {
        Some(match spec.state {
            State::Absent => crate::cluster::Sent::Removal,
            State::Present => crate::cluster::Sent::Release {
                name: spec.name.clone(),
                namespace: spec.namespace.clone(),
                chart: spec.chart.clone(),
                version: spec.version.clone(),
                values: spec.desired(),
                create_namespace: spec.create_namespace,
            },
        })
    }
}

/// A chart version change keeps the deployed revision in helm's history (up to helm's
/// --history-max, 10): `helm rollback` to it brings back that chart with its values, and the old
/// pin keeps the next apply from upgrading again.
fn way_back(
    spec: &Spec,
    release: &crate::facts::helm::Release,
    want_chart: &str,
) -> Option<String> {
    if release.chart == want_chart || release.status != "deployed" || release.revision.is_empty() {
        return None;
    }
    let (_, chart) = spec.repo_and_chart();
    let old = release
        .chart
        .strip_prefix(&format!("{chart}-"))
        .unwrap_or(&release.chart);
    Some(format!(
        "helm rollback {} {} -n {} --kubeconfig {} (revision {}: {}), then pin version \"{old}\" again",
        spec.name, release.revision, spec.namespace, spec.kubeconfig, release.revision, release.chart
    ))
}

fn upgrade_step(spec: &Spec, values: &Value) -> Step {
    let kc = q(&spec.kubeconfig);
    let mut script = String::new();
    // Refresh the repo index only when it lacks the pinned version: converged runs stay offline.
    if let (Some(repo), chart) = spec.repo_and_chart() {
        script.push_str(&format!(
            "if ! helm search repo {} --version {} -o json </dev/null 2>/dev/null | grep -q '\"name\"'; then helm repo update {} </dev/null >&2; fi\n",
            q(&format!("{repo}/{chart}")),
            q(&spec.version),
            q(repo)
        ));
    }
    script.push_str(&format!(
        "helm upgrade --install {} {} --version {} -n {}{}{} --timeout {} --kubeconfig {kc} -f -",
        q(&spec.name),
        q(&spec.chart),
        q(&spec.version),
        q(&spec.namespace),
        if spec.create_namespace {
            " --create-namespace"
        } else {
            ""
        },
        if spec.wait { " --wait" } else { "" },
        q(&spec.timeout),
    ));
    let mut data = serde_json::to_vec(values).expect("JSON values serialize");
    data.push(b'\n');
    Step::Stdin {
        script,
        data: Secret::new(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::helm::tests::b64;
    use crate::resources::testutil::*;
    use serde_json::json;

    const SPEC: &str =
        "name: postgres\nnamespace: db\nchart: bitnami/postgresql\nversion: \"16.7.4\"\n";

    fn prepared(extra: &str, values: Value) -> Spec {
        let mut s = spec::<HelmRelease>(&format!("{SPEC}{extra}"));
        s.desired = Some(Secret::new(canonical(&values)));
        s
    }

    fn seen(list: &str, values: Option<&str>) -> Facts {
        let key = ReleaseQuery::new(
            "db",
            "postgres",
            crate::resources::support::kube::DEFAULT_KUBECONFIG,
        )
        .key();
        let mut out = format!("json {}\n", b64(list));
        if let Some(v) = values {
            out.push_str(&format!("values {}\n", b64(v)));
        }
        facts(&[(&key, &out)])
    }

    const DEPLOYED: &str = r#"[{"name":"postgres","namespace":"db","revision":"3","status":"deployed","chart":"postgresql-16.7.4","app_version":"17.5.0"}]"#;

    #[test]
    fn state_absent_uninstalls_an_installed_release() {
        let s = spec::<HelmRelease>("name: postgres\nnamespace: db\nstate: absent\n");
        let d = HelmRelease::diff(&s, &seen(DEPLOYED, Some("{}")), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Remove);
        assert_eq!(d.reasons, ["installed (postgresql-16.7.4)"]);
        assert_eq!(
            scripts(&d),
            "helm uninstall postgres -n db --wait --timeout 5m --kubeconfig /etc/rancher/k3s/k3s.yaml"
        );
        assert!(HelmRelease::diff(&s, &seen("[]", None), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn absent_is_installed_with_values_on_stdin() {
        let s = prepared(
            "",
            json!({"auth": {"existingSecret": "pg"}, "primary": {"service": {"type": "NodePort"}}}),
        );
        let d = HelmRelease::diff(&s, &seen("[]", None), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        let sc = scripts(&d);
        assert!(
            sc.contains("helm search repo bitnami/postgresql --version 16.7.4 -o json"),
            "{sc}"
        );
        assert!(sc.contains("then helm repo update bitnami"), "{sc}");
        assert!(sc.ends_with("helm upgrade --install postgres bitnami/postgresql --version 16.7.4 -n db --create-namespace --wait --timeout 5m --kubeconfig /etc/rancher/k3s/k3s.yaml -f -"), "{sc}");
        match &d.steps[0] {
            Step::Stdin { data, .. } => assert_eq!(
                serde_json::from_slice::<Value>(data.expose()).unwrap()["primary"]["service"]
                    ["type"],
                "NodePort"
            ),
            other => panic!("{other:?}"),
        }
        assert!(d.diff.unwrap().contains("+    type: NodePort"));
    }

    #[test]
    fn equal_values_and_version_are_in_sync_null_values_mean_empty() {
        let s = prepared("", json!({"a": {"port": 30432.0, "b": true}}));
        assert!(HelmRelease::diff(
            &s,
            &seen(DEPLOYED, Some(r#"{"a":{"b":true,"port":30432}}"#)),
            &cx()
        )
        .unwrap()
        .is_none());
        let empty = prepared("", json!({}));
        assert!(
            HelmRelease::diff(&empty, &seen(DEPLOYED, Some("null")), &cx())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn changed_values_version_or_status_upgrade() {
        let s = prepared("", json!({"a": {"port": 30432}}));
        let d = HelmRelease::diff(
            &s,
            &seen(DEPLOYED, Some(r#"{"a":{"port":30433},"old":1}"#)),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["values differ at a.port, old"]);
        let diff = d.diff.unwrap();
        assert!(
            diff.contains("-  port: 30433")
                && diff.contains("+  port: 30432")
                && diff.contains("-old: 1"),
            "{diff}"
        );

        let older = DEPLOYED
            .replace("postgresql-16.7.4", "postgresql-16.6.0")
            .replace("deployed", "failed");
        let d = HelmRelease::diff(&s, &seen(&older, Some(r#"{"a":{"port":30432}}"#)), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            d.reasons,
            vec![
                "chart postgresql-16.6.0 → postgresql-16.7.4",
                "status failed (not deployed)"
            ]
        );
        // A failed release is no revision to go back to.
        assert_eq!(d.way_back, None);
        // A values change alone keeps the chart: nothing to go back to either.
        let d = HelmRelease::diff(&s, &seen(DEPLOYED, Some("{}")), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.way_back, None);
    }

    #[test]
    fn a_chart_upgrade_names_the_revision_to_roll_back_to() {
        let s = prepared("", json!({}));
        let older = DEPLOYED.replace("postgresql-16.7.4", "postgresql-16.6.0");
        let d = HelmRelease::diff(&s, &seen(&older, Some("{}")), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            d.way_back.as_deref(),
            Some(
                "helm rollback postgres 3 -n db --kubeconfig /etc/rancher/k3s/k3s.yaml \
                 (revision 3: postgresql-16.6.0), then pin version \"16.6.0\" again"
            )
        );
    }

    #[test]
    fn secret_values_never_appear_in_plan_output() {
        let s = prepared("", json!({"auth": {"postgresPassword": "canary-pw-42"}}));
        for f in [
            seen("[]", None),
            seen(
                DEPLOYED,
                Some(r#"{"auth":{"postgresPassword":"old-canary"}}"#),
            ),
        ] {
            let d = HelmRelease::diff(&s, &f, &secret_cx()).unwrap().unwrap();
            let shown = format!("{:?} {:?} {:?}", d.diff, d.reasons, d.steps);
            assert!(!shown.contains("canary"), "{shown}");
            assert!(d
                .diff
                .unwrap()
                .contains("(secret changed: now hmac-sha256:"));
            match &d.steps[0] {
                Step::Stdin { script, .. } => assert!(!script.contains("canary")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn helm_missing_plans_an_install_and_bad_specs_are_refused() {
        let s = prepared("", json!({}));
        let key = ReleaseQuery::new(
            "db",
            "postgres",
            crate::resources::support::kube::DEFAULT_KUBECONFIG,
        )
        .key();
        let d = HelmRelease::diff(
            &s,
            &facts(&[(&key, "unavailable helm is not installed\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Create);
        assert!(d.reasons[0].contains("helm is not installed"));
        // chart and version may be left out only for `state: absent`.
        let mut s = spec::<HelmRelease>("name: x\nnamespace: y\nchart: a/b\n");
        let e = with_prepare(|cx| HelmRelease::prepare(&mut s, cx))
            .unwrap_err()
            .to_string();
        assert!(e.contains("version `` must be pinned"), "{e}");
        let mut s = spec::<HelmRelease>("name: x\nnamespace: y\nstate: absent\n");
        assert!(with_prepare(|cx| HelmRelease::prepare(&mut s, cx)).is_ok());
    }
}
