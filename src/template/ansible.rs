//! Jinja as Ansible users write it: Ansible's filters and tests beyond Jinja's own, the
//! `ansible.builtin.`/`ansible.utils.` spellings of them, and a clear word for the Ansible
//! filters labctl does not have.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::value::{Kwargs, Rest};
use minijinja::{Environment, Error, ErrorKind, Value};

fn fail(filter: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{filter}: {msg}"))
}

/// A string that, as a value of a resource field, means "leave this field out" (Ansible's
/// `omit`). Fixed, so plans that contain it stay stable.
pub const OMIT: &str = "__omit_place_holder__labctl";

pub fn register(env: &mut Environment<'static>) {
    env.add_global("omit", OMIT);
    env.add_filter(
        "regex_escape",
        |s: String, kw: Kwargs| -> Result<String, Error> {
            let kind: Option<String> = kw.get("re_type")?;
            kw.assert_all_used()?;
            match kind.as_deref().unwrap_or("python") {
                "python" => Ok(python_re_escape(&s)),
                "posix_basic" => Ok(s
                    .chars()
                    .flat_map(|c| {
                        let esc = "$.*[\\]^".contains(c);
                        [esc.then_some('\\'), Some(c)].into_iter().flatten()
                    })
                    .collect()),
                other => Err(fail(
                    "regex_escape",
                    format!("re_type `{other}` is not supported"),
                )),
            }
        },
    );
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("from_json", |s: String| -> Result<Value, Error> {
        let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| fail("from_json", e))?;
        Ok(Value::from(minijinja::value::Serde(&v)))
    });
    env.add_filter("from_yaml", |s: String| -> Result<Value, Error> {
        let node = crate::yaml::parse_node(std::path::Path::new("from_yaml"), &s)
            .map_err(|d| fail("from_yaml", d.message))?;
        Ok(Value::from(minijinja::value::Serde(node.to_json())))
    });
    env.add_filter("flatten", flatten);
    env.add_filter("combine", combine);
    env.add_filter(
        "dict2items",
        |v: Value, kw: Kwargs| -> Result<Value, Error> {
            let (kn, vn) = key_value_names(&kw)?;
            let mut out = Vec::new();
            for k in v
                .try_iter()
                .map_err(|_| fail("dict2items", "expects a map"))?
            {
                let mut m = BTreeMap::new();
                m.insert(kn.clone(), k.clone());
                m.insert(vn.clone(), v.get_item(&k)?);
                out.push(Value::from(m));
            }
            Ok(Value::from(out))
        },
    );
    env.add_filter(
        "items2dict",
        |v: Value, kw: Kwargs| -> Result<Value, Error> {
            let (kn, vn) = key_value_names(&kw)?;
            let mut out: indexmap::IndexMap<Value, Value> = indexmap::IndexMap::new();
            for item in v
                .try_iter()
                .map_err(|_| fail("items2dict", "expects a list of maps"))?
            {
                let k = item.get_attr(&kn)?;
                if k.is_undefined() {
                    return Err(fail("items2dict", format!("an item has no `{kn}`")));
                }
                out.insert(k, item.get_attr(&vn)?);
            }
            Ok(Value::from_object(out))
        },
    );
    env.add_filter(
        "hash",
        |s: String, algo: Option<String>| -> Result<String, Error> {
            digest(&s, algo.as_deref().unwrap_or("sha1")).ok_or_else(|| {
                fail(
                    "hash",
                    format!(
                        "unsupported algorithm `{}` (md5, sha1, sha256, sha512)",
                        algo.unwrap_or_default()
                    ),
                )
            })
        },
    );
    env.add_filter("checksum", |s: String| {
        digest(&s, "sha1").unwrap_or_default()
    });
    env.add_filter("sha1", |s: String| digest(&s, "sha1").unwrap_or_default());
    env.add_filter("md5", |s: String| digest(&s, "md5").unwrap_or_default());
    env.add_filter("password_hash", password_hash);
    env.add_filter(
        "product",
        |a: Value, rest: Rest<Value>| -> Result<Value, Error> {
            let mut acc: Vec<Vec<Value>> = vec![vec![]];
            for list in std::iter::once(a).chain(rest.0) {
                let items: Vec<Value> = list
                    .try_iter()
                    .map_err(|_| fail("product", "expects lists"))?
                    .collect();
                acc = acc
                    .into_iter()
                    .flat_map(|p| {
                        items.iter().map(move |x| {
                            let mut p = p.clone();
                            p.push(x.clone());
                            p
                        })
                    })
                    .collect();
            }
            Ok(Value::from(
                acc.into_iter().map(Value::from).collect::<Vec<_>>(),
            ))
        },
    );
    env.add_filter(
        "to_uuid",
        |s: String, namespace: Option<String>| -> Result<String, Error> {
            let ns = namespace.unwrap_or_else(|| ANSIBLE_UUID_NAMESPACE.to_string());
            uuid5(&ns, &s).ok_or_else(|| fail("to_uuid", format!("`{ns}` is not a UUID")))
        },
    );
    for (name, kind) in [
        ("match", Re::Match),
        ("search", Re::Search),
        ("regex", Re::Search),
    ] {
        env.add_test(
            name,
            move |v: Value, pat: String, kw: Kwargs| -> Result<bool, Error> {
                re_test(kind, v, &pat, kw)
            },
        );
    }
    super::ipaddr::register(env);
}

/// Ansible's namespace for `to_uuid` (lib/ansible/plugins/filter/core.py).
const ANSIBLE_UUID_NAMESPACE: &str = "361E6D51-FAEC-444A-9079-341386DA8E2E";

fn python_re_escape(s: &str) -> String {
    // Python 3.7+ `re.escape` escapes exactly these.
    let special = "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c";
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn build_re(filter: &str, pat: &str, kw: &Kwargs) -> Result<regex::Regex, Error> {
    let ignorecase: Option<bool> = kw.get("ignorecase")?;
    let multiline: Option<bool> = kw.get("multiline")?;
    regex::RegexBuilder::new(pat)
        .case_insensitive(ignorecase.unwrap_or(false))
        .multi_line(multiline.unwrap_or(false))
        .build()
        .map_err(|e| fail(filter, e))
}

fn regex_findall(s: String, pat: String, kw: Kwargs) -> Result<Value, Error> {
    let re = build_re("regex_findall", &pat, &kw)?;
    kw.assert_all_used()?;
    // Python's re.findall: whole matches without groups, the group with one, tuples with more.
    let groups = re.captures_len() - 1;
    let out: Vec<Value> = re
        .captures_iter(&s)
        .map(|c| {
            let g = |i: usize| Value::from(c.get(i).map(|m| m.as_str()).unwrap_or(""));
            match groups {
                0 => g(0),
                1 => g(1),
                n => Value::from((1..=n).map(g).collect::<Vec<_>>()),
            }
        })
        .collect();
    Ok(Value::from(out))
}

#[derive(Clone, Copy)]
enum Re {
    Match,
    Search,
}

fn re_test(kind: Re, v: Value, pat: &str, kw: Kwargs) -> Result<bool, Error> {
    let match_type: Option<String> = kw.get("match_type")?;
    let kind = match match_type.as_deref() {
        Some("match") => Re::Match,
        Some("search") => Re::Search,
        Some("fullmatch") => {
            let re = build_re("regex", &format!("^(?:{pat})$"), &kw)?;
            kw.assert_all_used()?;
            return Ok(re.is_match(&v.to_string()));
        }
        Some(other) => return Err(fail("regex", format!("match_type `{other}` is unknown"))),
        None => kind,
    };
    let s = v.to_string();
    let re = match kind {
        // Python's re.match anchors at the start only.
        Re::Match => build_re("match", &format!("^(?:{pat})"), &kw)?,
        Re::Search => build_re("search", pat, &kw)?,
    };
    kw.assert_all_used()?;
    Ok(re.is_match(&s))
}

fn flatten(v: Value, kw: Kwargs) -> Result<Value, Error> {
    let levels: Option<usize> = kw.get("levels")?;
    let skip_nulls: Option<bool> = kw.get("skip_nulls")?;
    kw.assert_all_used()?;
    fn go(v: &Value, depth: Option<usize>, skip: bool, out: &mut Vec<Value>) -> Result<(), Error> {
        for x in v
            .try_iter()
            .map_err(|_| fail("flatten", "expects a list"))?
        {
            if skip && (x.is_none() || x.as_str().is_some_and(|s| s == "None" || s == "null")) {
                continue;
            }
            let nested = matches!(x.kind(), minijinja::value::ValueKind::Seq);
            match depth {
                Some(0) => out.push(x),
                _ if nested => go(&x, depth.map(|d| d - 1), skip, out)?,
                _ => out.push(x),
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(&v, levels, skip_nulls.unwrap_or(true), &mut out)?;
    Ok(Value::from(out))
}

/// `combine(b, c, recursive=True, list_merge='append')`, also over a list of maps.
fn combine(a: Value, rest: Rest<Value>, kw: Kwargs) -> Result<Value, Error> {
    let recursive: Option<bool> = kw.get("recursive")?;
    let list_merge: Option<String> = kw.get("list_merge")?;
    kw.assert_all_used()?;
    let list_merge = list_merge.unwrap_or_else(|| "replace".into());
    if ![
        "replace",
        "keep",
        "append",
        "prepend",
        "append_rp",
        "prepend_rp",
    ]
    .contains(&list_merge.as_str())
    {
        return Err(fail(
            "combine",
            format!("list_merge `{list_merge}` is unknown"),
        ));
    }
    let mut maps: Vec<serde_json::Value> = Vec::new();
    for v in std::iter::once(a).chain(rest.0) {
        if v.is_none() || v.is_undefined() {
            continue;
        }
        let j = serde_json::to_value(&v).map_err(|e| fail("combine", e))?;
        match j {
            serde_json::Value::Array(items) => maps.extend(items),
            other => maps.push(other),
        }
    }
    let mut out = serde_json::Value::Object(Default::default());
    for m in maps {
        if !m.is_object() {
            return Err(fail("combine", "expects maps"));
        }
        merge(&mut out, m, recursive.unwrap_or(false), &list_merge);
    }
    Ok(Value::from(minijinja::value::Serde(&out)))
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value, recursive: bool, lists: &str) {
    use serde_json::Value as J;
    match (base, over) {
        (J::Object(b), J::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if recursive && existing.is_object() && v.is_object() => {
                        merge(existing, v, recursive, lists)
                    }
                    Some(J::Array(existing)) if v.is_array() && lists != "replace" => {
                        let J::Array(new) = v else { unreachable!() };
                        let old = std::mem::take(existing);
                        *existing = match lists {
                            "keep" => old,
                            "append" => old.into_iter().chain(new).collect(),
                            "prepend" => new.into_iter().chain(old).collect(),
                            "append_rp" => {
                                let mut r: Vec<J> =
                                    old.into_iter().filter(|x| !new.contains(x)).collect();
                                r.extend(new);
                                r
                            }
                            _ => {
                                let mut r = new.clone();
                                r.extend(old.into_iter().filter(|x| !new.contains(x)));
                                r
                            }
                        };
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn key_value_names(kw: &Kwargs) -> Result<(String, String), Error> {
    let k: Option<String> = kw.get("key_name")?;
    let v: Option<String> = kw.get("value_name")?;
    kw.assert_all_used()?;
    Ok((
        k.unwrap_or_else(|| "key".into()),
        v.unwrap_or_else(|| "value".into()),
    ))
}

fn digest(s: &str, algo: &str) -> Option<String> {
    use sha2::Digest;
    let b = s.as_bytes();
    Some(match algo {
        "sha1" => crate::digest::hex(&sha1::Sha1::digest(b)),
        "md5" => crate::digest::hex(&md5::Md5::digest(b)),
        "sha256" => crate::digest::hex(&sha2::Sha256::digest(b)),
        "sha512" => crate::digest::hex(&sha2::Sha512::digest(b)),
        _ => return None,
    })
}

/// `password_hash('sha512'|'sha256', salt, rounds=N)`: crypt(3) strings as Ansible writes them.
/// Without a salt, Ansible picks a random one, so every run would look like a change; labctl
/// derives the salt from the password instead, so the hash is stable (and still salted).
fn password_hash(
    pw: String,
    hashtype: Option<String>,
    salt: Option<String>,
    kw: Kwargs,
) -> Result<String, Error> {
    let rounds: Option<usize> = kw.get("rounds")?;
    let salt_kw: Option<String> = kw.get("salt")?;
    kw.assert_all_used()?;
    let salt = salt.or(salt_kw).unwrap_or_else(|| {
        use base64::Engine as _;
        let d = crate::digest::hmac(b"labctl password_hash salt", pw.as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(d)
            .replace('+', ".")
            .chars()
            .take(16)
            .collect()
    });
    if salt.contains('$') || salt.len() > 16 {
        return Err(fail(
            "password_hash",
            "a salt is at most 16 characters, without `$`",
        ));
    }
    let rounds_part = |r: Option<usize>| match r {
        Some(r) if r != 5000 => format!("rounds={r}$"),
        _ => String::new(),
    };
    let r = rounds.unwrap_or(5000);
    let bad = |e| fail("password_hash", format!("{e:?}"));
    match hashtype.as_deref().unwrap_or("sha512") {
        "sha512" | "sha512_crypt" => {
            let p = sha_crypt::Sha512Params::new(r).map_err(bad)?;
            let h = sha_crypt::sha512_crypt_b64(pw.as_bytes(), salt.as_bytes(), &p).map_err(bad)?;
            Ok(format!("$6${}{salt}${h}", rounds_part(rounds)))
        }
        "sha256" | "sha256_crypt" => {
            let p = sha_crypt::Sha256Params::new(r).map_err(bad)?;
            let h = sha_crypt::sha256_crypt_b64(pw.as_bytes(), salt.as_bytes(), &p).map_err(bad)?;
            Ok(format!("$5${}{salt}${h}", rounds_part(rounds)))
        }
        other => Err(fail(
            "password_hash",
            format!("hash type `{other}` is not supported by labctl (sha512, sha256)"),
        )),
    }
}

/// RFC 4122 version 5 (SHA-1, name-based) UUID, lowercase like Python's `uuid.uuid5`.
fn uuid5(namespace: &str, name: &str) -> Option<String> {
    use sha1::Digest;
    let hexns: String = namespace.chars().filter(|c| *c != '-').collect();
    if hexns.len() != 32 {
        return None;
    }
    let ns: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hexns[i * 2..i * 2 + 2], 16).ok())
        .collect::<Option<_>>()?;
    let mut h = sha1::Sha1::new();
    h.update(&ns);
    h.update(name.as_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().ok()?;
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::digest::hex(&b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    ))
}

/// `x | ansible.builtin.to_json`, `x is ansible.builtin.match(…)`: the collection prefix is
/// dropped (padded with spaces, so error columns stay right) and the short name looked up.
pub fn strip_collection_prefixes(src: &str) -> Cow<'_, str> {
    static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(\||\bis(?:\s+not)?)(\s*)((?:ansible\.(?:builtin|utils|netcommon)|community\.general)\.)([A-Za-z_]\w*)",
        )
        .expect("valid regex")
    });
    if !src.contains("ansible.") && !src.contains("community.") {
        return Cow::Borrowed(src);
    }
    RE.replace_all(src, |c: &regex::Captures| {
        format!("{}{}{}{}", &c[1], &c[2], &c[4], " ".repeat(c[3].len()))
    })
}

/// Filters of ansible-core and the collections homelab roles use that labctl does not have:
/// named in the error, so the user knows it is a gap and not a typo.
const ANSIBLE_FILTERS: &[&str] = &[
    "comment",
    "commonpath",
    "difference",
    "expanduser",
    "expandvars",
    "fileglob",
    "from_yaml_all",
    "human_readable",
    "human_to_bytes",
    "intersect",
    "log",
    "normpath",
    "path_join",
    "pow",
    "random",
    "realpath",
    "rekey_on_member",
    "relpath",
    "root",
    "shuffle",
    "splitext",
    "strftime",
    "subelements",
    "symmetric_difference",
    "to_datetime",
    "to_nice_json",
    "type_debug",
    "union",
    "unvault",
    "urldecode",
    "urlsplit",
    "vault",
    "win_basename",
    "win_dirname",
    "win_splitdrive",
    "zip_longest",
    "ipv6",
    "ipmath",
    "ipsubnet",
    "next_nth_usable",
    "network_in_usable",
    "network_in_network",
    "cidr_merge",
    "hwaddr",
    "macaddr",
    "reduce_on_network",
    "slaac",
    "usable_range",
    "to_paths",
    "get_path",
    "from_xml",
    "to_xml",
    "json_query",
    "dict_kv",
    "lists_mergeby",
    "to_time_unit",
    "to_seconds",
    "version_sort",
    "groupby_as_dict",
    "counter",
    "jc",
    "random_mac",
];

const ANSIBLE_TESTS: &[&str] = &[
    "version",
    "version_compare",
    "subset",
    "superset",
    "contains",
    "any",
    "all",
    "failed",
    "succeeded",
    "success",
    "changed",
    "skipped",
    "finished",
    "started",
    "exists",
    "file",
    "directory",
    "link",
    "abs",
    "same_file",
    "mount",
    "vault_encrypted",
    "truthy",
    "falsy",
    "nan",
    "ip_address",
    "ipv4_address",
    "ipv6_address",
    "in_network",
    "in_any_network",
];

/// minijinja's "filter x is unknown", said the way an Ansible user needs to hear it.
pub fn explain_unknown(kind: ErrorKind, detail: &str) -> Option<String> {
    let (what, list) = match kind {
        ErrorKind::UnknownFilter => ("filter", ANSIBLE_FILTERS),
        ErrorKind::UnknownTest => ("test", ANSIBLE_TESTS),
        _ => return None,
    };
    let name = detail
        .strip_prefix(&format!("{what} "))?
        .strip_suffix(" is unknown")?;
    let short = name.rsplit('.').next().unwrap_or(name);
    list.contains(&short).then(|| {
        format!(
            "`{name}` is an Ansible {what} that labctl does not have (see README \"Coming from Ansible\" for the ones it has)"
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::template::{Ctx, Engine};
    use serde_json::json;
    use std::path::Path;

    /// Render with Ansible-style vars. Expected outputs come from Ansible's docs or from
    /// ansible-core 2.19 in the test venv (a debug task printing each expression); lists
    /// print as Python prints them, as in Ansible.
    fn r(src: &str) -> String {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("d".to_string(), json!({"a": {"x": 1, "l": [1]}, "b": 2}));
        vars.insert("e".to_string(), json!({"a": {"y": 2, "l": [2]}, "c": 3}));
        crate::template::render_for_test(Path::new("."), &vars, src)
    }

    #[test]
    fn string_and_regex_filters() {
        // regex_escape's documented example.
        assert_eq!(
            r("{{ '^f.*o(.*)$' | regex_escape }}"),
            r"\^f\.\*o\(\.\*\)\$"
        );
        assert_eq!(
            r("{{ 'CAR\ntar\nfoo\nbar\n' | regex_findall('^.ar$', multiline=True, ignorecase=True) }}"),
            "['CAR', 'tar', 'bar']"
        );
        assert_eq!(
            r("{{ 'a=1 b=2' | regex_findall('(\\w)=(\\d)') }}"),
            "[['a', '1'], ['b', '2']]"
        );
        assert_eq!(r("{{ 'foo123' is match('foo') }}"), "True");
        assert_eq!(r("{{ 'xfoo' is match('foo') }}"), "False");
        assert_eq!(r("{{ 'xfoo' is search('f.o') }}"), "True");
        assert_eq!(r("{{ 'xFOO' is regex('foo', ignorecase=True) }}"), "True");
        assert_eq!(
            r("{{ 'xfoo' is ansible.builtin.regex('foo', match_type='match') }}"),
            "False"
        );
    }

    #[test]
    fn data_filters() {
        assert_eq!(r("{{ ('{\"a\": [1, 2]}' | from_json).a[1] }}"), "2");
        assert_eq!(r("{{ ('a: [1, 2]\nb: x' | from_yaml).b }}"), "x");
        assert_eq!(
            r("{{ [1, [2, [3, [4]]], none] | flatten }}"),
            "[1, 2, 3, 4]"
        );
        assert_eq!(r("{{ [1, [2, [3]]] | flatten(levels=1) }}"), "[1, 2, [3]]");
        assert_eq!(
            r("{{ d | combine(e) | to_json }}"),
            r#"{"a":{"y":2,"l":[2]},"b":2,"c":3}"#
        );
        assert_eq!(
            r("{{ d | combine(e, recursive=True) | to_json }}"),
            r#"{"a":{"x":1,"l":[2],"y":2},"b":2,"c":3}"#
        );
        assert_eq!(
            r("{{ d | ansible.builtin.combine(e, recursive=True, list_merge='append') | to_json }}"),
            r#"{"a":{"x":1,"l":[1,2],"y":2},"b":2,"c":3}"#
        );
        assert_eq!(
            r("{{ {'a': 1, 'b': 2} | dict2items | to_json }}"),
            r#"[{"key":"a","value":1},{"key":"b","value":2}]"#
        );
        assert_eq!(
            r("{{ [{'key': 'a', 'value': 1}, {'key': 'b', 'value': 2}] | items2dict | to_json }}"),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(
            r("{{ [{'n': 'a', 'v': 1}] | items2dict(key_name='n', value_name='v') | to_json }}"),
            r#"{"a":1}"#
        );
        assert_eq!(
            r("{{ [1, 2] | product(['a', 'b']) | to_json }}"),
            r#"[[1,"a"],[1,"b"],[2,"a"],[2,"b"]]"#
        );
    }

    #[test]
    fn hashes_and_uuids_match_ansible() {
        // Values from ansible-core 2.19 (the venv's ansible-playbook); crypt strings from
        // glibc crypt(3) (Python's `crypt.crypt`), which passlib, Ansible's backend, matches.
        assert_eq!(
            r("{{ 'test' | hash('sha1') }}"),
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
        );
        assert_eq!(
            r("{{ 'test' | hash('md5') }}"),
            "098f6bcd4621d373cade4e832627b4f6"
        );
        assert_eq!(
            r("{{ 'test' | checksum }}"),
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
        );
        assert_eq!(
            r("{{ 'test' | to_uuid }}"),
            "f4fb6740-9e00-5ac4-9581-f24b6ecfe71e"
        );
        assert_eq!(
            r("{{ 'secretpassword' | password_hash('sha512', 'mysecretsalt') }}"),
            "$6$mysecretsalt$nQRJs5iDdLkE1YuYaWUle1uQ2ROJ7j8ernLYmyY57MnZquqWdJ.uj6dgD4n9GKKk5qZMEx9bsIMylVAlQacGK1"
        );
        assert_eq!(
            r("{{ 'secretpassword' | password_hash('sha256', 'mysecretsalt', rounds=10000) }}"),
            "$5$rounds=10000$mysecretsalt$Tkm80llAxD4YHll6AgNIztKn0vzAACsuuEfYeGP7tm7"
        );
        let a = r("{{ 'pw' | password_hash }}");
        assert!(
            a.starts_with("$6$") && a == r("{{ 'pw' | password_hash }}"),
            "stable: {a}"
        );
    }

    #[test]
    fn unknown_ansible_filters_say_so() {
        let e = r("{{ x | ansible.builtin.shuffle }}");
        assert!(
            e.contains("`shuffle` is an Ansible filter that labctl does not have"),
            "{e}"
        );
        let e = r("{{ 1 | nosuchfilter }}");
        assert!(
            e.contains("unknown filter") && !e.contains("Ansible"),
            "{e}"
        );
    }

    #[test]
    fn omit_drops_the_field() {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("mode".to_string(), json!(null));
        let ctx = Ctx::new(&vars, Default::default(), vec![]);
        let (v, _) = Engine::new(Path::new("."))
            .render_value(
                &json!({"path": "/x", "mode": "{{ mode | default(omit, true) }}"}),
                &ctx,
            )
            .unwrap();
        assert_eq!(v, json!({"path": "/x"}));
    }
}
