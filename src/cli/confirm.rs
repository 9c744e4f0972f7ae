//! `apply` on a terminal: show the plan, ask, then apply exactly that plan (Terraform's way).
//! The answered plan is applied as a saved plan would be, so a host that moved between the
//! question and the answer is refused rather than changed in a way nobody read. Also the frame
//! the commands that ask share: the refusal without a terminal, `--check` or the question, and
//! (`reboot`, `uninstall-cluster`) the JSON or recap at the end.

use crate::apply::Opts;
use crate::error::{CliError, Exit};
use crate::plan::Plan;
use crate::prompt;

use super::engine::{failure_exit, plan_and_show};
use super::load::Loaded;
use super::{Global, Target};

pub enum Confirmed {
    /// Apply this plan. Boxed: the other variant is small.
    Go(Box<Loaded>, Plan),
    /// Stop with this exit; the run log's approval word.
    Stop(Exit, &'static str),
}

pub fn confirm(g: &Global, t: &Target, o: &Opts, l: Loaded) -> Result<Confirmed, CliError> {
    let sh = &g.sh;
    let (l, plan) = plan_and_show(g, t, o, l)?;
    if !plan.has_changes() {
        if let Some(e) = failure_exit(&plan.hosts, []) {
            return Ok(Confirmed::Stop(e, "none"));
        }
        sh.status("Nothing", "to apply: every host is in the desired state");
        return Ok(Confirmed::Stop(Exit::Ok, "none"));
    }
    let hosts = plan.hosts.iter().filter(|h| !h.changes.is_empty()).count();
    sh.err(&format!(
        "\nlabctl will make the changes above on {hosts} host(s).\n"
    ));
    if prompt::confirm("Apply them? Only 'yes' is accepted") {
        Ok(Confirmed::Go(Box::new(l), plan))
    } else {
        sh.status("Cancelled", "nothing was changed");
        Ok(Confirmed::Stop(Exit::Refused, "declined"))
    }
}

/// The rule `apply`, `reboot`, `remove-node` and `uninstall-cluster` share, checked before
/// anything is read or contacted: with no terminal to ask on, a run nobody approved (`approved`:
/// --yes, --check, a saved plan) is refused, exit 3. The message is "refusing to `action`
/// without confirmation: stdin is not a terminal", then `help` as its `= help:` line.
pub(super) fn refuse_without_terminal(
    approved: bool,
    action: &str,
    help: &str,
) -> Result<(), CliError> {
    if approved || prompt::interactive() {
        return Ok(());
    }
    Err(CliError::new(
        Exit::BadInput,
        format!(
            "refusing to {action} without confirmation: stdin is not a terminal\n  = help: {help}"
        ),
    ))
}

/// How `reboot` and `uninstall-cluster` end: `{"hosts": reports}` under --json, else their
/// `recap`.
pub(super) fn print_reports<T: serde::Serialize>(
    g: &Global,
    command: &str,
    reports: &[T],
    recap: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if g.json {
        g.sh.out(&crate::ui::json_envelope(
            command,
            &serde_json::json!({ "hosts": reports }),
        )?);
    } else {
        g.sh.out(&recap());
    }
    Ok(())
}

/// What `reboot`, `remove-node` and `uninstall-cluster` share before they touch anything: with
/// `check`, print the steps (`plan`, or `json()` under --json) and stop; without `yes`, show
/// them followed by `will` (what is about to happen, or nothing) and ask `question`.
/// `Some(exit)`: stop here with it; `None`: go on.
pub(super) fn check_or_ask(
    g: &Global,
    command: &str,
    (check, yes): (bool, bool),
    (plan, will): (&str, &str),
    json: impl FnOnce() -> serde_json::Value,
    question: &str,
) -> Result<Option<Exit>, CliError> {
    let sh = &g.sh;
    if check {
        if g.json {
            sh.out(&crate::ui::json_envelope(command, &json())?);
        } else {
            sh.out(plan);
            sh.status("Check", "nothing was changed");
        }
        return Ok(Some(Exit::Ok));
    }
    if !yes {
        sh.err(&format!("{plan}{will}"));
        if !prompt::confirm(question) {
            sh.status("Cancelled", "nothing was changed");
            return Ok(Some(Exit::Refused));
        }
    }
    Ok(None)
}
