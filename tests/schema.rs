//! The committed JSON Schemas against a real validator (Python's `jsonschema`, Draft 2020-12,
//! from the test venv): every shipped and fixture role, site and inventory validates; a file
//! the parser rejects (unknown key, bad enum value, two type keys, unknown play key) is
//! rejected by the schema too, and every key the schema lists for a play or a resource entry
//! is one the parser accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("LABCTL_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labctl/test-venv"))
        })?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import jsonschema, yaml"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

const CHECK: &str = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
out = {}
for f in sys.argv[2:]:
    errs = [e.message for e in v.iter_errors(yaml.safe_load(open(f)))]
    out[f] = errs
print(json.dumps(out))
"#;

/// file → the validator's error messages (empty: valid).
fn validate(py: &Path, schema: &str, files: &[PathBuf]) -> Vec<(String, Vec<String>)> {
    let o = Command::new(py)
        .args(["-c", CHECK])
        .arg(root().join("schemas").join(schema))
        .args(files)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "validator: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    v.into_iter()
        .map(|(f, e)| {
            (
                f,
                e.as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn find(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // Ansible playbooks that import-ansible reads: their input, not labctl's files.
        if p.ends_with("tests/fixtures/import") {
            continue;
        }
        if p.is_dir() {
            find(&p, name, out);
        } else if p.file_name().is_some_and(|f| f == name) {
            out.push(p);
        }
    }
}

fn check(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["check", "-i", "hosts.yml"])
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn schemas_accept_what_labctl_accepts_and_reject_what_it_rejects() {
    let Some(py) = python() else {
        crate::common::skip(
            "no Python with jsonschema and yaml in $LABCTL_TEST_VENV (scripts/setup.sh makes it)",
        );
        return;
    };
    let mut roles = Vec::new();
    find(&root().join("roles"), "role.yml", &mut roles);
    find(&root().join("tests/fixtures"), "role.yml", &mut roles);
    let mut sites = vec![root().join("site.yml")];
    find(&root().join("tests/fixtures"), "site.yml", &mut sites);
    let invs = vec![root().join("inventories/lab/hosts.yml")];
    for (schema, files) in [
        ("role.schema.json", &roles),
        ("site.schema.json", &sites),
        ("inventory.schema.json", &invs),
    ] {
        assert!(!files.is_empty());
        for (f, errs) in validate(&py, schema, files) {
            assert!(errs.is_empty(), "{f} fails {schema}: {errs:#?}");
        }
    }

    // Round trip on a project labctl checks: each good file passes both, each bad one neither.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("hosts.yml"),
        "all:\n  hosts:\n    me:\n      ansible_connection: local\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("roles/r/templates")).unwrap();
    std::fs::write(dir.join("roles/r/templates/t.j2"), "x\n").unwrap();
    let every_play_key = "- name: p\n  hosts: all\n  vars: {a: 1}\n  serial: 1\n  max_fail_percentage: 0\n  any_errors_fatal: true\n  run_once: false\n  roles:\n    - {role: r, tags: [x], vars: {b: 2}}\n";
    let plain_site = "- hosts: all\n  roles: [r]\n";
    let every_entry_key = "resources:\n  - name: one\n    tags: [a]\n    when: \"true\"\n    loop: [1, 2]\n    run_once: true\n    notify: h\n    file: {path: \"/tmp/labctl-schema-{{ item }}\", content: \"x\\n\", mode: \"0644\"}\n  - apt: {packages: \"{{ ['curl'] }}\", update_cache: never}\n  - ufw: {purge: \"{{ true }}\", rules: [{port: 22, proto: tcp}]}\n  - sysctl: {file: /etc/sysctl.d/x.conf, values: {net.ipv4.ip_forward: 1}}\nhandlers:\n  - name: h\n    service: {name: ssh, state: reloaded}\n";
    let cases: [(&str, &str, &str, bool); 6] = [
        (
            "every play key",
            every_play_key,
            "resources:\n  - file: {path: /tmp/x, content: \"x\\n\"}\n",
            true,
        ),
        (
            "every entry key and templated values",
            plain_site,
            every_entry_key,
            true,
        ),
        (
            "unknown play key",
            "- hosts: all\n  become: true\n  roles: [r]\n",
            "resources: []\n",
            false,
        ),
        (
            "unknown spec key",
            plain_site,
            "resources:\n  - file: {path: /tmp/x, content: x, bogus: 1}\n",
            false,
        ),
        (
            "bad enum value",
            plain_site,
            "resources:\n  - service: {name: ssh, state: runnin}\n",
            false,
        ),
        (
            "two type keys",
            plain_site,
            "resources:\n  - file: {path: /tmp/x, content: x}\n    service: {name: ssh}\n",
            false,
        ),
    ];
    for (what, site, role, good) in cases {
        std::fs::write(dir.join("site.yml"), site).unwrap();
        std::fs::write(dir.join("roles/r/role.yml"), role).unwrap();
        let o = check(dir);
        assert_eq!(
            o.status.success(),
            good,
            "{what}: labctl check {}:\n{}",
            if good { "should pass" } else { "should fail" },
            String::from_utf8_lossy(&o.stderr)
        );
        let s = validate(&py, "site.schema.json", &[dir.join("site.yml")]);
        let r = validate(&py, "role.schema.json", &[dir.join("roles/r/role.yml")]);
        let valid = s[0].1.is_empty() && r[0].1.is_empty();
        assert_eq!(
            valid, good,
            "{what}: schema says valid={valid}: {s:?} {r:?}"
        );
    }
}
