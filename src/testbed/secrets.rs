//! A throwaway age key and vault for a testbed's inventory, so `apply` works with no setup.
//! The key lives only in the testbed's folder and dies with `testbed down`.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `DIR/age.key` (0600) and `DIR/group_vars/all/vault.yml.age` for `hosts`.
pub fn write(dir: &Path, hosts: &[String]) -> Result<()> {
    let key_path = dir.join("age.key");
    let (identity, public) = crate::vault::keygen();
    crate::fsutil::write_atomic(&key_path, identity.expose().as_bytes(), 0o600, false)
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    // The same vault `labctl init` makes, for the roles this binary ships.
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let needs = crate::init::shipped::needs();
    let external = crate::init::render::throwaway_external(&needs);
    let y = crate::init::render::vault_yml(&needs, &names, &external);
    let recipient: age::x25519::Recipient = public
        .parse()
        .map_err(|e| anyhow::anyhow!("bad generated recipient: {e}"))?;
    let armored = crate::vault::encrypt(y.expose().as_bytes(), &[recipient])?;
    let vault = dir.join("group_vars/all/vault.yml.age");
    std::fs::create_dir_all(vault.parent().expect("has a parent"))?;
    crate::fsutil::write_atomic(&vault, &armored, 0o644, false)
        .with_context(|| format!("cannot write {}", vault.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn vault_opens_with_its_key_and_holds_every_host() {
        let d = tempfile::tempdir().unwrap();
        super::write(d.path(), &["a-1".into(), "a-2".into()]).unwrap();
        let keys = crate::vault::Keyring::discover(Some(&d.path().join("age.key"))).unwrap();
        let plain = keys
            .decrypt_file(&d.path().join("group_vars/all/vault.yml.age"))
            .unwrap();
        let text = String::from_utf8(plain.expose().clone()).unwrap();
        assert!(
            text.contains("  a-1: \"")
                && text.contains("  a-2: \"")
                && text.contains("vault_k3s_token: \"")
                && text.contains("vault_postgres_password: \"")
                && !text.contains("vault_smtp_password: \"\"")
                && !text.contains("\nvault_backup_s3_access_key:")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(d.path().join("age.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}
