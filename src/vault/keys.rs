//! Identities: where they come from, how they are parsed, generated, and used to derive keys.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

use super::VaultError;
use crate::secret::Secret;

/// The age identities labctl can decrypt with, and a human account of where it looked.
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
    tried: Vec<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("identities", &self.identities.len())
            .field("tried", &self.tried)
            .finish()
    }
}

/// Where the default key lives: `$XDG_CONFIG_HOME/labctl/age.key`, else `~/.config/labctl/age.key`.
pub fn default_key_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("labctl").join("age.key"))
}

impl Keyring {
    /// Loads identities from every source that is present, in this order: `explicit`
    /// (--vault-key), `$LABCTL_AGE_KEY_FILE`, `$SOPS_AGE_KEY_FILE`, the default key file.
    ///
    /// All present sources are loaded, not just the first, so a user whose env points at a team
    /// key and whose default file holds a personal key can open vaults made for either. The
    /// first identity (and so `derive_key`) comes from the highest-priority source.
    pub fn discover(explicit: Option<&Path>) -> Result<Keyring, VaultError> {
        let mut ring = Keyring {
            identities: Vec::new(),
            tried: Vec::new(),
        };
        if let Some(p) = explicit {
            ring.load_named("--vault-key", p)?;
        }
        for var in ["LABCTL_AGE_KEY_FILE", "SOPS_AGE_KEY_FILE"] {
            match std::env::var_os(var).filter(|v| !v.is_empty()) {
                Some(v) => ring.load_named(&format!("${var}"), Path::new(&v))?,
                None => ring.tried.push(format!("${var} (not set)")),
            }
        }
        match default_key_path() {
            Some(p) if p.exists() => {
                let ids = read_identity_file(&p, "the default key file")?;
                ring.tried
                    .push(format!("{} ({})", p.display(), count(ids.len())));
                ring.identities.extend(ids);
            }
            Some(p) => ring.tried.push(format!("{} (missing)", p.display())),
            None => ring
                .tried
                .push("~/.config/labctl/age.key (HOME not set)".to_string()),
        }
        Ok(ring)
    }

    /// A keyring from identities already in hand (tests and the fuzz targets: labctl itself
    /// always reads key files).
    pub fn from_identities(identities: Vec<age::x25519::Identity>, origin: &str) -> Keyring {
        let tried = vec![format!("{origin} ({})", count(identities.len()))];
        Keyring { identities, tried }
    }

    /// The identities of one file only (`labctl init` reads the key it is about to use).
    pub fn from_file(path: &Path) -> Result<Keyring, VaultError> {
        let mut ring = Keyring {
            identities: Vec::new(),
            tried: Vec::new(),
        };
        ring.load_named("the key file", path)?;
        Ok(ring)
    }

    fn load_named(&mut self, origin: &str, path: &Path) -> Result<(), VaultError> {
        let ids = read_identity_file(path, origin)?;
        self.tried.push(format!(
            "{origin} {} ({})",
            path.display(),
            count(ids.len())
        ));
        self.identities.extend(ids);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub fn sources_tried(&self) -> &[String] {
        &self.tried
    }

    pub(crate) fn identities(&self) -> &[age::x25519::Identity] {
        &self.identities
    }

    /// The public keys of the loaded identities (safe to print).
    pub fn public_keys(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// A 32-byte key derived from the first identity: HMAC-SHA256 keyed with its secret, over
    /// `context`. Everyone holding the same identity derives the same key, so a team can verify
    /// each other's plan hashes; the context keeps uses apart.
    pub fn derive_key(&self, context: &str) -> Option<[u8; 32]> {
        let first = self.identities.first()?;
        let secret = first.to_string();
        Some(crate::digest::hmac(
            secret.expose_secret().as_bytes(),
            context.as_bytes(),
        ))
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 identity".to_string()
    } else {
        format!("{n} identities")
    }
}

fn read_identity_file(path: &Path, origin: &str) -> Result<Vec<age::x25519::Identity>, VaultError> {
    let text = match std::fs::read(path) {
        Ok(b) => Secret::new(b),
        Err(e) => {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => e.to_string(),
            };
            return Err(VaultError::KeySource {
                origin: origin.to_string(),
                path: path.to_path_buf(),
                reason,
            });
        }
    };
    warn_if_readable_by_others(path);
    parse_identities(path, text.expose())
}

/// Once per key file and run: `check` and `render` load the site once per environment.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    if let Ok(m) = std::fs::metadata(path) {
        let first = WARNED
            .lock()
            .map(|mut w| w.insert(path.to_path_buf()))
            .unwrap_or(true);
        if first && m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

/// age-keygen format: `#` comments, blank lines, one `AGE-SECRET-KEY-1…` per line.
pub(crate) fn parse_identities(
    path: &Path,
    data: &[u8],
) -> Result<Vec<age::x25519::Identity>, VaultError> {
    let bad = |line: usize, reason: &str| VaultError::KeyParse {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(data).map_err(|_| {
        bad(
            0,
            "not a text file; expected an age identity file (AGE-SECRET-KEY-1… lines)",
        )
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        || trimmed.starts_with("age-encryption.org/")
    {
        return Err(bad(1, "passphrase-protected identity files are not supported; decrypt it first (age -d) into a 0600 file"));
    }
    let mut ids = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-SECRET-KEY-1") {
            let id = line
                .parse::<age::x25519::Identity>()
                .map_err(|e| bad(i + 1, &format!("invalid age secret key ({e})")))?;
            ids.push(id);
        } else if line.starts_with("AGE-PLUGIN-") || line.starts_with("AGE-SECRET-KEY-PQ-") {
            return Err(bad(
                i + 1,
                "only X25519 identities (AGE-SECRET-KEY-1…) are supported",
            ));
        } else if line.starts_with("-----BEGIN") || line.starts_with("ssh-") {
            return Err(bad(
                i + 1,
                "SSH keys are not supported; use an age key (`labctl vault keygen`)",
            ));
        } else {
            return Err(bad(
                i + 1,
                "not an age identity (expected an AGE-SECRET-KEY-1… line or a # comment)",
            ));
        }
    }
    if ids.is_empty() {
        return Err(bad(0, "contains no AGE-SECRET-KEY-1… line"));
    }
    Ok(ids)
}

/// A new identity as an age-keygen-format file (readable by `age -d -i`) and its public key.
pub fn keygen() -> (Secret<String>, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {public}\n{}\n",
        rfc3339_now(),
        id.to_string().expose_secret()
    );
    (Secret::new(text), public)
}

/// UTC time as age-keygen prints it, without pulling in a date crate for one line.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_output_parses_back() {
        let (text, public) = keygen();
        let t = text.expose();
        assert!(t.starts_with("# created: 20"), "{t}");
        assert!(t.contains(&format!("# public key: {public}\n")));
        assert!(public.starts_with("age1"));
        let ids = parse_identities(Path::new("k"), t.as_bytes()).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].to_public().to_string(), public);
    }

    #[test]
    fn several_keys_and_comments() {
        let (a, pa) = keygen();
        let (b, pb) = keygen();
        let text = format!(
            "{}\n\n  # another\n{}",
            a.expose(),
            b.expose().replace('\n', "\r\n")
        );
        let ids = parse_identities(Path::new("k"), text.as_bytes()).unwrap();
        let pubs: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        assert_eq!(pubs, vec![pa, pb]);
    }

    #[test]
    fn bad_identity_line_names_line_and_hides_content() {
        let e = parse_identities(Path::new("key.txt"), b"# ok\nAGE-SECRET-KEY-1CANARYXYZ\n")
            .err()
            .unwrap();
        let m = e.to_string();
        assert!(m.starts_with("key.txt:2: invalid age secret key"), "{m}");
        assert!(!m.contains("CANARY"), "{m}");
        let e = parse_identities(Path::new("key.txt"), b"hello\n")
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("key.txt:1: not an age identity"),
            "{e}"
        );
        assert!(parse_identities(Path::new("key.txt"), b"# only comments\n").is_err());
    }

    #[test]
    fn derive_key_is_stable_per_identity() {
        let (a, _) = keygen();
        let (b, _) = keygen();
        let ka = Keyring::from_identities(
            parse_identities(Path::new("a"), a.expose().as_bytes()).unwrap(),
            "a",
        );
        let ka2 = Keyring::from_identities(
            parse_identities(Path::new("a"), a.expose().as_bytes()).unwrap(),
            "a again",
        );
        let kb = Keyring::from_identities(
            parse_identities(Path::new("b"), b.expose().as_bytes()).unwrap(),
            "b",
        );
        let ctx = "labctl plan fingerprint v1";
        assert_eq!(ka.derive_key(ctx), ka2.derive_key(ctx));
        assert_ne!(ka.derive_key(ctx), kb.derive_key(ctx));
        assert_ne!(ka.derive_key(ctx), ka.derive_key("other context"));
        assert!(Keyring::from_identities(vec![], "none")
            .derive_key(ctx)
            .is_none());
    }

    #[test]
    fn date_format() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'));
    }
}
