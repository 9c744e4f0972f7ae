//! SSH keepalive: how fast a silent partition is noticed.
//!
//! A host whose packets are dropped (no RST) looks alive to TCP for hours. ssh's
//! `ServerAliveInterval` probes the server after that long without a word from it, and gives up
//! when `ServerAliveCountMax` probes went unanswered and the next one is due: a dead link is
//! noticed within interval × (count + 1). ssh's default interval is 0 (off), so labctl adds
//! [`INTERVAL`] — only where the user's own config leaves it at that default (RELIABILITY rule 7;
//! `options::ssh_options`).

use std::time::Duration;

use super::ssh_config::Effective;

/// The interval labctl adds when the user set none. With ssh's default `ServerAliveCountMax`
/// of 3 the partition bound is 10 s × (3 + 1) = 40 s.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// ssh's own default.
const DEFAULT_COUNT_MAX: u64 = 3;

/// The interval labctl adds to the connection: [`INTERVAL`], unless the user's config sets
/// its own (which then wins).
pub fn added(eff: &Effective) -> Option<Duration> {
    (!eff.configured("serveraliveinterval")).then_some(INTERVAL)
}

/// How long a silent partition may go unnoticed on this connection: the user's keepalive when
/// their config sets one, else labctl's.
pub fn bound(eff: &Effective) -> Duration {
    let num = |k: &str| eff.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let interval = match (added(eff), num("serveraliveinterval")) {
        (None, Some(i)) if i > 0 => i,
        _ => INTERVAL.as_secs(),
    };
    let count = num("serveralivecountmax").unwrap_or(DEFAULT_COUNT_MAX);
    Duration::from_secs(interval * (count + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eff(user: &[(&str, &str)]) -> Effective {
        let defaults: std::collections::HashMap<String, String> =
            [("serveraliveinterval", "0"), ("serveralivecountmax", "3")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut settings = defaults.clone();
        for (k, v) in user {
            settings.insert(k.to_string(), v.to_string());
        }
        Effective { settings, defaults }
    }

    #[test]
    fn the_bound_is_interval_times_count_plus_one() {
        assert_eq!(bound(&eff(&[])), Duration::from_secs(40));
        assert_eq!(
            bound(&eff(&[
                ("serveraliveinterval", "25"),
                ("serveralivecountmax", "2")
            ])),
            Duration::from_secs(75)
        );
        // A user's count with labctl's interval.
        assert_eq!(
            bound(&eff(&[("serveralivecountmax", "5")])),
            Duration::from_secs(60)
        );
    }
}
