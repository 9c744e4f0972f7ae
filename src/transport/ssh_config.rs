//! SSH as the user configured it. labctl passes `-p`, `-l`, `-i` and `-o` options only for what
//! the inventory or a flag asked; everything else (Host patterns, User, Port, IdentityFile,
//! ProxyJump, UserKnownHostsFile, …) comes from ~/.ssh/config as plain `ssh` would read it.
//!
//! The one option ssh always gets is StrictHostKeyChecking (the mux library insists on one):
//! labctl passes what the user's config says, and `yes` when it says nothing, so a first
//! contact needs `--accept-new-host-keys` unless the user chose otherwise.

use std::collections::HashMap;
use std::time::Duration;

use super::HostKeyPolicy;
use crate::inventory::Conn;

/// What `ssh -G` reports for a destination: the settings ssh will use, after every config file.
#[derive(Debug, Default, Clone)]
pub struct Effective {
    pub settings: HashMap<String, String>,
    /// The same with no config files (`-F /dev/null`): ssh's built-in defaults. Only the keys
    /// that do not depend on the destination are compared against it (`configured`).
    pub defaults: HashMap<String, String>,
}

/// ssh's built-in defaults, asked once per run: they are the same for every host (the keys
/// `configured` is used for do not depend on the destination), so 50 hosts need 50 `ssh -G`,
/// not 100.
static DEFAULTS: tokio::sync::OnceCell<HashMap<String, String>> =
    tokio::sync::OnceCell::const_new();

impl Effective {
    /// Ask ssh. The inventory's port and user go on the command line, as they will on connect,
    /// so `Match`/`Host` blocks evaluate the same way.
    pub async fn query(conn: &Conn) -> Result<Effective, String> {
        let defaults = DEFAULTS.get_or_init(|| async {
            let any = Conn {
                address: "labctl-defaults".into(),
                ..Default::default()
            };
            ssh_g(&any, Some("/dev/null")).await.unwrap_or_default()
        });
        let (settings, defaults) = tokio::join!(ssh_g(conn, None), defaults);
        Ok(Effective {
            settings: settings?,
            defaults: defaults.clone(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// True when a config file changed `key` from ssh's default.
    pub fn configured(&self, key: &str) -> bool {
        self.settings.get(key) != self.defaults.get(key)
    }

    /// `user@host:port` as ssh will connect, for messages.
    pub fn dest(&self, conn: &Conn) -> String {
        format!(
            "{}@{}:{}",
            self.get("user").or(conn.user.as_deref()).unwrap_or("?"),
            self.get("hostname").unwrap_or(&conn.address),
            self.get("port")
                .map(String::from)
                .or(conn.port.map(|p| p.to_string()))
                .unwrap_or_else(|| "22".into())
        )
    }
}

/// `LABCTL_SSH_CONFIG`: an ssh config file to read instead of ~/.ssh/config (`ssh -F`).
/// ssh finds ~ through the password database, not $HOME, so this is how tests (and users
/// with a per-lab config) point it elsewhere.
pub fn config_file() -> Option<std::path::PathBuf> {
    std::env::var_os("LABCTL_SSH_CONFIG")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

async fn ssh_g(conn: &Conn, config: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-G");
    match (config, config_file()) {
        (Some(f), _) => {
            cmd.args(["-F", f]);
        }
        (None, Some(f)) => {
            cmd.arg("-F").arg(f);
        }
        (None, None) => {}
    }
    if let Some(p) = conn.port {
        cmd.args(["-p", &p.to_string()]);
    }
    if let Some(u) = &conn.user {
        cmd.args(["-l", u]);
    }
    cmd.arg("--").arg(&conn.address);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| "`ssh -G` did not answer".to_string())?
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh cannot read its configuration: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_g(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_g(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            // Repeated keys (identityfile, …): the first is what ssh tries first.
            m.entry(k.to_ascii_lowercase())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    m
}

/// The host key check to pass: the flag first, then the user's config, else strict.
pub fn host_key_check(policy: HostKeyPolicy, eff: &Effective) -> openssh::KnownHosts {
    if policy == HostKeyPolicy::AcceptNew {
        return openssh::KnownHosts::Add;
    }
    if !eff.configured("stricthostkeychecking") {
        return openssh::KnownHosts::Strict;
    }
    match eff.get("stricthostkeychecking") {
        Some("accept-new") => openssh::KnownHosts::Add,
        Some("false" | "no" | "off") => openssh::KnownHosts::Accept,
        // yes, ask (there is nobody to ask: BatchMode), anything unexpected.
        _ => openssh::KnownHosts::Strict,
    }
}

/// Every option labctl gives ssh for one host, in one place: what the inventory or a flag
/// asked, and nothing else (besides the mux plumbing openssh needs).
pub fn ssh_options(
    conn: &Conn,
    policy: HostKeyPolicy,
    connect_timeout: Duration,
    eff: &Effective,
) -> openssh::SessionBuilder {
    let mut b = openssh::SessionBuilder::default();
    if let Some(f) = config_file() {
        b.config_file(f);
    }
    b.known_hosts_check(host_key_check(policy, eff));
    if let Some(p) = conn.port {
        b.port(p);
    }
    if let Some(u) = &conn.user {
        b.user(u.clone());
    }
    if let Some(k) = &conn.key_file {
        b.keyfile(k);
    }
    if let Some(kh) = &conn.known_hosts {
        b.user_known_hosts_file(kh);
    }
    // --connect-timeout is a flag; when the user's config sets its own, that one stands.
    if !eff.configured("connecttimeout") {
        b.connect_timeout(connect_timeout);
    }
    // A dead host must not hang a run forever; the user's own keepalive wins.
    if let Some(i) = super::keepalive::added(eff) {
        b.server_alive_interval(i);
    }
    b.control_persist(openssh::ControlPersist::IdleFor(
        std::num::NonZeroUsize::new(30).expect("30 > 0"),
    ));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eff(user: &[(&str, &str)]) -> Effective {
        let base = [("stricthostkeychecking", "ask"), ("port", "22")];
        let to = |p: &[(&str, &str)]| -> HashMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut settings = to(&base);
        settings.extend(to(user));
        Effective {
            settings,
            defaults: to(&base),
        }
    }

    #[test]
    fn host_key_policy_follows_flag_then_config_then_strict() {
        use openssh::KnownHosts as K;
        let m = |k: K| format!("{k:?}");
        assert_eq!(
            m(host_key_check(HostKeyPolicy::Strict, &eff(&[]))),
            m(K::Strict)
        );
        let an = eff(&[("stricthostkeychecking", "accept-new")]);
        assert_eq!(m(host_key_check(HostKeyPolicy::Strict, &an)), m(K::Add));
        let no = eff(&[("stricthostkeychecking", "false")]);
        assert_eq!(m(host_key_check(HostKeyPolicy::Strict, &no)), m(K::Accept));
        assert_eq!(m(host_key_check(HostKeyPolicy::AcceptNew, &no)), m(K::Add));
    }

    #[test]
    fn parses_ssh_g_output() {
        let m = parse_g(
            "user pi\nhostname 10.0.0.5\nport 2222\nidentityfile ~/.ssh/a\nidentityfile ~/.ssh/b\n",
        );
        assert_eq!(m["identityfile"], "~/.ssh/a");
        let e = Effective {
            settings: m,
            defaults: HashMap::new(),
        };
        let conn = Conn {
            address: "lab1".into(),
            ..Default::default()
        };
        assert_eq!(e.dest(&conn), "pi@10.0.0.5:2222");
    }
}
