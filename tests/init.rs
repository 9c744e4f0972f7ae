//! `labctl init`: a new lab repo from flags (and from answers typed into a pty), the files and
//! the key it writes, its refusal to overwrite, `--add-host`; then, on two test hosts, `apply`
//! of the new repo converging base-hardening, wireguard and k3s (the k3s stand-in goes in
//! through the role's air-gap path, as in e2e_k3s) with no edit of the generated files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{e2e_enabled, in_pty, show, Testbed};

const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL+Nm47oobKy7JEZa7+IlWWkaY7EqCwxZs7RjGqMQuwY admin@laptop";

/// labctl with a private config home (where init puts the age key) and no stdin.
fn labctl(cfg: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", cfg)
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("LABCTL_INVENTORY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run labctl")
}

/// Every file under `dir` with its content, to show that a refused run changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn vault_text(cfg: &Path, dir: &Path) -> String {
    let o = labctl(
        cfg,
        dir,
        &[
            "vault",
            "view",
            "inventories/lab/group_vars/all/vault.yml.age",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn init_makes_a_checked_repo_refuses_to_overwrite_and_adds_hosts() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("cfg");
    let dir = t.path().join("mylab");
    let o = labctl(
        &cfg,
        t.path(),
        &[
            "init",
            "mylab",
            "--host",
            "node-a=192.0.2.10",
            "--host",
            "node-b=192.0.2.11",
            "--server",
            "node-b",
            "--admin-key",
            ADMIN_KEY,
            "--smtp-relay",
            "smtp.example.net:587",
            "--domain",
            "lab.example.net",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("labctl check") && err.contains("labctl plan"),
        "{err}"
    );
    assert!(err.contains("Back up your age key"), "{err}");

    // The key: outside the repo, 0600; the repo holds only its public half.
    use std::os::unix::fs::PermissionsExt;
    let key = cfg.join("labctl/age.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_text = std::fs::read_to_string(&key).unwrap();
    let secret_line = key_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let files = snapshot(&dir);
    assert!(
        files
            .values()
            .all(|b| !String::from_utf8_lossy(b).contains(secret_line)),
        "the age identity is nowhere in the repo"
    );
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap();
    assert!(std::fs::read_to_string(dir.join(".age-recipients"))
        .unwrap()
        .contains(public));
    let gi = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    for p in ["/kubeconfig/", "/.labctl/", "*.key"] {
        assert!(gi.lines().any(|l| l == p), ".gitignore lacks {p}:\n{gi}");
    }
    // The shipped site and roles are copied in.
    assert_eq!(
        std::fs::read(dir.join("site.yml")).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("site.yml")).unwrap()
    );
    assert!(
        dir.join("roles/k3s/role.yml").is_file()
            && dir.join("roles/wireguard/templates/wg.conf.j2").is_file()
    );

    // Inventory: the chosen server first, tunnel addresses assigned.
    let o = labctl(&cfg, &dir, &["inventory"]);
    assert!(o.status.success(), "{}", show(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hv = &inv["_meta"]["hostvars"];
    assert_eq!(hv["node-b"]["wg_address"], "10.200.0.1", "{inv:#}");
    assert_eq!(hv["node-a"]["wg_address"], "10.200.0.2", "{inv:#}");
    assert_eq!(hv["node-a"]["smtp_smarthost"], "smtp.example.net:587");
    assert_eq!(
        hv["node-a"]["alert_email_from"],
        "alertmanager@lab.example.net"
    );
    assert_eq!(hv["node-a"]["lab_domain"], "lab.example.net");
    assert_eq!(hv["node-a"]["admin_authorized_keys"][0], ADMIN_KEY);
    assert_eq!(
        inv["k3s_server"]["hosts"],
        serde_json::json!(["node-b"]),
        "{inv:#}"
    );

    // The vault: every secret the roles use, strong and distinct; one WireGuard key per node.
    let v = vault_text(&cfg, &dir);
    let mut values = Vec::new();
    for var in [
        "vault_k3s_token",
        "vault_postgres_password",
        "vault_redis_password",
        "vault_grafana_admin_password",
    ] {
        let line = v
            .lines()
            .find(|l| l.starts_with(&format!("{var}: ")))
            .unwrap_or_else(|| panic!("{var} missing"));
        let val = line.split('"').nth(1).unwrap().to_string();
        assert!(val.len() >= 32, "{var} is strong");
        values.push(val);
    }
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 4, "every secret is its own");
    for n in ["node-a", "node-b"] {
        assert!(
            v.contains(&format!("\n  {n}: \"")),
            "a WireGuard key for {n}:\n(vault shape) {}",
            v.lines()
                .filter(|l| !l.contains('"'))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // The next two commands work as printed.
    let o = labctl(&cfg, &dir, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Again on the same folder: refused, nothing touched.
    let before = snapshot(&dir);
    let o = labctl(
        &cfg,
        t.path(),
        &[
            "init",
            "mylab",
            "--host",
            "x=192.0.2.99",
            "--admin-key",
            ADMIN_KEY,
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"),
        "{}",
        show(&o)
    );
    assert_eq!(snapshot(&dir), before, "a refused init changes nothing");
    // No key to hand: flags are required without a terminal.
    let o = labctl(&cfg, t.path(), &["init", "other"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(!t.path().join("other/site.yml").exists());

    // --add-host: the next free address, a key in the vault, other keys untouched.
    let hosts_yml = dir.join("inventories/lab/hosts.yml");
    let hosts_before = std::fs::read_to_string(&hosts_yml).unwrap();
    let o = labctl(&cfg, &dir, &["init", "--add-host", "node-c", "192.0.2.12"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // The inventory's comments and layout are kept: every old line is still there, in order.
    let hosts_after = std::fs::read_to_string(&hosts_yml).unwrap();
    let mut rest = hosts_after.lines();
    for l in hosts_before.lines() {
        assert!(rest.any(|m| m == l), "kept: {l:?}\n{hosts_after}");
    }
    assert!(hosts_before
        .lines()
        .any(|l| l.trim_start().starts_with('#')));
    let o = labctl(&cfg, &dir, &["inventory", "--host", "node-c"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["wg_address"], "10.200.0.3");
    assert_eq!(c["ansible_host"], "192.0.2.12");
    let v2 = vault_text(&cfg, &dir);
    assert!(v2.contains("\n  node-c: \""));
    for l in v.lines() {
        assert!(
            v2.lines().any(|m| m == l),
            "kept: {}",
            l.split(':').next().unwrap()
        );
    }
    let o = labctl(&cfg, &dir, &["init", "--add-host", "node-c", "192.0.2.13"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "an existing host is refused: {}",
        show(&o)
    );
    let o = labctl(&cfg, &dir, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // A second lab from the same machine reuses the age identity: the key file is untouched
    // and the new repo is encrypted for the same public key.
    let o = labctl(
        &cfg,
        t.path(),
        &[
            "init",
            "second",
            "--host",
            "s=192.0.2.20",
            "--admin-key",
            ADMIN_KEY,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);
    assert!(
        std::fs::read_to_string(t.path().join("second/.age-recipients"))
            .unwrap()
            .contains(public)
    );
}

#[test]
fn init_asks_on_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("cfg");
    let pubkey = t.path().join("me.pub");
    std::fs::write(&pubkey, format!("{ADMIN_KEY}\n")).unwrap();
    // hosts (two, then an empty line), server, admin key file, ssh user, ssh key, no SMTP, no domain.
    let answers = format!(
        "s1 192.0.2.1\na1 192.0.2.2\n\na1\n{}\ndebian\n\n\n\n",
        pubkey.display()
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
    c.args(["init", "lab"])
        .current_dir(t.path())
        .env("XDG_CONFIG_HOME", &cfg)
        .env("HOME", t.path())
        .env("NO_COLOR", "1");
    let o = in_pty(&c, &answers);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let hosts = std::fs::read_to_string(t.path().join("lab/inventories/lab/hosts.yml")).unwrap();
    let server_at = hosts.find("k3s_server:").unwrap();
    let agents_at = hosts.find("k3s_agents:").unwrap();
    let a1 = hosts.find("a1:").unwrap();
    let s1 = hosts.find("s1:").unwrap();
    assert!(
        server_at < a1 && a1 < agents_at && agents_at < s1,
        "a1 is the server:\n{hosts}"
    );
    let vars =
        std::fs::read_to_string(t.path().join("lab/inventories/lab/group_vars/all/main.yml"))
            .unwrap();
    assert!(
        vars.contains("ansible_user: \"debian\"") && vars.contains("ansible_become: true"),
        "{vars}"
    );
    assert!(vars.contains(ADMIN_KEY), "{vars}");
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn init_then_apply_converges_a_two_host_lab() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("init-lab", 2);
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("cfg");
    let dir = t.path().join("lab");
    let (s, a) = (&tb.hosts[0], &tb.hosts[1]);
    let admin = std::fs::read_to_string(tb.dir.join("id_ed25519.pub")).unwrap();
    let o = labctl(
        &cfg,
        t.path(),
        &[
            "init",
            "lab",
            "--host",
            &format!("{}={}", s.name, s.address),
            "--host",
            &format!("{}={}", a.name, a.address),
            "--admin-key",
            admin.trim(),
            "--ssh-user",
            "root",
            "--ssh-key",
            &tb.key().display().to_string(),
            "--known-hosts",
            &tb.known_hosts().display().to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Only what the test hosts are, on the command line: containers cannot set kernel-wide
    // sysctls, and k3s comes from the stand-in through the air-gap path.
    let airgap = t.path().join("airgap");
    let sha = crate::e2e_k3s::airgap(&airgap, crate::e2e_k3s::V1);
    let overlay = t.path().join("testbed.yml");
    std::fs::write(
        &overlay,
        format!(
            "sysctl_kernel: false\nk3s_airgap_dir: {}\nk3s_airgap_images: k3s-airgap-images-amd64.tar.zst\nk3s_version: \"{}\"\nk3s_sha256: {sha}\nk3s_ready_timeout: 60\n",
            airgap.display(),
            crate::e2e_k3s::V1
        ),
    )
    .unwrap();
    let e = format!("@{}", overlay.display());
    let tags = "base-hardening,wireguard,k3s";
    // The first apply as a user makes it: on a terminal, the plan shown and `yes` typed. The
    // plan shown is applied as a saved plan, play after play, on hosts nothing had touched.
    let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
    c.args(["apply", "--tags", tags, "-e", &e])
        .current_dir(&dir)
        .env("XDG_CONFIG_HOME", &cfg)
        .env("NO_COLOR", "1");
    let o = in_pty(&c, "yes\n");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Apply them?"),
        "{}",
        show(&o)
    );

    // Out of band: the tunnel, k3s on both nodes.
    assert_eq!(tb.sh_ok(&s.name, "wg show wg0 peers | wc -l").trim(), "1");
    assert!(tb
        .sh_ok(&a.name, "ip -4 addr show wg0")
        .contains("10.200.0.2/24"));
    assert_eq!(
        tb.sh_ok(&s.name, "systemctl is-active k3s").trim(),
        "active"
    );
    assert_eq!(
        tb.sh_ok(&a.name, "systemctl is-active k3s-agent").trim(),
        "active"
    );
    // The stand-in keeps its node table per host: each node is Ready where it runs, and the
    // agent joins the server at its tunnel address.
    let nodes = tb.sh_ok(
        &s.name,
        &format!("k3s kubectl get node {} --no-headers", s.name),
    );
    assert!(nodes.contains(" Ready "), "{nodes}");
    let env = tb.sh_ok(&a.name, "cat /etc/systemd/system/k3s-agent.service.env");
    assert!(
        env.contains("K3S_URL=https://10.200.0.1:6443"),
        "agent joins over the tunnel"
    );
    assert!(tb.sh_ok(&s.name, "id labadmin").contains("labadmin"));

    // Converged: the plan is empty; the run log has the apply.
    let o = labctl(&cfg, &dir, &["plan", "--tags", tags, "-e", &e]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "second run converged: {}",
        show(&o)
    );
    let log = std::fs::read_to_string(dir.join(".labctl/runs.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("k3s/service:k3s") && log.contains("\"approval\":\"prompt\""),
        "{log}"
    );
    // A script re-applying the converged lab: no question, nothing changed.
    let o = labctl(&cfg, &dir, &["apply", "--yes", "--tags", tags, "-e", &e]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("changed=0")
            .count(),
        2,
        "both hosts unchanged: {}",
        show(&o)
    );
}
