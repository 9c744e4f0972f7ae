//! ansible-vault passwords: `--vault-password-file` (repeatable), else
//! `$ANSIBLE_VAULT_PASSWORD_FILE`, else a prompt when stdin is a terminal. A password file that
//! is executable is run and its stdout is the password, as Ansible does (stderr and stdin are
//! left to the script so it can prompt). Passwords are read once, on first need, never before:
//! a run with no ansible-vault value never runs a script or prompts.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::ansible::{self, AnsibleVaultError};
use crate::secret::Secret;

pub const ENV_FILE: &str = "ANSIBLE_VAULT_PASSWORD_FILE";

/// Why a value could not be opened.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordFail {
    /// No password source at all (and no terminal to ask on).
    None(String),
    /// A source that is broken, a wrong password, a tampered or malformed value.
    Error(String),
}

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf, &'static str),
    Prompt,
}

/// Each source's (name, password), or why they could not be read.
type Loaded = Result<Vec<(String, Secret<Vec<u8>>)>, String>;

pub struct Passwords {
    sources: Vec<Source>,
    /// Filled on first use: each source's password, or why it could not be read.
    loaded: Mutex<Option<Loaded>>,
}

impl Passwords {
    /// The sources in force: the flags, else the env var, else a terminal prompt (if stdin is one).
    pub fn discover(files: &[PathBuf]) -> Passwords {
        let mut sources: Vec<Source> = files
            .iter()
            .map(|f| Source::File(f.clone(), "--vault-password-file"))
            .collect();
        if sources.is_empty() {
            if let Some(f) = std::env::var_os(ENV_FILE).filter(|v| !v.is_empty()) {
                sources.push(Source::File(PathBuf::from(f), ENV_FILE));
            }
        }
        if sources.is_empty() && crate::prompt::interactive() {
            sources.push(Source::Prompt);
        }
        Passwords {
            sources,
            loaded: Mutex::new(None),
        }
    }

    /// Sources given in code (tests, `import-ansible`).
    #[cfg(test)]
    pub fn from_files(files: &[PathBuf]) -> Passwords {
        Passwords {
            sources: files
                .iter()
                .map(|f| Source::File(f.clone(), "test"))
                .collect(),
            loaded: Mutex::new(None),
        }
    }

    pub fn no_password_reason() -> String {
        format!("no ansible-vault password given (pass --vault-password-file FILE or set {ENV_FILE}; labctl prompts only on a terminal)")
    }

    /// Open one envelope with the first password that fits.
    pub fn open(&self, envelope: &str) -> Result<Secret<Vec<u8>>, PasswordFail> {
        let env = ansible::parse(envelope).map_err(|e| PasswordFail::Error(e.to_string()))?;
        if self.sources.is_empty() {
            return Err(PasswordFail::None(Self::no_password_reason()));
        }
        let mut guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.load());
        }
        let pws = match guard.as_ref().expect("loaded above") {
            Ok(p) => p,
            Err(why) => return Err(PasswordFail::Error(why.clone())),
        };
        let mut last = AnsibleVaultError::Mac;
        for (_, pw) in pws {
            match env.open(pw.expose()) {
                Ok(plain) => return Ok(plain),
                Err(e) => last = e,
            }
        }
        let tried: Vec<&str> = pws.iter().map(|(o, _)| o.as_str()).collect();
        let id = env
            .vault_id
            .as_deref()
            .map(|i| format!(" (vault id `{i}`)"))
            .unwrap_or_default();
        Err(PasswordFail::Error(match last {
            AnsibleVaultError::Mac => format!(
                "cannot open the value{id}: wrong password, or the value was modified (HMAC mismatch); password(s) tried: {}",
                tried.join(", ")
            ),
            other => format!("cannot open the value{id}: {other}"),
        }))
    }

    fn load(&self) -> Loaded {
        let mut out = Vec::new();
        for s in &self.sources {
            match s {
                Source::File(p, origin) => {
                    let pw = read_password_file(p)
                        .map_err(|e| format!("{} (from {origin}): {e}", p.display()))?;
                    out.push((format!("{} (from {origin})", p.display()), pw));
                }
                Source::Prompt => out.push(("the terminal prompt".into(), prompt()?)),
            }
        }
        Ok(out)
    }
}

/// A plain file's content (whitespace stripped), or an executable's stdout (line ends stripped),
/// as ansible-core reads them. An empty password is refused, as Ansible does.
fn read_password_file(p: &Path) -> Result<Secret<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read the password file: {e}"))?;
    let pw = if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        // `pw.sh` must run as ./pw.sh, not be looked up in $PATH.
        let prog = if p.is_relative() {
            Path::new(".").join(p)
        } else {
            p.to_path_buf()
        };
        let out = std::process::Command::new(prog)
            .stdout(std::process::Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run the password script: {e}"))?;
        let stdout = Secret::new(out.stdout);
        if !out.status.success() {
            return Err(format!("the password script failed ({})", out.status));
        }
        let s = stdout.expose();
        let end = s.len()
            - s.iter()
                .rev()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
        let start = s[..end]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        Secret::new(s[start..end].to_vec())
    } else {
        let data = Secret::new(
            std::fs::read(p).map_err(|e| format!("cannot read the password file: {e}"))?,
        );
        Secret::new(data.expose().trim_ascii().to_vec())
    };
    if pw.expose().is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw)
}

/// Ask on the terminal without echo. Only reached when stdin is a terminal.
fn prompt() -> Result<Secret<Vec<u8>>, String> {
    let line =
        crate::prompt::ask_hidden("Vault password").ok_or("no vault password was entered")?;
    let pw = line
        .expose()
        .trim_end_matches(['\r', '\n'])
        .as_bytes()
        .to_vec();
    if pw.is_empty() {
        return Err("the vault password is empty".into());
    }
    Ok(Secret::new(pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_scripts_are_read_as_ansible_does() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "  hunter2 \n\n").unwrap();
        assert_eq!(read_password_file(&f).unwrap().expose(), b"hunter2");
        let s = d.path().join("pw.sh");
        std::fs::write(&s, "#!/bin/sh\nprintf ' from script \\n'\n").unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Only line ends are stripped from a script's stdout.
        assert_eq!(read_password_file(&s).unwrap().expose(), b" from script ");
        std::fs::write(&s, "#!/bin/sh\nexit 3\n").unwrap();
        assert!(read_password_file(&s).unwrap_err().contains("failed"));
        std::fs::write(&f, "\n").unwrap();
        assert!(read_password_file(&f).unwrap_err().contains("empty"));
        let e = read_password_file(&d.path().join("missing")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn no_source_is_its_own_failure() {
        let p = Passwords::from_files(&[]);
        let e = p.open("$ANSIBLE_VAULT;1.1;AES256\n6162\n").unwrap_err();
        // A malformed envelope is reported before the missing password.
        assert!(matches!(e, PasswordFail::Error(_)), "{e:?}");
    }
}
