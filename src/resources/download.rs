//! `download`: a file fetched from a URL, pinned by its sha256.
//!
//! ```yaml
//! - download:
//!     url: https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s
//!     dest: /usr/local/bin/k3s
//!     sha256: 0123abcd…              # required: 64 hex digits (from the release's checksums)
//!     mode: "0755"                   # omitted = keep (new files: 0644)
//!     owner: root
//!     group: root
//! ```
//!
//! The host downloads with `curl` (or `wget` when curl is missing) into a temp file next to
//! `dest`, checks the sha256, and renames it over `dest`: a failed or tampered download never
//! replaces the old file, and the temp file is removed. Plain `http://` URLs are allowed, since
//! the checksum, not the transport, guarantees the content. A file already at `dest` with the
//! right sha256 is never downloaded again. When the URL holds a secret (a token), it reaches
//! curl on stdin rather than on its command line.

use serde::Deserialize;

use super::support::fs::{check_path, meta_commands};
use super::ResourceError;
use super::{deserialize_mode, q, DiffCx, PrepareCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};
use crate::secret::Secret;

pub struct Download;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub url: String,
    pub dest: String,
    #[serde(deserialize_with = "deserialize_sha")]
    pub sha256: String,
    #[serde(default, deserialize_with = "deserialize_mode")]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

pub fn check(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.dest)?;
    if spec.dest.ends_with('/') {
        return Err(ResourceError::spec(format!(
            "dest `{}` must be the file's full path, not a directory",
            spec.dest
        )));
    }
    // A checksum picked by the host's architecture is `<fact:…>` until the host's facts are
    // known: its query (the dest) is still asked in the host's first probe, and the item awaits
    // the facts (`site::select`), so the placeholder never reaches a host.
    let awaits_facts = spec.sha256.starts_with(crate::facts::host::PLACEHOLDER);
    if !awaits_facts
        && (spec.sha256.len() != 64 || !spec.sha256.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(ResourceError::spec(format!(
            "sha256 `{}` must be 64 hex digits (the file's checksum, e.g. from the release's sha256sum.txt)",
            spec.sha256.chars().take(70).collect::<String>()
        )));
    }
    let lower = spec.url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(ResourceError::spec(
            "url must start with https:// (or http://)",
        ));
    }
    if spec
        .url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ResourceError::spec(
            "url must not contain spaces or control characters (percent-encode them)",
        ));
    }
    Ok(())
}

impl Resource for Download {
    const KIND: &'static str = "download";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.dest.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)?;
        spec.sha256 = spec.sha256.to_ascii_lowercase();
        Ok(())
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        vec![FileQuery::new(&spec.dest, false).query()]
    }

    fn touches(spec: &Spec) -> Vec<Touch> {
        vec![Touch::path(&spec.dest)]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        check(spec)?;
        let want = spec.sha256.to_ascii_lowercase();
        let seen = facts.get(&FileQuery::new(&spec.dest, false))?;
        if seen.exists && seen.kind != FileKind::File {
            return Err(ResourceError::Host(format!(
                "{} is a {} on the host, not a file",
                spec.dest, seen.kind
            )));
        }
        let (owner, group) = (spec.owner.as_deref(), spec.group.as_deref());
        if seen.exists && seen.sha256.as_deref() == Some(want.as_str()) {
            let mut reasons = Vec::new();
            let fix_mode = spec.mode.as_deref().filter(|m| *m != seen.mode);
            let fix_owner = owner.filter(|o| *o != seen.owner);
            let fix_group = group.filter(|g| *g != seen.group);
            if let Some(m) = fix_mode {
                reasons.push(format!("mode {} → {m}", seen.mode));
            }
            if let Some(o) = fix_owner {
                reasons.push(format!("owner {} → {o}", seen.owner));
            }
            if let Some(g) = fix_group {
                reasons.push(format!("group {} → {g}", seen.group));
            }
            if reasons.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Drift::new(
                Action::Update,
                reasons,
                vec![Step::sh(meta_commands(
                    &spec.dest, fix_owner, fix_group, fix_mode, false,
                ))],
            )));
        }
        // Keep what the old file had unless told otherwise; mktemp's 0600 must not leak through.
        let mode = spec.mode.clone().unwrap_or_else(|| {
            if seen.exists {
                seen.mode.clone()
            } else {
                "0644".into()
            }
        });
        let owner = owner
            .map(String::from)
            .or_else(|| seen.exists.then(|| seen.owner.clone()));
        let group = group
            .map(String::from)
            .or_else(|| seen.exists.then(|| seen.group.clone()));
        let (action, reason) = if seen.exists {
            (
                Action::Update,
                format!(
                    "sha256 {} → {}",
                    short(seen.sha256.as_deref().unwrap_or("?")),
                    short(&want)
                ),
            )
        } else {
            (Action::Create, "absent".to_string())
        };
        let step = fetch_step(
            spec,
            &want,
            &mode,
            owner.as_deref(),
            group.as_deref(),
            cx.secret,
        );
        Ok(Some(Drift::new(action, vec![reason], vec![step])))
    }
}

/// A checksum of only digits (or digits and one `e`) is a number to YAML: ask for quotes.
fn deserialize_sha<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        _ => Err(serde::de::Error::custom(
            "sha256 must be a quoted string of 64 hex digits (YAML read this one as a number)",
        )),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// One step: download to a temp file beside dest, verify, set owner/mode, rename; any failure
/// removes the temp file and leaves dest as it was.
fn fetch_step(
    spec: &Spec,
    sha: &str,
    mode: &str,
    owner: Option<&str>,
    group: Option<&str>,
    secret: bool,
) -> Step {
    let dest = q(&spec.dest);
    let (dir, base) = match spec.dest.rsplit_once('/') {
        Some(("", b)) => ("/".to_string(), b.to_string()),
        Some((d, b)) => (d.to_string(), b.to_string()),
        None => (".".to_string(), spec.dest.clone()),
    };
    let d = q(&dir);
    let tmpl = q(&format!(
        "{}/.{base}.labctl.XXXXXX",
        dir.trim_end_matches('/')
    ));
    // Secret URLs never reach a command line: `read` and `printf` are shell builtins, and curl
    // (`-K -`: a config on stdin) or wget (`-i -`: URLs on stdin) read them from a pipe.
    let (curl, wget, shown) = if secret {
        (
            "printf '%s\\n' \"$cu\" | curl -fsSL --retry 3 -o \"$t\" -K -".to_string(),
            "printf '%s\\n' \"$wu\" | wget -q --tries=3 -O \"$t\" -i -".to_string(),
            "(url hidden: it holds a secret)".to_string(),
        )
    } else {
        let u = q(&spec.url);
        (
            format!("curl -fsSL --retry 3 -o \"$t\" {u}"),
            format!("wget -q --tries=3 -O \"$t\" {u}"),
            spec.url.clone(),
        )
    };
    let fail = |what: &str| format!("echo {} >&2", q(&format!("labctl: {what}")));
    let mut meta = format!("chmod {mode} \"$t\"");
    match (owner, group) {
        (Some(o), Some(g)) => meta.push_str(&format!(" && chown {}:{} \"$t\"", q(o), q(g))),
        (Some(o), None) => meta.push_str(&format!(" && chown {} \"$t\"", q(o))),
        (None, Some(g)) => meta.push_str(&format!(" && chgrp {} \"$t\"", q(g))),
        (None, None) => {}
    }
    let script = format!(
        "[ -d {d} ] || {{ {nodir}; exit 1; }}\n\
         t=$(mktemp {tmpl}) || exit 1\n\
         if command -v curl >/dev/null 2>&1; then {curl}\n\
         elif command -v wget >/dev/null 2>&1; then {wget}\n\
         else {nodl}; false; fi || {{ rm -f -- \"$t\"; {dlfail}; exit 1; }}\n\
         printf '%s  %s\\n' {sha} \"$t\" | sha256sum -c --status - || {{ got=$(sha256sum < \"$t\" | cut -d' ' -f1); rm -f -- \"$t\"; \
         echo \"labctl: checksum mismatch for {dest_msg}: got $got, want {sha}\" >&2; exit 1; }}\n\
         {meta} && mv -f -- \"$t\" {dest} || {{ rm -f -- \"$t\"; exit 1; }}",
        nodir = fail(&format!("directory {dir} does not exist")),
        nodl = fail("neither curl nor wget is installed"),
        dlfail = fail(&format!("download failed: {shown}")),
        dest_msg = spec.dest.replace(['"', '$', '`', '\\'], "_"),
    );
    if secret {
        let conf = format!(
            "url = \"{}\"",
            spec.url.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let data = format!("{conf}\n{}\n", spec.url).into_bytes();
        return Step::Stdin {
            script: format!("IFS= read -r cu; IFS= read -r wu\n{script}"),
            data: Secret::new(data),
        };
    }
    Step::sh(script)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"; // "hello\n"

    fn yaml(extra: &str) -> String {
        format!("url: https://example.com/k3s\ndest: /usr/local/bin/k3s\nsha256: {SHA}\n{extra}")
    }

    fn file(sha: &str, mode: &str) -> String {
        format!("stat regular file|{mode}|root|root|6\nsha256 {sha}\n")
    }

    #[test]
    fn absent_is_downloaded() {
        let s = spec::<Download>(&yaml("mode: \"0755\"\n"));
        let d = Download::diff(
            &s,
            &facts(&[("file:/usr/local/bin/k3s", "absent\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Create);
        let want = format!(
            "[ -d /usr/local/bin ] || {{ echo 'labctl: directory /usr/local/bin does not exist' >&2; exit 1; }}\n\
             t=$(mktemp /usr/local/bin/.k3s.labctl.XXXXXX) || exit 1\n\
             if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o \"$t\" https://example.com/k3s\n\
             elif command -v wget >/dev/null 2>&1; then wget -q --tries=3 -O \"$t\" https://example.com/k3s\n\
             else echo 'labctl: neither curl nor wget is installed' >&2; false; fi || {{ rm -f -- \"$t\"; echo 'labctl: download failed: https://example.com/k3s' >&2; exit 1; }}\n\
             printf '%s  %s\\n' {SHA} \"$t\" | sha256sum -c --status - || {{ got=$(sha256sum < \"$t\" | cut -d' ' -f1); rm -f -- \"$t\"; \
             echo \"labctl: checksum mismatch for /usr/local/bin/k3s: got $got, want {SHA}\" >&2; exit 1; }}\n\
             chmod 0755 \"$t\" && mv -f -- \"$t\" /usr/local/bin/k3s || {{ rm -f -- \"$t\"; exit 1; }}"
        );
        assert_eq!(scripts(&d), want);
    }

    #[test]
    fn present_is_in_sync() {
        let s = spec::<Download>(&yaml("mode: \"0755\"\n"));
        assert!(Download::diff(
            &s,
            &facts(&[("file:/usr/local/bin/k3s", &file(SHA, "755"))]),
            &cx()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn drifted_content_is_downloaded_again_keeping_metadata() {
        let s = spec::<Download>(&yaml(""));
        let d = Download::diff(
            &s,
            &facts(&[("file:/usr/local/bin/k3s", &file(&"a".repeat(64), "750"))]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(
            d.reasons,
            vec![format!("sha256 aaaaaaaaaaaa → {}", &SHA[..12])]
        );
        assert!(
            scripts(&d).contains("chmod 0750 \"$t\" && chown root:root \"$t\" && mv -f"),
            "{}",
            scripts(&d)
        );
    }

    #[test]
    fn drifted_mode_only_is_a_chmod() {
        let s = spec::<Download>(&yaml("mode: \"0755\"\n"));
        let d = Download::diff(
            &s,
            &facts(&[("file:/usr/local/bin/k3s", &file(SHA, "644"))]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(scripts(&d), "chmod 0755 -- /usr/local/bin/k3s");
    }

    #[test]
    fn bad_sha256_is_rejected_in_prepare() {
        for bad in [
            "abc",
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            &"g".repeat(64),
        ] {
            let mut s = spec::<Download>(&format!(
                "url: https://example.com/k3s\ndest: /usr/local/bin/k3s\nsha256: \"{bad}\"\n"
            ));
            let e = with_prepare(|cx| Download::prepare(&mut s, cx))
                .unwrap_err()
                .to_string();
            assert!(e.contains("64 hex digits"), "{e}");
        }
        let mut s = spec::<Download>(&yaml("").replace(SHA, &SHA.to_uppercase()));
        with_prepare(|cx| Download::prepare(&mut s, cx)).unwrap();
        assert_eq!(s.sha256, SHA);
        let mut s = spec::<Download>(&yaml("").replace("https://", "ftp://"));
        assert!(with_prepare(|cx| Download::prepare(&mut s, cx))
            .unwrap_err()
            .to_string()
            .contains("https://"));
        assert!(spec_err::<Download>("url: https://x\ndest: /x\n").contains("sha256"));
        let e = spec_err::<Download>(&format!(
            "url: https://x\ndest: /x\nsha256: {}\n",
            "1".repeat(64)
        ));
        assert!(e.contains("quoted string"), "{e}");
    }

    #[test]
    fn secret_urls_travel_on_stdin() {
        let s = spec::<Download>(&yaml("").replace(
            "https://example.com/k3s",
            "https://example.com/k3s?token=canary9",
        ));
        let d = Download::diff(
            &s,
            &facts(&[("file:/usr/local/bin/k3s", "absent\n")]),
            &secret_cx(),
        )
        .unwrap()
        .unwrap();
        let shown = format!("{} {:?} {:?}", scripts(&d), d.reasons, d.steps);
        assert!(!shown.contains("canary9"), "{shown}");
        assert!(
            scripts(&d).contains("| curl -fsSL --retry 3 -o \"$t\" -K -"),
            "{}",
            scripts(&d)
        );
    }

    /// The step really runs: a stub `curl` on PATH serves the bytes, dest appears only when the
    /// checksum matches, and no temp file is left either way.
    #[test]
    fn the_step_runs_in_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let served = d.path().join("served");
        std::fs::write(&served, "hello\n").unwrap();
        let curl = bin.join("curl");
        // The stub copies $SERVED to the file after -o.
        std::fs::write(&curl, "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -o ] && { cp \"$SERVED\" \"$2\"; exit 0; }; shift; done; exit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = d.path().join("out");
        let dest = out.join("tool");
        std::fs::create_dir(&out).unwrap();
        let run = |sha: &str| {
            let s = spec::<Download>(&format!(
                "url: https://example.com/tool\ndest: {}\nsha256: \"{sha}\"\nmode: \"0750\"\n",
                dest.display()
            ));
            let drift = Download::diff(
                &s,
                &facts(&[(&format!("file:{}", dest.display()), "absent\n")]),
                &cx(),
            )
            .unwrap()
            .unwrap();
            let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
            std::process::Command::new("sh")
                .arg("-c")
                .arg(scripts(&drift))
                .env("PATH", path)
                .env("SERVED", &served)
                .output()
                .unwrap()
        };
        let bad = run(&"0".repeat(64));
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("checksum mismatch"));
        assert!(!dest.exists());
        let ok = run(SHA);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hello\n");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            1,
            "temp files left behind"
        );
    }

    /// The secret form really runs too: the URL reaches a stub curl only through its stdin
    /// config, never its argv.
    #[test]
    fn the_secret_step_feeds_curl_on_stdin() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let curl = bin.join("curl");
        // Succeeds only when argv lacks the token and stdin carries the config line.
        std::fs::write(
            &curl,
            "#!/bin/sh\ncase \"$*\" in *canary*) exit 9;; esac\nIFS= read -r c\n[ \"$c\" = 'url = \"https://example.com/t?token=canary\"' ] || exit 8\nwhile [ $# -gt 0 ]; do [ \"$1\" = -o ] && { printf 'hello\\n' > \"$2\"; exit 0; }; shift; done; exit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dest = d.path().join("tool");
        let s = spec::<Download>(&format!(
            "url: https://example.com/t?token=canary\ndest: {}\nsha256: {SHA}\n",
            dest.display()
        ));
        let drift = Download::diff(
            &s,
            &facts(&[(&format!("file:{}", dest.display()), "absent\n")]),
            &secret_cx(),
        )
        .unwrap()
        .unwrap();
        let [Step::Stdin { script, data }] = &drift.steps[..] else {
            panic!("{:?}", drift.steps)
        };
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.expose())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hello\n");
    }
}
