//! Rolling reboots (`labctl reboot PATTERN`): one host at a time; a k3s node is drained first
//! (cordon, evict with a timeout, DaemonSets skipped) through kubectl on the k3s server, rebooted,
//! waited for (SSH answers with a new boot id, then the Node is Ready) and uncordoned before the
//! next host is touched. A host that does not come back stops the rollout: the hosts after it
//! are left as they were (not drained, not rebooted).
//!
//! Each host's run lock is held from before its drain until the reboot takes it down (the lock
//! lives in /run): an `apply` that starts meanwhile is refused, and a host an `apply` holds is
//! neither drained nor rebooted (exit 5).
//!
//! This file is the pure part: the steps of a host, the order of a rollout, and the decisions
//! while waiting, all tested without a host. `run` executes them over the transport.

pub mod remote;
mod run;

use std::time::Duration;

use serde::Serialize;

pub use run::rollout;

/// `kubectl drain`'s --timeout unless told otherwise (`labctl reboot --drain-timeout`, `remove-node`,
/// and the reboots `apply` carries out).
pub const DRAIN_TIMEOUT_SECS: u64 = 300;
/// How long a host may take to come back and its Node to be Ready, unless told otherwise.
pub const TIMEOUT_SECS: u64 = 600;

/// One host of the rollout, in the order it is handled.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub conn: crate::inventory::Conn,
    /// Its Kubernetes Node when the host is a k3s server or agent.
    pub node: Option<String>,
}

/// Where kubectl runs: the first k3s server, as root (the admin kubeconfig is root's).
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub conn: crate::inventory::Conn,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub host_keys: crate::transport::HostKeyPolicy,
    pub connect_timeout: Duration,
    /// kubectl drain's own --timeout (evictions that take longer fail the drain).
    pub drain_timeout: Duration,
    /// How long a host may take from `systemctl reboot` to answering SSH with a new boot id,
    /// and then its Node to be Ready again.
    pub timeout: Duration,
    /// Pause between two attempts while waiting.
    pub poll: Duration,
    /// Who holds a host's run lock from before its drain to its reboot (`RunInfo::record`).
    pub record: String,
}

/// One step of one host, in the order `steps` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…` on the server.
    Drain { node: String },
    /// Read the boot id, then `systemctl reboot` (the connection dropping is expected).
    Reboot,
    /// Until SSH answers and the boot id differs from the one read before the reboot.
    WaitBack,
    /// Until the Node's Ready condition is True.
    WaitReady { node: String },
    /// `kubectl uncordon NODE` on the server.
    Uncordon { node: String },
}

impl Step {
    /// What the step does, in words (plan-only output, progress lines).
    pub fn describe(&self, o: &Opts) -> String {
        match self {
            Step::Drain { node } => format!(
                "drain node {node} (cordon; evict pods, DaemonSets skipped; timeout {}s)",
                o.drain_timeout.as_secs()
            ),
            Step::Reboot => "reboot (systemctl reboot)".into(),
            Step::WaitBack => format!(
                "wait for SSH with a new boot id (up to {}s)",
                o.timeout.as_secs()
            ),
            Step::WaitReady { node } => format!("wait for node {node} to be Ready"),
            Step::Uncordon { node } => format!("uncordon node {node}"),
        }
    }
}

/// The steps of one host: a k3s node is drained before and uncordoned after, once Ready.
pub fn steps(t: &Target) -> Vec<Step> {
    match &t.node {
        None => vec![Step::Reboot, Step::WaitBack],
        Some(n) => vec![
            Step::Drain { node: n.clone() },
            Step::Reboot,
            Step::WaitBack,
            Step::WaitReady { node: n.clone() },
            Step::Uncordon { node: n.clone() },
        ],
    }
}

/// Why a host's reboot failed. Every variant stops the rollout.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RebootError {
    #[error("cannot reach {host} before its reboot: {why}")]
    Unreachable { host: String, why: String },
    #[error("cannot reach the k3s server {server}: {why}")]
    Server { server: String, why: String },
    #[error("drain of node {node} failed (it may be left cordoned): {why}")]
    Drain { node: String, why: String },
    #[error("cannot read the boot id of {host}: {why}")]
    BootId { host: String, why: String },
    #[error("`systemctl reboot` failed on {host}: {why}")]
    Reboot { host: String, why: String },
    #[error("{host} did not come back within {secs}s after its reboot ({last})")]
    NotBack {
        host: String,
        secs: u64,
        last: String,
    },
    #[error("node {node} was not Ready within {secs}s after its host came back ({last})")]
    NotReady {
        node: String,
        secs: u64,
        last: String,
    },
    #[error("uncordon of node {node} failed: {why}")]
    Uncordon { node: String, why: String },
    /// Another run holds the host's lock: nothing was done to it.
    #[error("{host} was not touched: {why}")]
    Locked { host: String, why: String },
}

impl RebootError {
    /// The exit-code contract: a host that could not be reached before anything was done to
    /// it is "unreachable" (6, when that is every failure); everything else failed (1).
    pub fn exit(&self) -> crate::error::Exit {
        match self {
            RebootError::Unreachable { .. } => crate::error::Exit::Unreachable,
            RebootError::Locked { .. } => crate::error::Exit::Refused,
            _ => crate::error::Exit::Failed,
        }
    }
}

/// What happened to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Rebooted,
    Failed,
    /// After a failure: not drained, not rebooted.
    Untouched,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub node: Option<String>,
    pub status: Status,
    pub boot_id_before: Option<String>,
    pub boot_id_after: Option<String>,
    /// Unix seconds (with fractions) when its first step started and its last one ended.
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub error: Option<String>,
    /// The failure's exit code (`RebootError::exit`).
    #[serde(skip)]
    pub exit: Option<crate::error::Exit>,
}

/// The rollout's exit: 0 when every host was rebooted; 6 when the one failure was a host that
/// could not be reached to begin with; otherwise 1.
pub fn exit_of(reports: &[HostReport]) -> crate::error::Exit {
    use crate::error::Exit;
    match reports.iter().find_map(|r| r.exit) {
        None => Exit::Ok,
        Some(e) => e,
    }
}

impl HostReport {
    pub fn untouched(t: &Target) -> HostReport {
        HostReport {
            host: t.host.clone(),
            node: t.node.clone(),
            status: Status::Untouched,
            boot_id_before: None,
            boot_id_after: None,
            started: None,
            finished: None,
            error: None,
            exit: None,
        }
    }
}

/// Progress, as it happens, for the CLI to print (the engine sits below the output layer).
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Start {
        host: &'a str,
        index: usize,
        of: usize,
    },
    Step {
        host: &'a str,
        step: &'a Step,
    },
    Done {
        host: &'a str,
        secs: f64,
    },
    Failed {
        host: &'a str,
        error: &'a RebootError,
    },
    Skipped {
        host: &'a str,
    },
}

/// The rollout's rule: hosts in order, and after the first failure none is touched.
pub fn next_action(reports: &[HostReport]) -> Next {
    if reports.iter().any(|r| r.status == Status::Failed) {
        Next::LeaveUntouched
    } else {
        Next::Reboot
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Reboot,
    LeaveUntouched,
}

/// What one look at a rebooting host saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No SSH (refused, timed out, dropped): still rebooting, or not coming back.
    NoAnswer(String),
    BootId(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Back(String),
    Retry,
    TimedOut,
}

/// While waiting for a host: back once SSH answers with another boot id than before; the same
/// boot id means the reboot has not happened yet (systemd is still stopping services); past the
/// deadline it never came back.
pub fn back_verdict(before: &str, seen: &Seen, elapsed: Duration, timeout: Duration) -> Verdict {
    match seen {
        Seen::BootId(id) if id != before => Verdict::Back(id.clone()),
        _ if elapsed >= timeout => Verdict::TimedOut,
        _ => Verdict::Retry,
    }
}

/// While waiting for a Node: Ready is kubectl's `True` for the Ready condition.
pub fn ready_verdict(status: Option<&str>, elapsed: Duration, timeout: Duration) -> Verdict {
    match status.map(str::trim) {
        Some("True") => Verdict::Back("True".into()),
        _ if elapsed >= timeout => Verdict::TimedOut,
        _ => Verdict::Retry,
    }
}

/// A boot id as /proc/sys/kernel/random/boot_id prints it: a UUID, nothing else.
pub fn parse_boot_id(out: &str) -> Option<String> {
    let id = out.trim();
    let ok = id.len() == 36
        && id.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        });
    ok.then(|| id.to_string())
}

/// The scripts run on the k3s server, as root. `k3s kubectl` reads /etc/rancher/k3s/k3s.yaml.
pub mod script {
    use crate::sh::q;

    pub fn drain(node: &str, timeout_secs: u64) -> String {
        format!(
            "k3s kubectl drain {} --ignore-daemonsets --delete-emptydir-data --timeout={timeout_secs}s",
            q(node)
        )
    }

    pub fn uncordon(node: &str) -> String {
        format!("k3s kubectl uncordon {}", q(node))
    }

    pub fn ready(node: &str) -> String {
        format!(
            "k3s kubectl get node {} --request-timeout=10s -o 'jsonpath={{.status.conditions[?(@.type==\"Ready\")].status}}'",
            q(node)
        )
    }

    pub const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";
    /// The reply comes back before systemd takes sshd down, most of the time; when the
    /// connection drops first, that is the reboot starting too.
    pub const REBOOT: &str = "systemctl reboot";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(node: Option<&str>) -> Target {
        Target {
            host: "h".into(),
            conn: crate::inventory::Conn::default(),
            node: node.map(String::from),
        }
    }

    #[test]
    fn a_k3s_node_is_drained_first_and_uncordoned_once_ready() {
        assert_eq!(
            steps(&target(Some("n1"))),
            vec![
                Step::Drain { node: "n1".into() },
                Step::Reboot,
                Step::WaitBack,
                Step::WaitReady { node: "n1".into() },
                Step::Uncordon { node: "n1".into() },
            ]
        );
    }

    #[test]
    fn other_hosts_only_reboot_and_wait() {
        assert_eq!(steps(&target(None)), vec![Step::Reboot, Step::WaitBack]);
    }

    #[test]
    fn after_a_failure_the_rest_is_left_untouched() {
        let mut r = HostReport::untouched(&target(None));
        assert_eq!(next_action(&[]), Next::Reboot);
        r.status = Status::Rebooted;
        assert_eq!(next_action(std::slice::from_ref(&r)), Next::Reboot);
        let mut f = r.clone();
        f.status = Status::Failed;
        assert_eq!(next_action(&[r, f]), Next::LeaveUntouched);
    }

    #[test]
    fn unreachable_at_the_start_is_exit_6_locked_5_anything_else_1() {
        use crate::error::Exit;
        let mut r = HostReport::untouched(&target(None));
        assert_eq!(exit_of(std::slice::from_ref(&r)), Exit::Ok);
        r.exit = Some(
            RebootError::Unreachable {
                host: "h".into(),
                why: "refused".into(),
            }
            .exit(),
        );
        assert_eq!(exit_of(std::slice::from_ref(&r)), Exit::Unreachable);
        r.exit = Some(
            RebootError::NotBack {
                host: "h".into(),
                secs: 1,
                last: String::new(),
            }
            .exit(),
        );
        assert_eq!(exit_of(std::slice::from_ref(&r)), Exit::Failed);
        // Another run's lock: refused, as `apply` is on a locked host.
        r.exit = Some(
            RebootError::Locked {
                host: "h".into(),
                why: "locked by run abc".into(),
            }
            .exit(),
        );
        assert_eq!(exit_of(&[r]), Exit::Refused);
    }

    #[test]
    fn back_means_a_new_boot_id_before_the_deadline() {
        let (s, t) = (Duration::from_secs(5), Duration::from_secs(60));
        let old = "0b6f4c1e-5b8a-4c3e-9d2a-1f0e2d3c4b5a";
        let new = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
        assert_eq!(
            back_verdict(old, &Seen::BootId(new.into()), s, t),
            Verdict::Back(new.into())
        );
        // Same boot id: the reboot has not happened yet.
        assert_eq!(
            back_verdict(old, &Seen::BootId(old.into()), s, t),
            Verdict::Retry
        );
        assert_eq!(
            back_verdict(old, &Seen::NoAnswer("refused".into()), s, t),
            Verdict::Retry
        );
        assert_eq!(
            back_verdict(old, &Seen::NoAnswer("refused".into()), t, t),
            Verdict::TimedOut
        );
        // An answer with the old boot id at the deadline: it never rebooted.
        assert_eq!(
            back_verdict(old, &Seen::BootId(old.into()), t, t),
            Verdict::TimedOut
        );
        // A new boot id seen late still counts: the host is back.
        assert_eq!(
            back_verdict(old, &Seen::BootId(new.into()), t * 2, t),
            Verdict::Back(new.into())
        );
    }

    #[test]
    fn ready_is_the_condition_true() {
        let (s, t) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(
            ready_verdict(Some("True\n"), s, t),
            Verdict::Back("True".into())
        );
        assert_eq!(ready_verdict(Some("False"), s, t), Verdict::Retry);
        assert_eq!(ready_verdict(Some("Unknown"), s, t), Verdict::Retry);
        assert_eq!(ready_verdict(None, s, t), Verdict::Retry);
        assert_eq!(ready_verdict(None, t, t), Verdict::TimedOut);
    }

    #[test]
    fn boot_ids_are_uuids() {
        assert_eq!(
            parse_boot_id("0b6f4c1e-5b8a-4c3e-9d2a-1f0e2d3c4b5a\n").as_deref(),
            Some("0b6f4c1e-5b8a-4c3e-9d2a-1f0e2d3c4b5a")
        );
        assert_eq!(parse_boot_id(""), None);
        assert_eq!(parse_boot_id("cat: /proc/...: No such file"), None);
        assert_eq!(parse_boot_id("0b6f4c1e5b8a4c3e9d2a1f0e2d3c4b5a0000"), None);
    }

    #[test]
    fn kubectl_lines_quote_the_node() {
        assert_eq!(
            script::drain("lab-1", 120),
            "k3s kubectl drain lab-1 --ignore-daemonsets --delete-emptydir-data --timeout=120s"
        );
        assert_eq!(script::uncordon("a b"), "k3s kubectl uncordon 'a b'");
        assert!(script::ready("n").contains("@.type==\"Ready\""));
    }
}
