//! Package facts (dpkg/apt): what is installed, what apt could install, and how old its lists are.
//!
//! Three queries, so resources that only remove packages do not pay for `apt-cache`, and the
//! lists' age (one per host) is shared by every `apt` resource.

use std::collections::BTreeMap;

use super::{parse_err, q, unexpected, Fact, FactError, FactQuery};

/// One package as dpkg knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Installed {
    /// dpkg's abbreviated status, e.g. `ii`, `rc`, `hi`.
    pub status: String,
    pub version: String,
}

impl Installed {
    /// The second letter is the current state; the first is only the wanted one (`hi` = held
    /// but installed, `rc` = removed with config files left).
    pub fn is_installed(&self) -> bool {
        self.status.as_bytes().get(1) == Some(&b'i')
    }
}

/// dpkg's view of the asked names. A name dpkg has never heard of is simply absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PackagesFact {
    pub packages: BTreeMap<String, Vec<Installed>>,
}

impl PackagesFact {
    /// The installed version of `name`, if any.
    pub fn installed(&self, name: &str) -> Option<&str> {
        self.packages
            .get(name)?
            .iter()
            .find(|p| p.is_installed())
            .map(|p| p.version.as_str())
    }
}

fn names_key(prefix: &str, names: &[&str]) -> String {
    format!("{prefix}:{}", names.join(","))
}

/// Ask dpkg about `names` (bare package names, optionally `:arch`).
fn query(names: &[&str]) -> FactQuery {
    let list = names.iter().map(|n| q(n)).collect::<Vec<_>>().join(" ");
    // ONE dpkg-query for all names (a process per name cost ~20 ms each); every line names its
    // package and architecture, so answers map back to the asked names in any order, and a name
    // dpkg does not know is simply absent.
    FactQuery::single(
        names_key("packages", names),
        format!(
            "if command -v dpkg-query >/dev/null 2>&1; then \
             __lc_dpkg {list}; [ -z \"$__lc_dv\" ] || printf '%s\\n' \"$__lc_dv\"; echo done; \
             else echo nodpkg; fi"
        ),
    )
}

pub fn parse(k: &str, out: &str) -> Result<PackagesFact, FactError> {
    let mut f = PackagesFact::default();
    let mut done = false;
    for line in out.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("nodpkg") => {
                return Err(parse_err(
                    k,
                    "dpkg-query is not on the host (not a Debian/Ubuntu system?)",
                ))
            }
            Some("done") => done = true,
            Some("pkg") => {
                let name = it
                    .next()
                    .ok_or_else(|| parse_err(k, format!("bad line `{line}`")))?;
                let status = it.next().unwrap_or("").to_string();
                let version = it.next().unwrap_or("").to_string();
                f.packages
                    .entry(name.to_string())
                    .or_default()
                    .push(Installed { status, version });
            }
            // `dpkg NAME ARCH STATUS VERSION`: filed under NAME and NAME:ARCH, the two ways
            // a name can be asked for.
            Some("dpkg") => {
                let name = it
                    .next()
                    .ok_or_else(|| parse_err(k, format!("bad line `{line}`")))?;
                let arch = it.next().unwrap_or("");
                let status = it.next().unwrap_or("").to_string();
                let version = it.next().unwrap_or("").to_string();
                let entry = Installed { status, version };
                f.packages
                    .entry(name.to_string())
                    .or_default()
                    .push(entry.clone());
                if !arch.is_empty() {
                    f.packages
                        .entry(format!("{name}:{arch}"))
                        .or_default()
                        .push(entry);
                }
            }
            None => {}
            Some(_) => return Err(unexpected(k, line)),
        }
    }
    if !done {
        return Err(parse_err(k, "answer cut short"));
    }
    Ok(f)
}

/// What `apt-get install NAME` would pick with the current lists: `None` = no candidate.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CandidatesFact {
    pub candidates: BTreeMap<String, Option<String>>,
}

impl CandidatesFact {
    /// The candidate for `name`; `None` when apt knows no installable version (or not the name).
    pub fn candidate(&self, name: &str) -> Option<&str> {
        let base = name.split(':').next().unwrap_or(name);
        self.candidates
            .get(name)
            .or_else(|| self.candidates.get(base))
            .and_then(|c| c.as_deref())
    }
}

/// Ask apt which version it would install for each name. With `only_missing`, names dpkg
/// already has installed are skipped, and when none is missing apt-cache is not run at all:
/// it is the slowest part of a no-op probe (~0.1 s), and a converged host needs no candidates.
fn candidates_query(names: &[&str], only_missing: bool) -> FactQuery {
    let list = names.iter().map(|n| q(n)).collect::<Vec<_>>().join(" ");
    // Installed names (bare and with :arch), space-separated, from one dpkg-query.
    let (pre, filter) = if only_missing {
        (
            // One dpkg-query; the installed names are picked out by a builtin `read` loop.
            // The same `dpkg-query` as the `packages` query's (the prelude's `__lc_dpkg`): when
            // both ask about the same names, the host runs it once.
            format!("have=' '; __lc_dpkg {list}; while read -r __d __n __a __st __v; do case $__st in ?i*) have=\"$have$__n $__n:$__a \";; esac; done <<__LABCTL_DPKG__\n$__lc_dv\n__LABCTL_DPKG__\n"),
            "case \"$have\" in *\" $p \"*) continue;; esac; ",
        )
    } else {
        (String::new(), "")
    };
    // apt-cache prints nothing for names it has never heard of, `Candidate: (none)` for purely
    // virtual or unavailable ones. Names are validated (Debian's charset), so $want splits safely.
    FactQuery::single(
        format!("{}{}", names_key("apt-candidates", names), if only_missing { ":missing" } else { "" }),
        format!(
            "if command -v apt-cache >/dev/null 2>&1; then want=; {pre}\
             for p in {list}; do {filter}want=\"$want $p\"; done; \
             if [ -n \"$want\" ]; then apt-cache policy -- $want 2>/dev/null | \
             awk '/^[^ ]/ {{ p = $1; sub(/:$/, \"\", p) }} /^  Candidate:/ {{ print \"candidate\", p, $2 }}'; fi; echo done; \
             else echo noapt; fi"
        ),
    )
}

pub fn candidates_parse(k: &str, out: &str) -> Result<CandidatesFact, FactError> {
    let mut f = CandidatesFact::default();
    let mut done = false;
    for line in out.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["noapt"] => {
                return Err(parse_err(
                    k,
                    "apt-cache is not on the host (not a Debian/Ubuntu system?)",
                ))
            }
            ["done"] => done = true,
            ["candidate", name, v] => {
                let c = (*v != "(none)").then(|| v.to_string());
                f.candidates.insert(name.to_string(), c);
            }
            [] => {}
            _ => return Err(unexpected(k, line)),
        }
    }
    if !done {
        return Err(parse_err(k, "answer cut short"));
    }
    Ok(f)
}

pub const LISTS_KEY: &str = "apt-lists";

/// How fresh apt's package lists are, measured on the host's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ListsFact {
    /// How many `*_Packages*` index files exist (0 = never updated, e.g. a fresh container).
    pub count: u32,
    /// Newest sign of an `apt-get update`, as epoch seconds (0 = none).
    pub newest: i64,
    /// The host's clock when the probe ran.
    pub now: i64,
}

impl ListsFact {
    /// Seconds since the last refresh; `None` when the lists were never fetched.
    pub fn age(&self) -> Option<i64> {
        (self.count > 0 && self.newest > 0).then(|| (self.now - self.newest).max(0))
    }
}

/// The age of apt's lists. apt stamps downloaded lists with the server's Last-Modified time, so a
/// stable release's lists look old right after an update; `lists/partial` (touched by every
/// update run) and the periodic success stamp (Ubuntu touches it on every update) say when
/// apt-get update last ran.
fn lists_query() -> FactQuery {
    FactQuery::single(
        LISTS_KEY,
        // One stat for every candidate file (not one per file).
        "n=0; newest=0; \
                 for f in /var/lib/apt/lists/*_Packages*; do [ -e \"$f\" ] && n=$((n+1)); done; set --; \
                 for f in /var/lib/apt/lists/partial /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists/*InRelease /var/lib/apt/lists/*_Release /var/lib/apt/lists/*_Packages*; do \
                 [ -e \"$f\" ] && set -- \"$@\" \"$f\"; done; \
                 if [ $# -gt 0 ]; then for m in $(stat -c %Y -- \"$@\" 2>/dev/null); do [ \"$m\" -gt \"$newest\" ] && newest=$m; done; fi; \
                 __lc_now; printf 'lists %s %s %s\\n' \"$n\" \"$newest\" \"$__now\"",
    )
}

pub fn lists_parse(out: &str) -> Result<ListsFact, FactError> {
    let line = out
        .lines()
        .find(|l| l.starts_with("lists "))
        .ok_or_else(|| parse_err(LISTS_KEY, "no `lists` line"))?;
    let p: Vec<&str> = line.split_whitespace().collect();
    let bad = || parse_err(LISTS_KEY, format!("bad line `{line}`"));
    if p.len() != 4 {
        return Err(bad());
    }
    Ok(ListsFact {
        count: p[1].parse().map_err(|_| bad())?,
        newest: p[2].parse().map_err(|_| bad())?,
        now: p[3].parse().map_err(|_| bad())?,
    })
}

/// What dpkg says about some package names (bare, or `NAME:ARCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagesQuery {
    pub names: Vec<String>,
}

/// What apt would install for those names; with `only_missing`, only for names dpkg lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidatesQuery {
    pub names: Vec<String>,
    pub only_missing: bool,
}

/// How fresh apt's lists are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListsQuery;

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

impl PackagesQuery {
    pub fn new(names: &[&str]) -> Self {
        PackagesQuery {
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }
}

impl CandidatesQuery {
    pub fn new(names: &[&str], only_missing: bool) -> Self {
        CandidatesQuery {
            names: names.iter().map(|n| n.to_string()).collect(),
            only_missing,
        }
    }
}

impl Fact for PackagesQuery {
    type Output = PackagesFact;
    fn key(&self) -> String {
        names_key("packages", &refs(&self.names))
    }
    fn script(&self) -> String {
        query(&refs(&self.names)).script
    }
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<PackagesFact, FactError> {
        parse(&self.key(), out)
    }
}

impl Fact for CandidatesQuery {
    type Output = CandidatesFact;
    fn key(&self) -> String {
        candidates_query(&refs(&self.names), self.only_missing).key
    }
    fn script(&self) -> String {
        candidates_query(&refs(&self.names), self.only_missing).script
    }
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<CandidatesFact, FactError> {
        candidates_parse(&self.key(), out)
    }
}

impl Fact for ListsQuery {
    type Output = ListsFact;
    fn key(&self) -> String {
        LISTS_KEY.into()
    }
    fn script(&self) -> String {
        lists_query().script
    }
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<ListsFact, FactError> {
        lists_parse(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::testutil::run_sh as sh;

    #[test]
    fn snippets_are_valid_sh() {
        for qy in [
            query(&["ufw", "curl"]),
            candidates_query(&["ufw", "libc6:i386"], false),
            candidates_query(&["ufw", "libc6:i386"], true),
            lists_query(),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&qy.script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                qy.key,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn snippets_answer_on_any_host() {
        // Wherever the tests run (Debian or not), each snippet prints something parseable.
        let qy = query(&["surely-not-a-package-xyz"]);
        match parse(&qy.key, &sh(&qy.script)) {
            Ok(f) => assert_eq!(f.installed("surely-not-a-package-xyz"), None),
            Err(e) => assert!(
                e.to_string().contains("dpkg-query is not on the host"),
                "{e}"
            ),
        }
        let l = lists_parse(&sh(&lists_query().script)).unwrap();
        assert!(l.now > 1_600_000_000);
    }

    // Captured on Debian 12 (bookworm) with ufw installed: the snippet's output for
    // `ufw nosuchpkg iptables` (nosuchpkg prints nothing).
    const DPKG_BOOKWORM: &str = "pkg ufw ii  0.36.2-1\npkg iptables ii  1.8.9-2\ndone\n";

    #[test]
    fn parses_real_dpkg_output() {
        let f = parse("k", DPKG_BOOKWORM).unwrap();
        assert_eq!(f.installed("ufw"), Some("0.36.2-1"));
        assert_eq!(f.installed("iptables"), Some("1.8.9-2"));
        assert_eq!(f.installed("nosuchpkg"), None);
        // Removed with config left, and held-but-installed.
        let f = parse("k", "pkg nginx rc  1.22.1-9\npkg k3s hi  1.30\ndone\n").unwrap();
        assert_eq!(
            (f.installed("nginx"), f.installed("k3s")),
            (None, Some("1.30"))
        );
        assert!(parse("k", "pkg ufw ii  0.36.2-1\n")
            .unwrap_err()
            .to_string()
            .contains("cut short"));
        assert!(parse("k", "nodpkg\n")
            .unwrap_err()
            .to_string()
            .contains("not on the host"));
    }

    // Captured on Debian 12: `apt-cache policy -- ufw nosuchpkg mail-transport-agent curl`
    // through the snippet's awk filter.
    const POLICY_RAW: &str = "ufw:\n  Installed: 0.36.2-1\n  Candidate: 0.36.2-1\n  Version table:\n *** 0.36.2-1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n        100 /var/lib/dpkg/status\nmail-transport-agent:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\ncurl:\n  Installed: (none)\n  Candidate: 7.88.1-10+deb12u15\n  Version table:\n     7.88.1-10+deb12u15 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";

    #[test]
    fn parses_real_apt_cache_policy_through_the_filter() {
        let qy = candidates_query(&["x"], false);
        // Run the snippet's awk on the captured policy text by replacing apt-cache with a cat.
        let awk = qy
            .script
            .split("2>/dev/null | ")
            .nth(1)
            .unwrap()
            .split("; fi;")
            .next()
            .unwrap();
        let script = format!("printf '%s' {} | {awk}; echo done", q(POLICY_RAW));
        let out = sh(&script);
        assert_eq!(out, "candidate ufw 0.36.2-1\ncandidate mail-transport-agent (none)\ncandidate curl 7.88.1-10+deb12u15\ndone\n");
        let f = candidates_parse("k", &out).unwrap();
        assert_eq!(f.candidate("curl"), Some("7.88.1-10+deb12u15"));
        assert_eq!(f.candidate("mail-transport-agent"), None);
        assert_eq!(f.candidate("nosuchpkg"), None);
        assert_eq!(f.candidate("curl:amd64"), Some("7.88.1-10+deb12u15"));
    }

    #[test]
    fn the_hosts_clock_read_from_proc_agrees_with_date() {
        let out = crate::facts::testutil::run_sh("__lc_now; echo \"$__now $(date +%s)\"");
        let v: Vec<i64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert!((v[0] - v[1]).abs() <= 2, "{out}");
    }

    #[test]
    fn parses_lists_age() {
        // Debian 12 right after `apt-get update`: lists/partial carries the update time.
        let l = lists_parse("lists 1 1795383322 1795383494\n").unwrap();
        assert_eq!(l.age(), Some(172));
        assert_eq!(lists_parse("lists 0 0 1795383494\n").unwrap().age(), None);
        assert!(lists_parse("lists x\n").is_err());
    }

    #[test]
    fn installed_packages_skip_apt_cache() {
        // A fake apt-cache first on PATH records whether it was called (dash has no `-` in
        // function names, so no shell function will do).
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("apt-cache");
        let marker = d.path().join("called");
        std::fs::write(&fake, format!("#!/bin/sh\necho \"$*\" >> {}\nshift 2\nfor p in \"$@\"; do printf '%s:\\n  Candidate: 1.0\\n' \"$p\"; done\n", marker.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = |qy: FactQuery| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{}\n{}", crate::facts::probe::PRELUDE, qy.script))
                .env(
                    "PATH",
                    format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap()),
                )
                .output()
                .unwrap();
            let calls = std::fs::read_to_string(&marker).unwrap_or_default();
            let _ = std::fs::remove_file(&marker);
            (String::from_utf8(out.stdout).unwrap(), calls)
        };
        // dpkg is installed on every Debian machine: nothing missing, apt-cache never runs.
        let (out, calls) = run(candidates_query(&["dpkg"], true));
        assert_eq!((out.as_str(), calls.as_str()), ("done\n", ""));
        // Without the filter (state: latest), or with a missing package, it does.
        let (out, calls) = run(candidates_query(&["dpkg"], false));
        assert_eq!(
            (out.as_str(), calls.as_str()),
            ("candidate dpkg 1.0\ndone\n", "policy -- dpkg\n")
        );
        let (out, _) = run(candidates_query(
            &["dpkg", "surely-not-installed-xyz"],
            true,
        ));
        assert_eq!(out, "candidate surely-not-installed-xyz 1.0\ndone\n");
    }

    #[test]
    fn one_dpkg_query_answers_every_name_against_real_dpkg() {
        let names = [
            "surely-not-installed-xyz",
            "dpkg",
            "libc6:amd64",
            "coreutils",
        ];
        let qy = query(&names);
        let f = parse(&qy.key, &crate::facts::testutil::run_sh(&qy.script)).unwrap();
        assert!(f.installed("dpkg").is_some());
        assert!(f.installed("coreutils").is_some());
        if std::env::consts::ARCH == "x86_64" {
            assert!(f.installed("libc6:amd64").is_some());
        }
        assert_eq!(f.installed("surely-not-installed-xyz"), None);
    }

    #[test]
    fn packages_and_candidates_of_one_probe_share_one_dpkg_query() {
        // A dpkg-query wrapper first on PATH counts its calls, then answers as the real one.
        let names = ["dpkg", "coreutils"];
        let (pk, cand) = (
            PackagesQuery::new(&names).query(),
            CandidatesQuery::new(&names, true).query(),
        );
        let p = crate::facts::probe::build(&[pk.clone(), cand.clone()]);
        let (out, calls) = crate::facts::testutil::run_counting(&p.script, &["dpkg-query"]);
        let facts = p.parse(&out).unwrap();
        assert_eq!(calls, "dpkg-query\n");
        let f = parse(&pk.key, &facts.raw_answer(&pk.key).unwrap().out).unwrap();
        assert!(f.installed("dpkg").is_some() && f.installed("coreutils").is_some());
        // Both installed: apt-cache is not asked, and the answer says so.
        assert_eq!(facts.raw_answer(&cand.key).unwrap().out, "done\n");
    }
}
