//! `line`: one line in a file is present (replacing what `regexp` matches) or absent — like
//! Ansible's lineinfile.
//!
//! ```yaml
//! - line:
//!     path: /etc/ssh/sshd_config
//!     regexp: '^#?PasswordAuthentication\s'
//!     line: PasswordAuthentication no
//!     validate: "sshd -t -f %s"          # optional, checks the temp file before the rename
//!   notify: [reload ssh]
//! - line:
//!     path: /etc/hosts
//!     line: "10.0.0.10 server1"
//!     insert_after: '^127\.0\.1\.1'        # or EOF (the default)
//! - line: {path: /etc/fstab, regexp: '\sswap\s', state: absent}
//! - line: {path: /etc/modules-load.d/k3s.conf, line: br_netfilter, create: true}
//! - line:                                  # a marked block, like Ansible's blockinfile
//!     path: /etc/ssh/sshd_config
//!     block: |
//!       Match User backup
//!         ForceCommand internal-sftp
//!     marker: "# {mark} LABCTL MANAGED BLOCK"   # default: "# {mark} ANSIBLE MANAGED BLOCK"
//!     # marker_begin: BEGIN, marker_end: END    # what {mark} becomes on each side
//! - line: {path: /etc/hosts, marker: "# {mark} lab", state: absent}   # the block goes
//! ```
//!
//! Present: when `regexp` matches some line, the LAST matching line becomes `line` (earlier
//! matches stay); otherwise, when `line` is already there verbatim, nothing changes; otherwise
//! `line` is inserted after the last line matching `insert_after` (at the end when nothing
//! matches, or for `EOF`). Absent: every line matching `regexp` (or equal to `line`) goes.
//!
//! With `block` (or `marker`), the lines between the last begin and end marker lines, markers
//! included, are replaced by the markers around `block`; when there are no markers, they are
//! inserted as a line would be. An empty `block` or `state: absent` removes them. This is
//! blockinfile's own algorithm, down to its `\n` after each marker in a `\r\n` file.
//!
//! Regular expressions use Rust's `regex` dialect (RE2-like: no backreferences or look-around),
//! are searched anywhere in a line (anchor with `^`/`$`), and see the line without its newline.
//! The file must be UTF-8 text of at most 256 KiB. Line endings (`\r\n` too) and a missing final
//! newline are kept; owner, group and mode of the existing file are kept.

use regex::Regex;
use serde::Deserialize;

use super::support::fs::check_path;
use super::ResourceError;
use super::{content_diff, q, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};
use crate::secret::Secret;

pub struct Line;

pub use super::State;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub path: String,
    #[serde(default)]
    pub line: Option<String>,
    #[serde(default)]
    pub regexp: Option<String>,
    #[serde(default)]
    pub state: State,
    /// `EOF` (default) or a regexp.
    #[serde(default)]
    pub insert_after: Option<String>,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub validate: Option<String>,
    /// Lines kept between two marker lines instead of one `line`.
    #[serde(default)]
    pub block: Option<String>,
    /// The marker lines: `{mark}` becomes `marker_begin`, then `marker_end`.
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub marker_begin: Option<String>,
    #[serde(default)]
    pub marker_end: Option<String>,
}

const MARKER: &str = "# {mark} ANSIBLE MANAGED BLOCK";

impl Spec {
    fn is_block(&self) -> bool {
        self.block.is_some() || self.marker.is_some()
    }

    /// The begin and end marker lines (without their newline).
    fn markers(&self) -> (String, String) {
        let m = self.marker.as_deref().unwrap_or(MARKER);
        (
            m.replace("{mark}", self.marker_begin.as_deref().unwrap_or("BEGIN")),
            m.replace("{mark}", self.marker_end.as_deref().unwrap_or("END")),
        )
    }
}

fn compile(field: &str, re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| {
        format!("`{field}` is not a valid regular expression (Rust regex syntax): {e}")
    })
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.path)?;
    if spec.is_block() {
        check_block(spec).map_err(ResourceError::Spec)?;
    } else {
        check_line(spec).map_err(ResourceError::Spec)?;
    }
    match spec.state {
        State::Present => {
            if let Some(a) = spec.insert_after.as_deref().filter(|a| *a != "EOF") {
                compile("insert_after", a).map_err(ResourceError::Spec)?;
            }
        }
        State::Absent => {
            if spec.insert_after.is_some() || spec.create {
                return Err(ResourceError::spec(
                    "`insert_after` and `create` only apply to `state: present`",
                ));
            }
        }
    }
    if let Some(v) = &spec.validate {
        if !v.contains("%s") {
            return Err(ResourceError::spec(
                "`validate` must contain `%s` (where the new file's temp path goes)",
            ));
        }
    }
    Ok(())
}

fn check_line(spec: &Spec) -> Result<(), String> {
    if spec.marker_begin.is_some() || spec.marker_end.is_some() {
        return Err("`marker_begin`/`marker_end` only apply with `block` or `marker`".into());
    }
    if let Some(l) = &spec.line {
        if l.contains('\n') || l.contains('\r') {
            return Err("`line` must be a single line (use `file` for blocks)".into());
        }
    }
    if let Some(r) = &spec.regexp {
        compile("regexp", r)?;
    }
    match spec.state {
        State::Present if spec.line.is_none() => {
            Err("`line` is required with `state: present`".into())
        }
        State::Absent if spec.line.is_none() && spec.regexp.is_none() => {
            Err("`state: absent` needs `regexp` or `line` (which lines to remove)".into())
        }
        _ => Ok(()),
    }
}

fn check_block(spec: &Spec) -> Result<(), String> {
    if spec.line.is_some() || spec.regexp.is_some() {
        return Err(
            "`block` (or `marker`) and `line`/`regexp` are two different edits: give one".into(),
        );
    }
    let (begin, end) = spec.markers();
    if begin == end {
        return Err(format!(
            "the begin and end markers are the same line `{begin}`: put `{{mark}}` in `marker`"
        ));
    }
    if [&begin, &end].iter().any(|m| m.contains(['\n', '\r'])) {
        return Err("a marker must be a single line".into());
    }
    if spec.state == State::Present && spec.block.is_none() {
        return Err("`block` is required with `state: present`".into());
    }
    Ok(())
}

/// A file split into lines, each keeping its own terminator, so an edit touches nothing else.
struct Lines<'a> {
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> Lines<'a> {
    fn split(text: &'a str) -> Lines<'a> {
        let mut lines = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (body, term, tail) = match rest.find('\n') {
                Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => {
                    (&rest[..i - 1], "\r\n", &rest[i + 1..])
                }
                Some(i) => (&rest[..i], "\n", &rest[i + 1..]),
                None => (rest, "", ""),
            };
            lines.push((body, term));
            rest = tail;
        }
        Lines { lines }
    }

    /// The terminator new lines get: the file's own (CRLF files stay CRLF).
    fn newline(&self) -> &'a str {
        self.lines
            .iter()
            .map(|l| l.1)
            .find(|t| !t.is_empty())
            .unwrap_or("\n")
    }
}

/// The whole new file, or None when `line` is already as wanted. Pure; the heart of `line`.
fn edit(spec: &Spec, old: &str) -> Result<Option<String>, String> {
    if spec.is_block() {
        return edit_block(spec, old);
    }
    let f = Lines::split(old);
    let nl = f.newline();
    let regexp = spec
        .regexp
        .as_deref()
        .map(|r| compile("regexp", r))
        .transpose()?;
    let mut out: Vec<(String, &str)> = f.lines.iter().map(|(b, t)| (b.to_string(), *t)).collect();
    match spec.state {
        State::Absent => {
            let before = out.len();
            out.retain(|(b, _)| match &regexp {
                Some(re) => !re.is_match(b),
                None => Some(b.as_str()) != spec.line.as_deref(),
            });
            if out.len() == before {
                return Ok(None);
            }
        }
        State::Present => {
            let line = spec
                .line
                .as_deref()
                .ok_or("`line` is required with `state: present`")?;
            let last_match = regexp
                .as_ref()
                .and_then(|re| out.iter().rposition(|(b, _)| re.is_match(b)));
            if let Some(i) = last_match {
                if out[i].0 == line {
                    return Ok(None);
                }
                out[i].0 = line.to_string();
            } else if out.iter().any(|(b, _)| b == line) {
                // A `line` its own `regexp` does not match would otherwise be appended every run.
                return Ok(None);
            } else {
                let after = match spec.insert_after.as_deref() {
                    None | Some("EOF") => None,
                    Some(a) => {
                        let re = compile("insert_after", a)?;
                        out.iter().rposition(|(b, _)| re.is_match(b))
                    }
                };
                let at = after.map(|i| i + 1).unwrap_or(out.len());
                // The line before the new one must end: a file without a final newline gets one.
                if at > 0 && out[at - 1].1.is_empty() {
                    out[at - 1].1 = nl;
                }
                out.insert(at, (line.to_string(), nl));
            }
        }
    }
    Ok(Some(
        out.iter().flat_map(|(b, t)| [b.as_str(), *t]).collect(),
    ))
}

/// blockinfile's algorithm: markers are whole lines ending in `\n`; the last begin and the last
/// end marker delimit the old block (in either order); without both, the new block goes after
/// the last line matching `insert_after`, or at the end.
fn edit_block(spec: &Spec, old: &str) -> Result<Option<String>, String> {
    let (begin, end) = spec.markers();
    let is = |l: &(String, &str), m: &str| l.0 == m && l.1 == "\n";
    let mut out: Vec<(String, &str)> = Lines::split(old)
        .lines
        .iter()
        .map(|(b, t)| (b.to_string(), *t))
        .collect();
    let block = spec.block.as_deref().unwrap_or("");
    let mut new: Vec<(String, &str)> = Vec::new();
    if spec.state == State::Present && !block.is_empty() {
        new.push((begin.clone(), "\n"));
        let body = Lines::split(block);
        new.extend(body.lines.iter().map(|(b, t)| (b.to_string(), *t)));
        if let Some(last) = new.last_mut() {
            if last.1.is_empty() {
                last.1 = "\n";
            }
        }
        new.push((end.clone(), "\n"));
    }
    let n0 = out.iter().rposition(|l| is(l, &begin));
    let n1 = out.iter().rposition(|l| is(l, &end));
    let at = match (n0, n1) {
        (Some(a), Some(b)) => {
            let (a, b) = (a.min(b), a.max(b));
            out.drain(a..=b);
            a
        }
        _ => match spec.insert_after.as_deref() {
            None | Some("EOF") => out.len(),
            Some(a) => {
                let re = compile("insert_after", a)?;
                out.iter()
                    .rposition(|(b, _)| re.is_match(b))
                    .map(|i| i + 1)
                    .unwrap_or(out.len())
            }
        },
    };
    if at > 0 && out[at - 1].1.is_empty() {
        out[at - 1].1 = "\n";
    }
    out.splice(at..at, new);
    let text: String = out.iter().flat_map(|(b, t)| [b.as_str(), *t]).collect();
    Ok((text != old).then_some(text))
}

impl Resource for Line {
    const KIND: &'static str = "line";
    type Spec = Spec;

    /// Several `line`s often edit one file: the id carries what each one looks for.
    fn name(spec: &Spec) -> String {
        if spec.is_block() {
            return format!("{}:{}", spec.path, spec.markers().0);
        }
        let what = spec
            .regexp
            .as_deref()
            .or(spec.line.as_deref())
            .unwrap_or("");
        let short: String = what.chars().take(40).collect();
        let ell = if what.chars().count() > 40 { "…" } else { "" };
        format!("{}:{short}{ell}", spec.path)
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![FileQuery::new(&spec.path, true).query()]
    }

    /// Writes the whole file computed from the content probed at plan time. That is safe against
    /// stale reads within a run because apply re-probes a resource right before executing it
    /// once anything earlier changed the host (so an `apt` that rewrote the file, or another
    /// `line` on the same file, is seen), and a saved plan is refused when the file moved since.
    fn touches(spec: &Spec) -> Vec<Touch> {
        vec![Touch::path(&spec.path)]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let seen = facts.get(&FileQuery::new(&spec.path, true))?;
        if !seen.exists {
            if spec.state == State::Absent {
                return Ok(None);
            }
            if !spec.create {
                // Not an error at plan time: an earlier resource (a package) may create the file,
                // and apply re-probes then. If nothing did, this step fails loudly.
                let msg = format!(
                    "labctl: {} does not exist (set `create: true` to create it)",
                    spec.path
                );
                return Ok(Some(Drift::new(
                    Action::Update,
                    vec!["file does not exist (yet?)".into()],
                    vec![Step::sh(format!("echo {} >&2; exit 1", q(&msg)))],
                )));
            }
            let new = edit(spec, "")
                .map_err(ResourceError::Host)?
                .unwrap_or_default()
                .into_bytes();
            let diff = content_diff(&spec.path, None, &new, cx);
            let step = write(spec, new, None, None, cx);
            return Ok(Some(
                Drift::new(Action::Create, vec!["absent".into()], vec![step]).with_diff(Some(diff)),
            ));
        }
        match seen.kind {
            FileKind::File => {}
            FileKind::Symlink => {
                return Err(ResourceError::Host(format!(
                "{} is a symlink (to {}); point `path` at the real file so the link stays a link",
                spec.path,
                seen.link_target.as_deref().unwrap_or("?")
            )))
            }
            kind => {
                return Err(ResourceError::Host(format!(
                    "{} is a {kind} on the host, not a file",
                    spec.path
                )))
            }
        }
        let Some(old) = seen.content.as_deref() else {
            return Err(ResourceError::Host(format!(
                "{} is {} bytes; `line` edits files up to 256 KiB (use `file` for the whole body)",
                spec.path, seen.size
            )));
        };
        let old_text = std::str::from_utf8(old)
            .map_err(|_| {
                format!(
                    "{} is not UTF-8 text; `line` edits text files only",
                    spec.path
                )
            })
            .map_err(ResourceError::Host)?;
        let Some(new) = edit(spec, old_text).map_err(ResourceError::Host)? else {
            return Ok(None);
        };
        let new = new.into_bytes();
        let diff = content_diff(&spec.path, Some(old), &new, cx);
        let reason = match (spec.is_block(), spec.state) {
            (false, State::Present) => "line missing or different",
            (false, State::Absent) => "line present",
            (true, State::Present) if spec.block.as_deref() != Some("") => {
                "block missing or different"
            }
            (true, _) => "block present",
        };
        let step = write(spec, new, Some(seen.owner), Some(seen.group), cx);
        Ok(Some(
            Drift::new(Action::Update, vec![reason.into()], vec![step]).with_diff(Some(diff)),
        ))
    }
}

/// mode None: the writer keeps the existing file's mode. Owner and group are passed from the
/// fact because the writer's temp file is otherwise root's.
fn write(
    spec: &Spec,
    content: Vec<u8>,
    owner: Option<String>,
    group: Option<String>,
    cx: &DiffCx,
) -> Step {
    Step::Write {
        path: spec.path.clone(),
        content: Secret::new(content),
        mode: None,
        owner,
        group,
        validate: spec.validate.clone(),
        secret: cx.secret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const KEY: &str = "file+content:/etc/ssh/sshd_config";

    fn present(body: &str) -> String {
        use base64::Engine as _;
        format!(
            "stat regular file|600|root|ssh|{}\nsha256 {}\ncontent {}\n",
            body.len(),
            crate::digest::sha256_hex(body.as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    }

    fn written(d: &Drift) -> (String, Option<String>, Option<String>, Option<String>) {
        match &d.steps[..] {
            [Step::Write {
                content,
                mode,
                owner,
                group,
                ..
            }] => (
                String::from_utf8(content.expose().clone()).unwrap(),
                mode.clone(),
                owner.clone(),
                group.clone(),
            ),
            other => panic!("{other:?}"),
        }
    }

    fn new_text(yaml: &str, old: &str) -> Option<String> {
        edit(&spec::<Line>(yaml), old).unwrap()
    }

    const PW: &str = "path: /etc/ssh/sshd_config\nregexp: '^#?PasswordAuthentication\\s'\nline: PasswordAuthentication no\n";

    #[test]
    fn absent_file_is_created_when_asked() {
        let s = spec::<Line>("path: /etc/ssh/sshd_config\nline: br_netfilter\ncreate: true\n");
        let d = Line::diff(&s, &facts(&[(KEY, "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(written(&d), ("br_netfilter\n".into(), None, None, None));
        assert!(d.diff.unwrap().contains("+br_netfilter"));
    }

    #[test]
    fn absent_file_without_create_fails_loudly_at_apply() {
        let s = spec::<Line>(PW);
        let d = Line::diff(&s, &facts(&[(KEY, "absent\n")]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(scripts(&d), "echo 'labctl: /etc/ssh/sshd_config does not exist (set `create: true` to create it)' >&2; exit 1");
    }

    #[test]
    fn present_line_is_in_sync() {
        let s = spec::<Line>(PW);
        let f = facts(&[(KEY, &present("Port 22\nPasswordAuthentication no\n"))]);
        assert!(Line::diff(&s, &f, &cx()).unwrap().is_none());
    }

    #[test]
    fn regexp_replaces_the_last_match_keeping_owner_and_mode() {
        let s = spec::<Line>(PW);
        let old = "#PasswordAuthentication yes\nPort 22\nPasswordAuthentication yes\nUsePAM yes\n";
        let d = Line::diff(&s, &facts(&[(KEY, &present(old))]), &cx())
            .unwrap()
            .unwrap();
        assert_eq!(d.action, Action::Update);
        let (body, mode, owner, group) = written(&d);
        assert_eq!(
            body,
            "#PasswordAuthentication yes\nPort 22\nPasswordAuthentication no\nUsePAM yes\n"
        );
        assert_eq!(
            (mode, owner.as_deref(), group.as_deref()),
            (None, Some("root"), Some("ssh"))
        );
        let diff = d.diff.unwrap();
        assert!(
            diff.contains("-PasswordAuthentication yes")
                && diff.contains("+PasswordAuthentication no"),
            "{diff}"
        );
    }

    #[test]
    fn no_match_appends_and_verbatim_line_is_not_duplicated() {
        assert_eq!(
            new_text(PW, "Port 22\n").as_deref(),
            Some("Port 22\nPasswordAuthentication no\n")
        );
        // `line` that its own regexp does not match: present verbatim means in sync.
        let y = "path: /x\nregexp: '^Foo='\nline: 'foo=1'\n";
        assert_eq!(new_text(y, "a\nfoo=1\n"), None);
        assert_eq!(new_text("path: /x\nline: b\n", "a\nb\n"), None);
    }

    #[test]
    fn missing_final_newline_is_handled() {
        assert_eq!(
            new_text(PW, "Port 22").as_deref(),
            Some("Port 22\nPasswordAuthentication no\n")
        );
        // A replaced last line keeps the file's (missing) final newline.
        assert_eq!(
            new_text(PW, "Port 22\nPasswordAuthentication yes").as_deref(),
            Some("Port 22\nPasswordAuthentication no")
        );
        assert_eq!(
            new_text(PW, "").as_deref(),
            Some("PasswordAuthentication no\n")
        );
    }

    #[test]
    fn crlf_files_stay_crlf() {
        assert_eq!(
            new_text("path: /x\nline: c\n", "a\r\nb\r\n").as_deref(),
            Some("a\r\nb\r\nc\r\n")
        );
        assert_eq!(
            new_text("path: /x\nregexp: '^b$'\nline: B\n", "a\r\nb\r\n").as_deref(),
            Some("a\r\nB\r\n")
        );
    }

    #[test]
    fn insert_after_the_last_match_or_at_eof() {
        let y = "path: /etc/hosts\nline: 10.0.0.10 server1\ninsert_after: '^127\\.'\n";
        let old = "127.0.0.1 localhost\n127.0.1.1 me\n::1 ip6\n";
        assert_eq!(
            new_text(y, old).as_deref(),
            Some("127.0.0.1 localhost\n127.0.1.1 me\n10.0.0.10 server1\n::1 ip6\n")
        );
        assert_eq!(
            new_text(y, "::1 ip6\n").as_deref(),
            Some("::1 ip6\n10.0.0.10 server1\n")
        );
        let y = "path: /etc/hosts\nline: z\ninsert_after: EOF\n";
        assert_eq!(new_text(y, "a\n").as_deref(), Some("a\nz\n"));
        // Inserting after a last line that has no newline gives it one.
        let y = "path: /x\nline: z\ninsert_after: '^a'\n";
        assert_eq!(new_text(y, "a").as_deref(), Some("a\nz\n"));
    }

    #[test]
    fn absent_removes_matching_lines() {
        let y = "path: /etc/fstab\nregexp: '\\sswap\\s'\nstate: absent\n";
        let old =
            "UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n/swap2 none swap sw 0 0\n";
        assert_eq!(
            new_text(y, old).as_deref(),
            Some("UUID=1 / ext4 defaults 0 1\n")
        );
        assert_eq!(new_text(y, "UUID=1 / ext4 defaults 0 1\n"), None);
        assert_eq!(
            new_text("path: /x\nline: b\nstate: absent\n", "a\nb\nbb\n").as_deref(),
            Some("a\nbb\n")
        );
        let s = spec::<Line>("path: /etc/fstab\nline: x\nstate: absent\n");
        assert!(Line::diff(
            &s,
            &facts(&[("file+content:/etc/fstab", "absent\n")]),
            &cx()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(check(&spec::<Line>("path: /x\nregexp: '('\nline: a\n"))
            .unwrap_err()
            .to_string()
            .contains("`regexp`"));
        assert!(check(&spec::<Line>("path: /x\nregexp: a\n"))
            .unwrap_err()
            .to_string()
            .contains("`line` is required"));
        assert!(check(&spec::<Line>("path: /x\nstate: absent\n"))
            .unwrap_err()
            .to_string()
            .contains("needs `regexp` or `line`"));
        assert!(check(&spec::<Line>("path: /x\nline: \"a\\nb\"\n"))
            .unwrap_err()
            .to_string()
            .contains("single line"));
        assert!(spec_err::<Line>("path: /x\nline: a\ninsertafter: b\n").contains("insertafter"));
    }

    #[test]
    fn big_symlinked_or_binary_files_are_errors() {
        let s = spec::<Line>(PW);
        let big = "stat regular file|644|root|root|300000\nsha256 ab\n";
        assert!(Line::diff(&s, &facts(&[(KEY, big)]), &cx())
            .unwrap_err()
            .to_string()
            .contains("256 KiB"));
        let link = "link /etc/x\nstat symlink|777|root|root|6\n";
        assert!(Line::diff(&s, &facts(&[(KEY, link)]), &cx())
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        let bin = "stat regular file|644|root|root|2\nsha256 ab\ncontent //4=\n";
        assert!(Line::diff(&s, &facts(&[(KEY, bin)]), &cx())
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    const BLK: &str = "path: /etc/hosts\nblock: |\n  10.0.0.1 a\n  10.0.0.2 b\n";

    #[test]
    fn a_block_is_appended_then_in_sync_then_replaced() {
        let with = "127.0.0.1 localhost\n# BEGIN ANSIBLE MANAGED BLOCK\n10.0.0.1 a\n10.0.0.2 b\n# END ANSIBLE MANAGED BLOCK\n";
        assert_eq!(
            new_text(BLK, "127.0.0.1 localhost\n").as_deref(),
            Some(with)
        );
        assert_eq!(new_text(BLK, with), None);
        // The old block is replaced where it stands; what follows stays.
        let old = "# BEGIN ANSIBLE MANAGED BLOCK\nold\n# END ANSIBLE MANAGED BLOCK\n::1 ip6\n";
        assert_eq!(
            new_text(BLK, old).as_deref(),
            Some("# BEGIN ANSIBLE MANAGED BLOCK\n10.0.0.1 a\n10.0.0.2 b\n# END ANSIBLE MANAGED BLOCK\n::1 ip6\n")
        );
        // A block without a final newline gets one; so does a last line before the block.
        let y = "path: /x\nblock: z\nmarker: '## {mark}'\nmarker_begin: '>'\nmarker_end: '<'\n";
        assert_eq!(new_text(y, "a").as_deref(), Some("a\n## >\nz\n## <\n"));
    }

    #[test]
    fn a_block_goes_after_insert_after_and_empty_or_absent_removes_it() {
        let y = "path: /x\nblock: b\ninsert_after: '^a'\n";
        assert_eq!(
            new_text(y, "a\nc\n").as_deref(),
            Some("a\n# BEGIN ANSIBLE MANAGED BLOCK\nb\n# END ANSIBLE MANAGED BLOCK\nc\n")
        );
        let with = "a\n# BEGIN ANSIBLE MANAGED BLOCK\nb\n# END ANSIBLE MANAGED BLOCK\nc\n";
        assert_eq!(
            new_text("path: /x\nblock: ''\n", with).as_deref(),
            Some("a\nc\n")
        );
        assert_eq!(
            new_text(
                "path: /x\nmarker: '# {mark} ANSIBLE MANAGED BLOCK'\nstate: absent\n",
                with
            )
            .as_deref(),
            Some("a\nc\n")
        );
        assert_eq!(new_text("path: /x\nblock: ''\n", "a\nc\n"), None);
        // Markers end in \n as blockinfile writes them, also in a CRLF file.
        assert_eq!(
            new_text("path: /x\nblock: b\n", "a\r\n").as_deref(),
            Some("a\r\n# BEGIN ANSIBLE MANAGED BLOCK\nb\n# END ANSIBLE MANAGED BLOCK\n")
        );
    }

    #[test]
    fn block_specs_are_checked() {
        for (y, why) in [
            ("path: /x\nblock: a\nline: b\n", "two different edits"),
            (
                "path: /x\nmarker: '# lab'\nstate: absent\n",
                "the same line",
            ),
            ("path: /x\nmarker: '# {mark}'\n", "`block` is required"),
            (
                "path: /x\nline: a\nmarker_begin: X\n",
                "only apply with `block`",
            ),
        ] {
            let e = check(&spec::<Line>(y)).unwrap_err().to_string();
            assert!(e.contains(why), "{y}: {e}");
        }
        assert_eq!(
            Line::name(&spec::<Line>(BLK)),
            "/etc/hosts:# BEGIN ANSIBLE MANAGED BLOCK"
        );
    }

    #[test]
    fn ids_differ_per_edit() {
        assert_eq!(
            Line::name(&spec::<Line>(PW)),
            "/etc/ssh/sshd_config:^#?PasswordAuthentication\\s"
        );
    }
}
