//! Exit codes (a documented contract) and source locations for error messages.

use std::fmt;
use std::path::{Path, PathBuf};

/// The exit codes labctl promises. Documented in `--help` and README; tests pin them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `plan`, also "no drift".
    Ok = 0,
    /// A step, a probe or a handler failed on at least one host.
    Failed = 1,
    /// `plan` only: changes are pending.
    Drift = 2,
    /// Bad input: inventory, site, role, template or command line. Nothing was contacted.
    BadInput = 3,
    /// The vault could not be opened: no key, wrong key, tampered or truncated file.
    Vault = 4,
    /// Refused for safety: stale saved plan, host key mismatch, host locked by another run.
    Refused = 5,
    /// Every failure was an unreachable host.
    Unreachable = 6,
    /// Interrupted by SIGINT.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Why a subcommand stopped early. Every subcommand returns `Result<Exit, CliError>`: `Ok` is
/// the outcome of a command that ran (drift, failed hosts included), `Err` a stop before or
/// instead of it. `main` turns either into the process's exit code, and nothing else does.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Already shown to the user (diagnostics, a list of missing programs): only the code is left.
    #[error("exit {}", .0.code())]
    Reported(Exit),
    /// Printed as `error: MESSAGE`.
    #[error("{message}")]
    Fail { exit: Exit, message: String },
    /// Unexpected, such as an I/O error on the controller: printed with its causes, exit 1.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError::Fail {
            exit,
            message: message.into(),
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::Reported(e) | CliError::Fail { exit: e, .. } => *e,
            CliError::Other(_) => Exit::Failed,
        }
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Other(e.into())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.into())
    }
}

/// A place in a file, 1-based, as editors count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    pub fn new(file: impl Into<PathBuf>, line: usize, col: usize) -> Self {
        Loc {
            file: file.into(),
            line,
            col,
        }
    }
    pub fn file_only(file: &Path) -> Self {
        Loc {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

/// One problem found in the user's input, with where it is. `check` collects many of these.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diag {
    pub loc: Option<Loc>,
    pub message: String,
    pub help: Option<String>,
    /// The host the problem is about, when it is one host's (the message names it too): how a
    /// run that compiles with each host's facts picks that host's problems, not by the text.
    pub host: Option<String>,
    /// A vault could not be opened or read (a wrong key or password, a tampered file): the run
    /// exits 4 (`Exit::Vault`), not 3.
    pub vault: bool,
}

impl Diag {
    pub fn at(loc: Loc, message: impl Into<String>) -> Self {
        Diag {
            loc: Some(loc),
            message: message.into(),
            help: None,
            host: None,
            vault: false,
        }
    }
    pub fn new(message: impl Into<String>) -> Self {
        Diag {
            loc: None,
            message: message.into(),
            help: None,
            host: None,
            vault: false,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// The problem is this host's.
    pub fn about(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }
    /// The problem is a vault's.
    pub fn vault(mut self) -> Self {
        self.vault = true;
        self
    }

    /// cargo-style rendering: the message, the place, the source line with a caret, the hint.
    /// `label` is the leading word, `error` (painted by the caller when it paints).
    pub fn render(&self, label: &str) -> String {
        let mut out = format!("{label}: {}", self.message);
        if let Some(loc) = &self.loc {
            out.push_str(&format!("\n  --> {loc}"));
            if let Some(src) = source_line(&loc.file, loc.line) {
                let width = loc.line.to_string().len();
                out.push_str(&format!(
                    "\n{:w$} |\n{} | {}\n{:w$} | {}^",
                    "",
                    loc.line,
                    src,
                    "",
                    " ".repeat(loc.col.saturating_sub(1)),
                    w = width
                ));
            }
        }
        if let Some(h) = &self.help {
            out.push_str(&format!("\n  = help: {h}"));
        }
        out
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc}: {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

fn source_line(file: &Path, line: usize) -> Option<String> {
    if line == 0 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    // Vault files are encrypted: never echo their lines (they are not plain text anyway).
    if file.extension().is_some_and(|e| e == "age") {
        return None;
    }
    text.lines().nth(line - 1).map(|l| l.to_string())
}

/// Many diagnostics at once: `check` reports all problems, not just the first.
#[derive(Debug, Clone, Default, thiserror::Error)]
pub struct Diags(pub Vec<Diag>);

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Diags {
    pub fn push(&mut self, d: Diag) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: Diags) {
        self.0.extend(other.0);
    }
    pub fn into_result(self) -> Result<(), Diags> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl From<Diag> for Diags {
    fn from(d: Diag) -> Self {
        Diags(vec![d])
    }
}
