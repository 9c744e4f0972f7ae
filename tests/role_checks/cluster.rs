//! The cluster roles' templates and chart values, rendered from their defaults, checked for
//! what breaks a first real install: images nobody serves any more, NodePorts on the public
//! address, monitoring that alerts forever on k3s.

use serde_json::{json, Value};

use super::*;
use labctl::internals::facts;

/// Every template or values file that becomes Kubernetes objects or chart values, with the role
/// whose defaults render it.
const CLUSTER_TEMPLATES: &[(&str, &str)] = &[
    (
        "postgres",
        "roles/postgres/templates/postgres-cluster.yaml.j2",
    ),
    ("postgres", "values/cnpg-operator.yaml.j2"),
    ("redis", "roles/redis/templates/redis.k8s.j2"),
    ("sealed-secrets", "values/sealed-secrets.yaml.j2"),
    ("argocd", "values/argocd.yaml.j2"),
    ("argocd", "roles/argocd/templates/root-app.yaml.j2"),
    ("monitoring", "values/monitoring.yaml.j2"),
    ("monitoring", "values/postgres-exporter.yaml.j2"),
    ("monitoring", "values/redis-exporter.yaml.j2"),
    ("backups", "roles/backups/templates/pg-backup.k8s.j2"),
    ("ingress", "values/cert-manager.yaml.j2"),
    ("ingress", "roles/ingress/templates/sample-ingress.yaml.j2"),
];

fn render_path(role: &str, path: &str, ctx: &Ctx) -> String {
    Engine::new(&root())
        .render_file(path, ctx)
        .unwrap_or_else(|e| panic!("{role}: {path}: {e}"))
        .text
}

fn docs(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(yaml)
        .collect()
}

/// Registries and repositories known to serve nothing maintained (Bitnami's free versioned
/// images went to the frozen docker.io/bitnamilegacy in 2025). The one exception is the
/// sealed-secrets controller: the bitnami-labs project publishes it under docker.io/bitnami
/// itself and keeps its versioned tags there (its issues #1785, #1790).
fn unmaintained(reference: &str) -> bool {
    let r = reference.trim_start_matches("docker.io/");
    if r.starts_with("bitnami/sealed-secrets-controller:")
        || r == "bitnami/sealed-secrets-controller"
    {
        return false;
    }
    r.starts_with("bitnami/") || r.starts_with("bitnamilegacy/")
}

fn pinned(tag: &str) -> bool {
    !tag.is_empty() && tag != "latest" && !tag.contains("{{")
}

/// Every image reference in rendered objects or values, as problems (empty = all good).
/// Strings under `image`/`imageName` must be REGISTRY/REPO:TAG; maps under `image` must carry
/// a repository and a pinned tag.
pub fn image_problems(at: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{at}.{k}");
                match (k.as_str(), x) {
                    ("image" | "imageName", Value::String(s)) => {
                        let (name, tag) = s.rsplit_once(':').unwrap_or((s, ""));
                        if !name.contains('/')
                            || !name.split('/').next().unwrap_or("").contains('.')
                        {
                            out.push(format!("{here}: `{s}` does not name its registry"));
                        }
                        if !pinned(tag) || tag.contains('/') {
                            out.push(format!("{here}: `{s}` has no pinned tag"));
                        }
                        if unmaintained(s) {
                            out.push(format!("{here}: `{s}` is not maintained any more"));
                        }
                    }
                    ("image", Value::Object(img)) if img.contains_key("repository") => {
                        let repo = img["repository"].as_str().unwrap_or("");
                        let reg = img.get("registry").and_then(Value::as_str).unwrap_or("");
                        let tag = img.get("tag").and_then(Value::as_str).unwrap_or("");
                        if !pinned(tag) {
                            out.push(format!("{here}: {reg}/{repo} has no pinned tag (the chart's default would change under you)"));
                        }
                        let full = if reg.is_empty() {
                            repo.to_string()
                        } else {
                            format!("{reg}/{repo}")
                        };
                        if unmaintained(&full) {
                            out.push(format!("{here}: `{full}` is not maintained any more"));
                        }
                    }
                    _ => image_problems(&here, x, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                image_problems(&format!("{at}[{i}]"), x, out);
            }
        }
        _ => {}
    }
}

/// Lines of a template source that set an image literally instead of from a var.
fn literal_image_lines(src: &str) -> Vec<String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^\s*-?\s*(image|imageName|registry|repository|tag)\s*:\s*(\S.*)$")
            .expect("static regex")
    });
    src.lines()
        .filter_map(|l| RE.captures(l))
        .filter(|c| !c[2].contains("{{") && !c[2].starts_with('#'))
        .map(|c| c[0].trim().to_string())
        .collect()
}

/// Defect 1: every image labctl deploys is a var (registry, repository, tag) with a pinned tag
/// from a maintained source.
#[test]
fn every_deployed_image_is_a_pinned_var_from_a_maintained_source() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for (role, path) in CLUSTER_TEMPLATES {
        let src = std::fs::read_to_string(root().join(path)).unwrap();
        for l in literal_image_lines(&src) {
            problems.push(format!("{path}: `{l}` is not a var"));
        }
        let text = render_path(role, path, &role_ctx(role, &[]));
        for (i, d) in docs(&text).iter().enumerate() {
            image_problems(&format!("{path}#{i}"), d, &mut problems);
            seen += d.to_string().matches("\"image").count();
        }
    }
    assert_eq!(problems, Vec::<String>::new());
    assert!(
        seen >= 15,
        "only {seen} image references found: the walk missed some"
    );
    // Every image var in the defaults is pinned too (an override must replace a pinned value).
    for role in [
        "postgres",
        "redis",
        "sealed-secrets",
        "argocd",
        "monitoring",
        "backups",
    ] {
        let text =
            std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap();
        let vars: indexmap::IndexMap<String, Value> = serde_saphyr::from_str(&text).unwrap();
        for (k, v) in &vars {
            if k.ends_with("_image_tag") {
                assert!(pinned(v.as_str().unwrap_or("")), "{role}: {k} = {v}");
            }
            if k == "monitoring_images" {
                for (n, img) in v.as_object().unwrap() {
                    assert!(pinned(img["tag"].as_str().unwrap_or("")), "{n}");
                }
            }
        }
    }
}

#[test]
fn the_image_check_refuses_what_broke_real_installs() {
    let mut p = Vec::new();
    image_problems(
        "t",
        &json!({"image": "docker.io/bitnami/postgresql:17.5.0"}),
        &mut p,
    );
    image_problems("t", &json!({"image": "redis"}), &mut p);
    image_problems("t", &json!({"image": "ghcr.io/x/y:latest"}), &mut p);
    image_problems(
        "t",
        &json!({"primary": {"image": {"registry": "docker.io", "repository": "bitnami/postgresql", "tag": ""}}}),
        &mut p,
    );
    image_problems(
        "t",
        &json!({"image": {"repository": "quay.io/argoproj/argocd", "tag": ""}}),
        &mut p,
    );
    assert_eq!(p.len(), 7, "{p:#?}");
    // The project's own controller image stays served; its frozen legacy copy does not.
    let mut ss = Vec::new();
    image_problems(
        "t",
        &json!({"image": {"registry": "docker.io", "repository": "bitnami/sealed-secrets-controller", "tag": "0.36.6"}}),
        &mut ss,
    );
    assert_eq!(ss, Vec::<String>::new());
    image_problems(
        "t",
        &json!({"image": "docker.io/bitnamilegacy/sealed-secrets-controller:0.30.0"}),
        &mut ss,
    );
    assert_eq!(ss.len(), 1, "{ss:#?}");
    assert_eq!(
        literal_image_lines("image: {{ x }}\n  tag: \"1.2\"\n  repository: {{ y }}\n"),
        ["tag: \"1.2\""]
    );
}

/// A role's defaults with `overrides`, templated vars resolved as `apply` resolves them.
fn resolved_ctx(role: &str, overrides: &[(&str, Value)]) -> Ctx {
    let text = std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap();
    let mut values: indexmap::IndexMap<String, Value> = serde_saphyr::from_str(&text).unwrap();
    // An x86_64 Debian host's facts, as its probe gathers them.
    let facts = facts::host::parse("id=debian\nversion_id=12\narch=x86_64\nnodename=n\n").unwrap();
    values.extend(facts::host::template_vars(&facts));
    for (k, v) in overrides {
        values.insert((*k).to_string(), v.clone());
    }
    let layer = VarLayer::from_map(values);
    let l = template::vars::resolve(&Engine::new(&root()), &layer, false)
        .unwrap_or_else(|e| panic!("{role}: {e:?}"));
    Ctx::new(&l.values, Default::default(), vec![])
}

/// Defect 4: kube-proxy answers NodePorts only on the node's VPN address, so a NodePort never
/// faces the internet whatever the firewall says.
#[test]
fn nodeports_are_bound_to_the_vpn_address() {
    let groups = json!({"k3s_server": ["s1"], "k3s_agents": ["a1"]});
    for (host, wg, names) in [
        ("s1", "10.200.0.1", ["k3s_server"]),
        ("a1", "10.200.0.2", ["k3s_agents"]),
    ] {
        let ctx = resolved_ctx(
            "k3s",
            &[
                ("inventory_hostname", json!(host)),
                ("wg_address", json!(wg)),
                ("groups", groups.clone()),
                ("group_names", json!(names)),
                ("hostvars", json!({"s1": {"wg_address": "10.200.0.1"}})),
                ("k3s_token", json!(VAULT_CANARY)),
            ],
        );
        let cfg = yaml(&render_path(
            "k3s",
            "roles/k3s/templates/k3s-config.j2",
            &ctx,
        ));
        assert_eq!(
            cfg["kube-proxy-arg"],
            json!([format!("nodeport-addresses={wg}/32")]),
            "{host}: {cfg:#}"
        );
        if host == "s1" {
            assert_eq!(
                (cfg["cluster-cidr"].as_str(), cfg["service-cidr"].as_str()),
                (Some("10.42.0.0/16"), Some("10.43.0.0/16"))
            );
        }
    }
    // Both roles read the same CIDR vars with the same defaults: the firewall follows the cluster.
    let defaults = |role: &str| -> indexmap::IndexMap<String, Value> {
        serde_saphyr::from_str(
            &std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap(),
        )
        .unwrap()
    };
    let (k3s, fw) = (defaults("k3s"), defaults("base-hardening"));
    for k in ["k3s_cluster_cidr", "k3s_service_cidr"] {
        assert_eq!(k3s[k], fw[k], "{k}");
    }
}

/// Defect 5: k3s has no separate controller manager, scheduler, kube-proxy or etcd to scrape.
#[test]
fn monitoring_does_not_alert_forever_on_k3s() {
    let (text, _) = render_values("monitoring.yaml.j2", &role_ctx("monitoring", &[]));
    let v = yaml(&text);
    for c in [
        "kubeControllerManager",
        "kubeScheduler",
        "kubeProxy",
        "kubeEtcd",
    ] {
        assert_eq!(v[c]["enabled"], false, "{c}");
    }
    for r in [
        "etcd",
        "kubeControllerManager",
        "kubeSchedulerAlerting",
        "kubeSchedulerRecording",
        "kubeProxy",
    ] {
        assert_eq!(v["defaultRules"]["rules"][r], false, "{r}");
    }
}

/// The Redis container's start script, run by sh against the real redis-server: a password
/// with quotes, backslashes and shell characters must become the password Redis asks for.
#[test]
fn redis_start_script_keeps_any_password_intact() {
    let (Some(redis), Some(cli)) = (have("redis-server"), have("redis-cli")) else {
        return;
    };
    let pw = r#"a"b\c'd $HOME `x` #e\"f\\"#;
    let ctx = role_ctx("redis", &[("redis_password", json!(pw))]);
    let text = render_path("redis", "roles/redis/templates/redis.k8s.j2", &ctx);
    let sts = docs(&text)
        .into_iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["/bin/sh", "-c"]));
    let script = c["args"][0].as_str().unwrap();
    // The pod's paths become a temp dir's, the port a free one; the script is otherwise run
    // as the pod runs it, the password coming from the environment.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display().to_string();
    let script = script
        .replace("/run/redis", &d)
        .replace("dir /data", &format!("dir {d}"))
        .replace("exec redis-server", &format!("exec {}", redis.display()))
        + &format!(" --port {port} --bind 127.0.0.1 --save '' --appendonly no");
    let _redis = Daemon::spawn(
        "redis-server",
        Command::new("/bin/sh")
            .args(["-c", &script])
            .env("REDIS_PASSWORD", pw),
    );
    let ping = |auth: &str| {
        run(Command::new(&cli)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--no-auth-warning",
                "PING",
            ])
            .env("REDISCLI_AUTH", auth))
    };
    let ok = wait_for("redis to answer PING with the password", 20, || {
        let o = ping(pw);
        String::from_utf8_lossy(&o.stdout)
            .contains("PONG")
            .then_some(o)
    });
    assert!(ok.status.success(), "{}", show(&ok));
    let wrong = ping("a");
    assert!(
        !String::from_utf8_lossy(&wrong.stdout).contains("PONG"),
        "{}",
        show(&wrong)
    );
    // The config file holds the password only escaped, and is private to the pod's user.
    let conf = std::fs::read_to_string(dir.path().join("redis.conf")).unwrap();
    assert!(
        conf.starts_with(r#"requirepass "a\"b\\c'd $HOME `x` #e\\\"f\\\\""#),
        "{conf}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("redis.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

/// Chart values are edited in one place: every helm_release of the shipped roles renders its
/// values from `values/`, never from a role's templates/ folder.
#[test]
fn every_release_takes_its_values_from_the_values_folder() {
    let mut releases = 0;
    let mut problems = Vec::new();
    for e in std::fs::read_dir(root().join("roles")).unwrap() {
        let role = e.unwrap().file_name().to_string_lossy().into_owned();
        if !root().join(format!("roles/{role}/role.yml")).is_file() {
            continue;
        }
        for r in role_resources(&role) {
            let Some(h) = r.get("helm_release") else {
                continue;
            };
            releases += 1;
            let Some(vt) = h.get("values_template").and_then(Value::as_str) else {
                continue;
            };
            if !vt.starts_with("values/") {
                problems.push(format!("roles/{role}: {} takes {vt}", h["name"]));
            } else if !root().join(vt).is_file() {
                problems.push(format!("roles/{role}: {vt} does not exist"));
            }
        }
        if let Ok(rd) = std::fs::read_dir(root().join(format!("roles/{role}/templates"))) {
            for f in rd {
                let name = f.unwrap().file_name().to_string_lossy().into_owned();
                if name.contains("values") {
                    problems.push(format!("roles/{role}/templates/{name} belongs in values/"));
                }
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
    assert!(
        releases >= 6,
        "only {releases} helm_release resources found"
    );
}

/// The firewall rules base-hardening renders for `host` in a server + agent lab.
pub(super) fn two_node_firewall(host: &str) -> Vec<Value> {
    let ctx = role_ctx(
        "base-hardening",
        &[
            ("inventory_hostname", json!(host)),
            (
                "groups",
                json!({"k3s_server": ["s1"], "k3s_agents": ["a1"], "lab": ["s1", "a1"]}),
            ),
            (
                "hostvars",
                json!({"s1": {"wg_address": "10.200.0.1"}, "a1": {"wg_address": "10.200.0.2"}}),
            ),
        ],
    );
    let (v, _) = Engine::new(&root())
        .eval("firewall_k3s_rules", &ctx)
        .unwrap_or_else(|e| panic!("firewall_k3s_rules: {e}"));
    v.as_array().expect("a list of rules").clone()
}

/// Prometheus (a pod on one node) scrapes node-exporter and the kubelet on every node's own
/// address. Across nodes the scrape is masqueraded to the sending node's address and arrives on
/// wg0: every scraped port must be open there to the nodes (and only to them), or the agent's
/// targets are down for good (TargetDown). And the textfile collector's folder exists on every
/// node, not only where the backups run (NodeTextFileCollectorScrapeError).
#[test]
fn prometheus_can_scrape_every_node_of_a_two_node_lab() {
    let mon = role_ctx("monitoring", &[]);
    let values = yaml(&render_values("monitoring.yaml.j2", &mon).0);
    let ne = &values["prometheus-node-exporter"];
    let ne_port = ne["service"]["port"].clone();
    assert_eq!(ne["service"]["targetPort"], ne_port);
    assert_ne!(values["kubelet"]["enabled"], false);
    // The kubelet's port is the kubelet's (k3s does not move it); node-exporter's is the values'.
    let scraped = [
        ("10250".to_string(), "kubelet"),
        (
            ne_port.to_string().trim_matches('"').to_string(),
            "node-exporter",
        ),
    ];
    let nodes = json!(["10.200.0.1", "10.200.0.2"]);
    for host in ["s1", "a1"] {
        let rules = two_node_firewall(host);
        for (port, what) in &scraped {
            let r = rules
                .iter()
                .find(|r| r["port"] == json!(port))
                .unwrap_or_else(|| panic!("{host}: {what} ({port}) is not open: {rules:#?}"));
            assert_eq!(
                (&r["proto"], &r["interface"], &r["from"]),
                (&json!("tcp"), &json!("wg0"), &nodes),
                "{host}: {what}"
            );
        }
    }
    // One place: both roles' defaults agree on what they share.
    let defaults = |role: &str| -> indexmap::IndexMap<String, Value> {
        serde_saphyr::from_str(
            &std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap(),
        )
        .unwrap()
    };
    let (mon_d, fw_d) = (defaults("monitoring"), defaults("base-hardening"));
    for k in ["node_exporter_port", "node_exporter_textfile_dir"] {
        assert_eq!(mon_d[k], fw_d[k], "{k}");
    }
    assert_eq!(
        json!(fw_d["node_exporter_port"]).to_string(),
        ne_port.to_string()
    );

    // The collector's folder, created by a role every node gets (site.yml's first play).
    let arg = format!(
        "--collector.textfile.directory=/host/root{}",
        mon_d["node_exporter_textfile_dir"].as_str().unwrap()
    );
    assert!(
        ne["extraArgs"].as_array().unwrap().contains(&json!(arg)),
        "{ne:#}"
    );
    let site = yaml(&std::fs::read_to_string(root().join("site.yml")).unwrap());
    let every_node = site
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["hosts"] == "lab")
        .expect("a play for every node");
    assert!(every_node["roles"]
        .as_array()
        .unwrap()
        .contains(&json!("base-hardening")));
    let fw_ctx = role_ctx("base-hardening", &[("firewall_k3s_nodes", json!([]))]);
    let engine = Engine::new(&root());
    let made = role_resources("base-hardening").iter().any(|r| {
        let r = engine.render_value(r, &fw_ctx).unwrap().0;
        r["directory"]["path"] == mon_d["node_exporter_textfile_dir"]
    });
    assert!(made, "base-hardening does not create the textfile folder");
}
