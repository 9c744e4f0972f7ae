//! Vars whose values are templates (`k3s_token: "{{ vault_k3s_token }}"`), resolved per host.
//!
//! Resolution runs in passes until nothing changes, so a var may refer to another templated
//! var in any order. A var rendered from a secret becomes secret itself.

use indexmap::IndexMap;
use serde_json::Value;

use super::{is_template, Ctx, Engine, TemplateError};
use crate::inventory::VarLayer;

/// Resolve templated vars in dependency order: a var is rendered only once every var it refers
/// to is plain, so `b: "{{ 'y' if a == 'x' }}"` sees `a` rendered, not its template text.
/// A cycle (or a self-reference) is rendered as is, and rendering says what is wrong.
pub fn resolve(
    engine: &Engine,
    layer: &VarLayer,
    placeholders: bool,
) -> Result<VarLayer, (String, TemplateError)> {
    let mut cur = layer.clone();
    let mut budget = cur.values.len() * 2 + 4;
    loop {
        let templated: Vec<String> = cur
            .values
            .iter()
            .filter(|(_, v)| has_template(v))
            .map(|(k, _)| k.clone())
            .collect();
        if templated.is_empty() || budget == 0 {
            return Ok(cur);
        }
        budget -= 1;
        let pending: std::collections::HashSet<&str> =
            templated.iter().map(String::as_str).collect();
        let mut ready: Vec<&String> = templated
            .iter()
            .filter(|k| {
                let mut names = std::collections::HashSet::new();
                collect_names(engine, &cur.values[k.as_str()], &mut names);
                !names
                    .iter()
                    .any(|n| n != *k && pending.contains(n.as_str()))
            })
            .collect();
        if ready.is_empty() {
            ready = templated.iter().collect();
        }
        let mut ctx = Ctx::new(&cur.values, cur.secret.clone(), cur.secret_strings());
        ctx.placeholders = placeholders;
        let mut changed = false;
        let mut next: IndexMap<String, Value> = cur.values.clone();
        for k in ready {
            let (v, tainted) = engine
                .render_value(&cur.values[k], &ctx)
                .map_err(|(_, e)| (k.clone(), e))?;
            if tainted {
                cur.secret.insert(k.clone());
            }
            if v != cur.values[k] {
                changed = true;
            }
            next.insert(k.clone(), v);
        }
        cur.values = next;
        if !changed {
            // A value that renders to template text on purpose: leave it.
            return Ok(cur);
        }
    }
}

fn collect_names(engine: &Engine, v: &Value, out: &mut std::collections::HashSet<String>) {
    match v {
        Value::String(s) if is_template(s) => out.extend(engine.names_in(s)),
        Value::Array(a) => a.iter().for_each(|x| collect_names(engine, x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_names(engine, x, out)),
        _ => {}
    }
}

fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => is_template(s),
        Value::Array(a) => a.iter().any(has_template),
        Value::Object(o) => o.values().any(has_template),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn chains_resolve_and_secrecy_propagates() {
        let mut l = VarLayer::from_map(
            [
                ("a".to_string(), json!("{{ b }}-x")),
                ("b".to_string(), json!("{{ c }}")),
                ("c".to_string(), json!(5)),
                ("token".to_string(), json!("{{ vault_token }}")),
                ("list".to_string(), json!(["{{ c }}", "y"])),
            ]
            .into_iter()
            .collect(),
        );
        l.values.insert("vault_token".into(), json!("sekrit-1"));
        l.secret.insert("vault_token".into());
        let r = resolve(&Engine::new(Path::new(".")), &l, false).unwrap();
        assert_eq!(r.values["a"], json!("5-x"));
        assert_eq!(r.values["b"], json!(5));
        assert_eq!(r.values["list"], json!([5, "y"]));
        assert_eq!(r.values["token"], json!("sekrit-1"));
        assert!(r.is_secret("token"));
        assert!(!r.is_secret("a"));
    }

    #[test]
    fn derived_vars_see_resolved_values() {
        // Order matters: `b` compares `a`, which is itself a template.
        let l = VarLayer::from_map(
            [
                ("b".to_string(), json!("{{ 'yes' if a == 'x' else 'no' }}")),
                ("a".to_string(), json!("{{ 'x' }}")),
            ]
            .into_iter()
            .collect(),
        );
        let r = resolve(&Engine::new(Path::new(".")), &l, false).unwrap();
        assert_eq!(r.values["b"], json!("yes"));
    }

    #[test]
    fn undefined_names_the_var() {
        let l = VarLayer::from_map(
            [("a".to_string(), json!("{{ nope }}"))]
                .into_iter()
                .collect(),
        );
        let (k, e) = resolve(&Engine::new(Path::new(".")), &l, false).unwrap_err();
        assert_eq!(k, "a");
        assert!(e.message.contains("`nope`"), "{}", e.message);
    }
}
