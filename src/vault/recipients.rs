//! The repo's `.age-recipients`: the public keys every vault is encrypted for.

use std::path::{Path, PathBuf};

use super::VaultError;

pub const RECIPIENTS_FILE: &str = ".age-recipients";

/// The nearest `.age-recipients` in `start` or one of its parents. A relative `start` is
/// resolved against the current directory first, so the walk does not stop at "".
pub fn find_recipients_file(start: &Path) -> Option<PathBuf> {
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let abs = if start.is_absolute() {
        start.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(start)
    };
    // Drop `.` components so messages name `/repo/.age-recipients`, not `/repo/./.age-recipients`.
    let abs: PathBuf = abs
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    abs.ancestors()
        .map(|d| d.join(RECIPIENTS_FILE))
        .find(|p| p.is_file())
}

/// One `age1…` public key per line; `#` comment lines and blank lines are allowed.
pub fn load_recipients(path: &Path) -> Result<Vec<age::x25519::Recipient>, VaultError> {
    let text = std::fs::read_to_string(path).map_err(|e| VaultError::io(path, e))?;
    parse_recipients(path, &text)
}

pub(crate) fn parse_recipients(
    path: &Path,
    text: &str,
) -> Result<Vec<age::x25519::Recipient>, VaultError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        // Columns count characters, as editors do.
        let col = line[..line.len() - body.len()].chars().count() + 1;
        let at = format!("{}:{}:{col}", path.display(), i + 1);
        let token = body.trim_end();
        if token.split_whitespace().count() > 1 {
            return Err(VaultError::Recipients { at, reason: "expected one age1… public key per line (comments go on their own line, starting with #)".into() });
        }
        let reason = if token.starts_with("AGE-SECRET-KEY-") {
            // Worth its own message: a secret key in a committed file must be rotated.
            "this is a SECRET key, not a public key: remove it now and treat the key as leaked (use the `# public key:` line of the key file)".to_string()
        } else if token.starts_with("ssh-") {
            "SSH recipients are not supported; list age1… public keys".to_string()
        } else if token.starts_with("age1") && token[4..].contains('1') {
            // Bech32 data never contains '1', so a second one means another HRP (age1yubikey1…).
            "only X25519 recipients (age1…) are supported, not plugin or post-quantum recipients"
                .to_string()
        } else {
            match token.parse::<age::x25519::Recipient>() {
                Ok(r) => {
                    out.push(r);
                    continue;
                }
                Err(e) => format!("invalid age public key: {e} (expected age1…)"),
            }
        };
        return Err(VaultError::Recipients { at, reason });
    }
    if out.is_empty() {
        return Err(VaultError::NoRecipients {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// For error messages: "the repo's recipients (FILE): a, b" or a note that none was found.
pub(crate) fn describe_for(file: &Path) -> String {
    let dir = file.parent().unwrap_or(Path::new("."));
    match find_recipients_file(dir) {
        None => format!("\n  no {RECIPIENTS_FILE} found above {}", file.display()),
        Some(p) => match load_recipients(&p) {
            Ok(rs) => {
                let list: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
                format!(
                    "\n  the repo's recipients ({}): {}",
                    p.display(),
                    list.join(", ")
                )
            }
            Err(e) => format!("\n  the repo's recipients file is unusable: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_keys() -> (String, String) {
        (super::super::keygen().1, super::super::keygen().1)
    }

    #[test]
    fn comments_blank_lines_and_indent() {
        let (a, b) = two_keys();
        let text = format!("# who can open the vaults\n\n{a}\n   # indented comment\n  {b}  \r\n");
        let rs = parse_recipients(Path::new(".age-recipients"), &text).unwrap();
        let got: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn bad_line_points_at_line_and_column() {
        let (a, _) = two_keys();
        let text = format!("# c\n{a}\n\n   age1notakey\n");
        let e = parse_recipients(Path::new("r/.age-recipients"), &text).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("r/.age-recipients:4:4: invalid age public key"),
            "{m}"
        );
    }

    #[test]
    fn secret_key_line_is_called_out() {
        let (k, _) = super::super::keygen();
        let secret_line = k.expose().lines().last().unwrap().to_string();
        let e = parse_recipients(Path::new("r"), &format!("{secret_line}\n")).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("r:1:1: this is a SECRET key"), "{m}");
        assert!(!m.contains(&secret_line));
    }

    #[test]
    fn two_keys_on_one_line_and_empty_file() {
        let (a, b) = two_keys();
        let e = parse_recipients(Path::new("r"), &format!("{a} {b}\n")).unwrap_err();
        assert!(e.to_string().starts_with("r:1:1: expected one age1"), "{e}");
        let e = parse_recipients(Path::new("r"), "# nobody\n").unwrap_err();
        assert!(matches!(e, VaultError::NoRecipients { .. }));
    }

    #[test]
    fn find_walks_up_and_stops() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(t.path().join("a").join(RECIPIENTS_FILE), "x").unwrap();
        assert_eq!(
            find_recipients_file(&deep),
            Some(t.path().join("a").join(RECIPIENTS_FILE))
        );
        let other = t.path().join("z");
        std::fs::create_dir_all(&other).unwrap();
        // Above the temp dir there may be a stray file (e.g. /tmp/.age-recipients); only check
        // that the walk does not pick up the sibling.
        assert_ne!(
            find_recipients_file(&other),
            Some(t.path().join("a").join(RECIPIENTS_FILE))
        );
    }
}
