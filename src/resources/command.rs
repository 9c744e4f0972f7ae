//! `command`: the escape hatch — a shell script run as root, guarded so it runs only when needed.
//!
//! ```yaml
//! - command:
//!     run: curl -sfL https://get.k3s.io | INSTALL_K3S_SKIP_START=true sh -
//!     creates: /usr/local/bin/k3s          # skip when this path exists
//! - command:
//!     run: |
//!       kubectl create namespace lab
//!     unless: kubectl get namespace lab    # skip when this check exits 0
//!     chdir: /root
//! handlers:
//!   - name: restart k3s
//!     command: {run: systemctl restart k3s}
//! ```
//!
//! `unless` RUNS DURING `labctl plan` (in the probe, as root): it must only read. It gets no
//! stdin, its output is discarded, and it is stopped after 60 seconds (then the command runs).
//! With both guards, either one skips the command. `creates` takes one literal path (no globs).
//!
//! Without `creates` or `unless` the command runs on every apply and every plan shows it (`!`),
//! so a host never reaches zero drift: give it a guard, or make it a handler. The script is
//! visible in the host's process list, so it must not hold a secret (put the secret in a `file`
//! with mode 0600 and read it from there). `cmd` is accepted as another name for `run`.

use serde::Deserialize;

use super::support::fs::check_path;
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource};
use crate::facts::command::{self, CreatesQuery, Unless, UnlessQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

/// Scripts show in the host's process list, so neither a resource nor a handler may hold one.
const SECRET_REFUSED: &str = "this `command` uses a secret, and scripts show in the host's process list: write the secret with `file` (mode \"0600\") and read it from there";

pub struct Command;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(alias = "cmd")]
    pub run: String,
    #[serde(default)]
    pub creates: Option<String>,
    #[serde(default)]
    pub unless: Option<String>,
    #[serde(default)]
    pub chdir: Option<String>,
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    if spec.run.trim().is_empty() {
        return Err(ResourceError::spec("`run` is empty"));
    }
    if let Some(c) = &spec.creates {
        check_path(c).map_err(|e| ResourceError::spec(format!("creates: {e}")))?;
    }
    if let Some(d) = &spec.chdir {
        check_path(d).map_err(|e| ResourceError::spec(format!("chdir: {e}")))?;
    }
    if spec.unless.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return Err(ResourceError::spec(
            "`unless` is empty (leave it out to run every time)",
        ));
    }
    Ok(())
}

/// The step: the user's script, from `chdir` when given. The newline before the end keeps a
/// trailing `# comment` in the script from swallowing anything the compiler appends.
fn script(spec: &Spec) -> String {
    match &spec.chdir {
        Some(d) => format!("cd -- {} || exit 1\n{}", q(d), spec.run.trim_end()),
        None => spec.run.trim_end().to_string(),
    }
}

impl Resource for Command {
    const KIND: &'static str = "command";
    type Spec = Spec;

    /// Nothing guards the command: it runs on every apply and a plan is never clean.
    fn warnings(spec: &Spec) -> Vec<String> {
        if spec.creates.is_none() && spec.unless.is_none() {
            vec!["has neither `creates` nor `unless`: it runs on every apply and plan never shows zero drift".into()]
        } else {
            vec![]
        }
    }

    /// The script's first line, shortened: enough to recognise it in a plan.
    fn name(spec: &Spec) -> String {
        let first = spec
            .run
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let short: String = first.chars().take(48).collect();
        let more = first.chars().count() > 48 || spec.run.trim().lines().count() > 1;
        if more {
            format!("{short}…")
        } else {
            short
        }
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        let mut v = Vec::new();
        if let Some(c) = &spec.creates {
            v.push(CreatesQuery::new(c).query());
        }
        if let Some(u) = &spec.unless {
            v.push(UnlessQuery::new(u, spec.chdir.as_deref()).query());
        }
        v
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        if cx.secret {
            return Err(ResourceError::Spec(SECRET_REFUSED.into()));
        }
        let mut reasons = Vec::new();
        if let Some(c) = &spec.creates {
            if facts.get(&CreatesQuery::new(c))? {
                return Ok(None);
            }
            reasons.push(format!("{c} does not exist"));
        }
        if let Some(u) = &spec.unless {
            match facts.get(&UnlessQuery::new(u, spec.chdir.as_deref()))? {
                Unless::Status(0) => return Ok(None),
                Unless::Status(124) => reasons.push(format!(
                    "`unless` timed out after {}s",
                    command::UNLESS_TIMEOUT
                )),
                Unless::Status(n) => reasons.push(format!("`unless` exited {n}")),
                Unless::NoDir => {
                    reasons.push("chdir does not exist (yet?), `unless` not run".into())
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("no `creates`/`unless`: runs every time".into());
        }
        Ok(Some(Drift::new(
            Action::Run,
            reasons,
            vec![Step::sh(script(spec))],
        )))
    }

    fn handler(spec: &Spec, secret: bool) -> Result<Vec<Step>, ResourceError> {
        if secret {
            return Err(ResourceError::Handler(SECRET_REFUSED.into()));
        }
        check(spec).map_err(ResourceError::for_handler)?;
        Ok(vec![Step::sh(script(spec))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers built from specs without secrets.
    fn handler(s: &Spec) -> Result<Vec<Step>, String> {
        Command::handler(s, false).map_err(|e| e.to_string())
    }
    use crate::resources::testutil::*;

    const INSTALL: &str = "run: curl -sfL https://get.k3s.io | sh -\ncreates: /usr/local/bin/k3s\n";

    #[test]
    fn creates_absent_runs() {
        let s = spec::<Command>(INSTALL);
        let d = Command::diff(
            &s,
            &facts(&[("creates:/usr/local/bin/k3s", "absent\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (
                Action::Run,
                vec!["/usr/local/bin/k3s does not exist".to_string()]
            )
        );
        assert_eq!(scripts(&d), "curl -sfL https://get.k3s.io | sh -");
        assert!(Command::warnings(&s).is_empty());
    }

    #[test]
    fn creates_present_is_in_sync() {
        let s = spec::<Command>(INSTALL);
        assert!(Command::diff(
            &s,
            &facts(&[("creates:/usr/local/bin/k3s", "present\n")]),
            &cx()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn unless_status_decides() {
        let s = spec::<Command>(
            "cmd: kubectl create namespace lab\nunless: kubectl get namespace lab\nchdir: /root\n",
        );
        let key = UnlessQuery::new("kubectl get namespace lab", Some("/root")).key();
        assert_eq!(
            Command::facts(&s)
                .iter()
                .map(|q| q.key.clone())
                .collect::<Vec<_>>(),
            vec![key.clone()]
        );
        assert!(Command::diff(&s, &facts(&[(&key, "status 0\n")]), &cx())
            .unwrap()
            .is_none());
        let d = Command::diff(&s, &facts(&[(&key, "status 1\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.reasons, vec!["`unless` exited 1"]);
        assert_eq!(
            scripts(&d),
            "cd -- /root || exit 1\nkubectl create namespace lab"
        );
        let d = Command::diff(&s, &facts(&[(&key, "nodir\n")]), &cx())
            .unwrap()
            .unwrap();
        assert!(d.reasons[0].contains("chdir does not exist"));
    }

    #[test]
    fn either_guard_skips() {
        let s = spec::<Command>("run: make install\ncreates: /opt/x\nunless: 'false'\n");
        let key = UnlessQuery::new("false", None).key();
        assert!(Command::diff(
            &s,
            &facts(&[("creates:/opt/x", "present\n"), (&key, "status 1\n")]),
            &cx()
        )
        .unwrap()
        .is_none());
        let d = Command::diff(
            &s,
            &facts(&[("creates:/opt/x", "absent\n"), (&key, "status 1\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            d.reasons,
            vec!["/opt/x does not exist", "`unless` exited 1"]
        );
    }

    #[test]
    fn unguarded_runs_every_time() {
        let s = spec::<Command>("run: |\n  apt-get clean\n  # done\n");
        assert_eq!(
            Command::warnings(&s),
            ["has neither `creates` nor `unless`: it runs on every apply and plan never shows zero drift"]
        );
        assert!(Command::warnings(&spec::<Command>("run: x\ncreates: /x\n")).is_empty());
        assert!(Command::facts(&s).is_empty());
        let d = Command::diff(&s, &facts(&[]), &cx()).unwrap().unwrap();
        assert_eq!(d.reasons, vec!["no `creates`/`unless`: runs every time"]);
        assert_eq!(scripts(&d), "apt-get clean\n# done");
        assert_eq!(Command::name(&s), "apt-get clean…");
    }

    #[test]
    fn as_a_handler_it_just_runs() {
        let s = spec::<Command>("run: systemctl restart k3s\n");
        let steps = handler(&s).unwrap();
        assert!(
            Command::handler(&s, true)
                .unwrap_err()
                .to_string()
                .contains("secret"),
            "a secret never reaches a handler's script"
        );
        assert!(matches!(&steps[..], [Step::Sh { script }] if script == "systemctl restart k3s"));
    }

    #[test]
    fn secrets_and_bad_specs_are_refused() {
        let s = spec::<Command>("run: echo hi\n");
        assert!(Command::diff(&s, &facts(&[]), &secret_cx())
            .unwrap_err()
            .to_string()
            .contains("secret"));
        assert!(check(&spec::<Command>("run: x\ncreates: relative\n"))
            .unwrap_err()
            .to_string()
            .starts_with("creates:"));
        assert!(spec_err::<Command>("run: x\nremoves: /y\n").contains("removes"));
    }
}
