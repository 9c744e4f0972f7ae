//! The render gate with the real programs: the real helm renders every release of the repo's
//! own site from the kept charts (charts/), in every environment, and every object is validated
//! strictly (built-in kinds against the pinned minor's schemas, custom resources against the
//! CRDs the charts install). And it refuses what a real install would refuse.
//!
//! Needs what scripts/setup.sh installs: $LABCTL_HELM (helm from npm) and $LABCTL_K8S_SCHEMAS
//! (kubernetes-validate's schemas). Without them the tests say SKIPPED, and fail under CI=true.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{show, write};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The gate's programs, or None after saying why (a failure under CI: never a silent pass).
fn kit() -> bool {
    let have = |v: &str| std::env::var_os(v).is_some_and(|p| Path::new(&p).exists());
    if have("LABCTL_HELM") && have("LABCTL_K8S_SCHEMAS") {
        return true;
    }
    let why =
        "needs $LABCTL_HELM and $LABCTL_K8S_SCHEMAS (scripts/setup.sh installs and exports them)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "render gate {why}"
    );
    crate::common::skip(why);
    false
}

fn labctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

const KEY: &str = "inventories/lab/EXAMPLE-ONLY.agekey.txt";

/// `labctl --vault-key KEY CMD -i inventories/lab/hosts.yml EXTRA…` over the repo's own site.
fn on_repo(cmd: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--vault-key", KEY, cmd, "-i", "inventories/lab/hosts.yml"];
    args.extend_from_slice(extra);
    labctl(&repo(), &args)
}

fn check_repo(extra: &[&str]) -> Output {
    on_repo("check", extra)
}

/// The repo's own site, both environments: every release rendered by the real helm, every
/// object accepted.
#[test]
fn the_shipped_site_renders_and_validates_in_every_environment() {
    if !kit() {
        return;
    }
    for env in ["prod", "staging"] {
        let o = check_repo(&["-e", &format!("target_environment={env}")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{env}: {}", show(&o));
        let line = err
            .lines()
            .find(|l| l.contains("Rendered"))
            .unwrap_or_else(|| panic!("{env}: no Rendered line: {err}"));
        let n: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        // kube-prometheus-stack, cert-manager, argo-cd, cloudnative-pg, two exporters.
        assert!(n >= 6, "{env}: {line}");
        assert!(
            line.contains("built-in kinds and custom resources"),
            "{line}"
        );
    }
}

/// `labctl render --out`: values, rendered charts and Secrets as files, with no secret in any.
#[test]
fn render_writes_every_release_and_manifest_without_secrets() {
    if !kit() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = on_repo(
        "render",
        &[
            "--host",
            "lab-server-1",
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let dir = out.path().join("lab-server-1");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    let has = |suffix: &str, part: &str| {
        files
            .iter()
            .any(|f| f.ends_with(suffix) && f.contains(part))
    };
    assert!(has(".values.yaml", "kube-prometheus-stack"), "{files:?}");
    assert!(has(".rendered.yaml", "kube-prometheus-stack"), "{files:?}");
    assert!(has(".yaml", "k8s_secret"), "{files:?}");
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    assert!(all.contains("<secret>"), "secrets show as <secret>");
    // Every value in the example vault: none may appear in what render writes.
    let vault = Command::new("age")
        .args([
            "-d",
            "-i",
            KEY,
            "inventories/lab/group_vars/all/vault.yml.age",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(vault.status.success(), "{}", show(&vault));
    let vars: serde_json::Value = serde_saphyr::from_slice(&vault.stdout).unwrap();
    let mut n = 0;
    for v in vars.as_object().unwrap().values() {
        if let Some(s) = v.as_str().filter(|s| s.len() >= 6) {
            n += 1;
            assert!(!all.contains(s), "a vault value reached render's files");
        }
    }
    assert!(n > 0, "the example vault holds values to look for");
    // The stream form is the same objects, for piping into another validator.
    let o = on_repo("render", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stream = String::from_utf8_lossy(&o.stdout);
    assert!(stream.contains("kind: PrometheusRule"), "{stream:.300}");
}

/// A pin moved past what is kept is refused: the gate never passes a chart it could not render.
#[test]
fn a_chart_version_that_is_not_kept_is_refused() {
    if !kit() {
        return;
    }
    let o = check_repo(&["-e", "monitoring_chart_version=88.5.4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        err.contains("monitoring/helm_release:kube-prometheus-stack")
            && err.contains("no kept chart")
            && err.contains("kube-prometheus-stack-88.5.4.tgz"),
        "{err}"
    );
}

/// What the monitoring values held before (an SMTP password in grafana.ini) is refused by the
/// real chart at render time, and check says where.
#[test]
fn a_plain_grafana_smtp_password_is_refused_as_the_real_chart_refuses_it() {
    if !kit() {
        return;
    }
    let o = check_repo(&[
        "-e",
        r#"monitoring_values={"grafana": {"grafana.ini": {"smtp": {"password": "plain"}}}}"#,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        err.contains("monitoring/helm_release:kube-prometheus-stack")
            && err.contains("Sensitive key 'smtp.password' should not be defined explicitly"),
        "{err}"
    );
}

/// A small project on the kept CloudNativePG chart: what only strict validation and the rules
/// across objects see, each named by role and resource.
#[test]
fn the_gate_refuses_unknown_fields_missing_keys_and_order_mistakes() {
    if !kit() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("charts"), d.path().join("charts")).unwrap();
    write(
        d.path(),
        "hosts.yml",
        "all:\n  hosts:\n    s1: {ansible_host: 192.0.2.1}\n  vars:\n    k3s_version: v1.36.4+k3s1\n",
    );
    write(
        d.path(),
        "site.yml",
        "- name: cluster\n  hosts: s1\n  roles: [app]\n",
    );
    write(
        d.path(),
        "roles/app/role.yml",
        r#"resources:
  - name: operator
    helm_release: {name: cnpg, namespace: cnpg-system, chart: cnpg/cloudnative-pg, version: "0.29.0"}
  - name: app namespace
    k8s_manifest:
      content: |
        apiVersion: v1
        kind: Namespace
        metadata: {name: app}
  - name: app secret
    k8s_secret: {name: app-auth, namespace: app, data: {user: me}}
  - name: database
    k8s_manifest:
      content: |
        apiVersion: postgresql.cnpg.io/v1
        kind: Cluster
        metadata: {name: pg, namespace: app}
        spec:
          instances: 1
          storage: {size: 1Gi}
          walStorag: {size: 1Gi}
  - name: web
    k8s_manifest:
      content: |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: app}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: nginx:1.29
                  env:
                    - name: PASSWORD
                      valueFrom: {secretKeyRef: {name: app-auth, key: password}}
  - name: early
    k8s_manifest:
      content: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c, namespace: later}
        data: {a: b}
"#,
    );
    let o = labctl(d.path(), &["check", "-i", "hosts.yml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        err.contains("app/k8s_manifest:database")
            && err.contains("Cluster app/pg")
            && err.contains("spec.walStorag: unknown field"),
        "{err}"
    );
    assert!(
        err.contains("app/k8s_manifest:web")
            && err.contains("app-auth")
            && err.contains("password"),
        "{err}"
    );
    assert!(
        err.contains("app/k8s_manifest:early") && err.contains("later"),
        "{err}"
    );
    // Nothing else: the chart itself and the valid objects pass.
    assert_eq!(err.matches("error:").count(), 3, "{err}");
}

/// `labctl seal` output through the gate: the sealed-secrets release rendered from the kept
/// chart installs the SealedSecret CRD, and the manifest `seal` wrote validates against it; a
/// field the CRD does not have is refused.
#[test]
fn a_sealed_secret_from_labctl_seal_validates_against_the_kept_chart_crd() {
    if !kit() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("charts"), d.path().join("charts")).unwrap();
    let fixtures = repo().join("tests/fixtures/sealed-secrets");
    // An age vault holding the value, made with labctl itself.
    let key = d.path().join("age.key");
    let o = labctl(
        d.path(),
        &["vault", "keygen", "--out", key.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    write(
        d.path(),
        ".age-recipients",
        &String::from_utf8_lossy(&o.stdout),
    );
    write(
        d.path(),
        "vault.yml",
        "apps:\n  web:\n    db_password: hunter2-long\n",
    );
    let o = labctl(d.path(), &["vault", "encrypt", "--in-place", "vault.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = labctl(
        d.path(),
        &[
            "--vault-key",
            key.to_str().unwrap(),
            "seal",
            "--vault",
            "vault.yml.age",
            "--cert",
            fixtures.join("cert.pem").to_str().unwrap(),
            "--name",
            "web-db",
            "-n",
            "apps",
            "password=apps.web.db_password",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let sealed = String::from_utf8(o.stdout).unwrap();
    assert!(sealed.contains("kind: SealedSecret") && !sealed.contains("hunter2"));
    write(
        d.path(),
        "hosts.yml",
        "all:\n  hosts:\n    s1: {ansible_host: 192.0.2.1}\n  vars:\n    k3s_version: v1.36.4+k3s1\n",
    );
    write(
        d.path(),
        "site.yml",
        "- name: cluster\n  hosts: s1\n  roles: [app]\n",
    );
    let indented: String = sealed.lines().map(|l| format!("        {l}\n")).collect();
    let role = |manifest: &str| {
        format!(
            r#"resources:
  - name: controller
    helm_release: {{name: sealed-secrets, namespace: kube-system, chart: sealed-secrets/sealed-secrets, version: "2.18.5"}}
  - name: app namespace
    k8s_manifest:
      content: |
        apiVersion: v1
        kind: Namespace
        metadata: {{name: apps}}
  - name: sealed
    k8s_manifest:
      content: |
{manifest}"#
        )
    };
    write(d.path(), "roles/app/role.yml", &role(&indented));
    let o = labctl(d.path(), &["check", "-i", "hosts.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // The same manifest with a field the CRD does not define is refused, naming the resource.
    let broken = indented.replace("  encryptedData:", "  encryptedDat:");
    write(d.path(), "roles/app/role.yml", &role(&broken));
    let o = labctl(d.path(), &["check", "-i", "hosts.yml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        err.contains("app/k8s_manifest:sealed") && err.contains("encryptedDat"),
        "{err}"
    );
}

/// A private apps repo: its credentials sealed from a vault with `labctl seal --label …`, named
/// by `argocd_repo_sealed_secret`, reach the cluster as a SealedSecret the kept CRD accepts, in
/// Argo CD's namespace, labelled for Argo CD, before the root application; no value in clear.
#[test]
fn private_apps_repo_credentials_go_sealed_through_the_argocd_role() {
    if !kit() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "repo.yml",
        "apps_repo_url: git@git.example.net:lab/apps.git\napps_repo_key: canary-deploy-key-5a1e\n",
    );
    // Encrypted for the example repo's recipient, as `labctl vault encrypt` in the repo would.
    let o = Command::new("age")
        .args(["-a", "-R", ".age-recipients", "-o"])
        .arg(d.path().join("repo.yml.age"))
        .arg(d.path().join("repo.yml"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let sealed = d.path().join("apps-repo.yaml");
    let o = labctl(
        &repo(),
        &[
            "--vault-key",
            KEY,
            "seal",
            "--vault",
            d.path().join("repo.yml.age").to_str().unwrap(),
            "--cert",
            "tests/fixtures/sealed-secrets/cert.pem",
            "-n",
            "argocd",
            "--name",
            "apps-repo",
            "--label",
            "argocd.argoproj.io/secret-type=repository",
            "url=apps_repo_url",
            "sshPrivateKey=apps_repo_key",
            "--out",
            sealed.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let var = format!("argocd_repo_sealed_secret={}", sealed.display());
    let o = check_repo(&["-e", &var]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = on_repo("render", &["--host", "lab-server-1", "-e", &var]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stream = String::from_utf8_lossy(&o.stdout);
    let at = stream
        .find("argocd/k8s_manifest:apps repository credentials")
        .unwrap_or_else(|| panic!("no credentials resource in:\n{stream:.400}"));
    let root_app = stream.find("argocd/k8s_manifest:root application").unwrap();
    assert!(
        at < root_app,
        "credentials come before the root application"
    );
    let doc = &stream[at..root_app];
    assert!(
        doc.contains("kind: SealedSecret")
            && doc.contains("namespace: argocd")
            && doc.contains("argocd.argoproj.io/secret-type: repository"),
        "{doc}"
    );
    assert!(!stream.contains("canary-deploy-key-5a1e") && !stream.contains("git.example.net"));
}
