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
        "testbed", "up", "--name", &tb.name, "--hosts", "2", "--dir", &base,
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
