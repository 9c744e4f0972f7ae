//! The documentation against the binary: every `labctl COMMAND … --flag` shown in README.md and
//! docs/*.md (code blocks and inline code) names a subcommand that exists and flags its `--help`
//! lists; every relative link points at a file (and heading) that exists; and docs/resources.md
//! is what `labctl doc` prints, so none of them can drift from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as (path relative to the repo, text).
fn pages() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Flags every subcommand accepts (clap's `global = true` ones), besides its own.
const GLOBAL_FLAGS: &[&str] = &[
    "--json",
    "--vault-key",
    "--vault-password-file",
    "--color",
    "--verbose",
    "-v",
    "--help",
    "-h",
];

/// `labctl … --help` of a command path, asked once each.
struct Help(BTreeMap<Vec<String>, Option<String>>);

impl Help {
    fn new() -> Help {
        Help(BTreeMap::new())
    }

    /// The help text of `path`, or None when it is no command.
    fn get(&mut self, path: &[String]) -> Option<String> {
        if let Some(h) = self.0.get(path) {
            return h.clone();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_labctl"))
            .args(path)
            .arg("--help")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let h = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        self.0.insert(path.to_vec(), h.clone());
        h
    }

    /// The subcommands `path`'s help lists under "Commands:".
    fn subcommands(&mut self, path: &[String]) -> BTreeSet<String> {
        let help = self.get(path).unwrap_or_default();
        let mut out = BTreeSet::new();
        let mut inside = false;
        for line in help.lines() {
            if line.starts_with("Commands:") {
                inside = true;
            } else if inside && !line.starts_with(' ') && !line.is_empty() {
                break;
            } else if inside && line.starts_with("  ") && !line.starts_with("   ") {
                if let Some(w) = line.split_whitespace().next() {
                    out.insert(w.to_string());
                }
            }
        }
        out.remove("help");
        out
    }

    /// `flag` (`--name` or `-x`) is in `path`'s help as an option.
    fn has_flag(&mut self, path: &[String], flag: &str) -> bool {
        if GLOBAL_FLAGS.contains(&flag) {
            return true;
        }
        let help = self.get(path).unwrap_or_default();
        let re = regex::Regex::new(&format!(
            r"(?m)^\s+(-[a-zA-Z], )?{}[ ,=\n]",
            regex::escape(flag)
        ))
        .unwrap();
        re.is_match(&format!("{help}\n"))
            || (flag.len() == 2
                && regex::Regex::new(&format!(r"(?m)^\s+{}, --", regex::escape(flag)))
                    .unwrap()
                    .is_match(&help))
    }
}

/// The code of a page: fenced blocks whole, and inline code spans outside them.
fn code_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut block: Option<String> = None;
    // A ```text block is output (a report, a log), not commands: prose in it may name labctl.
    let mut output = false;
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match block.take() {
                Some(b) if !output => out.push(b),
                Some(_) => {}
                None => {
                    output = info.trim() == "text";
                    block = Some(String::new());
                }
            }
            continue;
        }
        match block.as_mut() {
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    // An inline span may wrap onto the next line, as Markdown allows: it is one line of code.
    let span = regex::Regex::new(r"`([^`]+)`").unwrap();
    out.extend(span.captures_iter(&prose).map(|c| c[1].replace('\n', " ")));
    out
}

/// The labctl command lines in a piece of code: the words after `labctl`, up to the end of the
/// line, a comment, `--` (what follows belongs to the command run) or a shell operator.
fn commands(code: &str) -> Vec<Vec<String>> {
    let start = regex::Regex::new(r"(^|[\s/(`$])labctl\s").unwrap();
    let mut out = Vec::new();
    // Markdown tables escape `|` as `\|`.
    let code = code.replace("\\|", "|");
    let comment = regex::Regex::new(r"(^|\s)#.*").unwrap();
    for line in code.lines() {
        // A comment is prose, even when it names labctl ("the port labctl reaches the host on").
        let line = comment.replace(line, "");
        for m in start.find_iter(&line) {
            let mut words = Vec::new();
            for w in line[m.end()..].split_whitespace() {
                if w == "--" || ["|", "&&", ";", "||", ">", "<"].contains(&w) {
                    break;
                }
                words.push(w.to_string());
            }
            out.push(words);
        }
    }
    out
}

/// What in `text` (a page called `name`) names a subcommand or a flag the binary lacks.
fn problems(name: &str, text: &str, help: &mut Help) -> Vec<String> {
    let mut out = Vec::new();
    for code in code_of(text) {
        for words in commands(&code) {
            let shown = format!("labctl {}", words.join(" "));
            let mut path: Vec<String> = Vec::new();
            let mut alternatives: Vec<Vec<String>> = vec![];
            let mut rest = words
                .iter()
                .map(|w| w.trim_matches(|c| "[](),.;:'\"".contains(c)).to_string());
            // The subcommand path: words naming subcommands, in order (`vault keygen|encrypt`
            // names several; each must exist).
            let mut args = Vec::new();
            let mut unknown = false;
            for w in rest.by_ref() {
                let subs = help.subcommands(&path);
                if w.starts_with('-') || subs.is_empty() {
                    args.push(w);
                    break;
                }
                let names: Vec<&str> = w.split('|').collect();
                let known = names.iter().all(|n| subs.contains(*n));
                let word_like = names.iter().all(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                });
                if known {
                    if names.len() > 1 {
                        alternatives = names
                            .iter()
                            .map(|n| [path.clone(), vec![n.to_string()]].concat())
                            .collect();
                    }
                    path.push(names[0].to_string());
                } else if word_like && path.is_empty() {
                    out.push(format!(
                        "{name}: `{shown}`: `{w}` is not a labctl command ({})",
                        subs.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                    unknown = true;
                    break;
                } else if word_like && !subs.is_empty() {
                    out.push(format!(
                        "{name}: `{shown}`: `{w}` is not a `labctl {}` command",
                        path.join(" ")
                    ));
                    unknown = true;
                    break;
                } else {
                    args.push(w);
                    break;
                }
            }
            if unknown {
                continue;
            }
            args.extend(rest);
            let paths = if alternatives.is_empty() {
                vec![path]
            } else {
                alternatives
            };
            for a in &args {
                let flag = a.split('=').next().unwrap_or("");
                let long = flag.starts_with("--") && flag.len() > 2;
                let short = flag.len() == 2 && flag.starts_with('-') && flag != "--";
                if !(long || short) || flag.contains('…') {
                    continue;
                }
                for p in &paths {
                    if !help.has_flag(p, flag) {
                        out.push(format!(
                            "{name}: `{shown}`: `labctl {} --help` has no `{flag}`",
                            p.join(" ")
                        ));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn commands_and_flags_in_the_docs_exist() {
    let mut help = Help::new();
    let mut all = Vec::new();
    let mut seen = 0;
    for (name, text) in pages() {
        seen += code_of(&text)
            .iter()
            .map(|c| commands(c).len())
            .sum::<usize>();
        all.extend(problems(&name, &text, &mut help));
    }
    assert!(
        seen > 50,
        "only {seen} labctl commands found: is the extraction broken?"
    );
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn a_made_up_flag_or_command_is_found() {
    let mut help = Help::new();
    let page = "Run `labctl plan --tags web --no-such-flag` first.\n\n```sh\nlabctl apply --yes -i x # --not-checked-in-a-comment\nlabctl vault encrypt --in-place f\nlabctl vault keygen|encrypt --bogus\nlabctl frobnicate --yes\nlabctl testbed up --hosts 2 -Q\n```\n\n```text\nleft out: x: labctl has no such thing\n```\n";
    let found = problems("made-up.md", page, &mut help);
    let has = |s: &str| found.iter().any(|f| f.contains(s));
    assert!(has("has no `--no-such-flag`"), "{found:?}");
    assert!(
        has("`labctl vault keygen --help` has no `--bogus`"),
        "{found:?}"
    );
    assert!(
        has("`labctl vault encrypt --help` has no `--bogus`"),
        "{found:?}"
    );
    assert!(has("`frobnicate` is not a labctl command"), "{found:?}");
    assert!(has("`labctl testbed up --help` has no `-Q`"), "{found:?}");
    assert_eq!(found.len(), 5, "{found:?}");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            code = !code;
        } else if !code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// What in `text` (the page at `page`, relative to the repo) links to a missing file or heading.
fn broken_links(page: &str, text: &str) -> Vec<String> {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let dir = Path::new(page).parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for c in link.captures_iter(text) {
        let target = &c[1];
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let path = if file.is_empty() {
            root().join(page)
        } else {
            root().join(dir).join(file)
        };
        if !path.exists() {
            out.push(format!(
                "{page}: link `{target}`: {} does not exist",
                path.display()
            ));
            continue;
        }
        if !anchor.is_empty() && path.extension().is_some_and(|e| e == "md") {
            let heads = anchors(&std::fs::read_to_string(&path).unwrap());
            if !heads.contains(anchor) {
                out.push(format!(
                    "{page}: link `{target}`: no heading with anchor #{anchor}"
                ));
            }
        }
    }
    out
}

#[test]
fn relative_links_point_at_existing_files_and_headings() {
    let mut all = Vec::new();
    for (name, text) in pages() {
        all.extend(broken_links(&name, &text));
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
    // The check itself: a missing file and a missing heading are found.
    let bad = broken_links(
        "docs/x.md",
        "[a](nope.md) [b](roles.md#no-such-heading) [c](roles.md#k3s) [d](https://x.org/y)",
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
}

/// The generated part of docs/resources.md: each type's `labctl doc TYPE`, under its name.
fn resource_reference() -> String {
    let doc = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_labctl"))
            .arg("doc")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "labctl doc {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut s = String::new();
    for line in doc(&[]).lines() {
        let kind = line.split_whitespace().next().unwrap();
        let text = doc(&[kind]);
        let text = text.strip_prefix(&format!("`{kind}`: ")).unwrap_or(&text);
        s.push_str(&format!("\n## `{kind}`\n\n{}\n", text.trim_end()));
    }
    s
}

const GENERATED: &str = "<!-- Everything below is generated";

/// docs/resources.md is its hand-written head, then what `labctl doc` prints for every type;
/// `LABCTL_BLESS=1` rewrites the generated part.
#[test]
fn resources_page_is_what_labctl_doc_prints() {
    let path = root().join("docs/resources.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let at = page
        .find(GENERATED)
        .expect("docs/resources.md has the generated-part marker");
    let head_end = at + page[at..].find('\n').unwrap() + 1;
    let want = format!("{}{}", &page[..head_end], resource_reference());
    if std::env::var("LABCTL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        page == want,
        "docs/resources.md differs from `labctl doc` (the module docs in src/resources/); \
         LABCTL_BLESS=1 cargo test --test main docs_commands rewrites it"
    );
}
