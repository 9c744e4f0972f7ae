//! `sysctl`: kernel parameters in a drop-in file (for boot) and live (now).
//!
//! ```yaml
//! - sysctl:
//!     file: /etc/sysctl.d/60-k3s.conf
//!     values:
//!       net.ipv4.ip_forward: 1
//!       net.bridge.bridge-nf-call-iptables: 1     # needs br_netfilter: load it earlier
//!       net.ipv4.ip_local_port_range: "32768 60999"
//!     apply: true                                 # default: also set the live values now
//! ```
//!
//! The file holds exactly the given keys, in the given order, under a `# managed by labctl`
//! header. Live values are compared whitespace-normalized. A key missing from the kernel (its
//! module not loaded yet) is planned as a change, so apply fails loudly if it is still missing.

use indexmap::IndexMap;
use serde::Deserialize;

use super::support::fs::check_path;
use super::ResourceError;
use super::{content_diff, q, DiffCx, Resource};
use crate::facts::file::{FileKind, FileQuery};
use crate::facts::sysctl::{self, Live, SysctlQuery};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};
use crate::secret::Secret;

pub struct Sysctl;

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub file: String,
    #[serde(deserialize_with = "values")]
    #[schemars(with = "IndexMap<String, super::support::StringOrNumber>")]
    pub values: IndexMap<String, String>,
    #[serde(default = "yes")]
    pub apply: bool,
}

/// YAML writes `net.ipv4.ip_forward: 1` as an integer: accept numbers and strings alike.
fn values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    let raw = IndexMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "value of `{k}` must be a number or a string, got {other}"
            ))),
        })
        .collect()
}

impl Spec {
    fn keys(&self) -> Vec<&str> {
        self.values.keys().map(String::as_str).collect()
    }

    /// The drop-in file, byte for byte.
    pub fn body(&self) -> String {
        let mut s = String::from("# managed by labctl\n");
        for (k, v) in &self.values {
            s.push_str(&format!("{k} = {}\n", sysctl::normalize(v)));
        }
        s
    }
}

fn validate(spec: &Spec) -> Result<(), ResourceError> {
    check_path(&spec.file).map_err(|e| ResourceError::spec(format!("file: {e}")))?;
    if !spec.file.ends_with(".conf") {
        return Err(ResourceError::spec(format!(
            "file `{}` must end in `.conf`: systemd-sysctl reads only *.conf at boot",
            spec.file
        )));
    }
    if spec.values.is_empty() {
        return Err(ResourceError::spec(
            "`values` is empty: give at least one `key: value`",
        ));
    }
    let key_re = regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$").expect("static regex");
    for (k, v) in &spec.values {
        if !key_re.is_match(k) || k.contains("..") || k.contains("//") {
            return Err(ResourceError::spec(format!(
                "`{k}` is not a sysctl key (like net.ipv4.ip_forward)"
            )));
        }
        if v.trim().is_empty() || v.contains(['\n', '\r', '\0']) {
            return Err(ResourceError::spec(format!(
                "value of `{k}` must be one non-empty line"
            )));
        }
    }
    Ok(())
}

/// The drop-in file and the live values: the queries `facts` asks and `diff` reads.
fn queries(spec: &Spec) -> (FileQuery, SysctlQuery) {
    (
        FileQuery::new(&spec.file, true),
        SysctlQuery::new(&spec.keys()),
    )
}

impl Resource for Sysctl {
    const KIND: &'static str = "sysctl";
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.file.clone()
    }

    fn prepare(spec: &mut Spec, _cx: &super::PrepareCx) -> Result<(), ResourceError> {
        validate(spec)
    }

    fn facts(spec: &Spec) -> Vec<FactQuery> {
        let (file, live) = queries(spec);
        let mut v = vec![file.query()];
        if spec.apply {
            v.push(live.query());
        }
        v
    }

    fn touches(spec: &Spec) -> Vec<Touch> {
        // The drop-in file and the live values; nothing else.
        vec![Touch::path(&spec.file), Touch::Facts("sysctl:")]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        validate(spec)?;
        let (file, live) = queries(spec);
        let seen = facts.get(&file)?;
        if seen.exists && seen.kind != FileKind::File {
            return Err(ResourceError::Host(format!(
                "{} is a {} on the host, not a file",
                spec.file, seen.kind
            )));
        }
        let body = spec.body();
        let mut reasons = Vec::new();
        let mut steps = Vec::new();
        let mut diff = None;
        let want_sha = crate::digest::sha256_hex(body.as_bytes());
        if !seen.exists || seen.sha256.as_deref() != Some(want_sha.as_str()) {
            reasons.push(if seen.exists {
                format!("{} differs", spec.file)
            } else {
                format!("{} absent", spec.file)
            });
            diff = Some(content_diff(
                &spec.file,
                seen.content.as_deref().filter(|_| seen.exists),
                body.as_bytes(),
                cx,
            ));
            steps.push(Step::Write {
                path: spec.file.clone(),
                content: Secret::new(body.into_bytes()),
                mode: Some("0644".into()),
                owner: Some("root".into()),
                group: Some("root".into()),
                validate: None,
                secret: cx.secret,
            });
        }
        if spec.apply {
            let live = facts.get(&live)?;
            let mut live_drift = false;
            for (k, v) in &spec.values {
                let want = sysctl::normalize(v);
                match live.values.get(k) {
                    Some(Live::Value(have)) if *have == want => {}
                    Some(Live::Value(have)) => {
                        reasons.push(format!("{k} = {have} → {want}"));
                        live_drift = true;
                    }
                    // Maybe a module loaded by an earlier resource provides it: `sysctl -p`
                    // fails loudly at apply if it is still missing.
                    Some(Live::Missing) | None => {
                        reasons.push(format!(
                            "{k} not present in the kernel (yet): is its module loaded?"
                        ));
                        live_drift = true;
                    }
                    // Write-only keys (vm.drop_caches) are actions, not state: nothing to compare.
                    Some(Live::Unreadable) => {}
                }
            }
            if live_drift {
                steps.push(Step::sh(format!("sysctl -p {}", q(&spec.file))));
            }
        }
        if steps.is_empty() {
            return Ok(None);
        }
        let action = if seen.exists {
            Action::Update
        } else {
            Action::Create
        };
        Ok(Some(Drift::new(action, reasons, steps).with_diff(diff)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::*;

    const F: &str = "/etc/sysctl.d/60-k3s.conf";
    const YAML: &str = "file: /etc/sysctl.d/60-k3s.conf\nvalues:\n  net.ipv4.ip_forward: 1\n  net.ipv4.ip_local_port_range: \"32768   60999\"\n";
    const BODY: &str = "# managed by labctl\nnet.ipv4.ip_forward = 1\nnet.ipv4.ip_local_port_range = 32768 60999\n";
    const KEY: &str = "sysctl:net.ipv4.ip_forward,net.ipv4.ip_local_port_range";

    fn file_fact(body: Option<&str>) -> String {
        use base64::Engine as _;
        match body {
            None => "absent\n".into(),
            Some(b) => format!(
                "stat regular file|644|root|root|{}\nsha256 {}\ncontent {}\n",
                b.len(),
                crate::digest::sha256_hex(b.as_bytes()),
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        }
    }

    fn diff(yaml: &str, file: Option<&str>, live: &str) -> Option<Drift> {
        let s = spec::<Sysctl>(yaml);
        let f = facts(&[
            (&format!("file+content:{F}"), &file_fact(file)),
            (KEY, live),
        ]);
        Sysctl::diff(&s, &f, &cx()).unwrap()
    }

    #[test]
    fn absent_is_created_and_applied() {
        let d = diff(
            YAML,
            None,
            "val net.ipv4.ip_forward 0\nval net.ipv4.ip_local_port_range 32768 60999\ndone\n",
        )
        .unwrap();
        assert_eq!(d.action, Action::Create);
        assert_eq!(
            d.reasons,
            [
                format!("{F} absent"),
                "net.ipv4.ip_forward = 0 → 1".to_string()
            ]
        );
        assert_eq!(scripts(&d), format!("<write {F}>\nsysctl -p {F}"));
        match &d.steps[0] {
            Step::Write { content, mode, .. } => {
                assert_eq!(std::str::from_utf8(content.expose()).unwrap(), BODY);
                assert_eq!(mode.as_deref(), Some("0644"));
            }
            other => panic!("{other:?}"),
        }
        assert!(d.diff.unwrap().contains("+net.ipv4.ip_forward = 1"));
    }

    #[test]
    fn whitespace_differences_are_in_sync() {
        // The kernel's tab (made a space by the fact) against the spec's three spaces.
        assert!(diff(
            YAML,
            Some(BODY),
            "val net.ipv4.ip_forward 1\nval net.ipv4.ip_local_port_range 32768 60999 \ndone\n"
        )
        .is_none());
    }

    #[test]
    fn only_live_drift_reapplies_the_file() {
        let d = diff(
            YAML,
            Some(BODY),
            "val net.ipv4.ip_forward 0\nval net.ipv4.ip_local_port_range 1024 65000\ndone\n",
        )
        .unwrap();
        assert_eq!(d.action, Action::Update);
        assert_eq!(
            d.reasons,
            [
                "net.ipv4.ip_forward = 0 → 1",
                "net.ipv4.ip_local_port_range = 1024 65000 → 32768 60999"
            ]
        );
        assert_eq!(scripts(&d), format!("sysctl -p {F}"));
    }

    #[test]
    fn file_drift_alone_rewrites_the_file() {
        let old = "net.ipv4.ip_forward=1\n";
        let d = diff(
            YAML,
            Some(old),
            "val net.ipv4.ip_forward 1\nval net.ipv4.ip_local_port_range 32768 60999\ndone\n",
        )
        .unwrap();
        assert_eq!(d.reasons, [format!("{F} differs")]);
        assert_eq!(scripts(&d), format!("<write {F}>"));
        assert!(d.diff.unwrap().contains("-net.ipv4.ip_forward=1"));
    }

    #[test]
    fn missing_key_is_drift_not_an_error() {
        let y =
            "file: /etc/sysctl.d/60-k3s.conf\nvalues: {net.bridge.bridge-nf-call-iptables: 1}\n";
        let s = spec::<Sysctl>(y);
        let body = s.body();
        let f = facts(&[
            (&format!("file+content:{F}"), &file_fact(Some(&body))),
            (
                "sysctl:net.bridge.bridge-nf-call-iptables",
                "missing net.bridge.bridge-nf-call-iptables\ndone\n",
            ),
        ]);
        let d = Sysctl::diff(&s, &f, &cx()).unwrap().unwrap();
        assert_eq!(d.reasons, ["net.bridge.bridge-nf-call-iptables not present in the kernel (yet): is its module loaded?"]);
        assert_eq!(scripts(&d), format!("sysctl -p {F}"));
    }

    #[test]
    fn apply_false_manages_only_the_file() {
        let y = format!("{YAML}apply: false\n");
        let s = spec::<Sysctl>(&y);
        assert_eq!(Sysctl::facts(&s).len(), 1);
        let f = facts(&[(&format!("file+content:{F}"), &file_fact(Some(BODY)))]);
        assert!(Sysctl::diff(&s, &f, &cx()).unwrap().is_none());
    }

    #[test]
    fn spec_errors() {
        let e = spec_err::<Sysctl>("file: /etc/sysctl.d/a.conf\nvalues: {a.b: [1]}\n");
        assert!(
            e.contains("t.yml:2") && e.contains("value of `a.b` must be a number or a string"),
            "{e}"
        );
        let e = spec_err::<Sysctl>("file: /etc/sysctl.d/a.conf\nvalues: {a.b: 1}\nreload: true\n");
        assert!(e.contains("t.yml:3:1") && e.contains("reload"), "{e}");
        let e = spec_err::<Sysctl>("values: {a.b: 1}\n");
        assert!(e.contains("file"), "{e}");
        let bad = |y: &str| validate(&spec::<Sysctl>(y)).unwrap_err().to_string();
        assert!(bad("file: /etc/sysctl.d/a\nvalues: {a.b: 1}\n").contains("must end in `.conf`"));
        assert!(bad("file: sysctl.conf\nvalues: {a.b: 1}\n").contains("absolute"));
        assert!(bad("file: /etc/sysctl.d/a.conf\nvalues: {\"a b\": 1}\n")
            .contains("`a b` is not a sysctl key"));
        assert!(bad("file: /etc/sysctl.d/a.conf\nvalues: {a.b: \" \"}\n").contains("non-empty"));
        assert!(bad("file: /etc/sysctl.d/a.conf\nvalues: {}\n").contains("empty"));
    }
}
