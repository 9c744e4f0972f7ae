//! The whole pipeline through the real binary, on the local machine (`ansible_connection: local`),
//! against files in a temp dir: no root, no test hosts. The SSH path is covered by tests/e2e_*.rs.

use crate::common::{show, write};
use std::path::{Path, PathBuf};
use std::process::Output;

fn labctl(dir: &Path, args: &[&str]) -> Output {
    labctl_cmd(dir).args(args).output().expect("run labctl")
}

fn labctl_cmd(dir: &Path) -> std::process::Command {
    crate::common::isolated(dir)
}

/// A project whose one host is this machine and whose resources live under `root/`.
fn project() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    write(
        d.path(),
        "inventories/local/hosts.yml",
        "all:\n  hosts:\n    me:\n      ansible_connection: local\n",
    );
    write(
        d.path(),
        "inventories/local/group_vars/all.yml",
        &format!(
            "base: {}\ngreeting: hello\nfiles: [one, two]\n",
            root.display()
        ),
    );
    write(
        d.path(),
        "site.yml",
        "- name: demo\n  hosts: all\n  roles:\n    - demo\n",
    );
    write(
        d.path(),
        "roles/demo/role.yml",
        r#"resources:
  - name: motd
    file:
      path: "{{ base }}/motd"
      template: motd.j2
      mode: "0640"
    tags: [motd]
  - file:
      path: "{{ base }}/{{ item }}.txt"
      content: "{{ item }}\n"
    loop: "{{ files }}"
    tags: [many]
"#,
    );
    write(
        d.path(),
        "roles/demo/templates/motd.j2",
        "{{ greeting }} from {{ inventory_hostname }}\n",
    );
    (d, root)
}

const INV: &str = "inventories/local/hosts.yml";

/// `--timings`: after the recap (the plan), the host's phases in the order they ran; with
/// `--json`, the same under `timings` beside `data`; without the flag, neither.
#[test]
fn timings_follow_the_recap_and_go_into_the_json_envelope() {
    let (d, _root) = project();
    let dir = d.path();
    let o = labctl(dir, &["apply", "--yes", "--timings", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let recap = out.find("changed=3").expect("recap");
    let t = out.find("Timings: ").expect("timings");
    assert!(recap < t, "{out}");
    let table = &out[t..];
    let mut at = 0;
    for phase in [
        "\n  me ",
        "connect",
        "probe",
        "diff (3 resources)",
        "lock",
        "unlock",
    ] {
        let i = table[at..]
            .find(phase)
            .unwrap_or_else(|| panic!("`{phase}` missing or out of order:\n{table}"));
        at += i;
    }
    assert!(
        table.contains("    change demo/") || table.contains("    batch of "),
        "{table}"
    );

    let o = labctl(dir, &["plan", "--json", "--timings", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["hosts"][0]["host"], "me", "{v:#}");
    let host = &v["timings"]["hosts"][0];
    assert_eq!(host["host"], "me", "{v:#}");
    let phases: Vec<&str> = host["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["connect", "probe", "diff (3 resources)", "close"],
        "{v:#}"
    );
    assert!(
        host["phases"][1]["remote_ms"].as_f64().unwrap() > 0.0,
        "{v:#}"
    );
    assert!(v["timings"]["wall_ms"].as_f64().unwrap() > 0.0, "{v:#}");

    let o = labctl(dir, &["plan", "--json", "-i", INV]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("timings").is_none(), "{v:#}");
    let o = labctl(dir, &["plan", "-i", INV]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("Timings"),
        "{}",
        show(&o)
    );
}

#[test]
fn plan_apply_converge_drift_and_stale_plans() {
    let (d, root) = project();
    let dir = d.path();

    // Fresh: plan shows three creations, exits 2, changes nothing.
    let o = labctl(dir, &["plan", "-i", INV]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("+ demo/file:motd"), "{}", show(&o));
    assert!(
        out.contains("+hello from me"),
        "unified diff shown: {}",
        show(&o)
    );
    assert!(
        out.contains("Plan: 3 to create, 0 to change"),
        "{}",
        show(&o)
    );
    assert!(!root.join("motd").exists(), "plan must not change anything");

    // Apply converges; a second apply changes nothing; plan then exits 0.
    let o = labctl(dir, &["apply", "--yes", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=3"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("motd")).unwrap(),
        "hello from me\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(root.join("motd"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    let o = labctl(dir, &["apply", "--yes", "-i", INV]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );
    let o = labctl(dir, &["plan", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Drift one file out of band: plan lists exactly it; apply fixes only it.
    std::fs::write(root.join("two.txt"), "tampered\n").unwrap();
    let o = labctl(dir, &["plan", "-i", INV, "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let plan = crate::common::json_data(&o);
    let changes = plan["hosts"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{plan:#}");
    assert!(
        changes[0]["id"].as_str().unwrap().ends_with("two.txt"),
        "{plan:#}"
    );
    let o = labctl(dir, &["apply", "--yes", "-i", INV]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=1"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("two.txt")).unwrap(),
        "two\n"
    );

    // --tags selects only tagged resources.
    std::fs::remove_file(root.join("motd")).unwrap();
    std::fs::remove_file(root.join("one.txt")).unwrap();
    let o = labctl(dir, &["apply", "--yes", "-i", INV, "--tags", "motd"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=1"),
        "{}",
        show(&o)
    );
    assert!(root.join("motd").exists() && !root.join("one.txt").exists());
    let o = labctl(dir, &["apply", "--yes", "-i", INV, "--skip-tags", "motd"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=1"),
        "{}",
        show(&o)
    );
    assert!(root.join("one.txt").exists());

    // A saved plan applies when nothing moved...
    std::fs::write(root.join("one.txt"), "x\n").unwrap();
    let o = labctl(dir, &["plan", "-i", INV, "--out", "plan.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = labctl(dir, &["apply", "--plan", "plan.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(root.join("one.txt")).unwrap(),
        "one\n"
    );

    // ...and is refused, changing nothing, when the host moved after it was made.
    std::fs::write(root.join("one.txt"), "y\n").unwrap();
    let o = labctl(dir, &["plan", "-i", INV, "--out", "plan.json"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::write(root.join("one.txt"), "z\n").unwrap();
    let o = labctl(dir, &["apply", "--plan", "plan.json"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("stale"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("one.txt")).unwrap(),
        "z\n"
    );
}

#[test]
fn bad_input_names_file_line_column_and_contacts_nothing() {
    let (d, root) = project();
    let dir = d.path();
    // The whole diagnostic, as the user sees it (temp paths replaced, and the list of resource
    // types, which grows with every new type).
    let stderr = |o: &Output| {
        let e = String::from_utf8_lossy(&o.stderr)
            .replace(&dir.display().to_string(), "[PROJECT]")
            .replace(&root.display().to_string(), "[ROOT]");
        match (e.find("types: "), e.find("; common keys")) {
            (Some(a), Some(b)) if a < b => format!("{}types: [KINDS]{}", &e[..a], &e[b..]),
            _ => e,
        }
    };
    write(dir, "roles/demo/role.yml", "resources:\n  - file:\n      path: \"{{ base }}/x\"\n      mode: 0644\n  - fiel: {path: /y}\n");
    let o = labctl(dir, &["plan", "-i", INV]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    insta::assert_snapshot!("unknown_resource_type", stderr(&o));
    assert!(std::fs::read_dir(&root).unwrap().next().is_none());

    write(
        dir,
        "roles/demo/role.yml",
        "resources:\n  - file:\n      path: \"{{ base }}/x\"\n      mode: 0644\n",
    );
    let o = labctl(dir, &["check", "-i", INV]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    insta::assert_snapshot!("integer_mode", stderr(&o));

    write(
        dir,
        "roles/demo/role.yml",
        "resources:\n  - file: {path: \"{{ base }}/x\", template: t.j2}\n",
    );
    write(
        dir,
        "roles/demo/templates/t.j2",
        "ok\n{{ undefined_thing }}\n",
    );
    let o = labctl(dir, &["check", "-i", INV]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    insta::assert_snapshot!("undefined_template_var", stderr(&o));

    let o = labctl(dir, &["plan", "-i", INV, "--limit", "nosuchhost"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    insta::assert_snapshot!("limit_matches_nothing", stderr(&o));
}

#[test]
fn check_passes_offline_and_inventory_lists_vars() {
    let (d, _root) = project();
    let dir = d.path();
    let o = labctl(dir, &["check", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = labctl(dir, &["inventory", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["_meta"]["hostvars"]["me"]["greeting"], "hello");
    assert_eq!(v["ungrouped"]["hosts"][0], "me");
}

#[test]
fn lookup_password_is_generated_once_into_the_vault() {
    let (d, root) = project();
    let dir = d.path();
    let key = dir.join("age.key");
    let o = labctl(dir, &["vault", "keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let public = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("keygen prints the public key")
        .to_string();
    write(dir, ".age-recipients", &format!("{public}\n"));
    write(
        dir,
        "roles/demo/role.yml",
        "resources:\n  - file:\n      path: \"{{ base }}/db-password\"\n      content: \"{{ lookup('password', 'credentials/db length=24 chars=ascii_letters,digits') }}\"\n",
    );
    let k = key.to_str().unwrap();
    // `check` renders the lookup without generating anything.
    let o = labctl(dir, &["--vault-key", k, "check", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!dir.join("inventories/local/passwords.yml.age").exists());
    let o = labctl(dir, &["--vault-key", k, "apply", "--yes", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let pw = std::fs::read_to_string(root.join("db-password")).unwrap();
    assert_eq!(pw.len(), 24);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");
    assert!(!show(&o).contains(&pw), "never printed: {}", show(&o));
    let vault = std::fs::read_to_string(dir.join("inventories/local/passwords.yml.age")).unwrap();
    assert!(vault.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") && !vault.contains(&pw));
    assert!(
        !dir.join("credentials").exists(),
        "no plain-text password file"
    );
    // Generated once: the next plan sees no change.
    let o = labctl(dir, &["--vault-key", k, "plan", "-i", INV]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // A saved plan that writes the password again does not hold it.
    std::fs::remove_file(root.join("db-password")).unwrap();
    let planfile = dir.join("pw.plan");
    let o = labctl(
        dir,
        &[
            "--vault-key",
            k,
            "plan",
            "-i",
            INV,
            "--out",
            planfile.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(!show(&o).contains(&pw), "never printed: {}", show(&o));
    let saved = std::fs::read_to_string(&planfile).unwrap();
    assert!(
        saved.contains("db-password") && !saved.contains(&pw),
        "{saved}"
    );
}

/// Without a vault identity and with no place for the plan key, a key for this run only is
/// used for the plan's hashes: saving or applying a plan file with it is refused (exit 4),
/// since a later run could not check the file.
#[test]
fn plan_files_need_a_lasting_key() {
    let (d, root) = project();
    let dir = d.path();
    let saved = dir.join("good.plan");
    let o = labctl(dir, &["plan", "-i", INV, "--out", saved.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));

    // XDG_CONFIG_HOME is a file: no identity, and the plan key cannot be created.
    write(dir, "not-a-dir", "");
    let blocked = |args: &[&str]| {
        labctl_cmd(dir)
            .env("XDG_CONFIG_HOME", dir.join("not-a-dir"))
            .env("HOME", dir.join("not-a-dir"))
            .args(args)
            .output()
            .expect("run labctl")
    };
    let out = dir.join("throwaway.plan");
    let o = blocked(&["plan", "-i", INV, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot save or apply a plan file"),
        "{}",
        show(&o)
    );
    assert!(!out.exists(), "no plan file under a throwaway key");
    let o = blocked(&["apply", "-i", INV, "--plan", saved.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(!root.join("motd").exists(), "nothing applied");
}

/// `reboot --check` names the steps of each host in order (k3s nodes drained first) and contacts
/// nothing; without a terminal and without --yes, `reboot` refuses before reading anything.
#[test]
fn reboot_check_lists_the_steps_and_a_script_must_say_yes() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "hosts.yml",
        "all:\n  children:\n    k3s_server:\n      hosts:\n        s1: {ansible_host: 192.0.2.1}\n    \
         k3s_agents:\n      hosts:\n        a1: {ansible_host: 192.0.2.2, k3s_node_name: agent-one}\n    \
         other:\n      hosts:\n        db: {ansible_host: 192.0.2.3}\n",
    );
    let out = labctl(
        d.path(),
        &["reboot", "all", "-i", "hosts.yml", "--check", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let data = crate::common::json_data(&out);
    let hosts = data["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["s1", "a1", "db"], "{data}");
    let steps = |i: usize| -> Vec<String> {
        hosts[i]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        steps(1),
        ["drain", "reboot", "wait_back", "wait_ready", "uncordon"]
    );
    assert_eq!(hosts[1]["node"], "agent-one", "k3s_node_name is followed");
    assert_eq!(steps(2), ["reboot", "wait_back"], "not a k3s node");
    assert!(hosts[2]["node"].is_null());

    let out = labctl(d.path(), &["reboot", "a1", "-i", "hosts.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to reboot without confirmation"),
        "{}",
        show(&out)
    );
    let out = labctl(
        d.path(),
        &["reboot", "nosuch", "-i", "hosts.yml", "--check"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
}
