//! ansible-vault, read: the `$ANSIBLE_VAULT;1.1;AES256` envelope (and 1.2 with a vault id), as
//! `ansible-vault encrypt` and `encrypt_string` write it.
//!
//! The format (ansible-core's `VaultAES256`): the lines after the header are hex of a second,
//! newline-separated text `hex(salt)\nhex(hmac)\nhex(ciphertext)`. PBKDF2-HMAC-SHA256 with 10000
//! iterations turns the password and salt into 80 bytes: AES-256 key, HMAC-SHA256 key, CTR IV.
//! The HMAC covers the ciphertext and is checked (in constant time) before anything is decrypted;
//! the plaintext is PKCS#7-padded. Nothing here ever puts plaintext or a password in an error.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

pub const HEADER: &str = "$ANSIBLE_VAULT;";
const ITERATIONS: u32 = 10_000;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A parsed envelope: the parts the password is applied to.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub version: String,
    /// Format 1.2 names which password it was made with (`--vault-id label@…`).
    pub vault_id: Option<String>,
    salt: Vec<u8>,
    mac: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Why an envelope cannot be opened. The messages name format problems only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnsibleVaultError {
    #[error("not an ansible-vault value: {0}")]
    Format(String),
    #[error("ansible-vault cipher `{0}` is not supported (only AES256 is, as in ansible-core)")]
    Cipher(String),
    #[error("ansible-vault format version {0} is not supported (1.1 and 1.2 are)")]
    Version(String),
    /// Wrong password and tampered content look the same, by design of the format.
    #[error("HMAC mismatch: wrong password, or the value was modified")]
    Mac,
    #[error("bad padding after decryption (the value is corrupt)")]
    Padding,
}

/// True for text that starts like an ansible-vault envelope (leading whitespace allowed, as a
/// block scalar or a whole file may have it).
pub fn is_envelope(text: &str) -> bool {
    text.trim_start().starts_with(HEADER)
}

/// Parse the envelope (no password needed).
pub fn parse(text: &str) -> Result<Envelope, AnsibleVaultError> {
    let fmt = |m: &str| AnsibleVaultError::Format(m.to_string());
    let text = text.trim();
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| fmt("empty"))?.trim();
    let fields: Vec<&str> = header.split(';').collect();
    if fields.len() < 3 || fields[0] != "$ANSIBLE_VAULT" {
        return Err(fmt("the header is not `$ANSIBLE_VAULT;VERSION;CIPHER`"));
    }
    let version = fields[1].trim().to_string();
    let cipher = fields[2].trim();
    let vault_id = match version.as_str() {
        "1.1" if fields.len() == 3 => None,
        "1.2" if fields.len() == 4 => Some(fields[3].trim().to_string()),
        "1.1" | "1.2" => return Err(fmt("the header has the wrong number of fields")),
        _ => return Err(AnsibleVaultError::Version(version)),
    };
    if cipher != "AES256" {
        return Err(AnsibleVaultError::Cipher(cipher.to_string()));
    }
    // Line breaks and indentation are not part of the hex (ansible joins the stripped lines).
    let body: String = lines.flat_map(|l| l.trim().chars()).collect();
    let inner = hex_decode(&body).ok_or_else(|| fmt("the body is not hex"))?;
    let inner = std::str::from_utf8(&inner).map_err(|_| fmt("the body is not hex of hex"))?;
    let parts: Vec<&str> = inner.split('\n').collect();
    if parts.len() != 3 {
        return Err(fmt("the body does not hold salt, HMAC and ciphertext"));
    }
    let part = |s: &str, what: &str| {
        hex_decode(s.trim()).ok_or_else(|| fmt(&format!("the {what} is not hex")))
    };
    let env = Envelope {
        version,
        vault_id,
        salt: part(parts[0], "salt")?,
        mac: part(parts[1], "HMAC")?,
        ciphertext: part(parts[2], "ciphertext")?,
    };
    if env.mac.len() != 32 {
        return Err(fmt("the HMAC is not 32 bytes"));
    }
    if env.ciphertext.is_empty() || env.ciphertext.len() % 16 != 0 {
        return Err(fmt("the ciphertext is not whole AES blocks (truncated?)"));
    }
    Ok(env)
}

impl Envelope {
    /// Decrypt with one password. The HMAC is verified first; a mismatch is `Mac`.
    pub fn open(&self, password: &[u8]) -> Result<Secret<Vec<u8>>, AnsibleVaultError> {
        let mut derived = [0u8; 80];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &self.salt, ITERATIONS, &mut derived);
        let derived = Secret::new(derived);
        let d = derived.expose();
        let (key, hmac_key, iv) = (&d[..32], &d[32..64], &d[64..80]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hmac_key).expect("any key length");
        mac.update(&self.ciphertext);
        // verify_slice compares in constant time.
        mac.verify_slice(&self.mac)
            .map_err(|_| AnsibleVaultError::Mac)?;
        let mut plain = self.ciphertext.clone();
        let mut c = Aes256Ctr::new(key.into(), iv.into());
        c.apply_keystream(&mut plain);
        let plain = Secret::new(plain);
        let pad = *plain.expose().last().unwrap_or(&0) as usize;
        let n = plain.expose().len();
        if pad == 0
            || pad > 16
            || pad > n
            || plain.expose()[n - pad..].iter().any(|b| *b as usize != pad)
        {
            return Err(AnsibleVaultError::Padding);
        }
        let mut v = plain.into_inner();
        v.truncate(n - pad);
        Ok(Secret::new(v))
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by the real ansible-vault (see tests/fixtures/secrets/ansible-vault/README.md).
    const INLINE_11: &str =
        include_str!("../../tests/fixtures/secrets/ansible-vault/inline-1.1.yml");
    const INLINE_12: &str =
        include_str!("../../tests/fixtures/secrets/ansible-vault/inline-1.2.yml");
    const WHOLE: &str = include_str!("../../tests/fixtures/secrets/ansible-vault/whole.yml");
    const PW: &[u8] = b"fixture-pw-1";

    /// The envelope of an `encrypt_string` output (`name: !vault |` then the indented block).
    fn envelope(yaml: &str) -> String {
        yaml.lines()
            .skip(1)
            .map(|l| format!("{}\n", l.trim()))
            .collect()
    }

    #[test]
    fn real_ansible_vault_values_open() {
        let e = parse(&envelope(INLINE_11)).unwrap();
        assert_eq!((e.version.as_str(), e.vault_id.as_deref()), ("1.1", None));
        assert_eq!(e.open(PW).unwrap().expose(), b"CANARY-av-11-s3cr3t");
        let e = parse(&envelope(INLINE_12)).unwrap();
        assert_eq!(
            (e.version.as_str(), e.vault_id.as_deref()),
            ("1.2", Some("prod"))
        );
        assert_eq!(e.open(PW).unwrap().expose(), b"CANARY-av-12");
        let e = parse(WHOLE).unwrap();
        let plain = e.open(PW).unwrap();
        let text = std::str::from_utf8(plain.expose()).unwrap();
        assert!(
            text.contains("vault_db_password: CANARY-av-file-s3cr3t"),
            "decrypted"
        );
        // Indentation as in a YAML block scalar does not matter.
        let indented: String = WHOLE.lines().map(|l| format!("    {l}\n")).collect();
        assert!(is_envelope(&indented));
        assert_eq!(parse(&indented).unwrap(), parse(WHOLE).unwrap());
    }

    #[test]
    fn wrong_password_and_tampering_are_refused_before_decrypting() {
        let e = parse(&envelope(INLINE_11)).unwrap();
        assert_eq!(e.open(b"fixture-pw-2").unwrap_err(), AnsibleVaultError::Mac);
        // Flip one hex digit of the ciphertext, the HMAC and the salt in turn: each refused.
        let inner = String::from_utf8(
            hex_decode(&envelope(INLINE_11).lines().skip(1).collect::<String>()).unwrap(),
        )
        .unwrap();
        let parts: Vec<&str> = inner.split('\n').collect();
        for which in 0..3 {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            let c = p[which].pop().unwrap();
            p[which].push(if c == '0' { '1' } else { '0' });
            let body: String = p.join("\n").bytes().map(|b| format!("{b:02x}")).collect();
            let env = parse(&format!("$ANSIBLE_VAULT;1.1;AES256\n{body}\n")).unwrap();
            assert_eq!(
                env.open(PW).unwrap_err(),
                AnsibleVaultError::Mac,
                "part {which}"
            );
        }
    }

    #[test]
    fn malformed_envelopes_are_format_errors() {
        for (text, want) in [
            ("", "empty"),
            ("$ANSIBLE_VAULT;1.1\n00\n", "header"),
            ("$ANSIBLE_VAULT;1.1;AES256\nzz\n", "not hex"),
            ("$ANSIBLE_VAULT;1.1;AES256\n6162\n", "salt, HMAC"),
            ("$ANSIBLE_VAULT;1.1;AES256;x\n00\n", "number of fields"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert_eq!(
            parse("$ANSIBLE_VAULT;2.0;AES256\n00\n").unwrap_err(),
            AnsibleVaultError::Version("2.0".into())
        );
        assert_eq!(
            parse("$ANSIBLE_VAULT;1.1;AES\n00\n").unwrap_err(),
            AnsibleVaultError::Cipher("AES".into())
        );
        // A truncated body: whole lines missing.
        let cut: String = WHOLE.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(parse(&cut).is_err());
    }
}
