//! One script for many facts.
//!
//! Each query runs in its own subshell between delimiter lines that carry a random nonce, so no
//! file content or command output can forge a section boundary. File bodies travel base64.

use std::collections::BTreeMap;

use super::{FactQuery, Facts, RawFact};

pub struct Probe {
    pub script: String,
    nonce: String,
    keys: Vec<String>,
}

/// Build the probe for a set of queries (deduplicated by key, first one wins).
pub fn build(queries: &[FactQuery]) -> Probe {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let mut seen = std::collections::BTreeSet::new();
    let mut script = String::from("LC_ALL=C; export LC_ALL\n");
    let mut keys = Vec::new();
    for q in queries {
        if !seen.insert(q.key.clone()) {
            continue;
        }
        keys.push(q.key.clone());
        script.push_str(&format!(
            "printf '\\n@@{nonce}@@ begin %s\\n' {key}\n( {body}\n) </dev/null\nprintf '\\n@@{nonce}@@ end %s\\n' \"$?\"\n",
            key = super::q(&q.key),
            body = q.script
        ));
    }
    Probe {
        script,
        nonce,
        keys,
    }
}

impl Probe {
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Split the probe's stdout into answers. Every key asked must be answered.
    pub fn parse(&self, stdout: &str) -> Result<Facts, String> {
        let begin = format!("\n@@{}@@ begin ", self.nonce);
        let end = format!("\n@@{}@@ end ", self.nonce);
        let mut raw = BTreeMap::new();
        let mut rest = stdout;
        while let Some(b) = rest.find(&begin) {
            let after = &rest[b + begin.len()..];
            let nl = after
                .find('\n')
                .ok_or("probe output cut inside a section header")?;
            let key = after[..nl].to_string();
            let body_start = &after[nl + 1..];
            let e = body_start
                .find(&end)
                .ok_or_else(|| format!("probe output cut inside fact `{key}`"))?;
            let body = &body_start[..e];
            let tail = &body_start[e + end.len()..];
            let enl = tail.find('\n').unwrap_or(tail.len());
            let rc: i32 = tail[..enl]
                .trim()
                .parse()
                .map_err(|_| format!("bad status for fact `{key}`"))?;
            raw.insert(
                key,
                RawFact {
                    out: body.to_string(),
                    rc,
                },
            );
            rest = &tail[enl..];
        }
        for k in &self.keys {
            if !raw.contains_key(k) {
                return Err(format!(
                    "the probe did not answer fact `{k}` (output cut short?)"
                ));
            }
        }
        Ok(Facts { raw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::testutil::run_sh;

    #[test]
    fn sections_round_trip_through_a_real_shell() {
        let qs = vec![
            FactQuery {
                key: "a".into(),
                script: "echo one; echo two".into(),
            },
            FactQuery {
                key: "b".into(),
                script: "printf 'no newline'; exit 3".into(),
            },
            FactQuery {
                key: "a".into(),
                script: "echo duplicate".into(),
            },
            FactQuery {
                key: "c d".into(),
                script: "printf '\\n@@fake@@ end 0\\n'".into(),
            },
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
        let p = build(&[FactQuery {
            key: "a".into(),
            script: "echo x".into(),
        }]);
        let out = run_sh(&p.script);
        let cut = &out[..out.len() - 8];
        assert!(p.parse(cut).is_err());
    }
}
