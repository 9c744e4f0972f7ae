//! Reading a playbook and its roles into plays and flat task lists: blocks are unrolled (their
//! `when`/`tags` handed down), static `import_tasks`/`include_tasks` are read in place, and
//! `import_playbook` plays are inlined. Only unreadable input is an error (file:line:col);
//! what cannot be followed becomes a left-out item.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Diag, Loc};
use crate::yaml::{self, Node, NodeV};

/// A `vars_files` entry: where it was named, and its values or why labctl leaves it out.
pub type VarsFile = (Src, Result<Map<String, Value>, VarsFileLeftOut>);

/// Where something came from: the file as the report shows it, and the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Src {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Src {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What enclosing blocks and includes hand down to a task.
#[derive(Debug, Clone, Default)]
pub struct Inherit {
    pub when: Vec<String>,
    pub tags: Vec<String>,
    /// Keywords of enclosing blocks/includes, checked like the task's own (`become_user`, …).
    pub keys: Vec<(String, Value)>,
    /// Differences already known (a block's `rescue` left out).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub src: Src,
    pub name: Option<String>,
    /// The task's keys, in order (module key included).
    pub keys: Vec<(String, Value)>,
    pub inherit: Inherit,
}

#[derive(Debug, Clone)]
pub enum Item {
    Task(Task),
    /// A static `include_role`/`import_role` in a play's task list: the play's role list is cut
    /// there.
    IncludeRole {
        src: Src,
        name: String,
        inherit: Inherit,
    },
    LeftOut {
        src: Src,
        name: Option<String>,
        module: String,
        why: String,
    },
}

#[derive(Debug, Clone)]
pub struct RoleRef {
    pub src: Src,
    pub name: String,
    pub vars: Map<String, Value>,
    pub tags: Vec<String>,
    pub when: Vec<String>,
    /// Keys of the entry labctl has no place for.
    pub unknown: Vec<String>,
}

/// Why a play's `vars_files` entry is not carried over (said in the report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarsFileLeftOut {
    #[error("a templated or list entry is chosen at run time")]
    ChosenAtRunTime,
    #[error("an ansible-vault file: move its values into the inventory's group_vars (labctl opens them there)")]
    AnsibleVault,
    #[error("holds `!vault` values: move them into the inventory's group_vars")]
    VaultValues,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub src: Src,
    pub name: Option<String>,
    /// Every play key, to be checked by the caller.
    pub keys: Vec<(String, Value)>,
    /// Each `vars_files` entry: its values, or why labctl leaves it out.
    pub vars_files: Vec<VarsFile>,
    pub pre_tasks: Vec<Item>,
    pub roles: Vec<RoleRef>,
    pub tasks: Vec<Item>,
    pub post_tasks: Vec<Item>,
    pub handlers: Vec<Item>,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub dir: PathBuf,
    pub tasks: Vec<Item>,
    pub handlers: Vec<Item>,
    pub defaults: Option<PathBuf>,
    pub vars: Map<String, Value>,
    pub deps: Vec<RoleRef>,
}

pub struct Reader {
    /// Paths in the report are shown relative to this.
    pub base: PathBuf,
    pub roles_paths: Vec<PathBuf>,
    pub roles: BTreeMap<String, Role>,
}

/// Task keys that are not the module.
pub const TASK_KEYWORDS: &[&str] = &[
    "name",
    "when",
    "tags",
    "notify",
    "listen",
    "loop",
    "loop_control",
    "with_items",
    "with_list",
    "with_dict",
    "become",
    "become_user",
    "become_method",
    "register",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "delegate_to",
    "run_once",
    "no_log",
    "vars",
    "environment",
    "args",
    "check_mode",
    "diff",
    "retries",
    "until",
    "delay",
    "async",
    "poll",
    "throttle",
    "any_errors_fatal",
    "local_action",
    "action",
    "timeout",
    "collections",
    "module_defaults",
    "ignore_unreachable",
    "debugger",
    "delegate_facts",
    "connection",
    "remote_user",
    "port",
    "with_fileglob",
    "with_first_found",
    "with_together",
    "with_nested",
    "with_sequence",
    "with_subelements",
    "with_lines",
    "with_indexed_items",
    "with_random_choice",
];

fn is_keyword(k: &str) -> bool {
    TASK_KEYWORDS.contains(&k) || k.starts_with("with_")
}

impl Reader {
    pub fn show(&self, p: &Path) -> String {
        p.strip_prefix(&self.base)
            .unwrap_or(p)
            .display()
            .to_string()
    }

    fn src(&self, file: &Path, n: &Node) -> Src {
        Src {
            file: self.show(file),
            line: n.line,
        }
    }

    fn read(&self, file: &Path) -> Result<Node, Diag> {
        let text = yaml::read_text(file)?;
        yaml::parse_node_vaults(file, &text)
    }

    pub fn playbook(&mut self, file: &Path, depth: usize) -> Result<Vec<Play>, Diag> {
        let node = self.read(file)?;
        let Some(items) = node.as_seq() else {
            return Err(Diag::at(
                node.loc(file),
                format!("a playbook is a list of plays, found {}", node.kind_name()),
            ));
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut plays = Vec::new();
        for p in items {
            let Some(map) = p.as_map() else {
                return Err(Diag::at(p.loc(file), "a play is a map"));
            };
            if let Some(imp) = p
                .get("import_playbook")
                .or(p.get("ansible.builtin.import_playbook"))
            {
                let Some(path) = imp.as_str().filter(|s| !s.contains("{{")) else {
                    return Err(Diag::at(
                        imp.loc(file),
                        "`import_playbook` needs a literal path",
                    ));
                };
                if depth > 10 {
                    return Err(Diag::at(imp.loc(file), "import_playbook nested too deep"));
                }
                plays.extend(self.playbook(&dir.join(path), depth + 1)?);
                continue;
            }
            let mut play = Play {
                src: self.src(file, p),
                name: p.get("name").and_then(|n| n.as_str()).map(String::from),
                keys: Vec::new(),
                vars_files: Vec::new(),
                pre_tasks: Vec::new(),
                roles: Vec::new(),
                tasks: Vec::new(),
                post_tasks: Vec::new(),
                handlers: Vec::new(),
            };
            for (k, v) in map {
                let key = k.key_string();
                match key.as_str() {
                    "pre_tasks" | "tasks" | "post_tasks" | "handlers" => {
                        let items = self.task_list(file, v, dir, &Inherit::default(), 0)?;
                        match key.as_str() {
                            "pre_tasks" => play.pre_tasks = items,
                            "tasks" => play.tasks = items,
                            "post_tasks" => play.post_tasks = items,
                            _ => play.handlers = items,
                        }
                    }
                    "roles" => {
                        for r in v
                            .as_seq()
                            .ok_or_else(|| Diag::at(v.loc(file), "`roles` must be a list"))?
                        {
                            play.roles.push(self.role_ref(file, r)?);
                        }
                    }
                    "vars_files" => {
                        let list: Vec<&Node> = match &v.v {
                            NodeV::Seq(s) => s.iter().collect(),
                            _ => vec![v],
                        };
                        for f in list {
                            let src = self.src(file, f);
                            let r = match f.as_str() {
                                Some(s) if !s.contains("{{") => self.vars_file(&dir.join(s))?,
                                _ => Err(VarsFileLeftOut::ChosenAtRunTime),
                            };
                            play.vars_files.push((src, r));
                        }
                    }
                    _ => play.keys.push((key, v.to_json())),
                }
            }
            plays.push(play);
        }
        Ok(plays)
    }

    /// A vars file's map; an ansible-vault file or value is reported, not opened.
    fn vars_file(&self, file: &Path) -> Result<Result<Map<String, Value>, VarsFileLeftOut>, Diag> {
        let text = yaml::read_text(file)?;
        if text.trim_start().starts_with("$ANSIBLE_VAULT") {
            return Ok(Err(VarsFileLeftOut::AnsibleVault));
        }
        let n = yaml::parse_node_vaults(file, &text)?;
        if n.has_vault() {
            return Ok(Err(VarsFileLeftOut::VaultValues));
        }
        match n.to_json() {
            Value::Object(m) => Ok(Ok(m)),
            Value::Null => Ok(Ok(Map::new())),
            _ => Err(Diag::at(n.loc(file), "a vars file is a map")),
        }
    }

    fn role_ref(&self, file: &Path, r: &Node) -> Result<RoleRef, Diag> {
        let mut rr = RoleRef {
            src: self.src(file, r),
            name: String::new(),
            vars: Map::new(),
            tags: Vec::new(),
            when: Vec::new(),
            unknown: Vec::new(),
        };
        if let Some(s) = r.as_str() {
            rr.name = s.to_string();
            return Ok(rr);
        }
        let Some(map) = r.as_map() else {
            return Err(Diag::at(
                r.loc(file),
                "a role entry is a name or a map with `role`",
            ));
        };
        for (k, v) in map {
            match k.key_string().as_str() {
                "role" | "name" => rr.name = v.as_str().unwrap_or_default().to_string(),
                "vars" => {
                    if let Value::Object(m) = v.to_json() {
                        rr.vars.extend(m)
                    }
                }
                "tags" => rr.tags = strings(&v.to_json()),
                "when" => rr.when = strings(&v.to_json()),
                "become" => {}
                other => {
                    // Role params: Ansible passes any other key as a variable.
                    if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !is_keyword(other)
                    {
                        rr.vars.insert(other.to_string(), v.to_json());
                    } else {
                        rr.unknown.push(other.to_string());
                    }
                }
            }
        }
        if rr.name.is_empty() || rr.name.contains("{{") {
            return Err(Diag::at(
                r.loc(file),
                "role entry needs a literal `role:` name",
            ));
        }
        Ok(rr)
    }

    /// Read role NAME (and its dependencies) once.
    pub fn role(&mut self, name: &str, at: &Src) -> Result<(), Diag> {
        if self.roles.contains_key(name) {
            return Ok(());
        }
        let Some(dir) = self
            .roles_paths
            .iter()
            .map(|p| p.join(name))
            .find(|d| d.is_dir())
        else {
            return Err(Diag::at(
                Loc::new(&at.file, at.line, 1),
                format!(
                    "role `{name}` not found in {}",
                    self.roles_paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .help("give the folder holding it with --roles-path"));
        };
        let main = |sub: &str| {
            ["main.yml", "main.yaml"]
                .iter()
                .map(|m| dir.join(sub).join(m))
                .find(|p| p.is_file())
        };
        let mut role = Role {
            dir: dir.clone(),
            tasks: Vec::new(),
            handlers: Vec::new(),
            defaults: main("defaults"),
            vars: Map::new(),
            deps: Vec::new(),
        };
        // Inserted first: a dependency cycle stops here instead of recursing.
        self.roles.insert(name.to_string(), role.clone());
        if let Some(f) = main("tasks") {
            let n = self.read(&f)?;
            role.tasks = self.task_list(&f, &n, &dir.join("tasks"), &Inherit::default(), 0)?;
        }
        if let Some(f) = main("handlers") {
            let n = self.read(&f)?;
            role.handlers =
                self.task_list(&f, &n, &dir.join("handlers"), &Inherit::default(), 0)?;
        }
        if let Some(f) = main("vars") {
            match self.vars_file(&f)? {
                Ok(m) => role.vars = m,
                Err(why) => {
                    return Err(Diag::at(Loc::file_only(&f), why.to_string()));
                }
            }
        }
        if let Some(f) = main("meta") {
            let n = self.read(&f)?;
            if let Some(deps) = n.get("dependencies").and_then(|d| d.as_seq()) {
                for d in deps {
                    role.deps.push(self.role_ref(&f, d)?);
                }
            }
        }
        for d in role.deps.clone() {
            self.role(&d.name, &d.src)?;
        }
        self.roles.insert(name.to_string(), role);
        Ok(())
    }

    /// A list of tasks, blocks unrolled and static includes read in place. `dir` is where an
    /// include's relative path is looked up.
    fn task_list(
        &self,
        file: &Path,
        node: &Node,
        dir: &Path,
        inh: &Inherit,
        depth: usize,
    ) -> Result<Vec<Item>, Diag> {
        let mut out = Vec::new();
        let items = match &node.v {
            NodeV::Null => return Ok(out),
            NodeV::Seq(s) => s,
            _ => {
                return Err(Diag::at(
                    node.loc(file),
                    format!("a task list is a list, found {}", node.kind_name()),
                ))
            }
        };
        for t in items {
            self.task(file, t, dir, inh, depth, &mut out)?;
        }
        Ok(out)
    }

    fn task(
        &self,
        file: &Path,
        t: &Node,
        dir: &Path,
        inh: &Inherit,
        depth: usize,
        out: &mut Vec<Item>,
    ) -> Result<(), Diag> {
        let Some(map) = t.as_map() else {
            return Err(Diag::at(
                t.loc(file),
                format!("a task is a map, found {}", t.kind_name()),
            ));
        };
        let src = self.src(file, t);
        let name = t.get("name").and_then(|n| n.as_str()).map(String::from);
        let keys: Vec<(String, Value)> = map
            .iter()
            .map(|(k, v)| (k.key_string(), v.to_json()))
            .collect();
        let left = |module: &str, why: String| Item::LeftOut {
            src: src.clone(),
            name: name.clone(),
            module: module.to_string(),
            why,
        };
        // What this task or block hands down.
        let mut down = inh.clone();
        for (k, v) in &keys {
            match k.as_str() {
                "when" => down.when.extend(strings(v)),
                "tags" => down.tags.extend(strings(v)),
                "name" | "block" | "rescue" | "always" => {}
                // The include's own module key is not handed down.
                _ if !is_keyword(k) => {}
                _ => down.keys.push((k.clone(), v.clone())),
            }
        }
        if t.get("block").is_some() {
            let has_rescue = t.get("rescue").is_some();
            let mut body = down.clone();
            if has_rescue {
                body.notes.push(format!("its block's `rescue` ({src}) is left out: labctl stops a host at its first failure"));
            }
            out.extend(self.task_list(file, t.get("block").unwrap(), dir, &body, depth)?);
            if let Some(r) = t.get("rescue") {
                for i in r.as_seq().unwrap_or_default() {
                    out.push(Item::LeftOut {
                        src: self.src(file, i),
                        name: i.get("name").and_then(|n| n.as_str()).map(String::from),
                        module: "rescue".into(),
                        why: "runs only when its block failed: labctl stops a host at its first failure".into(),
                    });
                }
            }
            if let Some(a) = t.get("always") {
                let mut always = down.clone();
                always
                    .notes
                    .push("from a block's `always`: runs only when the block succeeded".into());
                out.extend(self.task_list(file, a, dir, &always, depth)?);
            }
            return Ok(());
        }
        let module = keys
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| !is_keyword(k));
        let Some(module) = module else {
            out.push(left("(none)", "no module in this task".into()));
            return Ok(());
        };
        let short = super::modules::short_name(module);
        match short {
            "include_tasks" | "import_tasks" => {
                let path = match t.get(module).map(|n| &n.v) {
                    Some(NodeV::Str(s)) => Some(s.clone()),
                    Some(NodeV::Map(_)) => t
                        .get(module)
                        .and_then(|n| n.get("file"))
                        .and_then(|f| f.as_str())
                        .map(String::from),
                    _ => None,
                };
                if keys
                    .iter()
                    .any(|(k, _)| k == "loop" || k.starts_with("with_"))
                {
                    out.push(left(module, "an include in a loop runs its tasks once per item: labctl loops single resources".into()));
                    return Ok(());
                }
                let Some(path) = path.filter(|p| !p.contains("{{")) else {
                    out.push(left(
                        module,
                        "the file is chosen at run time (a templated path)".into(),
                    ));
                    return Ok(());
                };
                let f = dir.join(&path);
                if depth > 20 {
                    return Err(Diag::at(t.loc(file), "includes nested too deep"));
                }
                let n = self.read(&f)?;
                let fdir = f.parent().unwrap_or(dir).to_path_buf();
                // Ansible looks in the role's tasks/ first; the including file's folder is the
                // same for a role's own includes.
                out.extend(self.task_list(&f, &n, &fdir, &down, depth + 1)?);
            }
            "include_role" | "import_role" => {
                let arg = t.get(module);
                let name = arg.and_then(|a| a.get("name")).and_then(|n| n.as_str());
                let extra = arg.and_then(|a| a.as_map()).map_or(0, |m| m.len());
                match name {
                    Some(n) if !n.contains("{{") && extra == 1 => {
                        if keys
                            .iter()
                            .any(|(k, _)| k == "loop" || k.starts_with("with_"))
                        {
                            out.push(left(
                                module,
                                "a role in a loop: labctl runs a role once".into(),
                            ));
                        } else {
                            out.push(Item::IncludeRole {
                                src,
                                name: n.to_string(),
                                inherit: down,
                            });
                        }
                    }
                    _ => out.push(left(
                        module,
                        "only a literal `name` (no tasks_from, vars, …) maps to a labctl role"
                            .into(),
                    )),
                }
            }
            _ => out.push(Item::Task(Task {
                src,
                name,
                keys,
                inherit: inh.clone(),
            })),
        }
        Ok(())
    }
}

/// A string or a list of strings (`tags: a, b` splits at commas, as Ansible does); a bool
/// becomes its word.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}
