//! The one minijinja environment.
//!
//! Strict undefined (a typo is an error, not an empty string), the trailing newline kept (else
//! every templated file would look drifted forever) and `trim_blocks` like Ansible. Errors are
//! rendered with `{}` only and the crate's `debug` feature is off: minijinja's debug output
//! prints the values of referenced variables, which may be secrets.
//!
//! Rendering reports taint: output is secret when the template names a secret variable or
//! contains a secret's text.

pub mod ansible;
pub mod filters;
mod ipaddr;
mod lookups;
pub mod passwords;
pub mod vars;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// A template failure, located in the template's own text (line and column, 1-based).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// The template file, for file templates; None for strings inside YAML.
    pub file: Option<PathBuf>,
    pub line: usize,
    pub col: usize,
}

/// Rendered text and whether it carries a secret.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    pub tainted: bool,
}

/// What templates see for one host: its merged vars and which of them are secret.
#[derive(Clone)]
pub struct Ctx {
    value: minijinja::Value,
    pub names: BTreeSet<String>,
    pub secret_names: BTreeSet<String>,
    pub secret_strings: Arc<Vec<String>>,
    /// `check` without a vault key: unknown names become placeholders instead of errors.
    pub placeholders: bool,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ctx({} vars)", self.names.len())
    }
}

impl Ctx {
    pub fn new(
        vars: &indexmap::IndexMap<String, Value>,
        secret_names: BTreeSet<String>,
        secret_strings: Vec<String>,
    ) -> Ctx {
        Ctx {
            value: minijinja::Value::from(minijinja::value::Serde(vars)),
            names: vars.keys().cloned().collect(),
            secret_names,
            secret_strings: Arc::new(secret_strings),
            placeholders: false,
        }
    }

    /// A context over an already built value (lazily resolved vars, see `vars`).
    pub fn from_value(
        value: minijinja::Value,
        names: BTreeSet<String>,
        secret_names: BTreeSet<String>,
        secret_strings: Arc<Vec<String>>,
    ) -> Ctx {
        Ctx {
            value,
            names,
            secret_names,
            secret_strings,
            placeholders: false,
        }
    }

    /// A copy with extra names bound (e.g. `item` in a loop).
    pub fn with(&self, name: &str, v: &Value, secret: bool) -> Ctx {
        let mut c = self.clone();
        let mut bound = std::collections::BTreeMap::new();
        bound.insert(
            name.to_string(),
            minijinja::Value::from(minijinja::value::Serde(v)),
        );
        c.value = minijinja::value::merge_maps([minijinja::Value::from(bound), self.value.clone()]);
        c.names.insert(name.to_string());
        if secret {
            c.secret_names.insert(name.to_string());
        }
        c
    }

    fn is_tainted(&self, used: &std::collections::HashSet<String>, out: &str) -> bool {
        used.iter().any(|u| self.secret_names.contains(u))
            || self.secret_strings.iter().any(|s| out.contains(s.as_str()))
    }

    fn value_for(&self, used: &std::collections::HashSet<String>) -> minijinja::Value {
        if !self.placeholders {
            return self.value.clone();
        }
        let missing: std::collections::BTreeMap<String, minijinja::Value> = used
            .iter()
            .filter(|u| !self.names.contains(*u))
            .map(|u| {
                (
                    u.clone(),
                    minijinja::Value::from_object(Placeholder(u.clone())),
                )
            })
            .collect();
        minijinja::value::merge_maps([minijinja::Value::from(missing), self.value.clone()])
    }
}

/// Stands in for a var from a vault that could not be opened (`check` without a key): any
/// attribute or item of it is a placeholder too (`vault_keys[host]`), and it renders as
/// `<vault:NAME>`, so templates render and everything else still gets checked.
#[derive(Debug)]
struct Placeholder(String);

impl minijinja::value::Object for Placeholder {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        Some(minijinja::Value::from_object(Placeholder(format!(
            "{}.{key}",
            self.0
        ))))
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<vault:{}>", self.0)
    }
}

/// The environment, with a loader rooted at the project directory: template names are paths
/// relative to it (`roles/k3s/templates/config.yaml.j2`, `values/postgres.yaml.j2`).
#[derive(Clone)]
pub struct Engine {
    env: Arc<Environment<'static>>,
    /// Where `lookup('password')` keeps what it generates (set by the caller that has the key).
    passwords: Arc<std::sync::OnceLock<Arc<passwords::PasswordStore>>>,
    root: PathBuf,
}

impl Engine {
    pub fn new(root: &Path) -> Engine {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .build()
            .expect("default delimiters are valid");
        env.set_syntax(syntax);
        // No HTML/JSON auto-escaping by file name (minijinja's default for .html/.json/.yaml):
        // config files are not web pages, and Ansible users never escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let base = root.to_path_buf();
        env.set_loader(move |name: &str| {
            if name.split('/').any(|c| c == "..") {
                return Ok(None);
            }
            match std::fs::read_to_string(base.join(name)) {
                Ok(s) => Ok(Some(ansible::strip_collection_prefixes(&s).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot read template: {e}"),
                )),
            }
        });
        filters::register(&mut env);
        ansible::register(&mut env);
        let passwords = Arc::new(std::sync::OnceLock::new());
        lookups::register(&mut env, root, passwords.clone());
        Engine {
            env: Arc::new(env),
            passwords,
            root: root.to_path_buf(),
        }
    }

    /// Give `lookup('password')` its store (once; later calls are ignored).
    pub fn set_passwords(&self, store: Arc<passwords::PasswordStore>) {
        let _ = self.passwords.set(store);
    }

    /// Render a template file (a path relative to the project root).
    pub fn render_file(&self, name: &str, ctx: &Ctx) -> Result<Rendered, TemplateError> {
        let file = Some(self.root.join(name));
        let tmpl = self.env.get_template(name).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::TemplateNotFound {
                TemplateError {
                    message: format!("template `{name}` not found"),
                    file: None,
                    line: 0,
                    col: 0,
                }
            } else {
                to_error(&e, file.clone(), None)
            }
        })?;
        let used = tmpl.undeclared_variables(false);
        let text = tmpl.render(ctx.value_for(&used)).map_err(|e| {
            undefined_hint(
                &e,
                to_error(&e, file.clone(), source_of(&self.root, name).as_deref()),
                &used,
                ctx,
            )
        })?;
        Ok(Rendered {
            tainted: ctx.is_tainted(&used, &text) | passwords::take_touched(),
            text,
        })
    }

    /// Render a string from YAML. Positions in errors are relative to the string.
    pub fn render_str(&self, src: &str, ctx: &Ctx) -> Result<Rendered, TemplateError> {
        let src2 = ansible::strip_collection_prefixes(src);
        let tmpl = self
            .env
            .template_from_str(&src2)
            .map_err(|e| to_error(&e, None, Some(src)))?;
        let used = tmpl.undeclared_variables(false);
        let text = tmpl
            .render(ctx.value_for(&used))
            .map_err(|e| undefined_hint(&e, to_error(&e, None, Some(src)), &used, ctx))?;
        Ok(Rendered {
            tainted: ctx.is_tainted(&used, &text) | passwords::take_touched(),
            text,
        })
    }

    /// Evaluate an expression (`when:`, a bare `"{{ list_var }}"`) to a typed value.
    pub fn eval(&self, expr: &str, ctx: &Ctx) -> Result<(Value, bool), TemplateError> {
        let expr2 = ansible::strip_collection_prefixes(expr);
        let e = self
            .env
            .compile_expression(&expr2)
            .map_err(|e| to_error(&e, None, Some(expr)))?;
        let used = e.undeclared_variables(false);
        let v = e
            .eval(ctx.value_for(&used))
            .map_err(|err| undefined_hint(&err, to_error(&err, None, Some(expr)), &used, ctx))?;
        if let Some(p) = v.downcast_object_ref::<Placeholder>() {
            return Ok((Value::String(format!("<vault:{}>", p.0)), true));
        }
        if v.is_undefined() {
            let missing: Vec<&String> = used.iter().filter(|u| !ctx.names.contains(*u)).collect();
            return Err(TemplateError {
                message: format!("undefined value in `{expr}`{}", names_hint(&missing)),
                file: None,
                line: 1,
                col: 1,
            });
        }
        let json = serde_json::to_value(&v).map_err(|e| TemplateError {
            message: format!("value cannot be used: {e}"),
            file: None,
            line: 1,
            col: 1,
        })?;
        let tainted = used.iter().any(|u| ctx.secret_names.contains(u)) | passwords::take_touched();
        Ok((json, tainted))
    }

    /// Render every template string inside a value tree. A string that is exactly one
    /// `{{ expr }}` keeps the expression's type (a list stays a list), like Ansible.
    pub fn render_value(
        &self,
        v: &Value,
        ctx: &Ctx,
    ) -> Result<(Value, bool), (Vec<PathSeg>, TemplateError)> {
        let mut tainted = false;
        let out = self.render_value_inner(v, ctx, &mut tainted, &mut Vec::new())?;
        Ok((out, tainted))
    }

    fn render_value_inner(
        &self,
        v: &Value,
        ctx: &Ctx,
        tainted: &mut bool,
        path: &mut Vec<PathSeg>,
    ) -> Result<Value, (Vec<PathSeg>, TemplateError)> {
        Ok(match v {
            Value::String(s) if is_template(s) => {
                if let Some(expr) = single_expression(s) {
                    let (val, t) = self.eval(expr, ctx).map_err(|e| (path.clone(), e))?;
                    let t = t
                        || ctx
                            .secret_strings
                            .iter()
                            .any(|sec| val.to_string().contains(sec.as_str()));
                    *tainted |= t;
                    val
                } else {
                    let r = self.render_str(s, ctx).map_err(|e| (path.clone(), e))?;
                    *tainted |= r.tainted;
                    Value::String(r.text)
                }
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, x) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    out.push(self.render_value_inner(x, ctx, tainted, path)?);
                    path.pop();
                }
                Value::Array(out)
            }
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    path.push(PathSeg::Key(k.clone()));
                    let v = self.render_value_inner(x, ctx, tainted, path)?;
                    path.pop();
                    // Ansible's `omit`: the field is left out, as if never written.
                    if v.as_str() != Some(ansible::OMIT) {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// Render `src` over `vars` with an engine rooted at `root`; errors as `ERROR message` (tests).
#[cfg(test)]
pub fn render_for_test(root: &Path, vars: &indexmap::IndexMap<String, Value>, src: &str) -> String {
    Engine::new(root)
        .render_str(src, &Ctx::new(vars, Default::default(), vec![]))
        .map(|r| r.text)
        .unwrap_or_else(|e| format!("ERROR {}", e.message))
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathSeg {
    Index(usize),
    Key(String),
}

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn single_expression(s: &str) -> Option<&str> {
    // Only spaces around: `"{{ x }}\n"` is text (its newline matters), not a typed value.
    let t = s.trim_matches(' ');
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

fn source_of(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(root.join(name)).ok()
}

fn to_error(e: &minijinja::Error, file: Option<PathBuf>, src: Option<&str>) -> TemplateError {
    // `{}` only: the alternate form would append debug info with variable values.
    let mut message = format!("{}", e.kind());
    if let Some(d) = e.detail() {
        let d = ansible::explain_unknown(e.kind(), d).unwrap_or_else(|| d.to_string());
        message = format!("{message}: {d}");
    }
    let file = match e.name() {
        Some(n) if file.is_some() && !n.starts_with('<') => file,
        _ => file,
    };
    let line = e.line().unwrap_or(1);
    let col = match (e.range(), src) {
        (Some(r), Some(src)) if r.start <= src.len() => {
            let before = &src[..r.start];
            before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1
        }
        _ => 1,
    };
    TemplateError {
        message,
        file,
        line,
        col,
    }
}

fn names_hint(missing: &[&String]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
        format!(": not defined: {}", names.join(", "))
    }
}

/// minijinja says "undefined value"; say which name, so the user knows what to define.
fn undefined_hint(
    cause: &minijinja::Error,
    mut e: TemplateError,
    used: &std::collections::HashSet<String>,
    ctx: &Ctx,
) -> TemplateError {
    if cause.kind() == minijinja::ErrorKind::UndefinedError {
        let mut missing: Vec<&String> = used.iter().filter(|u| !ctx.names.contains(*u)).collect();
        missing.sort();
        e.message.push_str(&names_hint(&missing));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Ctx {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("name".to_string(), json!("lab"));
        vars.insert("pkgs".to_string(), json!(["a", "b"]));
        vars.insert("token".to_string(), json!("canary-token-1"));
        Ctx::new(
            &vars,
            ["token".to_string()].into(),
            vec!["canary-token-1".into()],
        )
    }

    #[test]
    fn keeps_trailing_newline_and_is_strict() {
        let e = Engine::new(Path::new("."));
        assert_eq!(
            e.render_str("hello {{ name }}\n", &ctx()).unwrap().text,
            "hello lab\n"
        );
        let err = e.render_str("a\nb {{ nmae }}\n", &ctx()).unwrap_err();
        assert!(err.message.contains("undefined value"), "{}", err.message);
        assert!(err.message.contains("`nmae`"), "{}", err.message);
        assert_eq!((err.line, err.col), (2, 6));
    }

    #[test]
    fn taint_by_name_and_by_content() {
        let e = Engine::new(Path::new("."));
        assert!(!e.render_str("{{ name }}", &ctx()).unwrap().tainted);
        assert!(e.render_str("t={{ token }}", &ctx()).unwrap().tainted);
        let mut c = ctx();
        c.secret_names.clear();
        assert!(
            e.render_str("t={{ token }}", &c).unwrap().tainted,
            "content scan catches it"
        );
    }

    #[test]
    fn single_expression_keeps_type() {
        let e = Engine::new(Path::new("."));
        let (v, _) = e
            .render_value(
                &json!({"packages": "{{ pkgs }}", "s": "x-{{ name }}"}),
                &ctx(),
            )
            .unwrap();
        assert_eq!(v, json!({"packages": ["a", "b"], "s": "x-lab"}));
        let (v, _) = e.render_value(&json!("{{ name }}\n"), &ctx()).unwrap();
        assert_eq!(v, json!("lab\n"));
        let (path, err) = e
            .render_value(&json!({"a": [1, "{{ nope }}"]}), &ctx())
            .unwrap_err();
        assert_eq!(path, vec![PathSeg::Key("a".into()), PathSeg::Index(1)]);
        assert!(err.message.contains("`nope`"), "{}", err.message);
    }

    #[test]
    fn errors_never_carry_values() {
        let e = Engine::new(Path::new("."));
        let err = e.render_str("{{ token + 1 }}", &ctx()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("canary-token-1"));
    }

    #[test]
    fn placeholders_for_unopened_vaults() {
        let e = Engine::new(Path::new("."));
        let mut c = ctx();
        c.placeholders = true;
        assert_eq!(
            e.render_str("{{ vault_pw }}", &c).unwrap().text,
            "<vault:vault_pw>"
        );
        assert_eq!(
            e.render_str("{{ vault_keys[name] }}", &c).unwrap().text,
            "<vault:vault_keys.lab>"
        );
    }
}
