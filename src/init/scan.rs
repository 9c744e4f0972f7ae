//! What a new lab must provide, read from the roles themselves (so a role that starts needing
//! a new secret or a new setting is picked up by `labctl init` without a change here):
//! - every `vault_*` variable a role mentions becomes a generated (or asked-for) vault entry;
//! - every `defaults.yml` line marked `# EXAMPLE` is a setting the user must make their own,
//!   copied into `group_vars/all/main.yml` with a comment.

use std::collections::BTreeMap;

/// How a vault variable gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `vault_wg_private_keys`: a map host → WireGuard private key.
    WgKeys,
    /// A token the lab makes itself (k3s): 32 random bytes as hex.
    Token,
    /// A password the lab makes itself (databases, dashboards).
    Password,
    /// A credential from outside (an SMTP relay, an S3 bucket): asked for, or left empty.
    External,
    /// A value labctl cannot make without another tool (a bcrypt hash); the role defaults it.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultVar {
    pub name: String,
    pub kind: Kind,
    /// Roles that mention it.
    pub roles: Vec<String>,
    /// Some `{{ … }}` uses it with no `if`/`default(` around it: every lab must define it.
    /// (`"{{ vault_x if backup_offsite else '' }}"` needs it only once the feature is on.)
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleVar {
    pub role: String,
    pub name: String,
    /// The `defaults.yml` line without its `# EXAMPLE…` comment.
    pub value: String,
    /// What the comment says after `EXAMPLE` (`: your GitOps repo`), if anything.
    pub hint: String,
}

#[derive(Debug, Default)]
pub struct Needs {
    pub vault: Vec<VaultVar>,
    pub examples: Vec<ExampleVar>,
}

fn kind_of(name: &str) -> Kind {
    let n = name.trim_start_matches("vault_");
    if name == "vault_wg_private_keys" {
        Kind::WgKeys
    } else if n.ends_with("_bcrypt") {
        Kind::Manual
    } else if n.starts_with("smtp")
        || n.contains("s3")
        || n.contains("access_key")
        || n.contains("secret_key")
    {
        Kind::External
    } else if n.ends_with("token") {
        Kind::Token
    } else {
        Kind::Password
    }
}

/// `files`: (path like `roles/NAME/…`, text) of every role file.
pub fn scan<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Needs {
    let word = regex::Regex::new(r"\bvault_[A-Za-z0-9_]+").expect("regex");
    let expr = regex::Regex::new(r"\{\{(.*?)\}\}").expect("regex");
    let mut vault: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut required: std::collections::BTreeSet<String> = Default::default();
    let mut examples = Vec::new();
    for (path, text) in files {
        let mut parts = path.split('/');
        let (Some("roles"), Some(role)) = (parts.next(), parts.next()) else {
            continue;
        };
        for m in word.find_iter(text) {
            let roles = vault.entry(m.as_str().to_string()).or_default();
            if !roles.iter().any(|r| r == role) {
                roles.push(role.to_string());
            }
        }
        for e in expr.captures_iter(text) {
            let body = &e[1];
            if body.contains(" if ") || body.contains("default(") {
                continue;
            }
            required.extend(word.find_iter(body).map(|m| m.as_str().to_string()));
        }
        if path.ends_with("/defaults.yml") {
            examples.extend(text.lines().filter_map(|l| example(role, l)));
        }
    }
    Needs {
        vault: vault
            .into_iter()
            .map(|(name, roles)| VaultVar {
                kind: kind_of(&name),
                required: required.contains(&name),
                name,
                roles,
            })
            .collect(),
        examples,
    }
}

/// `name: value   # EXAMPLE: hint` at the top level of a defaults file.
fn example(role: &str, line: &str) -> Option<ExampleVar> {
    if line.starts_with([' ', '#', '-']) {
        return None;
    }
    let at = line.find("# EXAMPLE")?;
    let (name, _) = line.split_once(':')?;
    if !crate::inventory::valid_var_name(name) {
        return None;
    }
    Some(ExampleVar {
        role: role.to_string(),
        name: name.to_string(),
        value: line[..at].trim_end().to_string(),
        hint: line[at + "# EXAMPLE".len()..].trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_vault_vars_by_kind_and_example_lines() {
        let n = scan([
            (
                "roles/a/defaults.yml",
                "tok: \"{{ vault_k3s_token }}\"\nurl: https://x.example   # EXAMPLE: your repo\n  nested: 1 # EXAMPLE\npw: \"{{ vault_db_password | default('') }}\"\n",
            ),
            (
                "roles/b/templates/x.j2",
                "{{ vault_wg_private_keys[inventory_hostname] }} {{ vault_smtp_password }} {{ vault_k3s_token }} {{ vault_backup_s3_access_key if on else '' }} {{ vault_x_bcrypt | default('') }}",
            ),
            ("site.yml", "vault_not_in_a_role"),
        ]);
        let got: Vec<(&str, Kind, usize)> = n
            .vault
            .iter()
            .map(|v| (v.name.as_str(), v.kind, v.roles.len()))
            .collect();
        let required: Vec<&str> = n
            .vault
            .iter()
            .filter(|v| v.required)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            required,
            [
                "vault_k3s_token",
                "vault_smtp_password",
                "vault_wg_private_keys"
            ],
            "a `default(` or an `if` makes a var optional"
        );
        assert_eq!(
            got,
            vec![
                ("vault_backup_s3_access_key", Kind::External, 1),
                ("vault_db_password", Kind::Password, 1),
                ("vault_k3s_token", Kind::Token, 2),
                ("vault_smtp_password", Kind::External, 1),
                ("vault_wg_private_keys", Kind::WgKeys, 1),
                ("vault_x_bcrypt", Kind::Manual, 1),
            ]
        );
        assert_eq!(
            n.examples,
            vec![ExampleVar {
                role: "a".into(),
                name: "url".into(),
                value: "url: https://x.example".into(),
                hint: ": your repo".into()
            }]
        );
    }

    #[test]
    fn shipped_roles_need_the_known_secrets() {
        let n = scan(
            super::super::shipped::FILES
                .iter()
                .filter_map(|(p, b)| Some((*p, std::str::from_utf8(b).ok()?))),
        );
        for (name, kind) in [
            ("vault_k3s_token", Kind::Token),
            ("vault_wg_private_keys", Kind::WgKeys),
            ("vault_postgres_password", Kind::Password),
            ("vault_smtp_password", Kind::External),
        ] {
            assert!(
                n.vault.iter().any(|v| v.name == name && v.kind == kind),
                "{name} missing from {:?}",
                n.vault
            );
        }
        assert!(n.examples.iter().any(|e| e.name == "smtp_smarthost"));
    }
}
