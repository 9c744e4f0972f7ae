//! `directory`: a directory exists (with owner, group, mode) or is gone.
//!
//! ```yaml
//! - directory:
//!     path: /etc/rancher/k3s
//!     mode: "0750"          # a string; omitted = keep (new directories: umask, usually 0755)
//!     owner: root
//!     group: root
//! - directory:
//!     path: /srv/app
//!     owner: app
//!     group: app
//!     recurse: true         # owner/group for everything below too (mode stays on the top only)
//! - directory: {path: /opt/old-tool, state: absent}   # rm -rf: refused for /, /etc, /usr, …
//! ```
//!
//! `recurse` applies owner and group only: a recursive mode would make every file executable
//! (or every directory untraversable), so set file modes with `file`.

use serde::Deserialize;

use super::support::fs::{check_path, meta_commands};
use super::ResourceError;
use super::{deserialize_mode, q, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::users::ForeignOwnedQuery;
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};

pub struct Directory;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub path: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default, deserialize_with = "deserialize_mode")]
    pub mode: Option<String>,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub recurse: bool,
}

/// `rm -rf` of these would wreck the host; a typo in a path var must not get that far.
const PROTECTED: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var/lib",
    "/var/log",
    "/etc/ssh",
    "/etc/systemd",
    "/var/lib/dpkg",
    "/var/lib/apt",
];

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.path)?;
    if spec.state == State::Absent {
        if spec.owner.is_some() || spec.group.is_some() || spec.mode.is_some() || spec.recurse {
            return Err(ResourceError::spec("`state: absent` takes only `path`"));
        }
        // `//etc/./` and `/etc` are the same directory for the guard (`..` is refused above).
        let n = crate::fsutil::lexical(&spec.path);
        if n == "/" || PROTECTED.contains(&n.as_str()) {
            return Err(ResourceError::spec(format!("refusing to remove `{}`: it is a system directory (remove what is inside it instead)", spec.path)));
        }
    }
    if spec.recurse && spec.owner.is_none() && spec.group.is_none() {
        return Err(ResourceError::spec("`recurse: true` applies `owner`/`group` below the directory: give at least one of them"));
    }
    Ok(())
}

/// Ownership below the directory (`recurse`): the query `facts` asks and `diff` reads.
fn below_query(spec: &Spec) -> ForeignOwnedQuery {
    ForeignOwnedQuery::new(&spec.path, spec.owner.as_deref(), spec.group.as_deref())
}

impl Resource for Directory {
    const KIND: &'static str = "directory";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.path.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        let mut v = vec![FileQuery::new(&spec.path, false).query()];
        if spec.recurse {
            v.push(below_query(spec).query());
        }
        v
    }

    fn touches(spec: &Spec) -> Vec<Touch> {
        // A recursive chown, or a removal, reaches everything below.
        if spec.recurse || spec.state == State::Absent {
            vec![Touch::subtree(&spec.path)]
        } else {
            vec![Touch::path(&spec.path)]
        }
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&FileQuery::new(&spec.path, false))?;
        if spec.state == State::Absent {
            if !seen.exists {
                return Ok(None);
            }
            if seen.kind != FileKind::Directory {
                return Err(ResourceError::Host(format!("{} is a {} on the host, not a directory; remove it with `file` (or `symlink`) `state: absent`", spec.path, seen.kind)));
            }
            return Ok(Some(Drift::new(
                Action::Remove,
                vec!["present".into()],
                vec![Step::sh(format!("rm -rf -- {}", q(&spec.path)))],
            )));
        }
        if seen.exists && seen.kind != FileKind::Directory {
            let what = match &seen.link_target {
                Some(t) => format!("a symlink to {t}"),
                None => format!("a {}", seen.kind),
            };
            return Err(ResourceError::Host(format!(
                "{} is {what} on the host, not a directory; labctl will not replace it",
                spec.path
            )));
        }
        let (owner, group, mode) = (
            spec.owner.as_deref(),
            spec.group.as_deref(),
            spec.mode.as_deref(),
        );
        if !seen.exists {
            let mut script = format!("mkdir -p -- {}", q(&spec.path));
            let meta = meta_commands(&spec.path, owner, group, mode, false);
            if !meta.is_empty() {
                script = format!("{script} && {meta}");
            }
            return Ok(Some(Drift::new(
                Action::Create,
                vec!["absent".into()],
                vec![Step::sh(script)],
            )));
        }
        let mut reasons = Vec::new();
        let mut fix_mode = None;
        let mut fix_owner = None;
        let mut fix_group = None;
        if let Some(m) = mode {
            if seen.mode != m {
                reasons.push(format!("mode {} → {m}", seen.mode));
                fix_mode = Some(m);
            }
        }
        if let Some(o) = owner {
            if seen.owner != o {
                reasons.push(format!("owner {} → {o}", seen.owner));
                fix_owner = Some(o);
            }
        }
        if let Some(g) = group {
            if seen.group != g {
                reasons.push(format!("group {} → {g}", seen.group));
                fix_group = Some(g);
            }
        }
        let mut steps = Vec::new();
        let below = spec.recurse && facts.get(&below_query(spec))?.unwrap_or(false);
        if below {
            reasons.push("owner/group differ below the directory".into());
            let who = match (owner, group) {
                (Some(o), Some(g)) => format!("{}:{}", q(o), q(g)),
                (Some(o), None) => q(o),
                (None, Some(g)) => format!(":{}", q(g)),
                (None, None) => unreachable!("check() requires owner or group with recurse"),
            };
            // -h: a symlink inside the tree gets its own owner changed, never what it points to.
            steps.push(format!("chown -R -h {who} -- {}", q(&spec.path)));
            fix_owner = None;
            fix_group = None;
        }
        let meta = meta_commands(&spec.path, fix_owner, fix_group, fix_mode, false);
        if !meta.is_empty() {
            steps.push(meta);
        }
        if steps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Drift::new(
            Action::Update,
            reasons,
            vec![Step::sh(steps.join(" && "))],
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const DIR: &str = "stat directory|755|root|root|4096\n";

    #[test]
    fn absent_is_created() {
        let s = spec::<Directory>("path: /srv/a b\nowner: app\nmode: \"0750\"\n");
        let d = Directory::diff(&s, &facts(&[("file:/srv/a b", "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(
            scripts(&d),
            "mkdir -p -- '/srv/a b' && chown app -- '/srv/a b' && chmod 0750 -- '/srv/a b'"
        );
    }

    #[test]
    fn present_is_in_sync() {
        let s = spec::<Directory>("path: /srv/a\nowner: root\nmode: \"0755\"\n");
        assert!(Directory::diff(&s, &facts(&[("file:/srv/a", DIR)]), &cx())
            .unwrap()
            .is_none());
        // Nothing asked about metadata: any existing directory will do.
        let s = spec::<Directory>("path: /srv/a\n");
        assert!(Directory::diff(&s, &facts(&[("file:/srv/a", DIR)]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn drifted_metadata_is_fixed() {
        let s = spec::<Directory>("path: /srv/a\nowner: app\ngroup: root\nmode: \"0700\"\n");
        let d = Directory::diff(&s, &facts(&[("file:/srv/a", DIR)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["mode 0755 → 0700", "owner root → app"]);
        assert_eq!(scripts(&d), "chown app -- /srv/a && chmod 0700 -- /srv/a");
    }

    #[test]
    fn recurse_chowns_the_tree_only_when_something_below_differs() {
        let s = spec::<Directory>("path: /srv/a\nowner: root\ngroup: app\nrecurse: true\n");
        let keys: Vec<String> = Directory::facts(&s).into_iter().map(|q| q.key).collect();
        assert_eq!(keys, vec!["file:/srv/a", "owned:/srv/a:root:app"]);
        let top_ok = "stat directory|755|root|app|4096\n";
        let clean = facts(&[
            ("file:/srv/a", top_ok),
            ("owned:/srv/a:root:app", "clean\n"),
        ]);
        assert!(Directory::diff(&s, &clean, &cx()).unwrap().is_none());
        let foreign = facts(&[
            ("file:/srv/a", top_ok),
            ("owned:/srv/a:root:app", "foreign\n"),
        ]);
        let d = Directory::diff(&s, &foreign, &cx()).unwrap().unwrap();
        assert_eq!(scripts(&d), "chown -R -h root:app -- /srv/a");
        assert!(spec_err::<Directory>("path: /srv/a\nrecurse: true\nbogus: 1\n").contains("bogus"));
    }

    #[test]
    fn absent_state_removes_directories_only() {
        let s = spec::<Directory>("path: /opt/old\nstate: absent\n");
        let d = Directory::diff(&s, &facts(&[("file:/opt/old", DIR)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (Action::Remove, "rm -rf -- /opt/old".to_string())
        );
        assert!(
            Directory::diff(&s, &facts(&[("file:/opt/old", "absent\n")]), &cx())
                .unwrap()
                .is_none()
        );
        let e = Directory::diff(
            &s,
            &facts(&[(
                "file:/opt/old",
                "stat regular file|644|root|root|1\nsha256 ab\n",
            )]),
            &cx(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn refuses_to_remove_system_directories() {
        for p in ["/etc", "/", "//etc/", "/usr/./", "/var/lib", "/home"] {
            let s = spec::<Directory>(&format!("path: \"{p}\"\nstate: absent\n"));
            let e = check(&s).unwrap_err().to_string();
            assert!(e.contains("refusing to remove"), "{p}: {e}");
            assert!(Directory::diff(&s, &facts(&[(&format!("file:{p}"), DIR)]), &cx()).is_err());
        }
        assert!(check(&spec::<Directory>("path: /etc/myapp\nstate: absent\n")).is_ok());
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let s = spec::<Directory>("path: /srv/a\n");
        let e = Directory::diff(
            &s,
            &facts(&[("file:/srv/a", "link /x\nstat symlink|777|root|root|2\n")]),
            &cx(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a symlink to /x"), "{e}");
    }
}
