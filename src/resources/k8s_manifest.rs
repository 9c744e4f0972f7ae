//! `k8s_manifest`: Kubernetes objects from a rendered manifest, applied server-side.
//!
//! ```yaml
//! - k8s_manifest:
//!     manifest: root-app.yaml.j2          # roles/R/templates/ or values/…; or `content: |` inline
//!     kubeconfig: /etc/rancher/k3s/k3s.yaml   # the default
//!     force_conflicts: false              # take over fields another applier (helm, Argo CD) owns
//!     state: present                      # absent: delete these objects (last first)
//! ```
//!
//! Multi-document YAML (`---`) is one resource with one object per document. Drift is judged on
//! the fields WE set only: each rendered object is compared with the live object restricted to
//! our keys, recursively, so defaults, `status` and metadata the API server adds never count.
//! Objects travel as JSON on stdin (`kubectl apply --server-side -f -`), one step per object.
//! labctl owns the fields it declares: drift made by hand (`kubectl edit`/`patch`/`scale`) is
//! taken back on apply, and plan says from whom; fields another applier owns stay a conflict
//! (an error naming the resource) unless `force_conflicts: true`.
//! Secrets: use `k8s_secret`; a Secret here would always drift (`stringData` is write-only).
//! With `state: absent` the same manifest names what to delete: each object that exists is
//! deleted (`kubectl delete`, waiting until it is gone), in reverse order, so a role can take
//! back what it installed.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::support::json::{canonical, differs, paths, restrict, summarize, value_diff};
use super::support::kube::{check_kubeconfig, default_kubeconfig, yaml_error};
use super::ResourceError;
use super::{q, DiffCx, PrepareCx, Resource, State};
use crate::facts::k8s::{self, Seen};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step};
use crate::secret::Secret;

pub struct K8sManifest;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub manifest: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default = "default_kubeconfig")]
    pub kubeconfig: String,
    #[serde(default)]
    pub force_conflicts: bool,
    #[serde(default)]
    pub state: State,
    #[serde(skip)]
    pub objects: Vec<Obj>,
}

/// One rendered object, its identity lifted out for fact keys and plan lines.
#[derive(Clone, Debug)]
pub struct Obj {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Secret<Value>,
}

impl Obj {
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// One object's live state: the query `facts` asks and `diff` reads.
fn object_query(o: &Obj, kubeconfig: &str) -> k8s::ObjectQuery {
    k8s::ObjectQuery::new(
        &o.api_version,
        &o.kind,
        o.namespace.as_deref(),
        &o.name,
        kubeconfig,
    )
}

impl Resource for K8sManifest {
    const KIND: &'static str = "k8s_manifest";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        if let Some(m) = &spec.manifest {
            return m.clone();
        }
        match spec.objects.as_slice() {
            [] => "(empty manifest)".into(),
            [o] => o.label(),
            [o, rest @ ..] => format!("{} (+{} more)", o.label(), rest.len()),
        }
    }

    fn prepare(spec: &mut Spec, cx: &PrepareCx) -> Result<(), ResourceError> {
        check_kubeconfig(&spec.kubeconfig)?;
        let text = match (&spec.manifest, spec.content.take()) {
            (Some(_), Some(_)) => {
                return Err(ResourceError::Spec(
                    "give only one of `manifest` or `content`".into(),
                ))
            }
            (None, None) => {
                return Err(ResourceError::Spec(
                    "give `manifest` (a template) or `content`".into(),
                ))
            }
            (Some(m), None) => String::from_utf8(cx.render_template(m)?.into_inner())
                .map_err(|_| "the manifest is not UTF-8".to_string())
                .map_err(ResourceError::Spec)?,
            (None, Some(c)) => c,
        };
        spec.objects = parse_objects(&text, cx.tainted.get()).map_err(ResourceError::Spec)?;
        if spec.objects.is_empty() {
            return Err(ResourceError::Spec("the manifest holds no object".into()));
        }
        Ok(())
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        spec.objects
            .iter()
            .map(|o| object_query(o, &spec.kubeconfig).query())
            .collect()
    }

    fn sends(spec: &Spec) -> Option<crate::cluster::Sent> {
        Some(match spec.state {
            State::Absent => crate::cluster::Sent::Removal,
            State::Present => crate::cluster::Sent::Objects(
                spec.objects
                    .iter()
                    .map(|o| o.body.expose().clone())
                    .collect(),
            ),
        })
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        if spec.state == State::Absent {
            return absent_diff(spec, facts).map_err(ResourceError::Host);
        }
        let mut reasons = Vec::new();
        let mut diffs = Vec::new();
        let mut steps = Vec::new();
        let mut present = 0;
        for o in &spec.objects {
            let mut force = spec.force_conflicts;
            let seen = facts.get(&object_query(o, &spec.kubeconfig))?;
            let want = o.body.expose();
            let live = match seen {
                Seen::Present(live) => {
                    present += 1;
                    if !differs(want, &live) {
                        continue;
                    }
                    let paths = diff_paths(want, &live);
                    reasons.push(format!("{} differs at {}", o.label(), summarize(&paths)));
                    let editors = hand_editors(&live);
                    if !editors.is_empty() && !spec.force_conflicts {
                        reasons.push(format!(
                            "{}: taking back the fields labctl declares from {}",
                            o.label(),
                            editors.join(", ")
                        ));
                        force = true;
                    }
                    Some(restrict(want, &live))
                }
                Seen::Absent => {
                    reasons.push(format!("{} absent", o.label()));
                    None
                }
                Seen::Unavailable(why) => {
                    reasons.push(format!("{} absent (kubectl unavailable: {why})", o.label()));
                    None
                }
            };
            diffs.push(value_diff(&o.label(), live.as_ref(), want, cx));
            steps.push(apply_step(o, &spec.kubeconfig, force));
        }
        if steps.is_empty() {
            return Ok(None);
        }
        let action = if present == 0 {
            Action::Create
        } else {
            Action::Update
        };
        Ok(Some(
            Drift::new(action, reasons, steps).with_diff(Some(diffs.join("\n"))),
        ))
    }
}

/// `state: absent`: delete what exists, last object first (a namespace after what is in it).
/// Without a cluster there is nothing to delete.
fn absent_diff(spec: &Spec, facts: &Facts) -> Result<Option<Drift>, String> {
    let mut reasons = Vec::new();
    let mut steps = Vec::new();
    for o in spec.objects.iter().rev() {
        let seen = facts
            .get(&object_query(o, &spec.kubeconfig))
            .map_err(|e| e.to_string())?;
        if let Seen::Present(_) = seen {
            reasons.push(format!("{} present", o.label()));
            let ns = o
                .namespace
                .as_deref()
                .map(|n| format!(" -n {}", q(n)))
                .unwrap_or_default();
            steps.push(Step::sh(format!(
                "kubectl delete {} {}{ns} --kubeconfig {} --wait=true",
                q(&k8s::resource_arg(&o.api_version, &o.kind)),
                q(&o.name),
                q(&spec.kubeconfig)
            )));
        }
    }
    if steps.is_empty() {
        return Ok(None);
    }
    Ok(Some(Drift::new(Action::Remove, reasons, steps)))
}

/// Who else wrote this object by hand, when nothing else applies it: the field managers of
/// imperative writes (`operation: Update`, status aside: `kubectl edit`/`patch`/`scale`, a script) other than
/// labctl, if no other manager *applies* it (`operation: Apply`: helm 4, Argo CD, another
/// labctl). labctl owns the fields it declares, so a repair of drift made by hand takes them
/// back (`--force-conflicts`) instead of failing on server-side apply's conflict; a field
/// another applier owns is two tools fighting over it, which stays an error unless the
/// resource says `force_conflicts: true`. Empty when the object carries no managedFields.
fn hand_editors(live: &Value) -> Vec<String> {
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let others = entries
        .iter()
        .filter(|m| m["manager"].as_str() != Some("labctl") && m["subresource"] != "status");
    if others.clone().any(|m| m["operation"] == "Apply") {
        return Vec::new();
    }
    let mut names: Vec<String> = others
        .filter(|m| m["operation"] == "Update")
        .filter_map(|m| m["manager"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn apply_step(o: &Obj, kubeconfig: &str, force: bool) -> Step {
    let mut data = serde_json::to_vec(&canonical(o.body.expose())).expect("JSON values serialize");
    data.push(b'\n');
    let force = if force { " --force-conflicts" } else { "" };
    Step::Stdin {
        script: format!(
            "kubectl apply --server-side --field-manager=labctl{force} --kubeconfig {} -f -",
            q(kubeconfig)
        ),
        data: Secret::new(data),
    }
}

/// Rendered YAML (maybe several `---` documents) → objects, each with apiVersion, kind and
/// metadata.name. Parse errors of secret text name no content.
fn parse_objects(text: &str, secret: bool) -> Result<Vec<Obj>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| yaml_error("manifest", &e.to_string(), secret))?;
    let mut out = Vec::new();
    for (i, mut d) in docs.into_iter().enumerate() {
        if d.is_null() {
            continue;
        }
        let at = format!("manifest document {}", i + 1);
        let Value::Object(m) = &mut d else {
            return Err(format!("{at} is not a mapping"));
        };
        let s =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let api_version = s(m, "apiVersion").ok_or_else(|| format!("{at} has no `apiVersion`"))?;
        let kind = s(m, "kind").ok_or_else(|| format!("{at} has no `kind`"))?;
        if kind == "List" || kind.ends_with("List") {
            return Err(format!(
                "{at} is a {kind}: write its items as `---` documents"
            ));
        }
        m.remove("status");
        let meta = m
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("{at} ({kind}) has no `metadata`"))?;
        for k in SERVER_FIELDS {
            meta.remove(*k);
        }
        let name =
            s(meta, "name").ok_or_else(|| format!("{at} ({kind}) has no `metadata.name`"))?;
        let namespace = s(meta, "namespace");
        for (what, v) in [
            ("kind", &kind),
            ("name", &name),
            ("apiVersion", &api_version),
        ] {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{at}: `{what}` must be a non-empty word"));
            }
        }
        out.push(Obj {
            api_version,
            kind,
            namespace,
            name,
            body: Secret::new(d),
        });
    }
    Ok(out)
}

/// Metadata the API server owns: never part of what we manage.
const SERVER_FIELDS: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
];

fn diff_paths(want: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    paths(want, Some(live), true, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::helm::tests::b64;
    use crate::resources::support::{json::merge, kube::DEFAULT_KUBECONFIG};
    use crate::resources::testutil::*;
    use serde_json::json;

    const KC: &str = DEFAULT_KUBECONFIG;

    fn prepared(text: &str) -> Spec {
        let mut s = spec::<K8sManifest>("content: x\n");
        s.content = None;
        s.objects = parse_objects(text, false).unwrap();
        s
    }

    #[test]
    fn hand_edits_are_taken_back_but_another_applier_is_not_overridden() {
        let live = |entries: Value| json!({"metadata": {"managedFields": entries}});
        let m = |manager: &str, op: &str| json!({"manager": manager, "operation": op});
        // `kubectl patch` and `kubectl edit` wrote fields labctl applies: labctl takes them back.
        assert_eq!(
            hand_editors(&live(json!([
                m("labctl", "Apply"),
                m("kubectl-patch", "Update"),
                m("kubectl-edit", "Update"),
                m("kubectl-patch", "Update")
            ]))),
            ["kubectl-edit", "kubectl-patch"]
        );
        // Another tool applies this object too: its fields stay its own (a conflict is an error).
        assert!(hand_editors(&live(json!([
            m("labctl", "Apply"),
            m("helm", "Apply"),
            m("kubectl-patch", "Update")
        ])))
        .is_empty());
        // `kubectl scale` writes spec.replicas through the scale subresource: a hand edit too.
        let scale = json!({"manager": "kubectl", "operation": "Update", "subresource": "scale"});
        assert_eq!(
            hand_editors(&live(json!([m("labctl", "Apply"), scale]))),
            ["kubectl"]
        );
        // Status written by a controller is a subresource, not the fields labctl sends.
        let status = json!({"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"});
        assert!(hand_editors(&live(json!([m("labctl", "Apply"), status]))).is_empty());
        // Nothing known about the writers (a stand-in, an old server): nothing forced.
        assert!(hand_editors(&json!({"metadata": {}})).is_empty());
    }

    const TWO: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: db}\ndata: {k: v}\n---\n\
                       apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: b, namespace: db}\nspec: {schedule: \"0 2 * * *\", suspend: false}\n";

    fn live(objs: &[(&str, &str, Option<Value>)]) -> Facts {
        let mut pairs = Vec::new();
        for (av, kind, v) in objs {
            let name = if *kind == "ConfigMap" { "a" } else { "b" };
            let key = k8s::ObjectQuery::new(av, kind, Some("db"), name, KC).key();
            let out = match v {
                Some(v) => format!("json {}\n", b64(&v.to_string())),
                None => "absent\n".into(),
            };
            pairs.push((key, out));
        }
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        facts(&refs)
    }

    fn server_view(mut v: Value) -> Value {
        v["metadata"]["uid"] = json!("1234");
        v["metadata"]["resourceVersion"] = json!("99");
        v["metadata"]["managedFields"] = json!([{"manager": "labctl"}]);
        v["metadata"]["annotations"] = json!({"added.by/kubectl": "x"});
        v["status"] = json!({"lastScheduleTime": "now"});
        if v["kind"] == "CronJob" {
            v["spec"]["concurrencyPolicy"] = json!("Allow");
        }
        v
    }

    #[test]
    fn multi_document_manifest_parses_with_identities() {
        let s = prepared(TWO);
        assert_eq!(
            s.objects.iter().map(Obj::label).collect::<Vec<_>>(),
            vec!["ConfigMap/db/a", "CronJob/db/b"]
        );
        assert_eq!(K8sManifest::facts(&s).len(), 2);
        assert!(parse_objects("kind: X\n", false)
            .unwrap_err()
            .to_string()
            .contains("apiVersion"));
        assert!(
            parse_objects("apiVersion: v1\nkind: X\nmetadata: {}\n", false)
                .unwrap_err()
                .to_string()
                .contains("metadata.name")
        );
    }

    #[test]
    fn state_absent_deletes_what_exists_last_first() {
        let mut s = prepared(TWO);
        s.state = State::Absent;
        let both = live(&[
            ("v1", "ConfigMap", Some(json!({"kind": "ConfigMap"}))),
            ("batch/v1", "CronJob", Some(json!({"kind": "CronJob"}))),
        ]);
        // Present → removed, the CronJob (listed last) first.
        let d = K8sManifest::diff(&s, &both, &cx()).unwrap().unwrap();
        assert_eq!(d.action, Action::Remove);
        assert_eq!(
            d.reasons,
            ["CronJob/db/b present", "ConfigMap/db/a present"]
        );
        assert_eq!(
            scripts(&d),
            format!(
                "kubectl delete CronJob.v1.batch b -n db --kubeconfig {KC} --wait=true\n\
                 kubectl delete ConfigMap a -n db --kubeconfig {KC} --wait=true"
            )
        );
        // Partly gone (drift): only what is left; all gone: in sync; no cluster: nothing to do.
        let one = live(&[
            ("v1", "ConfigMap", Some(json!({"kind": "ConfigMap"}))),
            ("batch/v1", "CronJob", None),
        ]);
        assert_eq!(
            K8sManifest::diff(&s, &one, &cx())
                .unwrap()
                .unwrap()
                .steps
                .len(),
            1
        );
        let none = live(&[("v1", "ConfigMap", None), ("batch/v1", "CronJob", None)]);
        assert!(K8sManifest::diff(&s, &none, &cx()).unwrap().is_none());
        let key = k8s::ObjectQuery::new("v1", "ConfigMap", Some("db"), "a", KC).key();
        let key2 = k8s::ObjectQuery::new("batch/v1", "CronJob", Some("db"), "b", KC).key();
        let down = facts(&[(&key, "error eA==\n"), (&key2, "error eA==\n")]);
        assert!(K8sManifest::diff(&s, &down, &cx()).unwrap().is_none());
        // Check mode: planning only reads (the diff is pure; `plan` never runs steps).
        let spec_yaml = spec::<K8sManifest>("content: x\nstate: absent\n");
        assert_eq!(spec_yaml.state, State::Absent);
    }

    #[test]
    fn absent_is_created_with_one_stdin_apply_per_object() {
        let s = prepared(TWO);
        let d = K8sManifest::diff(
            &s,
            &live(&[("v1", "ConfigMap", None), ("batch/v1", "CronJob", None)]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(d.steps.len(), 2);
        match &d.steps[1] {
            Step::Stdin { script, data } => {
                assert_eq!(script, "kubectl apply --server-side --field-manager=labctl --kubeconfig /etc/rancher/k3s/k3s.yaml -f -");
                let v: Value = serde_json::from_slice(data.expose()).unwrap();
                assert_eq!(v["spec"]["schedule"], "0 2 * * *");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_added_fields_are_not_drift_but_our_fields_are() {
        let s = prepared(TWO);
        let objs: Vec<Value> = s.objects.iter().map(|o| o.body.expose().clone()).collect();
        let f = live(&[
            ("v1", "ConfigMap", Some(server_view(objs[0].clone()))),
            ("batch/v1", "CronJob", Some(server_view(objs[1].clone()))),
        ]);
        assert!(K8sManifest::diff(&s, &f, &cx()).unwrap().is_none());

        let mut changed = server_view(objs[1].clone());
        changed["spec"]["schedule"] = json!("0 3 * * *");
        let f = live(&[
            ("v1", "ConfigMap", Some(server_view(objs[0].clone()))),
            ("batch/v1", "CronJob", Some(changed)),
        ]);
        let d = K8sManifest::diff(&s, &f, &cx()).unwrap().unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reasons, vec!["CronJob/db/b differs at spec.schedule"]);
        assert_eq!(d.steps.len(), 1, "only the drifted object is applied");
        let diff = d.diff.unwrap();
        assert!(
            diff.contains("-  schedule: 0 3 * * *") && diff.contains("+  schedule: 0 2 * * *"),
            "{diff}"
        );
        assert!(
            !diff.contains("concurrencyPolicy") && !diff.contains("uid"),
            "{diff}"
        );
    }

    #[test]
    fn unavailable_cluster_plans_a_create() {
        let s = prepared(TWO);
        let key = |kind: &str, n: &str, av: &str| {
            k8s::ObjectQuery::new(av, kind, Some("db"), n, KC).key()
        };
        let f = facts(&[
            (
                &key("ConfigMap", "a", "v1"),
                "unavailable kubectl is not installed\n",
            ),
            (
                &key("CronJob", "b", "batch/v1"),
                "unavailable kubectl is not installed\n",
            ),
        ]);
        let d = K8sManifest::diff(&s, &f, &cx()).unwrap().unwrap();
        assert_eq!(d.action, Action::Create);
        assert!(d.reasons[0].contains("kubectl is not installed"));
    }

    #[test]
    fn secret_manifests_show_only_a_keyed_hash() {
        let s = prepared("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: db}\ndata: {k: canary-77}\n");
        let d = K8sManifest::diff(
            &s,
            &live(&[(
                "v1",
                "ConfigMap",
                Some(json!({"data": {"k": "old-canary"}})),
            )]),
            &secret_cx(),
        )
        .unwrap()
        .unwrap();
        let shown = format!("{:?} {:?}", d.diff, d.reasons);
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("hmac-sha256:"), "{shown}");
        assert!(
            yaml_error("values", "bad at line 2 column 3: 'canary'", true)
                .ends_with("at line 2 column 3 (details hidden: it holds a secret)")
        );
    }

    #[test]
    fn helpers_canonicalise_merge_and_compare() {
        assert_eq!(
            canonical(&json!({"b": 1.0, "a": [2.5]})).to_string(),
            r#"{"a":[2.5],"b":1}"#
        );
        let mut base = json!({"a": {"x": 1, "y": 2}, "l": [1]});
        merge(&mut base, &json!({"a": {"y": 3}, "l": [2]}));
        assert_eq!(base, json!({"a": {"x": 1, "y": 3}, "l": [2]}));
        assert!(!differs(
            &json!({"a": {}, "n": 1}),
            &json!({"n": 1.0, "extra": true})
        ));
        assert!(differs(&json!({"l": [1, 2]}), &json!({"l": [1]})));
        let mut p = Vec::new();
        paths(
            &json!({"a": 1, "b": {"c": 2}}),
            Some(&json!({"a": 1, "b": {"c": 3}, "d": 0})),
            false,
            "",
            &mut p,
        );
        assert_eq!(p, vec!["b.c", "d"]);
    }
}

/// The shipped roles' values files and manifests render, parse, and carry the keys each chart
/// or object needs (what `labctl check` renders, checked deeper).
#[cfg(test)]
mod role_templates {
    use super::*;
    use crate::template::{Ctx, Engine};
    use std::path::Path;

    fn ctx(role: &str) -> Ctx {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text =
            std::fs::read_to_string(root.join(format!("roles/{role}/defaults.yml"))).unwrap();
        let mut vars: indexmap::IndexMap<String, Value> = serde_saphyr::from_str(&text).unwrap();
        // Vars that point at the vault get literal stand-ins, as if resolved.
        for (_, v) in vars.iter_mut() {
            if v.as_str().is_some_and(|s| s.contains("vault_")) {
                *v = Value::String("canary-from-vault".into());
            }
        }
        vars.insert("postgres_namespace".into(), json!("db"));
        let secret = vec!["canary-from-vault".to_string()];
        Ctx::new(&vars, Default::default(), secret)
    }

    /// `name` is `values/FILE` (chart values users edit) or a file in `roles/ROLE/templates/`.
    fn render(role: &str, name: &str) -> (String, bool) {
        let e = Engine::new(Path::new(env!("CARGO_MANIFEST_DIR")));
        let path = if name.starts_with("values/") {
            name.to_string()
        } else {
            format!("roles/{role}/templates/{name}")
        };
        let r = e
            .render_file(&path, &ctx(role))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        (r.text, r.tainted)
    }

    fn values(role: &str, name: &str) -> Value {
        serde_saphyr::from_str(&render(role, name).0).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    use serde_json::json;

    #[test]
    fn chart_values_have_the_keys_the_charts_read() {
        let op = values("postgres", "values/cnpg-operator.yaml.j2");
        assert_eq!(
            op["image"]["repository"],
            "ghcr.io/cloudnative-pg/cloudnative-pg"
        );
        assert_eq!(op["crds"]["create"], true);

        let (text, tainted) = render("argocd", "values/argocd.yaml.j2");
        assert!(tainted, "the bcrypt hash comes from the vault");
        let ac: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            ac["configs"]["secret"]["argocdServerAdminPassword"],
            "canary-from-vault"
        );
        assert_eq!(
            ac["global"]["image"]["repository"],
            "quay.io/argoproj/argocd"
        );

        let (text, tainted) = render("monitoring", "values/monitoring.yaml.j2");
        assert!(tainted, "the SMTP password comes from the vault");
        let mo: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(mo["prometheus"]["prometheusSpec"]["retention"], "15d");
        assert!(
            mo["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
                ["resources"]["requests"]["storage"]
                .is_string()
        );
        assert_eq!(mo["grafana"]["admin"]["existingSecret"], "grafana-admin");
        assert!(
            mo["grafana"].get("adminPassword").is_none(),
            "the Grafana password is in its Secret, not the values"
        );
    }

    #[test]
    fn manifests_parse_into_the_expected_objects() {
        let labels = |role: &str, name: &str| {
            parse_objects(&render(role, name).0, false)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .iter()
                .map(Obj::label)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels("argocd", "root-app.yaml.j2"),
            vec!["Application/argocd/root"]
        );
        assert_eq!(
            labels("postgres", "postgres-cluster.yaml.j2"),
            vec!["Cluster/db/postgres", "Service/db/postgres-nodeport"]
        );
        let pg = parse_objects(&render("postgres", "postgres-cluster.yaml.j2").0, false).unwrap();
        let spec = &pg[0].body.expose()["spec"];
        assert_eq!(spec["superuserSecret"]["name"], "postgres-superuser");
        assert_eq!(
            spec["bootstrap"]["initdb"]["secret"]["name"],
            "postgres-app"
        );
        assert_eq!(pg[1].body.expose()["spec"]["ports"][0]["nodePort"], 30432);
        assert_eq!(
            labels("redis", "redis.k8s.j2"),
            vec!["Service/cache/redis", "StatefulSet/cache/redis"]
        );
        let (text, tainted) = render("redis", "redis.k8s.j2");
        assert!(
            !tainted,
            "the Redis manifest holds no secret: the password is in the Secret"
        );
        assert!(text.contains("maxmemory 256mb\\n"), "{text}");
        let app = parse_objects(&render("argocd", "root-app.yaml.j2").0, false).unwrap();
        let sync = &app[0].body.expose()["spec"]["syncPolicy"]["automated"];
        assert_eq!(
            (sync["prune"].as_bool(), sync["selfHeal"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(
            labels("monitoring", "lab-rules.yaml.j2"),
            vec!["PrometheusRule/monitoring/lab-rules"]
        );
        let rules = parse_objects(&render("monitoring", "lab-rules.yaml.j2").0, false).unwrap();
        let exprs = rules[0].body.expose()["spec"]["groups"].to_string();
        assert!(
            exprs.contains("* 100 > 80")
                && exprs.contains("namespace=\\\"db\\\"")
                && exprs.contains("[1h]) > 3"),
            "{exprs}"
        );
        assert!(
            exprs.contains("{{ $labels.mountpoint }}"),
            "alert templates stay literal: {exprs}"
        );

        let objs = parse_objects(&render("backups", "pg-backup.k8s.j2").0, false).unwrap();
        assert_eq!(
            objs.iter().map(Obj::label).collect::<Vec<_>>(),
            vec![
                "ConfigMap/db/pg-backup-scripts",
                "CronJob/db/pg-backup",
                "CronJob/db/pg-restore-drill"
            ]
        );
        // The CronJob runs exactly the tested scripts, byte for byte.
        for f in ["pg-backup.sh", "pg-restore-drill.sh"] {
            let want = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("scripts")
                    .join(f),
            )
            .unwrap();
            assert_eq!(
                objs[0].body.expose()["data"][f].as_str().unwrap(),
                want,
                "{f}"
            );
        }
        let job = objs[1].body.expose();
        assert_eq!(job["spec"]["schedule"], "0 2 * * *");
        // Dumps go to the server's folder that backup-offsite.sh pushes from.
        let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][1]["hostPath"]["path"],
            "/var/backups/postgres"
        );
        assert_eq!(pod["securityContext"]["runAsUser"], 39032);
    }
}
