//! `labctl remove-node` on three test hosts: base-hardening and wireguard applied from the
//! repo's site.yml (each host has the two others as WireGuard peers, and their wg_address in
//! its k3s firewall rules), and a real control plane through the k3s stand-in in kit mode (as
//! tests/e2e_reboot.rs sets it up: the first host `k3s server`, the third `k3s agent`
//! registering its Node over wg0). Then the third host is removed, and checked out of band:
//! its Node is gone and its k3s-agent stopped and disabled; the remaining hosts' `wg show wg0
//! peers` and `ufw status` no longer list it; the inventory no longer has it and kept the rest
//! of its text; a second run says so and changes nothing.

use std::path::PathBuf;

use crate::cluster_kit::{k3s_cluster, ready};
use crate::common::{e2e_enabled, json_data, labctl, show, Testbed};
use crate::controlplane::kit;

const TOKEN: &str = "rmn-join-token-0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The peers' public keys on wg0, sorted.
fn peers(tb: &Testbed, host: &str) -> Vec<String> {
    let mut v: Vec<String> = tb
        .sh_ok(host, "wg show wg0 peers")
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn remove_node_drains_deletes_and_takes_the_host_out_of_peers_firewall_and_inventory() {
    if !e2e_enabled() || !kit() {
        return;
    }
    let tb = Testbed::up("rmn", 3);
    let names: Vec<String> = tb.hosts.iter().map(|h| h.name.clone()).collect();
    let (h1, h2, h3) = (&names[0], &names[1], &names[2]);
    let admin_pub = std::fs::read_to_string(tb.dir.join("id_ed25519.pub")).unwrap();
    let vars = tb.dir.join("test-vars.yml");
    std::fs::write(
        &vars,
        format!("admin_authorized_keys:\n  - \"{}\"\n", admin_pub.trim()),
    )
    .unwrap();
    // A comment of the user's, which the edit must keep.
    let inv = tb.inventory.display().to_string();
    let mut text = std::fs::read_to_string(&tb.inventory).unwrap();
    text.push_str("# kept: a comment at the end of the file\n");
    std::fs::write(&tb.inventory, &text).unwrap();
    let key = tb.dir.join("age.key").display().to_string();
    let site = repo().join("site.yml").display().to_string();
    let evars = format!("@{}", vars.display());

    // ---- WireGuard and the firewall on the three hosts ----
    let o = labctl(&[
        "apply",
        &site,
        "-i",
        &inv,
        "--vault-key",
        &key,
        "--tags",
        "base-hardening,wireguard",
        "-e",
        &evars,
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let pub3 = tb.sh_ok(h3, "wg show wg0 public-key").trim().to_string();
    for h in [h1, h2] {
        let p = peers(&tb, h);
        assert_eq!(p.len(), 2, "{h}: {p:?}");
        assert!(p.contains(&pub3), "{h}: {p:?}");
        assert!(tb.sh_ok(h, "ufw status").contains("10.200.0.3"));
    }

    // ---- the cluster: server on the first host, the third an agent over wg0 ----
    k3s_cluster(&tb, h1, "10.200.0.1", &[h3.as_str()], TOKEN);

    let rm = |extra: &[&str]| {
        let mut args = vec![
            "remove-node",
            h3.as_str(),
            &site,
            "-i",
            &inv,
            "--vault-key",
            &key,
            "-e",
            &evars,
        ];
        args.extend_from_slice(extra);
        labctl(&args)
    };

    // ---- --check: the steps, nothing changed; without a terminal and --yes: refused ----
    let o = rm(&["--check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let plan = json_data(&o);
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "drain",
            "stop_k3s",
            "delete_node",
            "edit_inventory",
            "converge"
        ],
        "{plan:#}"
    );
    let o = rm(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&tb.inventory).unwrap(), text);
    assert!(ready(&tb, h1, h3));

    // ---- the removal ----
    let o = rm(&["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for said in [
        format!("drain node {h3} on {h1}"),
        format!("delete node {h3}"),
    ] {
        assert!(err.contains(&said), "{said}: {}", show(&o));
    }
    assert!(!err.contains("the cluster has no node"), "{}", show(&o));
    // The cluster: no Node, and k3s-agent stopped and disabled on the host.
    assert_eq!(
        tb.sh_ok(
            h1,
            &format!("k3s kubectl get node {h3} --ignore-not-found -o name")
        ),
        ""
    );
    assert!(ready(&tb, h1, h1));
    assert_eq!(
        tb.sh(h3, "systemctl is-active k3s-agent").stdout,
        b"inactive\n"
    );
    assert_eq!(
        tb.sh(h3, "systemctl is-enabled k3s-agent").stdout,
        b"disabled\n"
    );
    // The remaining hosts: one peer each (the other), no rule for the third's address.
    let pub1 = tb.sh_ok(h1, "wg show wg0 public-key").trim().to_string();
    let pub2 = tb.sh_ok(h2, "wg show wg0 public-key").trim().to_string();
    assert_eq!(peers(&tb, h1), vec![pub2]);
    assert_eq!(peers(&tb, h2), vec![pub1]);
    for h in [h1, h2] {
        let ufw = tb.sh_ok(h, "ufw status");
        assert!(!ufw.contains("10.200.0.3"), "{h}: {ufw}");
        assert!(
            ufw.contains("10.200.0.2") && ufw.contains("10.200.0.1"),
            "{h}: {ufw}"
        );
    }
    // The inventory: the third host's lines gone, every other line as it was.
    let after = std::fs::read_to_string(&tb.inventory).unwrap();
    assert!(!after.contains(h3.as_str()), "{after}");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("{h3}:"))
        .unwrap();
    let mut want = lines.clone();
    want.drain(at..at + 5);
    assert_eq!(after, want.concat());
    assert!(after.ends_with("# kept: a comment at the end of the file\n"));

    // ---- a second run: not in the inventory, nothing changed ----
    let o = rm(&["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{h3} is not in")),
        "{}",
        show(&o)
    );
    assert_eq!(std::fs::read_to_string(&tb.inventory).unwrap(), after);
    // Converged: a plan of the same tags on the edited inventory has nothing to do.
    let o = labctl(&[
        "plan",
        &site,
        "-i",
        &inv,
        "--vault-key",
        &key,
        "--tags",
        "wireguard,firewall",
        "-e",
        &evars,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
