//! The shipped roles' templates, rendered by labctl's own template engine (the path `apply`
//! takes: [`Engine::render_file`] over the role's defaults), fed to the real programs that will
//! read them: promtool, amtool, Alertmanager, the exporters, PostgreSQL.
//!
//! A program that is not installed makes its test say "SKIPPED" and pass (fail under CI=true): `scripts/setup.sh`
//! installs every one of them, and CI runs it first.

mod alerts;
mod cluster;
mod ingress;
mod monitoring;
mod volumes;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::common::show;
use crate::common::skip as skipped;
use labctl::internals::inventory::VarLayer;
use labctl::internals::template::{self, Ctx, Engine};

/// What a vault var renders as: a secret the tests can search for.
pub const VAULT_CANARY: &str = "canary-from-vault-9d1e";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A role's defaults with `overrides` on top (as inventory vars or `-e` would be), templated vars
/// resolved as `apply` resolves them; vars that name the vault render as [`VAULT_CANARY`],
/// marked secret as a vault value is.
pub fn role_ctx(role: &str, overrides: &[(&str, Value)]) -> Ctx {
    let text = std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml")))
        .unwrap_or_else(|e| panic!("roles/{role}/defaults.yml: {e}"));
    let mut vars: indexmap::IndexMap<String, Value> =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{role} defaults: {e}"));
    let mut secret = std::collections::BTreeSet::new();
    for (k, v) in vars.iter_mut() {
        if v.as_str().is_some_and(|s| s.contains("vault_")) {
            *v = Value::String(VAULT_CANARY.into());
            secret.insert(k.clone());
        }
    }
    // What compile adds for every host.
    vars.insert(
        "inventory_hostname".into(),
        Value::String("lab-server-1".into()),
    );
    // Every environment's NodePorts (site::environments): none without an inventory.
    vars.insert("environment_node_ports".into(), Value::Array(vec![]));
    for (k, v) in overrides {
        vars.insert((*k).to_string(), v.clone());
    }
    let mut layer = VarLayer::from_map(vars);
    layer.secret = secret;
    let l = template::vars::resolve(&Engine::new(&root()), &layer, false)
        .unwrap_or_else(|e| panic!("{role}: {e:?}"));
    Ctx::new(&l.values, l.secret.clone(), vec![VAULT_CANARY.to_string()])
}

/// `roles/ROLE/templates/NAME` rendered for `ctx`: (text, tainted by a secret).
pub fn render(role: &str, name: &str, ctx: &Ctx) -> (String, bool) {
    let r = Engine::new(&root())
        .render_file(&format!("roles/{role}/templates/{name}"), ctx)
        .unwrap_or_else(|e| panic!("{role}/{name}: {e}"));
    (r.text, r.tainted)
}

/// `values/NAME` (the per-service chart values users edit) rendered for `ctx`.
pub fn render_values(name: &str, ctx: &Ctx) -> (String, bool) {
    let r = Engine::new(&root())
        .render_file(&format!("values/{name}"), ctx)
        .unwrap_or_else(|e| panic!("values/{name}: {e}"));
    (r.text, r.tainted)
}

/// `roles/ROLE/role.yml`'s resources as written (templates not rendered), in order.
pub fn role_resources(role: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(format!("roles/{role}/role.yml")))
        .unwrap_or_else(|e| panic!("roles/{role}/role.yml: {e}"));
    let v = yaml(&text);
    v["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("roles/{role}/role.yml has no resources"))
        .clone()
}

pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

/// The real program's path, or None after saying the test is skipped.
pub fn have(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        skipped(&format!(
            "{program} is not installed (scripts/setup.sh installs it)"
        ));
    }
    found
}

/// A program from the private PyPI venv, or None after saying the test is skipped.
pub fn venv_program(name: &str) -> Option<PathBuf> {
    let found = crate::common::venv_tool(name);
    if found.is_none() {
        skipped(&format!(
            "{name} is not in the test venv (scripts/setup.sh creates it)"
        ));
    }
    found
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A process this test started; killed (by its own PID) when dropped, also on panic.
pub struct Daemon {
    child: Child,
    /// The signal that stops it cleanly (PostgreSQL: SIGINT, a fast shutdown).
    stop: libc::c_int,
}

impl Daemon {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Daemon {
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            child,
            stop: libc::SIGTERM,
        }
    }
}

impl Daemon {
    pub fn stop_with(mut self, signal: libc::c_int) -> Daemon {
        self.stop = signal;
        self
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Our own child, by its PID: a clean stop first, SIGKILL if it lingers.
        let pid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(pid, self.stop) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns Some, or panics naming `what` after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET `url` with curl: the body on success.
pub fn http_get(url: &str) -> Option<String> {
    let o = Command::new("curl")
        .args(["-fsS", "--max-time", "5", url])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}
