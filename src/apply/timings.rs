//! `--timings`: where a run's time went, per host and per phase (connect, probe, diff, each
//! executed change or batch, handlers), split into waiting on the host and the controller's own
//! work.
//!
//! Recording is off unless asked for: `Opts::timings` is None and no phase reads a clock. When
//! on, a phase costs two `Instant::now` (and, for the synchronous ones, two thread-CPU reads) and
//! one push under a mutex. The split comes from the connection itself: `Transport::waited` sums
//! every remote execution's round trip, so a phase's remote part is how much that sum grew while
//! it ran, and the rest of its wall time is the controller's (building scripts, parsing answers,
//! and waiting for a CPU on a busy machine). CPU is measured where it can be attributed: the
//! synchronous phases run on one thread without yielding, so the thread's CPU clock is theirs;
//! the run as a whole reports the process's and its ssh clients' CPU (`getrusage`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::transport::Transport;

/// The phases recorded during a run, in the order each host went through them.
#[derive(Debug, Default)]
pub struct Recorder {
    laps: Mutex<Vec<Lap>>,
}

/// One finished phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Lap {
    /// None: the run as a whole (compiling the site with gathered facts, closing connections).
    pub host: Option<String>,
    pub phase: String,
    pub wall: Duration,
    /// Waiting on the host (ssh round trips); at most `wall`.
    pub remote: Duration,
    /// The controller thread's CPU, for phases that do not wait.
    pub cpu: Option<Duration>,
}

/// How a phase's wall time splits.
pub(crate) enum Split<'a> {
    /// All of it is waiting on the host (ssh handshake, lock, closing).
    Remote,
    /// The connection's round trips are remote, the rest is the controller's.
    Via(&'a Transport),
    /// All of it is the controller's, and its thread CPU is measured.
    Cpu,
}

/// A phase being timed.
pub(crate) struct Started<'a> {
    at: Instant,
    split: Split<'a>,
    /// `Transport::waited` or the thread's CPU clock when the phase started.
    base: Duration,
}

impl Recorder {
    /// Start timing a phase.
    pub(crate) fn start(split: Split<'_>) -> Started<'_> {
        let base = match &split {
            Split::Remote => Duration::ZERO,
            Split::Via(t) => t.waited(),
            Split::Cpu => thread_cpu(),
        };
        Started {
            at: Instant::now(),
            split,
            base,
        }
    }

    /// Record a phase started with `start`.
    pub(crate) fn lap(&self, s: Started<'_>, host: Option<&str>, phase: impl Into<String>) {
        let wall = s.at.elapsed();
        let (remote, cpu) = match s.split {
            Split::Remote => (wall, None),
            Split::Via(t) => (t.waited().saturating_sub(s.base).min(wall), None),
            Split::Cpu => (Duration::ZERO, Some(thread_cpu().saturating_sub(s.base))),
        };
        self.push(Lap {
            host: host.map(str::to_string),
            phase: phase.into(),
            wall,
            remote,
            cpu,
        });
    }

    pub fn push(&self, lap: Lap) {
        self.laps.lock().expect("timings lock").push(lap);
    }

    pub fn laps(&self) -> Vec<Lap> {
        self.laps.lock().expect("timings lock").clone()
    }
}

/// How a connection attempt is named (a failed one cost its timeout, or ssh's refusal).
pub(crate) fn connect_label<T, E>(r: &Result<T, E>) -> String {
    if r.is_ok() {
        "connect"
    } else {
        "connect (failed)"
    }
    .into()
}

/// The whole command's cost on the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunCost {
    /// From the command's start to the report.
    pub wall: Duration,
    /// Reading, decrypting, rendering and compiling before any host was contacted.
    pub load: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// CPU of the child processes labctl waited for: its ssh clients (`ssh -G`, the masters).
    pub children: Duration,
}

impl RunCost {
    /// The process's CPU so far (`getrusage`), with the given wall and load times.
    pub fn now(wall: Duration, load: Duration) -> RunCost {
        let (user, sys) = rusage(libc::RUSAGE_SELF);
        let (cu, cs) = rusage(libc::RUSAGE_CHILDREN);
        RunCost {
            wall,
            load,
            user,
            sys,
            children: cu + cs,
        }
    }
}

/// What `--timings` prints (text) or adds to the JSON envelope (`timings`). Times in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub wall_ms: f64,
    pub load_ms: f64,
    pub cpu: CpuRow,
    /// Phases of the run as a whole.
    pub run: Vec<PhaseRow>,
    pub hosts: Vec<HostRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuRow {
    pub user_ms: f64,
    pub sys_ms: f64,
    /// The ssh clients labctl started and waited for.
    pub children_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRow {
    pub host: String,
    /// Sums over the host's phases (not counting time it waited for a fork slot).
    pub wall_ms: f64,
    pub remote_ms: f64,
    pub controller_ms: f64,
    pub phases: Vec<PhaseRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseRow {
    pub phase: String,
    pub wall_ms: f64,
    pub remote_ms: f64,
    pub controller_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    // Tenths of a millisecond: finer is noise on a shared machine.
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

impl PhaseRow {
    fn of(l: &Lap) -> PhaseRow {
        PhaseRow {
            phase: l.phase.clone(),
            wall_ms: ms(l.wall),
            remote_ms: ms(l.remote),
            controller_ms: ms(l.wall.saturating_sub(l.remote)),
            cpu_ms: l.cpu.map(ms),
        }
    }
}

impl Report {
    /// The laps grouped by host, hosts in `order` (the run's host order; any other host after
    /// them, in the order first seen), each host's phases in the order they ran.
    pub fn build(laps: &[Lap], order: &[String], cost: RunCost) -> Report {
        let mut names: Vec<&str> = order.iter().map(String::as_str).collect();
        for l in laps {
            if let Some(h) = l.host.as_deref() {
                if !names.contains(&h) {
                    names.push(h);
                }
            }
        }
        let hosts = names
            .into_iter()
            .filter_map(|h| {
                let mine: Vec<&Lap> = laps
                    .iter()
                    .filter(|l| l.host.as_deref() == Some(h))
                    .collect();
                if mine.is_empty() {
                    return None;
                }
                let wall: Duration = mine.iter().map(|l| l.wall).sum();
                let remote: Duration = mine.iter().map(|l| l.remote).sum();
                Some(HostRow {
                    host: h.to_string(),
                    wall_ms: ms(wall),
                    remote_ms: ms(remote),
                    controller_ms: ms(wall.saturating_sub(remote)),
                    phases: mine.into_iter().map(PhaseRow::of).collect(),
                })
            })
            .collect();
        Report {
            wall_ms: ms(cost.wall),
            load_ms: ms(cost.load),
            cpu: CpuRow {
                user_ms: ms(cost.user),
                sys_ms: ms(cost.sys),
                children_ms: ms(cost.children),
            },
            run: laps
                .iter()
                .filter(|l| l.host.is_none())
                .map(PhaseRow::of)
                .collect(),
            hosts,
        }
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only fills it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (user, system) CPU of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`).
fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: an all-zero rusage is a valid value; getrusage only fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable for the call.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lap(host: Option<&str>, phase: &str, wall: u64, remote: u64, cpu: Option<u64>) -> Lap {
        Lap {
            host: host.map(str::to_string),
            phase: phase.into(),
            wall: Duration::from_micros(wall),
            remote: Duration::from_micros(remote),
            cpu: cpu.map(Duration::from_micros),
        }
    }

    #[test]
    fn laps_are_grouped_by_host_in_run_order_and_summed() {
        let laps = vec![
            lap(Some("b"), "connect", 190_000, 190_000, None),
            lap(Some("a"), "connect", 180_000, 180_000, None),
            lap(Some("b"), "probe", 80_000, 75_000, None),
            lap(None, "compile with facts", 12_000, 0, Some(11_000)),
            lap(Some("a"), "diff", 4_000, 0, Some(3_900)),
            lap(Some("c"), "connect", 1_000, 1_000, None),
        ];
        let cost = RunCost {
            wall: Duration::from_millis(1234),
            load: Duration::from_millis(50),
            user: Duration::from_millis(180),
            sys: Duration::from_millis(30),
            children: Duration::from_millis(60),
        };
        let r = Report::build(&laps, &["a".into(), "b".into()], cost);
        let names: Vec<&str> = r.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let b = &r.hosts[1];
        assert_eq!(
            (b.wall_ms, b.remote_ms, b.controller_ms),
            (270.0, 265.0, 5.0)
        );
        assert_eq!(b.phases[1].phase, "probe");
        assert_eq!(b.phases[1].controller_ms, 5.0);
        assert_eq!(r.hosts[0].phases[1].cpu_ms, Some(3.9));
        assert_eq!(r.run.len(), 1);
        assert_eq!(r.run[0].phase, "compile with facts");
        assert_eq!((r.wall_ms, r.load_ms), (1234.0, 50.0));
        assert_eq!(r.cpu.children_ms, 60.0);
        // A host named in the order but never timed (failed before connecting) has no row.
        let r = Report::build(&laps, &["z".into()], RunCost::default());
        assert!(r.hosts.iter().all(|h| h.host != "z"));
    }

    #[test]
    fn json_leaves_out_unmeasured_cpu() {
        let r = Report::build(
            &[lap(Some("a"), "probe", 1_250, 1_000, None)],
            &[],
            RunCost::default(),
        );
        let v = serde_json::to_value(&r).unwrap();
        let p = &v["hosts"][0]["phases"][0];
        assert_eq!(p["wall_ms"], 1.3);
        assert_eq!(p["remote_ms"], 1.0);
        assert!(p.get("cpu_ms").is_none(), "{p}");
    }

    #[test]
    fn a_phase_split_via_the_connection_counts_its_round_trips_as_remote() {
        let t = Transport::local(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let rec = Recorder::default();
        rt.block_on(async {
            let s = Recorder::start(Split::Via(&t));
            t.run("sleep 0.05", None, Duration::from_secs(5))
                .await
                .unwrap();
            rec.lap(s, Some("h"), "probe");
            let s = Recorder::start(Split::Cpu);
            let mut x = 0u64;
            for i in 0..200_000u64 {
                x = x.wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
            rec.lap(s, Some("h"), "diff");
        });
        let laps = rec.laps();
        assert!(laps[0].remote >= Duration::from_millis(50), "{laps:?}");
        assert!(laps[0].remote <= laps[0].wall, "{laps:?}");
        assert_eq!(laps[1].remote, Duration::ZERO);
        assert!(laps[1].cpu.is_some());
        let c = RunCost::now(Duration::from_secs(1), Duration::ZERO);
        assert!(c.user + c.sys > Duration::ZERO);
    }
}
