//! Output: data on stdout, status on stderr, one owner of colour (cargo's `Shell` lesson).
//!
//! Everything printed goes through `Shell`, which scrubs known secret strings as a last line of
//! defence (resources already redact; this catches what a remote stderr might echo back).

pub mod progress;
pub mod timings;

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::plan::{Action, HostPlan, Plan, Recap};

pub struct Shell {
    out: Mutex<Box<dyn Write + Send>>,
    err: Mutex<Box<dyn Write + Send>>,
    pub color: bool,
    pub verbose: u8,
    /// Known secret strings, longest first; set once the vars are loaded.
    secrets: std::sync::RwLock<Vec<String>>,
}

impl Shell {
    pub fn stdio(color: Option<bool>, verbose: u8) -> Shell {
        let color = color.unwrap_or_else(|| {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        });
        Shell {
            out: Mutex::new(Box::new(std::io::stdout())),
            err: Mutex::new(Box::new(std::io::stderr())),
            color,
            verbose,
            secrets: Default::default(),
        }
    }

    /// Both streams into writers of the caller's: tests capture them, and a quiet inner load
    /// (render's other environments) sends them to `io::sink`.
    pub fn buffered(out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Shell {
        Shell {
            out: Mutex::new(out),
            err: Mutex::new(err),
            color: false,
            verbose: 0,
            secrets: Default::default(),
        }
    }

    pub fn set_secrets(&self, mut s: Vec<String>) {
        // Longest first, so a secret containing another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        *LOG_SECRETS.write().expect("log secrets lock") = s.clone();
        *self.secrets.write().expect("secrets lock") = s;
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in self.secrets.read().expect("secrets lock").iter() {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), "<secret>");
            }
        }
        t
    }

    pub fn out(&self, text: &str) {
        let t = self.scrub(text);
        let mut o = self.out.lock().expect("stdout lock");
        let _ = o.write_all(t.as_bytes());
        let _ = o.flush();
    }

    /// Bytes on stdout as they are, for data that need not be UTF-8 (a decrypted vault the user
    /// asked for); a failed write is returned, so a closed pipe is not taken for success.
    pub fn out_bytes(&self, data: &[u8]) -> std::io::Result<()> {
        let mut o = self.out.lock().expect("stdout lock");
        o.write_all(data)?;
        o.flush()
    }

    pub fn err(&self, text: &str) {
        let t = self.scrub(text);
        let mut e = self.err.lock().expect("stderr lock");
        let _ = e.write_all(t.as_bytes());
        let _ = e.flush();
    }

    /// A status line on stderr: `   Probing lab-1`, cargo style.
    pub fn status(&self, word: &str, msg: &str) {
        let w = if self.color {
            format!("\x1b[1;32m{word:>12}\x1b[0m")
        } else {
            format!("{word:>12}")
        };
        self.err(&format!("{w} {msg}\n"));
    }

    pub fn warn(&self, msg: &str) {
        let w = if self.color {
            "\x1b[1;33mwarning\x1b[0m"
        } else {
            "warning"
        };
        self.err(&format!("{w}: {msg}\n"));
    }

    pub fn error(&self, msg: &str) {
        let w = if self.color {
            "\x1b[1;31merror\x1b[0m"
        } else {
            "error"
        };
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        self.err(&format!("{w}: {msg}\n"));
    }

    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Version of the `--json` envelope. Bump it when a command's `data` changes incompatibly.
pub const JSON_VERSION: u32 = 1;

/// Every `--json` output has one shape, so a script can check what it reads:
/// `{"version": 1, "command": "plan", "data": …}`.
pub fn json_envelope(command: &str, data: &impl serde::Serialize) -> serde_json::Result<String> {
    json_envelope_with::<()>(command, data, None)
}

/// The envelope, with `timings` beside `data` when `--timings` asked for them.
pub fn json_envelope_with<T: serde::Serialize>(
    command: &str,
    data: &impl serde::Serialize,
    timings: Option<&T>,
) -> serde_json::Result<String> {
    let mut v = serde_json::json!({
        "version": JSON_VERSION,
        "command": command,
        "data": data,
    });
    if let Some(t) = timings {
        v["timings"] = serde_json::to_value(t)?;
    }
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}

/// Log lines (`-v`, `-vv`) bypass the Shell, and may carry remote stderr: they are scrubbed
/// with the same secrets through this writer.
static LOG_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut t = text.into_owned();
        for secret in LOG_SECRETS.read().expect("log secrets lock").iter() {
            if t.contains(secret.as_str()) {
                t = t.replace(secret.as_str(), "<secret>");
            }
        }
        std::io::stderr().write_all(t.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn action_color(a: Action) -> &'static str {
    match a {
        Action::Create => "32",
        Action::Update => "33",
        Action::Remove => "31",
        Action::Run => "36",
    }
}

/// The human plan: per host, per resource, with diffs; then the summary line.
pub fn render_plan(sh: &Shell, plan: &Plan) -> String {
    let mut s = String::new();
    for h in &plan.hosts {
        render_host(sh, h, &mut s);
    }
    s.push_str(&summary_line(plan));
    s
}

fn render_host(sh: &Shell, h: &HostPlan, s: &mut String) {
    if let Some(e) = &h.error {
        let what = if h.unreachable() {
            "unreachable"
        } else {
            "failed"
        };
        s.push_str(&format!(
            "{}: {}\n",
            sh.paint("1", &h.host),
            sh.paint("31", what)
        ));
        for l in e.to_string().lines() {
            s.push_str(&format!("    {l}\n"));
        }
        return;
    }
    if h.changes.is_empty() {
        s.push_str(&format!(
            "{}: in sync ({} resources)\n",
            sh.paint("1", &h.host),
            h.in_sync
        ));
        render_reboot(sh, h, s);
        return;
    }
    s.push_str(&format!(
        "{}: {} to change, {} in sync\n",
        sh.paint("1", &h.host),
        h.changes.len(),
        h.in_sync
    ));
    render_reboot(sh, h, s);
    for c in &h.changes {
        let sym = sh.paint(action_color(c.action), &c.action.symbol().to_string());
        if c.id.kind == crate::apply::diff::HANDLER_KIND {
            // A handler an interrupted run left pending on the host (the handler journal).
            s.push_str(&format!(
                "  {sym} {} ({})  [role {}]\n",
                c.id.name,
                c.reasons.join(", "),
                c.id.role
            ));
            continue;
        }
        s.push_str(&format!("  {sym} {}  {}\n", c.id, c.reasons.join(", ")));
        if let Some(d) = &c.diff {
            for l in d.lines() {
                let painted = if l.starts_with('+') && !l.starts_with("+++") {
                    sh.paint("32", l)
                } else if l.starts_with('-') && !l.starts_with("---") {
                    sh.paint("31", l)
                } else {
                    l.to_string()
                };
                s.push_str(&format!("      {painted}\n"));
            }
        }
        if !c.notify.is_empty() {
            s.push_str(&format!("      notifies: {}\n", c.notify.join(", ")));
        }
    }
}

/// A pending reboot under its host's line: a notice, not a change (no action symbol), since
/// `apply` never reboots.
fn render_reboot(sh: &Shell, h: &HostPlan, s: &mut String) {
    if let Some(r) = &h.reboot_required {
        s.push_str(&format!("  {}\n", sh.paint("33", &r.note())));
    }
}

pub fn summary_line(plan: &Plan) -> String {
    let c = plan.counts();
    let hosts = plan.hosts.len();
    let mut line = format!(
        "Plan: {} to create, {} to change, {} to remove, {} to run on {} host{} ({} in sync).",
        c.create,
        c.update,
        c.remove,
        c.run,
        hosts,
        if hosts == 1 { "" } else { "s" },
        c.in_sync
    );
    if c.failed_hosts > 0 {
        line.push_str(&format!(
            " {} host{} failed.",
            c.failed_hosts,
            if c.failed_hosts == 1 { "" } else { "s" }
        ));
    }
    let reboots = plan.reboots_pending();
    if !reboots.is_empty() {
        line.push_str(&format!(
            " {} to reboot: {}.",
            if reboots.len() == 1 {
                "1 host"
            } else {
                "hosts"
            },
            reboots.join(", ")
        ));
    }
    line.push('\n');
    line
}

/// The recap after apply: ok / changed / failed per host, like ansible-playbook's.
pub fn render_recap(sh: &Shell, recaps: &[Recap]) -> String {
    let mut s = String::new();
    for r in recaps {
        let state = if r.unreachable {
            sh.paint("31", "unreachable")
        } else if let Some(why) = &r.refused {
            format!("{}: {why}", sh.paint("31", "refused"))
        } else {
            format!(
                "ok={} {} {}",
                r.ok,
                sh.paint(
                    if r.changed.is_empty() { "0" } else { "33" },
                    &format!("changed={}", r.changed.len())
                ),
                sh.paint(
                    if r.failed.is_empty() { "0" } else { "31" },
                    &format!("failed={}", r.failed.len())
                )
            )
        };
        s.push_str(&format!("{}  {state}\n", sh.paint("1", &r.host)));
        for c in &r.changed {
            s.push_str(&format!("    changed  {c}\n"));
        }
        for h in &r.handlers {
            s.push_str(&format!("    handler  {h}\n"));
        }
        for n in &r.notes {
            s.push_str(&format!("    note     {n}\n"));
        }
        for w in &r.way_back {
            s.push_str(&format!("    way back {}: {}\n", w.resource, w.how));
        }
        for f in &r.failed {
            s.push_str(&format!(
                "    failed   {}: {}\n",
                f.resource,
                f.message.replace('\n', "\n             ")
            ));
        }
        if r.skipped > 0 {
            s.push_str(&format!(
                "    skipped  {} change(s) not started (interrupted)\n",
                r.skipped
            ));
        }
    }
    let changed: usize = recaps.iter().map(|r| r.changed.len()).sum();
    let failed = recaps
        .iter()
        .filter(|r| !r.failed.is_empty() || r.refused.is_some() || r.unreachable)
        .count();
    s.push_str(&format!(
        "Apply: {changed} changed on {} host{}, {failed} failed.\n",
        recaps.len(),
        if recaps.len() == 1 { "" } else { "s" }
    ));
    s
}

/// The recap after `reboot` and `uninstall-cluster`: a blank line, `title`, then one line a
/// host, `  HOST  WORD` (the host padded to 20) and `: ERROR` when it failed. `word` comes
/// painted: each command has its own words and colours.
pub fn host_recap<'a>(
    title: &str,
    rows: impl IntoIterator<Item = (&'a str, String, Option<&'a str>)>,
) -> String {
    let mut t = format!("\n{title}\n");
    for (host, word, error) in rows {
        t.push_str(&format!("  {host:<20} {word}"));
        if let Some(e) = error {
            t.push_str(&format!(": {e}"));
        }
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, HostError, ResourceId, SavedSelection, PLAN_FORMAT};

    #[test]
    fn host_recap_pads_hosts_and_adds_errors() {
        let t = host_recap(
            "Reboot recap",
            [
                ("lab-1", "rebooted".to_string(), None),
                ("lab-2", "FAILED".to_string(), Some("no answer")),
            ],
        );
        assert_eq!(
            t,
            "\nReboot recap\n  lab-1                rebooted\n  lab-2                FAILED: no answer\n"
        );
    }

    fn sample() -> Plan {
        let ch = |id: &str, a: Action, reasons: &[&str], diff: Option<&str>| Change {
            id: ResourceId::parse(id).unwrap(),
            action: a,
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            diff: diff.map(String::from),
            notify: vec![],
            fingerprint: "hmac-sha256:0".into(),
            steps: vec![],
            way_back: None,
        };
        Plan {
            format: PLAN_FORMAT,
            site: "site.yml".into(),
            inventory: "inv.yml".into(),
            selection: SavedSelection::default(),
            hosts: vec![
                HostPlan {
                    host: "lab-1".into(),
                    changes: vec![
                        ch("base/file:/etc/motd", Action::Update, &["content differs"], Some("--- /etc/motd (on host)\n+++ /etc/motd (desired)\n@@ -1 +1 @@\n-old\n+new\n")),
                        ch("base/apt:curl", Action::Create, &["missing: curl"], None),
                        ch("base/file:/etc/old", Action::Remove, &["present"], None),
                    ],
                    in_sync: 7,
                    error: None,
                    reboot_required: None,
                },
                HostPlan {
                    host: "lab-2".into(),
                    in_sync: 10,
                    reboot_required: Some(crate::plan::RebootRequired {
                        since: Some("2026-12-07T14:00:05Z".into()),
                        packages: vec!["linux-image-6.1.0-28-amd64".into(), "libc6".into()],
                        ..Default::default()
                    }),
                    ..HostPlan::new("lab-2")
                },
                HostPlan::failed("lab-3", HostError::Unreachable("cannot connect to root@10.0.0.3:22: timed out".into())),
            ],
        }
    }

    #[test]
    fn plan_output_snapshot() {
        let sh = Shell::buffered(Box::new(std::io::sink()), Box::new(std::io::sink()));
        insta::assert_snapshot!(render_plan(&sh, &sample()));
    }

    #[test]
    fn scrubs_secrets_from_anything_printed() {
        let sh = Shell::buffered(Box::new(std::io::sink()), Box::new(std::io::sink()));
        sh.set_secrets(vec!["canary-1".into(), "canary-1-long".into()]);
        assert_eq!(
            sh.scrub("x canary-1-long y canary-1"),
            "x <secret> y <secret>"
        );
    }
}
