//! A two-node lab has no alert that fires for good on its nodes: the alert rules
//! kube-prometheus-stack really ships (rendered by labctl's render path, the real helm, the kept
//! chart, our values), run by `promtool test rules` over what each node really exposes (the real
//! node-exporter, its textfile collector pointed at a folder that exists or not) and what
//! Prometheus can reach through the firewall base-hardening renders.

use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::{json, Map, Value};

use super::cluster::two_node_firewall;
use super::monitoring::sample;
use super::*;

/// The alerts about a node's scrape targets: unreachable targets, the textfile collector, the
/// kubelet. Their groups are run whole, as Prometheus would.
const WATCHED: &[&str] = &[
    "TargetDown",
    "NodeTextFileCollectorScrapeError",
    "KubeletInstanceUnreachable",
];

/// The server runs Prometheus; both nodes run node-exporter and a kubelet. Names and addresses
/// are the ones [`two_node_firewall`] renders for.
const NODES: [(&str, &str); 2] = [("s1", "10.200.0.1"), ("a1", "10.200.0.2")];
/// The Prometheus pod's address: a scrape of its own node comes from the pod network.
const PROMETHEUS_POD: &str = "10.42.0.10";

/// The chart's output for the monitoring release, rendered by `labctl render` (the lab inventory
/// compiled, vault opened with the example key, the release's values as the site sends them, the
/// real helm and the kept chart). None: skipped.
pub(super) fn rendered_monitoring_chart() -> Option<Vec<Value>> {
    rendered_monitoring_chart_with(&[])
}

/// [`rendered_monitoring_chart`] with `extra_vars` (KEY=VALUE, as `-e` takes them) over the lab
/// inventory, e.g. another `monitoring_release`.
pub(super) fn rendered_monitoring_chart_with(extra_vars: &[&str]) -> Option<Vec<Value>> {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.current_dir(root()).args([
        "--vault-key",
        "inventories/lab/EXAMPLE-ONLY.agekey.txt",
        "render",
        "-i",
        "inventories/lab/hosts.yml",
        "--limit",
        "lab-server-1",
    ]);
    for e in extra_vars {
        cmd.args(["-e", e]);
    }
    let o = cmd
        .arg("--out")
        .arg(out.path())
        // Only the chart's output is read here; `render_gate.rs` validates it.
        .env_remove("LABCTL_K8S_SCHEMAS")
        .output()
        .expect("cannot run the labctl binary");
    let stderr = String::from_utf8_lossy(&o.stderr);
    if let Some(why) = stderr
        .lines()
        .find_map(|l| l.split_once("charts not rendered ("))
        .map(|(_, why)| why.split(')').next().unwrap_or(why).to_string())
    {
        skipped(&format!("the render gate cannot run: {why}"));
        return None;
    }
    // The release's values file names its chart in the first line: `…, chart REPO/CHART VERSION`.
    let dir = out.path().join("lab-server-1");
    let values = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", dir.display(), show(&o)))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy().ends_with(".values.yaml")
                && std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("/kube-prometheus-stack "))
        })
        .unwrap_or_else(|| {
            panic!(
                "no kube-prometheus-stack release in the lab site:\n{}",
                show(&o)
            )
        });
    let rendered = values
        .to_string_lossy()
        .replace(".values.yaml", ".rendered.yaml");
    let text = std::fs::read_to_string(&rendered)
        .unwrap_or_else(|e| panic!("helm rendered nothing ({rendered}: {e}):\n{}", show(&o)));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("the chart's output: {e}"));
    Some(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Every rule group holding a [`WATCHED`] alert, as a promtool rules file. Annotations are
/// dropped: they are text for people, and promtool compares them too.
fn watched_groups(objects: &[Value]) -> Value {
    let mut groups = Vec::new();
    for o in objects.iter().filter(|o| o["kind"] == "PrometheusRule") {
        for g in o["spec"]["groups"].as_array().into_iter().flatten() {
            let rules = g["rules"].as_array().cloned().unwrap_or_default();
            if !rules
                .iter()
                .any(|r| WATCHED.iter().any(|a| r["alert"] == *a))
            {
                continue;
            }
            let mut g = g.clone();
            g["rules"] = rules
                .into_iter()
                .map(|mut r| {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("annotations");
                    }
                    r
                })
                .collect();
            groups.push(g);
        }
    }
    json!({ "groups": groups })
}

/// What one scrape target of a node is labelled with by the chart's ServiceMonitor, and the
/// port Prometheus connects to.
struct Target {
    labels: Map<String, Value>,
    port: String,
}

fn service_monitor<'a>(objects: &'a [Value], app: &str, value: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ServiceMonitor" && o["spec"]["selector"]["matchLabels"][app] == value
        })
        .unwrap_or_else(|| panic!("no ServiceMonitor selecting {app}={value}"))
}

/// node-exporter: the chart's Service, picked by the ServiceMonitor's selector; `job` is the
/// Service's label the ServiceMonitor names as `jobLabel`.
fn node_exporter_targets(objects: &[Value]) -> Vec<Target> {
    let sm = service_monitor(
        objects,
        "app.kubernetes.io/name",
        "prometheus-node-exporter",
    );
    let sel = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let svc = objects
        .iter()
        .find(|o| {
            o["kind"] == "Service" && sel.iter().all(|(k, v)| &o["metadata"]["labels"][k] == v)
        })
        .expect("no Service for node-exporter's ServiceMonitor");
    let endpoint = &sm["spec"]["endpoints"][0];
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .expect("the ServiceMonitor's port is not the Service's");
    let job = &svc["metadata"]["labels"][sm["spec"]["jobLabel"].as_str().unwrap()];
    assert!(job.is_string(), "no job label on {svc:#}");
    NODES
        .iter()
        .map(|(_, addr)| {
            let port = port["targetPort"].to_string().trim_matches('"').to_string();
            let labels = json!({
                "job": job,
                "namespace": svc["metadata"]["namespace"],
                "service": svc["metadata"]["name"],
                "endpoint": endpoint["port"],
                // hostNetwork: the target is the node's own address.
                "instance": format!("{addr}:{port}"),
            });
            Target {
                labels: labels.as_object().unwrap().clone(),
                port,
            }
        })
        .collect()
}

/// The kubelet: its Service is made by the operator (`--kubelet-service`), carrying the labels the
/// ServiceMonitor selects; every endpoint (/metrics, /metrics/cadvisor, /metrics/probes) is a
/// target of its own, its path copied into `metrics_path` by the ServiceMonitor's relabelling.
fn kubelet_targets(objects: &[Value]) -> Vec<Vec<Target>> {
    let sm = service_monitor(objects, "k8s-app", "kubelet");
    let job = &sm["spec"]["selector"]["matchLabels"][sm["spec"]["jobLabel"].as_str().unwrap()];
    let service = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["args"].as_array().into_iter().flatten())
                .filter_map(|a| a.as_str()?.strip_prefix("--kubelet-service="))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .next()
        .expect("the operator makes no kubelet Service");
    let (ns, name) = service.split_once('/').unwrap();
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!([ns]),
        "the ServiceMonitor looks elsewhere"
    );
    NODES
        .iter()
        .map(|(_, addr)| {
            sm["spec"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let mut labels = json!({
                        "job": job, "namespace": ns, "service": name,
                        "endpoint": e["port"], "instance": format!("{addr}:10250"),
                    });
                    let relabels_path = e["relabelings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r["targetLabel"] == "metrics_path");
                    if relabels_path {
                        labels["metrics_path"] =
                            e.get("path").cloned().unwrap_or(json!("/metrics"));
                    }
                    Target {
                        labels: labels.as_object().unwrap().clone(),
                        port: "10250".into(),
                    }
                })
                .collect()
        })
        .collect()
}

fn within(addr: Ipv4Addr, net: &str) -> bool {
    let (ip, bits) = net.split_once('/').unwrap_or((net, "32"));
    let (ip, bits): (Ipv4Addr, u32) = (ip.parse().unwrap(), bits.parse().unwrap());
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(addr) & mask == u32::from(ip) & mask
}

/// Whether ufw rules like base-hardening's let a TCP connection to `port` in, arriving on
/// `iface` from `from` (a rule without a port, protocol or interface matches any).
fn allows(rules: &[Value], port: &str, iface: &str, from: &str) -> bool {
    let from: Ipv4Addr = from.parse().unwrap();
    rules.iter().any(|r| {
        let sources: Vec<&str> = match &r["from"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec!["0.0.0.0/0"],
        };
        r.get("port").is_none_or(|p| p == port)
            && r.get("proto").is_none_or(|p| p == "tcp")
            && r.get("interface").is_none_or(|i| i == iface)
            && sources.iter().any(|s| within(from, s))
    })
}

/// Whether Prometheus, on the server, reaches `port` on node `i` through that node's firewall:
/// its own node from the pod network, the other across wg0, masqueraded to the server's address.
fn reachable(firewall: &[Value], i: usize, port: &str) -> bool {
    if i == 0 {
        allows(firewall, port, "cni0", PROMETHEUS_POD)
    } else {
        allows(firewall, port, "wg0", NODES[0].1)
    }
}

/// The k3s rules base-hardening rendered before c27c65b: flannel and the kubelet open between
/// nodes, node-exporter not.
fn firewall_before_c27c65b() -> Vec<Value> {
    let nodes: Vec<&str> = NODES.iter().map(|n| n.1).collect();
    vec![
        json!({"from": "10.42.0.0/16", "comment": "k3s pods"}),
        json!({"from": "10.43.0.0/16", "comment": "k3s services"}),
        json!({"port": "8472", "proto": "udp", "interface": "wg0", "from": nodes, "comment": "k3s flannel vxlan"}),
        json!({"port": "10250", "proto": "tcp", "interface": "wg0", "from": nodes, "comment": "k3s kubelet"}),
    ]
}

/// Whether base-hardening creates the folder the chart points node-exporter's textfile
/// collector at (monitoring's `node_exporter_textfile_dir`).
fn base_hardening_makes_the_textfile_folder() -> bool {
    let want = role_ctx("monitoring", &[]);
    let want = Engine::new(&root())
        .eval("node_exporter_textfile_dir", &want)
        .unwrap()
        .0;
    let ctx = role_ctx("base-hardening", &[("firewall_k3s_nodes", json!([]))]);
    let engine = Engine::new(&root());
    role_resources("base-hardening").iter().any(|r| {
        let r = engine.render_value(r, &ctx).unwrap().0;
        r["directory"]["path"] == want
    })
}

/// A real node-exporter on loopback, its textfile collector reading `dir`.
struct Exporter {
    _daemon: Daemon,
    url: String,
}

fn exporter(bin: &Path, dir: &Path) -> Exporter {
    let port = free_port();
    let daemon = Daemon::spawn(
        "node-exporter",
        Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--collector.textfile.directory={}", dir.display())),
    );
    Exporter {
        _daemon: daemon,
        url: format!("http://127.0.0.1:{port}/metrics"),
    }
}

/// One lab as Prometheus sees it: per node, whether its firewall lets the scrapes in and which
/// exporter (folder present or missing) it runs.
struct Lab<'a> {
    name: &'a str,
    firewalls: [Vec<Value>; 2],
    exporters: [&'a Exporter; 2],
    /// Per watched alert, what must fire at the eval time (nothing: an empty list).
    fires: Vec<(&'a str, Vec<Value>)>,
}

fn series(name: &str, labels: &Map<String, Value>, value: f64) -> Value {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({"series": format!("{name}{{{}}}", l.join(",")), "values": format!("{value}x40")})
}

/// The series Prometheus stores for `lab`: `up` for every target (1 when the firewall lets the
/// scrape in and the exporter answers), and the exporter's own samples when it was scraped.
/// Returns them with the values scraped, for the report.
fn input_series(lab: &Lab, ne: &[Target], kubelet: &[Vec<Target>]) -> (Vec<Value>, Vec<String>) {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for i in 0..NODES.len() {
        let fw = &lab.firewalls[i];
        let t = &ne[i];
        let scraped = reachable(fw, i, &t.port).then(|| {
            wait_for("node-exporter's /metrics", 20, || {
                http_get(&lab.exporters[i].url)
            })
        });
        out.push(series(
            "up",
            &t.labels,
            if scraped.is_some() { 1.0 } else { 0.0 },
        ));
        match &scraped {
            Some(m) => {
                let err = sample(m, "node_textfile_scrape_error")
                    .unwrap_or_else(|| panic!("node-exporter has no node_textfile_scrape_error"));
                seen.push(format!(
                    "{}: node-exporter up=1, node_textfile_scrape_error={err}",
                    NODES[i].0
                ));
                out.push(series("node_textfile_scrape_error", &t.labels, err));
            }
            None => seen.push(format!("{}: node-exporter up=0 (firewall)", NODES[i].0)),
        }
        // No kubelet here: only the firewall decides, the kubelet itself answering.
        for t in &kubelet[i] {
            let up = reachable(fw, i, &t.port);
            out.push(series("up", &t.labels, if up { 1.0 } else { 0.0 }));
        }
    }
    (out, seen)
}

fn alert(labels: &Map<String, Value>, keep: &[&str], severity: &str) -> Value {
    let mut l: Map<String, Value> = labels
        .iter()
        .filter(|(k, _)| keep.is_empty() || keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert("severity".into(), json!(severity));
    json!({ "exp_labels": l })
}

#[test]
fn a_two_node_lab_fires_no_node_alert_for_good_and_the_old_setup_did() {
    let (Some(promtool), Some(ne_bin)) = (have("promtool"), have("prometheus-node-exporter"))
    else {
        return;
    };
    if have("curl").is_none() {
        return;
    }
    let Some(objects) = rendered_monitoring_chart() else {
        return;
    };
    let rules = watched_groups(&objects);
    let names: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    for a in WATCHED {
        assert!(
            names.iter().any(|n| n == a),
            "the chart has no {a}: {names:?}"
        );
    }
    let ne = node_exporter_targets(&objects);
    let kubelet = kubelet_targets(&objects);

    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("textfile");
    std::fs::create_dir(&present).unwrap();
    let with_folder = exporter(&ne_bin, &present);
    let without_folder = exporter(&ne_bin, &dir.path().join("never-made"));

    let fixed_fw = || [two_node_firewall(NODES[0].0), two_node_firewall(NODES[1].0)];
    // base-hardening runs on every node (cluster.rs checks site.yml): the folder is there or not
    // on both.
    let fixed_exporter = if base_hardening_makes_the_textfile_folder() {
        &with_folder
    } else {
        &without_folder
    };
    let target_down = |t: &Target| alert(&t.labels, &["job", "namespace", "service"], "warning");
    let agent_ne = &ne[1];
    let none = |a| (a, vec![]);
    // The chart's `for:` windows are at most 15m: at 20m (the eval time) a pending alert fired.
    let labs = [
        // Now: base-hardening opens the scraped ports and makes the folder on every node.
        Lab {
            name: "fixed",
            firewalls: fixed_fw(),
            exporters: [fixed_exporter, fixed_exporter],
            fires: WATCHED.iter().map(|a| none(*a)).collect(),
        },
        // Before c27c65b: node-exporter closed between nodes, the folder only where the backups
        // run (the server).
        Lab {
            name: "old",
            firewalls: [firewall_before_c27c65b(), firewall_before_c27c65b()],
            exporters: [&with_folder, &without_folder],
            fires: vec![
                ("TargetDown", vec![target_down(agent_ne)]),
                // Unreachable, the agent's collector error is never scraped: masked, not absent.
                none("NodeTextFileCollectorScrapeError"),
                none("KubeletInstanceUnreachable"),
            ],
        },
        // The firewall fixed alone: the agent's collector error shows.
        Lab {
            name: "no-folder",
            firewalls: fixed_fw(),
            exporters: [&with_folder, &without_folder],
            fires: vec![
                none("TargetDown"),
                (
                    "NodeTextFileCollectorScrapeError",
                    vec![alert(&agent_ne.labels, &[], "warning")],
                ),
                none("KubeletInstanceUnreachable"),
            ],
        },
    ];

    let rules_file = write(dir.path(), "chart-rules.yml", &rules.to_string());
    let o = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules_file));
    assert!(o.status.success(), "promtool check rules:\n{}", show(&o));
    let mut report = Vec::new();
    let mut tests = Vec::new();
    for lab in &labs {
        let name = lab.name;
        let (input, seen) = input_series(lab, &ne, &kubelet);
        report.push(format!("{name}: {}", seen.join("; ")));
        tests.push(json!({
            "name": name,
            "interval": "1m",
            "input_series": input,
            "alert_rule_test": lab.fires.iter().map(|(a, exp)| json!({
                "eval_time": "20m", "alertname": a, "exp_alerts": exp,
            })).collect::<Vec<_>>(),
        }));
    }
    let test_file = write(
        dir.path(),
        "two-node.test.yml",
        &json!({"rule_files": ["chart-rules.yml"], "evaluation_interval": "1m", "tests": tests})
            .to_string(),
    );
    let o = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .current_dir(dir.path()));
    assert!(o.status.success(), "promtool test rules:\n{}", show(&o));
    // What the real exporter said: the folder's absence is its error, nothing else; what the
    // firewall let through.
    assert_eq!(
        report,
        [
            "fixed: s1: node-exporter up=1, node_textfile_scrape_error=0; a1: node-exporter up=1, node_textfile_scrape_error=0",
            "old: s1: node-exporter up=1, node_textfile_scrape_error=0; a1: node-exporter up=0 (firewall)",
            "no-folder: s1: node-exporter up=1, node_textfile_scrape_error=0; a1: node-exporter up=1, node_textfile_scrape_error=1",
        ]
    );
}
