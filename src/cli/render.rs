//! `labctl render`: what the site would send to the cluster, offline, as files or one stream;
//! and the render gate `check` runs over the same.

use std::path::Path;

use serde_json::Value;

use crate::cluster::gate::{self, Input, Kit, Outcome};
use crate::cluster::{redact, Sent, REDACTED};
use crate::error::{CliError, Exit};
use crate::site::select::{Compiled, HostWork};

use super::{load, Global, Target};

/// One host's cluster work in site order, secrets redacted, and the Kubernetes version its
/// k3s pins (None: the host pins none).
pub struct HostCluster {
    pub host: String,
    pub inputs: Vec<Input>,
    pub kube_version: Option<String>,
    /// k3s's `disable:` list (`k3s_disable`): packaged components that will not run.
    pub k3s_disabled: Vec<String>,
}

/// Every selected host that sends anything to a cluster.
pub fn cluster_work(compiled: &Compiled) -> Vec<HostCluster> {
    compiled
        .hosts
        .iter()
        .filter_map(|h| {
            let inputs = inputs(h, &compiled.secret_strings);
            (!inputs.is_empty()).then(|| HostCluster {
                host: h.host.clone(),
                inputs,
                kube_version: k3s_version(h).map(|v| gate::kube_version(&v)),
                k3s_disabled: k3s_disabled(h),
            })
        })
        .collect()
}

fn inputs(h: &HostWork, secrets: &[String]) -> Vec<Input> {
    h.items()
        .filter_map(|i| {
            let mut sent = i.inst.sends()?;
            match &mut sent {
                Sent::Release { values, .. } => redact(values, secrets),
                Sent::Objects(objs) => objs.iter_mut().for_each(|o| redact(o, secrets)),
                Sent::Removal => {}
            }
            Some(Input {
                origin: i.id.to_string(),
                sent,
            })
        })
        .collect()
}

/// The k3s version the host's roles pin (`k3s_version`, from the k3s role's defaults or the
/// inventory): the API the cluster will serve.
fn k3s_version(h: &HostWork) -> Option<String> {
    h.roles.iter().find_map(|r| {
        r.vars
            .values
            .get("k3s_version")
            .and_then(Value::as_str)
            .filter(|v| crate::facts::host::placeholder_in(v.as_bytes()).is_none())
            .map(str::to_string)
    })
}

fn k3s_disabled(h: &HostWork) -> Vec<String> {
    h.roles
        .iter()
        .find_map(|r| r.vars.values.get("k3s_disable").and_then(Value::as_array))
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What is already in the cluster when a run names an environment: what the run without one
/// (a plain `apply`, which builds the lab first) sends, per host, its origins marked. One cluster
/// holds production and staging side by side, so a staging run meets production's Secrets and
/// namespaces there. A run without an environment gets nothing: on a first install the cluster is
/// empty, and a staging object must never make a production run look complete. Compiled quietly:
/// that run's own problems are its own to report.
fn other_environments(
    g: &Global,
    t: &Target,
    compiled: &Compiled,
) -> Result<std::collections::HashMap<String, Vec<Input>>, CliError> {
    let mut out: std::collections::HashMap<String, Vec<Input>> = Default::default();
    let targeted = compiled
        .hosts
        .first()
        .and_then(|h| h.roles.first())
        .is_some_and(|r| r.vars.values.get("target_environment").is_some());
    if !targeted {
        return Ok(out);
    }
    let quiet = Global {
        sh: std::sync::Arc::new(crate::ui::Shell::buffered(
            Box::new(std::io::sink()),
            Box::new(std::io::sink()),
        )),
        verbose: 0,
        json: false,
        vault_key: g.vault_key.clone(),
        vault_password_files: g.vault_password_files.clone(),
    };
    let mut plain = t.clone();
    plain
        .extra_vars
        .retain(|e| !e.starts_with("target_environment="));
    if let Ok(l) = load::load(&quiet.sh, &quiet, &plain, true) {
        for w in cluster_work(&l.compiled) {
            out.entry(w.host)
                .or_default()
                .extend(w.inputs.into_iter().map(|mut i| {
                    i.origin = format!("{} (run without target_environment)", i.origin);
                    i
                }));
        }
    }
    Ok(out)
}

/// `labctl render`.
pub fn render(
    g: &Global,
    t: &Target,
    host: Option<&str>,
    out: Option<&Path>,
    kube_version: Option<&str>,
) -> Result<Exit, CliError> {
    let sh = &g.sh;
    let l = load::load(sh, g, t, true)?;
    let mut work = cluster_work(&l.compiled);
    if let Some(h) = host {
        if !l.compiled.hosts.iter().any(|w| w.host == h) {
            return Err(CliError::new(
                Exit::BadInput,
                format!("--host {h}: no such host among the selected ones (check the inventory and --limit)"),
            ));
        }
        work.retain(|w| w.host == h);
    }
    if work.is_empty() {
        sh.status("Render", "no selected host sends anything to a cluster");
        return Ok(Exit::Ok);
    }
    let root = t.site.parent().unwrap_or(Path::new("."));
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    let kit = Kit::find(root);
    if let Err(why) = &kit {
        sh.warn(&format!(
            "charts not rendered ({why}): releases are written as their values only, and nothing is validated"
        ));
    }
    let others = other_environments(g, t, &l.compiled)?;
    let mut failed = false;
    let mut stream = String::new();
    for w in &work {
        let kv = match kube_version.map(str::to_string).or_else(|| w.kube_version.clone()) {
            Some(v) => v,
            None => {
                return Err(CliError::new(
                    Exit::BadInput,
                    format!("{}: no k3s_version in its vars, so the Kubernetes version to render for is unknown: pass --kube-version", w.host),
                ))
            }
        };
        let outcome = kit.as_ref().ok().map(|k| {
            gate::run(
                k,
                &kv,
                &w.k3s_disabled,
                &w.inputs,
                others.get(&w.host).map_or(&[], |v| v.as_slice()),
            )
        });
        if let Some(o) = &outcome {
            for p in &o.problems {
                sh.error(&format!("{}: {p}", w.host));
            }
            failed |= !o.problems.is_empty();
        }
        match out {
            Some(dir) => write_files(&dir.join(&w.host), w, outcome.as_ref())
                .map_err(|e| CliError::new(Exit::BadInput, e))?,
            None => stream.push_str(&as_stream(w, outcome.as_ref())),
        }
    }
    if out.is_none() {
        sh.out(&stream);
    }
    if let Some(dir) = out {
        sh.status(
            "Rendered",
            &format!("{} host(s) into {}", work.len(), dir.display()),
        );
    }
    Ok(if failed { Exit::BadInput } else { Exit::Ok })
}

fn slug(origin: &str) -> String {
    origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn yaml_doc(v: &Value) -> String {
    serde_saphyr::to_string(v)
        .unwrap_or_else(|_| serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Files, one per resource in site order: `NN-origin.values.yaml` (a release's values),
/// `NN-origin.rendered.yaml` (the chart's output), `NN-origin.yaml` (objects).
fn write_files(dir: &Path, w: &HostCluster, outcome: Option<&Outcome>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: String, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    for (i, input) in w.inputs.iter().enumerate() {
        let base = format!("{:02}-{}", i + 1, slug(&input.origin));
        match &input.sent {
            Sent::Release {
                name,
                namespace,
                chart,
                version,
                values,
                ..
            } => {
                write(
                    format!("{base}.values.yaml"),
                    format!("# {}: helm release {namespace}/{name}, chart {chart} {version}\n# Secret values read {REDACTED}.\n{}", input.origin, yaml_doc(values)),
                )?;
                if let Some(text) = outcome.and_then(|o| rendered(o, &input.origin)) {
                    write(format!("{base}.rendered.yaml"), text.to_string())?;
                }
            }
            Sent::Objects(objs) => write(
                format!("{base}.yaml"),
                format!("# {}\n{}", input.origin, docs(objs)),
            )?,
            Sent::Removal => {}
        }
    }
    Ok(())
}

fn rendered<'a>(o: &'a Outcome, origin: &str) -> Option<&'a str> {
    o.rendered
        .iter()
        .find(|(k, _)| k == origin)
        .map(|(_, t)| t.as_str())
}

fn docs(objs: &[Value]) -> String {
    objs.iter()
        .map(|o| format!("---\n{}", yaml_doc(o)))
        .collect::<String>()
}

/// One YAML stream of every object (chart output where rendered), for piping into a validator.
fn as_stream(w: &HostCluster, outcome: Option<&Outcome>) -> String {
    let mut s = String::new();
    for input in &w.inputs {
        match &input.sent {
            Sent::Release {
                name,
                namespace,
                chart,
                version,
                ..
            } => match outcome.and_then(|o| rendered(o, &input.origin)) {
                Some(text) => {
                    s.push_str(&format!(
                        "# {} ({}): release {namespace}/{name}, {chart} {version}\n",
                        w.host, input.origin
                    ));
                    s.push_str(text);
                    if !text.ends_with('\n') {
                        s.push('\n');
                    }
                }
                None => s.push_str(&format!(
                    "# {} ({}): release {namespace}/{name}, {chart} {version}: not rendered\n",
                    w.host, input.origin
                )),
            },
            Sent::Objects(objs) => {
                s.push_str(&format!("# {} ({})\n", w.host, input.origin));
                s.push_str(&docs(objs));
            }
            Sent::Removal => {}
        }
    }
    s
}

/// `check`'s part: the gate over every host, or the reason it did not run. Problems are printed;
/// the result says whether there were any.
pub fn gate_for_check(
    g: &Global,
    t: &Target,
    root: &Path,
    compiled: &Compiled,
) -> Result<bool, CliError> {
    let sh = &g.sh;
    let work = cluster_work(compiled);
    if work.is_empty() {
        return Ok(true);
    }
    let kit = match Kit::find(root) {
        Ok(k) => k,
        Err(why) => {
            sh.status(
                "Render",
                &format!("skipped: {why}. Releases and manifests were not rendered by helm nor validated against Kubernetes schemas"),
            );
            return Ok(true);
        }
    };
    let others = other_environments(g, t, compiled)?;
    let mut ok = true;
    let mut releases = 0;
    let mut objects = 0;
    for w in &work {
        let Some(kv) = &w.kube_version else {
            sh.status(
                "Render",
                &format!("skipped for {}: no k3s_version in its vars", w.host),
            );
            continue;
        };
        let o = gate::run(
            &kit,
            kv,
            &w.k3s_disabled,
            &w.inputs,
            others.get(&w.host).map_or(&[], |v| v.as_slice()),
        );
        releases += o.rendered.len();
        objects += o.objects.iter().filter(|p| p.order > 0).count();
        for p in &o.problems {
            sh.error(&format!("{}: {p}", w.host));
        }
        ok &= o.problems.is_empty();
    }
    let schemas = if kit.schemas.is_some() {
        "built-in kinds and custom resources"
    } else {
        "custom resources only ($LABCTL_K8S_SCHEMAS unset: built-in kinds not validated)"
    };
    sh.status(
        "Rendered",
        &format!(
            "{releases} release(s) with {} and validated {objects} object(s) strictly: {schemas}",
            kit.helm.display()
        ),
    );
    Ok(ok)
}
