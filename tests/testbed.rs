//! E2E: `labctl testbed up/status/down` with real systemd-nspawn hosts. Needs root and
//! `LABCTL_E2E=1`.

use crate::common::{e2e_enabled, labctl, pid_alive, show, testbeds_dir, Testbed};
use std::path::Path;

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn testbed_up_status_down() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2e-testbed", 2);
    let base = testbeds_dir().to_string_lossy().into_owned();

    // Out of band: each host has its name, booted systemd and its address.
    for h in &tb.hosts {
        assert_eq!(tb.sh_ok(&h.name, "hostname").trim(), h.name);
        let state = tb.sh(&h.name, "systemctl is-system-running --wait");
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        let failed = tb.sh_ok(&h.name, "systemctl --failed --no-legend --plain");
        assert!(
            state == "running" || state == "degraded",
            "{}: systemd is {state:?}; failed units:\n{failed}",
            h.name
        );
        let addrs = tb.sh_ok(&h.name, "ip -4 -o addr show dev host0");
        assert!(
            addrs.contains(&format!("inet {}/24", h.address)),
            "{}: {addrs}",
            h.name
        );
    }

    // ssh with the written key and known_hosts, strictly; root and the sudo user.
    for h in &tb.hosts {
        let out = tb.ssh("root", &h.address, "hostname");
        assert!(
            out.status.success(),
            "ssh root@{}:\n{}",
            h.address,
            show(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), h.name);
        let out = tb.ssh("tester", &h.address, "sudo -n id -u");
        assert!(
            out.status.success(),
            "ssh tester@{} sudo -n:\n{}",
            h.address,
            show(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    }

    // Hosts reach each other (routed through the machine), by name via /etc/hosts.
    let (h1, h2) = (&tb.hosts[0], &tb.hosts[1]);
    tb.sh_ok(
        &h1.name,
        &format!("timeout 5 bash -c 'echo > /dev/tcp/{}/22'", h2.name),
    );

    // The inventory names both hosts in the expected groups.
    let inv = std::fs::read_to_string(&tb.inventory).expect("inventory.yml");
    assert!(
        inv.contains("k3s_server:") && inv.contains("k3s_agents:"),
        "{inv}"
    );
    assert!(
        inv.contains(&format!("ansible_host: {}", h1.address)),
        "{inv}"
    );
    assert!(
        inv.contains(&format!("ansible_host: {}", h2.address)),
        "{inv}"
    );

    // A second `up` is a no-op that points at the same inventory.
    let before = tb.status();
    let out = labctl(&[
        "testbed",
        "up",
        "--name",
        &tb.name,
        "--hosts",
        "2",
        "--dir",
        &base,
        "--release",
        &tb.release,
    ]);
    assert!(out.status.success(), "second up:\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&tb.inventory.to_string_lossy().into_owned()),
        "{stdout}"
    );
    let after = tb.status();
    assert_eq!(before.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            b["nspawn_pid"], a["nspawn_pid"],
            "second up restarted a host"
        );
        assert_eq!(a["running"], true, "{a}");
        for key in [
            "name",
            "address",
            "nspawn_pid",
            "init_pid",
            "root",
            "running",
        ] {
            assert!(!a[key].is_null(), "status --json lacks {key}: {a}");
        }
    }

    // down stops every process and removes interfaces and files.
    let pids: Vec<u32> = after
        .iter()
        .flat_map(|h| {
            [
                h["nspawn_pid"].as_u64().unwrap() as u32,
                h["init_pid"].as_u64().unwrap() as u32,
            ]
        })
        .collect();
    let ifs: Vec<String> = after
        .iter()
        .map(|h| h["host_if"].as_str().unwrap().to_string())
        .collect();
    let out = labctl(&["testbed", "down", "--name", &tb.name, "--dir", &base]);
    assert!(out.status.success(), "down:\n{}", show(&out));
    for pid in pids {
        assert!(!pid_alive(pid), "PID {pid} still runs after down");
    }
    for ifname in ifs {
        assert!(
            !Path::new("/sys/class/net").join(&ifname).exists(),
            "{ifname} still exists after down"
        );
    }
    assert!(
        !tb.dir.exists(),
        "{} still exists after down",
        tb.dir.display()
    );
    let st = tb.status();
    assert!(st.is_empty(), "status after down: {st:?}");

    // Idempotent.
    let out = labctl(&["testbed", "down", "--name", &tb.name, "--dir", &base]);
    assert!(out.status.success(), "second down:\n{}", show(&out));
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn debian_12_and_13_testbeds_run_side_by_side() {
    if !e2e_enabled() {
        return;
    }
    // up_release checks each host's /etc/os-release out of band.
    let old = Testbed::up_release("e2e-rel12", 1, "bookworm");
    let new = Testbed::up_release("e2e-rel13", 1, "trixie");
    let base = testbeds_dir().to_string_lossy().into_owned();
    assert_eq!(old.status()[0]["release"], "bookworm");
    assert_eq!(new.status()[0]["release"], "trixie");
    assert_eq!(
        new.sh_ok(&new.hosts[0].name, "cat /etc/debian_version")
            .split('.')
            .next(),
        Some("13")
    );
    // Each from its own cached rootfs, routed to each other like hosts of one testbed.
    let lower = |tb: &Testbed| -> String {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tb.dir.join("state.json")).unwrap()).unwrap();
        st["rootfs"].as_str().unwrap().to_string()
    };
    assert!(
        lower(&old).ends_with("/rootfs/debian-12"),
        "{}",
        lower(&old)
    );
    assert!(
        lower(&new).ends_with("/rootfs/debian-13"),
        "{}",
        lower(&new)
    );
    new.sh_ok(
        &new.hosts[0].name,
        &format!(
            "timeout 5 bash -c 'echo > /dev/tcp/{}/22'",
            old.hosts[0].address
        ),
    );

    // Asking for the other release of a running testbed is refused, and nothing restarts.
    let pid = new.status()[0]["nspawn_pid"].clone();
    let out = labctl(&[
        "testbed",
        "up",
        "--name",
        &new.name,
        "--hosts",
        "1",
        "--dir",
        &base,
        "--release",
        "bookworm",
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is up with Debian 13 (trixie)"),
        "{}",
        show(&out)
    );
    assert_eq!(new.status()[0]["nspawn_pid"], pid);
    assert_eq!(new.status()[0]["running"], true);
}

#[test]
fn testbed_status_of_unknown_testbed_is_empty() {
    // Needs neither root nor LABCTL_E2E: nothing is started.
    let dir = tempfile::tempdir().unwrap();
    let out = labctl(&[
        "testbed",
        "status",
        "--json",
        "--name",
        "nothing-here",
        "--dir",
        &dir.path().to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(crate::common::json_data(&out), serde_json::json!([]));
}
