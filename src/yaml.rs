//! The one place YAML is parsed.
//!
//! Everything labctl reads (inventory, vars, site, roles) goes through `parse_node`, which keeps the
//! line and column of every node. Swapping the YAML crate touches this file only.
//!
//! Why a tree of our own instead of deserializing typed structs directly: resource fields may be
//! templates (`packages: "{{ base_packages }}"`) that only become a list once a host's vars are
//! known. So roles are kept as `Node`s, rendered per host, and deserialized then; `locate` maps a
//! serde error path back to the line and column of the node it came from.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::error::{Diag, Loc};

/// A YAML node with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub col: usize,
    pub v: NodeV,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeV {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position, so "unknown key" errors point at the key.
    Map(Vec<(Node, Node)>),
    /// A scalar tagged `!vault` (ansible-vault). Only inventory vars accept one
    /// (`parse_node_vaults`); the inventory opens it before its value is used.
    Vault(Vaulted),
}

/// An ansible-vault value: its envelope until opened, then its plaintext, which is secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Vaulted {
    Sealed(String),
    Open(crate::secret::Secret<String>),
}

/// What a sealed vault value reads as where one may be left sealed (`check` without a
/// password, like an age vault without a key): never the envelope, so a template cannot use it
/// as if it were the secret.
pub const SEALED_PLACEHOLDER: &str = "<ansible-vault value, not opened>";

/// The tags Ansible's YAML loader decrypts (`!vault`, and its older spelling).
fn is_vault_tag(tag: &str) -> bool {
    matches!(tag, "!vault" | "!vault-encrypted")
}

impl Node {
    pub fn loc(&self, file: &Path) -> Loc {
        Loc::new(file, self.line, self.col)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.v {
            NodeV::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.v {
            NodeV::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.v {
            NodeV::Seq(s) => Some(s),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn is_null(&self) -> bool {
        matches!(self.v, NodeV::Null)
    }

    /// A map's value by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_string() == key)
            .map(|(_, v)| v)
    }

    /// Keys may be written as numbers or booleans; vars treat them as strings, like Ansible.
    pub fn key_string(&self) -> String {
        match &self.v {
            NodeV::Str(s) => s.clone(),
            NodeV::Int(i) => i.to_string(),
            NodeV::Float(f) => f.to_string(),
            NodeV::Bool(b) => b.to_string(),
            NodeV::Null => "null".into(),
            NodeV::Seq(_) | NodeV::Map(_) => format!("{:?}", self.to_json()),
            NodeV::Vault(_) => "<vault>".into(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.v {
            NodeV::Null => "null",
            NodeV::Bool(_) => "a boolean",
            NodeV::Int(_) => "an integer",
            NodeV::Float(_) => "a number",
            NodeV::Str(_) => "a string",
            NodeV::Seq(_) => "a list",
            NodeV::Map(_) => "a map",
            NodeV::Vault(_) => "an ansible-vault value",
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.v {
            NodeV::Null => Value::Null,
            NodeV::Bool(b) => Value::Bool(*b),
            NodeV::Int(i) => Value::from(*i),
            NodeV::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeV::Str(s) => Value::String(s.clone()),
            NodeV::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeV::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_string(), v.to_json()))
                    .collect(),
            ),
            NodeV::Vault(Vaulted::Open(s)) => Value::String(s.expose().clone()),
            NodeV::Vault(Vaulted::Sealed(_)) => Value::String(SEALED_PLACEHOLDER.into()),
        }
    }

    /// Whether this node holds an ansible-vault value anywhere inside: its var is secret.
    pub fn has_vault(&self) -> bool {
        match &self.v {
            NodeV::Vault(_) => true,
            NodeV::Seq(items) => items.iter().any(Node::has_vault),
            NodeV::Map(entries) => entries.iter().any(|(k, v)| k.has_vault() || v.has_vault()),
            _ => false,
        }
    }

    /// Every vault value inside, in document order, for opening them, with where to report it:
    /// the key's line for a map value (a block scalar's own position is its first content line).
    pub fn vaults_mut(&mut self) -> Vec<(usize, usize, &mut Vaulted)> {
        let mut out = Vec::new();
        fn walk<'a>(
            n: &'a mut Node,
            at: (usize, usize),
            out: &mut Vec<(usize, usize, &'a mut Vaulted)>,
        ) {
            match &mut n.v {
                NodeV::Vault(v) => out.push((at.0, at.1, v)),
                NodeV::Seq(items) => items.iter_mut().for_each(|i| {
                    let at = (i.line, i.col);
                    walk(i, at, out)
                }),
                NodeV::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                    let at = (k.line, k.col);
                    walk(k, at, out);
                    walk(v, at, out)
                }),
                _ => {}
            }
        }
        let at = (self.line, self.col);
        walk(self, at, &mut out);
        out
    }

    fn first_vault(&self) -> Option<&Node> {
        match &self.v {
            NodeV::Vault(_) => Some(self),
            NodeV::Seq(items) => items.iter().find_map(Node::first_vault),
            NodeV::Map(entries) => entries
                .iter()
                .find_map(|(k, v)| k.first_vault().or_else(|| v.first_vault())),
            _ => None,
        }
    }

    /// The node a serde error path points at (deepest match), for file:line:col in errors.
    pub fn locate(&self, path: &serde_path_to_error::Path) -> &Node {
        let mut cur = self;
        for seg in path.iter() {
            let next = match (seg, &cur.v) {
                (serde_path_to_error::Segment::Seq { index }, NodeV::Seq(items)) => {
                    items.get(*index)
                }
                (serde_path_to_error::Segment::Map { key }, NodeV::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| &k.key_string() == key)
                    .map(|(_, v)| v),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    /// The key node for a map entry, to point "unknown field" errors at the key itself.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_string() == key)
            .map(|(k, _)| k)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde-saphyr drops a local tag like `!vault` unless asked: `Tagged` keeps it.
        let sp = Spanned::<serde_saphyr::Tagged<NodeV>>::deserialize(d)?;
        let serde_saphyr::Tagged(v, tag) = sp.value;
        let v = match (tag.as_deref(), v) {
            (Some(t), NodeV::Str(s)) if is_vault_tag(t) => NodeV::Vault(Vaulted::Sealed(s)),
            (Some(t), other) if is_vault_tag(t) => {
                return Err(de::Error::custom(format!(
                    "`{t}` must tag a string (an ansible-vault envelope), not {}",
                    Node {
                        line: 0,
                        col: 0,
                        v: other
                    }
                    .kind_name()
                )))
            }
            (_, v) => v,
        };
        Ok(Node {
            line: sp.referenced.line() as usize,
            col: sp.referenced.column() as usize,
            v,
        })
    }
}

impl<'de> Deserialize<'de> for NodeV {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeV;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeV, E> {
        Ok(NodeV::Null)
    }
    fn visit_none<E>(self) -> Result<NodeV, E> {
        Ok(NodeV::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeV, D::Error> {
        NodeV::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<NodeV, E> {
        Ok(NodeV::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<NodeV, E> {
        Ok(NodeV::Int(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<NodeV, E> {
        i64::try_from(u)
            .map(NodeV::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, f: f64) -> Result<NodeV, E> {
        Ok(NodeV::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<NodeV, E> {
        Ok(NodeV::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<NodeV, E> {
        Ok(NodeV::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeV, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(NodeV::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeV, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            let ks = k.key_string();
            if entries.iter().any(|(e, _)| e.key_string() == ks) {
                return Err(de::Error::custom(format!("duplicate key `{ks}`")));
            }
            entries.push((k, v));
        }
        Ok(NodeV::Map(entries))
    }
}

/// Parse YAML text into a positioned tree. An empty document is `Null`. A `!vault` value is an
/// error here: only inventory vars read them (`parse_node_vaults`).
pub fn parse_node(file: &Path, text: &str) -> Result<Node, Diag> {
    let node = parse_node_vaults(file, text)?;
    if node.first_vault().is_some() {
        let mut n = node.clone();
        let (line, col) = n.vaults_mut().first().map_or((0, 0), |v| (v.0, v.1));
        return Err(Diag::at(
            Loc::new(file, line, col),
            "an ansible-vault value (`!vault`) is not read here",
        )
        .help("labctl opens ansible-vault values in inventory vars (the inventory's `vars:`, group_vars/, host_vars/); move it there, or into the age vault (`labctl vault import-ansible`)"));
    }
    Ok(node)
}

/// `parse_node`, keeping `!vault` values as `NodeV::Vault` for the caller to open.
pub fn parse_node_vaults(file: &Path, text: &str) -> Result<Node, Diag> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        return Ok(Node {
            line: 1,
            col: 1,
            v: NodeV::Null,
        });
    }
    // YAML 1.2 booleans only: `y`, `no`, `on` stay strings (no Norway problem); specs that want
    // a bool say so, and a `yes` there gets an error pointing at it.
    let mut opts = serde_saphyr::Options::default();
    opts.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(text, opts).map_err(|e| saphyr_diag(file, &e))
}

/// Read and parse a YAML file.
pub fn read_node(file: &Path) -> Result<Node, Diag> {
    parse_node(file, &read_text(file)?)
}

pub fn read_text(file: &Path) -> Result<String, Diag> {
    std::fs::read_to_string(file).map_err(|e| {
        Diag::at(
            Loc::file_only(file),
            format!("cannot read {}: {e}", file.display()),
        )
    })
}

fn saphyr_diag(file: &Path, e: &serde_saphyr::Error) -> Diag {
    let (line, col) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    // The crate's message carries its own location and snippet; we print ours, so keep the first
    // line and drop a trailing "at line X column Y".
    let msg = e.without_snippet().to_string();
    let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
    let first = match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first,
    };
    Diag::at(Loc::new(file, line, col), format!("invalid YAML: {first}"))
}

/// Deserialize a node into a typed value; errors point at the offending node.
#[cfg(test)]
pub fn from_node<T: serde::de::DeserializeOwned>(
    file: &Path,
    node: &Node,
    what: &str,
) -> Result<T, Diag> {
    from_value_at(file, node, node.to_json(), what)
}

/// Deserialize an already rendered value that came from `node`; errors are mapped back to the
/// node's positions (rendering keeps the tree's shape for everything that was not a template).
#[cfg(test)]
pub fn from_value_at<T: serde::de::DeserializeOwned>(
    file: &Path,
    node: &Node,
    value: Value,
    what: &str,
) -> Result<T, Diag> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().clone();
        let inner = e.into_inner().to_string();
        let at = if path.iter().next().is_some() {
            format!(" at `{path}`")
        } else {
            String::new()
        };
        Diag::at(
            error_loc(file, node, &path, &inner),
            format!("{what}{at}: {inner}"),
        )
    })
}

/// Where a serde error inside `node` is: the offending value, or for "unknown field" the key.
pub fn error_loc(file: &Path, node: &Node, path: &serde_path_to_error::Path, message: &str) -> Loc {
    if let Some(field) = unknown_field_name(message) {
        // The path ends with the unknown field itself: look for its key in the parent map.
        let segs: Vec<_> = path.iter().collect();
        let mut cur = node;
        for seg in segs.iter().take(segs.len().saturating_sub(1)) {
            let next = match (seg, &cur.v) {
                (serde_path_to_error::Segment::Seq { index }, NodeV::Seq(items)) => {
                    items.get(*index)
                }
                (serde_path_to_error::Segment::Map { key }, NodeV::Map(_)) => cur.get(key),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        if let Some(k) = cur.key_node(&field) {
            return k.loc(file);
        }
    }
    node.locate(path).loc(file)
}

fn unknown_field_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("t.yml")
    }

    #[test]
    fn positions_are_kept() {
        let n = parse_node(&p(), "a: 1\nb:\n  - x\n  - {y: yes}\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!((b.line, b.col), (3, 3));
        let y = b.as_seq().unwrap()[1].get("y").unwrap();
        assert_eq!(y.v, NodeV::Str("yes".into()), "YAML 1.2 booleans only");
        assert_eq!(y.line, 4);
        assert_eq!(n.key_node("b").map(|k| (k.line, k.col)), Some((2, 1)));
    }

    #[test]
    fn syntax_error_has_position() {
        let d = parse_node(&p(), "a: 1\nb: [1, 2\n").unwrap_err();
        let loc = d.loc.unwrap();
        assert!(loc.line >= 2, "{loc:?}");
        assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let d = parse_node(&p(), "a: 1\na: 2\n").unwrap_err();
        assert!(d.message.contains("duplicate"), "{}", d.message);
        assert_eq!(d.loc.map(|l| l.line), Some(2));
    }

    #[test]
    fn typed_errors_point_at_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            path: String,
            mode: Option<String>,
        }
        let n = parse_node(&p(), "path: /x\nmoed: '0644'\n").unwrap();
        let d = from_node::<S>(&p(), &n, "file").unwrap_err();
        assert_eq!(
            d.loc.as_ref().map(|l| (l.line, l.col)),
            Some((2, 1)),
            "{}",
            d.message
        );
        assert!(d.message.contains("unknown field `moed`"), "{}", d.message);

        let n = parse_node(&p(), "path: /x\nmode: 420\n").unwrap();
        let d = from_node::<S>(&p(), &n, "file").unwrap_err();
        assert_eq!(
            d.loc.as_ref().map(|l| (l.line, l.col)),
            Some((2, 7)),
            "{}",
            d.message
        );
    }

    #[test]
    fn vault_tags_are_kept_and_refused_outside_inventory_vars() {
        let text =
            "a: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\nb: plain\nc: [!vault-encrypted x]\n";
        let n = parse_node_vaults(&p(), text).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(
            a.v,
            NodeV::Vault(Vaulted::Sealed("$ANSIBLE_VAULT;1.1;AES256\n6162\n".into()))
        );
        assert!(!n.get("b").unwrap().has_vault());
        // Never the envelope as a plain string.
        assert_eq!(a.to_json(), Value::String(SEALED_PLACEHOLDER.into()));
        let mut n = n.clone();
        let at: Vec<(usize, usize)> = n.vaults_mut().into_iter().map(|(l, c, _)| (l, c)).collect();
        assert_eq!(
            at,
            [(1, 1), (5, 22)],
            "reported at the key, or the item in a list"
        );
        assert!(n.get("c").unwrap().has_vault());
        let d = parse_node(&p(), text).unwrap_err();
        assert_eq!(d.loc.map(|l| l.line), Some(1), "{}", d.message);
        assert!(d.message.contains("`!vault`"), "{}", d.message);
        // Other tags still read as before.
        assert_eq!(
            parse_node(&p(), "x: !!str 3\n")
                .unwrap()
                .get("x")
                .unwrap()
                .v,
            NodeV::Str("3".into())
        );
        let d = parse_node_vaults(&p(), "a: !vault {x: 1}\n").unwrap_err();
        assert!(d.message.contains("must tag a string"), "{}", d.message);
    }

    #[test]
    fn empty_document_is_null() {
        assert!(parse_node(&p(), "# just a comment\n---\n")
            .unwrap()
            .is_null());
    }
}
