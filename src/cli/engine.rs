//! The engine as `plan` and `apply` drive it (and `facts`, `unlock`): its options and runtime,
//! probing and showing the plan, and the exit code of host-level failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::timings::{Recorder, Report, RunCost};
use crate::apply::{self, Opts};
use crate::error::{CliError, Exit};
use crate::plan::{HostError, HostPlan, Plan, PLAN_FORMAT};
use crate::site::select::Compiled;
use crate::ui::{self, progress::Progress};

use super::load::Loaded;
use super::{Conn, Global, Target};

pub(super) fn opts(c: &Conn, l: &Loaded) -> Opts {
    Opts {
        forks: c.forks,
        serial: c.serial,
        max_fail_percent: c.max_fail_percent,
        interrupted: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        secrets: Arc::new(l.compiled.secret_strings.clone()),
        host_keys: c.host_key_policy(),
        connect_timeout: Duration::from_secs(c.connect_timeout),
        step_timeout: Duration::from_secs(c.step_timeout),
        hash_key: l.hash_key,
        run: Arc::new(apply::RunInfo::new()),
        timings: None,
    }
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(super) fn make_plan(l: &Loaded, t: &Target, hosts: Vec<HostPlan>) -> Plan {
    Plan {
        format: PLAN_FORMAT,
        site: t.site.display().to_string(),
        inventory: t.inventory.display().to_string(),
        selection: l.selection.clone(),
        hosts,
    }
}

/// Probe every selected host, print the plan (text or the JSON envelope): `plan`, and `apply`'s
/// question on a terminal.
pub(super) fn plan_and_show(
    g: &Global,
    t: &Target,
    o: &Opts,
    l: Loaded,
) -> Result<(Loaded, Plan), CliError> {
    let (l, plan) = plan_all(g, t, o, l);
    show_plan(g, &plan, None)?;
    Ok((l, plan))
}

/// Probe every selected host: the plan, not shown yet.
pub(super) fn plan_all(g: &Global, t: &Target, o: &Opts, mut l: Loaded) -> (Loaded, Plan) {
    let sh = &g.sh;
    let progress = Progress::new(sh.clone(), "probing", g.json);
    let compiled = Arc::new(std::mem::replace(&mut l.compiled, Compiled::empty()));
    let hosts = runtime().block_on(apply::plan_hosts(
        &l.sources,
        compiled.clone(),
        o,
        progress.clone(),
    ));
    progress.finish();
    l.compiled = Arc::try_unwrap(compiled).unwrap_or_else(|_| unreachable!("tasks are done"));
    let plan = make_plan(&l, t, hosts);
    (l, plan)
}

/// Print the plan: text, or the JSON envelope (with `timings` when given).
pub(super) fn show_plan(
    g: &Global,
    plan: &Plan,
    timings: Option<&Timings>,
) -> Result<(), CliError> {
    let sh = &g.sh;
    if g.json {
        sh.out(&ui::json_envelope_with(
            "plan",
            plan,
            timings.map(|t| t.report()).as_ref(),
        )?);
    } else {
        sh.out(&ui::render_plan(sh, plan));
        if let Some(t) = timings {
            sh.out(&ui::timings::render(&t.report()));
        }
    }
    Ok(())
}

/// `--timings` for one command: its start, when loading ended, and the engine's recorder.
pub(super) struct Timings {
    started: Instant,
    loaded: Duration,
    order: Vec<String>,
    pub recorder: Arc<Recorder>,
}

impl Timings {
    /// Started at the command's start (`started`); loading is over now.
    pub fn new(started: Instant, l: &Loaded) -> Timings {
        Timings {
            started,
            loaded: started.elapsed(),
            order: l.compiled.hosts.iter().map(|h| h.host.clone()).collect(),
            recorder: Arc::default(),
        }
    }

    /// What was recorded, with the process's CPU so far.
    pub fn report(&self) -> Report {
        let cost = RunCost::now(self.started.elapsed(), self.loaded);
        Report::build(&self.recorder.laps(), &self.order, cost)
    }
}

/// Exit code for host-level failures and refusals.
pub(super) fn failure_exit<'a>(
    hosts: &'a [HostPlan],
    refused: impl IntoIterator<Item = &'a HostError>,
) -> Option<Exit> {
    HostError::exit_of(hosts.iter().filter_map(|h| h.error.as_ref()).chain(refused))
}
