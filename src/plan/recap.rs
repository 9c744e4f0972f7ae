//! What applying did on each host: the recap values `apply` fills and the UI, the history and
//! `--json` read. Plain values, no I/O.

use super::{HostError, HostPlan};

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
    /// For each applied change that replaced a version: how to return to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub way_back: Vec<WayBack>,
    /// A `reboot` resource or handler asked for a reboot in this run (its id): the apply
    /// reboots the host once every host converged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot: Option<String>,
}

/// How to undo one applied upgrade (`Drift::way_back`), kept in the recap and the run log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WayBack {
    pub resource: String,
    pub how: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub resource: String,
    pub message: String,
}

/// One host's plan and what applying it did.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    pub plan: HostPlan,
    pub recap: Recap,
}

impl HostOutcome {
    pub(crate) fn empty(host: &str) -> HostOutcome {
        HostOutcome {
            plan: HostPlan::new(host),
            recap: Recap::empty(host),
        }
    }

    /// The host failed before any change: `resource` says where ("(connection)", "-").
    pub(crate) fn failed(host: &str, resource: &str, error: HostError) -> HostOutcome {
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
    pub(crate) fn is_failed(&self) -> bool {
        self.plan.error.is_some()
            || !self.recap.failed.is_empty()
            || self.recap.refused.is_some()
            || self.recap.unreachable
    }

    /// One host's results from two plays, as one.
    pub(crate) fn merge(self, b: HostOutcome) -> HostOutcome {
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
        x.way_back.extend(y.way_back);
        x.reboot = x.reboot.or(y.reboot);
        HostOutcome { plan: pa, recap: x }
    }
}

impl Recap {
    pub(crate) fn empty(host: &str) -> Recap {
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
            way_back: vec![],
            reboot: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_failed_before_any_change_sits_out_later_plays() {
        assert!(!HostOutcome::empty("h").is_failed());
        let o = HostOutcome::failed(
            "h",
            "(connection)",
            HostError::Unreachable("no route".into()),
        );
        assert!(o.is_failed() && o.recap.unreachable);
        assert_eq!(o.recap.failed[0].resource, "(connection)");
        assert_eq!(o.recap.failed[0].message, "no route");
        assert_eq!(
            o.plan.error,
            Some(HostError::Unreachable("no route".into()))
        );
        let o = HostOutcome::failed("h", "-", HostError::Internal("panicked".into()));
        assert!(o.is_failed() && !o.recap.unreachable);
        let mut refused = HostOutcome::empty("h");
        refused.recap.refused = Some(HostError::Locked("held".into()));
        assert!(refused.is_failed());
    }

    #[test]
    fn two_plays_of_a_host_add_up_to_one_outcome() {
        let mut a = HostOutcome::empty("h");
        a.plan.in_sync = 2;
        a.recap.ok = 2;
        a.recap.changed.push("r/file:/a".into());
        a.recap.handlers.push("r/restart".into());
        let mut b =
            HostOutcome::failed("h", "(connection)", HostError::Probe("probe failed".into()));
        b.plan.in_sync = 1;
        b.recap.ok = 1;
        b.recap.skipped = 3;
        b.recap.notes.push("lock taken over".into());
        let m = a.merge(b);
        assert_eq!((m.plan.in_sync, m.recap.ok, m.recap.skipped), (3, 3, 3));
        assert_eq!(m.recap.changed, ["r/file:/a"]);
        assert_eq!(m.recap.handlers, ["r/restart"]);
        assert_eq!(m.recap.failed.len(), 1);
        assert_eq!(m.recap.notes, ["lock taken over"]);
        assert_eq!(m.plan.error, Some(HostError::Probe("probe failed".into())));
        assert!(m.is_failed());
    }
}
