//! Strict validation of one object, as an API server with field validation `Strict` does it:
//! unknown fields, wrong types, missing required fields and values outside an enum are refused.
//!
//! Built-in kinds are checked against the Kubernetes OpenAPI schemas of one minor version, in the
//! "strict" JSON Schema form the `kubernetes-validate` package ships (`_definitions.json`, where
//! every object schema says `additionalProperties: false`). Custom resources are checked against
//! their CRD's `openAPIV3Schema`, a structural schema: there an unknown field is one no
//! `properties` names, unless `x-kubernetes-preserve-unknown-fields` keeps it, and `null` is
//! pruned rather than refused (Kubernetes drops nulls of non-nullable CRD fields).
//!
//! Left out on purpose: `format`, patterns and bounds (the API server checks a few, inconsistently),
//! and CEL rules, which only an API server evaluates.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{group_version, Scopes};

/// Messages kept per object: past this the rest is one line, the first ones say enough.
const MAX_PER_OBJECT: usize = 20;

/// Kinds Kubernetes keeps at cluster scope. The OpenAPI schemas do not say which kinds are
/// namespaced, so the built-in list is kept here (kubectl api-resources --namespaced=false, 1.36).
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterTrustBundle",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "DeviceClass",
    "DeviceTaintRule",
    "FlowSchema",
    "IngressClass",
    "IPAddress",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ResourceSlice",
    "RuntimeClass",
    "ServiceCIDR",
    "StorageClass",
    "StorageVersion",
    "StorageVersionMigration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "VolumeAttributesClass",
];

/// Why the built-in schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not JSON: {source}", file.display())]
    NotJson {
        file: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error("{} has no `$defs`", file.display())]
    NoDefs { file: std::path::PathBuf },
}

/// An object no schema describes: the API server refuses it as a whole ("no matches for kind").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("has no apiVersion or kind")]
    Missing,
    #[error("no kind {kind} in {api_version}: not a built-in kind of this Kubernetes version, and no CRD sent before it defines it")]
    Unknown { kind: String, api_version: String },
}

/// The built-in kinds' schemas of one Kubernetes minor.
pub struct Builtin {
    defs: Map<String, Value>,
    /// (group, version, kind) → definition name.
    gvk: HashMap<(String, String, String), String>,
}

impl Builtin {
    /// `dir`: a `kubernetes-validate` schema folder such as `v1.36.0-local-strict`.
    pub fn load(dir: &Path) -> Result<Builtin, SchemaError> {
        let file = dir.join("_definitions.json");
        let text = std::fs::read_to_string(&file).map_err(|source| SchemaError::Read {
            file: file.clone(),
            source,
        })?;
        let mut doc: Value =
            serde_json::from_str(&text).map_err(|source| SchemaError::NotJson {
                file: file.clone(),
                source,
            })?;
        let key = if doc.get("$defs").is_some() {
            "$defs"
        } else {
            "definitions"
        };
        let defs = match doc.get_mut(key) {
            Some(Value::Object(m)) => std::mem::take(m),
            _ => return Err(SchemaError::NoDefs { file }),
        };
        let mut gvk = HashMap::new();
        for (name, d) in &defs {
            for g in d
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                gvk.insert((s("group"), s("version"), s("kind")), name.clone());
            }
        }
        Ok(Builtin { defs, gvk })
    }

    fn lookup(&self, api_version: &str, kind: &str) -> Option<&Value> {
        let (g, v) = group_version(api_version);
        let name = self
            .gvk
            .get(&(g.to_string(), v.to_string(), kind.to_string()))?;
        self.defs.get(name)
    }

    fn object_meta(&self) -> Option<&Value> {
        self.defs
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    }
}

/// A served version of a custom kind: its schema and scope, and the CRD that defines it.
struct Custom {
    schema: Value,
    namespaced: bool,
}

/// Everything one object can be checked against.
#[derive(Default)]
pub struct Schemas {
    builtin: Option<Builtin>,
    custom: HashMap<(String, String, String), Custom>,
}

impl Scopes for Schemas {
    fn namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        let (g, v) = group_version(api_version);
        if let Some(c) = self
            .custom
            .get(&(g.to_string(), v.to_string(), kind.to_string()))
        {
            return Some(c.namespaced);
        }
        if CLUSTER_SCOPED.contains(&kind)
            && (g.is_empty() || g.ends_with(".k8s.io") || !g.contains('.'))
        {
            return Some(false);
        }
        match &self.builtin {
            Some(b) => b.lookup(api_version, kind).map(|_| true),
            // Without the built-in schemas, a core-looking group is still known to be namespaced.
            None => (g.is_empty() || g.ends_with(".k8s.io") || !g.contains('.')).then_some(true),
        }
    }
}

impl Schemas {
    pub fn new(builtin: Option<Builtin>) -> Schemas {
        Schemas {
            builtin,
            custom: HashMap::new(),
        }
    }

    /// Learn the served versions of a `CustomResourceDefinition` object.
    pub fn add_crd(&mut self, crd: &Value) {
        let spec = crd.get("spec").unwrap_or(&Value::Null);
        let s = |p: &str| spec.pointer(p).and_then(Value::as_str).unwrap_or("");
        let group = s("/group").to_string();
        let kind = s("/names/kind").to_string();
        let namespaced = s("/scope") != "Cluster";
        for v in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            // A version without a schema accepts anything (apiextensions/v1 requires one, but
            // say nothing rather than refuse every field).
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .unwrap_or_else(
                    || serde_json::json!({"x-kubernetes-preserve-unknown-fields": true}),
                );
            self.custom.insert(
                (group.clone(), name.to_string(), kind.clone()),
                Custom { schema, namespaced },
            );
        }
    }

    /// Every reason the API server would refuse `obj` (empty: accepted). `Err`: no schema for
    /// its kind at all, which is itself a refusal ("no matches for kind").
    pub fn validate(&self, obj: &Value) -> Result<Vec<String>, KindError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return Err(KindError::Missing);
        }
        let (g, v) = group_version(api_version);
        let mut out = Vec::new();
        if let Some(c) = self
            .custom
            .get(&(g.to_string(), v.to_string(), kind.to_string()))
        {
            let mut w = Walk {
                defs: self.builtin.as_ref().map(|b| &b.defs),
                custom: true,
                out: &mut out,
            };
            w.custom_root(
                &c.schema,
                obj,
                self.builtin.as_ref().and_then(Builtin::object_meta),
            );
        } else if let Some(b) = &self.builtin {
            let Some(schema) = b.lookup(api_version, kind) else {
                return Err(KindError::Unknown {
                    kind: kind.to_string(),
                    api_version: api_version.to_string(),
                });
            };
            let mut w = Walk {
                defs: Some(&b.defs),
                custom: false,
                out: &mut out,
            };
            w.check(schema, obj, "");
        } else {
            return Ok(vec![]);
        }
        if out.len() > MAX_PER_OBJECT {
            let more = out.len() - MAX_PER_OBJECT;
            out.truncate(MAX_PER_OBJECT);
            out.push(format!("… and {more} more"));
        }
        Ok(out)
    }
}

struct Walk<'a> {
    defs: Option<&'a Map<String, Value>>,
    /// Structural (CRD) rules: nulls pruned, unknown fields unless preserved.
    custom: bool,
    out: &'a mut Vec<String>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, json_type(v)) {
        (w, g) if w == g => true,
        ("number", "integer") => true,
        // 3.0 from a template is still an integer to Go's decoder.
        ("integer", "number") => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "(top)"
    } else {
        path
    }
}

impl<'a> Walk<'a> {
    /// The root of a custom resource: apiVersion and kind are implied, metadata is ObjectMeta
    /// whatever the CRD's schema says of it.
    fn custom_root(&mut self, schema: &Value, obj: &Value, meta: Option<&Value>) {
        let Value::Object(m) = obj else {
            self.out.push("is not an object".into());
            return;
        };
        let mut rest = m.clone();
        rest.remove("apiVersion");
        rest.remove("kind");
        if let (Some(md), Some(ms)) = (rest.remove("metadata"), meta) {
            let mut w = Walk {
                defs: self.defs,
                custom: false,
                out: &mut *self.out,
            };
            w.check_any(ms, &md, "metadata");
        }
        // `status` is a subresource: what a client sends there is dropped, not refused.
        rest.remove("status");
        let mut s = schema.clone();
        if let Some(p) = s.get_mut("properties").and_then(Value::as_object_mut) {
            for k in ["apiVersion", "kind", "metadata", "status"] {
                p.remove(k);
            }
        }
        if let Some(Value::Array(req)) = s.get_mut("required") {
            req.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
        }
        self.check_any(&s, &Value::Object(rest), "");
    }

    fn check(&mut self, schema: &Value, v: &Value, path: &str) {
        self.check_any(schema, v, path)
    }

    /// Follow `$ref`s into the built-in definitions.
    fn deref_any<'s>(&self, schema: &'s Value) -> &'s Value
    where
        'a: 's,
    {
        let mut s = schema;
        for _ in 0..8 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                return s;
            };
            let name = r.rsplit('/').next().unwrap_or(r);
            match self.defs.and_then(|d| d.get(name)) {
                Some(t) => s = t,
                None => return s,
            }
        }
        s
    }
}

impl Walk<'_> {
    /// The walk itself; `schema` may be borrowed from anywhere.
    fn check_any(&mut self, schema: &Value, v: &Value, path: &str) {
        let schema = self.deref_any(schema);
        if v.is_null() {
            // Structural schemas prune nulls; built-in types decode null as the zero value.
            return;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(alts)) = schema.get(key) {
                let ok = alts.iter().any(|alt| {
                    let mut scratch = Vec::new();
                    let mut w = Walk {
                        defs: self.defs,
                        custom: self.custom,
                        out: &mut scratch,
                    };
                    w.check_any(alt, v, path);
                    scratch.is_empty()
                });
                if !ok {
                    let kinds: Vec<String> = alts
                        .iter()
                        .filter_map(|a| self.deref_any(a).get("type").map(type_words))
                        .collect();
                    if kinds.is_empty() {
                        self.out
                            .push(format!("{}: matches none of its {key} schemas", at(path)));
                    } else {
                        self.out.push(format!(
                            "{}: must be {}, got {}",
                            at(path),
                            kinds.join(" or "),
                            json_type(v)
                        ));
                    }
                    return;
                }
            }
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for s in all {
                self.check_any(s, v, path);
            }
        }
        let int_or_string = schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true);
        if int_or_string {
            if !matches!(json_type(v), "integer" | "string") {
                self.out.push(format!(
                    "{}: must be an integer or a string, got {}",
                    at(path),
                    json_type(v)
                ));
            }
            return;
        }
        if let Some(t) = schema.get("type") {
            let ok = match t {
                Value::String(w) => type_ok(w, v),
                Value::Array(ws) => ws.iter().filter_map(Value::as_str).any(|w| type_ok(w, v)),
                _ => true,
            };
            if !ok {
                self.out.push(format!(
                    "{}: must be {}, got {}",
                    at(path),
                    type_words(t),
                    json_type(v)
                ));
                return;
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.is_empty() && !allowed.contains(v) {
                let list: Vec<String> = allowed
                    .iter()
                    .filter(|a| !a.is_null())
                    .map(|a| a.to_string())
                    .collect();
                self.out.push(format!(
                    "{}: {} is not one of {}",
                    at(path),
                    v,
                    list.join(", ")
                ));
            }
        }
        match v {
            Value::Object(m) => self.object(schema, m, path),
            Value::Array(items) => {
                if let Some(is) = schema.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        self.check_any(is, x, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, schema: &Value, m: &Map<String, Value>, path: &str) {
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let embedded = schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true);
        let extra = schema.get("additionalProperties");
        for (k, x) in m {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if let Some(s) = props.and_then(|p| p.get(k)) {
                self.check_any(s, x, &sub);
                continue;
            }
            match extra {
                Some(Value::Object(_)) => self.check_any(extra.unwrap(), x, &sub),
                Some(Value::Bool(false)) => self.unknown(&sub, props),
                Some(_) => {}
                None if self.custom => {
                    let implied =
                        embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                    if !preserve && !implied {
                        self.unknown(&sub, props);
                    }
                }
                None => {}
            }
        }
        if let Some(Value::Array(req)) = schema.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    let p = if path.is_empty() {
                        r.to_string()
                    } else {
                        format!("{path}.{r}")
                    };
                    self.out.push(format!("{p}: required field is missing"));
                }
            }
        }
    }

    fn unknown(&mut self, path: &str, props: Option<&Map<String, Value>>) {
        let known: Vec<&str> = props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let hint = if known.is_empty() {
            "this object takes no fields".to_string()
        } else if known.len() <= 12 {
            format!("known fields here: {}", known.join(", "))
        } else {
            format!("{} fields are known here", known.len())
        };
        self.out.push(format!(
            "{path}: unknown field (strict validation refuses it; {hint})"
        ));
    }
}

fn type_words(t: &Value) -> String {
    let words: Vec<&str> = match t {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect(),
        _ => vec![],
    };
    let a = |w: &str| match w {
        "integer" | "array" | "object" => format!("an {w}"),
        other => format!("a {other}"),
    };
    words.iter().map(|w| a(w)).collect::<Vec<_>>().join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny built-in world in the strict form kubernetes-validate ships.
    fn builtin() -> Builtin {
        let d = tempfile::tempdir().unwrap();
        let defs = json!({"$defs": {
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": ["object", "null"], "additionalProperties": false,
                "properties": {"name": {"type": ["string", "null"]}, "namespace": {"type": ["string", "null"]},
                    "labels": {"type": ["object", "null"], "additionalProperties": {"type": ["string", "null"]}}}},
            "intstr.IntOrString": {"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]},
            "core.ServicePort": {"type": ["object", "null"], "additionalProperties": false, "required": ["port"],
                "properties": {"port": {"type": "integer"}, "targetPort": {"$ref": "/api/_definitions.json#/$defs/intstr.IntOrString"},
                    "protocol": {"type": ["string", "null"], "enum": ["TCP", "UDP", "SCTP"]}}},
            "core.Service": {"type": "object", "additionalProperties": false,
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}],
                "properties": {"apiVersion": {"type": ["string", "null"]}, "kind": {"type": ["string", "null"]},
                    "metadata": {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                    "spec": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                        "ports": {"type": ["array", "null"], "items": {"$ref": "/api/_definitions.json#/$defs/core.ServicePort"}}}}}}
        }});
        std::fs::write(d.path().join("_definitions.json"), defs.to_string()).unwrap();
        Builtin::load(d.path()).unwrap()
    }

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "clusters.postgresql.cnpg.io"},
            "spec": {"group": "postgresql.cnpg.io", "scope": "Namespaced", "names": {"kind": "Cluster"},
                "versions": [{"name": "v1", "served": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "required": ["spec"], "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                        "spec": {"type": "object", "required": ["instances"], "properties": {
                            "instances": {"type": "integer"},
                            "bootstrap": {"type": "object"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "mode": {"type": "string", "enum": ["a", "b"]},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}]}})
    }

    fn errors(s: &Schemas, v: Value) -> Vec<String> {
        s.validate(&v).unwrap()
    }

    #[test]
    fn builtin_kinds_refuse_unknown_fields_wrong_types_enums_and_missing_required() {
        let s = Schemas::new(Some(builtin()));
        let ok = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}, {"port": 81, "targetPort": 8080}]}});
        assert_eq!(errors(&s, ok), Vec::<String>::new());
        let bad = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "lables": {}},
            "spec": {"ports": [{"port": "80", "targetPort": true, "protocol": "HTTP"}, {"targetPort": 1}]}});
        let e = errors(&s, bad);
        assert!(
            e.iter()
                .any(|m| m.starts_with("metadata.lables: unknown field")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "spec.ports[0].port: must be an integer, got string"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m
                    == "spec.ports[0].targetPort: must be a string or an integer, got boolean"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.ports[0].protocol: \"HTTP\" is not one of")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "spec.ports[1].port: required field is missing"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_kinds_are_refused_until_a_crd_defines_them() {
        let mut s = Schemas::new(Some(builtin()));
        let cr = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "db"}, "spec": {"instances": 1}});
        assert!(s
            .validate(&cr)
            .unwrap_err()
            .to_string()
            .contains("no kind Cluster"));
        assert_eq!(s.namespaced("postgresql.cnpg.io/v1", "Cluster"), None);
        s.add_crd(&crd());
        assert_eq!(errors(&s, cr), Vec::<String>::new());
        assert_eq!(s.namespaced("postgresql.cnpg.io/v1", "Cluster"), Some(true));
        assert_eq!(s.namespaced("v1", "Namespace"), Some(false));
        assert_eq!(s.namespaced("v1", "Service"), Some(true));
    }

    #[test]
    fn custom_resources_follow_structural_rules() {
        let mut s = Schemas::new(Some(builtin()));
        s.add_crd(&crd());
        let e = errors(
            &s,
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "annotation": {}},
            "spec": {"instances": 1, "port": 5432, "mode": "c", "imageName": "x", "bootstrap": null,
                "extra": {"anything": {"goes": 1}}, "labels": {"a": 1}},
            "status": {"whatever": true}}),
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.imageName: unknown field")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("metadata.annotation: unknown field")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.mode: \"c\" is not one of")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "spec.labels.a: must be a string, got integer"),
            "{e:?}"
        );
        assert_eq!(
            e.len(),
            4,
            "null is pruned, preserved fields and status pass: {e:?}"
        );
        let e = errors(
            &s,
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg"}, "spec": {"port": [1]}}),
        );
        assert!(
            e.contains(&"spec.instances: required field is missing".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.port: must be an integer or a string, got array".to_string()),
            "{e:?}"
        );
    }
}
