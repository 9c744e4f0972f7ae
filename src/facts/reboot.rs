//! A pending reboot: Debian's `/run/reboot-required` marker, which packages whose new version
//! only takes effect after a reboot (the kernel, libc, systemd, …) write from their postinst, and
//! `/run/reboot-required.pkgs`, to which each of them appends its name. Both live in /run, so a
//! reboot clears them.
//!
//! labctl never reboots a host on its own: the plan reports the marker (a notice and a JSON
//! field) so the operator chooses when: `labctl reboot`, or a role's `reboot` resource or
//! handler. Such a resource asks for the reboot by writing [`REQUEST`] (also in /run, so the
//! reboot clears it too); the apply reboots the hosts that asked once every host converged. A
//! request left by a run that stopped before its reboots is reported here as well.

use serde::{Deserialize, Serialize};

use super::{Fact, FactError};

pub const KEY: &str = "reboot-required";
pub const MARKER: &str = "/run/reboot-required";
pub const PACKAGES: &str = "/run/reboot-required.pkgs";
/// A labctl run's own request (a `reboot` resource or handler), one reason per line.
pub const REQUEST: &str = "/run/labctl/reboot-requested";

fn yes() -> bool {
    true
}

/// A reboot the host waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRequired {
    /// Debian's marker is there (false: only a labctl request is). Plan files written before
    /// requests existed knew only the marker.
    #[serde(default = "yes")]
    pub required: bool,
    /// When the marker was written (its mtime, UTC, `2026-12-07T14:00:00Z`), if the host said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The packages that asked for it, each once, in the order they asked; empty when the
    /// marker came without a list (some packages only touch the marker).
    pub packages: Vec<String>,
    /// Reasons a labctl run asked for a reboot that has not happened yet, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested: Vec<String>,
}

/// The marker alone: no time, no list, no request.
impl Default for RebootRequired {
    fn default() -> Self {
        RebootRequired {
            required: true,
            since: None,
            packages: vec![],
            requested: vec![],
        }
    }
}

impl RebootRequired {
    /// One line for the plan and the apply recap.
    pub fn note(&self) -> String {
        let mut s = String::new();
        if self.required {
            s.push_str("reboot required");
            if let Some(since) = &self.since {
                s.push_str(&format!(" since {since}"));
            }
            if !self.packages.is_empty() {
                s.push_str(&format!(" by {}", self.packages.join(", ")));
            }
            s.push_str(&format!(" ({MARKER}; labctl never reboots: choose when)"));
        }
        if !self.requested.is_empty() {
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str(&format!(
                "reboot asked for by labctl ({}) and not done yet: `labctl reboot HOST`",
                self.requested.join(", ")
            ));
        }
        s
    }
}

/// Whether the host waits for a reboot (one per host, asked by every plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebootQuery;

impl Fact for RebootQuery {
    type Output = Option<RebootRequired>;
    fn key(&self) -> String {
        KEY.into()
    }
    /// Shell builtins only, unless the marker exists (then one `date` for its mtime): the
    /// usual answer, no reboot pending, costs no process.
    fn script(&self) -> String {
        format!(
            "if [ -e {MARKER} ]; then printf 'required %s\\n' \"$(date -u -r {MARKER} +%Y-%m-%dT%H:%M:%SZ 2>/dev/null)\"; \
             if [ -r {PACKAGES} ]; then while IFS= read -r __rr || [ -n \"$__rr\" ]; do printf 'pkg %s\\n' \"$__rr\"; done < {PACKAGES}; fi; fi; \
             if [ -r {REQUEST} ]; then while IFS= read -r __rr || [ -n \"$__rr\" ]; do printf 'requested %s\\n' \"$__rr\"; done < {REQUEST}; fi; true"
        )
    }
    /// No `exit`, `__`-prefixed variable: runs in the probe's own shell.
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<Self::Output, FactError> {
        parse(out)
    }
}

pub fn parse(out: &str) -> Result<Option<RebootRequired>, FactError> {
    let mut r: Option<RebootRequired> = None;
    for line in out.lines() {
        if let Some(since) = line.strip_prefix("required ") {
            let since = since.trim();
            r = Some(RebootRequired {
                since: (!since.is_empty()).then(|| since.to_string()),
                ..RebootRequired::default()
            });
        } else if line == "required" {
            r = Some(RebootRequired::default());
        } else if let Some(why) = line.strip_prefix("requested") {
            // After the marker's lines, if any: a request alone is no `required`.
            let r = r.get_or_insert_with(|| RebootRequired {
                required: false,
                ..RebootRequired::default()
            });
            let why: String = why.trim().chars().filter(|c| !c.is_control()).collect();
            let why = if why.is_empty() {
                "no reason given".to_string()
            } else {
                why
            };
            if !r.requested.contains(&why) {
                r.requested.push(why);
            }
        } else if let Some(p) = line.strip_prefix("pkg ") {
            let Some(r) = r.as_mut() else {
                return Err(super::unexpected(KEY, line));
            };
            // The list is a plain file anything running as root may append to: keep a name
            // printable so it cannot garble the plan's terminal output.
            let p: String = p.trim().chars().filter(|c| !c.is_control()).collect();
            if !p.is_empty() && !r.packages.contains(&p) {
                r.packages.push(p);
            }
        } else if line == "pkg" || line.trim().is_empty() {
            // An empty line of the list.
        } else {
            return Err(super::unexpected(KEY, line));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::testutil::run_sh;

    #[test]
    fn the_note_says_since_when_and_why() {
        let r = RebootRequired {
            since: Some("2026-12-07T14:00:05Z".into()),
            packages: vec!["libc6".into(), "linux-image-amd64".into()],
            ..RebootRequired::default()
        };
        assert_eq!(
            r.note(),
            "reboot required since 2026-12-07T14:00:05Z by libc6, linux-image-amd64 \
             (/run/reboot-required; labctl never reboots: choose when)"
        );
        assert_eq!(
            RebootRequired::default().note(),
            "reboot required (/run/reboot-required; labctl never reboots: choose when)"
        );
    }

    #[test]
    fn no_marker_no_reboot() {
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn the_packages_that_asked_once_each_in_order() {
        // Debian 12 after a kernel and a libc upgrade: linux-image's postinst and libc6's both
        // append, and an upgrade run twice appends twice.
        let r = parse(
            "required 2026-12-07T14:00:05Z\npkg linux-image-6.1.0-28-amd64\npkg libc6\npkg linux-image-6.1.0-28-amd64\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.since.as_deref(), Some("2026-12-07T14:00:05Z"));
        assert_eq!(r.packages, ["linux-image-6.1.0-28-amd64", "libc6"]);
    }

    #[test]
    fn a_marker_without_a_list_or_a_time() {
        assert_eq!(
            parse("required \n").unwrap(),
            Some(RebootRequired::default())
        );
        assert_eq!(
            parse("required\npkg \npkg\n").unwrap(),
            Some(RebootRequired::default())
        );
    }

    #[test]
    fn a_labctl_request_alone_or_beside_the_marker() {
        let r = parse("requested handler base/reboot\nrequested handler base/reboot\nrequested \n")
            .unwrap()
            .unwrap();
        assert!(!r.required);
        assert_eq!(r.requested, ["handler base/reboot", "no reason given"]);
        assert_eq!(
            r.note(),
            "reboot asked for by labctl (handler base/reboot, no reason given) and not done yet: `labctl reboot HOST`"
        );
        let both = parse("required 2026-12-07T14:00:05Z\npkg libc6\nrequested r/reboot:host\n")
            .unwrap()
            .unwrap();
        assert!(both.required);
        assert_eq!(both.packages, ["libc6"]);
        assert!(
            both.note().starts_with("reboot required since 2026-12-07T14:00:05Z by libc6 (")
                && both.note().ends_with("; reboot asked for by labctl (r/reboot:host) and not done yet: `labctl reboot HOST`"),
            "{}",
            both.note()
        );
    }

    #[test]
    fn a_plan_file_from_before_requests_reads_as_the_marker() {
        let r: RebootRequired = serde_json::from_str(r#"{"packages":["libc6"]}"#).unwrap();
        assert!(r.required && r.requested.is_empty());
        let json = serde_json::to_value(RebootRequired::default()).unwrap();
        assert_eq!(json, serde_json::json!({"required": true, "packages": []}));
    }

    #[test]
    fn control_characters_never_reach_the_plan() {
        let r = parse("required x\npkg evil\u{1b}[2Jname\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.packages, ["evil[2Jname"]);
    }

    #[test]
    fn what_the_snippet_never_prints_is_an_error() {
        let e = parse("pkg libc6\n").unwrap_err().to_string();
        assert!(
            e.contains("reboot-required") && e.contains("pkg libc6"),
            "{e}"
        );
        assert!(parse("required x\nsomething else\n").is_err());
    }

    /// The snippet against real files: the paths are fixed, so it runs on a copy of itself
    /// pointed at a temp dir.
    #[test]
    fn the_snippet_reads_the_marker_and_the_list() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("reboot-required");
        let pkgs = d.path().join("reboot-required.pkgs");
        let request = d.path().join("reboot-requested");
        let script = RebootQuery
            .script()
            .replace(PACKAGES, &pkgs.display().to_string())
            .replace(MARKER, &marker.display().to_string())
            .replace(REQUEST, &request.display().to_string());
        assert_eq!(parse(&run_sh(&script)).unwrap(), None);

        std::fs::write(&marker, "*** System restart required ***\n").unwrap();
        let r = parse(&run_sh(&script)).unwrap().unwrap();
        assert!(r.packages.is_empty());
        let since = r.since.expect("the marker's mtime");
        assert!(
            since.len() == 20 && since.ends_with('Z') && since.as_bytes()[10] == b'T',
            "{since}"
        );

        // The last line without a newline still counts.
        std::fs::write(&pkgs, "libc6\nlinux-image-amd64\nlibc6").unwrap();
        let r = parse(&run_sh(&script)).unwrap().unwrap();
        assert_eq!(r.packages, ["libc6", "linux-image-amd64"]);

        // A list left without its marker is no pending reboot.
        std::fs::remove_file(&marker).unwrap();
        assert_eq!(parse(&run_sh(&script)).unwrap(), None);

        // labctl's own request, as the `reboot` resource writes it.
        std::fs::write(&request, "handler base/reboot\n").unwrap();
        let r = parse(&run_sh(&script)).unwrap().unwrap();
        assert!(!r.required);
        assert_eq!(r.requested, ["handler base/reboot"]);
    }
}
