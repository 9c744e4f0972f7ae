//! End to end on real test hosts over real SSH: every resource type converges, a second run is a
//! no-op, drift is found and fixed exactly, selectors select, stale saved plans are refused.
//! Host state is checked out of band (nsenter into the host), never through labctl.

use std::path::Path;

use crate::common::{e2e_enabled, labctl, show, Testbed};

fn site() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/e2e/site.yml")
        .display()
        .to_string()
}

struct Run {
    tb: Testbed,
    fetch_dir: tempfile::TempDir,
}

impl Run {
    fn args<'a>(&'a self, cmd: &'a str, extra: &[&'a str], fetch: &'a str) -> Vec<String> {
        let mut v: Vec<String> = vec![
            cmd.into(),
            site(),
            "-i".into(),
            self.tb.inventory.display().to_string(),
            "-e".into(),
            fetch.into(),
            "--vault-key".into(),
            self.tb.dir.join("age.key").display().to_string(),
        ];
        if cmd == "apply" {
            v.push("--yes".into());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }
    fn labctl(&self, cmd: &str, extra: &[&str]) -> std::process::Output {
        let fetch = format!("e2e_fetch_dest={}", self.fetch_dir.path().display());
        let a = self.args(cmd, extra, &fetch);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        labctl(&refs)
    }
    fn plan_json(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut e = vec!["--json"];
        e.extend_from_slice(extra);
        let o = self.labctl("plan", &e);
        let v = crate::common::json_data(&o);
        (o.status.code().unwrap_or(-1), v)
    }
}

fn change_ids(plan: &serde_json::Value, host: &str) -> Vec<String> {
    plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .map(|h| {
            h["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn every_type_converges_then_drift_is_found_and_fixed() {
    if !e2e_enabled() {
        return;
    }
    let run = Run {
        tb: Testbed::up("e2eng", 2),
        fetch_dir: tempfile::tempdir().unwrap(),
    };
    let (h1, h2) = (run.tb.hosts[0].name.clone(), run.tb.hosts[1].name.clone());

    // Plan on fresh hosts: everything pending, nothing changed.
    let (code, plan) = run.plan_json(&[]);
    assert_eq!(code, 2, "{plan:#}");
    assert!(change_ids(&plan, &h1).len() >= 14, "{plan:#}");
    assert!(
        !run.tb.sh(&h1, "test -e /etc/labctl-e2e").status.success(),
        "plan must change nothing"
    );

    // First apply converges.
    let o = run.labctl("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    for h in [&h1, &h2] {
        run.tb.sh_ok(
            h,
            "dpkg-query -W -f='${Status}' jq | grep -q 'install ok installed'",
        );
        assert_eq!(
            run.tb.sh_ok(h, "cat /etc/labctl-e2e/app.conf"),
            format!("# e2e app config for {h}\ngreeting = hello\n")
        );
        assert_eq!(
            run.tb
                .sh_ok(h, "stat -c %a /etc/labctl-e2e/app.conf")
                .trim(),
            "640"
        );
        assert_eq!(run.tb.sh_ok(h, "stat -c %a /srv/e2e").trim(), "750");
        assert_eq!(
            run.tb.sh_ok(h, "readlink /srv/e2e/current").trim(),
            "/etc/labctl-e2e"
        );
        assert_eq!(
            run.tb.sh_ok(h, "cat /etc/labctl-e2e/lines.conf"),
            "port = 8080\n"
        );
        assert_eq!(
            run.tb.sh_ok(h, "cat /proc/sys/net/ipv4/ip_forward").trim(),
            "1"
        );
        assert_eq!(
            run.tb
                .sh_ok(h, "systemctl is-active labctl-e2e.service")
                .trim(),
            "active"
        );
        assert_eq!(
            run.tb
                .sh_ok(h, "systemctl is-enabled labctl-e2e.service")
                .trim(),
            "enabled"
        );
        assert!(run.tb.sh_ok(h, "id -nG e2e-user").contains("e2e-group"));
        assert!(run
            .tb
            .sh_ok(h, "cat ~e2e-user/.ssh/authorized_keys")
            .contains("e2e@test"));
        run.tb.sh_ok(h, "test -s /etc/labctl-e2e/stamp");
        let fetched =
            std::fs::read_to_string(run.fetch_dir.path().join(format!("{h}.hostname"))).unwrap();
        assert_eq!(fetched.trim(), h.as_str());
    }

    // Second apply: zero changes, no restarts; plan exits 0.
    let restarts = |h: &str| {
        run.tb.sh_ok(
            h,
            "systemctl show -p NRestarts,ExecMainStartTimestamp labctl-e2e.service",
        )
    };
    let before = restarts(&h1);
    let o = run.labctl("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("changed=0").count(), 2, "{}", show(&o));
    assert_eq!(restarts(&h1), before, "a converged apply restarts nothing");
    let (code, plan) = run.plan_json(&[]);
    assert_eq!(code, 0, "{plan:#}");

    // Drift out of band on host 1: one file, one service, one package.
    run.tb.sh_ok(&h1, "echo tampered >> /etc/labctl-e2e/app.conf && systemctl stop labctl-e2e.service && DEBIAN_FRONTEND=noninteractive apt-get remove -y -q jq >/dev/null");
    let (code, plan) = run.plan_json(&[]);
    assert_eq!(code, 2, "{plan:#}");
    let mut ids = change_ids(&plan, &h1);
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "e2e/apt:package".to_string(),
            "e2e/file:app config".into(),
            "e2e/service:labctl-e2e.service".into()
        ],
        "{plan:#}"
    );
    assert!(change_ids(&plan, &h2).is_empty(), "{plan:#}");
    let o = run.labctl("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("changed=3") && out.contains("handler  e2e/restart e2e"),
        "{}",
        show(&o)
    );
    assert!(
        !out.contains("changed  e2e/directory"),
        "only the drifted resources are touched: {out}"
    );
    run.tb.sh_ok(&h1, "dpkg-query -W jq && systemctl is-active labctl-e2e.service && ! grep -q tampered /etc/labctl-e2e/app.conf");

    // --limit touches only the selected host; --tags only the selected resources.
    for h in [&h1, &h2] {
        run.tb.sh_ok(
            h,
            "echo x >> /etc/labctl-e2e/app.conf && rm /etc/labctl-e2e/lines.conf",
        );
    }
    let o = run.labctl("apply", &["--limit", &h2, "--tags", "config"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        run.tb
            .sh(&h1, "grep -qx x /etc/labctl-e2e/app.conf")
            .status
            .success(),
        "host 1 untouched"
    );
    assert!(
        !run.tb
            .sh(&h2, "grep -qx x /etc/labctl-e2e/app.conf")
            .status
            .success(),
        "host 2 fixed"
    );
    assert!(
        !run.tb
            .sh(&h2, "test -e /etc/labctl-e2e/lines.conf")
            .status
            .success(),
        "untagged resource untouched"
    );

    // A saved plan is refused (nothing changed) once the host moved.
    let plan_file = run.fetch_dir.path().join("plan.json");
    let pf = plan_file.display().to_string();
    let o = run.labctl("plan", &["--out", &pf]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    run.tb.sh_ok(&h1, "echo moved >> /etc/labctl-e2e/app.conf");
    let key = run.tb.dir.join("age.key").display().to_string();
    let o = labctl(&[
        "apply",
        "--vault-key",
        &key,
        "--plan",
        &pf,
        "-e",
        &format!("e2e_fetch_dest={}", run.fetch_dir.path().display()),
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        run.tb
            .sh(&h1, "grep -qx moved /etc/labctl-e2e/app.conf")
            .status
            .success(),
        "refused plan changed nothing"
    );
    assert!(run
        .tb
        .sh(&h1, "grep -qx x /etc/labctl-e2e/app.conf")
        .status
        .success());
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn become_host_keys_and_unreachable_hosts() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2econn", 1);
    let h = tb.hosts[0].name.clone();
    let addr = tb.hosts[0].address.clone();
    let site = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/conn/site.yml")
        .display()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let inv = |known_hosts: &Path, user: &str, become_: bool, ghost: bool| -> String {
        let p = dir.path().join(format!("inv-{user}-{become_}-{ghost}.yml"));
        let mut y = format!(
            "all:\n  vars:\n    labctl_known_hosts: {}\n    ansible_ssh_private_key_file: {}\n  hosts:\n    {h}: {{ansible_host: {addr}, ansible_user: {user}, ansible_become: {become_}}}\n",
            known_hosts.display(),
            tb.key().display()
        );
        if ghost {
            // Nothing listens on port 1 of this machine's loopback: an unreachable host.
            y.push_str(
                "    ghost: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: root}\n",
            );
        }
        std::fs::write(&p, y).unwrap();
        p.display().to_string()
    };

    // Become: `tester` has passwordless sudo; labctl runs `sudo -n` and writes a root file.
    let i = inv(&tb.known_hosts(), "tester", true, false);
    let o = labctl(&["apply", "--yes", &site, "-i", &i]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        tb.sh_ok(&h, "stat -c %U:%a /etc/labctl-conn").trim(),
        "root:644"
    );
    // Without become, the same user cannot write /etc: a failed step, reported per resource.
    tb.sh_ok(&h, "rm /etc/labctl-conn");
    let i = inv(&tb.known_hosts(), "tester", false, false);
    let o = labctl(&["apply", "--yes", &site, "-i", &i]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("failed   conn/file:/etc/labctl-conn"),
        "{}",
        show(&o)
    );
    // Sudo that wants a password (the NOPASSWD rule gone, `tester` still in group sudo): told
    // by sudo's own refusal, its own error (exit 1), and nothing is written.
    tb.sh_ok(&h, "rm /etc/sudoers.d/labctl-tester");
    let i = inv(&tb.known_hosts(), "tester", true, false);
    let o = labctl(&["apply", "--yes", &site, "-i", &i]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        show(&o).contains(&format!("sudo needs a password on tester@{addr}")),
        "{}",
        show(&o)
    );
    tb.sh_ok(&h, "test ! -e /etc/labctl-conn");

    // A changed host key is refused (exit 5), and nothing is contacted beyond the handshake.
    let other = dir.path().join("other_key");
    let kg = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(kg.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let bad_kh = dir.path().join("known_hosts_changed");
    let key_part: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(&bad_kh, format!("{addr} {}\n", key_part.join(" "))).unwrap();
    let i = inv(&bad_kh, "root", false, false);
    let o = labctl(&["plan", &site, "-i", &i]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .to_lowercase()
            .contains("host key"),
        "{}",
        show(&o)
    );

    // An unreachable host is reported; the other host is still planned and applied.
    let i = inv(&tb.known_hosts(), "root", false, true);
    let o = labctl(&["plan", &site, "-i", &i, "--connect-timeout", "3"]);
    assert_eq!(o.status.code(), Some(6), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ghost: unreachable") && out.contains("+ conn/file:/etc/labctl-conn"),
        "{}",
        show(&o)
    );
    let o = labctl(&["apply", "--yes", &site, "-i", &i, "--connect-timeout", "3"]);
    assert_eq!(o.status.code(), Some(6), "{}", show(&o));
    tb.sh_ok(&h, "test -f /etc/labctl-conn");
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn host_lock_and_ctrl_c() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2eint", 1);
    let h = tb.hosts[0].name.clone();
    let site = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/interrupt/site.yml")
        .display()
        .to_string();
    let key = tb.dir.join("age.key").display().to_string();
    let inv = tb.inventory.display().to_string();

    // Another run holds the host's lock: apply is refused (exit 5) and changes nothing.
    tb.sh_ok(
        &h,
        "nohup flock /run/lock/labctl.lock sleep 8 >/dev/null 2>&1 & sleep 0.3",
    );
    let o = labctl(&["apply", "--yes", &site, "-i", &inv, "--vault-key", &key]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("another labctl run holds the host's lock"),
        "{}",
        show(&o)
    );
    assert!(!tb.sh(&h, "test -e /etc/slow-first").status.success());
    tb.sh_ok(&h, "flock /run/lock/labctl.lock true");

    // First Ctrl-C during the slow step: it finishes, the next is not started, the handler it
    // notified still runs, exit 130.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["apply", "--yes", &site, "-i", &inv, "--vault-key", &key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Send Ctrl-C only once the slow step is really running on the host (seen out of band),
    // whatever the machine's load.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !tb.sh(&h, "test -e /run/slow-started").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SIGINT to the child we started, by its PID.
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", show(&o));
    tb.sh_ok(&h, "test -e /etc/slow-first && test -e /etc/slow-handler");
    assert!(
        !tb.sh(&h, "test -e /etc/slow-second").status.success(),
        "no new step after Ctrl-C"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("skipped  1 change(s)"), "{}", show(&o));
    // The next run finishes the job.
    let o = labctl(&["apply", "--yes", &site, "-i", &inv, "--vault-key", &key]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    tb.sh_ok(&h, "test -e /etc/slow-second");
}
