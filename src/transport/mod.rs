//! Running scripts on hosts: one multiplexed SSH connection per host, or the local machine.
//!
//! Every remote execution is `sh -c SCRIPT` (wrapped in `sudo -n` when becoming root), with
//! optional bytes on stdin. Scripts never hold secrets: those travel on stdin only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::inventory::Conn;

pub mod keepalive;
pub mod lock;
pub mod options;
pub mod ssh_config;
#[cfg(test)]
mod tests;

pub use lock::HostLock;

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
        tail(&String::from_utf8_lossy(&self.stderr))
    }
}

/// The last 8 non-blank lines of a program's stderr, for error messages.
pub fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {dest}: {why}")]
    Unreachable { dest: String, why: String },
    /// ssh could not say how it would connect (`ssh -G`): nothing was tried.
    #[error("cannot connect to {dest}: {source}")]
    SshConfig {
        dest: String,
        source: ssh_config::SshConfigError,
    },
    #[error("host key of {dest} is not trusted: {why}")]
    HostKey {
        dest: String,
        refusal: HostKeyRefusal,
        why: String,
    },
    #[error("sudo needs a password on {0}: labctl uses `sudo -n` (configure NOPASSWD for this user, or connect as root)")]
    SudoPassword(String),
    #[error("connection to {dest} failed while running a command: {why}")]
    Lost { dest: String, why: String },
}

/// Why a host's run lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it (the message says who, and what to do).
    #[error("{0}")]
    Busy(String),
    /// The lock helper could not start, or answered with an error.
    #[error("{dest}: cannot take the run lock: {why}")]
    Failed { dest: String, why: String },
    /// The local lock helper could not start.
    #[error("cannot take the local run lock: {0}")]
    Local(#[source] std::io::Error),
    #[error("no stdout")]
    NoStdout,
}

pub enum Transport {
    Ssh {
        session: openssh::Session,
        dest: String,
        become_: bool,
        user_is_root: bool,
        waited: Waited,
    },
    Local {
        become_: bool,
        waited: Waited,
    },
}

/// The time `run` spent waiting on the host (the command's round trip), summed over the
/// connection's life: `--timings` splits a phase's wall time into this and the controller's
/// own work. One clock read per remote execution, so it is always kept.
#[derive(Debug, Default)]
pub struct Waited(std::sync::atomic::AtomicU64);

impl Waited {
    fn add(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Trust policy for unknown host keys. Changed keys are always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

impl HostKeyPolicy {
    /// `--accept-new-host-keys` as a policy: every command that connects spells the flag the
    /// same way, so it is read in one place.
    pub fn from_flag(accept_new_host_keys: bool) -> Self {
        if accept_new_host_keys {
            HostKeyPolicy::AcceptNew
        } else {
            HostKeyPolicy::Strict
        }
    }
}

impl Transport {
    pub async fn connect(
        conn: &Conn,
        policy: HostKeyPolicy,
        connect_timeout: Duration,
    ) -> Result<Transport, TransportError> {
        if conn.local {
            return Ok(Transport::local(conn.become_));
        }
        let eff = ssh_config::Effective::query(conn).await.map_err(|source| {
            TransportError::SshConfig {
                dest: conn.address.clone(),
                source,
            }
        })?;
        let mut b = options::ssh_options(conn, policy, connect_timeout, &eff);
        tracing::debug!(
            host = conn.address,
            partition_bound_s = keepalive::bound(&eff).as_secs(),
            "ssh keepalive"
        );
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
            waited: Waited::default(),
        })
    }

    /// This machine, as the host (tests, `ansible_connection: local`).
    pub fn local(become_: bool) -> Transport {
        Transport::Local {
            become_,
            waited: Waited::default(),
        }
    }

    /// How long this connection's remote executions have taken, summed.
    pub fn waited(&self) -> Duration {
        match self {
            Transport::Ssh { waited, .. } | Transport::Local { waited, .. } => waited.total(),
        }
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
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(timeout + Duration::from_secs(15), fut).await;
        match self {
            Transport::Ssh { waited, .. } | Transport::Local { waited, .. } => {
                waited.add(started.elapsed())
            }
        }
        match r {
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
        let sudo = match self {
            Transport::Ssh {
                become_,
                user_is_root,
                ..
            } => *become_ && !*user_is_root,
            Transport::Local { become_, .. } => *become_ && !nix_is_root(),
        };
        let argv = crate::sh::argv(script, sudo, Some(secs));
        let out = match self {
            Transport::Ssh { session, dest, .. } => {
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
            Transport::Local { .. } => {
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
        if sudo && sudo_wants_password(&out) {
            return Err(TransportError::SudoPassword(self.dest().to_string()));
        }
        Ok(out)
    }

    /// Hold the host's run lock with a lease (RELIABILITY rule 9; see `lock`). `record` says who
    /// we are (`run=… controller=… started=…`). Ok carries a note when we took the lock over from
    /// a run that had left without releasing it; Err is a refusal (a live holder) or a failure.
    pub async fn lock(
        &self,
        record: &str,
        host: &str,
    ) -> Result<(HostLock<'_>, Option<String>), LockError> {
        let script = lock::script();
        let (held, line) = match self {
            Transport::Ssh {
                session,
                dest,
                become_,
                user_is_root,
                ..
            } => {
                // bash, not sh: the holder needs `read -t` for its lease.
                let mut argv =
                    crate::sh::argv_in("bash", &script, *become_ && !*user_is_root, None);
                argv.extend(lock::args(
                    lock::LOCK_FILE,
                    lock::HOLDER_FILE,
                    lock::LEASE,
                    record,
                ));
                let mut cmd = session.command(&argv[0]);
                cmd.args(&argv[1..]);
                cmd.stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::null());
                let mut child = cmd.spawn().await.map_err(|e| LockError::Failed {
                    dest: dest.clone(),
                    why: e.to_string(),
                })?;
                let out = child.stdout().take().ok_or(LockError::NoStdout)?;
                let line = lock::first_line(out).await;
                (HostLock::Ssh(child), line)
            }
            Transport::Local { .. } => {
                // Local runs (tests, localhost) lock in the user's runtime dir: no root needed.
                let d = control_dir();
                let a = lock::args(
                    &d.join("local.lock").display().to_string(),
                    &d.join("local.holder").display().to_string(),
                    lock::LEASE,
                    record,
                );
                let mut child = tokio::process::Command::new("bash")
                    .arg("-c")
                    .arg(&script)
                    .args(&a)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(LockError::Local)?;
                let out = child.stdout.take().ok_or(LockError::NoStdout)?;
                let line = lock::first_line(out).await;
                (HostLock::Local(child), line)
            }
        };
        let dest = self.dest();
        match lock::parse_answer(&line) {
            lock::Answer::Locked => Ok((held, None)),
            lock::Answer::TookOver { from, stale } => {
                let note = format!(
                    "took over the host lock from {} ({}){}",
                    from.describe(),
                    from.ending(),
                    if stale {
                        "; its stuck holder process was killed"
                    } else {
                        ""
                    }
                );
                tracing::warn!("{host}: {note}");
                Ok((held, Some(note)))
            }
            lock::Answer::Busy { age, holder } => {
                held.release().await;
                Err(LockError::Busy(lock::busy_message(
                    dest,
                    age,
                    holder.as_ref(),
                    host,
                )))
            }
            lock::Answer::Error(why) => {
                held.release().await;
                Err(LockError::Failed {
                    dest: dest.to_string(),
                    why,
                })
            }
        }
    }

    pub async fn close(self) {
        if let Transport::Ssh { session, .. } = self {
            let _ = session.close().await;
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

/// `sudo -n` would not run the command without a password: it exits 1 having printed only its
/// own message (`a password is required`, from sudo's sources), so a command that fails after
/// printing those words is not mistaken for it. Asked only when the command ran under sudo.
fn sudo_wants_password(out: &Output) -> bool {
    out.status == 1
        && String::from_utf8_lossy(&out.stderr).trim_end() == "sudo: a password is required"
}

/// How ssh refused a host's key, told by the lines OpenSSH prints for each case
/// (`sshconnect.c`: check_host_key, warn_changed_key; `sshconnect2.c`). Nothing else decides:
/// "no matching host key type found" (no key algorithm in common, `ssherr.c`) is a failed
/// negotiation, not a key to trust, and other text that mentions host keys is not ssh's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyRefusal {
    /// No key is known for the host and checking is strict: a first contact.
    Unknown,
    /// The host's key is not the one recorded for it.
    Changed,
    /// The recorded key is marked `@revoked`.
    Revoked,
    /// "Host key verification failed." without one of the above (a KnownHostsCommand, a CA).
    Failed,
}

impl HostKeyRefusal {
    /// The refusal ssh's log (its stderr, one message a line) reports, if any.
    pub fn of(log: &str) -> Option<HostKeyRefusal> {
        const STRICT: &str = " and you have requested strict checking.";
        let lines: Vec<&str> = log.lines().map(str::trim).collect();
        let any = |f: &dyn Fn(&str) -> bool| lines.iter().any(|l| f(l));
        // `Host key for H has changed…` (OpenSSH 8.5 on), `ED25519 host key for H has changed…`
        // before it; the banner in every version.
        let changed = |l: &str| {
            l == "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @"
                || (l.ends_with(&format!(" has changed{STRICT}"))
                    && (l.starts_with("Host key for ") || l.contains(" host key for ")))
        };
        let revoked = |l: &str| {
            l == "@       WARNING: REVOKED HOST KEY DETECTED!               @"
                || (l.ends_with(&format!(" was revoked{STRICT}")) && l.contains(" host key for "))
        };
        let unknown = |l: &str| {
            l.starts_with("No ") && l.contains(" host key is known for ") && l.ends_with(STRICT)
        };
        if any(&changed) {
            Some(HostKeyRefusal::Changed)
        } else if any(&revoked) {
            Some(HostKeyRefusal::Revoked)
        } else if any(&unknown) {
            Some(HostKeyRefusal::Unknown)
        } else if any(&|l| l == "Host key verification failed.") {
            Some(HostKeyRefusal::Failed)
        } else {
            None
        }
    }

    /// What to do about it.
    fn fix(self) -> &'static str {
        match self {
            HostKeyRefusal::Unknown | HostKeyRefusal::Failed => "add the host to known_hosts (ssh-keyscan + verify the fingerprint), or pass --accept-new-host-keys for a first contact",
            HostKeyRefusal::Changed => "the host's key is not the one recorded for it: if the host was reinstalled, verify its new fingerprint and remove the old key (ssh-keygen -R HOST -f KNOWN_HOSTS); --accept-new-host-keys never trusts a changed key",
            HostKeyRefusal::Revoked => "the key is marked revoked in known_hosts and is never trusted",
        }
    }
}

fn classify(dest: &str, e: openssh::Error) -> TransportError {
    let why = format!("{e}");
    let detail = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        _ => String::new(),
    };
    if let Some(refusal) = HostKeyRefusal::of(&detail) {
        return TransportError::HostKey {
            dest: dest.to_string(),
            refusal,
            why: format!("{}; {}", detail.trim(), refusal.fix()),
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
