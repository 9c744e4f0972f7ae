//! Vaults: age-encrypted YAML files (`*.age`) that are decrypted only in memory.
//!
//! - `keys`: where identities come from (`Keyring`), key generation, keys derived for plan hashes.
//! - `recipients`: the repo's `.age-recipients` (who can open the vaults).
//! - `file`: decrypting and encrypting bytes, with errors a user can act on; atomic writes.
//! - `ansible`, `password`: ansible-vault values (read), and where their passwords come from.
//! - `sops`, `sops_write`: SOPS files with age recipients (read; written by encrypt --sops and edit).
//! - `import`: ansible-vault values into the age vault (`labctl vault import-ansible`).
//! - `seal`: `labctl seal`, vault values into a SealedSecret for the apps repo.
//!
//! Plaintext only ever lives in a `Secret`. Error messages are built from file names, key sources,
//! public keys and age's own error kinds — never from decrypted content — and YAML errors from
//! vault content are reported by position with quoted fragments removed.

pub mod ansible;
mod file;
pub mod gen;
pub mod import;
mod keys;
pub(crate) use keys::rfc3339_now;
pub mod password;
mod recipients;
pub mod seal;
pub mod sops;
pub mod sops_write;

use std::path::PathBuf;

pub use file::encrypt;
pub(crate) use file::{check_yaml, YamlProblem};
pub use keys::{default_key_path, keygen, Keyring};
pub use recipients::{find_recipients_file, load_recipients, RECIPIENTS_FILE};

/// Everything that can go wrong opening or writing a vault. Every variant maps to exit code 4.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A key source the user named (`--vault-key`, an env var) is missing or unreadable.
    #[error("cannot read age identity file {} (from {origin}): {reason}", path.display())]
    KeySource {
        origin: String,
        path: PathBuf,
        reason: String,
    },

    /// A line of an identity file is not a usable identity. The line itself is never echoed: it
    /// may be a (mangled) secret key.
    #[error("{}:{line}: {reason}", path.display())]
    KeyParse {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error(
        "cannot decrypt {}: no age identity found\n  identity sources tried: {tried}{recipients}\n  = help: create one with `labctl vault keygen` (and have its public key added to {RECIPIENTS_FILE}), or pass --vault-key FILE / set LABCTL_AGE_KEY_FILE",
        file.display()
    )]
    NoIdentity {
        file: PathBuf,
        tried: String,
        recipients: String,
    },

    #[error(
        "cannot decrypt {}: none of your age identities can open it (the file is encrypted for {stanzas} recipient stanza(s))\n  identity sources tried: {tried}\n  your public key(s): {mine}{recipients}\n  = help: someone who can open the vault must add your public key to {RECIPIENTS_FILE} and run `labctl vault rekey`; if your key is listed there, the file may be stale (not rekeyed) or its header was modified",
        file.display()
    )]
    NoMatchingKey {
        file: PathBuf,
        stanzas: usize,
        tried: String,
        mine: String,
        recipients: String,
    },

    #[error(
        "{} is corrupt or tampered ({detail}); refusing to use it\n  = help: restore it from version control (`git checkout -- {}`) or re-create it",
        file.display(),
        file.display()
    )]
    Corrupt { file: PathBuf, detail: String },

    #[error("{} is not an age-encrypted file (no age header or armor); encrypt it with `labctl vault encrypt`", file.display())]
    NotAgeFile { file: PathBuf },

    #[error("{} is encrypted with a passphrase; labctl vaults use age keys: decrypt it with `age -d` and re-encrypt with `labctl vault encrypt`", file.display())]
    Passphrase { file: PathBuf },

    #[error("{}: {detail}", file.display())]
    Unsupported { file: PathBuf, detail: String },

    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },

    /// A bad line in a recipients file, at `file:line:col`.
    #[error("{at}: {reason}")]
    Recipients { at: String, reason: String },

    #[error("{} lists no recipients: add at least one age1… public key (one per line)", path.display())]
    NoRecipients { path: PathBuf },

    #[error("no {RECIPIENTS_FILE} file in {} or any parent directory: create one listing the age1… public keys that may open the vaults, or pass --recipients FILE", start.display())]
    NoRecipientsFile { start: PathBuf },

    #[error("cannot encrypt: {0}")]
    Encrypt(String),

    /// An ansible-vault value that cannot be opened (no password, wrong one, tampered), with
    /// where it is.
    #[error("{0}")]
    AnsibleVault(String),
}

impl VaultError {
    /// Vault and key problems share one exit code (see `crate::error::Exit::Vault`).
    pub fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Vault
    }

    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        VaultError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

/// A command stopped by a vault problem: `error: MESSAGE`, exit 4.
impl From<VaultError> for crate::error::CliError {
    fn from(e: VaultError) -> Self {
        crate::error::CliError::new(e.exit(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_exit_4() {
        let e = VaultError::NotAgeFile { file: "x".into() };
        assert_eq!(e.exit().code(), 4);
    }
}
