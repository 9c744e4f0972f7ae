//! User and group facts: `getent` entries, group membership, a digest of the shadow hash, the
//! `authorized_keys` file a user's home points at, and whether a tree is owned by someone else.
//!
//! The shadow hash itself never leaves the host: `labctl facts` prints facts, so the probe sends
//! only the sha256 of the hash field and `user` compares it with the sha256 of the wanted hash.

use super::{file, parse_err, q, unexpected, Fact, FactError, FactQuery, Merge};

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
fn user_query(name: &str) -> FactQuery {
    let n = q(name);
    FactQuery::single(
        user_key(name),
        format!(
            // One `id` for the primary group and all groups (its `gid=N(name)` and
            // `groups=N(name),…` fields, cut by the shell; a group without a name shows as its
            // number, as `id -nG` prints it), and the shadow field read by the shell from
            // /etc/shadow: no getent, cut or sed.
            "if __lc_pw {n}; then printf 'passwd %s\\n' \"$e\"; \
             __lc_id {n}; __nm() {{ case $1 in *'('*) __v=${{1#*(}}; __v=${{__v%)}};; *) __v=$1;; esac; }}; \
             __g=${{__id#*gid=}}; __nm \"${{__g%% *}}\"; printf 'primary %s\\n' \"$__v\"; \
             __o=; __gs=${{__id#*groups=}}; __ifs=$IFS; IFS=,; for __x in $__gs; do __nm \"$__x\"; __o=\"$__o $__v\"; done; IFS=$__ifs; \
             printf 'groups%s\\n' \"$__o\"; \
             s=; while IFS=: read -r __u __h __r; do if [ \"$__u\" = {n} ]; then s=$__h; break; fi; done < /etc/shadow; \
             if [ -z \"$s\" ]; then echo 'shadow none'; else case $s in *[!!*]*) h=$(printf '%s' \"$s\" | sha256sum) && echo \"shadow ${{h%% *}}\";; *) printf 'shadow-locked %s\\n' \"$s\";; esac; fi; \
             else echo absent; fi"
        ),
    )
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
            // A locked or password-less account (`!`, `*`, `!*`): no secret in it, so the host
            // sends it as is (three processes fewer) and the controller hashes it, keeping the
            // fact the same as for a real password hash.
            "shadow-locked" if rest.trim().chars().all(|c| c == '!' || c == '*') => {
                f.shadow_sha256 = Some(crate::digest::sha256_hex(rest.trim().as_bytes()))
            }
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
fn group_query(name: &str) -> FactQuery {
    let n = q(name);
    FactQuery::single(
        group_key(name),
        format!("if e=$(getent group {n}); then printf 'group %s\\n' \"$e\"; else echo absent; fi"),
    )
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

/// A user's authorized_keys (at `path`, or in the home the host resolves). All of a probe's
/// are answered by one snippet (`Merge`), and each answer is split back into
/// `home …`, `primary …`, `path …` lines plus the file fact's own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKeysQuery {
    pub user: String,
    pub path: Option<String>,
}

impl AuthorizedKeysQuery {
    pub fn new(user: &str, path: Option<&str>) -> Self {
        AuthorizedKeysQuery {
            user: user.to_string(),
            path: path.map(String::from),
        }
    }
    fn arg(&self) -> String {
        format!("{}\n{}", self.user, self.path.as_deref().unwrap_or(""))
    }
}

impl Fact for AuthorizedKeysQuery {
    type Output = AuthorizedKeysFact;
    fn key(&self) -> String {
        format!(
            "authorized_keys:{}:{}",
            self.user,
            self.path.as_deref().unwrap_or("~")
        )
    }
    fn script(&self) -> String {
        authorized_keys_script(&[&self.arg()])
    }
    fn parse(&self, out: &str) -> Result<AuthorizedKeysFact, FactError> {
        parse_authorized_keys(&self.key(), out)
    }
    fn merge(&self) -> Option<Merge> {
        Some(Merge {
            family: "authorized_keys",
            arg: self.arg(),
            script: authorized_keys_script,
            split: authorized_keys_split,
        })
    }
}

/// Stand-in path spliced out of the file fact's snippet for the shell variable holding the real
/// one; it never reaches a host.
const PLACEHOLDER: &str = "/labctl-placeholder-path";

/// Per arg (`USER\nPATH`, PATH empty for the home's file): `@ak N`, then `nouser`, or the
/// home/primary/path lines and the file fact's merged answer for that one path.
fn authorized_keys_script(args: &[&str]) -> String {
    let file_script =
        file::merged_script(&[&format!("c{PLACEHOLDER}")]).replace(&q(PLACEHOLDER), "\"$__f\"");
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        let (user, path) = a.split_once('\n').unwrap_or((a, ""));
        let u = q(user);
        let set_path = if path.is_empty() {
            "__f=\"$__h/.ssh/authorized_keys\"".to_string()
        } else {
            format!("__f={}", q(path))
        };
        // The home is passwd's 6th field, cut by parameter expansion (no process); the passwd
        // entry and `id` are the prelude's, shared with a `user:` query of the same name.
        s.push_str(&format!(
            "echo '@ak {i}'; if __lc_pw {u}; then __h=${{e%:*}}; __h=${{__h##*:}}; {set_path}; \
             __lc_id {u}; __g=${{__id#*gid=}}; __g=${{__g%% *}}; case $__g in *'('*) __g=${{__g#*(}}; __g=${{__g%)}};; esac; \
             printf 'home %s\\nprimary %s\\npath %s\\n' \"$__h\" \"$__g\" \"$__f\"; {file_script}
             else echo nouser; fi\n"
        ));
    }
    s.push_str("echo '@ak end'");
    s
}

fn authorized_keys_split(args: &[&str], out: &str) -> Result<Vec<String>, super::SplitError> {
    if !out.lines().any(|l| l == "@ak end") {
        return Err("answer cut short".into());
    }
    let mut chunks: Vec<Vec<&str>> = Vec::new();
    for line in out.lines() {
        if line == "@ak end" {
            break;
        }
        if line.starts_with("@ak ") {
            chunks.push(Vec::new());
        } else if let Some(c) = chunks.last_mut() {
            c.push(line);
        }
    }
    if chunks.len() != args.len() {
        return Err(format!("answered {} of {} users", chunks.len(), args.len()).into());
    }
    chunks
        .into_iter()
        .map(|lines| {
            let mut head = String::new();
            let mut rest = String::new();
            let mut path = None;
            for l in lines {
                match l.split_once(' ').map(|(t, _)| t).unwrap_or(l) {
                    "nouser" | "home" | "primary" => head.push_str(&format!("{l}\n")),
                    "path" => {
                        path = Some(&l[5..]);
                        head.push_str(&format!("{l}\n"));
                    }
                    _ => rest.push_str(&format!("{l}\n")),
                }
            }
            if let Some(p) = path {
                head.push_str(&file::split(&[&format!("c{p}")], &rest)?.remove(0));
            }
            Ok(head)
        })
        .collect()
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
fn foreign_owned_query(path: &str, owner: Option<&str>, group: Option<&str>) -> FactQuery {
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
    FactQuery::single(
        format!("owned:{path}:{}:{}", owner.unwrap_or(""), group.unwrap_or("")),
        format!(
            "if [ -d {p} ] && [ ! -L {p} ]; then if x=$(find {p} \\( {expr} \\) -print -quit 2>/dev/null); then \
             if [ -n \"$x\" ]; then echo foreign; else echo clean; fi; else echo unknown; fi; else echo absent; fi"
        ),
    )
}

/// Some(true) when something under the tree needs a chown, None when the directory is absent.
fn parse_foreign_owned(k: &str, out: &str) -> Result<Option<bool>, FactError> {
    match out.trim() {
        "absent" => Ok(None),
        "clean" => Ok(Some(false)),
        // `unknown`: cannot tell (an owner created later in this run); a chown -R is harmless.
        "foreign" | "unknown" => Ok(Some(true)),
        other => Err(parse_err(
            k,
            format!(
                "unexpected answer `{}`",
                other.chars().take(60).collect::<String>()
            ),
        )),
    }
}

/// A user's passwd entry, groups and shadow digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    pub name: String,
}

/// A group's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQuery {
    pub name: String,
}

/// Whether anything under `path` is owned by another user or group than wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignOwnedQuery {
    pub path: String,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl UserQuery {
    pub fn new(name: &str) -> Self {
        UserQuery { name: name.into() }
    }
}

impl GroupQuery {
    pub fn new(name: &str) -> Self {
        GroupQuery { name: name.into() }
    }
}

impl ForeignOwnedQuery {
    pub fn new(path: &str, owner: Option<&str>, group: Option<&str>) -> Self {
        ForeignOwnedQuery {
            path: path.into(),
            owner: owner.map(String::from),
            group: group.map(String::from),
        }
    }
    fn raw(&self) -> FactQuery {
        foreign_owned_query(&self.path, self.owner.as_deref(), self.group.as_deref())
    }
}

impl Fact for UserQuery {
    type Output = UserFact;
    fn key(&self) -> String {
        user_key(&self.name)
    }
    fn script(&self) -> String {
        user_query(&self.name).script
    }
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<UserFact, FactError> {
        parse_user(&self.key(), out)
    }
}

impl Fact for GroupQuery {
    type Output = GroupFact;
    fn key(&self) -> String {
        group_key(&self.name)
    }
    fn script(&self) -> String {
        group_query(&self.name).script
    }
    fn inline(&self) -> bool {
        true
    }
    fn parse(&self, out: &str) -> Result<GroupFact, FactError> {
        parse_group(&self.key(), out)
    }
}

impl Fact for ForeignOwnedQuery {
    type Output = Option<bool>;
    fn key(&self) -> String {
        self.raw().key
    }
    fn script(&self) -> String {
        self.raw().script
    }
    fn parse(&self, out: &str) -> Result<Option<bool>, FactError> {
        parse_foreign_owned(&self.key(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;

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
    fn one_id_and_the_shells_read_agree_with_id_gn_id_ng_and_getent_shadow() {
        for user in [whoami(), "root".to_string(), "nobody".to_string()] {
            let qy = user_query(&user);
            let f = parse_user(&qy.key, &run_sh(&qy.script)).unwrap();
            assert_eq!(
                f.primary,
                run_sh(&format!("id -gn {user}")).trim(),
                "{user}"
            );
            let groups: Vec<String> = run_sh(&format!("id -nG {user}"))
                .split_whitespace()
                .map(String::from)
                .collect();
            assert_eq!(f.groups, groups, "{user}");
            let field = run_sh(&format!("getent shadow {user} | cut -d: -f2"));
            let field = field.trim_end_matches('\n');
            let want = (!field.is_empty()).then(|| crate::digest::sha256_hex(field.as_bytes()));
            assert_eq!(f.shadow_sha256, want, "{user}");
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
        let ask = |qy: &AuthorizedKeysQuery| {
            let out = run_sh(&qy.script());
            authorized_keys_split(&[&qy.arg()], &out)
                .map_err(|e| e.to_string())
                .and_then(|mut v| qy.parse(&v.remove(0)).map_err(|e| e.to_string()))
        };
        let qy = AuthorizedKeysQuery::new(&me, Some(p.to_str().unwrap()));
        let f = ask(&qy).unwrap();
        assert!(f.user_exists && f.file.exists, "{f:?}");
        assert_eq!(f.path, p.to_str().unwrap());
        assert_eq!(
            f.file.content.as_deref(),
            Some(&b"ssh-ed25519 AAAA x\n"[..])
        );

        let qy = AuthorizedKeysQuery::new("root", None);
        assert!(qy.script().contains("\"$__f\"") && !qy.script().contains(PLACEHOLDER));
        let f = ask(&qy);
        // Without root the stat of /root/.ssh may fail; with root it parses either way.
        if whoami() == "root" {
            let f = f.unwrap();
            assert!(f.path.ends_with("/.ssh/authorized_keys"), "{f:?}");
        }
        let qy = AuthorizedKeysQuery::new("labctl-no-such-user", None);
        assert!(!ask(&qy).unwrap().user_exists);
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
                f.get(&ForeignOwnedQuery::new(path, Some(o), None)).unwrap(),
                want,
                "{o}"
            );
        }
        let gone = d.path().join("nope");
        let qy = foreign_owned_query(gone.to_str().unwrap(), Some(&me), None);
        f.insert(&qy.key, &run_sh(&qy.script), 0);
        assert_eq!(
            f.get(&ForeignOwnedQuery::new(
                gone.to_str().unwrap(),
                Some(&me),
                None
            ))
            .unwrap(),
            None
        );
    }

    #[test]
    fn a_user_and_its_authorized_keys_share_one_getent_and_one_id() {
        // Wrappers first on PATH count the calls, then answer as the real programs.
        let (u, ak) = (
            UserQuery::new("root"),
            AuthorizedKeysQuery::new("root", None),
        );
        let p = crate::facts::probe::build(&[u.query(), ak.query()]);
        let (out, calls) = crate::facts::testutil::run_counting(&p.script, &["getent", "id"]);
        let facts = p.parse(&out).unwrap();
        assert_eq!(calls, "getent\nid\n");
        let user = facts.get(&u).unwrap();
        let keys = facts.get(&ak).unwrap();
        assert_eq!(
            (user.primary.as_str(), user.home.as_str()),
            ("root", "/root")
        );
        assert_eq!(
            (keys.user_exists, keys.primary.as_str(), keys.path.as_str()),
            (true, "root", "/root/.ssh/authorized_keys")
        );
    }
}
