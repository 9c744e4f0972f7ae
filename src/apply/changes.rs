//! Running one host's planned changes in order: batching those that cannot affect each other
//! into one execution, re-reading facts an earlier change may have moved, journalling the
//! handlers each change notifies, and firing them after each role.

use super::diff::{self, ItemError, Keys, Planned};
use super::execute::{execute, execute_batch};
use super::handlers::run_handlers;
use super::probe::gather;
use super::HostCx;
use crate::facts::{self, FactQuery};
use crate::plan::touch::affects;
use crate::plan::{Change, Failure, HostError, Recap, ResourceId, Step, Touch};
use crate::site::select::Item;

/// Run the planned changes role by role, handlers after each role. `pending` are ids of
/// handlers an earlier run recorded but never fired: they fire with their role's handlers.
///
/// Consecutive changes that cannot alter each other's facts (`plan::touch`) run in ONE remote
/// execution, framed so each change still succeeds or fails on its own. A change whose facts an
/// earlier change may have moved is re-read first, together with every later change of the role
/// in the same situation: one probe, not one per change.
pub(super) async fn execute_all(
    cx: &HostCx<'_>,
    planned: Vec<Planned>,
    pending: &[ResourceId],
    recap: &mut Recap,
) {
    let HostCx {
        work, play, opts, ..
    } = *cx;
    let keys = opts.keys();
    let mut planned = planned.into_iter();
    // Touches of the changes already run on this host, in order.
    let mut log: Vec<Touch> = Vec::new();
    let mut stop = false;
    for role in work.roles_in(play) {
        let mut notified: Vec<String> = role
            .handlers
            .iter()
            .filter(|h| pending.contains(&diff::handler_id(&role.role, &h.name)))
            .map(|h| h.name.clone())
            .collect();
        let mut slots: Vec<Slot> = Vec::new();
        for item in &role.items {
            if let Some(Planned::Change(c)) = planned.next() {
                slots.push(Slot {
                    item,
                    verdict: Ok(Some(c)),
                    read_at: 0,
                });
            }
        }
        let mut batch = Batch::default();
        for i in 0..slots.len() {
            if stop {
                break;
            }
            let item = slots[i].item;
            let reads = fact_keys(item);
            if affects(&batch.touches, &reads)
                && !batch.run(cx, &mut log, recap, &mut notified).await
            {
                stop = true;
                break;
            }
            if affects(&log[slots[i].read_at..], &reads) {
                if let Err(e) = reread(cx, &mut slots[i..], &log, &keys).await {
                    batch.run(cx, &mut log, recap, &mut notified).await;
                    stop = true;
                    recap.failed.push(Failure {
                        resource: item.id.to_string(),
                        message: e.to_string(),
                    });
                    break;
                }
            }
            let change = match std::mem::replace(&mut slots[i].verdict, Ok(None)) {
                Ok(None) => {
                    recap.ok += 1;
                    continue;
                }
                Ok(Some(c)) => c,
                Err(e) => {
                    stop = true;
                    batch.run(cx, &mut log, recap, &mut notified).await;
                    recap.failed.push(Failure {
                        resource: item.id.to_string(),
                        message: e.to_string(),
                    });
                    break;
                }
            };
            if opts.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                recap.skipped += 1;
                continue;
            }
            // Record the handlers this change notifies on the host first, in the same
            // execution, so they survive a controller that dies right after (rule 6).
            let journal: Vec<(String, String)> = item
                .notify
                .iter()
                .filter(|n| role.handlers.iter().any(|h| &h.name == *n))
                .map(|n| (n.clone(), diff::handler_key(&role.role, n)))
                .collect();
            let steps: Vec<Step> = if journal.is_empty() {
                change.steps.clone()
            } else {
                let keys: Vec<String> = journal.iter().map(|(_, k)| k.clone()).collect();
                std::iter::once(Step::sh(facts::journal::record(&keys, &opts.run.id)))
                    .chain(change.steps.iter().cloned())
                    .collect()
            };
            // Fetches bring bytes back, and a change that may alter anything (a command, a
            // package) is where failures and cut connections happen: both run on their own, so
            // a failure is always that change's, and Ctrl-C during one stops before the next.
            let fetch = steps.iter().any(|s| matches!(s, Step::Fetch { .. }));
            let touches = item.inst.touches();
            let opaque = touches.contains(&Touch::Anything);
            if (fetch || opaque) && !batch.run(cx, &mut log, recap, &mut notified).await {
                stop = true;
                break;
            }
            batch.touches.extend(touches);
            batch.queued.push(Queued {
                item,
                change,
                steps,
                journal,
            });
            if (fetch || opaque) && !batch.run(cx, &mut log, recap, &mut notified).await {
                stop = true;
            }
        }
        if !stop && !batch.run(cx, &mut log, recap, &mut notified).await {
            stop = true;
        }
        if run_handlers(cx, role, &notified, recap).await {
            // A handler (a restart, a command) may change anything.
            log.push(Touch::Anything);
        }
    }
}

/// A planned change of the role being applied, and how far the host's change log had got when
/// its facts were read.
struct Slot<'a> {
    item: &'a Item,
    verdict: Result<Option<Change>, ItemError>,
    read_at: usize,
}

fn fact_keys(item: &Item) -> Vec<String> {
    item.inst.facts().into_iter().map(|q| q.key).collect()
}

/// Re-read, in one probe, the facts of the first slot and of every later one whose facts the
/// changes run since they were read may have moved; re-diff them.
async fn reread(
    cx: &HostCx<'_>,
    slots: &mut [Slot<'_>],
    log: &[Touch],
    keys: &Keys,
) -> Result<(), HostError> {
    let stale: Vec<usize> = (0..slots.len())
        .filter(|&j| j == 0 || affects(&log[slots[j].read_at..], &fact_keys(slots[j].item)))
        .collect();
    let queries: Vec<FactQuery> = stale
        .iter()
        .flat_map(|&j| slots[j].item.inst.facts())
        .collect();
    let clock = cx.opts.time(super::timings::Split::Via(cx.t));
    let f = gather(cx.t, &queries, cx.opts).await;
    cx.opts.lap(clock, Some(&cx.work.host), || {
        format!("re-probe ({} resources)", stale.len())
    });
    let f = f?;
    for j in stale {
        slots[j].verdict = diff::diff_item(slots[j].item, &f, keys);
        slots[j].read_at = log.len();
    }
    Ok(())
}

/// A change waiting in a batch: its steps (journal record first) and the handlers it records
/// in the journal, as (handler name, journal key).
struct Queued<'a> {
    item: &'a Item,
    change: Change,
    steps: Vec<Step>,
    journal: Vec<(String, String)>,
}

/// How `--timings` names one execution: the change, or the batch and its changes.
fn step_label(queued: &[Queued<'_>]) -> String {
    match queued {
        [one] => format!("change {}", one.change.id),
        many => format!(
            "batch of {}: {}",
            many.len(),
            many.iter()
                .map(|q| q.change.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Changes waiting to run together, and what they may touch.
#[derive(Default)]
struct Batch<'a> {
    queued: Vec<Queued<'a>>,
    touches: Vec<Touch>,
}

impl Batch<'_> {
    /// Run the queued changes in one execution (fetch steps after it). False when one failed:
    /// the changes before it are recorded as changed, the ones after it never started.
    async fn run(
        &mut self,
        cx: &HostCx<'_>,
        log: &mut Vec<Touch>,
        recap: &mut Recap,
        notified: &mut Vec<String>,
    ) -> bool {
        let queued = std::mem::take(&mut self.queued);
        log.append(&mut self.touches);
        if queued.is_empty() {
            return true;
        }
        if cx
            .opts
            .interrupted
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Not started: Ctrl-C stops before anything new begins.
            recap.skipped += queued.len();
            return true;
        }
        let groups: Vec<&[Step]> = queued.iter().map(|q| q.steps.as_slice()).collect();
        let clock = cx.opts.time(super::timings::Split::Via(cx.t));
        let (done, error) = execute_batch(cx.t, &groups, cx.opts).await;
        cx.opts
            .lap(clock, Some(&cx.work.host), || step_label(&queued));
        for Queued { item, change, .. } in &queued[..done] {
            recap.changed.push(change.id.to_string());
            if change.id.kind == crate::resources::reboot::KIND && recap.reboot.is_none() {
                recap.reboot = Some(change.id.to_string());
            }
            if let Some(how) = &change.way_back {
                recap.way_back.push(crate::plan::WayBack {
                    resource: change.id.to_string(),
                    how: how.clone(),
                });
            }
            for n in &item.notify {
                if !notified.contains(n) {
                    notified.push(n.clone());
                }
            }
            cx.ev
                .change_done(&cx.work.host, &change.id.to_string(), true);
        }
        match error {
            None => true,
            Some(e) => {
                let failed = &queued[done.min(queued.len() - 1)];
                let id = failed.change.id.to_string();
                // A failed change notifies nothing, as in Ansible: its steps refuse before they
                // write (validate, sha256, token guard) or write atomically. Take back the
                // journal records it made, unless its handler was pending before or an earlier
                // change notified it. Over a dropped connection this cannot run, and the record
                // stays: a change that may have happened is never forgotten (rule 6).
                let take_back: Vec<Step> = failed
                    .journal
                    .iter()
                    .filter(|(n, _)| !notified.contains(n))
                    .map(|(_, k)| Step::sh(facts::journal::clear(k)))
                    .collect();
                if !take_back.is_empty() {
                    let clock = cx.opts.time(super::timings::Split::Via(cx.t));
                    let _ = execute(cx.t, &take_back, cx.opts).await;
                    cx.opts
                        .lap(clock, Some(&cx.work.host), || "journal take-back".into());
                }
                recap.failed.push(Failure {
                    resource: id.clone(),
                    message: e.to_string(),
                });
                cx.ev.change_done(&cx.work.host, &id, false);
                // Stop this host, but still fire what was notified (RELIABILITY rule 6).
                false
            }
        }
    }
}
