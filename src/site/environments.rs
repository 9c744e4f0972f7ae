//! Environments (seed 001: `-e target_environment=staging`): staging and production side by side
//! on one cluster. An environment is a named set of var overrides in the inventory:
//!
//! ```yaml
//! environments:
//!   prod: {}                      # the roles' defaults
//!   staging:
//!     postgres_namespace: db-staging
//!     postgres_node_port: 31432
//!     postgres_values: {instances: 1}   # chart values for this environment only
//! ```
//!
//! `target_environment` (usually `-e target_environment=staging`) picks one; its vars sit above
//! the inventory and play vars and below `-e` ([`super::vars::stack`]). Two environments must
//! never share a namespace or a NodePort, or one would overwrite the other: [`problems`] finds
//! those (for every `*_namespace` / `*_node_port` key any environment sets), and every command
//! refuses such a configuration before contacting a host.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde_json::Value;

use crate::inventory::VarLayer;

fn target(out: &VarLayer, extra: Option<&VarLayer>) -> Option<String> {
    extra
        .and_then(|e| e.values.get("target_environment"))
        .or_else(|| out.values.get("target_environment"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// The selected environment's vars, to stack just below `-e`; None without a target.
pub fn overlay(out: &VarLayer, extra: Option<&VarLayer>) -> Option<VarLayer> {
    let name = target(out, extra)?;
    let envs = extra
        .and_then(|e| e.values.get("environments"))
        .or_else(|| out.values.get("environments"))?;
    let vars = envs.get(&name)?.as_object()?;
    let mut layer = VarLayer::from_map(vars.clone().into_iter().collect());
    if let Some(loc) = out.locs.get("environments") {
        for k in vars.keys() {
            layer.locs.insert(k.clone(), loc.clone());
        }
    }
    Some(layer)
}

fn class(key: &str) -> Option<&'static str> {
    if key.ends_with("_namespace") {
        Some("namespace")
    } else if key.ends_with("_node_port") {
        Some("NodePort")
    } else {
        None
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What is wrong with `environments` / `target_environment` in `base` (the vars without any
/// environment applied: role defaults, inventory, `-e`). Empty when all is well.
pub fn problems(base: &IndexMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(envs) = base.get("environments") else {
        if let Some(t) = base.get("target_environment").and_then(Value::as_str) {
            out.push(format!(
                "target_environment is `{t}` but no `environments` are defined (add `environments: {{{t}: {{...}}}}` to the inventory)"
            ));
        }
        return out;
    };
    let Some(envs) = envs.as_object() else {
        return vec!["`environments` must be a mapping: environment name → vars".into()];
    };
    for (name, vars) in envs {
        if !vars.is_object() && !vars.is_null() {
            out.push(format!("environment `{name}` must be a mapping of vars"));
        }
    }
    if let Some(t) = base.get("target_environment").and_then(Value::as_str) {
        if !envs.contains_key(t) {
            let known: Vec<&str> = envs.keys().map(String::as_str).collect();
            out.push(format!(
                "unknown target_environment `{t}` (environments: {})",
                known.join(", ")
            ));
        }
    }
    // Keys an environment sets are its own; the rest are shared by all (monitoring, say).
    let own: BTreeSet<&str> = envs
        .values()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().map(String::as_str))
        .filter(|k| class(k).is_some())
        .collect();
    let keys: BTreeSet<&str> = own
        .iter()
        .copied()
        .chain(
            base.keys()
                .map(String::as_str)
                .filter(|k| class(k).is_some()),
        )
        .collect();
    // (class, value) → the first environment and key that claimed it.
    let mut claimed: BTreeMap<(&str, String), (&str, &str)> = BTreeMap::new();
    for (env, vars) in envs {
        for key in &keys {
            let v = vars.get(*key).or_else(|| base.get(*key));
            let Some(v) = v.and_then(scalar) else {
                continue;
            };
            let c = class(key).unwrap_or_default();
            if c == "NodePort" && own.contains(key) {
                match v.parse::<u32>() {
                    Ok(p) if (30000..=32767).contains(&p) => {}
                    _ => out.push(format!(
                        "environment `{env}`: {key} {v} is not a NodePort (30000-32767)"
                    )),
                }
            }
            match claimed.get(&(c, v.clone())) {
                Some((other, other_key))
                    if *other != env.as_str()
                        && (own.contains(key) || own.contains(other_key)) =>
                {
                    out.push(format!(
                        "environments `{other}` and `{env}` collide: {other_key} and {key} are both {c} {v}; give each environment its own namespaces and NodePorts under `environments`"
                    ))
                }
                Some(_) => {}
                None => {
                    claimed.insert((c, v), (env, key));
                }
            }
        }
    }
    out
}

/// Every environment's NodePorts, each once: `{port, proto: tcp, comment}` for every `*_node_port`
/// var, an environment's own value or else the shared one, for every environment under
/// `environments` (the shared values alone without any). `base` as for [`problems`]. The firewall
/// opens these to the VPN only (base-hardening's `environment_node_ports`): a new environment's
/// NodePorts are closed to the internet without another edit.
pub fn node_ports(base: &IndexMap<String, Value>) -> Vec<Value> {
    let empty = serde_json::Map::new();
    let envs: Vec<(&str, &serde_json::Map<String, Value>)> =
        match base.get("environments").and_then(Value::as_object) {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_object().unwrap_or(&empty)))
                .collect(),
            _ => vec![("", &empty)],
        };
    let keys: BTreeSet<&str> = base
        .keys()
        .map(String::as_str)
        .chain(envs.iter().flat_map(|(_, m)| m.keys().map(String::as_str)))
        .filter(|k| class(k) == Some("NodePort"))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (env, vars) in &envs {
        for key in &keys {
            let v = vars.get(*key).or_else(|| base.get(*key));
            // A value that is no port (a template, say) is the collision check's to report.
            let Some(port) = v.and_then(scalar).and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            if seen.insert(port) {
                let comment = match *env {
                    "" => key.to_string(),
                    e => format!("{e} {key}"),
                };
                out.push(serde_json::json!({"port": port.to_string(), "proto": "tcp", "comment": comment}));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(v: Value) -> IndexMap<String, Value> {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    #[test]
    fn the_target_environment_overlays_its_vars() {
        let out = VarLayer::from_map(base(json!({
            "environments": {"staging": {"postgres_namespace": "db-staging"}},
            "postgres_namespace": "db"
        })));
        let extra = VarLayer::from_map(base(json!({"target_environment": "staging"})));
        let l = overlay(&out, Some(&extra)).unwrap();
        assert_eq!(l.values["postgres_namespace"], "db-staging");
        assert!(overlay(&out, None).is_none(), "no target: no overlay");
    }

    #[test]
    fn separate_environments_pass() {
        let b = base(json!({
            "postgres_namespace": "db", "postgres_node_port": 30432, "redis_node_port": 30379,
            "environments": {
                "prod": {},
                "staging": {"postgres_namespace": "db-staging", "postgres_node_port": 31432, "redis_node_port": 31379}
            }
        }));
        assert_eq!(problems(&b), Vec::<String>::new());
    }

    #[test]
    fn shared_namespaces_and_nodeports_are_refused() {
        let b = base(json!({
            "postgres_namespace": "db", "postgres_node_port": 30432, "redis_node_port": 30379,
            "environments": {
                "prod": {},
                "staging": {"postgres_namespace": "db", "postgres_node_port": 30379, "redis_node_port": 31379}
            }
        }));
        let p = problems(&b);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("`prod` and `staging` collide: postgres_namespace and postgres_namespace are both namespace db"), "{p:?}");
        assert!(
            p[1].contains("redis_node_port and postgres_node_port are both NodePort 30379"),
            "{p:?}"
        );
    }

    #[test]
    fn every_environment_s_node_ports_are_listed_once() {
        let ports = |b: Value| -> Vec<String> {
            node_ports(&base(b))
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["port"].as_str().unwrap(),
                        p["comment"].as_str().unwrap()
                    )
                })
                .collect()
        };
        let shared = json!({"postgres_node_port": 30432, "redis_node_port": 30379, "postgres_namespace": "db"});
        // Without environments: the shared values.
        assert_eq!(
            ports(shared.clone()),
            ["30432 postgres_node_port", "30379 redis_node_port"]
        );
        let mut b = shared;
        b["environments"] = json!({
            "prod": {},
            "staging": {"postgres_node_port": 31432, "redis_node_port": 31379},
            "qa": {"postgres_node_port": 32432}
        });
        assert_eq!(
            ports(b),
            [
                "30432 prod postgres_node_port",
                "30379 prod redis_node_port",
                "31432 staging postgres_node_port",
                "31379 staging redis_node_port",
                "32432 qa postgres_node_port",
            ]
        );
    }

    #[test]
    fn unknown_targets_and_bad_ports_are_named() {
        let b = base(json!({
            "target_environment": "stagin",
            "environments": {"prod": {}, "staging": {"redis_node_port": 8080}}
        }));
        let p = problems(&b);
        assert!(
            p.iter()
                .any(|m| m
                    .contains("unknown target_environment `stagin` (environments: prod, staging)")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("8080 is not a NodePort")),
            "{p:?}"
        );
        let b = base(json!({"target_environment": "staging"}));
        assert!(problems(&b)[0].contains("no `environments`"));
    }
}
