//! `unlock HOST`: show who holds a host's run lock and, once the user agrees, break it.
//!
//! Rarely needed: a holder that stops renewing its lease gives the lock up by itself, and the
//! next run takes over a stuck one (see `transport::lock`). This is for the case a human must
//! judge, such as a holder from an older labctl that keeps no lease, or a manual `flock`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{CliError, Exit};
use crate::transport::lock::{Holder, HOLDER_FILE, LOCK_FILE};
use crate::transport::Transport;
use crate::ui::Shell;

use super::load;
use super::{Conn, Global, Target};

/// Prints `held`/`free`, the holder record and its age, and each process with the lock file open.
fn inspect_script() -> String {
    format!(
        r#"f={LOCK_FILE}; h={HOLDER_FILE}
state=free
if [ -e "$f" ]; then exec 9<"$f"; flock -n 9 || state=held; exec 9<&-; fi
echo "state=$state"
if [ -s "$h" ]; then echo "record=$(head -n1 -- "$h")"; echo "age=$(( $(date +%s) - $(stat -c %Y -- "$h") ))"; fi
for p in /proc/[0-9]*; do
  for fd in "$p"/fd/*; do
    if [ "$(readlink "$fd" 2>/dev/null)" = "$f" ]; then echo "pid=${{p#/proc/}} $(tr '\0' ' ' < "$p/cmdline" | head -c 160)"; break; fi
  done
done
exit 0"#
    )
}

#[derive(Debug, Default, PartialEq)]
struct Seen {
    held: bool,
    record: Option<Holder>,
    age: Option<i64>,
    /// (pid, command line)
    procs: Vec<(String, String)>,
}

fn parse(out: &str) -> Seen {
    let mut s = Seen::default();
    for l in out.lines() {
        if let Some(v) = l.strip_prefix("state=") {
            s.held = v == "held";
        } else if let Some(v) = l.strip_prefix("record=") {
            s.record = Holder::parse(v);
        } else if let Some(v) = l.strip_prefix("age=") {
            s.age = v.parse().ok();
        } else if let Some(v) = l.strip_prefix("pid=") {
            let (pid, cmd) = v.split_once(' ').unwrap_or((v, ""));
            s.procs.push((pid.to_string(), cmd.trim().to_string()));
        }
    }
    s
}

pub fn unlock(g: &Global, host: &str, t: &Target, c: &Conn, yes: bool) -> Result<Exit, CliError> {
    let (l, i) = load::load_host(&g.sh, g, t, host)?;
    let work = &l.compiled.hosts[i];
    let opts = super::engine::opts(c, &l);
    let timeout = Duration::from_secs(c.step_timeout.min(60));
    super::engine::runtime().block_on(async {
        let tr = Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout)
            .await
            .map_err(|e| {
                let e = crate::plan::HostError::from(e);
                CliError::new(e.exit(), e.to_string())
            })?;
        let r = run(g, &tr, host, yes, timeout).await;
        tr.close().await;
        r
    })
}

/// What `unlock` saw and did, for `--json`.
fn seen_json(host: &str, seen: &Seen, broken: bool) -> Value {
    json!({
        "host": host,
        "held": seen.held,
        "holder": seen.record.as_ref().map(|r| r.describe()),
        "renewed_secs_ago": seen.age,
        "ending": seen.record.as_ref().filter(|_| !seen.held).map(|r| r.ending()),
        "processes": seen.procs.iter().map(|(pid, cmd)| json!({"pid": pid, "command": cmd})).collect::<Vec<_>>(),
        "broken": broken,
    })
}

async fn run(
    g: &Global,
    tr: &Transport,
    host: &str,
    yes: bool,
    timeout: Duration,
) -> Result<Exit, CliError> {
    let sh: &Shell = &g.sh;
    // Text on stdout, or the envelope under `--json` (then what the question needs goes to
    // stderr with it).
    let data = |text: &str, broken: bool, seen: &Seen| -> Result<(), CliError> {
        if g.json {
            sh.out(&crate::ui::json_envelope(
                "unlock",
                &seen_json(host, seen, broken),
            )?);
        } else {
            sh.out(text);
        }
        Ok(())
    };
    let failed = |e: crate::transport::TransportError| CliError::new(Exit::Failed, e.to_string());
    let out = tr
        .run(&inspect_script(), None, timeout)
        .await
        .map_err(failed)?;
    let seen = parse(&out.stdout_str());
    let who = match (&seen.record, seen.age) {
        (Some(r), Some(a)) => format!("{} (record renewed {a} s ago)", r.describe()),
        (Some(r), None) => r.describe(),
        (None, _) => "a process that left no record (an older labctl, or a manual flock)".into(),
    };
    if !seen.held {
        let mut msg = format!("{host}: the run lock is free");
        if let Some(r) = &seen.record {
            msg.push_str(&format!(
                "; the last holder, {}, ended without releasing it: {}",
                r.describe(),
                r.ending()
            ));
        }
        data(&format!("{msg}\n"), false, &seen)?;
        return Ok(Exit::Ok);
    }
    let mut text = format!("{host}: the run lock ({LOCK_FILE}) is held by {who}\n");
    for (pid, cmd) in &seen.procs {
        text.push_str(&format!("    pid {pid}: {cmd}\n"));
    }
    if g.json {
        if !yes {
            sh.err(&text);
        }
    } else {
        sh.out(&text);
    }
    if !yes {
        if !crate::prompt::interactive() {
            return Err(CliError::new(
                Exit::Refused,
                "not breaking it: stdin is not a terminal; pass --yes to break the lock without asking",
            ));
        }
        let answer = crate::prompt::ask(
            "Break it? This kills the processes above; a run that is still alive will fail. [y/N]",
            None,
        );
        if !matches!(answer.as_deref(), Some("y" | "Y" | "yes")) {
            return Err(CliError::new(Exit::Refused, "not broken"));
        }
    }
    let pids: Vec<&str> = seen
        .procs
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let script = format!(
        "kill -9 {} 2>/dev/null; sleep 0.5; rm -f -- {HOLDER_FILE}; exec 9<{LOCK_FILE}; flock -w 5 9 && echo free",
        pids.join(" ")
    );
    let out = tr.run(&script, None, timeout).await.map_err(failed)?;
    if out.stdout_str().trim() == "free" {
        sh.status(
            "Unlocked",
            &format!("{host}: the run lock was broken ({who})"),
        );
        if g.json {
            data("", true, &seen)?;
        }
        Ok(Exit::Ok)
    } else {
        Err(CliError::new(
            Exit::Failed,
            format!(
                "{host}: the lock is still held after killing {}: {}",
                pids.join(", "),
                out.stderr_tail()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspection_reads_what_the_host_prints() {
        let s = parse("state=held\nrecord=run=ab controller=c started=t pid=7\nage=3\npid=7 bash -c x labctl-lock\n");
        assert!(s.held);
        assert_eq!(s.record.unwrap().run, "ab");
        assert_eq!(s.age, Some(3));
        assert_eq!(
            s.procs,
            vec![("7".to_string(), "bash -c x labctl-lock".to_string())]
        );
        assert!(!parse("state=free\n").held);
    }

    #[test]
    fn inspection_script_finds_a_holder_through_a_real_shell() {
        // The script with the lock moved to a temp dir, against a real flock holder.
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("l");
        std::fs::write(&lock, "").unwrap();
        let mut holder = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let script = inspect_script()
            .replace(LOCK_FILE, &lock.display().to_string())
            .replace(HOLDER_FILE, &d.path().join("h").display().to_string());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let seen = parse(&String::from_utf8_lossy(&out.stdout));
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(seen.held, "{seen:?}");
        assert!(
            seen.procs
                .iter()
                .any(|(p, c)| p == &holder.id().to_string() && c.contains("flock")),
            "{seen:?}"
        );
        assert!(seen.record.is_none());
    }
}
