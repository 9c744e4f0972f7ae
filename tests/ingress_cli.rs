//! The admin UIs are one step away for a VPN user: `labctl wireguard peer-config` ends with the
//! hosts-file lines for the ingress role's UI names, at the server's VPN address.

use crate::common::show;

#[test]
fn peer_config_names_the_admin_uis_at_the_vpn_address() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(repo)
        .args([
            "wireguard",
            "peer-config",
            "laptop",
            "-e",
            "lab_domain=lab.test",
        ])
        .args(["-i", "inventories/lab/hosts.yml"])
        .args(["--vault-key", "inventories/lab/EXAMPLE-ONLY.agekey.txt"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let conf = String::from_utf8_lossy(&o.stdout);
    for ui in ["argocd", "grafana", "alertmanager"] {
        assert!(
            conf.contains(&format!("\n# 10.200.0.1 {ui}.lab.test\n")),
            "{conf}"
        );
    }
}
