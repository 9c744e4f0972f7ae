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

/// An ACME contact address Let's Encrypt refuses (example.org here) stops `check` and `plan` at
/// the line that sets it, saying why and what to set; runs that leave the ingress role out are
/// not stopped by it. The example inventory itself registers without a contact and passes.
#[test]
fn an_example_domain_acme_email_is_refused_where_it_is_set() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let inv = d.path().join("inv");
    std::fs::create_dir_all(inv.join("group_vars/all")).unwrap();
    for f in [
        "hosts.yml",
        "group_vars/all/main.yml",
        "group_vars/all/vault.yml.age",
    ] {
        std::fs::copy(repo.join("inventories/lab").join(f), inv.join(f)).unwrap();
    }
    let main = inv.join("group_vars/all/main.yml");
    let text = std::fs::read_to_string(&main).unwrap();
    let line = text.lines().count() + 1;
    std::fs::write(&main, format!("{text}acme_email: ops@example.org\n")).unwrap();
    let run = |cmd: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
            .current_dir(repo)
            .args([cmd, "-i", inv.join("hosts.yml").to_str().unwrap()])
            .args(["--vault-key", "inventories/lab/EXAMPLE-ONLY.agekey.txt"])
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for cmd in ["check", "plan"] {
        let o = run(cmd, &[]);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("acme_email `ops@example.org` is at example.org, an example domain Let's Encrypt refuses"),
            "{err}"
        );
        assert!(
            err.contains(&format!("group_vars/all/main.yml:{line}:")),
            "{err}"
        );
        assert!(
            err.contains("set acme_email to an address you read"),
            "{err}"
        );
    }
    // Without the ingress role nothing registers an account.
    let o = run("check", &["--skip-tags", "ingress"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // -e wins, and an address at a real domain passes.
    let o = run("check", &["-e", "acme_email=ops@lab-owner.net"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = run("check", &["-e", "acme_email=me@lab.example.com"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("`me@lab.example.com` (from -e) is at example.com"),
        "{}",
        show(&o)
    );
}
