//! The rules that span objects: what a real cluster refuses, or never makes work, although each
//! object alone is valid. Namespaces and CRDs must exist before what uses them is sent; NodePorts
//! must be in range and unique; the Secrets and ConfigMaps a pod reads must exist with their keys;
//! a Service's selector must pick some pod. Objects that operators and k3s create at run time
//! count as existing ([`produced`], [`k3s_packaged`]): they are not in the site's output, yet
//! pods and Services rely on them.

// Until the render gate calls `check` (the lead's src/cluster/gate.rs), nothing here is used.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use serde_json::Value;

use super::{group_version, Placed, Problem, Scopes};

/// The namespaces every cluster has from its start (kube-apiserver's system namespaces
/// controller creates them).
const BUILTIN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// kube-apiserver's default `--service-node-port-range`. k3s passes it through unchanged unless
/// its config sets `service-node-port-range` (roles/k3s does not).
pub const NODE_PORT_RANGE: RangeInclusive<u64> = 30000..=32767;

/// Every problem of the rules, sorted and deduplicated, on a k3s with all its packaged
/// components (nothing in k3s's `disable:`).
pub fn check(objs: &[Placed], scopes: &dyn Scopes) -> Vec<Problem> {
    check_on_k3s(objs, scopes, &[])
}

/// As [`check`], on a k3s started with `disable: k3s_disabled` (its packaged components that
/// are not deployed, e.g. `coredns`, `traefik`).
pub fn check_on_k3s(objs: &[Placed], scopes: &dyn Scopes, k3s_disabled: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    namespaces(objs, scopes, &mut out);
    crds(objs, scopes, &mut out);
    node_ports(objs, &mut out);
    let mut made: Vec<(Produced, String)> = objs
        .iter()
        .flat_map(|o| produced(o, objs).into_iter().map(|p| (p, o.whence())))
        .collect();
    made.extend(
        k3s_packaged(k3s_disabled)
            .into_iter()
            .map(|p| (p, "k3s".to_string())),
    );
    references(objs, &made, &mut out);
    selectors(objs, &made, &mut out);
    out.sort();
    out.dedup();
    out
}

fn problem(o: &Placed, namespaced: bool, message: String) -> Problem {
    Problem {
        whence: o.whence(),
        object: o.label(namespaced),
        message,
    }
}

fn is(o: &Placed, group: &str, kind: &str) -> bool {
    o.kind() == kind && group_version(o.api_version()).0 == group
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn items<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn keys_of(v: &Value, fields: &[&str]) -> BTreeSet<String> {
    fields
        .iter()
        .filter_map(|f| v.get(*f).and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// Is `o` sent after `before` (so it may rely on it)? A manifest sends its objects in order.
fn sent_after(o: &Placed, i: usize, before: &Placed, j: usize) -> bool {
    before.order < o.order || (before.order == o.order && j < i)
}

// ---------------------------------------------------------------------------------------------
// 1. Namespaces before use

fn namespaces(objs: &[Placed], scopes: &dyn Scopes, out: &mut Vec<Problem>) {
    let ns_objects: Vec<(usize, &Placed)> = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| is(o, "", "Namespace"))
        .collect();
    for (i, o) in objs.iter().enumerate() {
        // Unknown kinds are the schema check's to report.
        if scopes.namespaced(o.api_version(), o.kind()) != Some(true) {
            continue;
        }
        let ns = o.namespace.as_str();
        if BUILTIN_NAMESPACES.contains(&ns) {
            continue;
        }
        let same: Vec<&(usize, &Placed)> =
            ns_objects.iter().filter(|(_, n)| n.name() == ns).collect();
        // Helm sorts a release's objects by kind before creating them, Namespace first (helm's
        // kind_sorter InstallOrder), so a chart's own Namespace is there before its other objects.
        let exists = same.iter().any(|(j, n)| {
            sent_after(o, i, n, *j)
                || (n.release.is_some() && n.release == o.release && n.order == o.order)
        });
        if exists {
            continue;
        }
        let message = match same.first() {
            Some((_, later)) => format!(
                "namespace {ns} does not exist yet when this is sent: its Namespace comes later, \
                 from {}; move that resource before this one",
                later.whence()
            ),
            None => format!(
                "namespace {ns} does not exist: nothing creates it; add a Namespace {ns} in an \
                 earlier resource (or create_namespace: true on the release)"
            ),
        };
        out.push(problem(o, true, message));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. CRD before custom resource

/// Does a CRD serve `apiVersion`/`kind`? Only a version with `served: true` answers requests.
fn crd_serves(crd: &Placed, api_version: &str, kind: &str) -> bool {
    let (group, version) = group_version(api_version);
    let spec = &crd.value["spec"];
    spec["group"].as_str() == Some(group)
        && spec["names"]["kind"].as_str() == Some(kind)
        && items(spec, "/versions")
            .any(|v| v["name"].as_str() == Some(version) && v["served"].as_bool() == Some(true))
}

/// A CRD from a chart's `crds/` directory (helm's `# Source: CHART/crds/…` or
/// `CHART/charts/SUB/crds/…`), not from its templates.
fn from_crds_dir(crd: &Placed) -> bool {
    crd.source.as_deref().is_some_and(|s| {
        let parts: Vec<&str> = s.split('/').collect();
        parts.contains(&"crds") && !parts.contains(&"templates")
    })
}

fn crds(objs: &[Placed], scopes: &dyn Scopes, out: &mut Vec<Problem>) {
    let defs: Vec<(usize, &Placed)> = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| is(o, "apiextensions.k8s.io", "CustomResourceDefinition"))
        .collect();
    for o in objs {
        let serving: Vec<&(usize, &Placed)> = defs
            .iter()
            .filter(|(_, d)| crd_serves(d, o.api_version(), o.kind()))
            .collect();
        let Some((_, first)) = serving.first() else {
            continue;
        };
        // Helm installs a chart's crds/ directory, and waits for those CRDs to be established,
        // before it maps and creates the templates. A CRD among the templates is no help to a
        // custom resource of the same release: helm maps every template against the API
        // server's discovery before creating any, so a first install fails with "resource
        // mapping not found … ensure CRDs are installed first" (helm docs, chart best practices,
        // Custom Resource Definitions).
        let ok = serving.iter().any(|(_, d)| {
            d.order < o.order
                || (d.release.is_some()
                    && d.release == o.release
                    && d.order == o.order
                    && from_crds_dir(d))
        });
        if ok {
            continue;
        }
        let namespaced = scopes.namespaced(o.api_version(), o.kind()) == Some(true);
        let crd = first.name();
        let message =
            if first.release.is_some() && first.release == o.release && first.order == o.order {
                format!(
                    "sent in the same release as its CustomResourceDefinition {crd}, which is a \
                 template ({}), not in the chart's crds/ directory: helm maps every template \
                 before creating any, so a first install fails (\"ensure CRDs are installed \
                 first\"); install the CRD in an earlier resource",
                    first.source.as_deref().unwrap_or("?")
                )
            } else if first.order == o.order {
                format!(
                "sent in the same manifest as its CustomResourceDefinition {crd}: the API server \
                 serves {} {} only once the CRD is established, a moment after it is created; \
                 move the CRD to an earlier resource",
                o.api_version(),
                o.kind()
            )
            } else {
                format!(
                    "sent before its CustomResourceDefinition {crd}, which comes from {}: the API \
                 server does not know {} {} yet; move this resource after that one",
                    first.whence(),
                    o.api_version(),
                    o.kind()
                )
            };
        out.push(problem(o, namespaced, message));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. NodePorts

fn node_ports(objs: &[Placed], out: &mut Vec<Problem>) {
    // nodePort → the first Service that takes it. The API server allocates node ports from one
    // pool whatever the protocol, so a second Service asking for the same one is refused
    // ("provided port is already allocated").
    let mut taken: BTreeMap<u64, &Placed> = BTreeMap::new();
    for o in objs.iter().filter(|o| is(o, "", "Service")) {
        let ty = str_at(&o.value, "/spec/type").unwrap_or("ClusterIP");
        let mut own: BTreeSet<(u64, String)> = BTreeSet::new();
        for (n, port) in items(&o.value, "/spec/ports").enumerate() {
            let Some(np) = port.get("nodePort").and_then(Value::as_u64) else {
                continue;
            };
            let pname = port
                .get("name")
                .and_then(Value::as_str)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            if ty != "NodePort" && ty != "LoadBalancer" {
                // Service validation: "may not be used when `type` is 'ClusterIP'".
                out.push(problem(
                    o,
                    true,
                    format!(
                        "spec.ports[{n}]{pname}: nodePort {np} on a Service of type {ty}: the API \
                         server refuses it; set type: NodePort or remove the nodePort"
                    ),
                ));
                continue;
            }
            if !NODE_PORT_RANGE.contains(&np) {
                out.push(problem(
                    o,
                    true,
                    format!(
                        "spec.ports[{n}]{pname}: nodePort {np} is outside the cluster's NodePort \
                         range {}-{}; pick one inside it",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                ));
                continue;
            }
            // One Service may use a node port once per protocol (TCP and UDP on 53 is usual).
            let proto = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string();
            let again = own.iter().any(|(p, _)| *p == np);
            if !own.insert((np, proto.clone())) {
                out.push(problem(
                    o,
                    true,
                    format!("spec.ports[{n}]{pname}: nodePort {np}/{proto} appears twice in this Service"),
                ));
                continue;
            }
            if again {
                continue;
            }
            match taken.get(&np) {
                Some(first) => {
                    let msg = |other: &Placed| {
                        format!(
                            "nodePort {np} is used by two Services, {} ({}) and {} ({}); give one \
                             another port",
                            first.label(true),
                            first.whence(),
                            other.label(true),
                            other.whence()
                        )
                    };
                    out.push(problem(o, true, msg(o)));
                    out.push(problem(first, true, msg(o)));
                }
                None => {
                    taken.insert(np, o);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What operators and k3s create at run time

/// One object made at run time: a Secret or ConfigMap (with its keys) or a Pod (with its
/// labels), in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// `Secret`, `ConfigMap` or `Pod`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub keys: BTreeSet<String>,
    pub labels: BTreeMap<String, String>,
}

impl Produced {
    fn secret<K: AsRef<str>>(ns: &str, name: &str, keys: &[K]) -> Self {
        Produced {
            kind: "Secret",
            namespace: ns.to_string(),
            name: name.to_string(),
            keys: keys.iter().map(|k| k.as_ref().to_string()).collect(),
            labels: BTreeMap::new(),
        }
    }
    fn pod(ns: &str, name: &str, labels: BTreeMap<String, String>) -> Self {
        Produced {
            kind: "Pod",
            namespace: ns.to_string(),
            name: name.to_string(),
            keys: BTreeSet::new(),
            labels,
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the cluster makes at run time from `o` (the rest of `objs` for what it refers to), for
/// the kinds this lab sends. Each entry says where its behaviour is written.
pub fn produced(o: &Placed, objs: &[Placed]) -> Vec<Produced> {
    let ns = o.namespace.as_str();
    let name = o.name();
    let spec = &o.value["spec"];
    let mut out = Vec::new();
    match (group_version(o.api_version()).0, o.kind()) {
        // The token controller (kube-controller-manager) fills a Secret of this type with the
        // ServiceAccount's token, the cluster CA and the namespace: Kubernetes docs, "Secrets",
        // "Service account token Secrets"; pkg/controller/serviceaccount/tokens_controller.go.
        ("", "Secret")
            if o.value["type"].as_str() == Some("kubernetes.io/service-account-token") =>
        {
            out.push(Produced::secret(
                ns,
                name,
                &["token", "ca.crt", "namespace"],
            ));
        }
        // cert-manager v1.21 writes the issued pair into spec.secretName
        // (pkg/controller/certificates/issuing/internal/secret.go, SecretsManager.UpdateData):
        // tls.crt and tls.key always; ca.crt only when the issuer returns a CA (a CA,
        // self-signed or Vault issuer does; ACME does not); key.der / tls-combined.pem for
        // additionalOutputFormats DER / CombinedPEM; keystore.p12 / keystore.jks (and their
        // truststore.* when there is a CA) for spec.keystores.{pkcs12,jks}.create.
        ("cert-manager.io", "Certificate") => {
            if let Some(secret) = spec["secretName"].as_str() {
                let ca = issuer_gives_ca(o, objs);
                let mut keys: Vec<String> = vec!["tls.crt".into(), "tls.key".into()];
                if ca {
                    keys.push("ca.crt".into());
                }
                for f in items(spec, "/additionalOutputFormats") {
                    match f["type"].as_str() {
                        Some("DER") => keys.push("key.der".into()),
                        Some("CombinedPEM") => keys.push("tls-combined.pem".into()),
                        _ => {}
                    }
                }
                for (store, ext) in [("pkcs12", "p12"), ("jks", "jks")] {
                    if spec["keystores"][store]["create"].as_bool() == Some(true) {
                        keys.push(format!("keystore.{ext}"));
                        if ca {
                            keys.push(format!("truststore.{ext}"));
                        }
                    }
                }
                out.push(Produced::secret(ns, secret, &keys));
            }
        }
        // CloudNativePG 1.30 (the operator of chart cloudnative-pg-v0.29.0):
        // - credentials (internal/controller/cluster_create.go, reconcileSuperuserSecret /
        //   reconcileAppUserSecret; keys from pkg/specs/secrets.go, CreateSecret): NAME-app unless
        //   the bootstrap names its own secret, NAME-superuser only with enableSuperuserAccess and
        //   no spec.superuserSecret;
        // - certificates (api/v1/cluster_funcs.go, Get*SecretName; keys from pkg/certs/certs.go):
        //   NAME-ca (ca.crt, ca.key) unless spec.certificates names the CAs, NAME-server and
        //   NAME-replication (tls.crt, tls.key) unless it names them;
        // - instance pods (pkg/specs/pods.go, NewInstance; role labels set by
        //   utils.SetInstanceRole): the primary, and replicas when instances > 1.
        ("postgresql.cnpg.io", "Cluster") => {
            const CRED: [&str; 11] = [
                "username",
                "user",
                "password",
                "dbname",
                "host",
                "port",
                "pgpass",
                "uri",
                "jdbc-uri",
                "fqdn-uri",
                "fqdn-jdbc-uri",
            ];
            let boot = &spec["bootstrap"];
            let own_app = ["initdb", "recovery", "pg_basebackup"].iter().any(|b| {
                boot[b]["secret"]["name"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            });
            if !own_app {
                out.push(Produced::secret(ns, &format!("{name}-app"), &CRED));
            }
            let own_super = spec["superuserSecret"]["name"]
                .as_str()
                .is_some_and(|s| !s.is_empty());
            if spec["enableSuperuserAccess"].as_bool() == Some(true) && !own_super {
                out.push(Produced::secret(ns, &format!("{name}-superuser"), &CRED));
            }
            let certs = &spec["certificates"];
            let given = |f: &str| certs[f].as_str().is_some_and(|s| !s.is_empty());
            if !given("serverCASecret") || !given("clientCASecret") {
                out.push(Produced::secret(
                    ns,
                    &format!("{name}-ca"),
                    &["ca.crt", "ca.key"],
                ));
            }
            if !given("serverTLSSecret") {
                out.push(Produced::secret(
                    ns,
                    &format!("{name}-server"),
                    &["tls.crt", "tls.key"],
                ));
            }
            if !given("replicationTLSSecret") {
                out.push(Produced::secret(
                    ns,
                    &format!("{name}-replication"),
                    &["tls.crt", "tls.key"],
                ));
            }
            let mut base = string_map(spec.pointer("/inheritedMetadata/labels"));
            base.extend(labels(&[
                ("cnpg.io/cluster", name),
                ("cnpg.io/podRole", "instance"),
                ("app.kubernetes.io/name", "postgresql"),
                ("app.kubernetes.io/instance", name),
                ("app.kubernetes.io/component", "database"),
                ("app.kubernetes.io/managed-by", "cloudnative-pg"),
            ]));
            let instances = spec["instances"].as_u64().unwrap_or(1);
            for (role, n) in [("primary", 1), ("replica", 2)] {
                if instances >= n {
                    let mut l = base.clone();
                    l.extend(labels(&[("cnpg.io/instanceRole", role), ("role", role)]));
                    out.push(Produced::pod(ns, &format!("{name} instance ({role})"), l));
                }
            }
        }
        // prometheus-operator v0.93 (kube-prometheus-stack 88.5.3): the StatefulSet pods carry
        // spec.podMetadata.labels under the selector labels (pkg/prometheus/promcfg.go,
        // BuildPodMetadata; pkg/prometheus/server/operator.go, makeSelectorLabels;
        // statefulset.go adds operator.prometheus.io/shard per shard). The version label is left
        // out: it follows the image, which this check does not know.
        ("monitoring.coreos.com", "Prometheus") => {
            let mut base = string_map(spec.pointer("/podMetadata/labels"));
            base.extend(labels(&[
                ("app.kubernetes.io/managed-by", "prometheus-operator"),
                ("app.kubernetes.io/name", "prometheus"),
                ("app.kubernetes.io/instance", name),
                ("operator.prometheus.io/name", name),
                ("prometheus", name),
            ]));
            for shard in 0..spec["shards"].as_u64().unwrap_or(1).max(1) {
                let mut l = base.clone();
                l.insert("operator.prometheus.io/shard".into(), shard.to_string());
                out.push(Produced::pod(
                    ns,
                    &format!("prometheus-{name}-shard-{shard}"),
                    l,
                ));
            }
        }
        // pkg/alertmanager/statefulset.go (makeStatefulSetSpec) and operator.go
        // (makeSelectorLabels), v0.93: podMetadata labels, then the selector labels over them.
        ("monitoring.coreos.com", "Alertmanager") => {
            let mut l = string_map(spec.pointer("/podMetadata/labels"));
            l.extend(labels(&[
                ("app.kubernetes.io/name", "alertmanager"),
                ("app.kubernetes.io/managed-by", "prometheus-operator"),
                ("app.kubernetes.io/instance", name),
                ("alertmanager", name),
            ]));
            out.push(Produced::pod(ns, &format!("alertmanager-{name}"), l));
        }
        _ => {}
    }
    out
}

/// Does the Certificate's issuer hand back a CA? Known only when the issuer is among `objs`.
fn issuer_gives_ca(cert: &Placed, objs: &[Placed]) -> bool {
    let r = &cert.value["spec"]["issuerRef"];
    let Some(name) = r["name"].as_str() else {
        return false;
    };
    let kind = r["kind"].as_str().unwrap_or("Issuer");
    objs.iter()
        .find(|i| {
            is(i, "cert-manager.io", kind)
                && i.name() == name
                && (kind == "ClusterIssuer" || i.namespace == cert.namespace)
        })
        .is_some_and(|i| {
            ["ca", "selfSigned", "vault"]
                .iter()
                .any(|k| i.value["spec"].get(*k).is_some())
        })
}

/// The pods k3s deploys from its packaged manifests (/var/lib/rancher/k3s/server/manifests)
/// unless its config lists them under `disable:`. Only what the charts here select:
/// the kube-prometheus-stack CoreDNS Service selects `k8s-app: kube-dns` in kube-system, the
/// labels of k3s's manifests/coredns.yaml.
pub fn k3s_packaged(disabled: &[String]) -> Vec<Produced> {
    let mut out = Vec::new();
    if !disabled.iter().any(|d| d == "coredns") {
        out.push(Produced::pod(
            "kube-system",
            "coredns",
            labels(&[("k8s-app", "kube-dns")]),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4. Referenced Secrets and ConfigMaps exist with their keys

/// The pod template of a workload, with the labels its pods get.
fn pod_template(o: &Placed) -> Option<(BTreeMap<String, String>, &Value)> {
    let v = &o.value;
    let (meta, spec) = match (group_version(o.api_version()).0, o.kind()) {
        ("", "Pod") => ("/metadata/labels", "/spec"),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            ("/spec/template/metadata/labels", "/spec/template/spec")
        }
        ("batch", "CronJob") => (
            "/spec/jobTemplate/spec/template/metadata/labels",
            "/spec/jobTemplate/spec/template/spec",
        ),
        _ => return None,
    };
    Some((string_map(v.pointer(meta)), v.pointer(spec)?))
}

/// One reference from a pod template: `where` for the message, and what it needs.
struct Ref {
    at: String,
    kind: &'static str,
    name: String,
    keys: Vec<String>,
}

fn optional(v: &Value) -> bool {
    v.get("optional").and_then(Value::as_bool) == Some(true)
}

fn refs(spec: &Value) -> Vec<Ref> {
    let mut out = Vec::new();
    let mut push =
        |at: String, kind: &'static str, r: &Value, name_field: &str, keys: Vec<String>| {
            // optional: true: the kubelet starts the container without it (Kubernetes docs,
            // "Secrets" / "ConfigMaps": optional references).
            if optional(r) {
                return;
            }
            if let Some(name) = r.get(name_field).and_then(Value::as_str) {
                out.push(Ref {
                    at,
                    kind,
                    name: name.to_string(),
                    keys,
                });
            }
        };
    for list in ["initContainers", "containers"] {
        for c in items(spec, &format!("/{list}")) {
            let cname = c["name"].as_str().unwrap_or("?");
            for e in items(c, "/env") {
                let var = e["name"].as_str().unwrap_or("?");
                for (field, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")]
                {
                    if let Some(r) = e.pointer(&format!("/valueFrom/{field}")) {
                        let keys = r["key"]
                            .as_str()
                            .map(|k| vec![k.to_string()])
                            .unwrap_or_default();
                        push(
                            format!("container {cname}, env {var}"),
                            kind,
                            r,
                            "name",
                            keys,
                        );
                    }
                }
            }
            for e in items(c, "/envFrom") {
                for (field, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
                    if let Some(r) = e.get(field) {
                        push(
                            format!("container {cname}, envFrom"),
                            kind,
                            r,
                            "name",
                            vec![],
                        );
                    }
                }
            }
        }
    }
    let item_keys = |v: &Value| -> Vec<String> {
        items(v, "/items")
            .filter_map(|i| i["key"].as_str().map(str::to_string))
            .collect()
    };
    for vol in items(spec, "/volumes") {
        let vname = vol["name"].as_str().unwrap_or("?");
        if let Some(s) = vol.get("secret") {
            push(
                format!("volume {vname}"),
                "Secret",
                s,
                "secretName",
                item_keys(s),
            );
        }
        if let Some(c) = vol.get("configMap") {
            push(
                format!("volume {vname}"),
                "ConfigMap",
                c,
                "name",
                item_keys(c),
            );
        }
        for src in items(vol, "/projected/sources") {
            for (field, kind) in [("secret", "Secret"), ("configMap", "ConfigMap")] {
                if let Some(r) = src.get(field) {
                    push(
                        format!("volume {vname} (projected)"),
                        kind,
                        r,
                        "name",
                        item_keys(r),
                    );
                }
            }
        }
    }
    out
}

fn references(objs: &[Placed], made: &[(Produced, String)], out: &mut Vec<Problem>) {
    // (kind, namespace, name) → keys, from the objects sent and those made at run time.
    let mut have: BTreeMap<(&str, &str, &str), BTreeSet<String>> = BTreeMap::new();
    for o in objs {
        let keys = match (group_version(o.api_version()).0, o.kind()) {
            ("", "Secret") => keys_of(&o.value, &["data", "stringData"]),
            ("", "ConfigMap") => keys_of(&o.value, &["data", "binaryData"]),
            _ => continue,
        };
        have.entry((o.kind(), &o.namespace, o.name()))
            .or_default()
            .extend(keys);
    }
    for (p, _) in made.iter().filter(|(p, _)| p.kind != "Pod") {
        have.entry((p.kind, &p.namespace, &p.name))
            .or_default()
            .extend(p.keys.iter().cloned());
    }
    for o in objs {
        let Some((_, spec)) = pod_template(o) else {
            continue;
        };
        let ns = o.namespace.as_str();
        for r in refs(spec) {
            let at = &r.at;
            let (kind, name) = (r.kind, r.name.as_str());
            let Some(keys) = have.get(&(kind, ns, name)) else {
                out.push(problem(
                    o,
                    true,
                    format!(
                        "{at}: {kind} {ns}/{name} does not exist: nothing sends it and no operator \
                         makes it; create it (in namespace {ns}), fix the name, or mark the \
                         reference optional: true"
                    ),
                ));
                continue;
            };
            for k in r.keys.iter().filter(|k| !keys.contains(*k)) {
                let has = if keys.is_empty() {
                    "no keys".to_string()
                } else {
                    format!(
                        "keys {}",
                        keys.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                out.push(problem(
                    o,
                    true,
                    format!(
                        "{at}: {kind} {ns}/{name} has no key {k:?} (it has {has}); add the key or \
                         fix the reference"
                    ),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Service selectors match a pod

fn selectors(objs: &[Placed], made: &[(Produced, String)], out: &mut Vec<Problem>) {
    // (namespace, what, labels) of every pod the site's objects would run.
    let mut pods: Vec<(&str, String, BTreeMap<String, String>)> = objs
        .iter()
        .filter_map(|o| {
            pod_template(o).map(|(l, _)| {
                (
                    o.namespace.as_str(),
                    format!("{} {}", o.kind(), o.name()),
                    l,
                )
            })
        })
        .collect();
    pods.extend(
        made.iter()
            .filter(|(p, _)| p.kind == "Pod")
            .map(|(p, from)| {
                (
                    p.namespace.as_str(),
                    format!("pod {} (made by {from})", p.name),
                    p.labels.clone(),
                )
            }),
    );
    for o in objs.iter().filter(|o| is(o, "", "Service")) {
        // An ExternalName Service has no endpoints; a Service without a selector has its
        // endpoints managed by someone else (Kubernetes docs, "Service": services without
        // selectors).
        if str_at(&o.value, "/spec/type") == Some("ExternalName") {
            continue;
        }
        let sel = string_map(o.value.pointer("/spec/selector"));
        if sel.is_empty() {
            continue;
        }
        let ns = o.namespace.as_str();
        let here: Vec<_> = pods.iter().filter(|(pns, _, _)| *pns == ns).collect();
        if here
            .iter()
            .any(|(_, _, l)| sel.iter().all(|(k, v)| l.get(k) == Some(v)))
        {
            continue;
        }
        let want = sel
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        // The closest pod, to say what is missing: the one that matches most of the selector.
        let near = here
            .iter()
            .map(|(_, what, l)| {
                let miss: Vec<String> = sel
                    .iter()
                    .filter(|(k, v)| l.get(*k) != Some(v))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                (miss.len(), what, miss)
            })
            .filter(|(n, _, _)| *n < sel.len())
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let hint = match near {
            Some((_, what, miss)) => {
                format!("; nearest is {what}, which lacks {}", miss.join(", "))
            }
            None => String::new(),
        };
        out.push(problem(
            o,
            true,
            format!(
                "selector {want} selects no pod in namespace {ns}: no pod template sent there, and \
                 no pod an operator makes there, has these labels{hint}; fix the selector or the \
                 pod labels"
            ),
        ));
    }
}
