//! systemd unit facts: `systemctl show` of the unit's load, activity and enablement.

use super::{parse_err, q, FactError, FactQuery, Facts};

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServiceFact {
    /// The unit's real name (`ssh.service` when asked about the alias `sshd`).
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`.
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active_state: String,
    pub sub_state: String,
    /// `enabled`, `enabled-runtime`, `linked`, `linked-runtime`, `alias`, `masked`,
    /// `masked-runtime`, `static`, `indirect`, `disabled`, `generated`, `transient`, `bad`, or
    /// empty (no unit file, e.g. not found).
    pub unit_file_state: String,
}

impl ServiceFact {
    pub fn found(&self) -> bool {
        self.load_state != "not-found"
    }
    /// Running, or on its way there: starting it again would change nothing.
    pub fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading"
        )
    }
}

fn key(name: &str) -> String {
    format!("service:{name}")
}

pub fn query(name: &str) -> FactQuery {
    // `show` answers even for units that do not exist (LoadState=not-found); without a running
    // systemd it prints nothing, which `parse` reports with the exit status.
    FactQuery {
        key: key(name),
        script: format!(
            "systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState -- {} 2>/dev/null; echo \"systemctl_rc=$?\"",
            q(name)
        ),
    }
}

pub fn get(facts: &Facts, name: &str) -> Result<ServiceFact, FactError> {
    let k = key(name);
    parse(&k, &facts.get(&k)?.out)
}

pub fn parse(k: &str, out: &str) -> Result<ServiceFact, FactError> {
    let mut f = ServiceFact::default();
    let mut rc = None;
    let mut loaded = false;
    for line in out.lines() {
        let Some((name, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match name {
            "Id" => f.id = v,
            "LoadState" => {
                loaded = true;
                f.load_state = v
            }
            "ActiveState" => f.active_state = v,
            "SubState" => f.sub_state = v,
            "UnitFileState" => f.unit_file_state = v,
            "systemctl_rc" => rc = Some(v),
            _ => {}
        }
    }
    if !loaded {
        return Err(parse_err(
            k,
            format!(
                "systemctl show gave no answer (exit {}); is systemd running on the host?",
                rc.as_deref().unwrap_or("?")
            ),
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_valid_sh_and_always_answers() {
        let qy = query("ssh.service");
        crate::facts::testutil::assert_valid_sh(&qy.script);
        let stdout = crate::facts::testutil::run_sh(&qy.script);
        let text = stdout;
        assert!(text.contains("systemctl_rc="), "{text}");
    }

    // The shape of `systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState` on
    // systemd 252 (Debian 12): key=value lines in systemd's own property order.
    #[test]
    fn parses_show_output() {
        let f = parse("k", "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nsystemctl_rc=0\n").unwrap();
        assert_eq!(
            (
                f.id.as_str(),
                f.found(),
                f.running(),
                f.unit_file_state.as_str()
            ),
            ("ssh.service", true, true, "enabled")
        );
        let f = parse("k", "Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nsystemctl_rc=0\n").unwrap();
        assert!(!f.found() && !f.running() && f.unit_file_state.is_empty());
        let e = parse("k", "systemctl_rc=1\n").unwrap_err().to_string();
        assert!(e.contains("exit 1") && e.contains("systemd running"), "{e}");
    }
}
