//! Filters Ansible users reach for, beyond minijinja's builtins.

use base64::Engine as _;
use minijinja::{Environment, Error, ErrorKind, Value};

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("b64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    });
    env.add_filter("b64decode", |s: String| -> Result<String, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim().as_bytes())
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "b64decode: not base64"))?;
        String::from_utf8(bytes)
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "b64decode: not UTF-8"))
    });
    env.add_filter("to_json", |v: Value| -> Result<String, Error> {
        serde_json::to_string(&v)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("to_json: {e}")))
    });
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_yaml);
    env.add_filter("quote", |s: String| {
        shlex::try_quote(&s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| "''".into())
    });
    env.add_filter("basename", |s: String| {
        s.rsplit('/').next().unwrap_or("").to_string()
    });
    env.add_filter("dirname", |s: String| match s.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => s[..i].to_string(),
        None => String::new(),
    });
    env.add_filter("bool", |v: Value| -> bool {
        match v.as_str() {
            Some(s) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on"),
            None => v.is_true(),
        }
    });
    // Ansible's `mandatory(msg)`: the message, when given, is the error.
    env.add_filter(
        "mandatory",
        |v: Value, msg: Option<String>| -> Result<Value, Error> {
            if v.is_undefined() || v.is_none() {
                Err(Error::new(
                    ErrorKind::UndefinedError,
                    msg.unwrap_or_else(|| "mandatory variable is not set".into()),
                ))
            } else {
                Ok(v)
            }
        },
    );
    env.add_filter(
        "regex_replace",
        |s: String, pat: String, rep: String| -> Result<String, Error> {
            let re = regex::Regex::new(&pat).map_err(|e| {
                Error::new(ErrorKind::InvalidOperation, format!("regex_replace: {e}"))
            })?;
            Ok(re
                .replace_all(&s, rep.replace("\\", "$").as_str())
                .into_owned())
        },
    );
    env.add_filter(
        "regex_search",
        |s: String, pat: String| -> Result<Value, Error> {
            let re = regex::Regex::new(&pat).map_err(|e| {
                Error::new(ErrorKind::InvalidOperation, format!("regex_search: {e}"))
            })?;
            Ok(re
                .find(&s)
                .map(|m| Value::from(m.as_str()))
                .unwrap_or(Value::from(())))
        },
    );
    // Ansible's `extract`: `groups['k3s_agents'] | map('extract', hostvars, 'wg_address')` turns
    // host names into one var of each host (a missing var is an error, as in strict templates).
    env.add_filter(
        "extract",
        |key: Value, container: Value, morekey: Option<Value>| -> Result<Value, Error> {
            let v = container.get_item(&key)?;
            let v = match morekey {
                Some(k) if !v.is_undefined() => v.get_item(&k)?,
                _ => v,
            };
            if v.is_undefined() {
                return Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("extract: nothing at {key}"),
                ));
            }
            Ok(v)
        },
    );
    env.add_filter(
        "ternary",
        |v: Value, a: Value, b: Value| if v.is_true() { a } else { b },
    );
    // WireGuard: the public key of a base64 private key, so nobody copies public keys around.
    env.add_filter("wg_pubkey", |s: String| -> Result<String, Error> {
        crate::template::filters::wg_pubkey(&s)
            .map_err(|m| Error::new(ErrorKind::InvalidOperation, m))
    });
    // A Helm chart's fullname for a release, by the rule most charts' `_helpers.tpl` copy
    // (kube-prometheus-stack, grafana): `release | helm_fullname('grafana')`. Names the chart
    // gives its objects (PVCs, Deployments) follow from it, so a role can name them for any
    // release instead of assuming the default one.
    env.add_filter(
        "helm_fullname",
        |release: String, chart: String, max: Option<usize>| {
            helm_fullname(&release, &chart, max.unwrap_or(63))
        },
    );
    // `ipaddr`-lite for the common "host N of a subnet" case: "10.8.0.0/24" | ipv4_host(3) → "10.8.0.3".
    env.add_filter(
        "ipv4_host",
        |cidr: String, n: u32| -> Result<String, Error> {
            let (net, _) = cidr.split_once('/').unwrap_or((cidr.as_str(), "32"));
            let ip: std::net::Ipv4Addr = net.parse().map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("ipv4_host: `{cidr}` is not an IPv4 network"),
                )
            })?;
            Ok(std::net::Ipv4Addr::from(u32::from(ip).wrapping_add(n)).to_string())
        },
    );
}

fn to_yaml(v: Value) -> Result<String, Error> {
    let json = serde_json::to_value(&v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("to_yaml: {e}")))?;
    serde_saphyr::to_string(&json)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("to_yaml: {e}")))
}

/// The chart's `fullname` helper without fullnameOverride/nameOverride: the release name when
/// it contains the chart's name, else RELEASE-CHART; cut to `max` characters (Helm's `trunc`;
/// kube-prometheus-stack uses 26, most charts 63), then one trailing `-` dropped (`trimSuffix`).
fn helm_fullname(release: &str, chart: &str, max: usize) -> String {
    let full = if release.contains(chart) {
        release.to_string()
    } else {
        format!("{release}-{chart}")
    };
    let cut: String = full.chars().take(max).collect();
    match cut.strip_suffix('-') {
        Some(s) => s.to_string(),
        None => cut,
    }
}

fn wg_pubkey(private_b64: &str) -> Result<String, String> {
    // `check` without a vault key renders vault vars as placeholders: derive a placeholder.
    if private_b64.starts_with("<vault:") {
        return Ok(format!("<public key of {private_b64}>"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(private_b64.trim())
        .map_err(|_| "wg_pubkey: the private key is not base64".to_string())?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| "wg_pubkey: a WireGuard key is 32 bytes".to_string())?;
    let secret = x25519_dalek::StaticSecret::from(bytes);
    let public = x25519_dalek::PublicKey::from(&secret);
    Ok(base64::engine::general_purpose::STANDARD.encode(public.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn extract_picks_one_var_of_each_host() {
        let mut env = minijinja::Environment::new();
        super::register(&mut env);
        let ctx = minijinja::context! {
            hosts => vec!["a", "b"],
            hostvars => minijinja::context! { a => minijinja::context!{ ip => "10.0.0.1" }, b => minijinja::context!{ ip => "10.0.0.2" } },
        };
        let out = env
            .render_str(
                "{{ hosts | map('extract', hostvars, 'ip') | join(',') }}",
                ctx.clone(),
            )
            .unwrap();
        assert_eq!(out, "10.0.0.1,10.0.0.2");
        let err = env
            .render_str(
                "{{ hosts | map('extract', hostvars, 'nope') | join(',') }}",
                ctx,
            )
            .unwrap_err();
        assert!(err.to_string().contains("extract: nothing at a"), "{err}");
    }

    #[test]
    fn helm_fullname_follows_the_charts_helper() {
        use super::helm_fullname as f;
        let kps = "kube-prometheus-stack";
        // The default release: RELEASE-CHART cut to 26.
        assert_eq!(f("monitoring", kps, 26), "monitoring-kube-prometheus");
        assert_eq!(f("mon", kps, 26), "mon-kube-prometheus-stack");
        // Cut right after a `-` (`lab-metrx-kube-prometheus-` is 26 characters): it goes.
        assert_eq!(f("lab-metrx", kps, 26), "lab-metrx-kube-prometheus");
        // A release holding the chart's name is the fullname, cut too.
        assert_eq!(f("kube-prometheus-stack", kps, 26), "kube-prometheus-stack");
        assert_eq!(
            f("kube-prometheus-stack-grafana", kps, 26),
            "kube-prometheus-stack-graf"
        );
        assert_eq!(f("grafana-lab", "grafana", 63), "grafana-lab");
        assert_eq!(f("monitoring", "grafana", 63), "monitoring-grafana");
        // Only one `-` is dropped, as Go's strings.TrimSuffix does.
        assert_eq!(f("ab--", "x", 4), "ab-");

        let mut env = minijinja::Environment::new();
        super::register(&mut env);
        let out = env
            .render_str(
                "{{ r | helm_fullname('grafana') }} {{ r | helm_fullname('kube-prometheus-stack', 26) }}",
                minijinja::context! { r => "monitoring" },
            )
            .unwrap();
        assert_eq!(out, "monitoring-grafana monitoring-kube-prometheus");
    }

    #[test]
    fn wg_pubkey_matches_wg_tool() {
        // The key pair from the wg-quick(8) example; `echo PRIVATE | wg pubkey` gives PUBLIC.
        let private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let public = super::wg_pubkey(private).unwrap();
        assert_eq!(public, "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
        assert!(super::wg_pubkey("short").is_err());
    }
}
