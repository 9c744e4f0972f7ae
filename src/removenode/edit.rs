//! Taking one host out of an inventory file by editing its text, not by reserializing it: the
//! lines of the host's entry go, every other line (comments, order, quoting, blank lines) stays
//! as the user wrote it. YAML: each `NAME:` key directly under a `hosts:` mapping, with the lines
//! indented below it. INI: each host line (`NAME ansible_host=…`) in a group section or before
//! the first one. What cannot be cut by lines (a flow mapping `hosts: {a: …}`, a range `web[1:3]`)
//! is refused, and the caller says to edit it by hand.

use std::ops::RangeInclusive;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The name is not a host entry this edit can find in the text.
    #[error("{name} has no entry of its own in the inventory text (a flow mapping like `hosts: {{{name}: …}}`, or a range like `web[1:3]`?): take it out by hand")]
    NotFound { name: String },
}

/// The text without the host, and which lines (0-based, of the original) went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub removed: Vec<RangeInclusive<usize>>,
}

/// Which inventory format: Ansible's rule (YAML for .yml/.yaml/.json, INI for anything else).
pub fn is_yaml(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
}

/// Where a removed host's host_vars file or folder goes: the same folder, a dot-name (the
/// inventory loader skips dot-files, so it no longer names a host the inventory lacks).
pub fn set_aside(path: &str) -> String {
    let p = std::path::Path::new(path);
    let name = p
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    p.with_file_name(format!(".{name}.removed"))
        .display()
        .to_string()
}

/// The host's entries in `dir/host_vars` (`NAME.yml`, `NAME.yaml`, `NAME/`, as the loader reads
/// them: the name up to the first dot), sorted.
pub fn host_vars_of(dir: &std::path::Path, name: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("host_vars")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            !f.starts_with('.') && f.split('.').next() == Some(name)
        })
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Blank, or only a comment: it belongs to no block by its indentation.
fn is_filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// `NAME:` (bare or quoted) at the start of `content`, followed by the end, a space or a comment.
fn is_key(content: &str, name: &str) -> bool {
    [name.to_string(), format!("\"{name}\""), format!("'{name}'")]
        .iter()
        .any(|k| {
            content
                .strip_prefix(k.as_str())
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
        })
}

/// The key of a mapping line (`hosts:` → "hosts"), comments ignored.
fn key_of(content: &str) -> Option<&str> {
    let (k, rest) = content.split_once(':')?;
    let rest = rest.trim();
    (rest.is_empty() || rest.starts_with('#')).then_some(k.trim())
}

/// The nearest line above `i` indented less than it (its parent key), skipping fillers.
fn parent(lines: &[&str], i: usize) -> Option<usize> {
    let ind = indent(lines[i]);
    (0..i)
        .rev()
        .find(|&j| !is_filler(lines[j]) && indent(lines[j]) < ind)
}

/// The last line of the block that starts at `i`: the lines after it indented deeper (fillers
/// between them included; fillers after the last one stay, they belong to what follows).
fn block_end(lines: &[&str], i: usize) -> usize {
    let ind = indent(lines[i]);
    let mut last = i;
    for (j, l) in lines.iter().enumerate().skip(i + 1) {
        if is_filler(l) {
            continue;
        }
        if indent(l) > ind {
            last = j;
        } else {
            break;
        }
    }
    last
}

/// Removes every `NAME:` entry under a `hosts:` key. A `hosts:` left with no host becomes
/// `hosts: {}` (an empty mapping, not null).
pub fn remove_yaml(text: &str, name: &str) -> Result<Edit, EditError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut removed: Vec<RangeInclusive<usize>> = Vec::new();
    let mut parents: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if !is_filler(l) && is_key(l.trim(), name) {
            if let Some(p) = parent(&lines, i) {
                if key_of(lines[p].trim()) == Some("hosts") {
                    let end = block_end(&lines, i);
                    removed.push(i..=end);
                    parents.push(p);
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    if removed.is_empty() {
        return Err(EditError::NotFound { name: name.into() });
    }
    let gone = |j: usize| removed.iter().any(|r| r.contains(&j));
    // A `hosts:` whose every entry went: nothing deeper is left under it.
    let emptied: Vec<usize> = parents
        .into_iter()
        .filter(|&p| {
            let ind = indent(lines[p]);
            !lines
                .iter()
                .enumerate()
                .skip(p + 1)
                .filter(|(j, l)| !gone(*j) && !is_filler(l))
                .take_while(|(_, l)| indent(l) > ind)
                .any(|_| true)
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    for (j, l) in lines.iter().enumerate() {
        if gone(j) {
            continue;
        }
        if emptied.contains(&j) {
            let (body, nl) = l.strip_suffix('\n').map_or((*l, ""), |b| (b, "\n"));
            let colon = body.find(':').expect("a `hosts:` key line");
            out.push_str(&body[..=colon]);
            out.push_str(" {}");
            out.push_str(&body[colon + 1..]);
            out.push_str(nl);
        } else {
            out.push_str(l);
        }
    }
    Ok(Edit { text: out, removed })
}

/// Removes every host line `NAME …` in a host section: `[group]`, or before the first section
/// (ungrouped). `[g:vars]` and `[g:children]` hold no hosts and are left alone.
pub fn remove_ini(text: &str, name: &str) -> Result<Edit, EditError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut removed = Vec::new();
    let mut hosts_section = true;
    for (j, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            hosts_section = !t.contains(':');
            continue;
        }
        if !hosts_section || t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.split_whitespace().next() == Some(name) {
            removed.push(j..=j);
        }
    }
    if removed.is_empty() {
        return Err(EditError::NotFound { name: name.into() });
    }
    let text = lines
        .iter()
        .enumerate()
        .filter(|(j, _)| !removed.iter().any(|r| r.contains(j)))
        .map(|(_, l)| *l)
        .collect();
    Ok(Edit { text, removed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "\
# The lab. Keep this comment.
all:
  vars:
    ansible_user: root   # everyone logs in as root
  children:
    lab:
      children:
        k3s_server:
          hosts:
            lab-1:
              wg_address: 10.200.0.1
        k3s_agents:
          hosts:
            lab-2:
              wg_address: 10.200.0.2
              # lab-3 is the new one
            lab-3:
              wg_address: 10.200.0.3

              ansible_host: 192.0.2.3   # after a blank line
            lab-30: {wg_address: 10.200.0.30}

        # the rest
        other:
          hosts:
            lab-3:
";

    #[test]
    fn yaml_the_hosts_lines_go_and_everything_else_stays() {
        let e = remove_yaml(LAB, "lab-3").unwrap();
        assert_eq!(
            e.text,
            "\
# The lab. Keep this comment.
all:
  vars:
    ansible_user: root   # everyone logs in as root
  children:
    lab:
      children:
        k3s_server:
          hosts:
            lab-1:
              wg_address: 10.200.0.1
        k3s_agents:
          hosts:
            lab-2:
              wg_address: 10.200.0.2
              # lab-3 is the new one
            lab-30: {wg_address: 10.200.0.30}

        # the rest
        other:
          hosts: {}
"
        );
        assert_eq!(e.removed, vec![16..=19, 25..=25]);
    }

    #[test]
    fn yaml_quoted_keys_and_inline_values() {
        let t = "all:\n  hosts:\n    \"a\": {ansible_host: 1.2.3.4}\n    b:\n";
        assert_eq!(
            remove_yaml(t, "a").unwrap().text,
            "all:\n  hosts:\n    b:\n"
        );
        assert_eq!(
            remove_yaml(t, "b").unwrap().text,
            "all:\n  hosts:\n    \"a\": {ansible_host: 1.2.3.4}\n"
        );
    }

    #[test]
    fn yaml_a_var_or_group_named_like_the_host_is_not_a_host() {
        // `lab-2:` here is a group (under children) and a var value: neither is removed.
        let t =
            "all:\n  vars:\n    lab-2: x\n  children:\n    lab-2:\n      hosts:\n        h: {}\n";
        assert_eq!(
            remove_yaml(t, "lab-2"),
            Err(EditError::NotFound {
                name: "lab-2".into()
            })
        );
        // A prefix is not the name.
        assert!(remove_yaml("all:\n  hosts:\n    lab-20:\n", "lab-2").is_err());
    }

    #[test]
    fn yaml_flow_mappings_are_refused() {
        let t = "all:\n  hosts: {a: {}, b: {}}\n";
        let e = remove_yaml(t, "a").unwrap_err();
        assert!(e.to_string().contains("by hand"), "{e}");
    }

    #[test]
    fn yaml_the_last_line_without_newline() {
        let t = "all:\n  hosts:\n    a:\n    b:\n      x: 1";
        assert_eq!(
            remove_yaml(t, "b").unwrap().text,
            "all:\n  hosts:\n    a:\n"
        );
        let t = "all:\n  hosts:  # mine\n    a:";
        assert_eq!(
            remove_yaml(t, "a").unwrap().text,
            "all:\n  hosts: {}  # mine\n"
        );
    }

    #[test]
    fn host_vars_are_found_by_name_and_set_aside_as_dot_files() {
        let d = tempfile::tempdir().unwrap();
        let hv = d.path().join("host_vars");
        std::fs::create_dir_all(hv.join("lab-3")).unwrap();
        for f in ["lab-3.yml", "lab-30.yml", ".lab-3.yml.removed"] {
            std::fs::write(hv.join(f), "x: 1\n").unwrap();
        }
        let found = host_vars_of(d.path(), "lab-3");
        let want: Vec<String> = ["lab-3", "lab-3.yml"]
            .iter()
            .map(|f| hv.join(f).display().to_string())
            .collect();
        assert_eq!(found, want);
        assert_eq!(
            set_aside("/i/host_vars/lab-3.yml"),
            "/i/host_vars/.lab-3.yml.removed"
        );
    }

    #[test]
    fn ini_host_lines_go_in_host_sections_only() {
        let t = "\
# lab
lab-3 ansible_host=192.0.2.9

[k3s_server]
lab-1 ansible_host=192.0.2.1

[k3s_agents]
lab-2
lab-3 ansible_host=192.0.2.3  ; the new one
lab-30

[k3s_agents:vars]
lab-3=not_a_host

[lab:children]
k3s_server
k3s_agents
";
        let e = remove_ini(t, "lab-3").unwrap();
        assert_eq!(
            e.text,
            "\
# lab

[k3s_server]
lab-1 ansible_host=192.0.2.1

[k3s_agents]
lab-2
lab-30

[k3s_agents:vars]
lab-3=not_a_host

[lab:children]
k3s_server
k3s_agents
"
        );
        assert_eq!(e.removed, vec![1..=1, 8..=8]);
        assert!(remove_ini("[web]\nweb[1:3]\n", "web2").is_err());
    }
}
