//! The host's run lock with a lease (RELIABILITY rule 9, issue 18).
//!
//! A `flock` held on the host by a small bash process whose stdin is this run's connection. The
//! holder writes who it is (run id, controller host, start time, its pid) beside the lock, and
//! expects a heartbeat line on stdin every [`HEARTBEAT`]. It gives the lock up by itself when:
//! - the run says `release` (the holder record is removed: a clean end);
//! - stdin reaches EOF (controller killed, connection closed): record marked `connection-closed`;
//! - no heartbeat arrived for [`LEASE`] (a silent partition, where sshd may keep the dead session
//!   for hours): record marked `missed-lease`.
//!
//! A later run finds the lock free and a record left behind: it takes the lock and says from whom.
//! If the lock is still held but its holder stopped renewing (a stuck or stopped holder), a later
//! run kills that holder (only a process whose command line is ours) and takes over. A holder that
//! renews its lease is never broken: that run is refused, as before.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// How often a run renews its lease while it holds the lock.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A holder that heard nothing for this long releases the lock by itself.
pub const LEASE: Duration = Duration::from_secs(30);
/// A held lock whose record was not renewed for LEASE + this is taken over.
const STALE_GRACE: u64 = 10;

pub const LOCK_FILE: &str = "/run/lock/labctl.lock";
pub const HOLDER_FILE: &str = "/run/lock/labctl.holder";

/// bash (for `read -t`): `bash -c SCRIPT labctl-lock LOCK HOLDER LEASE RECORD`. `labctl-lock`
/// (its $0) is how a later run recognises a holder it may kill. The first output line is
/// `locked`, `took-free AGE RECORD`, `took-stale AGE RECORD`, `busy AGE RECORD` or `error WHY`.
pub const SCRIPT: &str = r#"f=$1; h=$2; lease=$3; me=$4
[ -e "$f" ] || (umask 022; : >> "$f") 2>/dev/null
exec 9<"$f" || { echo "error cannot open $f"; exit 70; }
rec() { [ -s "$h" ] && head -n1 -- "$h" | head -c 400; }
age() { if [ -e "$h" ]; then echo $(( $(date +%s) - $(stat -c %Y -- "$h") )); else echo -1; fi; }
if flock -n 9; then
  prev=$(rec)
  if [ -n "$prev" ]; then say="took-free $(age) $prev"; else say=locked; fi
else
  a=$(age); prev=$(rec)
  if [ -n "$prev" ] && [ "$a" -gt $((lease + GRACE)) ]; then
    pid=${prev##* pid=}; pid=${pid%% *}
    case "$pid" in *[!0-9]*|'') ;; *) grep -qa labctl-lock "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid" ;; esac
    flock -w 5 9 || { echo "busy $a $prev"; exit 75; }
    say="took-stale $a $prev"
  else
    echo "busy $a ${prev:--}"; exit 75
  fi
fi
(umask 022; printf '%s pid=%s\n' "$me" "$$" > "$h") || { echo "error cannot write $h"; exit 70; }
echo "$say"
while :; do
  IFS= read -r -t "$lease" l; rc=$?
  if [ $rc = 0 ]; then
    if [ "$l" = release ]; then rm -f -- "$h"; exit 0; fi
    touch -- "$h"
  else
    if [ $rc -gt 128 ]; then why=missed-lease; else why=connection-closed; fi
    printf '%s pid=%s end=%s@%s\n' "$me" "$$" "$why" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$h"
    exit 0
  fi
done"#;

/// The script with the grace filled in (kept a constant above so tests read one text).
pub fn script() -> String {
    SCRIPT.replace("GRACE", &STALE_GRACE.to_string())
}

/// argv after `bash -c SCRIPT`.
pub fn args(lock: &str, holder: &str, lease: Duration, record: &str) -> Vec<String> {
    vec![
        "labctl-lock".into(),
        lock.into(),
        holder.into(),
        lease.as_secs().to_string(),
        record.into(),
    ]
}

/// What the holder said when asked for the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Locked,
    /// Taken; an earlier run had left without releasing (its record, and how it ended).
    TookOver {
        from: Holder,
        stale: bool,
    },
    Busy {
        age: i64,
        holder: Option<Holder>,
    },
    Error(String),
}

/// A holder record: `run=ID controller=HOST started=TIME pid=N [end=WHY@TIME]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub run: String,
    pub controller: String,
    pub started: String,
    pub pid: String,
    pub end: Option<String>,
}

impl Holder {
    pub fn parse(s: &str) -> Option<Holder> {
        let mut h = Holder::default();
        for kv in s.split_whitespace() {
            match kv.split_once('=') {
                Some(("run", v)) => h.run = v.into(),
                Some(("controller", v)) => h.controller = v.into(),
                Some(("started", v)) => h.started = v.into(),
                Some(("pid", v)) => h.pid = v.into(),
                Some(("end", v)) => h.end = Some(v.into()),
                _ => {}
            }
        }
        (!h.run.is_empty()).then_some(h)
    }

    /// `run 3f2a… from ctl-host, started 2026-…`
    pub fn describe(&self) -> String {
        format!(
            "run {} from {}, started {}",
            self.run, self.controller, self.started
        )
    }

    /// How it ended, in words, when it did not release the lock itself.
    pub fn ending(&self) -> String {
        match self.end.as_deref().and_then(|e| e.split_once('@')) {
            Some(("missed-lease", at)) => {
                format!("it stopped renewing its lease and gave the lock up at {at}")
            }
            Some(("connection-closed", at)) => {
                format!("its connection closed at {at} without a release")
            }
            _ => "it stopped renewing its lease".into(),
        }
    }
}

pub fn parse_answer(line: &str) -> Answer {
    let mut it = line.splitn(3, ' ');
    let word = it.next().unwrap_or("");
    let age: i64 = it.next().and_then(|a| a.parse().ok()).unwrap_or(-1);
    let rest = it.next().unwrap_or("");
    match word {
        "locked" => Answer::Locked,
        "took-free" | "took-stale" => Answer::TookOver {
            from: Holder::parse(rest).unwrap_or_default(),
            stale: word == "took-stale",
        },
        "busy" => Answer::Busy {
            age,
            holder: Holder::parse(rest),
        },
        "error" => Answer::Error(line.trim_start_matches("error ").to_string()),
        "" => Answer::Error("no answer (is bash installed?)".into()),
        other => Answer::Error(format!("unexpected answer `{other}`")),
    }
}

/// The refusal for a live holder (exit 5).
pub fn busy_message(dest: &str, age: i64, holder: Option<&Holder>, host: &str) -> String {
    match holder {
        Some(h) => format!(
            "{dest}: another labctl run holds the host's lock ({}; lease renewed {age} s ago); wait for it to finish, or run `labctl unlock {host}` if you know it is gone",
            h.describe()
        ),
        None => format!(
            "{dest}: another labctl run holds the host's lock ({LOCK_FILE}; the holder left no record: an older labctl or a manual flock); wait for it to finish, or run `labctl unlock {host}`"
        ),
    }
}

pub async fn first_line(r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut line = String::new();
    let mut br = tokio::io::BufReader::new(r);
    let _ = tokio::time::timeout(Duration::from_secs(30), br.read_line(&mut line)).await;
    line.trim().to_string()
}

/// The run lock, held while this value lives and `beat` is called every [`HEARTBEAT`].
pub enum HostLock<'a> {
    Ssh(openssh::Child<&'a openssh::Session>),
    Local(tokio::process::Child),
}

impl HostLock<'_> {
    async fn say(&mut self, line: &[u8]) {
        let w = async {
            match self {
                HostLock::Ssh(c) => {
                    if let Some(w) = c.stdin().as_mut() {
                        let _ = w.write_all(line).await;
                        let _ = w.flush().await;
                    }
                }
                HostLock::Local(c) => {
                    if let Some(w) = c.stdin.as_mut() {
                        let _ = w.write_all(line).await;
                        let _ = w.flush().await;
                    }
                }
            }
        };
        // A dead link must not stall the run: the steps notice it themselves.
        let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
    }

    /// Renew the lease.
    pub async fn beat(&mut self) {
        self.say(b"\n").await;
    }

    /// A clean end: the holder removes its record and exits.
    pub async fn release(mut self) {
        self.say(b"release\n").await;
        match self {
            HostLock::Ssh(mut c) => {
                drop(c.stdin().take());
                let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
            }
            HostLock::Local(mut c) => {
                drop(c.stdin.take());
                let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
            }
        }
    }
}

/// Run `fut` while renewing `lock`'s lease.
pub async fn with_lease<F: std::future::Future>(lock: &mut HostLock<'_>, fut: F) -> F::Output {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => lock.beat().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    struct Held {
        child: std::process::Child,
        first: String,
    }

    fn take(dir: &std::path::Path, lease: u64, run: &str) -> Held {
        let lock = dir.join("l").display().to_string();
        let holder = dir.join("h").display().to_string();
        let record = format!("run={run} controller=ctl started=2026-01-01T00:00:00Z");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script())
            .args(args(&lock, &holder, Duration::from_secs(lease), &record))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        Held {
            child,
            first: first.trim().to_string(),
        }
    }

    fn holder_file(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("h")).unwrap_or_default()
    }

    #[test]
    fn a_live_holder_refuses_a_clean_release_leaves_no_record() {
        let d = tempfile::tempdir().unwrap();
        let mut a = take(d.path(), 30, "aaa");
        assert_eq!(parse_answer(&a.first), Answer::Locked);
        let b = take(d.path(), 30, "bbb");
        match parse_answer(&b.first) {
            Answer::Busy {
                holder: Some(h),
                age,
            } => {
                assert_eq!(h.run, "aaa");
                assert!((0..5).contains(&age), "{age}");
            }
            other => panic!("{other:?}"),
        }
        let mut w = a.child.stdin.take().unwrap();
        w.write_all(b"\nrelease\n").unwrap();
        drop(w);
        assert!(a.child.wait().unwrap().success());
        assert!(!d.path().join("h").exists());
        let mut c = take(d.path(), 30, "ccc");
        assert_eq!(parse_answer(&c.first), Answer::Locked);
        drop(c.child.stdin.take());
        c.child.wait().unwrap();
    }

    #[test]
    fn a_holder_without_heartbeat_gives_up_and_the_next_run_says_from_whom() {
        let d = tempfile::tempdir().unwrap();
        let mut a = take(d.path(), 1, "aaa");
        assert_eq!(parse_answer(&a.first), Answer::Locked);
        // No heartbeat: the holder exits by itself after the lease, keeping stdin open.
        let started = std::time::Instant::now();
        let keep_open = a.child.stdin.take(); // (wait() would close it)
        a.child.wait().unwrap();
        drop(keep_open);
        assert!(started.elapsed() < Duration::from_secs(5));
        let rec = holder_file(d.path());
        assert!(rec.contains("end=missed-lease@"), "{rec:?}");
        let mut b = take(d.path(), 30, "bbb");
        match parse_answer(&b.first) {
            Answer::TookOver { from, stale } => {
                assert!(!stale);
                assert_eq!(from.run, "aaa");
                assert!(from.ending().contains("stopped renewing its lease"));
            }
            other => panic!("{other:?}"),
        }
        drop(b.child.stdin.take());
        b.child.wait().unwrap();
        // EOF (the connection closed) is recorded as such.
        let rec = holder_file(d.path());
        assert!(
            rec.contains("run=bbb") && rec.contains("end=connection-closed@"),
            "{rec:?}"
        );
    }

    #[test]
    fn a_stuck_holder_past_its_lease_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let mut a = take(d.path(), 1, "aaa");
        assert_eq!(parse_answer(&a.first), Answer::Locked);
        // Stopped holder: alive, holding the flock, renewing nothing.
        let pid = a.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        // Pretend its last renewal was long ago.
        assert!(Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(d.path().join("h"))
            .status()
            .unwrap()
            .success());
        let mut b = take(d.path(), 30, "bbb");
        match parse_answer(&b.first) {
            Answer::TookOver { from, stale } => {
                assert!(stale);
                assert_eq!(from.run, "aaa");
            }
            other => panic!("{other:?}"),
        }
        let st = a.child.wait().unwrap();
        assert!(!st.success(), "the stuck holder was killed");
        drop(b.child.stdin.take());
        b.child.wait().unwrap();
    }

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer("busy -1 -"),
            Answer::Busy {
                age: -1,
                holder: None
            }
        );
        assert!(matches!(parse_answer(""), Answer::Error(_)));
        let h = Holder::parse("run=1 controller=c started=s pid=9 end=missed-lease@T").unwrap();
        assert_eq!(h.pid, "9");
        assert!(h.ending().contains("at T"));
    }
}
