//! Entry points for the fuzzer (fuzz_targets/, cargo fuzz) and for replaying its corpus in the
//! normal test run. Each takes arbitrary bytes, feeds them to one loader of the labctl library
//! exactly as labctl reads that kind of input, and must return (an error is fine) without
//! panicking, hanging or blowing up.
//!
//! The corpus (`fuzz/corpus/TARGET/`) and any input that ever crashed (`fuzz/regressions/TARGET/`)
//! are replayed by the test at the bottom, so CI checks them without building the fuzzer: this
//! file is also a module of labctl's integration tests (tests/main.rs), which do not build this
//! crate (its libFuzzer dependency needs nightly).

use std::path::Path;

// `lab::`: the entry points are named after the loaders they feed (`inventory`, `site`, …).
use labctl::internals as lab;

/// A fuzz target: its name and the loader it feeds.
pub type Target = (&'static str, fn(&[u8]));

/// The loaders that take user input, by fuzz target name.
pub const TARGETS: &[Target] = &[
    ("inventory", inventory),
    ("site", site),
    ("role", role),
    ("vars_file", vars_file),
    ("vault_file", vault_file),
    ("template", template),
    ("ansible_vault", ansible_vault),
    ("sops_file", sops_file),
];

/// Write `data` as `name` in a fresh temp dir (the loaders read files, as labctl does).
fn with_file(name: &str, data: &[u8], f: impl FnOnce(&Path, &Path)) {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, data).expect("write");
    f(d.path(), &p);
}

/// An inventory file (YAML, or INI when it does not parse as YAML: the loader decides).
pub fn inventory(data: &[u8]) {
    let no_vault: lab::inventory::Decrypt =
        &|_p: &Path| Err(lab::inventory::VaultFail::NoKey("fuzzing".into()));
    with_file("hosts.yml", data, |_, p| {
        let _ = lab::inventory::Inventory::load(p, no_vault);
    });
    with_file("hosts", data, |_, p| {
        let _ = lab::inventory::Inventory::load(p, no_vault);
    });
}

/// A site file (its roles are missing: that must be a clean error too).
pub fn site(data: &[u8]) {
    with_file("site.yml", data, |_, p| {
        let _ = lab::site::Site::load(p);
    });
}

/// A role's `role.yml`.
pub fn role(data: &[u8]) {
    with_file("roles/r/role.yml", data, |root, _| {
        let _ = lab::site::Role::load(root, "r");
    });
}

/// A vars file, as `-e @file.yml` reads it.
pub fn vars_file(data: &[u8]) {
    with_file("vars.yml", data, |_, p| {
        let _ = lab::inventory::vars::parse_extra_var(&format!("@{}", p.display()));
    });
}

/// A vault file's bytes, decrypted with a fixed identity (armor and header parsing, then age).
pub fn vault_file(data: &[u8]) {
    static ID: std::sync::OnceLock<age::x25519::Identity> = std::sync::OnceLock::new();
    let id = ID.get_or_init(age::x25519::Identity::generate).clone();
    let keys = lab::vault::Keyring::from_identities(vec![id], "fuzzing");
    let _ = keys.decrypt_bytes(data, Path::new("fuzz.vault.yml"));
}

/// An ansible-vault envelope, parsed and opened with a fixed password (header, hex, HMAC).
pub fn ansible_vault(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(env) = lab::vault::ansible::parse(text) {
        let _ = env.open(b"fuzzing");
    }
}

/// An age identity made for the fuzzer only and public on purpose: the SOPS seeds in
/// fuzz/corpus/sops_file/ are encrypted to it (by the real sops), so mutations reach the value
/// decryption and MAC code instead of stopping at the data key.
const SOPS_FUZZ_IDENTITY: &str =
    "AGE-SECRET-KEY-1LT5J80MVWFEMNYQ9EVW5WAQCFRWTE6YWFVASCDMS5Q7VEVLGS8DQU26N2U";

/// A SOPS vars file, decrypted with the fuzzing identity (metadata, ENC values, MAC).
pub fn sops_file(data: &[u8]) {
    let id: age::x25519::Identity = SOPS_FUZZ_IDENTITY.parse().expect("the fuzzing identity");
    let keys = lab::vault::Keyring::from_identities(vec![id], "fuzzing");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = Path::new("fuzz.sops.yaml");
    if let Ok(mut node) = lab::yaml::parse_node_vaults(p, text) {
        if lab::vault::sops::is_sops_document(&node) {
            let _ = lab::vault::sops::decrypt(&keys, p, &mut node);
        }
    }
}

/// A template, rendered with a few vars (one of them secret).
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let d = tempfile::tempdir().expect("temp dir");
    let engine = lab::template::Engine::new(d.path());
    let mut vars = indexmap::IndexMap::new();
    vars.insert("name".to_string(), serde_json::json!("lab-1"));
    vars.insert("ports".to_string(), serde_json::json!([22, 80, 443]));
    vars.insert(
        "nested".to_string(),
        serde_json::json!({"a": {"b": [1, "two", null]}}),
    );
    vars.insert("token".to_string(), serde_json::json!("s3cr3t-token"));
    let ctx = lab::template::Ctx::new(
        &vars,
        ["token".to_string()].into_iter().collect(),
        vec!["s3cr3t-token".to_string()],
    );
    let _ = engine.render_str(text, &ctx);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::lab;

    /// Every committed corpus and regression input of every target: no panic, under 1 s each.
    /// The SOPS seed really opens (so the fuzzer starts past the data key and the MAC).
    #[test]
    fn the_sops_seed_opens_with_the_fuzzing_identity() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = root.join("fuzz/corpus/sops_file/seed-yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut node = lab::yaml::parse_node_vaults(&p, &text).unwrap();
        let id: age::x25519::Identity = super::SOPS_FUZZ_IDENTITY.parse().unwrap();
        let keys = lab::vault::Keyring::from_identities(vec![id], "fuzzing");
        let secret = lab::vault::sops::decrypt(&keys, &p, &mut node).unwrap();
        assert_eq!(node.get("a").unwrap().v, lab::yaml::NodeV::Int(1));
        assert_eq!(node.get("c_unencrypted").unwrap().as_str(), Some("z"));
        assert_eq!(
            node.get("d").unwrap().get("f").unwrap().v,
            lab::yaml::NodeV::Float(1.5)
        );
        assert!(node.get("sops").is_none());
        assert_eq!(secret.into_iter().collect::<Vec<_>>(), ["a", "b", "d"]);
    }

    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut n = 0;
        for (name, f) in super::TARGETS {
            for dir in ["corpus", "regressions"] {
                let Ok(rd) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in rd.flatten() {
                    let data = std::fs::read(e.path()).unwrap();
                    let t0 = Instant::now();
                    f(&data);
                    let took = t0.elapsed();
                    assert!(
                        took < Duration::from_secs(1),
                        "{name}: {} took {took:?}",
                        e.path().display()
                    );
                    n += 1;
                }
            }
        }
        assert!(n > 0, "no corpus found under {}", root.display());
    }
}
