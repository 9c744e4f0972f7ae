//! The rules that span objects: what a real cluster refuses, or never makes work, although each
//! object alone is valid. Namespaces and CRDs must exist before what uses them is sent; NodePorts
//! must be in range and unique; the Secrets and ConfigMaps a pod reads must exist with their keys;
//! a Service's selector must pick some pod. Objects that operators and k3s create at run time
//! count as existing ([`produced`], [`k3s_packaged`]): they are not in the site's output, yet
//! pods and Services rely on them.

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

/// Every problem of the rules, sorted and deduplicated, on a k3s started with
/// `disable: k3s_disabled` (its packaged components that are not deployed, e.g. `coredns`).
pub fn check(objs: &[Placed], scopes: &dyn Scopes, k3s_disabled: &[String]) -> Vec<Problem> {
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
        // A chart's pre-install hook Jobs that write a Secret the release's pods then mount.
        ("batch", "Job")
            if o.value
                .pointer("/metadata/annotations/helm.sh~1hook")
                .is_some() =>
        {
            for c in items(spec, "/template/spec/containers") {
                let words: Vec<&str> = items(c, "/command")
                    .chain(items(c, "/args"))
                    .filter_map(Value::as_str)
                    .collect();
                let flag = |f: &str| {
                    words
                        .iter()
                        .find_map(|w| w.strip_prefix(f).and_then(|r| r.strip_prefix('=')))
                };
                // kube-webhook-certgen `create` (kube-prometheus-stack's admission webhook job):
                // writes --secret-name in --namespace with keys ca, cert and key
                // (jet/kube-webhook-certgen, pkg/k8s/k8s.go, SaveCertsToSecret).
                if words.first() == Some(&"create") || words.contains(&"create") {
                    if let Some(secret) = flag("--secret-name") {
                        let sns = flag("--namespace").unwrap_or(ns);
                        out.push(Produced::secret(sns, secret, &["ca", "cert", "key"]));
                    }
                }
                // `argocd admin redis-initial-password` (argo-cd chart's redis-secret-init job):
                // creates Secret argocd-redis with key auth in its namespace
                // (argo-cd cmd/argocd/commands/admin/redis_initial_password.go).
                if words
                    .windows(3)
                    .any(|w| w == ["argocd", "admin", "redis-initial-password"])
                {
                    out.push(Produced::secret(ns, "argocd-redis", &["auth"]));
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Scopes as the schema check knows them: these cluster-scoped, `Mystery` unknown, the rest
    /// namespaced.
    struct TestScopes;
    impl Scopes for TestScopes {
        fn namespaced(&self, _api_version: &str, kind: &str) -> Option<bool> {
            match kind {
                "Namespace" | "CustomResourceDefinition" | "ClusterIssuer" => Some(false),
                "Mystery" => None,
                _ => Some(true),
            }
        }
    }

    fn placed(order: usize, release: Option<&str>, source: Option<&str>, value: Value) -> Placed {
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        Placed {
            origin: format!("role/res:{order}"),
            source: source.map(str::to_string),
            order,
            release: release.map(str::to_string),
            namespace,
            value,
        }
    }
    /// An object of a manifest (no release) at `order`.
    fn at(order: usize, value: Value) -> Placed {
        placed(order, None, None, value)
    }
    fn ns(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    }
    fn cm(ns: &str, name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
    }
    fn secret(ns: &str, name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data})
    }
    fn deploy(ns: &str, name: &str, labels: Value, spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": spec}}})
    }
    fn svc(ns: &str, name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec})
    }
    fn crd(group: &str, kind: &str, versions: Value) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{}s.{group}", kind.to_lowercase())},
            "spec": {"group": group, "names": {"kind": kind, "plural": format!("{}s", kind.to_lowercase())},
                "scope": "Namespaced", "versions": versions}})
    }
    fn widget(ns: &str) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": ns}})
    }
    fn served() -> Value {
        json!([{"name": "v1", "served": true, "storage": true}])
    }

    fn run(objs: &[Placed]) -> Vec<Problem> {
        check(objs, &TestScopes, &[])
    }
    /// The messages of the problems about one object.
    fn about(problems: &[Problem], object: &str) -> Vec<String> {
        problems
            .iter()
            .filter(|p| p.object == object)
            .map(|p| p.message.clone())
            .collect()
    }
    fn one(problems: &[Problem], object: &str, needle: &str) {
        let msgs = about(problems, object);
        assert!(
            msgs.len() == 1 && msgs[0].contains(needle),
            "want one problem on {object} containing {needle:?}, got {problems:#?}"
        );
    }

    #[test]
    fn namespaces_must_exist_before_what_lands_in_them() {
        let cfg = || cm("app", "c", json!({}));
        // (case, objects, problem expected on ConfigMap app/c, containing)
        let cases: Vec<(&str, Vec<Placed>, Option<&str>)> = vec![
            (
                "nothing creates it",
                vec![at(0, cfg())],
                Some("nothing creates it"),
            ),
            (
                "earlier resource",
                vec![at(0, ns("app")), at(1, cfg())],
                None,
            ),
            (
                "earlier in the manifest",
                vec![at(0, ns("app")), at(0, cfg())],
                None,
            ),
            (
                "later in the manifest",
                vec![at(0, cfg()), at(0, ns("app"))],
                Some("comes later, from role/res:0"),
            ),
            (
                "later resource",
                vec![at(0, cfg()), at(3, ns("app"))],
                Some("comes later, from role/res:3"),
            ),
            (
                "a release's own Namespace: helm creates Namespaces first",
                vec![
                    placed(2, Some("r"), Some("c/templates/cm.yaml"), cfg()),
                    placed(2, Some("r"), Some("c/templates/ns.yaml"), ns("app")),
                ],
                None,
            ),
        ];
        for (case, objs, want) in cases {
            let got = about(&run(&objs), "ConfigMap app/c");
            match want {
                None => assert!(got.is_empty(), "{case}: {got:?}"),
                Some(w) => assert!(got.len() == 1 && got[0].contains(w), "{case}: {got:?}"),
            }
        }
        // The system namespaces exist from the start; cluster-scoped and unknown kinds have none
        // to check (the schema check reports unknown kinds).
        let objs = [
            at(0, cm("kube-system", "c", json!({}))),
            at(
                0,
                json!({"apiVersion": "v1", "kind": "Mystery", "metadata": {"name": "m", "namespace": "nope"}}),
            ),
            at(0, ns("other")),
        ];
        assert!(run(&objs).is_empty(), "{:#?}", run(&objs));
    }

    #[test]
    fn a_custom_resource_needs_its_crd_established_first() {
        let tmpl = Some("c/templates/w.yaml");
        let cases: Vec<(&str, Vec<Placed>, Option<&str>)> = vec![
            ("CRD in an earlier resource", vec![at(0, crd("example.com", "Widget", served())), at(1, widget("default"))], None),
            (
                "CRD later",
                vec![at(1, widget("default")), at(4, crd("example.com", "Widget", served()))],
                Some("sent before its CustomResourceDefinition widgets.example.com, which comes from role/res:4"),
            ),
            (
                "CRD in the same manifest",
                vec![at(1, crd("example.com", "Widget", served())), at(1, widget("default"))],
                Some("same manifest"),
            ),
            (
                "CRD in the same release's crds/ directory",
                vec![
                    placed(1, Some("r"), Some("c/charts/sub/crds/w.yaml"), crd("example.com", "Widget", served())),
                    placed(1, Some("r"), tmpl, widget("default")),
                ],
                None,
            ),
            (
                "CRD among the same release's templates",
                vec![
                    placed(1, Some("r"), Some("c/templates/crds/w.yaml"), crd("example.com", "Widget", served())),
                    placed(1, Some("r"), tmpl, widget("default")),
                ],
                Some("not in the chart's crds/ directory"),
            ),
            (
                "a version the CRD does not serve is not its kind (the schema check's)",
                vec![
                    at(1, widget("default")),
                    at(4, crd("example.com", "Widget", json!([{"name": "v1", "served": false}]))),
                ],
                None,
            ),
            ("another group", vec![at(1, widget("default")), at(4, crd("example.org", "Widget", served()))], None),
        ];
        for (case, objs, want) in cases {
            let got = about(&run(&objs), "Widget default/w");
            match want {
                None => assert!(got.is_empty(), "{case}: {got:?}"),
                Some(w) => assert!(got.len() == 1 && got[0].contains(w), "{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn node_ports_are_in_range_unique_and_only_on_node_port_services() {
        let np = |name: &str, ty: &str, ports: Value| {
            at(0, svc("default", name, json!({"type": ty, "ports": ports})))
        };
        let p = run(&[
            np("a", "NodePort", json!([{"port": 1, "nodePort": 30001}])),
            np("b", "LoadBalancer", json!([{"port": 1, "nodePort": 30001}])),
            np(
                "low",
                "NodePort",
                json!([{"name": "pg", "port": 1, "nodePort": 5432}]),
            ),
            np(
                "dns",
                "NodePort",
                json!([{"port": 53, "protocol": "UDP", "nodePort": 30053},
                {"port": 53, "protocol": "TCP", "nodePort": 30053}]),
            ),
            np(
                "twice",
                "NodePort",
                json!([{"port": 1, "nodePort": 30100}, {"port": 2, "nodePort": 30100}]),
            ),
            np("cip", "ClusterIP", json!([{"port": 1, "nodePort": 30200}])),
            np(
                "ok",
                "NodePort",
                json!([{"port": 1, "nodePort": 32767}, {"port": 2}]),
            ),
        ]);
        let both = "nodePort 30001 is used by two Services, Service default/a (role/res:0) and Service default/b";
        one(&p, "Service default/a", both);
        one(&p, "Service default/b", both);
        one(
            &p,
            "Service default/low",
            "spec.ports[0] (pg): nodePort 5432 is outside the cluster's NodePort range 30000-32767",
        );
        one(
            &p,
            "Service default/twice",
            "nodePort 30100/TCP appears twice",
        );
        one(&p, "Service default/cip", "type ClusterIP");
        assert!(about(&p, "Service default/dns").is_empty(), "{p:#?}");
        assert!(about(&p, "Service default/ok").is_empty(), "{p:#?}");
    }

    #[test]
    fn referenced_secrets_and_config_maps_must_exist_with_their_keys() {
        let spec = json!({
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "env"}}]}],
            "containers": [{"name": "app", "env": [
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "username"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": true}}},
                {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}],
                "envFrom": [{"secretRef": {"name": "absent", "optional": true}}]}],
            "volumes": [
                {"name": "tls", "secret": {"secretName": "certs", "items": [{"key": "tls.crt", "path": "c"}, {"key": "tls.key", "path": "k"}]}},
                {"name": "bin", "configMap": {"name": "settings", "items": [{"key": "blob", "path": "b"}]}},
                {"name": "mix", "projected": {"sources": [{"configMap": {"name": "elsewhere"}}, {"serviceAccountToken": {"path": "t"}},
                    {"secret": {"name": "absent", "optional": true}}]}},
                {"name": "empty", "emptyDir": {}}]});
        let mut creds = secret("app", "creds", json!({"password": "cA=="}));
        creds["stringData"] = json!({"username": "me"});
        let mut settings = cm("app", "settings", json!({"level": "1"}));
        settings["binaryData"] = json!({"blob": "AA=="});
        let objs = [
            at(0, ns("app")),
            at(1, creds),
            at(1, settings),
            at(1, secret("app", "certs", json!({"tls.crt": "eA=="}))),
            // Same name, other namespace: not the one the pod reads.
            at(1, cm("default", "env", json!({}))),
            at(2, deploy("app", "web", json!({"app": "web"}), spec)),
        ];
        let p = run(&objs);
        let got = about(&p, "Deployment app/web");
        assert_eq!(got.len(), 3, "{p:#?}");
        assert!(got.iter().any(|m| m.starts_with("container init, envFrom: ConfigMap app/env does not exist")), "{got:?}");
        assert!(
            got.iter().any(|m| m.starts_with(
                "volume tls: Secret app/certs has no key \"tls.key\" (it has keys tls.crt)"
            )),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|m| m
                    .starts_with("volume mix (projected): ConfigMap app/elsewhere does not exist")),
            "{got:?}"
        );
    }

    #[test]
    fn every_pod_template_kind_is_read() {
        let pod_spec = json!({"containers": [{"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}]});
        let wrap = |api: &str, kind: &str, spec: Value| json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "default"}, "spec": spec});
        let tpl = json!({"template": {"spec": pod_spec}});
        let objs = [
            at(0, wrap("v1", "Pod", pod_spec.clone())),
            at(0, wrap("apps/v1", "StatefulSet", tpl.clone())),
            at(0, wrap("apps/v1", "DaemonSet", tpl.clone())),
            at(0, wrap("apps/v1", "ReplicaSet", tpl.clone())),
            at(0, wrap("batch/v1", "Job", tpl.clone())),
            at(
                0,
                wrap(
                    "batch/v1",
                    "CronJob",
                    json!({"schedule": "@daily", "jobTemplate": {"spec": tpl}}),
                ),
            ),
        ];
        let p = run(&objs);
        for kind in [
            "Pod",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ] {
            one(
                &p,
                &format!("{kind} default/x"),
                "container c, env X: Secret default/gone does not exist",
            );
        }
    }

    /// A pod that reads `key` of Secret `name` in `ns`.
    fn reader(ns: &str, name: &str, key: &str) -> Value {
        deploy(
            ns,
            "reader",
            json!({"app": "reader"}),
            json!({"containers": [{"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]}]}),
        )
    }

    #[test]
    fn secrets_operators_make_count_as_existing() {
        let cluster = |spec: Value| {
            at(
                1,
                json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": "pg", "namespace": "db"}, "spec": spec}),
            )
        };
        let cert = |issuer_kind: &str, issuer: &str| {
            at(
                1,
                json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": "c", "namespace": "db"},
                "spec": {"secretName": "site-tls", "dnsNames": ["a"], "issuerRef": {"kind": issuer_kind, "name": issuer},
                    "additionalOutputFormats": [{"type": "CombinedPEM"}]}}),
            )
        };
        let issuer = |name: &str, spec: Value| {
            at(
                0,
                json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name}, "spec": spec}),
            )
        };
        let mut sa_token = secret("db", "sa-token", json!({}));
        sa_token["type"] = json!("kubernetes.io/service-account-token");
        let base = || vec![at(0, ns("db"))];
        // (case, extra objects, the Secret and key the pod reads, problem expected)
        type Case = (
            &'static str,
            Vec<Placed>,
            (&'static str, &'static str),
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "CNPG app secret",
                vec![cluster(json!({"instances": 1}))],
                ("pg-app", "uri"),
                false,
            ),
            (
                "CNPG app secret, fqdn-jdbc-uri",
                vec![cluster(json!({}))],
                ("pg-app", "fqdn-jdbc-uri"),
                false,
            ),
            (
                "CNPG app secret has no such key",
                vec![cluster(json!({}))],
                ("pg-app", "token"),
                true,
            ),
            (
                "CNPG: the bootstrap names its own secret, no NAME-app",
                vec![cluster(
                    json!({"bootstrap": {"initdb": {"secret": {"name": "mine"}}}}),
                )],
                ("pg-app", "password"),
                true,
            ),
            (
                "CNPG superuser secret without enableSuperuserAccess",
                vec![cluster(json!({}))],
                ("pg-superuser", "password"),
                true,
            ),
            (
                "CNPG superuser secret with enableSuperuserAccess",
                vec![cluster(json!({"enableSuperuserAccess": true}))],
                ("pg-superuser", "password"),
                false,
            ),
            (
                "CNPG: enableSuperuserAccess with its own superuserSecret",
                vec![cluster(
                    json!({"enableSuperuserAccess": true, "superuserSecret": {"name": "su"}}),
                )],
                ("pg-superuser", "password"),
                true,
            ),
            (
                "CNPG CA",
                vec![cluster(json!({}))],
                ("pg-ca", "ca.crt"),
                false,
            ),
            (
                "CNPG server certificate",
                vec![cluster(json!({}))],
                ("pg-server", "tls.key"),
                false,
            ),
            (
                "CNPG replication certificate",
                vec![cluster(json!({}))],
                ("pg-replication", "tls.crt"),
                false,
            ),
            (
                "certificate key pair",
                vec![cert("ClusterIssuer", "acme")],
                ("site-tls", "tls.key"),
                false,
            ),
            (
                "certificate combined PEM",
                vec![cert("ClusterIssuer", "acme")],
                ("site-tls", "tls-combined.pem"),
                false,
            ),
            (
                "no ca.crt from an ACME issuer",
                vec![
                    issuer("acme", json!({"acme": {}})),
                    cert("ClusterIssuer", "acme"),
                ],
                ("site-tls", "ca.crt"),
                true,
            ),
            (
                "ca.crt from a CA issuer",
                vec![
                    issuer("inhouse", json!({"ca": {"secretName": "root"}})),
                    cert("ClusterIssuer", "inhouse"),
                ],
                ("site-tls", "ca.crt"),
                false,
            ),
            (
                "service account token",
                vec![at(1, sa_token)],
                ("sa-token", "token"),
                false,
            ),
            ("nothing makes it", vec![], ("pg-app", "uri"), true),
        ];
        for (case, extra, (name, key), want) in cases {
            let mut objs = base();
            objs.extend(extra);
            objs.push(at(2, reader("db", name, key)));
            let got = about(&run(&objs), "Deployment db/reader");
            assert_eq!(!got.is_empty(), want, "{case}: {got:?}");
        }
    }

    #[test]
    fn a_service_selector_must_pick_a_pod_in_its_namespace() {
        let sel = |name: &str, selector: Value| {
            at(
                1,
                svc(
                    "app",
                    name,
                    json!({"selector": selector, "ports": [{"port": 80}]}),
                ),
            )
        };
        let p = run(&[
            at(0, ns("app")),
            at(0, ns("other")),
            at(
                1,
                deploy(
                    "app",
                    "web",
                    json!({"app": "web", "tier": "front"}),
                    json!({"containers": []}),
                ),
            ),
            at(
                1,
                deploy(
                    "other",
                    "api",
                    json!({"app": "api"}),
                    json!({"containers": []}),
                ),
            ),
            sel("ok", json!({"app": "web"})),
            sel("typo", json!({"app": "web", "tier": "frnt"})),
            sel("elsewhere", json!({"app": "api"})),
            sel("headless-no-selector", json!({})),
            at(
                1,
                svc(
                    "app",
                    "ext",
                    json!({"type": "ExternalName", "externalName": "x.example", "selector": {"app": "zzz"}}),
                ),
            ),
        ]);
        assert!(about(&p, "Service app/ok").is_empty(), "{p:#?}");
        one(
            &p,
            "Service app/typo",
            "selector app=web, tier=frnt selects no pod in namespace app",
        );
        one(
            &p,
            "Service app/typo",
            "nearest is Deployment web, which lacks tier=frnt",
        );
        one(
            &p,
            "Service app/elsewhere",
            "selects no pod in namespace app",
        );
        assert!(
            about(&p, "Service app/headless-no-selector").is_empty(),
            "{p:#?}"
        );
        assert!(about(&p, "Service app/ext").is_empty(), "{p:#?}");
    }

    #[test]
    fn pods_operators_and_k3s_make_are_selectable() {
        let cr = |api: &str, kind: &str, name: &str, spec: Value| {
            at(
                1,
                json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "mon"}, "spec": spec}),
            )
        };
        let sel = |ns: &str, name: &str, selector: Value| {
            at(
                2,
                svc(
                    ns,
                    name,
                    json!({"selector": selector, "ports": [{"port": 1}]}),
                ),
            )
        };
        let objs = [
            at(0, ns("mon")),
            cr(
                "monitoring.coreos.com/v1",
                "Prometheus",
                "kp",
                json!({"podMetadata": {"labels": {"team": "lab"}}}),
            ),
            cr("monitoring.coreos.com/v1", "Alertmanager", "am", json!({})),
            cr(
                "postgresql.cnpg.io/v1",
                "Cluster",
                "pg",
                json!({"instances": 1}),
            ),
            // kube-prometheus-stack 88.5.3's Services, with defaults (helm template).
            sel(
                "mon",
                "prom",
                json!({"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "kp"}),
            ),
            sel(
                "mon",
                "prom-shard",
                json!({"prometheus": "kp", "operator.prometheus.io/shard": "0", "team": "lab"}),
            ),
            sel(
                "mon",
                "am",
                json!({"app.kubernetes.io/name": "alertmanager", "alertmanager": "am"}),
            ),
            sel(
                "mon",
                "am-wrong",
                json!({"app.kubernetes.io/name": "alertmanager", "alertmanager": "kp"}),
            ),
            sel(
                "mon",
                "pg-rw",
                json!({"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": "primary"}),
            ),
            sel(
                "mon",
                "pg-legacy",
                json!({"cnpg.io/cluster": "pg", "role": "primary", "cnpg.io/podRole": "instance"}),
            ),
            sel(
                "mon",
                "pg-ro",
                json!({"cnpg.io/cluster": "pg", "cnpg.io/instanceRole": "replica"}),
            ),
            sel("kube-system", "coredns", json!({"k8s-app": "kube-dns"})),
        ];
        let p = run(&objs);
        for ok in [
            "prom",
            "prom-shard",
            "am",
            "pg-rw",
            "pg-legacy",
            "kube-system/coredns",
        ] {
            let object = if ok.contains('/') {
                format!("Service {ok}")
            } else {
                format!("Service mon/{ok}")
            };
            assert!(about(&p, &object).is_empty(), "{ok}: {p:#?}");
        }
        one(
            &p,
            "Service mon/am-wrong",
            "nearest is pod alertmanager-am (made by role/res:1), which lacks alertmanager=kp",
        );
        // One instance: no replica yet.
        one(&p, "Service mon/pg-ro", "selects no pod");

        let mut two = objs.to_vec();
        two[3] = cr(
            "postgresql.cnpg.io/v1",
            "Cluster",
            "pg",
            json!({"instances": 2}),
        );
        assert!(about(&run(&two), "Service mon/pg-ro").is_empty());

        let p = check(&objs, &TestScopes, &["coredns".to_string()]);
        one(&p, "Service kube-system/coredns", "selects no pod");
    }

    #[test]
    fn problems_come_sorted_and_once() {
        let objs = [
            at(0, cm("a", "x", json!({}))),
            at(0, cm("a", "x", json!({}))),
            at(0, cm("b", "y", json!({}))),
        ];
        let p = run(&objs);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0] < p[1]);
    }

    #[test]
    fn secrets_written_by_a_charts_hook_jobs_count_as_existing() {
        let hook = |ns: &str, container: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "j", "namespace": ns, "annotations": {"helm.sh/hook": "pre-install,pre-upgrade"}},
                "spec": {"template": {"spec": {"containers": [container]}}}})
        };
        let mounts = |ns: &str, secret: &str, key: &str| {
            deploy(
                ns,
                "d",
                json!({"app": "d"}),
                json!({"containers": [{"name": "c",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}]}),
            )
        };
        let certgen = hook(
            "monitoring",
            json!({"name": "create", "args": ["create",
            "--host=op,op.monitoring.svc", "--namespace=monitoring", "--secret-name=op-admission"]}),
        );
        let redis = hook(
            "argocd",
            json!({"name": "init", "command": ["argocd", "admin", "redis-initial-password"]}),
        );
        let namespaces = || vec![at(1, ns("monitoring")), at(1, ns("argocd"))];
        let job_source = Some("c/templates/job-createSecret.yaml");
        let mut objs = namespaces();
        objs.extend([
            placed(2, Some("r1"), job_source, certgen.clone()),
            placed(
                2,
                Some("r1"),
                None,
                mounts("monitoring", "op-admission", "cert"),
            ),
            placed(3, Some("r2"), None, redis.clone()),
            placed(
                3,
                Some("r2"),
                None,
                mounts("argocd", "argocd-redis", "auth"),
            ),
        ]);
        assert_eq!(run(&objs), vec![]);
        // The same Jobs without the hook annotation are ordinary Jobs: nothing is assumed; and
        // a key the hook does not write is still missing.
        let mut plain = certgen;
        plain["metadata"]["annotations"] = json!({});
        let mut objs = namespaces();
        objs.extend([
            placed(2, Some("r1"), None, plain),
            placed(
                2,
                Some("r1"),
                None,
                mounts("monitoring", "op-admission", "cert"),
            ),
            placed(3, Some("r2"), None, redis),
            placed(
                3,
                Some("r2"),
                None,
                mounts("argocd", "argocd-redis", "password"),
            ),
        ]);
        let p = run(&objs);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0] < p[1]);
    }
}
