//! Bytes in, bytes out: decrypting with errors that say what to do, encrypting (armored),
//! checking plaintext is YAML without echoing it, and atomic writes.

use std::io::{Read, Write};
use std::path::Path;

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use super::keys::Keyring;
use super::{recipients, VaultError};
use crate::secret::Secret;

const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const AGE_V1: &[u8] = b"age-encryption.org/v1\n";

// Decryption lives here, beside the age format handling, so `keys` never imports `file`.
impl Keyring {
    pub fn decrypt_file(&self, path: &Path) -> Result<Secret<Vec<u8>>, VaultError> {
        let data = std::fs::read(path).map_err(|e| VaultError::io(path, e))?;
        self.decrypt_bytes(&data, path)
    }

    pub fn decrypt_bytes(
        &self,
        data: &[u8],
        name_for_errors: &Path,
    ) -> Result<Secret<Vec<u8>>, VaultError> {
        decrypt(self, data, name_for_errors)
    }
}

fn decrypt(keys: &Keyring, data: &[u8], file: &Path) -> Result<Secret<Vec<u8>>, VaultError> {
    let corrupt = |detail: &str| VaultError::Corrupt {
        file: file.to_path_buf(),
        detail: detail.to_string(),
    };
    let armored = data.trim_ascii_start().starts_with(ARMOR_BEGIN.as_bytes());
    if !armored && !data.starts_with(b"age-encryption.org/") {
        return Err(VaultError::NotAgeFile {
            file: file.to_path_buf(),
        });
    }
    // De-armor fully first: an armor error is then a format error, never an I/O one.
    let mut raw = Vec::with_capacity(data.len());
    ArmoredReader::new(data)
        .read_to_end(&mut raw)
        .map_err(|e| {
            if armored {
                let e = e.to_string();
                let e = e
                    .strip_prefix("invalid armor ")
                    .unwrap_or(&e)
                    .trim_matches(|c| c == '(' || c == ')');
                corrupt(&format!("invalid armor: {e}; truncated or edited?"))
            } else {
                corrupt(&format!("unreadable: {e}"))
            }
        })?;
    if !raw.starts_with(AGE_V1) {
        return Err(if raw.starts_with(b"age-encryption.org/") {
            VaultError::Unsupported {
                file: file.to_path_buf(),
                detail: "made by a newer age format version; upgrade labctl".into(),
            }
        } else {
            corrupt("no age header inside the armor")
        });
    }
    let stanzas = stanza_tags(&raw);
    if stanzas.iter().any(|t| t == "scrypt") {
        return Err(VaultError::Passphrase {
            file: file.to_path_buf(),
        });
    }
    let decryptor = age::Decryptor::new_buffered(&raw[..])
        .map_err(|e| map_decrypt_error(keys, file, &stanzas, e))?;
    if keys.is_empty() {
        return Err(VaultError::NoIdentity {
            file: file.to_path_buf(),
            tried: keys.sources_tried().join(", "),
            recipients: recipients::describe_for(file),
        });
    }
    let ids = keys.identities().iter().map(|i| i as &dyn age::Identity);
    let mut reader = decryptor
        .decrypt(ids)
        .map_err(|e| map_decrypt_error(keys, file, &stanzas, e))?;
    let mut plain = Vec::new();
    // Chunk authentication failures come back as io errors; their text is age's own, not data.
    if let Err(e) = reader.read_to_end(&mut plain) {
        drop(Secret::new(plain));
        let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "truncated"
        } else {
            "payload failed authentication"
        };
        return Err(corrupt(what));
    }
    Ok(Secret::new(plain))
}

fn map_decrypt_error(
    keys: &Keyring,
    file: &Path,
    stanzas: &[String],
    e: age::DecryptError,
) -> VaultError {
    let corrupt = |detail: &str| VaultError::Corrupt {
        file: file.to_path_buf(),
        detail: detail.to_string(),
    };
    match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => {
            let others: Vec<&String> = stanzas.iter().filter(|t| t.as_str() != "X25519").collect();
            let mut recipients = recipients::describe_for(file);
            if !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
                recipients.push_str(&format!(
                    "\n  note: the file also has {} stanza(s), which labctl cannot use",
                    names.join(", ")
                ));
            }
            VaultError::NoMatchingKey {
                file: file.to_path_buf(),
                stanzas: stanzas.len(),
                tried: keys.sources_tried().join(", "),
                mine: keys.public_keys().join(", "),
                recipients,
            }
        }
        age::DecryptError::InvalidMac => corrupt("header MAC mismatch"),
        age::DecryptError::InvalidHeader => corrupt("invalid header"),
        age::DecryptError::DecryptionFailed => corrupt("payload failed authentication"),
        age::DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt("truncated")
        }
        age::DecryptError::Io(_) => corrupt("unreadable header"),
        age::DecryptError::UnknownFormat => VaultError::Unsupported {
            file: file.to_path_buf(),
            detail: "made by a newer age format version; upgrade labctl".into(),
        },
        other => VaultError::Unsupported {
            file: file.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// The stanza tags of an age v1 header (`-> X25519 …` → "X25519"). age's X25519 stanzas do not
/// name their recipient, so a count and the tags are all an error message can say. Grease
/// stanzas (random `*-grease` tags age adds to keep parsers honest) are not recipients.
fn stanza_tags(raw: &[u8]) -> Vec<String> {
    let mut tags = Vec::new();
    for line in raw[AGE_V1.len()..].split(|b| *b == b'\n') {
        if line.starts_with(b"---") {
            break;
        }
        if let Some(rest) = line.strip_prefix(b"-> ") {
            let tag = rest.split(|b| *b == b' ').next().unwrap_or_default();
            if !tag.ends_with(b"-grease") {
                tags.push(String::from_utf8_lossy(tag).into_owned());
            }
        }
    }
    tags
}

/// Encrypts for `recipients`, ASCII-armored (diffs and reviews stay text; `age -d` reads it).
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[age::x25519::Recipient],
) -> Result<Vec<u8>, VaultError> {
    if recipients.is_empty() {
        return Err(VaultError::Encrypt("no recipients".into()));
    }
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    let io = |e: std::io::Error| VaultError::Encrypt(e.to_string());
    let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 512);
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io)?;
    let mut w = enc.wrap_output(armor).map_err(io)?;
    w.write_all(plaintext).map_err(io)?;
    w.finish().map_err(io)?.finish().map_err(io)?;
    Ok(out)
}

/// Where plaintext YAML is broken, without any of its content. Both the line/column and the
/// parser's message are kept; quoted fragments in the message (which may echo content) are
/// replaced by `…`.
#[derive(Debug)]
pub(crate) struct YamlProblem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

pub(crate) fn check_yaml(plain: &Secret<Vec<u8>>) -> Result<(), YamlProblem> {
    let text = std::str::from_utf8(plain.expose()).map_err(|e| {
        let upto = &plain.expose()[..e.valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        YamlProblem {
            line,
            col: 0,
            message: "not valid UTF-8 text".into(),
        }
    })?;
    if text.trim().is_empty() {
        return Ok(());
    }
    match serde_saphyr::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            drop(Secret::new(v));
            Ok(())
        }
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            let msg = e.without_snippet().to_string();
            let first = msg.lines().next().unwrap_or("invalid YAML");
            let first = first.find(" at line ").map_or(first, |i| &first[..i]);
            // Keep the category ("duplicate mapping key"), drop the detail after it, which can
            // quote the document ("…: db_password").
            let first = first.split(": ").next().unwrap_or(first);
            let first = first.split(", set ").next().unwrap_or(first);
            Err(YamlProblem {
                line,
                col,
                message: redact_quoted(first),
            })
        }
    }
}

/// Replaces text between matching quotes or backticks with `…`. Crude on purpose: it may hide a
/// harmless word, but a parser message cannot smuggle a secret value out.
fn redact_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut open: Option<char> = None;
    for c in s.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::keys::parse_identities;

    const CANARY: &str = "CANARY-7f3e9b-s3cr3t";

    fn key() -> (Keyring, age::x25519::Recipient) {
        let (text, public) = crate::vault::keygen();
        let ids = parse_identities(Path::new("test.key"), text.expose().as_bytes()).unwrap();
        (
            Keyring::from_identities(ids, "test key"),
            public.parse().unwrap(),
        )
    }

    /// Big enough that the middle of the armored text is payload, not header.
    fn plaintext() -> Vec<u8> {
        let mut s = format!("db_password: {CANARY}\n");
        for i in 0..60 {
            s.push_str(&format!("filler_{i}: {CANARY}-{i}\n"));
        }
        s.into_bytes()
    }

    fn assert_no_canary(e: &VaultError) {
        let shown = format!("{e} {e:?}");
        assert!(
            !shown.contains("CANARY"),
            "plaintext leaked into an error: {shown}"
        );
    }

    #[test]
    fn round_trip_armored() {
        let (keys, r) = key();
        let ct = encrypt(&plaintext(), &[r]).unwrap();
        let text = String::from_utf8(ct.clone()).unwrap();
        assert!(text.starts_with(ARMOR_BEGIN), "{text}");
        assert!(!text.contains("CANARY"));
        let pt = keys.decrypt_bytes(&ct, Path::new("v.yml.age")).unwrap();
        assert_eq!(pt.expose(), &plaintext());
    }

    #[test]
    fn binary_files_decrypt_too() {
        let (keys, r) = key();
        let ct = age::encrypt(&r, b"a: 1\n").unwrap();
        assert_eq!(
            keys.decrypt_bytes(&ct, Path::new("v.age"))
                .unwrap()
                .expose(),
            b"a: 1\n"
        );
    }

    #[test]
    fn several_recipients_any_can_open() {
        let (k1, r1) = key();
        let (k2, r2) = key();
        let ct = encrypt(b"x: 1\n", &[r1, r2]).unwrap();
        assert!(k1.decrypt_bytes(&ct, Path::new("v")).is_ok());
        assert!(k2.decrypt_bytes(&ct, Path::new("v")).is_ok());
    }

    #[test]
    fn wrong_key_says_what_was_tried() {
        let (_, r) = key();
        let (other, _) = key();
        let ct = encrypt(&plaintext(), &[r]).unwrap();
        let e = other
            .decrypt_bytes(&ct, Path::new("inv/vault.yml.age"))
            .unwrap_err();
        assert!(
            matches!(e, VaultError::NoMatchingKey { stanzas: 1, .. }),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(m.contains("inv/vault.yml.age"), "{m}");
        assert!(m.contains("encrypted for 1 recipient stanza(s)"), "{m}");
        assert!(m.contains("test key (1 identity)"), "{m}");
        assert!(m.contains(&other.public_keys()[0]), "{m}");
        assert_eq!(e.exit().code(), 4);
        assert_no_canary(&e);
    }

    #[test]
    fn empty_keyring_is_its_own_error() {
        let (_, r) = key();
        let ct = encrypt(b"a: 1\n", &[r]).unwrap();
        let e = Keyring::from_identities(vec![], "nothing")
            .decrypt_bytes(&ct, Path::new("v.age"))
            .unwrap_err();
        assert!(matches!(e, VaultError::NoIdentity { .. }), "{e:?}");
        assert!(e.to_string().contains("nothing (0 identities)"), "{e}");
    }

    #[test]
    fn tampered_body_is_refused() {
        let (keys, r) = key();
        let mut ct = encrypt(&plaintext(), &[r]).unwrap();
        let mid = ct.len() / 2;
        let i = (mid..ct.len())
            .find(|&i| ct[i].is_ascii_alphanumeric())
            .unwrap();
        ct[i] = if ct[i] == b'A' { b'B' } else { b'A' };
        let e = keys.decrypt_bytes(&ct, Path::new("v.yml.age")).unwrap_err();
        assert!(matches!(e, VaultError::Corrupt { .. }), "{e:?}");
        assert!(
            e.to_string().contains("v.yml.age is corrupt or tampered"),
            "{e}"
        );
        assert_no_canary(&e);
    }

    #[test]
    fn tampered_last_chunk_is_refused() {
        let (keys, r) = key();
        let mut ct = age::encrypt(&r, &plaintext()).unwrap();
        let n = ct.len();
        ct[n - 3] ^= 1;
        let e = keys.decrypt_bytes(&ct, Path::new("v.age")).unwrap_err();
        assert!(matches!(e, VaultError::Corrupt { .. }), "{e:?}");
        assert_no_canary(&e);
    }

    #[test]
    fn truncated_is_refused() {
        let (keys, r) = key();
        let ct = encrypt(&plaintext(), std::slice::from_ref(&r)).unwrap();
        let e = keys
            .decrypt_bytes(&ct[..ct.len() / 2], Path::new("v.yml.age"))
            .unwrap_err();
        assert!(matches!(e, VaultError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("corrupt or tampered"), "{e}");
        assert_no_canary(&e);
        // Binary, cut in half and cut just before the end.
        let bin = age::encrypt(&r, &plaintext()).unwrap();
        for cut in [bin.len() / 2, bin.len() - 1] {
            let e = keys
                .decrypt_bytes(&bin[..cut], Path::new("v.age"))
                .unwrap_err();
            assert!(matches!(e, VaultError::Corrupt { .. }), "cut {cut}: {e:?}");
            assert_no_canary(&e);
        }
        // Armored, whole lines dropped from the end (armor still well-formed up to the cut).
        let text = String::from_utf8(ct).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let short = format!(
            "{}\n{}\n",
            lines[..lines.len() - 3].join("\n"),
            lines[lines.len() - 1]
        );
        let e = keys
            .decrypt_bytes(short.as_bytes(), Path::new("v.age"))
            .unwrap_err();
        assert!(matches!(e, VaultError::Corrupt { .. }), "{e:?}");
    }

    #[test]
    fn plaintext_is_not_an_age_file() {
        let (keys, _) = key();
        let e = keys
            .decrypt_bytes(
                format!("password: {CANARY}\n").as_bytes(),
                Path::new("v.age"),
            )
            .unwrap_err();
        assert!(matches!(e, VaultError::NotAgeFile { .. }), "{e:?}");
        assert_no_canary(&e);
    }

    #[test]
    fn passphrase_files_are_named_as_such() {
        let (keys, _) = key();
        let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
            "pw".to_string(),
        ));
        let mut ct = vec![];
        let mut w = enc.wrap_output(&mut ct).unwrap();
        w.write_all(b"a: 1").unwrap();
        w.finish().unwrap();
        let e = keys.decrypt_bytes(&ct, Path::new("v.age")).unwrap_err();
        assert!(matches!(e, VaultError::Passphrase { .. }), "{e:?}");
    }

    #[test]
    fn yaml_errors_carry_position_not_content() {
        let bad = Secret::new(format!("a: 1\nb: \"{CANARY}\n  c: [\n").into_bytes());
        let p = check_yaml(&bad).unwrap_err();
        assert!(p.line >= 2, "{p:?}");
        assert!(!p.message.contains("CANARY"), "{p:?}");
        let bad = Secret::new(format!("{CANARY}: 1\n{CANARY}: 2\n").into_bytes());
        let p = check_yaml(&bad).unwrap_err();
        assert!(!p.message.contains("CANARY"), "{p:?}");
        assert_eq!(
            (p.line, p.message.as_str()),
            (2, "duplicate mapping key"),
            "{p:?}"
        );
        let bad = Secret::new(format!("key: {CANARY}\n  bad: indent\n").into_bytes());
        let p = check_yaml(&bad).unwrap_err();
        assert!(!p.message.contains("CANARY"), "{p:?}");
        assert!(check_yaml(&Secret::new(b"a:\n  b: [1, 2]\n".to_vec())).is_ok());
        assert!(check_yaml(&Secret::new(b"".to_vec())).is_ok());
        assert_eq!(
            redact_quoted("found `x` and \"y\" and 'z"),
            "found `…` and \"…\" and '…"
        );
    }
}
