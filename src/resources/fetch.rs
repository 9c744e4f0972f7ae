//! `fetch`: copy a file from the host to the controller (the k3s kubeconfig, a join token).
//!
//! ```yaml
//! - fetch:
//!     src: /etc/rancher/k3s/k3s.yaml
//!     dest: kubeconfig/{{ inventory_hostname }}.yaml   # relative to the project root
//!     mode: "0600"                                     # the default: fetched files are often secret
//! ```
//!
//! Compared by sha256 (and the local file's mode); the content is never shown in a plan. A `src`
//! missing at plan time is planned anyway (an earlier resource may create it) and the fetch
//! fails loudly at apply if it is still missing. Fetching from several hosts to one `dest`
//! would overwrite each other: template the host's name into `dest`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::support::fs::check_path;
use super::ResourceError;
use super::{deserialize_mode, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

pub struct Fetch;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub src: String,
    pub dest: String,
    #[serde(default, deserialize_with = "deserialize_mode")]
    pub mode: Option<String>,
    /// Filled by `prepare`: `dest` resolved against the project root.
    #[serde(skip)]
    pub dest_abs: PathBuf,
    /// Filled by `prepare`: the controller's copy, when there is one.
    #[serde(skip)]
    pub local: Option<Local>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub sha256: String,
    pub mode: u32,
}

const DEFAULT_MODE: &str = "0600";

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.src)?;
    // Relative paths stay inside the project; an absolute or `~/` path is the user's explicit
    // choice (e.g. ~/.kube/lab.yaml), as with Ansible's fetch. `..` is refused either way.
    let d = Path::new(&spec.dest);
    if spec.dest.is_empty()
        || d.components().any(|c| {
            !matches!(
                c,
                Component::Normal(_) | Component::CurDir | Component::RootDir
            )
        })
    {
        return Err(ResourceError::spec(format!(
            "dest `{}` must be a file path without `..`",
            spec.dest
        )));
    }
    if spec.dest.ends_with('/') {
        return Err(ResourceError::spec(format!(
            "dest `{}` must name the file, not a directory",
            spec.dest
        )));
    }
    Ok(())
}

fn mode_bits(spec: &Spec) -> u32 {
    let m = spec.mode.as_deref().unwrap_or(DEFAULT_MODE);
    u32::from_str_radix(m, 8).expect("deserialize_mode keeps modes octal")
}

impl Resource for Fetch {
    const KIND: &'static str = "fetch";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.src.clone()
    }

    /// The only controller-side I/O of `fetch`: what the local copy looks like now.
    fn prepare(spec: &mut Spec, cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)?;
        // `~/x` → $HOME/x; absolute stays; relative is against the project root.
        spec.dest_abs = cx.root.join(crate::inventory::expand_tilde(&spec.dest));
        spec.local = match std::fs::read(&spec.dest_abs) {
            Ok(bytes) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(&spec.dest_abs)
                    .map_err(|e| format!("cannot stat {}: {e}", spec.dest_abs.display()))
                    .map_err(ResourceError::Spec)?;
                Some(Local {
                    sha256: crate::digest::sha256_hex(&bytes),
                    mode: meta.permissions().mode() & 0o7777,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ResourceError::Spec(format!(
                    "cannot read dest {}: {e}",
                    spec.dest_abs.display()
                )))
            }
        };
        Ok(())
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![FileQuery::new(&spec.src, false).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&FileQuery::new(&spec.src, false))?;
        if seen.exists && seen.kind != FileKind::File {
            return Err(ResourceError::Host(format!(
                "src {} is a {} on the host, not a file",
                spec.src, seen.kind
            )));
        }
        let mode = mode_bits(spec);
        let reasons = match (&spec.local, seen.exists) {
            // Planned anyway: see the module docs. The fetch step fails if src never appears.
            (_, false) => vec!["src not found on host (yet?)".to_string()],
            (None, true) => vec!["absent on the controller".to_string()],
            (Some(l), true) => {
                let mut r = Vec::new();
                if seen.sha256.as_deref() != Some(l.sha256.as_str()) {
                    r.push("content differs".to_string());
                }
                if l.mode != mode {
                    r.push(format!("local mode {:04o} → {:04o}", l.mode, mode));
                }
                r
            }
        };
        if reasons.is_empty() {
            return Ok(None);
        }
        let action = if spec.local.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        Ok(Some(Drift::new(
            action,
            reasons,
            vec![Step::Fetch {
                path: spec.src.clone(),
                dest: spec.dest_abs.clone(),
                mode,
            }],
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const SRC: &str = "file:/etc/rancher/k3s/k3s.yaml";
    const YAML: &str = "src: /etc/rancher/k3s/k3s.yaml\ndest: kubeconfig/server1.yaml\n";

    fn remote(body: &str) -> String {
        format!(
            "stat regular file|600|root|root|{}\nsha256 {}\n",
            body.len(),
            crate::digest::sha256_hex(body.as_bytes())
        )
    }

    /// Prepare against a real project root holding `local` (if any) at dest.
    fn prepared(yaml: &str, local: Option<(&str, u32)>) -> (tempfile::TempDir, Spec) {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec::<Fetch>(yaml);
        if let Some((body, mode)) = local {
            let p = d.path().join(&s.dest);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        with_prepare_in(d.path(), |cx| Fetch::prepare(&mut s, cx).unwrap());
        (d, s)
    }

    #[test]
    fn absent_locally_is_fetched() {
        let (root, s) = prepared(YAML, None);
        let d = Fetch::diff(&s, &facts(&[(SRC, &remote("apiVersion: v1\n"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (Action::Create, vec!["absent on the controller".to_string()])
        );
        match &d.steps[..] {
            [Step::Fetch { path, dest, mode }] => {
                assert_eq!(path, "/etc/rancher/k3s/k3s.yaml");
                assert_eq!(dest, &root.path().join("kubeconfig/server1.yaml"));
                assert_eq!(*mode, 0o600);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_content_is_in_sync() {
        let (_root, s) = prepared(YAML, Some(("apiVersion: v1\n", 0o600)));
        assert!(
            Fetch::diff(&s, &facts(&[(SRC, &remote("apiVersion: v1\n"))]), &cx())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn changed_content_or_local_mode_is_fetched_again() {
        let (_root, s) = prepared(YAML, Some(("old\n", 0o644)));
        let d = Fetch::diff(&s, &facts(&[(SRC, &remote("apiVersion: v1\n"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["content differs", "local mode 0644 → 0600"]);
        let (_root, s) = prepared(&format!("{YAML}mode: \"0640\"\n"), Some(("same\n", 0o640)));
        assert!(Fetch::diff(&s, &facts(&[(SRC, &remote("same\n"))]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn missing_src_is_planned_and_left_to_fail_at_apply() {
        let (_root, s) = prepared(YAML, None);
        let d = Fetch::diff(&s, &facts(&[(SRC, "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.reasons, vec!["src not found on host (yet?)"]);
        assert!(matches!(d.steps[..], [Step::Fetch { .. }]));
    }

    #[test]
    fn dest_has_no_parent_components() {
        for bad in ["../outside", "a/../../b", "/a/../b", ""] {
            let s = spec::<Fetch>(&format!("src: /x\ndest: \"{bad}\"\n"));
            assert!(
                check(&s).unwrap_err().to_string().contains("without `..`"),
                "{bad}"
            );
        }
        for good in [
            "kubeconfig/lab.yaml",
            "/root/.kube/lab.yaml",
            "~/.kube/lab.yaml",
        ] {
            let s = spec::<Fetch>(&format!("src: /x\ndest: \"{good}\"\n"));
            assert!(check(&s).is_ok(), "{good}");
        }
        assert!(check(&spec::<Fetch>("src: relative\ndest: a\n"))
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}
