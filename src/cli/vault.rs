//! `labctl vault …`: keygen, encrypt, decrypt, view, edit, rekey, get, import-ansible.
//!
//! Data (decrypted content, a public key, a value) goes to stdout, everything else to stderr,
//! both through the run's `Shell`; with `--json`, stdout is the one envelope every command prints
//! (`{"version": 1, "command": "vault get", "data": …}`). Failures are `CliError`s with their exit
//! code: a vault problem exits 4, bad input 3, a refusal 5, anything else 1.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::Global;
use crate::error::{CliError, Exit};
use crate::fsutil::write_atomic;
use crate::secret::Secret;
use crate::vault::{
    check_yaml, default_key_path, encrypt, find_recipients_file, keygen, load_recipients, Keyring,
    VaultError, YamlProblem, RECIPIENTS_FILE,
};

#[derive(Debug, clap::Subcommand)]
pub enum VaultCmd {
    /// Create an age identity (private key) file and print its public key
    ///
    /// The file is written 0600 (its directory 0700) in age-keygen format, so `age -d -i FILE`
    /// reads it too. An existing file is never overwritten (exit 5).
    Keygen {
        /// Where to write the key [default: $XDG_CONFIG_HOME/labctl/age.key or ~/.config/labctl/age.key]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Encrypt a plaintext YAML file into FILE.age for the repo's recipients
    ///
    /// Recipients come from the nearest .age-recipients above the output file, unless
    /// --recipients is given. The plaintext must be valid YAML. By default the plaintext file is
    /// kept (and a warning printed); --in-place deletes it once the encrypted file is safely on
    /// disk. An existing output file is only replaced with --force (else exit 5).
    ///
    /// With --sops the output is a SOPS file (NAME.sops.yaml beside NAME.yaml, or FILE itself
    /// with --in-place) that the real `sops -d` opens: recipients and which values are encrypted
    /// come from the nearest .sops.yaml's creation_rules, as sops picks them.
    Encrypt {
        /// Plaintext YAML file
        file: PathBuf,
        /// Recipients file (one age1… public key per line)
        #[arg(long, value_name = "FILE", conflicts_with = "sops")]
        recipients: Option<PathBuf>,
        /// Write SOPS format (age recipients from .sops.yaml creation_rules)
        #[arg(long)]
        sops: bool,
        /// Replace FILE by FILE.age: delete the plaintext after writing the encrypted file
        #[arg(long, conflicts_with = "out")]
        in_place: bool,
        /// Write the encrypted file here instead of FILE.age
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Replace an existing output file
        #[arg(long)]
        force: bool,
    },
    /// Decrypt a vault to stdout (--stdout) or to a 0600 file (--out)
    ///
    /// Without --stdout or --out nothing is decrypted (exit 3): secrets are printed only when
    /// asked for explicitly.
    Decrypt {
        /// Vault file (*.age)
        file: PathBuf,
        /// Print the plaintext on stdout
        #[arg(long, conflicts_with = "out")]
        stdout: bool,
        /// Write the plaintext to this file (mode 0600); never overwrites without --force
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Replace an existing OUT
        #[arg(long)]
        force: bool,
    },
    /// Print a vault's plaintext on stdout
    View {
        /// Vault file (*.age)
        file: PathBuf,
    },
    /// Edit a vault in $VISUAL / $EDITOR (default vi), then re-encrypt it
    ///
    /// The plaintext goes to a 0600 file in a private 0700 directory under $TMPDIR that is removed
    /// on every exit path. The result must be valid YAML, else the vault is left unchanged and
    /// the edits are discarded (exit 3). The vault is re-encrypted only if the content changed.
    /// A FILE that does not exist yet is created. A SOPS file (one with a `sops:` block, or a new
    /// NAME.sops.yaml) is edited as `sops edit` does: decrypted values in the editor, written back
    /// with its data key and rules (a new one with the .sops.yaml creation rule that matches it);
    /// unchanged values keep their ciphertext. Comments are not kept.
    Edit {
        /// Vault file (*.age)
        file: PathBuf,
        /// Recipients file [default: nearest .age-recipients above FILE]
        #[arg(long, value_name = "FILE")]
        recipients: Option<PathBuf>,
    },
    /// Re-encrypt vaults for the current .age-recipients (after adding or removing someone)
    ///
    /// Each file is re-encrypted for the .age-recipients nearest to it. Files that fail are
    /// reported and the others go on (exit 4 if any failed).
    Rekey {
        /// Vault files [default: every *.age under the current directory, skipping target/ and .git/]
        files: Vec<PathBuf>,
        /// Recipients file for all files [default: nearest .age-recipients above each file]
        #[arg(long, value_name = "FILE")]
        recipients: Option<PathBuf>,
    },
    /// Move ansible-vault values (inline `!vault` and whole-file vaults) into the age vault
    ///
    /// An inline `KEY: !vault |…` becomes `KEY: "{{ vault_KEY }}"` and `vault_KEY` goes to the age
    /// vault (`vault.yml.age` in a group_vars/NAME/ or host_vars/NAME/ folder, else NAME.yml.age
    /// beside NAME.yml); a whole-file vault's vars move as they are and the file is removed. The
    /// changes are listed and confirmed first; without a terminal, --yes is required (else exit
    /// 5). Passwords come from --vault-password-file, $ANSIBLE_VAULT_PASSWORD_FILE or a prompt.
    ImportAnsible {
        /// Vars files holding ansible-vault values
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not ask
        #[arg(long)]
        yes: bool,
        /// Recipients file [default: nearest .age-recipients above each age vault]
        #[arg(long, value_name = "FILE")]
        recipients: Option<PathBuf>,
    },
    /// Print one value from a vault, for scripts
    ///
    /// KEY is a dotted path (`db.password`, `users.0.name`). Strings, numbers and booleans are
    /// printed raw; maps and lists as JSON. A missing key exits 3.
    Get {
        /// Vault file (*.age)
        file: PathBuf,
        /// Dotted path to the value
        key: String,
    },
}

/// Bad command line or content (exit 3).
fn input(m: impl Into<String>) -> CliError {
    CliError::new(Exit::BadInput, m)
}

/// Refused for safety, e.g. it would overwrite a file (exit 5).
fn refused(m: impl Into<String>) -> CliError {
    CliError::new(Exit::Refused, m)
}

/// Anything else (exit 1): an editor that failed, a write error.
fn failed(m: impl Into<String>) -> CliError {
    CliError::new(Exit::Failed, m)
}

type R<T> = Result<T, CliError>;

pub fn run(g: &Global, cmd: VaultCmd) -> Result<Exit, CliError> {
    let vault_key = g.vault_key.as_deref();
    let o = Out(g);
    match cmd {
        VaultCmd::Keygen { out } => cmd_keygen(&o, out),
        VaultCmd::Encrypt {
            file,
            sops: true,
            in_place,
            out,
            force,
            ..
        } => cmd_encrypt_sops(&o, &file, in_place, out, force),
        VaultCmd::Encrypt {
            file,
            recipients,
            in_place,
            out,
            force,
            ..
        } => cmd_encrypt(
            &o,
            &file,
            recipients.as_deref(),
            in_place,
            out,
            force,
            vault_key,
        ),
        VaultCmd::Decrypt {
            file,
            stdout,
            out,
            force,
        } => cmd_decrypt(
            &o,
            "decrypt",
            &file,
            stdout,
            out.as_deref(),
            force,
            vault_key,
        ),
        VaultCmd::View { file } => cmd_decrypt(&o, "view", &file, true, None, false, vault_key),
        VaultCmd::Edit { file, recipients } => {
            cmd_edit(&o, &file, recipients.as_deref(), vault_key)
        }
        VaultCmd::Rekey { files, recipients } => {
            cmd_rekey(&o, files, recipients.as_deref(), vault_key)
        }
        VaultCmd::Get { file, key } => cmd_get(&o, &file, &key, vault_key),
        VaultCmd::ImportAnsible {
            files,
            yes,
            recipients,
        } => cmd_import(
            &o,
            &files,
            yes,
            recipients.as_deref(),
            vault_key,
            &g.vault_password_files,
        ),
    }
}

/// Where a vault command prints: notes and warnings on stderr, its data on stdout (the JSON
/// envelope under `--json`).
struct Out<'a>(&'a Global);

impl Out<'_> {
    fn note(&self, msg: &str) {
        self.0.sh.err(&format!("{msg}\n"));
    }

    fn warn(&self, msg: &str) {
        self.0.sh.warn(msg);
    }

    /// `text` on stdout, or `data` in the envelope under `--json`.
    fn data(&self, command: &str, text: Option<&str>, data: impl FnOnce() -> Value) -> R<Exit> {
        if self.0.json {
            self.0.sh.out(&crate::ui::json_envelope(
                &format!("vault {command}"),
                &data(),
            )?);
        } else if let Some(t) = text {
            self.0.sh.out(t);
        }
        Ok(Exit::Ok)
    }
}

fn write_err(path: &Path, e: std::io::Error) -> CliError {
    failed(format!("cannot write {}: {e}", path.display()))
}

fn cmd_keygen(o: &Out, out: Option<PathBuf>) -> R<Exit> {
    let path = match out {
        Some(p) => p,
        None => default_key_path().ok_or_else(|| {
            input("cannot find the config directory (HOME is not set); pass --out FILE")
        })?,
    };
    if path.exists() {
        return Err(refused(format!(
            "{} already exists; refusing to overwrite an identity (vaults encrypted for it would become unreadable)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| write_err(dir, e))?;
    }
    let (text, public) = keygen();
    write_atomic(&path, text.expose().as_bytes(), 0o600, true).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            refused(format!(
                "{} already exists; refusing to overwrite it",
                path.display()
            ))
        } else {
            write_err(&path, e)
        }
    })?;
    o.note(&format!("wrote a new age identity to {} (mode 0600; back it up: without it the vaults cannot be opened)", path.display()));
    o.note(&format!(
        "add its public key to the repo's {RECIPIENTS_FILE} and run `labctl vault rekey`:"
    ));
    o.data(
        "keygen",
        Some(&format!("{public}\n")),
        || json!({"file": path, "public_key": public.to_string()}),
    )
}

fn recipients_for(
    explicit: Option<&Path>,
    vault: &Path,
) -> R<(PathBuf, Vec<age::x25519::Recipient>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = vault
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            find_recipients_file(dir).ok_or_else(|| VaultError::NoRecipientsFile {
                start: dir.to_path_buf(),
            })?
        }
    };
    let rs = load_recipients(&path)?;
    Ok((path, rs))
}

fn looks_encrypted(data: &[u8]) -> bool {
    data.trim_ascii_start()
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        || data.starts_with(b"age-encryption.org/")
}

fn yaml_fail(what: &str, p: YamlProblem, tail: &str) -> CliError {
    let at = if p.line == 0 {
        String::new()
    } else if p.col == 0 {
        format!(":{}", p.line)
    } else {
        format!(":{}:{}", p.line, p.col)
    };
    input(format!("{what}{at}: invalid YAML: {}; {tail}", p.message))
}

fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn cmd_encrypt(
    o: &Out,
    file: &Path,
    recipients: Option<&Path>,
    in_place: bool,
    out: Option<PathBuf>,
    force: bool,
    vault_key: Option<&Path>,
) -> R<Exit> {
    let plain = Secret::new(
        std::fs::read(file).map_err(|e| input(format!("cannot read {}: {e}", file.display())))?,
    );
    if looks_encrypted(plain.expose()) {
        return Err(input(format!(
            "{} is already age-encrypted",
            file.display()
        )));
    }
    check_yaml(&plain)
        .map_err(|p| yaml_fail(&file.display().to_string(), p, "nothing was encrypted"))?;
    let out = out.unwrap_or_else(|| {
        let mut s = file.as_os_str().to_owned();
        s.push(".age");
        PathBuf::from(s)
    });
    if out.exists() && !force {
        return Err(refused(format!(
            "{} already exists; pass --force to replace it (or `labctl vault edit` it)",
            out.display()
        )));
    }
    let (rpath, rs) = recipients_for(recipients, &out)?;
    let ct = encrypt(plain.expose(), &rs)?;
    write_atomic(&out, &ct, mode_of(&out).unwrap_or(0o644), !force)
        .map_err(|e| write_err(&out, e))?;
    o.note(&format!(
        "encrypted {} → {} for {} recipient(s) from {}",
        file.display(),
        out.display(),
        rs.len(),
        rpath.display()
    ));
    warn_if_not_a_recipient(o, vault_key, &rs, &out);
    if in_place {
        std::fs::remove_file(file).map_err(|e| {
            failed(format!(
                "encrypted, but cannot remove the plaintext {}: {e}",
                file.display()
            ))
        })?;
        o.note(&format!("removed the plaintext {}", file.display()));
    } else {
        warn_plaintext_left(o, file);
    }
    o.data(
        "encrypt",
        None,
        || json!({"file": file, "out": out, "recipients": rs.len(), "plaintext_removed": in_place}),
    )
}

fn warn_plaintext_left(o: &Out, file: &Path) {
    o.warn(&format!(
        "the plaintext {} is still on disk: delete it (or use --in-place) and make sure it is never committed",
        file.display()
    ));
}

/// Encrypting for a set that excludes yourself is legal but usually a mistake worth a word.
fn warn_if_not_a_recipient(
    o: &Out,
    vault_key: Option<&Path>,
    rs: &[age::x25519::Recipient],
    out: &Path,
) {
    let Ok(keys) = Keyring::discover(vault_key) else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let listed: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
    if !keys.public_keys().iter().any(|k| listed.contains(k)) {
        o.warn(&format!(
            "none of your identities is a recipient: you will not be able to open {}",
            out.display()
        ));
    }
}

/// `decrypt`, and `view` (its `--stdout` form): `command` names it in the JSON envelope.
fn cmd_decrypt(
    o: &Out,
    command: &str,
    file: &Path,
    stdout: bool,
    out: Option<&Path>,
    force: bool,
    vault_key: Option<&Path>,
) -> R<Exit> {
    if !stdout && out.is_none() {
        return Err(input(format!(
            "refusing to decrypt {} without a destination: pass --stdout to print the secrets, or --out FILE to write them to a 0600 file",
            file.display()
        )));
    }
    let keys = Keyring::discover(vault_key)?;
    let plain = keys.decrypt_file(file)?;
    match out {
        Some(dest) => {
            if dest.exists() && !force {
                return Err(refused(format!(
                    "{} already exists; pass --force to replace it",
                    dest.display()
                )));
            }
            write_atomic(dest, plain.expose(), 0o600, !force).map_err(|e| write_err(dest, e))?;
            o.note(&format!(
                "decrypted {} → {} (mode 0600); delete it when done",
                file.display(),
                dest.display()
            ));
            o.data(command, None, || json!({"file": file, "out": dest}))
        }
        None if o.0.json => {
            let text = std::str::from_utf8(plain.expose()).map_err(|_| {
                input(format!(
                    "{}: the plaintext is not UTF-8 text, so it cannot go in JSON; use --out FILE",
                    file.display()
                ))
            })?;
            o.data(command, None, || json!({"file": file, "plaintext": text}))
        }
        None => {
            // The bytes as they are (not necessarily UTF-8); a closed pipe is a failure.
            o.0.sh
                .out_bytes(plain.expose())
                .map_err(|e| failed(format!("cannot write to stdout: {e}")))?;
            Ok(Exit::Ok)
        }
    }
}

fn cmd_import(
    o: &Out,
    files: &[PathBuf],
    yes: bool,
    recipients: Option<&Path>,
    vault_key: Option<&Path>,
    password_files: &[PathBuf],
) -> R<Exit> {
    let keys = Keyring::discover(vault_key)?;
    let passwords = crate::vault::password::Passwords::discover(password_files);
    let done = crate::vault::import::run(
        files,
        yes,
        recipients,
        &keys,
        &passwords,
        |r, t| recipients_for(r, t).map(|(_, rs)| rs),
        &|line| o.note(line),
    )?;
    o.data("import-ansible", None, || {
        json!({
            "vaults": done.vaults.iter().map(|(f, n)| json!({"file": f, "recipients": n})).collect::<Vec<_>>(),
            "sources": done.sources,
        })
    })
}

fn cmd_get(o: &Out, file: &Path, key: &str, vault_key: Option<&Path>) -> R<Exit> {
    let keys = Keyring::discover(vault_key)?;
    let plain = keys.decrypt_file(file)?;
    check_yaml(&plain).map_err(|p| {
        yaml_fail(
            &file.display().to_string(),
            p,
            "fix it with `labctl vault edit`",
        )
    })?;
    let text = std::str::from_utf8(plain.expose()).unwrap_or_default();
    let doc: Secret<serde_json::Value> = Secret::new(if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_saphyr::from_str(text)
            .map_err(|_| input(format!("{}: invalid YAML", file.display())))?
    });
    let mut cur = doc.expose();
    for (i, seg) in key.split('.').enumerate() {
        let next = match cur {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        };
        cur = next.ok_or_else(|| {
            let upto: Vec<&str> = key.split('.').take(i + 1).collect();
            input(format!(
                "{}: no value at `{}`",
                file.display(),
                upto.join(".")
            ))
        })?;
    }
    let shown = Secret::new(match cur {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => v.to_string(),
        v => serde_json::to_string(v).unwrap_or_default(),
    });
    o.data("get", Some(&format!("{}\n", shown.expose())), || {
        cur.clone()
    })
}

fn sops_fail(file: &Path, e: crate::vault::sops::SopsFail) -> CliError {
    use crate::vault::sops::SopsFail;
    match e {
        SopsFail::NoKey(m) | SopsFail::Error(m) => VaultError::Unsupported {
            file: file.to_path_buf(),
            detail: m,
        }
        .into(),
    }
}

/// `FILE.sops.yaml` for `FILE.yaml` (`.yml` kept), else `FILE.sops.yaml`.
fn sops_out(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = match name.rsplit_once('.') {
        Some((stem, ext @ ("yaml" | "yml"))) => format!("{stem}.sops.{ext}"),
        _ => format!("{name}.sops.yaml"),
    };
    file.with_file_name(new)
}

/// The creation rule for a new SOPS file at `out` (from the nearest .sops.yaml above it).
fn sops_rule(out: &Path) -> R<crate::vault::sops_write::CreationRule> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let cfg = crate::vault::sops_write::find_config(&abs).ok_or_else(|| {
        input(format!(
            "no .sops.yaml in {} or any parent directory: add one with creation_rules listing the age recipients (as sops needs)",
            abs.display()
        ))
    })?;
    crate::vault::sops_write::creation_rule(&cfg, out).map_err(|e| sops_fail(out, e))
}

fn parse_plain(file: &Path, plain: &Secret<Vec<u8>>) -> R<crate::yaml::Node> {
    let text = std::str::from_utf8(plain.expose())
        .map_err(|_| input(format!("{}: not UTF-8", file.display())))?;
    // Positions only: the parser's message could quote content.
    crate::yaml::parse_node(file, text).map_err(|d| {
        let at = d
            .loc
            .map(|l| format!(":{}:{}", l.line, l.col))
            .unwrap_or_default();
        input(format!(
            "{}{at}: invalid YAML for a SOPS file; nothing was written",
            file.display()
        ))
    })
}

fn cmd_encrypt_sops(
    o: &Out,
    file: &Path,
    in_place: bool,
    out: Option<PathBuf>,
    force: bool,
) -> R<Exit> {
    let plain = Secret::new(
        std::fs::read(file).map_err(|e| input(format!("cannot read {}: {e}", file.display())))?,
    );
    check_yaml(&plain)
        .map_err(|p| yaml_fail(&file.display().to_string(), p, "nothing was encrypted"))?;
    let doc = parse_plain(file, &plain)?;
    if crate::vault::sops::is_sops_document(&doc) {
        return Err(input(format!("{} is already a SOPS file", file.display())));
    }
    let out = if in_place {
        file.to_path_buf()
    } else {
        out.unwrap_or_else(|| sops_out(file))
    };
    if !in_place && out.exists() && !force {
        return Err(refused(format!(
            "{} already exists; pass --force to replace it (or `labctl vault edit` it)",
            out.display()
        )));
    }
    let rule = sops_rule(&out)?;
    let header = crate::vault::sops_write::Header::new(&rule).map_err(|e| sops_fail(&out, e))?;
    let text = crate::vault::sops_write::encrypt(&doc, &header, &crate::vault::sops_write::now())
        .map_err(|e| sops_fail(&out, e))?;
    write_atomic(&out, text.as_bytes(), mode_of(&out).unwrap_or(0o644), false)
        .map_err(|e| write_err(&out, e))?;
    o.note(&format!(
        "encrypted {} → {} (SOPS) for {} age recipient(s) from {}",
        file.display(),
        out.display(),
        rule.recipients.len(),
        rule.origin
    ));
    if !in_place {
        warn_plaintext_left(o, file);
    }
    o.data(
        "encrypt",
        None,
        || json!({"file": file, "out": out, "recipients": rule.recipients.len(), "sops": true}),
    )
}

/// `vault edit` of a SOPS file: as `sops edit`.
fn cmd_edit_sops(o: &Out, file: &Path, vault_key: Option<&Path>) -> R<Exit> {
    use crate::vault::sops_write::{encrypt as sops_encrypt, now, plaintext, Header};
    let (header, old) = if file.exists() {
        let keys = Keyring::discover(vault_key)?;
        let text = std::fs::read_to_string(file).map_err(|e| VaultError::io(file, e))?;
        let mut doc = crate::yaml::parse_node(file, &text).map_err(|d| input(d.to_string()))?;
        let kept = crate::vault::sops::decrypt_for_rewrite(&keys, file, &mut doc)
            .map_err(|e| sops_fail(file, e))?;
        let plain = plaintext(&doc).map_err(|e| sops_fail(file, e))?;
        (
            Header::kept(kept),
            Secret::new(plain.expose().as_bytes().to_vec()),
        )
    } else {
        let rule = sops_rule(file)?;
        (
            Header::new(&rule).map_err(|e| sops_fail(file, e))?,
            Secret::new(Vec::new()),
        )
    };
    let Some(new) = edited(o, file, &old, "the file")? else {
        return o.data("edit", None, || json!({"file": file, "changed": false}));
    };
    let doc = parse_plain(file, &new)?;
    let text = sops_encrypt(&doc, &header, &now()).map_err(|e| sops_fail(file, e))?;
    write_atomic(file, text.as_bytes(), mode_of(file).unwrap_or(0o644), false)
        .map_err(|e| write_err(file, e))?;
    o.note(&format!("updated {} (SOPS)", file.display()));
    o.data("edit", None, || json!({"file": file, "changed": true}))
}

/// The user's edit of `old` in a private temp copy: None (and said so) when nothing changed; the
/// new text only when it is YAML. `what` names what a refused edit leaves untouched.
fn edited(o: &Out, file: &Path, old: &Secret<Vec<u8>>, what: &str) -> R<Option<Secret<Vec<u8>>>> {
    let new = edit_in_tmp(file, old)?;
    if new.expose() == old.expose() {
        o.note(&format!("no changes; {} left as it was", file.display()));
        return Ok(None);
    }
    check_yaml(&new).map_err(|p| {
        yaml_fail(
            &format!("{} (edited copy)", file.display()),
            p,
            &format!("{what} was not changed and the edits were discarded"),
        )
    })?;
    Ok(Some(new))
}

fn is_sops_file(file: &Path) -> bool {
    if !file.exists() {
        return crate::vault::sops_write::sops_named(file);
    }
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| crate::yaml::parse_node(file, &t).ok())
        .is_some_and(|n| crate::vault::sops::is_sops_document(&n))
}

fn cmd_edit(o: &Out, file: &Path, recipients: Option<&Path>, vault_key: Option<&Path>) -> R<Exit> {
    if is_sops_file(file) {
        return cmd_edit_sops(o, file, vault_key);
    }
    let keys = Keyring::discover(vault_key)?;
    // Resolve recipients before the editor opens, so a missing file is not found after the work.
    let (_, rs) = recipients_for(recipients, file)?;
    let old = if file.exists() {
        keys.decrypt_file(file)?
    } else {
        Secret::new(Vec::new())
    };
    let Some(new) = edited(o, file, &old, "the vault")? else {
        return o.data("edit", None, || json!({"file": file, "changed": false}));
    };
    let ct = encrypt(new.expose(), &rs)?;
    write_atomic(file, &ct, mode_of(file).unwrap_or(0o644), false)
        .map_err(|e| write_err(file, e))?;
    o.note(&format!(
        "updated {} for {} recipient(s)",
        file.display(),
        rs.len()
    ));
    o.data(
        "edit",
        None,
        || json!({"file": file, "changed": true, "recipients": rs.len()}),
    )
}

/// The plaintext through the editor, in a private temp dir removed on every path.
fn edit_in_tmp(file: &Path, old: &Secret<Vec<u8>>) -> R<Secret<Vec<u8>>> {
    // The directory is 0700 and removed by Drop on every return path (and on unwinding).
    let dir = tempfile::Builder::new()
        .prefix("labctl-vault-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| failed(format!("cannot create a private temp directory: {e}")))?;
    // Keep the plaintext name (vault.yml) so editors pick YAML highlighting.
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vault.yml".into());
    let name = name
        .strip_suffix(".age")
        .filter(|n| !n.is_empty())
        .unwrap_or(&name)
        .to_string();
    let tmp = dir.path().join(&name);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| failed(format!("cannot create {}: {e}", tmp.display())))?;
        f.write_all(old.expose()).map_err(|e| write_err(&tmp, e))?;
    }

    run_editor(&tmp)?;

    let new = Secret::new(
        std::fs::read(&tmp)
            .map_err(|e| failed(format!("cannot read back the edited file: {e}")))?,
    );
    drop(dir);
    Ok(new)
}

fn run_editor(path: &Path) -> R<()> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    // `EDITOR="code --wait"` is common: split like a shell would.
    let words = shlex::split(&editor)
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| vec![editor.clone()]);
    let mut child = std::process::Command::new(&words[0])
        .args(&words[1..])
        .arg(path)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot start the editor `{editor}`: {e}; set $EDITOR; the vault was not changed"
            ))
        })?;
    // Ctrl-C in the editor reaches us too; dying here would skip the temp dir cleanup. The child
    // was spawned first so it keeps the default disposition.
    let status = {
        let _guard = IgnoreSigint::new();
        child.wait()
    };
    let status = status.map_err(|e| failed(format!("waiting for the editor: {e}")))?;
    if !status.success() {
        return Err(failed(format!(
            "the editor `{editor}` failed ({status}); the vault was not changed"
        )));
    }
    Ok(())
}

struct IgnoreSigint(libc::sighandler_t);

impl IgnoreSigint {
    fn new() -> Self {
        // SAFETY: swapping a signal disposition has no memory-safety preconditions.
        IgnoreSigint(unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) })
    }
}

impl Drop for IgnoreSigint {
    fn drop(&mut self) {
        if self.0 != libc::SIG_ERR {
            // SAFETY: restores the disposition saved in `new`.
            unsafe { libc::signal(libc::SIGINT, self.0) };
        }
    }
}

fn cmd_rekey(
    o: &Out,
    files: Vec<PathBuf>,
    recipients: Option<&Path>,
    vault_key: Option<&Path>,
) -> R<Exit> {
    let files = if files.is_empty() {
        let mut found = Vec::new();
        find_vaults(Path::new("."), &mut found)
            .map_err(|e| failed(format!("cannot list the current directory: {e}")))?;
        found.sort();
        if found.is_empty() {
            o.note("no *.age files under the current directory");
            return o.data("rekey", None, || json!({"files": []}));
        }
        found
    } else {
        files
    };
    let keys = Keyring::discover(vault_key)?;
    let mut worst = Exit::Ok;
    let mut report = Vec::new();
    for f in &files {
        let r = (|| -> R<usize> {
            let (_, rs) = recipients_for(recipients, f)?;
            let plain = keys.decrypt_file(f)?;
            let ct = encrypt(plain.expose(), &rs)?;
            write_atomic(f, &ct, mode_of(f).unwrap_or(0o644), false)
                .map_err(|e| write_err(f, e))?;
            Ok(rs.len())
        })();
        match r {
            Ok(n) => {
                o.note(&format!("rekeyed {} for {n} recipient(s)", f.display()));
                report.push(json!({"file": f, "recipients": n}));
            }
            Err(e) => {
                // Every file is tried; each failure is reported as it happens.
                o.0.sh.error(&e.to_string());
                report.push(json!({"file": f, "error": e.to_string()}));
                // A vault problem outranks a generic failure: it is the one the user must fix.
                if worst != Exit::Vault {
                    worst = e.exit();
                }
            }
        }
    }
    o.data("rekey", None, || json!({"files": report}))?;
    match worst {
        Exit::Ok => Ok(Exit::Ok),
        e => Err(CliError::Reported(e)),
    }
}

/// `*.age` files below `dir`, not following symlinks, skipping build output and git internals.
fn find_vaults(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let name = entry.file_name();
        let path = entry.path();
        if ty.is_dir() {
            if name != "target" && name != ".git" {
                find_vaults(&path, out)?;
            }
        } else if ty.is_file() && path.extension().is_some_and(|e| e == "age") {
            out.push(
                path.strip_prefix("./")
                    .map(Path::to_path_buf)
                    .unwrap_or(path),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vaults_but_not_in_target_or_git() {
        let t = tempfile::tempdir().unwrap();
        for p in [
            "a/x.yml.age",
            "b/c/y.age",
            "target/z.age",
            ".git/w.age",
            "a/not-a-vault.yml",
        ] {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let mut found = Vec::new();
        find_vaults(t.path(), &mut found).unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![t.path().join("a/x.yml.age"), t.path().join("b/c/y.age")]
        );
    }
}
