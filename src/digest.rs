//! Hashes, at the ground floor: plain sha256 (compared with `sha256sum` on hosts), hex, and the
//! keyed hashes that stand in for secret content in output and plan files.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Hex digits kept of a keyed tag shown for secret content ("(secret changed: now hmac-…)").
const TAG_HEX: usize = 16;
/// Hex digits kept of a change's fingerprint in plan files.
const FINGERPRINT_HEX: usize = 24;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `data` as lowercase hex, as `sha256sum` prints it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// HMAC-SHA256 of `data` under `key`, all 32 bytes.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Keyed::new(key);
    m.update(data);
    m.0.finalize().into_bytes().into()
}

/// A keyed hash for display and plan files: a short, non-reversible tag of secret content that
/// only holders of the key can recompute (an unkeyed hash of a short password is brute-forceable).
pub fn keyed_hash(key: &[u8; 32], data: &[u8]) -> String {
    let mut m = Keyed::new(key);
    m.update(data);
    m.tag(TAG_HEX)
}

/// A keyed hash fed piece by piece (fingerprints of facts and steps).
pub struct Keyed(Hmac<Sha256>);

impl Keyed {
    pub fn new(key: &[u8]) -> Keyed {
        Keyed(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The fingerprint a plan file carries for one change.
    pub fn fingerprint(self) -> String {
        self.tag(FINGERPRINT_HEX)
    }
    fn tag(self, digits: usize) -> String {
        format!(
            "hmac-sha256:{}",
            &hex(&self.0.finalize().into_bytes())[..digits]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_format() {
        let h = keyed_hash(&[7u8; 32], b"hunter2");
        assert!(h.starts_with("hmac-sha256:"), "{h}");
        let hex = h.strip_prefix("hmac-sha256:").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(h, keyed_hash(&[7u8; 32], b"hunter2"));
        assert_ne!(h, keyed_hash(&[8u8; 32], b"hunter2"));
        assert_ne!(h, keyed_hash(&[7u8; 32], b"hunter3"));
    }

    #[test]
    fn sha256_matches_sha256sum() {
        assert_eq!(
            sha256_hex(b"hello\n"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn fingerprints_are_longer_tags_of_the_same_mac() {
        let mut a = Keyed::new(&[1; 32]);
        a.update(b"x");
        let f = a.fingerprint();
        assert_eq!(f.len(), "hmac-sha256:".len() + 24);
        assert!(f.starts_with(&keyed_hash(&[1; 32], b"x")));
    }
}
