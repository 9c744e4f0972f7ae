//! `user`: a local account exists with these attributes, or is gone.
//!
//! ```yaml
//! - user:
//!     name: deploy
//!     uid: 1500                   # optional
//!     group: deploy               # primary group (must exist; omitted = useradd's default)
//!     groups: [sudo, docker]      # supplementary groups (must exist)
//!     append: true                # default: add missing groups, keep others; false = exactly these
//!     shell: /bin/bash
//!     home: /home/deploy          # changing it later does not move the files
//!     create_home: true           # default: true, false for `system: true`
//!     system: false               # only used when creating
//!     password_hash: "{{ vault.deploy_hash }}"   # a crypt hash (mkpasswd -m yescrypt), never a password
//! - user: {name: olduser, state: absent}   # userdel: the home directory is kept
//! ```
//!
//! The password hash is compared by sha256 (the probe never sends the host's hash back), and set
//! through `chpasswd -e` on stdin, so it appears in no command line and no plan.

use serde::Deserialize;

use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource};
use crate::facts::users::UserQuery;
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};
use crate::secret::Secret;

pub struct User;

pub use super::State;

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub append: bool,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default)]
    pub create_home: Option<bool>,
    #[serde(default)]
    pub system: bool,
    #[serde(default, deserialize_with = "deserialize_secret")]
    #[schemars(with = "Option<String>")]
    pub password_hash: Option<Secret<String>>,
    #[serde(default)]
    pub state: State,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Secret<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// Names that useradd/groupadd accept without `--badname`, and that are safe in a script.
pub fn check_name(field: &str, n: &str) -> Result<(), ResourceError> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || (c == '-' && i > 0)
                || (c == '$' && i == n.len() - 1)
        });
    if ok && !n.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ResourceError::spec(format!("{field} `{n}` is not a valid user/group name (letters, digits, `_`, `.`, `-`; at most 32; not all digits)")))
    }
}

fn check_abs(field: &str, p: &str) -> Result<(), ResourceError> {
    if !p.starts_with('/') || p.contains('\n') || p.contains(':') {
        return Err(ResourceError::spec(format!(
            "{field} `{p}` must be an absolute path without `:`"
        )));
    }
    Ok(())
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_name("name", &spec.name)?;
    if spec.state == State::Absent {
        return Ok(());
    }
    if let Some(g) = &spec.group {
        // A number is a gid: fine for useradd -g.
        if !g.chars().all(|c| c.is_ascii_digit()) || g.is_empty() {
            check_name("group", g)?;
        }
    }
    for g in spec.groups.iter().flatten() {
        check_name("groups", g)?;
    }
    if let Some(s) = &spec.shell {
        check_abs("shell", s)?;
    }
    if let Some(h) = &spec.home {
        check_abs("home", h)?;
    }
    if let Some(h) = &spec.password_hash {
        // The value is never quoted back: it may be a real hash, or a password pasted by mistake.
        let h = h.expose();
        let locked = h.starts_with('!') || h == "*";
        if !(h.starts_with('$') || locked) || h.contains(':') || h.chars().any(char::is_whitespace)
        {
            return Err(ResourceError::spec("password_hash must be a crypt hash like `$y$…` or `$6$…` (make one with `mkpasswd -m yescrypt`), not a password; its value is not shown here"));
        }
    }
    Ok(())
}

impl Resource for User {
    const KIND: &'static str = "user";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.name.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![UserQuery::new(&spec.name).query()]
    }

    fn diff(spec: &Spec, facts: &Facts, _cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&UserQuery::new(&spec.name))?;
        let n = q(&spec.name);
        if spec.state == State::Absent {
            if !seen.exists {
                return Ok(None);
            }
            return Ok(Some(Drift::new(
                Action::Remove,
                vec!["present".into()],
                vec![Step::sh(format!("userdel -- {n}"))],
            )));
        }
        if !seen.exists {
            let mut args = Vec::new();
            if spec.system {
                args.push("-r".to_string());
            }
            if let Some(u) = spec.uid {
                args.push(format!("-u {u}"));
            }
            if let Some(g) = &spec.group {
                args.push(format!("-g {}", q(g)));
            }
            if let Some(gs) = spec.groups.as_ref().filter(|g| !g.is_empty()) {
                args.push(format!("-G {}", q(&gs.join(","))));
            }
            if let Some(h) = &spec.home {
                args.push(format!("-d {}", q(h)));
            }
            if let Some(s) = &spec.shell {
                args.push(format!("-s {}", q(s)));
            }
            args.push(if spec.create_home.unwrap_or(!spec.system) {
                "-m".into()
            } else {
                "-M".into()
            });
            let mut steps = vec![Step::sh(format!("useradd {} -- {n}", args.join(" ")))];
            steps.extend(password_step(spec));
            return Ok(Some(Drift::new(
                Action::Create,
                vec!["absent".into()],
                steps,
            )));
        }

        let mut reasons = Vec::new();
        let mut args = Vec::new();
        if let Some(u) = spec.uid.filter(|u| *u != seen.uid) {
            reasons.push(format!("uid {} → {u}", seen.uid));
            args.push(format!("-u {u}"));
        }
        let primary = match &spec.group {
            Some(g) if *g != seen.primary && *g != seen.gid.to_string() => {
                reasons.push(format!("group {} → {g}", seen.primary));
                args.push(format!("-g {}", q(g)));
                g.clone()
            }
            _ => seen.primary.clone(),
        };
        if let Some(want) = &spec.groups {
            if spec.append {
                let missing: Vec<&String> =
                    want.iter().filter(|g| !seen.groups.contains(g)).collect();
                if !missing.is_empty() {
                    let list: Vec<&str> = missing.iter().map(|g| g.as_str()).collect();
                    reasons.push(format!("not in {}", list.join(", ")));
                    args.push(format!("-a -G {}", q(&list.join(","))));
                }
            } else {
                // The primary group shows up in `id -nG` once, whether or not it is also listed.
                let mut want: Vec<&str> = want
                    .iter()
                    .map(String::as_str)
                    .filter(|g| *g != primary)
                    .collect();
                want.sort_unstable();
                want.dedup();
                let mut have = seen.supplementary();
                have.retain(|g| *g != primary);
                have.sort_unstable();
                if want != have {
                    reasons.push(format!("groups {} → {}", show(&have), show(&want)));
                    args.push(format!("-G {}", q(&want.join(","))));
                }
            }
        }
        if let Some(s) = spec.shell.as_ref().filter(|s| **s != seen.shell) {
            reasons.push(format!("shell {} → {s}", seen.shell));
            args.push(format!("-s {}", q(s)));
        }
        if let Some(h) = spec.home.as_ref().filter(|h| **h != seen.home) {
            reasons.push(format!("home {} → {h}", seen.home));
            args.push(format!("-d {}", q(h)));
        }
        let mut steps = Vec::new();
        if !args.is_empty() {
            steps.push(Step::sh(format!("usermod {} -- {n}", args.join(" "))));
        }
        if let Some(h) = &spec.password_hash {
            if seen.shadow_sha256.as_deref()
                != Some(crate::digest::sha256_hex(h.expose().as_bytes()).as_str())
            {
                reasons.push("password hash differs".into());
                steps.extend(password_step(spec));
            }
        }
        if steps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Drift::new(Action::Update, reasons, steps)))
    }
}

fn show<S: AsRef<str>>(g: &[S]) -> String {
    if g.is_empty() {
        "(none)".into()
    } else {
        g.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(",")
    }
}

/// The hash goes on stdin: a command line is visible in the host's process list.
fn password_step(spec: &Spec) -> Option<Step> {
    let h = spec.password_hash.as_ref()?;
    Some(Step::Stdin {
        script: "chpasswd -e".into(),
        data: Secret::new(format!("{}:{}\n", spec.name, h.expose()).into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const HASH: &str = "$y$j9T$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDE";

    fn bob(groups: &str, shadow: Option<&str>) -> String {
        let sha = shadow
            .map(|h| crate::digest::sha256_hex(h.as_bytes()))
            .unwrap_or_else(|| "none".into());
        format!("passwd bob:x:1001:1001:,,,:/home/bob:/bin/bash\nprimary bob\ngroups {groups}\nshadow {sha}\n")
    }

    #[test]
    fn absent_is_created() {
        let s = spec::<User>(&format!("name: bob\nuid: 1001\ngroups: [sudo, docker]\nshell: /bin/bash\npassword_hash: '{HASH}'\n"));
        let d = User::diff(&s, &facts(&[("user:bob", "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(
            scripts(&d),
            "useradd -u 1001 -G 'sudo,docker' -s /bin/bash -m -- bob\n<stdin> | chpasswd -e"
        );
        match &d.steps[1] {
            Step::Stdin { data, .. } => {
                assert_eq!(data.expose(), format!("bob:{HASH}\n").as_bytes())
            }
            other => panic!("{other:?}"),
        }
        let sys = spec::<User>("name: prometheus\nsystem: true\nshell: /usr/sbin/nologin\n");
        let d = User::diff(&sys, &facts(&[("user:prometheus", "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            scripts(&d),
            "useradd -r -s /usr/sbin/nologin -M -- prometheus"
        );
    }

    #[test]
    fn present_is_in_sync() {
        let s = spec::<User>(&format!("name: bob\nuid: 1001\ngroup: bob\ngroups: [sudo]\nshell: /bin/bash\nhome: /home/bob\npassword_hash: '{HASH}'\n"));
        assert!(User::diff(
            &s,
            &facts(&[("user:bob", &bob("bob sudo docker", Some(HASH)))]),
            &cx()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn drifted_attributes_are_fixed_in_one_usermod() {
        let s = spec::<User>("name: bob\nuid: 2000\nshell: /bin/zsh\nhome: /srv/bob\n");
        let d = User::diff(&s, &facts(&[("user:bob", &bob("bob", None))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            d.reasons,
            vec![
                "uid 1001 → 2000",
                "shell /bin/bash → /bin/zsh",
                "home /home/bob → /srv/bob"
            ]
        );
        assert_eq!(
            scripts(&d),
            "usermod -u 2000 -s /bin/zsh -d /srv/bob -- bob"
        );
    }

    #[test]
    fn groups_append_adds_only_missing() {
        let s = spec::<User>("name: bob\ngroups: [sudo, docker]\n");
        let d = User::diff(
            &s,
            &facts(&[("user:bob", &bob("bob sudo adm", None))]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["not in docker"]);
        assert_eq!(scripts(&d), "usermod -a -G docker -- bob");
    }

    #[test]
    fn groups_exact_replaces_the_list() {
        let s = spec::<User>("name: bob\ngroups: [sudo, docker]\nappend: false\n");
        let d = User::diff(
            &s,
            &facts(&[("user:bob", &bob("bob sudo adm", None))]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["groups adm,sudo → docker,sudo"]);
        assert_eq!(scripts(&d), "usermod -G 'docker,sudo' -- bob");
        // Same set in another order, primary group listed too: in sync.
        let s = spec::<User>("name: bob\ngroups: [sudo, bob, adm]\nappend: false\n");
        assert!(User::diff(
            &s,
            &facts(&[("user:bob", &bob("bob adm sudo", None))]),
            &cx()
        )
        .unwrap()
        .is_none());
        let s = spec::<User>("name: bob\ngroups: []\nappend: false\n");
        let d = User::diff(&s, &facts(&[("user:bob", &bob("bob adm", None))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(scripts(&d), "usermod -G '' -- bob");
    }

    #[test]
    fn password_hash_is_compared_by_sha_and_never_shown() {
        let s = spec::<User>(&format!("name: bob\npassword_hash: '{HASH}'\n"));
        let d = User::diff(
            &s,
            &facts(&[("user:bob", &bob("bob", Some("$6$old$hash")))]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.reasons, vec!["password hash differs"]);
        assert_eq!(scripts(&d), "<stdin> | chpasswd -e");
        let shown = format!("{:?} {:?} {:?} {:?}", d.reasons, d.steps, d.diff, s);
        assert!(!shown.contains("abcdefgh"), "{shown}");
        // No shadow entry at all: set it.
        assert!(
            User::diff(&s, &facts(&[("user:bob", &bob("bob", None))]), &cx())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn bad_input_is_refused_without_echoing_the_hash() {
        let e = check(&spec::<User>("name: bob\npassword_hash: hunter2\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("crypt hash") && !e.contains("hunter2"), "{e}");
        assert!(check(&spec::<User>("name: \"-rf\"\n")).is_err());
        assert!(check(&spec::<User>("name: bob\ngroups: [\"a b\"]\n"))
            .unwrap_err()
            .to_string()
            .contains("`a b`"));
        assert!(check(&spec::<User>("name: bob\nshell: bash\n"))
            .unwrap_err()
            .to_string()
            .contains("shell"));
        assert!(spec_err::<User>("name: bob\npassword: x\n").contains("password"));
    }

    #[test]
    fn absent_state_removes() {
        let s = spec::<User>("name: bob\nstate: absent\n");
        let d = User::diff(&s, &facts(&[("user:bob", &bob("bob", None))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.action, scripts(&d)),
            (Action::Remove, "userdel -- bob".to_string())
        );
        assert!(User::diff(&s, &facts(&[("user:bob", "absent\n")]), &cx())
            .unwrap()
            .is_none());
    }
}
