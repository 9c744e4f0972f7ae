//! File facts: type, mode, owner, group, sha256, and (for small files, when asked) the body.

use base64::Engine as _;

use super::{parse_err, q, unexpected, FactError, FactQuery, Facts};

/// Bodies up to this size come back with the probe, so plans can show a diff without a second
/// round trip. Bigger files are compared by sha256 only.
pub const CONTENT_LIMIT: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FileFact {
    pub exists: bool,
    /// `file`, `directory`, `symlink`, or `other`.
    pub kind: String,
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

fn key(path: &str, content: bool) -> String {
    if content {
        format!("file+content:{path}")
    } else {
        format!("file:{path}")
    }
}

/// Ask for a path's metadata (and its body when `content` and small enough).
pub fn query(path: &str, content: bool) -> FactQuery {
    let p = q(path);
    let body = if content {
        format!("if [ \"$s\" -le {CONTENT_LIMIT} ]; then printf 'content '; base64 -w0 -- {p}; echo; fi; ")
    } else {
        String::new()
    };
    FactQuery {
        key: key(path, content),
        // Shell builtins wherever possible: a probe stats dozens of files, and every process
        // counts (one stat and one sha256sum per file; no cut/sed pipelines).
        script: format!(
            "if [ -L {p} ]; then printf 'link %s\\n' \"$(readlink -- {p})\"; stat -c 'stat symlink|%a|%U|%G|%s' -- {p}; \
             elif [ -e {p} ]; then st=$(stat -c '%F|%a|%U|%G|%s' -- {p}) && echo \"stat $st\"; \
             if [ -f {p} ]; then s=${{st##*|}}; h=$(sha256sum -- {p}) && echo \"sha256 ${{h%% *}}\"; {body}fi; \
             else echo absent; fi"
        ),
    }
}

pub fn get(facts: &Facts, path: &str, content: bool) -> Result<FileFact, FactError> {
    let k = key(path, content);
    parse(&k, &facts.get(&k)?.out)
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
                    "regular file" | "regular empty file" => "file",
                    "directory" => "directory",
                    "symlink" => "symlink",
                    _ => "other",
                }
                .to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_file_through_sh() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a b.txt");
        std::fs::write(&p, "hi\n").unwrap();
        let path = p.to_str().unwrap();
        for (content, want) in [(true, Some(b"hi\n".to_vec())), (false, None)] {
            let qy = query(path, content);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&qy.script)
                .output()
                .unwrap();
            let f = parse(&qy.key, &String::from_utf8(out.stdout).unwrap()).unwrap();
            assert!(f.exists);
            assert_eq!(f.kind, "file");
            assert_eq!(f.size, 3);
            assert_eq!(
                f.sha256.as_deref(),
                Some("98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4")
            );
            assert_eq!(f.content, want);
        }
        let qy = query(d.path().join("nope").to_str().unwrap(), true);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&qy.script)
            .output()
            .unwrap();
        assert!(
            !parse(&qy.key, &String::from_utf8(out.stdout).unwrap())
                .unwrap()
                .exists
        );
    }

    #[test]
    fn parses_fixtures() {
        let f = parse("k", "link /target\nstat symlink|777|root|root|7\n").unwrap();
        assert_eq!(
            (f.kind.as_str(), f.link_target.as_deref()),
            ("symlink", Some("/target"))
        );
        let f = parse("k", "stat directory|755|root|adm|4096\n").unwrap();
        assert_eq!(
            (f.kind.as_str(), f.mode.as_str(), f.group.as_str()),
            ("directory", "0755", "adm")
        );
        assert!(parse("k", "garbage\n").is_err());
    }
}
