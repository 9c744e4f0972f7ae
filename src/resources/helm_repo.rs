//! `helm_repo`: a chart repository helm knows by name.
//!
//! ```yaml
//! - helm_repo: {name: bitnami, url: "https://charts.bitnami.com/bitnami"}
//! ```
//!
//! Adding a repository downloads its index once. Later refreshes are left to `helm_release`,
//! which runs `helm repo update NAME` only when the chart version it pins is missing from the
//! local index: a converged lab never touches the network for indexes.

use serde::Deserialize;

use super::ResourceError;
use super::{q, DiffCx, Resource};
use crate::facts::{helm, Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

pub struct HelmRepo;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub url: String,
}

impl Resource for HelmRepo {
    const KIND: &'static str = "helm_repo";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.name.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &super::PrepareCx) -> Result<(), ResourceError> {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ResourceError::Spec(format!(
                "helm repo name `{}` must be letters, digits, `-`, `_` or `.`",
                spec.name
            )));
        }
        if !(spec.url.starts_with("https://")
            || spec.url.starts_with("http://")
            || spec.url.starts_with("oci://")
            || spec.url.starts_with("file://"))
        {
            return Err(ResourceError::Spec(format!(
                "helm repo url `{}` must start with https://, http://, oci:// or file://",
                spec.url
            )));
        }
        Ok(())
    }

    fn facts(_spec: &Spec) -> Vec<FactQuery> {
        vec![helm::ReposQuery.query()]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        let add = format!("helm repo add {} {}", q(&spec.name), q(&spec.url));
        let repos = match facts.get(&helm::ReposQuery)? {
            Ok(r) => r,
            Err(why) => {
                return Ok(Some(Drift::new(
                    Action::Create,
                    vec![format!("absent (helm unavailable: {why})")],
                    vec![Step::sh(add)],
                )))
            }
        };
        match repos.iter().find(|r| r.name == spec.name) {
            None => Ok(Some(Drift::new(
                Action::Create,
                vec!["absent".into()],
                vec![Step::sh(add)],
            ))),
            Some(r) if r.url.trim_end_matches('/') != spec.url.trim_end_matches('/') => {
                Ok(Some(Drift::new(
                    Action::Update,
                    vec![format!("url {} → {}", r.url, spec.url)],
                    vec![Step::sh(format!(
                        "helm repo add --force-update {} {}",
                        q(&spec.name),
                        q(&spec.url)
                    ))],
                )))
            }
            Some(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::helm::tests::b64;
    use crate::resources::testutil::*;

    fn listed(json: &str) -> Facts {
        facts(&[(helm::REPOS_KEY, &format!("json {}\n", b64(json)))])
    }

    #[test]
    fn absent_is_added_equal_is_in_sync_moved_url_is_forced() {
        let s = spec::<HelmRepo>("name: bitnami\nurl: https://charts.bitnami.com/bitnami\n");
        let d = HelmRepo::diff(&s, &listed("[]"), &cx()).unwrap().unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (
                Action::Create,
                "helm repo add bitnami https://charts.bitnami.com/bitnami".to_string()
            )
        );
        assert!(HelmRepo::diff(
            &s,
            &listed(r#"[{"name":"bitnami","url":"https://charts.bitnami.com/bitnami/"}]"#),
            &cx()
        )
        .unwrap()
        .is_none());
        let d = HelmRepo::diff(
            &s,
            &listed(r#"[{"name":"bitnami","url":"https://example.org/old"}]"#),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Update);
        assert!(
            scripts(&d).starts_with("helm repo add --force-update bitnami"),
            "{}",
            scripts(&d)
        );
    }

    #[test]
    fn missing_helm_plans_a_create() {
        let s = spec::<HelmRepo>("name: argo\nurl: https://argoproj.github.io/argo-helm\n");
        let d = HelmRepo::diff(
            &s,
            &facts(&[(helm::REPOS_KEY, "unavailable helm is not installed\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Create);
        assert!(d.reasons[0].contains("helm is not installed"));
    }
}
