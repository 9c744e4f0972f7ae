//! `service`: a systemd unit enabled/disabled and started/stopped; as a handler, restarted or reloaded.
//!
//! ```yaml
//! resources:
//!   - service: {name: k3s, enabled: true, state: started}
//!   - service: {name: apache2, enabled: false, state: stopped}
//! handlers:
//!   - name: restart k3s
//!     service: {name: k3s, state: restarted, daemon_reload: true}
//!   - name: reload ssh
//!     service: {name: ssh, state: reloaded}       # reload-or-restart
//! ```
//!
//! A unit that is not on the host yet (an earlier resource in the same run may install it) is
//! planned as a change, preceded by `systemctl daemon-reload`; apply fails if it is still missing.
//! `restarted` and `reloaded` are events, not states: use them in handlers.

use serde::Deserialize;

use super::ResourceError;
use super::{q, DiffCx, Resource};
use crate::facts::service::{ActiveState, ServiceQuery, UnitFileState};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

pub struct Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub state: Option<State>,
    #[serde(default)]
    pub daemon_reload: bool,
}

fn check_name(n: &str) -> Result<(), ResourceError> {
    let re = regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]*$").expect("static regex");
    if !re.is_match(n) || n.len() > 255 {
        return Err(ResourceError::spec(format!(
            "`{n}` is not a systemd unit name (letters, digits, `: _ . @ \\ -`)"
        )));
    }
    Ok(())
}

fn systemctl(verb: &str, name: &str) -> Step {
    Step::sh(format!("systemctl {verb} {}", q(name)))
}

impl Resource for Service {
    const KIND: &'static str = "service";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.name.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &super::PrepareCx) -> Result<(), ResourceError> {
        check_name(&spec.name)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![ServiceQuery::new(&spec.name).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check_name(&spec.name)?;
        if let Some(s @ (State::Restarted | State::Reloaded)) = spec.state {
            let word = if s == State::Restarted {
                "restarted"
            } else {
                "reloaded"
            };
            return Err(ResourceError::Spec(format!(
                "`state: {word}` is an event, not a state: put it in a handler and `notify` it from the resources that change {}",
                spec.name
            )));
        }
        if spec.enabled.is_none() && spec.state.is_none() {
            return Err(ResourceError::Spec(
                "give `enabled` and/or `state` (started|stopped)".into(),
            ));
        }
        let seen = facts.get(&ServiceQuery::new(&spec.name))?;
        let n = &spec.name;

        if !seen.found() {
            // Maybe an earlier resource in this run installs it (an `apt` package, a unit
            // `file`): plan the change and let apply fail loudly if it is really missing.
            let mut steps = vec![Step::sh("systemctl daemon-reload")];
            if spec.enabled == Some(true) {
                steps.push(systemctl("enable", n));
            }
            if spec.state == Some(State::Started) {
                steps.push(systemctl("start", n));
            }
            if steps.len() == 1 {
                // Wanted disabled/stopped, and there is nothing there to disable or stop.
                return Ok(None);
            }
            return Ok(Some(Drift::new(
                Action::Create,
                vec![format!("unit {n} not found on host (yet)")],
                steps,
            )));
        }

        let mut reasons = Vec::new();
        let mut steps = Vec::new();
        let ufs = &seen.unit_file_state;
        if let Some(want) = spec.enabled {
            if seen.masked() {
                if want {
                    return Err(ResourceError::Host(format!("unit {n} is masked on the host: unmask it (`systemctl unmask {n}`) or drop `enabled: true`")));
                }
            } else if *ufs == UnitFileState::Alias {
                return Err(ResourceError::Host(format!("`{n}` is an alias of {}: name the unit itself (systemctl refuses to enable or disable an alias)", seen.id)));
            } else {
                use UnitFileState as U;
                match (want, ufs) {
                    // static/indirect/generated/transient units have no [Install] section of
                    // their own: `systemctl enable` cannot change them, so insisting would plan
                    // the same change forever. They are as enabled as they can be.
                    (_, U::Static | U::Indirect | U::Generated | U::Transient) => {}
                    (true, U::Enabled)
                    | (false, U::Disabled | U::Linked | U::LinkedRuntime | U::Unknown) => {}
                    (true, U::EnabledRuntime) => {
                        reasons.push("enabled only until reboot (enabled-runtime)".to_string());
                        steps.push(systemctl("enable", n));
                    }
                    (true, other) => {
                        reasons.push(format!(
                            "{} → enabled",
                            if *other == U::Unknown {
                                "not enabled"
                            } else {
                                other.as_str()
                            }
                        ));
                        steps.push(systemctl("enable", n));
                    }
                    (false, U::EnabledRuntime) => {
                        reasons.push("enabled-runtime → disabled".to_string());
                        steps.push(systemctl("disable --runtime", n));
                    }
                    (false, other) => {
                        reasons.push(format!("{other} → disabled"));
                        steps.push(systemctl("disable", n));
                    }
                }
            }
        }
        match spec.state {
            Some(State::Started) if !seen.running() => {
                if seen.masked() {
                    return Err(ResourceError::Host(format!("unit {n} is masked on the host: it cannot be started; unmask it (`systemctl unmask {n}`)")));
                }
                reasons.push(format!("{} → started", seen.active_state));
                steps.push(systemctl("start", n));
            }
            Some(State::Stopped)
                if !matches!(
                    seen.active_state,
                    ActiveState::Inactive | ActiveState::Failed
                ) =>
            {
                reasons.push(format!("{} → stopped", seen.active_state));
                steps.push(systemctl("stop", n));
            }
            _ => {}
        }
        if steps.is_empty() {
            return Ok(None);
        }
        if spec.daemon_reload {
            steps.insert(0, Step::sh("systemctl daemon-reload"));
        }
        Ok(Some(Drift::new(Action::Update, reasons, steps)))
    }

    fn handler(spec: &Spec, _secret: bool) -> Result<Vec<Step>, ResourceError> {
        check_name(&spec.name).map_err(ResourceError::for_handler)?;
        if spec.enabled.is_some() {
            return Err(ResourceError::Handler(
                "`enabled` has no meaning in a handler: declare it on a `service` resource".into(),
            ));
        }
        let mut steps = Vec::new();
        if spec.daemon_reload {
            steps.push(Step::sh("systemctl daemon-reload"));
        }
        match spec.state {
            Some(State::Restarted) => steps.push(systemctl("restart", &spec.name)),
            // reload-or-restart: units without ExecReload would otherwise fail the handler.
            Some(State::Reloaded) => steps.push(systemctl("reload-or-restart", &spec.name)),
            Some(State::Started) => steps.push(systemctl("start", &spec.name)),
            Some(State::Stopped) => steps.push(systemctl("stop", &spec.name)),
            None => {}
        }
        if steps.is_empty() {
            return Err(ResourceError::Handler(
                "a `service` handler needs `state: restarted|reloaded` (or `daemon_reload: true`)"
                    .into(),
            ));
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers built from specs without secrets.
    fn handler(s: &Spec) -> Result<Vec<Step>, String> {
        Service::handler(s, false).map_err(|e| e.to_string())
    }
    use crate::resources::testutil::*;

    fn show(load: &str, active: &str, ufs: &str) -> String {
        format!("Id=k3s.service\nLoadState={load}\nActiveState={active}\nSubState=x\nUnitFileState={ufs}\nsystemctl_rc=0\n")
    }

    fn diff(yaml: &str, out: &str) -> Result<Option<Drift>, String> {
        let s = spec::<Service>(yaml);
        let name = s.name.clone();
        Service::diff(&s, &facts(&[(&format!("service:{name}"), out)]), &cx())
            .map_err(|e| e.to_string())
    }

    const WANT: &str = "name: k3s\nenabled: true\nstate: started\n";

    /// The unit's answer as the probe gives it.
    fn unit(load: &str, active: &str, ufs: &str) -> Vec<(String, String)> {
        vec![(
            "service:k3s".to_string(),
            crate::facts::service::fixture::unit("k3s.service", load, active, "x", ufs),
        )]
    }

    /// Spec + unit state in → verdict out (rewritten from per-case tests into one table).
    #[test]
    fn unit_states_table() {
        use Action::{Create, Update};
        const OFF: &str = "name: k3s\nenabled: false\nstate: stopped\n";
        const OFF_RELOAD: &str = "name: k3s\nenabled: false\nstate: stopped\ndaemon_reload: true\n";
        const ENABLED: &str = "name: k3s\nenabled: true\n";
        const DISABLED: &str = "name: k3s\nenabled: false\n";
        let mut cases = vec![
            Case {
                name: "missing unit is planned, not refused",
                spec: WANT,
                facts: unit("not-found", "inactive", ""),
                want: Want::Change(
                    Create,
                    &["unit k3s not found on host (yet)"],
                    "systemctl daemon-reload\nsystemctl enable k3s\nsystemctl start k3s",
                ),
            },
            Case {
                name: "nothing to stop or disable when it does not exist",
                spec: OFF,
                facts: unit("not-found", "inactive", ""),
                want: Want::InSync,
            },
            Case {
                name: "running and enabled",
                spec: WANT,
                facts: unit("loaded", "active", "enabled"),
                want: Want::InSync,
            },
            Case {
                name: "activating counts as running",
                spec: WANT,
                facts: unit("loaded", "activating", "enabled"),
                want: Want::InSync,
            },
            Case {
                name: "failed and disabled",
                spec: WANT,
                facts: unit("loaded", "failed", "disabled"),
                want: Want::Change(
                    Update,
                    &["disabled → enabled", "failed → started"],
                    "systemctl enable k3s\nsystemctl start k3s",
                ),
            },
            Case {
                name: "stop and disable, daemon-reload first",
                spec: OFF_RELOAD,
                facts: unit("loaded", "active", "enabled"),
                want: Want::Change(
                    Update,
                    &["enabled → disabled", "active → stopped"],
                    "systemctl daemon-reload\nsystemctl disable k3s\nsystemctl stop k3s",
                ),
            },
            Case {
                name: "enabled only until reboot",
                spec: ENABLED,
                facts: unit("loaded", "active", "enabled-runtime"),
                want: Want::Change(
                    Update,
                    &["enabled only until reboot (enabled-runtime)"],
                    "systemctl enable k3s",
                ),
            },
            Case {
                name: "a static unit is only started",
                spec: WANT,
                facts: unit("loaded", "inactive", "static"),
                want: Want::Change(Update, &["inactive → started"], "systemctl start k3s"),
            },
            Case {
                name: "masked cannot be enabled",
                spec: WANT,
                facts: unit("masked", "inactive", "masked"),
                want: Want::Error("systemctl unmask k3s"),
            },
        ];
        // static/generated/indirect units have no [Install] of their own: as enabled as they can be.
        for ufs in ["static", "generated", "indirect"] {
            for spec in [WANT, DISABLED] {
                cases.push(Case {
                    name: "units without [Install] count as enabled",
                    spec,
                    facts: unit("loaded", "active", ufs),
                    want: Want::InSync,
                });
            }
        }
        table::<Service>(&cases);
    }

    #[test]
    fn masked_and_alias_are_refused_with_a_hint() {
        let e = diff(WANT, &show("masked", "inactive", "masked"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("k3s is masked") && e.contains("systemctl unmask k3s"),
            "{e}"
        );
        let e = diff(
            "name: k3s\nenabled: true\n",
            &show("loaded", "active", "alias"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("alias of k3s.service"), "{e}");
    }

    #[test]
    fn restart_is_for_handlers() {
        let e = diff(
            "name: k3s\nstate: restarted\n",
            &show("loaded", "active", "enabled"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("handler") && e.contains("notify"), "{e}");
        let h = handler(&spec::<Service>(
            "name: k3s\nstate: restarted\ndaemon_reload: true\n",
        ))
        .unwrap();
        let d = Drift::new(Action::Run, vec![], h);
        assert_eq!(
            scripts(&d),
            "systemctl daemon-reload\nsystemctl restart k3s"
        );
        let h = handler(&spec::<Service>("name: ssh\nstate: reloaded\n")).unwrap();
        assert_eq!(
            scripts(&Drift::new(Action::Run, vec![], h)),
            "systemctl reload-or-restart ssh"
        );
        assert!(handler(&spec::<Service>("name: ssh\n"))
            .unwrap_err()
            .to_string()
            .contains("needs `state"));
        assert!(handler(&spec::<Service>(
            "name: ssh\nenabled: true\nstate: restarted\n"
        ))
        .unwrap_err()
        .to_string()
        .contains("`enabled`"));
    }

    #[test]
    fn spec_errors() {
        let e = spec_err::<Service>("name: k3s\nstate: running\n");
        assert!(e.contains("t.yml:2:8") && e.contains("running"), "{e}");
        let e = spec_err::<Service>("name: k3s\nenable: true\n");
        assert!(e.contains("t.yml:2:1") && e.contains("enable"), "{e}");
        assert!(check_name("k3s; reboot")
            .unwrap_err()
            .to_string()
            .contains("not a systemd unit name"));
        assert!(check_name("getty@tty1.service").is_ok());
        assert!(diff("name: k3s\n", &show("loaded", "active", "enabled"))
            .unwrap_err()
            .to_string()
            .contains("give `enabled`"));
    }
}
