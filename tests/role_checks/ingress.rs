//! roles/ingress, rendered by the engine: the objects a real API server would get. No Kubernetes
//! is reachable here: these checks pin what Traefik and cert-manager read, and the whole-site test
//! applies the same manifests to the stand-ins (which refuse kinds whose CRD is not installed).

use serde_json::{json, Value};

use super::*;

fn objects(name: &str, overrides: &[(&str, Value)]) -> Vec<Value> {
    let ctx = role_ctx("ingress", overrides);
    render("ingress", name, &ctx)
        .0
        .split("\n---\n")
        .map(yaml)
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn issuers_are_lets_encrypt_staging_and_prod_over_http01_on_traefik() {
    let objs = objects("issuers.yaml.j2", &[("acme_email", json!("me@lab.test"))]);
    assert_eq!(
        kinds(&objs),
        [
            "ClusterIssuer/letsencrypt-staging",
            "ClusterIssuer/letsencrypt-prod"
        ]
    );
    for o in &objs {
        let acme = &o["spec"]["acme"];
        assert_eq!(acme["email"], "me@lab.test");
        assert!(acme["server"]
            .as_str()
            .unwrap()
            .starts_with("https://acme-"));
        assert_eq!(
            acme["solvers"][0]["http01"]["ingress"]["ingressClassName"],
            "traefik"
        );
    }
    assert!(objs[0]["spec"]["acme"]["server"]
        .as_str()
        .unwrap()
        .contains("staging"));
    assert!(!objs[1]["spec"]["acme"]["server"]
        .as_str()
        .unwrap()
        .contains("staging"));
}

#[test]
fn admin_uis_are_https_and_allow_only_the_vpn() {
    let objs = objects(
        "admin-uis.yaml.j2",
        &[
            ("wg_subnet", json!("10.77.0.0/24")),
            ("lab_domain", json!("lab.test")),
            ("acme_issuer", json!("letsencrypt-prod")),
        ],
    );
    assert_eq!(
        kinds(&objs),
        [
            "Middleware/vpn-only",
            "Middleware/vpn-only",
            "Ingress/argocd-vpn",
            "Ingress/grafana-vpn",
            "Ingress/alertmanager-vpn"
        ]
    );
    let mw: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Middleware").collect();
    for m in &mw {
        assert_eq!(
            m["spec"]["ipAllowList"]["sourceRange"],
            json!(["10.77.0.0/24"])
        );
    }
    let mw_namespaces: Vec<&str> = mw
        .iter()
        .map(|m| m["metadata"]["namespace"].as_str().unwrap())
        .collect();
    for ing in objs.iter().filter(|o| o["kind"] == "Ingress") {
        let ns = ing["metadata"]["namespace"].as_str().unwrap();
        assert!(mw_namespaces.contains(&ns), "{ns} has no allow-list");
        let a = &ing["metadata"]["annotations"];
        assert_eq!(
            a["traefik.ingress.kubernetes.io/router.middlewares"],
            format!("{ns}-vpn-only@kubernetescrd")
        );
        assert_eq!(a["cert-manager.io/cluster-issuer"], "letsencrypt-prod");
        let host = ing["spec"]["rules"][0]["host"].as_str().unwrap();
        assert!(host.ends_with(".lab.test"));
        assert_eq!(ing["spec"]["tls"][0]["hosts"], json!([host]));
        assert!(ing["spec"]["tls"][0]["secretName"]
            .as_str()
            .unwrap()
            .ends_with("-tls"));
    }
}

#[test]
fn the_sample_site_is_public_with_a_certificate_and_traefik_keeps_client_addresses() {
    let objs = objects(
        "sample-ingress.yaml.j2",
        &[("lab_domain", json!("lab.test"))],
    );
    assert_eq!(
        kinds(&objs),
        [
            "Namespace/hello",
            "Deployment/hello",
            "Service/hello",
            "Ingress/hello"
        ]
    );
    let ing = &objs[3];
    assert!(ing["metadata"]["annotations"]
        .get("traefik.ingress.kubernetes.io/router.middlewares")
        .is_none());
    assert_eq!(ing["spec"]["tls"][0]["hosts"], json!(["hello.lab.test"]));
    assert_eq!(
        objs[1]["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/traefik/whoami:v1.11.0"
    );
    let t = objects("traefik-config.yaml.j2", &[]);
    let v = yaml(t[0]["spec"]["valuesContent"].as_str().unwrap());
    assert_eq!(v["service"]["spec"]["externalTrafficPolicy"], "Local");
    let (vals, _) = render_values("cert-manager.yaml.j2", &role_ctx("ingress", &[]));
    let vals = yaml(&vals);
    assert_eq!(vals["crds"]["enabled"], true);
    assert_eq!(vals["acmesolver"]["image"]["tag"], "v1.21.1");
}

/// The role labels k3s itself puts on a node (pkg/server setNodeLabelsAndAnnotations: servers
/// only; agents get none of them), beside the kubelet's own.
fn k3s_node_labels(name: &str, server: bool) -> Value {
    let mut l = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
    });
    if server {
        l["node-role.kubernetes.io/control-plane"] = json!("true");
        l["node-role.kubernetes.io/master"] = json!("true");
    }
    l
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// With externalTrafficPolicy Local, ServiceLB answers only on nodes holding a Traefik pod, and
/// DNS points at the server: Traefik must be scheduled there and nowhere else.
#[test]
fn traefik_runs_only_on_the_server_dns_points_at() {
    let t = objects("traefik-config.yaml.j2", &[]);
    assert_eq!(
        (t[0]["kind"].as_str(), t[0]["metadata"]["name"].as_str()),
        (Some("HelmChartConfig"), Some("traefik"))
    );
    let v = yaml(t[0]["spec"]["valuesContent"].as_str().unwrap());
    assert_eq!(v["service"]["spec"]["externalTrafficPolicy"], "Local");
    let sel = &v["nodeSelector"];
    assert!(
        sel.as_object().is_some_and(|m| !m.is_empty()),
        "no nodeSelector: Traefik may land on an agent nobody's DNS points at: {v:#}"
    );
    assert!(
        selects(sel, &k3s_node_labels("lab-server-1", true)),
        "{sel}"
    );
    assert!(
        !selects(sel, &k3s_node_labels("lab-agent-1", false)),
        "{sel}"
    );
    // k3s's own values tolerate its control-plane taints; a list here would replace them.
    assert!(v.get("tolerations").is_none(), "{v:#}");

    // An override for a multi-server lab reaches the chart as given.
    let t = objects(
        "traefik-config.yaml.j2",
        &[(
            "traefik_node_selector",
            json!({"kubernetes.io/hostname": "lab-server-2"}),
        )],
    );
    let v = yaml(t[0]["spec"]["valuesContent"].as_str().unwrap());
    assert!(selects(
        &v["nodeSelector"],
        &k3s_node_labels("lab-server-2", true)
    ));
    assert!(!selects(
        &v["nodeSelector"],
        &k3s_node_labels("lab-server-1", true)
    ));
}

/// The admin UIs' Ingresses point at Services the real kube-prometheus-stack chart makes, for
/// the default release and for others (whose names the chart derives differently).
#[test]
fn the_admin_uis_name_the_monitoring_charts_services_for_any_release() {
    for release in ["monitoring", "mon", "lab-observability-staging"] {
        let Some(chart) = super::alerts::rendered_monitoring_chart_with(&[&format!(
            "monitoring_release={release}"
        )]) else {
            return;
        };
        let services: Vec<(String, String)> = chart
            .iter()
            .filter(|o| o["kind"] == "Service")
            .map(|o| {
                (
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let objs = objects(
            "admin-uis.yaml.j2",
            &[
                ("lab_domain", json!("lab.test")),
                ("monitoring_release", json!(release)),
            ],
        );
        for ui in ["grafana-vpn", "alertmanager-vpn"] {
            let ing = objs
                .iter()
                .find(|o| o["kind"] == "Ingress" && o["metadata"]["name"] == ui)
                .unwrap_or_else(|| panic!("no Ingress {ui}"));
            let ns = ing["metadata"]["namespace"].as_str().unwrap().to_string();
            let svc = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                services.contains(&(ns.clone(), svc.clone())),
                "release {release}: {ui} points at {ns}/{svc}, which the chart does not make; it makes {services:?}"
            );
        }
    }
}
