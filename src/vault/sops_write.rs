//! SOPS files with age recipients, written (`labctl vault encrypt --sops`, `labctl vault edit`),
//! so that the real `sops -d` opens them (format read in getsops/sops v3.11.0: `aes/cipher.go`,
//! `sops.go` `Tree.Encrypt`, `age/keysource.go`, `config/config.go`, `stores/stores.go`).
//!
//! A new file takes its recipients and rules from the first `.sops.yaml` (or `.sops.yml`)
//! `creation_rules` entry whose `path_regex` matches the file's path relative to that config's
//! folder (a rule without `path_regex` matches everything), as sops does; with none of the four
//! rules set, `unencrypted_suffix: _unencrypted` as sops defaults. A fresh 32-byte data key is
//! age-encrypted (armored) once per recipient. An existing file keeps its data key, its
//! recipients and its rules (as `sops edit` does), and an unchanged value keeps its ciphertext.
//!
//! Each value to encrypt becomes `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` (32-byte random IV,
//! the value's key path `a:b:` as additional data; an empty string stays empty). The MAC is the
//! upper-case hex SHA-512 over the values (all, or with `mac_only_encrypted` the encrypted ones
//! after a fixed prefix), sealed the same way with `lastmodified` as additional data. Comments
//! are not kept (labctl's YAML reader drops them), so the `*_comment_regex` rules are refused.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine;
use indexmap::IndexMap;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha512};

use super::sops::{mac_bytes, rules, Aes256Gcm32, Rules, SopsFail, Stash};
use crate::secret::Secret;
use crate::yaml::{Node, NodeV};

/// The sops version labctl's output claims to be compatible with (written as `sops.version`).
const SOPS_VERSION: &str = "3.11.0";

fn err<T>(m: impl Into<String>) -> Result<T, SopsFail> {
    Err(SopsFail::Error(m.into()))
}

/// The nearest `.sops.yaml` / `.sops.yml` at or above `dir`.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        for n in [".sops.yaml", ".sops.yml"] {
            let p = cur.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
        d = cur.parent();
    }
    None
}

/// What a new file is encrypted with: a `creation_rules` entry.
#[derive(Debug)]
pub struct CreationRule {
    pub recipients: Vec<age::x25519::Recipient>,
    /// `unencrypted_suffix` etc. as they go into the `sops:` block, in sops' order.
    pub rule_fields: Vec<(&'static str, Value)>,
    /// Where it came from, for messages: `.sops.yaml rule #N`.
    pub origin: String,
}

const RULE_KEYS: [&str; 4] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
];

/// The creation rule of `config` for the file at `file` (sops' `parseCreationRuleForFile`).
pub fn creation_rule(config: &Path, file: &Path) -> Result<CreationRule, SopsFail> {
    let shown = config.display().to_string();
    let text = std::fs::read_to_string(config)
        .map_err(|e| SopsFail::Error(format!("cannot read {shown}: {e}")))?;
    let doc = crate::yaml::parse_node(config, &text)
        .map_err(|d| SopsFail::Error(format!("{shown}: {}", d.message)))?;
    let Some(rules) = doc.get("creation_rules").and_then(Node::as_seq) else {
        return err(format!(
            "{shown} has no `creation_rules`: add one with `age:` recipients"
        ));
    };
    let dir = std::path::absolute(config.parent().unwrap_or(Path::new(".")))
        .map_err(|e| SopsFail::Error(e.to_string()))?;
    let abs = std::path::absolute(file).map_err(|e| SopsFail::Error(e.to_string()))?;
    let rel = abs.strip_prefix(&dir).unwrap_or(&abs).to_string_lossy();
    for (i, r) in rules.iter().enumerate() {
        let at = format!("{shown}:{}:{}", r.line, r.col);
        if let Some(re) = r
            .get("path_regex")
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty())
        {
            let re = regex::Regex::new(re).map_err(|e| {
                SopsFail::Error(format!("{at}: `path_regex` is not a valid regex: {e}"))
            })?;
            if !re.is_match(&rel) {
                continue;
            }
        }
        return rule_from(r, &at, i + 1);
    }
    err(format!(
        "no creation rule in {shown} matches `{rel}` (sops would refuse it too): add a rule whose path_regex matches it"
    ))
}

fn rule_from(r: &Node, at: &str, n: usize) -> Result<CreationRule, SopsFail> {
    for k in [
        "kms",
        "pgp",
        "gcp_kms",
        "azure_keyvault",
        "hc_vault_transit_uri",
        "key_groups",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ] {
        if r.get(k).is_some_and(|v| !matches!(v.v, NodeV::Null)) {
            return err(format!(
                "{at}: `{k}` is not supported by labctl's SOPS writer (age recipients, one group, no comment rules); use `sops` for this file"
            ));
        }
    }
    let mut recipients = Vec::new();
    let mut add = |s: &str| -> Result<(), SopsFail> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(());
        }
        recipients.push(s.parse::<age::x25519::Recipient>().map_err(|_| {
            SopsFail::Error(format!(
                "{at}: `{s}` is not an age X25519 recipient (age1…); labctl writes for those only"
            ))
        })?);
        Ok(())
    };
    match r.get("age").map(|a| &a.v) {
        Some(NodeV::Str(s)) => s.split(',').try_for_each(&mut add)?,
        Some(NodeV::Seq(items)) => {
            for i in items {
                add(i.as_str().unwrap_or_default())?
            }
        }
        _ => {}
    }
    if recipients.is_empty() {
        return err(format!("{at}: the rule has no `age:` recipients"));
    }
    let mut rule_fields = Vec::new();
    for k in RULE_KEYS {
        if let Some(v) = r.get(k).and_then(Node::as_str).filter(|s| !s.is_empty()) {
            if k.ends_with("regex") {
                regex::Regex::new(v).map_err(|e| {
                    SopsFail::Error(format!("{at}: `{k}` is not a valid regex: {e}"))
                })?;
            }
            rule_fields.push((k, Value::String(v.to_string())));
        }
    }
    if rule_fields.len() > 1 {
        return err(format!(
            "{at}: only one of {} may be set (sops refuses more)",
            RULE_KEYS.join(", ")
        ));
    }
    if rule_fields.is_empty() {
        rule_fields.push(("unencrypted_suffix", Value::String("_unencrypted".into())));
    }
    if matches!(
        r.get("mac_only_encrypted").map(|n| &n.v),
        Some(NodeV::Bool(true))
    ) {
        rule_fields.push(("mac_only_encrypted", Value::Bool(true)));
    }
    Ok(CreationRule {
        recipients,
        rule_fields,
        origin: format!("creation rule #{n} ({at})"),
    })
}

/// The `sops:` block without `lastmodified`, `mac` and `version`, which each write sets.
pub struct Header {
    pub key: Secret<[u8; 32]>,
    /// Everything else of the block, in order (age stanzas, rules).
    pub fields: IndexMap<String, Value>,
    pub stash: Secret<Stash>,
}

impl Header {
    /// A new file: a fresh data key, age-encrypted for each recipient on its own (sops writes one
    /// armored age file per recipient).
    pub fn new(rule: &CreationRule) -> Result<Header, SopsFail> {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        let key = Secret::new(k);
        let mut stanzas = Vec::new();
        for r in &rule.recipients {
            let enc = super::encrypt(key.expose(), std::slice::from_ref(r))
                .map_err(|e| SopsFail::Error(e.to_string()))?;
            stanzas.push(serde_json::json!({
                "recipient": r.to_string(),
                "enc": String::from_utf8_lossy(&enc),
            }));
        }
        let mut fields = IndexMap::new();
        fields.insert("age".into(), Value::Array(stanzas));
        for (k, v) in &rule.rule_fields {
            fields.insert((*k).to_string(), v.clone());
        }
        Ok(Header {
            key,
            fields,
            stash: Secret::new(Stash::new()),
        })
    }

    /// An existing file, opened by `sops::decrypt_for_rewrite`: same key, recipients and rules.
    pub(crate) fn kept(k: super::sops::Kept) -> Header {
        let mut fields = IndexMap::new();
        if let NodeV::Map(entries) = &k.meta.v {
            for (name, v) in entries {
                let name = name.key_string();
                if !matches!(name.as_str(), "lastmodified" | "mac" | "version") {
                    fields.insert(name, v.to_json());
                }
            }
        }
        Header {
            key: k.key,
            fields,
            stash: k.stash,
        }
    }

    fn rules(&self) -> Result<Rules, SopsFail> {
        let meta = crate::yaml::parse_node(
            Path::new("sops"),
            &serde_json::to_string(&self.fields).unwrap_or_default(),
        )
        .map_err(|d| SopsFail::Error(d.message))?;
        rules(&meta)
    }
}

fn seal(key: &[u8; 32], iv: &[u8; 32], plain: &[u8], aad: &str, kind: &str) -> String {
    let c = Aes256Gcm32::new(key.into());
    let mut buf = plain.to_vec();
    // Cannot fail for inputs this size; an empty tag would make sops refuse the file loudly.
    let tag = c
        .encrypt_in_place_detached(iv.into(), aad.as_bytes(), &mut buf)
        .unwrap_or_default();
    let b = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        b(&buf),
        b(iv),
        b(&tag)
    )
}

struct Enc<'a> {
    key: &'a [u8; 32],
    rules: &'a Rules,
    stash: &'a Stash,
    hash: Sha512,
}

impl Enc<'_> {
    fn node(&mut self, n: &Node, path: &mut Vec<String>) -> Result<Value, SopsFail> {
        Ok(match &n.v {
            NodeV::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    let name = k.key_string();
                    if path.is_empty() && name == "sops" {
                        return err("a top-level `sops` key is reserved for the SOPS metadata");
                    }
                    path.push(name.clone());
                    let x = self.node(v, path)?;
                    path.pop();
                    m.insert(name, x);
                }
                Value::Object(m)
            }
            NodeV::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.node(i, path))
                    .collect::<Result<_, _>>()?,
            ),
            NodeV::Null => Value::Null,
            NodeV::Vault(_) => {
                return err(format!(
                    "`{}`: an ansible-vault value cannot go into a SOPS file",
                    path.join(".")
                ))
            }
            v => {
                let encrypted = self.rules.encrypted(path);
                let plain = mac_bytes(v).unwrap_or_default();
                if !self.rules.mac_only_encrypted || encrypted {
                    self.hash.update(&plain);
                }
                if !encrypted {
                    return Ok(n.to_json());
                }
                let kind = match v {
                    NodeV::Str(_) => "str",
                    NodeV::Int(_) => "int",
                    NodeV::Float(_) => "float",
                    _ => "bool",
                };
                if plain.is_empty() && kind == "str" {
                    return Ok(Value::String(String::new()));
                }
                let aad = format!("{}:", path.join(":"));
                let stash_key = (aad, kind.to_string(), plain);
                if let Some(old) = self.stash.get(&stash_key) {
                    return Ok(Value::String(old.clone()));
                }
                let mut iv = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut iv);
                Value::String(seal(self.key, &iv, &stash_key.2, &stash_key.0, kind))
            }
        })
    }
}

/// The SOPS document for the plaintext `doc` (a map), as YAML text.
pub fn encrypt(doc: &Node, header: &Header, last_modified: &str) -> Result<String, SopsFail> {
    if !matches!(doc.v, NodeV::Map(_)) {
        return err("a SOPS vars file must be a map at the top");
    }
    let rules = header.rules()?;
    let mut e = Enc {
        key: header.key.expose(),
        rules: &rules,
        stash: header.stash.expose(),
        hash: Sha512::new(),
    };
    if rules.mac_only_encrypted {
        e.hash.update(super::sops::MAC_ONLY_ENCRYPTED_INIT);
    }
    let Value::Object(mut out) = e.node(doc, &mut Vec::new())? else {
        return err("a SOPS vars file must be a map at the top");
    };
    let mac: String = e
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut iv = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let mac = seal(
        header.key.expose(),
        &iv,
        mac.as_bytes(),
        last_modified,
        "str",
    );
    // Field order as sops writes it (stores.Metadata).
    let mut meta = serde_json::Map::new();
    if let Some(a) = header.fields.get("age") {
        meta.insert("age".into(), a.clone());
    }
    meta.insert("lastmodified".into(), Value::String(last_modified.into()));
    meta.insert("mac".into(), Value::String(mac));
    for (k, v) in &header.fields {
        if k != "age" {
            meta.insert(k.clone(), v.clone());
        }
    }
    meta.insert("version".into(), Value::String(SOPS_VERSION.into()));
    out.insert("sops".into(), Value::Object(meta));
    to_yaml(&Value::Object(out))
}

/// YAML as sops writes it: each `ENC[…]` on its key's line (never folded, so a changed value
/// is a one-line diff), multi-line strings (the age stanzas) as literal blocks.
fn to_yaml(v: &Value) -> Result<String, SopsFail> {
    let mut o = serde_saphyr::SerializerOptions::default();
    o.folded_wrap_chars = usize::MAX;
    let mut s = serde_saphyr::to_string_with_options(v, o)
        .map_err(|e| SopsFail::Error(format!("cannot write YAML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Whether a path names a SOPS file by convention (`NAME.sops.yaml`).
pub fn sops_named(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    n.ends_with(".sops.yaml") || n.ends_with(".sops.yml")
}

/// A plaintext rendering of a decrypted SOPS document for the editor.
pub fn plaintext(doc: &Node) -> Result<Secret<String>, SopsFail> {
    if matches!(doc.v, NodeV::Null) {
        return Ok(Secret::new(String::new()));
    }
    to_yaml(&doc.to_json()).map(Secret::new)
}

/// `lastmodified` as sops writes it (Go's RFC3339 in UTC).
pub fn now() -> String {
    super::rfc3339_now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Keyring;

    fn identity() -> (age::x25519::Identity, Keyring) {
        let id = age::x25519::Identity::generate();
        let ring = Keyring::from_identities(vec![id.clone()], "test");
        (id, ring)
    }

    fn node(text: &str) -> Node {
        crate::yaml::parse_node(Path::new("t.yaml"), text).unwrap()
    }

    fn rule_for(id: &age::x25519::Identity, extra: &str) -> CreationRule {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join(".sops.yaml");
        std::fs::write(
            &cfg,
            format!(
                "creation_rules:\n  - path_regex: other/.*\n    age: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\n  - path_regex: secrets/.*\\.sops\\.yaml$\n    age: \"{}\"\n{extra}",
                id.to_public()
            ),
        )
        .unwrap();
        creation_rule(&cfg, &d.path().join("secrets/app.sops.yaml")).unwrap()
    }

    #[test]
    fn what_labctl_writes_labctl_reads_back_with_the_same_values() {
        let (id, ring) = identity();
        let rule = rule_for(&id, "");
        assert_eq!(rule.origin.split(' ').nth(2), Some("#2"));
        let h = Header::new(&rule).unwrap();
        let plain = node("db:\n  password: hunter2\n  port: 5432\n  ratio: 0.5\n  on: true\nlist: [a, b]\nempty: \"\"\nnothing: null\nnote_unencrypted: visible\n");
        let text = encrypt(&plain, &h, "2026-01-02T03:04:05Z").unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("note_unencrypted: visible"), "{text}");
        // One line per value, never folded: a changed value is a one-line diff.
        assert!(text.contains("  password: ENC[AES256_GCM,data:"), "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            text.contains("type:int]") && text.contains("type:bool]"),
            "{text}"
        );
        let mut back = node(&text);
        let secret = super::super::sops::decrypt(&ring, Path::new("t"), &mut back).unwrap();
        assert_eq!(back.to_json(), plain.to_json());
        assert!(secret.contains("db") && !secret.contains("note_unencrypted"));
    }

    #[test]
    fn a_changed_value_breaks_the_mac_and_an_unchanged_one_keeps_its_ciphertext() {
        let (id, ring) = identity();
        let h = Header::new(&rule_for(&id, "    encrypted_regex: ^(password|token)$\n")).unwrap();
        let text = encrypt(
            &node("a:\n  password: x1\n  user: me\ntoken: t\n"),
            &h,
            "2026-01-02T03:04:05Z",
        )
        .unwrap();
        assert!(
            text.contains("user: me") && text.contains("encrypted_regex"),
            "{text}"
        );
        // Swapping the two ciphertexts (values moved between keys) is refused.
        let doc = node(&text);
        let p = doc
            .get("a")
            .unwrap()
            .get("password")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let t = doc.get("token").unwrap().as_str().unwrap().to_string();
        let swapped = text.replace(&p, "@@").replace(&t, &p).replace("@@", &t);
        let e =
            super::super::sops::decrypt(&ring, Path::new("t"), &mut node(&swapped)).unwrap_err();
        assert!(format!("{e:?}").contains("failed authentication"), "{e:?}");
        // A plain value changed under the MAC is refused.
        let e = super::super::sops::decrypt(
            &ring,
            Path::new("t"),
            &mut node(&text.replace("user: me", "user: you")),
        )
        .unwrap_err();
        assert!(format!("{e:?}").contains("MAC mismatch"), "{e:?}");
        // Rewriting after an edit: the unchanged value keeps its ciphertext, the changed one not.
        let mut opened = node(&text);
        let kept =
            super::super::sops::decrypt_for_rewrite(&ring, Path::new("t"), &mut opened).unwrap();
        let h2 = Header::kept(kept);
        let again = encrypt(
            &node("a:\n  password: x1\n  user: me\ntoken: t2\n"),
            &h2,
            "2026-02-02T03:04:05Z",
        )
        .unwrap();
        assert!(again.contains(&p), "unchanged value re-encrypted: {again}");
        assert!(!again.contains(&t));
        let mut back = node(&again);
        super::super::sops::decrypt(&ring, Path::new("t"), &mut back).unwrap();
        assert_eq!(back.get("token").unwrap().as_str(), Some("t2"));
    }

    #[test]
    fn creation_rules_are_matched_and_checked_as_sops_does() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join(".sops.yaml");
        let id = age::x25519::Identity::generate().to_public();
        std::fs::write(
            &cfg,
            format!("creation_rules:\n  - path_regex: ^prod/\n    age: {id}\n"),
        )
        .unwrap();
        let e = creation_rule(&cfg, &d.path().join("dev/x.sops.yaml")).unwrap_err();
        assert!(
            format!("{e:?}").contains("no creation rule")
                && format!("{e:?}").contains("dev/x.sops.yaml"),
            "{e:?}"
        );
        let r = creation_rule(&cfg, &d.path().join("prod/x.sops.yaml")).unwrap();
        assert_eq!(r.rule_fields[0].0, "unencrypted_suffix");
        std::fs::write(
            &cfg,
            format!("creation_rules:\n  - age: {id}, {id}\n    kms: arn:aws:kms:x\n"),
        )
        .unwrap();
        let e = creation_rule(&cfg, &d.path().join("a")).unwrap_err();
        assert!(
            format!("{e:?}").contains("`kms`") && format!("{e:?}").contains(".sops.yaml:2:5"),
            "{e:?}"
        );
        std::fs::write(&cfg, format!("creation_rules:\n  - age: {id}\n    encrypted_regex: a\n    unencrypted_suffix: b\n")).unwrap();
        assert!(format!(
            "{:?}",
            creation_rule(&cfg, &d.path().join("a")).unwrap_err()
        )
        .contains("only one of"));
        std::fs::write(&cfg, "creation_rules:\n  - age: ssh-ed25519 AAAA\n").unwrap();
        assert!(format!(
            "{:?}",
            creation_rule(&cfg, &d.path().join("a")).unwrap_err()
        )
        .contains("not an age X25519"));
        assert_eq!(find_config(&d.path().join("deep/er")), Some(cfg));
    }
}
