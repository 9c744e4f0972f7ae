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

use serde_json::{Map, Value};

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
/// once, across all its plays. With `recompile` (templates name facts), that one probe also
/// gathers the host's facts, and the site is compiled again with them before the diff.
pub async fn plan_hosts(
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
    recompile: Option<&mut dyn Recompile>,
) -> Vec<HostPlan> {
    let idxs: Vec<usize> = (0..compiled.hosts.len()).collect();
    let on_panic = |host: &str, msg: String| HostPlan::failed(host, HostError::Internal(msg));
    let Some(rc) = recompile else {
        let o = opts.clone();
        let job = move |c: Arc<Compiled>, i: usize, ev: Arc<dyn Events>| {
            let o = o.clone();
            async move { plan_one(&c.hosts[i], &o, ev.as_ref()).await }
        };
        return for_each_host(&compiled, &idxs, opts.forks, &events, job, on_panic).await;
    };
    let conns = Conns::default();
    let (compiled, mut first) = first_probes(compiled, &idxs, None, &conns, opts, rc).await;
    let mut pre: Vec<Option<Result<Facts, HostError>>> = (0..compiled.hosts.len())
        .map(|i| first.remove(&i))
        .collect();
    let o = opts.clone();
    let k = conns.clone();
    let job = move |c: Arc<Compiled>, i: usize, ev: Arc<dyn Events>| {
        let (o, k, p) = (o.clone(), k.clone(), pre[i].take());
        async move {
            let work = &c.hosts[i];
            let (t, pre) = match k.ready(i, work, &o, p).await {
                Ok(r) => r,
                Err(e) => return HostPlan::failed(&work.host, e),
            };
            let cx = HostCx {
                work,
                play: None,
                opts: &o,
                ev: ev.as_ref(),
                t: &t,
            };
            match probe_and_plan(&cx, pre).await {
                Ok((plan, _)) => plan,
                Err(e) => HostPlan::failed(&work.host, e),
            }
        }
    };
    let out = for_each_host(&compiled, &idxs, opts.forks, &events, job, on_panic).await;
    conns.close_all().await;
    out
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
    mut recompile: Option<&mut dyn Recompile>,
) -> Vec<HostOutcome> {
    let mut compiled = compiled;
    let n = compiled.hosts.len();
    let mut acc: Vec<Option<HostOutcome>> = (0..n).map(|_| None).collect();
    let mut fatal = false;
    let conns = Conns::default();
    // Hosts whose facts are in `compiled` already (gathered by an earlier play's probe).
    let mut gathered = vec![false; n];
    for (p, play) in compiled.plays.clone().iter().enumerate() {
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
            let stopped = opts.interrupted.load(std::sync::atomic::Ordering::SeqCst) || fatal;
            // The batch's first probe gathers the facts of its hosts that have none yet.
            let mut pre: Vec<Option<Result<Facts, HostError>>> = (0..n).map(|_| None).collect();
            if let Some(rc) = recompile.as_deref_mut().filter(|_| !stopped) {
                let need: Vec<usize> = chunk.iter().copied().filter(|&i| !gathered[i]).collect();
                if !need.is_empty() {
                    let (c, mut first) =
                        first_probes(compiled, &need, Some(p), &conns, opts, rc).await;
                    compiled = c;
                    for i in need {
                        gathered[i] = true;
                        pre[i] = first.remove(&i);
                    }
                }
            }
            let results: Vec<HostOutcome> = if stopped {
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
                    let (o, s, k, pre) = (o.clone(), s.clone(), k.clone(), pre[i].take());
                    async move {
                        let (t, pre) = match k.ready(i, &c.hosts[i], &o, pre).await {
                            Ok(r) => r,
                            Err(e) => {
                                return HostOutcome::failed(&c.hosts[i].host, "(connection)", e)
                            }
                        };
                        let cx = HostCx {
                            work: &c.hosts[i],
                            play: Some(p),
                            opts: &o,
                            ev: ev.as_ref(),
                            t: &t,
                        };
                        apply_host(&cx, s.as_deref(), pre).await
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

/// Compiles the site again once hosts' facts are known. When a template names a fact, the site
/// is first compiled with `<fact:NAME>` placeholders; each host's first probe then gathers its
/// facts together with its resources' queries, and the diff uses the site compiled again.
pub trait Recompile {
    /// The whole site, compiled with these hosts' facts added to those known before. An error
    /// is the compiler's report, one entry per problem (naming its host where it is about one).
    fn with_facts(
        &mut self,
        facts: Vec<(String, Map<String, Value>)>,
    ) -> Result<Compiled, Vec<String>>;
}

/// The first probe of the hosts `idxs`, in parallel over their run-long connections: their
/// facts for templates and every query the current compile knows (a query naming a placeholder
/// is left for later: it never reaches a host). Returns the site compiled again with the
/// facts, and each host's answers, or why it has none.
async fn first_probes(
    compiled: Arc<Compiled>,
    idxs: &[usize],
    play: Option<usize>,
    conns: &Conns,
    opts: &Opts,
    rc: &mut dyn Recompile,
) -> (
    Arc<Compiled>,
    std::collections::HashMap<usize, Result<Facts, HostError>>,
) {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.forks.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for &i in idxs {
        let (c, k, o, sem) = (compiled.clone(), conns.clone(), opts.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let work = &c.hosts[i];
            let r = async {
                let t = k.get(i, work, &o).await?;
                let items: Vec<&Item> = work.roles_in(play).flat_map(|r| r.items.iter()).collect();
                gather(&t, &first_queries(&items), &o).await
            }
            .await;
            (i, r)
        });
    }
    let mut answers = std::collections::HashMap::new();
    while let Some(j) = set.join_next().await {
        if let Ok((i, r)) = j {
            answers.insert(i, r);
        }
    }
    for &i in idxs {
        answers.entry(i).or_insert_with(|| {
            Err(HostError::Internal(
                "internal error: the probe task panicked".into(),
            ))
        });
    }
    let mut known = Vec::new();
    for (&i, r) in answers.iter_mut() {
        if let Ok(f) = r {
            match f.get(&facts::host::HostQuery) {
                Ok(m) => known.push((compiled.hosts[i].host.clone(), m)),
                Err(e) => *r = Err(HostError::Probe(format!("facts for templates: {e}"))),
            }
        }
    }
    match rc.with_facts(known) {
        Ok(c) if same_hosts(&c, &compiled) => (Arc::new(c), answers),
        Ok(_) => {
            let e = "internal error: compiling with facts selected other hosts".to_string();
            fail_all(&compiled, &mut answers, |_| HostError::Internal(e.clone()));
            (compiled, answers)
        }
        Err(report) => {
            fail_all(&compiled, &mut answers, |h| {
                HostError::Plan(errors_of(&report, h))
            });
            (compiled, answers)
        }
    }
}

fn same_hosts(a: &Compiled, b: &Compiled) -> bool {
    a.hosts.len() == b.hosts.len() && a.hosts.iter().zip(&b.hosts).all(|(x, y)| x.host == y.host)
}

fn fail_all(
    compiled: &Compiled,
    answers: &mut std::collections::HashMap<usize, Result<Facts, HostError>>,
    why: impl Fn(&str) -> HostError,
) {
    for (&i, r) in answers.iter_mut() {
        if r.is_ok() {
            *r = Err(why(&compiled.hosts[i].host));
        }
    }
}

/// The problems of a compile report about `host`; a host the report does not name was not
/// planned because the others' errors stopped the compile.
fn errors_of(report: &[String], host: &str) -> String {
    let tag = format!("host `{host}`");
    let mine: Vec<&str> = report
        .iter()
        .filter(|l| l.contains(&tag))
        .map(String::as_str)
        .collect();
    if !mine.is_empty() {
        return mine.join("\n");
    }
    if !report.iter().any(|l| l.contains("host `")) {
        return report.join("\n");
    }
    "not planned: the site did not compile with the gathered facts (see the other hosts' errors)"
        .into()
}

/// The first probe's queries: the host's plan queries that name no placeholder, and its facts.
pub(crate) fn first_queries(items: &[&Item]) -> Vec<FactQuery> {
    host_queries(items)
        .into_iter()
        .filter(|q| !has_placeholder(&q.key) && !has_placeholder(&q.script))
        .chain([facts::host::HostQuery.query()])
        .collect()
}

/// `<fact:NAME>`, what a fact renders as before the host's facts are known.
fn has_placeholder(s: &str) -> bool {
    s.contains(facts::host::PLACEHOLDER)
}

/// The queries in `want` that `have` holds no answer for: what a second, small probe must ask
/// after compiling with facts (usually none: a download's url and checksum change, its path
/// does not).
pub(crate) fn missing(have: &Facts, want: &[FactQuery]) -> Vec<FactQuery> {
    want.iter()
        .filter(|q| !have.raw.contains_key(&q.key))
        .cloned()
        .collect()
}

/// `have`, plus the answers to the queries in `want` it lacks, asked in one more probe (none
/// when it lacks nothing).
async fn gather_missing(
    t: &Transport,
    mut have: Facts,
    want: &[FactQuery],
    opts: &Opts,
) -> Result<Facts, HostError> {
    let more = missing(&have, want);
    if !more.is_empty() {
        have.raw.extend(gather(t, &more, opts).await?.raw);
    }
    Ok(have)
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

    /// The host's connection and its first probe's answers (if it had one); a failed first
    /// probe is the host's error.
    async fn ready(
        &self,
        i: usize,
        work: &HostWork,
        opts: &Opts,
        pre: Option<Result<Facts, HostError>>,
    ) -> Result<(Arc<Transport>, Option<Facts>), HostError> {
        let pre = pre.transpose()?;
        Ok((self.get(i, work, opts).await?, pre))
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
    mut job: J,
    on_panic: impl Fn(&str, String) -> T,
) -> Vec<T>
where
    T: Send + 'static,
    J: FnMut(Arc<Compiled>, usize, Arc<dyn Events>) -> F,
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
    let r = probe_and_plan(&cx, None).await;
    t.close().await;
    match r {
        Ok((plan, _)) => plan,
        Err(e) => HostPlan::failed(&work.host, e),
    }
}

/// Probe once and diff every item: the host's plan, and each item's verdict in item order.
/// Err: the host as a whole could not be planned (probe failed, unsupported OS).
/// Every fact a host's plan reads: the OS, the handler journal, and each item's.
pub(crate) fn host_queries(items: &[&Item]) -> Vec<FactQuery> {
    [
        facts::os::OsQuery.query(),
        facts::journal::JournalQuery.query(),
    ]
    .into_iter()
    .chain(items.iter().flat_map(|i| i.inst.facts()))
    .collect()
}

/// Connect and probe one host for every fact its plan reads, and its facts for templates: the
/// round trip `plan` and `apply` make, for `labctl facts` to print. With `recompile`, the host's
/// work is compiled again with its facts, and what that adds is asked over the same connection.
/// Returns the host's work as the diff would see it, the answers and its `ansible_facts`.
pub async fn probe_host(
    compiled: Compiled,
    i: usize,
    opts: &Opts,
    recompile: Option<&mut dyn Recompile>,
) -> Result<(Compiled, Facts, Map<String, Value>), HostError> {
    let t = Transport::connect(
        &compiled.hosts[i].conn,
        opts.host_keys,
        opts.connect_timeout,
    )
    .await?;
    let r = async {
        let items: Vec<&Item> = compiled.hosts[i].items().collect();
        let f = gather(&t, &first_queries(&items), opts).await?;
        let host = f
            .get(&facts::host::HostQuery)
            .map_err(|e| HostError::Probe(format!("facts for templates: {e}")))?;
        let compiled = match recompile {
            None => compiled,
            Some(rc) => {
                let c = rc
                    .with_facts(vec![(compiled.hosts[i].host.clone(), host.clone())])
                    .map_err(|e| HostError::Plan(errors_of(&e, &compiled.hosts[i].host)))?;
                if !same_hosts(&c, &compiled) {
                    return Err(HostError::Internal(
                        "internal error: compiling with facts selected other hosts".into(),
                    ));
                }
                c
            }
        };
        let items: Vec<&Item> = compiled.hosts[i].items().collect();
        let f = gather_missing(&t, f, &host_queries(&items), opts).await?;
        Ok((compiled, f, host))
    }
    .await;
    t.close().await;
    r
}

/// Probe and diff. `pre`: the answers of the host's first probe (made before compiling with its
/// facts); only what they lack is asked, over the same connection.
async fn probe_and_plan(
    cx: &HostCx<'_>,
    pre: Option<Facts>,
) -> Result<(HostPlan, Vec<Planned>), HostError> {
    let items = cx.items();
    let queries = host_queries(&items);
    let facts = match pre {
        None => gather(cx.t, &queries, cx.opts).await?,
        Some(have) => gather_missing(cx.t, have, &queries, cx.opts).await?,
    };
    build::check_os(&facts)?;
    let mut planned = build::plan_items(&items, &facts, &cx.opts.keys());
    for (item, p) in items.iter().zip(planned.iter_mut()) {
        refuse_placeholder(&cx.work.host, item, p);
    }
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

/// A placeholder must never reach a host nor a diff: an item that still renders one (another
/// host's fact, read through `hostvars`, of a host not probed yet in this run) is an error.
pub(crate) fn refuse_placeholder(host: &str, item: &Item, p: &mut Planned) {
    // Walked, not serialised: this runs for every item of every plan.
    let in_spec = || {
        facts::host::holds_placeholder(&item.rendered)
            .then(|| placeholder_in(&item.rendered.to_string()))
            .flatten()
    };
    let found = match p {
        Planned::Error(_) => return,
        Planned::InSync => in_spec(),
        Planned::Change(c) => in_spec()
            .or_else(|| c.diff.as_deref().and_then(placeholder_in))
            .or_else(|| c.reasons.iter().find_map(|r| placeholder_in(r)))
            .or_else(|| in_steps(&c.steps)),
    };
    if let Some(name) = found {
        *p = Planned::Error(format!(
            "{}: on host `{host}`, `{name}` is a fact that was not gathered (another host's, read through hostvars, outside --limit or not yet probed in this run); nothing was run",
            item.id
        ));
    }
}

/// The first `<fact:NAME>` in anything these steps send.
fn in_steps(steps: &[Step]) -> Option<String> {
    steps
        .iter()
        .find_map(|s| s.find_tag(facts::host::PLACEHOLDER))
}

/// The first `<fact:NAME>` in `text`.
fn placeholder_in(text: &str) -> Option<String> {
    crate::plan::step::tag_in(text.as_bytes(), facts::host::PLACEHOLDER.as_bytes())
}

async fn apply_host(cx: &HostCx<'_>, saved: Option<&Plan>, pre: Option<Facts>) -> HostOutcome {
    let host = &cx.work.host;
    let (plan, planned) = match probe_and_plan(cx, pre).await {
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
        let mut p = match build::diff_item(slots[j].item, &f, keys) {
            Ok(Some(c)) => Planned::Change(c),
            Ok(None) => Planned::InSync,
            Err(e) => Planned::Error(e),
        };
        refuse_placeholder(&cx.work.host, slots[j].item, &mut p);
        slots[j].verdict = match p {
            Planned::Change(c) => Ok(Some(c)),
            Planned::InSync => Ok(None),
            Planned::Error(e) => Err(e),
        };
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
            Ok(s) if in_steps(&s).is_some() => {
                recap.failed.push(Failure {
                    resource: build::handler_id(&role.role, &h.name).to_string(),
                    message: format!(
                        "on host `{}`, `{}` is a fact that was not gathered; not run",
                        cx.work.host,
                        in_steps(&s).unwrap_or_default()
                    ),
                });
                continue;
            }
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
    if let Some(name) = groups.iter().find_map(|g| in_steps(g)) {
        return (
            0,
            Some(format!(
                "`{name}` is a fact that was not gathered for this host; not run"
            )),
        );
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
    let tail = crate::transport::tail(&stderr[done]);
    (done, Some(format!("exit {}: {tail}", out.status)))
}

async fn gather(t: &Transport, queries: &[FactQuery], opts: &Opts) -> Result<Facts, HostError> {
    if let Some(q) = queries
        .iter()
        .find(|q| has_placeholder(&q.key) || has_placeholder(&q.script))
    {
        return Err(HostError::Plan(format!(
            "fact `{}` names `{}`, a fact that was not gathered for this host; not asked",
            q.key,
            placeholder_in(&format!("{} {}", q.key, q.script)).unwrap_or_default()
        )));
    }
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
    if let Some(name) = in_steps(steps) {
        return Err(format!(
            "`{name}` is a fact that was not gathered for this host; not run"
        ));
    }
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
