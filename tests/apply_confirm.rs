//! `apply` asks before it changes anything (on a terminal, through a real pty made by
//! util-linux `script`), refuses without a terminal unless told, and records every run in
//! `.labctl/runs.jsonl` with ids only: a vault secret and an `-e` value used by the run are
//! absent from the log. Local connection: no root, no test hosts.

use crate::common::{show, write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
    c.current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("NO_COLOR", "1")
        .env("USER", "ada")
        // Its own local run lock: cli_local applies to this machine at the same time.
        .env("XDG_RUNTIME_DIR", dir.join(".config"));
    c
}

fn labctl(dir: &Path, args: &[&str]) -> Output {
    cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run labctl")
}

/// `labctl ARGS` with a pty as its terminal, `input` typed into it.
fn labctl_tty(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut c = cmd(dir);
    c.args(args);
    crate::common::in_pty(&c, input)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

const INV: &str = "inventories/local/hosts.yml";

#[test]
fn apply_asks_on_a_terminal_refuses_without_one_and_logs_every_run() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let canary = format!("vault-canary-{:016x}", rand::random::<u64>());
    let extra_canary = format!("extra-canary-{:016x}", rand::random::<u64>());
    write(
        dir,
        INV,
        "all:\n  hosts:\n    me:\n      ansible_connection: local\n",
    );
    write(
        dir,
        "inventories/local/group_vars/all/main.yml",
        &format!("base: {}\n", root.display()),
    );
    write(
        dir,
        "site.yml",
        "- name: demo\n  hosts: all\n  roles:\n    - demo\n",
    );
    write(
        dir,
        "roles/demo/role.yml",
        "resources:\n  - name: motd\n    file: {path: \"{{ base }}/motd\", content: \"hi {{ note | default('') }}\\n\"}\n  - name: token\n    file: {path: \"{{ base }}/token\", content: \"{{ vault_canary }}\\n\", mode: \"0600\"}\n",
    );
    write(
        dir,
        ".gitignore",
        "/.labctl/\n/root/\n/.config/\n/age.key\n",
    );
    // A vault made with labctl's own commands.
    let key = dir.join("age.key").display().to_string();
    let o = labctl(dir, &["vault", "keygen", "--out", &key]);
    assert!(o.status.success(), "{}", show(&o));
    let public = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    write(dir, ".age-recipients", &format!("{public}\n"));
    let plain = "inventories/local/group_vars/all/vault.yml";
    write(dir, plain, &format!("vault_canary: \"{canary}\"\n"));
    let o = labctl(dir, &["vault", "encrypt", plain, "--in-place"]);
    assert!(o.status.success(), "{}", show(&o));
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "lab"]);
    let commit = git(dir, &["rev-parse", "HEAD"]);
    let base = ["apply", "-i", INV, "--vault-key", key.as_str()];
    let mut seen = String::new();

    // 1. No terminal, no --yes: refused before anything is read or contacted.
    let o = labctl(dir, &base);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--yes"),
        "{}",
        show(&o)
    );
    assert!(!root.join("motd").exists());

    // 2. On a terminal: the plan, the question; "no" changes nothing (exit 5).
    let o = labctl_tty(dir, &base, "no\n");
    seen += &show(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        out.contains("+ demo/file:motd") && out.contains("Apply them?"),
        "{}",
        show(&o)
    );
    assert!(out.contains("nothing was changed"), "{}", show(&o));
    assert!(!root.join("motd").exists() && !root.join("token").exists());

    // 3. "yes" applies exactly the plan shown.
    let o = labctl_tty(dir, &base, "yes\n");
    seen += &show(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=2"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("token")).unwrap(),
        format!("{canary}\n")
    );

    // 4. Converged: nothing to ask.
    let o = labctl_tty(dir, &base, "");
    seen += &show(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("Apply them?"),
        "{}",
        show(&o)
    );

    // 5. --yes, from a dirty tree, with an -e value that ends up on the host.
    write(dir, "roles/demo/README", "dirty\n");
    let note = format!("note={extra_canary}");
    let o = labctl(
        dir,
        &[&base[..], &["--yes", "-e", &note, "--tags", "demo"]].concat(),
    );
    seen += &show(&o);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(std::fs::read_to_string(root.join("motd"))
        .unwrap()
        .contains(&extra_canary));

    // The log: one line per apply that got past the command line, ids only.
    let log = std::fs::read_to_string(dir.join(".labctl/runs.jsonl")).unwrap();
    assert!(
        !log.contains(&canary),
        "the vault secret is not in the run log:\n{log}"
    );
    assert!(
        !log.contains(&extra_canary),
        "-e values are not in the run log:\n{log}"
    );
    let runs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approvals: Vec<&str> = runs
        .iter()
        .map(|r| r["approval"].as_str().unwrap())
        .collect();
    assert_eq!(approvals, ["declined", "prompt", "none", "--yes"], "{log}");
    let exits: Vec<i64> = runs.iter().map(|r| r["exit"].as_i64().unwrap()).collect();
    assert_eq!(exits, [5, 0, 0, 0], "{log}");
    for r in &runs {
        assert_eq!(r["user"], "ada");
        assert_eq!(r["labctl"], env!("CARGO_PKG_VERSION"));
        assert_eq!(r["git"]["commit"], commit.as_str());
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r["run_id"].as_str().unwrap().len(), 12, "{r}");
    }
    assert_eq!(runs[1]["git"]["dirty"], false, "{log}");
    assert_eq!(runs[3]["git"]["dirty"], true, "{log}");
    let changed = |i: usize| -> Vec<String> {
        runs[i]["hosts"][0]["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(runs[1]["hosts"][0]["host"], "me");
    assert_eq!(changed(1), ["demo/file:motd", "demo/file:token"], "{log}");
    assert_eq!(changed(3), ["demo/file:motd"], "{log}");
    assert_eq!(runs[3]["selection"]["tags"], serde_json::json!(["demo"]));
    assert_eq!(runs[3]["selection"]["extra_vars"], 1);
    assert!(
        runs[0]["hosts"].as_array().unwrap().is_empty(),
        "a declined run changed nothing"
    );

    // history: text and JSON.
    let o = labctl(dir, &["history", "-n", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let h = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        h.lines().filter(|l| l.contains("approved:")).count(),
        2,
        "{h}"
    );
    assert!(
        h.contains("approved: --yes  --tags demo -e ×1") && h.contains("+dirty"),
        "{h}"
    );
    assert!(h.contains("me  ~ demo/file:motd"), "{h}");
    let o = labctl(dir, &["history", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all["command"], "history");
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
    assert!(!seen.contains(&canary), "no output showed the vault secret");
}
