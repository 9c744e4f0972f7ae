//! Host patterns, as Ansible users write them: `all`, `*`, a group, a host, `web*`,
//! `a:b` (union), `a:&b` (intersection), `a:!b` (exclusion); `,` works like `:`.

use super::Inventory;

/// Resolve a pattern to hosts in inventory order. A name that matches no group or host is an
/// error, so a typo in `--limit` never silently selects nothing.
pub fn select(inv: &Inventory, pattern: &str) -> Result<Vec<String>, String> {
    let mut include: Vec<String> = Vec::new();
    let mut intersect: Vec<Vec<String>> = Vec::new();
    let mut exclude: Vec<String> = Vec::new();
    let terms: Vec<&str> = pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Err(format!("empty host pattern `{pattern}`"));
    }
    for term in terms {
        if let Some(t) = term.strip_prefix('!') {
            exclude.extend(term_hosts(inv, t)?);
        } else if let Some(t) = term.strip_prefix('&') {
            intersect.push(term_hosts(inv, t)?);
        } else {
            include.extend(term_hosts(inv, term)?);
        }
    }
    Ok(inv
        .hosts
        .keys()
        .filter(|h| include.contains(h))
        .filter(|h| intersect.iter().all(|set| set.contains(h)))
        .filter(|h| !exclude.contains(h))
        .cloned()
        .collect())
}

fn term_hosts(inv: &Inventory, term: &str) -> Result<Vec<String>, String> {
    if term == "all" || term == "*" {
        return Ok(inv.hosts.keys().cloned().collect());
    }
    if term.contains('*') {
        let mut out: Vec<String> = inv
            .hosts
            .keys()
            .filter(|h| glob(term, h))
            .cloned()
            .collect();
        for g in inv.groups.keys().filter(|g| glob(term, g)) {
            out.extend(group_hosts(inv, g));
        }
        if out.is_empty() {
            return Err(format!("host pattern `{term}` matches no host or group"));
        }
        return Ok(out);
    }
    if inv.groups.contains_key(term) {
        return Ok(group_hosts(inv, term));
    }
    if inv.hosts.contains_key(term) {
        return Ok(vec![term.to_string()]);
    }
    let mut known: Vec<&str> = inv
        .groups
        .keys()
        .map(String::as_str)
        .chain(inv.hosts.keys().map(String::as_str))
        .collect();
    known.sort();
    Err(format!(
        "`{term}` is neither a group nor a host in {} (known: {})",
        inv.path.display(),
        known.join(", ")
    ))
}

fn group_hosts(inv: &Inventory, g: &str) -> Vec<String> {
    inv.hosts
        .keys()
        .filter(|h| inv.host_groups(h).iter().any(|x| x == g))
        .cloned()
        .collect()
}

fn glob(pat: &str, s: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Inventory, VaultFail};
    use crate::secret::Secret;
    use std::path::Path;

    fn inv() -> Inventory {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts.yml");
        std::fs::write(
            &p,
            "all:\n  children:\n    servers:\n      hosts: {s1: , s2: }\n    agents:\n      hosts: {a1: , web-1: }\n",
        )
        .unwrap();
        let no = |_: &Path| -> Result<Secret<Vec<u8>>, VaultFail> {
            Err(VaultFail::NoKey(String::new()))
        };
        Inventory::load(&p, &no).unwrap()
    }

    #[test]
    fn patterns() {
        let i = inv();
        assert_eq!(select(&i, "all").unwrap(), ["s1", "s2", "a1", "web-1"]);
        assert_eq!(select(&i, "servers").unwrap(), ["s1", "s2"]);
        assert_eq!(select(&i, "servers:a1").unwrap(), ["s1", "s2", "a1"]);
        assert_eq!(select(&i, "all:!servers").unwrap(), ["a1", "web-1"]);
        assert_eq!(select(&i, "all:&agents").unwrap(), ["a1", "web-1"]);
        assert_eq!(select(&i, "s*").unwrap(), ["s1", "s2"]);
        assert_eq!(select(&i, "web-*,s1").unwrap(), ["s1", "web-1"]);
        assert!(select(&i, "servres")
            .unwrap_err()
            .contains("neither a group nor a host"));
        assert!(select(&i, "x*").is_err());
    }
}
