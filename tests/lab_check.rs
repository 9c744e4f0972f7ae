//! The shipped site (site.yml + roles/ + values/) compiled for the example inventory
//! (inventories/lab, opened with its EXAMPLE-ONLY key), and checked for the defects that break a
//! first real install: images, namespaces, the firewall k3s needs, NodePorts bound to the VPN,
//! monitoring for k3s, password rotation, and where the kubeconfig lands. Offline: no host.

use std::path::Path;

use serde_json::Value;

use lab::inventory::{Inventory, VarLayer};
use lab::site::select::{self, Compiled, Item, Selection};
use lab::site::sources::{Gathered, Sources};
use lab::site::Site;
use lab::template::Engine;
use labctl::internals as lab;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compile `site.yml` for the example inventory, with `extra` vars on top, on x86_64 Debian 12
/// hosts.
pub fn compile_lab(extra: &[(&str, Value)]) -> Compiled {
    try_compile_lab(Some("x86_64"), extra).unwrap_or_else(|d| panic!("compile: {d}"))
}

/// The same on hosts of this `uname -m` (None: facts not gathered, as `check` sees them).
pub fn try_compile_lab(
    arch: Option<&str>,
    extra: &[(&str, Value)],
) -> Result<Compiled, lab::error::Diags> {
    let key = root().join("inventories/lab/EXAMPLE-ONLY.agekey.txt");
    let keys = lab::vault::Keyring::discover(Some(&key)).expect("the example key loads");
    let decrypt = |p: &Path| {
        keys.decrypt_file(p)
            .map_err(|e| lab::inventory::VaultFail::Error(e.to_string()))
    };
    let inv = Inventory::load(&root().join("inventories/lab/hosts.yml"), &decrypt)
        .unwrap_or_else(|d| panic!("example inventory: {d}"));
    let mut gathered = Gathered::default();
    if let Some(a) = arch {
        let facts = lab::facts::host::parse(&format!(
            "id=debian\nversion_id=12\ncodename=bookworm\narch={a}\nnodename=lab\n"
        ))
        .expect("facts parse");
        for h in inv.hosts.keys() {
            gathered.add(h, facts.clone());
        }
    }
    let site = Site::load(&root().join("site.yml")).unwrap_or_else(|d| panic!("site.yml: {d}"));
    let mut layer = VarLayer::default();
    for (k, v) in extra {
        layer.values.insert(k.to_string(), v.clone());
    }
    let sel = Selection {
        tags: vec![],
        skip_tags: vec![],
        limit: None,
    };
    let engine = Engine::new(&site.root);
    let src = Sources::new(site, inv, layer, engine, sel);
    assert!(src.facts_used, "the shipped roles name facts");
    select::compile(&src, &gathered)
}

/// The message of a compile that must be refused; `what` says what should have refused it.
fn refusal(r: Result<Compiled, lab::error::Diags>, what: &str) -> String {
    match r {
        Err(d) => d.to_string(),
        Ok(_) => panic!("{what}"),
    }
}

pub fn items<'a>(c: &'a Compiled, host: &str) -> Vec<&'a Item> {
    c.hosts
        .iter()
        .find(|h| h.host == host)
        .unwrap_or_else(|| panic!("no host {host}"))
        .items()
        .collect()
}

/// Kinds the API server knows without a CRD (the ones the shipped roles use, and their kin).
const BUILTIN_KINDS: &[&str] = &[
    "Namespace",
    "Secret",
    "ConfigMap",
    "Service",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "CronJob",
    "Job",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "Ingress",
    "NetworkPolicy",
];

/// Kinds k3s itself registers at start: its helm-controller's and its bundled Traefik's (the
/// ingress role needs Traefik: `k3s_disable` must not list it).
const K3S_KINDS: &[&str] = &[
    "HelmChart",
    "HelmChartConfig",
    "Addon",
    "Middleware",
    "MiddlewareTCP",
    "IngressRoute",
    "IngressRouteTCP",
    "IngressRouteUDP",
    "ServersTransport",
    "ServersTransportTCP",
    "TLSOption",
    "TLSStore",
    "TraefikService",
];

/// The CRDs each chart the roles install ships (from the charts' `crds/` or templates).
fn crds_of(chart: &str) -> &'static [&'static str] {
    match chart {
        "cnpg/cloudnative-pg" => &["Cluster", "Backup", "ScheduledBackup", "Pooler", "Database"],
        "argo/argo-cd" => &["Application", "AppProject", "ApplicationSet"],
        "jetstack/cert-manager" => &[
            "Certificate",
            "CertificateRequest",
            "Issuer",
            "ClusterIssuer",
            "Challenge",
            "Order",
        ],
        "prometheus-community/kube-prometheus-stack" => &[
            "PrometheusRule",
            "ServiceMonitor",
            "PodMonitor",
            "Prometheus",
            "Alertmanager",
            "AlertmanagerConfig",
            "Probe",
            "ScrapeConfig",
            "ThanosRuler",
        ],
        _ => &[],
    }
}

/// (kind, namespace) of each object a `k8s_manifest` applies, from its fact queries
/// (`k8s:KUBECONFIG:API/KIND/NS/NAME`, NS `-` for cluster-scoped objects).
fn manifest_objects(it: &Item) -> Vec<(String, Option<String>, String)> {
    it.inst
        .facts()
        .iter()
        .filter_map(|f| {
            let rest = f.key.strip_prefix("k8s:")?;
            let parts: Vec<&str> = rest.rsplitn(4, '/').collect();
            let (name, ns, kind) = (parts[0], parts[1], parts[2]);
            Some((
                kind.to_string(),
                (ns != "-").then(|| ns.to_string()),
                name.to_string(),
            ))
        })
        .collect()
}

/// Walk one host's resources in apply order, as a real API server would meet them: every
/// namespaced object needs its namespace, every custom kind its CRD, both from EARLIER resources.
pub fn cluster_order_problems(items: &[&Item]) -> Vec<String> {
    let mut namespaces: Vec<String> = ["default", "kube-system", "kube-public", "kube-node-lease"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut kinds: Vec<String> = BUILTIN_KINDS
        .iter()
        .chain(K3S_KINDS)
        .map(|s| s.to_string())
        .collect();
    let mut problems = Vec::new();
    for it in items {
        let r = &it.rendered;
        match it.id.kind.as_str() {
            "k8s_manifest" => {
                for (kind, ns, name) in manifest_objects(it) {
                    if !kinds.contains(&kind) {
                        problems.push(format!("{}: {kind} {name} before its CRD", it.id));
                    }
                    match ns {
                        Some(ns) if !namespaces.contains(&ns) => {
                            problems.push(format!("{}: {kind} {name} before namespace {ns}", it.id))
                        }
                        _ => {}
                    }
                    if kind == "Namespace" {
                        namespaces.push(name);
                    }
                }
            }
            "k8s_secret" => {
                let ns = r["namespace"].as_str().unwrap_or_default().to_string();
                if !namespaces.contains(&ns) {
                    problems.push(format!("{}: Secret before namespace {ns}", it.id));
                }
            }
            "helm_release" => {
                let ns = r["namespace"].as_str().unwrap_or_default().to_string();
                if r["create_namespace"] == false && !namespaces.contains(&ns) {
                    problems.push(format!("{}: release before namespace {ns}", it.id));
                }
                namespaces.push(ns);
                kinds.extend(
                    crds_of(r["chart"].as_str().unwrap_or_default())
                        .iter()
                        .map(|s| s.to_string()),
                );
            }
            _ => {}
        }
    }
    problems
}

fn rendered<'a>(c: &'a Compiled, host: &str, id: &str) -> &'a Value {
    &items(c, host)
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{host} has no {id}"))
        .rendered
}

/// The k3s binary follows each host's architecture, pinned by that architecture's sha256.
#[test]
fn the_k3s_binary_follows_the_host_architecture() {
    let bin = |arch: &str| {
        let c = try_compile_lab(Some(arch), &[]).unwrap_or_else(|d| panic!("{arch}: {d}"));
        rendered(&c, "lab-server-1", "k3s/download:k3s binary").clone()
    };
    let amd64 = bin("x86_64");
    assert!(
        amd64["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1.36.4%2Bk3s1/k3s"),
        "{amd64}"
    );
    assert_eq!(
        amd64["sha256"],
        "835873f37245fc615f547a2fe2af9402a347875f13fa64a1f136de644955ea3f"
    );
    let arm64 = bin("aarch64");
    assert!(
        arm64["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1.36.4%2Bk3s1/k3s-arm64"),
        "{arm64}"
    );
    assert_eq!(
        arm64["sha256"],
        "c920706346d5ad4e5cd3c7bf1bb09ce71ebe07fec829e513e40f1caf98aed8bb"
    );
    // k3s_arch and k3s_sha256 still override the facts.
    let c = try_compile_lab(
        Some("armv7l"),
        &[
            ("k3s_sha256", Value::String("ab".repeat(32))),
            ("helm_sha256", Value::String("cd".repeat(32))),
        ],
    )
    .unwrap();
    let arm = rendered(&c, "lab-server-1", "k3s/download:k3s binary");
    assert!(
        arm["url"].as_str().unwrap().ends_with("/k3s-armhf"),
        "{arm}"
    );
    assert_eq!(arm["sha256"], "ab".repeat(32));
}

/// Off-site backups switched on without a bucket: `check` and `plan` say which var to set,
/// instead of a timer that fails every night.
#[test]
fn offsite_backups_without_a_bucket_are_refused_by_name() {
    // The example vault holds no S3 credentials: given here, as an inventory would.
    let creds = [
        (
            "vault_backup_s3_access_key",
            Value::String("AKIAEXAMPLE".into()),
        ),
        (
            "vault_backup_s3_secret_key",
            Value::String("example-secret".into()),
        ),
    ];
    let on = [&creds[..], &[("backup_offsite", Value::Bool(true))]].concat();
    let e = refusal(
        try_compile_lab(Some("x86_64"), &on),
        "an empty backup_s3_bucket is refused",
    );
    assert!(e.contains("backup_s3_bucket is empty"), "{e}");
    assert!(e.contains("offsite.env.j2"), "{e}");
    // `check` compiles without facts: refused there too.
    let e = refusal(
        try_compile_lab(None, &on),
        "check refuses an empty backup_s3_bucket",
    );
    assert!(e.contains("backup_s3_bucket is empty"), "{e}");
    let c = try_compile_lab(
        Some("x86_64"),
        &[
            &on[..],
            &[("backup_s3_bucket", Value::String("lab-backups".into()))],
        ]
        .concat(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    // With a bucket the same site compiles, the env file among its resources.
    assert!(items(&c, "lab-server-1")
        .iter()
        .any(|i| i.rendered["path"] == "/etc/labctl-backup/offsite.env"));
}

/// The helm tarball follows the server's architecture as the k3s binary does, each pinned by
/// that architecture's sha256 (helm v4.2.4's release notes).
#[test]
fn the_helm_tarball_follows_the_host_architecture() {
    let tarball = |arch: &str| {
        let c = try_compile_lab(Some(arch), &[]).unwrap_or_else(|d| panic!("{arch}: {d}"));
        let server = items(&c, "lab-server-1");
        let get = |id: &str| {
            server
                .iter()
                .find(|i| i.id == id)
                .unwrap_or_else(|| panic!("no {id}"))
                .rendered
                .clone()
        };
        (
            get("helm/download:helm tarball"),
            get("helm/command:unpack helm"),
        )
    };
    for (arch, helm_arch, sha) in [
        (
            "x86_64",
            "amd64",
            "c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3",
        ),
        (
            "aarch64",
            "arm64",
            "564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1",
        ),
    ] {
        let (dl, unpack) = tarball(arch);
        let want = format!("https://get.helm.sh/helm-v4.2.4-linux-{helm_arch}.tar.gz");
        assert_eq!(dl["url"], want.as_str(), "{arch}");
        assert_eq!(dl["sha256"], sha, "{arch}");
        // The unpack step checks the same checksum and takes the same architecture's binary.
        let run = unpack["run"].as_str().unwrap();
        assert!(run.contains(&format!("echo \"{sha}  $t\"")), "{run}");
        assert!(run.contains(&format!("linux-{helm_arch}/helm")), "{run}");
    }
    // helm_arch and helm_sha256 still override the facts.
    let c = try_compile_lab(
        Some("armv7l"),
        &[
            ("k3s_sha256", Value::String("ab".repeat(32))),
            ("helm_sha256", Value::String("cd".repeat(32))),
        ],
    )
    .unwrap();
    let dl = rendered(&c, "lab-server-1", "helm/download:helm tarball");
    assert!(
        dl["url"].as_str().unwrap().ends_with("-linux-arm.tar.gz"),
        "{dl}"
    );
    assert_eq!(dl["sha256"], "cd".repeat(32));
}

/// rclone's S3 remote names AWS as `AWS` when no endpoint is set (AWS S3 itself), and any
/// S3-compatible service reached through an endpoint (MinIO, Backblaze, moto) as `Other`,
/// unless the inventory names the provider.
#[test]
fn the_rclone_remote_names_aws_as_aws() {
    let remote = |overrides: &[(&str, Value)]| -> Vec<String> {
        let on = [&[("backup_offsite", Value::Bool(true))], overrides].concat();
        let ctx = crate::role_checks::role_ctx("backups", &on);
        let (text, _) = crate::role_checks::render("backups", "rclone.conf.j2", &ctx);
        text.lines()
            .filter(|l| l.starts_with("provider = ") || l.starts_with("endpoint = "))
            .map(String::from)
            .collect()
    };
    assert_eq!(remote(&[]), ["provider = AWS"]);
    let b2 = "https://s3.eu-central-003.backblazeb2.com";
    assert_eq!(
        remote(&[("backup_s3_endpoint", Value::String(b2.into()))]),
        ["provider = Other".to_string(), format!("endpoint = {b2}")]
    );
    assert_eq!(
        remote(&[
            (
                "backup_s3_endpoint",
                Value::String("http://10.0.0.5:9000".into())
            ),
            ("backup_s3_provider", Value::String("Minio".into())),
        ]),
        ["provider = Minio", "endpoint = http://10.0.0.5:9000"]
    );
}

/// No pinned checksum for the host's architecture: a clear error, never a download without one.
#[test]
fn an_architecture_without_a_checksum_is_refused_by_name() {
    for arch in ["armv7l", "riscv64"] {
        let e = try_compile_lab(Some(arch), &[]).err().unwrap().to_string();
        assert!(e.contains("lab-server-1"), "{e}");
        assert!(e.contains(&format!("({arch})")), "{e}");
        for var in ["k3s_sha256", "helm_sha256"] {
            assert!(
                e.contains(&format!("set {var} for this host")),
                "{var}: {e}"
            );
        }
    }
    // With k3s's pinned by hand, helm's missing one is still refused by name.
    let e = refusal(
        try_compile_lab(
            Some("armv7l"),
            &[("k3s_sha256", Value::String("ab".repeat(32)))],
        ),
        "helm without a checksum is refused",
    );
    assert!(
        e.contains("no sha256 of the helm 4.2.4 tarball for architecture arm (armv7l)"),
        "{e}"
    );
    assert!(
        e.contains("lab-server-1") && !e.contains("k3s_sha256"),
        "{e}"
    );
}

/// `check` (no facts): the helm tarball's checksum waits for them too.
#[test]
fn without_facts_the_helm_tarball_waits_for_them() {
    let c = try_compile_lab(None, &[]).unwrap();
    let dl = rendered(&c, "lab-server-1", "helm/download:helm tarball");
    assert_eq!(dl["sha256"], "<fact:helm_sha256>");
}

/// `check` (no facts): the binary's checksum waits for the facts; nothing claims one.
#[test]
fn without_facts_the_k3s_binary_waits_for_them() {
    let c = try_compile_lab(None, &[]).unwrap();
    let it = items(&c, "lab-server-1")
        .into_iter()
        .find(|i| i.id == "k3s/download:k3s binary")
        .expect("the binary is still compiled");
    // Its dest does not depend on facts: the host's first probe already reads it.
    let keys: Vec<String> = it.inst.facts().into_iter().map(|q| q.key).collect();
    assert!(
        keys.iter().all(|k| k.ends_with("/usr/local/bin/k3s")) && !keys.is_empty(),
        "{keys:?}"
    );
    assert_eq!(it.rendered["sha256"], "<fact:k3s_sha256>");
}

/// Defect 2: a Secret applied before its namespace exists stops a real first install.
#[test]
fn namespaces_and_crds_exist_before_anything_uses_them() {
    let c = compile_lab(&[]);
    let server = items(&c, "lab-server-1");
    assert_eq!(cluster_order_problems(&server), Vec::<String>::new());
    // The check itself sees the old order (Secret first, chart with --create-namespace later).
    let pos = |id: &str| server.iter().position(|i| i.id == id).unwrap();
    let mut old = server.clone();
    let secret = old.remove(pos("postgres/k8s_secret:postgres superuser secret"));
    old.insert(0, secret);
    assert!(cluster_order_problems(&old)[0].contains("Secret before namespace db"));
    let mut old = server.clone();
    let rules = old.remove(pos("monitoring/k8s_manifest:lab alert rules"));
    old.insert(0, rules);
    assert!(cluster_order_problems(&old)[0].contains("PrometheusRule lab-rules before its CRD"));
}

/// Defect 3: ufw on every node lets k3s's own traffic in, derived from the cluster's CIDRs
/// and every node's VPN address.
#[test]
fn the_firewall_lets_k3s_through() {
    let c = compile_lab(&[]);
    for host in ["lab-server-1", "lab-agent-1"] {
        let rules = rendered(&c, host, "base-hardening/ufw:firewall")["rules"]
            .as_array()
            .unwrap()
            .clone();
        let has = |want: Value| {
            rules.iter().any(|r| {
                want.as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| r.get(k) == Some(v))
            })
        };
        for cidr in ["10.42.0.0/16", "10.43.0.0/16"] {
            assert!(
                has(serde_json::json!({"from": cidr})),
                "{host}: {cidr} any port: {rules:#?}"
            );
        }
        let nodes = serde_json::json!(["10.200.0.1", "10.200.0.2"]);
        for (port, proto) in [("8472", "udp"), ("10250", "tcp")] {
            assert!(
                has(
                    serde_json::json!({"port": port, "proto": proto, "interface": "wg0", "from": nodes})
                ),
                "{host}: {port}/{proto} between nodes: {rules:#?}"
            );
        }
        // Nothing opens the kubelet to the whole VPN (laptops included).
        assert!(!has(
            serde_json::json!({"port": "10250", "from": "10.200.0.0/24"})
        ));
    }
    // Other CIDRs in the inventory move the rules along.
    let c = compile_lab(&[("k3s_cluster_cidr", serde_json::json!("10.52.0.0/16"))]);
    let rules = rendered(&c, "lab-server-1", "base-hardening/ufw:firewall")["rules"].to_string();
    assert!(
        rules.contains("10.52.0.0/16") && !rules.contains("10.42.0.0/16"),
        "{rules}"
    );
}

/// Every environment's NodePorts are open from the VPN only, on every node: production's and
/// staging's in the example inventory, and a new environment's with no other edit.
#[test]
fn every_environment_s_node_ports_are_vpn_only() {
    let vpn_ports = |c: &Compiled, host: &str| -> Vec<String> {
        let rules = rendered(c, host, "base-hardening/ufw:firewall")["rules"]
            .as_array()
            .unwrap()
            .clone();
        rules
            .iter()
            .filter(|r| r["from"] == "10.200.0.0/24" && r["proto"] == "tcp")
            .map(|r| r["port"].as_str().unwrap().to_string())
            .collect()
    };
    let c = compile_lab(&[]);
    for host in ["lab-server-1", "lab-agent-1"] {
        let p = vpn_ports(&c, host);
        for port in ["6443", "30432", "30379", "31432", "31379"] {
            assert!(p.contains(&port.to_string()), "{host}: {port} in {p:?}");
        }
        // Nothing else of theirs is open to anyone.
        let all = rendered(&c, host, "base-hardening/ufw:firewall")["rules"].to_string();
        assert_eq!(all.matches("\"31432\"").count(), 1, "{all}");
    }
    // A third environment: its NodePorts join, with no edit of the firewall's vars.
    let mut envs = compile_envs();
    envs["qa"] = serde_json::json!({
        "postgres_namespace": "db-qa", "postgres_node_port": 32432,
        "redis_namespace": "cache-qa", "redis_node_port": 32379
    });
    let c = compile_lab(&[("environments", envs)]);
    let p = vpn_ports(&c, "lab-agent-1");
    for port in ["30432", "30379", "31432", "31379", "32432", "32379"] {
        assert!(p.contains(&port.to_string()), "{port} in {p:?}");
    }
}

/// The example inventory's `environments`, as written.
fn compile_envs() -> Value {
    let text =
        std::fs::read_to_string(root().join("inventories/lab/group_vars/all/main.yml")).unwrap();
    let v: Value = serde_saphyr::from_str(&text).unwrap();
    v["environments"].clone()
}

/// sshd drops a session whose client stopped answering: the drop-in carries the role's
/// ClientAlive settings (interval × count = 60 s by default).
#[test]
fn sshd_drops_dead_sessions() {
    let c = compile_lab(&[]);
    let f = rendered(&c, "lab-agent-1", "base-hardening/file:sshd hardening");
    assert_eq!(f["template"], "sshd-hardening.conf.j2");
    // The role's defaults; the firewall's node list needs an inventory and is not read here.
    let ctx = crate::role_checks::role_ctx(
        "base-hardening",
        &[
            ("firewall_k3s_nodes", serde_json::json!([])),
            ("environment_node_ports", serde_json::json!([])),
        ],
    );
    let (text, _) = crate::role_checks::render("base-hardening", "sshd-hardening.conf.j2", &ctx);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"ClientAliveInterval 15") && lines.contains(&"ClientAliveCountMax 4"),
        "{text}"
    );
}

/// unattended-upgrades reboots a host only when told to, at the time given: the role's apt
/// config file as the real `apt-config` reads it, and a time it could not use refused by name.
#[test]
fn unattended_upgrades_reboot_only_at_a_time_given() {
    let Some(apt_config) = crate::role_checks::have("apt-config") else {
        return;
    };
    let c = compile_lab(&[]);
    let f = rendered(
        &c,
        "lab-agent-1",
        "base-hardening/file:unattended-upgrades reboot policy",
    );
    assert_eq!(f["path"], "/etc/apt/apt.conf.d/52labctl-unattended-reboot");
    // What apt reads from the rendered file: (Automatic-Reboot, Automatic-Reboot-Time).
    let read = |overrides: &[(&str, Value)]| -> (String, String) {
        let ctx = crate::role_checks::role_ctx(
            "base-hardening",
            &[
                &[
                    ("firewall_k3s_nodes", serde_json::json!([])),
                    ("environment_node_ports", serde_json::json!([])),
                ][..],
                overrides,
            ]
            .concat(),
        );
        let (text, _) =
            crate::role_checks::render("base-hardening", "unattended-reboot.conf.j2", &ctx);
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("52labctl-unattended-reboot");
        std::fs::write(&conf, &text).unwrap();
        let o = crate::role_checks::run(
            std::process::Command::new(&apt_config)
                .arg("-c")
                .arg(&conf)
                .args([
                    "shell",
                    "R",
                    "Unattended-Upgrade::Automatic-Reboot",
                    "T",
                    "Unattended-Upgrade::Automatic-Reboot-Time",
                ]),
        );
        assert!(o.status.success(), "apt-config refused:\n{text}\n{o:?}");
        let out = String::from_utf8(o.stdout).unwrap();
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}='")))
                .map(|v| v.trim_end_matches('\'').to_string())
                .unwrap_or_default()
        };
        (get("R"), get("T"))
    };
    // Off by default, and said explicitly (not left to unattended-upgrades' own default).
    assert_eq!(read(&[]), ("false".into(), String::new()));
    let on = ("unattended_reboot", Value::Bool(true));
    assert_eq!(
        read(std::slice::from_ref(&on)),
        ("true".into(), "04:00".into())
    );
    for t in ["03:30", "now", "23:59"] {
        let got = read(&[
            on.clone(),
            ("unattended_reboot_time", Value::String(t.into())),
        ]);
        assert_eq!(got, ("true".into(), t.into()));
    }
    // A time the role would hand to `shutdown -r` unchecked is refused, naming the var.
    for bad in ["25:00", "3:30", "04:00; reboot", ""] {
        let e = refusal(
            try_compile_lab(
                Some("x86_64"),
                &[
                    on.clone(),
                    ("unattended_reboot_time", Value::String(bad.into())),
                ],
            ),
            "a bad unattended_reboot_time is refused",
        );
        assert!(
            e.contains(&format!("unattended_reboot_time is {bad:?}"))
                && e.contains("unattended-reboot.conf.j2"),
            "{bad}: {e}"
        );
    }
}

/// Defect 7: the fetched cluster-admin kubeconfig lands where git ignores it, mode 0600.
#[test]
fn the_fetched_kubeconfig_is_git_ignored_and_private() {
    let c = compile_lab(&[]);
    let f = rendered(&c, "lab-server-1", "k3s/fetch:kubeconfig on the controller");
    let dest = f["dest"].as_str().unwrap();
    assert_eq!(f["mode"], "0600");
    let o = std::process::Command::new("git")
        .args(["check-ignore", "--no-index", "-q", dest])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(o.status.success(), "{dest} is not ignored by .gitignore");
}

/// Defect 6: a vault password change must reach the running service, never a silent
/// mismatch between the Secret and what the service checks.
#[test]
fn every_password_secret_reaches_its_running_service() {
    let c = compile_lab(&[]);
    let server = items(&c, "lab-server-1");
    let secrets: Vec<&&Item> = server
        .iter()
        .filter(|i| i.id.kind == "k8s_secret")
        .collect();
    assert!(
        secrets.len() >= 4,
        "{:?}",
        secrets.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
    for s in &secrets {
        let name = s.rendered["name"].as_str().unwrap();
        match name {
            // CloudNativePG's instance manager re-reads these (basic-auth) Secrets and
            // ALTERs the roles' passwords itself; the Cluster must name exactly them.
            "postgres-superuser" | "postgres-app" => {
                assert_eq!(s.rendered["type"], "kubernetes.io/basic-auth", "{name}");
                let mut keys: Vec<&String> =
                    s.rendered["data"].as_object().unwrap().keys().collect();
                keys.sort();
                assert_eq!(keys, ["password", "username"], "{name}");
            }
            // Read only at start / first boot: a handler pushes the change.
            "redis-auth" => assert_eq!(s.notify, ["restart redis"]),
            "grafana-admin" => assert_eq!(s.notify, ["rotate grafana admin password"]),
            // Grafana reads GF_SMTP_* from it only at start.
            "grafana-smtp" => assert_eq!(s.notify, ["restart grafana"]),
            other => panic!("{other}: no rotation path is known for this Secret"),
        }
    }
    let role = |name: &str| {
        c.hosts[0]
            .roles
            .iter()
            .find(|r| r.role == name)
            .unwrap_or_else(|| panic!("no role {name}"))
    };
    for (r, h) in [
        ("redis", "restart redis"),
        ("monitoring", "rotate grafana admin password"),
        ("monitoring", "restart grafana"),
    ] {
        assert!(
            role(r).handlers.iter().any(|x| x.name == h),
            "{r} has no handler {h}"
        );
    }
}

/// The Grafana rotation handler, run by sh against a kubectl that records its calls: the
/// password reaches `grafana cli` on stdin only, and an empty read stops the handler before
/// the reset (a pipe would have reset Grafana's password to the empty string).
#[test]
fn the_grafana_rotation_never_resets_to_an_empty_password() {
    let c = compile_lab(&[]);
    let h = c
        .hosts
        .iter()
        .flat_map(|h| h.roles.iter())
        .filter(|r| r.role == "monitoring")
        .flat_map(|r| r.handlers.iter())
        .find(|h| h.name == "rotate grafana admin password")
        .expect("the handler");
    let steps = h.inst.handler(h.secret).unwrap();
    let [lab::plan::Step::Sh { script }] = steps.as_slice() else {
        panic!("one shell step: {steps:?}")
    };
    let run = |secret_value: &str| {
        let d = tempfile::tempdir().unwrap();
        let kubectl = d.path().join("kubectl");
        std::fs::write(
            &kubectl,
            format!(
                "#!/bin/sh\necho \"$*\" >> {log}\ncase \" $* \" in *' get secret '*) printf '%s' {v};; *' exec '*) cat > {stdin};; esac\n",
                log = d.path().join("argv").display(),
                v = lab::sh::q(secret_value),
                stdin = d.path().join("stdin").display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = std::process::Command::new("sh")
            .args(["-c", script])
            .env(
                "PATH",
                format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).ok();
        (
            o.status.success(),
            read("argv").unwrap_or_default(),
            read("stdin"),
        )
    };
    let (ok, argv, stdin) = run("n3w-Grafana-pw");
    assert!(ok, "{argv}");
    assert_eq!(stdin.as_deref(), Some("n3w-Grafana-pw"));
    assert!(
        argv.contains("reset-admin-password --password-from-stdin"),
        "{argv}"
    );
    assert!(!argv.contains("n3w-Grafana-pw"), "{argv}");
    let (ok, argv, stdin) = run("");
    assert!(!ok);
    assert_eq!(stdin, None, "no reset ran: {argv}");
}

/// The docs' (README.md, docs/*.md) and scripts' `labctl vault get` examples name the vault file first (the
/// argument order `labctl vault get FILE KEY` has), and only vars the example vault defines.
#[test]
fn vault_get_examples_match_the_cli_and_the_example_vault() {
    let key = root().join("inventories/lab/EXAMPLE-ONLY.agekey.txt");
    let keys = lab::vault::Keyring::discover(Some(&key)).unwrap();
    let vault = keys
        .decrypt_file(&root().join("inventories/lab/group_vars/all/vault.yml.age"))
        .unwrap();
    let vault = String::from_utf8(vault.expose().clone()).unwrap();
    let re = regex::Regex::new(r"labctl vault get (\S+) (vault_[a-z0-9_]+)").unwrap();
    let mut seen = 0;
    let mut files: Vec<String> = [
        "README.md",
        "scripts/test-postgres.sh",
        "scripts/test-redis.sh",
    ]
    .map(String::from)
    .to_vec();
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let key_first = regex::Regex::new(r"labctl vault get vault_").unwrap();
    for f in &files {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        assert!(
            !key_first.is_match(&text),
            "{f}: `labctl vault get` takes the vault FILE first"
        );
        for c in re.captures_iter(&text) {
            seen += 1;
            let (file, var) = (&c[1], &c[2]);
            assert!(file == "FILE" || file.ends_with(".age"), "{f}: {file}");
            assert!(
                vault.contains(&format!("\n{var}:")),
                "{f}: {var} is not in the example vault"
            );
        }
    }
    assert!(seen >= 3, "{seen}");
    // The Argo CD role reads the bcrypt var the example vault defines.
    assert!(vault.contains("\nvault_argocd_admin_password_bcrypt: \"$2a$"));
}

/// The example inventory's staging: only the environment's own resources change, and they
/// land in its own namespaces and NodePorts; everything else renders exactly as in prod.
#[test]
fn a_target_environment_changes_only_its_own_resources() {
    let prod = compile_lab(&[]);
    let staging = compile_lab(&[("target_environment", serde_json::json!("staging"))]);
    let render = |c: &Compiled| -> Vec<(String, String)> {
        items(c, "lab-server-1")
            .iter()
            .map(|i| {
                (
                    i.id.to_string(),
                    format!("{} {:?}", i.rendered, i.inst.facts()),
                )
            })
            .collect()
    };
    let (p, s) = (render(&prod), render(&staging));
    assert_eq!(p.len(), s.len());
    let text = |v: &[(String, String)], role: &str| -> String {
        v.iter()
            .filter(|(id, _)| id.starts_with(&format!("{role}/")))
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let changed: std::collections::BTreeSet<&str> = p
        .iter()
        .zip(&s)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.split('/').next().unwrap())
        .collect();
    // Only the per-environment roles move: the shared ones (monitoring's rules and
    // exporters, the pg-backup CronJob) render exactly as without a target, watching and
    // backing up production (docs/environments.md).
    assert_eq!(
        changed,
        ["postgres", "redis"].into_iter().collect(),
        "{changed:?}"
    );
    for role in ["monitoring", "backups"] {
        assert_eq!(text(&p, role), text(&s, role), "{role}");
    }
    let backups = text(&s, "backups");
    assert!(backups.contains("/CronJob/db/pg-backup\""), "{backups}");
    let pg = text(&s, "postgres");
    assert!(pg.contains("/db-staging/") && !pg.contains("/db/"), "{pg}");
    let rd = text(&s, "redis");
    assert!(
        rd.contains("/cache-staging/") && !rd.contains("/cache/"),
        "{rd}"
    );
}
