//! Always probed: which OS, which user, which host. Cheap, and every plan wants it.

use super::{parse_err, Fact, FactError, Merge};

pub const KEY: &str = "os";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OsFact {
    /// `debian`, `ubuntu`, …
    pub id: String,
    /// `debian` for Debian and Ubuntu (ID_LIKE), like Ansible's os_family.
    pub family: String,
    pub version_id: String,
    pub codename: String,
    pub hostname: String,
    pub arch: String,
    pub uid: u32,
    pub systemd: bool,
}

/// The host's OS, name, architecture and user. Asked by every plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsQuery;

impl Fact for OsQuery {
    type Output = OsFact;
    fn key(&self) -> String {
        KEY.into()
    }
    fn script(&self) -> String {
        script(&[])
    }
    fn parse(&self, out: &str) -> Result<OsFact, FactError> {
        parse(out)
    }
    fn merge(&self) -> Option<Merge> {
        Some(Merge::inline("os", script))
    }
}

/// One process (`uname`); the uid comes from /proc/self/status by the shell's own `read`.
fn script(_: &[&str]) -> String {
    "[ -r /etc/os-release ] && . /etc/os-release; \
     printf 'id=%s\\nlike=%s\\nversion=%s\\ncodename=%s\\n' \"${ID:-}\" \"${ID_LIKE:-}\" \"${VERSION_ID:-}\" \"${VERSION_CODENAME:-}\"; \
     __u=$(uname -n -m) || __u=\"$(cat /etc/hostname) unknown\"; \
     __uid=; while read -r __k __v __r; do [ \"$__k\" = Uid: ] && __uid=$__v && break; done < /proc/self/status; \
     printf 'hostname=%s\\narch=%s\\nuid=%s\\n' \"${__u% *}\" \"${__u##* }\" \"$__uid\"; \
     if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi"
        .into()
}

pub fn parse(out: &str) -> Result<OsFact, FactError> {
    let mut f = OsFact::default();
    let mut like = String::new();
    for line in out.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "id" => f.id = v.to_string(),
            "like" => like = v.to_string(),
            "version" => f.version_id = v.to_string(),
            "codename" => f.codename = v.to_string(),
            "hostname" => f.hostname = v.to_string(),
            "arch" => f.arch = v.to_string(),
            "uid" => f.uid = v.parse().map_err(|_| parse_err(KEY, "bad uid"))?,
            "systemd" => f.systemd = v == "1",
            _ => {}
        }
    }
    f.family = if f.id == "debian" || like.split_whitespace().any(|l| l == "debian") {
        "debian".into()
    } else {
        f.id.clone()
    };
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ubuntu_is_debian_family() {
        let f = super::parse("id=ubuntu\nlike=debian\nversion=24.04\ncodename=noble\nhostname=h\narch=x86_64\nuid=0\nsystemd=1\n").unwrap();
        assert_eq!((f.family.as_str(), f.uid, f.systemd), ("debian", 0, true));
    }

    #[test]
    fn the_snippet_reads_this_machine() {
        use super::Fact;
        let out = crate::facts::testutil::run_sh(&super::OsQuery.script());
        let f = super::OsQuery.parse(&out).unwrap();
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout;
        assert_eq!(f.uid.to_string(), String::from_utf8_lossy(&uid).trim());
        assert_eq!(f.arch, std::env::consts::ARCH);
        assert!(!f.hostname.is_empty() && !f.hostname.contains(' '));
    }
}
