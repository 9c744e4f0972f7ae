//! Ansible-format YAML inventories, read as they are.
//!
//! `all:` → `hosts:`, `children:`, `vars:`; other top-level keys are groups under `all`.
//! `group_vars/` and `host_vars/` beside the inventory file hold `NAME.yml`, `NAME.yaml` or a
//! folder `NAME/` of such files; `*.age` files there are vaults whose vars are secret.

mod ini;
pub mod pattern;
pub mod pyliteral;
pub mod vars;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use crate::error::{Diag, Diags, Loc};
use crate::secret::Secret;
use crate::yaml::{self, Node, NodeV};
pub use vars::VarLayer;

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub hosts: Vec<String>,
    /// Inline vars from the inventory file, then group_vars/ files over them.
    pub vars: VarLayer,
    pub loc: Option<Loc>,
}

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub name: String,
    /// Groups listing this host directly.
    pub groups: Vec<String>,
    pub vars: VarLayer,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: IndexMap<String, Host>,
    pub groups: IndexMap<String, Group>,
    /// Vaults that could not be opened (no key or password given), where (a file, or the
    /// file:line of an ansible-vault value) and why. `check` reports them; plan/apply refuse.
    pub unopened_vaults: Vec<(Loc, String)>,
}

/// How vaults are opened while loading: a trait object keeps this module free of key handling.
/// A plain closure over a path opens age files only (tests, commands that need no secrets).
pub type Decrypt<'a> = &'a dyn Open;

pub trait Open {
    /// An age-encrypted file (`*.age`).
    fn age(&self, file: &Path) -> Result<Secret<Vec<u8>>, VaultFail>;
    /// One ansible-vault envelope (a `!vault` value, or a whole file).
    fn ansible(&self, _envelope: &str) -> Result<Secret<Vec<u8>>, VaultFail> {
        Err(VaultFail::NoKey(
            crate::vault::password::Passwords::no_password_reason(),
        ))
    }
    /// A SOPS document, decrypted in place (its `sops:` block removed); returns the top-level
    /// keys that held encrypted values.
    fn sops(&self, _file: &Path, _doc: &mut Node) -> Result<BTreeSet<String>, VaultFail> {
        Err(VaultFail::NoKey("no age identity for SOPS files".into()))
    }
}

impl<F: Fn(&Path) -> Result<Secret<Vec<u8>>, VaultFail>> Open for F {
    fn age(&self, file: &Path) -> Result<Secret<Vec<u8>>, VaultFail> {
        self(file)
    }
}

/// What a vault problem's message starts with, saying which kind of vault it is (an age vault
/// is named by its file). Such problems are marked `Diag::vault`: they exit 4, not 3.
const ANSIBLE_VAULT_DIAG: &str = "ansible-vault: ";
const SOPS_DIAG: &str = "SOPS: ";

#[derive(Debug, Clone)]
pub enum VaultFail {
    /// No identity available at all: `check` goes on with placeholders.
    NoKey(String),
    /// A real problem (wrong key, tampered file): always an error.
    Error(String),
}

/// Connection settings for one host, from the `ansible_*` vars.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Conn {
    pub address: String,
    /// None: whatever ~/.ssh/config (or ssh's default) says.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub become_: bool,
    /// `ansible_connection: local` runs scripts on the controller (tests, localhost).
    pub local: bool,
}

impl Inventory {
    pub fn load(path: &Path, decrypt: Decrypt) -> Result<Inventory, Diags> {
        let mut diags = Diags::default();
        let mut inv = Inventory {
            path: path.to_path_buf(),
            ..Default::default()
        };
        inv.groups.insert("all".into(), Group::default());
        inv.groups.insert(
            "ungrouped".into(),
            Group {
                parents: vec!["all".into()],
                ..Default::default()
            },
        );
        inv.groups["all"].children.push("ungrouped".into());

        // Ansible's rule: YAML for .yml/.yaml/.json, the INI format for anything else
        // (`hosts`, `hosts.ini`, `inventory`).
        if is_yaml_name(path) {
            inv.read_yaml(path, decrypt, &mut diags)?;
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Diags::from(Diag::at(
                    Loc::file_only(path),
                    format!("cannot read the inventory: {e}"),
                ))
            })?;
            ini::read(&mut inv, path, &text, &mut diags);
        }

        // A group no other group claims is a child of `all`, as Ansible reconciles it.
        let orphans: Vec<String> = inv
            .groups
            .iter()
            .filter(|(n, g)| n.as_str() != "all" && g.parents.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for g in orphans {
            inv.link("all", &g);
        }

        // Hosts listed in no group other than `all` go to `ungrouped`, as in Ansible.
        let ungrouped: Vec<String> = inv
            .hosts
            .values()
            .filter(|h| h.groups.iter().all(|g| g == "all"))
            .map(|h| h.name.clone())
            .collect();
        for h in ungrouped {
            inv.groups["ungrouped"].hosts.push(h.clone());
            inv.hosts[&h].groups.push("ungrouped".into());
        }

        let dir = path.parent().unwrap_or(Path::new("."));
        let group_names: Vec<String> = inv.groups.keys().cloned().collect();
        for g in group_names {
            let layer = inv.read_vars_dir(&dir.join("group_vars"), &g, decrypt, &mut diags);
            inv.groups[&g].vars.overlay(&layer);
        }
        let host_names: Vec<String> = inv.hosts.keys().cloned().collect();
        for h in host_names {
            let layer = inv.read_vars_dir(&dir.join("host_vars"), &h, decrypt, &mut diags);
            inv.hosts[&h].vars.overlay(&layer);
        }
        inv.check_vars_dirs(dir, &mut diags);
        if let Err(cycle) = inv.check_cycles() {
            diags.push(Diag::at(Loc::file_only(path), cycle));
        }
        diags.into_result().map(|_| inv)
    }

    fn read_yaml(&mut self, path: &Path, decrypt: Decrypt, diags: &mut Diags) -> Result<(), Diags> {
        let text = yaml::read_text(path)?;
        let mut node = yaml::parse_node_vaults(path, &text).map_err(Diags::from)?;
        self.open_vault_values(path, &mut node, decrypt)?;
        match &node.v {
            NodeV::Null => {}
            NodeV::Map(entries) => {
                for (k, v) in entries {
                    // Top-level groups other than `all` find their parent at reconciliation.
                    self.read_group(path, &k.key_string(), k, v, None, diags);
                }
            }
            _ => diags.push(Diag::at(
                node.loc(path),
                format!(
                    "an inventory must be a map of groups (like `all:`), found {}",
                    node.kind_name()
                ),
            )),
        }
        Ok(())
    }

    /// Declare a group (first declaration wins for its location).
    fn ensure_group(&mut self, name: &str, loc: Loc) {
        let g = self.groups.entry(name.to_string()).or_default();
        if g.loc.is_none() {
            g.loc = Some(loc);
        }
    }

    /// Make `child` a child group of `parent` (both already declared).
    fn link(&mut self, parent: &str, child: &str) {
        let g = &mut self.groups[child];
        if !g.parents.iter().any(|x| x == parent) {
            g.parents.push(parent.to_string());
        }
        let pg = &mut self.groups[parent];
        if !pg.children.iter().any(|x| x == child) {
            pg.children.push(child.to_string());
        }
    }

    /// Put a host in a group, its vars over any it already had.
    fn add_host(&mut self, name: &str, group: &str, layer: &VarLayer) {
        let h = self.hosts.entry(name.to_string()).or_insert_with(|| Host {
            name: name.to_string(),
            ..Default::default()
        });
        h.vars.overlay(layer);
        if !h.groups.iter().any(|g| g == group) {
            h.groups.push(group.to_string());
        }
        let g = &mut self.groups[group];
        if !g.hosts.iter().any(|x| x == name) {
            g.hosts.push(name.to_string());
        }
    }

    fn read_group(
        &mut self,
        file: &Path,
        name: &str,
        key: &Node,
        node: &Node,
        parent: Option<&str>,
        diags: &mut Diags,
    ) {
        if !valid_name(name) {
            diags.push(Diag::at(
                key.loc(file),
                format!("`{name}` is not a valid group name (letters, digits, `_`, `-`)"),
            ));
            return;
        }
        self.ensure_group(name, key.loc(file));
        if let Some(p) = parent {
            self.link(p, name);
        }
        let entries = match &node.v {
            NodeV::Null => return,
            NodeV::Map(m) => m,
            _ => {
                diags.push(Diag::at(
                    node.loc(file),
                    format!(
                        "group `{name}` must be a map with `hosts`, `children` or `vars`, found {}",
                        node.kind_name()
                    ),
                ));
                return;
            }
        };
        for (k, v) in entries {
            match k.key_string().as_str() {
                "hosts" => match &v.v {
                    NodeV::Null => {}
                    NodeV::Map(hosts) => {
                        for (hk, hv) in hosts {
                            self.read_host(file, hk, hv, name, diags);
                        }
                    }
                    _ => diags.push(Diag::at(
                        v.loc(file),
                        format!(
                            "`hosts` of group `{name}` must be a map of host names, found {}",
                            v.kind_name()
                        ),
                    )),
                },
                "children" => match &v.v {
                    NodeV::Null => {}
                    NodeV::Map(children) => {
                        for (ck, cv) in children {
                            let cname = ck.key_string();
                            self.read_group(file, &cname, ck, cv, Some(name), diags);
                        }
                    }
                    _ => diags.push(Diag::at(
                        v.loc(file),
                        format!(
                            "`children` of group `{name}` must be a map of groups, found {}",
                            v.kind_name()
                        ),
                    )),
                },
                "vars" => match vars_from_node(file, v) {
                    Ok(layer) => self.groups[name].vars.overlay(&layer),
                    Err(d) => diags.push(d),
                },
                other => diags.push(
                    Diag::at(
                        k.loc(file),
                        format!("unknown key `{other}` in group `{name}`"),
                    )
                    .help("a group holds only `hosts:`, `children:` and `vars:`"),
                ),
            }
        }
    }

    fn read_host(&mut self, file: &Path, key: &Node, node: &Node, group: &str, diags: &mut Diags) {
        let pattern = key.key_string();
        // The YAML plugin expands `node[01:03]` and `host:2222` as the INI one does.
        let (names, port) = match ini::expand_host_pattern(&pattern) {
            Ok(x) => x,
            Err(e) => {
                diags.push(Diag::at(key.loc(file), e.to_string()));
                return;
            }
        };
        let mut layer = match &node.v {
            NodeV::Null => VarLayer::default(),
            _ => match vars_from_node(file, node) {
                Ok(l) => l,
                Err(d) => {
                    diags.push(d);
                    return;
                }
            },
        };
        if let Some(p) = port {
            layer
                .values
                .shift_insert(0, "ansible_port".into(), Value::from(p));
        }
        for name in names {
            if !valid_host_name(&name) {
                diags.push(Diag::at(
                    key.loc(file),
                    format!("`{name}` is not a valid host name"),
                ));
                return;
            }
            self.add_host(&name, group, &layer);
        }
    }

    /// group_vars/NAME.yml, NAME.yaml, NAME.yml.age, or NAME/ (all files inside, sorted).
    fn read_vars_dir(
        &mut self,
        base: &Path,
        name: &str,
        decrypt: Decrypt,
        diags: &mut Diags,
    ) -> VarLayer {
        let mut files: Vec<PathBuf> = Vec::new();
        for ext in ["yml", "yaml", "json", "yml.age", "yaml.age"] {
            let p = base.join(format!("{name}.{ext}"));
            if p.is_file() {
                files.push(p);
            }
        }
        let folder = base.join(name);
        if folder.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_file() && is_vars_file(p))
                        .collect()
                })
                .unwrap_or_default();
            inner.sort();
            files.extend(inner);
        }
        let mut layer = VarLayer::default();
        for f in files {
            match self.read_vars_file(&f, decrypt) {
                Ok(Some(l)) => layer.overlay(&l),
                Ok(None) => {}
                Err(d) => diags.extend(d),
            }
        }
        layer
    }

    fn read_vars_file(&mut self, f: &Path, decrypt: Decrypt) -> Result<Option<VarLayer>, Diags> {
        if f.extension().is_some_and(|e| e == "age") {
            // Every problem of an age vault is the vault's.
            return self.read_age_file(f, decrypt).map_err(|mut d| {
                d.0.iter_mut().for_each(|d| d.vault = true);
                d
            });
        }
        let text = yaml::read_text(f)?;
        if crate::vault::ansible::is_envelope(&text) {
            return Ok(self.read_ansible_vault_file(f, &text, decrypt)?);
        }
        let mut node = yaml::parse_node_vaults(f, &text)?;
        if crate::vault::sops::is_sops_document(&node) {
            let encrypted = match decrypt.sops(f, &mut node) {
                Ok(keys) => keys,
                Err(VaultFail::NoKey(why)) => {
                    self.unopened_vaults.push((Loc::file_only(f), why));
                    return Ok(None);
                }
                Err(VaultFail::Error(why)) => {
                    let d = Diag::at(Loc::file_only(f), format!("{SOPS_DIAG}{why}"));
                    return Err(d.vault().into());
                }
            };
            let mut layer = vars_from_node(f, &node)?;
            layer.secret.extend(encrypted);
            return Ok(Some(layer));
        }
        self.open_vault_values(f, &mut node, decrypt)?;
        Ok(Some(vars_from_node(f, &node)?))
    }

    fn read_age_file(&mut self, f: &Path, decrypt: Decrypt) -> Result<Option<VarLayer>, Diags> {
        let plain = match decrypt.age(f) {
            Ok(p) => p,
            Err(VaultFail::NoKey(why)) => {
                self.unopened_vaults.push((Loc::file_only(f), why));
                return Ok(None);
            }
            Err(VaultFail::Error(why)) => return Err(Diag::at(Loc::file_only(f), why).into()),
        };
        let text = std::str::from_utf8(plain.expose())
            .map_err(|_| Diag::at(Loc::file_only(f), "vault content is not UTF-8 text"))?;
        // Positions inside a vault are still useful (the user can `labctl vault view` it);
        // the error must not quote the line, and Diag::render never reads `.age` files.
        let node = yaml::parse_node(f, text).map_err(|mut d| {
            d.message = "invalid YAML inside the vault (see `labctl vault view`)".into();
            d
        })?;
        Ok(Some(secret_layer(f, &node)?))
    }

    /// A whole file encrypted with `ansible-vault encrypt`: all its vars are secret.
    fn read_ansible_vault_file(
        &mut self,
        f: &Path,
        text: &str,
        decrypt: Decrypt,
    ) -> Result<Option<VarLayer>, Diag> {
        let plain = match decrypt.ansible(text) {
            Ok(p) => p,
            Err(VaultFail::NoKey(why)) => {
                self.unopened_vaults.push((Loc::new(f, 1, 1), why));
                return Ok(None);
            }
            Err(VaultFail::Error(why)) => {
                return Err(
                    Diag::at(Loc::new(f, 1, 1), format!("{ANSIBLE_VAULT_DIAG}{why}")).vault(),
                )
            }
        };
        // The file on disk is ciphertext: a position inside the plaintext is named in the
        // message (`ansible-vault view` shows it), never rendered from the file.
        let text = std::str::from_utf8(plain.expose()).map_err(|_| {
            Diag::at(
                Loc::file_only(f),
                format!("{ANSIBLE_VAULT_DIAG}the decrypted file is not UTF-8 text"),
            )
            .vault()
        })?;
        let node = yaml::parse_node(f, text).map_err(|d| {
            let line = d.loc.as_ref().map_or(0, |l| l.line);
            Diag::at(
                Loc::file_only(f),
                format!("invalid YAML inside the ansible-vault file at line {line} (see `ansible-vault view`)"),
            )
        })?;
        secret_layer(f, &node).map(Some)
    }

    /// Open every `!vault` value in `node` in place. Without a password each is recorded as
    /// unopened (its file:line); a wrong password or a tampered value is an error at its line,
    /// all of them reported.
    fn open_vault_values(
        &mut self,
        f: &Path,
        node: &mut Node,
        decrypt: Decrypt,
    ) -> Result<(), Diags> {
        let mut diags = Diags::default();
        for (line, col, v) in node.vaults_mut() {
            let yaml::Vaulted::Sealed(envelope) = &*v else {
                continue;
            };
            match decrypt.ansible(envelope) {
                Ok(plain) => match String::from_utf8(plain.into_inner()) {
                    Ok(s) => *v = yaml::Vaulted::Open(Secret::new(s)),
                    Err(e) => {
                        drop(Secret::new(e.into_bytes()));
                        diags.push(
                            Diag::at(
                                Loc::new(f, line, col),
                                format!(
                                    "{ANSIBLE_VAULT_DIAG}the decrypted value is not UTF-8 text"
                                ),
                            )
                            .vault(),
                        );
                    }
                },
                Err(VaultFail::NoKey(why)) => {
                    self.unopened_vaults.push((Loc::new(f, line, col), why))
                }
                Err(VaultFail::Error(why)) => diags.push(
                    Diag::at(Loc::new(f, line, col), format!("{ANSIBLE_VAULT_DIAG}{why}")).vault(),
                ),
            }
        }
        diags.into_result()
    }

    /// A group_vars/ or host_vars/ entry for a group or host that does not exist is a typo.
    fn check_vars_dirs(&self, dir: &Path, diags: &mut Diags) {
        for sub in ["group_vars", "host_vars"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().to_string();
                if fname.starts_with('.') {
                    continue;
                }
                let stem = fname.split('.').next().unwrap_or("");
                let (known, what) = if sub == "group_vars" {
                    (self.groups.contains_key(stem), "group")
                } else {
                    (self.hosts.contains_key(stem), "host")
                };
                if !known {
                    diags.push(Diag::at(
                        Loc::file_only(&e.path()),
                        format!("{sub}/{fname} is for {what} `{stem}`, which the inventory does not define"),
                    ));
                }
            }
        }
    }

    fn check_cycles(&self) -> Result<(), String> {
        fn visit(inv: &Inventory, g: &str, stack: &mut Vec<String>) -> Result<(), String> {
            if stack.iter().any(|s| s == g) {
                stack.push(g.to_string());
                return Err(format!("group cycle: {}", stack.join(" -> ")));
            }
            stack.push(g.to_string());
            for c in &inv.groups[g].children {
                visit(inv, c, stack)?;
            }
            stack.pop();
            Ok(())
        }
        // From every group: a cycle need not hang under `all`.
        for g in self.groups.keys() {
            visit(self, g, &mut Vec::new())?;
        }
        Ok(())
    }

    /// All groups a host belongs to, directly or through parents, in merge order:
    /// `all` first, then by depth (the longest path from `all`), then by name (Ansible's order).
    pub fn host_groups(&self, host: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = self
            .hosts
            .get(host)
            .map(|h| h.groups.clone())
            .unwrap_or_default();
        while let Some(g) = todo.pop() {
            if seen.insert(g.clone()) {
                todo.extend(self.groups[&g].parents.iter().cloned());
            }
        }
        seen.insert("all".into());
        let mut v: Vec<String> = seen.into_iter().collect();
        v.sort_by_key(|g| (self.depth(g), g.clone()));
        v
    }

    fn depth(&self, g: &str) -> usize {
        if g == "all" {
            return 0;
        }
        1 + self.groups[g]
            .parents
            .iter()
            .map(|p| self.depth(p))
            .max()
            .unwrap_or(0)
    }

    /// Group and host vars merged for one host (the inventory part of the precedence).
    pub fn host_vars(&self, host: &str) -> VarLayer {
        let mut out = VarLayer::default();
        for g in self.host_groups(host) {
            out.overlay(&self.groups[&g].vars);
        }
        if let Some(h) = self.hosts.get(host) {
            out.overlay(&h.vars);
        }
        out
    }

    /// Every host's groups, as templates see `groups`.
    pub fn groups_map(&self) -> IndexMap<String, Vec<String>> {
        let mut m = IndexMap::new();
        for name in self.groups.keys() {
            let hosts: Vec<String> = self
                .hosts
                .keys()
                .filter(|h| self.host_groups(h).contains(name))
                .cloned()
                .collect();
            m.insert(name.clone(), hosts);
        }
        m
    }

    /// Connection settings from the merged vars (templated values already rendered by the caller).
    pub fn conn(
        host: &str,
        vars: &IndexMap<String, Value>,
        base_dir: &Path,
    ) -> Result<Conn, ConnError> {
        // Ansible's older `ansible_ssh_*` spellings still work; the current name wins.
        let get = |k: &str| {
            vars.get(k).or_else(|| {
                let alias = match k {
                    "ansible_host" => "ansible_ssh_host",
                    "ansible_port" => "ansible_ssh_port",
                    "ansible_user" => "ansible_ssh_user",
                    "ansible_ssh_private_key_file" => "ansible_private_key_file",
                    _ => return None,
                };
                vars.get(alias)
            })
        };
        // Connection settings labctl cannot honour are refused, not silently ignored.
        for (var, instead) in [
            ("ansible_ssh_common_args", "put these options in a Host block of ~/.ssh/config (ProxyJump, ProxyCommand, ForwardAgent …)"),
            ("ansible_ssh_extra_args", "put these options in a Host block of ~/.ssh/config"),
            ("ansible_password", "labctl logs in with keys only: use ansible_ssh_private_key_file or ssh-agent"),
            ("ansible_ssh_pass", "labctl logs in with keys only: use ansible_ssh_private_key_file or ssh-agent"),
            ("ansible_become_password", "labctl uses `sudo -n`: configure NOPASSWD sudo for the user, or connect as root"),
            ("ansible_become_pass", "labctl uses `sudo -n`: configure NOPASSWD sudo for the user, or connect as root"),
        ] {
            if vars.get(var).is_some_and(|v| !v.is_null() && v != "") {
                return Err(ConnError::Unsupported {
                    host: host.to_string(),
                    var,
                    instead,
                });
            }
        }
        let s = |k: &str| get(k).and_then(value_as_string);
        let port = match get("ansible_port") {
            None => None,
            Some(v) => Some(
                value_as_string(v)
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| ConnError::Port {
                        host: host.to_string(),
                        got: v.clone(),
                    })?,
            ),
        };
        let path = |k: &str| {
            s(k).map(|p| {
                let p = expand_tilde(&p);
                if p.is_absolute() {
                    p
                } else {
                    base_dir.join(p)
                }
            })
        };
        Ok(Conn {
            address: s("ansible_host").unwrap_or_else(|| host.to_string()),
            port,
            user: s("ansible_user"),
            key_file: path("ansible_ssh_private_key_file"),
            known_hosts: path("labctl_known_hosts"),
            become_: vars.get("ansible_become").map(truthy).unwrap_or(false),
            local: s("ansible_connection").as_deref() == Some("local"),
        })
    }
}

/// A host's connection settings that labctl refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnError {
    /// An Ansible setting labctl cannot honour: refused, not silently ignored.
    #[error("host `{host}`: `{var}` is an Ansible setting labctl does not use; {instead}")]
    Unsupported {
        host: String,
        var: &'static str,
        instead: &'static str,
    },
    #[error("host `{host}`: ansible_port must be a port number, got {got}")]
    Port { host: String, got: Value },
}

fn is_yaml_name(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
}

fn is_vars_file(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    !n.starts_with('.')
        && [".yml", ".yaml", ".json", ".yml.age", ".yaml.age"]
            .iter()
            .any(|e| n.ends_with(e))
}

/// A vars node must be a map with valid variable names.
/// A vault file's vars: all secret.
fn secret_layer(f: &Path, node: &Node) -> Result<VarLayer, Diag> {
    let layer = vars_from_node(f, node)?;
    let mut secret = VarLayer::secret(layer.values);
    secret.locs = layer.locs;
    Ok(secret)
}

/// A var holding an ansible-vault value anywhere inside is secret as a whole.
pub fn vars_from_node(file: &Path, node: &Node) -> Result<VarLayer, Diag> {
    match &node.v {
        NodeV::Null => Ok(VarLayer::default()),
        NodeV::Map(entries) => {
            let mut m = IndexMap::new();
            let mut locs = std::collections::BTreeMap::new();
            let mut secret = BTreeSet::new();
            for (k, v) in entries {
                let key = k.key_string();
                if !valid_var_name(&key) {
                    return Err(Diag::at(
                        k.loc(file),
                        format!("`{key}` is not a valid variable name"),
                    )
                    .help("use letters, digits and `_`, not starting with a digit"));
                }
                locs.insert(key.clone(), v.loc(file));
                if v.has_vault() {
                    secret.insert(key.clone());
                }
                m.insert(key, v.to_json());
            }
            let mut layer = VarLayer::from_map(m);
            layer.locs = locs;
            layer.secret = secret;
            Ok(layer)
        }
        _ => Err(Diag::at(
            node.loc(file),
            format!("vars must be a map, found {}", node.kind_name()),
        )),
    }
}

pub fn valid_var_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:[]".contains(c))
}

pub fn value_as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Ansible's truthiness for booleans written as strings.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on"),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

pub fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_vault(_: &Path) -> Result<Secret<Vec<u8>>, VaultFail> {
        Err(VaultFail::NoKey("no key".into()))
    }

    use crate::fsutil::write_rel as write;

    const INV: &str = "all:
  vars:
    level: all
    only_all: 1
  children:
    lab:
      vars: {level: lab}
      children:
        k3s_server:
          hosts:
            s1: {ansible_host: 10.0.0.1, level: host-inline}
        k3s_agents:
          vars: {level: agents}
          hosts:
            a1:
            a2: {ansible_port: 2222}
    extra:
      hosts:
        lone:
";

    #[test]
    fn groups_and_precedence() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "hosts.yml", INV);
        write(
            d.path(),
            "group_vars/all.yml",
            "level: all-file\nfrom_all_file: yes\n",
        );
        write(
            d.path(),
            "group_vars/k3s_agents/main.yml",
            "level: agents-file\n",
        );
        write(d.path(), "host_vars/s1.yml", "level: host-file\n");
        let inv = Inventory::load(&d.path().join("hosts.yml"), &no_vault).unwrap();
        assert_eq!(
            inv.hosts.keys().collect::<Vec<_>>(),
            ["s1", "a1", "a2", "lone"]
        );
        assert_eq!(inv.host_groups("a1"), ["all", "lab", "k3s_agents"]);
        assert_eq!(inv.host_vars("s1").values["level"], json!("host-file"));
        assert_eq!(inv.host_vars("a1").values["level"], json!("agents-file"));
        assert_eq!(inv.host_vars("lone").values["level"], json!("all-file"));
        assert_eq!(inv.host_vars("lone").values["only_all"], json!(1));
        let c = Inventory::conn("a2", &inv.host_vars("a2").values, d.path()).unwrap();
        assert_eq!((c.address.as_str(), c.port), ("a2", Some(2222)));
        let c = Inventory::conn("a1", &inv.host_vars("a1").values, d.path()).unwrap();
        assert_eq!(c.port, None, "no port unless the inventory sets one");
        let old: IndexMap<String, Value> = [
            ("ansible_ssh_host", json!("10.1.1.1")),
            ("ansible_ssh_port", json!("2200")),
            ("ansible_ssh_user", json!("pi")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = Inventory::conn("x", &old, d.path()).unwrap();
        assert_eq!(
            (c.address.as_str(), c.port, c.user.as_deref()),
            ("10.1.1.1", Some(2200), Some("pi"))
        );
        let mut proxy = old.clone();
        proxy.insert(
            "ansible_ssh_common_args".into(),
            json!("-o ProxyJump=bastion"),
        );
        let e = Inventory::conn("x", &proxy, d.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ConnError::Unsupported {
                    var: "ansible_ssh_common_args",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("~/.ssh/config"), "{e}");
        assert_eq!(inv.groups_map()["lab"], vec!["s1", "a1", "a2"]);
    }

    #[test]
    fn errors_have_positions_and_all_are_reported() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "hosts.yml",
            "all:\n  hostz:\n    a:\n  children:\n    g:\n      vars: [1]\n",
        );
        write(d.path(), "group_vars/nosuch.yml", "x: 1\n");
        let e = Inventory::load(&d.path().join("hosts.yml"), &no_vault).unwrap_err();
        let msgs: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs[0].contains("hosts.yml:2:3: unknown key `hostz`"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].contains("hosts.yml:6:13: vars must be a map"),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("nosuch"), "{msgs:?}");
    }

    #[test]
    fn unopened_vaults_are_recorded_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "hosts.yml", "all:\n  hosts:\n    h:\n");
        write(
            d.path(),
            "group_vars/all/vault.yml.age",
            "-----BEGIN AGE ENCRYPTED FILE-----\n",
        );
        let inv = Inventory::load(&d.path().join("hosts.yml"), &no_vault).unwrap();
        assert_eq!(inv.unopened_vaults.len(), 1);
        assert_eq!(inv.groups["ungrouped"].hosts, vec!["h"]);
    }

    #[test]
    fn vault_vars_are_secret() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "hosts.yml", "all:\n  hosts:\n    h:\n");
        write(d.path(), "host_vars/h/vault.yml.age", "ciphertext");
        let dec = |_: &Path| Ok(Secret::new(b"token: canary-123\n".to_vec()));
        let inv = Inventory::load(&d.path().join("hosts.yml"), &dec).unwrap();
        let v = inv.host_vars("h");
        assert!(v.is_secret("token"));
        assert_eq!(v.secret_strings(), vec!["canary-123"]);
    }

    #[test]
    fn group_cycles_are_refused() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "hosts.yml",
            "a:\n  children:\n    b:\n      children:\n        a:\n",
        );
        let e = Inventory::load(&d.path().join("hosts.yml"), &no_vault).unwrap_err();
        assert!(e.to_string().contains("group cycle"), "{e}");
    }
}
