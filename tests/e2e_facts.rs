//! Facts in templates on a real test host: gathered in the host's one probe (not a connection
//! of their own), rendered with the host's real values, and a converged host stays unchanged.
//! Connections and remote commands are counted from the host's sshd log (LogLevel VERBOSE), as
//! bench/ counts them.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{e2e_enabled, json_data, show, skip, write, Testbed};

fn labctl_in(dir: &Path, tb: &Testbed, args: &[&str]) -> Output {
    labctl_inv(dir, tb, &tb.inventory, args)
}

fn labctl_inv(dir: &Path, tb: &Testbed, inv: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .args(["-i", &inv.display().to_string()])
        .arg("--vault-key")
        .arg(tb.dir.join("age.key"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("LABCTL_INVENTORY")
        .output()
        .expect("run labctl")
}

/// (connections, remote commands) the host's sshd saw while `f` ran.
fn counted(tb: &Testbed, host: &str, tag: &str, f: impl FnOnce()) -> (usize, usize) {
    tb.sh_ok(host, &format!("logger -t afacts-marker BEGIN-{tag}"));
    f();
    std::thread::sleep(std::time::Duration::from_millis(800));
    tb.sh_ok(host, &format!("logger -t afacts-marker END-{tag}"));
    // OpenSSH 10 (Debian 13) logs a session from its own sshd-session process.
    let log = tb.sh_ok(
        host,
        "journalctl -o cat --no-pager -t sshd -t sshd-session -t afacts-marker --since -10min",
    );
    let lines: Vec<&str> = log
        .lines()
        .skip_while(|l| *l != format!("BEGIN-{tag}"))
        .take_while(|l| *l != format!("END-{tag}"))
        .collect();
    assert!(!lines.is_empty(), "markers not found in:\n{log}");
    let n = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count();
    (n("Accepted publickey"), n("Starting session: command"))
}

/// One test host whose sshd logs every connection and command, for `counted`.
fn counting_host(name: &str) -> Testbed {
    let tb = Testbed::up(name, 1);
    tb.sh_ok(
        &tb.hosts[0].name,
        "printf 'LogLevel VERBOSE\\n' > /etc/ssh/sshd_config.d/10-afacts.conf && systemctl reload ssh",
    );
    tb
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn facts_come_in_the_one_probe() {
    if !e2e_enabled() {
        skip("facts_come_in_the_one_probe: set LABCTL_E2E=1");
        return;
    }
    let tb = counting_host("afacts-probe");
    let h = &tb.hosts[0];
    let arch = tb.sh_ok(&h.name, "uname -m").trim().to_string();
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "site.yml", "- hosts: all\n  roles: [r]\n");
    // Facts only in file content: the paths, and so the queries, are known before the facts.
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/facts, template: facts.j2}\n  - file: {path: /root/plain, content: \"x\\n\"}\n",
    );
    write(
        d.path(),
        "roles/r/templates/facts.j2",
        "{{ ansible_architecture }} {{ ansible_facts.distribution }} {{ ansible_facts['distribution_release'] }} {{ ansible_hostname }}\n",
    );
    let inv = &tb;
    let o = labctl_in(d.path(), inv, &["apply", "--yes", "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        tb.sh_ok(&h.name, "cat /root/facts"),
        // The release the host runs (Testbed::up checked it in /etc/os-release).
        format!("{arch} Debian {} {}\n", tb.release, h.name)
    );

    // A no-op plan: one connection, one remote command (the probe, facts included).
    let (conns, cmds) = counted(&tb, &h.name, "plan", || {
        let o = labctl_in(d.path(), inv, &["plan", "site.yml"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    });
    assert_eq!(
        (conns, cmds),
        (1, 1),
        "connections, commands of a no-op plan"
    );

    // A path that depends on a fact: its query is asked in a second, small probe over the
    // same connection.
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/facts, template: facts.j2}\n  - file: {path: \"/root/on-{{ ansible_facts.hostname }}\", content: \"x\\n\"}\n",
    );
    let o = labctl_in(d.path(), inv, &["apply", "--yes", "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));
    tb.sh_ok(&h.name, &format!("test -f /root/on-{}", h.name));
    let (conns, cmds) = counted(&tb, &h.name, "plan2", || {
        let o = labctl_in(d.path(), inv, &["plan", "site.yml"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    });
    assert_eq!(
        (conns, cmds),
        (1, 2),
        "connections, commands with a fact in a path"
    );

    // Converged: a second apply changes nothing.
    let o = labctl_in(d.path(), inv, &["--json", "apply", "--yes", "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));
    let v = json_data(&o);
    let changed: usize = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["changed"].as_array().unwrap().len())
        .sum();
    assert_eq!(changed, 0, "{v}");

    // `labctl facts HOST` prints the host's ansible_facts.
    let o = labctl_in(d.path(), inv, &["facts", &h.name, "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ansible_facts"]["architecture"], arch.as_str(), "{v}");
    assert_eq!(v["ansible_facts"]["distribution"], "Debian", "{v}");

    // `check` contacts nobody: the facts stay placeholders and the site still checks.
    let o = labctl_in(d.path(), inv, &["check", "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));

    // Another host's fact, of a host outside --limit (never probed): the placeholder reaches
    // neither the host nor a diff. An error names host and resource; nothing is written.
    write(
        d.path(),
        "hosts.yml",
        &format!(
            "all:\n  vars:\n    labctl_known_hosts: {kh}\n  hosts:\n    {n}: {{ansible_host: {a}, ansible_user: root, ansible_ssh_private_key_file: {key}}}\n    ghost: {{ansible_host: 192.0.2.1}}\n",
            kh = tb.known_hosts().display(),
            n = h.name,
            a = h.address,
            key = tb.key().display(),
        ),
    );
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/peer, content: \"{{ hostvars['ghost'].ansible_default_ipv4.address }}\\n\"}\n",
    );
    let hosts = d.path().join("hosts.yml");
    for cmd in [
        &["plan", "site.yml", "-l", &h.name][..],
        &["apply", "--yes", "site.yml", "-l", &h.name],
    ] {
        let o = labctl_inv(d.path(), &tb, &hosts, cmd);
        let out = show(&o);
        assert!(!o.status.success(), "{out}");
        assert!(
            out.contains("r/file:/root/peer")
                && out.contains(&h.name)
                && out.contains("<fact:default_ipv4.address>"),
            "{out}"
        );
    }
    assert!(!tb.sh(&h.name, "test -e /root/peer").status.success());
}

/// A pending reboot (Debian's /run/reboot-required, written out of band as a kernel or libc
/// upgrade writes it) shows in `plan` from the same one probe, as a notice and a JSON field, not
/// as a change: plan still exits 0, apply changes nothing and does not reboot. Removing the
/// marker (what a reboot does to /run) makes it go away.
#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn a_pending_reboot_shows_in_the_plan_from_the_one_probe() {
    if !e2e_enabled() {
        return;
    }
    let tb = counting_host("afacts-rr");
    let h = &tb.hosts[0];
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "site.yml", "- hosts: all\n  roles: [r]\n");
    write(
        d.path(),
        "roles/r/role.yml",
        "resources:\n  - file: {path: /root/plain, content: \"x\\n\"}\n",
    );
    let o = labctl_in(d.path(), &tb, &["apply", "--yes", "site.yml"]);
    assert!(o.status.success(), "{}", show(&o));
    let plan_json = || {
        let o = labctl_in(d.path(), &tb, &["--json", "plan", "site.yml"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        json_data(&o)["hosts"][0].clone()
    };
    let host = plan_json();
    assert_eq!(host["reboot_required"], serde_json::Value::Null, "{host}");
    let o = labctl_in(d.path(), &tb, &["plan", "site.yml"]);
    assert!(!show(&o).contains("reboot required"), "{}", show(&o));

    // What linux-image's and libc6's postinst leave behind (each appends its name; an upgrade
    // run twice appends twice).
    tb.sh_ok(
        &h.name,
        "echo '*** System restart required ***' > /run/reboot-required && \
         printf 'linux-image-6.1.0-28-amd64\\nlibc6\\nlinux-image-6.1.0-28-amd64\\n' > /run/reboot-required.pkgs",
    );
    let since = tb
        .sh_ok(
            &h.name,
            "date -u -r /run/reboot-required +%Y-%m-%dT%H:%M:%SZ",
        )
        .trim()
        .to_string();
    let (conns, cmds) = counted(&tb, &h.name, "reboot", || {
        let o = labctl_in(d.path(), &tb, &["plan", "site.yml"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "a reboot is no change: {}",
            show(&o)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!(
                "reboot required since {since} by linux-image-6.1.0-28-amd64, libc6 (/run/reboot-required; labctl never reboots: choose when)"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("1 host to reboot: {}.", h.name)),
            "{out}"
        );
    });
    assert_eq!(
        (conns, cmds),
        (1, 1),
        "the reboot check is in the one probe"
    );
    let host = plan_json();
    assert_eq!(
        host["reboot_required"],
        serde_json::json!({"required": true, "since": since, "packages": ["linux-image-6.1.0-28-amd64", "libc6"]}),
        "{host}"
    );
    assert_eq!(host["changes"], serde_json::json!([]), "{host}");

    // apply --yes shows no plan: its recap says it, changes nothing, and reboots nothing.
    // The host's PID 1 and its start time: a reboot would give a new one.
    let init = "cut -d' ' -f22 /proc/1/stat";
    let started = tb.sh_ok(&h.name, init);
    let o = labctl_in(d.path(), &tb, &["apply", "--yes", "site.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("changed=0"), "{out}");
    assert!(out.contains("    note     reboot required since"), "{out}");
    assert_eq!(tb.sh_ok(&h.name, init), started, "apply rebooted the host");
    assert!(
        crate::common::pid_alive(h.init_pid),
        "apply rebooted the host"
    );
    tb.sh_ok(&h.name, "test -e /run/reboot-required");

    // A reboot empties /run: without the marker the notice is gone (a leftover list alone is
    // no pending reboot).
    tb.sh_ok(&h.name, "rm /run/reboot-required");
    let host = plan_json();
    assert_eq!(host["reboot_required"], serde_json::Value::Null, "{host}");
    tb.sh_ok(&h.name, "rm /run/reboot-required.pkgs");
    let o = labctl_in(d.path(), &tb, &["plan", "site.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!show(&o).contains("reboot required"), "{}", show(&o));
}
