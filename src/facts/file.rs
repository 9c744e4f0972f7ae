//! File facts: type, mode, owner, group, sha256, and (for small files, when asked) the body.
//!
//! Every file query of a probe is answered together (`Merge`): ONE `stat` for all paths, one
//! `readlink` for the symlinks among them, one `cat | base64` for the bodies asked for (their
//! sha256 is computed here, from the bytes), and one `sha256sum` for the other regular files.
//! A path costs no process of its own.
//!
//! Per query, the answer a parser reads (and a fingerprint hashes) is one of:
//! `absent`, or `link TARGET` (symlinks), `stat KIND|MODE|OWNER|GROUP|SIZE`, `sha256 HEX`
//! (readable regular files) and `content BASE64` (when asked and small). The `fixture` builders
//! below write it for tests.

use base64::Engine as _;

use super::{parse_err, q, unexpected, Fact, FactError, Merge};

/// Bodies up to this size come back with the probe, so plans can show a diff without a second
/// round trip. Bigger files are compared by sha256 only.
pub const CONTENT_LIMIT: u64 = 256 * 1024;

/// What a path is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// Devices, sockets, fifos; and the kind of an absent path.
    #[default]
    Other,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FileFact {
    pub exists: bool,
    pub kind: FileKind,
    /// Octal, four digits: `0644`.
    pub mode: String,
    pub owner: String,
    pub group: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// A path's metadata, and its body when `content` (and the file is small enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileQuery {
    pub path: String,
    pub content: bool,
}

impl FileQuery {
    pub fn new(path: &str, content: bool) -> Self {
        FileQuery {
            path: path.to_string(),
            content,
        }
    }

    fn arg(&self) -> String {
        format!("{}{}", if self.content { 'c' } else { '-' }, self.path)
    }
}

impl Fact for FileQuery {
    type Output = FileFact;

    fn key(&self) -> String {
        if self.content {
            format!("file+content:{}", self.path)
        } else {
            format!("file:{}", self.path)
        }
    }

    fn script(&self) -> String {
        merged_script(&[&self.arg()])
    }

    fn parse(&self, out: &str) -> Result<FileFact, FactError> {
        parse(&self.key(), out)
    }

    fn merge(&self) -> Option<Merge> {
        Some(Merge {
            family: "file",
            arg: self.arg(),
            script: merged_script,
            split,
        })
    }
}

/// The snippet for many paths. Each arg is `c` (body wanted) or `-`, then the path. Paths are
/// held in variables `__f1..__fN` and lists are built from variable REFERENCES, so no path is
/// ever re-quoted by the shell; `eval` expands the lists into one command each.
pub fn merged_script(args: &[&str]) -> String {
    let mut s = String::from("__NL='\n'; ");
    for (i, a) in args.iter().enumerate() {
        let n = i + 1;
        let (flag, path) = a.split_at(1);
        s.push_str(&format!("__f{n}={}; __fc{n}=", q(path)));
        if flag == "c" {
            s.push('1');
        }
        s.push_str("; ");
    }
    let idx: Vec<String> = (1..=args.len()).map(|i| i.to_string()).collect();
    s.push_str(&format!(
        "__fe=; __fs=; __ll=; __hl=; __cl=; __ci=
for __i in {idx}; do eval \"__p=\\$__f$__i\"; if [ -L \"$__p\" ] || [ -e \"$__p\" ]; then __fe=\"$__fe $__i\"; __fs=\"$__fs \\\"\\$__f$__i\\\"\"; fi; done
echo \"exist$__fe\"; echo @stat
if [ -n \"$__fs\" ]; then
eval \"__st=\\$(stat -c '%F|%a|%U|%G|%s' -- $__fs)\"; printf '%s\\n' \"$__st\"
__r=\"$__st$__NL\"
for __i in $__fe; do __l=${{__r%%\"$__NL\"*}}; __r=${{__r#*\"$__NL\"}}
case $__l in
'symbolic link|'*) __ll=\"$__ll \\\"\\$__f$__i\\\"\";;
'regular '*) eval \"__c=\\$__fc$__i; __p=\\$__f$__i\"; if [ -n \"$__c\" ] && [ \"${{__l##*|}}\" -le {CONTENT_LIMIT} ] && [ -r \"$__p\" ]; then __cl=\"$__cl \\\"\\$__f$__i\\\"\"; __ci=\"$__ci $__i\"; else __hl=\"$__hl \\\"\\$__f$__i\\\"\"; fi;;
esac; done
fi
echo @bodies; echo \"$__ci\"
echo @link; if [ -n \"$__ll\" ]; then eval \"readlink -- $__ll\"; fi
echo @sha; if [ -n \"$__hl\" ]; then eval \"sha256sum -- $__hl\"; fi
echo @content; if [ -n \"$__cl\" ]; then eval \"cat -- $__cl\" | base64 -w0; echo; fi
echo @end",
        idx = idx.join(" ")
    ));
    s
}

/// One merged answer → one answer per arg (see the module docs for its shape).
pub fn split(args: &[&str], out: &str) -> Result<Vec<String>, super::SplitError> {
    let mut lines = out.lines();
    let exist: Vec<usize> = lines
        .next()
        .and_then(|l| l.strip_prefix("exist"))
        .ok_or("no `exist` line")?
        .split_whitespace()
        .map(|n| {
            n.parse::<usize>()
                .ok()
                .filter(|n| (1..=args.len()).contains(n))
        })
        .collect::<Option<_>>()
        .ok_or("bad `exist` line")?;
    let mut sections: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let mut current = None;
    for line in lines {
        match line {
            "@stat" | "@bodies" | "@link" | "@sha" | "@content" | "@end" => {
                current = Some(line);
                sections.entry(line).or_default();
            }
            _ => sections
                .entry(current.ok_or("output before `@stat`")?)
                .or_default()
                .push(line),
        }
    }
    if !sections.contains_key("@end") {
        return Err("answer cut short".into());
    }
    let section = |name: &str| sections.get(name).cloned().unwrap_or_default();
    let stats: Vec<&str> = section("@stat")
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    if stats.len() != exist.len() {
        return Err(format!(
            "stat answered {} of {} paths (did one vanish during the probe? run again)",
            stats.len(),
            exist.len()
        )
        .into());
    }
    let mut links = section("@link").into_iter();
    let shas = section("@sha");
    let mut shas = shas.iter().filter_map(|l| sha_line(l)).peekable();
    let bodies = base64::engine::general_purpose::STANDARD
        .decode(section("@content").concat().trim())
        .map_err(|_| "file bodies are not base64")?;
    // The files whose bodies the snippet sent, in order: asked for, small and readable.
    let with_body: std::collections::BTreeSet<usize> = section("@bodies")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|n| n.parse().ok())
        .collect();
    let mut offset = 0usize;
    let mut answers = vec!["absent\n".to_string(); args.len()];
    for (n, st) in exist.iter().zip(stats) {
        let path = &args[n - 1][1..];
        let want_body = args[n - 1].starts_with('c');
        let mut a = String::new();
        if st.starts_with("symbolic link|") {
            let t = links.next().ok_or("readlink answered too few links")?;
            a.push_str(&format!("link {t}\n"));
        }
        a.push_str(&format!("stat {st}\n"));
        if st.starts_with("regular ") {
            let size: u64 = st
                .rsplit('|')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            // The snippet sent this body when it was asked for, small and readable; the
            // bytes are hashed here instead of by sha256sum.
            let piece = if want_body && size <= CONTENT_LIMIT && with_body.contains(n) {
                let end = offset.saturating_add(size as usize);
                Some(
                    bodies
                        .get(offset..end)
                        .ok_or("a file changed size while the probe read it; run again")?,
                )
            } else {
                None
            };
            match piece {
                Some(piece) => {
                    offset += size as usize;
                    a.push_str(&format!(
                        "sha256 {}\ncontent {}\n",
                        crate::digest::sha256_hex(piece),
                        base64::engine::general_purpose::STANDARD.encode(piece)
                    ));
                }
                // An unreadable file has no sha256sum line: match lines by name, not position.
                None => {
                    if let Some((h, name)) = shas.peek() {
                        if name == path {
                            a.push_str(&format!("sha256 {h}\n"));
                            shas.next();
                        }
                    }
                }
            }
        }
        answers[n - 1] = a;
    }
    if offset != bodies.len() {
        return Err("a file changed size while the probe read it; run again".into());
    }
    Ok(answers)
}

/// A `sha256sum` line: `HEX  NAME`, or `\HEX  NAME` with `\\`, `\n`, `\r` escaped in NAME.
fn sha_line(line: &str) -> Option<(String, String)> {
    let (escaped, rest) = match line.strip_prefix('\\') {
        Some(r) => (true, r),
        None => (false, line),
    };
    let hex = rest.get(..64)?;
    let name = rest.get(66..)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = if escaped {
        let mut s = String::new();
        let mut it = name.chars();
        while let Some(c) = it.next() {
            match (c, c == '\\') {
                (_, true) => match it.next() {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some(o) => s.push(o),
                    None => s.push('\\'),
                },
                (c, false) => s.push(c),
            }
        }
        s
    } else {
        name.to_string()
    };
    Some((hex.to_string(), name))
}

pub fn parse(k: &str, out: &str) -> Result<FileFact, FactError> {
    let mut f = FileFact::default();
    for line in out.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "absent" => return Ok(FileFact::default()),
            "link" => f.link_target = Some(rest.to_string()),
            "stat" => {
                let parts: Vec<&str> = rest.split('|').collect();
                if parts.len() != 5 {
                    return Err(parse_err(k, format!("unexpected stat line `{line}`")));
                }
                f.exists = true;
                f.kind = match parts[0] {
                    "regular file" | "regular empty file" => FileKind::File,
                    "directory" => FileKind::Directory,
                    "symlink" | "symbolic link" => FileKind::Symlink,
                    _ => FileKind::Other,
                };
                let m = u32::from_str_radix(parts[1], 8).map_err(|_| parse_err(k, "bad mode"))?;
                f.mode = format!("{m:04o}");
                f.owner = parts[2].to_string();
                f.group = parts[3].to_string();
                f.size = parts[4].parse().map_err(|_| parse_err(k, "bad size"))?;
            }
            "sha256" => f.sha256 = Some(rest.trim().to_string()),
            "content" => {
                f.content = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(rest.trim())
                        .map_err(|_| parse_err(k, "content is not base64"))?,
                )
            }
            "" => {}
            _ => return Err(unexpected(k, line)),
        }
    }
    if !f.exists {
        return Err(parse_err(k, "no answer (stat failed?)"));
    }
    Ok(f)
}

/// Answers as the probe gives them, for tests of the types that read file facts.
#[cfg(test)]
pub mod fixture {
    use base64::Engine as _;

    pub fn absent() -> String {
        "absent\n".into()
    }

    /// A regular file; with `content`, its body comes along as it does for `file+content:` keys.
    pub fn regular(mode: &str, owner: &str, group: &str, body: &[u8], content: bool) -> String {
        let kind = if body.is_empty() {
            "regular empty file"
        } else {
            "regular file"
        };
        let mut s = format!(
            "stat {kind}|{mode}|{owner}|{group}|{}\nsha256 {}\n",
            body.len(),
            crate::digest::sha256_hex(body)
        );
        if content {
            s.push_str(&format!(
                "content {}\n",
                base64::engine::general_purpose::STANDARD.encode(body)
            ));
        }
        s
    }

    pub fn directory(mode: &str, owner: &str, group: &str) -> String {
        format!("stat directory|{mode}|{owner}|{group}|4096\n")
    }

    pub fn symlink(target: &str) -> String {
        format!(
            "link {target}\nstat symbolic link|777|root|root|{}\n",
            target.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::testutil::run_sh;

    fn ask(qy: &FileQuery) -> FileFact {
        let out = run_sh(&qy.script());
        let parts = split(&[&qy.arg()], &out).unwrap();
        qy.parse(&parts[0]).unwrap()
    }

    #[test]
    fn reads_a_real_file_through_sh() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a b.txt");
        std::fs::write(&p, "hi\n").unwrap();
        let path = p.to_str().unwrap();
        for (content, want) in [(true, Some(b"hi\n".to_vec())), (false, None)] {
            let f = ask(&FileQuery::new(path, content));
            assert!(f.exists);
            assert_eq!(f.kind, FileKind::File);
            assert_eq!(f.size, 3);
            assert_eq!(
                f.sha256.as_deref(),
                Some("98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4")
            );
            assert_eq!(f.content, want);
        }
        assert!(
            !ask(&FileQuery::new(
                d.path().join("nope").to_str().unwrap(),
                true
            ))
            .exists
        );
    }

    #[test]
    fn one_merged_answer_for_many_paths_of_every_kind() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        std::fs::write(p("a"), "alpha\n").unwrap();
        std::fs::write(p("empty"), "").unwrap();
        std::fs::write(p("we'ird\nname\\x"), "odd\n").unwrap();
        std::fs::write(p("big"), vec![b'x'; CONTENT_LIMIT as usize + 1]).unwrap();
        std::fs::create_dir(p("dir")).unwrap();
        std::os::unix::fs::symlink("/some target", p("link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", p("dangling")).unwrap();
        let qs = [
            FileQuery::new(&p("a"), true),
            FileQuery::new(&p("missing"), true),
            FileQuery::new(&p("empty"), true),
            FileQuery::new(&p("we'ird\nname\\x"), true),
            FileQuery::new(&p("big"), true),
            FileQuery::new(&p("dir"), false),
            FileQuery::new(&p("link"), false),
            FileQuery::new(&p("dangling"), false),
            FileQuery::new(&p("a"), false),
        ];
        let args: Vec<String> = qs.iter().map(|q| q.arg()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let script = merged_script(&args);
        crate::facts::testutil::assert_valid_sh(&script);
        // One stat, one readlink, one sha256sum, one cat: whatever the number of paths.
        for prog in ["stat -c", "readlink --", "sha256sum --", "cat --"] {
            assert_eq!(script.matches(prog).count(), 1, "{prog}");
        }
        let parts = split(&args, &run_sh(&script)).unwrap();
        let f: Vec<FileFact> = qs
            .iter()
            .zip(&parts)
            .map(|(q, o)| q.parse(o).unwrap())
            .collect();
        assert_eq!(f[0].content.as_deref(), Some(&b"alpha\n"[..]));
        assert!(!f[1].exists);
        assert_eq!(
            (f[2].kind, f[2].content.as_deref()),
            (FileKind::File, Some(&b""[..]))
        );
        assert_eq!(f[3].content.as_deref(), Some(&b"odd\n"[..]));
        assert_eq!(
            f[3].sha256.as_deref(),
            Some(crate::digest::sha256_hex(b"odd\n").as_str())
        );
        assert_eq!(
            (f[4].content.is_none(), f[4].sha256.is_some()),
            (true, true)
        );
        assert_eq!(f[5].kind, FileKind::Directory);
        assert_eq!(
            (f[6].kind, f[6].link_target.as_deref()),
            (FileKind::Symlink, Some("/some target"))
        );
        assert_eq!(f[7].link_target.as_deref(), Some("/nowhere"));
        assert_eq!(
            (f[8].content.is_none(), f[8].sha256 == f[0].sha256),
            (true, true)
        );
        // The per-path answers are what the fixtures build.
        assert_eq!(
            parts[0],
            fixture::regular(&f[0].mode[1..], &f[0].owner, &f[0].group, b"alpha\n", true)
        );
        assert_eq!(parts[1], fixture::absent());
    }

    #[test]
    fn a_cut_or_racy_answer_is_an_error() {
        assert!(split(&["-/a"], "exist 1\n@stat\n@link\n").is_err());
        let e = split(
            &["-/a", "-/b"],
            "exist 1 2\n@stat\nregular file|644|root|root|1\n@link\n@sha\n@content\n\n@end\n",
        )
        .unwrap_err();
        assert!(e.0.contains("stat answered 1 of 2"), "{e}");
    }

    #[test]
    fn parses_fixtures() {
        let f = parse("k", &fixture::symlink("/target")).unwrap();
        assert_eq!(
            (f.kind, f.link_target.as_deref()),
            (FileKind::Symlink, Some("/target"))
        );
        let f = parse("k", "link /target\nstat symlink|777|root|root|7\n").unwrap();
        assert_eq!(f.kind, FileKind::Symlink);
        let f = parse("k", &fixture::directory("755", "root", "adm")).unwrap();
        assert_eq!(
            (f.kind, f.mode.as_str(), f.group.as_str()),
            (FileKind::Directory, "0755", "adm")
        );
        assert!(parse("k", "garbage\n").is_err());
    }
}
