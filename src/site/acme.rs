//! The ACME account's contact address (the ingress role's `acme_email`), checked before any host
//! is contacted. Let's Encrypt refuses to register an account whose contact is at example.com,
//! example.net or example.org (its CA software, letsencrypt/boulder, lists them as forbidden mail
//! domains: "frequently used when copy-pasting example configurations"), and any address whose
//! domain is not under a public top-level domain (the reserved .test, .example, .invalid,
//! .localhost). cert-manager then keeps the ClusterIssuer not Ready and no certificate is ever
//! issued, long after `apply` succeeded. An empty address registers the account without a
//! contact, which ACME and cert-manager allow.

use crate::error::{Diag, Loc};
use crate::inventory::VarLayer;

const FORBIDDEN: &[&str] = &["example.com", "example.net", "example.org"];
const RESERVED_TLDS: &[&str] = &["test", "example", "invalid", "localhost"];

/// Why Let's Encrypt would refuse `email` as its account contact; None when it would not.
pub fn refusal(email: &str) -> Option<String> {
    let email = email.trim();
    if email.is_empty() {
        return None;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some("is not an e-mail address".into());
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty() || domain.is_empty() || !domain.contains('.') {
        return Some("is not an e-mail address".into());
    }
    if let Some(f) = FORBIDDEN
        .iter()
        .find(|f| domain == **f || domain.ends_with(&format!(".{f}")))
    {
        return Some(format!(
            "is at {f}, an example domain Let's Encrypt refuses as an account contact"
        ));
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if RESERVED_TLDS.contains(&tld) {
        return Some(format!(
            "is under .{tld}, a reserved domain Let's Encrypt refuses as an account contact"
        ));
    }
    None
}

/// The problem with a role's resolved `acme_email`, at the place it was set (`role_entry`, the
/// role's line in site.yml, when it came from `-e`).
pub fn email_diag(vars: &VarLayer, role_entry: &Loc) -> Option<Diag> {
    let email = vars.values.get("acme_email")?.as_str()?;
    let why = refusal(email)?;
    let (loc, from) = match vars.locs.get("acme_email") {
        Some(l) => (l.clone(), String::new()),
        None => (role_entry.clone(), " (from -e)".to_string()),
    };
    Some(
        Diag::at(
            loc,
            format!("acme_email `{email}`{from} {why}: the ACME account would never be registered, and no certificate issued"),
        )
        .help("set acme_email to an address you read (in group_vars/all/main.yml), or to \"\" to register without one"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_and_reserved_domains_are_refused() {
        for bad in [
            "ops@example.org",
            "ops@EXAMPLE.com",
            "me@lab.example.net",
            "me@example.org.",
            "me@lab.test",
            "me@host.localhost",
        ] {
            assert!(refusal(bad).is_some(), "{bad}");
        }
        assert!(refusal("ops@example.org").unwrap().contains("example.org"));
        assert!(refusal("no-at-sign").unwrap().contains("not an e-mail"));
        for good in [
            "",
            "me@myexample.org",
            "ops@examples.com",
            "me@example.org.uk",
        ] {
            assert_eq!(refusal(good), None, "{good}");
        }
    }
}
