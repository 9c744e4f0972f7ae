//! Kernel parameters: live values read from `/proc/sys` (no procps needed).

use std::collections::BTreeMap;

use super::{parse_err, q, unexpected, FactError, FactQuery, Facts};

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

fn key(keys: &[&str]) -> String {
    format!("sysctl:{}", keys.join(","))
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

pub fn query(keys: &[&str]) -> FactQuery {
    let mut script = String::new();
    for k in keys {
        let p = q(&proc_path(k));
        let kq = q(k);
        script.push_str(&format!(
            "if [ -e {p} ]; then if v=$(tr '\\t\\n' '  ' 2>/dev/null < {p}); then printf 'val %s %s\\n' {kq} \"$v\"; \
             else printf 'unreadable %s\\n' {kq}; fi; else printf 'missing %s\\n' {kq}; fi\n"
        ));
    }
    script.push_str("echo done");
    FactQuery {
        key: key(keys),
        script,
    }
}

pub fn get(facts: &Facts, keys: &[&str]) -> Result<SysctlFact, FactError> {
    let k = key(keys);
    parse(&k, &facts.get(&k)?.out)
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
        let qy = query(&["net.ipv4.ip_forward", "net/ipv4/conf/eth0.10/rp_filter"]);
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&qy.script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn reads_this_hosts_proc_sys() {
        // Linux test machines have these; the unknown key must come back `missing`.
        let keys = [
            "kernel.ostype",
            "net.ipv4.ip_local_port_range",
            "no.such.key_xyz",
        ];
        let qy = query(&keys);
        let f = parse(&qy.key, &sh(&qy.script)).unwrap();
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
