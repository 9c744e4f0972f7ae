//! Steps: what a change does on the host. A change's steps run as one remote script.

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum Step {
    /// A shell snippet. Scripts are visible in the host's process list: never put a secret here.
    Sh { script: String },
    /// Atomically replace `path`: temp file in the same directory (0600 from the start), content
    /// from stdin, owner/mode, optional `validate` (`%s` = the temp file), fsync, rename, fsync dir.
    Write {
        path: String,
        content: Secret<Vec<u8>>,
        /// None: keep an existing file's mode; new files get 0644, or 0600 when `secret`.
        mode: Option<String>,
        /// None: keep an existing file's owner/group; new files are root's.
        owner: Option<String>,
        group: Option<String>,
        validate: Option<String>,
        secret: bool,
    },
    /// A snippet that reads bytes on its stdin (e.g. `chpasswd -e`, `kubectl apply -f -`).
    Stdin {
        script: String,
        data: Secret<Vec<u8>>,
    },
    /// Copy a host file to the controller (`fetch`): read over the connection, written
    /// atomically at `dest` on the controller with `mode`.
    Fetch {
        path: String,
        dest: std::path::PathBuf,
        mode: u32,
    },
}

impl Step {
    pub fn sh(script: impl Into<String>) -> Step {
        Step::Sh {
            script: script.into(),
        }
    }

    /// Feed what defines this step (content included) into a keyed hash for fingerprints.
    pub fn digest_into(&self, h: &mut impl FnMut(&[u8])) {
        match self {
            Step::Sh { script } => {
                h(b"sh\0");
                h(script.as_bytes());
            }
            Step::Write {
                path,
                content,
                mode,
                owner,
                group,
                validate,
                secret,
            } => {
                h(b"write\0");
                h(path.as_bytes());
                h(content.expose());
                for o in [mode, owner, group, validate] {
                    h(o.as_deref().unwrap_or("\0").as_bytes());
                    h(b"\0");
                }
                h(&[*secret as u8]);
            }
            Step::Stdin { script, data } => {
                h(b"stdin\0");
                h(script.as_bytes());
                h(data.expose());
            }
            Step::Fetch { path, dest, mode } => {
                h(b"fetch\0");
                h(path.as_bytes());
                h(dest.as_os_str().as_encoded_bytes());
                h(&mode.to_le_bytes());
            }
        }
    }
}
