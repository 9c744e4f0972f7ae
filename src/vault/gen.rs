//! Fresh secrets for new vaults (`labctl init`, `labctl testbed up`), made in-process: nothing
//! is passed to another program or left on disk before it is encrypted.

use base64::Engine as _;
use rand::Rng as _;

use crate::secret::Secret;

/// A password of 32 letters and digits (~190 bits): strong, and safe unquoted in URLs, shell
/// words, YAML and the charts' values files.
pub fn password() -> Secret<String> {
    let s: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    Secret::new(s)
}

/// 32 random bytes as hex, as `openssl rand -hex 32` makes (the k3s docs' advice for tokens).
pub fn hex32() -> Secret<String> {
    let b: [u8; 32] = rand::random();
    Secret::new(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A WireGuard private key: 32 random bytes, clamped as `wg genkey` does, base64.
pub fn wg_private_key() -> Secret<String> {
    let mut k: [u8; 32] = rand::random();
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    Secret::new(base64::engine::general_purpose::STANDARD.encode(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_shape_and_differ() {
        let (a, b) = (password(), password());
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
        assert_eq!(hex32().expose().len(), 64);
        let k = base64::engine::general_purpose::STANDARD
            .decode(wg_private_key().expose())
            .unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(k[0] & 7, 0, "clamped like wg genkey");
        assert_eq!(k[31] & 0xc0, 0x40);
    }
}
