//! Variable precedence: the one place that stacks var layers. `compile`, `labctl inventory` and
//! `wireguard peer-config` all get their vars from here, so they cannot disagree.
//!
//! Lowest first: role defaults < inventory (`group_vars` by group depth, then `host_vars`) <
//! the play's `vars:` < the role entry's `vars:` < the target environment's vars
//! (`environments.NAME`, see [`super::environments`]; not for a shared role) < `-e` < magic vars
//! (`inventory_hostname`, `groups`, …), which nothing overrides.

use crate::inventory::{Inventory, VarLayer};

/// The layers above the inventory; `None` where the caller has no such layer.
#[derive(Default)]
pub struct Layers<'a> {
    pub role_defaults: Option<&'a VarLayer>,
    pub play: Option<&'a VarLayer>,
    pub role_entry: Option<&'a VarLayer>,
    pub extra: Option<&'a VarLayer>,
    pub magic: Option<&'a VarLayer>,
    /// A role shared by all environments (role.yml without `per_environment: true`): the target
    /// environment's vars are not applied to it.
    pub shared_role: bool,
}

/// The inventory's vars for one host, as `labctl inventory` (and ansible-inventory) show them.
pub fn inventory(inv: &Inventory, host: &str) -> VarLayer {
    inv.host_vars(host)
}

/// Every layer for one host, stacked in precedence order (templated values not yet resolved).
pub fn stack(inv: &Inventory, host: &str, l: &Layers) -> VarLayer {
    let mut out = l.role_defaults.cloned().unwrap_or_default();
    out.overlay(&inventory(inv, host));
    for layer in [l.play, l.role_entry].into_iter().flatten() {
        out.overlay(layer);
    }
    if !l.shared_role {
        if let Some(env) = super::environments::overlay(&out, l.extra) {
            out.overlay(&env);
        }
    }
    for layer in [l.extra, l.magic].into_iter().flatten() {
        out.overlay(layer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use serde_json::json;

    fn layer(k: &str, v: &str) -> VarLayer {
        let mut m = IndexMap::new();
        m.insert(k.to_string(), json!(v));
        VarLayer::from_map(m)
    }

    #[test]
    fn each_layer_overrides_the_ones_below() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.yml");
        std::fs::write(&p, "all:\n  hosts:\n    h:\n      x: inventory\n").unwrap();
        let inv = Inventory::load(&p, &|_: &std::path::Path| unreachable!()).unwrap();
        let (d, pl, r, e, m) = (
            layer("x", "defaults"),
            layer("x", "play"),
            layer("x", "role entry"),
            layer("x", "-e"),
            layer("x", "magic"),
        );
        let mut l = Layers {
            role_defaults: Some(&d),
            ..Default::default()
        };
        let x = |l: &Layers| stack(&inv, "h", l).values["x"].clone();
        assert_eq!(x(&l), "inventory");
        l.play = Some(&pl);
        assert_eq!(x(&l), "play");
        l.role_entry = Some(&r);
        assert_eq!(x(&l), "role entry");
        l.extra = Some(&e);
        assert_eq!(x(&l), "-e");
        l.magic = Some(&m);
        assert_eq!(x(&l), "magic");
    }
}
