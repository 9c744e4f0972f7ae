//! `labctl init --add-host NAME ADDRESS`: one more node in an existing lab — an inventory entry
//! under `k3s_agents`, the lowest free `wg_address`, and a fresh WireGuard key in the vault.
//!
//! Both files are edited as text (a line inserted), so the user's comments and layout stay;
//! each edit is parsed back and checked before anything is written.

use std::net::Ipv4Addr;
use std::path::Path;

use super::render::{self, Node};
use super::{io, net::Subnet, InitError, Layout};
use crate::inventory::{Inventory, VaultFail};
use crate::secret::Secret;
use crate::yaml;

const WG_KEYS: &str = "vault_wg_private_keys";

/// Adds `name` at `address` to the lab in `dir` (inventory `inv_name`). Returns its wg_address.
pub fn add_host(
    dir: &Path,
    inv_name: &str,
    name: &str,
    address: &str,
    keys: &crate::vault::Keyring,
) -> Result<Ipv4Addr, InitError> {
    super::check_node(name, address)?;
    let layout = Layout::new(inv_name);
    let hosts_path = dir.join(layout.hosts());
    let vault_path = dir.join(layout.vault());
    for p in [&hosts_path, &vault_path] {
        if !p.is_file() {
            return Err(InitError::BadInput(format!(
                "{} not found: --add-host works on a lab made by `labctl init` (pass its folder, and --name for an inventory other than `lab`)",
                p.display()
            )));
        }
    }
    // The vaults are not needed to find names and addresses.
    let no_key = |_: &Path| -> Result<Secret<Vec<u8>>, VaultFail> {
        Err(VaultFail::NoKey("not needed".into()))
    };
    let inv = Inventory::load(&hosts_path, &no_key).map_err(|d| {
        InitError::BadInput(
            d.0.iter()
                .map(|x| x.render("inventory"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    if inv.hosts.contains_key(name) {
        return Err(InitError::Refused(format!(
            "host `{name}` is already in {}; nothing changed",
            hosts_path.display()
        )));
    }
    let (subnet, used) = addresses(&inv)?;
    let wg = subnet.free(&used).ok_or_else(|| {
        InitError::BadInput(format!(
            "the WireGuard subnet {subnet} has no free address left"
        ))
    })?;
    let node = Node {
        name: name.to_string(),
        address: address.to_string(),
        wg_address: wg,
    };

    let hosts_text = std::fs::read_to_string(&hosts_path).map_err(io(&hosts_path))?;
    let new_hosts = insert_agent(&hosts_text, &node).ok_or_else(|| {
        InitError::BadInput(format!(
            "{}: no `k3s_agents:` group with a `hosts:` key found; add {name} there by hand",
            hosts_path.display()
        ))
    })?;
    check_hosts(&hosts_path, &new_hosts, &node)?;

    let plain = keys.decrypt_file(&vault_path)?;
    let text = String::from_utf8(plain.into_inner())
        .map_err(|_| InitError::BadInput(format!("{} is not UTF-8 text", vault_path.display())))?;
    let new_vault = Secret::new(insert_wg_key(&text, name).ok_or_else(|| {
        InitError::BadInput(format!(
            "{}: no top-level `{WG_KEYS}:` map found (or it already has `{name}`); add the key with `labctl vault edit`",
            vault_path.display()
        ))
    })?);
    check_vault(&vault_path, &new_vault, name)?;
    let rfile = crate::vault::find_recipients_file(dir).ok_or_else(|| {
        InitError::BadInput(format!(
            "no {} in {} or above: the vault's recipients are unknown",
            crate::vault::RECIPIENTS_FILE,
            dir.display()
        ))
    })?;
    let recipients = crate::vault::load_recipients(&rfile)?;
    let sealed = crate::vault::encrypt(new_vault.expose().as_bytes(), &recipients)?;

    // The vault first: a key without an inventory entry is harmless, the reverse fails to apply.
    crate::fsutil::write_atomic(&vault_path, &sealed, 0o644, false).map_err(io(&vault_path))?;
    crate::fsutil::write_atomic(&hosts_path, new_hosts.as_bytes(), 0o644, false)
        .map_err(io(&hosts_path))?;
    Ok(wg)
}

/// The tunnel subnet and every address already taken (nodes and admin peers).
fn addresses(inv: &Inventory) -> Result<(Subnet, Vec<Ipv4Addr>), InitError> {
    let mut subnet: Option<Subnet> = None;
    let mut used = Vec::new();
    for h in inv.hosts.keys() {
        let vars = inv.host_vars(h);
        let s = |k: &str| {
            vars.values
                .get(k)
                .and_then(crate::inventory::value_as_string)
        };
        if subnet.is_none() {
            if let Some(v) = s("wg_subnet") {
                subnet = Some(v.parse().map_err(InitError::InventorySubnet)?);
            }
        }
        if let Some(a) = s("wg_address").and_then(|a| a.parse().ok()) {
            used.push(a);
        }
        if let Some(peers) = vars.values.get("wg_peers").and_then(|p| p.as_array()) {
            used.extend(peers.iter().filter_map(|p| {
                p.get("address")?
                    .as_str()?
                    .split('/')
                    .next()?
                    .parse::<Ipv4Addr>()
                    .ok()
            }));
        }
    }
    let subnet = match subnet {
        Some(s) => s,
        None => "10.200.0.0/24".parse()?,
    };
    Ok((subnet, used))
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// Inserts the node at the end of `k3s_agents:`'s `hosts:` block.
fn insert_agent(text: &str, node: &Node) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let g = lines
        .iter()
        .position(|l| l.trim_start().starts_with("k3s_agents:"))?;
    let gi = indent(lines[g]);
    let h = (g + 1..lines.len()).find(|&i| {
        let t = lines[i].trim_start();
        !t.is_empty() && !t.starts_with('#') && indent(lines[i]) > gi && t.starts_with("hosts:")
    })?;
    let hi = indent(lines[h]);
    let entry = render::host_entry(node);
    // Re-indent the entry to sit one level (2 spaces) under `hosts:`.
    let shift = |s: &str| -> String {
        s.lines()
            .map(|l| {
                format!(
                    "{}{}\n",
                    " ".repeat(hi + 2 + indent(l) - 12),
                    l.trim_start()
                )
            })
            .collect()
    };
    let mut out: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    let rest = lines[h].trim_start()["hosts:".len()..].trim();
    if rest == "{}" || rest.is_empty() || rest.starts_with('#') {
        if rest == "{}" {
            out[h] = format!("{}hosts:\n", " ".repeat(hi));
        }
        // The block ends at the next line indented no deeper than `hosts:` (blank lines and
        // comments do not end it).
        let mut end = h + 1;
        let mut last = h;
        while end < lines.len() {
            let t = lines[end].trim_start();
            if !t.is_empty() && !t.starts_with('#') {
                if indent(lines[end]) <= hi {
                    break;
                }
                last = end;
            }
            end += 1;
        }
        out.insert(last + 1, shift(&entry));
        return Some(out.concat());
    }
    None
}

fn check_hosts(path: &Path, text: &str, node: &Node) -> Result<(), InitError> {
    let v = yaml::parse_node(path, text)
        .map_err(|d| {
            InitError::BadInput(format!(
                "editing {} went wrong: {}",
                path.display(),
                d.render("YAML")
            ))
        })?
        .to_json();
    let got = v
        .pointer(&format!(
            "/all/children/lab/children/k3s_agents/hosts/{}/wg_address",
            node.name
        ))
        .and_then(|a| a.as_str());
    if got != Some(node.wg_address.to_string().as_str()) {
        return Err(InitError::BadInput(format!(
            "{}: could not place {} under all.children.lab.children.k3s_agents.hosts; add it by hand",
            path.display(),
            node.name
        )));
    }
    Ok(())
}

/// Appends `  name: "KEY"` to the top-level `vault_wg_private_keys:` map.
fn insert_wg_key(text: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let k = lines
        .iter()
        .position(|l| l.starts_with(&format!("{WG_KEYS}:")))?;
    if lines[k][WG_KEYS.len() + 1..].trim() == "{}" {
        let mut out: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
        out[k] = format!("{WG_KEYS}:\n{}", render::wg_key_lines(&[name]));
        return Some(out.concat());
    }
    let mut last = k;
    for (i, l) in lines.iter().enumerate().skip(k + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent(l) == 0 {
            break;
        }
        if t.split(':').next().map(|n| n.trim().trim_matches('"')) == Some(name) {
            return None;
        }
        last = i;
    }
    let mut out: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    out.insert(last + 1, render::wg_key_lines(&[name]));
    Some(out.concat())
}

fn check_vault(path: &Path, text: &Secret<String>, name: &str) -> Result<(), InitError> {
    // Errors are reported by position only: the text is secret.
    let v = yaml::parse_node(path, text.expose())
        .map_err(|_| {
            InitError::BadInput(format!(
                "editing {} would break its YAML; add the key with `labctl vault edit`",
                path.display()
            ))
        })?
        .to_json();
    if v.get(WG_KEYS)
        .and_then(|m| m.get(name))
        .and_then(|k| k.as_str())
        .is_none()
    {
        return Err(InitError::BadInput(format!(
            "{}: could not add {name} to {WG_KEYS}; add it with `labctl vault edit`",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str, wg: &str) -> Node {
        Node {
            name: n.into(),
            address: "192.0.2.9".into(),
            wg_address: wg.parse().unwrap(),
        }
    }

    #[test]
    fn agent_goes_at_the_end_of_the_agents_block() {
        let nodes = vec![node("s", "10.200.0.1"), node("a", "10.200.0.2")];
        let text = render::hosts_yml(&nodes);
        let out = insert_agent(&text, &node("b", "10.200.0.3")).unwrap();
        check_hosts(Path::new("h.yml"), &out, &node("b", "10.200.0.3")).unwrap();
        assert!(out.ends_with("            b:\n              ansible_host: \"192.0.2.9\"\n              wg_address: 10.200.0.3\n"), "{out}");
        // A single-node lab has `hosts: {}` under k3s_agents.
        let one = render::hosts_yml(&nodes[..1]);
        let out = insert_agent(&one, &node("b", "10.200.0.2")).unwrap();
        check_hosts(Path::new("h.yml"), &out, &node("b", "10.200.0.2")).unwrap();
        assert!(!out.contains("{}"), "{out}");
    }

    #[test]
    fn wg_key_is_appended_once() {
        let text = "a: 1\nvault_wg_private_keys:\n  s: \"k1\"\n  # note\n  a: \"k2\"\nlast: 2\n";
        let out = insert_wg_key(text, "b").unwrap();
        check_vault(Path::new("v"), &Secret::new(out.clone()), "b").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[5].starts_with("  b: \""), "{out}");
        assert_eq!(lines[6], "last: 2");
        assert!(
            insert_wg_key(text, "a").is_none(),
            "an existing node keeps its key"
        );
        let empty = insert_wg_key("vault_wg_private_keys: {}\n", "b").unwrap();
        check_vault(Path::new("v"), &Secret::new(empty), "b").unwrap();
    }
}
