//! One host's part of a run: probe and diff it (`plan`), then, for `apply`, check a saved plan,
//! take the host lock and run its changes.

use super::changes::execute_all;
use super::diff::{self, Planned};
use super::probe::{gather, gather_missing, host_queries};
use super::timings::Split;
use super::{Events, HostCx, Opts};
use crate::facts::{self, Facts};
use crate::plan::{Failure, HostError, HostOutcome, HostPlan, Plan, Recap, ResourceId};
use crate::site::select::HostWork;
use crate::transport::Transport;

/// Plan one host over a connection of its own (no fact gathering for templates).
pub(super) async fn plan_one(work: &HostWork, opts: &Opts, ev: &dyn Events) -> HostPlan {
    let clock = opts.time(Split::Remote);
    let t = Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await;
    opts.lap(clock, Some(&work.host), || {
        super::timings::connect_label(&t)
    });
    let t = match t {
        Ok(t) => t,
        Err(e) => return HostPlan::failed(&work.host, e.into()),
    };
    let cx = HostCx {
        work,
        play: None,
        opts,
        ev,
        t: &t,
    };
    let r = probe_and_plan(&cx, None).await;
    let clock = opts.time(Split::Remote);
    t.close().await;
    opts.lap(clock, Some(&work.host), || "close".into());
    match r {
        Ok((plan, _)) => plan,
        Err(e) => HostPlan::failed(&work.host, e),
    }
}

/// Probe once and diff every item: the host's plan, and each item's verdict in item order.
/// Err: the host as a whole could not be planned (probe failed, unsupported OS). `pre`: the
/// answers of the host's first probe (made before compiling with its facts); only what they
/// lack is asked, over the same connection.
pub(super) async fn probe_and_plan(
    cx: &HostCx<'_>,
    pre: Option<Facts>,
) -> Result<(HostPlan, Vec<Planned>), HostError> {
    let host = Some(cx.work.host.as_str());
    let items = cx.items();
    let queries = host_queries(&items);
    let clock = cx.opts.time(Split::Via(cx.t));
    let facts = match pre {
        None => gather(cx.t, &queries, cx.opts).await?,
        Some(have) => gather_missing(cx.t, have, &queries, cx.opts).await?,
    };
    cx.opts.lap(clock, host, || "probe".into());
    let clock = cx.opts.time(Split::Cpu);
    diff::check_os(&facts)?;
    let planned = diff::plan_items(&items, &facts, &cx.opts.keys());
    let mut plan = diff::host_plan(&cx.work.host, &planned);
    // Handlers an interrupted run left pending on the host are changes too (rule 6).
    let journal = facts.get(&facts::journal::JournalQuery)?;
    plan.changes.extend(diff::pending_handlers(
        cx.work.roles_in(cx.play),
        &journal,
        &cx.opts.keys(),
    ));
    // Reported, never acted on: the operator chooses when a host reboots.
    plan.reboot_required = facts.get(&facts::reboot::RebootQuery)?;
    cx.opts
        .lap(clock, host, || format!("diff ({} resources)", items.len()));
    cx.ev.host_probed(&cx.work.host, plan.changes.len());
    Ok((plan, planned))
}

pub(super) async fn apply_host(
    cx: &HostCx<'_>,
    saved: Option<&Plan>,
    pre: Option<Facts>,
) -> HostOutcome {
    let host = &cx.work.host;
    let (plan, planned) = match probe_and_plan(cx, pre).await {
        Ok(p) => p,
        Err(e) => return HostOutcome::failed(host, "(connection)", e),
    };
    let mut recap = Recap::empty(host);
    recap.ok = plan.in_sync;
    // `apply --yes` shows no plan: the recap is where a pending reboot is seen.
    recap
        .notes
        .extend(plan.reboot_required.as_ref().map(|r| r.note()));
    let errors: Vec<Failure> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Error(e) => Some(Failure {
                resource: "(plan)".into(),
                message: e.to_string(),
            }),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        recap.failed = errors;
        return HostOutcome { plan, recap };
    }
    if let Some(saved) = saved {
        // Only this play's part of the saved plan is compared now.
        let items = cx.items();
        let saved_host = saved.hosts.iter().find(|h| &h.host == host).map(|h| {
            let mut h = h.clone();
            h.changes.retain(|c| items.iter().any(|i| i.id == c.id));
            h
        });
        if let Some(why) = diff::stale(&plan, saved_host.as_ref()) {
            recap.refused = Some(why);
            return HostOutcome { plan, recap };
        }
    }
    if plan.changes.is_empty() {
        return HostOutcome { plan, recap };
    }
    // One run per host at a time; held until we are done or the connection drops.
    let clock = cx.opts.time(Split::Remote);
    let mut lock = match cx.t.lock(&cx.opts.run.record(), &cx.work.host).await {
        Ok((l, note)) => {
            recap.notes.extend(note);
            l
        }
        Err(e) => {
            recap.refused = Some(e.into());
            return HostOutcome { plan, recap };
        }
    };
    cx.opts.lap(clock, Some(host), || "lock".into());
    let pending: Vec<ResourceId> = plan
        .changes
        .iter()
        .filter(|c| c.id.kind == diff::HANDLER_KIND)
        .map(|c| c.id.clone())
        .collect();
    // The lease is renewed while the steps run: a holder that stops hearing from us (a silent
    // partition) gives the lock up by itself, so a dead run never locks the host for long.
    crate::transport::lock::with_lease(&mut lock, execute_all(cx, planned, &pending, &mut recap))
        .await;
    let clock = cx.opts.time(Split::Remote);
    lock.release().await;
    cx.opts.lap(clock, Some(host), || "unlock".into());
    HostOutcome { plan, recap }
}
