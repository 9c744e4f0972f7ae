//! Site × inventory × selection → for each host, its ordered, rendered resource instances.
//!
//! This is where vars are merged (in the documented precedence), templated vars resolved,
//! `--tags`/`--skip-tags`/`--limit` applied, `when` and `loop` evaluated, and every spec rendered
//! and type-checked. `check` runs exactly this for every host, so anything that can fail before
//! contacting a host fails here, with file:line:col.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use serde_json::{json, Map, Value};

use super::sources::{Gathered, Sources};
use super::{vars, Entry, Site};
use crate::error::{Diag, Diags, Loc};
use crate::inventory::{pattern, Conn, Inventory, VarLayer};
use crate::plan::ResourceId;
pub use crate::plan::Selection;
use crate::resources::{self, BuildError, Instance, PrepareCx};
use crate::template::{self, Ctx, Engine, PathSeg, TemplateError};
use crate::yaml::Node;

pub struct Item {
    /// `role/kind:name`.
    pub id: ResourceId,
    pub inst: Box<dyn Instance>,
    pub notify: Vec<String>,
    pub secret: bool,
    pub loc: Loc,
    #[cfg_attr(not(test), allow(dead_code))]
    /// The spec as rendered from the role, before the type prepared it: what whole-site tests
    /// inspect (images, namespaces, firewall rules). May hold secrets: never print it.
    pub rendered: Value,
}

pub struct HandlerItem {
    pub name: String,
    pub inst: Box<dyn Instance>,
    /// The rendered handler touched a secret.
    pub secret: bool,
}

pub struct RoleWork {
    pub role: String,
    /// Index of the play this role runs in: apply runs plays in order.
    pub play: usize,
    /// The role's vars on this host, every layer stacked and resolved (see `site::vars`).
    pub vars: VarLayer,
    pub items: Vec<Item>,
    pub handlers: Vec<HandlerItem>,
}

#[derive(Debug, Clone)]
pub struct PlayInfo {
    pub name: String,
    pub serial: Option<usize>,
    pub max_fail_percent: Option<u8>,
}

pub struct HostWork {
    pub host: String,
    pub conn: Conn,
    pub roles: Vec<RoleWork>,
}

impl HostWork {
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.roles.iter().flat_map(|r| r.items.iter())
    }

    /// Roles of one play (None: all plays, as `plan` probes them at once).
    pub fn roles_in(&self, play: Option<usize>) -> impl Iterator<Item = &RoleWork> {
        self.roles
            .iter()
            .filter(move |r| play.is_none_or(|p| r.play == p))
    }

    pub fn in_play(&self, play: usize) -> bool {
        self.roles.iter().any(|r| r.play == play)
    }
}

pub struct Compiled {
    // (Debug by hand: instances are trait objects.)
    /// Per play: its name, `serial` and failure threshold.
    pub plays: Vec<PlayInfo>,
    pub hosts: Vec<HostWork>,
    /// Every secret string known (all hosts): for scrubbing any text that leaves labctl.
    pub secret_strings: Vec<String>,
}

/// A host's facts as templates see them (None: templates get no fact vars).
pub type FactsOf<'a> = &'a dyn Fn(&str) -> Option<&'a Map<String, Value>>;

/// Inventory-level vars of every host (what `hostvars` holds), with `-e`, the magic vars
/// (inventory_hostname, group_names, groups) and the host's facts, templated vars resolved
/// lazily, as Ansible does: a var may read another host's through `hostvars`.
pub fn inventory_hostvars(
    inv: &Inventory,
    extra: &VarLayer,
    engine: &Engine,
    placeholders: bool,
    facts: FactsOf,
) -> Result<IndexMap<String, VarLayer>, Diags> {
    let groups_value = serde_json::to_value(inv.groups_map()).unwrap_or(Value::Null);
    let layers: IndexMap<String, VarLayer> = inv
        .hosts
        .keys()
        .map(|h| {
            let magic = magic(inv, h, &groups_value, facts(h));
            let layers = vars::Layers {
                extra: Some(extra),
                magic: Some(&magic),
                ..Default::default()
            };
            (h.clone(), vars::stack(inv, h, &layers))
        })
        .collect();
    let (hostvars, errors) = template::vars::resolve_hosts(engine, layers, placeholders);
    // A group var that fails fails the same way on every host of the group: say it once.
    let mut same: IndexMap<(Option<Loc>, String, String), Vec<String>> = IndexMap::new();
    for e in errors {
        same.entry((e.loc.clone(), e.key.clone(), e.message.clone()))
            .or_default()
            .push(e.host.clone());
    }
    let mut diags = Diags::default();
    for ((loc, key, message), hosts) in same {
        let who = match hosts.as_slice() {
            [one] => format!("host `{one}`: "),
            [first, rest @ ..] => format!("host `{first}` (and {} more): ", rest.len()),
            [] => String::new(),
        };
        let e = template::vars::VarError {
            host: hosts[0].clone(),
            key,
            loc,
            message,
        };
        diags.push(e.diag(Loc::file_only(&inv.path), &who).about(&hosts[0]));
    }
    diags.into_result().map(|_| hostvars)
}

/// Build every selected host's work, with the facts gathered so far (a host not gathered yet
/// renders its facts as `<fact:NAME>`, and an item that still renders one awaits them). All
/// problems are collected, not just the first; each one about a host names it (`Diag::host`).
pub fn compile(src: &Sources, gathered: &Gathered) -> Result<Compiled, Diags> {
    let (site, inv, sel, extra, engine) = (
        &src.site,
        &src.inventory,
        &src.select,
        &src.extra,
        &src.engine,
    );
    let placeholders = src.vault_placeholders;
    let unknown = crate::facts::host::placeholders();
    let facts = |h: &str| src.facts_of(gathered, &unknown, h);
    let mut diags = Diags::default();
    let limit: Option<Vec<String>> = match &sel.limit {
        Some(l) => match pattern::select(inv, l) {
            Ok(h) => Some(h),
            Err(e) => return Err(Diag::new(format!("--limit: {e}")).into()),
        },
        None => None,
    };

    let groups_value = serde_json::to_value(inv.groups_map()).unwrap_or(Value::Null);
    let magics: IndexMap<&str, VarLayer> = inv
        .hosts
        .keys()
        .map(|h| (h.as_str(), magic(inv, h, &groups_value, facts(h))))
        .collect();
    let hostvars = inventory_hostvars(inv, extra, engine, placeholders, &facts)?;
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut secret_strings: Vec<String> =
        hostvars.values().flat_map(|l| l.secret_strings()).collect();
    secret_strings.sort();
    secret_strings.dedup();
    let hostvars_value: Value = Value::Object(
        hostvars
            .iter()
            .map(|(h, l)| {
                (
                    h.clone(),
                    Value::Object(l.values.clone().into_iter().collect()),
                )
            })
            .collect(),
    );

    // Every role's defaults, under each host's inventory and `-e`: what every environment's
    // NodePorts are, whichever roles a host runs (the firewall of every node needs them all).
    let mut all_defaults = VarLayer::default();
    for r in site.roles.values() {
        all_defaults.overlay(&r.defaults);
    }
    let node_ports: IndexMap<&str, Value> = inv
        .hosts
        .keys()
        .map(|h| {
            let mut base = all_defaults.clone();
            base.overlay(&vars::inventory(inv, h));
            base.overlay(extra);
            (
                h.as_str(),
                Value::Array(super::environments::node_ports(&base.values)),
            )
        })
        .collect();
    let mut hosts: IndexMap<String, HostWork> = IndexMap::new();
    for (play_idx, play) in site.plays.iter().enumerate() {
        let matched = match pattern::select(inv, &play.hosts) {
            Ok(h) => h,
            Err(e) => {
                diags.push(Diag::at(
                    play.hosts_loc.clone(),
                    format!("play `{}`: {e}", play.name),
                ));
                continue;
            }
        };
        let matched: Vec<String> = matched
            .into_iter()
            .filter(|h| limit.as_ref().is_none_or(|l| l.contains(h)))
            .collect();
        // `run_once`: the first selected host of the play does it, for all of them.
        let first = matched.first().cloned();
        for host in matched {
            let is_first = first.as_deref() == Some(host.as_str());
            if play.run_once && !is_first {
                continue;
            }
            for rref in &play.roles {
                let Some(role) = site.roles.get(&rref.name) else {
                    continue;
                };
                let mut layer = vars::stack(
                    inv,
                    &host,
                    &vars::Layers {
                        role_defaults: Some(&role.defaults),
                        play: Some(&play.vars),
                        role_entry: Some(&rref.vars),
                        extra: Some(extra),
                        magic: Some(&magics[host.as_str()]),
                        shared_role: !role.per_environment,
                    },
                );
                let mut m = IndexMap::new();
                m.insert("hostvars".to_string(), hostvars_value.clone());
                m.insert("role_name".to_string(), json!(role.name));
                m.insert(
                    "environment_node_ports".to_string(),
                    node_ports[host.as_str()].clone(),
                );
                layer.overlay(&VarLayer::from_map(m));
                let layer = match template::vars::resolve(engine, &layer, placeholders) {
                    Ok(l) => l,
                    Err(e) => {
                        diags.push(
                            e.diag(
                                rref.loc.clone(),
                                &format!("host `{host}`, role `{}`: ", role.name),
                            )
                            .about(&host),
                        );
                        continue;
                    }
                };
                let conn = match Inventory::conn(
                    &host,
                    &layer.values,
                    inv.path.parent().unwrap_or(std::path::Path::new(".")),
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        let d = Diag::at(Loc::file_only(&inv.path), e.to_string());
                        diags.push(d.about(&host));
                        continue;
                    }
                };
                let mut ctx = Ctx::new(&layer.values, layer.secret.clone(), secret_strings.clone());
                ctx.placeholders = placeholders;
                let role_tags: BTreeSet<String> = rref
                    .tags
                    .iter()
                    .cloned()
                    .chain([role.name.clone()])
                    .collect();
                let hw = hosts.entry(host.clone()).or_insert_with(|| HostWork {
                    host: host.clone(),
                    conn: conn.clone(),
                    roles: Vec::new(),
                });
                let mut rw = RoleWork {
                    role: role.name.clone(),
                    play: play_idx,
                    vars: layer.clone(),
                    items: Vec::new(),
                    handlers: Vec::new(),
                };
                for entry in &role.resources {
                    if entry.run_once && !is_first {
                        continue;
                    }
                    let tags: BTreeSet<String> = role_tags
                        .iter()
                        .cloned()
                        .chain(entry.tags.iter().cloned())
                        .collect();
                    if !sel.wants(&tags) {
                        continue;
                    }
                    match expand(entry, &ctx, engine, site, &role.dir, &host) {
                        Ok(items) => {
                            for (name_override, inst, secret, rendered) in items {
                                let name = name_override.unwrap_or_else(|| inst.name());
                                rw.items.push(Item {
                                    id: ResourceId::new(&role.name, inst.kind(), &name),
                                    inst,
                                    notify: entry.notify.iter().map(|(n, _)| n.clone()).collect(),
                                    secret,
                                    loc: entry.loc.clone(),
                                    rendered,
                                });
                            }
                        }
                        Err(d) => diags.push(d.prefix(&host)),
                    }
                }
                for h in &role.handlers {
                    match expand(h, &ctx, engine, site, &role.dir, &host) {
                        Ok(mut items) if items.len() == 1 => {
                            let (_, inst, secret, _) = items.remove(0);
                            // One that awaits facts is checked as a handler again with them.
                            match inst.handler(secret) {
                                Err(resources::ResourceError::NotGathered(_)) | Ok(_) => {}
                                Err(e) => {
                                    diags.push(Diag::at(h.loc.clone(), e.to_string()));
                                    continue;
                                }
                            }
                            rw.handlers.push(HandlerItem {
                                name: h.name.clone().unwrap_or_default(),
                                inst,
                                secret,
                            });
                        }
                        Ok(_) => diags.push(Diag::at(
                            h.loc.clone(),
                            "handlers cannot use `loop` or `when`",
                        )),
                        Err(d) => diags.push(d.prefix(&host)),
                    }
                }
                // A role that registers an ACME account: an address Let's Encrypt refuses fails
                // here, not as an issuer that never turns Ready.
                if !rw.items.is_empty() && role.defaults.values.contains_key("acme_email") {
                    if let Some(d) = super::acme::email_diag(&rw.vars, &rref.loc) {
                        if !diags.0.iter().any(|x| x.message == d.message) {
                            diags.push(d);
                        }
                    }
                }
                hw.roles.push(rw);
            }
        }
    }
    for hw in hosts.values() {
        let mut seen: IndexMap<&ResourceId, &Loc> = IndexMap::new();
        for it in hw.items() {
            if let Some(first) = seen.insert(&it.id, &it.loc) {
                diags.push(
                    Diag::at(
                        it.loc.clone(),
                        format!(
                            "host `{}`: `{}` is managed twice (first at {first})",
                            hw.host, it.id
                        ),
                    )
                    .help("give one of them a distinct `name`, or merge them")
                    .about(&hw.host),
                );
            }
        }
    }
    diags.into_result().map(|_| Compiled {
        plays: site
            .plays
            .iter()
            .map(|p| PlayInfo {
                name: p.name.clone(),
                serial: p.serial,
                max_fail_percent: p.max_fail_percent,
            })
            .collect(),
        hosts: hosts.into_values().collect(),
        secret_strings,
    })
}

impl Compiled {
    /// Nothing to do: what a moved-out `Compiled` leaves behind.
    pub fn empty() -> Compiled {
        Compiled {
            plays: vec![],
            hosts: vec![],
            secret_strings: vec![],
        }
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({} hosts)", self.hosts.len())
    }
}

/// Vars every template can use, as in Ansible, and the host's facts.
/// `groups` is `inv.groups_map()` as a value: computed once per run, not per host and role.
fn magic(
    inv: &Inventory,
    host: &str,
    groups_map: &Value,
    facts: Option<&Map<String, Value>>,
) -> VarLayer {
    let mut m = IndexMap::new();
    m.insert("inventory_hostname".to_string(), json!(host));
    m.insert(
        "inventory_hostname_short".to_string(),
        json!(host.split('.').next().unwrap_or(host)),
    );
    let groups: Vec<String> = inv
        .host_groups(host)
        .into_iter()
        .filter(|g| g != "all" && g != "ungrouped")
        .collect();
    m.insert("group_names".to_string(), json!(groups));
    m.insert("groups".to_string(), groups_map.clone());
    if let Some(f) = facts {
        m.extend(crate::facts::host::template_vars(f));
    }
    VarLayer::from_map(m)
}

/// A resource built before its host's facts were gathered, whose spec (or a template it
/// rendered) still holds a `<fact:NAME>`: its diff and handler are the `NotGathered` error, so
/// it never reaches a host nor a diff. What it was built as (when the spec was valid with the
/// placeholder) still answers offline questions: `check`'s warnings and render gate, and the
/// queries that name no placeholder, asked in the host's first probe with its facts.
struct AwaitsFacts {
    kind: &'static str,
    name: String,
    why: crate::facts::host::NotGathered,
    built: Option<Box<dyn Instance>>,
}

impl Instance for AwaitsFacts {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn warnings(&self) -> Vec<String> {
        self.built
            .as_ref()
            .map(|b| b.warnings())
            .unwrap_or_default()
    }
    fn facts(&self) -> Vec<crate::facts::FactQuery> {
        let named = |t: &str| crate::facts::host::placeholder_in(t.as_bytes()).is_some();
        self.built
            .iter()
            .flat_map(|b| b.facts())
            .filter(|q| !named(&q.key) && !named(&q.script))
            .collect()
    }
    fn diff(
        &self,
        _: &crate::facts::Facts,
        _: &resources::DiffCx,
    ) -> Result<Option<crate::plan::Drift>, resources::ResourceError> {
        Err(self.why.clone().into())
    }
    /// What it was built as says whether it can be a handler at all; its steps are not sent.
    fn handler(&self, secret: bool) -> Result<Vec<crate::plan::Step>, resources::ResourceError> {
        match &self.built {
            Some(b) => b.handler(secret).and(Err(self.why.clone().into())),
            None => Err(self.why.clone().into()),
        }
    }
    fn touches(&self) -> Vec<crate::plan::Touch> {
        vec![crate::plan::Touch::Anything]
    }
    fn sends(&self) -> Option<crate::cluster::Sent> {
        self.built.as_ref().and_then(|b| b.sends())
    }
    fn awaits(&self) -> Option<&crate::facts::host::NotGathered> {
        Some(&self.why)
    }
}

/// What a resource waiting for facts is called: its path, or what it names.
fn pending_name(spec: &Value) -> String {
    ["dest", "path", "name", "file"]
        .iter()
        .find_map(|k| spec.get(k).and_then(Value::as_str))
        .unwrap_or("(waits for facts)")
        .to_string()
}

trait Prefix {
    fn prefix(self, host: &str) -> Diag;
}
impl Prefix for Diag {
    fn prefix(mut self, host: &str) -> Diag {
        self.message = format!("host `{host}`: {}", self.message);
        self.about(host)
    }
}

/// (name override, instance, touched a secret, the rendered spec)
type Built = (Option<String>, Box<dyn Instance>, bool, Value);

/// One entry → zero or more instances (zero when `when` is false, several with `loop`).
fn expand(
    entry: &Entry,
    ctx: &Ctx,
    engine: &Engine,
    site: &Site,
    role_dir: &std::path::Path,
    host: &str,
) -> Result<Vec<Built>, Diag> {
    let items: Vec<Option<Value>> = match &entry.loop_ {
        None => vec![None],
        Some(node) => {
            let (v, _) = engine
                .render_value(&node.to_json(), ctx)
                .map_err(|(p, e)| tdiag(&entry.file, node, &p, e, "loop"))?;
            match v {
                Value::Array(a) => a.into_iter().map(Some).collect(),
                other => {
                    return Err(Diag::at(
                        node.loc(&entry.file),
                        format!("`loop` must be a list, got {}", short(&other)),
                    ))
                }
            }
        }
    };
    let mut out = Vec::new();
    for item in items {
        let c = match &item {
            Some(v) => ctx.with("item", v, false),
            None => ctx.clone(),
        };
        let mut ok = true;
        for w in &entry.when {
            let (v, _) = engine
                .eval(w, &c)
                .map_err(|e| Diag::at(entry.loc.clone(), format!("`when: {w}`: {}", e.message)))?;
            if !crate::inventory::truthy(&v) && !matches!(v, Value::Array(ref a) if !a.is_empty()) {
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let (spec, tainted) = engine
            .render_value(&entry.spec.to_json(), &c)
            .map_err(|(p, e)| tdiag(&entry.file, &entry.spec, &p, e, &entry.kind))?;
        let name = match &entry.name {
            Some(n) if template::is_template(n) => Some(
                engine
                    .render_str(n, &c)
                    .map_err(|e| Diag::at(entry.loc.clone(), format!("`name`: {}", e.message)))?
                    .text,
            ),
            Some(n) if item.is_some() => Some(format!(
                "{n} ({})",
                short(item.as_ref().unwrap_or(&Value::Null))
            )),
            other => other.clone(),
        };
        let pcx = PrepareCx::new(engine, &c, role_dir, &site.root);
        let built =
            resources::build(&entry.kind, spec.clone(), &pcx).expect("kind was checked at load");
        let tainted = tainted || pcx.tainted.get();
        // The one place a fact placeholder is refused: an item whose spec, or a template it
        // rendered, holds one awaits the host's facts. Compiling again with them builds it for
        // real; until then it asks nothing that names one and never reaches a host.
        let fact =
            crate::facts::host::placeholder_in_value(&spec).or_else(|| pcx.awaits.get().cloned());
        if let Some(fact) = fact {
            let built = built.ok();
            let name = name
                .or_else(|| built.as_ref().map(|b| b.name()))
                .unwrap_or_else(|| pending_name(&spec));
            let inst: Box<dyn Instance> = Box::new(AwaitsFacts {
                kind: resources::KINDS
                    .iter()
                    .find(|k| **k == entry.kind)
                    .copied()
                    .unwrap_or("resource"),
                name: name.clone(),
                why: crate::facts::host::NotGathered {
                    host: host.to_string(),
                    fact,
                },
                built,
            });
            out.push((Some(name), inst, tainted, spec));
            continue;
        }
        match built {
            Ok(inst) => out.push((name, inst, tainted, spec)),
            Err(BuildError::Spec { path, message }) => {
                let loc = crate::yaml::error_loc(&entry.file, &entry.spec, &path, &message);
                let at = if path.iter().next().is_some() {
                    format!(" at `{path}`")
                } else {
                    String::new()
                };
                return Err(Diag::at(loc, format!("{}{at}: {message}", entry.kind)));
            }
            Err(BuildError::Prepare(m)) => {
                return Err(Diag::at(entry.loc.clone(), format!("{}: {m}", entry.kind)))
            }
        }
    }
    Ok(out)
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// A template error inside a YAML string: point at the string's node, then at the line/column
/// inside the template when the string spans one line.
fn tdiag(
    file: &std::path::Path,
    root: &Node,
    path: &[PathSeg],
    e: TemplateError,
    what: &str,
) -> Diag {
    let mut n = root;
    for seg in path {
        let next = match seg {
            PathSeg::Index(i) => n.as_seq().and_then(|s| s.get(*i)),
            PathSeg::Key(k) => n.get(k),
        };
        match next {
            Some(x) => n = x,
            None => break,
        }
    }
    if let Some(f) = &e.file {
        return Diag::at(Loc::new(f, e.line, e.col), format!("{what}: {}", e.message));
    }
    Diag::at(n.loc(file), format!("{what}: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::VaultFail;
    use crate::secret::Secret;
    use std::path::Path;

    use crate::fsutil::write_rel as write;

    /// The site compiled for `inv` before any host's facts are gathered.
    fn compile_with(
        site: &Site,
        inv: &Inventory,
        sel: &Selection,
        vault_placeholders: bool,
    ) -> Result<Compiled, Diags> {
        let mut src = Sources::new(
            site.clone(),
            inv.clone(),
            VarLayer::default(),
            Engine::new(&site.root),
            sel.clone(),
        );
        src.vault_placeholders = vault_placeholders;
        compile(&src, &Gathered::default())
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "inv/hosts.yml", "all:\n  children:\n    lab:\n      hosts:\n        h1: {ansible_host: 10.0.0.1}\n        h2: {ansible_host: 10.0.0.2, motd: from-host}\n");
        write(
            d.path(),
            "inv/group_vars/lab.yml",
            "motd: from-group\npw_ref: \"{{ vault_pw }}\"\n",
        );
        write(d.path(), "inv/group_vars/all/vault.yml.age", "x");
        write(
            d.path(),
            "site.yml",
            "- hosts: lab\n  vars: {mode: \"0640\"}\n  roles: [r]\n",
        );
        write(
            d.path(),
            "roles/r/defaults.yml",
            "motd: from-defaults\nfiles: [a, b]\n",
        );
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file: {path: /etc/motd, content: \"{{ motd }}\\n\", mode: \"{{ mode }}\"}\n    tags: [motd]\n  - file: {path: \"/etc/lab/{{ item }}\", content: x}\n    loop: \"{{ files }}\"\n  - file: {path: /etc/pw, template: pw.j2}\n    when: inventory_hostname == 'h1'\n",
        );
        write(d.path(), "roles/r/templates/pw.j2", "pw={{ pw_ref }}\n");
        d
    }

    fn load(d: &Path, key: bool) -> (Site, Inventory) {
        let dec = move |_: &Path| -> Result<Secret<Vec<u8>>, VaultFail> {
            if key {
                Ok(Secret::new(b"vault_pw: canary-pw-77\n".to_vec()))
            } else {
                Err(VaultFail::NoKey("none".into()))
            }
        };
        (
            Site::load(&d.join("site.yml")).unwrap(),
            Inventory::load(&d.join("inv/hosts.yml"), &dec).unwrap(),
        )
    }

    #[test]
    fn precedence_loops_when_and_taint() {
        let d = setup();
        let (site, inv) = load(d.path(), true);
        let c = compile_with(&site, &inv, &Selection::default(), false).unwrap();
        let ids: Vec<Vec<String>> = c
            .hosts
            .iter()
            .map(|h| h.items().map(|i| i.id.to_string()).collect())
            .collect();
        assert_eq!(
            ids[0],
            [
                "r/file:/etc/motd",
                "r/file:/etc/lab/a",
                "r/file:/etc/lab/b",
                "r/file:/etc/pw"
            ]
        );
        assert_eq!(ids[1].len(), 3, "when excludes h2");
        let pw = c.hosts[0].items().last().unwrap();
        assert!(pw.secret, "template using a vault var is secret");
        assert!(!c.hosts[0].items().next().unwrap().secret);
        assert_eq!(c.secret_strings, vec!["canary-pw-77"]);
    }

    #[test]
    fn run_once_on_a_resource_and_on_a_play() {
        let d = setup();
        write(
            d.path(),
            "site.yml",
            "- hosts: lab\n  roles: [r]\n- hosts: lab\n  run_once: true\n  roles: [once]\n",
        );
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file: {path: /etc/each, content: x}\n  - file: {path: /etc/cluster, content: x}\n    run_once: true\n",
        );
        write(
            d.path(),
            "roles/once/role.yml",
            "resources:\n  - file: {path: /etc/play, content: x}\n",
        );
        let (site, inv) = load(d.path(), true);
        let ids = |limit: Option<&str>| -> Vec<(String, Vec<String>)> {
            let sel = Selection {
                limit: limit.map(String::from),
                ..Default::default()
            };
            compile_with(&site, &inv, &sel, false)
                .unwrap()
                .hosts
                .iter()
                .map(|h| {
                    (
                        h.host.clone(),
                        h.items().map(|i| i.id.to_string()).collect(),
                    )
                })
                .collect()
        };
        let all = ids(None);
        assert_eq!(
            all[0].1,
            [
                "r/file:/etc/each",
                "r/file:/etc/cluster",
                "once/file:/etc/play"
            ]
        );
        assert_eq!(all[1].1, ["r/file:/etc/each"]);
        // The first *selected* host: with --limit h2, h2 does the once-only work.
        let h2 = ids(Some("h2"));
        assert_eq!(
            h2[0].1,
            [
                "r/file:/etc/each",
                "r/file:/etc/cluster",
                "once/file:/etc/play"
            ]
        );
    }

    #[test]
    fn tags_and_limit_select() {
        let d = setup();
        let (site, inv) = load(d.path(), true);
        let sel = Selection {
            tags: vec!["motd".into()],
            skip_tags: vec![],
            limit: Some("h2".into()),
        };
        let c = compile_with(&site, &inv, &sel, false).unwrap();
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(c.hosts[0].host, "h2");
        assert_eq!(
            c.hosts[0]
                .items()
                .map(|i| i.id.to_string())
                .collect::<Vec<_>>(),
            ["r/file:/etc/motd"]
        );
        let sel = Selection {
            tags: vec![],
            skip_tags: vec!["r".into()],
            limit: None,
        };
        let c = compile_with(&site, &inv, &sel, false).unwrap();
        assert_eq!(c.hosts[0].items().count(), 0);
        let bad = Selection {
            limit: Some("nosuch".into()),
            ..Default::default()
        };
        assert!(compile_with(&site, &inv, &bad, false).is_err());
    }

    #[test]
    fn without_a_key_check_uses_placeholders() {
        let d = setup();
        let (site, inv) = load(d.path(), false);
        assert!(compile_with(&site, &inv, &Selection::default(), false).is_err());
        assert!(compile_with(&site, &inv, &Selection::default(), true).is_ok());
    }

    /// A run compiling with facts gives each host its own problems by this field (`apply`): it
    /// must be set exactly where the message names the host.
    #[test]
    fn a_problem_about_one_host_carries_it() {
        let d = setup();
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file: {path: /x, mod: \"0644\"}\n    when: inventory_hostname == 'h1'\n  - file: {path: /y, content: a}\n    when: inventory_hostname == 'h2'\n  - file: {path: /y, content: b}\n    when: inventory_hostname == 'h2'\n",
        );
        let problems = |host_vars: &str| {
            write(d.path(), "inv/host_vars/h2.yml", host_vars);
            let (site, inv) = load(d.path(), true);
            let e = compile_with(&site, &inv, &Selection::default(), false).unwrap_err();
            for d in &e.0 {
                match &d.host {
                    Some(h) => assert!(d.message.starts_with(&format!("host `{h}`")), "{d:?}"),
                    None => assert!(!d.message.contains("host `"), "{d:?}"),
                }
            }
            e.0.iter()
                .map(|d| d.host.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        // A spec error on h1 and a resource managed twice on h2; then a connection setting
        // refused on h2.
        assert_eq!(problems("motd: x\n"), ["h1", "h2"]);
        assert_eq!(problems("ansible_password: hunter2\n"), ["h1", "h2"]);
        // A var that does not resolve.
        assert_eq!(problems("broken: \"{{ nope }}\"\n"), ["h2"]);
    }

    /// The one place a `<fact:NAME>` is refused: an item (or handler) that renders one, in its
    /// spec or in a template it renders, is built as one that awaits facts. Its diff and
    /// handler are the typed error naming host and fact, and it asks nothing that names one.
    #[test]
    fn an_item_rendering_an_ungathered_fact_awaits_it_and_never_reaches_a_host() {
        use crate::facts::host::NotGathered;
        use crate::resources::{DiffCx, ResourceError};
        let (_d, src) = super::super::sources::testutil::project(
            "all:\n  hosts:\n    h1: {}\n    h2: {}\n",
            "- hosts: h1\n  roles: [r]\n",
            "resources:\n  - file: {path: /etc/plain, content: y}\n  - file: {path: /etc/arch, content: \"{{ ansible_architecture }}\\n\"}\n  - file: {path: \"/etc/by-host/{{ ansible_hostname }}\", content: x}\n  - file: {path: /etc/t, template: t.j2}\n  - download: {url: \"https://e.x/a\", dest: /usr/local/bin/a, sha256: \"{{ 'a' * 64 if ansible_architecture == 'x86_64' else ansible_architecture }}\"}\n  - file: {path: /etc/peer, content: \"{{ hostvars['h2'].ansible_fqdn }}\"}\n    notify: restart\nhandlers:\n  - name: restart\n    service: {name: \"{{ ansible_hostname }}\", state: restarted}\n",
            &[("roles/r/templates/t.j2", "secret-ish {{ ansible_fqdn }} rest\n")],
        );
        let awaits = |c: &Compiled| -> Vec<Option<String>> {
            c.hosts[0]
                .items()
                .map(|i| i.inst.awaits().map(|w| w.fact.clone()))
                .collect()
        };
        let before = compile(&src, &Gathered::default()).unwrap();
        assert_eq!(
            awaits(&before),
            [
                None,
                Some("<fact:architecture>".into()),
                Some("<fact:hostname>".into()),
                Some("<fact:fqdn>".into()),
                Some("<fact:architecture>".into()),
                Some("<fact:fqdn>".into()),
            ]
        );
        let items: Vec<&Item> = before.hosts[0].items().collect();
        assert_eq!(items[4].id.to_string(), "r/download:/usr/local/bin/a");
        let cx = DiffCx {
            secret: false,
            hash_key: [0; 32],
            secrets: Default::default(),
        };
        let e = items[3]
            .inst
            .diff(&crate::facts::Facts::default(), &cx)
            .unwrap_err();
        assert!(
            matches!(&e, ResourceError::NotGathered(NotGathered { host, fact }) if host == "h1" && fact == "<fact:fqdn>"),
            "{e:?}"
        );
        // Only the fact's name is quoted, never the template's text around it.
        assert!(
            e.to_string()
                .starts_with("on host `h1`, `<fact:fqdn>` is a fact that was not gathered"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret-ish"), "{e}");
        // A query that names a placeholder is never asked; the others are, in the first probe.
        assert!(items[2].inst.facts().is_empty());
        assert!(!items[1].inst.facts().is_empty());
        assert!(items
            .iter()
            .flat_map(|i| i.inst.facts())
            .all(|q| !q.key.contains("<fact:") && !q.script.contains("<fact:")));
        let handler = &before.hosts[0].roles[0].handlers[0];
        assert!(matches!(
            handler.inst.handler(false),
            Err(ResourceError::NotGathered(_))
        ));

        // With h1's facts: built for real, except what reads h2's, still not gathered.
        let mut gathered = Gathered::default();
        let facts = "id=debian\narch=x86_64\nnodename=h1\nfqdn=h1.lab\n";
        gathered.add("h1", crate::facts::host::parse(facts).unwrap());
        let after = compile(&src, &gathered).unwrap();
        assert_eq!(
            awaits(&after),
            [None, None, None, None, None, Some("<fact:fqdn>".into())]
        );
        assert!(after.hosts[0].roles[0].handlers[0]
            .inst
            .handler(false)
            .is_ok());
    }

    /// A resource that can never be a handler is refused at compile even while it awaits facts.
    #[test]
    fn a_handler_awaiting_facts_is_still_checked_as_a_handler() {
        let (_d, src) = super::super::sources::testutil::project(
            "all:\n  hosts:\n    h1: {}\n",
            "- hosts: all\n  roles: [r]\n",
            "resources: []\nhandlers:\n  - name: h\n    file: {path: \"/etc/{{ ansible_hostname }}\", content: x}\n",
            &[],
        );
        let e = compile(&src, &Gathered::default()).unwrap_err();
        assert!(e.to_string().contains("cannot be a handler"), "{e}");
    }

    #[test]
    fn spec_errors_point_into_the_role() {
        let d = setup();
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file:\n      path: /x\n      mod: \"0644\"\n",
        );
        let (site, inv) = load(d.path(), true);
        let e = compile_with(&site, &inv, &Selection::default(), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("role.yml:4:7: host `h1`: file at `mod`: unknown field `mod`"),
            "{e}"
        );
        write(
            d.path(),
            "roles/r/role.yml",
            "resources:\n  - file: {path: /x, template: t.j2}\n",
        );
        write(d.path(), "roles/r/templates/t.j2", "line1\n{{ nope }}\n");
        let (site, inv) = load(d.path(), true);
        let e = compile_with(&site, &inv, &Selection::default(), false).unwrap_err();
        assert!(
            e.to_string().contains("t.j2:2:4") && e.to_string().contains("`nope`"),
            "{e}"
        );
    }
}
