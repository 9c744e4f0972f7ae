//! The plan: a plain value. Printable, serialisable (never with a secret), and what apply runs.

pub mod build;
pub mod error;
pub mod step;
pub mod touch;

pub use error::HostError;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use step::Step;
pub use touch::Touch;

/// What a change does, and its symbol in plan output (Terraform's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Remove,
    /// A command that runs because its guard (`creates`/`unless`) says so.
    Run,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Remove => '-',
            Action::Run => '!',
        }
    }
}

/// What a resource's diff returns when the host differs from the spec.
#[derive(Debug, Clone)]
pub struct Drift {
    pub action: Action,
    /// Short, human reasons: "mode 0644 → 0600", "package nginx missing".
    pub reasons: Vec<String>,
    /// A unified diff for file bodies, or "(secret changed …)" for secret ones.
    pub diff: Option<String>,
    pub steps: Vec<Step>,
}

impl Drift {
    pub fn new(action: Action, reasons: Vec<String>, steps: Vec<Step>) -> Drift {
        Drift {
            action,
            reasons,
            diff: None,
            steps,
        }
    }
    pub fn with_diff(mut self, diff: Option<String>) -> Drift {
        self.diff = diff;
        self
    }
}

/// One drifted resource on one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// `role/kind:name`, unique per host.
    pub id: String,
    pub role: String,
    pub kind: String,
    pub name: String,
    pub action: Action,
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Keyed hash of the facts the change was computed from and of the desired state. A saved
    /// plan is refused when a fresh plan's fingerprint differs.
    pub fingerprint: String,
    /// Steps hold content (maybe secret): never serialised; re-derived when a saved plan is applied.
    #[serde(skip)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "HostPlanFile", from = "HostPlanFile")]
pub struct HostPlan {
    pub host: String,
    pub changes: Vec<Change>,
    /// Resources already in the desired state.
    pub in_sync: usize,
    /// The host as a whole failed (then `changes` is empty).
    pub error: Option<HostError>,
}

impl HostPlan {
    pub fn new(host: &str) -> HostPlan {
        HostPlan {
            host: host.to_string(),
            changes: vec![],
            in_sync: 0,
            error: None,
        }
    }

    pub fn failed(host: &str, error: HostError) -> HostPlan {
        HostPlan {
            error: Some(error),
            ..HostPlan::new(host)
        }
    }

    pub fn unreachable(&self) -> bool {
        matches!(self.error, Some(HostError::Unreachable(_)))
    }
}

/// A host's plan as plan files and `--json` spell it: the error as its message, plus a flag.
#[derive(Serialize, Deserialize)]
struct HostPlanFile {
    host: String,
    changes: Vec<Change>,
    in_sync: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    unreachable: bool,
}

impl From<HostPlan> for HostPlanFile {
    fn from(h: HostPlan) -> Self {
        let unreachable = h.unreachable();
        HostPlanFile {
            host: h.host,
            changes: h.changes,
            in_sync: h.in_sync,
            error: h.error.map(|e| e.to_string()),
            unreachable,
        }
    }
}

impl From<HostPlanFile> for HostPlan {
    fn from(f: HostPlanFile) -> Self {
        HostPlan {
            host: f.host,
            changes: f.changes,
            in_sync: f.in_sync,
            error: f.error.map(|m| {
                if f.unreachable {
                    HostError::Unreachable(m)
                } else {
                    HostError::Recorded(m)
                }
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub site: String,
    pub inventory: String,
    pub selection: SavedSelection,
    pub hosts: Vec<HostPlan>,
}

/// What a run selects: the one selection type, read from the command line, used by `compile`,
/// and saved in plan files so `apply --plan` selects the same.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// Only resources with one of these tags (a role's name is a tag)
    #[arg(short = 't', long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip resources with any of these tags
    #[arg(long, value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Only these hosts: a pattern like `lab`, `lab-1`, `all:!k3s_agents`, `web*`
    #[arg(short = 'l', long)]
    pub limit: Option<String>,
}

impl Selection {
    /// Whether an item with these tags is selected (`always` and `never` as in Ansible).
    pub fn wants(&self, tags: &BTreeSet<String>) -> bool {
        if self.skip_tags.iter().any(|t| tags.contains(t)) {
            return false;
        }
        if self.tags.is_empty() {
            return !tags.contains("never");
        }
        tags.contains("always") || self.tags.iter().any(|t| tags.contains(t) || t == "all")
    }
}

/// What was selected, so `apply --plan` recomputes the same thing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedSelection {
    #[serde(flatten)]
    pub select: Selection,
    /// Keyed hash of the `-e` arguments (they may hold secrets).
    pub extra_vars: Option<String>,
}

pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub remove: usize,
    pub run: usize,
    pub in_sync: usize,
    pub failed_hosts: usize,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for h in &self.hosts {
            c.in_sync += h.in_sync;
            if h.error.is_some() {
                c.failed_hosts += 1;
            }
            for ch in &h.changes {
                match ch.action {
                    Action::Create => c.create += 1,
                    Action::Update => c.update += 1,
                    Action::Remove => c.remove += 1,
                    Action::Run => c.run += 1,
                }
            }
        }
        c
    }

    pub fn has_changes(&self) -> bool {
        self.hosts.iter().any(|h| !h.changes.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn steps_never_reach_the_plan_file() {
        let ch = Change {
            id: "r/file:/x".into(),
            role: "r".into(),
            kind: "file".into(),
            name: "/x".into(),
            action: Action::Create,
            reasons: vec!["absent".into()],
            diff: Some("(secret changed)".into()),
            notify: vec![],
            fingerprint: "hmac-sha256:00".into(),
            steps: vec![Step::Write {
                path: "/x".into(),
                content: Secret::new(b"canary-plan-secret".to_vec()),
                mode: None,
                owner: None,
                group: None,
                validate: None,
                secret: true,
            }],
        };
        let json = serde_json::to_string(&ch).unwrap();
        assert!(!json.contains("canary"), "{json}");
        let back: Change = serde_json::from_str(&json).unwrap();
        assert!(back.steps.is_empty());
    }

    #[test]
    fn host_errors_keep_the_plan_file_shape() {
        let h = HostPlan::failed("h", HostError::Unreachable("cannot connect to h".into()));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"host": "h", "changes": [], "in_sync": 0,
                "error": "cannot connect to h", "unreachable": true})
        );
        let back: HostPlan = serde_json::from_value(json).unwrap();
        assert!(back.unreachable());
        let ok = serde_json::to_value(HostPlan::new("h")).unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"host": "h", "changes": [], "in_sync": 0, "unreachable": false})
        );
    }
}
