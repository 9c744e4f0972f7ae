//! Progress while hosts run: a spinner per host on a terminal, plain status lines at `-v`
//! elsewhere, nothing in CI by default.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Shell;
use crate::apply::Events;

pub struct Progress {
    shell: Arc<Shell>,
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    verb: &'static str,
}

impl Progress {
    /// `json` output never shows bars (machines read stderr too, sometimes).
    pub fn new(shell: Arc<Shell>, verb: &'static str, json: bool) -> Arc<Progress> {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && !json;
        let bars = tty.then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Arc::new(Progress { shell, bars, verb })
    }

    pub fn finish(&self) {
        if let Some((m, bars)) = &self.bars {
            for b in bars.lock().expect("bars").values() {
                b.finish_and_clear();
            }
            let _ = m.clear();
        }
    }

    fn set(&self, host: &str, msg: String) {
        if let Some((_, bars)) = &self.bars {
            if let Some(b) = bars.lock().expect("bars").get(host) {
                b.set_message(msg);
            }
        }
    }
}

impl Events for Progress {
    fn host_started(&self, host: &str) {
        if let Some((m, bars)) = &self.bars {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                    .expect("valid template"),
            );
            b.set_prefix(host.to_string());
            b.set_message(format!("{}…", self.verb));
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            bars.lock().expect("bars").insert(host.to_string(), b);
        } else if self.shell.verbose > 0 {
            self.shell.status("Connecting", host);
        }
    }
    fn host_probed(&self, host: &str, changes: usize) {
        self.set(host, format!("{changes} to change"));
        if self.bars.is_none() && self.shell.verbose > 0 {
            self.shell
                .status("Probed", &format!("{host}: {changes} to change"));
        }
    }
    fn change_done(&self, host: &str, id: &str, ok: bool) {
        self.set(
            host,
            format!("{} {id}", if ok { "changed" } else { "FAILED" }),
        );
        if self.bars.is_none() && self.shell.verbose > 0 {
            self.shell.status(
                if ok { "Changed" } else { "Failed" },
                &format!("{host}: {id}"),
            );
        }
    }
    fn host_done(&self, host: &str) {
        if let Some((_, bars)) = &self.bars {
            if let Some(b) = bars.lock().expect("bars").get(host) {
                b.finish_and_clear();
            }
        }
    }
}
