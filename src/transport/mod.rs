//! Running scripts on hosts: one multiplexed SSH connection per host, or the local machine.
//!
//! Every remote execution is `sh -c SCRIPT` (wrapped in `sudo -n` when becoming root), with
//! optional bytes on stdin. Scripts never hold secrets: those travel on stdin only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::inventory::Conn;

pub mod ssh_config;
#[cfg(test)]
mod tests;

#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// The last lines of stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {dest}: {why}")]
    Unreachable { dest: String, why: String },
    #[error("host key of {dest} is not trusted: {why}")]
    HostKey { dest: String, why: String },
    #[error("sudo needs a password on {0}: labctl uses `sudo -n` (configure NOPASSWD for this user, or connect as root)")]
    SudoPassword(String),
    #[error("connection to {dest} failed while running a command: {why}")]
    Lost { dest: String, why: String },
}

pub enum Transport {
    Ssh {
        session: openssh::Session,
        dest: String,
        become_: bool,
        user_is_root: bool,
    },
    Local {
        become_: bool,
    },
}

/// Trust policy for unknown host keys. Changed keys are always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

impl Transport {
    pub async fn connect(
        conn: &Conn,
        policy: HostKeyPolicy,
        connect_timeout: Duration,
    ) -> Result<Transport, TransportError> {
        if conn.local {
            return Ok(Transport::Local {
                become_: conn.become_,
            });
        }
        let eff = ssh_config::Effective::query(conn).await.map_err(|why| {
            TransportError::Unreachable {
                dest: conn.address.clone(),
                why,
            }
        })?;
        let mut b = ssh_config::ssh_options(conn, policy, connect_timeout, &eff);
        b.control_directory(control_dir());
        let dest = eff.dest(conn);
        let session = b
            .connect_mux(&conn.address)
            .await
            .map_err(|e| classify(&dest, e))?;
        let user_is_root = eff.get("user").or(conn.user.as_deref()) == Some("root");
        Ok(Transport::Ssh {
            session,
            dest,
            become_: conn.become_,
            user_is_root,
        })
    }

    pub fn dest(&self) -> &str {
        match self {
            Transport::Ssh { dest, .. } => dest,
            Transport::Local { .. } => "local",
        }
    }

    /// Run `script` with `sh -c`, feeding `stdin`. Times out after `timeout`.
    /// The remote side enforces the timeout too (coreutils `timeout` kills the script and, after
    /// 10 s, hard-kills it), so a hung step does not live on after labctl gave up on it.
    pub async fn run(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        let fut = self.run_raw(script, stdin, timeout.as_secs().max(1));
        match tokio::time::timeout(timeout + Duration::from_secs(15), fut).await {
            Ok(Ok(o)) if o.status == 124 || o.status == 137 => Err(TransportError::Lost {
                dest: self.dest().to_string(),
                why: format!(
                    "the step ran longer than {}s and was stopped (--step-timeout)",
                    timeout.as_secs()
                ),
            }),
            Ok(r) => r,
            Err(_) => Err(TransportError::Lost {
                dest: self.dest().to_string(),
                why: format!("no answer within {}s (step timeout)", timeout.as_secs()),
            }),
        }
    }

    async fn run_raw(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        secs: u64,
    ) -> Result<Output, TransportError> {
        let out = match self {
            Transport::Ssh {
                session,
                dest,
                become_,
                user_is_root,
            } => {
                let argv = crate::sh::argv(script, *become_ && !*user_is_root, Some(secs));
                let mut cmd = session.command(&argv[0]);
                cmd.args(&argv[1..]);
                cmd.stdin(if stdin.is_some() {
                    openssh::Stdio::piped()
                } else {
                    openssh::Stdio::null()
                });
                cmd.stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped());
                let lost = |e: openssh::Error| TransportError::Lost {
                    dest: dest.clone(),
                    why: e.to_string(),
                };
                let mut child = cmd.spawn().await.map_err(lost)?;
                if let (Some(data), Some(mut w)) = (stdin, child.stdin().take()) {
                    w.write_all(data).await.map_err(|e| TransportError::Lost {
                        dest: dest.clone(),
                        why: e.to_string(),
                    })?;
                    w.shutdown().await.ok();
                    drop(w);
                }
                let o = child.wait_with_output().await.map_err(lost)?;
                Output {
                    status: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
            Transport::Local { become_ } => {
                let argv = crate::sh::argv(script, *become_ && !nix_is_root(), Some(secs));
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd.stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                });
                cmd.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let lost = |e: std::io::Error| TransportError::Lost {
                    dest: "local".into(),
                    why: e.to_string(),
                };
                let mut child = cmd.spawn().map_err(lost)?;
                if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
                    w.write_all(data).await.map_err(lost)?;
                    drop(w);
                }
                let o = child.wait_with_output().await.map_err(lost)?;
                Output {
                    status: o.status.code().unwrap_or(-1),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
        };
        if out.status != 0
            && String::from_utf8_lossy(&out.stderr).contains("sudo: a password is required")
        {
            return Err(TransportError::SudoPassword(self.dest().to_string()));
        }
        Ok(out)
    }

    /// Hold the host's run lock (RELIABILITY rule 9): a remote `flock` held by a process whose
    /// stdin is this connection. It is released when we drop it, or when the connection dies
    /// (EOF on stdin ends the holder), so a crashed run never leaves a stale lock.
    pub async fn lock(&self) -> Result<HostLock<'_>, String> {
        // flock needs only a read-only descriptor, so a run without become can share the
        // lock file a root run created (and /run/lock is world-writable for the first one).
        const SCRIPT: &str =
            "f=/run/lock/labctl.lock; [ -e \"$f\" ] || (umask 022; : >> \"$f\") 2>/dev/null; \
            exec 9<\"$f\" || exit 70; \
            if ! flock -n 9; then echo busy; exit 75; fi; echo locked; exec cat >/dev/null";
        match self {
            Transport::Ssh {
                session,
                dest,
                become_,
                user_is_root,
            } => {
                let argv = crate::sh::argv(SCRIPT, *become_ && !*user_is_root, None);
                let mut cmd = session.command(&argv[0]);
                cmd.args(&argv[1..]);
                cmd.stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::null());
                let mut child = cmd
                    .spawn()
                    .await
                    .map_err(|e| format!("{dest}: cannot take the run lock: {e}"))?;
                let out = child.stdout().take().ok_or("no stdout")?;
                let line = first_line(out).await;
                match line.as_str() {
                    "locked" => Ok(HostLock::Ssh(child)),
                    "busy" => Err(format!("{dest}: another labctl run holds the host's lock (/run/lock/labctl.lock); wait for it to finish")),
                    other => Err(format!("{dest}: cannot take the run lock (got `{other}`; is `flock` installed?)")),
                }
            }
            Transport::Local { .. } => {
                // Local runs (tests, localhost) lock in the user's runtime dir: no root needed.
                let path = control_dir().join("local.lock");
                let script = format!("exec 9>>{}; if ! flock -n 9; then echo busy; exit 75; fi; echo locked; exec cat >/dev/null", crate::sh::q(&path.display().to_string()));
                let mut child = tokio::process::Command::new("sh")
                    .args(["-c", &script])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot take the local run lock: {e}"))?;
                let out = child.stdout.take().ok_or("no stdout")?;
                match first_line(out).await.as_str() {
                    "locked" => Ok(HostLock::Local(child)),
                    "busy" => {
                        Err("another labctl run holds the local lock; wait for it to finish".into())
                    }
                    other => Err(format!("cannot take the local run lock (got `{other}`)")),
                }
            }
        }
    }

    pub async fn close(self) {
        if let Transport::Ssh { session, .. } = self {
            let _ = session.close().await;
        }
    }
}

async fn first_line(r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut line = String::new();
    let mut br = tokio::io::BufReader::new(r);
    let _ = tokio::time::timeout(Duration::from_secs(30), br.read_line(&mut line)).await;
    line.trim().to_string()
}

/// The run lock; dropping stdin (EOF) makes the remote holder exit and release it.
pub enum HostLock<'a> {
    Ssh(openssh::Child<&'a openssh::Session>),
    Local(tokio::process::Child),
}

impl HostLock<'_> {
    pub async fn release(self) {
        match self {
            HostLock::Ssh(mut c) => {
                drop(c.stdin().take());
                let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
            }
            HostLock::Local(mut c) => {
                drop(c.stdin.take());
                let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
            }
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY-free way to learn the uid without libc: /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn control_dir() -> PathBuf {
    // Short path: unix socket paths are limited to ~108 bytes.
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join("labctl-ssh");
    let _ = std::fs::create_dir_all(&d);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
    }
    d
}

fn classify(dest: &str, e: openssh::Error) -> TransportError {
    let why = format!("{e}");
    let detail = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        _ => String::new(),
    };
    let all = format!("{why}: {detail}");
    if all.contains("Host key verification failed")
        || all.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || all.contains("No ED25519 host key is known")
        || all.contains("host key")
    {
        return TransportError::HostKey {
            dest: dest.to_string(),
            why: format!("{}; add the host to known_hosts (ssh-keyscan + verify the fingerprint), or pass --accept-new-host-keys for a first contact", detail.trim()),
        };
    }
    TransportError::Unreachable {
        dest: dest.to_string(),
        why: if detail.is_empty() {
            why
        } else {
            format!("{why}: {}", detail.trim())
        },
    }
}
