//! Making a host's plan: pure functions over (items, facts). No I/O: the rest of `apply` probes
//! the host and hands the facts in; everything here is tested with fixtures.

use std::sync::Arc;

use crate::facts::{self, Facts};
use crate::plan::{Change, HostError, HostPlan, ResourceId, Step};
use crate::resources::{DiffCx, ResourceError};
use crate::site::select::{Item, RoleWork};

/// What one item's diff came to.
#[derive(Debug, Clone)]
pub enum Planned {
    InSync,
    Change(Change),
    /// The diff failed.
    Error(ItemError),
}

/// One item's diff failed: the resource's error, with the item it is about.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{id}: {source}")]
pub struct ItemError {
    pub id: ResourceId,
    pub source: ResourceError,
}

/// Besides items and facts, planning needs only these: the key for keyed hashes and
/// fingerprints, and every known secret string (for diffs of old content).
#[derive(Clone)]
pub struct Keys {
    pub hash_key: [u8; 32],
    pub secrets: Arc<Vec<String>>,
}

/// Each item's verdict, in item order.
pub fn plan_items(items: &[&Item], facts: &Facts, keys: &Keys) -> Vec<Planned> {
    items
        .iter()
        .map(|item| match diff_item(item, facts, keys) {
            Ok(Some(c)) => Planned::Change(c),
            Ok(None) => Planned::InSync,
            Err(e) => Planned::Error(e),
        })
        .collect()
}

/// The plan a host shows: its changes, how many items are in sync, and the diff errors.
pub fn host_plan(host: &str, planned: &[Planned]) -> HostPlan {
    let errors: Vec<String> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Error(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    HostPlan {
        host: host.to_string(),
        changes: planned
            .iter()
            .filter_map(|p| match p {
                Planned::Change(c) => Some(c.clone()),
                _ => None,
            })
            .collect(),
        in_sync: planned
            .iter()
            .filter(|p| matches!(p, Planned::InSync))
            .count(),
        error: if errors.is_empty() {
            None
        } else {
            Some(HostError::Plan(errors.join("\n")))
        },
        reboot_required: None,
    }
}

/// One item against the host's facts. `Ok(None)` = in sync; errors name the item.
// The error carries the item's whole id for its message; it is built at most once per failing
// item, so its size costs nothing worth a Box on the common path.
#[allow(clippy::result_large_err)]
pub fn diff_item(item: &Item, facts: &Facts, keys: &Keys) -> Result<Option<Change>, ItemError> {
    let cx = DiffCx {
        secret: item.secret,
        hash_key: keys.hash_key,
        secrets: keys.secrets.clone(),
    };
    let Some(d) = item.inst.diff(facts, &cx).map_err(|source| ItemError {
        id: item.id.clone(),
        source,
    })?
    else {
        return Ok(None);
    };
    let fact_keys: Vec<String> = item.inst.facts().into_iter().map(|q| q.key).collect();
    let fingerprint = fingerprint(
        &keys.hash_key,
        &item.id.to_string(),
        facts,
        &fact_keys,
        &d.steps,
    );
    Ok(Some(Change {
        id: item.id.clone(),
        action: d.action,
        reasons: d.reasons,
        diff: d.diff,
        notify: item.notify.clone(),
        fingerprint,
        steps: d.steps,
        way_back: d.way_back,
    }))
}

/// Facts that hold the host's clock, so they differ on every probe. Left out of fingerprints
/// (else every saved or confirmed plan touching them is stale a second later); what they decide
/// still counts, through the steps (apt's lists age decides whether `apt-get update` runs).
const VOLATILE: &[&str] = &[crate::facts::packages::LISTS_KEY];

/// Keyed: plan files must not carry an unkeyed hash of anything secret (RELIABILITY rule 3).
pub fn fingerprint(
    key: &[u8; 32],
    id: &str,
    facts: &Facts,
    keys: &[String],
    steps: &[Step],
) -> String {
    let mut m = crate::digest::Keyed::new(key);
    m.update(id.as_bytes());
    for (k, raw) in facts
        .subset(keys)
        .into_iter()
        .filter(|(k, _)| !VOLATILE.contains(k))
    {
        m.update(k.as_bytes());
        m.update(&raw.rc.to_le_bytes());
        m.update(raw.out.as_bytes());
    }
    for s in steps {
        s.digest_into(&mut |b: &[u8]| m.update(b));
    }
    m.fingerprint()
}

/// A saved plan applies only if the fresh plan is the same: same changes, same fingerprints.
pub fn stale(fresh: &HostPlan, saved: Option<&HostPlan>) -> Option<HostError> {
    let Some(saved) = saved else {
        return if fresh.changes.is_empty() {
            None
        } else {
            Some(HostError::Stale(
                "the saved plan has no entry for this host, but it has changes now".into(),
            ))
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
        .map(|c| c.id.to_string())
        .chain(
            saved
                .changes
                .iter()
                .filter(|s| !fresh.changes.iter().any(|c| c.id == s.id))
                .map(|s| format!("{} (no longer pending)", s.id)),
        )
        .collect();
    Some(HostError::Stale(format!("the saved plan is stale: the host (or the repo) changed since it was made ({}); run `labctl plan` again", moved.join(", "))))
}

/// `Change::kind` of a handler an interrupted run left pending.
pub const HANDLER_KIND: &str = "handler";

/// The handler's name in the journal on the host.
pub fn handler_key(role: &str, handler: &str) -> String {
    format!("{role}/{handler}")
}

/// The handler's id in plans and recaps.
pub fn handler_id(role: &str, handler: &str) -> ResourceId {
    ResourceId::new(role, HANDLER_KIND, handler)
}

/// Handlers of these roles that an earlier run recorded on the host but never fired: each is a
/// change, so plan shows it and apply fires it. Entries of roles not selected now stay recorded.
pub fn pending_handlers<'a>(
    roles: impl Iterator<Item = &'a RoleWork>,
    journal: &[facts::journal::Pending],
    keys: &Keys,
) -> Vec<Change> {
    let mut out = Vec::new();
    for role in roles {
        for h in &role.handlers {
            let key = handler_key(&role.role, &h.name);
            let Some(p) = journal.iter().find(|p| p.key == key) else {
                continue;
            };
            let mut f = Facts::default();
            f.raw.insert(
                key.clone(),
                facts::RawFact {
                    out: format!("{} {}", p.since, p.run),
                    rc: 0,
                },
            );
            out.push(Change {
                id: handler_id(&role.role, &h.name),
                action: crate::plan::Action::Run,
                reasons: vec![format!(
                    "pending since {}, from an interrupted run",
                    p.since
                )],
                diff: None,
                notify: vec![],
                fingerprint: fingerprint(&keys.hash_key, &key, &f, std::slice::from_ref(&key), &[]),
                steps: vec![],
                way_back: None,
            });
        }
    }
    out
}

/// labctl manages Debian-family hosts only; anything else is refused before any diff.
pub fn check_os(facts: &Facts) -> Result<(), HostError> {
    let os = facts.get(&facts::os::OsQuery)?;
    if os.family != "debian" {
        return Err(HostError::Probe(format!(
            "unsupported OS `{}`: labctl manages Debian and Ubuntu (apt, systemd) hosts",
            if os.id.is_empty() { "unknown" } else { &os.id }
        )));
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
        let e = check_os(&facts_with_os(rocky)).unwrap_err().to_string();
        assert!(
            e.contains("unsupported OS `rocky`") && e.contains("Debian and Ubuntu"),
            "{e}"
        );
    }

    #[test]
    fn the_clock_in_apt_lists_facts_does_not_move_a_fingerprint() {
        let at = |now: i64, n: u32| {
            let mut f = Facts::default();
            f.insert(
                facts::packages::LISTS_KEY,
                &format!("lists {n} 1700000000 {now}\n"),
                0,
            );
            f.insert("pkg:curl", "curl ii 7.88\n", 0);
            f
        };
        let keys = vec![
            facts::packages::LISTS_KEY.to_string(),
            "pkg:curl".to_string(),
        ];
        let fp = |f: &Facts, steps: &[Step]| fingerprint(&[1; 32], "r/apt:x", f, &keys, steps);
        assert_eq!(
            fp(&at(1_700_000_100, 3), &[]),
            fp(&at(1_700_000_200, 3), &[])
        );
        let mut moved = at(1_700_000_100, 3);
        moved.insert("pkg:curl", "curl ii 7.89\n", 0);
        assert_ne!(
            fp(&at(1_700_000_100, 3), &[]),
            fp(&moved, &[]),
            "other facts still count"
        );
        let update = Step::Sh {
            script: "apt-get update".into(),
        };
        assert_ne!(
            fp(&at(1, 3), &[]),
            fp(&at(1, 3), &[update]),
            "and so do the steps"
        );
    }

    fn ch(id: &str, fp: &str) -> Change {
        Change {
            id: ResourceId::new("r", "file", id),
            action: crate::plan::Action::Update,
            reasons: vec![],
            diff: None,
            notify: vec![],
            fingerprint: fp.into(),
            steps: vec![],
            way_back: None,
        }
    }

    #[test]
    fn saved_plans_must_match_exactly() {
        let hp = |c: Vec<Change>| HostPlan {
            changes: c,
            ..HostPlan::new("h")
        };
        assert!(stale(&hp(vec![ch("a", "1")]), Some(&hp(vec![ch("a", "1")]))).is_none());
        assert!(
            stale(&hp(vec![ch("a", "2")]), Some(&hp(vec![ch("a", "1")])))
                .unwrap()
                .to_string()
                .contains("stale")
        );
        assert!(stale(&hp(vec![]), Some(&hp(vec![ch("a", "1")])))
            .unwrap()
            .to_string()
            .contains("no longer pending"));
        assert!(stale(&hp(vec![ch("b", "1")]), None).is_some());
        assert!(stale(&hp(vec![]), None).is_none());
    }

    fn item_error(id: &str, why: &str) -> ItemError {
        ItemError {
            id: ResourceId::parse(id).unwrap(),
            source: ResourceError::spec(why),
        }
    }

    #[test]
    fn host_plan_counts_in_sync_changes_and_errors() {
        let p = host_plan(
            "h",
            &[
                Planned::InSync,
                Planned::Change(ch("a", "1")),
                Planned::Error(item_error("r/file:/x", "boom")),
                Planned::Error(item_error("r/file:/y", "bang")),
                Planned::InSync,
            ],
        );
        assert_eq!(p.in_sync, 2);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(
            p.error.map(|e| e.to_string()).as_deref(),
            Some("r/file:/x: boom\nr/file:/y: bang")
        );
    }
}
