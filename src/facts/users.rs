//! User and group facts: `getent` entries, group membership, a digest of the shadow hash, the
//! `authorized_keys` file a user's home points at, and whether a tree is owned by someone else.
//!
//! The shadow hash itself never leaves the host: `labctl facts` prints facts, so the probe sends
//! only the sha256 of the hash field and `user` compares it with the sha256 of the wanted hash.

use super::{file, parse_err, q, unexpected, FactError, FactQuery, Facts};

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UserFact {
    pub exists: bool,
    pub uid: u32,
    pub gid: u32,
    /// The primary group's name (`id -gn`).
    pub primary: String,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// Every group the user is in (`id -nG`), primary included.
    pub groups: Vec<String>,
    /// sha256 (hex) of the shadow password field; None without a shadow entry.
    pub shadow_sha256: Option<String>,
}

impl UserFact {
    /// Supplementary groups: everything `id -nG` lists except the primary group.
    pub fn supplementary(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|g| **g != self.primary)
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct GroupFact {
    pub exists: bool,
    pub gid: u32,
    pub members: Vec<String>,
}

fn user_key(name: &str) -> String {
    format!("user:{name}")
}

fn group_key(name: &str) -> String {
    format!("group:{name}")
}

/// `passwd …`, `primary …`, `groups …`, `shadow <sha256>|none`, or `absent`.
pub fn user_query(name: &str) -> FactQuery {
    let n = q(name);
    FactQuery {
        key: user_key(name),
        script: format!(
            "if e=$(getent passwd {n}); then printf 'passwd %s\\n' \"$e\"; \
             printf 'primary %s\\n' \"$(id -gn {n})\"; printf 'groups %s\\n' \"$(id -nG {n})\"; \
             s=$(getent shadow {n} | cut -d: -f2); \
             if [ -n \"$s\" ]; then printf '%s' \"$s\" | sha256sum | cut -d' ' -f1 | sed 's/^/shadow /'; else echo 'shadow none'; fi; \
             else echo absent; fi"
        ),
    }
}

pub fn get_user(facts: &Facts, name: &str) -> Result<UserFact, FactError> {
    let k = user_key(name);
    parse_user(&k, &facts.get(&k)?.out)
}

pub fn parse_user(k: &str, out: &str) -> Result<UserFact, FactError> {
    let mut f = UserFact::default();
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "absent" => return Ok(UserFact::default()),
            "passwd" => {
                let p = parse_passwd(k, rest)?;
                f = UserFact {
                    exists: true,
                    groups: f.groups,
                    primary: f.primary,
                    shadow_sha256: f.shadow_sha256,
                    ..p
                };
            }
            "primary" => f.primary = rest.trim().to_string(),
            "groups" => f.groups = rest.split_whitespace().map(String::from).collect(),
            "shadow" => f.shadow_sha256 = (rest.trim() != "none").then(|| rest.trim().to_string()),
            "" => {}
            _ => return Err(unexpected(k, line)),
        }
    }
    if !f.exists {
        return Err(parse_err(k, "no answer (getent failed?)"));
    }
    Ok(f)
}

/// One `getent passwd` line: `name:x:uid:gid:gecos:home:shell`.
pub fn parse_passwd(k: &str, line: &str) -> Result<UserFact, FactError> {
    let p: Vec<&str> = line.trim_end().split(':').collect();
    if p.len() != 7 {
        return Err(parse_err(
            k,
            format!("unexpected passwd entry with {} fields", p.len()),
        ));
    }
    Ok(UserFact {
        exists: true,
        uid: p[2].parse().map_err(|_| parse_err(k, "bad uid"))?,
        gid: p[3].parse().map_err(|_| parse_err(k, "bad gid"))?,
        gecos: p[4].to_string(),
        home: p[5].to_string(),
        shell: p[6].to_string(),
        ..UserFact::default()
    })
}

/// `group name:x:gid:members` or `absent`.
pub fn group_query(name: &str) -> FactQuery {
    let n = q(name);
    FactQuery {
        key: group_key(name),
        script: format!(
            "if e=$(getent group {n}); then printf 'group %s\\n' \"$e\"; else echo absent; fi"
        ),
    }
}

pub fn get_group(facts: &Facts, name: &str) -> Result<GroupFact, FactError> {
    let k = group_key(name);
    parse_group(&k, &facts.get(&k)?.out)
}

pub fn parse_group(k: &str, out: &str) -> Result<GroupFact, FactError> {
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "absent" => return Ok(GroupFact::default()),
            "group" => {
                let p: Vec<&str> = rest.trim_end().split(':').collect();
                if p.len() != 4 {
                    return Err(parse_err(
                        k,
                        format!("unexpected group entry with {} fields", p.len()),
                    ));
                }
                return Ok(GroupFact {
                    exists: true,
                    gid: p[2].parse().map_err(|_| parse_err(k, "bad gid"))?,
                    members: p[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(String::from)
                        .collect(),
                });
            }
            "" => {}
            _ => return Err(unexpected(k, line)),
        }
    }
    Err(parse_err(k, "no answer (getent failed?)"))
}

/// A user's authorized_keys file, wherever their home is: the path is only known on the host,
/// so one snippet resolves it and then asks the ordinary file fact about it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuthorizedKeysFact {
    pub user_exists: bool,
    pub home: String,
    pub primary: String,
    /// The resolved file path (`HOME/.ssh/authorized_keys` unless a path was given).
    pub path: String,
    pub file: file::FileFact,
}

fn authorized_keys_key(user: &str, path: Option<&str>) -> String {
    format!("authorized_keys:{user}:{}", path.unwrap_or("~"))
}

/// Stand-in path spliced out of the file fact's snippet for the shell variable holding the real
/// one; it never reaches a host.
const PLACEHOLDER: &str = "/labctl-placeholder-path";

pub fn authorized_keys_query(user: &str, path: Option<&str>) -> FactQuery {
    let u = q(user);
    let set_path = match path {
        Some(p) => format!("__f={}", q(p)),
        None => "__f=\"$__h/.ssh/authorized_keys\"".to_string(),
    };
    let file_script = file::query(PLACEHOLDER, true)
        .script
        .replace(&q(PLACEHOLDER), "\"$__f\"");
    FactQuery {
        key: authorized_keys_key(user, path),
        script: format!(
            "if e=$(getent passwd {u}); then __h=$(printf '%s' \"$e\" | cut -d: -f6); {set_path}; \
             printf 'home %s\\nprimary %s\\npath %s\\n' \"$__h\" \"$(id -gn {u})\" \"$__f\"; {file_script}; \
             else echo nouser; fi"
        ),
    }
}

pub fn get_authorized_keys(
    facts: &Facts,
    user: &str,
    path: Option<&str>,
) -> Result<AuthorizedKeysFact, FactError> {
    let k = authorized_keys_key(user, path);
    parse_authorized_keys(&k, &facts.get(&k)?.out)
}

pub fn parse_authorized_keys(k: &str, out: &str) -> Result<AuthorizedKeysFact, FactError> {
    let mut f = AuthorizedKeysFact::default();
    let mut rest = String::new();
    for line in out.lines() {
        let (tag, val) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "nouser" => return Ok(AuthorizedKeysFact::default()),
            "home" => {
                f.user_exists = true;
                f.home = val.to_string();
            }
            "primary" => f.primary = val.to_string(),
            "path" => f.path = val.to_string(),
            _ => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    if !f.user_exists {
        return Err(parse_err(k, "no answer (getent failed?)"));
    }
    f.file = file::parse(k, &rest)?;
    Ok(f)
}

/// Whether anything under a directory is owned by another user or group than wanted (for
/// `directory` with `recurse: true`). Answers `clean`, `foreign`, `unknown` (find failed, e.g.
/// the owner does not exist yet) or `absent`.
pub fn foreign_owned_query(path: &str, owner: Option<&str>, group: Option<&str>) -> FactQuery {
    let p = q(path);
    let mut tests = Vec::new();
    if let Some(o) = owner {
        tests.push(format!("! -user {}", q(o)));
    }
    if let Some(g) = group {
        tests.push(format!("! -group {}", q(g)));
    }
    let expr = if tests.is_empty() {
        "-false".to_string()
    } else {
        tests.join(" -o ")
    };
    FactQuery {
        key: format!("owned:{path}:{}:{}", owner.unwrap_or(""), group.unwrap_or("")),
        script: format!(
            "if [ -d {p} ] && [ ! -L {p} ]; then if x=$(find {p} \\( {expr} \\) -print -quit 2>/dev/null); then \
             if [ -n \"$x\" ]; then echo foreign; else echo clean; fi; else echo unknown; fi; else echo absent; fi"
        ),
    }
}

/// Some(true) when something under the tree needs a chown, None when the directory is absent.
pub fn get_foreign_owned(
    facts: &Facts,
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<Option<bool>, FactError> {
    let k = foreign_owned_query(path, owner, group).key;
    match facts.get(&k)?.out.trim() {
        "absent" => Ok(None),
        "clean" => Ok(Some(false)),
        // `unknown`: cannot tell (an owner created later in this run); a chown -R is harmless.
        "foreign" | "unknown" => Ok(Some(true)),
        other => Err(parse_err(
            &k,
            format!(
                "unexpected answer `{}`",
                other.chars().take(60).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::testutil::run_sh;

    fn whoami() -> String {
        run_sh("id -un").trim().to_string()
    }

    #[test]
    fn reads_this_machines_root_entry() {
        let qy = user_query("root");
        let f = parse_user(&qy.key, &run_sh(&qy.script)).unwrap();
        assert!(f.exists);
        assert_eq!((f.uid, f.gid, f.primary.as_str()), (0, 0, "root"));
        assert!(f.groups.contains(&"root".to_string()), "{f:?}");
        assert!(f.home.starts_with('/'));
        // Readable only by root: as root the digest is there, otherwise `shadow none`.
        if whoami() == "root" {
            if let Some(s) = &f.shadow_sha256 {
                assert_eq!(s.len(), 64);
            }
        }
    }

    #[test]
    fn missing_user_and_group_are_absent() {
        let qy = user_query("labctl-no-such-user");
        assert!(!parse_user(&qy.key, &run_sh(&qy.script)).unwrap().exists);
        let qy = group_query("labctl-no-such-group");
        assert!(!parse_group(&qy.key, &run_sh(&qy.script)).unwrap().exists);
    }

    #[test]
    fn reads_this_machines_root_group() {
        let qy = group_query("root");
        let g = parse_group(&qy.key, &run_sh(&qy.script)).unwrap();
        assert_eq!((g.exists, g.gid), (true, 0));
    }

    #[test]
    fn parses_fixtures() {
        let f = parse_user("k", "passwd bob:x:1001:1001:Bob B,,,:/home/bob:/bin/bash\nprimary bob\ngroups bob sudo docker\nshadow none\n").unwrap();
        assert_eq!(
            (f.uid, f.home.as_str(), f.shell.as_str(), f.gecos.as_str()),
            (1001, "/home/bob", "/bin/bash", "Bob B,,,")
        );
        assert_eq!(f.supplementary(), vec!["sudo", "docker"]);
        assert_eq!(f.shadow_sha256, None);
        assert!(parse_user("k", "passwd bob:x:1\n").is_err());
        let g = parse_group("k", "group docker:x:998:bob,alice\n").unwrap();
        assert_eq!(
            (g.gid, g.members.clone()),
            (998, vec!["bob".to_string(), "alice".to_string()])
        );
        assert!(parse_group("k", "").is_err());
    }

    #[test]
    fn shadow_digest_is_of_the_field_without_newline() {
        // The probe pipes `printf '%s'` into sha256sum: same bytes as sha256_hex(hash) in Rust.
        let out = run_sh("printf '%s' '$6$salt$abc' | sha256sum | cut -d' ' -f1");
        assert_eq!(out.trim(), crate::digest::sha256_hex(b"$6$salt$abc"));
    }

    #[test]
    fn authorized_keys_resolve_the_home_on_the_host() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        std::fs::write(&p, "ssh-ed25519 AAAA x\n").unwrap();
        let me = whoami();
        let qy = authorized_keys_query(&me, Some(p.to_str().unwrap()));
        let f = parse_authorized_keys(&qy.key, &run_sh(&qy.script)).unwrap();
        assert!(f.user_exists && f.file.exists, "{f:?}");
        assert_eq!(f.path, p.to_str().unwrap());
        assert_eq!(
            f.file.content.as_deref(),
            Some(&b"ssh-ed25519 AAAA x\n"[..])
        );

        let qy = authorized_keys_query("root", None);
        assert!(qy.script.contains("\"$__f\"") && !qy.script.contains(PLACEHOLDER));
        let f = parse_authorized_keys(&qy.key, &run_sh(&qy.script));
        // Without root the stat of /root/.ssh may fail; with root it parses either way.
        if whoami() == "root" {
            let f = f.unwrap();
            assert!(f.path.ends_with("/.ssh/authorized_keys"), "{f:?}");
        }
        let qy = authorized_keys_query("labctl-no-such-user", None);
        assert!(
            !parse_authorized_keys(&qy.key, &run_sh(&qy.script))
                .unwrap()
                .user_exists
        );
    }

    #[test]
    fn foreign_owned_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), "x").unwrap();
        let path = d.path().to_str().unwrap();
        let me = whoami();
        let mut f = Facts::default();
        for (o, want) in [
            (me.as_str(), Some(false)),
            ("labctl-no-such-user", Some(true)),
        ] {
            let qy = foreign_owned_query(path, Some(o), None);
            f.insert(&qy.key, &run_sh(&qy.script), 0);
            assert_eq!(
                get_foreign_owned(&f, path, Some(o), None).unwrap(),
                want,
                "{o}"
            );
        }
        let gone = d.path().join("nope");
        let qy = foreign_owned_query(gone.to_str().unwrap(), Some(&me), None);
        f.insert(&qy.key, &run_sh(&qy.script), 0);
        assert_eq!(
            get_foreign_owned(&f, gone.to_str().unwrap(), Some(&me), None).unwrap(),
            None
        );
    }
}
