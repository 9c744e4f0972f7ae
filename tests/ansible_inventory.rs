//! `labctl inventory --list` against the real `ansible-inventory --list` (ansible-core from
//! PyPI in the test venv, see scripts/setup.sh) on inventories shaped like the ones k3s-ansible
//! and kubespray ship: the same hosts, groups, children and merged (unrendered) vars.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::venv_tool;

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn compare(inv: &Path) {
    let Some(ansible) = venv_tool("ansible-inventory") else {
        crate::common::skip("no ansible-inventory in $LABCTL_TEST_VENV (run scripts/setup.sh)");
        return;
    };
    let mut theirs = json_of(
        Command::new(ansible)
            .args(["--list", "-i"])
            .arg(inv)
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false"),
    );
    // Ansible's own bookkeeping key, not inventory content.
    theirs["_meta"].as_object_mut().unwrap().remove("profile");
    let ours = json_of(
        Command::new(env!("CARGO_BIN_EXE_labctl"))
            .args(["inventory", "--list", "-i"])
            .arg(inv)
            .env_remove("LABCTL_AGE_KEY_FILE"),
    );
    assert_eq!(
        ours,
        theirs,
        "{}: labctl and ansible-inventory disagree\nlabctl:  {}\nansible: {}",
        inv.display(),
        serde_json::to_string_pretty(&ours).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap()
    );
    // `--host H` for the first host: its merged vars alone.
    let host = theirs["_meta"]["hostvars"]
        .as_object()
        .and_then(|m| m.keys().next().cloned());
    if let Some(h) = host {
        let theirs = json_of(
            Command::new(venv_tool("ansible-inventory").unwrap())
                .args(["--host", &h, "-i"])
                .arg(inv),
        );
        let ours = json_of(
            Command::new(env!("CARGO_BIN_EXE_labctl"))
                .args(["inventory", "--host", &h, "-i"])
                .arg(inv)
                .env_remove("LABCTL_AGE_KEY_FILE"),
        );
        assert_eq!(ours, theirs, "{}: --host {h}", inv.display());
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ansible_inventories")
        .join(rel)
}

#[test]
fn k3s_ansible_yaml_sample() {
    compare(&fixture("k3s_yaml/inventory.yml"));
}

#[test]
fn kubespray_ini_with_group_and_host_vars() {
    compare(&fixture("kubespray_ini/inventory.ini"));
}

#[test]
fn homelab_ini_with_ranges_ports_and_ssh_aliases() {
    compare(&fixture("homelab_ini/hosts.ini"));
}

#[test]
fn ini_value_typing_edge_cases() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("hosts");
    std::fs::write(
        &p,
        "[g]\nh1 a=0x10 b=1e3 c=None d=\"{'x': [1, 'y']}\" e=(1,2) f=01 g=-5 h=yes i='q' j=1.0 k=a=b l=\"two words\" m=1,2 n=True\n\
         h2:2222\nn[0:6:2]\nweb-[a:c]\n[g:vars]\nx = 1\ny = spaced value\nz={\"a\": 1}\nw='quoted'\nv=false\n",
    )
    .unwrap();
    compare(&p);
}
