//! `facts` and `inventory`: what labctl sees.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{CliError, Exit};
use crate::facts;
use crate::site::select::Compiled;

use super::load;
use super::{Conn, Global, Target};

pub fn facts(g: &Global, host: &str, t: &Target, c: &Conn) -> Result<Exit, CliError> {
    let (mut l, i) = load::load_host(&g.sh, g, t, host)?;
    let opts = super::engine::opts(c, &l);
    let compiled = std::mem::replace(&mut l.compiled, Compiled::empty());
    let (compiled, f, ansible_facts) = super::engine::runtime()
        .block_on(crate::apply::probe_host(&l.sources, compiled, i, &opts))
        .map_err(|e| CliError::new(e.exit(), format!("{host}: {e}")))?;
    let work = &compiled.hosts[i];
    // File bodies and raw answers of secret resources are not printed: only parsed metadata.
    let secret_keys: Vec<String> = work
        .items()
        .filter(|i| i.secret)
        .flat_map(|i| i.inst.facts())
        .map(|q| q.key)
        .collect();
    let out = facts_json(host, &f, ansible_facts, &secret_keys)?;
    print_json(g, "facts", &Value::Object(out))?;
    Ok(Exit::Ok)
}

/// What `labctl facts` prints: the OS, the host's `ansible_facts` (as templates see them), and
/// every other answer of its probe (file metadata, never bodies; secret ones hidden).
fn facts_json(
    host: &str,
    f: &facts::Facts,
    ansible_facts: serde_json::Map<String, Value>,
    secret_keys: &[String],
) -> Result<serde_json::Map<String, Value>, CliError> {
    let mut out = serde_json::Map::new();
    out.insert("host".into(), json!(host));
    out.insert(
        "os".into(),
        serde_json::to_value(f.get(&facts::os::OsQuery).map_err(anyhow::Error::from)?)?,
    );
    out.insert("ansible_facts".into(), Value::Object(ansible_facts));
    let mut raw = serde_json::Map::new();
    for (k, v) in &f.raw {
        if k == facts::os::KEY || k == facts::host::KEY {
            continue;
        }
        let val = if let Some(path) = k
            .strip_prefix("file+content:")
            .or_else(|| k.strip_prefix("file:"))
        {
            let mut meta = serde_json::to_value(
                facts::file::parse(k, &v.out).map_err(|e| anyhow::anyhow!("{e}"))?,
            )?;
            if secret_keys.contains(k) {
                meta["sha256"] = json!("<secret>");
            }
            json!({"path": path, "stat": meta})
        } else if secret_keys.contains(k) {
            json!("<secret>")
        } else {
            json!({"out": v.out, "rc": v.rc})
        };
        raw.insert(k.clone(), val);
    }
    out.insert("facts".into(), Value::Object(raw));
    Ok(out)
}

/// `facts` and `inventory` print JSON either way; `--json` wraps it in the common envelope.
fn print_json(g: &Global, command: &str, v: &Value) -> Result<(), CliError> {
    if g.json {
        g.sh.out(&crate::ui::json_envelope(command, v)?);
    } else {
        g.sh.out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    }
    Ok(())
}

pub fn inventory(g: &Global, path: &Path, host: Option<&str>) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let keys = load::keyring(g)?;
    let inv = load::inventory(sh, path, &keys, &load::passwords(g))?;
    let show = |h: &str| -> Value {
        let v = crate::site::vars::inventory(&inv, h);
        Value::Object(
            v.values
                .iter()
                .map(|(k, val)| {
                    (
                        k.clone(),
                        if v.is_secret(k) {
                            json!("<secret>")
                        } else {
                            val.clone()
                        },
                    )
                })
                .collect(),
        )
    };
    if let Some(h) = host {
        if !inv.hosts.contains_key(h) {
            return Err(CliError::new(
                Exit::BadInput,
                format!("no host `{h}` in {}", path.display()),
            ));
        }
        print_json(g, "inventory", &show(h))?;
        return Ok(Exit::Ok);
    }
    // ansible-inventory --list shape: _meta.hostvars (hosts that have vars) plus one entry per
    // group that has hosts or children; `all` lists children only (its hosts are `ungrouped`).
    let mut out = serde_json::Map::new();
    let hostvars: serde_json::Map<String, Value> = inv
        .hosts
        .keys()
        .map(|h| (h.clone(), show(h)))
        .filter(|(_, v)| v.as_object().is_some_and(|m| !m.is_empty()))
        .collect();
    out.insert("_meta".into(), json!({ "hostvars": hostvars }));
    for (name, group) in &inv.groups {
        let mut e = serde_json::Map::new();
        if !group.hosts.is_empty() && name != "all" {
            e.insert("hosts".into(), json!(group.hosts));
        }
        if !group.children.is_empty() {
            e.insert("children".into(), json!(group.children));
        }
        if !e.is_empty() {
            out.insert(name.clone(), Value::Object(e));
        }
    }
    if !inv.unopened_vaults.is_empty() {
        sh.warn(&format!(
            "{} vault(s) not opened (no key or password): their vars are missing",
            inv.unopened_vaults.len()
        ));
    }
    print_json(g, "inventory", &Value::Object(out))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Facts, RawFact};

    #[test]
    fn facts_prints_ansible_facts_and_hides_secrets() {
        let mut f = Facts::default();
        let mut put = |k: &str, out: &str| {
            f.raw.insert(
                k.into(),
                RawFact {
                    out: out.into(),
                    rc: 0,
                },
            )
        };
        put(facts::os::KEY, "ID=debian\nVERSION_ID=12\n");
        put(facts::host::KEY, "arch=aarch64\n");
        put("command:hostname", "lab-1\n");
        put("command:secret", "token-123\n");
        let host =
            facts::host::parse("id=debian\nversion_id=12\narch=aarch64\nnodename=lab-1\n").unwrap();
        let v = facts_json("lab-1", &f, host, &["command:secret".to_string()]).unwrap();
        assert_eq!(v["host"], "lab-1");
        assert_eq!(v["ansible_facts"]["architecture"], "aarch64");
        assert_eq!(v["ansible_facts"]["distribution"], "Debian");
        assert_eq!(v["facts"]["command:hostname"]["out"], "lab-1\n");
        assert_eq!(v["facts"]["command:secret"], "<secret>");
        // The raw answers behind `os` and `ansible_facts` are not printed twice.
        assert!(v["facts"].get(facts::host::KEY).is_none());
        assert!(v["facts"].get(facts::os::KEY).is_none());
    }
}
