//! Site files and role folders → typed, positioned specs. Roles are data.
//!
//! `site.yml` is an ordered list of plays (`name`, `hosts`, `vars`, `roles`). A role is
//! `roles/NAME/role.yml` (`resources:` and `handlers:`), `defaults.yml`, `templates/`, `files/`.
//! A resource entry is a map with exactly one type key plus the common keys below.

pub mod acme;
pub mod environments;
pub mod select;
pub mod sources;
pub mod vars;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::error::{Diag, Diags, Loc};
use crate::inventory::{vars_from_node, VarLayer};
use crate::yaml::{self, Node, NodeV};

#[derive(Debug, Clone)]
pub struct Site {
    /// The folder holding site.yml: roles/, values/ and templates are found from here.
    pub root: PathBuf,
    pub plays: Vec<Play>,
    pub roles: IndexMap<String, Role>,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    /// Rolling batches for this play on apply (`serial: 1` = one host at a time).
    pub serial: Option<usize>,
    /// Stop the whole run when more than this percentage of the play's hosts failed
    /// (`max_fail_percentage`; `any_errors_fatal: true` is 0).
    pub max_fail_percent: Option<u8>,
    pub hosts: String,
    pub hosts_loc: Loc,
    pub vars: VarLayer,
    pub roles: Vec<RoleRef>,
    /// Only the first selected host runs this play (cluster-wide work on one k3s server).
    pub run_once: bool,
}

#[derive(Debug, Clone)]
pub struct RoleRef {
    pub name: String,
    pub tags: Vec<String>,
    pub vars: VarLayer,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub dir: PathBuf,
    pub defaults: VarLayer,
    pub resources: Vec<Entry>,
    pub handlers: Vec<Entry>,
    /// `per_environment: true` in role.yml: `-e target_environment=NAME` applies that
    /// environment's vars to this role. Every other role is shared by all environments and never
    /// sees them (monitoring and backups keep watching production whatever a run targets).
    pub per_environment: bool,
}

/// One resource (or handler) entry, not yet rendered.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    pub loc: Loc,
    pub kind: String,
    /// The spec under the type key, rendered per host later.
    pub spec: Node,
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// All must be true (a list is an AND, as in Ansible).
    pub when: Vec<String>,
    pub notify: Vec<(String, Loc)>,
    /// `loop:` a list or a `"{{ expr }}"`; each item is bound to `item`.
    pub loop_: Option<Node>,
    /// Only the play's first selected host runs it (as Ansible's `run_once`).
    pub run_once: bool,
}

/// The keys a resource entry may have besides its type key (the JSON Schema lists the same).
pub const COMMON_KEYS: &[&str] = &["name", "tags", "when", "notify", "loop", "run_once"];
/// The keys of a play (`read_play` matches these; the JSON Schema lists the same).
pub const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "vars",
    "roles",
    "serial",
    "max_fail_percentage",
    "any_errors_fatal",
    "run_once",
];

impl Site {
    pub fn load(path: &Path) -> Result<Site, Diags> {
        let mut diags = Diags::default();
        let root = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let node = yaml::read_node(path).map_err(Diags::from)?;
        let mut site = Site {
            root: root.clone(),
            plays: Vec::new(),
            roles: IndexMap::new(),
        };
        let Some(plays) = node.as_seq() else {
            return Err(Diag::at(
                node.loc(path),
                format!("a site file is a list of plays, found {}", node.kind_name()),
            )
            .into());
        };
        for p in plays {
            let (play, d) = read_play(path, p);
            diags.extend(d);
            if let Some(play) = play {
                site.plays.push(play);
            }
        }
        let wanted: Vec<(String, Loc)> = site
            .plays
            .iter()
            .flat_map(|p| p.roles.iter().map(|r| (r.name.clone(), r.loc.clone())))
            .collect();
        let mut tried = std::collections::BTreeSet::new();
        for (name, loc) in wanted {
            if !tried.insert(name.clone()) {
                continue;
            }
            match Role::load(&root, &name) {
                Ok(Some(role)) => {
                    site.roles.insert(name, role);
                }
                Ok(None) => diags.push(Diag::at(
                    loc,
                    format!(
                        "role `{name}` not found (looked for {})",
                        root.join("roles").join(&name).join("role.yml").display()
                    ),
                )),
                Err(d) => diags.extend(d),
            }
        }
        diags.into_result().map(|_| site)
    }
}

/// A play and its problems: a play with a bad key still has its roles checked.
fn read_play(file: &Path, node: &Node) -> (Option<Play>, Diags) {
    let mut diags = Diags::default();
    let Some(entries) = node.as_map() else {
        return (
            None,
            Diag::at(
                node.loc(file),
                format!(
                    "a play is a map with `hosts` and `roles`, found {}",
                    node.kind_name()
                ),
            )
            .into(),
        );
    };
    let mut play = Play {
        name: String::new(),
        serial: None,
        max_fail_percent: None,
        hosts: String::new(),
        hosts_loc: node.loc(file),
        vars: VarLayer::default(),
        roles: Vec::new(),
        run_once: false,
    };
    let mut has_hosts = false;
    for (k, v) in entries {
        match k.key_string().as_str() {
            "name" => {
                play.name = scalar(file, v, "name").unwrap_or_else(|d| {
                    diags.push(d);
                    String::new()
                })
            }
            "hosts" => match scalar(file, v, "hosts") {
                Ok(h) => {
                    play.hosts = h;
                    play.hosts_loc = v.loc(file);
                    has_hosts = true;
                }
                Err(d) => diags.push(d),
            },
            "vars" => match vars_from_node(file, v) {
                Ok(l) => play.vars = l,
                Err(d) => diags.push(d),
            },
            "max_fail_percentage" => match &v.v {
                NodeV::Int(n) if (0..=100).contains(n) => play.max_fail_percent = Some(*n as u8),
                _ => diags.push(Diag::at(
                    v.loc(file),
                    "`max_fail_percentage` must be a number from 0 to 100",
                )),
            },
            "run_once" => match &v.v {
                NodeV::Bool(b) => play.run_once = *b,
                _ => diags.push(Diag::at(v.loc(file), "`run_once` must be true or false")),
            },
            "any_errors_fatal" => match &v.v {
                NodeV::Bool(true) => play.max_fail_percent = Some(0),
                NodeV::Bool(false) => {}
                _ => diags.push(Diag::at(
                    v.loc(file),
                    "`any_errors_fatal` must be true or false",
                )),
            },
            "serial" => match &v.v {
                NodeV::Int(n) if *n > 0 => play.serial = Some(*n as usize),
                _ => diags.push(Diag::at(
                    v.loc(file),
                    "`serial` must be a positive number of hosts per batch",
                )),
            },
            "roles" => match v.as_seq() {
                Some(items) => {
                    for item in items {
                        match read_role_ref(file, item) {
                            Ok(r) => play.roles.push(r),
                            Err(d) => diags.push(d),
                        }
                    }
                }
                None => diags.push(Diag::at(
                    v.loc(file),
                    format!("`roles` must be a list, found {}", v.kind_name()),
                )),
            },
            other => diags.push(
                Diag::at(k.loc(file), format!("unknown key `{other}` in a play")).help(format!(
                    "a play has {}",
                    PLAY_KEYS
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
        }
    }
    if !has_hosts {
        diags.push(Diag::at(node.loc(file), "play has no `hosts:` pattern"));
    }
    if play.name.is_empty() {
        play.name = play.hosts.clone();
    }
    (Some(play), diags)
}

fn read_role_ref(file: &Path, node: &Node) -> Result<RoleRef, Diag> {
    if let Some(name) = node.as_str() {
        return Ok(RoleRef {
            name: name.to_string(),
            tags: Vec::new(),
            vars: VarLayer::default(),
            loc: node.loc(file),
        });
    }
    let Some(entries) = node.as_map() else {
        return Err(Diag::at(
            node.loc(file),
            "a role entry is a name or a map with `role`",
        ));
    };
    let mut r = RoleRef {
        name: String::new(),
        tags: Vec::new(),
        vars: VarLayer::default(),
        loc: node.loc(file),
    };
    for (k, v) in entries {
        match k.key_string().as_str() {
            "role" => {
                r.name = scalar(file, v, "role")?;
                r.loc = v.loc(file);
            }
            "tags" => r.tags = string_list(file, v, "tags")?,
            "vars" => r.vars = vars_from_node(file, v)?,
            other => {
                return Err(Diag::at(
                    k.loc(file),
                    format!("unknown key `{other}` in a role entry"),
                )
                .help("use `role`, `tags` and `vars`"))
            }
        }
    }
    if r.name.is_empty() {
        return Err(Diag::at(node.loc(file), "role entry has no `role:` name"));
    }
    Ok(r)
}

impl Role {
    /// None when the folder does not exist.
    pub fn load(root: &Path, name: &str) -> Result<Option<Role>, Diags> {
        let dir = root.join("roles").join(name);
        let file = dir.join("role.yml");
        if !file.is_file() {
            return Ok(None);
        }
        let mut diags = Diags::default();
        let node = yaml::read_node(&file).map_err(Diags::from)?;
        let mut role = Role {
            name: name.to_string(),
            dir: dir.clone(),
            defaults: VarLayer::default(),
            resources: Vec::new(),
            handlers: Vec::new(),
            per_environment: false,
        };
        for dname in ["defaults.yml", "defaults.yaml"] {
            let d = dir.join(dname);
            if d.is_file() {
                match yaml::read_node(&d).and_then(|n| vars_from_node(&d, &n)) {
                    Ok(l) => role.defaults = l,
                    Err(e) => diags.push(e),
                }
            }
        }
        match &node.v {
            NodeV::Null => {}
            NodeV::Map(entries) => {
                for (k, v) in entries {
                    let key = k.key_string();
                    match key.as_str() {
                        "resources" | "handlers" => {
                            let Some(items) = v.as_seq() else {
                                diags.push(Diag::at(v.loc(&file), format!("`{key}` must be a list, found {}", v.kind_name())));
                                continue;
                            };
                            for item in items {
                                match read_entry(&file, item, key == "handlers") {
                                    Ok(e) if key == "handlers" => role.handlers.push(e),
                                    Ok(e) => role.resources.push(e),
                                    Err(d) => diags.push(d),
                                }
                            }
                        }
                        "per_environment" => match v.to_json() {
                            serde_json::Value::Bool(b) => role.per_environment = b,
                            _ => diags.push(Diag::at(v.loc(&file), format!("`per_environment` must be true or false, found {}", v.kind_name()))),
                        },
                        other => diags.push(Diag::at(k.loc(&file), format!("unknown key `{other}` in role.yml")).help("a role has `resources:`, `handlers:` and `per_environment:`; defaults go in defaults.yml")),
                    }
                }
            }
            _ => diags.push(Diag::at(
                node.loc(&file),
                "role.yml must be a map with `resources:` and `handlers:`",
            )),
        }
        // Every notify must name a handler of this role.
        for r in &role.resources {
            for (n, loc) in &r.notify {
                if !role
                    .handlers
                    .iter()
                    .any(|h| h.name.as_deref() == Some(n.as_str()))
                {
                    let known: Vec<String> = role
                        .handlers
                        .iter()
                        .filter_map(|h| h.name.clone())
                        .collect();
                    diags.push(
                        Diag::at(
                            loc.clone(),
                            format!("notify names no handler `{n}` in role `{name}`"),
                        )
                        .help(if known.is_empty() {
                            "this role has no handlers".to_string()
                        } else {
                            format!("handlers: {}", known.join(", "))
                        }),
                    );
                }
            }
        }
        diags.into_result().map(|_| Some(role))
    }
}

fn read_entry(file: &Path, node: &Node, handler: bool) -> Result<Entry, Diag> {
    let Some(entries) = node.as_map() else {
        return Err(Diag::at(
            node.loc(file),
            format!(
                "a resource is a map with one type key ({}), found {}",
                crate::resources::KINDS.join(", "),
                node.kind_name()
            ),
        ));
    };
    let mut e = Entry {
        file: file.to_path_buf(),
        loc: node.loc(file),
        kind: String::new(),
        spec: node.clone(),
        name: None,
        tags: Vec::new(),
        when: Vec::new(),
        notify: Vec::new(),
        loop_: None,
        run_once: false,
    };
    for (k, v) in entries {
        let key = k.key_string();
        match key.as_str() {
            "name" => e.name = Some(scalar(file, v, "name")?),
            "tags" => e.tags = string_list(file, v, "tags")?,
            "when" => e.when = string_list(file, v, "when")?,
            "notify" => {
                let items: Vec<&Node> = match &v.v {
                    NodeV::Seq(s) => s.iter().collect(),
                    _ => vec![v],
                };
                for i in items {
                    e.notify.push((scalar(file, i, "notify")?, i.loc(file)));
                }
                if handler {
                    return Err(Diag::at(
                        k.loc(file),
                        "handlers cannot notify other handlers",
                    ));
                }
            }
            "loop" => e.loop_ = Some(v.clone()),
            "run_once" => match &v.v {
                NodeV::Bool(b) => e.run_once = *b,
                _ => return Err(Diag::at(v.loc(file), "`run_once` must be true or false")),
            },
            _ if crate::resources::KINDS.contains(&key.as_str()) => {
                if !e.kind.is_empty() {
                    return Err(Diag::at(
                        k.loc(file),
                        format!(
                            "a resource has exactly one type key; found `{}` and `{key}`",
                            e.kind
                        ),
                    ));
                }
                e.kind = key;
                e.spec = v.clone();
                e.loc = k.loc(file);
            }
            _ => {
                return Err(
                    Diag::at(k.loc(file), format!("unknown key `{key}` in a resource")).help(
                        format!(
                            "types: {}; common keys: {}",
                            crate::resources::KINDS.join(", "),
                            COMMON_KEYS.join(", ")
                        ),
                    ),
                );
            }
        }
    }
    if e.kind.is_empty() {
        return Err(
            Diag::at(node.loc(file), "resource has no type key").help(format!(
                "add one of: {}",
                crate::resources::KINDS.join(", ")
            )),
        );
    }
    if handler && e.name.is_none() {
        return Err(Diag::at(
            node.loc(file),
            "a handler needs a `name` (that is what `notify` refers to)",
        ));
    }
    Ok(e)
}

fn scalar(file: &Path, n: &Node, what: &str) -> Result<String, Diag> {
    match &n.v {
        NodeV::Str(s) => Ok(s.clone()),
        NodeV::Int(_) | NodeV::Float(_) | NodeV::Bool(_) => Ok(n.key_string()),
        _ => Err(Diag::at(
            n.loc(file),
            format!("`{what}` must be a string, found {}", n.kind_name()),
        )),
    }
}

fn string_list(file: &Path, n: &Node, what: &str) -> Result<Vec<String>, Diag> {
    match &n.v {
        NodeV::Seq(items) => items.iter().map(|i| scalar(file, i, what)).collect(),
        NodeV::Str(s) if what == "tags" => Ok(s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()),
        _ => Ok(vec![scalar(file, n, what)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fsutil::write_rel as write;

    /// Every key PLAY_KEYS and COMMON_KEYS list (and so the JSON Schema) is one the parser
    /// takes, and an unlisted one is refused.
    #[test]
    fn listed_keys_are_the_parsers_keys() {
        let sample = |k: &str| match k {
            "name" => "p",
            "hosts" => "all",
            "vars" => "{a: 1}",
            "roles" => "[r1]",
            "serial" | "max_fail_percentage" => "1",
            "any_errors_fatal" | "run_once" => "true",
            "tags" => "[t]",
            "when" => "\"true\"",
            "notify" => "h",
            "loop" => "[1]",
            other => panic!("no sample value for `{other}`: add one here"),
        };
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "roles/r1/role.yml",
            "resources: []\nhandlers:\n  - name: h\n    command: {run: 'true'}\n",
        );
        let load = |site: &str, role: &str| -> String {
            write(d.path(), "site.yml", site);
            write(d.path(), "roles/r1/role.yml", role);
            match Site::load(&d.path().join("site.yml")) {
                Ok(_) => String::new(),
                Err(e) => {
                    e.0.iter()
                        .map(|x| x.render("error"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
        };
        let handler = "handlers:\n  - name: h\n    command: {run: 'true'}\n";
        for k in PLAY_KEYS {
            let site = format!("- hosts: all\n  roles: [r1]\n  {k}: {}\n", sample(k));
            let site = if ["hosts", "roles"].contains(k) {
                format!(
                    "- {k}: {}\n  {}\n",
                    sample(k),
                    if *k == "hosts" {
                        "roles: [r1]"
                    } else {
                        "hosts: all"
                    }
                )
            } else {
                site
            };
            let e = load(&site, &format!("resources: []\n{handler}"));
            assert!(!e.contains("unknown key"), "play key `{k}`: {e}");
        }
        for k in COMMON_KEYS {
            let role = format!(
                "resources:\n  - file: {{path: /x, content: x}}\n    {k}: {}\n{handler}",
                sample(k)
            );
            let e = load("- hosts: all\n  roles: [r1]\n", &role);
            assert!(!e.contains("unknown key"), "entry key `{k}`: {e}");
        }
        let e = load("- hosts: all\n  become: true\n", "resources: []\n");
        assert!(e.contains("unknown key `become`"), "{e}");
    }

    #[test]
    fn loads_plays_roles_and_entries() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "site.yml", "- name: base\n  hosts: lab\n  roles:\n    - r1\n    - role: r1\n      tags: [x]\n      vars: {a: 1}\n");
        write(d.path(), "roles/r1/defaults.yml", "port: 22\n");
        write(
            d.path(),
            "roles/r1/role.yml",
            "resources:\n  - name: motd\n    file: {path: /etc/motd, content: hi}\n    notify: bump\n    tags: t1\nhandlers:\n  - name: bump\n    command: {run: 'true'}\n",
        );
        let s = Site::load(&d.path().join("site.yml")).unwrap();
        assert_eq!(s.plays[0].roles.len(), 2);
        assert_eq!(s.plays[0].roles[1].tags, vec!["x"]);
        let r = &s.roles["r1"];
        assert_eq!(r.resources[0].kind, "file");
        assert_eq!(r.resources[0].notify[0].0, "bump");
        assert_eq!((r.resources[0].loc.line, r.resources[0].loc.col), (3, 5));
        assert_eq!(r.defaults.values["port"], serde_json::json!(22));
    }

    #[test]
    fn reports_every_problem_with_its_place() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "site.yml",
            "- hosts: lab\n  roles: [r1, nosuch]\n  become: true\n",
        );
        write(d.path(), "roles/r1/role.yml", "resources:\n  - file: {path: /x}\n    notfy: h\n  - file: {path: /y}\n    notify: missing\n  - {}\n");
        let e = Site::load(&d.path().join("site.yml")).unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains("site.yml:3:3: unknown key `become` in a play"),
            "{all}"
        );
        assert!(
            all.contains("site.yml:2:15: role `nosuch` not found"),
            "{all}"
        );
        assert!(all.contains("role.yml:3:5: unknown key `notfy`"), "{all}");
        assert!(
            all.contains("role.yml:6:5: resource has no type key"),
            "{all}"
        );
    }

    #[test]
    fn notify_must_name_a_handler() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "site.yml", "- hosts: all\n  roles: [r1]\n");
        write(
            d.path(),
            "roles/r1/role.yml",
            "resources:\n  - file: {path: /y}\n    notify: [missing]\n",
        );
        let e = Site::load(&d.path().join("site.yml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("role.yml:3:14: notify names no handler `missing`"),
            "{e}"
        );
    }
}
