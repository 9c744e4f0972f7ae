//! What a site is compiled from, and the facts gathered so far: the inputs of `select::compile`.
//!
//! Facts for templates (`ansible_facts`, `ansible_architecture`, …) are gathered only when the
//! site or inventory names one. Until a host's facts are gathered they render as `<fact:NAME>`,
//! and an item that still renders one is built as one that awaits them (`select`): the engine
//! probes the host, adds its facts to `Gathered` and compiles again with the same `Sources`.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::Site;
use crate::facts::host;
use crate::inventory::{Inventory, VarLayer};
use crate::plan::Selection;
use crate::template::Engine;

/// Everything a compile reads besides facts: the site, the inventory with its host vars, `-e`
/// vars, the template engine (and the passwords it keeps) and the selection.
pub struct Sources {
    pub site: Site,
    pub inventory: Inventory,
    pub extra: VarLayer,
    pub engine: Engine,
    pub select: Selection,
    /// `check` without a vault key: unopened vault vars render as placeholders.
    pub vault_placeholders: bool,
    /// Something names a fact: the engine gathers them, and a host not gathered yet renders its
    /// facts as `<fact:NAME>`.
    pub facts_used: bool,
}

impl Sources {
    pub fn new(
        site: Site,
        inventory: Inventory,
        extra: VarLayer,
        engine: Engine,
        select: Selection,
    ) -> Sources {
        let facts_used = facts_used(&site, &inventory, &extra);
        Sources {
            site,
            inventory,
            extra,
            engine,
            select,
            vault_placeholders: false,
            facts_used,
        }
    }

    /// A host's facts as templates see them: gathered, or placeholders until they are. None when
    /// nothing names a fact (templates then get no fact vars at all).
    pub(super) fn facts_of<'a>(
        &self,
        gathered: &'a Gathered,
        placeholders: &'a Map<String, Value>,
        host: &str,
    ) -> Option<&'a Map<String, Value>> {
        if !self.facts_used {
            return None;
        }
        Some(gathered.0.get(host).unwrap_or(placeholders))
    }
}

/// The facts gathered so far (each host's `ansible_facts`, from its probe), by host.
#[derive(Debug, Clone, Default)]
pub struct Gathered(IndexMap<String, Map<String, Value>>);

impl Gathered {
    pub fn add(&mut self, host: &str, facts: Map<String, Value>) {
        self.0.insert(host.to_string(), facts);
    }

    pub fn has(&self, host: &str) -> bool {
        self.0.contains_key(host)
    }
}

/// True when a role file, site.yml, an inventory var or an `-e` var names a gathered fact.
fn facts_used(site: &Site, inv: &Inventory, extra: &VarLayer) -> bool {
    let vars_text = |l: &VarLayer| serde_json::to_string(&l.values).unwrap_or_default();
    inv.groups
        .values()
        .any(|g| host::named_in(&vars_text(&g.vars)))
        || inv
            .hosts
            .values()
            .any(|h| host::named_in(&vars_text(&h.vars)))
        || host::named_in(&vars_text(extra))
        || named_in_file(&site.root.join("site.yml"))
        || named_under(&site.root.join("roles"))
}

fn named_in_file(p: &Path) -> bool {
    std::fs::read_to_string(p).is_ok_and(|t| host::named_in(&t))
}

/// Does a file below `dir` name a fact? Stops at the first that does.
fn named_under(dir: &Path) -> bool {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.map(|e| e.path()).any(|p| {
        if p.is_dir() {
            named_under(&p)
        } else {
            named_in_file(&p)
        }
    })
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::fsutil::write_rel as write;

    /// A project of one role `r` (with `files`, e.g. templates, beside it), nothing probed yet.
    pub fn project(
        hosts: &str,
        site: &str,
        role: &str,
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, Sources) {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "hosts.yml", hosts);
        write(d.path(), "site.yml", site);
        write(d.path(), "roles/r/role.yml", role);
        for (p, text) in files {
            write(d.path(), p, text);
        }
        let site = Site::load(&d.path().join("site.yml")).unwrap();
        let inv = Inventory::load(&d.path().join("hosts.yml"), &|_: &Path| unreachable!()).unwrap();
        let src = Sources::new(
            site.clone(),
            inv,
            VarLayer::default(),
            Engine::new(&site.root),
            Selection::default(),
        );
        (d, src)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::project;
    use super::*;
    use crate::site::select::{compile, Compiled};

    fn x86() -> Map<String, Value> {
        host::parse("id=debian\narch=x86_64\nnodename=n\n").unwrap()
    }

    #[test]
    fn facts_are_used_when_a_role_or_a_var_names_one() {
        let hosts = "all:\n  hosts:\n    h1: {}\n";
        let site = "- hosts: all\n  roles: [r]\n";
        let plain = "resources:\n  - file: {path: /etc/x, content: x}\n";
        let (_d, src) = project(hosts, site, plain, &[]);
        assert!(!src.facts_used);
        let (_d, src) = project(
            hosts,
            site,
            plain,
            &[("roles/r/templates/t.j2", "{{ ansible_fqdn }}")],
        );
        assert!(src.facts_used, "a template under roles/ names one");
        let (_d, src) = project(
            "all:\n  hosts:\n    h1: {arch: \"{{ ansible_architecture }}\"}\n",
            site,
            plain,
            &[],
        );
        assert!(src.facts_used, "an inventory var names one");
    }

    /// The gap docs/ansible.md states: a `when:` comparing an unprobed host's fact compares its
    /// placeholder, so the resource is skipped without an error. Once that host is probed the
    /// same `when:` holds.
    #[test]
    fn a_when_on_an_unprobed_hosts_fact_skips_silently() {
        let (_d, src) = project(
            "all:\n  hosts:\n    h1: {}\n    h2: {}\n",
            "- hosts: h1\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/peer, content: x}\n    when: hostvars['h2'].ansible_facts.architecture == 'x86_64'\n  - file: {path: /etc/always, content: y}\n",
            &[],
        );
        let paths = |c: &Compiled| -> Vec<String> {
            c.hosts[0]
                .items()
                .map(|i| i.rendered["path"].as_str().unwrap().to_string())
                .collect()
        };
        let mut gathered = Gathered::default();
        gathered.add("h1", x86());
        assert_eq!(paths(&compile(&src, &gathered).unwrap()), ["/etc/always"]);
        gathered.add("h2", x86());
        assert_eq!(
            paths(&compile(&src, &gathered).unwrap()),
            ["/etc/peer", "/etc/always"]
        );
    }

    #[test]
    fn a_template_error_with_real_facts_names_the_host() {
        let (_d, src) = project(
            "all:\n  hosts:\n    h1: {}\n",
            "- hosts: all\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/x, content: \"{{ {'x86_64': 'amd64'}[ansible_architecture] }}\"}\n    when: ansible_architecture != '<fact:architecture>'\n",
            &[],
        );
        // Before the probe the `when:` is false: nothing to build, nothing wrong.
        assert!(compile(&src, &Gathered::default()).is_ok());
        let mut gathered = Gathered::default();
        gathered.add(
            "h1",
            host::parse("id=debian\narch=riscv64\nnodename=h1\n").unwrap(),
        );
        let e = compile(&src, &gathered).err().unwrap();
        assert!(
            e.0.iter()
                .any(|d| d.host.as_deref() == Some("h1") && d.message.contains("host `h1`")),
            "{e:?}"
        );
    }
}
