//! JSON values compared and shown the way the API server and Helm see them: canonical
//! spellings, deep merge, subset comparison, changed paths (never values), readable diffs.

use serde_json::Value;

use crate::resources::DiffCx;

/// Sorted keys everywhere, integral floats as integers: one spelling per value, so equal
/// values compare and hash equal whatever YAML or JSON they came from.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

/// Deep merge: maps merge key by key, anything else in `over` replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Does `live`, restricted to the keys in `want`, differ from `want`? The API server drops
/// empty maps and lists, so an empty desired field matches a missing live one.
pub fn differs(want: &Value, live: &Value) -> bool {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w.iter().any(|(k, wv)| match l.get(k) {
            Some(lv) => differs(wv, lv),
            None => !empty(wv),
        }),
        (Value::Array(w), Value::Array(l)) => {
            w.len() != l.len() || w.iter().zip(l).any(|(a, b)| differs(a, b))
        }
        _ => !same_scalar(want, live),
    }
}

/// The live object cut down to the keys we set, for a readable diff.
pub fn restrict(want: &Value, live: &Value) -> Value {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => Value::Object(
            w.keys()
                .filter_map(|k| l.get(k).map(|lv| (k.clone(), restrict(&w[k], lv))))
                .collect(),
        ),
        (Value::Array(w), Value::Array(l)) => Value::Array(
            l.iter()
                .enumerate()
                .map(|(i, lv)| {
                    w.get(i)
                        .map(|wv| restrict(wv, lv))
                        .unwrap_or_else(|| lv.clone())
                })
                .collect(),
        ),
        _ => live.clone(),
    }
}

/// Dotted paths (keys only, never values) where `live` differs from `want` (subset semantics
/// when `subset`, exact equality otherwise).
pub fn paths(want: &Value, live: Option<&Value>, subset: bool, at: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (want, live) {
        (Value::Object(w), Some(Value::Object(l))) => {
            for (k, wv) in w {
                match l.get(k) {
                    Some(lv) => paths(wv, Some(lv), subset, &join(k), out),
                    None if subset && empty(wv) => {}
                    None => out.push(join(k)),
                }
            }
            if !subset {
                for k in l.keys().filter(|k| !w.contains_key(*k)) {
                    out.push(join(k));
                }
            }
        }
        (Value::Array(w), Some(Value::Array(l))) if w.len() == l.len() => {
            for (i, (a, b)) in w.iter().zip(l).enumerate() {
                paths(a, Some(b), subset, &format!("{at}[{i}]"), out);
            }
        }
        (w, Some(l)) if !w.is_object() && !w.is_array() && same_scalar(w, l) => {}
        _ => out.push(if at.is_empty() {
            "(root)".into()
        } else {
            at.to_string()
        }),
    }
}

pub fn summarize(paths: &[String]) -> String {
    match paths.len() {
        0 => "(nothing)".into(),
        1..=4 => paths.join(", "),
        n => format!("{} and {} more", paths[..3].join(", "), n - 3),
    }
}

pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(&canonical(v))
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

/// A unified diff of two values as canonical YAML, or only a keyed hash when secret.
pub fn value_diff(label: &str, old: Option<&Value>, new: &Value, cx: &DiffCx) -> String {
    if cx.secret {
        let h = cx.keyed_hash(&serde_json::to_vec(&canonical(new)).unwrap_or_default());
        return format!("{label}: (secret changed: now {h})");
    }
    let old_text = old.map(to_yaml).unwrap_or_default();
    similar::TextDiff::from_lines(&old_text, &*to_yaml(new))
        .unified_diff()
        .context_radius(3)
        .header(&format!("{label} (live)"), &format!("{label} (desired)"))
        .to_string()
}
