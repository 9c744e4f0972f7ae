//! `apt`: Debian/Ubuntu packages installed (optionally pinned or kept at the newest version) or removed.
//!
//! ```yaml
//! - apt:
//!     packages: [curl, ufw, open-iscsi, "nfs-common=1:2.6.2-4"]   # `name=version` pins a version
//!     state: present          # present (default) | latest | absent
//!     update_cache: auto      # auto (default) | always | never
//!     lock_timeout: 120       # s to wait for a dpkg lock another process holds (then fail naming it)
//! - apt: {name: snapd, state: absent}
//! ```
//!
//! `update_cache: auto` runs `apt-get update` only before an install, and only when it is needed:
//! the lists are missing or older than 24 hours, or a wanted package has no install candidate.
//! `always` refreshes before every install; `never` does not refresh. A refresh alone is never a
//! change: the resource is in sync as soon as the packages are. `latest` upgrades to the newest
//! version the host's lists know (it does not refresh lists just to look for upgrades, which would
//! plan a change on every run).

use serde::Deserialize;

use super::ResourceError;
use super::{q, DiffCx, Resource};
use crate::facts::packages::{self, CandidatesQuery, ListsQuery, PackagesQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};

pub struct Apt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Present,
    Latest,
    Absent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpdateCache {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub update_cache: UpdateCache,
    /// Seconds to wait for the dpkg lock when another process holds it (then fail, naming it).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u32,
}

fn default_lock_timeout() -> u32 {
    120
}

/// Lists older than this are refreshed before an install.
pub const MAX_LIST_AGE: i64 = 24 * 3600;

/// The apt-get prefix every step uses. apt's lock is an fcntl lock (flock(1) does not wait for
/// it), so wait on it with apt's own timeout instead of failing when unattended-upgrades runs;
/// past it, apt fails with "Could not get lock …, held by process N (NAME)".
fn apt_get(spec: &Spec) -> String {
    format!(
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={} -y -q",
        spec.lock_timeout
    )
}

/// Appended to every apt-get command: when it fails while a dpkg/apt lock file is open in
/// another process, name that process. apt's own last words ("Unable to acquire the dpkg
/// frontend lock … is another process using it?") do not say who.
const NAME_LOCK_HOLDER: &str = r#"{ __rc=$?; for __p in /proc/[0-9]*; do for __f in "$__p"/fd/*; do case "$(readlink "$__f" 2>/dev/null)" in /var/lib/dpkg/lock-frontend|/var/lib/dpkg/lock|/var/lib/apt/lists/lock|/var/cache/apt/archives/lock) echo "labctl: the dpkg/apt lock is held by process ${__p#/proc/} ($(cat "$__p/comm" 2>/dev/null)): waited for it as long as lock_timeout allows" >&2; break 2;; esac; done; done; exit $__rc; }"#;

/// One apt-get command (`rest`: its subcommand and arguments) that names the lock's holder
/// when it fails.
fn apt_step(spec: &Spec, rest: &str) -> Step {
    Step::sh(format!("{} {rest} || {NAME_LOCK_HOLDER}", apt_get(spec)))
}

impl Spec {
    /// `packages` and `name` merged, as written (with any `=version`).
    fn wanted(&self) -> Vec<&str> {
        self.name
            .iter()
            .chain(self.packages.iter())
            .map(String::as_str)
            .collect()
    }
    /// Bare names for the fact queries.
    fn names(&self) -> Vec<&str> {
        self.wanted().into_iter().map(|p| split_pin(p).0).collect()
    }
}

fn split_pin(p: &str) -> (&str, Option<&str>) {
    match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    }
}

/// Debian policy: names are lowercase letters, digits, `+ - .`, at least two characters, starting
/// alphanumeric; an `:arch` qualifier and a `=version` are allowed.
fn check_package(p: &str) -> Result<(), String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9\-]+)?(=[A-Za-z0-9.+~:\-]+)?$")
            .expect("static regex")
    });
    if !RE.is_match(p) {
        return Err(format!(
            "`{p}` is not a Debian package name (lowercase letters, digits, `+ - .`; optionally `:arch` and `=version`)"
        ));
    }
    Ok(())
}

/// What dpkg has and what apt could install: the queries `facts` asks and `diff` reads.
fn queries(spec: &Spec, names: &[&str]) -> (PackagesQuery, CandidatesQuery) {
    (
        PackagesQuery::new(names),
        CandidatesQuery::new(names, spec.state == State::Present),
    )
}

impl Resource for Apt {
    const KIND: &'static str = "apt";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.wanted().join(",")
    }

    fn prepare(spec: &mut Spec, _cx: &super::PrepareCx) -> Result<(), ResourceError> {
        validate(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        let names = spec.names();
        let (dpkg, cands) = queries(spec, &names);
        let mut v = vec![dpkg.query()];
        if spec.state != State::Absent {
            v.push(cands.query());
            v.push(ListsQuery.query());
        }
        v
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        validate(spec)?;
        let names = spec.names();
        let (dpkg, cands) = queries(spec, &names);
        let seen = facts.get(&dpkg)?;
        if spec.state == State::Absent {
            let present: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| seen.installed(n).is_some())
                .collect();
            if present.is_empty() {
                return Ok(None);
            }
            let reasons = present
                .iter()
                .map(|n| format!("package {n} installed"))
                .collect();
            let step = apt_step(spec, &format!("remove {}", join_q(&present)));
            return Ok(Some(Drift::new(Action::Remove, reasons, vec![step])));
        }

        let cands = facts.get(&cands)?;
        let lists = facts.get(&ListsQuery)?;
        let mut reasons = Vec::new();
        let mut todo: Vec<&str> = Vec::new();
        let mut missing: Vec<&str> = Vec::new();
        let mut no_candidate = false;
        for p in spec.wanted() {
            let (name, pin) = split_pin(p);
            let cand = cands.candidate(name);
            match (seen.installed(name), pin) {
                (None, _) => {
                    reasons.push(format!("package {name} missing"));
                    missing.push(name);
                    // A pinned version may exist even when the candidate is another one; only
                    // "no version at all" says the lists are stale for sure.
                    no_candidate |= cand.is_none();
                    todo.push(p);
                }
                (Some(have), Some(want)) if have != want => {
                    reasons.push(format!("package {name} {have} → {want}"));
                    todo.push(p);
                }
                (Some(have), None) if spec.state == State::Latest => {
                    if let Some(c) = cand.filter(|c| *c != have) {
                        reasons.push(format!("package {name} {have} → {c}"));
                        todo.push(p);
                    }
                }
                _ => {}
            }
        }
        if todo.is_empty() {
            return Ok(None);
        }
        let refresh = match spec.update_cache {
            UpdateCache::Always => Some("update_cache: always".to_string()),
            UpdateCache::Never => None,
            UpdateCache::Auto => refresh_reason(&missing, no_candidate, lists),
        };
        let mut steps = Vec::new();
        if let Some(why) = refresh {
            reasons.push(format!("apt-get update first ({why})"));
            steps.push(apt_step(spec, "update"));
        }
        steps.push(apt_step(
            spec,
            &format!(
                "install --no-install-recommends -o Dpkg::Options::=--force-confold {}",
                join_q(&todo)
            ),
        ));
        let action = if missing.len() == todo.len() {
            Action::Create
        } else {
            Action::Update
        };
        Ok(Some(Drift::new(action, reasons, steps)))
    }
}

/// Why the lists must be refreshed before installing, if they must. Upgrades and pins of
/// installed packages trust the current lists: they were computed from them.
fn refresh_reason(
    missing: &[&str],
    no_candidate: bool,
    lists: packages::ListsFact,
) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    match lists.age() {
        None => Some("package lists were never fetched".into()),
        Some(_) if no_candidate => {
            Some("a missing package has no install candidate in the current lists".into())
        }
        Some(age) if age > MAX_LIST_AGE => {
            Some(format!("package lists are {} old", human_age(age)))
        }
        Some(_) => None,
    }
}

fn human_age(secs: i64) -> String {
    if secs >= 2 * 86400 {
        format!("{} days", secs / 86400)
    } else {
        format!("{} hours", secs / 3600)
    }
}

fn join_q(items: &[&str]) -> String {
    items.iter().map(|p| q(p)).collect::<Vec<_>>().join(" ")
}

fn validate(spec: &Spec) -> Result<(), ResourceError> {
    let wanted = spec.wanted();
    if wanted.is_empty() {
        return Err(ResourceError::spec(
            "give `packages: [..]` or `name: PACKAGE`",
        ));
    }
    for p in &wanted {
        check_package(p).map_err(ResourceError::Spec)?;
    }
    if spec.state == State::Absent {
        if let Some(p) = wanted.iter().find(|p| p.contains('=')) {
            return Err(ResourceError::spec(format!(
                "`{p}`: `state: absent` takes package names without `=version`"
            )));
        }
    }
    if spec.state == State::Latest {
        if let Some(p) = wanted.iter().find(|p| p.contains('=')) {
            return Err(ResourceError::spec(format!(
                "`{p}`: `state: latest` and a pinned `=version` contradict each other"
            )));
        }
    }
    let names = spec.names();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(ResourceError::spec(format!(
                "package `{n}` is listed twice"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const NOW: i64 = 1_795_383_494;
    const INSTALL: &str =
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q install --no-install-recommends -o Dpkg::Options::=--force-confold";
    const UPDATE: &str =
        "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q update";

    /// Each apt-get line as the step runs it: with the lock holder named on failure.
    fn named(lines: &str) -> String {
        lines
            .lines()
            .map(|l| format!("{l} || {NAME_LOCK_HOLDER}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_failed_apt_names_the_process_holding_the_lock() {
        // The snippet against a real shell, with the lock path moved to a temp file held open.
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("lock-frontend");
        std::fs::write(&lock, "").unwrap();
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 7<{}; exec sleep 30", lock.display()))
            .spawn()
            .unwrap();
        // Wait (bounded) until the holder is `sleep` with the lock file open, however loaded
        // the machine is.
        let comm = format!("/proc/{}/comm", holder.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(std::time::Instant::now() < deadline, "holder never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Only the temp lock: this machine's own apt may hold the real ones right now.
        let script = format!("false || {NAME_LOCK_HOLDER}")
            .replace("/var/lib/dpkg/lock-frontend", &lock.display().to_string())
            .replace("|/var/lib/dpkg/lock|", "|/nonexistent/a|")
            .replace("/var/lib/apt/lists/lock", "/nonexistent/b")
            .replace("/var/cache/apt/archives/lock", "/nonexistent/c");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(out.status.code(), Some(1), "apt's own status is kept");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("held by process {} (sleep)", holder.id())),
            "{err}"
        );
    }

    fn f(names: &str, dpkg: &str, cands: &str, lists_age: Option<i64>) -> Facts {
        let lists = match lists_age {
            Some(a) => format!("lists 3 {} {NOW}\n", NOW - a),
            None => format!("lists 0 0 {NOW}\n"),
        };
        facts(&[
            (&format!("packages:{names}"), &format!("{dpkg}done\n")),
            (
                &format!("apt-candidates:{names}"),
                &format!("{cands}done\n"),
            ),
            (
                &format!("apt-candidates:{names}:missing"),
                &format!("{cands}done\n"),
            ),
            ("apt-lists", &lists),
        ])
    }

    fn diff(yaml: &str, facts: &Facts) -> Option<Drift> {
        let s = spec::<Apt>(yaml);
        Apt::diff(&s, facts, &cx()).unwrap()
    }

    #[test]
    fn facts_asked() {
        let keys: Vec<String> = Apt::facts(&spec::<Apt>("packages: [curl, \"ufw=0.36.2-1\"]\n"))
            .into_iter()
            .map(|q| q.key)
            .collect();
        assert_eq!(
            keys,
            [
                "packages:curl,ufw",
                "apt-candidates:curl,ufw:missing",
                "apt-lists"
            ]
        );
        let keys: Vec<String> = Apt::facts(&spec::<Apt>("name: snapd\nstate: absent\n"))
            .into_iter()
            .map(|q| q.key)
            .collect();
        assert_eq!(keys, ["packages:snapd"]);
    }

    #[test]
    fn absent_is_installed_without_refresh_when_lists_are_fresh() {
        let d = diff(
            "packages: [curl, ufw]\n",
            &f(
                "curl,ufw",
                "",
                "candidate curl 7.88.1-10+deb12u15\ncandidate ufw 0.36.2-1\n",
                Some(3600),
            ),
        )
        .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.reasons, ["package curl missing", "package ufw missing"]);
        assert_eq!(scripts(&d), named(&format!("{INSTALL} curl ufw")));
    }

    #[test]
    fn installed_is_in_sync() {
        let fx = f(
            "curl,ufw",
            "pkg curl ii  7.88\npkg ufw ii  0.36.2-1\n",
            "candidate curl 7.89\ncandidate ufw 0.36.2-1\n",
            None,
        );
        assert!(diff("packages: [curl, ufw]\n", &fx).is_none());
        // Lists never fetched and always-refresh do not matter when nothing is to be installed.
        assert!(diff("packages: [curl, ufw]\nupdate_cache: always\n", &fx).is_none());
    }

    #[test]
    fn partly_missing_lists_only_the_missing_ones() {
        let d = diff(
            "packages: [curl, ufw]\n",
            &f(
                "curl,ufw",
                "pkg curl ii  7.88\npkg ufw rc  0.36.2-1\n",
                "candidate ufw 0.36.2-1\n",
                Some(60),
            ),
        )
        .unwrap();
        assert_eq!(d.reasons, ["package ufw missing"]);
        assert_eq!(scripts(&d), named(&format!("{INSTALL} ufw")));
    }

    #[test]
    fn refresh_decision() {
        let cand = "candidate ufw 0.36.2-1\n";
        // Stale lists (25 hours).
        let d = diff("name: ufw\n", &f("ufw", "", cand, Some(25 * 3600))).unwrap();
        assert_eq!(
            d.reasons,
            [
                "package ufw missing",
                "apt-get update first (package lists are 25 hours old)"
            ]
        );
        assert_eq!(scripts(&d), named(&format!("{UPDATE}\n{INSTALL} ufw")));
        // Never fetched (fresh container).
        let d = diff("name: ufw\n", &f("ufw", "", "", None)).unwrap();
        assert_eq!(
            d.reasons[1],
            "apt-get update first (package lists were never fetched)"
        );
        // Fresh lists but no candidate: the package came with a repo added since the last update.
        let d = diff(
            "name: ufw\n",
            &f("ufw", "", "candidate ufw (none)\n", Some(60)),
        )
        .unwrap();
        assert_eq!(d.reasons[1], "apt-get update first (a missing package has no install candidate in the current lists)");
        // never: not even then.
        let d = diff("name: ufw\nupdate_cache: never\n", &f("ufw", "", "", None)).unwrap();
        assert_eq!(scripts(&d), named(&format!("{INSTALL} ufw")));
        // always: even with fresh lists.
        let d = diff(
            "name: ufw\nupdate_cache: always\n",
            &f("ufw", "", cand, Some(60)),
        )
        .unwrap();
        assert_eq!(scripts(&d), named(&format!("{UPDATE}\n{INSTALL} ufw")));
        // A pin change on an installed package trusts the lists its facts came from.
        let d = diff(
            "name: \"ufw=0.36.2-2\"\n",
            &f("ufw", "pkg ufw ii  0.36.2-1\n", cand, Some(9 * 86400)),
        )
        .unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (
                Action::Update,
                vec!["package ufw 0.36.2-1 → 0.36.2-2".to_string()]
            )
        );
        assert_eq!(scripts(&d), named(&format!("{INSTALL} 'ufw=0.36.2-2'")));
    }

    #[test]
    fn latest_upgrades_to_the_candidate() {
        let fx = f(
            "curl",
            "pkg curl ii  7.88.1-10\n",
            "candidate curl 7.88.1-10+deb12u15\n",
            Some(60),
        );
        let d = diff("name: curl\nstate: latest\n", &fx).unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (
                Action::Update,
                vec!["package curl 7.88.1-10 → 7.88.1-10+deb12u15".to_string()]
            )
        );
        assert_eq!(scripts(&d), named(&format!("{INSTALL} curl")));
        assert!(diff("name: curl\n", &fx).is_none());
        let fx = f(
            "curl",
            "pkg curl ii  7.88.1-10\n",
            "candidate curl 7.88.1-10\n",
            Some(60),
        );
        assert!(diff("name: curl\nstate: latest\n", &fx).is_none());
    }

    #[test]
    fn absent_state_removes_installed_ones() {
        let fx = facts(&[(
            "packages:snapd,lxd",
            "pkg snapd ii  2.57\npkg lxd rc  5.0\ndone\n",
        )]);
        let d = diff("packages: [snapd, lxd]\nstate: absent\n", &fx).unwrap();
        assert_eq!(
            (d.action, d.reasons.clone()),
            (Action::Remove, vec!["package snapd installed".to_string()])
        );
        assert_eq!(
            scripts(&d),
            named("DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q remove snapd")
        );
        let fx = facts(&[("packages:snapd", "done\n")]);
        assert!(diff("name: snapd\nstate: absent\n", &fx).is_none());
    }

    #[test]
    fn spec_errors_name_the_field() {
        let e = spec_err::<Apt>("packages: [curl]\nstate: purged\n");
        assert!(e.contains("t.yml:2:8") && e.contains("purged"), "{e}");
        let e = spec_err::<Apt>("packages: [curl]\nupdate: yes\n");
        assert!(e.contains("t.yml:2:1") && e.contains("update"), "{e}");
        let s = spec::<Apt>("packages: [\"Curl; rm -rf /\"]\n");
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("`Curl; rm -rf /` is not a Debian package name"));
        assert!(validate(&spec::<Apt>("state: present\n"))
            .unwrap_err()
            .to_string()
            .contains("give `packages"));
        assert!(
            validate(&spec::<Apt>("packages: [\"ab=1\"]\nstate: absent\n"))
                .unwrap_err()
                .to_string()
                .contains("without `=version`")
        );
        assert!(validate(&spec::<Apt>("packages: [curl, \"curl=1\"]\n"))
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
        assert!(validate(&spec::<Apt>(
            "name: \"libc6:i386=2.36-9\"\npackages: [g++, libstdc++6]\n"
        ))
        .is_ok());
    }
}
