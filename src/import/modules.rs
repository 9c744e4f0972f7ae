//! One Ansible module's arguments → labctl resource specs, one small function per module.
//!
//! A mapper either translates (the labctl resources do what the module does), approximates (the
//! same end state on the host, with a difference the report names), or leaves the task out with
//! the reason. It never guesses: an argument it does not know leaves the task out, naming it.
//! Task keywords (`when`, `loop`, `notify`, …) are the caller's ([`super::tasks`]).

use serde_json::{json, Map, Value};

pub type Args = Map<String, Value>;

/// What became of one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Translated,
    /// The same end state, with this difference.
    Approximated(String),
    /// Not written; why.
    LeftOut(String),
}

/// A file the resource reads from the role (`copy src`, `template src`), to copy along.
#[derive(Debug, Clone, PartialEq)]
pub enum Asset {
    File(String),
    Template(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Each `{TYPE: spec}`, in order.
    pub entries: Vec<Value>,
    pub outcome: Outcome,
    pub assets: Vec<Asset>,
}

impl Mapped {
    fn ok(entries: Vec<Value>) -> Mapped {
        Mapped {
            entries,
            outcome: Outcome::Translated,
            assets: Vec::new(),
        }
    }
    fn approx(entries: Vec<Value>, why: impl Into<String>) -> Mapped {
        Mapped {
            entries,
            outcome: Outcome::Approximated(why.into()),
            assets: Vec::new(),
        }
    }
    pub fn left_out(why: impl Into<String>) -> Mapped {
        Mapped {
            entries: Vec::new(),
            outcome: Outcome::LeftOut(why.into()),
            assets: Vec::new(),
        }
    }
    fn with_asset(mut self, a: Asset) -> Mapped {
        self.assets.push(a);
        self
    }
    /// Add a difference to what is already approximated (or make a translation approximated).
    fn also(mut self, why: Option<String>) -> Mapped {
        if let Some(w) = why {
            self.outcome = match self.outcome {
                Outcome::Translated => Outcome::Approximated(w),
                Outcome::Approximated(a) => Outcome::Approximated(format!("{a}; {w}")),
                o => o,
            }
        }
        self
    }
}

/// Where the task sits: a handler's `service: restarted` is an event labctl has; a task's is not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cx {
    pub handler: bool,
}

type Mapper = fn(&Args, Cx) -> Result<Mapped, String>;

/// The module's short name: `ansible.builtin.copy` → `copy`.
pub fn short_name(module: &str) -> &str {
    for p in [
        "ansible.builtin.",
        "ansible.legacy.",
        "community.general.",
        "ansible.posix.",
    ] {
        if let Some(s) = module.strip_prefix(p) {
            return s;
        }
    }
    module
}

fn mapper(short: &str) -> Option<Mapper> {
    Some(match short {
        "apt" => apt,
        "package" => package,
        "copy" => copy,
        "template" => template,
        "file" => file,
        "lineinfile" => lineinfile,
        "blockinfile" => blockinfile,
        "service" | "systemd" | "systemd_service" => service,
        "user" => user,
        "group" => group,
        "authorized_key" => authorized_key,
        "sysctl" => sysctl,
        "ufw" => ufw,
        "command" => command,
        "shell" => shell,
        "get_url" => get_url,
        "unarchive" => unarchive,
        "timezone" => timezone,
        "hostname" => hostname,
        "modprobe" => modprobe,
        "cron" => cron,
        _ => return None,
    })
}

/// Modules labctl has no type for, with why they are left out.
fn no_type(short: &str) -> Option<&'static str> {
    Some(match short {
        "apt_key" | "apt_repository" | "deb822_repository" => {
            "labctl has no type for APT sources or keys: write the .list/.sources file and the \
             key under /etc/apt/keyrings with `file`"
        }
        "mount" => {
            "labctl has no mount type (the fstab line and the live mount fail differently): use \
             `line` for /etc/fstab and a guarded `command`"
        }
        "git" => "labctl has no git type (a checkout that follows a branch is not pinned content)",
        "debug" => "prints only: there is nothing to converge",
        "assert" | "fail" => "a run-time check: labctl has no assertions on facts",
        "set_fact" | "include_vars" => {
            "sets variables at run time: labctl's vars are static (inventory, play, role)"
        }
        "stat" | "slurp" | "command_info" | "package_facts" | "service_facts" | "setup"
        | "gather_facts" | "getent" => {
            "gathers data at run time for `register`: labctl has no `register`"
        }
        "pause" | "wait_for" | "wait_for_connection" | "reboot" | "meta" => {
            "controls the run itself: labctl has no equivalent"
        }
        "dnf" | "yum" | "pacman" | "zypper" | "apk" | "firewalld" | "seboolean" | "selinux" => {
            "labctl manages Debian/Ubuntu hosts: no type for this distribution's tool"
        }
        _ => return None,
    })
}

/// The resources for one module call, or why it is left out.
pub fn map_module(module: &str, args: &Args, cx: Cx) -> Mapped {
    let short = short_name(module);
    if let Some(why) = no_type(short) {
        return Mapped::left_out(format!("`{module}`: {why}"));
    }
    let Some(f) = mapper(short) else {
        return Mapped::left_out(format!("`{module}`: no labctl type does what it does"));
    };
    if let Some(l) = args.values().find_map(lookup_in) {
        return Mapped::left_out(l);
    }
    // The remote user's home is only known on the host; labctl's paths are absolute.
    if let Some((k, v)) = ["path", "dest", "src", "chdir", "creates", "removes"]
        .iter()
        .find_map(|k| {
            args.get(*k)
                .and_then(|v| v.as_str())
                .filter(|v| v.starts_with('~'))
                .map(|v| (k, v))
        })
    {
        return Mapped::left_out(format!(
            "{k} `{v}` starts with `~`: labctl takes absolute paths"
        ));
    }
    f(args, cx).unwrap_or_else(Mapped::left_out)
}

fn lookup_in(v: &Value) -> Option<String> {
    let s = v.to_string();
    ["lookup(", "query(", "q("]
        .iter()
        .find(|f| s.contains(&format!("{{{{ {f}")) || s.contains(&format!("| {f}")))
        .map(|f| format!("`{f}…)` reads the controller at run time: resolve it into a variable"))
}

// ---- argument helpers ----

/// Refuse any argument not in `known`: an argument without a labctl equivalent is not dropped.
fn only(args: &Args, known: &[&str]) -> Result<(), String> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("argument `{k}` has no labctl equivalent")),
        None => Ok(()),
    }
}

fn is_tmpl(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// A scalar as a string (numbers too: `value: 1`).
fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get_str(args: &Args, keys: &[&str]) -> Result<Option<String>, String> {
    for k in keys {
        if let Some(v) = args.get(*k) {
            return str_of(v)
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a string"));
        }
    }
    Ok(None)
}

fn need_str(args: &Args, keys: &[&str]) -> Result<String, String> {
    get_str(args, keys)?.ok_or_else(|| format!("`{}` is missing", keys[0]))
}

/// Ansible's booleans (`yes`, `True`, `1` too). A template is refused: labctl needs the value.
fn abool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" | "y" => Ok(true),
            "no" | "false" | "off" | "0" | "n" => Ok(false),
            _ => Err(format!("`{s}` is not a boolean labctl can read at import")),
        },
        _ => Err(format!("`{v}` is not a boolean")),
    }
}

fn get_bool(args: &Args, keys: &[&str]) -> Result<Option<bool>, String> {
    for k in keys {
        if let Some(v) = args.get(*k) {
            return abool(v).map(Some).map_err(|e| format!("`{k}`: {e}"));
        }
    }
    Ok(None)
}

/// A mode as labctl's octal string. YAML 1.2 reads `mode: 0644` as the number 644, whose digits
/// are the octal Ansible meant (YAML 1.1); symbolic `u=rw,g=r,o=` is assigned-only.
fn mode(v: &Value) -> Result<String, String> {
    let s = match v {
        // YAML 1.2 may read a leading-zero number as a float (`0644` → 644.0).
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= 0.0 => format!("{}", f as u64),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        _ => return Err("`mode` must be a string".into()),
    };
    if is_tmpl(&s) {
        return Ok(s);
    }
    if !s.is_empty() && s.len() <= 4 && s.chars().all(|c| ('0'..='7').contains(&c)) {
        return Ok(format!("{s:0>4}"));
    }
    let mut bits = [0u32; 3];
    for part in s.split(',') {
        let Some((who, perms)) = part.split_once('=') else {
            return Err(format!("mode `{s}` is not octal or `who=perms`"));
        };
        let mut p = 0;
        for c in perms.chars() {
            p |= match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                _ => return Err(format!("mode `{s}`: `{c}` is not r, w or x")),
            };
        }
        for w in who.chars() {
            match w {
                'u' => bits[0] = p,
                'g' => bits[1] = p,
                'o' => bits[2] = p,
                'a' => bits = [p; 3],
                _ => return Err(format!("mode `{s}`: `{w}` is not u, g, o or a")),
            }
        }
    }
    Ok(format!("0{}{}{}", bits[0], bits[1], bits[2]))
}

/// owner, group, mode (and `validate` where given) onto a spec.
fn attrs(args: &Args, spec: &mut Map<String, Value>, with_validate: bool) -> Result<(), String> {
    if let Some(m) = args.get("mode") {
        spec.insert("mode".into(), Value::String(mode(m)?));
    }
    for k in ["owner", "group"] {
        if let Some(v) = get_str(args, &[k])? {
            spec.insert(k.into(), Value::String(v));
        }
    }
    if with_validate {
        if let Some(v) = get_str(args, &["validate"])? {
            spec.insert("validate".into(), Value::String(v));
        }
    }
    Ok(())
}

fn entry(kind: &str, spec: Map<String, Value>) -> Value {
    json!({ kind: Value::Object(spec) })
}

fn backup_note(args: &Args) -> Result<Option<String>, String> {
    Ok(get_bool(args, &["backup"])?
        .unwrap_or(false)
        .then(|| "`backup: true`: labctl keeps no backup copy".to_string()))
}

fn q(s: &str) -> String {
    crate::sh::q(s)
}

/// Single quotes around a whole program (awk), kept readable: `q` also splits at `^` and `!`.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---- the mappers ----

fn apt(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "name",
            "pkg",
            "package",
            "state",
            "update_cache",
            "cache_valid_time",
            "install_recommends",
            "lock_timeout",
        ],
    )?;
    let Some(names) = args.get("name").or(args.get("pkg")).or(args.get("package")) else {
        return Err(
            "`apt` without `name` (a cache refresh alone): labctl's `apt` refreshes \
                    when an install needs it"
                .into(),
        );
    };
    let mut spec = Map::new();
    match names {
        Value::String(s) if !is_tmpl(s) && s.contains(',') => {
            spec.insert(
                "packages".into(),
                json!(s.split(',').map(str::trim).collect::<Vec<_>>()),
            );
        }
        Value::String(s) if !is_tmpl(s) => {
            spec.insert("name".into(), json!(s));
        }
        Value::String(_) | Value::Array(_) => {
            spec.insert("packages".into(), names.clone());
        }
        _ => return Err("`name` must be a package or a list".into()),
    }
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "present".into());
    let state = match state.as_str() {
        "present" | "installed" => "present",
        "latest" => "latest",
        "absent" | "removed" => "absent",
        s => return Err(format!("state `{s}` has no labctl equivalent")),
    };
    if state != "present" {
        spec.insert("state".into(), json!(state));
    }
    if let Some(t) = args.get("lock_timeout") {
        spec.insert("lock_timeout".into(), t.clone());
    }
    let mut notes = Vec::new();
    if get_bool(args, &["install_recommends"])?.is_some() {
        return Err("argument `install_recommends` has no labctl equivalent".into());
    }
    match args.get("update_cache").map(abool).transpose() {
        Ok(Some(true)) => {
            if args.contains_key("cache_valid_time") {
                notes.push("`cache_valid_time`: labctl refreshes lists older than 24 hours");
            } else {
                spec.insert("update_cache".into(), json!("always"));
                notes.push(
                    "`update_cache`: lists are refreshed before an install, not on every run",
                );
            }
        }
        Ok(Some(false)) => {
            spec.insert("update_cache".into(), json!("never"));
        }
        Ok(None) => {
            if args.contains_key("cache_valid_time") {
                return Err("`cache_valid_time` without `update_cache`".into());
            }
            // Ansible never refreshes unless asked; labctl's `auto` refreshes stale or missing
            // lists, which is what makes a fresh host installable at all.
            notes.push("labctl refreshes missing or day-old package lists before installing");
        }
        Err(e) => return Err(format!("`update_cache`: {e}")),
    }
    let m = Mapped::ok(vec![entry("apt", spec)]);
    Ok(m.also((!notes.is_empty()).then(|| notes.join("; "))))
}

/// `package` picks the host's manager; labctl's hosts are Debian/Ubuntu, where that is apt.
fn package(args: &Args, cx: Cx) -> Result<Mapped, String> {
    only(args, &["name", "state"])?;
    apt(args, cx)
}

fn copy(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "dest", "content", "src", "mode", "owner", "group", "validate", "backup", "force",
        ],
    )?;
    let dest = need_str(args, &["dest"])?;
    if dest.ends_with('/') {
        return Err(format!(
            "dest `{dest}` is a directory (the file name comes from src at run time)"
        ));
    }
    if get_bool(args, &["force"])? == Some(false) {
        return Err("`force: false` (write only when missing) has no labctl equivalent".into());
    }
    let mut spec = Map::new();
    spec.insert("path".into(), json!(dest));
    let mut asset = None;
    match (args.get("content"), args.get("src")) {
        (Some(Value::String(c)), None) => {
            spec.insert("content".into(), json!(c));
        }
        (Some(_), None) => {
            return Err("`content` is not a string (Ansible writes it as JSON): template it".into())
        }
        (None, Some(Value::String(s))) => {
            if is_tmpl(s) {
                return Err(format!(
                    "src `{s}` is a template: the controller file is only known at run time"
                ));
            }
            if s.ends_with('/') {
                return Err(format!(
                    "src `{s}` is a directory: labctl copies single files"
                ));
            }
            spec.insert("src".into(), json!(s));
            if !s.starts_with('/') {
                asset = Some(Asset::File(s.clone()));
            }
        }
        (None, Some(_)) => return Err("`src` must be a string".into()),
        _ => return Err("give `content` or `src`".into()),
    }
    attrs(args, &mut spec, true)?;
    let mut m = Mapped::ok(vec![entry("file", spec)]).also(backup_note(args)?);
    if let Some(a) = asset {
        m = m.with_asset(a);
    }
    Ok(m)
}

fn template(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "src", "dest", "mode", "owner", "group", "validate", "backup",
        ],
    )?;
    let src = need_str(args, &["src"])?;
    let dest = need_str(args, &["dest"])?;
    if is_tmpl(&src) {
        return Err(format!(
            "src `{src}` is a template: the file is only known at run time"
        ));
    }
    if src.starts_with('/') {
        return Err(format!(
            "src `{src}` is outside the role: copy it into templates/"
        ));
    }
    let mut spec = Map::new();
    spec.insert("path".into(), json!(dest));
    spec.insert("template".into(), json!(src));
    attrs(args, &mut spec, true)?;
    Ok(Mapped::ok(vec![entry("file", spec)])
        .also(backup_note(args)?)
        .with_asset(Asset::Template(src)))
}

fn file(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "path",
            "dest",
            "name",
            "state",
            "mode",
            "owner",
            "group",
            "src",
            "force",
            "recurse",
            "modification_time",
            "access_time",
        ],
    )?;
    let path = need_str(args, &["path", "dest", "name"])?;
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "file".into());
    let times_preserved = ["modification_time", "access_time"]
        .iter()
        .all(|k| args.get(*k).is_some_and(|v| v == "preserve"));
    if state != "touch"
        && ["modification_time", "access_time"]
            .iter()
            .any(|k| args.contains_key(*k))
    {
        return Err("`modification_time`/`access_time` have no labctl equivalent".into());
    }
    if state != "directory" && args.contains_key("recurse") {
        return Err("`recurse` outside `state: directory`".into());
    }
    if !["link"].contains(&state.as_str())
        && (args.contains_key("src") || args.contains_key("force"))
    {
        return Err(format!("`src`/`force` with `state: {state}`"));
    }
    let mut spec = Map::new();
    spec.insert("path".into(), json!(path));
    match state.as_str() {
        "directory" => {
            attrs(args, &mut spec, false)?;
            if get_bool(args, &["recurse"])? == Some(true) {
                if spec.contains_key("mode") {
                    return Err(
                        "`recurse` with `mode`: labctl's `directory` recurses owner and \
                                group only (a recursive mode makes every file executable)"
                            .into(),
                    );
                }
                spec.insert("recurse".into(), json!(true));
            }
            Ok(Mapped::ok(vec![entry("directory", spec)]))
        }
        "link" => {
            let target = need_str(args, &["src"])?;
            spec.insert("target".into(), json!(target));
            if let Some(o) = get_str(args, &["owner"])? {
                spec.insert("owner".into(), json!(o));
            }
            if args.contains_key("group") || args.contains_key("mode") {
                return Err("`group`/`mode` on a link has no labctl equivalent".into());
            }
            if get_bool(args, &["force"])? == Some(true) {
                spec.insert("force".into(), json!(true));
            }
            Ok(Mapped::ok(vec![entry("symlink", spec)]))
        }
        "absent" => {
            if args.len() > 2 {
                return Err("`state: absent` with more than a path".into());
            }
            spec.insert("state".into(), json!("absent"));
            Ok(Mapped::approx(
                vec![entry("file", spec)],
                "a directory at the path fails the host instead of being removed (use \
                 `directory` with `state: absent` for a directory)",
            ))
        }
        "touch" => {
            attrs(args, &mut spec, false)?;
            Ok(Mapped::approx(
                vec![entry("file", spec)],
                if times_preserved {
                    "an existing file keeps its content and times; a missing one is created empty"
                } else {
                    "an existing file's times are not updated on every run"
                },
            ))
        }
        "file" => {
            attrs(args, &mut spec, false)?;
            Ok(Mapped::approx(
                vec![entry("file", spec)],
                "a missing file is created empty (Ansible fails instead)",
            ))
        }
        s => Err(format!("state `{s}` has no labctl equivalent")),
    }
}

/// Rust's `regex` lacks look-around and backreferences; a pattern it refuses is not rewritten.
/// Template parts are checked as a plain word.
fn rust_regex(re: &str) -> Result<(), String> {
    let plain = regex::Regex::new(r"\{\{.*?\}\}")
        .expect("static regex")
        .replace_all(re, "x");
    regex::Regex::new(&plain)
        .map(|_| ())
        .map_err(|_| format!("regexp `{re}` uses Python regex syntax that Rust's regex lacks (look-around, backreferences)"))
}

fn lineinfile(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "path",
            "dest",
            "name",
            "regexp",
            "regex",
            "search_string",
            "line",
            "value",
            "state",
            "insertafter",
            "create",
            "validate",
            "backup",
        ],
    )?;
    let mut spec = Map::new();
    spec.insert(
        "path".into(),
        json!(need_str(args, &["path", "dest", "name"])?),
    );
    if let Some(re) = get_str(args, &["regexp", "regex"])? {
        rust_regex(&re)?;
        spec.insert("regexp".into(), json!(re));
    } else if let Some(s) = get_str(args, &["search_string"])? {
        if is_tmpl(&s) {
            spec.insert(
                "regexp".into(),
                json!(format!(
                    "{{{{ ({}) | regex_escape }}}}",
                    s.trim_matches(|c| c == '{' || c == '}' || c == ' ')
                )),
            );
        } else {
            spec.insert("regexp".into(), json!(regex::escape(&s)));
        }
    }
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "present".into());
    if let Some(l) = get_str(args, &["line", "value"])? {
        spec.insert("line".into(), json!(l));
    } else if state == "present" {
        return Err("`line` is missing".into());
    }
    match state.as_str() {
        "present" => {}
        "absent" => {
            spec.insert("state".into(), json!("absent"));
        }
        s => return Err(format!("state `{s}`")),
    }
    line_entry(args, spec)
}

/// What lineinfile and blockinfile share: where a new line (or block) goes, `create`,
/// `validate`, and the `line` entry.
fn line_entry(args: &Args, mut spec: Map<String, Value>) -> Result<Mapped, String> {
    if let Some(a) = get_str(args, &["insertafter"])? {
        if a == "BOF" {
            return Err("`insertafter: BOF` has no labctl equivalent".into());
        }
        if a != "EOF" {
            rust_regex(&a)?;
            spec.insert("insert_after".into(), json!(a));
        }
    }
    if get_bool(args, &["create"])? == Some(true) {
        spec.insert("create".into(), json!(true));
    }
    if let Some(v) = get_str(args, &["validate"])? {
        spec.insert("validate".into(), json!(v));
    }
    Ok(Mapped::ok(vec![entry("line", spec)]).also(backup_note(args)?))
}

/// labctl's `line` with `block` runs blockinfile's own algorithm (markers, last begin/end pair,
/// insert after the last match or at the end).
fn blockinfile(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "path",
            "dest",
            "destfile",
            "name",
            "block",
            "content",
            "marker",
            "marker_begin",
            "marker_end",
            "state",
            "insertafter",
            "create",
            "validate",
            "backup",
            "append_newline",
            "prepend_newline",
        ],
    )?;
    for k in ["append_newline", "prepend_newline"] {
        if get_bool(args, &[k])? == Some(true) {
            return Err(format!("`{k}: true` has no labctl equivalent"));
        }
    }
    let mut spec = Map::new();
    spec.insert(
        "path".into(),
        json!(need_str(args, &["path", "dest", "destfile", "name"])?),
    );
    let block = get_str(args, &["block", "content"])?.unwrap_or_default();
    let marker = get_str(args, &["marker"])?;
    match get_str(args, &["state"])?.as_deref() {
        None | Some("present") => {
            spec.insert("block".into(), json!(block));
            if let Some(m) = marker {
                spec.insert("marker".into(), json!(m));
            }
        }
        Some("absent") => {
            spec.insert(
                "marker".into(),
                json!(marker.unwrap_or_else(|| "# {mark} ANSIBLE MANAGED BLOCK".into())),
            );
            spec.insert("state".into(), json!("absent"));
        }
        Some(s) => return Err(format!("state `{s}`")),
    }
    for k in ["marker_begin", "marker_end"] {
        if let Some(v) = get_str(args, &[k])? {
            spec.insert(k.into(), json!(v));
        }
    }
    line_entry(args, spec)
}

fn service(args: &Args, cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &["name", "state", "enabled", "daemon_reload", "daemon-reload"],
    )?;
    let reload = get_bool(args, &["daemon_reload", "daemon-reload"])?.unwrap_or(false);
    let Some(name) = get_str(args, &["name"])? else {
        if reload && args.len() == 1 {
            return Ok(Mapped::ok(vec![entry(
                "command",
                json_map(json!({"run": "systemctl daemon-reload"})),
            )]));
        }
        return Err("`name` is missing".into());
    };
    let mut spec = Map::new();
    spec.insert("name".into(), json!(name));
    if let Some(e) = get_bool(args, &["enabled"])? {
        spec.insert("enabled".into(), json!(e));
    }
    if reload {
        spec.insert("daemon_reload".into(), json!(true));
    }
    let state = get_str(args, &["state"])?;
    let mut out = Vec::new();
    match state.as_deref() {
        None => {}
        Some("started") | Some("stopped") => {
            spec.insert("state".into(), json!(state));
        }
        Some(ev @ ("restarted" | "reloaded")) if cx.handler => {
            spec.insert("state".into(), json!(ev));
        }
        // As a task, Ansible restarts on every run: a command without a guard does that too.
        Some(ev @ ("restarted" | "reloaded")) => {
            let verb = if ev == "restarted" {
                "restart"
            } else {
                "reload-or-restart"
            };
            let run = format!("systemctl {verb} {}", q(&name));
            if spec.len() > 1 {
                out.push(entry("service", spec));
            }
            out.push(entry("command", json_map(json!({ "run": run }))));
            return Ok(Mapped::ok(out));
        }
        Some(s) => return Err(format!("state `{s}`")),
    }
    if spec.len() == 1 {
        return Err("neither `state` nor `enabled`".into());
    }
    Ok(Mapped::ok(vec![entry("service", spec)]))
}

fn json_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json_map takes an object"),
    }
}

fn user(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "name",
            "state",
            "uid",
            "group",
            "groups",
            "append",
            "shell",
            "home",
            "create_home",
            "createhome",
            "system",
            "password",
        ],
    )?;
    let mut spec = Map::new();
    spec.insert("name".into(), json!(need_str(args, &["name"])?));
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "present".into());
    if state == "absent" {
        if args.len() > 2 {
            return Err("`state: absent` with more than a name".into());
        }
        spec.insert("state".into(), json!("absent"));
        return Ok(Mapped::ok(vec![entry("user", spec)]));
    }
    if state != "present" {
        return Err(format!("state `{state}`"));
    }
    if let Some(u) = args.get("uid") {
        spec.insert("uid".into(), u.clone());
    }
    for k in ["group", "shell", "home"] {
        if let Some(v) = get_str(args, &[k])? {
            spec.insert(k.into(), json!(v));
        }
    }
    if let Some(g) = args.get("groups") {
        let list = match g {
            Value::String(s) if is_tmpl(s) => {
                return Err(
                    "templated `groups` (Ansible splits the rendered text at commas)".into(),
                )
            }
            Value::String(s) => json!(s
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()),
            Value::Array(_) => g.clone(),
            _ => return Err("`groups` must be a list".into()),
        };
        spec.insert("groups".into(), list);
        // Ansible's default is to replace the supplementary groups; labctl's is to add.
        let append = get_bool(args, &["append"])?.unwrap_or(false);
        spec.insert("append".into(), json!(append));
    } else if args.contains_key("append") {
        return Err("`append` without `groups`".into());
    }
    if let Some(c) = get_bool(args, &["create_home", "createhome"])? {
        spec.insert("create_home".into(), json!(c));
    }
    if let Some(s) = get_bool(args, &["system"])? {
        spec.insert("system".into(), json!(s));
    }
    if let Some(p) = get_str(args, &["password"])? {
        spec.insert("password_hash".into(), json!(p));
    }
    Ok(Mapped::ok(vec![entry("user", spec)]))
}

fn group(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(args, &["name", "gid", "system", "state"])?;
    let mut spec = Map::new();
    spec.insert("name".into(), json!(need_str(args, &["name"])?));
    if let Some(g) = args.get("gid") {
        spec.insert("gid".into(), g.clone());
    }
    if let Some(s) = get_bool(args, &["system"])? {
        spec.insert("system".into(), json!(s));
    }
    match get_str(args, &["state"])?.as_deref() {
        None | Some("present") => {}
        Some("absent") => {
            spec.insert("state".into(), json!("absent"));
        }
        Some(s) => return Err(format!("state `{s}`")),
    }
    Ok(Mapped::ok(vec![entry("group", spec)]))
}

fn authorized_key(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &["user", "key", "state", "exclusive", "path", "manage_dir"],
    )?;
    let key = need_str(args, &["key"])?;
    if key.starts_with("http://") || key.starts_with("https://") {
        return Err("a key URL is fetched at run time: put the keys in a variable".into());
    }
    if get_bool(args, &["manage_dir"])? == Some(false) {
        return Err("`manage_dir: false` has no labctl equivalent".into());
    }
    let mut spec = Map::new();
    spec.insert("user".into(), json!(need_str(args, &["user"])?));
    let absent = match get_str(args, &["state"])?.as_deref() {
        None | Some("present") => false,
        Some("absent") => true,
        Some(s) => return Err(format!("state `{s}`")),
    };
    if absent {
        spec.insert("key".into(), json!(key));
        spec.insert("state".into(), json!("absent"));
    } else {
        spec.insert("keys".into(), json!([key]));
    }
    if get_bool(args, &["exclusive"])? == Some(true) {
        spec.insert("exclusive".into(), json!(true));
    }
    if let Some(p) = get_str(args, &["path"])? {
        spec.insert("path".into(), json!(p));
    }
    Ok(Mapped::ok(vec![entry("authorized_key", spec)]))
}

/// Ansible's sysctl edits one `name=value` line in a shared file and sets the live value.
/// labctl's `sysctl` owns its whole file, so one task becomes a `line` and a guarded `command`.
fn sysctl(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "name",
            "value",
            "val",
            "state",
            "sysctl_file",
            "reload",
            "sysctl_set",
        ],
    )?;
    let name = need_str(args, &["name"])?;
    let file = get_str(args, &["sysctl_file"])?.unwrap_or_else(|| "/etc/sysctl.conf".into());
    let key_re = if is_tmpl(&name) {
        format!(
            "{{{{ ({}) | regex_escape }}}}",
            name.trim_matches(|c| c == '{' || c == '}' || c == ' ')
        )
    } else {
        regex::escape(&name)
    };
    let regexp = format!(r"^\s*{key_re}\s*=");
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "present".into());
    if state == "absent" {
        return Ok(Mapped::approx(
            vec![entry(
                "line",
                json_map(json!({"path": file, "regexp": regexp, "state": "absent"})),
            )],
            "Ansible then reloads the whole file with `sysctl -p`; the live value is left as is",
        ));
    }
    if state != "present" {
        return Err(format!("state `{state}`"));
    }
    let value = need_str(args, &["value", "val"])?;
    let mut out = vec![entry(
        "line",
        json_map(
            json!({"path": file, "regexp": regexp, "line": format!("{name}={value}"), "create": true}),
        ),
    )];
    let reload = get_bool(args, &["reload"])?.unwrap_or(true)
        || get_bool(args, &["sysctl_set"])? == Some(true);
    if reload {
        out.push(entry(
            "command",
            json_map(json!({
                "run": format!("sysctl -w {}", q(&format!("{name}={value}"))),
                "unless": format!(
                    "[ \"$(sysctl -n {} | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')\" = {} ]",
                    q(&name),
                    q(&value)
                ),
            })),
        ));
    }
    Ok(Mapped::approx(
        out,
        "a `line` for the file and a guarded `sysctl -w` (Ansible reloads the whole file with \
         `sysctl -p`)",
    ))
}

/// Ansible's ufw runs one ufw command per task. labctl's `ufw` owns the whole firewall (policy
/// and the exact rule set), so a task becomes that one command, guarded where ufw can tell.
fn ufw(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "rule",
            "port",
            "proto",
            "protocol",
            "src",
            "from_ip",
            "from",
            "comment",
            "state",
            "policy",
            "default",
            "direction",
            "to_port",
        ],
    )?;
    if let Some(state) = get_str(args, &["state"])? {
        if args.len() > 1 {
            return Err("`state` with other arguments".into());
        }
        return match state.as_str() {
            "enabled" => Ok(Mapped::ok(vec![entry(
                "command",
                json_map(
                    json!({"run": "ufw --force enable", "unless": "ufw status | grep -q '^Status: active'"}),
                ),
            )])),
            "disabled" => Ok(Mapped::ok(vec![entry(
                "command",
                json_map(
                    json!({"run": "ufw disable", "unless": "ufw status | grep -q '^Status: inactive'"}),
                ),
            )])),
            s => Err(format!("state `{s}` (reset/reloaded are run-time actions)")),
        };
    }
    if let Some(p) = get_str(args, &["policy", "default"])? {
        let dir = get_str(args, &["direction"])?.unwrap_or_else(|| "incoming".into());
        if args.len() > 2 || !["incoming", "outgoing", "routed"].contains(&dir.as_str()) {
            return Err("a policy with more than `direction`".into());
        }
        let run = format!("ufw default {} {}", q(&p), q(&dir));
        // ufw keeps the policies in /etc/default/ufw as iptables targets.
        let target = match p.as_str() {
            "allow" => Some("ACCEPT"),
            "deny" => Some("DROP"),
            "reject" => Some("REJECT"),
            _ => None,
        };
        let chain = match dir.as_str() {
            "incoming" => "INPUT",
            "outgoing" => "OUTPUT",
            _ => "FORWARD",
        };
        return Ok(match target {
            Some(t) => Mapped::ok(vec![entry(
                "command",
                json_map(json!({
                    "run": run,
                    "unless": format!("grep -qx 'DEFAULT_{chain}_POLICY=\"{t}\"' /etc/default/ufw"),
                })),
            )]),
            None => Mapped::approx(
                vec![entry("command", json_map(json!({ "run": run })))],
                "a templated policy: run on every apply (ufw reports no change for a policy it \
                 already has)",
            ),
        });
    }
    let rule = need_str(args, &["rule"])?;
    if !["allow", "deny", "reject", "limit"].contains(&rule.as_str()) {
        return Err(format!("rule `{rule}`"));
    }
    if args
        .get("direction")
        .is_some_and(|d| d != "in" && d != "incoming")
    {
        return Err("outgoing rules have no labctl equivalent".into());
    }
    let mut cmd = format!("ufw {rule}");
    if let Some(p) = get_str(args, &["proto", "protocol"])? {
        if p != "any" {
            cmd.push_str(&format!(" proto {}", q(&p)));
        }
    }
    let from = get_str(args, &["src", "from_ip", "from"])?.unwrap_or_else(|| "any".into());
    cmd.push_str(&format!(" from {} to any", q(&from)));
    if let Some(p) = get_str(args, &["port", "to_port"])? {
        cmd.push_str(&format!(" port {}", q(&p)));
    }
    if let Some(c) = get_str(args, &["comment"])? {
        cmd.push_str(&format!(" comment {}", q(&c)));
    }
    // The module's own test for "nothing to do" (its check mode): every line of the dry run
    // says the rule is skipped as existing.
    let dry = cmd.replacen("ufw ", "ufw --dry-run ", 1);
    let unless =
        format!("out=$({dry}) && [ -n \"$out\" ] && ! printf '%s\\n' \"$out\" | grep -qv Skipping");
    Ok(Mapped::approx(
        vec![entry(
            "command",
            json_map(json!({ "run": cmd, "unless": unless })),
        )],
        "a `ufw` command, skipped when ufw's dry run skips the rule as existing: labctl's `ufw` \
         type owns the whole rule set, which one task does not describe",
    ))
}

/// A creates/removes guard; globs in `creates` (Ansible allows them) become an `unless`.
fn guards(args: &Args, spec: &mut Map<String, Value>) -> Result<(), String> {
    let mut unless = Vec::new();
    if let Some(c) = get_str(args, &["creates"])? {
        if c.contains(['*', '?', '[']) {
            unless.push(format!("set -- {c}; [ -e \"$1\" ]"));
        } else {
            spec.insert("creates".into(), json!(c));
        }
    }
    if let Some(r) = get_str(args, &["removes"])? {
        unless.push(format!("[ ! -e {} ]", q(&r)));
    }
    if !unless.is_empty() {
        spec.insert("unless".into(), json!(unless.join(" || ")));
    }
    if let Some(d) = get_str(args, &["chdir"])? {
        spec.insert("chdir".into(), json!(d));
    }
    Ok(())
}

const SHELL_CHARS: &[char] = &[
    '$', '`', '|', '&', ';', '<', '>', '*', '?', '[', '~', '(', ')', '#', '\\', '\n',
];

/// The command module runs argv without a shell; labctl's `run` is read by `sh`. A literal
/// command line is split as Ansible splits it and each word quoted, so sh sees the same argv.
fn command(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &["_raw_params", "cmd", "argv", "creates", "removes", "chdir"],
    )?;
    let mut spec = Map::new();
    let mut note = None;
    if let Some(Value::Array(argv)) = args.get("argv") {
        let words: Option<Vec<String>> = argv.iter().map(str_of).collect();
        let words = words.ok_or("`argv` must be a list of strings")?;
        if words.iter().any(|w| is_tmpl(w)) {
            note = Some("templated words are quoted before they are rendered".to_string());
        }
        spec.insert(
            "run".into(),
            json!(words.iter().map(|w| q(w)).collect::<Vec<_>>().join(" ")),
        );
    } else {
        let line = need_str(args, &["cmd", "_raw_params"])?;
        if is_tmpl(&line) {
            let literal = regex::Regex::new(r"\{\{.*?\}\}|\{%.*?%\}")
                .expect("static regex")
                .replace_all(&line, "");
            if literal.contains(SHELL_CHARS) {
                return Err(
                    "a templated command line with shell characters: the command \
                            module runs it without a shell"
                        .into(),
                );
            }
            note = Some(
                "run by sh: rendered values are split at spaces as Ansible does, but sh also \
                 expands `$` and globs in them"
                    .to_string(),
            );
            spec.insert("run".into(), json!(line));
        } else {
            let words =
                shlex::split(&line).ok_or_else(|| format!("cannot split `{line}` into words"))?;
            let quoted: Vec<String> = words.iter().map(|w| q(w)).collect();
            spec.insert("run".into(), json!(quoted.join(" ")));
        }
    }
    guards(args, &mut spec)?;
    Ok(Mapped::ok(vec![entry("command", spec)]).also(note))
}

fn shell(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "_raw_params",
            "cmd",
            "creates",
            "removes",
            "chdir",
            "executable",
        ],
    )?;
    if let Some(e) = get_str(args, &["executable"])? {
        if e != "/bin/sh" && e != "sh" {
            return Err(format!("`executable: {e}`: labctl runs scripts with sh"));
        }
    }
    let mut spec = Map::new();
    spec.insert(
        "run".into(),
        json!(need_str(args, &["cmd", "_raw_params"])?),
    );
    guards(args, &mut spec)?;
    Ok(Mapped::ok(vec![entry("command", spec)]))
}

fn get_url(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "url", "dest", "checksum", "mode", "owner", "group", "timeout",
        ],
    )?;
    let dest = need_str(args, &["dest"])?;
    if dest.ends_with('/') {
        return Err(format!(
            "dest `{dest}` is a directory (the name comes from the server)"
        ));
    }
    let Some(sum) = get_str(args, &["checksum"])? else {
        return Err("no `checksum`: labctl downloads are pinned by sha256 (add \
                    `checksum: sha256:…`)"
            .into());
    };
    let Some(hex) = sum.strip_prefix("sha256:") else {
        return Err(format!(
            "checksum `{sum}`: labctl pins downloads by sha256 only"
        ));
    };
    if hex.starts_with("http") {
        return Err("a checksum URL is read at run time: pin the sha256".into());
    }
    let mut spec = Map::new();
    spec.insert("url".into(), json!(need_str(args, &["url"])?));
    spec.insert("dest".into(), json!(dest));
    spec.insert("sha256".into(), json!(hex));
    attrs(args, &mut spec, false)?;
    let note = args
        .contains_key("timeout")
        .then(|| "`timeout`: labctl's step timeout applies".to_string());
    Ok(Mapped::ok(vec![entry("download", spec)]).also(note))
}

/// Only an archive already on the host, with `creates`, has a faithful guard.
fn unarchive(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &["src", "dest", "remote_src", "creates", "extra_opts"],
    )?;
    if get_bool(args, &["remote_src"])? != Some(true) {
        return Err(
            "the archive is on the controller: fetch it with `download` (sha256) and \
                    unpack it with a guarded `command`"
                .into(),
        );
    }
    let Some(creates) = get_str(args, &["creates"])? else {
        return Err(
            "no `creates`: Ansible compares the unpacked files, labctl would unpack on \
                    every run"
                .into(),
        );
    };
    let src = need_str(args, &["src"])?;
    if src.contains("://") {
        return Err("a URL `src` is not checksummed: use `download` with a sha256".into());
    }
    let dest = need_str(args, &["dest"])?;
    let extra = match args.get("extra_opts") {
        None => String::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|w| str_of(w).map(|s| format!(" {}", q(&s))))
            .collect::<Option<String>>()
            .ok_or("`extra_opts` must be strings")?,
        _ => return Err("`extra_opts` must be a list".into()),
    };
    let run = if src.ends_with(".zip") {
        format!("unzip -o{extra} {} -d {}", q(&src), q(&dest))
    } else {
        format!("tar -xf {}{extra} -C {}", q(&src), q(&dest))
    };
    Ok(Mapped::approx(
        vec![entry(
            "command",
            json_map(json!({"run": run, "creates": creates})),
        )],
        "unpacked with tar/unzip while `creates` is missing (Ansible also fixes changed files)",
    ))
}

fn timezone(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(args, &["name"])?;
    let name = need_str(args, &["name"])?;
    Ok(Mapped::approx(
        vec![entry(
            "symlink",
            json_map(
                json!({"path": "/etc/localtime", "target": format!("../usr/share/zoneinfo/{name}"), "force": true}),
            ),
        )],
        "the /etc/localtime link `timedatectl set-timezone` writes (relative, as systemd writes \
         it); running services see it on restart",
    ))
}

fn hostname(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(args, &["name", "use"])?;
    if let Some(u) = get_str(args, &["use"])? {
        if !["systemd", "debian"].contains(&u.as_str()) {
            return Err(format!("`use: {u}`"));
        }
    }
    let name = need_str(args, &["name"])?;
    Ok(Mapped::approx(
        vec![
            entry(
                "file",
                json_map(json!({"path": "/etc/hostname", "content": format!("{name}\n")})),
            ),
            entry(
                "command",
                json_map(json!({
                    "run": format!("hostname {}", q(&name)),
                    "unless": format!("[ \"$(hostname)\" = {} ]", q(&name)),
                })),
            ),
        ],
        "/etc/hostname and the live name, as hostnamectl sets them (without telling systemd-hostnamed)",
    ))
}

fn modprobe(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(args, &["name", "state", "params", "persistent"])?;
    let name = need_str(args, &["name"])?;
    if get_str(args, &["params"])?.is_some_and(|p| !p.is_empty()) {
        return Err("`params` has no labctl equivalent".into());
    }
    let sys = if is_tmpl(&name) {
        format!("/sys/module/$(echo {} | tr - _)", q(&name))
    } else {
        q(&format!("/sys/module/{}", name.replace('-', "_")))
    };
    let state = get_str(args, &["state"])?.unwrap_or_else(|| "present".into());
    let mut out = match state.as_str() {
        "present" => vec![entry(
            "command",
            json_map(
                json!({"run": format!("modprobe {}", q(&name)), "unless": format!("[ -d {sys} ]")}),
            ),
        )],
        "absent" => vec![entry(
            "command",
            json_map(
                json!({"run": format!("modprobe -r {}", q(&name)), "unless": format!("[ ! -d {sys} ]")}),
            ),
        )],
        s => return Err(format!("state `{s}`")),
    };
    match get_str(args, &["persistent"])?.as_deref() {
        None | Some("disabled") => {}
        Some("present") => out.push(entry(
            "file",
            json_map(json!({"path": format!("/etc/modules-load.d/{name}.conf"), "content": format!("{name}\n")})),
        )),
        Some(p) => return Err(format!("`persistent: {p}`")),
    }
    Ok(Mapped::approx(
        out,
        "loaded when /sys/module/NAME is missing (Ansible reads /proc/modules and modules.builtin)",
    ))
}

/// Drops crontab's own header (as the cron module does, among the first three lines of
/// `crontab -l`); a cron_file has none.
const CRON_HEADER: &str = r"NR <= 3 && (/^# DO NOT EDIT THIS FILE - edit the master and reinstall\./ || /^# \(\/tmp\/.*installed on.*\)/ || /^# \(.*version.*\)/) { next }";

/// The module's `find_job` by comment: the first `#Ansible: …` line, then the line after it
/// (a comment for another job makes that next line skipped, not read, as the module does).
/// Sets `found`, and `ok` when that line is the wanted job `J`.
const CRON_FIND: &str = r#"c_set { if (c == ENVIRON["C"]) { found = 1; ok = ($0 == ENVIRON["J"]); exit } c_set = 0; next } /^#Ansible: / { c = $0; c_set = 1 }"#;

/// The module's add/update: a job line already there without its comment gets the comment
/// above it; then every `#Ansible: NAME` and the line after it become the comment and the job;
/// without any, both go at the end.
const CRON_SET: &str = r##"{ l[++n] = $0 }
END {
  C = ENVIRON["C"]; J = ENVIRON["J"]; has = 0
  for (i = 1; i <= n; i++) if (l[i] == C) { has = 1; break }
  if (!has) for (i = 1; i <= n; i++) if (l[i] == J) {
    p = (i > 1) ? i - 1 : n
    if (l[p] !~ /^#Ansible: /) { for (k = n; k >= i; k--) l[k + 1] = l[k]; l[i] = C; n++; has = 1; break }
    if (l[p] == "#Ansible: None") { l[p] = C; has = 1; break }
  }
  for (i = 1; i <= n; i++) if (l[i] == C) { print C; print J; i++ } else print l[i]
  if (!has) { print C; print J }
}"##;

/// The module's removal: every `#Ansible: NAME` line and the line after it.
const CRON_DROP: &str =
    r#"skip { skip = 0; next } $0 == ENVIRON["C"] { skip = 1; next } { print }"#;

/// The cron module edits `crontab -l` (or a `cron_file`) as lines: a job is `#Ansible: NAME`
/// and the line after it. labctl has no cron type; the module's edit is a few lines of awk over
/// the same lines, so the task becomes a `command` doing that edit, guarded by the module's own
/// "is it there" test. The module writes the lines back joined by newlines with one final
/// newline, which `$(…)` and printf reproduce.
fn cron(args: &Args, _cx: Cx) -> Result<Mapped, String> {
    only(
        args,
        &[
            "name",
            "job",
            "value",
            "user",
            "cron_file",
            "state",
            "minute",
            "hour",
            "day",
            "dom",
            "month",
            "weekday",
            "dow",
            "special_time",
            "disabled",
            "backup",
        ],
    )?;
    let name = need_str(args, &["name"])?;
    let user = get_str(args, &["user"])?;
    let file = get_str(args, &["cron_file"])?;
    if file.as_deref() == Some("/etc/crontab") {
        return Err("`cron_file: /etc/crontab` is refused by the module itself".into());
    }
    // Relative cron_file names live in /etc/cron.d, as the module puts them.
    let file = file.map(|f| {
        if f.starts_with('/') {
            f
        } else {
            format!("/etc/cron.d/{f}")
        }
    });
    let (read, write_to, header) = match &file {
        Some(f) => (
            format!("cat {} 2>/dev/null", q(f)),
            format!("> {}", q(f)),
            "",
        ),
        None => {
            let u = match &user {
                Some(u) => format!(" -u {}", q(u)),
                None => String::new(),
            };
            (
                format!("crontab{u} -l 2>/dev/null"),
                format!("| crontab{u} -"),
                CRON_HEADER,
            )
        }
    };
    let comment = format!("#Ansible: {name}");
    let present = match get_str(args, &["state"])?.as_deref() {
        None | Some("present") => true,
        Some("absent") => false,
        Some(s) => return Err(format!("state `{s}`")),
    };
    let backup = backup_note(args)?;
    if !present {
        let edit = format!(
            "new=$({read} | C={} awk {})",
            q(&comment),
            sq(&format!("{header} {CRON_DROP}"))
        );
        // A cron_file left with nothing but blank lines is deleted.
        let run = match &file {
            Some(f) => format!(
                "{edit} && if [ -z \"$(printf '%s' \"$new\" | tr -d '[:space:]')\" ]; then rm -f {f}; else printf '%s\\n' \"$new\" > {f}; fi",
                f = q(f)
            ),
            None => format!("{edit} && printf '%s\\n' \"$new\" {write_to}"),
        };
        let unless = format!(
            "{read} | C={} awk {}",
            q(&comment),
            sq(&format!("{header} {CRON_FIND} END {{ exit found }}"))
        );
        return Ok(Mapped::ok(vec![entry(
            "command",
            json_map(json!({"run": run, "unless": unless})),
        )])
        .also(backup));
    }
    let job = need_str(args, &["job", "value"])?;
    let job = job.trim_matches(|c| c == '\r' || c == '\n').to_string();
    if job.contains(['\r', '\n']) {
        return Err("a job with a line break (the module warns and writes it broken)".into());
    }
    if file.is_some() && user.is_none() {
        return Err("`cron_file` without `user` (the module refuses it)".into());
    }
    let prefix = if get_bool(args, &["disabled"])? == Some(true) {
        "#"
    } else {
        ""
    };
    let owner = match (&file, &user) {
        (Some(_), Some(u)) => format!(" {u}"),
        _ => String::new(),
    };
    let line = if let Some(sp) = get_str(args, &["special_time"])? {
        if ["minute", "hour", "day", "dom", "month", "weekday", "dow"]
            .iter()
            .any(|k| args.get(*k).is_some_and(|v| v != "*"))
        {
            return Err("`special_time` with a time (the module refuses it)".into());
        }
        format!("{prefix}@{sp}{owner} {job}")
    } else {
        let f = |keys: &[&str]| -> Result<String, String> {
            Ok(get_str(args, keys)?.unwrap_or_else(|| "*".into()))
        };
        format!(
            "{prefix}{} {} {} {} {}{owner} {job}",
            f(&["minute"])?,
            f(&["hour"])?,
            f(&["day", "dom"])?,
            f(&["month"])?,
            f(&["weekday", "dow"])?
        )
    };
    let vars = format!("C={} J={}", q(&comment), q(&line));
    let run = format!(
        "new=$({read} | {vars} awk {}) && printf '%s\\n' \"$new\" {write_to}",
        sq(&format!("{header} {CRON_SET}"))
    );
    let mut unless = format!(
        "{read} | {vars} awk {}",
        sq(&format!("{header} {CRON_FIND} END {{ exit !ok }}"))
    );
    // The module also rewrites a cron_file whose last line has no newline.
    if let Some(f) = &file {
        unless.push_str(&format!(" && [ -z \"$(tail -c 1 {})\" ]", q(f)));
    }
    Ok(Mapped::ok(vec![entry(
        "command",
        json_map(json!({"run": run, "unless": unless})),
    )])
    .also(backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(yaml: &str) -> Args {
        let n = crate::yaml::parse_node(std::path::Path::new("t.yml"), yaml).unwrap();
        match n.to_json() {
            Value::Object(m) => m,
            other => panic!("not a map: {other}"),
        }
    }

    fn run(module: &str, yaml: &str) -> Mapped {
        map_module(module, &args(yaml), Cx::default())
    }

    /// A table: module and arguments → the entries as YAML-ish JSON, or the outcome's words.
    fn expect(rows: &[(&str, &str, Value)]) {
        for (module, yaml, want) in rows {
            let got = run(module, yaml);
            assert!(
                !matches!(got.outcome, Outcome::LeftOut(_)),
                "{module} {yaml}: {:?}",
                got.outcome
            );
            assert_eq!(&Value::Array(got.entries), want, "{module} {yaml}");
        }
    }

    fn left_out(rows: &[(&str, &str, &str)]) {
        for (module, yaml, why) in rows {
            match run(module, yaml).outcome {
                Outcome::LeftOut(w) => assert!(w.contains(why), "{module} {yaml}: {w}"),
                o => panic!("{module} {yaml}: expected left out, got {o:?}"),
            }
        }
    }

    fn approximated(module: &str, yaml: &str, why: &str) {
        match run(module, yaml).outcome {
            Outcome::Approximated(w) => assert!(w.contains(why), "{module} {yaml}: {w}"),
            o => panic!("{module} {yaml}: expected approximated, got {o:?}"),
        }
    }

    #[test]
    fn apt_and_package() {
        expect(&[
            (
                "apt",
                "name: curl\nupdate_cache: true",
                json!([{"apt": {"name": "curl", "update_cache": "always"}}]),
            ),
            (
                "ansible.builtin.apt",
                "name: [curl, jq]\nstate: latest\nupdate_cache: no",
                json!([{"apt": {"packages": ["curl", "jq"], "state": "latest", "update_cache": "never"}}]),
            ),
            (
                "apt",
                "name: \"{{ pkgs }}\"\nstate: absent\nupdate_cache: false",
                json!([{"apt": {"packages": "{{ pkgs }}", "state": "absent", "update_cache": "never"}}]),
            ),
            (
                "package",
                "name: a,b\nstate: installed",
                json!([{"apt": {"packages": ["a", "b"]}}]),
            ),
        ]);
        approximated("apt", "name: curl", "refreshes missing or day-old");
        left_out(&[
            ("apt", "update_cache: true", "cache refresh alone"),
            ("apt", "deb: /tmp/x.deb", "argument `deb`"),
            ("apt", "name: x\nstate: build-dep", "state `build-dep`"),
        ]);
    }

    #[test]
    fn apt_key_and_repository_are_left_out() {
        left_out(&[
            (
                "apt_key",
                "url: https://x/key.gpg",
                "no type for APT sources or keys",
            ),
            (
                "ansible.builtin.apt_repository",
                "repo: deb http://x y main",
                "no type for APT sources",
            ),
        ]);
    }

    #[test]
    fn copy_content_and_src() {
        expect(&[
            (
                "copy",
                "content: \"hi {{ x }}\\n\"\ndest: /etc/motd\nmode: 0644\nowner: root",
                json!([{"file": {"path": "/etc/motd", "content": "hi {{ x }}\n", "mode": "0644", "owner": "root"}}]),
            ),
            (
                "ansible.builtin.copy",
                "src: app.conf\ndest: /etc/app.conf\nmode: u=rw,g=,o=\nvalidate: app -t %s",
                json!([{"file": {"path": "/etc/app.conf", "src": "app.conf", "mode": "0600", "validate": "app -t %s"}}]),
            ),
        ]);
        assert_eq!(
            run("copy", "src: a.conf\ndest: /a").assets,
            vec![Asset::File("a.conf".into())]
        );
        approximated(
            "copy",
            "content: x\ndest: /a\nbackup: yes",
            "no backup copy",
        );
        left_out(&[
            ("copy", "src: \"{{ item }}\"\ndest: /x", "is a template"),
            ("copy", "src: a\ndest: /etc/", "is a directory"),
            (
                "copy",
                "src: a\ndest: /x\nremote_src: true",
                "argument `remote_src`",
            ),
            ("copy", "content: x\ndest: /x\nforce: no", "force: false"),
            (
                "copy",
                "content: \"{{ lookup('file', 'x') }}\"\ndest: /x",
                "controller at run time",
            ),
            (
                "copy",
                "content: x\ndest: \"~{{ ansible_user }}/.kube/config\"",
                "starts with `~`",
            ),
        ]);
    }

    #[test]
    fn template_keeps_the_source() {
        expect(&[(
            "template",
            "src: k3s.nft.j2\ndest: /etc/k.nft\nmode: \"0644\"",
            json!([{"file": {"path": "/etc/k.nft", "template": "k3s.nft.j2", "mode": "0644"}}]),
        )]);
        assert_eq!(
            run("template", "src: a.j2\ndest: /a").assets,
            vec![Asset::Template("a.j2".into())]
        );
        left_out(&[(
            "template",
            "src: a.j2\ndest: /a\nlstrip_blocks: true",
            "argument `lstrip_blocks`",
        )]);
    }

    #[test]
    fn file_states() {
        expect(&[
            (
                "file",
                "path: /srv\nstate: directory\nmode: 0750\nowner: app",
                json!([{"directory": {"path": "/srv", "mode": "0750", "owner": "app"}}]),
            ),
            (
                "file",
                "path: /srv\nstate: directory\nrecurse: yes\nowner: app",
                json!([{"directory": {"path": "/srv", "owner": "app", "recurse": true}}]),
            ),
            (
                "file",
                "dest: /var/lib/rancher/k3s\nsrc: \"{{ loc }}\"\nforce: true\nstate: link",
                json!([{"symlink": {"path": "/var/lib/rancher/k3s", "target": "{{ loc }}", "force": true}}]),
            ),
            (
                "file",
                "path: /etc/x\nstate: absent",
                json!([{"file": {"path": "/etc/x", "state": "absent"}}]),
            ),
            (
                "file",
                "path: /etc/x\nstate: touch\nmode: \"0600\"",
                json!([{"file": {"path": "/etc/x", "mode": "0600"}}]),
            ),
        ]);
        approximated("file", "path: /x\nstate: absent", "directory at the path");
        approximated("file", "path: /x\nstate: touch", "times are not updated");
        approximated(
            "file",
            "path: /x\nstate: touch\nmodification_time: preserve\naccess_time: preserve",
            "keeps its content and times",
        );
        approximated("file", "path: /x\nmode: \"0600\"", "created empty");
        left_out(&[
            (
                "file",
                "path: /x\nstate: hard\nsrc: /y",
                "`src`/`force` with `state: hard`",
            ),
            (
                "file",
                "path: /x\nstate: directory\nrecurse: true\nmode: \"0755\"",
                "recurses owner and group only",
            ),
            ("file", "path: /x\nmode: a+x", "not octal"),
        ]);
    }

    #[test]
    fn lineinfile_to_line() {
        expect(&[
            ("lineinfile", "path: /etc/sudoers\nregexp: 'Defaults(\\s)*secure_path(\\s)*='\nline: Defaults secure_path = /sbin\ninsertafter: EOF\nvalidate: visudo -cf %s", json!([{"line": {"path": "/etc/sudoers", "regexp": "Defaults(\\s)*secure_path(\\s)*=", "line": "Defaults secure_path = /sbin", "validate": "visudo -cf %s"}}])),
            ("lineinfile", "path: /etc/fstab\nregexp: '\\sswap\\s'\nstate: absent", json!([{"line": {"path": "/etc/fstab", "regexp": "\\sswap\\s", "state": "absent"}}])),
            ("lineinfile", "dest: /etc/hosts\nline: 10.0.0.1 s1\ninsertafter: '^127'\ncreate: yes", json!([{"line": {"path": "/etc/hosts", "line": "10.0.0.1 s1", "insert_after": "^127", "create": true}}])),
            ("lineinfile", "path: /a\nsearch_string: a.b\nline: x", json!([{"line": {"path": "/a", "regexp": "a\\.b", "line": "x"}}])),
        ]);
        left_out(&[
            ("lineinfile", "path: /e\nstate: absent\nregexp: \"^K3S_TOKEN=\\\\s*(?!{{ token | regex_escape }}\\\\s*$)\"", "look-around"),
            ("lineinfile", "path: /e\nline: x\ninsertbefore: '^y'", "argument `insertbefore`"),
            ("lineinfile", "path: /e\nline: x\nbackrefs: yes\nregexp: (a)", "argument `backrefs`"),
            ("lineinfile", "path: /e\nline: x\nmode: \"0600\"", "argument `mode`"),
        ]);
    }

    #[test]
    fn blockinfile_to_a_line_block() {
        expect(&[
            (
                "ansible.builtin.blockinfile",
                "path: /etc/ssh/sshd_config\nblock: |\n  Match User x\n    X11Forwarding no\ninsertafter: '^#Match'\nvalidate: sshd -t -f %s",
                json!([{"line": {"path": "/etc/ssh/sshd_config", "block": "Match User x\n  X11Forwarding no\n", "insert_after": "^#Match", "validate": "sshd -t -f %s"}}]),
            ),
            (
                "blockinfile",
                "dest: /etc/hosts\ncontent: \"{{ hosts_block }}\"\nmarker: \"<!-- {mark} -->\"\nmarker_begin: start\nmarker_end: stop\ncreate: yes\ninsertafter: EOF",
                json!([{"line": {"path": "/etc/hosts", "block": "{{ hosts_block }}", "marker": "<!-- {mark} -->", "marker_begin": "start", "marker_end": "stop", "create": true}}]),
            ),
            (
                "blockinfile",
                "path: /etc/hosts\nstate: absent",
                json!([{"line": {"path": "/etc/hosts", "marker": "# {mark} ANSIBLE MANAGED BLOCK", "state": "absent"}}]),
            ),
        ]);
        left_out(&[
            (
                "blockinfile",
                "path: /x\nblock: y\ninsertbefore: BOF",
                "argument `insertbefore`",
            ),
            (
                "blockinfile",
                "path: /x\nblock: y\nmode: \"0600\"",
                "argument `mode`",
            ),
            (
                "blockinfile",
                "path: /x\nblock: y\nprepend_newline: true",
                "`prepend_newline: true`",
            ),
        ]);
    }

    /// Runs a cron task's `unless`, then (when it fails) its `run`, under sh against a cron_file
    /// holding `old`; returns whether the guard said "in sync" and the file after.
    fn cron_on_file(yaml: &str, old: Option<&str>) -> (bool, Option<String>) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("jobs");
        if let Some(o) = old {
            std::fs::write(&f, o).unwrap();
        }
        let m = run("cron", &format!("{yaml}\ncron_file: {}", f.display()));
        assert!(!matches!(m.outcome, Outcome::LeftOut(_)), "{m:?}");
        let c = &m.entries[0]["command"];
        let sh = |script: &str| {
            std::process::Command::new("sh")
                .args(["-c", script])
                .status()
                .unwrap()
                .success()
        };
        let in_sync = sh(c["unless"].as_str().unwrap());
        if !in_sync {
            assert!(sh(c["run"].as_str().unwrap()), "{c}");
            // What the module leaves is in sync for it: a second run changes nothing.
            assert!(sh(c["unless"].as_str().unwrap()), "not converged: {c}");
        }
        (in_sync, std::fs::read_to_string(&f).ok())
    }

    #[test]
    fn cron_to_a_guarded_command() {
        let m = run(
            "ansible.builtin.cron",
            "name: backup\nminute: \"5\"\nhour: \"*/2\"\njob: /usr/local/bin/backup >/dev/null",
        );
        assert_eq!(m.outcome, Outcome::Translated);
        let c = &m.entries[0]["command"];
        let cmd = c["run"].as_str().unwrap();
        assert!(
            cmd.starts_with("new=$(crontab -l 2>/dev/null | C='#Ansible: backup' J='5 */2 * * * /usr/local/bin/backup >/dev/null' awk 'NR <= 3 && (/^# DO NOT EDIT")
                && cmd.ends_with("&& printf '%s\\n' \"$new\" | crontab -"),
            "{cmd}"
        );
        let m = run("cron", "name: old\nuser: app\nstate: absent");
        assert!(m.entries[0]["command"]["unless"]
            .as_str()
            .unwrap()
            .starts_with("crontab -u app -l 2>/dev/null | C='#Ansible: old' awk "));

        // The module's edits, on a cron_file (the same lines as a crontab, without its header).
        let job = "name: sync\nuser: app\nminute: \"0\"\njob: /opt/sync";
        let want = "#Ansible: sync\n0 * * * * app /opt/sync\n";
        assert_eq!(cron_on_file(job, None), (false, Some(want.into())));
        assert_eq!(cron_on_file(job, Some(want)), (true, Some(want.into())));
        // Appended after what is there; a changed job is replaced where it stands.
        assert_eq!(
            cron_on_file(job, Some("SHELL=/bin/sh\n")).1.unwrap(),
            format!("SHELL=/bin/sh\n{want}")
        );
        assert_eq!(
            cron_on_file(
                job,
                Some("#Ansible: sync\n5 * * * * app /opt/sync\n# end\n")
            )
            .1
            .unwrap(),
            format!("{want}# end\n")
        );
        // The job line alone is adopted: its comment goes above it.
        assert_eq!(
            cron_on_file(job, Some("# x\n0 * * * * app /opt/sync\n"))
                .1
                .unwrap(),
            format!("# x\n{want}")
        );
        // A missing final newline is a change; trailing blank lines go, as the module joins lines.
        assert_eq!(
            cron_on_file(job, Some(want.trim_end())),
            (false, Some(want.into()))
        );
        assert_eq!(
            cron_on_file(job, Some("#Ansible: sync\n5 * * * * app /opt/sync\n\n\n"))
                .1
                .unwrap(),
            want
        );
        assert_eq!(
            cron_on_file(job, Some(&format!("{want}\n\n"))),
            (true, Some(format!("{want}\n\n")))
        );
        // Absent: the comment and its job go; a file left empty is removed.
        let gone = "name: sync\nuser: app\nstate: absent";
        assert_eq!(
            cron_on_file(gone, Some(&format!("A=1\n{want}"))).1.unwrap(),
            "A=1\n"
        );
        assert_eq!(cron_on_file(gone, Some(want)), (false, None));
        assert_eq!(cron_on_file(gone, None), (true, None));
        let r = run(
            "cron",
            "name: sync\nspecial_time: reboot\nuser: app\ncron_file: app-sync\njob: /opt/sync",
        );
        let cmd = r.entries[0]["command"]["run"].as_str().unwrap().to_string();
        assert!(cmd.contains("J='@reboot app /opt/sync'"), "{cmd}");
        assert!(
            cmd.starts_with("new=$(cat /etc/cron.d/app-sync 2>/dev/null |"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with("> /etc/cron.d/app-sync") && !cmd.contains("DO NOT EDIT"),
            "{cmd}"
        );
        left_out(&[
            ("cron", "name: PATH\nenv: yes\njob: /bin", "argument `env`"),
            ("cron", "name: x\njob: y\ncron_file: f", "without `user`"),
            (
                "cron",
                "name: x\njob: y\nspecial_time: daily\nhour: \"3\"",
                "special_time` with a time",
            ),
        ]);
    }

    #[test]
    fn service_and_systemd() {
        expect(&[
            (
                "service",
                "name: ssh\nstate: started\nenabled: yes",
                json!([{"service": {"name": "ssh", "enabled": true, "state": "started"}}]),
            ),
            (
                "ansible.builtin.systemd",
                "name: k3s\nstate: stopped\ndaemon_reload: true",
                json!([{"service": {"name": "k3s", "daemon_reload": true, "state": "stopped"}}]),
            ),
            (
                "service",
                "name: k3s-agent\nstate: restarted\nenabled: true",
                json!([{"service": {"name": "k3s-agent", "enabled": true}}, {"command": {"run": "systemctl restart k3s-agent"}}]),
            ),
            (
                "systemd_service",
                "daemon_reload: true",
                json!([{"command": {"run": "systemctl daemon-reload"}}]),
            ),
        ]);
        let h = map_module(
            "service",
            &args("name: ssh\nstate: reloaded"),
            Cx { handler: true },
        );
        assert_eq!(
            h.entries,
            vec![json!({"service": {"name": "ssh", "state": "reloaded"}})]
        );
        left_out(&[("systemd", "name: x\nmasked: true", "argument `masked`")]);
    }

    #[test]
    fn user_and_group() {
        expect(&[
            ("user", "name: deploy\nuid: 1500\ngroups: sudo,docker\nshell: /bin/bash\npassword: \"{{ hash }}\"", json!([{"user": {"name": "deploy", "uid": 1500, "shell": "/bin/bash", "groups": ["sudo", "docker"], "append": false, "password_hash": "{{ hash }}"}}])),
            ("user", "name: d\ngroups: [a]\nappend: yes\nsystem: yes\ncreate_home: no", json!([{"user": {"name": "d", "groups": ["a"], "append": true, "create_home": false, "system": true}}])),
            ("user", "name: old\nstate: absent", json!([{"user": {"name": "old", "state": "absent"}}])),
            ("group", "name: docker\nsystem: true", json!([{"group": {"name": "docker", "system": true}}])),
            ("ansible.builtin.group", "name: g\ngid: 1500\nstate: absent", json!([{"group": {"name": "g", "gid": 1500, "state": "absent"}}])),
        ]);
        left_out(&[
            (
                "user",
                "name: old\nstate: absent\nremove: yes",
                "argument `remove`",
            ),
            (
                "user",
                "name: x\ngenerate_ssh_key: yes",
                "argument `generate_ssh_key`",
            ),
            ("group", "name: g\nnon_unique: yes", "argument `non_unique`"),
        ]);
    }

    #[test]
    fn authorized_key_to_keys() {
        expect(&[
            (
                "ansible.posix.authorized_key",
                "user: deploy\nkey: ssh-ed25519 AAAA a@b\nexclusive: true",
                json!([{"authorized_key": {"user": "deploy", "keys": ["ssh-ed25519 AAAA a@b"], "exclusive": true}}]),
            ),
            (
                "authorized_key",
                "user: d\nkey: ssh-ed25519 AAAA\nstate: absent",
                json!([{"authorized_key": {"user": "d", "key": "ssh-ed25519 AAAA", "state": "absent"}}]),
            ),
        ]);
        left_out(&[
            (
                "authorized_key",
                "user: d\nkey: https://github.com/d.keys",
                "key URL",
            ),
            (
                "authorized_key",
                "user: d\nkey: k\nkey_options: no-pty",
                "argument `key_options`",
            ),
        ]);
    }

    #[test]
    fn sysctl_is_a_line_and_a_guarded_command() {
        expect(&[
            (
                "ansible.posix.sysctl",
                "name: net.ipv4.ip_forward\nvalue: \"1\"\nstate: present\nreload: true",
                json!([
                    {"line": {"path": "/etc/sysctl.conf", "regexp": "^\\s*net\\.ipv4\\.ip_forward\\s*=", "line": "net.ipv4.ip_forward=1", "create": true}},
                    {"command": {"run": "sysctl -w 'net.ipv4.ip_forward=1'", "unless": "[ \"$(sysctl -n net.ipv4.ip_forward | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')\" = 1 ]"}},
                ]),
            ),
            (
                "sysctl",
                "name: \"{{ item }}\"\nvalue: 1\nsysctl_file: /etc/sysctl.d/k.conf\nreload: no",
                json!([
                    {"line": {"path": "/etc/sysctl.d/k.conf", "regexp": "^\\s*{{ (item) | regex_escape }}\\s*=", "line": "{{ item }}=1", "create": true}},
                ]),
            ),
        ]);
        approximated("sysctl", "name: a.b\nvalue: 1", "sysctl -p");
        // The guard, run by sh against what sysctl prints (a final newline, tabs between words):
        // in sync only when the words are the value's.
        let guard = |value: &str, prints: &str| {
            let m = run("sysctl", &format!("name: a.b\nvalue: \"{value}\""));
            let unless = m.entries[1]["command"]["unless"]
                .as_str()
                .unwrap()
                .to_string();
            let d = tempfile::tempdir().unwrap();
            let stub = d.path().join("sysctl");
            std::fs::write(&stub, format!("#!/bin/sh\nprintf '{prints}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::process::Command::new("sh")
                .args(["-c", &unless])
                .env("PATH", format!("{}:/usr/bin:/bin", d.path().display()))
                .status()
                .unwrap()
                .success()
        };
        assert!(guard("1", "1\\n"));
        assert!(!guard("1", "0\\n"));
        assert!(guard("32768 60999", "32768\\t60999\\n"));
        assert!(!guard("32768 60999", "32768\\n"));
        left_out(&[(
            "sysctl",
            "name: a\nvalue: 1\nignoreerrors: yes",
            "argument `ignoreerrors`",
        )]);
    }

    #[test]
    fn ufw_tasks_are_ufw_commands() {
        expect(&[
            (
                "community.general.ufw",
                "rule: allow\nport: \"{{ api_port }}\"\nproto: tcp",
                json!([{"command": {"run": "ufw allow proto tcp from any to any port '{{ api_port }}'", "unless": "out=$(ufw --dry-run allow proto tcp from any to any port '{{ api_port }}') && [ -n \"$out\" ] && ! printf '%s\\n' \"$out\" | grep -qv Skipping"}}]),
            ),
            (
                "ufw",
                "rule: allow\nsrc: 10.42.0.0/16",
                json!([{"command": {"run": "ufw allow from 10.42.0.0/16 to any", "unless": "out=$(ufw --dry-run allow from 10.42.0.0/16 to any) && [ -n \"$out\" ] && ! printf '%s\\n' \"$out\" | grep -qv Skipping"}}]),
            ),
            (
                "ufw",
                "state: enabled",
                json!([{"command": {"run": "ufw --force enable", "unless": "ufw status | grep -q '^Status: active'"}}]),
            ),
            (
                "ufw",
                "policy: deny\ndirection: incoming",
                json!([{"command": {"run": "ufw default deny incoming", "unless": "grep -qx 'DEFAULT_INPUT_POLICY=\"DROP\"' /etc/default/ufw"}}]),
            ),
        ]);
        approximated("ufw", "rule: allow\nport: '22'", "owns the whole rule set");
        left_out(&[
            (
                "ufw",
                "rule: allow\nport: '22'\ninterface: wg0",
                "argument `interface`",
            ),
            ("ufw", "rule: allow\ndirection: out\nport: '53'", "outgoing"),
            ("ufw", "state: reset", "run-time actions"),
        ]);
    }

    #[test]
    fn command_and_shell() {
        expect(&[
            (
                "command",
                "_raw_params: k3s --version",
                json!([{"command": {"run": "k3s --version"}}]),
            ),
            (
                "ansible.builtin.command",
                "cmd: echo 'a b' $HOME\ncreates: /x\nchdir: /tmp",
                json!([{"command": {"run": "echo 'a b' '$HOME'", "creates": "/x", "chdir": "/tmp"}}]),
            ),
            (
                "command",
                "argv: [ls, a b]\nremoves: /y",
                json!([{"command": {"run": "ls 'a b'", "unless": "[ ! -e /y ]"}}]),
            ),
            (
                "command",
                "cmd: /usr/local/bin/k3s-install.sh",
                json!([{"command": {"run": "/usr/local/bin/k3s-install.sh"}}]),
            ),
            (
                "shell",
                "cmd: curl x | sh -\ncreates: /usr/local/bin/*",
                json!([{"command": {"run": "curl x | sh -", "unless": "set -- /usr/local/bin/*; [ -e \"$1\" ]"}}]),
            ),
        ]);
        approximated("command", "cmd: modprobe {{ m }}", "run by sh");
        left_out(&[
            ("command", "cmd: cat {{ f }} > /x", "shell characters"),
            (
                "shell",
                "cmd: x\nexecutable: /bin/bash",
                "labctl runs scripts with sh",
            ),
            ("shell", "cmd: x\nstdin: y", "argument `stdin`"),
        ]);
    }

    #[test]
    fn get_url_needs_a_sha256() {
        expect(&[("get_url", "url: https://x/k3s\ndest: /usr/local/bin/k3s\nchecksum: sha256:{{ sum }}\nmode: \"0755\"", json!([{"download": {"url": "https://x/k3s", "dest": "/usr/local/bin/k3s", "sha256": "{{ sum }}", "mode": "0755"}}]))]);
        approximated(
            "get_url",
            "url: u\ndest: /d\nchecksum: sha256:ab\ntimeout: 120",
            "step timeout",
        );
        left_out(&[
            (
                "get_url",
                "url: https://get.k3s.io/\ndest: /usr/local/bin/k3s-install.sh",
                "pinned by sha256",
            ),
            (
                "get_url",
                "url: u\ndest: /d\nchecksum: md5:ab",
                "sha256 only",
            ),
            ("get_url", "url: u\ndest: /d/", "is a directory"),
        ]);
    }

    #[test]
    fn unarchive_only_on_the_host_with_creates() {
        expect(&[(
            "unarchive",
            "src: /tmp/a.tar.gz\ndest: /opt\nremote_src: yes\ncreates: /opt/a",
            json!([{"command": {"run": "tar -xf /tmp/a.tar.gz -C /opt", "creates": "/opt/a"}}]),
        )]);
        left_out(&[
            ("unarchive", "src: a.tgz\ndest: /opt", "on the controller"),
            (
                "unarchive",
                "src: /a.tgz\ndest: /opt\nremote_src: true",
                "no `creates`",
            ),
        ]);
    }

    #[test]
    fn mount_git_are_left_out() {
        left_out(&[
            (
                "ansible.posix.mount",
                "path: /mnt\nsrc: /dev/sdb\nfstype: ext4\nstate: mounted",
                "no mount type",
            ),
            ("git", "repo: https://x\ndest: /opt/x", "no git type"),
            ("debug", "msg: hi", "nothing to converge"),
            ("community.general.nosuch", "a: b", "no labctl type"),
        ]);
    }

    #[test]
    fn timezone_hostname_modprobe() {
        expect(&[
            (
                "community.general.timezone",
                "name: Europe/Berlin",
                json!([{"symlink": {"path": "/etc/localtime", "target": "../usr/share/zoneinfo/Europe/Berlin", "force": true}}]),
            ),
            (
                "hostname",
                "name: node1",
                json!([{"file": {"path": "/etc/hostname", "content": "node1\n"}}, {"command": {"run": "hostname node1", "unless": "[ \"$(hostname)\" = node1 ]"}}]),
            ),
            (
                "community.general.modprobe",
                "name: br_netfilter\nstate: present\npersistent: present",
                json!([{"command": {"run": "modprobe br_netfilter", "unless": "[ -d /sys/module/br_netfilter ]"}}, {"file": {"path": "/etc/modules-load.d/br_netfilter.conf", "content": "br_netfilter\n"}}]),
            ),
            (
                "modprobe",
                "name: ip-vs\nstate: absent",
                json!([{"command": {"run": "modprobe -r ip-vs", "unless": "[ ! -d /sys/module/ip_vs ]"}}]),
            ),
        ]);
        left_out(&[
            (
                "timezone",
                "name: UTC\nhwclock: local",
                "argument `hwclock`",
            ),
            ("modprobe", "name: x\nparams: a=1", "`params`"),
        ]);
    }

    #[test]
    fn modes() {
        for (v, want) in [
            (json!(644), "0644"),
            (json!("0755"), "0755"),
            (json!("600"), "0600"),
            (json!("u=rw,g=r,o="), "0640"),
            (json!("a=rx,u=rwx"), "0755"),
        ] {
            assert_eq!(mode(&v).unwrap(), want, "{v}");
        }
        assert!(mode(&json!("u+x")).is_err());
    }
}
