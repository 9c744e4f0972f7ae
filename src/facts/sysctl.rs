//! Kernel parameters: live values read from `/proc/sys` (no procps needed).

use std::collections::BTreeMap;

use super::{parse_err, q, unexpected, Fact, FactError, Merge};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Live {
    /// Whitespace-normalized: the kernel separates fields with tabs (`32768\t60999`).
    Value(String),
    /// No such key: unknown, or its module (`br_netfilter`, …) is not loaded yet.
    Missing,
    /// The key exists but cannot be read (write-only keys such as `vm.drop_caches`).
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SysctlFact {
    pub values: BTreeMap<String, Live>,
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. A key written with slashes is already
/// a path (that is how sysctl names interfaces with dots in them: `net/ipv4/conf/eth0.10/rp_filter`).
pub fn proc_path(k: &str) -> String {
    if k.contains('/') {
        format!("/proc/sys/{k}")
    } else {
        format!("/proc/sys/{}", k.replace('.', "/"))
    }
}

/// Live values of some keys. All sysctl queries of a probe are answered together, with shell
/// builtins only (`read` from /proc/sys): no process at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlQuery {
    pub keys: Vec<String>,
}

impl SysctlQuery {
    pub fn new(keys: &[&str]) -> Self {
        SysctlQuery {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }
    fn arg(&self) -> String {
        self.keys.join("\n")
    }
}

impl Fact for SysctlQuery {
    type Output = SysctlFact;
    fn key(&self) -> String {
        format!("sysctl:{}", self.keys.join(","))
    }
    fn script(&self) -> String {
        merged_script(&[&self.arg()])
    }
    fn parse(&self, out: &str) -> Result<SysctlFact, FactError> {
        parse(&self.key(), out)
    }
    fn merge(&self) -> Option<Merge> {
        Some(Merge {
            family: "sysctl",
            arg: self.arg(),
            script: merged_script,
            split,
        })
    }
}

/// Every key of every arg (newline-separated keys): missing ones by the `[ -e ]` builtin, all
/// the others read by ONE `grep`. (The shell's `read` cannot be used: it reads a byte at a time,
/// and /proc/sys answers a read at a non-zero offset with end-of-file.) A key that exists but
/// printed nothing could not be read (write-only keys such as `vm.drop_caches`).
pub fn merged_script(args: &[&str]) -> String {
    let mut script = String::new();
    let mut paths = Vec::new();
    for k in unique_keys(args) {
        let p = q(&proc_path(k));
        script.push_str(&format!("[ -e {p} ] || printf 'missing %s\\n' {};\n", q(k)));
        paths.push(p);
    }
    script.push_str(&format!(
        "echo @read; grep -Hs '' -- {} </dev/null; echo done",
        paths.join(" ")
    ));
    script
}

fn unique_keys<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = args.iter().flat_map(|a| a.lines()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Each arg gets a `val`, `missing` or `unreadable` line per key, then `done`.
pub fn split(args: &[&str], out: &str) -> Result<Vec<String>, super::SplitError> {
    let (head, read) = out.split_once("@read\n").ok_or("answer cut short")?;
    let read = read
        .strip_suffix("done\n")
        .or_else(|| read.strip_suffix("done"))
        .ok_or("answer cut short")?;
    let missing: std::collections::BTreeSet<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("missing "))
        .collect();
    let mut lines = std::collections::BTreeMap::new();
    for k in unique_keys(args) {
        let line = if missing.contains(k) {
            format!("missing {k}")
        } else {
            let prefix = format!("{}:", proc_path(k));
            let v: Vec<&str> = read
                .lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .collect();
            if v.is_empty() {
                format!("unreadable {k}")
            } else {
                format!("val {k} {}", v.join(" "))
            }
        };
        lines.insert(k, line);
    }
    Ok(args
        .iter()
        .map(|a| {
            let mut s: String = a.lines().map(|k| format!("{}\n", lines[k])).collect();
            s.push_str("done\n");
            s
        })
        .collect())
}

/// Collapse runs of whitespace to one space and trim, so `32768 60999` equals `32768\t60999`.
pub fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn parse(k: &str, out: &str) -> Result<SysctlFact, FactError> {
    let mut f = SysctlFact::default();
    let mut done = false;
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "val" => {
                let (name, v) = rest.split_once(' ').unwrap_or((rest, ""));
                f.values.insert(name.to_string(), Live::Value(normalize(v)));
            }
            "missing" => {
                f.values.insert(rest.to_string(), Live::Missing);
            }
            "unreadable" => {
                f.values.insert(rest.to_string(), Live::Unreadable);
            }
            "done" => done = true,
            "" => {}
            _ => return Err(unexpected(k, line)),
        }
    }
    if !done {
        return Err(parse_err(k, "answer cut short"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::testutil::run_sh as sh;

    #[test]
    fn snippet_is_valid_sh() {
        let qy = SysctlQuery::new(&["net.ipv4.ip_forward", "net/ipv4/conf/eth0.10/rp_filter"]);
        crate::facts::testutil::assert_valid_sh(&qy.script());
    }

    #[test]
    fn reads_this_hosts_proc_sys() {
        // Linux test machines have these; the unknown key must come back `missing`.
        let keys = [
            "kernel.ostype",
            "net.ipv4.ip_local_port_range",
            "no.such.key_xyz",
        ];
        let qy = SysctlQuery::new(&keys);
        let other = SysctlQuery::new(&["kernel.ostype"]);
        let args = [qy.arg(), other.arg()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let parts = split(&args, &sh(&merged_script(&args))).unwrap();
        let f = qy.parse(&parts[0]).unwrap();
        assert_eq!(other.parse(&parts[1]).unwrap().values.len(), 1);
        assert_eq!(f.values["kernel.ostype"], Live::Value("Linux".into()));
        match &f.values["net.ipv4.ip_local_port_range"] {
            Live::Value(v) => assert!(!v.contains('\t') && v.split(' ').count() == 2, "{v:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.values["no.such.key_xyz"], Live::Missing);
    }

    #[test]
    fn parses_fixture() {
        // Debian 12: /proc/sys/net/ipv4/ip_local_port_range is "32768\t60999\n"; tr made it spaces.
        let f = parse("k", "val net.ipv4.ip_local_port_range 32768 60999 \nmissing net.bridge.bridge-nf-call-iptables\nunreadable vm.drop_caches\ndone\n").unwrap();
        assert_eq!(
            f.values["net.ipv4.ip_local_port_range"],
            Live::Value("32768 60999".into())
        );
        assert_eq!(
            f.values["net.bridge.bridge-nf-call-iptables"],
            Live::Missing
        );
        assert_eq!(f.values["vm.drop_caches"], Live::Unreadable);
        assert!(parse("k", "val a 1\n").is_err());
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.10/rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.10/rp_filter"
        );
    }
}
