//! Why a host as a whole failed or was refused, and the exit code that follows from it.
//! Resource-level failures stay in the recap; this is the host-level verdict.

use crate::error::Exit;
use crate::facts::{probe::ProbeError, FactError};
use crate::transport::{LockError, TransportError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// SSH could not connect.
    #[error("{0}")]
    Unreachable(String),
    /// The host key is unknown or changed: refused for safety.
    #[error("{0}")]
    HostKey(String),
    /// `sudo -n` wants a password.
    #[error("{0}")]
    Sudo(String),
    /// The probe failed, or its answer says the host is not one labctl manages.
    #[error("{0}")]
    Probe(String),
    /// A fact the host's plan reads (its OS, its journal, a pending reboot) is missing or
    /// unreadable.
    #[error(transparent)]
    Fact(#[from] FactError),
    /// The probe ran, but its output could not be read back into facts.
    #[error("probe failed: {source} (exit {status}; stderr: {stderr})")]
    ProbeOutput {
        source: ProbeError,
        status: i32,
        stderr: String,
    },
    /// One or more resources could not be diffed (one line each, naming the resource).
    #[error("{0}")]
    Plan(String),
    /// Another run holds the host's lock.
    #[error("{0}")]
    Locked(String),
    /// `apply --plan`: the host moved since the plan was saved.
    #[error("{0}")]
    Stale(String),
    /// Not started: Ctrl-C, or too many hosts failed before this batch.
    #[error("{0}")]
    Stopped(String),
    /// A bug: a host's task panicked.
    #[error("{0}")]
    Internal(String),
    /// Read back from a saved plan file, which keeps only the message.
    #[error("{0}")]
    Recorded(String),
}

impl HostError {
    pub fn exit(&self) -> Exit {
        match self {
            HostError::Unreachable(_) => Exit::Unreachable,
            HostError::HostKey(_) | HostError::Locked(_) | HostError::Stale(_) => Exit::Refused,
            HostError::Sudo(_)
            | HostError::Probe(_)
            | HostError::ProbeOutput { .. }
            | HostError::Fact(_)
            | HostError::Plan(_)
            | HostError::Stopped(_)
            | HostError::Internal(_)
            | HostError::Recorded(_) => Exit::Failed,
        }
    }

    /// The exit code for a run's host errors: unreachable-only is its own code, and a refusal
    /// outranks a failure. None when no host failed.
    pub fn exit_of<'a>(errors: impl IntoIterator<Item = &'a HostError>) -> Option<Exit> {
        let codes: Vec<Exit> = errors.into_iter().map(HostError::exit).collect();
        if codes.is_empty() {
            None
        } else if codes.iter().all(|&c| c == Exit::Unreachable) {
            Some(Exit::Unreachable)
        } else if codes.contains(&Exit::Refused) {
            Some(Exit::Refused)
        } else {
            Some(Exit::Failed)
        }
    }
}

impl From<TransportError> for HostError {
    fn from(e: TransportError) -> Self {
        let msg = e.to_string();
        match e {
            TransportError::Unreachable { .. } | TransportError::SshConfig { .. } => {
                HostError::Unreachable(msg)
            }
            TransportError::HostKey { .. } => HostError::HostKey(msg),
            TransportError::SudoPassword(_) => HostError::Sudo(msg),
            TransportError::Lost { .. } => HostError::Probe(msg),
        }
    }
}

/// Every way of not getting the lock is a refusal: the run does not touch the host.
impl From<LockError> for HostError {
    fn from(e: LockError) -> Self {
        HostError::Locked(e.to_string())
    }
}

/// Serialised as its message only (plan files and `--json` keep their shape).
pub fn as_message<S: serde::Serializer>(e: &Option<HostError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_readme() {
        let u = HostError::Unreachable("x".into());
        let k = HostError::HostKey("x".into());
        let p = HostError::Probe("x".into());
        assert_eq!(HostError::exit_of([]), None);
        assert_eq!(HostError::exit_of([&u, &u]), Some(Exit::Unreachable));
        assert_eq!(HostError::exit_of([&u, &p]), Some(Exit::Failed));
        assert_eq!(HostError::exit_of([&u, &k, &p]), Some(Exit::Refused));
        assert_eq!(HostError::Stale("x".into()).exit(), Exit::Refused);
        assert_eq!(HostError::Locked("x".into()).exit(), Exit::Refused);
        assert_eq!(HostError::Sudo("x".into()).exit(), Exit::Failed);
    }

    #[test]
    fn transport_errors_keep_their_message() {
        let e: HostError = TransportError::HostKey {
            dest: "root@h".into(),
            refusal: crate::transport::HostKeyRefusal::Changed,
            why: "changed".into(),
        }
        .into();
        assert_eq!(e.exit(), Exit::Refused);
        assert_eq!(e.to_string(), "host key of root@h is not trusted: changed");
    }

    #[test]
    fn typed_causes_keep_their_message_and_code() {
        let e = HostError::ProbeOutput {
            source: ProbeError::Unanswered("os".into()),
            status: 0,
            stderr: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "probe failed: the probe did not answer fact `os` (output cut short?) (exit 0; stderr: )"
        );
        assert_eq!(e.exit(), Exit::Failed);
        let e: HostError = FactError::Missing("os".into()).into();
        assert_eq!(e.exit(), Exit::Failed);
        assert!(
            e.to_string().starts_with("fact `os` was not gathered"),
            "{e}"
        );
        let e: HostError =
            LockError::Busy("h: another labctl run holds the host's lock".into()).into();
        assert_eq!(e.exit(), Exit::Refused);
        assert_eq!(e.to_string(), "h: another labctl run holds the host's lock");
        let e: HostError = TransportError::SshConfig {
            dest: "h".into(),
            source: crate::transport::ssh_config::SshConfigError::Timeout,
        }
        .into();
        assert_eq!(e.exit(), Exit::Unreachable);
        assert_eq!(
            e.to_string(),
            "cannot connect to h: `ssh -G` did not answer"
        );
    }
}
