//! Host patterns, as Ansible users write them: `all`, `*`, a group, a host, `web*`, `~regex`
//! (matched at the start of host and group names), `group[0]`, `group[-1]`, `group[1:3]`
//! (both ends included, as Ansible counts), `a:b` (union), `a:&b` (intersection), `a:!b`
//! (exclusion); `,` works like `:`.

use indexmap::IndexMap;

use super::Inventory;

/// Why a host pattern selects nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty host pattern `{0}`")]
    Empty(String),
    /// `group[…]` asks for a position the group does not have, or is not a position.
    #[error("`{term}`: {why}")]
    Subscript { term: String, why: String },
    #[error("host pattern `{term}`: {why}")]
    Regex { term: String, why: String },
    /// A glob or `~regex` that matches nothing.
    #[error("host pattern `{0}` matches no host or group")]
    NoMatch(String),
    /// A plain name that is neither a group nor a host: a typo never selects nothing silently.
    #[error("`{term}` is neither a group nor a host in {inventory} (known: {known})")]
    Unknown {
        term: String,
        inventory: String,
        known: String,
    },
}

/// Resolve a pattern to hosts in inventory order. A name that matches no group or host is an
/// error, so a typo in `--limit` never silently selects nothing.
pub fn select(inv: &Inventory, pattern: &str) -> Result<Vec<String>, PatternError> {
    select_in(&inv.groups_map(), &inv.path.display().to_string(), pattern)
}

/// The same over a `groups` map (group → hosts, `all` holding every host in order), as
/// templates see it: `query('inventory_hostnames', …)` uses this.
pub fn select_in(
    groups: &IndexMap<String, Vec<String>>,
    source: &str,
    pattern: &str,
) -> Result<Vec<String>, PatternError> {
    let all: &[String] = groups.get("all").map(Vec::as_slice).unwrap_or_default();
    let mut include: Vec<String> = Vec::new();
    let mut intersect: Vec<Vec<String>> = Vec::new();
    let mut exclude: Vec<String> = Vec::new();
    let terms = split_terms(pattern);
    if terms.is_empty() {
        return Err(PatternError::Empty(pattern.to_string()));
    }
    for term in terms {
        if let Some(t) = term.strip_prefix('!') {
            exclude.extend(term_hosts(groups, source, t)?);
        } else if let Some(t) = term.strip_prefix('&') {
            intersect.push(term_hosts(groups, source, t)?);
        } else {
            include.extend(term_hosts(groups, source, term)?);
        }
    }
    Ok(all
        .iter()
        .filter(|h| include.contains(h))
        .filter(|h| intersect.iter().all(|set| set.contains(h)))
        .filter(|h| !exclude.contains(h))
        .cloned()
        .collect())
}

/// Ansible's rule: split on `,` when there is one, else on `:` outside brackets (so
/// `web[1:3]` stays one term).
fn split_terms(pattern: &str) -> Vec<&str> {
    let raw: Vec<&str> = if pattern.contains(',') {
        pattern.split(',').collect()
    } else {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, c) in pattern.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ':' if depth == 0 => {
                    out.push(&pattern[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(&pattern[start..]);
        out
    };
    raw.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn term_hosts(
    groups: &IndexMap<String, Vec<String>>,
    source: &str,
    term: &str,
) -> Result<Vec<String>, PatternError> {
    let all: &[String] = groups.get("all").map(Vec::as_slice).unwrap_or_default();
    // `name[subscript]`: pick by position among the hosts `name` matches.
    if let Some((base, sub)) = term
        .strip_suffix(']')
        .and_then(|t| t.rsplit_once('['))
        .filter(|(b, s)| !b.is_empty() && !s.is_empty() && !b.starts_with('~'))
    {
        if groups.contains_key(base) || all.iter().any(|h| h == base) || base.contains('*') {
            let hosts = term_hosts(groups, source, base)?;
            return subscript(&hosts, sub).map_err(|why| PatternError::Subscript {
                term: term.to_string(),
                why,
            });
        }
    }
    if term == "all" || term == "*" {
        return Ok(all.to_vec());
    }
    type Matcher<'a> = Box<dyn Fn(&str) -> bool + 'a>;
    let matcher: Option<Matcher> = if let Some(re) = term.strip_prefix('~') {
        let re = regex::Regex::new(&format!("^(?:{re})")).map_err(|e| PatternError::Regex {
            term: term.to_string(),
            why: e.to_string(),
        })?;
        Some(Box::new(move |s: &str| re.is_match(s)))
    } else if term.contains('*') {
        Some(Box::new(move |s: &str| glob(term, s)))
    } else {
        None
    };
    if let Some(m) = matcher {
        let mut out: Vec<String> = all.iter().filter(|h| m(h)).cloned().collect();
        for (_, hosts) in groups.iter().filter(|(g, _)| m(g)) {
            out.extend(hosts.iter().cloned());
        }
        if out.is_empty() {
            return Err(PatternError::NoMatch(term.to_string()));
        }
        return Ok(out);
    }
    if let Some(hosts) = groups.get(term) {
        return Ok(hosts.clone());
    }
    if all.iter().any(|h| h == term) {
        return Ok(vec![term.to_string()]);
    }
    let mut known: Vec<&str> = groups
        .keys()
        .map(String::as_str)
        .chain(all.iter().map(String::as_str))
        .collect();
    known.sort();
    known.dedup();
    Err(PatternError::Unknown {
        term: term.to_string(),
        inventory: source.to_string(),
        known: known.join(", "),
    })
}

/// `0`, `-1`, `1:3` (end included, as Ansible), `1:`, `:2`.
fn subscript(hosts: &[String], sub: &str) -> Result<Vec<String>, String> {
    let n = hosts.len() as i64;
    let idx = |s: &str, default: i64| -> Result<i64, String> {
        if s.is_empty() {
            return Ok(default);
        }
        let i: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a position"))?;
        Ok(if i < 0 { n + i } else { i })
    };
    let (start, end) = match sub.split_once(':') {
        Some((a, b)) => (idx(a, 0)?, idx(b, n - 1)?),
        None => {
            let i = idx(sub, 0)?;
            (i, i)
        }
    };
    if start < 0 || start >= n || end < start {
        return Err(format!("no host at that position (the group has {n})"));
    }
    Ok(hosts[start as usize..=(end.min(n - 1) as usize)].to_vec())
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
        let e = select(&i, "servres").unwrap_err();
        assert!(
            matches!(&e, PatternError::Unknown { term, .. } if term == "servres"),
            "{e:?}"
        );
        assert!(e.to_string().contains("neither a group nor a host"), "{e}");
        assert_eq!(
            select(&i, "x*").unwrap_err(),
            PatternError::NoMatch("x*".into())
        );
    }

    #[test]
    fn subscripts_and_regexes_as_ansible() {
        // Checked with `ansible PATTERN --list-hosts` (ansible-core 2.19).
        let i = inv();
        assert_eq!(select(&i, "all[0]").unwrap(), ["s1"]);
        assert_eq!(select(&i, "all[-1]").unwrap(), ["web-1"]);
        assert_eq!(select(&i, "all[0:2]").unwrap(), ["s1", "s2", "a1"]);
        assert_eq!(select(&i, "all[1:]").unwrap(), ["s2", "a1", "web-1"]);
        assert_eq!(select(&i, "servers[1]:agents[0]").unwrap(), ["s2", "a1"]);
        assert_eq!(select(&i, "~s.*").unwrap(), ["s1", "s2"]);
        assert_eq!(select(&i, "~ag").unwrap(), ["a1", "web-1"]);
        assert_eq!(select(&i, "all:!~web").unwrap(), ["s1", "s2", "a1"]);
        assert!(
            select(&i, "~eb").is_err(),
            "anchored at the start, like re.match"
        );
        assert!(select(&i, "servers[5]").is_err());
    }
}
