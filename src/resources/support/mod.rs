//! Helpers resource types share. Nothing here is a resource type; every file is a library for
//! the types in `resources/`.
//!
//! - `fs`: path checks and chown/chmod commands.
//! - `json`: canonical JSON, deep merge, subset diffs (k8s and helm types).
//! - `kube`: the default kubeconfig and secret-safe YAML errors.

pub mod fs;
pub mod json;
pub mod kube;

use serde_json::Value;

use super::DiffCx;

/// `state:` of the types that manage something that exists or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Present,
    Absent,
}

/// The schema of a value read as a string that may be written as a YAML number (ports, sysctl
/// values). Only the JSON Schema uses it; the specs hold `String`.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StringOrNumber {
    String(String),
    Number(f64),
}

/// File modes are strings of octal digits ("0644"). YAML `0644` is an integer (and `644` is
/// decimal 644), so integers are refused with a hint instead of being misread.
pub fn deserialize_mode<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => normalize_mode(&s).map(Some).map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => Err(serde::de::Error::custom(format!(
            "mode must be a quoted string like \"0644\", not the number {n} (YAML reads 0644 as octal 420 and 644 as decimal)"
        ))),
        Some(other) => Err(serde::de::Error::custom(format!("mode must be a string like \"0644\", got {other}"))),
    }
}

/// "644" / "0644" / "01777" → four or more octal digits, normalized to 4 digits minimum.
fn normalize_mode(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 5 || !t.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("mode `{s}` is not octal (like \"0644\")"));
    }
    let m = u32::from_str_radix(t, 8).map_err(|_| format!("mode `{s}` is not octal"))?;
    if m > 0o7777 {
        return Err(format!("mode `{s}` is out of range"));
    }
    Ok(format!("{m:04o}"))
}

/// A unified diff of two texts for plan output, or a keyed-hash line when either side is secret
/// or binary.
pub fn content_diff(path: &str, old: Option<&[u8]>, new: &[u8], cx: &DiffCx) -> String {
    if cx.is_secret(new) || old.is_some_and(|o| cx.is_secret(o)) {
        return format!("(secret changed: now {})", cx.keyed_hash(new));
    }
    let old_text = match old {
        Some(o) => match std::str::from_utf8(o) {
            Ok(t) => t,
            Err(_) => {
                return format!(
                    "(binary content changed: {} bytes → {} bytes)",
                    o.len(),
                    new.len()
                )
            }
        },
        None => "",
    };
    let Ok(new_text) = std::str::from_utf8(new) else {
        return format!("(binary content: {} bytes)", new.len());
    };
    similar::TextDiff::from_lines(old_text, new_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on host)"), &format!("{path} (desired)"))
        .to_string()
}
