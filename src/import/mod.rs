//! `labctl import-ansible`: an Ansible playbook and its roles → a labctl project.
//!
//! [`read`] reads the playbook and roles into plays and flat task lists, [`tasks`] and
//! [`modules`] turn each task into labctl entries (or say why not), [`write`] writes site.yml and
//! the roles, [`report`] counts what was translated, approximated and left out.
//!
//! labctl's site is narrower than a playbook: a play is `hosts` + `vars` + a list of roles. So a
//! play's `pre_tasks`, `tasks` and `post_tasks` each become a role of their own (PLAY-pre,
//! PLAY-tasks, PLAY-post) in the play's role list, in Ansible's order; role `vars/` become the
//! role entry's `vars:` (which, like Ansible's role vars, sit above inventory and play vars); and
//! `meta/` dependencies are listed before the role that needs them.

pub mod modules;
pub mod read;
pub mod report;
pub mod tasks;
pub mod write;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::Diag;
use modules::{Asset, Outcome};
use read::{Inherit, Item, Play, Reader, RoleRef, Src};
use report::Report;

pub struct Options {
    pub playbook: PathBuf,
    pub roles_paths: Vec<PathBuf>,
    pub out: PathBuf,
}

/// A labctl role being written.
#[derive(Debug, Default)]
pub struct OutRole {
    pub name: String,
    /// (comment, entry)
    pub resources: Vec<(String, Value)>,
    pub handlers: Vec<(String, Value)>,
    /// The Ansible role's defaults file, copied unchanged.
    pub defaults: Option<PathBuf>,
    /// Folders copied whole (the Ansible role's templates/ and files/).
    pub dirs: Vec<(PathBuf, &'static str)>,
    /// Single files: (source, `files` or `templates`, name).
    pub assets: Vec<(PathBuf, &'static str, String)>,
}

#[derive(Debug)]
pub struct OutPlay {
    pub comment: String,
    pub play: Map<String, Value>,
}

#[derive(Debug, Default)]
pub struct Project {
    pub plays: Vec<OutPlay>,
    pub roles: Vec<OutRole>,
}

/// A translated handler: the labctl names it is written under, and its entries.
struct Handler {
    names: Vec<String>,
    entries: Vec<(String, Value)>,
}

fn comment(src: &Src, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("ansible: {src} \"{n}\""),
        None => format!("ansible: {src}"),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(40).collect()
}

/// The deepest folder holding all the given paths.
fn common_base(paths: &[PathBuf]) -> PathBuf {
    let mut it = paths.iter();
    let Some(first) = it.next() else {
        return PathBuf::from(".");
    };
    let mut base = first.clone();
    for p in it {
        while !p.starts_with(&base) {
            if !base.pop() {
                return PathBuf::new();
            }
        }
    }
    base
}

struct Importer {
    reader: Reader,
    report: Report,
    runtime: Vec<(String, Src)>,
    handlers: HashMap<String, Vec<String>>,
    by_name: HashMap<String, Handler>,
    project: Project,
    role_names: BTreeSet<String>,
    /// (Ansible role, when) → labctl role name.
    variants: HashMap<(String, Vec<String>), String>,
    playbook_dir: PathBuf,
}

pub fn import(opts: &Options) -> Result<(Project, Report), Diag> {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let playbook = abs(&opts.playbook);
    if !playbook.is_file() {
        return Err(Diag::new(format!(
            "cannot read {}",
            opts.playbook.display()
        )));
    }
    let pdir = playbook.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut roles_paths: Vec<PathBuf> = opts.roles_paths.iter().map(|p| abs(p)).collect();
    roles_paths.push(pdir.join("roles"));
    let mut all = vec![pdir.clone()];
    all.extend(opts.roles_paths.iter().map(|p| abs(p)));
    let mut im = Importer {
        reader: Reader {
            base: common_base(&all),
            roles_paths,
            roles: Default::default(),
        },
        report: Report {
            out: opts.out.display().to_string(),
            ..Default::default()
        },
        runtime: Vec::new(),
        handlers: HashMap::new(),
        by_name: HashMap::new(),
        project: Project::default(),
        role_names: BTreeSet::new(),
        variants: HashMap::new(),
        playbook_dir: pdir,
    };
    let plays = im.reader.playbook(&playbook, 0)?;
    for p in &plays {
        for r in &p.roles {
            im.reader.role(&r.name, &r.src)?;
        }
        for items in [&p.pre_tasks, &p.tasks, &p.post_tasks] {
            for i in items {
                if let Item::IncludeRole { src, name, .. } = i {
                    im.reader.role(name, src)?;
                }
            }
        }
    }
    im.collect_runtime(&plays);
    im.translate_handlers(&plays);
    let mut used = BTreeSet::new();
    for (n, p) in plays.iter().enumerate() {
        im.play(n, p, &mut used);
    }
    // labctl never runs in check mode (plan runs nothing); Ansible defines the name.
    if im.project.roles.iter().any(|r| {
        r.resources
            .iter()
            .chain(r.handlers.iter())
            .any(|(_, e)| tasks::mentions(&e.to_string(), "ansible_check_mode"))
    }) {
        for p in &mut im.project.plays {
            let vars = p.play.entry("vars").or_insert_with(|| json!({}));
            if let Some(v) = vars.as_object_mut() {
                v.insert("ansible_check_mode".into(), json!(false));
            }
        }
    }
    Ok((im.project, im.report))
}

impl Importer {
    fn all_items<'a>(&'a self, plays: &'a [Play]) -> Vec<&'a Item> {
        let mut v: Vec<&Item> = Vec::new();
        for p in plays {
            for l in [&p.pre_tasks, &p.tasks, &p.post_tasks, &p.handlers] {
                v.extend(l.iter());
            }
        }
        for r in self.reader.roles.values() {
            v.extend(r.tasks.iter());
            v.extend(r.handlers.iter());
        }
        v
    }

    /// Names only known at run time: `register` results and `set_fact` variables.
    fn collect_runtime(&mut self, plays: &[Play]) {
        let mut rt = Vec::new();
        for i in self.all_items(plays) {
            let Item::Task(t) = i else { continue };
            for (k, v) in &t.keys {
                if k == "register" {
                    if let Some(s) = v.as_str() {
                        rt.push((s.to_string(), t.src.clone()));
                    }
                }
                // These fill ansible_facts keys labctl's facts do not have.
                match modules::short_name(k) {
                    "service_facts" => rt.push(("ansible_facts.services".into(), t.src.clone())),
                    "package_facts" => rt.push(("ansible_facts.packages".into(), t.src.clone())),
                    _ => {}
                }
                if modules::short_name(k) == "set_fact" {
                    if let Some(m) = v.as_object() {
                        for name in m.keys().filter(|n| *n != "cacheable") {
                            rt.push((name.clone(), t.src.clone()));
                        }
                    }
                }
            }
        }
        self.runtime = rt;
    }

    /// Every handler once: its labctl names, and the index of names and `listen` topics.
    fn translate_handlers(&mut self, plays: &[Play]) {
        let mut list: Vec<read::Task> = Vec::new();
        let mut others: Vec<Item> = Vec::new();
        for p in plays {
            for i in &p.handlers {
                match i {
                    Item::Task(t) => list.push(t.clone()),
                    o => others.push(o.clone()),
                }
            }
        }
        for r in self.reader.roles.values() {
            for i in &r.handlers {
                match i {
                    Item::Task(t) => list.push(t.clone()),
                    o => others.push(o.clone()),
                }
            }
        }
        for o in others {
            self.left_item(&o);
        }
        let empty = HashMap::new();
        for mut t in list {
            let listen: Vec<String> = t
                .keys
                .iter()
                .find(|(k, _)| k == "listen")
                .map(|(_, v)| read::strings(v))
                .unwrap_or_default();
            let Some(name) = t.name.clone().or_else(|| listen.first().cloned()) else {
                self.report.add(
                    &t.src,
                    "handler",
                    None,
                    &Outcome::LeftOut(
                        "a handler without `name` or `listen` can never be notified".into(),
                    ),
                );
                continue;
            };
            if self.by_name.contains_key(&name) {
                continue;
            }
            t.name = Some(name.clone());
            let tr = if t.keys.iter().any(|(k, _)| k == "notify") {
                tasks::Translated {
                    module: "handler".into(),
                    entries: Vec::new(),
                    outcome: Outcome::LeftOut(
                        "a handler that notifies another handler: labctl handlers do not chain"
                            .into(),
                    ),
                    assets: Vec::new(),
                    notified: Vec::new(),
                }
            } else {
                tasks::translate(
                    &t,
                    &tasks::Ctx {
                        handler: true,
                        handlers: &empty,
                        runtime: &self.runtime,
                    },
                )
            };
            self.report
                .add(&t.src, &tr.module, Some(&name), &tr.outcome);
            if let Outcome::LeftOut(_) = tr.outcome {
                continue;
            }
            let names: Vec<String> = tr
                .entries
                .iter()
                .filter_map(|e| e["name"].as_str().map(String::from))
                .collect();
            let c = comment(&t.src, Some(&name));
            for key in std::iter::once(name.clone()).chain(listen) {
                self.handlers.entry(key).or_default().extend(names.clone());
            }
            self.by_name.insert(
                name,
                Handler {
                    names,
                    entries: tr.entries.into_iter().map(|e| (c.clone(), e)).collect(),
                },
            );
        }
    }

    fn left_item(&mut self, i: &Item) {
        if let Item::LeftOut {
            src,
            name,
            module,
            why,
        } = i
        {
            self.report
                .add(src, module, name.as_deref(), &Outcome::LeftOut(why.clone()));
        }
    }

    fn unique_role_name(&mut self, want: &str) -> String {
        let mut name = want.to_string();
        let mut n = 2;
        while !self.role_names.insert(name.clone()) {
            name = format!("{want}-{n}");
            n += 1;
        }
        name
    }

    /// Translate a task list into `role`; `asset_dir` is where `copy`/`template` sources are
    /// looked up when the list is not an Ansible role's (files/ and templates/ below it).
    fn fill(
        &mut self,
        role: &mut OutRole,
        items: &[Item],
        extra_when: &[String],
        asset_dir: Option<&Path>,
    ) {
        let mut notified: Vec<String> = Vec::new();
        for i in items {
            let Item::Task(t) = i else {
                self.left_item(i);
                continue;
            };
            let mut t = t.clone();
            let mut w = extra_when.to_vec();
            w.append(&mut t.inherit.when);
            t.inherit.when = w;
            let tr = tasks::translate(
                &t,
                &tasks::Ctx {
                    handler: false,
                    handlers: &self.handlers,
                    runtime: &self.runtime,
                },
            );
            let mut outcome = tr.outcome.clone();
            if let Some(dir) = asset_dir {
                for a in &tr.assets {
                    let (sub, name) = match a {
                        Asset::File(n) => ("files", n),
                        Asset::Template(n) => ("templates", n),
                    };
                    let found = [dir.join(sub).join(name), dir.join(name)]
                        .into_iter()
                        .find(|p| p.is_file());
                    match found {
                        Some(p) => role.assets.push((p, sub, name.clone())),
                        None => {
                            outcome = Outcome::LeftOut(format!(
                                "{sub} source `{name}` not found beside the playbook"
                            ));
                        }
                    }
                }
            }
            self.report
                .add(&t.src, &tr.module, t.name.as_deref(), &outcome);
            if let Outcome::LeftOut(_) = outcome {
                continue;
            }
            if !tr.notified.is_empty() {
                self.report.note("labctl runs a role's handlers when that role is done; Ansible runs them after the play's roles and tasks (and after pre_tasks, tasks, post_tasks)");
            }
            notified.extend(tr.notified.iter().cloned());
            let c = comment(&t.src, t.name.as_deref());
            role.resources
                .extend(tr.entries.into_iter().map(|e| (c.clone(), e)));
        }
        // The handlers this role notifies (by name or topic), each once.
        let mut have: BTreeSet<String> = role
            .handlers
            .iter()
            .filter_map(|(_, e)| e["name"].as_str().map(String::from))
            .collect();
        for n in notified {
            let Some(names) = self.handlers.get(&n).cloned() else {
                continue;
            };
            for hn in names {
                if have.contains(&hn) {
                    continue;
                }
                if let Some(h) = self.by_name.values().find(|h| h.names.contains(&hn)) {
                    for (c, e) in &h.entries {
                        if e["name"] == json!(hn) {
                            role.handlers.push((c.clone(), e.clone()));
                        }
                    }
                }
                have.insert(hn);
            }
        }
    }

    /// The labctl role for an Ansible role under an extra `when` (a role entry's or an
    /// include's): a role used with different conditions is written once per condition.
    fn ansible_role(&mut self, name: &str, when: &[String]) -> String {
        let key = (name.to_string(), when.to_vec());
        if let Some(n) = self.variants.get(&key) {
            return n.clone();
        }
        let r = self.reader.roles[name].clone();
        let out_name = self.unique_role_name(name);
        self.variants.insert(key, out_name.clone());
        let mut role = OutRole {
            name: out_name.clone(),
            defaults: r.defaults.clone(),
            ..Default::default()
        };
        for sub in ["templates", "files"] {
            let d = r.dir.join(sub);
            if d.is_dir() {
                role.dirs.push((d, sub));
            }
        }
        self.fill(&mut role, &r.tasks, when, None);
        self.project.roles.push(role);
        out_name
    }

    /// A role reference in site.yml, its dependencies first (each once per play, as Ansible).
    fn role_refs(
        &mut self,
        r: &RoleRef,
        extra_tags: &[String],
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
    ) {
        let role = self.reader.roles[&r.name].clone();
        for d in &role.deps {
            self.role_refs(d, extra_tags, seen, out);
        }
        let id = format!(
            "{}{}{}",
            r.name,
            Value::Object(r.vars.clone()),
            r.when.join("&")
        );
        if !seen.insert(id) {
            return;
        }
        for k in &r.unknown {
            self.report.add(
                &r.src,
                &format!("role `{}`", r.name),
                None,
                &Outcome::LeftOut(format!("`{k}` on a role entry has no labctl equivalent")),
            );
        }
        let name = self.ansible_role(&r.name, &r.when);
        let vars = self.used_role_vars(&name, &role, &r.vars);
        let mut tags = extra_tags.to_vec();
        tags.extend(r.tags.iter().cloned());
        if vars.is_empty() && tags.is_empty() {
            out.push(json!(name));
        } else {
            let mut m = Map::new();
            m.insert("role".into(), json!(name));
            if !tags.is_empty() {
                m.insert("tags".into(), json!(tags));
            }
            if !vars.is_empty() {
                m.insert("vars".into(), Value::Object(vars));
            }
            out.push(Value::Object(m));
        }
    }

    /// The role's vars/ that what was written uses, then the entry's own vars. labctl renders
    /// every var before the run, where Ansible renders one only when used: a role var that only
    /// left-out tasks read (and that may not render on this inventory) is not carried over.
    fn used_role_vars(
        &mut self,
        out_name: &str,
        role: &read::Role,
        own: &Map<String, Value>,
    ) -> Map<String, Value> {
        let mut text = String::new();
        if let Some(o) = self.project.roles.iter().find(|o| o.name == out_name) {
            for (_, e) in o.resources.iter().chain(o.handlers.iter()) {
                text.push_str(&e.to_string());
            }
            // Only the templates and files a written resource reads.
            let used = text.clone();
            for (d, _) in &o.dirs {
                for f in walk(d) {
                    let rel = f
                        .strip_prefix(d)
                        .unwrap_or(&f)
                        .to_string_lossy()
                        .to_string();
                    if used.contains(&rel) {
                        text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
                    }
                }
            }
            if let Some(d) = &o.defaults {
                text.push_str(&std::fs::read_to_string(d).unwrap_or_default());
            }
        }
        text.push_str(&Value::Object(own.clone()).to_string());
        let mut kept = Map::new();
        // A kept var may name another: go on until nothing is added.
        loop {
            let before = kept.len();
            for (k, v) in &role.vars {
                if !kept.contains_key(k) && tasks::mentions(&text, k) {
                    kept.insert(k.clone(), v.clone());
                    text.push_str(&v.to_string());
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let dropped: Vec<&String> = role
            .vars
            .keys()
            .filter(|k| !kept.contains_key(*k))
            .collect();
        if !dropped.is_empty() {
            self.report.note(format!(
                "role `{out_name}`: vars/ {} not carried over: only left-out tasks read them",
                dropped
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Sorted as in the role, the entry's own vars over them.
        let mut vars: Map<String, Value> = role
            .vars
            .iter()
            .filter(|(k, _)| kept.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(own.clone());
        vars
    }

    /// One of a play's task lists as roles: cut at each `include_role`.
    fn section(
        &mut self,
        base: &str,
        items: &[Item],
        tags: &[String],
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
    ) {
        if items.is_empty() {
            return;
        }
        let mut piece: Vec<Item> = Vec::new();
        let flush = |me: &mut Importer, piece: &mut Vec<Item>, out: &mut Vec<Value>| {
            if piece.is_empty() {
                return;
            }
            let name = me.unique_role_name(base);
            let mut role = OutRole {
                name: name.clone(),
                ..Default::default()
            };
            let dir = me.playbook_dir.clone();
            me.fill(&mut role, piece, &[], Some(&dir));
            me.project.roles.push(role);
            out.push(if tags.is_empty() {
                json!(name)
            } else {
                json!({"role": name, "tags": tags})
            });
            piece.clear();
        };
        for i in items {
            match i {
                Item::IncludeRole { src, name, inherit } => {
                    flush(self, &mut piece, out);
                    self.include_role(src, name, inherit, tags, seen, out);
                }
                other => piece.push(other.clone()),
            }
        }
        flush(self, &mut piece, out);
    }

    fn include_role(
        &mut self,
        src: &Src,
        name: &str,
        inh: &Inherit,
        tags: &[String],
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
    ) {
        if let Some((k, _)) = inh.keys.first() {
            self.report.add(
                src,
                "include_role",
                None,
                &Outcome::LeftOut(format!(
                    "`{k}` on an included role has no labctl equivalent"
                )),
            );
            return;
        }
        let r = RoleRef {
            src: src.clone(),
            name: name.to_string(),
            vars: Map::new(),
            tags: inh.tags.clone(),
            when: inh.when.clone(),
            unknown: Vec::new(),
        };
        self.report
            .add(src, "include_role", None, &Outcome::Translated);
        self.role_refs(&r, tags, seen, out);
    }

    fn play(&mut self, n: usize, p: &Play, _used: &mut BTreeSet<String>) {
        let mut m = Map::new();
        let label = p.name.clone().unwrap_or_else(|| format!("play {}", n + 1));
        let base = match slug(&label) {
            s if s.is_empty() => format!("play{}", n + 1),
            s => s,
        };
        let mut tags: Vec<String> = Vec::new();
        let mut vars = Map::new();
        let play_item = |me: &mut Importer, key: &str, o: Outcome| {
            me.report.add(
                &p.src,
                &format!("play keyword `{key}`"),
                p.name.as_deref(),
                &o,
            );
        };
        if let Some(name) = &p.name {
            m.insert("name".into(), json!(name));
        }
        for (k, v) in &p.keys {
            match k.as_str() {
                "name" | "gather_facts" | "fact_path" | "gather_subset" => {}
                "hosts" => {
                    let h = match v {
                        Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(":"),
                        other => read::strings(other).join(""),
                    };
                    m.insert("hosts".into(), json!(h));
                }
                "serial" => match v {
                    Value::Number(n) if n.as_u64().is_some_and(|x| x > 0) => {
                        m.insert("serial".into(), v.clone());
                    }
                    _ => play_item(self, k, Outcome::LeftOut("only a number of hosts per batch maps to labctl's `serial` (not a percentage or a list)".into())),
                },
                "max_fail_percentage" | "any_errors_fatal" | "run_once" => {
                    m.insert(k.clone(), v.clone());
                }
                "tags" => tags = read::strings(v),
                "vars" => {
                    if let Value::Object(o) = v {
                        vars.extend(o.clone());
                    }
                }
                "become" => {
                    if matches!(v, Value::Bool(false)) || v == "no" || v == "false" {
                        play_item(self, k, Outcome::Approximated("labctl runs every resource as root".into()));
                    }
                }
                "become_method" if v == "sudo" => {}
                "become_user" if v == "root" => {}
                "become_user" => play_item(self, k, Outcome::LeftOut("labctl runs resources as root: the play's resources would run as root".into())),
                other => play_item(self, other, Outcome::LeftOut(format!("`{other}` has no labctl equivalent"))),
            }
        }
        for (src, r) in &p.vars_files {
            match r {
                Ok(vs) => {
                    vars.extend(vs.clone());
                    self.report
                        .add(src, "vars_files", p.name.as_deref(), &Outcome::Translated);
                }
                Err(why) => self.report.add(
                    src,
                    "vars_files",
                    p.name.as_deref(),
                    &Outcome::LeftOut(why.to_string()),
                ),
            }
        }
        if !vars.is_empty() {
            m.insert("vars".into(), Value::Object(vars));
        }
        let mut seen = BTreeSet::new();
        let mut roles = Vec::new();
        self.section(
            &format!("{base}-pre"),
            &p.pre_tasks,
            &tags,
            &mut seen,
            &mut roles,
        );
        for r in &p.roles {
            self.role_refs(r, &tags, &mut seen, &mut roles);
        }
        self.section(
            &format!("{base}-tasks"),
            &p.tasks,
            &tags,
            &mut seen,
            &mut roles,
        );
        self.section(
            &format!("{base}-post"),
            &p.post_tasks,
            &tags,
            &mut seen,
            &mut roles,
        );
        m.insert("roles".into(), Value::Array(roles));
        self.project.plays.push(OutPlay {
            comment: comment(&p.src, p.name.as_deref()),
            play: m,
        });
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_bases() {
        assert_eq!(slug("Setup K3S server!"), "setup-k3s-server");
        assert_eq!(
            common_base(&[PathBuf::from("/a/b/playbooks"), PathBuf::from("/a/b/roles")]),
            PathBuf::from("/a/b")
        );
    }
}
