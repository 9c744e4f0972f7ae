//! The repo's own site.yml — all nine roles, exactly as users get them — on two fresh test
//! hosts (a k3s server and an agent), against the stand-ins for what cannot run here: k3s
//! (`tests/standins/k3s`, through the k3s role's air-gap path), helm (`tests/standins/helm`,
//! through the helm role's air-gap tarball) and the Kubernetes API (`tests/standins/kubectl`,
//! which the stand-in k3s hands its kubectl calls to). base-hardening (real ufw), wireguard
//! (real wireguard-go), apt and systemd are real.
//!
//! The stand-ins refuse what a real cluster refuses (a missing namespace, a kind whose CRD is
//! not installed yet, a NodePort outside 30000-32767, a release into a missing namespace without
//! --create-namespace, unknown flags), so the roles' order and values are checked as a real first
//! install would check them; the stand-in helm renders each release with the real helm and the
//! chart kept in charts/ first, so values a chart refuses fail here too. One testbed for the
//! module; state is checked out of band.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{e2e_enabled, json_data, labctl, show, Testbed};
use crate::e2e_k3s::{airgap, V1};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const HELM_VERSION: &str = "4.2.4";

/// An air-gap folder for the helm role: `helm` (the stand-in or the real one) as
/// `linux-amd64/helm` in the release tarball's layout, named for `version`. Returns the
/// tarball's sha256.
pub(crate) fn helm_airgap(dir: &Path, helm: &Path, version: &str) -> String {
    let stage = dir.join("stage/linux-amd64");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(helm, stage.join("helm")).unwrap();
    let tgz = dir.join(format!("helm-v{version}-linux-amd64.tar.gz"));
    let o = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(dir.join("stage"))
        .arg("linux-amd64/helm")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(&tgz).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stand-in helm renders every release with the real helm and the kept chart before
/// recording it (tests/standins/helm), from a fixed folder in the server: the real helm
/// (`LABCTL_HELM`, from scripts/setup.sh) and the repo's charts/. Written through the host's
/// /proc/PID/root, as the binary is too big for a heredoc.
fn render_with_real_helm(tb: &Testbed, server: &str) {
    let helm = std::env::var_os("LABCTL_HELM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .expect("LABCTL_HELM (the real helm) is not set or not a file: source scripts/setup.sh");
    let root = PathBuf::from(format!("/proc/{}/root", tb.host(server).init_pid));
    let render = root.join("usr/local/lib/labctl-standin/render");
    std::fs::create_dir_all(render.join("charts")).unwrap();
    std::fs::copy(&helm, render.join("helm")).unwrap();
    let mut kept = 0;
    for e in std::fs::read_dir(repo().join("charts")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tgz") {
            std::fs::copy(&p, render.join("charts").join(p.file_name().unwrap())).unwrap();
            kept += 1;
        }
    }
    assert!(kept > 0, "no charts/*.tgz in the repo");
}

struct Site {
    tb: Testbed,
    dir: tempfile::TempDir,
    server: String,
    agent: String,
    seen: std::cell::RefCell<String>,
}

impl Site {
    fn run(&self, cmd: &str, overlays: &[&str], extra: &[&str]) -> Output {
        let mut a = self
            .tb
            .site_args(cmd, &repo().join("site.yml"), self.dir.path(), overlays);
        if cmd == "apply" {
            a.push("--yes".into());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = labctl(&refs);
        self.seen.borrow_mut().push_str(&show(&o));
        o
    }
    fn apply(&self, overlays: &[&str]) -> String {
        let o = self.run("apply", overlays, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn plan(&self, overlays: &[&str]) -> (i32, serde_json::Value) {
        let o = self.run("plan", overlays, &["--json"]);
        (o.status.code().unwrap_or(-1), json_data(&o))
    }
    fn sh(&self, host: &str, script: &str) -> String {
        self.tb.sh_ok(host, script).trim().to_string()
    }
    /// The server's stand-in API, as any kubectl on it sees it.
    fn k(&self, script: &str) -> Output {
        self.tb.sh(&self.server, script)
    }
    fn restarts(&self) -> (String, String) {
        (
            self.sh(
                &self.server,
                "systemctl show -p NRestarts,ExecMainStartTimestampMonotonic k3s",
            ),
            self.sh(
                &self.agent,
                "systemctl show -p NRestarts,ExecMainStartTimestampMonotonic k3s-agent",
            ),
        )
    }
    fn vault(&self, key: &str) -> String {
        vault(&self.tb, key)
    }
}

/// A value from the testbed's age vault.
pub(crate) fn vault(tb: &Testbed, key: &str) -> String {
    let o = labctl(&[
        "vault",
        "get",
        &tb.dir
            .join("group_vars/all/vault.yml.age")
            .display()
            .to_string(),
        key,
        "--vault-key",
        &tb.dir.join("age.key").display().to_string(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

pub(crate) fn ids(plan: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn the_whole_site_converges_on_two_hosts_and_repairs_cluster_drift() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("cluster-site", 2);
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let site = Site {
        tb,
        dir: tempfile::tempdir().unwrap(),
        server: server.clone(),
        agent: agent.clone(),
        seen: Default::default(),
    };
    let d = site.dir.path();
    let k3s_sha = airgap(&d.join("k3s"), V1);
    let helm_sha = helm_airgap(
        &d.join("helm"),
        &repo().join("tests/standins/helm"),
        HELM_VERSION,
    );
    // Test-only settings: where the stand-ins come from, and the kubeconfig kept out of the repo.
    std::fs::write(
        d.join("base.yml"),
        format!(
            "k3s_airgap_dir: {}\nk3s_airgap_images: k3s-airgap-images-amd64.tar.zst\nk3s_version: \"{V1}\"\n\
             k3s_sha256: {k3s_sha}\nk3s_ready_timeout: 30\nhelm_airgap_dir: {}\nhelm_sha256: {helm_sha}\n\
             k3s_kubeconfig_dest: {}\n",
            d.join("k3s").display(),
            d.join("helm").display(),
            d.join("kubeconfig/server.yaml").display(),
        ),
    )
    .unwrap();
    // The stand-in API server's CLI, where the stand-in k3s looks for it.
    let api = std::fs::read_to_string(repo().join("tests/standins/kubectl")).unwrap();
    assert!(!api.contains("LABCTL_EOF"));
    site.sh(
        &server,
        &format!("mkdir -p /usr/local/lib/labctl-standin && cat > /usr/local/lib/labctl-standin/kubectl <<'LABCTL_EOF'\n{api}LABCTL_EOF\nchmod 755 /usr/local/lib/labctl-standin/kubectl"),
    );
    render_with_real_helm(&site.tb, &server);

    // ---- 1. first apply of the whole site ----
    let (code, plan) = site.plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    let out = site.apply(&[]);
    assert!(out.contains("failed=0"), "{out}");
    let state = |p: &str| site.sh(&server, &format!("cat /var/lib/standin-k8s/{p}"));
    for ns in ["db", "cache", "argocd", "monitoring", "cnpg-system"] {
        state(&format!("objects/namespace/_/{ns}.json"));
    }
    assert!(
        state("objects/cluster/db/postgres.json").contains("ghcr.io/cloudnative-pg/postgresql:")
    );
    assert!(state("objects/statefulset/cache/redis.json").contains("docker.io/library/redis:"));
    assert!(state("objects/service/db/postgres-nodeport.json").contains("\"nodePort\":30432"));
    assert!(state("objects/application/argocd/root.json").contains("\"selfHeal\":true"));
    assert!(state("objects/prometheusrule/monitoring/lab-rules.json").contains("PostgreSQLDown"));
    assert!(state("objects/cronjob/db/pg-backup.json").contains("postgres-superuser"));
    // ingress: cert-manager (its CRDs) before the issuers; Traefik's CRDs came with k3s.
    assert!(state("releases/cert-manager/cert-manager/meta").contains("chart=cert-manager-v1.21.1"));
    assert!(state("objects/clusterissuer/_/letsencrypt-prod.json")
        .contains("acme-v02.api.letsencrypt.org"));
    assert!(state("objects/middleware/monitoring/vpn-only.json").contains("10.200.0.0/24"));
    assert!(
        state("objects/ingress/argocd/argocd-vpn.json").contains("argocd-vpn-only@kubernetescrd")
    );
    assert!(
        state("objects/helmchartconfig/kube-system/traefik.json").contains("externalTrafficPolicy")
    );
    assert!(state("objects/ingress/hello/hello.json").contains("letsencrypt-staging"));
    for (ns, rel, chart) in [
        ("cnpg-system", "cnpg", "cloudnative-pg-0.29.0"),
        ("argocd", "argocd", "argo-cd-10.1.1"),
        ("monitoring", "monitoring", "kube-prometheus-stack-88.5.3"),
    ] {
        assert!(state(&format!("releases/{ns}/{rel}/meta")).contains(&format!("chart={chart}")));
    }
    let mon: serde_json::Value =
        serde_json::from_str(&state("releases/monitoring/monitoring/values")).unwrap();
    assert_eq!(mon["kubeControllerManager"]["enabled"], false);
    // The nodes: NodePorts answer only on each node's VPN address; the firewall lets k3s in.
    for (h, wg) in [(&server, "10.200.0.1"), (&agent, "10.200.0.2")] {
        assert!(
            site.sh(h, "cat /etc/rancher/k3s/config.yaml")
                .contains(&format!("kube-proxy-arg: [\"nodeport-addresses={wg}/32\"]")),
            "{h}"
        );
        let fw = site.sh(h, "ufw status");
        for want in [
            "10.42.0.0/16",
            "10.43.0.0/16",
            "8472/udp on wg0",
            "10250/tcp on wg0",
        ] {
            assert!(fw.contains(want), "{h}: {want}\n{fw}");
        }
    }
    assert!(site.sh(&agent, "systemctl is-active k3s-agent") == "active");
    // Grafana's password went into the running Grafana over stdin (the rotation handler).
    let grafana = site.vault("vault_grafana_admin_password");
    assert!(state("exec.log").contains(&format!("stdin-sha256={}", sha256_hex(&grafana))));
    // The kubeconfig is private.
    let kc = d.join("kubeconfig/server.yaml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // ---- 2. converged: nothing changes, nothing restarts, plan is clean ----
    let before = site.restarts();
    let out = site.apply(&[]);
    assert_eq!(out.matches("changed=0").count(), 2, "{out}");
    assert_eq!(site.restarts(), before, "a second apply restarted k3s");
    let (code, plan) = site.plan(&[]);
    assert_eq!(code, 0, "{plan:#}");

    // ---- 3. out-of-band drift in the cluster: plan names exactly it, apply repairs it ----
    site.sh(&server, "cd /var/lib/standin-k8s && sed -i 's/\"redis-password\":\"[^\"]*\"/\"redis-password\":\"c3RhbGU=\"/' objects/secret/cache/redis-auth.json");
    site.sh(&server, "cd /var/lib/standin-k8s && sed -i 's/\"create\":true/\"create\":false/' releases/cnpg-system/cnpg/values");
    site.sh(&server, "cd /var/lib/standin-k8s && sed -i 's/\"nodePort\":30432/\"nodePort\":31432/' objects/service/db/postgres-nodeport.json");
    let (code, plan) = site.plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        [
            "postgres/helm_release:cloudnative-pg operator",
            "postgres/k8s_manifest:postgres cluster",
            "redis/k8s_secret:redis secret",
        ],
        "{plan:#}"
    );
    let restarts = state("restarts.log").lines().count();
    site.apply(&[]);
    assert_eq!(
        state("restarts.log").lines().count(),
        restarts + 1,
        "the repaired Redis password restarted Redis"
    );
    assert!(state("objects/service/db/postgres-nodeport.json").contains("\"nodePort\":30432"));
    assert!(state("releases/cnpg-system/cnpg/values").contains("\"create\":true"));
    let (code, plan) = site.plan(&[]);
    assert_eq!(code, 0, "{plan:#}");

    // ---- 4. a vault password change reaches the running service ----
    // Another vault secret stands in for an edited vault value (it stays secret, as a vault
    // value would).
    std::fs::write(
        d.join("rotate.yml"),
        "grafana_admin_password: \"{{ vault_smtp_password }}\"\n",
    )
    .unwrap();
    let (code, plan) = site.plan(&["rotate"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        ["monitoring/k8s_secret:grafana admin secret"],
        "{plan:#}"
    );
    site.apply(&["rotate"]);
    let smtp = site.vault("vault_smtp_password");
    assert!(
        state("exec.log").ends_with(&format!("stdin-sha256={}", sha256_hex(&smtp))),
        "{}",
        state("exec.log")
    );

    // ---- 5. the stand-ins refuse what a real cluster refuses ----
    let kc = "--kubeconfig /etc/rancher/k3s/k3s.yaml";
    let refused = |script: &str, why: &str| {
        let o = site.k(script);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success() && err.contains(why),
            "{script}\n{}",
            show(&o)
        );
    };
    refused(
        &format!("echo '{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"x\",\"namespace\":\"nope\"}}}}' | kubectl apply --server-side {kc} -f -"),
        "namespaces \"nope\" not found",
    );
    refused(
        &format!("echo '{{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\",\"metadata\":{{\"name\":\"x\",\"namespace\":\"db\"}}}}' | kubectl apply --server-side {kc} -f -"),
        "no matches for kind \"VirtualMachine\"",
    );
    refused(
        &format!("echo '{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"x\",\"namespace\":\"db\"}},\"spec\":{{\"type\":\"NodePort\",\"ports\":[{{\"port\":80,\"nodePort\":80}}]}}}}' | kubectl apply --server-side {kc} -f -"),
        "The range of valid ports is 30000-32767",
    );
    refused(
        &format!("echo '{{}}' | helm upgrade --install x cnpg/cloudnative-pg --version 0.29.0 -n fresh {kc} -f -"),
        "namespaces \"fresh\" not found",
    );
    refused(
        &format!("kubectl get ns db {kc} --frobnicate"),
        "unknown flag",
    );
    refused(
        &format!("helm list -n db {kc} --frobnicate"),
        "unknown flag",
    );

    // No secret in any output or argv.
    let seen = site.seen.borrow().clone() + &state("calls.log");
    for s in [
        grafana,
        smtp,
        site.vault("vault_postgres_password"),
        site.vault("vault_redis_password"),
    ] {
        assert!(!seen.contains(&s), "a vault value leaked");
    }
}
