//! Guards of `command`: does the `creates` path exist, and what does the `unless` check exit with.
//!
//! An `unless` script RUNS DURING `plan` (inside the probe, as root), so it must only read: a
//! check like `test -f /etc/rancher/k3s/k3s.yaml` or `kubectl get ns lab`. It gets no stdin, its
//! output is discarded, and it is stopped after `UNLESS_TIMEOUT` seconds.

use super::{parse_err, q, Fact, FactError, FactQuery};

pub const UNLESS_TIMEOUT: u32 = 60;

fn creates_key(path: &str) -> String {
    format!("creates:{path}")
}

/// `present` or `absent` (a dangling symlink counts as present: something was created).
fn creates_query(path: &str) -> FactQuery {
    let p = q(path);
    FactQuery::single(
        creates_key(path),
        format!("if [ -e {p} ] || [ -L {p} ]; then echo present; else echo absent; fi"),
    )
}

fn parse_creates(k: &str, out: &str) -> Result<bool, FactError> {
    match out.trim() {
        "present" => Ok(true),
        "absent" => Ok(false),
        other => Err(parse_err(
            k,
            format!(
                "unexpected answer `{}`",
                other.chars().take(60).collect::<String>()
            ),
        )),
    }
}

/// Keys must be one line (they travel in the probe's section headers), and the script may be
/// long, so the key holds a digest of what runs.
fn unless_key(script: &str, chdir: Option<&str>) -> String {
    let id = crate::digest::sha256_hex(format!("{}\0{script}", chdir.unwrap_or("")).as_bytes());
    format!("unless:{}", &id[..16])
}

/// `status N`, or `nodir` when `chdir` does not exist (yet).
fn unless_query(script: &str, chdir: Option<&str>) -> FactQuery {
    let cd = match chdir {
        Some(d) => format!("cd -- {} 2>/dev/null || {{ echo nodir; exit 0; }}; ", q(d)),
        None => String::new(),
    };
    FactQuery::single(
        unless_key(script, chdir),
        format!(
            "{cd}timeout {UNLESS_TIMEOUT} sh -c {} >/dev/null 2>&1 </dev/null; echo \"status $?\"",
            q(script)
        ),
    )
}

/// What the `unless` check said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unless {
    /// Exit status of the check (124 = timed out).
    Status(i32),
    /// `chdir` does not exist, so the check could not run.
    NoDir,
}

fn parse_unless(k: &str, out: &str) -> Result<Unless, FactError> {
    let out = out.trim();
    if out == "nodir" {
        return Ok(Unless::NoDir);
    }
    out.strip_prefix("status ")
        .and_then(|s| s.trim().parse().ok())
        .map(Unless::Status)
        .ok_or_else(|| {
            parse_err(
                k,
                format!(
                    "unexpected answer `{}`",
                    out.chars().take(60).collect::<String>()
                ),
            )
        })
}

/// Whether a `creates` path exists (a dangling symlink counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatesQuery {
    pub path: String,
}

/// What an `unless` check exits with, run in `chdir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlessQuery {
    pub script: String,
    pub chdir: Option<String>,
}

impl CreatesQuery {
    pub fn new(path: &str) -> Self {
        CreatesQuery { path: path.into() }
    }
}

impl UnlessQuery {
    pub fn new(script: &str, chdir: Option<&str>) -> Self {
        UnlessQuery {
            script: script.into(),
            chdir: chdir.map(String::from),
        }
    }
}

impl Fact for CreatesQuery {
    type Output = bool;
    fn key(&self) -> String {
        creates_key(&self.path)
    }
    fn script(&self) -> String {
        creates_query(&self.path).script
    }
    fn parse(&self, out: &str) -> Result<bool, FactError> {
        parse_creates(&self.key(), out)
    }
}

impl Fact for UnlessQuery {
    type Output = Unless;
    fn key(&self) -> String {
        unless_key(&self.script, self.chdir.as_deref())
    }
    fn script(&self) -> String {
        unless_query(&self.script, self.chdir.as_deref()).script
    }
    fn parse(&self, out: &str) -> Result<Unless, FactError> {
        parse_unless(&self.key(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;

    fn answer(qy: &FactQuery) -> Facts {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&qy.script)
            .output()
            .unwrap();
        let mut f = Facts::default();
        f.insert(
            &qy.key,
            &String::from_utf8(out.stdout).unwrap(),
            out.status.code().unwrap_or(-1),
        );
        f
    }

    #[test]
    fn creates_through_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let here = d.path().join("it's here");
        std::fs::write(&here, "").unwrap();
        let gone = d.path().join("gone");
        for (p, want) in [(&here, true), (&gone, false)] {
            let p = p.to_str().unwrap();
            assert_eq!(
                answer(&creates_query(p))
                    .get(&CreatesQuery::new(p))
                    .unwrap(),
                want,
                "{p}"
            );
        }
    }

    #[test]
    fn unless_records_the_exit_status_and_output_cannot_confuse_it() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        std::fs::write(d.path().join("marker"), "").unwrap();
        let cases: [(&str, Option<&str>, Unless); 4] = [
            ("test -f marker", Some(dir), Unless::Status(0)),
            ("echo status 0; exit 3", None, Unless::Status(3)),
            ("grep -q 'x' /nonexistent", None, Unless::Status(2)),
            ("true", Some("/nonexistent-labctl"), Unless::NoDir),
        ];
        for (script, chdir, want) in cases {
            let qy = unless_query(script, chdir);
            assert!(!qy.key.contains('\n'));
            assert_eq!(
                answer(&qy).get(&UnlessQuery::new(script, chdir)).unwrap(),
                want,
                "{script}"
            );
        }
    }

    #[test]
    fn multi_line_scripts_get_one_line_keys() {
        let a = unless_query("a\nb", None);
        let b = unless_query("a\nb", Some("/tmp"));
        assert!(a.key.starts_with("unless:") && !a.key.contains('\n'));
        assert_ne!(a.key, b.key);
    }
}
