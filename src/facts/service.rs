//! systemd unit facts: `systemctl show` of the unit's load, activity and enablement.

use super::{parse_err, q, Fact, FactError, Merge};

/// A systemd state word as an enum: the words labctl decides on are variants, any other word
/// systemd prints is kept as `Other` (and shown as printed).
macro_rules! state_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub enum $name {
            $($variant,)*
            /// A word systemd printed that labctl has no rule for (or an empty answer).
            #[default]
            Unknown,
            Other(String),
        }

        impl $name {
            pub fn parse(word: &str) -> Self {
                match word {
                    $($word => $name::$variant,)*
                    "" => $name::Unknown,
                    other => $name::Other(other.to_string()),
                }
            }
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)*
                    $name::Unknown => "",
                    $name::Other(w) => w,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

state_enum!(
    /// `LoadState`.
    LoadState { Loaded = "loaded", NotFound = "not-found", Masked = "masked" }
);
state_enum!(
    /// `ActiveState`.
    ActiveState {
        Active = "active",
        Inactive = "inactive",
        Failed = "failed",
        Activating = "activating",
        Deactivating = "deactivating",
        Reloading = "reloading",
    }
);
state_enum!(
    /// `UnitFileState`; `Unknown` when empty (no unit file, e.g. not found).
    UnitFileState {
        Enabled = "enabled",
        EnabledRuntime = "enabled-runtime",
        Linked = "linked",
        LinkedRuntime = "linked-runtime",
        Alias = "alias",
        Masked = "masked",
        MaskedRuntime = "masked-runtime",
        Static = "static",
        Indirect = "indirect",
        Disabled = "disabled",
        Generated = "generated",
        Transient = "transient",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServiceFact {
    /// The unit's real name (`ssh.service` when asked about the alias `sshd`).
    pub id: String,
    pub load_state: LoadState,
    pub active_state: ActiveState,
    pub sub_state: String,
    pub unit_file_state: UnitFileState,
}

impl ServiceFact {
    pub fn found(&self) -> bool {
        self.load_state != LoadState::NotFound
    }
    /// Running, or on its way there: starting it again would change nothing.
    pub fn running(&self) -> bool {
        matches!(
            self.active_state,
            ActiveState::Active | ActiveState::Activating | ActiveState::Reloading
        )
    }
    /// Masked, for good or until reboot: it can be neither enabled nor started.
    pub fn masked(&self) -> bool {
        self.load_state == LoadState::Masked
            || matches!(
                self.unit_file_state,
                UnitFileState::Masked | UnitFileState::MaskedRuntime
            )
    }
}

/// One unit's state. Every unit of a probe is asked in ONE `systemctl show` (`Merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQuery {
    pub name: String,
}

impl ServiceQuery {
    pub fn new(name: &str) -> Self {
        ServiceQuery {
            name: name.to_string(),
        }
    }
}

impl Fact for ServiceQuery {
    type Output = ServiceFact;
    fn key(&self) -> String {
        format!("service:{}", self.name)
    }
    fn script(&self) -> String {
        merged_script(&[&self.name])
    }
    fn parse(&self, out: &str) -> Result<ServiceFact, FactError> {
        parse(&self.key(), out)
    }
    fn merge(&self) -> Option<Merge> {
        Some(Merge {
            family: "service",
            arg: self.name.clone(),
            script: merged_script,
            split,
        })
    }
}

/// `show` answers even for units that do not exist (LoadState=not-found), one block per unit in
/// the order asked, blocks separated by an empty line; without a running systemd it prints
/// nothing, which `parse` reports with the exit status.
pub fn merged_script(units: &[&str]) -> String {
    let list: Vec<String> = units.iter().map(|u| q(u)).collect();
    format!(
        "systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState -- {} 2>/dev/null; echo \"systemctl_rc=$?\"",
        list.join(" ")
    )
}

/// One block per unit, each followed by the shared `systemctl_rc=` line.
pub fn split(units: &[&str], out: &str) -> Result<Vec<String>, super::SplitError> {
    let rc = out
        .lines()
        .find(|l| l.starts_with("systemctl_rc="))
        .ok_or("answer cut short")?;
    let blocks: Vec<String> = out
        .split("\n\n")
        .map(|b| {
            b.lines()
                .filter(|l| !l.is_empty() && !l.starts_with("systemctl_rc="))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        })
        .filter(|b| !b.is_empty())
        .collect();
    if blocks.is_empty() {
        // No systemd: every unit reads the exit status alone.
        return Ok(vec![format!("{rc}\n"); units.len()]);
    }
    if blocks.len() != units.len() {
        return Err(format!(
            "systemctl show answered {} of {} units",
            blocks.len(),
            units.len()
        )
        .into());
    }
    Ok(blocks.into_iter().map(|b| format!("{b}{rc}\n")).collect())
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
                f.load_state = LoadState::parse(&v)
            }
            "ActiveState" => f.active_state = ActiveState::parse(&v),
            "SubState" => f.sub_state = v,
            "UnitFileState" => f.unit_file_state = UnitFileState::parse(&v),
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

/// Answers as the probe gives them, for tests of the types that read unit facts.
#[cfg(test)]
pub mod fixture {
    pub fn unit(id: &str, load: &str, active: &str, sub: &str, file: &str) -> String {
        format!("Id={id}\nLoadState={load}\nActiveState={active}\nSubState={sub}\nUnitFileState={file}\nsystemctl_rc=0\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_valid_sh_and_always_answers() {
        let qy = ServiceQuery::new("ssh.service");
        crate::facts::testutil::assert_valid_sh(&qy.script());
        let text = crate::facts::testutil::run_sh(&qy.script());
        assert!(text.contains("systemctl_rc="), "{text}");
        let parts = split(&["ssh.service"], &text).unwrap();
        assert!(parts[0].contains("systemctl_rc="));
    }

    #[test]
    fn splits_one_show_of_many_units() {
        let out = "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n\nId=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nsystemctl_rc=0\n";
        let parts = split(&["ssh", "nope"], out).unwrap();
        assert!(parse("k", &parts[0]).unwrap().running());
        assert!(!parse("k", &parts[1]).unwrap().found());
        assert_eq!(
            parts[1],
            fixture::unit("nope.service", "not-found", "inactive", "dead", "")
        );
        assert!(split(&["a", "b", "c"], out).is_err());
        let none = split(&["a", "b"], "systemctl_rc=1\n").unwrap();
        assert!(parse("k", &none[1])
            .unwrap_err()
            .to_string()
            .contains("exit 1"));
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
                f.unit_file_state.clone()
            ),
            ("ssh.service", true, true, UnitFileState::Enabled)
        );
        let f = parse("k", "Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nsystemctl_rc=0\n").unwrap();
        assert!(!f.found() && !f.running() && f.unit_file_state == UnitFileState::Unknown);
        let e = parse("k", "systemctl_rc=1\n").unwrap_err().to_string();
        assert!(e.contains("exit 1") && e.contains("systemd running"), "{e}");
    }
}
