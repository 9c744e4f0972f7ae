//! Variable layers and the one function that merges them.
//!
//! Precedence, lowest to highest (documented in docs/site.md):
//! role defaults < group vars (all, then parents, then children; inline before group_vars/ files)
//! < host vars (inline before host_vars/ files) < play vars < role-entry vars < `-e key=value`.
//! Maps are replaced, not deep-merged, like Ansible's default `hash_behaviour=replace`.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Loc;

use indexmap::IndexMap;
use serde_json::Value;

/// One layer of variables, and which of them came from a vault.
#[derive(Debug, Clone, Default)]
pub struct VarLayer {
    pub values: IndexMap<String, Value>,
    pub secret: BTreeSet<String>,
    /// Where each var was written (when known): errors in templated vars point there.
    pub locs: BTreeMap<String, Loc>,
}

impl VarLayer {
    pub fn from_map(values: IndexMap<String, Value>) -> Self {
        VarLayer {
            values,
            ..Default::default()
        }
    }

    /// A layer from literal pairs (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, Value)]) -> Self {
        Self::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    pub fn secret(values: IndexMap<String, Value>) -> Self {
        let secret = values.keys().cloned().collect();
        VarLayer {
            values,
            secret,
            ..Default::default()
        }
    }

    /// Put `other` over `self`: its keys win, and a key's secrecy follows the winning value.
    pub fn overlay(&mut self, other: &VarLayer) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
            if other.secret.contains(k) {
                self.secret.insert(k.clone());
            } else {
                self.secret.remove(k);
            }
            match other.locs.get(k) {
                Some(l) => self.locs.insert(k.clone(), l.clone()),
                None => self.locs.remove(k),
            };
        }
    }

    pub fn is_secret(&self, key: &str) -> bool {
        self.secret.contains(key)
    }

    /// Every string inside secret values: what output scrubbing and taint checks look for.
    pub fn secret_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in &self.secret {
            if let Some(v) = self.values.get(k) {
                collect_strings(v, &mut out);
            }
        }
        out.retain(|s| s.len() >= 4);
        out.sort();
        out.dedup();
        out
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Merge layers in the order given, lowest precedence first.
#[cfg(test)]
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a VarLayer>) -> VarLayer {
    let mut out = VarLayer::default();
    for l in layers {
        out.overlay(l);
    }
    out
}

/// Why an `-e` argument is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtraVarError {
    /// `-e @FILE`: the file cannot be read or parsed (file:line:col in the problems).
    #[error("{0}")]
    File(crate::error::Diags),
    #[error("{0}: extra vars file must be a map")]
    NotAMap(String),
    #[error("-e expects key=value or @file.yml, got `{0}`")]
    Syntax(String),
    #[error("-e: `{0}` is not a valid variable name")]
    Name(String),
}

/// `-e key=value` (value parsed as YAML, so `-e n=3` is a number) or `-e @file.yml`.
pub fn parse_extra_var(arg: &str) -> Result<VarLayer, ExtraVarError> {
    if let Some(path) = arg.strip_prefix('@') {
        let p = std::path::Path::new(path);
        let node = crate::yaml::read_node(p).map_err(|d| ExtraVarError::File(d.into()))?;
        let v = node.to_json();
        let Value::Object(map) = v else {
            return Err(ExtraVarError::NotAMap(path.to_string()));
        };
        return Ok(VarLayer::from_map(map.into_iter().collect()));
    }
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| ExtraVarError::Syntax(arg.to_string()))?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ExtraVarError::Name(k.to_string()));
    }
    let value = match crate::yaml::parse_node(std::path::Path::new("-e"), v) {
        Ok(n) if !matches!(n.v, crate::yaml::NodeV::Null) || v.trim() == "null" => n.to_json(),
        _ => Value::String(v.to_string()),
    };
    let mut m = IndexMap::new();
    m.insert(k.to_string(), value);
    Ok(VarLayer::from_map(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(pairs: &[(&str, Value)]) -> VarLayer {
        VarLayer::from_pairs(pairs)
    }

    #[test]
    fn later_layers_win_and_secrecy_follows_the_value() {
        let mut sec = VarLayer::secret(
            [("tok".to_string(), json!("s3cr3t-value"))]
                .into_iter()
                .collect(),
        );
        sec.values.insert("x".into(), json!(1));
        let low = layer(&[("x", json!(0)), ("y", json!("low"))]);
        let high = layer(&[("tok", json!("public")), ("y", json!("high"))]);
        let m = merge([&low, &sec]);
        assert!(m.is_secret("tok"));
        assert_eq!(m.secret_strings(), vec!["s3cr3t-value".to_string()]);
        let m2 = merge([&low, &sec, &high]);
        assert!(!m2.is_secret("tok"));
        assert_eq!(m2.values["y"], json!("high"));
        assert_eq!(m2.values["x"], json!(1));
    }

    #[test]
    fn extra_vars_are_typed() {
        assert_eq!(parse_extra_var("n=3").unwrap().values["n"], json!(3));
        assert_eq!(
            parse_extra_var("s=hello world").unwrap().values["s"],
            json!("hello world")
        );
        assert_eq!(
            parse_extra_var("l=[1, 2]").unwrap().values["l"],
            json!([1, 2])
        );
        assert!(parse_extra_var("novalue").is_err());
        assert!(parse_extra_var("bad-name=1").is_err());
    }
}
