//! The plan: a plain value. Printable, serialisable (never with a secret), and what apply runs.

pub mod error;
pub mod recap;
pub mod step;
pub mod touch;

pub use error::HostError;
pub use recap::{Failure, HostOutcome, Recap, WayBack};
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use crate::facts::reboot::RebootRequired;
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
    /// How to return to what this change replaces (a version upgrade), as a command a user can
    /// run; recorded in the recap and the run log when the change is applied.
    pub way_back: Option<String>,
}

impl Drift {
    pub fn new(action: Action, reasons: Vec<String>, steps: Vec<Step>) -> Drift {
        Drift {
            action,
            reasons,
            diff: None,
            steps,
            way_back: None,
        }
    }
    pub fn with_diff(mut self, diff: Option<String>) -> Drift {
        self.diff = diff;
        self
    }
    pub fn with_way_back(mut self, way_back: Option<String>) -> Drift {
        self.way_back = way_back;
        self
    }
}

/// What identifies a resource on a host: `role/kind:name`, unique per host. Plan output, plan
/// files and recaps spell it as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub role: String,
    pub kind: String,
    pub name: String,
}

impl ResourceId {
    pub fn new(role: &str, kind: &str, name: &str) -> ResourceId {
        ResourceId {
            role: role.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }

    /// `role/kind:name` back into its parts (role and kind never hold `/` or `:`; names may).
    pub fn parse(s: &str) -> Option<ResourceId> {
        let (role, rest) = s.split_once('/')?;
        let (kind, name) = rest.split_once(':')?;
        Some(ResourceId::new(role, kind, name))
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.role, self.kind, self.name)
    }
}

impl PartialEq<str> for ResourceId {
    fn eq(&self, other: &str) -> bool {
        other.split_once('/').is_some_and(|(r, rest)| {
            r == self.role
                && rest
                    .split_once(':')
                    .is_some_and(|(k, n)| k == self.kind && n == self.name)
        })
    }
}

impl PartialEq<&str> for ResourceId {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// One drifted resource on one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "ChangeFile", try_from = "ChangeFile")]
pub struct Change {
    pub id: ResourceId,
    pub action: Action,
    pub reasons: Vec<String>,
    pub diff: Option<String>,
    pub notify: Vec<String>,
    /// Keyed hash of the facts the change was computed from and of the desired state. A saved
    /// plan is refused when a fresh plan's fingerprint differs.
    pub fingerprint: String,
    /// Steps hold content (maybe secret): never serialised; re-derived when a saved plan is applied.
    pub steps: Vec<Step>,
    /// See `Drift::way_back`.
    pub way_back: Option<String>,
}

/// A change as plan files and `--json` spell it: the id as a string, and its parts beside it.
#[derive(Serialize, Deserialize)]
struct ChangeFile {
    id: String,
    role: String,
    kind: String,
    name: String,
    action: Action,
    reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notify: Vec<String>,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    way_back: Option<String>,
}

impl From<Change> for ChangeFile {
    fn from(c: Change) -> Self {
        ChangeFile {
            id: c.id.to_string(),
            role: c.id.role,
            kind: c.id.kind,
            name: c.id.name,
            action: c.action,
            reasons: c.reasons,
            diff: c.diff,
            notify: c.notify,
            fingerprint: c.fingerprint,
            way_back: c.way_back,
        }
    }
}

/// A saved change whose `id` disagrees with its role, kind and name: the plan file was edited.
#[derive(Debug, thiserror::Error)]
#[error("change `{written}` does not match its role/kind/name ({id})")]
pub struct ChangeIdMismatch {
    written: String,
    id: ResourceId,
}

impl TryFrom<ChangeFile> for Change {
    type Error = ChangeIdMismatch;
    fn try_from(f: ChangeFile) -> Result<Self, ChangeIdMismatch> {
        let id = ResourceId::new(&f.role, &f.kind, &f.name);
        if ResourceId::parse(&f.id).as_ref() != Some(&id) {
            return Err(ChangeIdMismatch { written: f.id, id });
        }
        Ok(Change {
            id,
            action: f.action,
            reasons: f.reasons,
            diff: f.diff,
            notify: f.notify,
            fingerprint: f.fingerprint,
            steps: vec![],
            way_back: f.way_back,
        })
    }
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
    /// The host waits for a reboot (Debian's /run/reboot-required). A notice, not a change:
    /// `apply` never reboots, so it neither makes `plan` exit 2 nor stales a saved plan.
    pub reboot_required: Option<RebootRequired>,
}

impl HostPlan {
    pub fn new(host: &str) -> HostPlan {
        HostPlan {
            host: host.to_string(),
            changes: vec![],
            in_sync: 0,
            error: None,
            reboot_required: None,
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
    /// `null` when no reboot is pending (or the host was not probed).
    #[serde(default)]
    reboot_required: Option<RebootRequired>,
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
            reboot_required: h.reboot_required,
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
            reboot_required: f.reboot_required,
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

    /// The hosts that wait for a reboot, in plan order.
    pub fn reboots_pending(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|h| h.reboot_required.is_some())
            .map(|h| h.host.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn steps_never_reach_the_plan_file() {
        let ch = Change {
            id: ResourceId::new("r", "file", "/x"),
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
            way_back: Some("helm rollback r 1 -n ns".into()),
        };
        let json = serde_json::to_string(&ch).unwrap();
        assert!(!json.contains("canary"), "{json}");
        let back: Change = serde_json::from_str(&json).unwrap();
        assert!(back.steps.is_empty());
        // The way back travels with the change (plan files, --json).
        assert_eq!(back.way_back.as_deref(), Some("helm rollback r 1 -n ns"));
    }

    #[test]
    fn host_errors_keep_the_plan_file_shape() {
        let h = HostPlan::failed("h", HostError::Unreachable("cannot connect to h".into()));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"host": "h", "changes": [], "in_sync": 0,
                "error": "cannot connect to h", "unreachable": true, "reboot_required": null})
        );
        let back: HostPlan = serde_json::from_value(json).unwrap();
        assert!(back.unreachable());
        let ok = serde_json::to_value(HostPlan::new("h")).unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"host": "h", "changes": [], "in_sync": 0, "unreachable": false,
                "reboot_required": null})
        );
    }

    #[test]
    fn a_pending_reboot_is_a_field_of_its_host_not_a_change() {
        let mut h = HostPlan::new("h");
        h.reboot_required = Some(RebootRequired {
            since: Some("2026-12-07T14:00:05Z".into()),
            packages: vec!["libc6".into()],
            ..Default::default()
        });
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json["reboot_required"],
            serde_json::json!({"required": true, "since": "2026-12-07T14:00:05Z", "packages": ["libc6"]})
        );
        let back: HostPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back.reboot_required, h.reboot_required);
        let plan = Plan {
            format: PLAN_FORMAT,
            site: "site.yml".into(),
            inventory: "hosts.yml".into(),
            selection: SavedSelection::default(),
            hosts: vec![HostPlan::new("a"), h],
        };
        assert!(!plan.has_changes(), "a reboot is no change: plan exits 0");
        assert_eq!(plan.reboots_pending(), ["h"]);
        // Plan files saved before the field existed still load.
        let old = serde_json::json!({"host": "h", "changes": [], "in_sync": 1});
        let old: HostPlan = serde_json::from_value(old).unwrap();
        assert_eq!(old.reboot_required, None);
    }

    #[test]
    fn resource_ids_are_role_kind_name() {
        let id = ResourceId::new("k3s", "file", "/etc/rancher/k3s/config.yaml");
        assert_eq!(id.to_string(), "k3s/file:/etc/rancher/k3s/config.yaml");
        assert_eq!(ResourceId::parse(&id.to_string()), Some(id.clone()));
        assert_eq!(id, "k3s/file:/etc/rancher/k3s/config.yaml");
        // Names may hold `/` and `:`; role and kind never do.
        let url = ResourceId::parse("r/download:https://x/y:z").unwrap();
        assert_eq!((url.role.as_str(), url.kind.as_str()), ("r", "download"));
        assert_eq!(url.name, "https://x/y:z");
        assert_eq!(ResourceId::parse("no-kind"), None);
    }

    #[test]
    fn changes_keep_the_plan_file_shape() {
        let json = serde_json::json!({"id": "r/file:/x", "role": "r", "kind": "file", "name": "/x",
            "action": "create", "reasons": [], "fingerprint": "f"});
        let c: Change = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(c.id, ResourceId::new("r", "file", "/x"));
        assert_eq!(serde_json::to_value(&c).unwrap(), json);
        let mut bad = json;
        bad["name"] = "/y".into();
        assert!(serde_json::from_value::<Change>(bad).is_err());
    }
}
