//! `apply` on a terminal: show the plan, ask, then apply exactly that plan (Terraform's way).
//! The answered plan is applied as a saved plan would be, so a host that moved between the
//! question and the answer is refused rather than changed in a way nobody read.

use std::sync::Arc;

use crate::apply::{self, Opts};
use crate::error::{CliError, Exit};
use crate::plan::Plan;
use crate::ui::{self, progress::Progress, prompt};

use super::load::Loaded;
use super::run::{failure_exit, make_plan, runtime};
use super::{Global, Target};

pub enum Confirmed {
    /// Apply this plan. Boxed: the other variant is small.
    Go(Box<Loaded>, Plan),
    /// Stop with this exit; the run log's approval word.
    Stop(Exit, &'static str),
}

pub fn confirm(g: &Global, t: &Target, o: &Opts, l: Loaded) -> Result<Confirmed, CliError> {
    let sh = &g.sh;
    let progress = Progress::new(sh.clone(), "probing", g.json);
    let compiled = Arc::new(l.compiled);
    let hosts = runtime().block_on(apply::plan_hosts(compiled.clone(), o, progress.clone()));
    progress.finish();
    let l = Loaded {
        compiled: Arc::try_unwrap(compiled).unwrap_or_else(|_| unreachable!("tasks are done")),
        ..l
    };
    let plan = make_plan(&l, t, hosts);
    if g.json {
        sh.out(&ui::json_envelope("plan", &plan)?);
    } else {
        sh.out(&ui::render_plan(sh, &plan));
    }
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
