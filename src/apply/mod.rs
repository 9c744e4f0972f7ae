//! Plan and apply, per host, all hosts in parallel up to `--forks`.
//!
//! One code path: a host is connected (one multiplexed SSH connection), probed (ONE script for
//! every fact its resources need) and diffed by `plan::build` (pure). `plan_hosts` stops there.
//! `apply_hosts` then runs each drifted resource's steps as one remote execution, in order, and
//! fires the role's handlers.
//!
//! Facts can go stale within a run (a package install writes a config file that a later resource
//! manages), so once anything changed on a host, a resource is re-probed right before its own
//! change runs. A no-op run never pays for this.

pub mod script;

use std::sync::Arc;
use std::time::Duration;

use crate::facts::{self, probe, Fact, FactQuery, Facts};
use crate::plan::build::{self, Keys, Planned};
use crate::plan::touch::affects;
use crate::plan::{Change, HostError, HostPlan, Plan, ResourceId, Step, Touch};
use crate::site::select::{Compiled, HostWork, Item};
use crate::transport::{HostKeyPolicy, Transport};

#[derive(Debug, Clone)]
pub struct Opts {
    pub forks: usize,
    /// Rolling batches of this many hosts (`--serial`); None = all at once (up to forks).
    pub serial: Option<usize>,
    /// Stop before the next batch when more than this percentage of hosts failed.
    pub max_fail_percent: Option<u8>,
    /// Every known secret string (for diffs of old content).
    pub secrets: Arc<Vec<String>>,
    /// Set by the first Ctrl-C: start no new step, still fire notified handlers.
    pub interrupted: Arc<std::sync::atomic::AtomicBool>,
    pub host_keys: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub step_timeout: Duration,
    pub hash_key: [u8; 32],
    /// Who this run is: recorded with pending handlers and the host lock.
    pub run: Arc<RunInfo>,
}

/// Identifies one labctl run to other runs (in the host lock and the handler journal).
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Random, 12 hex digits.
    pub id: String,
    /// The controller's host name.
    pub controller: String,
    /// UTC start time, RFC 3339.
    pub started: String,
}

impl RunInfo {
    pub fn new() -> RunInfo {
        let controller = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        RunInfo {
            id: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            controller: if controller.is_empty() {
                "unknown".into()
            } else {
                controller
            },
            started: crate::vault::rfc3339_now(),
        }
    }

    /// How the host lock records this run.
    pub fn record(&self) -> String {
        format!(
            "run={} controller={} started={}",
            self.id,
            self.controller.replace(char::is_whitespace, "_"),
            self.started
        )
    }
}

/// What happened on one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recap {
    pub host: String,
    pub ok: usize,
    pub changed: Vec<String>,
    pub failed: Vec<Failure>,
    pub handlers: Vec<String>,
    pub unreachable: bool,
    /// Refused this host: its facts moved since the saved plan, or another run holds its lock.
    #[serde(serialize_with = "crate::plan::error::as_message")]
    pub refused: Option<HostError>,
    /// Steps left undone after Ctrl-C or an exceeded --max-fail-percent.
    pub skipped: usize,
    /// Things the user should know that are not failures (a host lock taken over).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub resource: String,
    pub message: String,
}

/// Events for the UI, so progress can be shown without the runner knowing how.
pub trait Events: Send + Sync {
    fn host_started(&self, _host: &str) {}
    fn host_probed(&self, _host: &str, _changes: usize) {}
    fn change_done(&self, _host: &str, _id: &str, _ok: bool) {}
    fn host_done(&self, _host: &str) {}
}

/// One host's plan and what applying it did.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    pub plan: HostPlan,
    pub recap: Recap,
}

impl HostOutcome {
    fn empty(host: &str) -> HostOutcome {
        HostOutcome {
            plan: HostPlan::new(host),
            recap: Recap::empty(host),
        }
    }

    /// The host failed before any change: `resource` says where ("(connection)", "-").
    fn failed(host: &str, resource: &str, error: HostError) -> HostOutcome {
        let mut o = HostOutcome::empty(host);
        o.recap.unreachable = matches!(error, HostError::Unreachable(_));
        o.recap.failed.push(Failure {
            resource: resource.into(),
            message: error.to_string(),
        });
        o.plan.error = Some(error);
        o
    }

    /// Sits out later plays.
    fn is_failed(&self) -> bool {
        self.plan.error.is_some()
            || !self.recap.failed.is_empty()
            || self.recap.refused.is_some()
            || self.recap.unreachable
    }

    /// One host's results from two plays, as one.
    fn merge(self, b: HostOutcome) -> HostOutcome {
        let (mut pa, mut x) = (self.plan, self.recap);
        let (pb, y) = (b.plan, b.recap);
        pa.changes.extend(pb.changes);
        pa.in_sync += pb.in_sync;
        // A host that failed sits out later plays, so at most one play has an error.
        pa.error = pa.error.or(pb.error);
        x.ok += y.ok;
        x.changed.extend(y.changed);
        x.failed.extend(y.failed);
        x.handlers.extend(y.handlers);
        x.unreachable |= y.unreachable;
        x.refused = x.refused.or(y.refused);
        x.skipped += y.skipped;
        x.notes.extend(y.notes);
        HostOutcome { plan: pa, recap: x }
    }
}

impl Recap {
    fn empty(host: &str) -> Recap {
        Recap {
            host: host.to_string(),
            ok: 0,
            changed: vec![],
            failed: vec![],
            handlers: vec![],
            unreachable: false,
            refused: None,
            skipped: 0,
            notes: vec![],
        }
    }
}

/// One host, its connection, and the part of the run it is in (a play, or all plays when
/// planning).
struct HostCx<'a> {
    work: &'a HostWork,
    play: Option<usize>,
    opts: &'a Opts,
    ev: &'a dyn Events,
    t: &'a Transport,
}

impl HostCx<'_> {
    fn items(&self) -> Vec<&Item> {
        self.work
            .roles_in(self.play)
            .flat_map(|r| r.items.iter())
            .collect()
    }
}

impl Opts {
    fn keys(&self) -> Keys {
        Keys {
            hash_key: self.hash_key,
            secrets: self.secrets.clone(),
        }
    }
}

/// Plan every host. Never changes anything. Planning changes nothing, so every host is probed
/// once, across all its plays.
pub async fn plan_hosts(
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
) -> Vec<HostPlan> {
    let idxs: Vec<usize> = (0..compiled.hosts.len()).collect();
    let o = opts.clone();
    let job = move |c: Arc<Compiled>, i: usize, ev: Arc<dyn Events>| {
        let o = o.clone();
        async move { plan_one(&c.hosts[i], &o, ev.as_ref()).await }
    };
    let on_panic = |host: &str, msg: String| HostPlan::failed(host, HostError::Internal(msg));
    for_each_host(&compiled, &idxs, opts.forks, &events, job, on_panic).await
}

/// Plan and apply every host. With `saved`, each host's fresh plan must match the saved one.
///
/// Apply runs play by play (so e.g. k3s servers converge before agents join), each play in
/// batches of its `serial` (or --serial); a host that failed sits out the later plays.
pub async fn apply_hosts(
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
    saved: Option<Arc<Plan>>,
) -> Vec<HostOutcome> {
    let n = compiled.hosts.len();
    let mut acc: Vec<Option<HostOutcome>> = (0..n).map(|_| None).collect();
    let mut fatal = false;
    let conns = Conns::default();
    for (p, play) in compiled.plays.iter().enumerate() {
        let idxs: Vec<usize> = (0..n)
            .filter(|&i| {
                compiled.hosts[i].in_play(p) && !acc[i].as_ref().is_some_and(|o| o.is_failed())
            })
            .collect();
        if idxs.is_empty() {
            continue;
        }
        let batch = play.serial.or(opts.serial).unwrap_or(idxs.len()).max(1);
        let limit = play.max_fail_percent.or(opts.max_fail_percent);
        for chunk in idxs.chunks(batch) {
            fatal = fatal || over_fail_limit(acc.iter().flatten(), limit, n);
            let results: Vec<HostOutcome> = if opts
                .interrupted
                .load(std::sync::atomic::Ordering::SeqCst)
                || fatal
            {
                let msg = format!(
                        "play `{}` not started here: the run was stopped (Ctrl-C, or more hosts failed than the play's max_fail_percentage/--max-fail-percent allow)",
                        play.name
                    );
                chunk
                    .iter()
                    .map(|&i| {
                        HostOutcome::failed(
                            &compiled.hosts[i].host,
                            "(connection)",
                            HostError::Stopped(msg.clone()),
                        )
                    })
                    .collect()
            } else {
                let (o, s, k) = (opts.clone(), saved.clone(), conns.clone());
                let job = move |c: Arc<Compiled>, i: usize, ev: Arc<dyn Events>| {
                    let (o, s, k) = (o.clone(), s.clone(), k.clone());
                    async move {
                        let t = match k.get(i, &c.hosts[i], &o).await {
                            Ok(t) => t,
                            Err(e) => {
                                return HostOutcome::failed(&c.hosts[i].host, "(connection)", e)
                            }
                        };
                        apply_one(&c.hosts[i], &t, p, &o, ev.as_ref(), s.as_deref()).await
                    }
                };
                let on_panic = |host: &str, msg: String| {
                    HostOutcome::failed(host, "-", HostError::Internal(msg))
                };
                for_each_host(&compiled, chunk, opts.forks, &events, job, on_panic).await
            };
            for (&i, r) in chunk.iter().zip(results) {
                acc[i] = Some(match acc[i].take() {
                    None => r,
                    Some(prev) => prev.merge(r),
                });
            }
        }
        fatal = fatal || over_fail_limit(acc.iter().flatten(), limit, n);
    }
    conns.close_all().await;
    acc.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| HostOutcome::empty(&compiled.hosts[i].host)))
        .collect()
}

/// One connection per host for the whole run: opened at the host's first play and reused by
/// its later ones (a lab's server is in three plays; each used to pay its own SSH handshake).
#[derive(Clone, Default)]
struct Conns(Arc<std::sync::Mutex<std::collections::HashMap<usize, Arc<Transport>>>>);

impl Conns {
    /// The host's connection, opened now if this is its first play. A host runs one play at a
    /// time, so no two tasks open the same host's connection; the map is never locked across
    /// the connect, so hosts connect in parallel.
    async fn get(
        &self,
        i: usize,
        work: &HostWork,
        opts: &Opts,
    ) -> Result<Arc<Transport>, HostError> {
        if let Some(t) = self.0.lock().expect("conns").get(&i) {
            return Ok(t.clone());
        }
        let t =
            Arc::new(Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await?);
        self.0.lock().expect("conns").insert(i, t.clone());
        Ok(t)
    }

    async fn close_all(&self) {
        let all: Vec<Arc<Transport>> = self
            .0
            .lock()
            .expect("conns")
            .drain()
            .map(|(_, t)| t)
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for t in all {
            if let Ok(t) = Arc::try_unwrap(t) {
                set.spawn(t.close());
            }
        }
        while set.join_next().await.is_some() {}
    }
}

/// Exceeded, not equalled, stops the run (Ansible's semantics).
fn over_fail_limit<'a>(
    done: impl Iterator<Item = &'a HostOutcome>,
    max: Option<u8>,
    total: usize,
) -> bool {
    let Some(max) = max else { return false };
    let failed = done
        .filter(|o| {
            o.plan.error.is_some() || !o.recap.failed.is_empty() || o.recap.refused.is_some()
        })
        .count();
    failed * 100 > max as usize * total
}

/// Run `job` for each host in `idxs`, at most `forks` at a time, results in `idxs` order.
async fn for_each_host<T, J, F>(
    compiled: &Arc<Compiled>,
    idxs: &[usize],
    forks: usize,
    events: &Arc<dyn Events>,
    job: J,
    on_panic: impl Fn(&str, String) -> T,
) -> Vec<T>
where
    T: Send + 'static,
    J: Fn(Arc<Compiled>, usize, Arc<dyn Events>) -> F,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(forks.max(1)));
    let mut tasks = Vec::new();
    for &i in idxs {
        let (c, ev, sem) = (compiled.clone(), events.clone(), sem.clone());
        let fut = job(c.clone(), i, ev.clone());
        tasks.push((
            i,
            tokio::spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let host = &c.hosts[i].host;
                ev.host_started(host);
                let r = fut.await;
                ev.host_done(host);
                r
            }),
        ));
    }
    let mut out = Vec::new();
    for (i, t) in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => out.push(on_panic(
                &compiled.hosts[i].host,
                format!("internal error: {e}"),
            )),
        }
    }
    out
}

async fn plan_one(work: &HostWork, opts: &Opts, ev: &dyn Events) -> HostPlan {
    let t = match Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await {
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
    let r = probe_and_plan(&cx).await;
    t.close().await;
    match r {
        Ok((plan, _)) => plan,
        Err(e) => HostPlan::failed(&work.host, e),
    }
}

async fn apply_one(
    work: &HostWork,
    t: &Transport,
    play: usize,
    opts: &Opts,
    ev: &dyn Events,
    saved: Option<&Plan>,
) -> HostOutcome {
    let cx = HostCx {
        work,
        play: Some(play),
        opts,
        ev,
        t,
    };
    apply_host(&cx, saved).await
}

/// Probe once and diff every item: the host's plan, and each item's verdict in item order.
/// Err: the host as a whole could not be planned (probe failed, unsupported OS).
/// Every fact a host's plan reads: the OS, the handler journal, and each item's.
fn host_queries(items: &[&Item]) -> Vec<FactQuery> {
    [
        facts::os::OsQuery.query(),
        facts::journal::JournalQuery.query(),
    ]
    .into_iter()
    .chain(items.iter().flat_map(|i| i.inst.facts()))
    .collect()
}

/// Connect and probe one host for every fact its plan reads: the round trip `plan` and `apply`
/// make, for `labctl facts` to print.
pub async fn probe_host(work: &HostWork, opts: &Opts) -> Result<Facts, HostError> {
    let t = Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await?;
    let items: Vec<&Item> = work.items().collect();
    let r = gather(&t, &host_queries(&items), opts).await;
    t.close().await;
    r
}

async fn probe_and_plan(cx: &HostCx<'_>) -> Result<(HostPlan, Vec<Planned>), HostError> {
    let items = cx.items();
    let facts = gather(cx.t, &host_queries(&items), cx.opts).await?;
    build::check_os(&facts)?;
    let planned = build::plan_items(&items, &facts, &cx.opts.keys());
    let mut plan = build::host_plan(&cx.work.host, &planned);
    // Handlers an interrupted run left pending on the host are changes too (rule 6).
    let journal = facts
        .get(&facts::journal::JournalQuery)
        .map_err(|e| HostError::Probe(e.to_string()))?;
    plan.changes.extend(build::pending_handlers(
        cx.work.roles_in(cx.play),
        &journal,
        &cx.opts.keys(),
    ));
    cx.ev.host_probed(&cx.work.host, plan.changes.len());
    Ok((plan, planned))
}

async fn apply_host(cx: &HostCx<'_>, saved: Option<&Plan>) -> HostOutcome {
    let host = &cx.work.host;
    let (plan, planned) = match probe_and_plan(cx).await {
        Ok(p) => p,
        Err(e) => return HostOutcome::failed(host, "(connection)", e),
    };
    let mut recap = Recap::empty(host);
    recap.ok = plan.in_sync;
    let errors: Vec<Failure> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Error(e) => Some(Failure {
                resource: "(plan)".into(),
                message: e.clone(),
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
        if let Some(why) = build::stale(&plan, saved_host.as_ref()) {
            recap.refused = Some(why);
            return HostOutcome { plan, recap };
        }
    }
    if plan.changes.is_empty() {
        return HostOutcome { plan, recap };
    }
    // One run per host at a time; held until we are done or the connection drops.
    let mut lock = match cx.t.lock(&cx.opts.run.record(), &cx.work.host).await {
        Ok((l, note)) => {
            recap.notes.extend(note);
            l
        }
        Err(e) => {
            recap.refused = Some(HostError::Locked(e));
            return HostOutcome { plan, recap };
        }
    };
    let pending: Vec<ResourceId> = plan
        .changes
        .iter()
        .filter(|c| c.id.kind == build::HANDLER_KIND)
        .map(|c| c.id.clone())
        .collect();
    // The lease is renewed while the steps run: a holder that stops hearing from us (a silent
    // partition) gives the lock up by itself, so a dead run never locks the host for long.
    crate::transport::lock::with_lease(&mut lock, execute_all(cx, planned, &pending, &mut recap))
        .await;
    lock.release().await;
    HostOutcome { plan, recap }
}

/// Run the planned changes role by role, handlers after each role. `pending` are ids of
/// handlers an earlier run recorded but never fired: they fire with their role's handlers.
///
/// Consecutive changes that cannot alter each other's facts (`plan::touch`) run in ONE remote
/// execution, framed so each change still succeeds or fails on its own. A change whose facts an
/// earlier change may have moved is re-read first, together with every later change of the role
/// in the same situation: one probe, not one per change.
async fn execute_all(
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
            .filter(|h| pending.contains(&build::handler_id(&role.role, &h.name)))
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
                        message: e,
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
                        message: e,
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
                .map(|n| (n.clone(), build::handler_key(&role.role, n)))
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
    verdict: Result<Option<Change>, String>,
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
) -> Result<(), String> {
    let stale: Vec<usize> = (0..slots.len())
        .filter(|&j| j == 0 || affects(&log[slots[j].read_at..], &fact_keys(slots[j].item)))
        .collect();
    let queries: Vec<FactQuery> = stale
        .iter()
        .flat_map(|&j| slots[j].item.inst.facts())
        .collect();
    let f = gather(cx.t, &queries, cx.opts)
        .await
        .map_err(|e| e.to_string())?;
    for j in stale {
        slots[j].verdict = build::diff_item(slots[j].item, &f, keys);
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
        let (done, error) = execute_batch(cx.t, &groups, cx.opts).await;
        for Queued { item, change, .. } in &queued[..done] {
            recap.changed.push(change.id.to_string());
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
                    let _ = execute(cx.t, &take_back, cx.opts).await;
                }
                recap.failed.push(Failure {
                    resource: id.clone(),
                    message: e,
                });
                cx.ev.change_done(&cx.work.host, &id, false);
                // Stop this host, but still fire what was notified (RELIABILITY rule 6).
                false
            }
        }
    }
}

/// Fire the notified handlers of a role, each on its own (a failing one does not stop the next).
/// True when any ran.
async fn run_handlers(
    cx: &HostCx<'_>,
    role: &crate::site::select::RoleWork,
    notified: &[String],
    recap: &mut Recap,
) -> bool {
    let mut ran = false;
    for h in &role.handlers {
        if !notified.contains(&h.name) {
            continue;
        }
        ran = true;
        let steps = match h.inst.handler(h.secret) {
            // Cleared in the same execution, only once the handler succeeded.
            Ok(mut s) => {
                s.push(Step::sh(facts::journal::clear(&build::handler_key(
                    &role.role, &h.name,
                ))));
                s
            }
            Err(e) => {
                recap.failed.push(Failure {
                    resource: build::handler_id(&role.role, &h.name).to_string(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        match execute(cx.t, &steps, cx.opts).await {
            Ok(()) => recap.handlers.push(format!("{}/{}", role.role, h.name)),
            Err(e) => recap.failed.push(Failure {
                resource: build::handler_id(&role.role, &h.name).to_string(),
                message: e,
            }),
        }
    }
    ran
}

/// Run several changes' steps in one execution. Returns how many completed and, if one
/// failed, its error (with its own stderr only).
async fn execute_batch(t: &Transport, groups: &[&[Step]], opts: &Opts) -> (usize, Option<String>) {
    if groups.len() == 1 {
        return match execute(t, groups[0], opts).await {
            Ok(()) => (1, None),
            Err(e) => (0, Some(e)),
        };
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    let compiled = script::compile_batch(groups, Some(&nonce));
    let started = std::time::Instant::now();
    let out = match t
        .run(
            &compiled.script,
            Some(compiled.stdin.expose()),
            opts.step_timeout,
        )
        .await
    {
        Ok(o) => o,
        // The connection is gone: which of the changes finished is unknown. The first is
        // reported; the next run re-plans the rest from what the host then says.
        Err(e) => {
            return (
                0,
                Some(format!(
                    "{e} (in one execution with the {} change(s) after it; whether they ran is unknown)",
                    groups.len() - 1
                )),
            )
        }
    };
    tracing::debug!(
        host = t.dest(),
        changes = groups.len(),
        stdin_bytes = compiled.stdin.expose().len(),
        exit = out.status,
        ms = started.elapsed().as_millis() as u64,
        "batch"
    );
    let (done, stderr) = script::batch_outcome(
        &nonce,
        groups.len(),
        &out.stdout_str(),
        &String::from_utf8_lossy(&out.stderr),
    );
    if done == groups.len() {
        return (done, None);
    }
    let lines: Vec<&str> = stderr[done]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    (done, Some(format!("exit {}: {tail}", out.status)))
}

async fn gather(t: &Transport, queries: &[FactQuery], opts: &Opts) -> Result<Facts, HostError> {
    let p = probe::build(queries);
    let started = std::time::Instant::now();
    let out = t.run(&p.script, None, opts.step_timeout).await?;
    tracing::debug!(
        host = t.dest(),
        facts = p.keys().len(),
        bytes = out.stdout.len(),
        ms = started.elapsed().as_millis() as u64,
        "probe"
    );
    if !out.stderr.is_empty() {
        tracing::debug!(host = t.dest(), stderr = %out.stderr_tail(), "probe stderr");
    }
    let stdout = out.stdout_str();
    p.parse(&stdout).map_err(|e| {
        HostError::Probe(format!(
            "probe failed: {e} (exit {}; stderr: {})",
            out.status,
            out.stderr_tail()
        ))
    })
}

async fn execute(t: &Transport, steps: &[Step], opts: &Opts) -> Result<(), String> {
    let compiled = script::compile(steps);
    let started = std::time::Instant::now();
    if steps.iter().any(|s| !matches!(s, Step::Fetch { .. })) {
        let out = t
            .run(
                &compiled.script,
                Some(compiled.stdin.expose()),
                opts.step_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!(
            host = t.dest(),
            steps = steps.len(),
            stdin_bytes = compiled.stdin.expose().len(),
            exit = out.status,
            ms = started.elapsed().as_millis() as u64,
            "steps"
        );
        if !out.stderr.is_empty() {
            tracing::debug!(host = t.dest(), stderr = %out.stderr_tail(), "steps stderr");
        }
        if out.status != 0 {
            return Err(format!("exit {}: {}", out.status, out.stderr_tail()));
        }
    }
    for s in steps {
        if let Step::Fetch { path, dest, mode } = s {
            let out = t
                .run(
                    &format!("base64 -w0 -- {}", crate::sh::q(path)),
                    None,
                    opts.step_timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
            if out.status != 0 {
                return Err(format!(
                    "cannot read {path} on the host: {}",
                    out.stderr_tail()
                ));
            }
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(out.stdout_str().trim())
                .map_err(|_| format!("{path}: bad transfer"))?;
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            crate::fsutil::write_atomic(dest, &bytes, *mode, false)
                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_limit_is_exceeded_not_equalled() {
        let ok = HostOutcome::empty("a");
        let mut bad = HostOutcome::empty("b");
        bad.plan.error = Some(HostError::Probe("x".into()));
        assert!(!over_fail_limit([&ok, &bad].into_iter(), Some(50), 2));
        assert!(over_fail_limit([&ok, &bad].into_iter(), Some(49), 2));
        assert!(over_fail_limit([&bad].into_iter(), Some(0), 4));
        assert!(!over_fail_limit([&bad].into_iter(), None, 1));
    }
}
