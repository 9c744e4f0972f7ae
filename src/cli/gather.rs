//! Facts for templates (`ansible_facts`, `ansible_architecture`, …), only when something in
//! the site or inventory names one: the site is compiled with placeholders first, each host's
//! first probe (the one its resources need anyway) gathers its facts, and the site is compiled
//! again with them (`apply::Recompile`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::apply::Recompile;
use crate::error::Diag;
use crate::facts::host;
use crate::inventory::{Inventory, VarLayer};
use crate::site::select::{self, Compiled, Selection};
use crate::site::Site;
use crate::template::Engine;

/// True when a role file, site.yml, an inventory var or an `-e` var names a gathered fact.
pub fn facts_used(site: &Site, inv: &Inventory, extra: &VarLayer) -> bool {
    let vars_text = |l: &VarLayer| serde_json::to_string(&l.values).unwrap_or_default();
    inv.groups
        .values()
        .any(|g| host::named_in(&vars_text(&g.vars)))
        || inv
            .hosts
            .values()
            .any(|h| host::named_in(&vars_text(&h.vars)))
        || host::named_in(&vars_text(extra))
        || files_under(&site.root.join("roles"))
            .into_iter()
            .chain([site.root.join("site.yml")])
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| host::named_in(&t)))
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Before a host is probed (and in `check`, which contacts no host) its facts render as
/// `<fact:NAME>`.
pub fn placeholders(inv: &mut Inventory) {
    let p = host::placeholders();
    for h in inv.hosts.keys() {
        inv.facts.insert(h.clone(), p.clone());
    }
}

/// What compiling again with facts needs (everything `load` compiled with). Hosts keep their
/// placeholders until their own probe has gathered their facts.
pub struct Refacts {
    pub site: Site,
    pub inv: Inventory,
    pub extra: VarLayer,
    pub engine: Engine,
    pub select: Selection,
}

impl Recompile for Refacts {
    fn with_facts(
        &mut self,
        facts: Vec<(String, Map<String, Value>)>,
    ) -> Result<Compiled, Vec<Diag>> {
        for (h, f) in facts {
            self.inv.facts.insert(h, f);
        }
        select::compile(
            &self.site,
            &self.inv,
            &self.select,
            &self.extra,
            &self.engine,
            false,
        )
        .map_err(|d| d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::diff::Planned;
    use crate::apply::placeholder::refuse_placeholder;
    use crate::apply::probe::{first_queries, host_queries, missing};
    use crate::facts::{Facts, RawFact};
    use crate::site::select::Item;

    use crate::fsutil::write_rel as write;

    /// A probe that answered every query in `keys` (the answers do not matter here).
    fn answered(keys: impl IntoIterator<Item = String>) -> Facts {
        let mut f = Facts::default();
        for k in keys {
            f.raw.insert(
                k,
                RawFact {
                    out: String::new(),
                    rc: 0,
                },
            );
        }
        f
    }

    #[test]
    fn first_probe_then_compile_again_asks_only_what_changed() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "hosts.yml",
            "all:\n  hosts:\n    h1: {ansible_host: 10.0.0.1}\n",
        );
        write(d.path(), "site.yml", "- hosts: all\n  roles: [r]\n");
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file: {path: /etc/arch, content: \"{{ ansible_architecture }}\\n\"}\n  - file: {path: \"/etc/by-host/{{ ansible_facts.hostname }}\", content: x}\n  - file: {path: /etc/plain, content: y}\n",
        );
        let site = Site::load(&d.path().join("site.yml")).unwrap();
        let mut inv =
            Inventory::load(&d.path().join("hosts.yml"), &|_: &Path| unreachable!()).unwrap();
        let extra = VarLayer::default();
        assert!(facts_used(&site, &inv, &extra));
        placeholders(&mut inv);
        let engine = Engine::new(&site.root);
        let select = Selection::default();
        let before = select::compile(&site, &inv, &select, &extra, &engine, false).unwrap();
        let items: Vec<&Item> = before.hosts[0].items().collect();
        // The first probe: the host's facts, and every query that names no placeholder.
        let first: Vec<String> = first_queries(&items).into_iter().map(|q| q.key).collect();
        assert!(first.contains(&host::KEY.to_string()), "{first:?}");
        assert!(first.iter().any(|k| k.ends_with("/etc/arch")), "{first:?}");
        assert!(first.iter().any(|k| k.ends_with("/etc/plain")), "{first:?}");
        assert!(!first.iter().any(|k| k.contains("<fact:")), "{first:?}");
        // A placeholder never reaches a diff: the item is an error naming host and resource.
        let mut p = Planned::InSync;
        refuse_placeholder("h1", items[0], &mut p);
        match &p {
            Planned::Error(e) => {
                assert!(
                    e.contains("r/file:/etc/arch")
                        && e.contains("h1")
                        && e.contains("<fact:architecture>"),
                    "{e}"
                )
            }
            _ => panic!("placeholder reached the diff"),
        }

        let facts =
            host::parse("id=debian\nversion_id=12\narch=aarch64\nnodename=node-7\n").unwrap();
        let mut rc = Refacts {
            site: site.clone(),
            inv,
            extra,
            engine,
            select,
        };
        let after = rc.with_facts(vec![("h1".into(), facts)]).unwrap();
        let items: Vec<&Item> = after.hosts[0].items().collect();
        assert_eq!(items[0].rendered["content"], "aarch64\n");
        assert_eq!(items[1].rendered["path"], "/etc/by-host/node-7");
        let mut p = Planned::InSync;
        refuse_placeholder("h1", items[0], &mut p);
        assert!(matches!(p, Planned::InSync));
        // Only the query whose key depends on a fact is asked again.
        let more: Vec<String> = missing(&answered(first), &host_queries(&items))
            .into_iter()
            .map(|q| q.key)
            .collect();
        assert_eq!(more.len(), 1, "{more:?}");
        assert!(more[0].ends_with("/etc/by-host/node-7"), "{more:?}");
    }

    /// A project of one role `r`, its hosts' facts still placeholders (nothing probed yet).
    fn unprobed(hosts: &str, site: &str, role: &str) -> (tempfile::TempDir, Refacts) {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "hosts.yml", hosts);
        write(d.path(), "site.yml", site);
        write(d.path(), "roles/r/role.yml", role);
        let site = Site::load(&d.path().join("site.yml")).unwrap();
        let mut inv =
            Inventory::load(&d.path().join("hosts.yml"), &|_: &Path| unreachable!()).unwrap();
        placeholders(&mut inv);
        let rc = Refacts {
            engine: Engine::new(&site.root),
            site,
            inv,
            extra: VarLayer::default(),
            select: Selection::default(),
        };
        (d, rc)
    }

    /// The gap docs/ansible.md states: a `when:` comparing an unprobed host's fact compares its
    /// placeholder, so the resource is skipped without an error. Once that host is probed the
    /// same `when:` holds.
    #[test]
    fn a_when_on_an_unprobed_hosts_fact_skips_silently() {
        let (_d, mut rc) = unprobed(
            "all:\n  hosts:\n    h1: {}\n    h2: {}\n",
            "- hosts: h1\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/peer, content: x}\n    when: hostvars['h2'].ansible_facts.architecture == 'x86_64'\n  - file: {path: /etc/always, content: y}\n",
        );
        let x86 = || host::parse("id=debian\narch=x86_64\nnodename=n\n").unwrap();
        let paths = |c: &Compiled| -> Vec<String> {
            c.hosts[0]
                .items()
                .map(|i| i.rendered["path"].as_str().unwrap().to_string())
                .collect()
        };
        let only_h1 = rc.with_facts(vec![("h1".into(), x86())]).unwrap();
        assert_eq!(paths(&only_h1), ["/etc/always"]);
        let both = rc.with_facts(vec![("h2".into(), x86())]).unwrap();
        assert_eq!(paths(&both), ["/etc/peer", "/etc/always"]);
    }

    #[test]
    fn a_template_error_with_real_facts_names_the_host() {
        let (_d, mut rc) = unprobed(
            "all:\n  hosts:\n    h1: {}\n",
            "- hosts: all\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/x, content: \"{{ {'x86_64': 'amd64'}[ansible_architecture] }}\"}\n    when: ansible_architecture != '<fact:architecture>'\n",
        );
        let facts = host::parse("id=debian\narch=riscv64\nnodename=h1\n").unwrap();
        let e = rc.with_facts(vec![("h1".into(), facts)]).err().unwrap();
        assert!(
            e.iter()
                .any(|d| d.host.as_deref() == Some("h1") && d.message.contains("host `h1`")),
            "{e:?}"
        );
    }
}
