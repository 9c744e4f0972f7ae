//! The render gate: every release rendered by the real `helm template` from the kept chart, every
//! object validated strictly, then the rules that span objects.
//!
//! What it needs, found by [`Kit::find`]: the real helm (`$LABCTL_HELM`, else `helm` on PATH),
//! the kept charts (`charts/NAME-VERSION.tgz` in the project, plus plain CRD files under
//! `charts/crds/` for what k3s itself installs), and the Kubernetes schemas of the pinned minor
//! (`$LABCTL_K8S_SCHEMAS`, a `kubernetes-validate` strict folder). A missing piece is a reason,
//! returned for the caller to print: the gate never passes by not running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::schema::{Builtin, Schemas};
use super::{Placed, Problem, Scopes, Sent};

/// The programs and files the gate runs with.
pub struct Kit {
    pub helm: PathBuf,
    /// `charts/` of the project.
    pub charts: PathBuf,
    /// The built-in kinds' schemas; None: only custom resources and cross-object rules checked.
    pub schemas: Option<PathBuf>,
}

/// Why the gate cannot run: a missing piece of its [`Kit`], said to the user (never swallowed).
#[derive(Debug, thiserror::Error)]
pub enum KitMissing {
    #[error("no kept charts ({} does not exist; see docs/render.md)", .0.display())]
    Charts(PathBuf),
    #[error("no helm found ($LABCTL_HELM unset, no `helm` on PATH)")]
    Helm,
    #[error("$LABCTL_HELM is {}, which is not a file", .0.display())]
    HelmNotAFile(PathBuf),
    #[error("$LABCTL_K8S_SCHEMAS is {}, which holds no _definitions.json", .0.display())]
    Schemas(PathBuf),
}

impl Kit {
    /// Everything found, or the piece that is missing.
    pub fn find(root: &Path) -> Result<Kit, KitMissing> {
        let charts = root.join("charts");
        if !charts.is_dir() {
            return Err(KitMissing::Charts(charts));
        }
        let helm = match std::env::var_os("LABCTL_HELM") {
            Some(h) => PathBuf::from(h),
            None => which("helm").ok_or(KitMissing::Helm)?,
        };
        if !helm.is_file() {
            return Err(KitMissing::HelmNotAFile(helm));
        }
        let schemas = match std::env::var_os("LABCTL_K8S_SCHEMAS") {
            Some(d) => {
                let d = PathBuf::from(d);
                if !d.join("_definitions.json").is_file() {
                    return Err(KitMissing::Schemas(d));
                }
                Some(d)
            }
            None => None,
        };
        Ok(Kit {
            helm,
            charts,
            schemas,
        })
    }

    /// The kept chart for `REPO/CHART` (or `oci://…/CHART`) at `version`.
    pub fn chart_file(&self, chart: &str, version: &str) -> PathBuf {
        let name = chart.rsplit('/').next().unwrap_or(chart);
        self.charts.join(format!("{name}-{version}.tgz"))
    }
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// One thing the site sends, with the resource it comes from (`role/kind:name`).
pub struct Input {
    pub origin: String,
    pub sent: Sent,
}

/// What the gate saw and refused.
#[derive(Default)]
pub struct Outcome {
    /// Every object in site order (chart output included), values redacted.
    pub objects: Vec<Placed>,
    /// Per release (origin): the chart output as helm printed it.
    pub rendered: Vec<(String, String)>,
    pub problems: Vec<Problem>,
}

/// `1.36` from `v1.36.4+k3s1`: helm's `--kube-version` wants a plain version.
pub fn kube_version(k3s_version: &str) -> String {
    let v = k3s_version.trim_start_matches('v');
    v.split('+').next().unwrap_or(v).to_string()
}

/// Run the gate over one host's cluster work, in site order.
/// `k3s_disabled`: the packaged components k3s runs without (its `disable:`), whose pods and
/// Services then do not exist. `others`: what the site's other environments put in the same
/// cluster (one cluster holds staging beside production); it is there before this run, and it is
/// checked in its own run, so here it only satisfies references, selectors and namespaces.
pub fn run(
    kit: &Kit,
    kube_version: &str,
    k3s_disabled: &[String],
    inputs: &[Input],
    others: &[Input],
) -> Outcome {
    let mut out = Outcome::default();
    let builtin = match &kit.schemas {
        Some(d) => match Builtin::load(d) {
            Ok(b) => Some(b),
            Err(e) => {
                out.problems.push(Problem {
                    whence: "render gate".into(),
                    object: "schemas".into(),
                    message: e.to_string(),
                });
                None
            }
        },
        None => None,
    };
    let mut schemas = Schemas::new(builtin);
    // What k3s installs itself (HelmChartConfig, Traefik's CRDs) is there before any resource.
    for (file, doc) in kept_crds(&kit.charts, &mut out.problems) {
        schemas.add_crd(&doc);
        out.objects.push(Placed {
            origin: format!("k3s ({file})"),
            source: None,
            order: 0,
            release: None,
            namespace: String::new(),
            value: doc,
        });
    }
    let mut existing: Vec<Placed> = Vec::new();
    let mut ignored = Vec::new();
    for input in others {
        let api = api_versions(out.objects.iter().chain(&existing));
        let (placed, _) = place(kit, kube_version, 0, input, &api, &mut ignored);
        existing.extend(placed);
    }
    for p in existing
        .iter()
        .filter(|p| p.kind() == "CustomResourceDefinition")
    {
        schemas.add_crd(&p.value);
    }
    for (i, input) in inputs.iter().enumerate() {
        let api = api_versions(out.objects.iter().chain(&existing));
        let (placed, text) = place(kit, kube_version, i + 1, input, &api, &mut out.problems);
        // CRDs sent so far define kinds for what comes after (and within the same release).
        for p in placed
            .iter()
            .filter(|p| p.kind() == "CustomResourceDefinition")
        {
            schemas.add_crd(&p.value);
        }
        out.objects.extend(placed);
        if let Some(text) = text {
            out.rendered.push((input.origin.clone(), text));
        }
    }
    for p in &out.objects {
        if p.order == 0 {
            continue;
        }
        let namespaced = schemas
            .namespaced(p.api_version(), p.kind())
            .unwrap_or(true);
        match schemas.validate(&p.value) {
            Ok(msgs) => out.problems.extend(msgs.into_iter().map(|m| Problem {
                whence: p.whence(),
                object: p.label(namespaced),
                message: m,
            })),
            Err(m) => out.problems.push(Problem {
                whence: p.whence(),
                object: p.label(namespaced),
                message: m.to_string(),
            }),
        }
    }
    // The other environments' objects, less what this run sends itself (the same object, which
    // this run would update) and less their repeats (a shared role renders alike in each).
    let key = |p: &Placed| {
        let (g, _) = super::group_version(p.api_version());
        (
            g.to_string(),
            p.kind().to_string(),
            p.namespace.clone(),
            p.name().to_string(),
        )
    };
    let mut seen: std::collections::BTreeSet<_> = out.objects.iter().map(key).collect();
    existing.retain(|p| seen.insert(key(p)));
    let theirs: std::collections::BTreeSet<String> = existing.iter().map(Placed::whence).collect();
    let mut all = existing;
    all.append(&mut out.objects);
    out.objects = all;
    out.problems.extend(
        super::rules::check(&out.objects, &schemas, k3s_disabled)
            .into_iter()
            .filter(|p| !theirs.contains(&p.whence)),
    );
    out.objects.retain(|p| !theirs.contains(&p.whence()));
    out.problems.sort();
    out.problems.dedup();
    out
}

/// One resource's objects as the cluster receives them (a release rendered by helm), and
/// helm's output for a release. `api`: what the cluster serves by then (`api_versions`).
fn place(
    kit: &Kit,
    kube_version: &str,
    order: usize,
    input: &Input,
    api: &[String],
    problems: &mut Vec<Problem>,
) -> (Vec<Placed>, Option<String>) {
    let mut out = Vec::new();
    let at = |v: &Value, default_ns: &str, source: Option<String>, release: bool| Placed {
        origin: input.origin.clone(),
        source,
        order,
        release: release.then(|| input.origin.clone()),
        namespace: v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns)
            .to_string(),
        value: v.clone(),
    };
    match &input.sent {
        Sent::Removal => (out, None),
        Sent::Objects(objs) => {
            out.extend(objs.iter().map(|v| at(v, "default", None, false)));
            (out, None)
        }
        Sent::Release {
            name,
            namespace,
            chart,
            version,
            values,
            create_namespace,
        } => {
            let problem = |message: String| Problem {
                whence: input.origin.clone(),
                object: format!("release {namespace}/{name}"),
                message,
            };
            let file = kit.chart_file(chart, version);
            if !file.is_file() {
                problems.push(problem(format!(
                    "no kept chart {} for {chart} {version}: keep it there (scripts/refresh-charts.sh) so the gate can render it",
                    file.display()
                )));
                return (out, None);
            }
            if *create_namespace {
                let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": namespace}});
                out.push(at(&ns, "", Some("--create-namespace".into()), true));
            }
            match helm_template(kit, name, namespace, &file, kube_version, api, values) {
                Err(e) => {
                    problems.push(problem(format!("helm template refuses it: {e}")));
                    (out, None)
                }
                Ok(text) => {
                    match split_docs(&text) {
                        Err(e) => problems.push(problem(e)),
                        Ok(docs) => out.extend(
                            docs.iter()
                                .map(|(src, v)| at(v, namespace, src.clone(), true)),
                        ),
                    }
                    (out, Some(text))
                }
            }
        }
    }
}

/// `group/version` and `group/version/Kind` of every CRD sent so far, as helm's
/// `--api-versions`: a chart that asks `.Capabilities.APIVersions.Has` sees what the cluster
/// would serve by the time the release is installed.
fn api_versions<'a>(objs: impl Iterator<Item = &'a Placed>) -> Vec<String> {
    let mut out = Vec::new();
    for p in objs.filter(|p| p.kind() == "CustomResourceDefinition") {
        let spec = p.value.get("spec").unwrap_or(&Value::Null);
        let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
        let kind = spec
            .pointer("/names/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        for v in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = v.get("name").and_then(Value::as_str) {
                out.push(format!("{group}/{name}"));
                out.push(format!("{group}/{name}/{kind}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `helm template` with the values on stdin (never in argv or a file).
fn helm_template(
    kit: &Kit,
    name: &str,
    namespace: &str,
    chart: &Path,
    kube_version: &str,
    api_versions: &[String],
    values: &Value,
) -> Result<String, String> {
    let mut cmd = Command::new(&kit.helm);
    cmd.args(["template", name])
        .arg(chart)
        .args(["--namespace", namespace, "--kube-version", kube_version])
        .args(["--include-crds", "--values", "-"]);
    for a in api_versions {
        cmd.args(["--api-versions", a]);
    }
    // helm must not read the user's repositories or plugins, nor write a cache anywhere.
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temp folder: {e}"))?;
    for (k, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(k, tmp.path().join(sub));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", kit.helm.display()))?;
    let body = serde_json::to_vec(values).unwrap_or_default();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let o = child
        .wait_with_output()
        .map_err(|e| format!("helm did not finish: {e}"))?;
    let _ = writer.join();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(err.trim().to_string());
    }
    String::from_utf8(o.stdout).map_err(|_| "helm printed something that is not UTF-8".into())
}

/// helm's output: documents split on `---`, each with the `# Source:` it names.
/// A document without its own `# Source:` line comes from the file named last: helm prints a
/// chart's `crds/` files as they are, and a CRD file may hold a comment, `---`, then the CRD.
fn split_docs(text: &str) -> Result<Vec<(Option<String>, Value)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut last: Option<String> = None;
    let mut flush = |cur: &mut String| -> Result<(), String> {
        let source = cur
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(str::to_string)
            .or_else(|| last.clone());
        last = source.clone();
        let doc: Value = serde_saphyr::from_str(cur).map_err(|e| {
            format!(
                "{} is not YAML: {e}",
                source.as_deref().unwrap_or("a rendered document")
            )
        })?;
        if !doc.is_null() {
            if !doc.is_object() {
                return Err(format!(
                    "{} is not a mapping",
                    source.as_deref().unwrap_or("a rendered document")
                ));
            }
            out.push((source, doc));
        }
        cur.clear();
        Ok(())
    };
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut cur)?;
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    flush(&mut cur)?;
    Ok(out)
}

/// CRDs kept as plain files (`charts/crds/*.yaml`): what k3s installs before any resource.
fn kept_crds(charts: &Path, problems: &mut Vec<Problem>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(charts.join("crds")) else {
        return out;
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let docs = std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|t| split_docs(&t));
        match docs {
            Ok(docs) => out.extend(
                docs.into_iter()
                    .filter(|(_, d)| {
                        d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
                    })
                    .map(|(_, d)| (name.clone(), d)),
            ),
            Err(e) => problems.push(Problem {
                whence: f.display().to_string(),
                object: "kept CRDs".into(),
                message: e,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_version_is_plain() {
        assert_eq!(kube_version("v1.36.4+k3s1"), "1.36.4");
        assert_eq!(kube_version("1.35.0"), "1.35.0");
    }

    #[test]
    fn split_docs_keeps_each_source() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# Source: c/templates/empty.yaml\n---\n# Source: c/templates/b.yaml\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n---\n# Source: c/crds/x.yaml\n# a comment\n---\nkind: CustomResourceDefinition\n";
        let docs = split_docs(text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[2].0.as_deref(),
            Some("c/crds/x.yaml"),
            "inherits the file named last"
        );
        assert_eq!(docs[0].0.as_deref(), Some("c/templates/a.yaml"));
        assert_eq!(docs[1].1["kind"], "Secret");
        assert!(split_docs("---\n# Source: x.yaml\n- a\n")
            .unwrap_err()
            .contains("x.yaml"));
    }

    #[test]
    fn chart_file_is_helm_package_naming() {
        let kit = Kit {
            helm: "helm".into(),
            charts: "/p/charts".into(),
            schemas: None,
        };
        assert_eq!(
            kit.chart_file("prometheus-community/kube-prometheus-stack", "88.5.3"),
            PathBuf::from("/p/charts/kube-prometheus-stack-88.5.3.tgz")
        );
        assert_eq!(
            kit.chart_file("oci://ghcr.io/x/cert-manager", "v1.21.1"),
            PathBuf::from("/p/charts/cert-manager-v1.21.1.tgz")
        );
    }

    fn objects(origin: &str, objs: Vec<Value>) -> Input {
        Input {
            origin: origin.into(),
            sent: Sent::Objects(objs),
        }
    }

    #[test]
    fn other_environments_are_already_in_the_cluster_but_are_not_checked_here() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("charts")).unwrap();
        // No release here: helm is never run.
        let kit = Kit {
            helm: "/nonexistent/helm".into(),
            charts: d.path().join("charts"),
            schemas: None,
        };
        let ns = |n: &str| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pg", "namespace": "db"}, "stringData": {"password": "<secret>"}});
        let reader = |ns: &str, secret: &str| {
            serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "backup", "namespace": ns},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x",
                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}]}}}})
        };
        let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ui", "namespace": "mon"},
            "spec": {"type": "NodePort", "selector": {}, "ports": [{"port": 80, "nodePort": 30080}]}});
        let this = vec![
            objects("mon/k8s_manifest:ns", vec![ns("mon")]),
            objects("mon/k8s_manifest:ui", vec![svc.clone()]),
            objects("backups/k8s_manifest:job", vec![reader("db", "pg")]),
        ];
        // Alone, the run's Job reads a Secret nothing sends, in a namespace nothing makes.
        let alone = run(&kit, "1.36.4", &[], &this, &[]);
        assert_eq!(alone.problems.len(), 2, "{:?}", alone.problems);
        // The other environment made both; its own broken Job and its copy of the shared Service
        // (same object, same NodePort) are not this run's problems.
        let others = vec![
            objects(
                "pg/k8s_manifest:ns (environment prod)",
                vec![ns("db"), ns("mon")],
            ),
            objects("pg/k8s_secret:pg (environment prod)", vec![secret]),
            objects("mon/k8s_manifest:ui (environment prod)", vec![svc]),
            objects(
                "x/k8s_manifest:broken (environment prod)",
                vec![reader("db", "missing")],
            ),
        ];
        let with = run(&kit, "1.36.4", &[], &this, &others);
        assert_eq!(with.problems, vec![]);
        assert!(with
            .objects
            .iter()
            .all(|p| !p.origin.contains("environment prod")));
    }
}
