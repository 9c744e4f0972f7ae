//! `symlink`: `path` is a symbolic link to `target`.
//!
//! ```yaml
//! - symlink:
//!     path: /usr/local/bin/kubectl
//!     target: /usr/local/bin/k3s       # relative targets are relative to path's directory
//!     owner: root                      # of the link itself (chown -h)
//!     force: true                      # replace a regular file at path (never a directory)
//! - symlink: {path: /etc/nginx/sites-enabled/default, state: absent}
//! ```
//!
//! `state: absent` removes `path` only when it is a symlink; anything else there is left alone.

use serde::Deserialize;

use super::support::fs::{check_path, meta_commands};
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};

pub struct Symlink;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub path: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub state: State,
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.path)?;
    if spec.path.trim_end_matches('/').is_empty() || spec.path.ends_with('/') {
        return Err(ResourceError::spec(format!(
            "path `{}` must name the link itself (no trailing `/`)",
            spec.path
        )));
    }
    match (spec.state, &spec.target) {
        (State::Present, None) => Err(ResourceError::spec(
            "`target` is required (what the link points to)",
        )),
        (State::Present, Some(t)) if t.is_empty() || t.contains('\n') || t.contains('\0') => Err(
            ResourceError::spec(format!("target `{t}` must be non-empty and one line")),
        ),
        (State::Absent, _)
            if spec.target.is_some()
                || spec.owner.is_some()
                || spec.group.is_some()
                || spec.force =>
        {
            Err(ResourceError::spec("`state: absent` takes only `path`"))
        }
        _ => Ok(()),
    }
}

impl Resource for Symlink {
    const KIND: &'static str = "symlink";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.path.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![FileQuery::new(&spec.path, false).query()]
    }

    fn touches(spec: &Spec) -> Vec<Touch> {
        // Paths below a link resolve through it.
        vec![Touch::subtree(&spec.path)]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&FileQuery::new(&spec.path, false))?;
        let p = q(&spec.path);
        if spec.state == State::Absent {
            if seen.exists && seen.kind == FileKind::Symlink {
                return Ok(Some(Drift::new(
                    Action::Remove,
                    vec!["present".into()],
                    vec![Step::sh(format!("rm -f -- {p}"))],
                )));
            }
            return Ok(None);
        }
        let target = spec.target.as_deref().unwrap_or_default();
        let (owner, group) = (spec.owner.as_deref(), spec.group.as_deref());
        // -n: when path is a link to a directory, replace the link instead of creating one inside.
        let mut link = format!("ln -sfn -- {} {p}", q(target));
        let meta = meta_commands(&spec.path, owner, group, None, true);
        if !meta.is_empty() {
            link = format!("{link} && {meta}");
        }
        if !seen.exists {
            return Ok(Some(Drift::new(
                Action::Create,
                vec!["absent".into()],
                vec![Step::sh(link)],
            )));
        }
        match seen.kind {
            FileKind::Symlink => {}
            // `ln -sfn` onto a directory would put the link inside it.
            FileKind::Directory => return Err(ResourceError::Host(format!("{} is a directory on the host; labctl will not replace a directory with a link (remove it first)", spec.path))),
            kind if !spec.force => {
                let what = if kind == FileKind::File { "a regular file" } else { "not a symlink" };
                return Err(ResourceError::Host(format!("{} is {what} on the host; set `force: true` to replace it with a link to {target}", spec.path)));
            }
            _ => return Ok(Some(Drift::new(Action::Update, vec![format!("{} replaced by a link", seen.kind)], vec![Step::sh(link)]))),
        }
        if seen.link_target.as_deref() != Some(target) {
            let reason = format!(
                "target {} → {target}",
                seen.link_target.as_deref().unwrap_or("?")
            );
            return Ok(Some(Drift::new(
                Action::Update,
                vec![reason],
                vec![Step::sh(link)],
            )));
        }
        let mut reasons = Vec::new();
        let fix_owner = owner.filter(|o| *o != seen.owner);
        let fix_group = group.filter(|g| *g != seen.group);
        if let Some(o) = fix_owner {
            reasons.push(format!("owner {} → {o}", seen.owner));
        }
        if let Some(g) = fix_group {
            reasons.push(format!("group {} → {g}", seen.group));
        }
        if reasons.is_empty() {
            return Ok(None);
        }
        Ok(Some(Drift::new(
            Action::Update,
            reasons,
            vec![Step::sh(meta_commands(
                &spec.path, fix_owner, fix_group, None, true,
            ))],
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const KEY: &str = "file:/usr/local/bin/kubectl";
    const YAML: &str = "path: /usr/local/bin/kubectl\ntarget: /usr/local/bin/k3s\n";

    fn link_to(t: &str) -> String {
        format!("link {t}\nstat symlink|777|root|root|{}\n", t.len())
    }

    #[test]
    fn absent_is_created() {
        let s = spec::<Symlink>("path: /usr/local/bin/kubectl\ntarget: k3s\nowner: app\n");
        let d = Symlink::diff(&s, &facts(&[(KEY, "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(
            scripts(&d),
            "ln -sfn -- k3s /usr/local/bin/kubectl && chown -h app -- /usr/local/bin/kubectl"
        );
    }

    #[test]
    fn present_is_in_sync() {
        let s = spec::<Symlink>(YAML);
        assert!(
            Symlink::diff(&s, &facts(&[(KEY, &link_to("/usr/local/bin/k3s"))]), &cx())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn wrong_target_is_relinked() {
        let s = spec::<Symlink>(YAML);
        let d = Symlink::diff(&s, &facts(&[(KEY, &link_to("/opt/old/k3s"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.reasons, vec!["target /opt/old/k3s → /usr/local/bin/k3s"]);
        assert_eq!(
            scripts(&d),
            "ln -sfn -- /usr/local/bin/k3s /usr/local/bin/kubectl"
        );
    }

    #[test]
    fn link_owner_drift_uses_chown_h() {
        let s = spec::<Symlink>(
            "path: /usr/local/bin/kubectl\ntarget: /usr/local/bin/k3s\ngroup: adm\n",
        );
        let d = Symlink::diff(&s, &facts(&[(KEY, &link_to("/usr/local/bin/k3s"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(scripts(&d), "chgrp -h adm -- /usr/local/bin/kubectl");
    }

    #[test]
    fn file_in_the_way_needs_force() {
        let file = "stat regular file|755|root|root|10\nsha256 ab\n";
        let e = Symlink::diff(&spec::<Symlink>(YAML), &facts(&[(KEY, file)]), &cx())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("regular file") && e.contains("force: true"),
            "{e}"
        );
        let s = spec::<Symlink>(&format!("{YAML}force: true\n"));
        let d = Symlink::diff(&s, &facts(&[(KEY, file)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            scripts(&d),
            "ln -sfn -- /usr/local/bin/k3s /usr/local/bin/kubectl"
        );
        let e = Symlink::diff(
            &s,
            &facts(&[(KEY, "stat directory|755|root|root|4096\n")]),
            &cx(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("directory"), "{e}");
    }

    #[test]
    fn absent_state_removes_only_links() {
        let s = spec::<Symlink>("path: /usr/local/bin/kubectl\nstate: absent\n");
        let d = Symlink::diff(&s, &facts(&[(KEY, &link_to("/x"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (
                Action::Remove,
                "rm -f -- /usr/local/bin/kubectl".to_string()
            )
        );
        assert!(Symlink::diff(
            &s,
            &facts(&[(KEY, "stat regular file|755|root|root|10\nsha256 ab\n")]),
            &cx()
        )
        .unwrap()
        .is_none());
        assert!(check(&spec::<Symlink>("path: /x\n"))
            .unwrap_err()
            .to_string()
            .contains("target"));
    }

    #[test]
    fn ln_sfn_really_replaces_a_link_to_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, l) = (d.path().join("a"), d.path().join("b"), d.path().join("l"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::os::unix::fs::symlink(&a, &l).unwrap();
        let s = spec::<Symlink>(&format!("path: {}\ntarget: {}\n", l.display(), b.display()));
        let seen = format!("link {}\nstat symlink|777|root|root|1\n", a.display());
        let drift = Symlink::diff(
            &s,
            &facts(&[(&format!("file:{}", l.display()), &seen)]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(scripts(&drift))
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_link(&l).unwrap(), b);
        assert!(
            std::fs::read_dir(&a).unwrap().next().is_none(),
            "no link was created inside the old target"
        );
    }
}
