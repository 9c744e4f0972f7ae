//! Questions on the terminal: `labctl init`'s answers and `apply`'s confirmation. Questions go
//! to stderr (stdout stays data); answers come from stdin, which must be a terminal.

use std::io::{BufRead, IsTerminal, Write};

/// True when a human can answer: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks `question`; an empty answer takes `default` when there is one. None on end of input.
pub fn ask(question: &str, default: Option<&str>) -> Option<String> {
    let mut err = std::io::stderr().lock();
    match default {
        Some(d) if !d.is_empty() => {
            let _ = write!(err, "{question} [{d}]: ");
        }
        _ => {
            let _ = write!(err, "{question}: ");
        }
    }
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).ok()? == 0 {
        return None;
    }
    let a = line.trim().to_string();
    Some(if a.is_empty() {
        default.unwrap_or_default().to_string()
    } else {
        a
    })
}

/// Like `ask`, with echo off (a password). The terminal's echo is restored before returning.
pub fn ask_hidden(question: &str) -> Option<crate::secret::Secret<String>> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails, and we only use it on success.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if have {
        let mut t = old;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        // SAFETY: a termios copied from the terminal's own, with one flag changed.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}: ");
    let _ = err.flush();
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    if n.ok()? == 0 {
        return None;
    }
    Some(crate::secret::Secret::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// Terraform's question: only `yes` goes ahead.
pub fn confirm(question: &str) -> bool {
    matches!(ask(question, None).as_deref(), Some("yes"))
}
