//! End to end for cluster services, on real test hosts.
//! (a) helm_repo / helm_release / k8s_manifest / k8s_secret against a REAL control plane on the
//!     test host (scripts/controlplane.sh: kube-apiserver, controller-manager, scheduler and kine
//!     built from the Kubernetes Go modules, kwok as the kubelet), with the real helm and kubectl
//!     and the kept charts served as their own repositories (tests/cluster_kit.rs): install →
//!     no-op → values change → upgrade → drift repair → pin moved past the repository index →
//!     removal, and vault canaries never in any output, the plan file or any argv.
//! (b) the backup, restore-drill and smoke-test scripts against REAL PostgreSQL, SQLite and
//!     Redis from Debian's packages.
//! Host and cluster state is checked out of band (nsenter, the real kubectl and helm), never
//! through labctl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cluster_kit::{index, next_exporter_patch, put_kit, repo_dir, PROMETHEUS_COMMUNITY};
use crate::common::{e2e_enabled, labctl, show, Testbed};
use crate::controlplane::{helm_bin, kit, kubectl_bin};

const CANARY_ADMIN: &str = "canary-pg-admin-5ad1";
const CANARY_APP: &str = "canary-pg-app-77c2";
const CANARY_TOKEN: &str = "canary-values-token-e03f";
/// Where the test puts the control plane on the host, and its admin kubeconfig (the fixture's
/// `kubeconfig` default).
const CP_KIT: &str = "usr/local/lib/labctl-cp";
const CP_DIR: &str = "/var/lib/labctl-cp";
/// Every helm and kubectl argv on the host, written by the recorders in /usr/local/sbin.
const ARGV_LOG: &str = "/var/log/helm-kubectl-argv.log";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Run {
    tb: Testbed,
    key: PathBuf,
    seen: std::cell::RefCell<String>,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn labctl(&self, cmd: &str, extra: &[&str]) -> Output {
        let site = root().join("tests/fixtures/cluster/site.yml");
        let mut a: Vec<String> = vec![
            cmd.into(),
            site.display().to_string(),
            "-i".into(),
            self.tb.inventory.display().to_string(),
        ];
        if cmd == "apply" {
            a.push("--yes".into());
        }
        a.extend(["--vault-key".into(), self.key.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = labctl(&refs);
        self.seen.borrow_mut().push_str(&text(&o));
        o
    }
    fn plan(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut e = vec!["--json"];
        e.extend_from_slice(extra);
        let o = self.labctl("plan", &e);
        let v = crate::common::json_data(&o);
        (o.status.code().unwrap_or(-1), v)
    }
    fn host(&self) -> String {
        self.tb.hosts[0].name.clone()
    }
    /// The real kubectl or helm on the host, out of band (not through the recorders).
    fn k(&self, script: &str) -> String {
        self.tb
            .sh_ok(
                &self.host(),
                &format!("export KUBECONFIG={CP_DIR}/kubeconfig PATH=/usr/local/bin:/usr/bin:/bin; {script}"),
            )
            .trim()
            .to_string()
    }
    fn json(&self, script: &str) -> serde_json::Value {
        let out = self.k(script);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{script}: {e}: {out}"))
    }
    /// `helm list` of one namespace: release name → (chart, revision, status).
    fn releases(&self, ns: &str) -> Vec<(String, String, String, String)> {
        self.json(&format!("helm list -n {ns} -o json"))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (f("name"), f("chart"), f("revision"), f("status"))
            })
            .collect()
    }
    fn argv(&self) -> String {
        self.tb.sh_ok(&self.host(), &format!("cat {ARGV_LOG}"))
    }
    fn exists(&self, what: &str) -> bool {
        self.tb
            .sh(
                &self.host(),
                &format!("KUBECONFIG={CP_DIR}/kubeconfig /usr/local/bin/kubectl get {what}"),
            )
            .status
            .success()
    }
    /// The last lines of the control plane's logs, for a failure message.
    fn logs(&self) -> String {
        let o = self.tb.sh(
            &self.host(),
            &format!("cd {CP_DIR} && tail -n 8 kube-apiserver.log kwok.log; KUBECONFIG={CP_DIR}/kubeconfig /usr/local/bin/kubectl get pods -A"),
        );
        text(&o)
    }
}

fn changes(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["changes"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ids(plan: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = changes(plan)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn assert_no_canary(what: &str, s: &str) {
    for c in [CANARY_ADMIN, CANARY_APP, CANARY_TOKEN] {
        assert!(!s.contains(c), "{what} leaks {c}:\n{s}");
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The cluster the types talk to, out of band: the control plane started on the host with its
/// admin kubeconfig at CP_DIR/kubeconfig, the real helm and kubectl in /usr/local/bin, and in
/// /usr/local/sbin (first on root's and sudo's PATH) recorders that append each argv to ARGV_LOG
/// and exec the real program, so the test sees every argument labctl passed.
fn cluster(tb: &Testbed, h: &str) {
    let r = crate::cluster_kit::root(tb, h);
    put_kit(&r, CP_KIT, true);
    crate::cluster_kit::put(&r, "usr/local/bin/kubectl", &kubectl_bin());
    crate::cluster_kit::put(&r, "usr/local/bin/helm", &helm_bin());
    for tool in ["helm", "kubectl"] {
        let p = r.join(format!("usr/local/sbin/{tool}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            format!("#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> {ARGV_LOG}\nexec /usr/local/bin/{tool} \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = tb.sh(
        h,
        &format!(
            "touch {ARGV_LOG} && PATH=/{CP_KIT}/bin:$PATH CP_BIN=/{CP_KIT}/controlplane CP_KUBECTL=/{CP_KIT}/kubectl CP_API_PORT=6443 \
             OPENSSL_CONF=/{CP_KIT}/openssl.cnf \
             /{CP_KIT}/controlplane.sh up {CP_DIR}"
        ),
    );
    assert!(
        o.status.success(),
        "the control plane did not come up: {}\n{}",
        show(&o),
        text(&tb.sh(h, &format!("tail -n 20 {CP_DIR}/*.log")))
    );
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn cluster_types_converge_on_a_real_api_server_without_leaking_secrets() {
    if !e2e_enabled() || !kit() {
        return;
    }
    let tb = Testbed::up("e2eclu", 1);
    let h = tb.hosts[0].name.clone();
    let tmp = tempfile::tempdir().unwrap();
    cluster(&tb, &h);
    let _pods =
        crate::cluster_kit::serve(&tb, &h, tmp.path(), &format!("{CP_DIR}/kubeconfig"), false);
    // The testbed writes its own vault and key; our canaries go in a second vault for that key.
    let key = tb.dir.join("age.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("the key file names its public key")
        .to_string();
    std::fs::write(tmp.path().join("recipients"), format!("{public}\n")).unwrap();
    let gv = tb.dir.join("group_vars/all");
    let plain = gv.join("cluster.yml");
    std::fs::write(&plain, format!("vault_pg_admin: {CANARY_ADMIN}\nvault_pg_app: {CANARY_APP}\nvault_values_token: {CANARY_TOKEN}\n")).unwrap();
    let o = labctl(&[
        "vault",
        "encrypt",
        "--in-place",
        "--recipients",
        &tmp.path().join("recipients").display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(
        o.status.success() && gv.join("cluster.yml.age").exists(),
        "{}",
        show(&o)
    );
    let run = Run {
        tb,
        key,
        seen: Default::default(),
        _tmp: tmp,
    };

    // An empty cluster and a helm that knows no repository: the plan creates everything and
    // changes nothing.
    let (code, plan) = run.plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis-exporter",
            "cluster/helm_release:db/pg-exporter",
            "cluster/helm_repo:prometheus-community",
            "cluster/k8s_manifest:backup.yaml.j2",
            "cluster/k8s_manifest:namespaces",
            "cluster/k8s_secret:db/pg-auth",
        ],
        "{plan:#}"
    );
    assert!(
        changes(&plan).iter().all(|c| c["action"] == "create"),
        "{plan:#}"
    );
    // helm v4 prints [] for no repositories (v3 failed: "no repositories to show").
    assert_eq!(
        run.k("helm repo list -o json 2>/dev/null || echo '[]'"),
        "[]"
    );
    assert!(!run.exists("namespace db"));

    // Install.
    let o = run.labctl("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), run.logs());
    let db = run.releases("db");
    assert_eq!(
        db,
        vec![(
            "pg-exporter".into(),
            "prometheus-postgres-exporter-8.2.0".into(),
            "1".into(),
            "deployed".into()
        )],
        "{db:?}"
    );
    // kwok ran the chart's pod: the Deployment is available, as `--wait` required.
    assert_eq!(
        run.k("kubectl -n db get deploy -o jsonpath='{.items[0].status.availableReplicas}'"),
        "1"
    );
    // The secret values reached helm intact (over stdin), and the chart wrote them where it does.
    let values = run.json("helm get values -n db pg-exporter -o json");
    assert_eq!(values["config"]["datasource"]["password"], CANARY_APP);
    assert_eq!(values["podAnnotations"]["lab/token"], CANARY_TOKEN);
    let chart_secret =
        run.json("kubectl -n db get secret pg-exporter-prometheus-postgres-exporter -o json");
    assert_eq!(
        chart_secret["data"]["data_source_password"],
        b64(CANARY_APP)
    );
    let secret = run.json("kubectl -n db get secret pg-auth -o json");
    assert_eq!(secret["data"]["postgres-password"], b64(CANARY_ADMIN));
    assert_eq!(secret["data"]["password"], b64(CANARY_APP));
    assert_eq!(
        run.k("kubectl -n db get cronjob pg-backup -o jsonpath='{.spec.schedule}'"),
        "0 2 * * *"
    );
    assert_eq!(
        run.k("kubectl -n cache get svc redis-exporter-prometheus-redis-exporter -o jsonpath='{.spec.ports[0].port}'"),
        "9121"
    );
    let argv = run.argv();
    assert!(
        argv.lines()
            .any(|l| l.starts_with("helm upgrade --install pg-exporter")),
        "the recorders saw labctl's helm calls:\n{argv}"
    );
    assert!(
        argv.lines()
            .any(|l| l.starts_with("kubectl apply --server-side")),
        "the recorders saw labctl's kubectl calls:\n{argv}"
    );
    assert!(
        !argv.contains("repo update"),
        "the pinned chart was in the index: no refresh\n{argv}"
    );

    // Converged: plan 0, and a second apply touches nothing (no new revision).
    let (code, plan) = run.plan(&[]);
    assert_eq!(code, 0, "{plan:#}");
    let o = run.labctl("apply", &[]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );
    assert_eq!(run.releases("db")[0].2, "1");

    // A values change upgrades exactly those releases; the secret-bearing values show no values.
    let ports = [
        "-e",
        "pg_exporter_port=81",
        "-e",
        "redis_exporter_port=9122",
    ];
    let (code, plan) = run.plan(&ports);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis-exporter",
            "cluster/helm_release:db/pg-exporter"
        ],
        "{plan:#}"
    );
    let cs = changes(&plan);
    let pg = cs.iter().find(|c| c["name"] == "db/pg-exporter").unwrap();
    assert_eq!(pg["action"], "update");
    assert!(
        pg["reasons"][0].as_str().unwrap().contains("service.port"),
        "{pg:#}"
    );
    assert!(
        pg["diff"]
            .as_str()
            .unwrap()
            .contains("(secret changed: now hmac-sha256:"),
        "{pg:#}"
    );
    let redis = cs
        .iter()
        .find(|c| c["name"] == "cache/redis-exporter")
        .unwrap();
    let rd = redis["diff"].as_str().unwrap();
    let line = |sign: char, s: &str| {
        rd.lines()
            .any(|l| l.starts_with(sign) && l.trim_end().ends_with(s))
    };
    assert!(
        line('-', "port: 9121") && line('+', "port: 9122"),
        "a non-secret values diff is shown:\n{rd}"
    );
    let plan_file = run._tmp.path().join("plan.json");
    let mut with_out = ports.to_vec();
    let out_arg = plan_file.display().to_string();
    with_out.extend(["--out", &out_arg]);
    let o = run.labctl("plan", &with_out);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_no_canary(
        "the saved plan",
        &std::fs::read_to_string(&plan_file).unwrap(),
    );
    let o = run.labctl("apply", &ports);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), run.logs());
    assert_eq!(run.releases("db")[0].2, "2");
    assert_eq!(
        run.k("kubectl -n db get svc pg-exporter-prometheus-postgres-exporter -o jsonpath='{.spec.ports[0].port}'"),
        "81"
    );
    let (code, plan) = run.plan(&ports);
    assert_eq!(code, 0, "{plan:#}");

    // Drift made by hand: a managed ConfigMap field and an extra key in the Secret; and the
    // exporter's pin moved to a version the repository published after helm last read its index
    // (refreshed once, inside the release's step).
    run.k(
        r#"kubectl -n db patch configmap pg-backup --type merge -p '{"data":{"keep_days":"1"}}'"#,
    );
    run.k(r#"kubectl -n db patch secret pg-auth --type merge -p '{"data":{"stale":"eA=="}}'"#);
    let repos = run._tmp.path().join("repos");
    let exporter = repo_dir(&repos, PROMETHEUS_COMMUNITY);
    next_exporter_patch(
        &exporter.join("prometheus-redis-exporter-6.29.0.tgz"),
        &exporter,
    );
    index(&repos, PROMETHEUS_COMMUNITY);
    let mut extra = ports.to_vec();
    extra.extend(["-e", "redis_exporter_version=6.29.1"]);
    let (code, plan) = run.plan(&extra);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis-exporter",
            "cluster/k8s_manifest:backup.yaml.j2",
            "cluster/k8s_secret:db/pg-auth"
        ],
        "{plan:#}"
    );
    let cs = changes(&plan);
    let m = cs.iter().find(|c| c["kind"] == "k8s_manifest").unwrap();
    assert!(
        m["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap/db/pg-backup differs at data.keep_days"),
        "{m:#}"
    );
    let md = m["diff"].as_str().unwrap();
    assert!(
        md.lines()
            .any(|l| l.starts_with('-') && l.contains("keep_days") && l.contains('1')),
        "{md}"
    );
    assert!(
        md.lines()
            .any(|l| l.starts_with('+') && l.contains("keep_days") && l.contains('7')),
        "{md}"
    );
    let s = cs.iter().find(|c| c["kind"] == "k8s_secret").unwrap();
    assert_eq!(s["reasons"][0], "extra key stale", "{s:#}");
    let o = run.labctl("apply", &extra);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), run.logs());
    assert!(run
        .argv()
        .lines()
        .any(|l| l == "helm repo update prometheus-community"));
    assert_eq!(
        run.releases("cache"),
        vec![(
            "redis-exporter".into(),
            "prometheus-redis-exporter-6.29.1".into(),
            "3".into(),
            "deployed".into()
        )]
    );
    assert_eq!(
        run.k("kubectl -n db get configmap pg-backup -o jsonpath='{.data.keep_days}'"),
        "7"
    );
    assert!(run.json("kubectl -n db get secret pg-auth -o json")["data"]["stale"].is_null());
    let (code, plan) = run.plan(&extra);
    assert_eq!(code, 0, "{plan:#}");

    // The upgrade's way back, in the recap and the run log: the revision helm keeps, then the
    // old pin. Following it returns the release to 6.29.0 and labctl finds nothing to do.
    let how = format!(
        "helm rollback redis-exporter 2 -n cache --kubeconfig {CP_DIR}/kubeconfig \
         (revision 2: prometheus-redis-exporter-6.29.0), then pin version \"6.29.0\" again"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "way back cluster/helm_release:cache/redis-exporter: {how}"
        )),
        "{out}"
    );
    let log =
        std::fs::read_to_string(root().join("tests/fixtures/cluster/.labctl/runs.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["hosts"][0]["way_back"],
        serde_json::json!([{"resource": "cluster/helm_release:cache/redis-exporter", "how": how}]),
        "{last:#}"
    );
    run.k(&format!(
        "helm rollback redis-exporter 2 -n cache --kubeconfig {CP_DIR}/kubeconfig --wait"
    ));
    assert_eq!(
        run.releases("cache")[0].1,
        "prometheus-redis-exporter-6.29.0"
    );
    let (code, plan) = run.plan(&ports);
    assert_eq!(code, 0, "{plan:#}");

    // Removal: `state: absent` takes back a release, a manifest's objects and a Secret.
    let mut rm = extra.to_vec();
    rm.extend(["-e", "cleanup=true"]);
    let (code, plan) = run.plan(&rm);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis-exporter",
            "cluster/k8s_manifest:backup.yaml.j2",
            "cluster/k8s_secret:db/pg-auth"
        ],
        "{plan:#}"
    );
    assert!(
        changes(&plan).iter().all(|c| c["action"] == "remove"),
        "{plan:#}"
    );
    // Check mode: planning the removal removed nothing.
    assert_eq!(run.releases("cache").len(), 1);
    assert!(run.exists("-n db secret pg-auth"));
    let o = run.labctl("apply", &rm);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", show(&o), run.logs());
    assert!(run.releases("cache").is_empty());
    for what in [
        "-n db secret pg-auth",
        "-n db configmap pg-backup",
        "-n db cronjob pg-backup",
    ] {
        assert!(!run.exists(what), "still there: {what}");
    }
    assert_eq!(run.releases("db")[0].3, "deployed");
    let (code, plan) = run.plan(&rm);
    assert_eq!(code, 0, "{plan:#}");
    let o = run.labctl("apply", &rm);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );

    // Secrets never in any output, any argv (the recorders saw every helm/kubectl argv), the
    // journal, or a temp dir.
    let h = run.host();
    let state = |cmd: &str| run.tb.sh_ok(&h, cmd);
    assert_no_canary("labctl output", &run.seen.borrow());
    assert_no_canary("argv of helm/kubectl", &run.argv());
    assert_no_canary(
        "the journal",
        &state("journalctl --no-pager -q 2>/dev/null || true"),
    );
    assert_no_canary(
        "temp dirs",
        &state("grep -rl canary /tmp /var/tmp 2>/dev/null || true"),
    );
    let site = root()
        .join("tests/fixtures/cluster/site.yml")
        .display()
        .to_string();
    let o = labctl(&[
        "facts",
        &h,
        &site,
        "-i",
        &run.tb.inventory.display().to_string(),
        "--vault-key",
        &run.key.display().to_string(),
    ]);
    assert_no_canary("labctl facts", &text(&o));
}

// ---- (b) scripts against real servers ----

fn put(tb: &Testbed, host: &str, path: &str, script: &Path) {
    let body = std::fs::read_to_string(script).unwrap();
    assert!(!body.contains("LABCTL_EOF"));
    tb.sh_ok(host, &format!("mkdir -p \"$(dirname {path})\" && cat > {path} <<'LABCTL_EOF'\n{body}LABCTL_EOF\nchmod 755 {path}"));
}

fn controller_has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn controller_apt(pkgs: &[&str]) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {} >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {})", pkgs.join(" "), pkgs.join(" ")))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cannot install {pkgs:?} on the controller:\n{}",
        show(&o)
    );
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn backup_drill_and_smoke_scripts_work_against_real_servers() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2eclb", 1);
    let h = tb.hosts[0].name.clone();
    let addr = tb.hosts[0].address.clone();
    let sh = |s: &str| tb.sh_ok(&h, s);
    sh("export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q postgresql sqlite3 redis-server >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q postgresql sqlite3 redis-server >/dev/null)");
    for s in [
        "pg-backup.sh",
        "pg-restore-drill.sh",
        "k3s-datastore-backup.sh",
    ] {
        put(
            &tb,
            &h,
            &format!("/usr/local/bin/{s}"),
            &root().join("scripts").join(s),
        );
    }

    // PostgreSQL: a database with a few tables and rows.
    sh("pg_isready -t 30");
    sh("runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -q -c 'create database app' && \
        runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -q -d app -c \"create table users (id serial primary key, name text); \
        insert into users (name) select 'u' || g from generate_series(1, 250) g; \
        create schema shop; create table shop.\\\"Orders\\\" (id int, total numeric); insert into shop.\\\"Orders\\\" select g, g * 1.5 from generate_series(1, 40) g; \
        create table empty_one (x int);\"");
    let pg = |env: &str, script: &str| {
        tb.sh(&h, &format!("mkdir -p /var/backups/pg && chown postgres /var/backups/pg && runuser -u postgres -- env BACKUP_DIR=/var/backups/pg {env} {script}"))
    };

    // Backup + rotation: a 10-day-old dump goes, a 2-day-old one stays.
    sh("mkdir -p /var/backups/pg && cd /var/backups/pg && echo old | gzip > app-20000101T000000Z.sql.gz && touch -d '10 days ago' app-20000101T000000Z.sql.gz \
        && echo recent | gzip > app-20000102T000000Z.sql.gz && touch -d '2 days ago' app-20000102T000000Z.sql.gz && chown -R postgres /var/backups/pg");
    let o = pg("BACKUP_KEEP_DAYS=7", "pg-backup.sh");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o).contains("rotated out /var/backups/pg/app-20000101T000000Z.sql.gz"),
        "{}",
        show(&o)
    );
    let files = sh("ls /var/backups/pg");
    assert!(
        !files.contains("app-20000101") && files.contains("app-20000102"),
        "{files}"
    );
    assert_eq!(
        files
            .lines()
            .filter(|l| l.starts_with("app-2") && !l.starts_with("app-2000"))
            .count(),
        1,
        "{files}"
    );
    assert_eq!(
        sh("stat -c %a /var/backups/pg/app-20[!0]*.sql.gz").trim(),
        "600",
        "dumps are owner-only"
    );
    assert!(sh("zcat /var/backups/pg/app-20[!0]*.sql.gz").contains("CREATE TABLE shop.\"Orders\""));

    // The drill restores the newest dump and compares every table's row count.
    let o = pg("", "pg-restore-drill.sh");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o).contains("app ok:") && text(&o).contains("3 tables, row counts match"),
        "{}",
        show(&o)
    );
    assert!(
        !sh("runuser -u postgres -- psql -X -At -c 'select datname from pg_database'")
            .contains("drill_"),
        "scratch database dropped"
    );

    // A mismatch with the source fails (rows written after the dump are caught).
    sh("runuser -u postgres -- psql -X -q -d app -c \"insert into users (name) values ('late')\"");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success()
            && text(&o).contains("table public.users has 251 rows in the source but 250"),
        "{}",
        show(&o)
    );

    // A corrupt (truncated) newest dump fails loudly; so does a dump that is valid gzip but bad SQL.
    sh("cd /var/backups/pg && f=$(ls app-20[!0]*.sql.gz) && head -c 300 $f > app-29990101T000000Z.sql.gz && chown postgres app-29990101T000000Z.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("is corrupt"),
        "{}",
        show(&o)
    );
    sh("cd /var/backups/pg && echo 'this is not SQL;' | gzip > app-29990101T000000Z.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("restoring"),
        "{}",
        show(&o)
    );
    // A stale newest dump (the backup job stopped) fails too.
    sh("cd /var/backups/pg && rm app-2999* && touch -d '3 days ago' app-20[!0]*.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("older than 26 hours"),
        "{}",
        show(&o)
    );

    // k3s datastore: a real SQLite file in WAL mode, backed up with its token, rotated.
    sh("mkdir -p /var/lib/rancher/k3s/server/db && cd /var/lib/rancher/k3s/server && echo 'K10canary::server:token' > token && chmod 600 token && \
        sqlite3 db/state.db 'pragma journal_mode=wal; create table kine (id integer primary key, name text, value blob); \
        with recursive c(x) as (select 1 union all select x + 1 from c where x < 500) insert into kine (name, value) select \"/registry/k\" || x, randomblob(64) from c;'");
    sh("mkdir -p /var/backups/k3s && cd /var/backups/k3s && : > k3s-datastore-20000101T000000Z.tar.gz && touch -d '9 days ago' k3s-datastore-20000101T000000Z.tar.gz");
    let o = tb.sh(&h, "BACKUP_KEEP_DAYS=7 k3s-datastore-backup.sh");
    assert!(o.status.success(), "{}", show(&o));
    let files = sh("ls /var/backups/k3s");
    assert!(
        !files.contains("20000101") && files.lines().count() == 1,
        "{files}"
    );
    assert_eq!(
        sh("stat -c %a /var/backups/k3s/k3s-datastore-*.tar.gz").trim(),
        "600"
    );
    let restored = sh("d=$(mktemp -d) && tar -C $d -xzf /var/backups/k3s/k3s-datastore-*.tar.gz && cat $d/token && sqlite3 $d/db/state.db 'pragma integrity_check; select count(*) from kine;' && ls $d/db");
    assert_eq!(
        restored, "K10canary::server:token\nok\n500\nstate.db\n",
        "token + consistent db, no stale -wal/-shm"
    );
    sh("mv /var/lib/rancher/k3s/server/token /root/token.aside");
    let o = tb.sh(&h, "k3s-datastore-backup.sh");
    assert!(
        !o.status.success() && text(&o).contains("without its token"),
        "{}",
        show(&o)
    );

    // Smoke tests from the controller against real servers on the host, password from a 0600 file.
    for (tool, pkg) in [("psql", "postgresql-client"), ("redis-cli", "redis-tools")] {
        if !controller_has(tool) {
            controller_apt(&[pkg]);
        }
    }
    let pw = "canary-smoke-pw-31";
    sh(&format!(
        "f=$(ls /etc/postgresql/*/main/postgresql.conf) && echo \"listen_addresses = '*'\" >> $f && \
         echo 'host all all 0.0.0.0/0 scram-sha-256' >> $(dirname $f)/pg_hba.conf && \
         echo \"alter user postgres password '{pw}'\" | runuser -u postgres -- psql -X -q && systemctl restart postgresql && pg_isready -t 30 -h {addr}"
    ));
    sh(&format!(
        "sed -i 's/^bind .*/bind 0.0.0.0/; s/^protected-mode .*/protected-mode no/' /etc/redis/redis.conf && echo 'requirepass {pw}' >> /etc/redis/redis.conf && systemctl restart redis-server && sleep 1"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bad = tmp.path().join("bad");
    std::fs::write(&bad, "wrong").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let script = |name: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(root().join("scripts").join(name));
        c.env_remove("PGPASSWORD").env_remove("REDISCLI_AUTH");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let pwf = pwfile.display().to_string();
    let badf = bad.display().to_string();
    let o = script(
        "test-postgres.sh",
        &[
            ("PGHOST", &addr),
            ("PGPORT", "5432"),
            ("PG_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("test-postgres: ok"),
        "{}",
        show(&o)
    );
    assert_eq!(
        sh("runuser -u postgres -- psql -X -At -c 'select count(*) from labctl_smoke'").trim(),
        "0",
        "the test row was cleaned up"
    );
    let o = script(
        "test-postgres.sh",
        &[
            ("PGHOST", &addr),
            ("PGPORT", "5432"),
            ("PG_PASSWORD_FILE", &badf),
        ],
    );
    assert!(!o.status.success(), "a wrong password fails:\n{}", show(&o));
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("test-redis: ok"),
        "{}",
        show(&o)
    );
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &badf),
        ],
    );
    assert!(!o.status.success(), "a wrong password fails:\n{}", show(&o));
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("must be mode 0600"),
        "{}",
        show(&o)
    );
}
