//! `file`: a file's body (literal, template or controller file), owner, group and mode.
//!
//! ```yaml
//! - file:
//!     path: /etc/ssh/sshd_config.d/50-labctl.conf
//!     template: sshd.conf.j2        # or `content: "..."`, or `src: motd` (roles/R/files/)
//!                                   # (relative: inside the project; an absolute `src` is
//!                                   # shown in plans by name only, unless `show_diff: true`)
//!     mode: "0644"                  # a string; omitted = keep (new files: 0644, 0600 if secret)
//!     owner: root
//!     group: root
//!     validate: "sshd -t -f %s"     # run on the temp file before it replaces the old one
//!   notify: [reload ssh]
//! - file: {path: /etc/old.conf, state: absent}
//! ```

use serde::Deserialize;

use super::support::fs::{check_path, meta_commands};
use super::ResourceError;
use super::{content_diff, deserialize_mode, q, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileFact, FileKind, FileQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};
use crate::secret::Secret;

pub struct File;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub path: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default, deserialize_with = "deserialize_mode")]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub validate: Option<String>,
    /// Show the diff of an absolute `src` (a file from outside the project) in plans.
    #[serde(default)]
    pub show_diff: bool,
    /// Filled by `prepare` from content/template/src.
    #[serde(skip)]
    pub body: Option<Secret<Vec<u8>>>,
    /// Set by `prepare` for an absolute `src` without `show_diff`: plans name it, no content.
    #[serde(skip)]
    pub hidden_src: Option<String>,
}

impl Resource for File {
    const KIND: &'static str = "file";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.path.clone()
    }

    fn prepare(spec: &mut Spec, cx: &PrepareCx) -> Result<(), ResourceError> {
        check_path(&spec.path)?;
        let sources = [
            spec.content.is_some(),
            spec.template.is_some(),
            spec.src.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if spec.state == State::Absent {
            if sources > 0 || spec.mode.is_some() || spec.owner.is_some() || spec.group.is_some() {
                return Err(ResourceError::Spec(
                    "`state: absent` takes only `path`".into(),
                ));
            }
            return Ok(());
        }
        if sources > 1 {
            return Err(ResourceError::Spec(
                "give only one of `content`, `template` or `src`".into(),
            ));
        }
        if let Some(v) = &spec.validate {
            if !v.contains("%s") {
                return Err(ResourceError::Spec(
                    "`validate` must contain `%s` (where the new file's temp path goes)".into(),
                ));
            }
        }
        spec.body = if let Some(c) = spec.content.take() {
            Some(Secret::new(c.into_bytes()))
        } else if let Some(t) = &spec.template {
            Some(cx.render_template(t)?)
        } else if let Some(s) = &spec.src {
            if std::path::Path::new(s).is_absolute() && !spec.show_diff {
                spec.hidden_src = Some(s.clone());
            }
            Some(Secret::new(cx.read_file(s)?))
        } else {
            None
        };
        Ok(())
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![seen_query(spec).query()]
    }

    fn touches(spec: &Spec) -> Vec<Touch> {
        vec![Touch::path(&spec.path)]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        let seen = facts.get(&seen_query(spec))?;
        if spec.state == State::Absent {
            if !seen.exists {
                return Ok(None);
            }
            if seen.kind == FileKind::Directory {
                return Err(ResourceError::Host(format!(
                    "{} is a directory; use `directory` with `state: absent`",
                    spec.path
                )));
            }
            return Ok(Some(Drift::new(
                Action::Remove,
                vec!["present".into()],
                vec![Step::sh(format!("rm -f -- {}", q(&spec.path)))],
            )));
        }
        if seen.exists && seen.kind == FileKind::Directory {
            return Err(ResourceError::Host(format!(
                "{} is a directory on the host, not a file",
                spec.path
            )));
        }
        let mut reasons = Vec::new();
        let mut content_changed = false;
        let mut diff = None;
        if let Some(body) = &spec.body {
            let want = crate::digest::sha256_hex(body.expose());
            if !seen.exists {
                reasons.push("absent".to_string());
                diff = Some(content_diff(&spec.path, None, body.expose(), cx));
                content_changed = true;
            } else if seen.kind == FileKind::Symlink {
                reasons.push("is a symlink".to_string());
                content_changed = true;
            } else if seen.sha256.as_deref() != Some(want.as_str()) {
                reasons.push("content differs".to_string());
                diff = Some(content_diff(
                    &spec.path,
                    seen.content.as_deref(),
                    body.expose(),
                    cx,
                ));
                content_changed = true;
            }
            if let (Some(src), Some(_)) = (&spec.hidden_src, &diff) {
                diff = Some(format!(
                    "(content from {src}, outside the project: not shown; `show_diff: true` shows it)"
                ));
            }
        } else if !seen.exists {
            // No body given: the file must exist; create it empty.
            reasons.push("absent".to_string());
            content_changed = true;
        }
        let meta = meta_reasons(spec, &seen);
        if content_changed {
            reasons.extend(meta.iter().filter(|_| seen.exists).cloned());
            let content = spec.body.clone().unwrap_or_else(|| Secret::new(Vec::new()));
            let mode = spec.mode.clone().or_else(|| {
                if seen.exists && seen.kind == FileKind::File {
                    Some(seen.mode.clone())
                } else {
                    None
                }
            });
            let step = Step::Write {
                path: spec.path.clone(),
                content,
                mode,
                owner: spec
                    .owner
                    .clone()
                    .or_else(|| seen.exists.then(|| seen.owner.clone())),
                group: spec
                    .group
                    .clone()
                    .or_else(|| seen.exists.then(|| seen.group.clone())),
                validate: spec.validate.clone(),
                secret: cx.secret,
            };
            let action = if seen.exists {
                Action::Update
            } else {
                Action::Create
            };
            return Ok(Some(
                Drift::new(action, reasons, vec![step]).with_diff(diff),
            ));
        }
        if meta.is_empty() {
            return Ok(None);
        }
        Ok(Some(Drift::new(
            Action::Update,
            meta,
            vec![Step::sh(meta_script(spec))],
        )))
    }
}

/// The one query `facts` asks and `diff` reads.
fn seen_query(spec: &Spec) -> FileQuery {
    FileQuery::new(&spec.path, spec.body.is_some())
}

fn meta_reasons(spec: &Spec, seen: &FileFact) -> Vec<String> {
    let mut r = Vec::new();
    if let Some(m) = &spec.mode {
        if seen.exists && &seen.mode != m {
            r.push(format!("mode {} → {m}", seen.mode));
        }
    }
    if let Some(o) = &spec.owner {
        if seen.exists && &seen.owner != o {
            r.push(format!("owner {} → {o}", seen.owner));
        }
    }
    if let Some(g) = &spec.group {
        if seen.exists && &seen.group != g {
            r.push(format!("group {} → {g}", seen.group));
        }
    }
    r
}

/// chown/chmod only: used when just metadata drifted.
pub fn meta_script(spec: &Spec) -> String {
    meta_commands(
        &spec.path,
        spec.owner.as_deref(),
        spec.group.as_deref(),
        spec.mode.as_deref(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    fn prepared(yaml: &str) -> Spec {
        let mut s = spec::<File>(yaml);
        if let Some(c) = s.content.take() {
            s.body = Some(Secret::new(c.into_bytes()));
        }
        s
    }

    #[test]
    fn an_absolute_src_is_shown_by_name_and_a_relative_one_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside.conf");
        std::fs::write(&outside, "token = hunter2\n").unwrap();
        let root = d.path().join("project");
        let role = root.join("roles/r");
        std::fs::create_dir_all(role.join("files")).unwrap();
        let engine = crate::template::Engine::new(&root);
        let ctx = crate::template::Ctx::new(&Default::default(), Default::default(), vec![]);
        let pcx = PrepareCx::new(&engine, &ctx, &role, &root);
        let mut bad = spec::<File>("{path: /etc/x, src: ../../../../etc/shadow}");
        let e = File::prepare(&mut bad, &pcx).unwrap_err().to_string();
        assert!(e.contains("leaves the project"), "{e}");
        let mut bad = spec::<File>("{path: /etc/x, template: ../../x.j2}");
        assert!(File::prepare(&mut bad, &pcx)
            .unwrap_err()
            .to_string()
            .contains("leaves the project"));

        let yaml = format!("{{path: /etc/x, src: {}}}", outside.display());
        let mut abs = spec::<File>(&yaml);
        File::prepare(&mut abs, &pcx).unwrap();
        let d1 = File::diff(&abs, &facts(&[("file+content:/etc/x", ABSENT)]), &cx())
            .unwrap()
            .unwrap();
        let shown = d1.diff.unwrap();
        assert!(
            shown.contains("outside.conf") && !shown.contains("hunter2"),
            "{shown}"
        );
        let yaml = format!(
            "{{path: /etc/x, src: {}, show_diff: true}}",
            outside.display()
        );
        let mut asked = spec::<File>(&yaml);
        File::prepare(&mut asked, &pcx).unwrap();
        let d2 = File::diff(&asked, &facts(&[("file+content:/etc/x", ABSENT)]), &cx())
            .unwrap()
            .unwrap();
        assert!(d2.diff.unwrap().contains("hunter2"));
    }

    const ABSENT: &str = "absent\n";
    // sha256("hello\n")
    const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn present(mode: &str, owner: &str, body: &str) -> String {
        use base64::Engine as _;
        let sha = crate::digest::sha256_hex(body.as_bytes());
        format!(
            "stat regular file|{mode}|{owner}|root|{}\nsha256 {sha}\ncontent {}\n",
            body.len(),
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    }

    #[test]
    fn absent_is_created() {
        let s = prepared("path: /etc/x\ncontent: \"hello\\n\"\nmode: \"0640\"\n");
        let d = File::diff(&s, &facts(&[("file+content:/etc/x", ABSENT)]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert!(
            d.diff.as_deref().unwrap().contains("+hello"),
            "{:?}",
            d.diff
        );
        match &d.steps[0] {
            Step::Write {
                path,
                content,
                mode,
                ..
            } => {
                assert_eq!((path.as_str(), mode.as_deref()), ("/etc/x", Some("0640")));
                assert_eq!(content.expose(), b"hello\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn equal_is_in_sync() {
        let s = prepared("path: /etc/x\ncontent: \"hello\\n\"\nmode: \"0644\"\nowner: root\n");
        assert_eq!(crate::digest::sha256_hex(b"hello\n"), HELLO_SHA);
        let f = facts(&[("file+content:/etc/x", &present("644", "root", "hello\n"))]);
        assert!(File::diff(&s, &f, &cx()).unwrap().is_none());
    }

    #[test]
    fn drifted_content_and_mode_are_fixed() {
        let s = prepared("path: /etc/x\ncontent: \"hello\\n\"\nmode: \"0600\"\n");
        let f = facts(&[("file+content:/etc/x", &present("644", "root", "bye\n"))]);
        let d = File::diff(&s, &f, &cx()).unwrap().unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["content differs", "mode 0644 → 0600"]);
        let diff = d.diff.unwrap();
        assert!(diff.contains("-bye") && diff.contains("+hello"), "{diff}");
    }

    #[test]
    fn only_metadata_drift_uses_chmod() {
        let s = prepared("path: /etc/x\ncontent: \"hello\\n\"\nmode: \"0600\"\nowner: app\n");
        let f = facts(&[("file+content:/etc/x", &present("644", "root", "hello\n"))]);
        let d = File::diff(&s, &f, &cx()).unwrap().unwrap();
        assert_eq!(scripts(&d), "chown app -- /etc/x && chmod 0600 -- /etc/x");
    }

    #[test]
    fn secret_content_is_never_shown() {
        let s = prepared("path: /etc/x\ncontent: \"canary-secret-9\\n\"\n");
        let f = facts(&[(
            "file+content:/etc/x",
            &present("600", "root", "old-canary\n"),
        )]);
        let d = File::diff(&s, &f, &secret_cx()).unwrap().unwrap();
        let shown = format!("{:?} {:?} {:?}", d.diff, d.reasons, d.steps);
        assert!(!shown.contains("canary"), "{shown}");
        assert!(d
            .diff
            .unwrap()
            .starts_with("(secret changed: now hmac-sha256:"));
    }

    #[test]
    fn absent_state_removes() {
        let s = spec::<File>("path: /etc/x\nstate: absent\n");
        let d = File::diff(
            &s,
            &facts(&[(
                "file:/etc/x",
                "stat regular file|644|root|root|1\nsha256 ab\n",
            )]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (Action::Remove, "rm -f -- /etc/x".to_string())
        );
        assert!(File::diff(&s, &facts(&[("file:/etc/x", ABSENT)]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn integer_modes_are_refused_with_a_hint() {
        let e = spec_err::<File>("path: /etc/x\nmode: 0644\n");
        assert!(
            e.contains("t.yml:2:7") && e.contains("quoted string"),
            "{e}"
        );
    }
}
