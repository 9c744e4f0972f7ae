//! `labctl vault import-ansible FILE…`: ansible-vault values into the project's age vault.
//!
//! - An inline `KEY: !vault |…` (at any depth of a map) moves to the age vault as `vault_KEY`
//!   (nested keys joined with `_`, as Ansible's own vault_ convention), and its source lines
//!   become `KEY: "{{ vault_KEY }}"`: the var keeps its name and value, so nothing that uses it
//!   changes. A key already named `vault_…` keeps its name and its line is removed.
//! - A whole-file ansible vault (`vault.yml`) moves as it is: its vars keep their names and the
//!   file is removed.
//!
//! The age vault is `vault.yml.age` in the source's folder when that folder is a
//! `group_vars/NAME/` or `host_vars/NAME/` folder, else `NAME.yml.age` beside `NAME.yml`; an
//! existing one is decrypted, extended (a var already there is an error) and re-encrypted. The age
//! vault is written first, then the sources: a crash between the two leaves a value in both
//! places, never in neither. Nothing is written before the user has seen the list and said yes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::check_yaml;
use super::keys::Keyring;
use super::password::{PasswordFail, Passwords};
use super::{ansible, encrypt, VaultError};
use crate::error::{CliError, Exit};
use crate::fsutil::write_atomic;
use crate::secret::Secret;
use crate::yaml::{self, Node, NodeV, Vaulted};

/// What importing one source file does.
struct Move {
    source: PathBuf,
    target: PathBuf,
    /// New source text; None: the source is removed (a whole-file vault).
    new_source: Option<String>,
    /// Vars for the age vault, `name: value` YAML lines (or a whole decrypted document).
    vault_text: Secret<String>,
    /// For the summary: (line, from, to).
    moved: Vec<(usize, String, String)>,
}

/// What an import wrote: each age vault with its number of recipients, then each source
/// rewritten or removed.
pub struct Imported {
    pub vaults: Vec<(PathBuf, usize)>,
    pub sources: Vec<PathBuf>,
}

fn input(m: String) -> CliError {
    CliError::new(Exit::BadInput, m)
}

fn failed(m: String) -> CliError {
    CliError::new(Exit::Failed, m)
}

fn open(passwords: &Passwords, envelope: &str, at: &str) -> Result<Secret<String>, CliError> {
    let plain = passwords.open(envelope).map_err(|e| {
        CliError::from(VaultError::AnsibleVault(match e {
            PasswordFail::None(why) => format!("{at}: {why}"),
            PasswordFail::Error(why) => format!("{at}: ansible-vault: {why}"),
        }))
    })?;
    String::from_utf8(plain.into_inner())
        .map(Secret::new)
        .map_err(|_| input(format!("{at}: the decrypted value is not UTF-8 text")))
}

/// The age vault a source's values go to.
pub fn target_for(source: &Path) -> PathBuf {
    let dir = source.parent().unwrap_or(Path::new(""));
    let in_vars_folder = dir
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "group_vars" || n == "host_vars");
    if in_vars_folder {
        return dir.join("vault.yml.age");
    }
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".yml")
        .or_else(|| name.strip_suffix(".yaml"))
        .unwrap_or(&name);
    dir.join(format!("{stem}.yml.age"))
}

fn plan_file(passwords: &Passwords, source: &Path) -> Result<Option<Move>, CliError> {
    let text = std::fs::read_to_string(source)
        .map_err(|e| input(format!("cannot read {}: {e}", source.display())))?;
    let target = target_for(source);
    if ansible::is_envelope(&text) {
        let plain = open(passwords, &text, &source.display().to_string())?;
        let node = yaml::parse_node(source, plain.expose()).map_err(|d| {
            let line = d.loc.map_or(0, |l| l.line);
            input(format!(
                "{}: invalid YAML inside the ansible-vault file at line {line}",
                source.display()
            ))
        })?;
        let names: Vec<String> = match &node.v {
            NodeV::Map(m) => m.iter().map(|(k, _)| k.key_string()).collect(),
            NodeV::Null => vec![],
            _ => {
                return Err(input(format!(
                    "{}: the ansible-vault file does not hold a map of vars",
                    source.display()
                )))
            }
        };
        let body: String = plain
            .expose()
            .lines()
            .filter(|l| l.trim() != "---")
            .map(|l| format!("{l}\n"))
            .collect();
        return Ok(Some(Move {
            source: source.to_path_buf(),
            target,
            new_source: None,
            vault_text: Secret::new(body),
            moved: names.into_iter().map(|n| (0, n.clone(), n)).collect(),
        }));
    }
    let mut node = yaml::parse_node_vaults(source, &text).map_err(|d| input(d.to_string()))?;
    let mut found: Vec<(Vec<String>, usize, usize, Secret<String>)> = Vec::new();
    collect(&mut node, &mut Vec::new(), &mut found, source, passwords)?;
    if found.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut vault = String::new();
    let mut moved = Vec::new();
    // Bottom up, so earlier line numbers stay valid.
    for (path, line, col, value) in found.iter().rev() {
        let key = path.last().expect("a map value has a key");
        let var = if path.len() == 1 && key.starts_with("vault_") {
            key.clone()
        } else {
            format!("vault_{}", path.join("_"))
        };
        // Ansible's rule for a var name (inventory::valid_var_name holds it too; vault sits
        // below inventory, so it is spelled out here): a letter or `_`, then letters, digits, `_`.
        let mut chars = var.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(input(format!(
                "{}:{line}: `{var}` would not be a valid variable name; move this value by hand",
                source.display()
            )));
        }
        let indent = col - 1;
        let mut end = *line; // exclusive, 0-based after the key line
        while end < lines.len() {
            let l = &lines[end];
            let ind = l.len() - l.trim_start().len();
            // An envelope has no blank line: one ends the value (and is kept).
            if l.trim().is_empty() || ind <= indent {
                break;
            }
            end += 1;
        }
        let first = &lines[line - 1];
        let colon = first[indent..]
            .find(':')
            .map(|i| indent + i)
            .ok_or_else(|| {
                input(format!(
                    "{}:{line}: cannot find the key's `:`; move this value by hand",
                    source.display()
                ))
            })?;
        let replacement: Vec<String> = if var == *key {
            vec![]
        } else {
            vec![format!("{}: \"{{{{ {var} }}}}\"", &first[..colon])]
        };
        lines.splice(line - 1..end, replacement);
        vault.insert_str(
            0,
            &format!(
                "{var}: {}\n",
                serde_json::to_string(value.expose()).expect("a string serializes")
            ),
        );
        moved.insert(0, (*line, path.join("."), var));
    }
    let mut new_text = lines.join("\n");
    new_text.push('\n');
    // The rewritten file must still parse, with no vault value left.
    yaml::parse_node(source, &new_text).map_err(|d| {
        failed(format!(
            "rewriting {} would break it ({d}); nothing was changed: move these values by hand",
            source.display()
        ))
    })?;
    Ok(Some(Move {
        source: source.to_path_buf(),
        target,
        new_source: Some(new_text),
        vault_text: Secret::new(vault),
        moved,
    }))
}

/// Every `!vault` value that is a map value, opened, with its key path and the key's position.
fn collect(
    n: &mut Node,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, usize, usize, Secret<String>)>,
    source: &Path,
    passwords: &Passwords,
) -> Result<(), CliError> {
    match &mut n.v {
        NodeV::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.key_string());
                if let NodeV::Vault(Vaulted::Sealed(env)) = &v.v {
                    let at = format!("{}:{}", source.display(), k.line);
                    let plain = open(passwords, env, &at)?;
                    out.push((path.clone(), k.line, k.col, plain));
                } else {
                    collect(v, path, out, source, passwords)?;
                }
                path.pop();
            }
            Ok(())
        }
        NodeV::Seq(items) => {
            for i in items.iter_mut() {
                if i.has_vault() {
                    return Err(input(format!(
                        "{}:{}: an ansible-vault value inside a list; move it by hand",
                        source.display(),
                        i.line
                    )));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Show what would change (each line through `note`), ask (or take `yes`), then write: age
/// vaults first, then sources.
pub fn run(
    files: &[PathBuf],
    yes: bool,
    recipients: Option<&Path>,
    keys: &Keyring,
    passwords: &Passwords,
    recipients_for: impl Fn(Option<&Path>, &Path) -> Result<Vec<age::x25519::Recipient>, CliError>,
    note: &dyn Fn(&str),
) -> Result<Imported, CliError> {
    let mut done = Imported {
        vaults: Vec::new(),
        sources: Vec::new(),
    };
    let mut moves = Vec::new();
    for f in files {
        match plan_file(passwords, f)? {
            Some(m) => moves.push(m),
            None => note(&format!("{}: no ansible-vault value", f.display())),
        }
    }
    if moves.is_empty() {
        return Ok(done);
    }
    // Group by target, and build each target's new plaintext before asking anything.
    let mut by_target: BTreeMap<PathBuf, Vec<&Move>> = BTreeMap::new();
    for m in &moves {
        by_target.entry(m.target.clone()).or_default().push(m);
    }
    let mut targets: Vec<(PathBuf, Secret<Vec<u8>>, Vec<age::x25519::Recipient>)> = Vec::new();
    for (target, ms) in &by_target {
        let old = if target.exists() {
            keys.decrypt_file(target)?
        } else {
            Secret::new(Vec::new())
        };
        let mut text = String::from_utf8(old.expose().clone())
            .map_err(|_| input(format!("{}: not UTF-8 text", target.display())))?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for m in ms {
            text.push_str(m.vault_text.expose());
        }
        let text = Secret::new(text.into_bytes());
        check_yaml(&text).map_err(|p| {
            input(format!(
                "{}: the merged vault would not be valid YAML at line {} ({}): a var may already be in it; nothing was changed",
                target.display(),
                p.line,
                p.message
            ))
        })?;
        let rs = recipients_for(recipients, target)?;
        targets.push((target.clone(), text, rs));
    }

    for m in &moves {
        for (line, from, to) in &m.moved {
            let at = if *line == 0 {
                m.source.display().to_string()
            } else {
                format!("{}:{line}", m.source.display())
            };
            note(&format!("  {at}: {from} → {to} in {}", m.target.display()));
        }
        note(&match &m.new_source {
            Some(_) => format!(
                "  {}: rewritten to use the age vault's vars",
                m.source.display()
            ),
            None => format!(
                "  {}: removed (its vars move as they are)",
                m.source.display()
            ),
        });
    }
    if !yes {
        if !crate::prompt::interactive() {
            return Err(CliError::new(
                Exit::Refused,
                "not importing: stdin is not a terminal; pass --yes to import without asking",
            ));
        }
        if !crate::prompt::confirm("Import these values into the age vault? Only `yes` goes ahead")
        {
            return Err(CliError::new(Exit::Refused, "nothing imported"));
        }
    }
    for (target, text, rs) in &targets {
        let ct = encrypt(text.expose(), rs)?;
        let mode = std::fs::metadata(target)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o644);
        write_atomic(target, &ct, mode, false)
            .map_err(|e| failed(format!("cannot write {}: {e}", target.display())))?;
        note(&format!(
            "wrote {} for {} recipient(s)",
            target.display(),
            rs.len()
        ));
        done.vaults.push((target.clone(), rs.len()));
    }
    for m in &moves {
        match &m.new_source {
            Some(t) => {
                let mode = std::fs::metadata(&m.source)
                    .map(|x| std::os::unix::fs::PermissionsExt::mode(&x.permissions()) & 0o7777)
                    .unwrap_or(0o644);
                write_atomic(&m.source, t.as_bytes(), mode, false)
                    .map_err(|e| failed(format!("cannot write {}: {e}", m.source.display())))?
            }
            None => std::fs::remove_file(&m.source)
                .map_err(|e| failed(format!("cannot remove {}: {e}", m.source.display())))?,
        }
        note(&format!("updated {}", m.source.display()));
        done.sources.push(m.source.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_vars_layout() {
        assert_eq!(
            target_for(Path::new("inv/group_vars/all/main.yml")),
            PathBuf::from("inv/group_vars/all/vault.yml.age")
        );
        assert_eq!(
            target_for(Path::new("inv/group_vars/web.yml")),
            PathBuf::from("inv/group_vars/web.yml.age")
        );
        assert_eq!(
            target_for(Path::new("inv/host_vars/h1/vault.yml")),
            PathBuf::from("inv/host_vars/h1/vault.yml.age")
        );
    }

    #[test]
    fn inline_values_are_replaced_by_references() {
        let d = tempfile::tempdir().unwrap();
        let pw = d.path().join("pw");
        std::fs::write(&pw, "fixture-pw-1\n").unwrap();
        let inline = include_str!("../../tests/fixtures/secrets/ansible-vault/inline-1.1.yml");
        let nested: String = inline.lines().map(|l| format!("  {l}\n")).collect();
        let src = d.path().join("group_vars/all/main.yml");
        std::fs::create_dir_all(src.parent().unwrap()).unwrap();
        std::fs::write(
            &src,
            format!("# keep me\nbefore: 1\n{inline}db:\n  host: x\n{nested}after: 2\n"),
        )
        .unwrap();
        let m = plan_file(&Passwords::from_files(&[pw]), &src)
            .ok()
            .flatten()
            .expect("a move");
        assert_eq!(
            m.new_source.as_deref(),
            Some("# keep me\nbefore: 1\ndb_password: \"{{ vault_db_password }}\"\ndb:\n  host: x\n  db_password: \"{{ vault_db_db_password }}\"\nafter: 2\n")
        );
        assert_eq!(
            m.vault_text.expose(),
            "vault_db_password: \"CANARY-av-11-s3cr3t\"\nvault_db_db_password: \"CANARY-av-11-s3cr3t\"\n"
        );
        assert_eq!(m.target, d.path().join("group_vars/all/vault.yml.age"));
    }
}
