//! The volume backup's list of the lab's PVCs (roles/backups `volume_backup_pvcs`) against the
//! PVCs the roles really make: Redis's StatefulSet claim (roles/redis's template rendered from
//! its defaults) and kube-prometheus-stack's (the kept chart rendered by the real helm through
//! `labctl render`: Grafana's PVC, and the claims the Prometheus operator makes for the
//! Prometheus and Alertmanager it defines). A renamed release or a chart change cannot leave a
//! volume out silently; and the names follow the inventory's vars.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::alerts::{rendered_monitoring_chart, rendered_monitoring_chart_with};
use super::*;

/// A plain value of a role's defaults.yml.
fn default_of(role: &str, key: &str) -> String {
    let text = std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap();
    yaml(&text)[key]
        .as_str()
        .unwrap_or_else(|| panic!("{role}: no {key}"))
        .to_string()
}

/// VOLUME_BACKUP_PVCS as the backups role writes it for `ctx`.
fn listed(ctx: &Ctx) -> BTreeSet<String> {
    let (env, _) = render("backups", "labctl-volume-backup.env.j2", ctx);
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME_BACKUP_PVCS="))
        .unwrap_or_else(|| panic!("no VOLUME_BACKUP_PVCS in:\n{env}"));
    line.trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The claims a StatefulSet's pods get: CLAIM-STATEFULSET-ORDINAL, in its namespace.
fn statefulset_claims(sts: &Value) -> Vec<String> {
    let ns = sts["metadata"]["namespace"].as_str().unwrap();
    let name = sts["metadata"]["name"].as_str().unwrap();
    let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
    let mut v = Vec::new();
    for t in sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let claim = t["metadata"]["name"].as_str().unwrap();
        for i in 0..replicas {
            v.push(format!("{ns}/{claim}-{name}-{i}"));
        }
    }
    v
}

/// The claim the Prometheus operator makes for a Prometheus or Alertmanager with storage:
/// its StatefulSet is KIND-NAME, the claim template KIND-NAME-db unless the spec names it.
fn operator_claim(o: &Value, ns: &str) -> Option<String> {
    let tmpl = o["spec"]["storage"].get("volumeClaimTemplate")?;
    let kind = o["kind"].as_str().unwrap().to_lowercase();
    let name = o["metadata"]["name"].as_str().unwrap();
    let claim = tmpl["metadata"]["name"]
        .as_str()
        .map(String::from)
        .unwrap_or(format!("{kind}-{name}-db"));
    Some(format!("{ns}/{claim}-{kind}-{name}-0"))
}

/// The claims kube-prometheus-stack's output makes: its own PVCs (Grafana's), its
/// StatefulSets' claims, and the operator's for each Prometheus and Alertmanager; objects
/// without a namespace are in `ns`.
fn chart_claims(chart: &[Value], ns: &str) -> BTreeSet<String> {
    let mut made = BTreeSet::new();
    for o in chart {
        match o["kind"].as_str() {
            Some("PersistentVolumeClaim") => {
                made.insert(format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or(ns),
                    o["metadata"]["name"].as_str().unwrap()
                ));
            }
            Some("StatefulSet") => made.extend(statefulset_claims(o)),
            Some("Prometheus") | Some("Alertmanager") => made.extend(operator_claim(o, ns)),
            _ => {}
        }
    }
    made
}

#[test]
fn the_volume_backup_lists_every_pvc_the_roles_make_but_postgres() {
    let Some(chart) = rendered_monitoring_chart() else {
        return;
    };
    let mut made = BTreeSet::new();
    let (redis, _) = render("redis", "redis.k8s.j2", &role_ctx("redis", &[]));
    for d in redis
        .split("\n---")
        .map(yaml)
        .filter(|d| d["kind"] == "StatefulSet")
    {
        made.extend(statefulset_claims(&d));
    }
    let ns = default_of("monitoring", "monitoring_namespace");
    made.extend(chart_claims(&chart, &ns));
    // Redis's, Grafana's, Prometheus's and Alertmanager's.
    assert_eq!(made.len(), 4, "{made:#?}");
    let list = listed(&role_ctx("backups", &[]));
    assert_eq!(list, made, "volume_backup_pvcs against what the roles make");
    // PostgreSQL's volume is backed up by pg_dump, never as a folder.
    let pg_ns = default_of("postgres", "postgres_namespace");
    assert!(
        !list.iter().any(|p| p.starts_with(&format!("{pg_ns}/"))),
        "{list:?}"
    );
}

/// The chart names its objects after its fullname, which depends on the release name (its
/// _helpers.tpl): the list must follow it for any release, not only the default `monitoring`.
/// Each release here is the real chart rendered again with that `monitoring_release`.
#[test]
fn the_monitoring_pvcs_follow_any_release_name() {
    let ns = default_of("monitoring", "monitoring_namespace");
    for release in [
        // Short: RELEASE-kube-prometheus-stack fits in the chart's 26 characters.
        "mon",
        // Long: cut to 26 right after a `-`, which the chart drops.
        "lab-observability-staging",
        // Holding both charts' names: the release itself is the fullname, cut to 26 for
        // Prometheus and Alertmanager, whole for Grafana.
        "kube-prometheus-stack-grafana",
    ] {
        let Some(chart) =
            rendered_monitoring_chart_with(&[&format!("monitoring_release={release}")])
        else {
            return;
        };
        let made = chart_claims(&chart, &ns);
        assert_eq!(made.len(), 3, "{release}: {made:#?}");
        let list: BTreeSet<String> = listed(&role_ctx(
            "backups",
            &[("monitoring_release", json!(release))],
        ))
        .into_iter()
        .filter(|p| p.starts_with(&format!("{ns}/")))
        .collect();
        assert_eq!(
            list, made,
            "release {release}: volume_backup_pvcs against the chart's claims"
        );
    }
}

#[test]
fn the_lab_pvc_names_follow_the_inventory() {
    let list = listed(&role_ctx(
        "backups",
        &[
            ("redis_namespace", json!("cache-staging")),
            ("redis_name", json!("kv")),
            ("monitoring_release", json!("mon")),
        ],
    ));
    assert!(list.contains("cache-staging/data-kv-0"), "{list:?}");
    assert!(list.contains("monitoring/mon-grafana"), "{list:?}");
    // The chart's fullname for `mon` is mon-kube-prometheus-stack (26 characters fit it whole).
    assert!(
        list.contains("monitoring/prometheus-mon-kube-prometheus-stack-prometheus-db-prometheus-mon-kube-prometheus-stack-prometheus-0"),
        "{list:?}"
    );
    assert!(
        list.contains("monitoring/alertmanager-mon-kube-prometheus-stack-alertmanager-db-alertmanager-mon-kube-prometheus-stack-alertmanager-0"),
        "{list:?}"
    );
}
