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
    /// The first `NEEDLE…>` in anything the step sends to the host (scripts, paths, content),
    /// for checks that must see inside content too (Debug hides it).
    pub fn find_tag(&self, needle: &str) -> Option<String> {
        let fields: Vec<&[u8]> = match self {
            Step::Sh { script } => vec![script.as_bytes()],
            Step::Write {
                path,
                content,
                mode,
                owner,
                group,
                validate,
                ..
            } => [
                path.as_str(),
                opt(mode),
                opt(owner),
                opt(group),
                opt(validate),
            ]
            .into_iter()
            .map(str::as_bytes)
            .chain([content.expose().as_slice()])
            .collect(),
            Step::Stdin { script, data } => vec![script.as_bytes(), data.expose().as_slice()],
            Step::Fetch { path, .. } => vec![path.as_bytes()],
        };
        fields
            .into_iter()
            .find_map(|f| tag_in(f, needle.as_bytes()))
    }

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

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// The first `needle` in `hay`, as a whole tag (`<fact:NAME>`) when a name follows it, else as
/// `needle…`. Only a name is ever quoted back: `hay` may be a secret's bytes (a file's content,
/// a step's stdin), and an error message must not carry what follows the needle there. A cut
/// placeholder (`<fact:ho` from a slice) is still found.
pub fn tag_in(hay: &[u8], needle: &[u8]) -> Option<String> {
    let at = hay.windows(needle.len()).position(|w| w == needle)?;
    let after = &hay[at + needle.len()..];
    let name = after
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    let needle = String::from_utf8_lossy(needle);
    Some(match after.get(name) {
        Some(b'>') if name > 0 => format!("{needle}{}>", String::from_utf8_lossy(&after[..name])),
        _ => format!("{needle}…"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_quoted_back_only_when_a_name_follows() {
        let n = b"<fact:";
        assert_eq!(
            tag_in(b"arch=<fact:architecture> x", n).as_deref(),
            Some("<fact:architecture>")
        );
        assert_eq!(
            tag_in(b"a <fact:default_ipv4.address>", n).as_deref(),
            Some("<fact:default_ipv4.address>")
        );
        // Cut or not a name: found, but nothing after the needle is repeated.
        assert_eq!(tag_in(b"pw=<fact:s3cr et>", n).as_deref(), Some("<fact:…"));
        assert_eq!(tag_in(b"host <fact:ho", n).as_deref(), Some("<fact:…"));
        assert_eq!(tag_in(b"no placeholder", n), None);
    }
}
