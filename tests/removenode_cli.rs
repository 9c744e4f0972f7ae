//! `remove-node` without test hosts (local connection; no host is a k3s node, so nothing is
//! drained): --check changes nothing, no terminal and no --yes is refused (exit 3), `no` on a
//! terminal is exit 5, an entry the edit cannot cut is refused before anything changes, a
//! removal cuts only the host's lines (comments kept) and sets its host_vars aside, and a second
//! run is nothing to do.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{json_data, show, write};

const INV: &str = "inv/hosts.yml";
const TEXT: &str = "\
# my lab; keep this
all:
  children:
    lab:
      hosts:
        a:
          ansible_connection: local   # the controller itself
        # b is going away
        b:
          ansible_connection: local
          wg_address: 10.200.0.2
    other:
      hosts:
        b:
";

fn cmd(dir: &Path) -> Command {
    crate::common::isolated(dir)
}

fn labctl(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).stdin(Stdio::null()).output().unwrap()
}

fn lab() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write(dir, INV, TEXT);
    write(dir, "inv/host_vars/b.yml", "x: 1\n");
    write(
        dir,
        "site.yml",
        "- name: demo\n  hosts: all\n  roles:\n    - demo\n",
    );
    // Nothing tagged wireguard or firewall: the convergence has nothing to change.
    write(
        dir,
        "roles/demo/role.yml",
        "resources:\n  - name: never here\n    file: {path: /nonexistent/labctl-test, content: x}\n",
    );
    d
}

#[test]
fn remove_node_asks_cuts_only_the_hosts_lines_and_a_second_run_is_nothing() {
    let d = lab();
    let dir = d.path();
    let inv = || std::fs::read_to_string(dir.join(INV)).unwrap();

    let o = labctl(dir, &["remove-node", "b", "-i", INV, "--check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let plan = json_data(&o);
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["edit_inventory", "converge"], "{plan:#}");
    assert_eq!(plan["steps"][1]["hosts"], serde_json::json!(["a"]));
    assert_eq!(inv(), TEXT);

    let o = labctl(dir, &["remove-node", "b", "-i", INV]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--yes"),
        "{}",
        show(&o)
    );
    let mut c = cmd(dir);
    c.args(["remove-node", "b", "-i", INV]);
    let o = crate::common::in_pty(&c, "no\n");
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert_eq!(inv(), TEXT);

    let o = labctl(dir, &["remove-node", "b", "-i", INV, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        inv(),
        "\
# my lab; keep this
all:
  children:
    lab:
      hosts:
        a:
          ansible_connection: local   # the controller itself
        # b is going away
    other:
      hosts: {}
"
    );
    assert!(!dir.join("inv/host_vars/b.yml").exists());
    assert!(dir.join("inv/host_vars/.b.yml.removed").exists());
    assert!(!dir.join("inv/.labctl-remove-node.hosts.yml").exists());

    let o = labctl(dir, &["remove-node", "b", "-i", INV, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("b is not in"),
        "{}",
        show(&o)
    );
}

#[test]
fn an_entry_the_edit_cannot_cut_is_refused_before_anything_changes() {
    let d = lab();
    let dir = d.path();
    let flow = "all:\n  hosts: {a: {ansible_connection: local}, b: {ansible_connection: local}}\n";
    write(dir, INV, flow);
    let o = labctl(dir, &["remove-node", "b", "-i", INV, "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("by hand"),
        "{}",
        show(&o)
    );
    assert_eq!(std::fs::read_to_string(dir.join(INV)).unwrap(), flow);
    assert!(dir.join("inv/host_vars/b.yml").exists());
}

#[test]
fn ini_inventories_lose_the_hosts_lines() {
    let d = lab();
    let dir = d.path();
    std::fs::remove_file(dir.join(INV)).unwrap();
    write(
        dir,
        "inv/hosts",
        "# ini\n[lab]\na ansible_connection=local\nb ansible_connection=local\n\n[lab:vars]\nx=1\n",
    );
    let o = labctl(dir, &["remove-node", "b", "-i", "inv/hosts", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("inv/hosts")).unwrap(),
        "# ini\n[lab]\na ansible_connection=local\n\n[lab:vars]\nx=1\n"
    );
}
