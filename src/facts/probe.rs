//! One script for many facts.
//!
//! Each query runs in its own subshell between delimiter lines that carry a random nonce, so no
//! file content or command output can forge a section boundary. File bodies travel base64.
//!
//! Queries of a merging family (`FactQuery::merge`) share ONE section, answered by the family's
//! merged snippet in the probe's own shell (no subshell, so no fork); its answer is split back
//! into one answer per query key here, on the controller.

use std::collections::BTreeMap;

use super::{FactQuery, Facts, Merge, RawFact, SplitError};

pub struct Probe {
    pub script: String,
    nonce: String,
    keys: Vec<String>,
    groups: Vec<Group>,
}

/// One merged section: its family and the (key, arg) of every query it answers.
struct Group {
    merge: Merge,
    members: Vec<(String, String)>,
}

impl Group {
    fn section(&self) -> String {
        format!("+{}", self.merge.family)
    }
    fn args(&self) -> Vec<&str> {
        self.members.iter().map(|(_, a)| a.as_str()).collect()
    }
}

/// Shell functions every probe defines, for snippets of different families that ask the host
/// the same question: each runs its program once per distinct argument and keeps the answer in
/// the probe's shell, so `user:NAME` and `authorized_keys` share one `getent` and one `id`, and
/// `packages:…` and `apt-candidates:…` one `dpkg-query` (one process each instead of two).
/// They only read: a probe runs before any change, so an answer cannot go stale within it.
/// The kept answer lives in the probe's own shell: only inline or merged snippets share it (a
/// subshell's call still works, it just runs the program again).
///
/// - `__lc_pw NAME`: `getent passwd NAME` into `$e`, with getent's status;
/// - `__lc_id NAME`: `id NAME` into `$__id`;
/// - `__lc_dpkg NAME…`: `dpkg-query -W` (the `packages` format) into `$__lc_dv`;
/// - `__lc_now`: the host's clock (epoch seconds) into `$__now`, read from /proc by the shell
///   (boot time + uptime; `btime` follows clock steps) instead of starting `date`.
pub const PRELUDE: &str = r#"__lc_pw() { if [ -z "${__lc_pws-}" ] || [ "$__lc_pwk" != "$1" ]; then __lc_pwv=$(getent passwd "$1"); __lc_pwr=$?; __lc_pwk=$1; __lc_pws=1; fi; e=$__lc_pwv; return $__lc_pwr; }
__lc_id() { if [ -z "${__lc_ids-}" ] || [ "$__lc_idk" != "$1" ]; then __lc_idv=$(id "$1"); __lc_idk=$1; __lc_ids=1; fi; __id=$__lc_idv; }
__lc_dpkg() { if [ -z "${__lc_ds-}" ] || [ "$__lc_dk" != "$*" ]; then __lc_dv=$(dpkg-query -W -f='dpkg ${Package} ${Architecture} ${db:Status-Abbrev} ${Version}
' -- "$@" 2>/dev/null); __lc_dk=$*; __lc_ds=1; fi; }
__lc_now() { __now=; __up=; [ -r /proc/uptime ] && read -r __up __x < /proc/uptime; if [ -n "$__up" ] && [ -r /proc/stat ]; then while read -r __k __v; do if [ "$__k" = btime ]; then __now=$((__v + ${__up%%.*})); break; fi; done < /proc/stat; fi; [ -n "$__now" ] || __now=$(date +%s); }"#;

/// Build the probe for a set of queries (deduplicated by key, first one wins).
pub fn build(queries: &[FactQuery]) -> Probe {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let mut seen = std::collections::BTreeSet::new();
    let mut script = format!("LC_ALL=C; export LC_ALL\n{PRELUDE}\n");
    let mut keys = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let section = |script: &mut String, key: &str, open: &str, body: &str, close: &str| {
        script.push_str(&format!(
            "printf '\\n@@{nonce}@@ begin %s\\n' {key}\n{open} {body}\n{close} </dev/null\nprintf '\\n@@{nonce}@@ end %s\\n' \"$?\"\n",
            key = super::q(key),
        ));
    };
    for q in queries {
        if !seen.insert(q.key.clone()) {
            continue;
        }
        keys.push(q.key.clone());
        match &q.merge {
            Some(m) => match groups.iter_mut().find(|g| g.merge.family == m.family) {
                Some(g) => g.members.push((q.key.clone(), m.arg.clone())),
                None => groups.push(Group {
                    merge: m.clone(),
                    members: vec![(q.key.clone(), m.arg.clone())],
                }),
            },
            None if q.inline => section(&mut script, &q.key, "{", &q.script, "}"),
            None => section(&mut script, &q.key, "(", &q.script, ")"),
        }
    }
    for g in &groups {
        let body = (g.merge.script)(&g.args());
        section(&mut script, &g.section(), "{", &body, "}");
    }
    Probe {
        script,
        nonce,
        keys,
        groups,
    }
}

impl Probe {
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Split the probe's stdout into answers. Every key asked must be answered.
    pub fn parse(&self, stdout: &str) -> Result<Facts, ProbeError> {
        let begin = format!("\n@@{}@@ begin ", self.nonce);
        let end = format!("\n@@{}@@ end ", self.nonce);
        let mut raw = BTreeMap::new();
        let mut rest = stdout;
        while let Some(b) = rest.find(&begin) {
            let after = &rest[b + begin.len()..];
            let nl = after.find('\n').ok_or(ProbeError::CutHeader)?;
            let key = after[..nl].to_string();
            let body_start = &after[nl + 1..];
            let Some(e) = body_start.find(&end) else {
                return Err(ProbeError::CutFact(key));
            };
            let body = &body_start[..e];
            let tail = &body_start[e + end.len()..];
            let enl = tail.find('\n').unwrap_or(tail.len());
            let Ok(rc) = tail[..enl].trim().parse::<i32>() else {
                return Err(ProbeError::BadStatus(key));
            };
            raw.insert(
                key,
                RawFact {
                    out: body.to_string(),
                    rc,
                },
            );
            rest = &tail[enl..];
        }
        for g in &self.groups {
            let Some(section) = raw.remove(&g.section()) else {
                continue;
            };
            let parts =
                (g.merge.split)(&g.args(), &section.out).map_err(|source| ProbeError::Split {
                    family: g.merge.family,
                    source,
                })?;
            if parts.len() != g.members.len() {
                return Err(ProbeError::Count {
                    family: g.merge.family,
                    answered: parts.len(),
                    asked: g.members.len(),
                });
            }
            for ((key, _), out) in g.members.iter().zip(parts) {
                raw.insert(
                    key.clone(),
                    RawFact {
                        out,
                        rc: section.rc,
                    },
                );
            }
        }
        if let Some(k) = self.keys.iter().find(|k| !raw.contains_key(*k)) {
            return Err(ProbeError::Unanswered(k.clone()));
        }
        Ok(Facts { raw })
    }
}

/// Why the probe's output could not be read back into facts: it was cut short, or a family's
/// merged answer did not split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe output cut inside a section header")]
    CutHeader,
    #[error("probe output cut inside fact `{0}`")]
    CutFact(String),
    #[error("bad status for fact `{0}`")]
    BadStatus(String),
    #[error("fact family `{family}`: {source}")]
    Split {
        family: &'static str,
        source: SplitError,
    },
    #[error("fact family `{family}` answered {answered} of {asked} queries")]
    Count {
        family: &'static str,
        answered: usize,
        asked: usize,
    },
    #[error("the probe did not answer fact `{0}` (output cut short?)")]
    Unanswered(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::testutil::run_sh;

    #[test]
    fn sections_round_trip_through_a_real_shell() {
        let qs = vec![
            FactQuery::single("a", "echo one; echo two"),
            FactQuery::single("b", "printf 'no newline'; exit 3"),
            FactQuery::single("a", "echo duplicate"),
            FactQuery::single("c d", "printf '\\n@@fake@@ end 0\\n'"),
        ];
        let p = build(&qs);
        let facts = p.parse(&run_sh(&p.script)).unwrap();
        assert_eq!(
            facts.raw["a"],
            RawFact {
                out: "one\ntwo\n".into(),
                rc: 0
            }
        );
        assert_eq!(
            facts.raw["b"],
            RawFact {
                out: "no newline".into(),
                rc: 3
            }
        );
        assert_eq!(facts.raw["c d"].out, "\n@@fake@@ end 0\n");
        assert_eq!(facts.raw.len(), 3);
    }

    #[test]
    fn cut_output_is_an_error() {
        let p = build(&[FactQuery::single("a", "echo x")]);
        let out = run_sh(&p.script);
        let cut = &out[..out.len() - 8];
        assert!(p.parse(cut).is_err());
    }

    fn echo_family(arg: &str) -> FactQuery {
        FactQuery {
            key: format!("echo:{arg}"),
            script: String::new(),
            inline: false,
            merge: Some(Merge {
                family: "echo",
                arg: arg.into(),
                script: |args| {
                    let words: Vec<String> = args.iter().map(|a| crate::sh::q(a)).collect();
                    format!("printf '%s\\n' {}", words.join(" "))
                },
                split: |args, out| {
                    let v: Vec<String> = out.lines().map(|l| format!("said {l}")).collect();
                    if v.len() != args.len() {
                        return Err("short".into());
                    }
                    Ok(v)
                },
            }),
        }
    }

    #[test]
    fn a_merging_family_answers_every_query_in_one_section() {
        let qs = vec![
            echo_family("x y"),
            FactQuery::single("s", "echo single"),
            echo_family("z"),
            echo_family("x y"),
        ];
        let p = build(&qs);
        // One merged snippet, run without a subshell; the single query keeps its subshell.
        assert_eq!(p.script.matches("printf '%s\\n'").count(), 1);
        assert!(p.script.contains("{ printf"));
        let facts = p.parse(&run_sh(&p.script)).unwrap();
        assert_eq!(facts.raw["echo:x y"].out, "said x y");
        assert_eq!(facts.raw["echo:z"].out, "said z");
        assert_eq!(facts.raw["s"].out, "single\n");
        assert_eq!(facts.raw.len(), 3);
        // A family that cannot split its answer fails the probe, naming the family.
        let e = p.parse("").unwrap_err();
        assert!(matches!(e, ProbeError::Unanswered(_)), "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    #[test]
    fn probe_errors_name_the_family_or_fact() {
        let e = ProbeError::Split {
            family: "file",
            source: "answer cut short".into(),
        };
        assert_eq!(e.to_string(), "fact family `file`: answer cut short");
        let e = ProbeError::Count {
            family: "file",
            answered: 1,
            asked: 2,
        };
        assert_eq!(e.to_string(), "fact family `file` answered 1 of 2 queries");
        let e = ProbeError::CutFact("os".into());
        assert_eq!(e.to_string(), "probe output cut inside fact `os`");
    }
}
