//! Steps → one remote script plus the bytes for its stdin.
//!
//! Write payloads are concatenated on stdin and each write reads exactly its length with
//! `head -c` (GNU head reads no more than asked from a pipe), so one execution can carry many
//! files and no content ever appears in the script.

use crate::plan::Step;
use crate::secret::Secret;
use crate::sh::q;

/// The atomic writer (RELIABILITY rule 1): exclusive temp file in the target's directory, mode
/// 0600 from creation, exact length check, fsync, owner/mode, validate, rename, fsync dir.
///
/// A first run writes ~15 files per host, so the writer counts processes (each a fork and exec
/// on the host; `bench/`). `dd` writes and fsyncs in one (`iflag=fullblock` reads exactly the
/// length from the pipe; bigger files take `head` and `sync`). The shell makes the temp file
/// itself: `set -C` opens it O_EXCL, under umask 077, on `true` (a redirection failing on the
/// special builtin `:` would end the script); its name carries the script's random nonce and a
/// counter. The length check reads the one-byte frame the controller sends after each content
/// (a builtin `read`, which fails when the stream ended early). Directory and base name come
/// from parameter expansion; an unset mode or owner is copied with `--reference`. Three to five
/// processes a file, where mktemp, head, wc, stat, chmod, sync, mv and sync were eight.
///
/// The directories' fsync (the renames' durability) is one `sync` for all of a script's
/// directories, run by the EXIT trap when the script ends, however it ends, instead of one per
/// file: the controller reads a script's result only once it has ended, so every rename it is
/// told of is durable, as before. A crash before that leaves each file old or new, never torn
/// (the rename is atomic either way), and the next run sees and fixes an old one; the handler
/// journal syncs its own records before the change's steps run.
const WRITER: &str = r#"__um=$(umask); __n=0; __sdn=0
__lsd() {
  __i=0; while [ "$__i" -lt "$__sdn" ]; do __i=$((__i + 1)); eval "[ \"\$__sd$__i\" = \"\$1\" ]" && return 0; done
  __sdn=$((__sdn + 1)); eval "__sd$__sdn=\$1"
}
__lflush() {
  [ "$__sdn" -gt 0 ] || return 0
  __l=; __i=0; while [ "$__i" -lt "$__sdn" ]; do __i=$((__i + 1)); __l="$__l \"\$__sd$__i\""; done
  __sdn=0; eval "sync -- $__l" 2>/dev/null || true
}
trap '__lflush' EXIT
__lw() {
  __p=$1; __len=$2; __mode=$3; __own=$4; __grp=$5; __secret=$6
  case $__p in */*) __d=${__p%/*}; __d=${__d:-/};; *) __d=.;; esac; __b=${__p##*/}
  [ -d "$__d" ] || { echo "labctl: directory $__d does not exist" >&2; return 1; }
  __n=$((__n + 1)); __t="$__d/.$__b.labctl.@NONCE@$__n"
  umask 077; set -C
  if ! true > "$__t"; then set +C; umask "$__um"; echo "labctl: cannot write $__p: no temp file in $__d (no space left, or read-only?); the old file is unchanged" >&2; return 1; fi
  set +C; umask "$__um"
  trap 'rm -f "$__t"; __lflush' EXIT; trap 'rm -f "$__t"' INT TERM HUP
  if [ "$__len" -gt 0 ] && [ "$__len" -le 4194304 ]; then
    dd bs="$__len" count=1 iflag=fullblock of="$__t" conv=fsync status=none
  else
    head -c "$__len" > "$__t" && sync "$__t"
  fi || { rm -f "$__t"; echo "labctl: cannot write $__p: writing the new content failed (see above: no space left on the device?); the old file is unchanged" >&2; return 1; }
  if ! IFS= read -r __frame || [ -n "$__frame" ]; then rm -f "$__t"; echo "labctl: short content for $__p (connection cut?)" >&2; return 1; fi
  if [ -n "$__own" ] || [ -n "$__grp" ]; then chown "${__own:-root}:$__grp" "$__t" || { rm -f "$__t"; return 1; }
  elif [ -e "$__p" ]; then chown --reference="$__p" "$__t" || { rm -f "$__t"; return 1; }; fi
  if [ -n "$__mode" ]; then chmod "$__mode" "$__t" || { rm -f "$__t"; return 1; }
  elif [ -f "$__p" ]; then chmod --reference="$__p" "$__t" || { rm -f "$__t"; return 1; }
  elif [ "$__secret" != 1 ]; then chmod 0644 "$__t" || { rm -f "$__t"; return 1; }; fi
  if [ -n "${__validate:-}" ]; then
    if ! ( eval "$__validate" ) >&2; then rm -f "$__t"; echo "labctl: validation failed for $__p; the old file is unchanged" >&2; return 1; fi
  fi
  mv -f -- "$__t" "$__p" || { rm -f "$__t"; return 1; }
  trap '__lflush' EXIT; trap - INT TERM HUP
  __lsd "$__d"
}
"#;

/// What follows each file's content on stdin: the writer's length check reads it.
const FRAME: u8 = b'\n';

pub struct Compiled {
    pub script: String,
    pub stdin: Secret<Vec<u8>>,
}

/// Compile steps into one script. Each step's failure stops the script with its status.
pub fn compile(steps: &[Step]) -> Compiled {
    compile_batch(&[steps], None)
}

/// Compile the steps of several changes into one script. With a `nonce`, each change's steps
/// are framed: `@@NONCE begin N` on stderr before them, `@@NONCE done N` on stdout after them, so
/// the caller knows which changes completed and whose stderr a failure printed. The first
/// failing step stops the script: later changes never start.
pub fn compile_batch(groups: &[&[Step]], nonce: Option<&str>) -> Compiled {
    let mut script = String::from("set -u\n");
    let mut stdin: Vec<u8> = Vec::new();
    if groups
        .iter()
        .flat_map(|g| g.iter())
        .any(|s| matches!(s, Step::Write { .. }))
    {
        let nonce = format!("{:016x}", rand::random::<u64>());
        script.push_str(&WRITER.replace("@NONCE@", &nonce));
    }
    for (g, steps) in groups.iter().enumerate() {
        if let Some(n) = nonce {
            script.push_str(&format!("printf '@@{n} begin {g}\\n' >&2\n"));
        }
        for (i, step) in steps.iter().enumerate() {
            push_step(&mut script, &mut stdin, i + 1, step);
        }
        if let Some(n) = nonce {
            script.push_str(&format!("printf '@@{n} done {g}\\n'\n"));
        }
    }
    Compiled {
        script,
        stdin: Secret::new(stdin),
    }
}

/// What a batch's output says: how many changes completed (in order), and each change's
/// share of stderr.
pub fn batch_outcome(
    nonce: &str,
    groups: usize,
    stdout: &str,
    stderr: &str,
) -> (usize, Vec<String>) {
    let done_tag = format!("@@{nonce} done ");
    let done = (0..groups)
        .take_while(|g| {
            stdout
                .lines()
                .any(|l| l.strip_prefix(&done_tag) == Some(&g.to_string()))
        })
        .count();
    let begin_tag = format!("@@{nonce} begin ");
    let mut parts = vec![String::new(); groups];
    let mut current: Option<usize> = None;
    for line in stderr.lines() {
        if let Some(g) = line
            .strip_prefix(&begin_tag)
            .and_then(|g| g.parse::<usize>().ok())
        {
            current = Some(g).filter(|g| *g < groups);
            continue;
        }
        if let Some(g) = current {
            parts[g].push_str(line);
            parts[g].push('\n');
        }
    }
    (done, parts)
}

fn push_step(script: &mut String, stdin: &mut Vec<u8>, n: usize, step: &Step) {
    match step {
        Step::Sh { script: s } => {
            script.push_str(&format!("( {s}\n) </dev/null || {{ __rc=$?; echo \"labctl: step {n} failed (exit $__rc)\" >&2; exit $__rc; }}\n"));
        }
        Step::Write {
            path,
            content,
            mode,
            owner,
            group,
            validate,
            secret,
        } => {
            let v = match validate {
                // `%s` is the temp file: the command checks the new content before the rename.
                Some(cmd) => format!("__validate={}; ", q(&cmd.replace("%s", "\"$__t\""))),
                None => "__validate=; ".to_string(),
            };
            script.push_str(&format!(
                "{v}__lw {} {} {} {} {} {} || exit 1\n",
                q(path),
                content.expose().len(),
                q(mode.as_deref().unwrap_or("")),
                q(owner.as_deref().unwrap_or("")),
                q(group.as_deref().unwrap_or("")),
                if *secret { 1 } else { 0 }
            ));
            stdin.extend_from_slice(content.expose());
            stdin.push(FRAME);
        }
        Step::Stdin { script: s, data } => {
            script.push_str(&format!(
                "head -c {} | ( {s}\n) || {{ __rc=$?; echo \"labctl: step {n} failed (exit $__rc)\" >&2; exit $__rc; }}\n",
                data.expose().len()
            ));
            stdin.extend_from_slice(data.expose());
        }
        Step::Fetch { .. } => {
            // Handled by the executor: it needs the bytes back on the controller.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn run(c: &Compiled) -> std::process::Output {
        run_in(c, Command::new("sh"))
    }

    /// `c` by `sh` (already set up with its environment), its stdin fed.
    fn run_in(c: &Compiled, mut sh: Command) -> std::process::Output {
        let mut child = sh
            .arg("-c")
            .arg(&c.script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(c.stdin.expose())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn write(path: &str, body: &str, validate: Option<&str>) -> Step {
        Step::Write {
            path: path.into(),
            content: Secret::new(body.as_bytes().to_vec()),
            mode: Some("0640".into()),
            owner: None,
            group: None,
            validate: validate.map(String::from),
            secret: false,
        }
    }

    #[test]
    fn writes_many_files_atomically_from_one_stdin() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b c");
        let c = compile(&[
            write(a.to_str().unwrap(), "first\n", None),
            Step::sh("true"),
            write(b.to_str().unwrap(), "second", Some("grep -q sec %s")),
        ]);
        assert!(!c.script.contains("first") && !c.script.contains("second"));
        let out = run(&c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "first\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "second");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("labctl"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn failed_validation_keeps_the_old_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "old\n").unwrap();
        let c = compile(&[write(
            a.to_str().unwrap(),
            "new\n",
            Some("grep -q nomatch %s"),
        )]);
        let out = run(&c);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("validation failed"));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failing_step_stops_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("m");
        let c = compile(&[
            Step::sh("exit 7"),
            Step::sh(format!("touch {}", marker.display())),
        ]);
        let out = run(&c);
        assert_eq!(out.status.code(), Some(7));
        assert!(!marker.exists());
    }

    #[test]
    fn a_batch_reports_which_changes_completed_and_whose_stderr_failed() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        let c = d.path().join("c");
        let g1 = [
            write(a.to_str().unwrap(), "A\n", None),
            Step::sh("echo one-noise >&2"),
        ];
        let g2 = [
            write(b.to_str().unwrap(), "B\n", None),
            Step::sh("echo two-broke >&2; exit 4"),
        ];
        let g3 = [write(c.to_str().unwrap(), "C\n", None)];
        let groups: [&[Step]; 3] = [&g1, &g2, &g3];
        let compiled = compile_batch(&groups, Some("n0nce"));
        let out = run(&compiled);
        assert_eq!(out.status.code(), Some(4));
        let (done, err) = batch_outcome(
            "n0nce",
            3,
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(done, 1);
        assert_eq!(err[0], "one-noise\n");
        assert!(
            err[1].contains("two-broke") && !err[1].contains("one-noise"),
            "{}",
            err[1]
        );
        // The first change ran, the second wrote its file before its failing step, the third
        // never started.
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "A\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "B\n");
        assert!(!c.exists());
        // All three succeed: all done.
        let g2 = [write(b.to_str().unwrap(), "B\n", None)];
        let groups: [&[Step]; 3] = [&g1, &g2, &g3];
        let out = run(&compile_batch(&groups, Some("n0nce")));
        assert!(out.status.success());
        let (done, _) = batch_outcome("n0nce", 3, &String::from_utf8_lossy(&out.stdout), "");
        assert_eq!(
            (done, std::fs::read_to_string(&c).unwrap().as_str()),
            (3, "C\n")
        );
    }

    #[test]
    fn modes_and_owners_when_unset_new_or_kept_and_big_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let plain = |path: &std::path::Path, body: &[u8], secret: bool| Step::Write {
            path: path.display().to_string(),
            content: Secret::new(body.to_vec()),
            mode: None,
            owner: None,
            group: None,
            validate: None,
            secret,
        };
        let (new, secret, kept, empty, big) = (
            d.path().join("new"),
            d.path().join("secret"),
            d.path().join("kept"),
            d.path().join("empty"),
            d.path().join("big"),
        );
        std::fs::write(&kept, "old").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o751)).unwrap();
        // Bigger than dd's one block: head and sync write it.
        let big_body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let out = run(&compile(&[
            plain(&new, b"n\n", false),
            plain(&secret, b"s", true),
            plain(&kept, b"k", false),
            plain(&empty, b"", false),
            plain(&big, &big_body, false),
        ]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            (mode(&new), mode(&secret), mode(&kept), mode(&empty)),
            (0o644, 0o600, 0o751, 0o644)
        );
        assert_eq!(std::fs::read(&kept).unwrap(), b"k");
        assert_eq!(std::fs::read(&empty).unwrap(), b"");
        assert_eq!(std::fs::read(&big).unwrap(), big_body);
        // The script's own umask is left as it was for the steps after a write.
        let probe = d.path().join("after");
        let out = run(&compile(&[
            plain(&new, b"again", false),
            Step::sh(format!("umask 022; touch {}", probe.display())),
        ]));
        assert!(out.status.success());
        assert_eq!(mode(&probe), 0o644);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            6,
            "no temp file left"
        );
    }

    #[test]
    fn a_temp_name_already_taken_is_refused_not_followed() {
        // O_EXCL: a symlink planted where the temp file goes is never written through.
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let target = d.path().join("elsewhere");
        let c = compile(&[write(a.to_str().unwrap(), "x", None)]);
        let nonce = c.script.split(".labctl.").nth(1).unwrap()[..16].to_string();
        std::os::unix::fs::symlink(&target, d.path().join(format!(".a.labctl.{nonce}1"))).unwrap();
        let out = run(&c);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no temp file"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!target.exists() && !a.exists());
    }

    #[test]
    fn short_stdin_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let mut c = compile(&[write(a.to_str().unwrap(), "0123456789", None)]);
        c.stdin = Secret::new(b"01234".to_vec());
        let out = run(&c);
        assert!(!out.status.success());
        assert!(!a.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // All of the content but not its frame: the stream ended early all the same.
        c.stdin = Secret::new(b"0123456789".to_vec());
        let out = run(&c);
        assert!(String::from_utf8_lossy(&out.stderr).contains("short content"));
        assert!(!a.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    /// Runs `c` with a `sync` first on PATH that logs its arguments (one line per call) and
    /// then runs the real one.
    fn run_logging_sync(c: &Compiled, dir: &std::path::Path) -> (std::process::Output, String) {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.join("sync.log");
        let shim = bin.join("sync");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s|' \"$@\" >> '{}'\necho >> '{}'\nexec /bin/sync \"$@\"\n",
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut sh = Command::new("sh");
        sh.env("PATH", path);
        let out = run_in(c, sh);
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    }

    #[test]
    fn the_directories_are_synced_once_each_when_the_script_ends() {
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("x");
        let y = d.path().join("y 'z'");
        std::fs::create_dir(&x).unwrap();
        std::fs::create_dir(&y).unwrap();
        let p = |dir: &std::path::Path, f: &str| dir.join(f).to_str().unwrap().to_string();
        let c = compile(&[
            write(&p(&x, "1"), "one\n", None),
            write(&p(&x, "2"), "two\n", None),
            write(&p(&y, "3"), "three\n", None),
            write(&p(&x, "4"), "four\n", None),
            Step::sh("echo after >&2"),
        ]);
        let (out, log) = run_logging_sync(&c, d.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One call, after the last step, each directory once, with the odd name intact.
        assert_eq!(
            log,
            format!("--|{}|{}|\n", x.display(), y.display()),
            "sync calls"
        );
        assert_eq!(std::fs::read_to_string(y.join("3")).unwrap(), "three\n");
    }

    #[test]
    fn a_failing_step_still_syncs_the_directories_written_before_it() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let c = compile(&[
            write(a.to_str().unwrap(), "new\n", None),
            Step::sh("exit 7"),
            write(d.path().join("never").to_str().unwrap(), "x", None),
        ]);
        let (out, log) = run_logging_sync(&c, d.path());
        assert_eq!(out.status.code(), Some(7), "the step's status is kept");
        assert_eq!(log, format!("--|{}|\n", d.path().display()));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new\n");
        assert!(!d.path().join("never").exists());
    }
}
