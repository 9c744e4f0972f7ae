//! Vars whose values are templates (`k3s_token: "{{ vault_k3s_token }}"`), resolved lazily as
//! Ansible does: a var is rendered when something asks for it, so it may refer to any other var
//! (of its own host, or another's through `hostvars`) in any order. A var that needs itself,
//! directly or through others, is a cycle and is reported with the chain. A var rendered from a
//! secret becomes secret itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use serde_json::Value;

use super::{is_template, Ctx, Engine};
use crate::error::{Diag, Loc};
use crate::inventory::VarLayer;

/// A var that could not be rendered, and where it was written.
#[derive(Debug, Clone)]
pub struct VarError {
    pub host: String,
    pub key: String,
    pub loc: Option<Loc>,
    pub message: String,
}

impl VarError {
    /// A diagnostic at the var's own position, or at `fallback` when it has none (`-e`, magic).
    pub fn diag(&self, fallback: Loc, context: &str) -> Diag {
        Diag::at(
            self.loc.clone().unwrap_or(fallback),
            format!("{context}variable `{}`: {}", self.key, self.message),
        )
    }
}

/// Resolve one host's vars (`hostvars`, if wanted, must already be among them).
pub fn resolve(
    engine: &Engine,
    layer: &VarLayer,
    placeholders: bool,
) -> Result<VarLayer, VarError> {
    let mut layers = IndexMap::new();
    layers.insert(String::new(), layer.clone());
    let (mut out, mut errors) = resolve_hosts(engine, layers, placeholders);
    match errors.is_empty() {
        true => Ok(out.swap_remove("").expect("the one host")),
        false => Err(errors.swap_remove(0)),
    }
}

/// Resolve every host's vars, where templates may also read `hostvars[other][name]`, each
/// rendered on first use. Returns the resolved layers and every var that failed (a var that
/// failed is left as written).
pub fn resolve_hosts(
    engine: &Engine,
    layers: IndexMap<String, VarLayer>,
    placeholders: bool,
) -> (IndexMap<String, VarLayer>, Vec<VarError>) {
    let secret_strings: Vec<String> = {
        let mut s: Vec<String> = layers.values().flat_map(|l| l.secret_strings()).collect();
        s.sort();
        s.dedup();
        s
    };
    let facts_pending = layers
        .values()
        .any(|l| l.values.values().any(crate::facts::host::holds_placeholder));
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        layers,
        placeholders,
        secret_strings: Arc::new(secret_strings),
        state: Mutex::new(State {
            facts_pending,
            ..State::default()
        }),
    });
    let mut errors = Vec::new();
    for (h, layer) in &shared.layers {
        for k in layer.values.keys() {
            shared.get(h, k);
            if let Some(e) = shared.state.lock().expect("not poisoned").error.take() {
                errors.push(e);
            }
        }
    }
    let st = shared.state.lock().expect("not poisoned");
    let out = shared
        .layers
        .iter()
        .map(|(h, layer)| {
            let mut l = layer.clone();
            for (k, v) in l.values.iter_mut() {
                if let Some((val, tainted)) = st.done.get(&(h.clone(), k.clone())) {
                    *v = val.clone();
                    if *tainted {
                        l.secret.insert(k.clone());
                    }
                }
            }
            (h.clone(), l)
        })
        .collect();
    (out, errors)
}

struct Shared {
    engine: Engine,
    layers: IndexMap<String, VarLayer>,
    placeholders: bool,
    secret_strings: Arc<Vec<String>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vars of {} hosts", self.layers.len())
    }
}

#[derive(Default)]
struct State {
    /// Rendered vars and whether each is secret.
    done: HashMap<(String, String), (Value, bool)>,
    failed: HashSet<(String, String)>,
    /// Vars being rendered, outermost first: asking for one of these again is a cycle.
    stack: Vec<(String, String)>,
    /// Per render in progress: whether it read a secret var.
    tainted: Vec<bool>,
    /// Per render in progress: whether it read a var still holding a fact placeholder.
    unknown: Vec<bool>,
    /// Some host's facts are placeholders (else `unknown` is never set: no value is walked).
    facts_pending: bool,
    /// The first failure since the caller last looked (the root cause, deepest first).
    error: Option<VarError>,
}

impl State {
    /// The render in progress read `key`'s value `v`: if it holds a fact placeholder, so may its
    /// result. `hostvars` (every host's vars, as one value) does not count: another host's fact
    /// renders as its placeholder, and an error there is a real one.
    fn mark_unknown(&mut self, key: &str, v: &Value) {
        if !self.facts_pending || key == "hostvars" {
            return;
        }
        if let Some(top) = self.unknown.last_mut() {
            if !*top && crate::facts::host::holds_placeholder(v) {
                *top = true;
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// A var's value, rendering it on first use. None: undefined, or failed (recorded).
    fn get(self: &Arc<Self>, host: &str, key: &str) -> Option<Value> {
        let id = (host.to_string(), key.to_string());
        let layer = self.layers.get(host)?;
        let raw = layer.values.get(key)?;
        {
            let mut st = self.lock();
            if let Some((v, t)) = st.done.get(&id).cloned() {
                if let (true, Some(top)) = (t, st.tainted.last_mut()) {
                    *top = true;
                }
                st.mark_unknown(key, &v);
                return Some(v);
            }
            if st.failed.contains(&id) {
                return None;
            }
            if !has_template(raw) {
                let t = layer.is_secret(key);
                st.done.insert(id, (raw.clone(), t));
                if let (true, Some(top)) = (t, st.tainted.last_mut()) {
                    *top = true;
                }
                st.mark_unknown(key, raw);
                return Some(raw.clone());
            }
            if let Some(at) = st.stack.iter().position(|x| *x == id) {
                let chain: Vec<String> = st.stack[at..]
                    .iter()
                    .chain([&id])
                    .map(|(h, k)| relative_name(host, h, k))
                    .collect();
                let e = VarError {
                    host: host.to_string(),
                    key: key.to_string(),
                    loc: layer.locs.get(key).cloned(),
                    message: format!("cycle: {}", chain.join(" -> ")),
                };
                st.error.get_or_insert(e);
                return None;
            }
            st.stack.push(id.clone());
            st.tainted.push(false);
            st.unknown.push(false);
        }
        // Rendering may come back here for other vars: no lock held across it.
        let scope = minijinja::Value::from_object(HostScope {
            shared: self.clone(),
            host: host.to_string(),
        });
        let mut names: BTreeSet<String> = layer.values.keys().cloned().collect();
        names.insert("hostvars".into());
        let mut ctx = Ctx::from_value(
            scope,
            names,
            layer.secret.clone(),
            self.secret_strings.clone(),
        );
        ctx.placeholders = self.placeholders;
        let r = self.engine.render_value(raw, &ctx);
        let mut st = self.lock();
        st.stack.pop();
        let dep_tainted = st.tainted.pop().unwrap_or(false);
        let dep_unknown = st.unknown.pop().unwrap_or(false);
        match r {
            Ok((v, t)) => {
                let t = t || dep_tainted;
                st.done.insert(id, (v.clone(), t));
                if let (true, Some(top)) = (t, st.tainted.last_mut()) {
                    *top = true;
                }
                st.mark_unknown(key, &v);
                Some(v)
            }
            // Read a fact not gathered yet (`check`, or before the host's probe): the var is
            // unknown too until the facts are, not an error. Rendering again with the host's
            // facts reports any real error, before anything reaches the host.
            Err(_) if dep_unknown => {
                let v = Value::String(format!("{}{key}>", crate::facts::host::PLACEHOLDER));
                st.done.insert(id, (v.clone(), dep_tainted));
                st.mark_unknown(key, &v);
                Some(v)
            }
            Err((_, e)) => {
                st.failed.insert(id);
                let e = VarError {
                    host: host.to_string(),
                    key: key.to_string(),
                    loc: layer.locs.get(key).cloned(),
                    message: e.message,
                };
                st.error.get_or_insert(e);
                None
            }
        }
    }
}

/// A var as a template on `from` would name it.
fn relative_name(from: &str, host: &str, key: &str) -> String {
    if host == from {
        key.to_string()
    } else {
        format!("hostvars['{host}'].{key}")
    }
}

/// What a template rendered for one host sees: its vars, rendered on use, and `hostvars`.
#[derive(Debug)]
struct HostScope {
    shared: Arc<Shared>,
    host: String,
}

impl Object for HostScope {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let k = key.as_str()?;
        let layer = self.shared.layers.get(&self.host)?;
        if k == "hostvars" && !layer.values.contains_key("hostvars") {
            return Some(minijinja::Value::from_object(AllHosts(self.shared.clone())));
        }
        self.shared
            .get(&self.host, k)
            .map(|v| minijinja::Value::from(minijinja::value::Serde(&v)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<minijinja::Value> = self
            .shared
            .layers
            .get(&self.host)
            .map(|l| {
                l.values
                    .keys()
                    .map(|k| minijinja::Value::from(k.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        Enumerator::Iter(Box::new(keys.into_iter()))
    }
}

/// `hostvars`: every host's scope, by name.
#[derive(Debug)]
struct AllHosts(Arc<Shared>);

impl Object for AllHosts {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let h = key.as_str()?;
        self.0.layers.contains_key(h).then(|| {
            minijinja::Value::from_object(HostScope {
                shared: self.0.clone(),
                host: h.to_string(),
            })
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<minijinja::Value> = self
            .0
            .layers
            .keys()
            .map(|k| minijinja::Value::from(k.as_str()))
            .collect();
        Enumerator::Iter(Box::new(keys.into_iter()))
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

    fn layer(pairs: &[(&str, Value)]) -> VarLayer {
        VarLayer::from_pairs(pairs)
    }

    #[test]
    fn chains_resolve_and_secrecy_propagates() {
        let mut l = layer(&[
            ("a", json!("{{ b }}-x")),
            ("b", json!("{{ c }}")),
            ("c", json!(5)),
            ("token", json!("{{ vault_token }}")),
            ("derived", json!("{{ token | upper }}")),
            ("list", json!(["{{ c }}", "y"])),
        ]);
        l.values.insert("vault_token".into(), json!("sekrit-1"));
        l.secret.insert("vault_token".into());
        let r = resolve(&Engine::new(Path::new(".")), &l, false).unwrap();
        assert_eq!(r.values["a"], json!("5-x"));
        assert_eq!(r.values["b"], json!(5));
        assert_eq!(r.values["list"], json!([5, "y"]));
        assert_eq!(r.values["token"], json!("sekrit-1"));
        assert!(r.is_secret("token"));
        assert!(r.is_secret("derived"), "secrecy follows through other vars");
        assert!(!r.is_secret("a"));
    }

    #[test]
    fn derived_vars_see_resolved_values() {
        // Order matters: `b` compares `a`, which is itself a template.
        let l = layer(&[
            ("b", json!("{{ 'yes' if a == 'x' else 'no' }}")),
            ("a", json!("{{ 'x' }}")),
        ]);
        let r = resolve(&Engine::new(Path::new(".")), &l, false).unwrap();
        assert_eq!(r.values["b"], json!("yes"));
    }

    #[test]
    fn a_var_needing_an_ungathered_fact_waits_for_it() {
        let vars = |arch: &str| {
            layer(&[
                ("names", json!({"x86_64": "amd64"})),
                (
                    "arch",
                    json!("{{ names[ansible_architecture] | default(ansible_architecture) }}"),
                ),
                ("sums", json!({"amd64": "aa"})),
                (
                    "sum",
                    json!("{{ sums[arch] | mandatory('no sum for ' ~ arch) }}"),
                ),
                ("plain", json!("{{ sums.amd64 }}")),
                ("ansible_architecture", json!(arch)),
            ])
        };
        let e = Engine::new(Path::new("."));
        // Before the facts: unknown, not an error; what needs no fact still renders.
        let r = resolve(&e, &vars("<fact:architecture>"), false).unwrap();
        assert_eq!(r.values["sum"], json!("<fact:sum>"));
        assert_eq!(r.values["plain"], json!("aa"));
        // With them: the value, or the real error.
        let r = resolve(&e, &vars("x86_64"), false).unwrap();
        assert_eq!(r.values["sum"], json!("aa"));
        let err = resolve(&e, &vars("riscv64"), false).unwrap_err();
        assert!(
            err.message.contains("no sum for riscv64"),
            "{}",
            err.message
        );
        // A var that fails whatever the facts is not hidden by them.
        let mut l = vars("<fact:architecture>");
        l.values.insert("typo".into(), json!("{{ nope }}"));
        assert_eq!(resolve(&e, &l, false).unwrap_err().key, "typo");
    }

    #[test]
    fn undefined_names_the_var() {
        let l = layer(&[("a", json!("{{ nope }}"))]);
        let e = resolve(&Engine::new(Path::new(".")), &l, false).unwrap_err();
        assert_eq!(e.key, "a");
        assert!(e.message.contains("`nope`"), "{}", e.message);
    }

    #[test]
    fn cycles_are_reported_with_the_chain_and_position() {
        let mut l = layer(&[
            ("a", json!("{{ b }}")),
            ("b", json!("{{ c | default('x') }}")),
            ("c", json!("{{ a }}")),
        ]);
        l.locs
            .insert("a".into(), Loc::new("group_vars/all.yml", 3, 4));
        let e = resolve(&Engine::new(Path::new(".")), &l, false).unwrap_err();
        assert_eq!(e.message, "cycle: a -> b -> c -> a");
        assert_eq!(e.loc.unwrap().line, 3);
    }

    #[test]
    fn hostvars_are_lazy_across_hosts() {
        // k3s-ansible's sample: every host's api_endpoint reads the first server's address,
        // including the server's own (no false cycle).
        let engine = Engine::new(Path::new("."));
        let groups = json!({"server": ["s1"], "agent": ["a1"]});
        let api = json!(
            "{{ hostvars[groups['server'][0]]['ansible_host'] | default(groups['server'][0]) }}"
        );
        let mut layers = IndexMap::new();
        layers.insert(
            "s1".to_string(),
            layer(&[
                ("ansible_host", json!("10.0.0.{{ 1 + 1 }}")),
                ("api_endpoint", api.clone()),
                ("groups", groups.clone()),
            ]),
        );
        layers.insert(
            "a1".to_string(),
            layer(&[("api_endpoint", api), ("groups", groups)]),
        );
        let (out, errors) = resolve_hosts(&engine, layers, false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out["a1"].values["api_endpoint"], json!("10.0.0.2"));
        assert_eq!(out["s1"].values["api_endpoint"], json!("10.0.0.2"));

        let mut layers = IndexMap::new();
        layers.insert(
            "x".to_string(),
            layer(&[("v", json!("{{ hostvars['y'].v }}"))]),
        );
        layers.insert(
            "y".to_string(),
            layer(&[("v", json!("{{ hostvars['x'].v }}"))]),
        );
        let (_, errors) = resolve_hosts(&engine, layers, false);
        assert_eq!(errors[0].message, "cycle: v -> hostvars['y'].v -> v");
    }
}
