//! The run log: one JSON line per `apply` in `PROJECT/.labctl/runs.jsonl` (git-ignored), and
//! `labctl history` to read it. A line says who ran what from which commit, and which resources
//! changed or failed where — ids only: no values, no diffs, no `-e` contents (they may hold
//! secrets), so the log is safe to share.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Exit};
use crate::plan::Recap;
use crate::ui::Shell;

use super::Global;

pub const LOG: &str = ".labctl/runs.jsonl";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Git {
    pub commit: String,
    pub dirty: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Selection {
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub limit: Option<String>,
    /// How many `-e` arguments were given (their contents are never logged).
    pub extra_vars: usize,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct HostRun {
    pub host: String,
    pub changed: Vec<String>,
    /// How to undo the upgrades among `changed` (see `Drift::way_back`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub way_back: Vec<crate::plan::WayBack>,
    pub failed: Vec<String>,
    #[serde(default)]
    pub unreachable: bool,
    /// A saved or confirmed plan was refused here because the host moved since.
    #[serde(default)]
    pub refused: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Run {
    pub time: String,
    /// The run's id, as recorded in the host lock and the handler journal on each host.
    #[serde(default)]
    pub run_id: String,
    /// The machine labctl ran on.
    #[serde(default)]
    pub controller: String,
    pub user: String,
    pub labctl: String,
    /// None when the project is not a git repo (or git is missing).
    pub git: Option<Git>,
    pub site: String,
    pub inventory: String,
    pub selection: Selection,
    /// What approved the changes: `prompt`, `--yes`, `--plan FILE`; `declined` when the
    /// answer was no, `none` when the run stopped before asking.
    pub approval: String,
    pub hosts: Vec<HostRun>,
    pub exit: i32,
    pub seconds: f64,
}

impl Run {
    pub fn start(t: &super::Target) -> (Run, std::time::Instant) {
        let run = Run {
            time: crate::vault::rfc3339_now(),
            user: user(),
            labctl: env!("CARGO_PKG_VERSION").to_string(),
            site: t.site.display().to_string(),
            inventory: t.inventory.display().to_string(),
            selection: Selection {
                tags: t.select.tags.clone(),
                skip_tags: t.select.skip_tags.clone(),
                limit: t.select.limit.clone(),
                extra_vars: t.extra_vars.len(),
            },
            approval: "none".into(),
            ..Run::default()
        };
        (run, std::time::Instant::now())
    }

    /// Who this run is to the hosts (lock, handler journal).
    pub fn identify(&mut self, info: &crate::apply::RunInfo) {
        self.run_id = info.id.clone();
        self.controller = info.controller.clone();
        self.time = info.started.clone();
    }

    pub fn hosts_from(&mut self, recaps: &[Recap]) {
        self.hosts = recaps
            .iter()
            .map(|r| HostRun {
                host: r.host.clone(),
                changed: r.changed.clone(),
                way_back: r.way_back.clone(),
                failed: r.failed.iter().map(|f| f.resource.clone()).collect(),
                unreachable: r.unreachable,
                refused: r.refused.is_some(),
            })
            .collect();
    }
}

/// The login name, and who became root through sudo.
fn user() -> String {
    let name = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && s != name => format!("{name} (sudo from {s})"),
        _ => name,
    }
}

fn git(root: &Path) -> Option<Git> {
    let out = |args: &[&str]| -> Option<String> {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = out(&["rev-parse", "HEAD"])?;
    let dirty = !out(&["status", "--porcelain"])?.is_empty();
    Some(Git { commit, dirty })
}

/// The project folder: where the site file is.
pub fn project(site: &Path) -> PathBuf {
    match site.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Appends `run` to the project's log. `scrub` is the last defence against a secret in an id.
pub fn append(sh: &Shell, mut run: Run, started: std::time::Instant) {
    let root = project(Path::new(&run.site));
    run.git = git(&root);
    run.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let line = match serde_json::to_string(&run) {
        Ok(l) => sh.scrub(&l),
        Err(_) => return,
    };
    let path = root.join(LOG);
    let r = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // One write of a whole line: concurrent runs never interleave within a line.
        f.write_all(format!("{line}\n").as_bytes())
    })();
    if let Err(e) = r {
        sh.warn(&format!(
            "could not append to the run log {}: {e}",
            path.display()
        ));
    }
}

/// `labctl history`: the last `n` runs of the project whose site file is `site`.
pub fn history(g: &Global, site: &Path, n: usize) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let path = project(site).join(LOG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(CliError::new(
                Exit::Failed,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let mut runs: Vec<Run> = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(l) {
            Ok(r) => runs.push(r),
            Err(e) => sh.warn(&format!(
                "{}:{}: skipped a line that is not a run record: {e}",
                path.display(),
                i + 1
            )),
        }
    }
    let runs = &runs[runs.len().saturating_sub(n)..];
    if g.json {
        sh.out(&crate::ui::json_envelope("history", &runs)?);
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        sh.status(
            "History",
            &format!("no runs recorded in {} yet", path.display()),
        );
        return Ok(Exit::Ok);
    }
    sh.out(&render(runs));
    Ok(Exit::Ok)
}

fn render(runs: &[Run]) -> String {
    let mut s = String::new();
    for r in runs {
        let commit = match &r.git {
            Some(g) => format!(
                "{}{}",
                &g.commit[..g.commit.len().min(10)],
                if g.dirty { "+dirty" } else { "" }
            ),
            None => "(no git)".into(),
        };
        let changed: usize = r.hosts.iter().map(|h| h.changed.len()).sum();
        let failed: usize = r.hosts.iter().map(|h| h.failed.len()).sum();
        let mut sel = Vec::new();
        if !r.selection.tags.is_empty() {
            sel.push(format!("--tags {}", r.selection.tags.join(",")));
        }
        if !r.selection.skip_tags.is_empty() {
            sel.push(format!("--skip-tags {}", r.selection.skip_tags.join(",")));
        }
        if let Some(l) = &r.selection.limit {
            sel.push(format!("--limit {l}"));
        }
        if r.selection.extra_vars > 0 {
            sel.push(format!("-e ×{}", r.selection.extra_vars));
        }
        s.push_str(&format!(
            "{}  exit {:<3} {}  {}  {} host(s), {changed} changed, {failed} failed  approved: {}{}\n",
            r.time,
            r.exit,
            r.user,
            commit,
            r.hosts.len(),
            r.approval,
            if sel.is_empty() { String::new() } else { format!("  {}", sel.join(" ")) }
        ));
        for h in &r.hosts {
            for id in &h.changed {
                s.push_str(&format!("    {}  ~ {id}\n", h.host));
            }
            for id in &h.failed {
                s.push_str(&format!("    {}  ✗ {id}\n", h.host));
            }
            if h.unreachable {
                s.push_str(&format!("    {}  unreachable\n", h.host));
            }
            if h.refused {
                s.push_str(&format!("    {}  refused (moved since the plan)\n", h.host));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_commit_selection_and_ids() {
        let r = Run {
            time: "2026-01-02T03:04:05Z".into(),
            run_id: "0123456789ab".into(),
            controller: "laptop".into(),
            user: "ada".into(),
            labctl: "0.1.0".into(),
            git: Some(Git {
                commit: "0123456789abcdef".into(),
                dirty: true,
            }),
            site: "site.yml".into(),
            inventory: "inv".into(),
            selection: Selection {
                tags: vec!["k3s".into()],
                limit: Some("lab-1".into()),
                extra_vars: 2,
                ..Default::default()
            },
            approval: "--yes".into(),
            hosts: vec![HostRun {
                host: "lab-1".into(),
                changed: vec!["k3s/file:x".into()],
                failed: vec!["k3s/service:k3s".into()],
                ..Default::default()
            }],
            exit: 1,
            seconds: 1.5,
        };
        let t = render(&[r]);
        assert!(t.starts_with("2026-01-02T03:04:05Z  exit 1   ada  0123456789+dirty  1 host(s), 1 changed, 1 failed  approved: --yes  --tags k3s --limit lab-1 -e ×2\n"), "{t}");
        assert!(
            t.contains("    lab-1  ~ k3s/file:x\n    lab-1  ✗ k3s/service:k3s\n"),
            "{t}"
        );
    }
}
