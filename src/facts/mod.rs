//! Facts: what a host looks like, read without side effects.
//!
//! A fact query is a key plus a POSIX shell snippet. Planning a host collects the queries of every
//! selected resource, dedupes them by key, and runs them all as ONE script (see `probe`). Each
//! family (file, packages, service, …) has a module with `query(..)` to ask and `get(..)` to parse
//! its answer, so resources never parse shell output themselves.

pub mod command;
pub mod file;
pub mod helm;
pub mod k8s;
pub mod os;
pub mod packages;
pub mod probe;
pub mod service;
pub mod sysctl;
pub mod ufw;
pub mod users;

use std::collections::BTreeMap;

/// One thing to observe on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactQuery {
    /// Unique per observation, e.g. `file:/etc/hosts`. Two resources asking the same key share
    /// one answer.
    pub key: String,
    /// A POSIX sh snippet printing the answer on stdout. It runs in a subshell as root (or the
    /// become user), must not change anything, and must not print the probe's delimiter.
    pub script: String,
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum FactError {
    #[error("fact `{0}` was not gathered (a resource read a fact it did not ask for)")]
    Missing(String),
    #[error("cannot parse fact `{key}`: {why}")]
    Parse { key: String, why: String },
}

impl Facts {
    pub fn get(&self, key: &str) -> Result<&RawFact, FactError> {
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
    pub fn run_sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
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
