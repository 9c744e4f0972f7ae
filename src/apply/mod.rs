//! Plan and apply, per host, all hosts in parallel up to `--forks`.
//!
//! One code path: a host is connected (one multiplexed SSH connection), probed (ONE script for
//! every fact its resources need) and diffed by `diff` (pure). `plan_hosts` stops there.
//! `apply_hosts` then runs each drifted resource's steps as one remote execution, in order, and
//! fires the role's handlers.
//!
//! Facts can go stale within a run (a package install writes a config file that a later resource
//! manages), so once anything changed on a host, a resource is re-probed right before its own
//! change runs. A no-op run never pays for this.
//!
//! One file per job: `diff` (a host's plan from items and facts; pure), `walk` (hosts in
//! parallel, plays, batches, fail limits), `host` (one host: probe, diff, lock, run), `probe`
//! (which facts, gathering them, and compiling the site again with them, `site::select::compile`),
//! `conn` (the run's connections), `changes` (a host's changes in order and in batches),
//! `handlers`, `execute` and `script` (steps sent to a host).

mod changes;
mod conn;
pub(crate) mod diff;
mod execute;
mod handlers;
mod host;
pub(crate) mod probe;
pub mod script;
pub mod timings;
mod walk;

use std::sync::Arc;
use std::time::Duration;

use crate::site::select::{HostWork, Item};
use crate::transport::{HostKeyPolicy, Transport};
use diff::Keys;

pub use probe::probe_host;
pub use walk::{apply_hosts, plan_hosts};

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
    /// `--timings`: where each phase's time goes. None: no phase reads a clock.
    pub timings: Option<Arc<timings::Recorder>>,
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

/// Events for the UI, so progress can be shown without the runner knowing how.
pub trait Events: Send + Sync {
    fn host_started(&self, _host: &str) {}
    fn host_probed(&self, _host: &str, _changes: usize) {}
    fn change_done(&self, _host: &str, _id: &str, _ok: bool) {}
    fn host_done(&self, _host: &str) {}
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
    /// Start timing a phase, when `--timings` asked for it.
    fn time<'a>(&self, split: timings::Split<'a>) -> Option<timings::Started<'a>> {
        self.timings
            .as_ref()
            .map(|_| timings::Recorder::start(split))
    }

    /// Record a phase started with `time` (the label is only built when timing).
    fn lap(
        &self,
        s: Option<timings::Started<'_>>,
        host: Option<&str>,
        phase: impl FnOnce() -> String,
    ) {
        if let (Some(r), Some(s)) = (&self.timings, s) {
            r.lap(s, host, phase());
        }
    }

    fn keys(&self) -> Keys {
        Keys {
            hash_key: self.hash_key,
            secrets: self.secrets.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Items and options for the engine's unit tests, built the way `site::select` builds them.
    use super::*;
    use crate::error::Loc;
    use crate::plan::ResourceId;
    use crate::site::select::Item;
    use serde_json::Value;

    /// An item of role `r` from a rendered spec, e.g. `item("file", json!({"path": "/x"}))`.
    pub fn item(kind: &str, rendered: Value) -> Item {
        let inst = crate::resources::testutil::with_prepare(|cx| {
            crate::resources::build(kind, rendered.clone(), cx)
                .expect("a known kind")
                .unwrap_or_else(|e| panic!("{kind}: {e:?}"))
        });
        Item {
            id: ResourceId::new("r", inst.kind(), &inst.name()),
            inst,
            notify: vec![],
            secret: false,
            loc: Loc::new("roles/r/role.yml", 1, 1),
            rendered,
        }
    }

    /// Options for a local transport: no forks, no fail limit, a 30 s step timeout.
    pub fn opts() -> Opts {
        Opts {
            forks: 1,
            serial: None,
            max_fail_percent: None,
            secrets: Arc::new(vec![]),
            interrupted: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(5),
            step_timeout: Duration::from_secs(30),
            hash_key: [3; 32],
            run: Arc::new(RunInfo::new()),
            timings: None,
        }
    }
}
