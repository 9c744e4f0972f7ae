//! `labctl seal`: vault values into a SealedSecret manifest for the apps repo Argo CD deploys.
//!
//! The format is the Sealed Secrets controller's (bitnami-labs/sealed-secrets, read in its
//! `pkg/crypto` and `pkg/apis/sealedsecrets/v1alpha1`): each value is sealed on its own as
//! `u16 big-endian length of the RSA ciphertext || RSA ciphertext || AES ciphertext`, where a fresh
//! 32-byte session key is RSA-OAEP(SHA-256)-encrypted for the controller's public key with the
//! scope as the OAEP label (`namespace/name` for the strict scope, the namespace for
//! namespace-wide, empty for cluster-wide), and the value is AES-256-GCM-sealed with that key and
//! an all-zero nonce (safe: each key seals one value). `spec.encryptedData.KEY` is its base64.
//!
//! Only the controller, holding the private key, can open the result; labctl never sees that key.
//! The public key comes from the controller's certificate, a file the user fetched once
//! (`kubeseal --fetch-cert`, or `labctl kubectl -- get --raw …/proxy/v1/cert.pem`): sealing then
//! needs no cluster access, and the certificate is public and can be committed beside the
//! inventory.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use rand::RngCore;
use rsa::pkcs8::DecodePublicKey;

use super::keys::Keyring;
use crate::error::{CliError, Exit};
use crate::secret::Secret;

/// Who may unseal: the same names as kubeseal's `--scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// Only a Secret of this name in this namespace (the default, and the safe one).
    Strict,
    /// Any name in this namespace.
    NamespaceWide,
    /// Any name in any namespace.
    ClusterWide,
}

impl Scope {
    /// The OAEP label binding a value to where it may be unsealed (sealed-secrets' `EncryptionLabel`).
    pub fn label(self, namespace: &str, name: &str) -> String {
        match self {
            Scope::Strict => format!("{namespace}/{name}"),
            Scope::NamespaceWide => namespace.to_string(),
            Scope::ClusterWide => String::new(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SealArgs {
    /// KEY=VAULT_PATH: the Secret's key and the dotted path of its value in the vault
    /// (`password=apps.web.db_password`); KEY alone takes the vault value of the same name
    #[arg(required = true, value_name = "KEY=VAULT_PATH")]
    pub data: Vec<String>,
    /// The vault holding the values: an age vault (`*.age`) or a SOPS file
    #[arg(long, value_name = "FILE")]
    pub vault: PathBuf,
    /// The controller's public certificate (PEM), from `kubeseal --fetch-cert` or
    /// `labctl kubectl -- get --raw /api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:http/proxy/v1/cert.pem`
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The Secret's name
    #[arg(long)]
    pub name: String,
    /// The Secret's namespace
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// The Secret's type
    #[arg(long, default_value = "Opaque")]
    pub r#type: String,
    /// Where the sealed value may be unsealed
    #[arg(long, value_enum, default_value = "strict")]
    pub scope: Scope,
    /// A label on the Secret the controller makes, KEY=VALUE (repeatable; Argo CD's
    /// repository Secrets need `argocd.argoproj.io/secret-type=repository`)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Write the manifest here instead of stdout (replaced if it exists: it holds no secret)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The controller's RSA public key from its certificate, refused when expired (as kubeseal does).
fn public_key_from_cert(pem: &str, now_unix: i64) -> Result<rsa::RsaPublicKey, String> {
    let der = pem_block(pem, "CERTIFICATE").ok_or(
        "no `-----BEGIN CERTIFICATE-----` block (expected the PEM `kubeseal --fetch-cert` prints)",
    )?;
    let cert = Der::new(&der);
    let (_, spki, not_after) = cert_parts(cert).ok_or("not an X.509 certificate")?;
    if let Some(t) = not_after {
        if t < now_unix {
            return Err(format!(
                "the certificate expired on {} (UTC); fetch the controller's current one",
                civil(t)
            ));
        }
    }
    rsa::RsaPublicKey::from_public_key_der(spki)
        .map_err(|e| format!("the certificate's key is not an RSA public key: {e}"))
}

fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A minimal DER reader: enough to find a certificate's SubjectPublicKeyInfo and notAfter.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

/// One DER element: its tag, its whole encoding and its contents.
type DerElement<'a> = (u8, &'a [u8], &'a [u8]);

impl<'a> Der<'a> {
    fn new(b: &'a [u8]) -> Self {
        Der(b)
    }

    /// The next element: (tag, whole encoding, contents), and the rest.
    fn next(self) -> Option<(DerElement<'a>, Der<'a>)> {
        let b = self.0;
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        Some(((tag, &b[..end], &b[hdr..end]), Der(&b[end..])))
    }
}

/// (tbsCertificate, subjectPublicKeyInfo DER, notAfter as Unix seconds).
fn cert_parts(d: Der<'_>) -> Option<(&[u8], &[u8], Option<i64>)> {
    let ((0x30, _, cert), _) = d.next()? else {
        return None;
    };
    let ((0x30, tbs_all, tbs), _) = Der(cert).next()? else {
        return None;
    };
    let mut r = Der(tbs);
    // version [0] EXPLICIT is optional.
    if r.0.first() == Some(&0xa0) {
        r = r.next()?.1;
    }
    let (_serial, r) = r.next()?;
    let (_sig_alg, r) = r.next()?;
    let (_issuer, r) = r.next()?;
    let ((0x30, _, validity), r) = r.next()? else {
        return None;
    };
    let (_subject, r) = r.next()?;
    let ((0x30, spki, _), _) = r.next()? else {
        return None;
    };
    let (_not_before, v) = Der(validity).next()?;
    let ((tag, _, t), _) = v.next()?;
    Some((tbs_all, spki, der_time(tag, t)))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as Unix seconds.
fn der_time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let days = days_from_civil(year, n(0)?, n(2)?);
    Some(days * 86400 + n(4)? * 3600 + n(6)? * 60 + n(8)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil(unix: i64) -> String {
    let z = unix.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One value sealed as the controller opens it (`crypto.HybridEncrypt`).
fn seal_value(
    key: &rsa::RsaPublicKey,
    plaintext: &[u8],
    label: &str,
    rng: &mut (impl rand::CryptoRng + RngCore),
) -> Result<Vec<u8>, String> {
    let session = Secret::new({
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        k
    });
    let padding = rsa::Oaep::new_with_label::<sha2::Sha256, _>(label);
    let rsa_ct = key
        .encrypt(rng, padding, session.expose())
        .map_err(|e| format!("RSA-OAEP: {e}"))?;
    let len = u16::try_from(rsa_ct.len()).map_err(|_| "RSA key too large".to_string())?;
    let aead = aes_gcm::Aes256Gcm::new(session.expose().into());
    let sealed = aead
        .encrypt(&[0u8; 12].into(), plaintext)
        .map_err(|_| "AES-GCM failed".to_string())?;
    let mut out = Vec::with_capacity(2 + rsa_ct.len() + sealed.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&rsa_ct);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The manifest kubeseal writes (`--format yaml`), keys in the order given.
pub fn manifest(
    name: &str,
    namespace: &str,
    type_: &str,
    scope: Scope,
    labels: &[(String, String)],
    encrypted: &[(String, String)],
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut annotations = String::new();
    match scope {
        Scope::Strict => {}
        Scope::NamespaceWide => {
            annotations =
                "  annotations:\n    sealedsecrets.bitnami.com/namespace-wide: \"true\"\n".into()
        }
        Scope::ClusterWide => {
            annotations =
                "  annotations:\n    sealedsecrets.bitnami.com/cluster-wide: \"true\"\n".into()
        }
    }
    let mut s = String::from(
        "---\n# Made by `labctl seal`; only the cluster's sealed-secrets controller can open it.\n",
    );
    s.push_str("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n");
    s.push_str(&annotations);
    s.push_str(&format!(
        "  name: {}\n  namespace: {}\nspec:\n  encryptedData:\n",
        q(name),
        q(namespace)
    ));
    for (k, v) in encrypted {
        s.push_str(&format!("    {}: {v}\n", q(k)));
    }
    s.push_str("  template:\n    metadata:\n");
    // The template carries the scope annotations too: the controller reads the scope there.
    s.push_str(&annotations.replace("\n  ", "\n      ").replacen(
        "  annotations",
        "      annotations",
        1,
    ));
    if !labels.is_empty() {
        s.push_str("      labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("        {}: {}\n", q(k), q(v)));
        }
    }
    s.push_str(&format!(
        "      name: {}\n      namespace: {}\n    type: {}\n",
        q(name),
        q(namespace),
        q(type_)
    ));
    s
}

fn input(m: impl Into<String>) -> CliError {
    CliError::new(Exit::BadInput, m.into())
}

/// The vault's content as JSON, opened with the user's age identities (age vault or SOPS file).
fn open_vault(keys: &Keyring, file: &Path) -> Result<Secret<serde_json::Value>, CliError> {
    let vault_err = |m: String| CliError::new(Exit::Vault, m);
    if file.extension().is_some_and(|e| e == "age") {
        let plain = keys
            .decrypt_file(file)
            .map_err(|e| vault_err(e.to_string()))?;
        let text = std::str::from_utf8(plain.expose())
            .map_err(|_| input(format!("{}: not UTF-8 YAML", file.display())))?;
        let node = crate::yaml::parse_node(file, text).map_err(|_| {
            input(format!(
                "{}: invalid YAML inside the vault (see `labctl vault view`)",
                file.display()
            ))
        })?;
        return Ok(Secret::new(node.to_json()));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| input(format!("cannot read {}: {e}", file.display())))?;
    let mut node = crate::yaml::parse_node(file, &text).map_err(|d| input(d.to_string()))?;
    if !super::sops::is_sops_document(&node) {
        return Err(input(format!(
            "{} is neither an age vault (*.age) nor a SOPS file: refusing to seal values kept in the clear",
            file.display()
        )));
    }
    super::sops::decrypt(keys, file, &mut node).map_err(|e| match e {
        super::sops::SopsFail::NoKey(m) | super::sops::SopsFail::Error(m) => {
            vault_err(format!("{}: {m}", file.display()))
        }
    })?;
    Ok(Secret::new(node.to_json()))
}

fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |cur, seg| match cur {
        serde_json::Value::Object(m) => m.get(seg),
        serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|n| a.get(n)),
        _ => None,
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Kubernetes object name: a DNS subdomain (Secrets) or label (namespaces).
fn dns_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Secret data key: `[-._a-zA-Z0-9]+`, at most 253.
fn data_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// A SealedSecret manifest, and the keys sealed into it.
pub struct Sealed {
    pub manifest: String,
    pub keys: Vec<String>,
}

/// Seal the vault values `args` names (`labctl seal`; `cli::seal` prints or writes it).
pub fn seal(args: &SealArgs, vault_key: Option<&Path>) -> Result<Sealed, CliError> {
    if !dns_name(&args.name, 253) {
        return Err(input(format!(
            "--name `{}` is not a valid Secret name (lower-case letters, digits, `-` and `.`)",
            args.name
        )));
    }
    if !dns_name(&args.namespace, 63) || args.namespace.contains('.') {
        return Err(input(format!(
            "--namespace `{}` is not a valid namespace",
            args.namespace
        )));
    }
    let mut pairs = Vec::new();
    for d in &args.data {
        let (k, p) = d.split_once('=').unwrap_or((d, d));
        if !data_key(k) {
            return Err(input(format!(
                "`{d}`: `{k}` is not a valid Secret key ([-._a-zA-Z0-9]+)"
            )));
        }
        if pairs.iter().any(|(x, _): &(String, String)| x == k) {
            return Err(input(format!("the key `{k}` is given twice")));
        }
        pairs.push((k.to_string(), p.to_string()));
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| input(format!("--label `{l}`: expected KEY=VALUE")))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let pem = std::fs::read_to_string(&args.cert).map_err(|e| {
        input(format!(
            "cannot read the certificate {}: {e}",
            args.cert.display()
        ))
    })?;
    let key = public_key_from_cert(&pem, now_unix())
        .map_err(|m| input(format!("{}: {m}", args.cert.display())))?;
    let keys =
        Keyring::discover(vault_key).map_err(|e| CliError::new(Exit::Vault, e.to_string()))?;
    let vault = open_vault(&keys, &args.vault)?;
    let label = args.scope.label(&args.namespace, &args.name);
    let mut rng = rand::rngs::OsRng;
    let mut encrypted = Vec::new();
    for (k, path) in &pairs {
        let v = lookup(vault.expose(), path).ok_or_else(|| {
            input(format!(
                "{}: no value at `{path}` (for key `{k}`)",
                args.vault.display()
            ))
        })?;
        let plain = Secret::new(match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => v.to_string(),
            _ => {
                return Err(input(format!(
                    "{}: `{path}` is a {} , not a single value",
                    args.vault.display(),
                    if v.is_null() { "null" } else { "map or list" }
                )))
            }
        });
        let ct = seal_value(&key, plain.expose().as_bytes(), &label, &mut rng)
            .map_err(|m| CliError::new(Exit::Failed, m))?;
        encrypted.push((
            k.clone(),
            base64::engine::general_purpose::STANDARD.encode(ct),
        ));
    }
    Ok(Sealed {
        manifest: manifest(
            &args.name,
            &args.namespace,
            &args.r#type,
            args.scope,
            &labels,
            &encrypted,
        ),
        keys: encrypted.into_iter().map(|(k, _)| k).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::DecodeRsaPrivateKey;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sealed-secrets")
                .join(name),
        )
        .unwrap()
    }

    /// The controller's side (`crypto.HybridDecrypt` / `singleDecrypt`), written from its Go
    /// source to prove what `seal_value` writes is what the controller opens.
    fn controller_open(
        key: &rsa::RsaPrivateKey,
        ct: &[u8],
        label: &str,
    ) -> Result<Vec<u8>, String> {
        if ct.len() < 2 {
            return Err("too short".into());
        }
        let n = u16::from_be_bytes([ct[0], ct[1]]) as usize;
        if ct.len() < n + 2 {
            return Err("too short".into());
        }
        let padding = rsa::Oaep::new_with_label::<sha2::Sha256, _>(label);
        let session = key
            .decrypt(padding, &ct[2..n + 2])
            .map_err(|e| e.to_string())?;
        let aead = aes_gcm::Aes256Gcm::new_from_slice(&session).map_err(|e| e.to_string())?;
        aead.decrypt(&[0u8; 12].into(), &ct[n + 2..])
            .map_err(|_| "AES-GCM authentication failed".into())
    }

    #[test]
    fn what_seal_writes_the_controller_opens_only_under_its_scope() {
        let key = public_key_from_cert(&fixture("cert.pem"), now_unix()).unwrap();
        let private = rsa::RsaPrivateKey::from_pkcs1_pem(&fixture("TEST-ONLY.key.pem")).unwrap();
        assert_eq!(
            rsa::RsaPublicKey::from(&private),
            key,
            "cert and key are a pair"
        );
        let label = Scope::Strict.label("apps", "web-db");
        assert_eq!(label, "apps/web-db");
        let ct = seal_value(&key, b"s3cret value", &label, &mut rand::rngs::OsRng).unwrap();
        // 2048-bit key: a 256-byte RSA block, then 12 bytes + 16-byte tag of AES-GCM.
        assert_eq!(&ct[..2], &[1, 0]);
        assert_eq!(ct.len(), 2 + 256 + 12 + 16);
        assert_eq!(
            controller_open(&private, &ct, "apps/web-db").unwrap(),
            b"s3cret value"
        );
        // Another name or namespace (a copy into another Secret) cannot be opened.
        assert!(controller_open(&private, &ct, "apps/other").is_err());
        assert!(controller_open(&private, &ct, "other/web-db").is_err());
        // A flipped bit in the AES part is refused.
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(controller_open(&private, &bad, "apps/web-db").is_err());
        // Each seal uses a fresh session key.
        let again = seal_value(&key, b"s3cret value", &label, &mut rand::rngs::OsRng).unwrap();
        assert_ne!(ct, again);
    }

    #[test]
    fn scopes_label_as_the_controller_does() {
        assert_eq!(Scope::NamespaceWide.label("ns", "n"), "ns");
        assert_eq!(Scope::ClusterWide.label("ns", "n"), "");
        let m = manifest(
            "n",
            "ns",
            "Opaque",
            Scope::NamespaceWide,
            &[],
            &[("k".into(), "QQ==".into())],
        );
        let v: serde_json::Value = serde_saphyr::from_str(&m).unwrap();
        assert_eq!(
            v["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"],
            "true"
        );
        assert_eq!(
            v["spec"]["template"]["metadata"]["annotations"]
                ["sealedsecrets.bitnami.com/namespace-wide"],
            "true"
        );
        assert_eq!(v["spec"]["encryptedData"]["k"], "QQ==");
    }

    #[test]
    fn the_manifest_is_a_sealed_secret_with_labels_on_the_template() {
        let m = manifest(
            "repo",
            "argocd",
            "Opaque",
            Scope::Strict,
            &[("argocd.argoproj.io/secret-type".into(), "repository".into())],
            &[("url".into(), "AgA=".into())],
        );
        let v: serde_json::Value = serde_saphyr::from_str(&m).unwrap();
        assert_eq!(v["kind"], "SealedSecret");
        assert_eq!(v["apiVersion"], "bitnami.com/v1alpha1");
        assert!(v["metadata"].get("annotations").is_none());
        let t = &v["spec"]["template"];
        assert_eq!(
            t["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        assert_eq!(t["metadata"]["name"], "repo");
        assert_eq!(t["type"], "Opaque");
    }

    #[test]
    fn certificates_are_read_and_expired_ones_refused() {
        let pem = fixture("cert.pem");
        // The fixture is valid until 2126: one day past its notAfter is refused.
        let der = pem_block(&pem, "CERTIFICATE").unwrap();
        let (_, _, not_after) = cert_parts(Der::new(&der)).unwrap();
        let not_after = not_after.unwrap();
        assert_eq!(civil(not_after)[..4].parse::<i64>().unwrap(), 2126);
        let e = public_key_from_cert(&pem, not_after + 86400).unwrap_err();
        assert!(e.contains("expired on 2126-"), "{e}");
        assert!(public_key_from_cert(&pem, not_after - 1).is_ok());
        // UTCTime: 49 is 2049, 50 is 1950 (RFC 5280).
        assert_eq!(
            der_time(0x17, b"490101000000Z"),
            Some(days_from_civil(2049, 1, 1) * 86400)
        );
        assert_eq!(
            der_time(0x17, b"500101000000Z"),
            Some(days_from_civil(1950, 1, 1) * 86400)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert!(public_key_from_cert("hello", 0)
            .unwrap_err()
            .contains("BEGIN CERTIFICATE"));
        let key_only = fixture("TEST-ONLY.key.pem");
        assert!(public_key_from_cert(&key_only, 0).is_err());
    }
}
