//! Helm facts: the repositories helm knows, and one release's status, chart and user values.
//!
//! Command outputs travel base64-encoded so no chart value or error text can break the answer's
//! line format. A host without helm, or without a reachable cluster, answers `unavailable REASON`
//! instead of failing the probe: `plan` then shows a create, and `apply` fails loudly.

use base64::Engine as _;
use serde_json::Value;

use super::{parse_err, q, Fact, FactError, FactQuery};

/// Why a fact could not be read (no helm binary, no kubeconfig, cluster down).
pub type Unavailable = String;

pub const REPOS_KEY: &str = "helm:repos";

/// helm's `repo list` fails with "no repositories to show" when none are configured (older
/// releases even with `-o json`); that is an empty list, not an error.
fn repos_query() -> FactQuery {
    FactQuery::single(
        REPOS_KEY.to_string(),
        "if ! command -v helm >/dev/null 2>&1; then echo 'unavailable helm is not installed'; exit 0; fi; \
                 if out=$(helm repo list -o json 2>/dev/null); then printf 'json '; printf '%s' \"$out\" | base64 -w0; echo; \
                 else err=$(helm repo list -o json 2>&1 >/dev/null); \
                 case \"$err\" in *'no repositories'*) echo 'json W10=';; *) printf 'error '; printf '%s' \"$err\" | head -n1 | base64 -w0; echo;; esac; fi"
            .to_string(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: String,
}

fn parse_repos(raw: &str) -> Result<Result<Vec<Repo>, Unavailable>, FactError> {
    let k = REPOS_KEY;
    match tagged(k, raw)? {
        Tagged::Unavailable(why) => Ok(Err(why)),
        Tagged::Json(v) => {
            let list = match v {
                Value::Null => Vec::new(),
                Value::Array(a) => a,
                _ => return Err(parse_err(k, "`helm repo list -o json` is not a list")),
            };
            let mut out = Vec::new();
            for r in list {
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| parse_err(k, "a repo has no name"))?;
                let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
                out.push(Repo {
                    name: name.to_string(),
                    url: url.to_string(),
                });
            }
            Ok(Ok(out))
        }
        Tagged::Other(_) => Err(parse_err(k, "unexpected answer")),
    }
}

fn release_key(namespace: &str, name: &str, kubeconfig: &str) -> String {
    format!("helm:release:{kubeconfig}:{namespace}/{name}")
}

fn release_query(namespace: &str, name: &str, kubeconfig: &str) -> FactQuery {
    let (ns, n, kc) = (q(namespace), q(name), q(kubeconfig));
    let filter = q(&format!("^{}$", regex::escape(name)));
    FactQuery::single(
        release_key(namespace, name, kubeconfig),
        format!(
            "if ! command -v helm >/dev/null 2>&1; then echo 'unavailable helm is not installed'; exit 0; fi; \
             if [ ! -r {kc} ]; then echo 'unavailable no kubeconfig at '{kc}; exit 0; fi; \
             if ! l=$(helm list --kubeconfig {kc} -n {ns} -o json --filter {filter} 2>&1); then \
             printf 'error '; printf '%s' \"$l\" | head -n1 | base64 -w0; echo; exit 0; fi; \
             printf 'json '; printf '%s' \"$l\" | base64 -w0; echo; \
             case \"$l\" in *'\"name\"'*) \
             if v=$(helm get values {n} --kubeconfig {kc} -n {ns} -o json 2>/dev/null); then printf 'values '; printf '%s' \"$v\" | base64 -w0; echo; fi;; esac"
        ),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// `helm list`'s `chart` column: `NAME-VERSION`.
    pub chart: String,
    pub status: String,
    pub revision: String,
    /// User-supplied values (`helm get values`), `{}` when none.
    pub values: Value,
}

/// `Ok(Ok(None))`: helm works and the release does not exist.
fn parse_release(
    k: &str,
    name: &str,
    raw: &str,
) -> Result<Result<Option<Release>, Unavailable>, FactError> {
    let k = k.to_string();
    let mut lines = raw.lines().filter(|l| !l.is_empty());
    let first = lines.next().ok_or_else(|| parse_err(&k, "no answer"))?;
    let list = match tagged(&k, first)? {
        Tagged::Unavailable(why) => return Ok(Err(why)),
        Tagged::Json(v) => v,
        Tagged::Other(_) => return Err(parse_err(&k, "unexpected answer")),
    };
    let entry = match &list {
        Value::Array(a) => a
            .iter()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
            .cloned(),
        Value::Null => None,
        _ => return Err(parse_err(&k, "`helm list -o json` is not a list")),
    };
    let Some(entry) = entry else {
        return Ok(Ok(None));
    };
    let mut values = Value::Object(Default::default());
    for l in lines {
        if let Tagged::Other((tag, rest)) = tagged(&k, l)? {
            if tag == "values" {
                let v = decode_json(&k, rest)?;
                if !v.is_null() {
                    values = v;
                }
            }
        }
    }
    let s = |f: &str| match entry.get(f) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Ok(Ok(Some(Release {
        chart: s("chart"),
        status: s("status"),
        revision: s("revision"),
        values,
    })))
}

/// The repositories helm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReposQuery;

/// One release's status, chart and user values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseQuery {
    pub namespace: String,
    pub name: String,
    pub kubeconfig: String,
}

impl ReleaseQuery {
    pub fn new(namespace: &str, name: &str, kubeconfig: &str) -> Self {
        ReleaseQuery {
            namespace: namespace.into(),
            name: name.into(),
            kubeconfig: kubeconfig.into(),
        }
    }
}

impl Fact for ReposQuery {
    type Output = Result<Vec<Repo>, Unavailable>;
    fn key(&self) -> String {
        REPOS_KEY.into()
    }
    fn script(&self) -> String {
        repos_query().script
    }
    fn parse(&self, out: &str) -> Result<Self::Output, FactError> {
        parse_repos(out)
    }
}

impl Fact for ReleaseQuery {
    /// `Ok(None)`: helm works and the release does not exist.
    type Output = Result<Option<Release>, Unavailable>;
    fn key(&self) -> String {
        release_key(&self.namespace, &self.name, &self.kubeconfig)
    }
    fn script(&self) -> String {
        release_query(&self.namespace, &self.name, &self.kubeconfig).script
    }
    fn parse(&self, out: &str) -> Result<Self::Output, FactError> {
        parse_release(&self.key(), &self.name, out)
    }
}

enum Tagged<'a> {
    Json(Value),
    Unavailable(String),
    Other((&'a str, &'a str)),
}

fn tagged<'a>(k: &str, line: &'a str) -> Result<Tagged<'a>, FactError> {
    let line = line.trim_end_matches('\n');
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    match tag {
        "json" => Ok(Tagged::Json(decode_json(k, rest)?)),
        "unavailable" => Ok(Tagged::Unavailable(rest.trim().to_string())),
        // helm's own error line, base64: it may hold any text.
        "error" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| parse_err(k, "error is not base64"))?;
            let why = String::from_utf8_lossy(&bytes).trim().to_string();
            Ok(Tagged::Unavailable(if why.is_empty() {
                "helm failed without a message".into()
            } else {
                why
            }))
        }
        _ => Ok(Tagged::Other((tag, rest))),
    }
}

fn decode_json(k: &str, b64: &str) -> Result<Value, FactError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| parse_err(k, "answer is not base64"))?;
    let text = String::from_utf8_lossy(&bytes);
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(t).map_err(|e| parse_err(k, format!("helm printed no JSON ({e})")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn repos_parse_all_answers() {
        let f = crate::resources::testutil::facts(&[(
            REPOS_KEY,
            &format!(
                "json {}\n",
                b64(r#"[{"name":"bitnami","url":"https://charts.bitnami.com/bitnami"}]"#)
            ),
        )]);
        assert_eq!(
            f.get(&ReposQuery).unwrap().unwrap(),
            vec![Repo {
                name: "bitnami".into(),
                url: "https://charts.bitnami.com/bitnami".into()
            }]
        );
        let f = crate::resources::testutil::facts(&[(REPOS_KEY, "json W10=\n")]);
        assert!(f.get(&ReposQuery).unwrap().unwrap().is_empty());
        let f = crate::resources::testutil::facts(&[(
            REPOS_KEY,
            "unavailable helm is not installed\n",
        )]);
        assert_eq!(
            f.get(&ReposQuery).unwrap().unwrap_err(),
            "helm is not installed"
        );
    }

    #[test]
    fn the_no_repositories_error_is_an_empty_list_through_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let helm = d.path().join("helm");
        std::fs::write(
            &helm,
            "#!/bin/sh\necho 'Error: no repositories to show' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&helm, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let qy = repos_query();
        let path = format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&qy.script)
            .env("PATH", path)
            .output()
            .unwrap();
        let f = crate::resources::testutil::facts(&[(
            REPOS_KEY,
            &String::from_utf8(out.stdout).unwrap(),
        )]);
        assert!(f.get(&ReposQuery).unwrap().unwrap().is_empty());
    }
}
