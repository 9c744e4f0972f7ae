//! The walk over hosts: every host in parallel up to `--forks`; for apply, play by play in
//! batches (`serial`), stopping when more hosts failed than the play allows.

use std::sync::Arc;

use super::conn::Conns;
use super::host::{apply_host, plan_one, probe_and_plan};
use super::probe::first_probes;
use super::HostCx;
use super::{Events, Opts};
use crate::facts::Facts;
use crate::plan::{HostError, HostOutcome, HostPlan, Plan};
use crate::site::select::Compiled;
use crate::site::sources::{Gathered, Sources};

/// Plan every host of `compiled` (the site compiled from `sources` before any facts were
/// gathered). Never changes anything. Planning changes nothing, so every host is probed once,
/// across all its plays. When templates name facts, that one probe also gathers the host's
/// facts, and the site is compiled again with them before the diff.
pub async fn plan_hosts(
    sources: &Sources,
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
) -> Vec<HostPlan> {
    let idxs: Vec<usize> = (0..compiled.hosts.len()).collect();
    let on_panic = |host: &str, msg: String| HostPlan::failed(host, HostError::Internal(msg));
    if !sources.facts_used {
        let o = opts.clone();
        let job = move |c: Arc<Compiled>, i: usize, ev: Arc<dyn Events>| {
            let o = o.clone();
            async move { plan_one(&c.hosts[i], &o, ev.as_ref()).await }
        };
        return for_each_host(&compiled, &idxs, opts.forks, &events, job, on_panic).await;
    }
    let conns = Conns::default();
    let mut gathered = Gathered::default();
    let (compiled, mut first) = first_probes(
        compiled,
        &idxs,
        None,
        &conns,
        opts,
        (sources, &mut gathered),
    )
    .await;
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
    let clock = opts.time(super::timings::Split::Remote);
    conns.close_all().await;
    opts.lap(clock, None, || "close connections".into());
    out
}

/// Plan and apply every host of `compiled` (compiled from `sources`, as for `plan_hosts`). With
/// `saved`, each host's fresh plan must match the saved one.
///
/// Apply runs play by play (so e.g. k3s servers converge before agents join), each play in
/// batches of its `serial` (or --serial); a host that failed sits out the later plays.
pub async fn apply_hosts(
    sources: &Sources,
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
    saved: Option<Arc<Plan>>,
) -> Vec<HostOutcome> {
    let mut compiled = compiled;
    let n = compiled.hosts.len();
    let mut acc: Vec<Option<HostOutcome>> = (0..n).map(|_| None).collect();
    let mut fatal = false;
    let conns = Conns::default();
    // Facts in `compiled` already (gathered by an earlier play's or batch's probe).
    let mut gathered = Gathered::default();
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
            if sources.facts_used && !stopped {
                let need: Vec<usize> = chunk
                    .iter()
                    .copied()
                    .filter(|&i| !gathered.has(&compiled.hosts[i].host))
                    .collect();
                if !need.is_empty() {
                    let (c, mut first) = first_probes(
                        compiled,
                        &need,
                        Some(p),
                        &conns,
                        opts,
                        (sources, &mut gathered),
                    )
                    .await;
                    compiled = c;
                    for i in need {
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
    let clock = opts.time(super::timings::Split::Remote);
    conns.close_all().await;
    opts.lap(clock, None, || "close connections".into());
    acc.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| HostOutcome::empty(&compiled.hosts[i].host)))
        .collect()
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
