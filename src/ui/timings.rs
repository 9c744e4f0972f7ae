//! `--timings` as text: after the plan or the recap, one table of the run's phases per host.

use crate::apply::timings::{PhaseRow, Report};

/// Longest phase label shown; a longer one (a batch naming its changes) is cut.
const LABEL_MAX: usize = 56;

pub fn render(r: &Report) -> String {
    let mut out = format!(
        "\nTimings: {} s wall ({} s loading before any host was contacted); labctl CPU {} s (user {}, sys {}), its child processes (ssh) {} s\n",
        s(r.wall_ms),
        s(r.load_ms),
        s(r.cpu.user_ms + r.cpu.sys_ms),
        s(r.cpu.user_ms),
        s(r.cpu.sys_ms),
        s(r.cpu.children_ms),
    );
    out.push_str(
        "  remote: waiting on the host; controller: the rest (labctl's own work, and waiting for a CPU); cpu: measured thread CPU\n",
    );
    let labels = r
        .run
        .iter()
        .chain(r.hosts.iter().flat_map(|h| h.phases.iter()))
        .map(|p| p.phase.chars().count().min(LABEL_MAX) + 4)
        .chain(r.hosts.iter().map(|h| h.host.chars().count() + 2))
        .chain([9])
        .max()
        .unwrap_or(9);
    let row =
        |out: &mut String, label: &str, wall: f64, remote: f64, ctl: f64, cpu: Option<f64>| {
            let line = format!(
                "{label:<labels$} {:>8} {:>8} {:>10} {:>7}",
                s(wall),
                s(remote),
                s(ctl),
                cpu.map(s).unwrap_or_default()
            );
            out.push_str(line.trim_end());
            out.push('\n');
        };
    out.push_str(&format!(
        "{:<labels$} {:>8} {:>8} {:>10} {:>7}\n",
        "  seconds", "wall", "remote", "controller", "cpu"
    ));
    let phase = |out: &mut String, p: &PhaseRow| {
        row(
            out,
            &format!("    {}", cut(&p.phase)),
            p.wall_ms,
            p.remote_ms,
            p.controller_ms,
            p.cpu_ms,
        )
    };
    for h in &r.hosts {
        row(
            &mut out,
            &format!("  {}", h.host),
            h.wall_ms,
            h.remote_ms,
            h.controller_ms,
            None,
        );
        for p in &h.phases {
            phase(&mut out, p);
        }
    }
    if !r.run.is_empty() {
        out.push_str("  (the run as a whole)\n");
        for p in &r.run {
            phase(&mut out, p);
        }
    }
    out
}

/// Milliseconds as seconds with three decimals.
fn s(ms: f64) -> String {
    format!("{:.3}", ms / 1000.0)
}

fn cut(label: &str) -> String {
    if label.chars().count() <= LABEL_MAX {
        return label.to_string();
    }
    let mut c: String = label.chars().take(LABEL_MAX - 1).collect();
    c.push('…');
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::timings::{Lap, RunCost};
    use std::time::Duration;

    fn lap(host: Option<&str>, phase: &str, wall_ms: u64, remote_ms: u64, cpu: Option<u64>) -> Lap {
        Lap {
            host: host.map(str::to_string),
            phase: phase.into(),
            wall: Duration::from_millis(wall_ms),
            remote: Duration::from_millis(remote_ms),
            cpu: cpu.map(Duration::from_micros),
        }
    }

    #[test]
    fn timings_text_snapshot() {
        let laps = vec![
            lap(Some("lab-1"), "connect", 190, 190, None),
            lap(Some("lab-1"), "probe", 81, 75, None),
            lap(Some("lab-1"), "diff (27 resources)", 4, 0, Some(3_900)),
            lap(Some("lab-1"), "lock", 30, 30, None),
            lap(
                Some("lab-1"),
                "batch of 12: bench/file:/etc/lab/bench-1.conf, bench/file:/etc/lab/bench-2.conf, bench/file:/etc/lab/bench-3.conf",
                120,
                116,
                None,
            ),
            lap(Some("lab-1"), "change bench/ufw:firewall", 310, 305, None),
            lap(Some("lab-1"), "handler bench/reload sshd", 52, 50, None),
            lap(Some("lab-1"), "unlock", 2, 2, None),
            lap(None, "close connections", 11, 11, None),
        ];
        let cost = RunCost {
            wall: Duration::from_millis(912),
            load: Duration::from_millis(48),
            user: Duration::from_millis(61),
            sys: Duration::from_millis(14),
            children: Duration::from_millis(66),
        };
        let r = Report::build(&laps, &["lab-1".into()], cost);
        insta::assert_snapshot!(render(&r));
    }

    #[test]
    fn long_labels_are_cut() {
        let long = "x".repeat(80);
        assert_eq!(cut(&long).chars().count(), LABEL_MAX);
        assert!(cut(&long).ends_with('…'));
        assert_eq!(cut("probe"), "probe");
    }
}
