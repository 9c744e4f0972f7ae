//! The repo's own site.yml on two fresh test hosts against a REAL Kubernetes control plane: the
//! stand-in k3s (tests/standins/k3s, kit mode) runs kube-apiserver, kube-controller-manager,
//! kube-scheduler and kine built from the Kubernetes Go modules (tests/controlplane) on the
//! server, with kwok as every node's kubelet; `k3s agent` registers its Node with the join token.
//! kubectl and helm on the server are the real ones (helm v4.1.4 through the helm role's
//! air-gap path), so every release is a real `helm upgrade --install` of the kept chart and
//! every manifest a real server-side apply.
//!
//! Test configuration only, the same every run (tests/standins/pods.py): the chart repositories'
//! host names point at a local HTTPS server holding charts/ (no internet here), the Service range
//! is routed to the server (kube-proxy's part), and that server answers the charts' admission
//! webhooks with `allowed` and writes its CA into their caBundle (the webhook pods' part), and
//! provisions local-path volumes (k3s's provisioner pod). The roles and their values are the
//! ones users get; only `helm_version` names the real helm that is here.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cluster_kit::{put, put_kit};
use crate::common::{e2e_enabled, json_data, labctl, show, Testbed};
use crate::controlplane::kit;
use crate::e2e_k3s::{airgap, V1};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The version of the real helm scripts/setup.sh installs as $LABCTL_HELM.
const REAL_HELM: &str = "4.1.4";
const KIT: &str = "usr/local/lib/labctl-standin/cluster";

/// An air-gap folder for the helm role: `helm` (the stand-in or the real one) as
/// `linux-amd64/helm` in the release tarball's layout, named for `version`. Returns the
/// tarball's sha256.
fn helm_airgap(dir: &Path, helm: &Path, version: &str) -> String {
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

/// A value from the testbed's age vault.
fn vault(tb: &Testbed, key: &str) -> String {
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

fn ids(plan: &serde_json::Value) -> Vec<String> {
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

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Site {
    tb: Testbed,
    dir: tempfile::TempDir,
    server: String,
    agent: String,
    /// Everything labctl printed, to look for secrets in.
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
    /// Writes the var file NAME.yml, checks that plan with it names exactly `want`, applies it.
    fn overlay(&self, name: &str, vars: &str, want: &[&str]) {
        std::fs::write(self.dir.path().join(format!("{name}.yml")), vars).unwrap();
        let o = self.run("plan", &[name], &["--json"]);
        let plan = json_data(&o);
        assert_eq!(o.status.code(), Some(2), "{plan:#}");
        assert_eq!(ids(&plan), want, "{plan:#}");
        let o = self.run("apply", &[name], &[]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), self.logs());
    }
    fn restarts(&self) -> (String, String) {
        let show = |h: &str, unit: &str| {
            self.tb.sh_ok(
                h,
                &format!("systemctl show -p NRestarts,ExecMainStartTimestampMonotonic {unit}"),
            )
        };
        (show(&self.server, "k3s"), show(&self.agent, "k3s-agent"))
    }
    fn apply(&self) -> String {
        let o = self.run("apply", &[], &[]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), self.logs());
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn plan(&self) -> (i32, serde_json::Value) {
        let o = self.run("plan", &[], &["--json"]);
        (o.status.code().unwrap_or(-1), json_data(&o))
    }
    /// A command on the server (out of band), with k3s's kubeconfig for kubectl and helm.
    fn k(&self, script: &str) -> String {
        self.tb
            .sh_ok(
                &self.server,
                &format!("export KUBECONFIG=/etc/rancher/k3s/k3s.yaml; {script}"),
            )
            .trim()
            .to_string()
    }
    /// `labctl apply` of a one-resource role `bad` on the server: a k8s_manifest named `name`.
    fn bad(&self, name: &str, manifest: &str) -> Output {
        let d = self.dir.path().join("bad");
        let body: String = manifest.lines().map(|l| format!("        {l}\n")).collect();
        crate::common::write(
            &d,
            "roles/bad/role.yml",
            &format!("resources:\n  - name: {name}\n    k8s_manifest:\n      content: |\n{body}"),
        );
        crate::common::write(&d, "site.yml", "- hosts: k3s_server\n  roles: [bad]\n");
        self.bad_site()
    }
    /// `labctl apply` of the test's own small site in DIR/bad (the testbed's inventory).
    fn bad_site(&self) -> Output {
        let site = self.dir.path().join("bad/site.yml");
        let mut a = self.tb.site_args("apply", &site, self.dir.path(), &[]);
        a.push("--yes".into());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        labctl(&refs)
    }
    fn json(&self, script: &str) -> serde_json::Value {
        serde_json::from_str(&self.k(script)).unwrap()
    }
    /// The control plane's and the pods' stand-in's last log lines, for a failure message.
    fn logs(&self) -> String {
        let o = self.tb.sh(
            &self.server,
            "cd /var/lib/rancher/k3s/server/cp 2>/dev/null && tail -n 5 up.log kube-apiserver.log kwok.log; \
             export KUBECONFIG=/etc/rancher/k3s/k3s.yaml; k3s kubectl get nodes -o wide; \
             k3s kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.addresses} {.status.daemonEndpoints}{\"\\n\"}{end}'; \
             k3s kubectl get pods -A -o wide | grep -v Running; \
             grep -h '\"node\":' /var/lib/rancher/k3s/server/cp/kwok.log | grep -v '\"Patch node\"' | tail -n 5",
        );
        let pods = std::fs::read_to_string(self.dir.path().join("pods.log")).unwrap_or_default();
        let tail: Vec<&str> = pods.lines().rev().take(30).collect();
        format!(
            "{}\n--- pods.log (last lines, newest first)\n{}",
            String::from_utf8_lossy(&o.stdout),
            tail.join("\n")
        )
    }
    /// helm's revision of every release, and the resourceVersion of every object labctl or a
    /// chart wrote that no controller updates (ConfigMaps, Secrets, Services, custom resources).
    fn versions(&self) -> String {
        let mut out = self.k("helm list -A -o json | tr -d '\\n'");
        out.push('\n');
        out.push_str(&self.k(
            "k3s kubectl get cm,secret,svc,clusters.postgresql.cnpg.io,\
             prometheusrules,applications.argoproj.io,clusterissuers,middlewares.traefik.io,helmchartconfigs \
             -A -o custom-columns=K:.kind,NS:.metadata.namespace,N:.metadata.name,RV:.metadata.resourceVersion --no-headers",
        ));
        out
    }
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn the_whole_site_converges_against_a_real_api_server() {
    if !e2e_enabled() || !kit() {
        return;
    }
    let tb = Testbed::up("site-api", 2);
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let site = Site {
        tb,
        dir: tempfile::tempdir().unwrap(),
        server: server.clone(),
        agent: agent.clone(),
        seen: Default::default(),
    };
    let d = site.dir.path();
    let root = |h: &str| crate::cluster_kit::root(&site.tb, h);

    // ---- the cluster kit: the real kubectl everywhere, the control plane on the server ----
    put_kit(&root(&agent), KIT, false);
    let s = root(&server);
    put_kit(&s, KIT, true);
    put(
        &s,
        &format!("{KIT}/pod-bin/grafana"),
        &repo().join("tests/standins/pod-bin/grafana"),
    );
    put(
        &s,
        &format!("{KIT}/kwok-exec.yaml"),
        &repo().join("tests/standins/kwok-exec.yaml"),
    );
    for e in std::fs::read_dir(repo().join("charts/crds")).unwrap() {
        let p = e.unwrap().path();
        put(
            &s,
            &format!("{KIT}/crds/{}", p.file_name().unwrap().to_string_lossy()),
            &p,
        );
    }

    // ---- test configuration: chart repositories, webhook routing, the pods' stand-in ----
    let _pods = crate::cluster_kit::serve(&site.tb, &server, d, "etc/rancher/k3s/k3s.yaml", true);

    let k3s_sha = airgap(&d.join("k3s"), V1);
    let helm_sha = helm_airgap(&d.join("helm"), &crate::controlplane::helm_bin(), REAL_HELM);
    std::fs::write(
        d.join("base.yml"),
        format!(
            "k3s_airgap_dir: {}\nk3s_airgap_images: k3s-airgap-images-amd64.tar.zst\nk3s_version: \"{V1}\"\n\
             k3s_sha256: {k3s_sha}\nk3s_ready_timeout: 120\nhelm_airgap_dir: {}\nhelm_version: \"{REAL_HELM}\"\n\
             helm_sha256: {helm_sha}\nk3s_kubeconfig_dest: {}\n\
             environments:\n  prod: {{}}\n  staging: {{postgres_namespace: db-staging, postgres_node_port: 31432, \
             redis_namespace: cache-staging, redis_node_port: 31379}}\n",
            d.join("k3s").display(),
            d.join("helm").display(),
            d.join("kubeconfig/server.yaml").display(),
        ),
    )
    .unwrap();

    // ---- 1. first apply of the whole site, into the real API server ----
    let (code, plan) = site.plan();
    assert_eq!(code, 2, "{plan:#}");
    let out = site.apply();
    assert!(out.contains("failed=0"), "{out}");

    let releases = site.json("helm list -A -o json");
    let mut names: Vec<String> = Vec::new();
    for r in releases.as_array().unwrap() {
        assert_eq!(r["status"], "deployed", "{r:#}");
        names.push(r["name"].as_str().unwrap().to_string());
    }
    names.sort();
    for want in ["argocd", "cert-manager", "cnpg", "monitoring"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // Every custom resource the roles send was accepted (CRD schemas and CEL rules included).
    for (what, name) in [
        ("applications.argoproj.io -n argocd", "root"),
        ("clusters.postgresql.cnpg.io -n db", "postgres"),
        (
            "prometheusrules.monitoring.coreos.com -n monitoring",
            "lab-rules",
        ),
        ("clusterissuers.cert-manager.io", "letsencrypt-prod"),
        ("middlewares.traefik.io -n monitoring", "vpn-only"),
        ("helmchartconfigs.helm.cattle.io -n kube-system", "traefik"),
    ] {
        site.k(&format!("k3s kubectl get {what} {name} -o name"));
    }
    assert!(!site
        .k("k3s kubectl get servicemonitors.monitoring.coreos.com -A -o name")
        .is_empty());
    // kwok runs every pod: each Deployment and StatefulSet becomes available (releases installed
    // without --wait, and the last manifests, may still be rolling out: up to two minutes).
    let mut unready = Vec::new();
    for _ in 0..60 {
        let all = site.json("k3s kubectl get deploy,sts -A -o json");
        let items = all["items"].as_array().unwrap().clone();
        assert!(items.len() >= 8, "{}", items.len());
        unready = items
            .iter()
            .filter(|o| {
                o["status"]["readyReplicas"].as_i64().unwrap_or(0)
                    != o["spec"]["replicas"].as_i64().unwrap_or(1)
            })
            .map(|o| {
                format!(
                    "{} {}/{}",
                    o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]
                )
            })
            .collect();
        if unready.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    assert!(
        unready.is_empty(),
        "not ready: {unready:?}\n{}",
        site.logs()
    );
    // Both Nodes Ready, the agent's registered from the agent host with the join token.
    let nodes = site.json("k3s kubectl get nodes -o json");
    let mut ready: Vec<String> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    ready.sort();
    let mut want = vec![site.server.clone(), site.agent.clone()];
    want.sort();
    assert_eq!(ready, want, "{nodes:#}");
    // The labels k3s gives its nodes: the server's control-plane role, none on the agent.
    let role = |n: &str| {
        site.k(&format!(
            "k3s kubectl get node {n} -o jsonpath='{{.metadata.labels.node-role\\.kubernetes\\.io/control-plane}}'"
        ))
    };
    assert_eq!(
        (role(&site.server), role(&site.agent)),
        ("true".to_string(), String::new())
    );
    // The join token is checked by the server: a wrong one is refused (401), and the agent's
    // working credentials stay as they were.
    let o = site.tb.sh(
        &site.agent,
        "timeout 30 /usr/local/bin/k3s agent --server https://10.200.0.1:6443 --token K10wrong::server:wrong",
    );
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("token is not valid"),
        "{}",
        show(&o)
    );
    site.tb.sh_ok(
        &site.agent,
        &format!(
            "k3s kubectl --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig get node {}",
            site.agent
        ),
    );
    // The backup CronJob's Job completes.
    site.k("k3s kubectl -n db create job --from=cronjob/pg-backup drill && k3s kubectl -n db wait --for=condition=complete job/drill --timeout=60s");
    // Its pod is pinned by nodeSelector to the control plane (the dump lands on the server's
    // disk): the real scheduler put it there, with the agent's Node Ready beside it.
    assert_eq!(
        site.k(
            "k3s kubectl -n db get pods -l job-name=drill -o jsonpath='{.items[*].spec.nodeName}'"
        ),
        server
    );
    // What the roles sent, as the API server stored it.
    let get = |what: &str| site.k(&format!("k3s kubectl get {what} -o json"));
    assert!(get("clusters.postgresql.cnpg.io -n db postgres")
        .contains("ghcr.io/cloudnative-pg/postgresql:"));
    assert!(get("sts -n cache redis").contains("docker.io/library/redis:"));
    assert!(get("svc -n db postgres-nodeport").contains("\"nodePort\": 30432"));
    assert!(get("applications.argoproj.io -n argocd root").contains("\"selfHeal\": true"));
    assert!(
        get("prometheusrules.monitoring.coreos.com -n monitoring lab-rules")
            .contains("PostgreSQLDown")
    );
    assert!(get("middlewares.traefik.io -n monitoring vpn-only").contains("10.200.0.0/24"));
    assert!(get("clusterissuers.cert-manager.io letsencrypt-prod")
        .contains("acme-v02.api.letsencrypt.org"));
    assert!(
        get("helmchartconfigs.helm.cattle.io -n kube-system traefik")
            .contains("externalTrafficPolicy")
    );
    for (rel, chart) in [
        ("cnpg", "cloudnative-pg-0.29.0"),
        ("argocd", "argo-cd-10.1.1"),
        ("monitoring", "kube-prometheus-stack-88.5.3"),
        ("cert-manager", "cert-manager-v1.21.1"),
    ] {
        let r = releases
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == rel)
            .unwrap();
        assert_eq!(r["chart"], chart, "{r:#}");
    }
    let mon: serde_json::Value = site.json("helm get values monitoring -n monitoring -o json");
    assert_eq!(mon["kubeControllerManager"]["enabled"], false);
    use std::os::unix::fs::PermissionsExt;
    let kc = d.join("kubeconfig/server.yaml");
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&kc)
        .unwrap()
        .contains("server: https://10.200.0.1:6443"));
    // Grafana's password went to `grafana cli` on stdin through a real `kubectl exec`.
    let grafana = vault(&site.tb, "vault_grafana_admin_password");
    assert!(
        site.k("cat /var/lib/labctl-standin/exec.log")
            .contains(&format!("stdin-sha256={}", sha256_hex(&grafana))),
        "{}",
        site.logs()
    );

    // ---- 2. converged: nothing changes, no new revision, no object rewritten ----
    let before = site.versions();
    let restarts = site.restarts();
    let out = site.apply();
    assert_eq!(out.matches("changed=0").count(), 2, "{out}");
    assert_eq!(site.restarts(), restarts, "a second apply restarted k3s");
    let (code, plan) = site.plan();
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(
        site.versions(),
        before,
        "a second apply wrote to the cluster"
    );

    // ---- staging beside production in the same cluster (the per-environment roles) ----
    std::fs::write(d.join("staging.yml"), "target_environment: staging\n").unwrap();
    let o = site.run("apply", &["staging"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), site.logs());
    site.k("k3s kubectl get clusters.postgresql.cnpg.io -n db-staging postgres -o name");
    assert!(site
        .k("k3s kubectl get svc -A -o jsonpath='{range .items[*]}{.spec.ports[*].nodePort} {end}'")
        .contains("31432"));
    assert!(site
        .k("k3s kubectl get sts -n cache-staging -o name")
        .contains("redis"));
    for overlay in [&["staging"][..], &[][..]] {
        let o = site.run("plan", overlay, &["--json"]);
        assert_eq!(o.status.code(), Some(0), "{overlay:?}: {}", show(&o));
    }

    // ---- 3. drift made by hand with the real kubectl and helm: plan names it, apply repairs ----
    site.k("k3s kubectl -n cache scale statefulset/redis --replicas=0");
    site.k("k3s kubectl -n hello scale deployment/hello --replicas=3");
    site.k("k3s kubectl -n cache patch secret redis-auth --type=merge -p '{\"data\":{\"redis-password\":\"c3RhbGU=\"}}'");
    site.k("k3s kubectl -n db patch configmap pg-backup-scripts --type=merge -p '{\"data\":{\"pg-backup.sh\":\"exit 0\"}}'");
    // A release changed by hand (revision 2), then repaired by labctl (3), then rolled back by hand
    // to the hand-made revision (4): each time plan names the release.
    site.k("helm upgrade cnpg cnpg/cloudnative-pg --version 0.29.0 -n cnpg-system --reuse-values --set podAnnotations.drift=by-hand");
    let (code, plan) = site.plan();
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        [
            "backups/k8s_manifest:postgres backup jobs",
            "ingress/k8s_manifest:sample public site",
            "postgres/helm_release:cloudnative-pg operator",
            "redis/k8s_manifest:redis",
            "redis/k8s_secret:redis secret",
        ],
        "{plan:#}"
    );
    // Plan says whose hand edit apply takes back (server-side apply ownership, see k8s_manifest).
    assert!(
        plan.to_string()
            .contains("taking back the fields labctl declares from kubectl-patch"),
        "{plan:#}"
    );
    site.apply();
    assert_eq!(
        site.k("k3s kubectl -n cache get sts redis -o jsonpath={.spec.replicas}"),
        "1"
    );
    assert_eq!(
        site.k("k3s kubectl -n hello get deploy hello -o jsonpath={.spec.replicas}"),
        "1"
    );
    assert!(!site
        .k("helm get values cnpg -n cnpg-system -o json")
        .contains("by-hand"));
    site.k("helm rollback cnpg 2 -n cnpg-system --wait");
    let (code, plan) = site.plan();
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        ["postgres/helm_release:cloudnative-pg operator"],
        "{plan:#}"
    );
    site.apply();
    let (code, plan) = site.plan();
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(
        site.json("helm status cnpg -n cnpg-system -o json")["version"],
        5,
        "install, by hand, repair, rollback, repair"
    );

    // ---- a vault change reaches the running Grafana ----
    site.overlay(
        "rotate",
        "grafana_admin_password: \"{{ vault_smtp_password }}\"\n",
        &["monitoring/k8s_secret:grafana admin secret"],
    );
    let smtp = vault(&site.tb, "vault_smtp_password");
    assert!(
        site.k("cat /var/lib/labctl-standin/exec.log")
            .ends_with(&format!("stdin-sha256={}", sha256_hex(&smtp))),
        "{}",
        site.logs()
    );
    // Back to the inventory's password, so the checks below see the site as written.
    site.apply();

    // ---- 4. what only an API server refuses, surfaced by labctl naming role and resource ----
    let stable = site.versions();
    for (name, manifest, why) in [
        ("widget", WIDGET.to_string(), "no matches for kind \"Widget\""),
        (
            "missing namespace",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nope}\ndata: {a: b}\n".into(),
            "namespaces \"nope\" not found",
        ),
        (
            "taken nodeport",
            "apiVersion: v1\nkind: Service\nmetadata: {name: second, namespace: db}\nspec:\n  type: NodePort\n  selector: {app: x}\n  ports: [{port: 5432, nodePort: 30432}]\n".into(),
            "provided port is already allocated",
        ),
        (
            "cnpg both images",
            "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: both, namespace: db}\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:16\n  imageCatalogRef: {apiGroup: postgresql.cnpg.io, kind: ImageCatalog, name: pg, major: 16}\n  storage: {size: 1Gi}\n".into(),
            "imageName and imageCatalogRef are mutually exclusive",
        ),
    ] {
        let o = site.bad(name, &manifest);
        let text = show(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(&format!("bad/k8s_manifest:{name}")), "{name}: {text}");
        assert!(text.contains(why), "{name}: {text}");
    }
    // An immutable field: the Deployment goes in, a changed selector is refused.
    let web = |app: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: db}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      containers: [{{name: web, image: registry.k8s.io/pause:3.10}}]\n"
        )
    };
    let o = site.bad("web", &web("web"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = site.bad("web", &web("web2"));
    let text = show(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bad/k8s_manifest:web") && text.contains("field is immutable"),
        "{text}"
    );
    site.k("k3s kubectl -n db delete deploy web");
    assert_eq!(
        site.versions(),
        stable,
        "a refused object changed something else"
    );

    // ---- 5. a chart pin moved to the next patch upgrades the live release in place ----
    site.overlay(
        "next",
        "redis_exporter_chart_version: \"6.29.1\"\n",
        &["monitoring/helm_release:redis exporter"],
    );
    let st = site.json("helm status redis-exporter -n cache -o json");
    assert_eq!(
        (st["version"].as_i64(), st["info"]["status"].as_str()),
        (Some(2), Some("deployed")),
        "{st:#}"
    );
    assert!(site
        .k("helm list -n cache -o json")
        .contains("prometheus-redis-exporter-6.29.1"));
    let o = site.run("plan", &["next"], &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // ---- 6. a release a role stops wanting (state: absent) is uninstalled ----
    let release = |state: &str| {
        format!(
            "resources:\n  - name: extra\n    helm_release:\n      name: extra\n      chart: prometheus-community/prometheus-redis-exporter\n      version: \"6.29.0\"\n      namespace: cache\n      state: {state}\n"
        )
    };
    let dd = d.join("bad");
    crate::common::write(&dd, "roles/bad/role.yml", &release("present"));
    crate::common::write(&dd, "site.yml", "- hosts: k3s_server\n  roles: [bad]\n");
    let o = site.bad_site();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(site
        .k("helm list -n cache -q")
        .lines()
        .any(|l| l == "extra"));
    crate::common::write(&dd, "roles/bad/role.yml", &release("absent"));
    let o = site.bad_site();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!site
        .k("helm list -n cache -q")
        .lines()
        .any(|l| l == "extra"));
    assert!(site
        .k("k3s kubectl -n cache get deploy -o name")
        .lines()
        .all(|l| !l.contains("extra")));
    let o = site.bad_site();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );

    // No vault value in anything labctl printed.
    let seen = site.seen.borrow().clone();
    for key in [
        "vault_grafana_admin_password",
        "vault_smtp_password",
        "vault_postgres_password",
        "vault_redis_password",
    ] {
        assert!(!seen.contains(&vault(&site.tb, key)), "{key} leaked");
    }
}

const WIDGET: &str = "apiVersion: smoke.labctl.test/v1\nkind: Widget\nmetadata: {name: one, namespace: db}\nspec: {size: 3}\n";
