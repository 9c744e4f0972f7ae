//! base-hardening and wireguard on two fresh test hosts, checked out of band: the hosts reach
//! each other over wg0, ufw has exactly the expected rules, sshd runs hardened, the admin user
//! logs in with its key and sudo; a second apply changes nothing; one var change touches only
//! what depends on it; a broken sshd drop-in is refused and SSH keeps working.

use std::path::Path;

use crate::common::{e2e_enabled, labctl, show, Testbed};

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

struct Lab {
    tb: Testbed,
    vars: std::path::PathBuf,
}

impl Lab {
    fn run(&self, cmd: &str, extra: &[&str]) -> std::process::Output {
        self.run_as(&self.tb.inventory, cmd, extra)
    }
    /// `run` with another inventory (the testbed's, logging in as another user).
    fn run_as(&self, inventory: &Path, cmd: &str, extra: &[&str]) -> std::process::Output {
        let key = self.tb.dir.join("age.key").display().to_string();
        let inv = inventory.display().to_string();
        let vars = format!("@{}", self.vars.display());
        let site = repo("site.yml");
        let mut args = vec![
            cmd,
            &site,
            "-i",
            &inv,
            "--vault-key",
            &key,
            "--tags",
            "base-hardening,wireguard",
            "-e",
            &vars,
        ];
        if cmd == "apply" {
            args.push("--yes");
        }
        args.extend_from_slice(extra);
        labctl(&args)
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn host_roles_harden_and_connect_two_hosts() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2erole", 2);
    let admin_pub =
        std::fs::read_to_string(tb.dir.join("id_ed25519.pub")).expect("testbed public key");
    let vars = tb.dir.join("test-vars.yml");
    std::fs::write(
        &vars,
        format!("admin_authorized_keys:\n  - \"{}\"\n", admin_pub.trim()),
    )
    .unwrap();
    let lab = Lab { tb, vars };
    let (h1, h2) = (lab.tb.hosts[0].name.clone(), lab.tb.hosts[1].name.clone());
    let a2 = lab.tb.hosts[1].address.clone();

    let o = lab.run("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // WireGuard: each host reaches the other through wg0.
    for h in [&h1, &h2] {
        lab.tb.sh_ok(
            h,
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q iputils-ping >/dev/null",
        );
        assert_eq!(
            lab.tb.sh_ok(h, "stat -c %a /etc/wireguard/wg0.conf").trim(),
            "600"
        );
        assert_eq!(
            lab.tb.sh_ok(h, "systemctl is-enabled wg-quick@wg0").trim(),
            "enabled"
        );
    }
    lab.tb.sh_ok(&h1, "ping -c1 -W5 10.200.0.2");
    lab.tb.sh_ok(&h2, "ping -c1 -W5 10.200.0.1");

    // ufw: exactly the expected rules (IPv4 table).
    let status = lab.tb.sh_ok(&h1, "ufw status | grep -v '(v6)'");
    assert!(status.contains("Status: active"), "{status}");
    let mut rules: Vec<String> = status
        .lines()
        .filter(|l| l.contains("ALLOW"))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    rules.sort();
    let mut want = vec![
        "22/tcp ALLOW Anywhere",
        "80/tcp ALLOW Anywhere",
        "443/tcp ALLOW Anywhere",
        "51820/udp ALLOW Anywhere",
        "6443/tcp ALLOW 10.200.0.0/24",
        "30432/tcp ALLOW 10.200.0.0/24",
        "30379/tcp ALLOW 10.200.0.0/24",
        // What k3s needs, derived from its CIDRs and the nodes' VPN addresses.
        "Anywhere ALLOW 10.42.0.0/16",
        "Anywhere ALLOW 10.43.0.0/16",
        "8472/udp on wg0 ALLOW 10.200.0.1",
        "8472/udp on wg0 ALLOW 10.200.0.2",
        "10250/tcp on wg0 ALLOW 10.200.0.1",
        "10250/tcp on wg0 ALLOW 10.200.0.2",
        // node-exporter, which Prometheus scrapes on every node (masqueraded to the node's address).
        "9100/tcp on wg0 ALLOW 10.200.0.1",
        "9100/tcp on wg0 ALLOW 10.200.0.2",
    ];
    want.sort();
    assert_eq!(rules, want, "{status}");
    assert!(lab
        .tb
        .sh_ok(&h1, "ufw status verbose")
        .contains("Default: deny (incoming), allow (outgoing)"));

    // sshd runs hardened.
    let t = lab.tb.sh_ok(&h1, "sshd -T");
    for line in [
        "passwordauthentication no",
        "maxauthtries 3",
        "x11forwarding no",
        "kbdinteractiveauthentication no",
        "clientaliveinterval 15",
        "clientalivecountmax 4",
    ] {
        assert!(t.lines().any(|l| l == line), "sshd -T lacks `{line}`");
    }

    // unattended-upgrades is on and never reboots by itself: what apt reads, every file merged.
    let apt_reboot = "apt-config shell U APT::Periodic::Unattended-Upgrade R Unattended-Upgrade::Automatic-Reboot T Unattended-Upgrade::Automatic-Reboot-Time";
    for h in [&h1, &h2] {
        assert_eq!(lab.tb.sh_ok(h, apt_reboot), "U='1'\nR='false'\n", "{h}");
    }

    // The admin user logs in with its key and has passwordless sudo.
    let o = lab.tb.ssh("labadmin", &a2, "sudo -n id -u");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");

    // Converged: a second apply changes nothing; plan exits 0.
    let o = lab.run("apply", &[]);
    assert_eq!(stdout(&o).matches("changed=0").count(), 2, "{}", show(&o));
    let o = lab.run("plan", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // One var, one effect: a new admin peer changes only wg0.conf and restarts only WireGuard.
    let peer = "-e";
    let peer_val = r#"wg_peers=[{"name": "laptop", "public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "address": "10.200.0.100"}]"#;
    let o = lab.run("plan", &[peer, peer_val, "--json"]);
    let plan = crate::common::json_data(&o);
    for h in plan["hosts"].as_array().unwrap() {
        let ids: Vec<&str> = h["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["wireguard/file:wireguard config"], "{plan:#}");
    }
    let o = lab.run("apply", &[peer, peer_val]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        out.matches("changed  wireguard/file:wireguard config")
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("handler  wireguard/restart wireguard").count(),
        2,
        "{out}"
    );
    assert!(!out.contains("reload ssh"), "{out}");
    assert!(lab
        .tb
        .sh_ok(&h1, "wg show wg0 peers")
        .contains("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="));

    // A new port changes only the firewall.
    let o = lab.run(
        "apply",
        &[
            peer,
            peer_val,
            "-e",
            r#"firewall_extra_rules=[{"port": "8080", "proto": "tcp"}]"#,
        ],
    );
    let out = stdout(&o);
    assert_eq!(
        out.matches("changed  base-hardening/ufw:firewall").count(),
        2,
        "{out}"
    );
    assert_eq!(out.matches("    changed  ").count(), 2, "{out}");
    assert!(lab.tb.sh_ok(&h1, "ufw status").contains("8080/tcp"));

    // A broken sshd drop-in is refused by validation; the old one stays; SSH still works.
    let before = lab
        .tb
        .sh_ok(&h1, "cat /etc/ssh/sshd_config.d/50-labctl-hardening.conf");
    let o = lab.run(
        "apply",
        &[
            peer,
            peer_val,
            "-e",
            r#"ssh_extra_settings={"NoSuchKeyword": "yes"}"#,
            "--limit",
            &h1,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).contains("validation failed"), "{}", show(&o));
    assert_eq!(
        lab.tb
            .sh_ok(&h1, "cat /etc/ssh/sshd_config.d/50-labctl-hardening.conf"),
        before
    );
    assert_eq!(
        lab.tb
            .sh_ok(
                &h1,
                "ls -A /etc/ssh/sshd_config.d | grep -c labctl.conf.labctl || true"
            )
            .trim(),
        "0"
    );
    let o = lab.tb.ssh("labadmin", &lab.tb.hosts[0].address, "true");
    assert!(o.status.success(), "still able to log in: {}", show(&o));

    // A reboot time: the reboot policy changes on both hosts, and apt reads it; nothing else
    // that restarts anything runs.
    let reboot_at = |t: &str| {
        vec![
            peer.to_string(),
            peer_val.to_string(),
            "-e".to_string(),
            "unattended_reboot=true".to_string(),
            "-e".to_string(),
            format!("unattended_reboot_time={t}"),
        ]
    };
    let args = reboot_at("03:30");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lab.run("apply", &args);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        out.matches("changed  base-hardening/file:unattended-upgrades reboot policy")
            .count(),
        2,
        "{out}"
    );
    assert!(!out.contains("handler  "), "{out}");
    for h in [&h1, &h2] {
        assert_eq!(
            lab.tb.sh_ok(h, apt_reboot),
            "U='1'\nR='true'\nT='03:30'\n",
            "{h}"
        );
    }
    // A time `shutdown -r` would not take is refused before any host is touched.
    let args = reboot_at("3:30pm");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lab.run("plan", &args);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unattended_reboot_time is \"3:30pm\""),
        "{}",
        show(&o)
    );
    assert_eq!(
        lab.tb.sh_ok(&h1, apt_reboot),
        "U='1'\nR='true'\nT='03:30'\n"
    );

    // Root login. While labctl logs in as root, keys-only root login stays, and turning it off is
    // refused before the drop-in lands (sshd's own reading of the new file, `sshd -T -C`).
    let permit = |h: &str| {
        lab.tb
            .sh_ok(h, "sshd -T | grep '^permitrootlogin'")
            .trim()
            .to_string()
    };
    assert_eq!(permit(&h1), "permitrootlogin without-password");
    let args = reboot_at("03:30");
    let mut off: Vec<&str> = args.iter().map(String::as_str).collect();
    off.extend(["-e", "ssh_permit_root_login=no", "--limit", &h1]);
    let o = lab.run("apply", &off);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        show(&o)
            .contains("PermitRootLogin no would lock out root, the user labctl is logged in as"),
        "{}",
        show(&o)
    );
    assert_eq!(permit(&h1), "permitrootlogin without-password");
    let o = lab.tb.ssh("root", &lab.tb.hosts[0].address, "true");
    assert!(o.status.success(), "root still logs in: {}", show(&o));

    // The same inventory logging in as the admin user (its key, `sudo -n`): that login is the
    // proof the new way in works, and root login turns off by default.
    let admin_inv = lab.tb.dir.join("inventory-admin.yml");
    std::fs::write(
        &admin_inv,
        std::fs::read_to_string(&lab.tb.inventory)
            .unwrap()
            .lines()
            .map(|l| match l.strip_suffix("ansible_user: root") {
                Some(indent) => {
                    format!("{indent}ansible_user: labadmin\n{indent}ansible_become: true\n")
                }
                None => format!("{l}\n"),
            })
            .collect::<String>(),
    )
    .unwrap();
    let as_admin: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lab.run_as(&admin_inv, "apply", &as_admin);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        out.matches("changed  base-hardening/file:sshd hardening")
            .count(),
        2,
        "{out}"
    );
    for h in &lab.tb.hosts {
        assert_eq!(permit(&h.name), "permitrootlogin no");
        let o = lab.tb.ssh("root", &h.address, "true");
        assert!(!o.status.success(), "root login is off on {}", h.name);
        let o = lab.tb.ssh("labadmin", &h.address, "sudo -n true");
        assert!(o.status.success(), "{}", show(&o));
    }
    let o = lab.run_as(&admin_inv, "apply", &as_admin);
    assert_eq!(stdout(&o).matches("changed=0").count(), 2, "{}", show(&o));
}

#[test]
fn example_inventory_checks_with_and_without_its_key() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args(["check", "-i", "inventories/lab/hosts.yml"])
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("labctl-no-config"),
        )
        .env_remove("LABCTL_AGE_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("could not open 1 vault(s)")
            && String::from_utf8_lossy(&o.stderr).contains("group_vars/all/vault.yml.age"),
        "{}",
        show(&o)
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args([
            "check",
            "-i",
            "inventories/lab/hosts.yml",
            "--vault-key",
            "inventories/lab/EXAMPLE-ONLY.agekey.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn peer_config_derives_the_nodes_public_keys() {
    // Runs without hosts: the example inventory and its example-only key.
    let dir = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args([
            "wireguard",
            "peer-config",
            "laptop",
            "-i",
            "inventories/lab/hosts.yml",
            "--vault-key",
            "inventories/lab/EXAMPLE-ONLY.agekey.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let conf = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(conf.contains("Address = 10.200.0.100/32"), "{conf}");
    assert_eq!(conf.matches("[Peer]").count(), 2, "{conf}");
    assert!(conf.contains("Endpoint = 203.0.113.10:51820"), "{conf}");
    // The public keys are the ones `wg pubkey` derives from the vault's private keys.
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args([
            "vault",
            "get",
            "inventories/lab/group_vars/all/vault.yml.age",
            "vault_wg_private_keys.lab-server-1",
            "--vault-key",
            "inventories/lab/EXAMPLE-ONLY.agekey.txt",
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", show(&v));
    let mut wg = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg (wireguard-tools) is installed by scripts/setup.sh");
    use std::io::Write;
    wg.stdin.take().unwrap().write_all(&v.stdout).unwrap();
    let public = String::from_utf8(wg.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        conf.contains(&format!("PublicKey = {}", public.trim())),
        "{conf}\nwant {public}"
    );
    // An unknown peer is a clear error.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args([
            "wireguard",
            "peer-config",
            "nobody",
            "-i",
            "inventories/lab/hosts.yml",
            "--vault-key",
            "inventories/lab/EXAMPLE-ONLY.agekey.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("known: laptop"),
        "{}",
        show(&o)
    );
}
