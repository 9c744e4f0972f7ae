//! `uninstall-cluster` without test hosts (no host is ever contacted here: every run stops
//! before, or finds no cluster host): --check lists agents before servers and changes nothing,
//! no terminal and no --yes is refused (exit 3), `no` on a terminal is exit 5, a bad inventory
//! names its file and line, a selection without cluster hosts is nothing to do, and a backup
//! folder inside what the uninstall removes is refused before anything runs.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{json_data, show, write};

const INV: &str = "inv/hosts.yml";
const TEXT: &str = "\
all:
  children:
    k3s_server:
      hosts:
        s1: {ansible_connection: local}
    k3s_agents:
      hosts:
        a1: {ansible_connection: local}
    other:
      hosts:
        o1: {ansible_connection: local}
";

fn cmd(dir: &Path) -> Command {
    crate::common::isolated(dir)
}

fn labctl(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).stdin(Stdio::null()).output().unwrap()
}

/// A site whose `k3s` role says server or agent as the real one does, and whose `fw` role
/// lists the cluster's rules; every resource is one that must never run here.
fn lab() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write(dir, INV, TEXT);
    write(
        dir,
        "site.yml",
        "- name: base\n  hosts: all\n  roles: [fw]\n- name: k3s\n  hosts: k3s_server:k3s_agents\n  roles: [k3s]\n",
    );
    let never = "resources:\n  - name: never here\n    file: {path: /nonexistent/labctl-test, content: x}\n";
    write(dir, "roles/k3s/role.yml", never);
    write(
        dir,
        "roles/k3s/defaults.yml",
        "k3s_node_role: \"{{ 'server' if 'k3s_server' in group_names else 'agent' }}\"\nk3s_upgrade_backup_dir: /var/lib/labctl/k3s-upgrades\n",
    );
    write(dir, "roles/fw/role.yml", never);
    write(
        dir,
        "roles/fw/defaults.yml",
        "firewall_cluster_rules:\n  - {port: \"6443\", from: 10.200.0.0/24, comment: kubernetes api}\n  - {from: 10.42.0.0/16, comment: k3s pods}\n",
    );
    d
}

#[test]
fn check_lists_agents_first_and_without_a_terminal_or_yes_nothing_runs() {
    let d = lab();
    let dir = d.path();

    let o = labctl(dir, &["uninstall-cluster", "-i", INV, "--check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let plan = json_data(&o);
    let hosts: Vec<(&str, &str)> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        hosts,
        [("a1", "agent"), ("s1", "server"), ("o1", "firewall_only")],
        "{plan:#}"
    );
    let steps = |i: usize| -> Vec<String> {
        plan["hosts"][i]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        steps(0),
        [
            "stop_units",
            "kill_shims",
            "unmount",
            "delete_interfaces",
            "delete_ufw_rules",
            "filter_iptables",
            "remove_files",
            "remove_dirs"
        ]
    );
    assert_eq!(steps(2), ["delete_ufw_rules"]);
    assert_eq!(
        plan["hosts"][2]["steps"][0]["rules"],
        serde_json::json!([
            "allow 6443/tcp from 10.200.0.0/24",
            "allow any/any from 10.42.0.0/16"
        ])
    );
    assert_eq!(
        plan["hosts"][1]["kept"],
        serde_json::json!(["/var/lib/labctl/k3s-upgrades"])
    );

    // In words: the order, what goes and what is kept.
    let o = labctl(dir, &["uninstall-cluster", "-i", INV, "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s}: {out}"));
    assert!(at("1. a1 (k3s agent)") < at("2. s1 (k3s server)"));
    assert!(out.contains("/var/lib/rancher/k3s"), "{out}");
    assert!(out.contains("Kept: WireGuard, SSH"), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing was changed"),
        "{}",
        show(&o)
    );

    // --limit narrows the hosts.
    let o = labctl(
        dir,
        &[
            "uninstall-cluster",
            "-i",
            INV,
            "--check",
            "--json",
            "--limit",
            "k3s_agents",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(json_data(&o)["hosts"].as_array().unwrap().len(), 1);

    // No terminal, no --yes: refused before anything is read.
    let o = labctl(dir, &["uninstall-cluster", "-i", INV]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--yes") && err.contains("not a terminal"),
        "{}",
        show(&o)
    );
    // `no` on a terminal: exit 5, nothing contacted (the question comes first).
    let mut c = cmd(dir);
    c.args(["uninstall-cluster", "-i", INV]);
    let o = crate::common::in_pty(&c, "no\n");
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Uninstall the cluster?"),
        "{}",
        show(&o)
    );
    // --check and --yes together are a usage error.
    let o = labctl(dir, &["uninstall-cluster", "-i", INV, "--check", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
}

#[test]
fn a_bad_inventory_names_its_file_and_line() {
    let d = lab();
    let dir = d.path();
    write(
        dir,
        INV,
        "all:\n  children:\n    k3s_server:\n      hosts:\n        s1: [not, a, mapping]\n",
    );
    let o = labctl(dir, &["uninstall-cluster", "-i", INV, "--check"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inv/hosts.yml:5"), "{}", show(&o));
}

#[test]
fn no_cluster_host_selected_is_nothing_to_do() {
    let d = lab();
    let dir = d.path();
    // o1 runs no k3s; without the fw role's rules it carries nothing of the cluster.
    write(dir, "roles/fw/defaults.yml", "firewall_cluster_rules: []\n");
    let o = labctl(
        dir,
        &[
            "uninstall-cluster",
            "-i",
            INV,
            "--limit",
            "o1",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(json_data(&o)["hosts"], serde_json::json!([]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Nothing"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_backup_folder_inside_what_is_removed_is_refused_before_any_host() {
    let d = lab();
    let dir = d.path();
    let inside = "k3s_backup_dir=/var/lib/rancher/k3s/server/backups";
    let o = labctl(
        dir,
        &["uninstall-cluster", "-i", INV, "--check", "-e", inside],
    );
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // Each k3s host, the var, its folder and the folder removed; not the firewall-only host.
    for host in ["s1", "a1"] {
        assert!(
            err.contains(&format!(
                "{host}: k3s_backup_dir is /var/lib/rancher/k3s/server/backups; uninstall-cluster removes /var/lib/rancher/k3s"
            )),
            "{}",
            show(&o)
        );
    }
    assert!(!err.contains("o1"), "{}", show(&o));
    assert!(err.contains("nothing was changed"), "{}", show(&o));
    assert!(
        o.stdout.is_empty(),
        "no plan for a refused run: {}",
        show(&o)
    );

    // With --yes too. The hosts are unreachable here (SSH to a closed port): had the refusal
    // not come first, the run would have tried them and exited 6.
    write(
        dir,
        INV,
        "all:\n  children:\n    k3s_server:\n      hosts:\n        s1: {ansible_host: 127.0.0.1, ansible_port: 1}\n    k3s_agents:\n      hosts:\n        a1: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
    );
    let o = labctl(
        dir,
        &[
            "uninstall-cluster",
            "-i",
            INV,
            "--yes",
            "--connect-timeout",
            "2",
            "-e",
            "k3s_upgrade_backup_dir=/var/lib/kubelet",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "s1: k3s_upgrade_backup_dir is /var/lib/kubelet; uninstall-cluster removes /var/lib/kubelet"
        ),
        "{}",
        show(&o)
    );
}
