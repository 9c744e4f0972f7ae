//! What the tests against a real control plane share: files put into a test host, the kept
//! charts served as their own repositories, and the pods' stand-in (tests/standins/pods.py).
//! Test configuration only, the same every run; the roles and their values do not change.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{show, Testbed};
use crate::controlplane::{helm_bin, kubectl_bin};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pods' stand-in, stopped by PID when the test ends.
pub(crate) struct Pods(Child);

impl Drop for Pods {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host's file system, seen from the controller (/proc/PID/root of its current boot).
pub(crate) fn root(tb: &Testbed, host: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root", tb.init_pid_now(host)))
}

/// Copies `src` to `root/rel` (a host's file system through /proc/PID/root), executable unless
/// YAML. A hard link when both are on one file system: the control plane binary is 180 MB.
pub(crate) fn put(root: &Path, rel: &str, src: &Path) {
    // Never outside the host: an absolute `rel` would replace `root` in join.
    let dst = root.join(rel.trim_start_matches('/'));
    // The file itself, not a symlink to a path the host may not have (openssl.cnf is one).
    let src = &std::fs::canonicalize(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&dst);
    if std::fs::hard_link(src, &dst).is_err() {
        std::fs::copy(src, &dst)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", src.display(), dst.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = if rel.ends_with(".yaml") { 0o644 } else { 0o755 };
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The next patch of prometheus-redis-exporter, to move a pin: no newer upstream chart is kept
/// here, so the kept 6.29.0 is repackaged by the real helm as 6.29.1 (the same templates, a new
/// version) into `dest`.
pub(crate) fn next_exporter_patch(kept: &Path, dest: &Path) {
    let unpacked = dest.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(kept)
            .arg("-C")
            .arg(&unpacked),
    );
    run_ok(
        Command::new(helm_bin())
            .args(["package", "--version", "6.29.1", "-d"])
            .arg(dest)
            .arg(unpacked.join("prometheus-redis-exporter")),
    );
    std::fs::remove_dir_all(&unpacked).unwrap();
}

/// The directory of one repository URL under `dir`.
pub(crate) fn repo_dir(dir: &Path, url: &str) -> PathBuf {
    dir.join(url.trim_end_matches('/').trim_start_matches("https://"))
}

/// (Re)writes a repository's index.yaml with the real helm, as the repository's owner does.
pub(crate) fn index(dir: &Path, url: &str) {
    run_ok(
        Command::new(helm_bin())
            .args(["repo", "index"])
            .arg(repo_dir(dir, url))
            .args(["--url", url.trim_end_matches('/')]),
    );
}

/// Every kept chart under its own repository (charts.lock.yaml's `helm_repository`), indexed
/// by the real helm: DIR/<host>/<path>/. With `next_patch`, prometheus-redis-exporter 6.29.1
/// too (see next_exporter_patch). Returns the repositories' host names.
pub(crate) fn chart_repos(dir: &Path, next_patch: bool) -> Vec<String> {
    let mut urls = std::collections::BTreeSet::new();
    for e in crate::charts_lock::lock().charts {
        let (Some(f), Some(url)) = (&e.file, &e.helm_repository) else {
            continue;
        };
        let d = repo_dir(dir, url);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(repo().join("charts").join(f), d.join(f)).unwrap();
        urls.insert(url.trim_end_matches('/').to_string());
    }
    if next_patch {
        let exporter = repo_dir(dir, PROMETHEUS_COMMUNITY);
        next_exporter_patch(
            &exporter.join("prometheus-redis-exporter-6.29.0.tgz"),
            &exporter,
        );
    }
    for url in &urls {
        index(dir, url);
    }
    let mut hosts: Vec<String> = urls
        .iter()
        .map(|u| {
            u.trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    hosts.dedup();
    assert!(hosts.len() >= 4, "{hosts:?}");
    hosts
}

pub(crate) const PROMETHEUS_COMMUNITY: &str = "https://prometheus-community.github.io/helm-charts";

/// Test configuration on `host`, the same every run: the chart repositories' host names point at
/// a local HTTPS server (pods.py) holding the kept charts (DIR/repos, made by chart_repos), whose
/// CA the host trusts; the Service range is routed to the host (kube-proxy's part); pods.py
/// answers admission webhooks and provisions local-path volumes once `kubeconfig` (a path in the
/// host) exists. Its log is DIR/pods.log.
pub(crate) fn serve(
    tb: &Testbed,
    host: &str,
    dir: &Path,
    kubeconfig: &str,
    next_patch: bool,
) -> Pods {
    let ca = dir.join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=labctl test chart repositories and webhooks",
            ])
            .arg("-keyout")
            .arg(ca.join("ca.key"))
            .arg("-out")
            .arg(ca.join("ca.crt")),
    );
    let hosts = chart_repos(&dir.join("repos"), next_patch);
    tb.sh_ok(
        host,
        &format!(
            "echo '127.0.0.1 {}' >> /etc/hosts && ip route add local 10.43.0.0/16 dev lo",
            hosts.join(" ")
        ),
    );
    let r = root(tb, host);
    // Go (helm) reads every file in /etc/ssl/certs, with or without the ca-certificates package.
    std::fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
    std::fs::copy(
        ca.join("ca.crt"),
        r.join("etc/ssl/certs/labctl-test-repos.pem"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("pods.log")).unwrap();
    let pid = tb.host(host).init_pid.to_string();
    Pods(
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "--", "python3"])
            .arg(repo().join("tests/standins/pods.py"))
            .arg("--kubeconfig")
            .arg(r.join(kubeconfig.trim_start_matches('/')))
            .arg("--kubectl")
            .arg(kubectl_bin())
            .arg("--ca-dir")
            .arg(&ca)
            .arg("--repos")
            .arg(dir.join("repos"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The cluster kit in `kit` (a path in the host): the real kubectl and scripts/controlplane.sh
/// everywhere; on a `server`, also the control plane binary built from the Kubernetes Go modules
/// and openssl for its certificates (a minimal host has none).
pub(crate) fn put_kit(root: &Path, kit: &str, server: bool) {
    let script = crate::controlplane::script();
    put(root, &format!("{kit}/kubectl"), &kubectl_bin());
    put(root, &format!("{kit}/controlplane.sh"), &script);
    if server {
        let cp_bin = PathBuf::from(run_ok(Command::new(&script).arg("bin")).trim());
        put(root, &format!("{kit}/controlplane"), &cp_bin);
        put(
            root,
            &format!("{kit}/bin/openssl"),
            Path::new("/usr/bin/openssl"),
        );
        // Its configuration, for a host without the openssl package (the k3s stand-in and
        // e2e_cluster point OPENSSL_CONF at it).
        put(
            root,
            &format!("{kit}/openssl.cnf"),
            Path::new("/usr/lib/ssl/openssl.cnf"),
        );
    }
}

/// Where the k3s stand-in looks for the cluster kit on a host (its kit mode).
pub(crate) const K3S_KIT: &str = "usr/local/lib/labctl-standin/cluster";

/// k3s's units as the k3s role writes them (Type=notify, restarted), for the stand-in.
const K3S_UNIT: &str = "[Unit]
Description=Lightweight Kubernetes (stand-in, ROLE)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
KillMode=process
User=root
TimeoutStartSec=300
Restart=always
RestartSec=3s
ExecStart=/usr/local/bin/k3s ROLE

[Install]
WantedBy=multi-user.target
";

fn put_text(root: &Path, rel: &str, body: &str, mode: u32) {
    let dst = root.join(rel);
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::write(&dst, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Polls `f` once a second until it holds, or panics after `secs`.
pub(crate) fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// Whether `node` is Ready, asked of the API server on `server` (out of band).
pub(crate) fn ready(tb: &Testbed, server: &str, node: &str) -> bool {
    tb.sh(
        server,
        &format!("k3s kubectl get node {node} -o 'jsonpath={{.status.conditions[?(@.type==\"Ready\")].status}}'"),
    )
    .stdout
        == b"True"
}

/// The k3s units' journals and the control plane's last log lines on every host.
pub(crate) fn k3s_logs(tb: &Testbed) -> String {
    tb.hosts
        .iter()
        .map(|h| {
            show(&tb.sh(
                &h.name,
                "journalctl -u k3s -u k3s-agent --no-pager | tail -25; \
                 cd /var/lib/rancher/k3s/server/cp 2>/dev/null && tail -n 5 up.log kwok.log kube-apiserver.log",
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A k3s cluster of stand-ins in kit mode, as the k3s role would leave it without the role:
/// `k3s server` (the real control plane) on `server`, reached at `server_ip`, and `k3s agent`
/// on each of `agents`, as systemd units that survive reboots, joined with `token`. Returns when
/// every Node is Ready (or panics with the journals).
pub(crate) fn k3s_cluster(
    tb: &Testbed,
    server: &str,
    server_ip: &str,
    agents: &[&str],
    token: &str,
) {
    for (h, role) in std::iter::once((server, "server")).chain(agents.iter().map(|a| (*a, "agent")))
    {
        let r = root(tb, h);
        put(&r, "usr/local/bin/k3s", &repo().join("tests/standins/k3s"));
        put_kit(&r, K3S_KIT, role == "server");
        let unit = if role == "server" { "k3s" } else { "k3s-agent" };
        put_text(
            &r,
            &format!("etc/systemd/system/{unit}.service"),
            &K3S_UNIT.replace("ROLE", role),
            0o644,
        );
        let config = if role == "server" {
            format!("token: {token}\nwrite-kubeconfig-mode: \"0600\"\nnode-ip: {server_ip}\n")
        } else {
            format!("server: https://{server_ip}:6443\ntoken: {token}\n")
        };
        put_text(&r, "etc/rancher/k3s/config.yaml", &config, 0o600);
    }
    let r = root(tb, server);
    put(
        &r,
        &format!("{K3S_KIT}/kwok-exec.yaml"),
        &repo().join("tests/standins/kwok-exec.yaml"),
    );
    // k3s's own CRD (its helm-controller's), which the stand-in applies at every start.
    put(
        &r,
        &format!("{K3S_KIT}/crds/helm-controller-crds-v0.17.7.yaml"),
        &repo().join("charts/crds/helm-controller-crds-v0.17.7.yaml"),
    );
    for (h, unit) in
        std::iter::once((server, "k3s")).chain(agents.iter().map(|a| (*a, "k3s-agent")))
    {
        let o = tb.sh(
            h,
            &format!("systemctl daemon-reload && systemctl enable --now {unit}.service"),
        );
        assert!(
            o.status.success(),
            "{unit} on {h}: {}\n{}",
            show(&o),
            k3s_logs(tb)
        );
    }
    let up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("every Node Ready", 180, || {
            std::iter::once(server)
                .chain(agents.iter().copied())
                .all(|n| ready(tb, server, n))
        })
    }));
    assert!(up.is_ok(), "every Node Ready: timed out\n{}", k3s_logs(tb));
}
