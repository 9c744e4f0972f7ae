//! SSH as the user configured it. labctl passes `-p`, `-l`, `-i` and `-o` options only for what
//! the inventory or a flag asked (`options`); everything else (Host patterns, User, Port,
//! IdentityFile, ProxyJump, UserKnownHostsFile, …) comes from ~/.ssh/config as plain `ssh` would
//! read it, and this is where labctl reads it too (`ssh -G`).

use std::collections::HashMap;
use std::time::Duration;

use crate::inventory::Conn;

/// Why `ssh -G` could not tell what ssh would use for a destination.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("`ssh -G` did not answer")]
    Timeout,
    #[error("cannot run ssh: {0}")]
    Spawn(#[source] std::io::Error),
    /// ssh refused its configuration: its stderr, trimmed.
    #[error("ssh cannot read its configuration: {0}")]
    Config(String),
}

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
    pub async fn query(conn: &Conn) -> Result<Effective, SshConfigError> {
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

async fn ssh_g(
    conn: &Conn,
    config: Option<&str>,
) -> Result<HashMap<String, String>, SshConfigError> {
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
        .map_err(|_| SshConfigError::Timeout)?
        .map_err(SshConfigError::Spawn)?;
    if !out.status.success() {
        return Err(SshConfigError::Config(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
