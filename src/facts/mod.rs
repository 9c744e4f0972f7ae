//! Facts: what a host looks like, read without side effects.
//!
//! A fact query is a typed value implementing [`Fact`]: its key, the POSIX shell snippet that
//! answers it, and the parser of that answer. A resource builds its query value once and uses the
//! same value to ask (`Fact::query`, collected into the probe) and to read (`Facts::get`), so the
//! two cannot drift apart. Planning a host collects the queries of every selected resource,
//! dedupes them by key, and runs them all as ONE script (see `probe`).
//!
//! Naming: family module `NAME`, query struct `XQuery`, its output `XFact` (`file::FileQuery` →
//! `file::FileFact`). The wire format of a family (script + parser + fixture builders for tests)
//! lives in its one file.
//!
//! A family may also [`Merge`]: the probe then answers all of that family's queries with ONE
//! snippet (one `stat` for every file, one `systemctl show` for every unit), and splits its answer
//! back into one answer per query key, so fingerprints and parsers still see per-query answers.

pub mod command;
pub mod file;
pub mod helm;
pub mod host;
pub mod journal;
pub mod k8s;
pub mod os;
pub mod packages;
pub mod probe;
pub mod reboot;
pub mod service;
pub mod sysctl;
pub mod ufw;
pub mod users;

use std::collections::BTreeMap;

/// A typed fact query. See the module docs.
pub trait Fact {
    type Output;
    /// Unique per observation, e.g. `file:/etc/hosts`.
    fn key(&self) -> String;
    /// A POSIX sh snippet printing the answer (see [`FactQuery::script`]).
    fn script(&self) -> String;
    /// Read this query's answer.
    fn parse(&self, out: &str) -> Result<Self::Output, FactError>;
    /// Set by families whose queries the probe answers together.
    fn merge(&self) -> Option<Merge> {
        None
    }
    /// True when `script` may run in the probe's own shell instead of a subshell (one fork
    /// saved): it never calls `exit`, never changes directory or options, and its variables
    /// cannot clash (`__`-prefixed, or set before each use).
    fn inline(&self) -> bool {
        false
    }
    /// The type-erased query the probe runs.
    fn query(&self) -> FactQuery {
        FactQuery {
            key: self.key(),
            script: self.script(),
            merge: self.merge(),
            inline: self.inline(),
        }
    }
}

/// How the probe answers many queries of one family with one snippet.
#[derive(Debug, Clone)]
pub struct Merge {
    /// Queries with the same family are merged.
    pub family: &'static str,
    /// This query's part of the merged snippet (a path, a unit name, …).
    pub arg: String,
    /// The snippet answering every arg at once. It runs in the probe's own shell (no subshell),
    /// so it must not `exit`, and its variables start with `__FAMILY`.
    pub script: fn(&[&str]) -> String,
    /// Split the snippet's output into one answer per arg, in order; each answer is what
    /// `Fact::parse` reads.
    pub split: fn(&[&str], &str) -> Result<Vec<String>, SplitError>,
}

/// Why a family's merged answer could not be split back into one answer per query (the answer
/// was cut short, or the host changed while the probe read it). The probe names the family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SplitError(pub String);

impl From<&str> for SplitError {
    fn from(s: &str) -> Self {
        SplitError(s.to_string())
    }
}

impl From<String> for SplitError {
    fn from(s: String) -> Self {
        SplitError(s)
    }
}

impl Merge {
    /// A family with one query per host (`os`, `ufw`): nothing to merge, but its snippet runs in
    /// the probe's own shell like a merged one (no subshell, no fork). Its snippet must not
    /// `exit`, and its variables start with `__`.
    pub fn inline(family: &'static str, script: fn(&[&str]) -> String) -> Merge {
        Merge {
            family,
            arg: String::new(),
            script,
            split: |args, out| Ok(vec![out.to_string(); args.len()]),
        }
    }
}

impl PartialEq for Merge {
    fn eq(&self, o: &Self) -> bool {
        self.family == o.family && self.arg == o.arg
    }
}
impl Eq for Merge {}

/// One thing to observe on a host, type-erased (built by [`Fact::query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactQuery {
    /// Unique per observation, e.g. `file:/etc/hosts`. Two resources asking the same key share
    /// one answer.
    pub key: String,
    /// A POSIX sh snippet printing the answer on stdout. It runs in a subshell as root (or the
    /// become user), must not change anything, and must not print the probe's delimiter.
    pub script: String,
    /// Set when the probe may answer this query together with its family's others.
    pub merge: Option<Merge>,
    /// Run in the probe's own shell, not a subshell (see `Fact::inline`).
    pub inline: bool,
}

impl FactQuery {
    /// A query answered on its own (no merging).
    pub fn single(key: impl Into<String>, script: impl Into<String>) -> Self {
        FactQuery {
            key: key.into(),
            script: script.into(),
            merge: None,
            inline: false,
        }
    }
}

/// A query's raw answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawFact {
    pub out: String,
    pub rc: i32,
}

/// All answers for a host, by key.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    pub raw: BTreeMap<String, RawFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactError {
    #[error("fact `{0}` was not gathered (a resource read a fact it did not ask for)")]
    Missing(String),
    #[error("cannot parse fact `{key}`: {why}")]
    Parse { key: String, why: String },
}

impl Facts {
    /// Read a typed query's answer: the same value the resource asked with.
    pub fn get<F: Fact + ?Sized>(&self, query: &F) -> Result<F::Output, FactError> {
        query.parse(&self.raw_answer(&query.key())?.out)
    }

    /// The raw answer to a key.
    pub fn raw_answer(&self, key: &str) -> Result<&RawFact, FactError> {
        self.raw
            .get(key)
            .ok_or_else(|| FactError::Missing(key.to_string()))
    }

    #[cfg(test)]
    pub fn insert(&mut self, key: &str, out: &str, rc: i32) {
        self.raw.insert(
            key.to_string(),
            RawFact {
                out: out.to_string(),
                rc,
            },
        );
    }

    /// The raw answers for some keys, for fingerprints.
    pub fn subset(&self, keys: &[String]) -> Vec<(&str, &RawFact)> {
        let mut v: Vec<(&str, &RawFact)> = keys
            .iter()
            .filter_map(|k| self.raw.get_key_value(k).map(|(k, r)| (k.as_str(), r)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v
    }
}

/// Fact scripts quote with the ground-floor `sh::q`.
pub(crate) use crate::sh::q;

/// A line a parser does not know: quoted (shortened) so the user sees what the host said.
pub(crate) fn unexpected(key: &str, line: &str) -> FactError {
    parse_err(
        key,
        format!(
            "unexpected line `{}`",
            line.chars().take(60).collect::<String>()
        ),
    )
}

pub(crate) fn parse_err(key: &str, why: impl Into<String>) -> FactError {
    FactError::Parse {
        key: key.to_string(),
        why: why.into(),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Fact snippets are tested through a real `sh`, as the host runs them.

    /// Run a script with `sh -c`; its stdout.
    /// Runs a snippet as the probe would: after the probe's prelude.
    pub fn run_sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{}\n{script}", super::probe::PRELUDE))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a whole probe script with a wrapper first on PATH for each of `progs`: the wrapper
    /// appends its name to a log, then runs the real program. Returns the script's stdout and
    /// the log (one name a line, in call order), so a test can count round trips.
    pub fn run_counting(script: &str, progs: &[&str]) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let calls = d.path().join("calls");
        for prog in progs {
            let real = run_sh(&format!("command -v {prog}"));
            let fake = d.path().join(prog);
            std::fs::write(
                &fake,
                format!(
                    "#!/bin/sh\necho {prog} >> {}\nexec {} \"$@\"\n",
                    calls.display(),
                    real.trim()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env(
                "PATH",
                format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        (String::from_utf8(out.stdout).unwrap(), log)
    }

    /// The script parses as POSIX sh (`sh -n`).
    pub fn assert_valid_sh(script: &str) {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "not valid sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
