//! Every option labctl gives ssh for one host, in one place: what the inventory or a flag
//! asked, and nothing else (besides the mux plumbing openssh needs); the rest comes from the
//! user's ssh config (`ssh_config`).
//!
//! The one option ssh always gets is StrictHostKeyChecking (the mux library insists on one):
//! labctl passes what the user's config says, and `yes` when it says nothing, so a first
//! contact needs `--accept-new-host-keys` unless the user chose otherwise.

use std::time::Duration;

use super::ssh_config::{config_file, Effective};
use super::HostKeyPolicy;
use crate::inventory::Conn;

/// The host key check to pass: the flag first, then the user's config, else strict.
pub fn host_key_check(policy: HostKeyPolicy, eff: &Effective) -> openssh::KnownHosts {
    if policy == HostKeyPolicy::AcceptNew {
        return openssh::KnownHosts::Add;
    }
    if !eff.configured("stricthostkeychecking") {
        return openssh::KnownHosts::Strict;
    }
    match eff.get("stricthostkeychecking") {
        Some("accept-new") => openssh::KnownHosts::Add,
        Some("false" | "no" | "off") => openssh::KnownHosts::Accept,
        // yes, ask (there is nobody to ask: BatchMode), anything unexpected.
        _ => openssh::KnownHosts::Strict,
    }
}

/// Every option labctl gives ssh for one host, in one place: what the inventory or a flag
/// asked, and nothing else (besides the mux plumbing openssh needs).
pub fn ssh_options(
    conn: &Conn,
    policy: HostKeyPolicy,
    connect_timeout: Duration,
    eff: &Effective,
) -> openssh::SessionBuilder {
    let mut b = openssh::SessionBuilder::default();
    if let Some(f) = config_file() {
        b.config_file(f);
    }
    b.known_hosts_check(host_key_check(policy, eff));
    if let Some(p) = conn.port {
        b.port(p);
    }
    if let Some(u) = &conn.user {
        b.user(u.clone());
    }
    if let Some(k) = &conn.key_file {
        b.keyfile(k);
    }
    if let Some(kh) = &conn.known_hosts {
        b.user_known_hosts_file(kh);
    }
    // --connect-timeout is a flag; when the user's config sets its own, that one stands.
    if !eff.configured("connecttimeout") {
        b.connect_timeout(connect_timeout);
    }
    // A dead host must not hang a run forever; the user's own keepalive wins.
    if let Some(i) = super::keepalive::added(eff) {
        b.server_alive_interval(i);
    }
    b.control_persist(openssh::ControlPersist::IdleFor(
        std::num::NonZeroUsize::new(30).expect("30 > 0"),
    ));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn eff(user: &[(&str, &str)]) -> Effective {
        let base = [("stricthostkeychecking", "ask"), ("port", "22")];
        let to = |p: &[(&str, &str)]| -> HashMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut settings = to(&base);
        settings.extend(to(user));
        Effective {
            settings,
            defaults: to(&base),
        }
    }

    #[test]
    fn host_key_policy_follows_flag_then_config_then_strict() {
        use openssh::KnownHosts as K;
        let m = |k: K| format!("{k:?}");
        assert_eq!(
            m(host_key_check(HostKeyPolicy::Strict, &eff(&[]))),
            m(K::Strict)
        );
        let an = eff(&[("stricthostkeychecking", "accept-new")]);
        assert_eq!(m(host_key_check(HostKeyPolicy::Strict, &an)), m(K::Add));
        let no = eff(&[("stricthostkeychecking", "false")]);
        assert_eq!(m(host_key_check(HostKeyPolicy::Strict, &no)), m(K::Accept));
        assert_eq!(m(host_key_check(HostKeyPolicy::AcceptNew, &no)), m(K::Add));
    }
}
