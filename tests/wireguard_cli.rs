//! `labctl wireguard peer-config` takes its vars from the same compile as `plan`: `-e` and play
//! vars count, in the usual precedence. Runs without hosts, on the example inventory and its
//! example-only key.

use std::path::Path;
use std::process::Output;

use crate::common::show;

const KEY: &str = "inventories/lab/EXAMPLE-ONLY.agekey.txt";
const INV: &str = "inventories/lab/hosts.yml";

fn peer_config(dir: &Path, args: &[&str]) -> Output {
    let repo = env!("CARGO_MANIFEST_DIR");
    let inv = format!("{repo}/{INV}");
    let key = format!("{repo}/{KEY}");
    std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args(["wireguard", "peer-config"])
        .args(args)
        .args(["-i", &inv, "--vault-key", &key])
        .output()
        .unwrap()
}

#[test]
fn extra_vars_override_the_peers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let desk = r#"wg_peers=[{"name": "desk", "public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "address": "10.200.0.150"}]"#;
    let o = peer_config(repo, &["desk", "-e", desk]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let conf = String::from_utf8_lossy(&o.stdout);
    assert!(conf.contains("Address = 10.200.0.150/32"), "{conf}");
    // -e replaced the inventory's list: its `laptop` is gone.
    let o = peer_config(repo, &["laptop", "-e", desk]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no peer `laptop` in wg_peers (known: desk)"),
        "{}",
        show(&o)
    );
}

#[test]
fn play_vars_count() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("roles"), dir.path().join("roles")).unwrap();
    std::fs::write(
        dir.path().join("site.yml"),
        "- name: vpn\n  hosts: lab\n  vars:\n    wg_port: 51999\n  roles:\n    - wireguard\n",
    )
    .unwrap();
    let o = peer_config(dir.path(), &["laptop"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let conf = String::from_utf8_lossy(&o.stdout);
    assert!(conf.contains("Endpoint = 203.0.113.10:51999"), "{conf}");
    // -e outranks the play's vars.
    let o = peer_config(dir.path(), &["laptop", "-e", "wg_port=51888"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let conf = String::from_utf8_lossy(&o.stdout);
    assert!(conf.contains("Endpoint = 203.0.113.10:51888"), "{conf}");
}

/// Under --json the config comes in the envelope, the same text as without it.
#[test]
fn json_gives_the_config_in_the_envelope() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plain = peer_config(repo, &["laptop"]);
    assert_eq!(plain.status.code(), Some(0), "{}", show(&plain));
    let o = peer_config(repo, &["laptop", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v = crate::common::json_data(&o);
    assert_eq!(v["peer"], "laptop", "{v}");
    assert_eq!(
        v["config"].as_str().unwrap(),
        String::from_utf8_lossy(&plain.stdout),
        "{v}"
    );
}
