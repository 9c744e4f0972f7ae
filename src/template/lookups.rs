//! `lookup(…)` / `query(…)` for the lookups homelab roles use: `env`, `file`, `template`,
//! `inventory_hostnames`, `password` (see `passwords`). `lookup` joins several results with `,` (as Ansible does), `query`
//! (`q`) returns the list. Paths are looked up in the current role first (`files/`,
//! `templates/`), then from the project root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, Error, ErrorKind, State, Value};

use super::passwords::PasswordStore;

type Store = Arc<OnceLock<Arc<PasswordStore>>>;

pub fn register(env: &mut Environment<'static>, root: &Path, store: Store) {
    let r1 = root.to_path_buf();
    let s1 = store.clone();
    env.add_function(
        "lookup",
        move |state: &State,
              name: String,
              terms: Rest<Value>,
              kw: Kwargs|
              -> Result<Value, Error> {
            let wantlist: Option<bool> = kw.get("wantlist")?;
            let items = run(state, &r1, &s1, &name, terms.0, &kw)?;
            if wantlist.unwrap_or(false) {
                return Ok(Value::from(items));
            }
            Ok(match items.len() {
                1 => items.into_iter().next().expect("one"),
                _ => Value::from(
                    items
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            })
        },
    );
    for q in ["query", "q"] {
        let r = root.to_path_buf();
        let s = store.clone();
        env.add_function(
            q,
            move |state: &State,
                  name: String,
                  terms: Rest<Value>,
                  kw: Kwargs|
                  -> Result<Value, Error> {
                Ok(Value::from(run(state, &r, &s, &name, terms.0, &kw)?))
            },
        );
    }
}

fn fail(lookup: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("lookup('{lookup}'): {msg}"),
    )
}

fn run(
    state: &State,
    root: &Path,
    store: &Store,
    name: &str,
    terms: Vec<Value>,
    kw: &Kwargs,
) -> Result<Vec<Value>, Error> {
    let short = name.strip_prefix("ansible.builtin.").unwrap_or(name);
    let _: Option<bool> = kw.get("wantlist")?;
    let out = match short {
        "env" => {
            let default: Option<Value> = kw.get("default")?;
            terms
                .iter()
                .map(|t| match std::env::var(t.to_string()) {
                    Ok(v) => Value::from(v),
                    Err(_) => default.clone().unwrap_or(Value::from("")),
                })
                .collect()
        }
        "file" => {
            let rstrip: Option<bool> = kw.get("rstrip")?;
            let mut out = Vec::new();
            for t in &terms {
                let p = find(state, root, "files", &t.to_string())
                    .ok_or_else(|| fail("file", format!("`{t}` not found in the role's files/ or the project")))?;
                let s = std::fs::read_to_string(&p).map_err(|e| fail("file", format!("{}: {e}", p.display())))?;
                out.push(Value::from(if rstrip.unwrap_or(true) {
                    s.trim_end().to_string()
                } else {
                    s
                }));
            }
            out
        }
        "template" => {
            let mut out = Vec::new();
            let vars: BTreeMap<String, Value> = state
                .known_variables()
                .into_iter()
                .filter_map(|k| state.lookup(&k).map(|v| (k.to_string(), v)))
                .collect();
            for t in &terms {
                let p = find(state, root, "templates", &t.to_string()).ok_or_else(|| {
                    fail("template", format!("`{t}` not found in the role's templates/ or the project"))
                })?;
                let src = std::fs::read_to_string(&p)
                    .map_err(|e| fail("template", format!("{}: {e}", p.display())))?;
                let src = super::ansible::strip_collection_prefixes(&src);
                out.push(Value::from(state.env().render_str(&src, Value::from(vars.clone()))?));
            }
            out
        }
        "inventory_hostnames" => {
            let groups: IndexMap<String, Vec<String>> = state
                .lookup("groups")
                .and_then(|g| serde_json::from_value(serde_json::to_value(&g).ok()?).ok())
                .ok_or_else(|| fail("inventory_hostnames", "`groups` is not available here"))?;
            let mut out = Vec::new();
            for t in &terms {
                let hosts = crate::inventory::pattern::select_in(&groups, "the inventory", &t.to_string())
                    .map_err(|e| fail("inventory_hostnames", e))?;
                out.extend(hosts.into_iter().map(Value::from));
            }
            out
        }
        "password" => {
            let store = store.get().ok_or_else(|| {
                fail("password", "no password vault here (it needs the inventory and the vault key)")
            })?;
            let length: Option<usize> = kw.get("length")?;
            let chars: Option<String> = kw.get("chars")?;
            let mut out = Vec::new();
            for t in &terms {
                // `NAME length=N chars=a,b` as Ansible writes the term; kwargs work too.
                let t = t.to_string();
                let mut words = t.split_whitespace();
                let name = words.next().unwrap_or_default().to_string();
                let (mut len, mut ch) = (length.unwrap_or(20), chars.clone());
                for w in words {
                    match w.split_once('=') {
                        Some(("length", n)) => {
                            len = n.parse().map_err(|_| fail("password", format!("length `{n}` is not a number")))?
                        }
                        Some(("chars", c)) => ch = Some(c.to_string()),
                        // Ansible's encrypt/seed/ident shape the file it writes: nothing to do here.
                        Some(("encrypt" | "seed" | "ident", _)) => {}
                        _ => return Err(fail("password", format!("`{w}` is not something labctl knows (length=, chars=)"))),
                    }
                }
                let alphabet = super::passwords::alphabet(ch.as_deref());
                out.push(Value::from(
                    store
                        .get_or_generate(&name, len, &alphabet)
                        .map_err(|e| fail("password", e))?,
                ));
            }
            out
        }
        other => {
            return Err(Error::new(
                ErrorKind::UnknownFunction,
                format!("`{other}` is an Ansible lookup that labctl does not have (it has env, file, template, password, inventory_hostnames)"),
            ))
        }
    };
    Ok(out)
}

/// A role-relative path (`roles/ROLE/DIR/NAME`) when rendering inside a role, else the project's.
fn find(state: &State, root: &Path, dir: &str, name: &str) -> Option<PathBuf> {
    if name.split('/').any(|c| c == "..") {
        return None;
    }
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let role = state
        .lookup("role_name")
        .and_then(|v| v.as_str().map(String::from));
    let mut candidates = Vec::new();
    if let Some(r) = role {
        candidates.push(root.join("roles").join(&r).join(dir).join(name));
        candidates.push(root.join("roles").join(&r).join(name));
    }
    candidates.push(root.join(name));
    candidates.into_iter().find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn lookups_env_file_template_hosts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("roles/web/files")).unwrap();
        std::fs::create_dir_all(d.path().join("roles/web/templates")).unwrap();
        std::fs::write(d.path().join("roles/web/files/motd"), "hello\n\n").unwrap();
        std::fs::write(
            d.path().join("roles/web/templates/t.j2"),
            "{{ who }}@{{ inventory_hostname }}",
        )
        .unwrap();
        let mut vars = indexmap::IndexMap::new();
        vars.insert("role_name".to_string(), json!("web"));
        vars.insert("who".to_string(), json!("me"));
        vars.insert("inventory_hostname".to_string(), json!("h1"));
        vars.insert(
            "groups".to_string(),
            json!({"all": ["h1", "h2", "h3"], "web": ["h1", "h2"], "db": ["h3"]}),
        );
        let r = |s: &str| crate::template::render_for_test(d.path(), &vars, s);
        std::env::set_var("LABCTL_TEST_LOOKUP_ENV", "v1");
        assert_eq!(r("{{ lookup('env', 'LABCTL_TEST_LOOKUP_ENV') }}"), "v1");
        assert_eq!(
            r("{{ lookup('ansible.builtin.env', 'LABCTL_NO_SUCH_VAR', default='d') }}"),
            "d"
        );
        assert_eq!(r("{{ lookup('file', 'motd') }}"), "hello");
        assert_eq!(r("{{ lookup('template', 't.j2') }}"), "me@h1");
        assert_eq!(
            r("{{ query('inventory_hostnames', 'all:!db') }}"),
            "['h1', 'h2']"
        );
        assert_eq!(
            r("{{ lookup('inventory_hostnames', 'web[0]:db') }}"),
            "h1,h3"
        );
        assert!(r("{{ lookup('file', 'nope') }}").starts_with("ERROR"));
        assert!(r("{{ lookup('dig', 'x') }}").contains("Ansible lookup that labctl does not have"));
    }
}
