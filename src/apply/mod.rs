//! Plan and apply, per host, all hosts in parallel up to `--forks`.
//!
//! One code path: a host is connected (one multiplexed SSH connection), probed (ONE script for
//! every fact its resources need) and diffed. `plan` stops there. `apply` then runs each drifted
//! resource's steps as one remote execution, in order, and fires the role's handlers.
//!
//! Facts can go stale within a run (a package install writes a config file that a later resource
//! manages), so once anything changed on a host, a resource is re-probed right before its own
//! change runs. A no-op run never pays for this.

pub mod script;

use std::sync::Arc;
use std::time::Duration;

use crate::facts::{self, probe, FactQuery, Facts};
use crate::plan::{Change, HostPlan, Step};
use crate::resources::DiffCx;
use crate::site::select::{Compiled, HostWork, Item};
use crate::transport::{HostKeyPolicy, Transport, TransportError};

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
    /// `apply --plan` refused this host: its facts moved since the plan.
    pub refused: Option<String>,
    /// Steps left undone after Ctrl-C or an exceeded --max-fail-percent.
    pub skipped: usize,
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

/// Plan every host. Never changes anything.
pub async fn plan(compiled: Arc<Compiled>, opts: &Opts, events: Arc<dyn Events>) -> Vec<HostPlan> {
    let results = run_hosts(compiled, opts, events, None, false).await;
    results.into_iter().map(|(p, _)| p).collect()
}

/// Plan and apply every host. With `saved`, each host's fresh plan must match the saved one.
pub async fn apply(
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
    saved: Option<Arc<crate::plan::Plan>>,
) -> Vec<(HostPlan, Recap)> {
    run_hosts(compiled, opts, events, saved, true)
        .await
        .into_iter()
        .map(|(p, r)| (p, r.expect("apply yields a recap")))
        .collect()
}

async fn run_hosts(
    compiled: Arc<Compiled>,
    opts: &Opts,
    events: Arc<dyn Events>,
    saved: Option<Arc<crate::plan::Plan>>,
    apply: bool,
) -> Vec<(HostPlan, Option<Recap>)> {
    let n = compiled.hosts.len();
    if !apply {
        // Planning changes nothing, so every host is probed once, across all its plays.
        return run_batch(
            compiled.clone(),
            (0..n).collect(),
            None,
            opts,
            events,
            saved,
            false,
        )
        .await;
    }
    // Apply runs play by play (so e.g. k3s servers converge before agents join), each play in
    // batches of its `serial` (or --serial); a host that failed sits out the later plays.
    let mut acc: Vec<Option<(HostPlan, Option<Recap>)>> = (0..n).map(|_| None).collect();
    let mut fatal = false;
    for (p, play) in compiled.plays.iter().enumerate() {
        let idxs: Vec<usize> = (0..n)
            .filter(|&i| compiled.hosts[i].in_play(p) && !acc[i].as_ref().is_some_and(failed))
            .collect();
        if idxs.is_empty() {
            continue;
        }
        let batch = play.serial.or(opts.serial).unwrap_or(idxs.len()).max(1);
        let limit = play.max_fail_percent.or(opts.max_fail_percent);
        for chunk in idxs.chunks(batch) {
            let done: Vec<(HostPlan, Option<Recap>)> = acc.iter().flatten().cloned().collect();
            fatal = fatal || over_fail_limit(&done, limit, n);
            if opts.interrupted.load(std::sync::atomic::Ordering::SeqCst) || fatal {
                for &i in chunk {
                    let msg = format!(
                        "play `{}` not started here: the run was stopped (Ctrl-C, or more hosts failed than the play's max_fail_percentage/--max-fail-percent allow)",
                        play.name
                    );
                    let stopped = failed_plan(&compiled.hosts[i].host, msg, false, true);
                    acc[i] = Some(match acc[i].take() {
                        None => stopped,
                        Some(prev) => merge(prev, stopped),
                    });
                }
                continue;
            }
            let results = run_batch(
                compiled.clone(),
                chunk.to_vec(),
                Some(p),
                opts,
                events.clone(),
                saved.clone(),
                true,
            )
            .await;
            for (&i, r) in chunk.iter().zip(results) {
                acc[i] = Some(match acc[i].take() {
                    None => r,
                    Some(prev) => merge(prev, r),
                });
            }
        }
        let done: Vec<(HostPlan, Option<Recap>)> = acc.iter().flatten().cloned().collect();
        fatal = fatal || over_fail_limit(&done, limit, n);
    }
    acc.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let h = &compiled.hosts[i].host;
                (
                    HostPlan {
                        host: h.clone(),
                        changes: vec![],
                        in_sync: 0,
                        error: None,
                        unreachable: false,
                    },
                    Some(empty_recap(h)),
                )
            })
        })
        .collect()
}

fn failed(r: &(HostPlan, Option<Recap>)) -> bool {
    r.0.error.is_some()
        || r.1
            .as_ref()
            .is_some_and(|r| !r.failed.is_empty() || r.refused.is_some() || r.unreachable)
}

fn empty_recap(host: &str) -> Recap {
    Recap {
        host: host.to_string(),
        ok: 0,
        changed: vec![],
        failed: vec![],
        handlers: vec![],
        unreachable: false,
        refused: None,
        skipped: 0,
    }
}

/// One host's results from two plays, as one.
fn merge(a: (HostPlan, Option<Recap>), b: (HostPlan, Option<Recap>)) -> (HostPlan, Option<Recap>) {
    let (mut pa, ra) = a;
    let (pb, rb) = b;
    pa.changes.extend(pb.changes);
    pa.in_sync += pb.in_sync;
    pa.unreachable |= pb.unreachable;
    pa.error = match (pa.error, pb.error) {
        (Some(x), Some(y)) => Some(format!("{x}\n{y}")),
        (x, y) => x.or(y),
    };
    let r = match (ra, rb) {
        (Some(mut x), Some(y)) => {
            x.ok += y.ok;
            x.changed.extend(y.changed);
            x.failed.extend(y.failed);
            x.handlers.extend(y.handlers);
            x.unreachable |= y.unreachable;
            x.refused = x.refused.or(y.refused);
            x.skipped += y.skipped;
            Some(x)
        }
        (x, y) => x.or(y),
    };
    (pa, r)
}

/// Exceeded, not equalled, stops the run (Ansible's semantics).
fn over_fail_limit(done: &[(HostPlan, Option<Recap>)], max: Option<u8>, total: usize) -> bool {
    let Some(max) = max else { return false };
    let failed = done
        .iter()
        .filter(|(p, r)| {
            p.error.is_some()
                || r.as_ref()
                    .is_some_and(|r| !r.failed.is_empty() || r.refused.is_some())
        })
        .count();
    failed * 100 > max as usize * total
}

async fn run_batch(
    compiled: Arc<Compiled>,
    idxs: Vec<usize>,
    play: Option<usize>,
    opts: &Opts,
    events: Arc<dyn Events>,
    saved: Option<Arc<crate::plan::Plan>>,
    apply: bool,
) -> Vec<(HostPlan, Option<Recap>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.forks.max(1)));
    let mut tasks = Vec::new();
    for i in idxs {
        let (c, o, ev, s, sem) = (
            compiled.clone(),
            opts.clone(),
            events.clone(),
            saved.clone(),
            sem.clone(),
        );
        tasks.push((
            i,
            tokio::spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let work = &c.hosts[i];
                ev.host_started(&work.host);
                let saved_host = s
                    .as_ref()
                    .and_then(|p| p.hosts.iter().find(|h| h.host == work.host).cloned());
                let r = host(work, play, &o, ev.as_ref(), apply, s.is_some(), saved_host).await;
                ev.host_done(&work.host);
                r
            }),
        ));
    }
    let mut out = Vec::new();
    for (i, t) in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => {
                let host = compiled.hosts[i].host.clone();
                let msg = format!("internal error: {e}");
                out.push((
                    HostPlan {
                        host: host.clone(),
                        changes: vec![],
                        in_sync: 0,
                        error: Some(msg.clone()),
                        unreachable: false,
                    },
                    apply.then(|| Recap {
                        host,
                        ok: 0,
                        changed: vec![],
                        failed: vec![Failure {
                            resource: "-".into(),
                            message: msg,
                        }],
                        handlers: vec![],
                        unreachable: false,
                        refused: None,
                        skipped: 0,
                    }),
                ))
            }
        }
    }
    out
}

fn failed_plan(
    host: &str,
    msg: String,
    unreachable: bool,
    apply: bool,
) -> (HostPlan, Option<Recap>) {
    (
        HostPlan {
            host: host.to_string(),
            changes: vec![],
            in_sync: 0,
            error: Some(msg.clone()),
            unreachable,
        },
        apply.then(|| Recap {
            host: host.to_string(),
            ok: 0,
            changed: vec![],
            failed: vec![Failure {
                resource: "(connection)".into(),
                message: msg,
            }],
            handlers: vec![],
            unreachable,
            refused: None,
            skipped: 0,
        }),
    )
}

async fn host(
    work: &HostWork,
    play: Option<usize>,
    opts: &Opts,
    ev: &dyn Events,
    apply: bool,
    from_saved: bool,
    saved: Option<HostPlan>,
) -> (HostPlan, Option<Recap>) {
    let t = match Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await {
        Ok(t) => t,
        Err(e) => {
            let unreachable = matches!(e, TransportError::Unreachable { .. });
            return failed_plan(&work.host, e.to_string(), unreachable, apply);
        }
    };
    let result = host_inner(work, play, opts, ev, apply, from_saved, saved, &t).await;
    t.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn host_inner(
    work: &HostWork,
    play: Option<usize>,
    opts: &Opts,
    ev: &dyn Events,
    apply: bool,
    from_saved: bool,
    saved: Option<HostPlan>,
    t: &Transport,
) -> (HostPlan, Option<Recap>) {
    let items: Vec<&Item> = work.roles_in(play).flat_map(|r| r.items.iter()).collect();
    let queries: Vec<FactQuery> = std::iter::once(facts::os::query())
        .chain(items.iter().flat_map(|i| i.inst.facts()))
        .collect();
    let facts = match gather(t, &queries, opts).await {
        Ok(f) => f,
        Err(e) => return failed_plan(&work.host, e, false, apply),
    };
    if let Err(e) = check_os(&facts) {
        return failed_plan(&work.host, e, false, apply);
    }
    let mut changes: Vec<Option<Change>> = Vec::new();
    let mut errors = Vec::new();
    for item in &items {
        match diff_item(item, &facts, opts) {
            Ok(c) => changes.push(c),
            Err(e) => {
                errors.push(format!("{}: {e}", item.id));
                changes.push(None);
            }
        }
    }
    let in_sync = changes.iter().filter(|c| c.is_none()).count() - errors.len();
    let plan = HostPlan {
        host: work.host.clone(),
        changes: changes.iter().flatten().cloned().collect(),
        in_sync,
        error: if errors.is_empty() {
            None
        } else {
            Some(errors.join("\n"))
        },
        unreachable: false,
    };
    ev.host_probed(&work.host, plan.changes.len());
    if !apply {
        return (plan, None);
    }
    let mut recap = Recap {
        host: work.host.clone(),
        ok: in_sync,
        changed: vec![],
        failed: vec![],
        handlers: vec![],
        unreachable: false,
        refused: None,
        skipped: 0,
    };
    if !errors.is_empty() {
        recap.failed = errors
            .iter()
            .map(|e| Failure {
                resource: "(plan)".into(),
                message: e.clone(),
            })
            .collect();
        return (plan, Some(recap));
    }
    if from_saved {
        // Only this play's part of the saved plan is compared now.
        let saved = saved.map(|mut h| {
            h.changes.retain(|c| items.iter().any(|i| i.id == c.id));
            h
        });
        if let Some(why) = stale(&plan, saved.as_ref()) {
            recap.refused = Some(why);
            return (plan, Some(recap));
        }
    }

    if plan.changes.is_empty() {
        return (plan, Some(recap));
    }
    // One run per host at a time; held until we are done or the connection drops.
    let lock = match t.lock().await {
        Ok(l) => l,
        Err(e) => {
            recap.refused = Some(e);
            return (plan, Some(recap));
        }
    };
    execute_all(work, play, opts, ev, t, changes, &mut recap).await;
    lock.release().await;
    (plan, Some(recap))
}

/// Run the planned changes role by role, handlers after each role.
async fn execute_all(
    work: &HostWork,
    play: Option<usize>,
    opts: &Opts,
    ev: &dyn Events,
    t: &Transport,
    mut changes: Vec<Option<Change>>,
    recap: &mut Recap,
) {
    let mut dirty = false;
    let mut idx = 0;
    let mut stop = false;
    for role in work.roles_in(play) {
        let mut notified: Vec<String> = Vec::new();
        for item in &role.items {
            let planned = changes[idx].take();
            idx += 1;
            if stop {
                continue;
            }
            let Some(mut change) = planned else { continue };
            if opts.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                recap.skipped += 1;
                continue;
            }
            if dirty {
                // Something already changed on this host: re-read this resource's facts.
                let q: Vec<FactQuery> = item.inst.facts();
                match gather(t, &q, opts).await.and_then(|f| {
                    diff_item(item, &f, opts).map_err(|e| format!("{}: {e}", item.id))
                }) {
                    Ok(Some(c)) => change = c,
                    Ok(None) => {
                        recap.ok += 1;
                        continue;
                    }
                    Err(e) => {
                        recap.failed.push(Failure {
                            resource: item.id.clone(),
                            message: e,
                        });
                        stop = true;
                        continue;
                    }
                }
            }
            match execute(t, &change.steps, opts).await {
                Ok(()) => {
                    dirty = true;
                    recap.changed.push(change.id.clone());
                    for n in &item.notify {
                        if !notified.contains(n) {
                            notified.push(n.clone());
                        }
                    }
                    ev.change_done(&work.host, &change.id, true);
                }
                Err(e) => {
                    recap.failed.push(Failure {
                        resource: change.id.clone(),
                        message: e,
                    });
                    ev.change_done(&work.host, &change.id, false);
                    // Stop this host, but still fire what was notified (RELIABILITY rule 6).
                    stop = true;
                }
            }
        }
        for h in &role.handlers {
            if !notified.contains(&h.name) {
                continue;
            }
            let steps = match h.inst.handler(h.secret) {
                Ok(s) => s,
                Err(e) => {
                    recap.failed.push(Failure {
                        resource: format!("{}/handler:{}", role.role, h.name),
                        message: e,
                    });
                    continue;
                }
            };
            match execute(t, &steps, opts).await {
                Ok(()) => recap.handlers.push(format!("{}/{}", role.role, h.name)),
                Err(e) => recap.failed.push(Failure {
                    resource: format!("{}/handler:{}", role.role, h.name),
                    message: e,
                }),
            }
        }
    }
}

/// A saved plan applies only if the fresh plan is the same: same changes, same fingerprints.
fn stale(fresh: &HostPlan, saved: Option<&HostPlan>) -> Option<String> {
    let Some(saved) = saved else {
        return if fresh.changes.is_empty() {
            None
        } else {
            Some("the saved plan has no entry for this host, but it has changes now".into())
        };
    };
    let key = |c: &Change| (c.id.clone(), c.action, c.fingerprint.clone());
    let a: Vec<_> = fresh.changes.iter().map(key).collect();
    let b: Vec<_> = saved.changes.iter().map(key).collect();
    if a == b {
        return None;
    }
    let moved: Vec<String> = fresh
        .changes
        .iter()
        .filter(|c| !saved.changes.iter().any(|s| key(s) == key(c)))
        .map(|c| c.id.clone())
        .chain(
            saved
                .changes
                .iter()
                .filter(|s| !fresh.changes.iter().any(|c| c.id == s.id))
                .map(|s| format!("{} (no longer pending)", s.id)),
        )
        .collect();
    Some(format!("the saved plan is stale: the host (or the repo) changed since it was made ({}); run `labctl plan` again", moved.join(", ")))
}

fn diff_item(item: &Item, facts: &Facts, opts: &Opts) -> Result<Option<Change>, String> {
    let cx = DiffCx {
        secret: item.secret,
        hash_key: opts.hash_key,
        secrets: opts.secrets.clone(),
    };
    let Some(d) = item.inst.diff(facts, &cx)? else {
        return Ok(None);
    };
    let keys: Vec<String> = item.inst.facts().into_iter().map(|q| q.key).collect();
    let fingerprint = fingerprint(&opts.hash_key, &item.id, facts, &keys, &d.steps);
    Ok(Some(Change {
        id: item.id.clone(),
        role: item.role.clone(),
        kind: item.kind.clone(),
        name: item.name.clone(),
        action: d.action,
        reasons: d.reasons,
        diff: d.diff,
        notify: item.notify.clone(),
        fingerprint,
        steps: d.steps,
    }))
}

/// Keyed: plan files must not carry an unkeyed hash of anything secret (RELIABILITY rule 3).
fn fingerprint(key: &[u8; 32], id: &str, facts: &Facts, keys: &[String], steps: &[Step]) -> String {
    let mut m = crate::digest::Keyed::new(key);
    m.update(id.as_bytes());
    for (k, raw) in facts.subset(keys) {
        m.update(k.as_bytes());
        m.update(&raw.rc.to_le_bytes());
        m.update(raw.out.as_bytes());
    }
    for s in steps {
        s.digest_into(&mut |b: &[u8]| m.update(b));
    }
    m.fingerprint()
}

async fn gather(t: &Transport, queries: &[FactQuery], opts: &Opts) -> Result<Facts, String> {
    let p = probe::build(queries);
    let started = std::time::Instant::now();
    let out = t
        .run(&p.script, None, opts.step_timeout)
        .await
        .map_err(|e| e.to_string())?;
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
        format!(
            "probe failed: {e} (exit {}; stderr: {})",
            out.status,
            out.stderr_tail()
        )
    })
}

fn check_os(facts: &Facts) -> Result<(), String> {
    let os = facts::os::get(facts).map_err(|e| e.to_string())?;
    if os.family != "debian" {
        return Err(format!(
            "unsupported OS `{}`: labctl manages Debian and Ubuntu (apt, systemd) hosts",
            if os.id.is_empty() { "unknown" } else { &os.id }
        ));
    }
    Ok(())
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

    fn facts_with_os(out: &str) -> Facts {
        let mut f = Facts::default();
        f.insert(facts::os::KEY, out, 0);
        f
    }

    #[test]
    fn only_debian_family_hosts_are_managed() {
        let debian = "id=debian\nlike=\nversion=12\ncodename=bookworm\nhostname=h\narch=x86_64\nuid=0\nsystemd=1\n";
        let ubuntu = "id=ubuntu\nlike=debian\nversion=24.04\ncodename=noble\nhostname=h\narch=x86_64\nuid=0\nsystemd=1\n";
        let rocky = "id=rocky\nlike=rhel centos fedora\nversion=9\ncodename=\nhostname=h\narch=x86_64\nuid=0\nsystemd=1\n";
        assert!(check_os(&facts_with_os(debian)).is_ok());
        assert!(check_os(&facts_with_os(ubuntu)).is_ok());
        let e = check_os(&facts_with_os(rocky)).unwrap_err();
        assert!(
            e.contains("unsupported OS `rocky`") && e.contains("Debian and Ubuntu"),
            "{e}"
        );
    }

    #[test]
    fn saved_plans_must_match_exactly() {
        let ch = |id: &str, fp: &str| Change {
            id: id.into(),
            role: "r".into(),
            kind: "file".into(),
            name: id.into(),
            action: crate::plan::Action::Update,
            reasons: vec![],
            diff: None,
            notify: vec![],
            fingerprint: fp.into(),
            steps: vec![],
        };
        let hp = |c: Vec<Change>| HostPlan {
            host: "h".into(),
            changes: c,
            in_sync: 0,
            error: None,
            unreachable: false,
        };
        assert!(stale(&hp(vec![ch("a", "1")]), Some(&hp(vec![ch("a", "1")]))).is_none());
        assert!(
            stale(&hp(vec![ch("a", "2")]), Some(&hp(vec![ch("a", "1")])))
                .unwrap()
                .contains("stale")
        );
        assert!(stale(&hp(vec![]), Some(&hp(vec![ch("a", "1")])))
            .unwrap()
            .contains("no longer pending"));
        assert!(stale(&hp(vec![ch("b", "1")]), None).is_some());
        assert!(stale(&hp(vec![]), None).is_none());
    }

    #[test]
    fn fail_limit_is_exceeded_not_equalled() {
        let ok = (
            HostPlan {
                host: "a".into(),
                changes: vec![],
                in_sync: 0,
                error: None,
                unreachable: false,
            },
            None,
        );
        let bad = (
            HostPlan {
                host: "b".into(),
                changes: vec![],
                in_sync: 0,
                error: Some("x".into()),
                unreachable: false,
            },
            None,
        );
        assert!(!over_fail_limit(&[ok.clone(), bad.clone()], Some(50), 2));
        assert!(over_fail_limit(&[ok.clone(), bad.clone()], Some(49), 2));
        assert!(over_fail_limit(std::slice::from_ref(&bad), Some(0), 4));
        assert!(!over_fail_limit(&[bad], None, 1));
    }
}
