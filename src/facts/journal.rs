//! The handler journal: handlers notified on a host but not yet fired (RELIABILITY rule 6).
//!
//! A handler is recorded on the host BEFORE the change that notifies it runs, in the same remote
//! execution, and cleared in the same execution as the handler itself, after it succeeded. So a
//! controller that dies in between (SIGKILL, OOM, a lost link) leaves the record behind, the next
//! probe reads it, the plan shows it and apply fires it exactly once.
//!
//! Layout: `/var/lib/labctl/handlers/<sha256(key)[..32]>`, one line `<since> <run-id> <key>`,
//! where key is `role/handler`. The directory is root-only (0700); runs that are not root on the
//! host (no become) keep no journal, as they could not write one there.

use super::{parse_err, Fact, FactError};
use crate::sh::q;

pub const KEY: &str = "handler-journal";
pub const DIR: &str = "/var/lib/labctl/handlers";

/// One pending handler as the host recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// `role/handler`.
    pub key: String,
    /// UTC time the notifying change was about to run, as the host's clock said.
    pub since: String,
    /// The run that recorded it.
    pub run: String,
}

/// The journal's entries (there is one journal per host: a unit query).
pub struct JournalQuery;

impl Fact for JournalQuery {
    type Output = Vec<Pending>;
    fn key(&self) -> String {
        KEY.into()
    }
    fn script(&self) -> String {
        // The glob skips dot files: a temp file left by a write cut short is not an entry.
        format!(
            "if [ -d {DIR} ]; then for __jf in {DIR}/*; do [ -f \"$__jf\" ] && head -n1 -- \"$__jf\"; done; fi; true"
        )
    }
    /// No `exit`, `__`-prefixed variable: runs in the probe's shell (one fork fewer per probe).
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<Vec<Pending>, FactError> {
        parse(out)
    }
}

pub fn parse(out: &str) -> Result<Vec<Pending>, FactError> {
    let mut v = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.splitn(3, ' ');
        match (it.next(), it.next(), it.next()) {
            (Some(since), Some(run), Some(key)) if !key.is_empty() => v.push(Pending {
                key: key.to_string(),
                since: since.to_string(),
                run: run.to_string(),
            }),
            _ => return Err(super::unexpected(KEY, line)),
        }
    }
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v.dedup_by(|a, b| a.key == b.key);
    if v.iter().any(|p| p.key.contains('\n')) {
        return Err(parse_err(KEY, "entry with a newline"));
    }
    Ok(v)
}

fn name(key: &str) -> String {
    crate::digest::sha256_hex(key.as_bytes())[..32].to_string()
}

/// Shell that records `keys` as pending (keeping the first time a key was recorded), durably,
/// before anything else in the same script. Fails the script if a root run cannot record.
pub fn record(keys: &[String], run: &str) -> String {
    let mut s = format!(
        "if [ \"$(id -u)\" = 0 ]; then (umask 077; mkdir -p {DIR}) || exit 1; __jt=$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    );
    for k in keys {
        let key = k.replace('\n', " ");
        let n = name(&key);
        s.push_str(&format!(
            "; if [ ! -e {DIR}/{n} ]; then (umask 077; printf '%s %s %s\\n' \"$__jt\" {run} {key} > {DIR}/.{n} && {{ sync {DIR}/.{n} 2>/dev/null; true; }} && mv -f {DIR}/.{n} {DIR}/{n}) || exit 1; fi",
            run = q(run),
            key = q(&key),
        ));
    }
    s.push_str(&format!("; sync {DIR} 2>/dev/null; fi; true"));
    s
}

/// Shell that clears `key` once its handler succeeded.
pub fn clear(key: &str) -> String {
    format!(
        "rm -f -- {DIR}/{}; sync {DIR} 2>/dev/null; true",
        name(&key.replace('\n', " "))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_refuses_garbage() {
        let p = parse("2026-11-30T15:00:00Z ab12 k3s/restart k3s\n\n").unwrap();
        assert_eq!(
            p,
            vec![Pending {
                key: "k3s/restart k3s".into(),
                since: "2026-11-30T15:00:00Z".into(),
                run: "ab12".into()
            }]
        );
        assert!(parse("garbage\n").is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn record_and_clear_round_trip_through_a_real_shell() {
        // The real scripts with the journal directory moved into a temp dir (no root needed).
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("handlers");
        let patch = |s: String| {
            s.replace(DIR, &dir.display().to_string())
                .replace("\"$(id -u)\" = 0", "1 = 1")
        };
        let keys = vec!["web/restart nginx".to_string(), "it's/odd $x".to_string()];
        let sh = |script: &str| {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        };
        sh(&patch(record(&keys, "run1")));
        let read = || parse(&sh(&patch(JournalQuery.script()))).unwrap();
        let first = read();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|p| p.run == "run1"));
        assert!(first.iter().any(|p| p.key == "it's/odd $x"));
        // Recording again keeps the first record (its time and run).
        sh(&patch(record(&keys[..1], "run2")));
        assert_eq!(read(), first);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        sh(&patch(clear(&keys[0])));
        let left = read();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, "it's/odd $x");
        // No temp file is left beside the entries.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}
