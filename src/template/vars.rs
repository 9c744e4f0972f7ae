//! Vars whose values are templates (`k3s_token: "{{ vault_k3s_token }}"`), resolved per host.
//!
//! Resolution runs in passes until nothing changes, so a var may refer to another templated
//! var in any order. A var rendered from a secret becomes secret itself.

use indexmap::IndexMap;
use serde_json::Value;

use super::{is_template, Ctx, Engine, TemplateError};
use crate::inventory::VarLayer;

const MAX_PASSES: usize = 8;

pub fn resolve(
    engine: &Engine,
    layer: &VarLayer,
    placeholders: bool,
) -> Result<VarLayer, (String, TemplateError)> {
    let mut cur = layer.clone();
    for _ in 0..MAX_PASSES {
        let templated: Vec<String> = cur
            .values
            .iter()
            .filter(|(_, v)| has_template(v))
            .map(|(k, _)| k.clone())
            .collect();
        if templated.is_empty() {
            return Ok(cur);
        }
        let mut ctx = Ctx::new(&cur.values, cur.secret.clone(), cur.secret_strings());
        ctx.placeholders = placeholders;
        let mut next: IndexMap<String, Value> = cur.values.clone();
        let mut changed = false;
        for k in &templated {
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
            break;
        }
    }
    // Still templated after the passes: a cycle (`a: "{{ b }}"`, `b: "{{ a }}"`) or a value that
    // renders to template text on purpose. Leave it; rendering it later will show what it is.
    Ok(cur)
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
