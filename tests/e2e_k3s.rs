//! The k3s role end to end on two test hosts (a server and an agent), with the repo's own
//! site.yml plays (`serial: 1`, servers then agents) and the role exactly as users get it.
//!
//! The k3s binary cannot be downloaded here, so `tests/standins/k3s` (a shell script imitating
//! the k3s command line) goes in through the role's air-gap path, the same path a real binary
//! takes. The token comes from the testbed's own vault (`vault_k3s_token`), the addresses from
//! its inventory (`wg_address`); a test-only `-e @file` overlay adds the air-gap settings. Host
//! state is checked out of band (nsenter), never through labctl. base-hardening is not applied:
//! the k3s role must stand on its own.

use std::path::{Path, PathBuf};

use crate::common::{e2e_enabled, labctl, show, Testbed};

pub(crate) const V1: &str = "v1.31.4+k3s1";
pub(crate) const V2: &str = "v1.31.5+k3s1";

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The k3s plays of the repo's site.yml (the first play is base-hardening + wireguard, which
/// this test leaves out), in a project whose roles/k3s is the repo's.
pub(crate) fn project(dir: &Path) -> PathBuf {
    let site = std::fs::read_to_string(repo().join("site.yml")).unwrap();
    let mut plays: Vec<String> = Vec::new();
    for line in site.lines() {
        if line.starts_with("- ") {
            plays.push(String::new());
        }
        if let Some(p) = plays.last_mut() {
            p.push_str(line);
            p.push('\n');
        }
    }
    let k3s: Vec<&String> = plays
        .iter()
        .filter(|p| p.lines().any(|l| l.trim() == "- k3s"))
        .collect();
    assert_eq!(
        k3s.len(),
        2,
        "site.yml should have a k3s server play and a k3s agents play:\n{site}"
    );
    assert!(
        k3s.iter().all(|p| p.contains("serial: 1")),
        "k3s plays roll one node at a time"
    );
    std::fs::create_dir_all(dir.join("roles")).unwrap();
    std::os::unix::fs::symlink(repo().join("roles/k3s"), dir.join("roles/k3s")).unwrap();
    let path = dir.join("site.yml");
    std::fs::write(
        &path,
        k3s.into_iter().cloned().collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    path
}

/// An air-gap folder: the stand-in as `k3s` (with `version` embedded) and a small images file.
pub(crate) fn airgap(dir: &Path, version: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let src = std::fs::read_to_string(repo().join("tests/standins/k3s")).unwrap();
    let marker = format!("K3S_STANDIN_VERSION=\"{V1}\" # labctl-standin-version");
    assert!(
        src.contains(&marker),
        "the stand-in's version marker line moved"
    );
    let body = src.replace(
        &marker,
        &format!("K3S_STANDIN_VERSION=\"{version}\" # labctl-standin-version"),
    );
    let bin = dir.join("k3s");
    std::fs::write(&bin, &body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("k3s-airgap-images-amd64.tar.zst"),
        b"stand-in images tarball\n",
    )
    .unwrap();
    use sha2::Digest;
    sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Lab {
    tb: Testbed,
    dir: tempfile::TempDir,
    site: PathBuf,
    server: String,
}

impl Lab {
    /// `labctl CMD site -i inv -e @base.yml [-e @more …] [extra args]`
    fn run(&self, cmd: &str, overlays: &[&str], extra: &[&str]) -> std::process::Output {
        let mut a = self
            .tb
            .site_args(cmd, &self.site, self.dir.path(), overlays);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        labctl(&refs)
    }

    /// A var of `host` as the inventory (with the testbed's vault) has it.
    fn inv_var(&self, host: &str, var: &str) -> String {
        let key = self.tb.dir.join("age.key").display().to_string();
        let inv = self.tb.inventory.display().to_string();
        let o = labctl(&["inventory", "-i", &inv, "--host", host, "--vault-key", &key]);
        assert!(o.status.success(), "{}", show(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[var]
            .as_str()
            .unwrap_or_else(|| panic!("{host} has no {var}"))
            .to_string()
    }

    fn vars(&self, name: &str, yaml: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.yml")), yaml).unwrap();
    }

    fn plan(&self, overlays: &[&str]) -> (i32, serde_json::Value) {
        let o = self.run("plan", overlays, &["--json"]);
        let v = crate::common::json_data(&o);
        (o.status.code().unwrap_or(-1), v)
    }

    fn apply(&self, overlays: &[&str], extra: &[&str]) -> (i32, String) {
        let extra: Vec<&str> = std::iter::once("--yes")
            .chain(extra.iter().copied())
            .collect();
        let o = self.run("apply", overlays, &extra);
        (o.status.code().unwrap_or(-1), show(&o))
    }

    fn sh(&self, host: &str, script: &str) -> String {
        self.tb.sh_ok(host, script).trim().to_string()
    }

    /// How often the stand-in started on `host` (it logs each start).
    fn starts(&self, host: &str) -> usize {
        self.sh(
            host,
            "cat /var/lib/rancher/k3s/standin/starts 2>/dev/null | wc -l",
        )
        .parse()
        .unwrap()
    }

    fn unit(&self, host: &str) -> &'static str {
        if host == self.server {
            "k3s"
        } else {
            "k3s-agent"
        }
    }

    /// What systemd says about the running k3s: restarts and when the main process started.
    fn started(&self, host: &str) -> String {
        self.sh(host, &format!("systemctl show -p NRestarts,ExecMainStartTimestamp,ExecMainStartTimestampMonotonic {}", self.unit(host)))
    }

    fn started_mono(&self, host: &str) -> u64 {
        self.sh(
            host,
            &format!(
                "systemctl show -p ExecMainStartTimestampMonotonic --value {}",
                self.unit(host)
            ),
        )
        .parse()
        .unwrap()
    }

    fn ready(&self, node: &str) -> bool {
        let out = self.tb.sh(
            &self.server,
            &format!("k3s kubectl get node {node} --no-headers"),
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            == Some("Ready")
    }
}

fn ids(plan: &serde_json::Value, host: &str) -> Vec<String> {
    let mut v: Vec<String> = plan["hosts"]
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
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn k3s_installs_converges_restarts_only_on_change_and_guards_the_token() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2ek3s", 2);
    let dir = tempfile::tempdir().unwrap();
    let site = project(&dir.path().join("project"));
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let lab = Lab {
        site,
        server: server.clone(),
        dir,
        tb,
    };
    let sha1 = airgap(&lab.dir.path().join("airgap1"), V1);
    let sha2 = airgap(&lab.dir.path().join("airgap2"), V2);
    // The role reads the token from the vault; the test needs it to look for leaks.
    let vault = lab
        .tb
        .dir
        .join("group_vars/all/vault.yml.age")
        .display()
        .to_string();
    let key = lab.tb.dir.join("age.key").display().to_string();
    let o = labctl(&[
        "vault",
        "get",
        &vault,
        "vault_k3s_token",
        "--vault-key",
        &key,
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(token.len() >= 16, "the testbed vault holds a real token");
    let wg = lab.inv_var(&server, "wg_address");

    // Test-only overlay: the air-gap path with the stand-in, and no base-hardening.
    lab.vars(
        "base",
        &format!(
            "k3s_airgap_dir: {}\nk3s_airgap_images: k3s-airgap-images-amd64.tar.zst\nk3s_version: \"{V1}\"\nk3s_sha256: {sha1}\n\
             k3s_with_base_hardening: false\nk3s_after: []\nk3s_ready_timeout: 30\n\
             ",
            lab.dir.path().join("airgap1").display(),
        ),
    );
    lab.vars(
        "labels",
        "k3s_extra_config: {node-label: [\"labctl-e2e=round2\"]}\n",
    );
    lab.vars(
        "v2",
        &format!(
            "k3s_airgap_dir: {}\nk3s_version: \"{V2}\"\nk3s_sha256: {sha2}\n",
            lab.dir.path().join("airgap2").display()
        ),
    );
    // Another secret of the same vault stands in for "someone changed vault_k3s_token": it stays
    // secret (a var computed from a secret is secret), like an edited vault would.
    lab.vars(
        "othertoken",
        "vault_k3s_token: \"{{ vault_postgres_password }}\"\n",
    );

    // ---- 1. plan on fresh hosts: everything pending, nothing touched ----
    let (code, plan) = lab.plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    let s = ids(&plan, &server);
    for id in [
        "k3s/file:k3s binary",
        "k3s/file:airgap images",
        "k3s/file:k3s config",
        "k3s/file:cluster token",
        "k3s/file:k3s unit",
        "k3s/service:k3s",
        "k3s/symlink:root kubeconfig",
        "k3s/command:kubeconfig for the VPN",
    ] {
        assert!(s.contains(&id.to_string()), "server plan lacks {id}: {s:?}");
    }
    let a = ids(&plan, &agent);
    for id in [
        "k3s/file:k3s binary",
        "k3s/file:agent join env",
        "k3s/file:k3s unit",
        "k3s/service:k3s-agent",
    ] {
        assert!(a.contains(&id.to_string()), "agent plan lacks {id}: {a:?}");
    }
    assert!(
        !a.iter()
            .any(|i| i.contains("kubeconfig") || i.contains("token")),
        "agents get no kubeconfig and no token guard: {a:?}"
    );
    assert!(
        !plan.to_string().contains(token.as_str()),
        "the plan never shows the token"
    );
    assert!(
        !lab.tb
            .sh(&server, "test -e /usr/local/bin/k3s")
            .status
            .success(),
        "plan changed nothing"
    );

    // ---- 2. first apply: server then agent, installed, started once, Ready ----
    let (code, out) = lab.apply(&[], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(token.as_str()),
        "apply output never shows the token:\n{out}"
    );
    assert_eq!(lab.sh(&server, "systemctl is-active k3s"), "active");
    assert_eq!(lab.sh(&agent, "systemctl is-active k3s-agent"), "active");
    assert_eq!(lab.sh(&server, "systemctl is-enabled k3s"), "enabled");
    for h in [&server, &agent] {
        assert_eq!(
            lab.sh(h, "stat -c %a /etc/rancher/k3s/config.yaml"),
            "600",
            "on {h}"
        );
        assert_eq!(
            lab.sh(h, "k3s --version | head -n 1"),
            format!("k3s version {V1} (a562d090)")
        );
        assert_eq!(
            lab.sh(h, "readlink /usr/local/bin/kubectl"),
            "/usr/local/bin/k3s"
        );
        assert!(
            lab.sh(h, "crictl --version").starts_with("crictl version"),
            "crictl via its symlink on {h}"
        );
        lab.sh(
            h,
            "test -s /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst",
        );
        lab.sh(h, "test -s /etc/modules-load.d/k3s.conf && grep -qx br_netfilter /etc/modules-load.d/k3s.conf");
        assert_eq!(
            lab.sh(h, "cat /proc/sys/net/bridge/bridge-nf-call-iptables"),
            "1",
            "on {h}"
        );
        assert_eq!(
            lab.sh(h, "cat /proc/sys/net/ipv4/ip_forward"),
            "1",
            "on {h}"
        );
        // The token reaches k3s through 0600 files only: not the unit, not any command line.
        let unit = lab.unit(h);
        let exec = lab.sh(h, &format!("systemctl show -p ExecStart {unit}"));
        assert!(
            exec.contains(&format!(
                "/usr/local/bin/k3s {}",
                if unit == "k3s" { "server" } else { "agent" }
            )),
            "{exec}"
        );
        assert!(
            !exec.contains(token.as_str()),
            "token in ExecStart on {h}: {exec}"
        );
        assert!(!lab
            .sh(h, &format!("cat /etc/systemd/system/{unit}.service"))
            .contains(token.as_str()));
        let ps = lab.sh(h, "ps -eo args");
        assert!(ps.contains("/usr/local/bin/k3s"), "k3s runs on {h}:\n{ps}");
        assert!(!ps.contains(token.as_str()), "token in ps on {h}:\n{ps}");
        assert_eq!(
            lab.starts(h),
            1,
            "a first install starts k3s once on {h}, not start + restart"
        );
    }
    assert!(lab
        .sh(&server, "cat /var/lib/rancher/k3s/server/token")
        .ends_with(&format!("::server:{token}")));
    assert!(lab
        .sh(&server, "cat /var/lib/rancher/k3s/server/token")
        .starts_with("K10"));
    assert_eq!(lab.sh(&server, "stat -c %a /etc/rancher/k3s/token"), "600");
    assert_eq!(lab.sh(&server, "cat /etc/rancher/k3s/token"), token);
    assert!(
        !lab.sh(&server, "cat /etc/rancher/k3s/config.yaml")
            .contains(token.as_str()),
        "config.yaml only names the token file"
    );
    assert_eq!(
        lab.sh(
            &agent,
            "stat -c %a /etc/systemd/system/k3s-agent.service.env"
        ),
        "600"
    );
    assert_eq!(
        lab.sh(&agent, "cat /etc/systemd/system/k3s-agent.service.env"),
        format!("K3S_URL=https://{}:6443\nK3S_TOKEN={token}", wg)
    );
    assert!(
        !lab.sh(&agent, "cat /etc/rancher/k3s/config.yaml")
            .contains(token.as_str()),
        "agents keep the token in the env file only"
    );
    assert!(lab.ready(&server), "server node Ready");
    assert!(
        lab.sh(&server, "kubectl get nodes").starts_with("NAME"),
        "kubectl through the symlink and root's kubeconfig"
    );
    assert_eq!(
        lab.sh(&server, "readlink /root/.kube/config"),
        "/etc/rancher/k3s/k3s.yaml"
    );
    assert_eq!(
        lab.sh(&server, "stat -c %a /etc/rancher/k3s/k3s.yaml"),
        "600",
        "write-kubeconfig-mode reached k3s"
    );
    let fetched_path = lab
        .site
        .parent()
        .unwrap()
        .join(format!("kubeconfig/{server}.yaml"));
    let fetched = std::fs::read_to_string(&fetched_path)
        .unwrap_or_else(|e| panic!("{}: {e}", fetched_path.display()));
    assert!(
        fetched.contains(&format!("server: https://{}:6443", wg)),
        "{fetched}"
    );
    assert!(!fetched.contains("127.0.0.1"), "{fetched}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&fetched_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        lab.started_mono(&server) < lab.started_mono(&agent),
        "the server play runs before the agents play"
    );

    // ---- 3. second apply: nothing changes, nothing restarts ----
    let before = (lab.started(&server), lab.started(&agent));
    let (code, out) = lab.apply(&[], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("changed=0").count(), 2, "{out}");
    assert!(
        !out.contains("handler"),
        "no handler on a converged run:\n{out}"
    );
    assert_eq!(
        (lab.started(&server), lab.started(&agent)),
        before,
        "a converged apply restarts nothing"
    );
    assert_eq!((lab.starts(&server), lab.starts(&agent)), (1, 1));
    let (code, plan) = lab.plan(&[]);
    assert_eq!(code, 0, "{plan:#}");

    // ---- 4. a config var change: plan shows exactly the config; each node restarts once, server first ----
    let (code, plan) = lab.plan(&["labels"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(ids(&plan, &server), vec!["k3s/file:k3s config"], "{plan:#}");
    assert_eq!(ids(&plan, &agent), vec!["k3s/file:k3s config"], "{plan:#}");
    let (code, out) = lab.apply(&["labels"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        (lab.starts(&server), lab.starts(&agent)),
        (2, 2),
        "exactly one restart per node:\n{out}"
    );
    assert!(
        lab.started_mono(&server) < lab.started_mono(&agent),
        "server restarted before the agent"
    );
    assert!(lab
        .sh(&server, "cat /etc/rancher/k3s/config.yaml")
        .contains("labctl-e2e=round2"));
    assert!(lab.ready(&server));
    assert_eq!(lab.plan(&["labels"]).0, 0, "converged again");

    // ---- 5. a version change: plan shows the binary; apply replaces it and restarts ----
    // (With the backup of the old version first: tests/e2e_upgrade.rs checks what it holds.)
    let (code, plan) = lab.plan(&["labels", "v2"]);
    assert_eq!(code, 2, "{plan:#}");
    let backup =
        format!("k3s/command:k3s upgrade backup into /var/lib/labctl/k3s-upgrades/before-{V2}");
    let upgrade = vec![backup, "k3s/file:k3s binary".to_string()];
    assert_eq!(ids(&plan, &server), upgrade, "{plan:#}");
    assert_eq!(ids(&plan, &agent), upgrade, "{plan:#}");
    let (code, out) = lab.apply(&["labels", "v2"], &[]);
    assert_eq!(code, 0, "{out}");
    for h in [&server, &agent] {
        assert_eq!(
            lab.sh(h, "k3s --version | head -n 1"),
            format!("k3s version {V2} (a562d090)")
        );
        assert_eq!(lab.starts(h), 3, "one restart for the upgrade on {h}");
        assert!(
            lab.sh(h, "tail -n 1 /var/lib/rancher/k3s/standin/starts")
                .ends_with(V2),
            "the new binary is what runs on {h}"
        );
    }
    assert!(
        lab.started_mono(&server) < lab.started_mono(&agent),
        "server upgraded before the agent"
    );
    assert!(lab
        .sh(&server, &format!("kubectl get node {server} --no-headers"))
        .contains(V2));
    assert_eq!(lab.plan(&["labels", "v2"]).0, 0, "converged again");

    // A binary that is not the pinned one never lands: here the air-gap folder still holds the old
    // release while k3s_sha256 pins the new one.
    lab.vars(
        "badsha",
        &format!(
            "k3s_airgap_dir: {}\n",
            lab.dir.path().join("airgap1").display()
        ),
    );
    let (code, out) = lab.apply(&["labels", "v2", "badsha"], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is not the k3s_sha256"), "{out}");
    assert_eq!(
        lab.sh(&server, "k3s --version | head -n 1"),
        format!("k3s version {V2} (a562d090)")
    );
    assert_eq!(lab.starts(&server), 3);

    // ---- 6. a token change on an existing cluster: plan shows it, apply refuses it ----
    let (code, plan) = lab.plan(&["labels", "v2", "othertoken"]);
    assert_eq!(code, 2, "{plan:#}");
    // The config only names the token file, so the token change is this one file; the refusal
    // itself comes at apply (see the role: probes may not carry secret-derived values).
    assert_eq!(
        ids(&plan, &server),
        vec!["k3s/file:cluster token"],
        "{plan:#}"
    );
    assert_eq!(
        ids(&plan, &agent),
        vec!["k3s/file:agent join env"],
        "{plan:#}"
    );
    assert!(
        !plan.to_string().contains(token.as_str()),
        "the plan never shows the vault's token"
    );
    let config_before = lab.sh(
        &server,
        "sha256sum /etc/rancher/k3s/config.yaml /etc/rancher/k3s/token /var/lib/rancher/k3s/server/token",
    );
    let env_before = lab.sh(
        &agent,
        "sha256sum /etc/systemd/system/k3s-agent.service.env",
    );
    // --max-fail-percent 0: once the server refused, the agents' batch is not started either, so
    // no agent is handed a token its server would reject.
    let (code, out) = lab.apply(
        &["labels", "v2", "othertoken"],
        &["--max-fail-percent", "0"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refusing to change the k3s token"),
        "the refusal explains itself:\n{out}"
    );
    assert!(
        !out.contains(token.as_str()),
        "no token in the output:\n{out}"
    );
    assert_eq!(
        lab.sh(
            &server,
            "sha256sum /etc/rancher/k3s/config.yaml /etc/rancher/k3s/token /var/lib/rancher/k3s/server/token"
        ),
        config_before,
        "config and token untouched"
    );
    assert_eq!(
        lab.sh(
            &agent,
            "sha256sum /etc/systemd/system/k3s-agent.service.env"
        ),
        env_before,
        "the agent was not touched"
    );
    assert_eq!(
        (lab.starts(&server), lab.starts(&agent)),
        (3, 3),
        "nothing restarted"
    );
    assert_eq!(lab.sh(&server, "systemctl is-active k3s"), "active");
    assert!(lab.ready(&server));

    // Back on the cluster's token: in sync.
    assert_eq!(lab.plan(&["labels", "v2"]).0, 0);
}
