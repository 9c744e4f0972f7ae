//! JSON Schemas for `role.yml`, `site.yml` and the inventory, for editors (the YAML language
//! server) and CI. Resource specs come from their Rust types (`schemars` derives on each
//! `Spec`, so a new key or enum value is in the schema the moment it parses); the keys around
//! them (a play, a role entry, a resource entry's `name`/`tags`/`when`/`notify`/`loop`) mirror
//! the hand-written parser in `site/`, and a test feeds every key the schema allows back to
//! that parser. The files are committed in `schemas/` and copied into every `labctl init` repo;
//! a test fails when the committed ones are stale.

pub mod docs;

use serde_json::{json, Map, Value};

pub const DIR: &str = "schemas";
const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// `(path, text)` of every schema file, as committed.
pub fn files() -> Vec<(String, String)> {
    [
        ("role", role()),
        ("site", site()),
        ("inventory", inventory()),
    ]
    .into_iter()
    .map(|(n, v)| {
        (
            format!("{DIR}/{n}.schema.json"),
            format!(
                "{}\n",
                serde_json::to_string_pretty(&v).expect("serializes")
            ),
        )
    })
    .collect()
}

/// A value rendered by the template engine: any string holding `{{`.
fn template() -> Value {
    json!({"type": "string", "pattern": "\\{\\{", "description": "a template (rendered per host before it is read)"})
}

/// Every place a value sits (properties, items, map values) also accepts a template string,
/// because specs are rendered before they are read: `packages: "{{ base_packages }}"`.
fn templatable(v: &mut Value) {
    let Value::Object(o) = v else { return };
    for key in ["properties", "$defs"] {
        if let Some(Value::Object(props)) = o.get_mut(key) {
            for p in props.values_mut() {
                templatable(p);
                wrap(p);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(p) = o.get_mut(key) {
            if p.is_object() {
                templatable(p);
                wrap(p);
            }
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(a)) = o.get_mut(key) {
            a.iter_mut().for_each(templatable);
        }
    }
}

fn wrap(p: &mut Value) {
    let plain_string = p.get("type") == Some(&json!("string"))
        && !["enum", "const", "pattern", "format"]
            .iter()
            .any(|k| p.get(k).is_some());
    if plain_string || p.get("$ref").is_some() && p.as_object().is_some_and(|o| o.len() == 1) {
        return;
    }
    let Value::Object(o) = p else { return };
    // Descriptions stay on the outside, where editors show them.
    let mut outer = Map::new();
    for k in ["description", "markdownDescription", "default"] {
        if let Some(d) = o.remove(k) {
            outer.insert(k.into(), d);
        }
    }
    let inner = std::mem::take(o);
    outer.insert(
        "anyOf".into(),
        json!([Value::Object(inner), {"$ref": "#/$defs/template"}]),
    );
    *o = outer;
}

fn string_or_list(what: &str) -> Value {
    json!({
        "description": what,
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
    })
}

/// `role.yml`: `resources:` and `handlers:`, each entry one type key plus the common keys.
pub fn role() -> Value {
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut defs = Map::new();
    defs.insert("template".into(), template());
    let mut variants = Vec::new();
    for (kind, schema) in crate::resources::spec_schemas(&mut g) {
        let mut spec = schema.to_value();
        templatable(&mut spec);
        if let Value::Object(o) = &mut spec {
            o.remove("$schema");
            o.remove("title");
            o.insert("description".into(), json!(docs::summary(kind)));
            o.insert(
                "markdownDescription".into(),
                json!(docs::doc(kind).unwrap_or_default()),
            );
        }
        let mut props = common_keys();
        props.insert(kind.to_string(), spec);
        defs.insert(
            format!("entry_{kind}"),
            json!({
                "type": "object",
                "description": format!("a `{kind}` resource: {}", docs::summary(kind)),
                "properties": props,
                "required": [kind],
                "additionalProperties": false
            }),
        );
        variants.push(json!({"$ref": format!("#/$defs/entry_{kind}")}));
    }
    defs.insert("entry".into(), json!({"anyOf": variants}));
    json!({
        "$schema": DRAFT,
        "title": "labctl role (roles/NAME/role.yml)",
        "description": "A role's resources, in order, and its handlers (run once after the role when notified). Defaults go in defaults.yml.",
        "type": ["object", "null"],
        "properties": {
            "resources": {"type": "array", "items": {"$ref": "#/$defs/entry"}, "description": "Resources, converged in this order"},
            "handlers": {"type": "array", "items": {"$ref": "#/$defs/entry"}, "description": "Run once after the role's resources when a changed resource names them in `notify`"},
            "per_environment": {"type": "boolean", "description": "true: `-e target_environment=NAME` applies `environments.NAME`'s vars to this role (each environment has its own). Otherwise the role is shared by all environments and never sees them"}
        },
        "additionalProperties": false,
        "$defs": defs
    })
}

/// The keys every resource entry may have besides its type key (`site::COMMON_KEYS`).
fn common_keys() -> Map<String, Value> {
    let mut m = Map::new();
    for k in crate::site::COMMON_KEYS {
        let v = match *k {
            "name" => {
                json!({"type": "string", "description": "Names the resource in ids and plan output (default: the type's own name for it, e.g. the path); handlers are notified by name"})
            }
            "tags" => string_or_list("Tags for --tags/--skip-tags (the role's name is always one)"),
            "when" => string_or_list(
                "Conditions (Jinja expressions without braces); a list means all must be true",
            ),
            "notify" => string_or_list(
                "Handlers (by name) to run after the role when this resource changed",
            ),
            "loop" => {
                json!({"description": "A list, or a template giving one; each item is bound to `item`", "anyOf": [{"type": "array"}, {"$ref": "#/$defs/template"}]})
            }
            "run_once" => {
                json!({"type": "boolean", "description": "Only the play's first selected host runs it (as Ansible's run_once)"})
            }
            other => unreachable!("site::COMMON_KEYS has `{other}`: describe it here"),
        };
        m.insert(k.to_string(), v);
    }
    m
}

fn vars() -> Value {
    json!({"type": ["object", "null"], "description": "Variables (name → value)", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}})
}

/// `site.yml`: an ordered list of plays (`site::PLAY_KEYS`).
pub fn site() -> Value {
    let mut props = Map::new();
    for k in crate::site::PLAY_KEYS {
        let v = match *k {
            "name" => {
                json!({"type": "string", "description": "Shown in output; defaults to `hosts`"})
            }
            "hosts" => {
                json!({"type": "string", "description": "A host pattern: a group, a host, `all:!k3s_agents`, `web*`"})
            }
            "vars" => vars(),
            "roles" => {
                json!({"type": "array", "description": "Roles applied in order (roles/NAME/)", "items": {"anyOf": [
                    {"type": "string", "description": "a role's name"},
                    {"type": "object", "properties": {
                        "role": {"type": "string", "description": "the role's name"},
                        "tags": string_or_list("more tags for every resource of the role"),
                        "vars": vars()
                    }, "required": ["role"], "additionalProperties": false}
                ]}})
            }
            "serial" => {
                json!({"type": "integer", "minimum": 1, "description": "Rolling batches: this many hosts at a time"})
            }
            "max_fail_percentage" => {
                json!({"type": "integer", "minimum": 0, "maximum": 100, "description": "Stop before the next batch when more than this percentage of hosts failed"})
            }
            "any_errors_fatal" => {
                json!({"type": "boolean", "description": "true: one failed host stops the run (max_fail_percentage 0)"})
            }
            "run_once" => {
                json!({"type": "boolean", "description": "Every resource of the play runs on the play's first selected host only"})
            }
            other => unreachable!("site::PLAY_KEYS has `{other}`: describe it here"),
        };
        props.insert(k.to_string(), v);
    }
    json!({
        "$schema": DRAFT,
        "title": "labctl site (site.yml)",
        "description": "The lab's plays, in order. Each role's name is also a tag.",
        "type": "array",
        "items": {"type": "object", "properties": props, "required": ["hosts"], "additionalProperties": false}
    })
}

/// Ansible's YAML inventory, with the host vars labctl reads described.
pub fn inventory() -> Value {
    let host_vars = json!({
        "type": ["object", "null"],
        "description": "Host variables",
        "properties": {
            "ansible_host": {"type": "string", "description": "Address to connect to (default: the host's name)"},
            "ansible_port": {"type": ["integer", "string"], "description": "SSH port"},
            "ansible_user": {"type": "string", "description": "SSH user: root, or one with passwordless sudo"},
            "ansible_ssh_private_key_file": {"type": "string", "description": "SSH private key"},
            "ansible_become": {"type": "boolean", "description": "Run as root through `sudo -n`"},
            "ansible_connection": {"enum": ["ssh", "local"], "description": "`local`: this machine, no SSH"},
            "labctl_known_hosts": {"type": "string", "description": "A known_hosts file for this host's key (checked strictly)"},
            "wg_address": {"type": "string", "description": "The node's WireGuard tunnel address (roles/wireguard)", "format": "ipv4"}
        }
    });
    json!({
        "$schema": DRAFT,
        "title": "labctl inventory (Ansible YAML format)",
        "description": "Groups (all, then children) with hosts and vars. group_vars/ and host_vars/ beside this file add vars.",
        "type": "object",
        "additionalProperties": {"$ref": "#/$defs/group"},
        "$defs": {
            "hostvars": host_vars,
            "group": {
                "type": ["object", "null"],
                "properties": {
                    "hosts": {"type": ["object", "null"], "description": "Hosts of this group (name → vars)", "additionalProperties": {"$ref": "#/$defs/hostvars"}},
                    "children": {"type": ["object", "null"], "description": "Child groups (name → group)", "additionalProperties": {"$ref": "#/$defs/group"}},
                    "vars": vars()
                },
                "additionalProperties": false
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The committed schemas are what the code generates. `LABCTL_BLESS=1` rewrites them.
    #[test]
    fn committed_schemas_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bless = std::env::var("LABCTL_BLESS").as_deref() == Ok("1");
        let mut stale = Vec::new();
        for (rel, text) in super::files() {
            let p = root.join(&rel);
            if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
                if bless {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, &text).unwrap();
                } else {
                    stale.push(rel);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "stale schema file(s) {stale:?}: run `LABCTL_BLESS=1 cargo test --lib schema` and commit them"
        );
    }

    /// This repo's editor settings are the ones `labctl init` writes.
    #[test]
    fn vscode_settings_are_current() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".vscode/settings.json");
        let want = crate::init::render::vscode_settings();
        if std::env::var("LABCTL_BLESS").as_deref() == Ok("1") {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &want).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&p).unwrap_or_default(),
            want,
            "{} is stale: LABCTL_BLESS=1 cargo test --lib schema",
            p.display()
        );
    }

    #[test]
    fn every_type_key_and_enum_is_in_the_role_schema() {
        let r = super::role();
        for k in crate::resources::KINDS {
            let e = &r["$defs"][format!("entry_{k}")];
            assert_eq!(e["required"][0], *k);
            assert!(e["properties"][k]["markdownDescription"]
                .as_str()
                .unwrap()
                .contains("```yaml"));
        }
        let svc = r["$defs"]["entry_service"]["properties"]["service"].to_string();
        for v in ["started", "stopped", "restarted", "reloaded"] {
            assert!(svc.contains(&format!("\"{v}\"")), "service states: {svc}");
        }
    }
}
