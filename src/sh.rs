//! The remote shell, at the ground floor: quoting, and the argv every remote script runs under.
//! Facts, resource steps, apply and the transport all build shell text; they share these two.

/// Quote a string for the remote shell.
pub fn q(s: &str) -> String {
    shlex::try_quote(s)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| format!("'{}'", s.replace('\0', "").replace('\'', r"'\''")))
}

/// The argv that runs `script` with `sh -c`: under `sudo -n` when `sudo` (never a password
/// prompt), and under coreutils `timeout` when `timeout_secs` is set, so the host itself stops a
/// hung script even if the connection is gone (`-k 10`: SIGKILL ten seconds after SIGTERM).
pub fn argv(script: &str, sudo: bool, timeout_secs: Option<u64>) -> Vec<String> {
    argv_in("sh", script, sudo, timeout_secs)
}

/// [`argv`] with another shell (`bash`, for a script that needs `read -t`).
pub fn argv_in(shell: &str, script: &str, sudo: bool, timeout_secs: Option<u64>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if sudo {
        v.extend(["sudo", "-n", "--"].map(String::from));
    }
    if let Some(secs) = timeout_secs {
        v.extend(["timeout".into(), "-k".into(), "10".into(), secs.to_string()]);
    }
    v.extend([shell.into(), "-c".into(), script.to_string()]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "two words", "it's", "$HOME", "a\nb", "", "-n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", q(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s, "{s:?}");
        }
    }

    #[test]
    fn argv_wraps_sudo_outside_timeout() {
        assert_eq!(
            argv("echo hi", true, Some(30)),
            ["sudo", "-n", "--", "timeout", "-k", "10", "30", "sh", "-c", "echo hi"]
        );
        assert_eq!(
            argv("echo hi", false, Some(5)),
            ["timeout", "-k", "10", "5", "sh", "-c", "echo hi"]
        );
        assert_eq!(argv("x", true, None), ["sudo", "-n", "--", "sh", "-c", "x"]);
        assert_eq!(argv("x", false, None), ["sh", "-c", "x"]);
    }
}
