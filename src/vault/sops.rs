//! SOPS files with age recipients, read: decrypted in memory like the age vault. Writing is in
//! `sops_write`.
//!
//! A SOPS document is the data plus a top-level `sops:` block. The block holds the data key,
//! age-encrypted (armored) once per recipient (`sops.age[].enc`, or inside `key_groups`), the
//! rules for which values are encrypted (`unencrypted_suffix`, `encrypted_suffix`,
//! `unencrypted_regex`, `encrypted_regex`: matched against every key on a value's path, as sops
//! does) and a MAC. Each encrypted value is `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, sealed
//! with AES-256-GCM (32-byte nonce) and its path as additional data (`key:key:`; list items add
//! nothing to the path). The MAC is the upper-case hex SHA-512 of every value's plaintext bytes in
//! document order (or, with `mac_only_encrypted`, of the encrypted ones after a fixed prefix),
//! itself encrypted with `lastmodified` as additional data: a changed, removed or added value is
//! refused. Messages name paths and recipients, never a value.

use std::collections::BTreeSet;
use std::path::Path;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use sha2::{Digest, Sha512};

use super::keys::Keyring;
use crate::secret::Secret;
use crate::yaml::{Node, NodeV};

pub(super) type Aes256Gcm32 = aes_gcm::AesGcm<aes::Aes256, U32>;

/// sops' `MACOnlyEncryptedInitialization`: hashed first when only encrypted values are MACed,
/// so such a MAC never equals one over all values.
pub(super) const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

#[derive(Debug, Clone, PartialEq)]
pub enum SopsFail {
    /// No age identity at all.
    NoKey(String),
    Error(String),
}

fn err<T>(m: impl Into<String>) -> Result<T, SopsFail> {
    Err(SopsFail::Error(m.into()))
}

/// A top-level `sops:` map with a MAC: what sops writes into every file it encrypts.
pub fn is_sops_document(node: &Node) -> bool {
    node.get("sops")
        .is_some_and(|s| s.as_map().is_some() && s.get("mac").is_some())
}

pub(super) struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    pub(super) mac_only_encrypted: bool,
}

impl Rules {
    /// sops' `shouldBeEncrypted`, in its order: each later rule overrides the earlier ones.
    pub(super) fn encrypted(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix {
            if path.iter().any(|k| k.ends_with(s.as_str())) {
                enc = false;
            }
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex {
            if path.iter().any(|k| r.is_match(k)) {
                enc = false;
            }
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|k| r.is_match(k));
        }
        enc
    }
}

pub(super) fn meta_str(meta: &Node, key: &str) -> Option<String> {
    meta.get(key)
        .and_then(|n| n.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(super) fn rules(meta: &Node) -> Result<Rules, SopsFail> {
    for k in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
        if meta_str(meta, k).is_some() {
            // Which values are encrypted then depends on comments, which labctl does not keep.
            return err(format!(
                "`sops.{k}` is not supported by labctl; use encrypted_regex or unencrypted_suffix"
            ));
        }
    }
    let re = |k: &str| -> Result<Option<regex::Regex>, SopsFail> {
        meta_str(meta, k)
            .map(|r| {
                regex::Regex::new(&r)
                    .map_err(|e| SopsFail::Error(format!("`sops.{k}` is not a valid regex: {e}")))
            })
            .transpose()
    };
    Ok(Rules {
        unencrypted_suffix: meta_str(meta, "unencrypted_suffix"),
        encrypted_suffix: meta_str(meta, "encrypted_suffix"),
        unencrypted_regex: re("unencrypted_regex")?,
        encrypted_regex: re("encrypted_regex")?,
        mac_only_encrypted: matches!(
            meta.get("mac_only_encrypted").map(|n| &n.v),
            Some(NodeV::Bool(true))
        ),
    })
}

/// The age stanzas' encrypted data keys (top-level `age:` and inside `key_groups`).
fn age_entries(meta: &Node) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut take = |list: Option<&Node>| {
        for e in list.and_then(|l| l.as_seq()).unwrap_or_default() {
            if let Some(enc) = e.get("enc").and_then(|n| n.as_str()) {
                let r = e.get("recipient").and_then(|n| n.as_str()).unwrap_or("?");
                out.push((r.to_string(), enc.to_string()));
            }
        }
    };
    take(meta.get("age"));
    for g in meta
        .get("key_groups")
        .and_then(|g| g.as_seq())
        .unwrap_or_default()
    {
        take(g.get("age"));
    }
    out
}

fn data_key(keys: &Keyring, file: &Path, meta: &Node) -> Result<Secret<[u8; 32]>, SopsFail> {
    if meta
        .get("key_groups")
        .and_then(|g| g.as_seq())
        .is_some_and(|g| g.len() > 1)
    {
        return err(
            "the data key is split between key groups (Shamir); labctl reads files with one group",
        );
    }
    let entries = age_entries(meta);
    if entries.is_empty() {
        return err("the file has no age recipient (its data key is for kms, pgp or another service labctl does not use)");
    }
    if keys.is_empty() {
        return Err(SopsFail::NoKey(format!(
            "no age identity found (tried: {})",
            keys.sources_tried().join(", ")
        )));
    }
    for (_, enc) in &entries {
        if let Ok(plain) = keys.decrypt_bytes(enc.as_bytes(), file) {
            if let Ok(k) = <[u8; 32]>::try_from(plain.expose().as_slice()) {
                return Ok(Secret::new(k));
            }
            return err("the data key is not 32 bytes");
        }
    }
    let rs: Vec<&str> = entries.iter().map(|(r, _)| r.as_str()).collect();
    err(format!(
        "none of your age identities can open its data key\n  file's age recipients: {}\n  your public key(s): {}\n  identity sources tried: {}",
        rs.join(", "),
        keys.public_keys().join(", "),
        keys.sources_tried().join(", ")
    ))
}

struct Enc {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse_enc(s: &str) -> Option<Enc> {
    let inner = s.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.decode(v).ok();
    for part in inner.split(',') {
        let (k, v) = part.split_once(':')?;
        match k {
            "data" => data = Some(b64(v)?),
            "iv" => iv = Some(b64(v)?),
            "tag" => tag = Some(b64(v)?),
            "type" => kind = Some(v.to_string()),
            _ => return None,
        }
    }
    let (data, iv, tag, kind) = (data?, iv?, tag?, kind?);
    (iv.len() == 32 && tag.len() == 16).then_some(Enc {
        data,
        iv,
        tag,
        kind,
    })
}

fn open_value(key: &[u8; 32], enc: &Enc, aad: &str) -> Option<Secret<Vec<u8>>> {
    let c = Aes256Gcm32::new(key.into());
    let mut msg = enc.data.clone();
    msg.extend_from_slice(&enc.tag);
    c.decrypt(
        enc.iv.as_slice().into(),
        Payload {
            msg: &msg,
            aad: aad.as_bytes(),
        },
    )
    .ok()
    .map(Secret::new)
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// sops' `ToBytes` for a value as it stands in the (decrypted) tree.
pub(super) fn mac_bytes(v: &NodeV) -> Option<Vec<u8>> {
    Some(match v {
        NodeV::Str(s) => s.as_bytes().to_vec(),
        NodeV::Int(i) => i.to_string().into_bytes(),
        // Rust's shortest round-trip form without exponent, as Go's FormatFloat(f, 'f', -1).
        NodeV::Float(f) => f.to_string().into_bytes(),
        NodeV::Bool(true) => b"True".to_vec(),
        NodeV::Bool(false) => b"False".to_vec(),
        _ => return None,
    })
}

struct Walk<'a> {
    key: &'a [u8; 32],
    rules: &'a Rules,
    hash: Sha512,
    /// Top-level keys that held an encrypted value.
    secret: BTreeSet<String>,
    /// When rewriting: each value's `ENC[…]` by (path, type, plaintext), so an unchanged value
    /// keeps its ciphertext (sops' cipher stash does the same: diffs show only what changed).
    stash: Option<Stash>,
}

/// Old ciphertexts by (AAD path, type, plaintext); holds plaintext, so only in memory.
pub(super) type Stash = std::collections::HashMap<(String, String, Vec<u8>), String>;

/// What `decrypt_for_rewrite` keeps to write the file back: the data key, the old `sops:` block
/// and the stash of unchanged values.
pub(crate) struct Kept {
    pub key: Secret<[u8; 32]>,
    pub meta: Node,
    pub stash: Secret<Stash>,
}

impl Walk<'_> {
    fn node(&mut self, n: &mut Node, path: &mut Vec<String>) -> Result<(), SopsFail> {
        match &mut n.v {
            NodeV::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    path.push(k.key_string());
                    self.node(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            // List items add nothing to the path (sops' walkSlice).
            NodeV::Seq(items) => items.iter_mut().try_for_each(|i| self.node(i, path)),
            NodeV::Null => Ok(()),
            NodeV::Vault(_) => err(format!(
                "`{}`: an ansible-vault value inside a SOPS file",
                path.join(".")
            )),
            _ => self.leaf(n, path),
        }
    }

    fn leaf(&mut self, n: &mut Node, path: &[String]) -> Result<(), SopsFail> {
        let encrypted = self.rules.encrypted(path);
        if encrypted {
            let shown = path.join(".");
            let NodeV::Str(s) = &n.v else {
                return err(format!("`{shown}` should be encrypted but is a plain {}; the file was edited outside sops", n.kind_name()));
            };
            // sops leaves an empty string as it is.
            if !s.is_empty() {
                let enc = parse_enc(s).ok_or_else(|| {
                    SopsFail::Error(format!("`{shown}` should be encrypted but is not an ENC[AES256_GCM,…] value; the file was edited outside sops"))
                })?;
                let aad = format!("{}:", path.join(":"));
                let plain = open_value(self.key, &enc, &aad).ok_or_else(|| {
                    SopsFail::Error(format!(
                        "`{shown}` failed authentication (modified, or moved from another key)"
                    ))
                })?;
                if let Some(st) = &mut self.stash {
                    st.insert(
                        (aad.clone(), enc.kind.clone(), plain.expose().clone()),
                        s.clone(),
                    );
                }
                let text = std::str::from_utf8(plain.expose()).ok();
                let bad = || {
                    SopsFail::Error(format!(
                        "`{shown}`: the decrypted value is not a valid {}",
                        enc.kind
                    ))
                };
                n.v = match enc.kind.as_str() {
                    "str" | "bytes" | "time" => NodeV::Str(text.ok_or_else(bad)?.to_string()),
                    "int" => NodeV::Int(text.and_then(|t| t.parse().ok()).ok_or_else(bad)?),
                    "float" => NodeV::Float(text.and_then(|t| t.parse().ok()).ok_or_else(bad)?),
                    "bool" => NodeV::Bool(text.and_then(go_bool).ok_or_else(bad)?),
                    other => return err(format!("`{shown}`: unknown value type `{other}`")),
                };
            }
            if let Some(top) = path.first() {
                self.secret.insert(top.clone());
            }
        }
        if !self.rules.mac_only_encrypted || encrypted {
            let b = mac_bytes(&n.v).ok_or_else(|| {
                SopsFail::Error(format!(
                    "`{}`: a value sops cannot have written",
                    path.join(".")
                ))
            })?;
            self.hash.update(&b);
        }
        Ok(())
    }
}

/// Decrypt `doc` in place with the data key the age identities open, verify its MAC and drop the
/// `sops:` block. Returns the top-level keys that held encrypted values (they are secret).
pub fn decrypt(keys: &Keyring, file: &Path, doc: &mut Node) -> Result<BTreeSet<String>, SopsFail> {
    decrypt_inner(keys, file, doc, false).map(|(s, _)| s)
}

/// `decrypt`, also returning what is needed to write the file back (`vault edit`).
pub(crate) fn decrypt_for_rewrite(
    keys: &Keyring,
    file: &Path,
    doc: &mut Node,
) -> Result<Kept, SopsFail> {
    decrypt_inner(keys, file, doc, true).map(|(_, k)| k)
}

fn decrypt_inner(
    keys: &Keyring,
    file: &Path,
    doc: &mut Node,
    keep: bool,
) -> Result<(BTreeSet<String>, Kept), SopsFail> {
    let NodeV::Map(entries) = &mut doc.v else {
        return err("a SOPS vars file must be a map");
    };
    let Some(i) = entries.iter().position(|(k, _)| k.key_string() == "sops") else {
        return err("no `sops:` block");
    };
    let (_, meta) = entries.remove(i);
    let rules = rules(&meta)?;
    let key = data_key(keys, file, &meta)?;
    let last_modified = meta_str(&meta, "lastmodified").ok_or_else(|| {
        SopsFail::Error("`sops.lastmodified` is missing; the file was edited outside sops".into())
    })?;
    let stored_mac = meta_str(&meta, "mac").unwrap_or_default();
    let mut w = Walk {
        key: key.expose(),
        rules: &rules,
        hash: Sha512::new(),
        secret: BTreeSet::new(),
        stash: keep.then(Stash::new),
    };
    if rules.mac_only_encrypted {
        w.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut path = Vec::new();
    w.node(doc, &mut path)?;
    let computed: String = w
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mac_enc = parse_enc(&stored_mac).ok_or_else(|| {
        SopsFail::Error(
            "`sops.mac` is missing or malformed; the file was edited outside sops".into(),
        )
    })?;
    let stored = open_value(key.expose(), &mac_enc, &last_modified).ok_or_else(|| {
        SopsFail::Error(
            "the MAC failed authentication (`sops.mac` or `sops.lastmodified` was modified)".into(),
        )
    })?;
    if !ct_eq(stored.expose(), computed.as_bytes()) {
        return err("MAC mismatch: a value was modified, added or removed since sops wrote the file; refusing to use it");
    }
    let stash = Secret::new(w.stash.take().unwrap_or_default());
    let secret = std::mem::take(&mut w.secret);
    Ok((secret, Kept { key, meta, stash }))
}

/// Constant-time equality (the MAC is the one thing an attacker might probe byte by byte).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
