//! One Ansible task → labctl entries: the module through [`super::modules`], the task keywords
//! (`when`, `loop`, `notify`, `tags`, `run_once`, `become`, …) onto labctl's common keys, and
//! every keyword labctl has no equivalent for leaves the task out with the reason.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::modules::{self, Args, Asset, Cx, Mapped, Outcome};
use super::read::{strings, Src, Task};

pub struct Ctx<'a> {
    pub handler: bool,
    /// An Ansible handler's name or `listen` topic → the labctl handler names that do it.
    pub handlers: &'a HashMap<String, Vec<String>>,
    /// Variables only known at run time (`register`, `set_fact`) and where they are set.
    pub runtime: &'a [(String, Src)],
}

#[derive(Debug)]
pub struct Translated {
    pub module: String,
    /// Full entries (common keys and the type key).
    pub entries: Vec<Value>,
    pub outcome: Outcome,
    pub assets: Vec<Asset>,
    /// The Ansible names this task notifies (handler names or topics).
    pub notified: Vec<String>,
}

/// Keywords that leave a task out, and why.
fn keyword_left_out(k: &str) -> Option<&'static str> {
    Some(match k {
        "failed_when" | "ignore_errors" => "labctl has no failure override: a failing resource stops the host",
        "until" | "retries" | "delay" => "labctl does not retry a resource",
        "async" | "poll" => "labctl runs resources in order, not in the background",
        "environment" => "labctl has no per-task environment (put the variables in the command)",
        "vars" => "labctl has no task vars: move them to the role's defaults or the play's vars",
        "delegate_to" | "local_action" | "delegate_facts" => "labctl runs a resource on its own host only",
        "action" => "the `action:` form is not read: write the module as the task's key",
        "check_mode" => "labctl's plan never runs resources: a task forced into or out of check mode has no equivalent",
        "throttle" | "any_errors_fatal" | "timeout" | "module_defaults" | "connection"
        | "remote_user" | "port" | "ignore_unreachable" => "no per-task equivalent in labctl",
        _ => return None,
    })
}

/// The module's arguments: its map (with `args:` merged), or a free-form string.
fn args_of(module: &str, v: &Value, extra: Option<&Value>) -> Result<Args, String> {
    let mut args = match v {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        Value::String(s) => {
            let short = modules::short_name(module);
            if ["command", "shell"].contains(&short) {
                let inline = shlex::split(s).unwrap_or_default().iter().any(|w| {
                    [
                        "creates=",
                        "removes=",
                        "chdir=",
                        "executable=",
                        "stdin=",
                        "warn=",
                    ]
                    .iter()
                    .any(|p| w.starts_with(p))
                });
                if inline {
                    return Err("free-form `key=value` options in a command line: write them as `cmd:` and arguments".into());
                }
                let mut m = Map::new();
                m.insert("_raw_params".into(), json!(s));
                m
            } else {
                let mut m = Map::new();
                for w in shlex::split(s).ok_or("cannot split the free-form arguments")? {
                    let Some((k, v)) = w.split_once('=') else {
                        return Err(format!("free-form argument `{w}` is not key=value"));
                    };
                    m.insert(k.to_string(), json!(v));
                }
                m
            }
        }
        _ => return Err("the module's arguments are not a map".into()),
    };
    if let Some(Value::Object(a)) = extra {
        for (k, v) in a {
            args.entry(k.clone()).or_insert(v.clone());
        }
    }
    Ok(args)
}

/// `loop`/`with_items`/`with_list`/`with_dict` as a labctl `loop`.
fn loop_of(k: &str, v: &Value) -> Result<Value, String> {
    let expr = |s: &str| -> Option<String> {
        let t = s.trim();
        let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
        (!inner.contains("{{")).then(|| inner.trim().to_string())
    };
    match (k, v) {
        ("loop" | "with_list", _) => Ok(v.clone()),
        ("with_items", Value::Array(a)) => Ok(Value::Array(
            a.iter()
                .flat_map(|i| match i {
                    Value::Array(inner) => inner.clone(),
                    other => vec![other.clone()],
                })
                .collect(),
        )),
        ("with_items", Value::String(s)) => match expr(s) {
            Some(e) => Ok(json!(format!("{{{{ ({e}) | flatten(levels=1) }}}}"))),
            None => Err(format!("`with_items: {s}` is not one expression")),
        },
        ("with_dict", Value::Object(m)) => Ok(Value::Array(
            m.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect(),
        )),
        ("with_dict", Value::String(s)) => match expr(s) {
            Some(e) => Ok(json!(format!("{{{{ ({e}) | dict2items }}}}"))),
            None => Err(format!("`with_dict: {s}` is not one expression")),
        },
        _ => Err(format!(
            "`{k}` has no labctl equivalent (labctl loops over a list)"
        )),
    }
}

/// `name` as a word; `ansible_facts.services` also as `ansible_facts['services']`.
pub fn mentions(text: &str, name: &str) -> bool {
    let pat = match name.split_once('.') {
        Some((a, b)) => format!(
            r#"\b{}(\.|\[\\?['"]){}\b"#,
            regex::escape(a),
            regex::escape(b)
        ),
        None => format!(r"\b{}\b", regex::escape(name)),
    };
    regex::Regex::new(&pat)
        .map(|re| re.is_match(text))
        .unwrap_or(false)
}

pub fn translate(t: &Task, cx: &Ctx) -> Translated {
    let module = t
        .keys
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !super::read::TASK_KEYWORDS.contains(k) && !k.starts_with("with_"))
        .unwrap_or("(none)")
        .to_string();
    let out = |outcome: Outcome| Translated {
        module: module.clone(),
        entries: Vec::new(),
        outcome,
        assets: Vec::new(),
        notified: Vec::new(),
    };
    let left = |why: String| out(Outcome::LeftOut(why));
    let get = |k: &str| t.keys.iter().find(|(x, _)| x == k).map(|(_, v)| v);
    let modval = get(&module).cloned().unwrap_or(Value::Null);
    let args = match args_of(&module, &modval, get("args")) {
        Ok(a) => a,
        Err(e) => return left(e),
    };

    let mut notes: Vec<String> = t.inherit.notes.clone();
    let mut run_once = false;
    let mut when: Vec<String> = t.inherit.when.clone();
    let mut tags: Vec<String> = t.inherit.tags.clone();
    let mut loop_ = None;
    let mut notify: Vec<String> = Vec::new();
    let keys = t.inherit.keys.iter().chain(t.keys.iter());
    for (k, v) in keys {
        if k == &module {
            continue;
        }
        if let Some(why) = keyword_left_out(k) {
            let falsy = matches!(v, Value::Bool(false)) || v == "no" || v == "false";
            if !(k == "ignore_errors" && falsy) {
                return left(format!("`{k}`: {why}"));
            }
            continue;
        }
        match k.as_str() {
            "name" | "args" | "register" | "diff" | "debugger" | "collections" | "listen" => {}
            "when" => when.extend(strings(v)),
            "tags" => tags.extend(strings(v)),
            "notify" => notify.extend(strings(v)),
            "loop" | "with_items" | "with_list" | "with_dict" => match loop_of(k, v) {
                Ok(l) => loop_ = Some(l),
                Err(e) => return left(e),
            },
            "loop_control" => {
                if v.as_object()
                    .is_some_and(|m| m.keys().any(|x| x != "label"))
                {
                    return left(
                        "`loop_control` other than `label`: labctl binds each item to `item`"
                            .into(),
                    );
                }
            }
            "run_once" => match v {
                Value::Bool(b) => run_once = *b,
                _ => return left("a templated `run_once`".into()),
            },
            "become" => {
                if matches!(v, Value::Bool(false)) || v == "no" || v == "false" {
                    notes.push("`become: false`: labctl runs every resource as root".into());
                }
            }
            "become_user" => {
                if v != "root" {
                    return left(format!(
                        "`become_user: {}`: labctl runs resources as root",
                        v.as_str().unwrap_or("?")
                    ));
                }
            }
            "become_method" => {
                if v != "sudo" {
                    return left("`become_method` other than sudo".into());
                }
            }
            "changed_when" => {
                let always = matches!(v, Value::Bool(true)) || v == "true";
                let short = modules::short_name(&module);
                if !(always && ["command", "shell"].contains(&short)) {
                    return left(
                        "`changed_when`: labctl decides what changed from the host's state".into(),
                    );
                }
            }
            "no_log" => notes.push("`no_log`: labctl hides only vault values in its output".into()),
            other if other.starts_with("with_") => {
                return left(format!(
                    "`{other}` has no labctl equivalent (labctl loops over a list)"
                ))
            }
            other => return left(format!("`{other}` has no labctl equivalent")),
        }
    }
    // A value only known after another task ran (register, set_fact) cannot be rendered by
    // labctl, which renders every resource before anything runs.
    let text = format!(
        "{} {} {}",
        when.join(" "),
        Value::Object(args.clone()),
        loop_.as_ref().map(|l| l.to_string()).unwrap_or_default()
    );
    if let Some((n, src)) = cx
        .runtime
        .iter()
        .find(|(n, src)| src != &t.src && mentions(&text, n))
    {
        return left(format!(
            "uses `{n}`, set at run time at {src}: labctl has no `register`/`set_fact`"
        ));
    }
    let facts =
        regex::Regex::new(r#"ansible_facts(?:\.|\[\\?['"])([A-Za-z0-9_]+)"#).expect("static regex");
    if let Some(f) = facts
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .find(|f| !crate::facts::host::NAMES.contains(&f.as_str()))
    {
        return left(format!("uses the fact `{f}`, which labctl does not gather"));
    }
    let Mapped {
        entries,
        outcome,
        assets,
    } = modules::map_module(
        &module,
        &args,
        Cx {
            handler: cx.handler,
        },
    );
    if let Outcome::LeftOut(_) = outcome {
        return out(outcome);
    }
    let mut handler_names = Vec::new();
    for n in &notify {
        match cx.handlers.get(n) {
            Some(names) => handler_names.extend(names.iter().cloned()),
            None => notes.push(format!("notifies `{n}`, which is left out or missing")),
        }
    }
    let n_entries = entries.len();
    let full = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut m = Map::new();
            if let Some(name) = &t.name {
                let name = if i == 0 {
                    name.clone()
                } else {
                    format!("{name} ({})", i + 1)
                };
                m.insert("name".into(), json!(name));
            }
            if let Value::Object(spec) = e {
                m.extend(spec);
            }
            // Ansible stops at the first false condition of a list, so a later one may read
            // what an earlier one checks is defined; `and` keeps that order and that stop.
            match when.len() {
                0 => {}
                1 => {
                    m.insert("when".into(), json!(when[0]));
                }
                _ => {
                    let all: Vec<String> = when.iter().map(|w| format!("({w})")).collect();
                    m.insert("when".into(), json!(all.join(" and ")));
                }
            }
            if let Some(l) = &loop_ {
                m.insert("loop".into(), l.clone());
            }
            // Only the last entry notifies: the handler follows the task as a whole.
            if !handler_names.is_empty() && i + 1 == n_entries {
                m.insert("notify".into(), json!(handler_names));
            }
            if !tags.is_empty() {
                m.insert("tags".into(), json!(tags));
            }
            if run_once {
                m.insert("run_once".into(), json!(true));
            }
            Value::Object(m)
        })
        .collect();
    let outcome = match (outcome, notes.is_empty()) {
        (o, true) => o,
        (Outcome::Translated, false) => Outcome::Approximated(notes.join("; ")),
        (Outcome::Approximated(a), false) => {
            Outcome::Approximated(format!("{a}; {}", notes.join("; ")))
        }
        (o, _) => o,
    };
    Translated {
        module,
        entries: full,
        outcome,
        assets,
        notified: notify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::read::Inherit;

    fn task(yaml: &str) -> Task {
        let n = crate::yaml::parse_node(std::path::Path::new("t.yml"), yaml).unwrap();
        Task {
            src: Src {
                file: "t.yml".into(),
                line: 1,
            },
            name: n.get("name").and_then(|x| x.as_str()).map(String::from),
            keys: n
                .as_map()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.key_string(), v.to_json()))
                .collect(),
            inherit: Inherit::default(),
        }
    }

    fn tr(yaml: &str) -> Translated {
        let mut h = HashMap::new();
        h.insert("restart app".to_string(), vec!["restart app".to_string()]);
        h.insert(
            "web changed".to_string(),
            vec!["restart app".to_string(), "reload web".to_string()],
        );
        let rt = vec![
            (
                "app_status".to_string(),
                Src {
                    file: "t.yml".into(),
                    line: 3,
                },
            ),
            (
                "ansible_facts.services".to_string(),
                Src {
                    file: "t.yml".into(),
                    line: 4,
                },
            ),
        ];
        translate(
            &task(yaml),
            &Ctx {
                handler: false,
                handlers: &h,
                runtime: &rt,
            },
        )
    }

    #[test]
    fn keywords_become_common_keys() {
        let t = tr("name: conf\ncopy: {content: x, dest: /etc/app}\nwhen: app_on\nloop: [a, b]\nnotify: web changed\ntags: [app]\nrun_once: true\nbecome: yes\nregister: r");
        assert_eq!(t.outcome, Outcome::Translated);
        assert_eq!(
            t.entries,
            vec![
                json!({"name": "conf", "file": {"path": "/etc/app", "content": "x"}, "when": "app_on", "loop": ["a", "b"], "notify": ["restart app", "reload web"], "tags": ["app"], "run_once": true})
            ]
        );
    }

    #[test]
    fn a_list_of_conditions_stops_at_the_first_false_one() {
        let mut t = task("command: ls\nwhen: [x is defined, x > 1]");
        t.inherit.when = vec!["ansible_facts['os_family'] == 'Debian'".into()];
        let h = HashMap::new();
        let e = translate(
            &t,
            &Ctx {
                handler: false,
                handlers: &h,
                runtime: &[],
            },
        )
        .entries;
        assert_eq!(
            e[0]["when"],
            json!("(ansible_facts['os_family'] == 'Debian') and (x is defined) and (x > 1)")
        );
    }

    #[test]
    fn with_items_and_with_dict_become_loops() {
        let t = tr("command: {cmd: echo}\nwith_items: [[a, b], c]");
        assert_eq!(t.entries[0]["loop"], json!(["a", "b", "c"]));
        let t = tr("command: {cmd: echo}\nwith_items: \"{{ pkgs }}\"");
        assert_eq!(
            t.entries[0]["loop"],
            json!("{{ (pkgs) | flatten(levels=1) }}")
        );
        let t = tr("command: {cmd: echo}\nwith_dict: \"{{ users }}\"");
        assert_eq!(t.entries[0]["loop"], json!("{{ (users) | dict2items }}"));
        let t = tr("command: {cmd: echo}\nwith_dict: {a: 1}");
        assert_eq!(t.entries[0]["loop"], json!([{"key": "a", "value": 1}]));
    }

    #[test]
    fn free_form_arguments() {
        let t = tr("apt: name=curl state=latest");
        assert_eq!(
            t.entries[0],
            json!({"apt": {"name": "curl", "state": "latest"}})
        );
        let t = tr("ansible.builtin.command: k3s --version");
        assert_eq!(t.entries[0], json!({"command": {"run": "k3s --version"}}));
        assert!(
            matches!(tr("command: ls creates=/x").outcome, Outcome::LeftOut(w) if w.contains("free-form"))
        );
    }

    #[test]
    fn what_labctl_cannot_do_is_left_out() {
        for (yaml, why) in [
            ("command: ls\nchanged_when: false", "changed_when"),
            ("command: ls\nfailed_when: false", "failure override"),
            (
                "command: ls\nbecome_user: postgres",
                "become_user: postgres",
            ),
            (
                "copy: {content: x, dest: /x}\ndelegate_to: localhost",
                "own host only",
            ),
            ("command: ls\nenvironment: {A: b}", "environment"),
            (
                "command: ls\nwhen: app_status.rc == 0",
                "uses `app_status`, set at run time at t.yml:3",
            ),
            (
                "command: ls\nwhen: ansible_facts['services']['x'] is defined",
                "uses `ansible_facts.services`",
            ),
            ("command: ls\nuntil: x\nretries: 3", "retry"),
            ("command: ls\nloop_control: {loop_var: pkg}", "loop_control"),
            ("command: ls\nwith_fileglob: '*.conf'", "with_fileglob"),
            (
                "command: ls\nwhen: ansible_facts['all_ipv6_addresses'] | length > 0",
                "fact `all_ipv6_addresses`",
            ),
        ] {
            match tr(yaml).outcome {
                Outcome::LeftOut(w) => assert!(w.contains(why), "{yaml}: {w}"),
                o => panic!("{yaml}: {o:?}"),
            }
        }
    }

    #[test]
    fn differences_are_reported_as_approximations() {
        assert!(
            matches!(tr("command: ls\nbecome: false").outcome, Outcome::Approximated(w) if w.contains("as root"))
        );
        assert!(
            matches!(tr("command: ls\nnotify: nosuch").outcome, Outcome::Approximated(w) if w.contains("`nosuch`"))
        );
        assert_eq!(
            tr("command: ls\nchanged_when: true\nignore_errors: no").outcome,
            Outcome::Translated
        );
    }

    #[test]
    fn a_task_with_two_resources_names_both_and_notifies_after_the_last() {
        let t = tr("name: fwd\nsysctl: {name: a.b, value: 1}\nnotify: restart app");
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[1]["name"], json!("fwd (2)"));
        assert!(t.entries[0].get("notify").is_none());
        assert_eq!(t.entries[1]["notify"], json!(["restart app"]));
    }
}
