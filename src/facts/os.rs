//! Always probed: which OS, which user, which host. Cheap, and every plan wants it.

use super::{parse_err, FactError, FactQuery, Facts};

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

pub fn query() -> FactQuery {
    FactQuery::single(
        KEY,
        "[ -r /etc/os-release ] && . /etc/os-release; \
                 printf 'id=%s\\nlike=%s\\nversion=%s\\ncodename=%s\\n' \"$ID\" \"$ID_LIKE\" \"$VERSION_ID\" \"$VERSION_CODENAME\"; \
                 __u=$(uname -n -m) || __u=\"$(cat /etc/hostname) unknown\"; printf 'hostname=%s\\narch=%s\\nuid=%s\\n' \"${__u% *}\" \"${__u##* }\" \"$(id -u)\"; \
                 [ -d /run/systemd/system ] && echo systemd=1 || echo systemd=0",
    )
}

pub fn get(facts: &Facts) -> Result<OsFact, FactError> {
    parse(&facts.raw_answer(KEY)?.out)
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
}
