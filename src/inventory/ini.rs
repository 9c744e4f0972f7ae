//! INI inventories (`hosts.ini`, `hosts`), read the way Ansible's `ini` plugin reads them:
//! `[group]` lists hosts (`host key=value …`, ranges `node[01:20]`, `host:port`),
//! `[group:vars]` holds `key=value` lines, `[group:children]` names child groups. Values are
//! typed with Python's literal rules (see `pyliteral`), as Ansible does for both kinds of line.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use super::pyliteral::ini_value;
use super::{valid_host_name, valid_name, valid_var_name, Inventory, VarLayer};
use crate::error::{Diag, Diags, Loc};

#[derive(Clone, Copy, PartialEq)]
enum State {
    Hosts,
    Vars,
    Children,
}

/// A group named before its own section: an error if it never gets one (Ansible's rule).
struct Pending {
    loc: Loc,
    state: State,
    parents: Vec<String>,
}

pub(super) fn read(inv: &mut Inventory, file: &Path, text: &str, diags: &mut Diags) {
    let mut state = State::Hosts;
    let mut group = "ungrouped".to_string();
    let mut pending: IndexMap<String, Pending> = IndexMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        let col = raw.len() - raw.trim_start().len() + 1;
        let loc = Loc::new(file, line_no, col);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            match section(line) {
                Ok((name, st)) => {
                    if !valid_name(&name) {
                        diags.push(Diag::at(
                            loc,
                            format!(
                                "`{name}` is not a valid group name (letters, digits, `_`, `-`)"
                            ),
                        ));
                        continue;
                    }
                    if !inv.groups.contains_key(&name) {
                        // `[g:vars]` alone does not declare `g`: it must appear elsewhere.
                        if st == State::Vars && !pending.contains_key(&name) {
                            pending.insert(
                                name.clone(),
                                Pending {
                                    loc: loc.clone(),
                                    state: st,
                                    parents: Vec::new(),
                                },
                            );
                        }
                        inv.ensure_group(&name, loc.clone());
                    }
                    if st != State::Vars {
                        if let Some(p) = pending.shift_remove(&name) {
                            for parent in p.parents {
                                inv.link(&parent, &name);
                            }
                        }
                    }
                    group = name;
                    state = st;
                }
                Err(e) => diags.push(Diag::at(loc, e)),
            }
            continue;
        }
        match state {
            State::Hosts => host_line(inv, file, line_no, raw, &group, diags),
            State::Vars => match line.split_once('=') {
                Some((k, v)) => {
                    let k = k.trim();
                    if !valid_var_name(k) {
                        diags.push(Diag::at(loc, format!("`{k}` is not a valid variable name")));
                        continue;
                    }
                    let v = v.trim();
                    let vcol = raw.find('=').map(|i| i + 2).unwrap_or(col);
                    let mut layer = VarLayer::default();
                    layer.values.insert(k.to_string(), ini_value(v));
                    layer
                        .locs
                        .insert(k.to_string(), Loc::new(file, line_no, vcol));
                    inv.groups[&group].vars.overlay(&layer);
                }
                None => diags.push(
                    Diag::at(
                        loc,
                        format!("expected `key=value` in [{group}:vars], got `{line}`"),
                    )
                    .help("each line of a :vars section sets one variable"),
                ),
            },
            State::Children => {
                let child = line
                    .split_once([' ', '\t', '#'])
                    .map(|(c, _)| c)
                    .unwrap_or(line);
                if !valid_name(child) {
                    diags.push(Diag::at(
                        loc,
                        format!("`{child}` is not a valid group name"),
                    ));
                } else if inv.groups.contains_key(child) && !pending.contains_key(child) {
                    inv.link(&group, child);
                } else {
                    let p = pending.entry(child.to_string()).or_insert(Pending {
                        loc,
                        state: State::Children,
                        parents: Vec::new(),
                    });
                    p.state = State::Children;
                    p.parents.push(group.clone());
                }
            }
        }
    }
    for (name, p) in pending {
        let msg = match p.state {
            State::Vars => format!("section [{name}:vars] is for group `{name}`, which no [{name}] or [{name}:children] section declares"),
            _ => format!(
                "[{}:children] names group `{name}`, which no [{name}] section declares",
                p.parents.join("/")
            ),
        };
        diags.push(
            Diag::at(p.loc, msg).help("declare the group with its own section, even an empty one"),
        );
    }
}

fn section(line: &str) -> Result<(String, State), String> {
    let body = line.split_once(']').map(|(b, rest)| (b, rest.trim()));
    let Some((body, rest)) = body else {
        return Err(format!("`{line}`: a section header ends with `]`"));
    };
    if !(rest.is_empty() || rest.starts_with('#') || rest.starts_with(';')) {
        return Err(format!(
            "`{line}`: unexpected text after the section header"
        ));
    }
    let body = &body[1..];
    let (name, kind) = body.split_once(':').unwrap_or((body, "hosts"));
    let st = match kind {
        "hosts" => State::Hosts,
        "vars" => State::Vars,
        "children" => State::Children,
        other => {
            return Err(format!(
                "section [{body}] has unknown type `{other}` (use :vars or :children)"
            ))
        }
    };
    Ok((name.trim().to_string(), st))
}

fn host_line(
    inv: &mut Inventory,
    file: &Path,
    line_no: usize,
    raw: &str,
    group: &str,
    diags: &mut Diags,
) {
    let loc = |col: usize| Loc::new(file, line_no, col);
    let tokens = match split(raw) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diag::at(loc(1), e));
            return;
        }
    };
    let Some(((pattern, pcol), rest)) = tokens.split_first() else {
        return;
    };
    let (names, port) = match expand_host_pattern(pattern) {
        Ok(x) => x,
        Err(e) => {
            diags.push(Diag::at(loc(*pcol), e.to_string()));
            return;
        }
    };
    let mut layer = VarLayer::default();
    if let Some(p) = port {
        layer.values.insert("ansible_port".into(), Value::from(p));
    }
    let mut locs = BTreeMap::new();
    for (tok, col) in rest {
        let Some((k, v)) = tok.split_once('=') else {
            diags.push(
                Diag::at(
                    loc(*col),
                    format!("expected `key=value` after the host name, got `{tok}`"),
                )
                .help("a host line is `NAME key=value key2=value2`; quote values with spaces"),
            );
            return;
        };
        if !valid_var_name(k) {
            diags.push(Diag::at(
                loc(*col),
                format!("`{k}` is not a valid variable name"),
            ));
            return;
        }
        layer.values.insert(k.to_string(), ini_value(v));
        locs.insert(k.to_string(), loc(col + k.len() + 1));
    }
    layer.locs = locs;
    for name in names {
        if !valid_host_name(&name) {
            diags.push(Diag::at(
                loc(*pcol),
                format!("`{name}` is not a valid host name"),
            ));
            return;
        }
        inv.add_host(&name, group, &layer);
    }
}

/// Split a host line as Python's `shlex.split(line, comments=True)` does, keeping each
/// token's 1-based column.
fn split(line: &str) -> Result<Vec<(String, usize)>, String> {
    let mut out = Vec::new();
    let mut cur: Option<(String, usize)> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(t) = cur.take() {
                    out.push(t);
                }
            }
            '#' => break,
            '\'' | '"' => {
                let t = cur.get_or_insert_with(|| (String::new(), i + 1));
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if c == '"' && d == '\\' {
                        if let Some((_, e)) = chars.peek().copied() {
                            if matches!(e, '"' | '\\' | '$' | '`') {
                                t.0.push(e);
                                chars.next();
                                continue;
                            }
                        }
                    }
                    t.0.push(d);
                }
                if !closed {
                    return Err(format!("unclosed {c} quote"));
                }
            }
            '\\' => {
                let t = cur.get_or_insert_with(|| (String::new(), i + 1));
                if let Some((_, e)) = chars.next() {
                    t.0.push(e);
                }
            }
            _ => cur.get_or_insert_with(|| (String::new(), i + 1)).0.push(c),
        }
    }
    if let Some(t) = cur.take() {
        out.push(t);
    }
    Ok(out)
}

/// A host name with ranges or a port (`node[01:03]`, `host:2222`) that does not expand; the
/// message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct HostPatternError(String);

/// `node[01:03]` → node01, node02, node03; `web-[a:c]`; `[0:10:2]` steps; `host:2222` sets
/// the port. Shared by the YAML reader, whose host keys Ansible expands the same way.
pub(super) fn expand_host_pattern(
    pattern: &str,
) -> Result<(Vec<String>, Option<u16>), HostPatternError> {
    let (name, port) = split_port(pattern).map_err(HostPatternError)?;
    Ok((expand_ranges(name).map_err(HostPatternError)?, port))
}

fn split_port(p: &str) -> Result<(&str, Option<u16>), String> {
    // The colon of a port is the last one outside brackets; more than one bare colon is IPv6.
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in p.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if colons.len() != 1 {
        return Ok((p, None));
    }
    let (name, port) = (&p[..colons[0]], &p[colons[0] + 1..]);
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{p}`: `{port}` is not a port number"))?;
    Ok((name, Some(port)))
}

fn expand_ranges(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_string()]);
    };
    let close = name[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("`{name}`: a range `[` is not closed"))?;
    let (head, body, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let parts: Vec<&str> = body.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!(
            "`{name}`: a range is `[start:end]` or `[start:end:step]`"
        ));
    }
    let (beg, end) = (if parts[0].is_empty() { "0" } else { parts[0] }, parts[1]);
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("`{name}`: the range step must be a positive number"))?,
        None => 1,
    };
    let mut items = Vec::new();
    let alpha = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic());
    if alpha(beg) && alpha(end) {
        let (b, e) = (beg.as_bytes()[0], end.as_bytes()[0]);
        if b > e {
            return Err(format!("`{name}`: the range start is after its end"));
        }
        items.extend((b..=e).step_by(step).map(|c| (c as char).to_string()));
    } else {
        let (b, e): (u64, u64) = match (beg.parse(), end.parse()) {
            (Ok(b), Ok(e)) => (b, e),
            _ => {
                return Err(format!(
                    "`{name}`: a range is numbers (`[01:20]`) or single letters (`[a:c]`)"
                ))
            }
        };
        if b > e {
            return Err(format!("`{name}`: the range start is after its end"));
        }
        // `[01:20]` keeps the zero padding of its start.
        let width = if beg.len() > 1 && beg.starts_with('0') {
            beg.len()
        } else {
            0
        };
        items.extend((b..=e).step_by(step).map(|n| format!("{n:0width$}")));
    }
    let mut out = Vec::new();
    let rests = expand_ranges(tail)?;
    for i in &items {
        for rest in &rests {
            out.push(format!("{head}{i}{rest}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::VaultFail;
    use crate::secret::Secret;
    use serde_json::json;

    fn load(text: &str) -> Result<Inventory, Diags> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts.ini");
        std::fs::write(&p, text).unwrap();
        let no = |_: &Path| -> Result<Secret<Vec<u8>>, VaultFail> {
            Err(VaultFail::NoKey(String::new()))
        };
        Inventory::load(&p, &no)
    }

    #[test]
    fn ranges_ports_and_padding() {
        assert_eq!(
            expand_host_pattern("node[01:03]").unwrap().0,
            ["node01", "node02", "node03"]
        );
        assert_eq!(
            expand_host_pattern("web-[a:c].lab").unwrap().0,
            ["web-a.lab", "web-b.lab", "web-c.lab"]
        );
        assert_eq!(
            expand_host_pattern("n[0:6:3]").unwrap().0,
            ["n0", "n3", "n6"]
        );
        assert_eq!(
            expand_host_pattern("r[1:2]-[a:b]").unwrap().0,
            ["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert_eq!(
            expand_host_pattern("h:2222").unwrap(),
            (vec!["h".to_string()], Some(2222))
        );
        assert!(expand_host_pattern("n[3:1]").is_err());
    }

    #[test]
    fn sections_vars_children_and_typing() {
        let inv = load(
            "lone\n[web]\nw[1:2] ansible_host=10.0.0.1 flag=True lst=\"[1, 2]\" s='a b' # note\n\
             [lab:children]\nweb\n[lab:vars]\nn=5\nb = true\n[all:vars]\nansible_user=debian\n",
        )
        .unwrap();
        assert_eq!(inv.hosts.keys().collect::<Vec<_>>(), ["lone", "w1", "w2"]);
        assert_eq!(inv.groups["ungrouped"].hosts, ["lone"]);
        assert_eq!(inv.groups["lab"].children, ["web"]);
        assert_eq!(inv.groups["all"].children, ["ungrouped", "lab"]);
        let v = inv.host_vars("w2").values;
        assert_eq!(v["flag"], json!(true));
        assert_eq!(v["lst"], json!([1, 2]));
        assert_eq!(v["s"], json!("a b"));
        assert_eq!(v["n"], json!(5));
        assert_eq!(v["b"], json!("true"));
        assert_eq!(v["ansible_user"], json!("debian"));
        let l = &inv.hosts["w1"].vars.locs["flag"];
        assert_eq!((l.line, l.col), (3, 35));
    }

    #[test]
    fn undeclared_groups_are_errors_with_lines() {
        let e = load("[a:vars]\nx=1\n[b:children]\nc\n[d]\nh k\n").unwrap_err();
        let msgs: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("hosts.ini:6:3: expected `key=value`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("hosts.ini:1:1: section [a:vars]")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("hosts.ini:4:1: [b:children] names group `c`")),
            "{msgs:?}"
        );
    }
}
