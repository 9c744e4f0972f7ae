//! `group`: a local group exists (with a gid), or is gone.
//!
//! ```yaml
//! - group: {name: docker, system: true}
//! - group:
//!     name: deploy
//!     gid: 1500            # optional; a different gid on the host is changed with groupmod
//! - group: {name: oldteam, state: absent}
//! ```
//!
//! Membership belongs to `user` (`groups:`), where `append` decides what happens to others.

use serde::Deserialize;

use super::user::check_name;
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource};
use crate::facts::users::GroupQuery;
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

pub struct Group;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub gid: Option<u32>,
    /// Only used when creating (`groupadd -r`).
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub state: State,
}

impl Resource for Group {
    const KIND: &'static str = "group";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.name.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check_name("name", &spec.name)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![GroupQuery::new(&spec.name).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check_name("name", &spec.name)?;
        let seen = facts.get(&GroupQuery::new(&spec.name))?;
        let n = q(&spec.name);
        match (spec.state, seen.exists) {
            (State::Absent, false) => Ok(None),
            (State::Absent, true) => Ok(Some(Drift::new(
                Action::Remove,
                vec!["present".into()],
                vec![Step::sh(format!("groupdel -- {n}"))],
            ))),
            (State::Present, false) => {
                let mut args = String::new();
                if spec.system {
                    args.push_str("-r ");
                }
                if let Some(g) = spec.gid {
                    args.push_str(&format!("-g {g} "));
                }
                Ok(Some(Drift::new(
                    Action::Create,
                    vec!["absent".into()],
                    vec![Step::sh(format!("groupadd {args}-- {n}"))],
                )))
            }
            (State::Present, true) => match spec.gid {
                Some(g) if g != seen.gid => Ok(Some(Drift::new(
                    Action::Update,
                    vec![format!("gid {} → {g}", seen.gid)],
                    vec![Step::sh(format!("groupmod -g {g} -- {n}"))],
                ))),
                _ => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const DOCKER: &str = "group docker:x:998:bob\n";

    #[test]
    fn absent_is_created() {
        let s = spec::<Group>("name: docker\nsystem: true\ngid: 998\n");
        let d = Group::diff(&s, &facts(&[("group:docker", "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (Action::Create, "groupadd -r -g 998 -- docker".to_string())
        );
        let s = spec::<Group>("name: docker\n");
        let d = Group::diff(&s, &facts(&[("group:docker", "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(scripts(&d), "groupadd -- docker");
    }

    #[test]
    fn present_is_in_sync() {
        for y in [
            "name: docker\n",
            "name: docker\ngid: 998\n",
            "name: docker\nsystem: true\n",
        ] {
            assert!(
                Group::diff(
                    &spec::<Group>(y),
                    &facts(&[("group:docker", DOCKER)]),
                    &cx()
                )
                .unwrap()
                .is_none(),
                "{y}"
            );
        }
    }

    #[test]
    fn drifted_gid_is_fixed() {
        let s = spec::<Group>("name: docker\ngid: 1500\n");
        let d = Group::diff(&s, &facts(&[("group:docker", DOCKER)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.reasons, vec!["gid 998 → 1500"]);
        assert_eq!(scripts(&d), "groupmod -g 1500 -- docker");
    }

    #[test]
    fn absent_state_removes() {
        let s = spec::<Group>("name: docker\nstate: absent\n");
        let d = Group::diff(&s, &facts(&[("group:docker", DOCKER)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (Action::Remove, "groupdel -- docker".to_string())
        );
        assert!(
            Group::diff(&s, &facts(&[("group:docker", "absent\n")]), &cx())
                .unwrap()
                .is_none()
        );
        assert!(
            Group::diff(&spec::<Group>("name: \"a;b\"\n"), &facts(&[]), &cx())
                .unwrap_err()
                .to_string()
                .contains("not a valid")
        );
    }
}
