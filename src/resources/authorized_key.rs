//! `authorized_key`: SSH public keys in a user's `authorized_keys`.
//!
//! ```yaml
//! - authorized_key:
//!     user: deploy
//!     keys:
//!       - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… alice@laptop
//!       - 'from="10.0.0.0/8" ssh-rsa AAAAB3NzaC1yc2E… ci'
//!     exclusive: false      # true: these keys and nothing else (other lines are removed)
//!     # path: /etc/ssh/authorized_keys/deploy    # default: ~deploy/.ssh/authorized_keys
//! - authorized_key: {user: deploy, key: "ssh-ed25519 AAAA… old@laptop", state: absent}
//! ```
//!
//! Keys are compared by type and key data: comments never cause a change; different options
//! (`from=…`, `no-pty`) on the same key do. An entry may hold several lines (blank and `#` lines
//! are skipped). The file is written 0600 and owned by the user; a missing `~/.ssh` is created
//! 0700 and owned by the user (a missing directory of a custom `path` is created root-owned).

use base64::Engine as _;
use serde::Deserialize;

use super::support::fs::{check_path, meta_commands};
use super::user::check_name;
use super::ResourceError;
use super::{content_diff, q, DiffCx, PrepareCx, Resource};
use crate::facts::users::AuthorizedKeysQuery;
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};
use crate::secret::Secret;

pub struct AuthorizedKey;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub user: String,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub state: State,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// One authorized_keys line, split the way sshd reads it: `[options] type base64 [comment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub options: String,
    pub kind: String,
    pub blob: String,
    pub comment: String,
    /// The line as given (what gets written).
    pub line: String,
}

impl Key {
    /// What makes two keys the same key.
    fn id(&self) -> (&str, &str) {
        (&self.kind, &self.blob)
    }

    /// How a key is named in reasons and errors: its comment, else its type and data's tail.
    pub fn label(&self) -> String {
        if !self.comment.is_empty() {
            self.comment.clone()
        } else {
            format!(
                "{} …{}",
                self.kind,
                &self.blob[self.blob.len().saturating_sub(8)..]
            )
        }
    }
}

/// Whitespace-separated tokens with their byte offsets.
fn tokens(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(b)) => {
                out.push((b, &s[b..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(b) = start {
        out.push((b, &s[b..]));
    }
    out
}

/// The key data must decode and name the same type it is declared as (catches truncated pastes).
fn blob_matches(kind: &str, b64: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    if raw.len() < 4 {
        return false;
    }
    let n = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    if raw.len() < 4 + n || &raw[4..4 + n] != kind.as_bytes() {
        return false;
    }
    if kind.contains("-cert-") {
        // Certificates mix in fixed-width integers; the type prefix is what we can check.
        return true;
    }
    // Plain keys are a sequence of length-prefixed strings that must end exactly at the end.
    let mut rest = &raw[4 + n..];
    let mut fields = 0;
    while rest.len() >= 4 {
        let l = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + l {
            return false;
        }
        rest = &rest[4 + l..];
        fields += 1;
    }
    rest.is_empty() && fields > 0
}

/// Parse one line. The error names the key by its comment or first characters, never whole.
fn parse_key(line: &str) -> Result<Key, String> {
    let line = line.trim();
    let toks = tokens(line);
    let label = || match toks.len() {
        n if n >= 3 => format!("`{}`", toks[n - 1].1.chars().take(40).collect::<String>()),
        _ => format!("`{}…`", line.chars().take(16).collect::<String>()),
    };
    if line.contains("PRIVATE KEY") {
        return Err(format!(
            "key {} looks like a PRIVATE key: give the public one (the `.pub` file)",
            label()
        ));
    }
    for (i, (at, t)) in toks.iter().enumerate() {
        if !KEY_TYPES.contains(t) {
            continue;
        }
        let Some((_, b64)) = toks.get(i + 1) else {
            break;
        };
        if !blob_matches(t, b64) {
            return Err(format!("key {} is not a valid OpenSSH public key: its data does not decode to a `{t}` key (cut short when pasted?)", label()));
        }
        let comment = toks
            .get(i + 2)
            .map(|(c, _)| line[*c..].trim().to_string())
            .unwrap_or_default();
        return Ok(Key {
            options: line[..*at].trim().to_string(),
            kind: t.to_string(),
            blob: b64.to_string(),
            comment,
            line: line.to_string(),
        });
    }
    Err(format!("key {} is not an OpenSSH public key (expected `ssh-ed25519 AAAA… comment` or another known type)", label()))
}

/// The wanted keys, deduplicated (first wins), from `keys` and `key`.
pub fn wanted(spec: &Spec) -> Result<Vec<Key>, ResourceError> {
    let mut out: Vec<Key> = Vec::new();
    for entry in spec.keys.iter().chain(spec.key.iter()) {
        for l in entry
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let k = parse_key(l).map_err(ResourceError::Spec)?;
            if !out.iter().any(|o| o.id() == k.id()) {
                out.push(k);
            }
        }
    }
    if out.is_empty() {
        return Err(ResourceError::spec(
            "give at least one key in `keys` (or `key`)",
        ));
    }
    Ok(out)
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_name("user", &spec.user)?;
    if let Some(p) = &spec.path {
        check_path(p)?;
    }
    if spec.exclusive && spec.state == State::Absent {
        return Err(ResourceError::spec(
            "`exclusive` only applies to `state: present`",
        ));
    }
    wanted(spec).map(|_| ())
}

/// The new file body, and why it changed; None when nothing changes. Pure.
/// Errors only from `wanted`, which `prepare` already ran: a spec problem.
pub fn edit(spec: &Spec, old: &str) -> Result<Option<(String, Vec<String>)>, ResourceError> {
    let want = wanted(spec)?;
    let old_lines: Vec<&str> = old.lines().collect();
    let parsed: Vec<Option<Key>> = old_lines.iter().map(|l| parse_key(l).ok()).collect();
    let mut reasons = Vec::new();
    let mut out: Vec<String> = Vec::new();
    match spec.state {
        State::Absent => {
            for (l, k) in old_lines.iter().zip(&parsed) {
                match k {
                    Some(k) if want.iter().any(|w| w.id() == k.id()) => {
                        reasons.push(format!("key {} present", k.label()))
                    }
                    _ => out.push(l.to_string()),
                }
            }
        }
        State::Present if spec.exclusive => {
            for (l, k) in old_lines.iter().zip(&parsed) {
                match k {
                    Some(k) if want.iter().any(|w| w.id() == k.id()) => {}
                    Some(k) => reasons.push(format!("key {} not listed (exclusive)", k.label())),
                    None if l.trim().is_empty() => {}
                    None => reasons.push("a line that is not a key (exclusive)".into()),
                }
            }
            for w in &want {
                match parsed.iter().flatten().find(|k| k.id() == w.id()) {
                    None => reasons.push(format!("key {} missing", w.label())),
                    Some(k) if k.options != w.options => {
                        reasons.push(format!("options of key {} differ", w.label()))
                    }
                    Some(_) => {}
                }
                out.push(w.line.clone());
            }
            // Only the key set matters: comments and order alone are no reason to rewrite.
            if reasons.is_empty() {
                return Ok(None);
            }
        }
        State::Present => {
            out = old_lines.iter().map(|l| l.to_string()).collect();
            for w in &want {
                match parsed
                    .iter()
                    .position(|k| k.as_ref().is_some_and(|k| k.id() == w.id()))
                {
                    None => {
                        reasons.push(format!("key {} missing", w.label()));
                        out.push(w.line.clone());
                    }
                    Some(i) if parsed[i].as_ref().is_some_and(|k| k.options != w.options) => {
                        reasons.push(format!("options of key {} differ", w.label()));
                        out[i] = w.line.clone();
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if reasons.is_empty() {
        return Ok(None);
    }
    let mut body = out.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    Ok(Some((body, reasons)))
}

/// The one query `facts` asks and `diff` reads.
fn seen_query(spec: &Spec) -> AuthorizedKeysQuery {
    AuthorizedKeysQuery::new(&spec.user, spec.path.as_deref())
}

impl Resource for AuthorizedKey {
    const KIND: &'static str = "authorized_key";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        match &spec.path {
            Some(p) => format!("{}:{p}", spec.user),
            None => spec.user.clone(),
        }
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![seen_query(spec).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&seen_query(spec))?;
        if !seen.user_exists {
            if spec.state == State::Absent {
                return Ok(None);
            }
            // Not a plan error: a `user` earlier in the run may create the account, and apply
            // re-probes this resource after it. If nothing did, this step fails loudly.
            let msg = format!(
                "labctl: user {} does not exist (create it with a `user` resource before this one)",
                spec.user
            );
            return Ok(Some(Drift::new(
                Action::Create,
                vec!["user does not exist (yet?)".into()],
                vec![Step::sh(format!("echo {} >&2; exit 1", q(&msg)))],
            )));
        }
        let file = &seen.file;
        let path = seen.path.as_str();
        if file.exists && file.kind != crate::facts::file::FileKind::File {
            return Err(ResourceError::Host(format!(
                "{path} is a {} on the host, not a file; set `path` to the real file",
                file.kind
            )));
        }
        let old: &[u8] = match (&file.content, file.exists) {
            (Some(c), _) => c,
            (None, false) => b"",
            (None, true) => {
                return Err(ResourceError::Host(format!(
                    "{path} is larger than 256 KiB; that is not an authorized_keys file"
                )))
            }
        };
        let old_text = std::str::from_utf8(old)
            .map_err(|_| format!("{path} is not UTF-8 text"))
            .map_err(ResourceError::Host)?;
        let (user, group) = (spec.user.as_str(), seen.primary.as_str());
        let Some((body, reasons)) = edit(spec, old_text)? else {
            if !file.exists {
                return Ok(None);
            }
            let mut reasons = Vec::new();
            let fix_owner = (file.owner != user).then(|| {
                reasons.push(format!("owner {} → {user}", file.owner));
                user
            });
            let fix_group = (file.group != group).then(|| {
                reasons.push(format!("group {} → {group}", file.group));
                group
            });
            let fix_mode = (file.mode != "0600").then(|| {
                reasons.push(format!("mode {} → 0600", file.mode));
                "0600"
            });
            if reasons.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Drift::new(
                Action::Update,
                reasons,
                vec![Step::sh(meta_commands(
                    path, fix_owner, fix_group, fix_mode, false,
                ))],
            )));
        };
        if spec.state == State::Absent && !file.exists {
            return Ok(None);
        }
        let dir = std::path::Path::new(path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "/".into());
        let mkdir = if spec.path.is_none() {
            // sshd's StrictModes rejects a ~/.ssh others can write to.
            format!(
                "[ -d {d} ] || install -d -m 0700 -o {} -g {} -- {d}",
                q(user),
                q(group),
                d = q(&dir)
            )
        } else {
            format!("[ -d {d} ] || mkdir -p -- {d}", d = q(&dir))
        };
        let diff = content_diff(path, file.exists.then_some(old), body.as_bytes(), cx);
        let write = Step::Write {
            path: path.to_string(),
            content: Secret::new(body.into_bytes()),
            mode: Some("0600".into()),
            owner: Some(user.to_string()),
            group: Some(group.to_string()),
            validate: None,
            secret: cx.secret,
        };
        let action = if file.exists {
            Action::Update
        } else {
            Action::Create
        };
        Ok(Some(
            Drift::new(action, reasons, vec![Step::sh(mkdir), write]).with_diff(Some(diff)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    /// A well-formed ed25519 public key line whose key data is `seed` repeated.
    fn key(seed: u8, comment: &str) -> String {
        let mut raw = Vec::new();
        raw.extend_from_slice(&11u32.to_be_bytes());
        raw.extend_from_slice(b"ssh-ed25519");
        raw.extend_from_slice(&32u32.to_be_bytes());
        raw.extend_from_slice(&[seed; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        format!("ssh-ed25519 {b64} {comment}")
            .trim_end()
            .to_string()
    }

    const KEY: &str = "authorized_keys:bob:~";

    fn seen(body: Option<&str>, mode: &str, owner: &str) -> String {
        let head = "home /home/bob\nprimary bob\npath /home/bob/.ssh/authorized_keys\n";
        match body {
            None => format!("{head}absent\n"),
            Some(b) => format!(
                "{head}stat regular file|{mode}|{owner}|bob|{}\nsha256 {}\ncontent {}\n",
                b.len(),
                crate::digest::sha256_hex(b.as_bytes()),
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        }
    }

    fn yaml(keys: &[String], extra: &str) -> String {
        let list: Vec<String> = keys.iter().map(|k| format!("  - '{k}'\n")).collect();
        format!("user: bob\nkeys:\n{}{extra}", list.concat())
    }

    fn body(d: &Drift) -> String {
        match d.steps.last() {
            Some(Step::Write {
                content,
                mode,
                owner,
                group,
                ..
            }) => {
                assert_eq!(
                    (mode.as_deref(), owner.as_deref(), group.as_deref()),
                    (Some("0600"), Some("bob"), Some("bob"))
                );
                String::from_utf8(content.expose().clone()).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absent_file_is_created_with_its_directory() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice@laptop")], ""));
        let d = AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(None, "", ""))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.reasons, vec!["key alice@laptop missing"]);
        assert_eq!(scripts(&d), "[ -d /home/bob/.ssh ] || install -d -m 0700 -o bob -g bob -- /home/bob/.ssh\n<write /home/bob/.ssh/authorized_keys>");
        assert_eq!(body(&d), format!("{}\n", key(1, "alice@laptop")));
    }

    #[test]
    fn present_is_in_sync_whatever_the_comment() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice@new-laptop")], ""));
        let old = format!("{}\n{}\n", key(2, "other"), key(1, "alice@old"));
        assert!(
            AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(Some(&old), "600", "bob"))]), &cx())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn missing_key_is_appended_and_others_kept() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice"), key(3, "carol")], ""));
        let old = format!("# managed by hand\n{}\n{}", key(2, "other"), key(1, ""));
        let d = AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(Some(&old), "600", "bob"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["key carol missing"]);
        assert_eq!(
            body(&d),
            format!(
                "# managed by hand\n{}\n{}\n{}\n",
                key(2, "other"),
                key(1, ""),
                key(3, "carol")
            )
        );
        assert!(d.diff.unwrap().contains("+ssh-ed25519"));
    }

    #[test]
    fn changed_options_replace_the_line() {
        let opt = format!("from=\"10.0.0.0/8\",no-pty {}", key(1, "ci"));
        let s = spec::<AuthorizedKey>(&yaml(std::slice::from_ref(&opt), ""));
        let d = AuthorizedKey::diff(
            &s,
            &facts(&[(
                KEY,
                &seen(Some(&format!("{}\n", key(1, "ci"))), "600", "bob"),
            )]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["options of key ci differ"]);
        assert_eq!(body(&d), format!("{opt}\n"));
    }

    #[test]
    fn exclusive_removes_everything_else() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice")], "exclusive: true\n"));
        let old = format!(
            "{}\n# note\n{}\n",
            key(1, "alice-old-comment"),
            key(2, "mallory")
        );
        let d = AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(Some(&old), "600", "bob"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            d.reasons,
            vec![
                "a line that is not a key (exclusive)",
                "key mallory not listed (exclusive)"
            ]
        );
        assert_eq!(body(&d), format!("{}\n", key(1, "alice")));
        // Exactly the listed keys already (comment differs): in sync.
        let old = format!("{}\n", key(1, "alice-old-comment"));
        assert!(
            AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(Some(&old), "600", "bob"))]), &cx())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn absent_state_removes_the_key() {
        let s = spec::<AuthorizedKey>(&format!(
            "user: bob\nkey: '{}'\nstate: absent\n",
            key(2, "mallory")
        ));
        let old = format!("{}\n{}\n", key(1, "alice"), key(2, "renamed"));
        let d = AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(Some(&old), "600", "bob"))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.reasons, vec!["key renamed present"]);
        assert_eq!(body(&d), format!("{}\n", key(1, "alice")));
        assert!(
            AuthorizedKey::diff(&s, &facts(&[(KEY, &seen(None, "", ""))]), &cx())
                .unwrap()
                .is_none()
        );
        assert!(AuthorizedKey::diff(&s, &facts(&[(KEY, "nouser\n")]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn wrong_owner_or_mode_is_fixed_without_rewriting() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice")], ""));
        let d = AuthorizedKey::diff(
            &s,
            &facts(&[(
                KEY,
                &seen(Some(&format!("{}\n", key(1, "a"))), "644", "root"),
            )]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["owner root → bob", "mode 0644 → 0600"]);
        assert_eq!(scripts(&d), "chown bob -- /home/bob/.ssh/authorized_keys && chmod 0600 -- /home/bob/.ssh/authorized_keys");
    }

    #[test]
    fn missing_user_fails_at_apply_not_at_plan() {
        let s = spec::<AuthorizedKey>(&yaml(&[key(1, "alice")], ""));
        let d = AuthorizedKey::diff(&s, &facts(&[(KEY, "nouser\n")]), &cx())
            .unwrap()
            .unwrap();
        assert!(
            scripts(&d).contains("user bob does not exist") && scripts(&d).ends_with("exit 1"),
            "{}",
            scripts(&d)
        );
    }

    #[test]
    fn bad_keys_are_named_by_comment_never_shown_whole() {
        let good = key(1, "alice");
        let cut = format!("{} bob@desk", &good[..40]);
        let e = check(&spec::<AuthorizedKey>(&yaml(
            std::slice::from_ref(&cut),
            "",
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`bob@desk`") && !e.contains(&cut[12..40]), "{e}");
        let e = check(&spec::<AuthorizedKey>(
            "user: bob\nkey: hunter2-not-a-key\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`hunter2-not-a-ke…`") && e.contains("not an OpenSSH public key"),
            "{e}"
        );
        let e = check(&spec::<AuthorizedKey>(
            "user: bob\nkey: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("PRIVATE") && !e.contains("b3Blbn"), "{e}");
        assert!(check(&spec::<AuthorizedKey>("user: bob\n"))
            .unwrap_err()
            .to_string()
            .contains("at least one key"));
        // Several keys in one entry (a file lookup), with comments and blank lines.
        let s = spec::<AuthorizedKey>(&format!(
            "user: bob\nkey: \"# team\\n{}\\n\\n{}\\n\"\n",
            key(1, "a"),
            key(2, "b")
        ));
        assert_eq!(wanted(&s).unwrap().len(), 2);
    }

    #[test]
    fn parses_options_with_quoted_spaces() {
        let k = parse_key(&format!(
            "command=\"echo hi there\",no-pty {}",
            key(4, "my key")
        ))
        .unwrap();
        assert_eq!(
            (k.options.as_str(), k.kind.as_str(), k.comment.as_str()),
            ("command=\"echo hi there\",no-pty", "ssh-ed25519", "my key")
        );
    }
}
