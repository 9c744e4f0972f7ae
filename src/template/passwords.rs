//! `lookup('password', 'NAME length=20 chars=ascii_letters,digits')`: a random password,
//! generated once and kept in a vault (`passwords.yml.age` beside the inventory, encrypted for
//! the repo's `.age-recipients`), never in a plain file. Ansible writes the password to the
//! file NAME; labctl uses NAME as the key in that vault instead.
//!
//! A render that returns a stored password is secret (the same taint as a vault var), so the
//! value never reaches output or a plan file.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indexmap::IndexMap;
use rand::Rng;

use crate::vault::{Keyring, VaultError};

thread_local! {
    static TOUCHED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a password was looked up since the last call (and reset it): the render is secret.
pub fn take_touched() -> bool {
    TOUCHED.with(|t| t.replace(false))
}

pub const FILE: &str = "passwords.yml.age";

/// Why the password vault could not be read or written, or a password not made. Every one is a
/// vault problem (exit 4) except `NoAlphabet`, a template's.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The vault did not open (no key, a wrong key, tampering).
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: Box<VaultError>,
    },
    /// It opened, but what is inside is not the YAML map labctl writes.
    #[error("{}: {what} inside the vault", path.display())]
    Content { path: PathBuf, what: &'static str },
    #[error("a new password must be stored in {}, but no {} was found above it", path.display(), crate::vault::RECIPIENTS_FILE)]
    NoRecipients { path: PathBuf },
    /// The recipients file, or encrypting for it.
    #[error(transparent)]
    Seal(Box<VaultError>),
    #[error("{0}")]
    Yaml(String),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a password needs a length and characters to use")]
    NoAlphabet,
}

pub struct PasswordStore {
    path: PathBuf,
    values: Mutex<IndexMap<String, String>>,
    dirty: AtomicBool,
    /// `check`: nothing is generated or written; a missing password is a placeholder.
    read_only: bool,
}

impl PasswordStore {
    /// Open (or start) the store beside the inventory; decrypting needs the vault key.
    pub fn open(
        dir: &Path,
        keys: &Keyring,
        read_only: bool,
    ) -> Result<PasswordStore, PasswordError> {
        let path = dir.join(FILE);
        let mut values = IndexMap::new();
        if path.is_file() {
            if keys.is_empty() && read_only {
                // `check` without a key: stored passwords render as placeholders.
            } else {
                let plain = keys.decrypt_file(&path).map_err(|e| PasswordError::Open {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
                let content = |what| PasswordError::Content {
                    path: path.clone(),
                    what,
                };
                let text = std::str::from_utf8(plain.expose()).map_err(|_| content("not UTF-8"))?;
                let v = crate::yaml::parse_node(&path, text)
                    .map_err(|_| content("invalid YAML"))?
                    .to_json();
                if let serde_json::Value::Object(m) = v {
                    for (k, v) in m {
                        if let Some(s) = v.as_str() {
                            values.insert(k, s.to_string());
                        }
                    }
                }
            }
        }
        Ok(PasswordStore {
            path,
            values: Mutex::new(values),
            dirty: AtomicBool::new(false),
            read_only,
        })
    }

    /// The stored password, or a new one (remembered, saved by `save`).
    pub fn get_or_generate(
        &self,
        name: &str,
        length: usize,
        chars: &str,
    ) -> Result<String, PasswordError> {
        TOUCHED.with(|t| t.set(true));
        let mut v = self.values.lock().expect("not poisoned");
        if let Some(p) = v.get(name) {
            return Ok(p.clone());
        }
        if self.read_only {
            return Ok(format!("<password:{name}>"));
        }
        let alphabet: Vec<char> = chars.chars().collect();
        if alphabet.is_empty() || length == 0 {
            return Err(PasswordError::NoAlphabet);
        }
        let mut rng = rand::rngs::OsRng;
        let p: String = (0..length)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        v.insert(name.to_string(), p.clone());
        self.dirty.store(true, Ordering::SeqCst);
        Ok(p)
    }

    /// Every stored password: output scrubbing knows them.
    pub fn secrets(&self) -> Vec<String> {
        self.values
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Write the vault when a password was generated. Returns the file written, if any.
    pub fn save(&self) -> Result<Option<PathBuf>, PasswordError> {
        if !self.dirty.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let rfile =
            crate::vault::find_recipients_file(dir).ok_or_else(|| PasswordError::NoRecipients {
                path: self.path.clone(),
            })?;
        let recipients =
            crate::vault::load_recipients(&rfile).map_err(|e| PasswordError::Seal(Box::new(e)))?;
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let yaml = serde_saphyr::to_string(&map).map_err(|e| PasswordError::Yaml(e.to_string()))?;
        let enc = crate::vault::encrypt(yaml.as_bytes(), &recipients)
            .map_err(|e| PasswordError::Seal(Box::new(e)))?;
        crate::fsutil::write_atomic(&self.path, &enc, 0o600, false).map_err(|source| {
            PasswordError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        self.dirty.store(false, Ordering::SeqCst);
        Ok(Some(self.path.clone()))
    }
}

/// Ansible's `chars=` names (comma-separated; anything else is taken literally).
pub fn alphabet(spec: Option<&str>) -> String {
    const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
    const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const DIGITS: &str = "0123456789";
    let Some(spec) = spec else {
        return format!("{LOWER}{UPPER}{DIGITS}.,:-_");
    };
    let mut out = String::new();
    for part in spec.split(',') {
        match part {
            "ascii_letters" => out.push_str(&format!("{LOWER}{UPPER}")),
            "ascii_lowercase" => out.push_str(LOWER),
            "ascii_uppercase" => out.push_str(UPPER),
            "digits" => out.push_str(DIGITS),
            "hexdigits" => out.push_str("0123456789abcdefABCDEF"),
            "punctuation" => out.push_str("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
            other => out.push_str(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Ctx, Engine};
    use std::sync::Arc;

    #[test]
    fn generated_once_stored_encrypted_and_secret() {
        let d = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        std::fs::write(
            d.path().join(".age-recipients"),
            format!("{}\n", id.to_public()),
        )
        .unwrap();
        let keys = Keyring::from_identities(vec![id], "test");
        let render = |read_only: bool| {
            let store = Arc::new(PasswordStore::open(d.path(), &keys, read_only).unwrap());
            let e = Engine::new(d.path());
            e.set_passwords(store.clone());
            let ctx = Ctx::new(&Default::default(), Default::default(), vec![]);
            let r = e
                .render_str(
                    "{{ lookup('password', 'credentials/db chars=digits length=12') }}",
                    &ctx,
                )
                .unwrap();
            store.save().unwrap();
            r
        };
        let first = render(false);
        assert_eq!(first.text.len(), 12);
        assert!(
            first.text.chars().all(|c| c.is_ascii_digit()),
            "{}",
            first.text
        );
        assert!(first.tainted, "a password is secret");
        let file = std::fs::read_to_string(d.path().join(FILE)).unwrap();
        assert!(file.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!file.contains(&first.text), "never in plain text");
        assert_eq!(render(false).text, first.text, "generated once");
        assert_eq!(render(true).text, first.text, "check reads it too");
        assert!(
            !d.path().join("credentials").exists(),
            "no plain file, unlike Ansible"
        );
    }

    #[test]
    fn check_without_a_stored_password_generates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let keys = Keyring::from_identities(vec![], "none");
        let store = PasswordStore::open(d.path(), &keys, true).unwrap();
        assert_eq!(store.get_or_generate("x", 5, "ab").unwrap(), "<password:x>");
        assert_eq!(store.save().unwrap(), None);
    }
}
