//! The shipped site (site.yml + roles/ + values/) compiled for the example inventory
//! (inventories/lab, opened with its EXAMPLE-ONLY key), and checked for the defects that break a
//! first real install: images, namespaces, the firewall k3s needs, NodePorts bound to the VPN,
//! monitoring for k3s, password rotation, and where the kubeconfig lands. Offline: no host.

use std::path::Path;

use serde_json::Value;

use super::select::{self, Compiled, Item, Selector};
use super::Site;
use crate::inventory::{Inventory, VarLayer};
use crate::template::Engine;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compile `site.yml` for the example inventory, with `extra` vars on top.
pub fn compile_lab(extra: &[(&str, Value)]) -> Compiled {
    let key = root().join("inventories/lab/EXAMPLE-ONLY.agekey.txt");
    let keys = crate::vault::Keyring::discover(Some(&key)).expect("the example key loads");
    let decrypt = |p: &Path| {
        keys.decrypt_file(p)
            .map_err(|e| crate::inventory::VaultFail::Error(e.to_string()))
    };
    let inv = Inventory::load(&root().join("inventories/lab/hosts.yml"), &decrypt)
        .unwrap_or_else(|d| panic!("example inventory: {d}"));
    let site = Site::load(&root().join("site.yml")).unwrap_or_else(|d| panic!("site.yml: {d}"));
    let mut layer = VarLayer::default();
    for (k, v) in extra {
        layer.values.insert(k.to_string(), v.clone());
    }
    let sel = Selector {
        tags: vec![],
        skip_tags: vec![],
        limit: None,
    };
    let engine = Engine::new(&site.root);
    select::compile(&site, &inv, &sel, &layer, &engine, false)
        .unwrap_or_else(|d| panic!("compile: {d}"))
}

pub fn items<'a>(c: &'a Compiled, host: &str) -> Vec<&'a Item> {
    c.hosts
        .iter()
        .find(|h| h.host == host)
        .unwrap_or_else(|| panic!("no host {host}"))
        .items()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump() {
        let c = compile_lab(&[]);
        for it in items(&c, "lab-server-1") {
            if it.kind == "ufw" {
                eprintln!("{}", serde_json::to_string_pretty(&it.rendered).unwrap());
            }
        }
        panic!();
    }
}
