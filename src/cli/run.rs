//! `plan`, `apply`, `check`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply;
use crate::error::{CliError, Exit};
use crate::plan::{HostPlan, Plan, Recap, PLAN_FORMAT};
use crate::site::select::Compiled;
use crate::ui::{self, progress::Progress};

use super::engine::{failure_exit, opts, plan_all, runtime, show_plan, Timings};
use super::load;
use super::{Conn, Global, Target};

pub fn plan(
    g: &Global,
    t: &Target,
    c: &Conn,
    out: Option<&Path>,
    timings: bool,
) -> Result<Exit, CliError> {
    let started = Instant::now();
    let sh = &g.sh;
    let l = load::load(sh, g, t, false)?;
    if out.is_some() {
        l.lasting_key()?;
    }
    let mut o = opts(c, &l);
    let timings = timings.then(|| Timings::new(started, &l));
    o.timings = timings.as_ref().map(|t| t.recorder.clone());
    let (_, plan) = plan_all(g, t, &o, l);
    show_plan(g, &plan, timings.as_ref())?;
    if let Some(path) = out {
        // Scrubbed like everything printed: a last line of defence if a resource ever put a
        // secret in a reason or diff.
        let json = sh.scrub(&serde_json::to_string_pretty(&plan)?).into_bytes();
        crate::fsutil::write_atomic(path, &json, 0o644, false)
            .map_err(|e| anyhow::anyhow!("cannot write plan file {}: {e}", path.display()))?;
        sh.status("Saved", &format!("plan to {}", path.display()));
    }
    if let Some(e) = failure_exit(&plan.hosts, []) {
        return Ok(e);
    }
    Ok(if plan.has_changes() {
        Exit::Drift
    } else {
        Exit::Ok
    })
}

/// How `apply` was approved (the `--yes` flag, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approve {
    Yes,
    Ask,
}

/// `apply`, recorded in the project's run log whatever the outcome.
pub fn apply(
    g: &Global,
    t: &Target,
    c: &Conn,
    saved: Option<&Path>,
    approve: Approve,
    timings: bool,
) -> Result<Exit, CliError> {
    let t0 = Instant::now();
    // Refused before anything is read or contacted (Terraform's rule): a script that means to
    // change hosts says so with --yes, or applies a plan someone saved and read.
    super::confirm::refuse_without_terminal(
        saved.is_some() || approve == Approve::Yes,
        "apply",
        "pass --yes to apply without asking, or `labctl plan --out FILE` and then `labctl apply --plan FILE`",
    )?;
    let (mut run, started) = super::history::Run::start(t);
    let r = apply_run(g, t, c, saved, approve, &mut run, timings.then_some(t0));
    run.exit = match &r {
        Ok(e) => e.code(),
        Err(e) => e.exit().code(),
    };
    super::history::append(&g.sh, run, started);
    r
}

fn apply_run(
    g: &Global,
    t: &Target,
    c: &Conn,
    saved: Option<&Path>,
    approve: Approve,
    run: &mut super::history::Run,
    timed: Option<Instant>,
) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let mut target = t.clone();
    let saved_plan = match saved {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read plan file {}: {e}", p.display()))?;
            let plan: Plan = match serde_json::from_str(&text) {
                Ok(p) => p,
                Err(e) => {
                    return Err(CliError::new(
                        Exit::BadInput,
                        format!(
                            "{}:{}:{}: not a labctl plan file: {e}",
                            p.display(),
                            e.line(),
                            e.column()
                        ),
                    ));
                }
            };
            if plan.format != PLAN_FORMAT {
                return Err(CliError::new(
                    Exit::BadInput,
                    format!(
                    "{}: plan format {} is not supported by this labctl (expects {PLAN_FORMAT})",
                    p.display(),
                    plan.format
                ),
                ));
            }
            // The saved plan decides what is selected: the same site, inventory and selectors.
            target.site = plan.site.clone().into();
            target.inventory = plan.inventory.clone().into();
            target.select = plan.selection.select.clone();
            Some(plan)
        }
        None => None,
    };
    if let Some(p) = saved {
        run.approval = format!("--plan {}", p.display());
        run.site = target.site.display().to_string();
        run.inventory = target.inventory.display().to_string();
        run.selection.tags = target.select.tags.clone();
        run.selection.skip_tags = target.select.skip_tags.clone();
        run.selection.limit = target.select.limit.clone();
    }
    let l = load::load(sh, g, &target, false)?;
    if let Some(p) = &saved_plan {
        l.lasting_key()?;
        if p.selection.extra_vars != l.selection.extra_vars {
            return Err(CliError::new(
                Exit::Refused,
                "the saved plan was made with different -e extra vars; pass the same ones",
            ));
        }
    }
    let mut o = opts(c, &l);
    let timings = timed.map(|started| Timings::new(started, &l));
    o.timings = timings.as_ref().map(|t| t.recorder.clone());
    run.identify(&o.run);
    let (l, saved_plan) = match (saved_plan, approve) {
        (Some(p), _) => (l, Some(p)),
        (None, Approve::Yes) => {
            run.approval = "--yes".into();
            (l, None)
        }
        (None, Approve::Ask) => match super::confirm::confirm(g, &target, &o, l)? {
            super::confirm::Confirmed::Go(l, plan) => {
                run.approval = "prompt".into();
                (*l, Some(plan))
            }
            super::confirm::Confirmed::Stop(exit, approval) => {
                run.approval = approval.into();
                return Ok(exit);
            }
        },
    };
    let progress = Progress::new(sh.clone(), "applying", g.json);
    let mut l = l;
    let compiled = Arc::new(std::mem::replace(&mut l.compiled, Compiled::empty()));
    let rt = runtime();
    let flag = o.interrupted.clone();
    let sh2 = sh.clone();
    // First Ctrl-C: start no new step, let running ones finish, still fire notified handlers.
    // Second: stop now (atomic writes mean no half-written file is left either way).
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            sh2.warn("interrupted: finishing running steps and notified handlers; Ctrl-C again to stop now");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(Exit::Interrupted.code());
            }
        }
    });
    let results = rt.block_on(apply::apply_hosts(
        &l.sources,
        compiled,
        &o,
        progress.clone(),
        saved_plan.map(Arc::new),
    ));
    progress.finish();
    let (plans, recaps): (Vec<HostPlan>, Vec<Recap>) =
        results.into_iter().map(|o| (o.plan, o.recap)).unzip();
    run.hosts_from(&recaps);
    let report = timings.as_ref().map(|t| t.report());
    if !g.json {
        sh.out(&ui::render_recap(sh, &recaps));
        if let Some(r) = &report {
            sh.out(&ui::timings::render(r));
        }
    }
    let interrupted = o.interrupted.load(std::sync::atomic::Ordering::SeqCst);
    let reboots = match to_reboot(&recaps, interrupted) {
        hosts if hosts.is_empty() => vec![],
        hosts => reboot_at_the_end(g, &target.inventory, &hosts, &o)?,
    };
    if g.json {
        let mut data = serde_json::json!({ "hosts": recaps });
        if !reboots.is_empty() {
            data["reboots"] = serde_json::to_value(&reboots)?;
        }
        sh.out(&ui::json_envelope_with("apply", &data, report.as_ref())?);
    } else if !reboots.is_empty() {
        sh.out(&super::reboot::recap(sh, &reboots));
    }
    if interrupted {
        return Ok(Exit::Interrupted);
    }
    if let Some(e) = failure_exit(&plans, recaps.iter().filter_map(|r| r.refused.as_ref())) {
        return Ok(e);
    }
    if recaps.iter().any(|r| !r.failed.is_empty()) {
        return Ok(Exit::Failed);
    }
    Ok(crate::reboot::exit_of(&reboots))
}

/// The hosts a `reboot` resource or handler asked to reboot, in inventory order: those whose run
/// went through. A host that failed keeps its request (`/run/labctl/reboot-requested`), which
/// the next plan shows; after Ctrl-C nothing reboots.
fn to_reboot(recaps: &[Recap], interrupted: bool) -> Vec<String> {
    if interrupted {
        return vec![];
    }
    recaps
        .iter()
        .filter(|r| {
            r.reboot.is_some() && r.failed.is_empty() && r.refused.is_none() && !r.unreachable
        })
        .map(|r| r.host.clone())
        .collect()
}

/// The reboots a run asked for, once every host converged: `labctl reboot`'s rollout over
/// those hosts (one at a time, k3s nodes drained first, a host that does not come back stops
/// the rest).
fn reboot_at_the_end(
    g: &Global,
    inventory: &Path,
    hosts: &[String],
    o: &apply::Opts,
) -> Result<Vec<crate::reboot::HostReport>, CliError> {
    let (targets, server) = super::reboot::targets(g, inventory, &hosts.join(":"))?;
    let ro = crate::reboot::Opts {
        host_keys: o.host_keys,
        connect_timeout: o.connect_timeout,
        drain_timeout: Duration::from_secs(crate::reboot::DRAIN_TIMEOUT_SECS),
        timeout: Duration::from_secs(crate::reboot::TIMEOUT_SECS),
        poll: Duration::from_secs(2),
        record: o.run.record(),
    };
    if !g.json {
        g.sh.status(
            "Reboot",
            &format!("{} asked for by the run, one at a time", hosts.join(", ")),
        );
    }
    Ok(super::reboot::roll(&g.sh, &targets, server.as_ref(), &ro))
}

pub fn check(g: &Global, t: &Target) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let l = load::load(sh, g, t, true)?;
    let hosts = l.compiled.hosts.len();
    let resources: usize = l.compiled.hosts.iter().map(|h| h.items().count()).sum();
    let warnings: std::collections::BTreeSet<String> = l
        .compiled
        .hosts
        .iter()
        .flat_map(|h| h.items())
        .flat_map(|i| {
            i.inst
                .warnings()
                .into_iter()
                .map(|w| format!("{} {w}", i.id))
        })
        .collect();
    for w in &warnings {
        sh.warn(w);
    }
    // Said, not hidden: what still reads a host's facts is checked for real only by plan/apply.
    let waiting: std::collections::BTreeSet<String> = l
        .compiled
        .hosts
        .iter()
        .flat_map(|h| h.items())
        .filter(|i| i.inst.awaits().is_some())
        .map(|i| i.id.to_string())
        .collect();
    let root = t.site.parent().filter(|p| !p.as_os_str().is_empty());
    let rendered_ok = super::render::gate_for_check(
        g,
        t,
        root.unwrap_or(std::path::Path::new(".")),
        &l.compiled,
    )?;
    if !rendered_ok {
        return Err(CliError::Reported(Exit::BadInput));
    }
    if g.json {
        sh.out(&ui::json_envelope(
            "check",
            &serde_json::json!({"ok": true, "hosts": hosts, "resources": resources, "roles": l.sources.site.roles.len(), "await_facts": waiting}),
        )?);
    } else {
        if !waiting.is_empty() {
            sh.status(
                "Facts",
                &format!(
                    "not gathered by check: {} resource(s) render host facts as <fact:NAME> and are checked per host by plan/apply: {}",
                    waiting.len(),
                    waiting.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        sh.status(
            "Checked",
            &format!(
                "{} ({} roles, {hosts} hosts, {resources} resources rendered): no problems",
                t.site.display(),
                l.sources.site.roles.len()
            ),
        );
    }
    Ok(Exit::Ok)
}
