//! `labctl vault …` end to end: the built binary, a scratch repo in a temp dir, and the real
//! `age` CLI for interop. Needs no root. The `age` package must be installed (CI installs it);
//! without it the interop tests fail with a message saying so instead of passing silently.

use crate::common::show;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CANARY: &str = "CANARY-d41d8c-pl41ntext";

/// A scratch repo with its own HOME, so no real key of the person running the tests is used.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Repo { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn script(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.write(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
        c.current_dir(self.dir.path())
            .env("HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .env("NO_COLOR", "1")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("LABCTL_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("VISUAL")
            .env_remove("EDITOR");
        c
    }

    fn labctl(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .expect("cannot run the labctl binary")
    }

    /// `labctl vault keygen --out FILE`; returns the public key.
    fn keygen(&self, rel: &str) -> String {
        let out = self.labctl(&["vault", "keygen", "--out", rel]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(public.starts_with("age1"), "{public}");
        public
    }

    fn files_in(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_canary(out: &Output) {
    assert!(
        !stdout(out).contains(CANARY) && !stderr(out).contains(CANARY),
        "plaintext leaked:\n{}",
        show(out)
    );
}

/// The `age` CLI; fails the test (never skips) when it is missing.
fn age_cli(bin: &str) -> Command {
    let ok = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "this test needs the `{bin}` command from the `age` package (apt-get install age); it is not installed");
    Command::new(bin)
}

fn run_ok(c: &mut Command) -> Vec<u8> {
    let out = c.output().expect("cannot run command");
    assert!(out.status.success(), "{c:?}\n{}", show(&out));
    out.stdout
}

/// A repo with a labctl key at key.txt, listed in .age-recipients, and an encrypted vault.
fn repo_with_vault() -> (Repo, String) {
    let r = Repo::new();
    let public = r.keygen("key.txt");
    r.write(".age-recipients", &format!("# test\n{public}\n"));
    r.write(
        "inv/vault.yml",
        &format!("db:\n  password: {CANARY}\n  port: 5432\nusers: [alice, bob]\n"),
    );
    let out = r.labctl(&["vault", "encrypt", "--in-place", "inv/vault.yml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        !r.path("inv/vault.yml").exists(),
        "--in-place keeps the plaintext"
    );
    assert_no_canary(&out);
    (r, public)
}

#[test]
fn labctl_encrypted_file_opens_with_age_cli() {
    let (r, _) = repo_with_vault();
    let text = std::fs::read_to_string(r.path("inv/vault.yml.age")).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains(CANARY));
    let plain = run_ok(
        age_cli("age")
            .arg("-d")
            .arg("-i")
            .arg(r.path("key.txt"))
            .arg(r.path("inv/vault.yml.age")),
    );
    assert!(String::from_utf8(plain).unwrap().contains(CANARY));
}

#[test]
fn age_cli_encrypted_file_opens_with_labctl() {
    let r = Repo::new();
    run_ok(age_cli("age-keygen").arg("-o").arg(r.path("agekey.txt")));
    let public = run_ok(age_cli("age-keygen").arg("-y").arg(r.path("agekey.txt")));
    std::fs::write(r.path("recipients.txt"), &public).unwrap();
    r.write(
        "other.yml",
        &format!("api:\n  token: {CANARY}\n  retries: 3\n"),
    );
    run_ok(
        age_cli("age")
            .arg("-a")
            .arg("-R")
            .arg(r.path("recipients.txt"))
            .arg("-o")
            .arg(r.path("other.yml.age"))
            .arg(r.path("other.yml")),
    );

    let out = r.labctl(&[
        "--vault-key",
        "agekey.txt",
        "vault",
        "view",
        "other.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        std::fs::read_to_string(r.path("other.yml")).unwrap()
    );

    let out = r.labctl(&[
        "--vault-key",
        "agekey.txt",
        "vault",
        "get",
        "other.yml.age",
        "api.token",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(stdout(&out), format!("{CANARY}\n"));
    let out = r.labctl(&[
        "--vault-key",
        "agekey.txt",
        "vault",
        "get",
        "other.yml.age",
        "api",
    ]);
    assert_eq!(
        stdout(&out),
        format!("{{\"token\":\"{CANARY}\",\"retries\":3}}\n")
    );

    // The env var works as a key source too, and a binary (unarmored) file is accepted.
    run_ok(
        age_cli("age")
            .arg("-R")
            .arg(r.path("recipients.txt"))
            .arg("-o")
            .arg(r.path("bin.age"))
            .arg(r.path("other.yml")),
    );
    let out = r
        .cmd()
        .args(["vault", "get", "bin.age", "api.retries"])
        .env("LABCTL_AGE_KEY_FILE", r.path("agekey.txt"))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "3\n", "{}", show(&out));
}

#[test]
fn keygen_file_is_private_readable_by_age_and_never_overwritten() {
    let r = Repo::new();
    // Default location honours HOME; the new config dir is 0700, the key 0600.
    let out = r.labctl(&["vault", "keygen"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let key = r.path("home/.config/labctl/age.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(key.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let text = std::fs::read_to_string(&key).unwrap();
    let public = stdout(&out).trim().to_string();
    assert!(
        text.contains("# created: ") && text.contains(&format!("# public key: {public}")),
        "{text}"
    );
    assert!(stderr(&out).contains(".age-recipients"), "{}", show(&out));
    assert!(!stdout(&out).contains("AGE-SECRET-KEY") && !stderr(&out).contains("AGE-SECRET-KEY"));

    // age reads the key; labctl finds it by default.
    r.write("p.txt", "k: v\n");
    run_ok(
        age_cli("age")
            .arg("-a")
            .arg("-r")
            .arg(&public)
            .arg("-o")
            .arg(r.path("p.txt.age"))
            .arg(r.path("p.txt")),
    );
    run_ok(
        age_cli("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(r.path("p.txt.age")),
    );
    let out = r.labctl(&["vault", "get", "p.txt.age", "k"]);
    assert_eq!(stdout(&out), "v\n", "{}", show(&out));

    let again = r.labctl(&["vault", "keygen"]);
    assert_eq!(again.status.code(), Some(5), "{}", show(&again));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn wrong_key_exits_4_and_names_sources_tried() {
    let (r, _) = repo_with_vault();
    r.keygen("wrong.txt");
    let out = r
        .cmd()
        .args(["vault", "view", "inv/vault.yml.age"])
        .env("LABCTL_AGE_KEY_FILE", r.path("wrong.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("inv/vault.yml.age"), "{err}");
    assert!(
        err.contains("$LABCTL_AGE_KEY_FILE") && err.contains("wrong.txt"),
        "{err}"
    );
    assert!(err.contains("$SOPS_AGE_KEY_FILE (not set)"), "{err}");
    assert!(err.contains("age.key (missing)"), "{err}");
    assert!(err.contains("1 recipient stanza(s)"), "{err}");
    assert!(err.contains(".age-recipients"), "{err}");
    assert!(stdout(&out).is_empty());
    assert_no_canary(&out);

    // No key anywhere.
    let out = r.labctl(&["vault", "view", "inv/vault.yml.age"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("no age identity found"),
        "{}",
        show(&out)
    );

    // A named key file that does not exist is an error, not an empty keyring.
    let out = r.labctl(&[
        "--vault-key",
        "nope.txt",
        "vault",
        "view",
        "inv/vault.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(stderr(&out).contains("nope.txt"), "{}", show(&out));
}

#[test]
fn tampered_and_truncated_vaults_exit_4() {
    let (r, _) = repo_with_vault();
    let text = std::fs::read_to_string(r.path("inv/vault.yml.age")).unwrap();
    let half = &text[..text.len() / 2];
    r.write("cut.yml.age", half);
    let out = r.labctl(&["--vault-key", "key.txt", "vault", "view", "cut.yml.age"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("corrupt or tampered"),
        "{}",
        show(&out)
    );
    assert_no_canary(&out);
}

#[test]
fn decrypt_needs_an_explicit_destination() {
    let (r, _) = repo_with_vault();
    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "decrypt",
        "inv/vault.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stderr(&out).contains("--stdout"), "{}", show(&out));
    assert_no_canary(&out);

    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "decrypt",
        "--stdout",
        "inv/vault.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains(CANARY));

    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "decrypt",
        "--out",
        "plain.yml",
        "inv/vault.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        std::fs::metadata(r.path("plain.yml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(r.path("plain.yml"))
        .unwrap()
        .contains(CANARY));
    let again = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "decrypt",
        "--out",
        "plain.yml",
        "inv/vault.yml.age",
    ]);
    assert_eq!(again.status.code(), Some(5), "{}", show(&again));
}

#[test]
fn encrypt_refuses_invalid_yaml_without_echoing_it() {
    let r = Repo::new();
    let public = r.keygen("key.txt");
    r.write(".age-recipients", &format!("{public}\n"));
    r.write("bad.yml", &format!("a: 1\nb: \"{CANARY}\n  c: [\n"));
    let out = r.labctl(&["vault", "encrypt", "bad.yml"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stderr(&out).contains("bad.yml:"), "{}", show(&out));
    assert_no_canary(&out);
    assert!(!r.path("bad.yml.age").exists());

    // No .age-recipients anywhere above: a vault error naming the file to create.
    let r2 = Repo::new();
    r2.write("ok.yml", "a: 1\n");
    let out = r2.labctl(&["vault", "encrypt", "ok.yml"]);
    if !stderr(&out).contains("no .age-recipients") {
        // A stray /tmp/.age-recipients on this machine would be found by the walk up; then the
        // encryption itself must have worked.
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    } else {
        assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    }
}

#[test]
fn edit_reencrypts_only_on_change_and_leaves_no_temp_files() {
    let (r, _) = repo_with_vault();
    let vault = r.path("inv/vault.yml.age");
    let before = std::fs::read(&vault).unwrap();
    let edit = |editor: &Path| {
        r.cmd()
            .args([
                "--vault-key",
                "key.txt",
                "vault",
                "edit",
                "inv/vault.yml.age",
            ])
            .env("EDITOR", editor)
            .output()
            .unwrap()
    };

    // Unchanged: the file stays byte-identical.
    let noop = r.script("ed-noop.sh", "exit 0");
    let out = edit(&noop);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read(&vault).unwrap(), before);
    assert!(
        r.files_in("tmp").is_empty(),
        "left in TMPDIR: {:?}",
        r.files_in("tmp")
    );

    // Failing editor: the vault is kept, the temp dir is gone.
    let fail = r.script("ed-fail.sh", "echo 'added: 1' >> \"$1\"; exit 7");
    let out = edit(&fail);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read(&vault).unwrap(), before);
    assert!(
        r.files_in("tmp").is_empty(),
        "left in TMPDIR: {:?}",
        r.files_in("tmp")
    );
    assert_no_canary(&out);

    // Broken YAML: refused with a position, vault kept, nothing left behind, nothing echoed.
    let broken = r.script(
        "ed-broken.sh",
        "printf 'oops: [\\n  \"CANARY-d41d8c-pl41ntext\\n' >> \"$1\"",
    );
    let out = edit(&broken);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stderr(&out).contains("invalid YAML"), "{}", show(&out));
    assert_eq!(std::fs::read(&vault).unwrap(), before);
    assert!(
        r.files_in("tmp").is_empty(),
        "left in TMPDIR: {:?}",
        r.files_in("tmp")
    );
    assert_no_canary(&out);

    // A real change: re-encrypted; the editor saw a 0600 file in a 0700 directory.
    let modes = r.path("modes.txt");
    let change = r.script(
        "ed-change.sh",
        &format!("stat -c %a \"$1\" > '{m}'; stat -c %a \"$(dirname \"$1\")\" >> '{m}'; echo 'added: 42' >> \"$1\"", m = modes.display()),
    );
    let out = edit(&change);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&modes).unwrap(), "600\n700\n");
    assert_ne!(std::fs::read(&vault).unwrap(), before);
    assert!(
        r.files_in("tmp").is_empty(),
        "left in TMPDIR: {:?}",
        r.files_in("tmp")
    );
    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "get",
        "inv/vault.yml.age",
        "added",
    ]);
    assert_eq!(stdout(&out), "42\n", "{}", show(&out));
    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "get",
        "inv/vault.yml.age",
        "users.1",
    ]);
    assert_eq!(stdout(&out), "bob\n", "{}", show(&out));
    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "get",
        "inv/vault.yml.age",
        "db.nope",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
}

#[test]
fn rekey_adds_a_recipient_and_skips_target_and_git() {
    let (r, public) = repo_with_vault();
    let second = r.keygen("second.txt");
    r.write(".age-recipients", &format!("{public}\n{second}\n"));
    // Junk that would fail to decrypt if rekey looked there.
    r.write("target/junk.age", "not a vault");
    r.write(".git/junk.age", "not a vault");

    let out = r.labctl(&["--vault-key", "key.txt", "vault", "rekey"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stderr(&out).contains("rekeyed inv/vault.yml.age for 2 recipient(s)"),
        "{}",
        show(&out)
    );
    let plain = run_ok(
        age_cli("age")
            .arg("-d")
            .arg("-i")
            .arg(r.path("second.txt"))
            .arg(r.path("inv/vault.yml.age")),
    );
    assert!(String::from_utf8(plain).unwrap().contains(CANARY));

    // A named file that is broken is reported with exit 4; the others still get rekeyed.
    let out = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "rekey",
        "target/junk.age",
        "inv/vault.yml.age",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("rekeyed inv/vault.yml.age"),
        "{}",
        show(&out)
    );
}

/// `--json`: stdout is the one envelope every command prints, notes stay on stderr, and the
/// plain output is unchanged without it.
#[test]
fn json_output_is_the_common_envelope() {
    use crate::common::json_data;
    let (r, public) = repo_with_vault();
    let envelope = |args: &[&str], command: &str| -> serde_json::Value {
        let mut all = vec!["--vault-key", "key.txt", "--json"];
        all.extend_from_slice(args);
        let out = r.labctl(&all);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["command"], command, "{}", show(&out));
        json_data(&out)
    };
    // A map stays a map; a number stays a number.
    let db = envelope(&["vault", "get", "inv/vault.yml.age", "db"], "vault get");
    assert_eq!(db, serde_json::json!({"password": CANARY, "port": 5432}));
    let plain = r.labctl(&[
        "--vault-key",
        "key.txt",
        "vault",
        "get",
        "inv/vault.yml.age",
        "db.port",
    ]);
    assert_eq!(stdout(&plain), "5432\n", "{}", show(&plain));

    let view = envelope(&["vault", "view", "inv/vault.yml.age"], "vault view");
    assert_eq!(view["file"], "inv/vault.yml.age");
    assert!(
        view["plaintext"].as_str().unwrap().contains("port: 5432"),
        "{view}"
    );

    let rekey = envelope(&["vault", "rekey", "inv/vault.yml.age"], "vault rekey");
    assert_eq!(
        rekey,
        serde_json::json!({"files": [{"file": "inv/vault.yml.age", "recipients": 1}]})
    );

    let key = envelope(&["vault", "keygen", "--out", "k2.txt"], "vault keygen");
    assert_eq!(key["file"], "k2.txt");
    let k2 = key["public_key"].as_str().unwrap();
    assert!(k2.starts_with("age1") && k2 != public, "{key}");
}

/// `labctl seal`: the manifest on stdout, or written to --out with a status line on stderr, or
/// under --json the envelope naming what was sealed (with the manifest when it was not written).
#[test]
fn seal_prints_writes_or_gives_the_envelope() {
    use crate::common::json_data;
    let (r, _) = repo_with_vault();
    let cert = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sealed-secrets/cert.pem");
    let seal = |global: &[&str], own: &[&str]| {
        let mut a = vec!["--vault-key", "key.txt"];
        a.extend_from_slice(global);
        a.extend_from_slice(&[
            "seal",
            "--vault",
            "inv/vault.yml.age",
            "--cert",
            cert.to_str().unwrap(),
            "--name",
            "db",
            "-n",
            "apps",
            "password=db.password",
        ]);
        a.extend_from_slice(own);
        let out = r.labctl(&a);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        assert_no_canary(&out);
        out
    };
    let out = seal(&[], &[]);
    assert!(
        stdout(&out).contains("kind: SealedSecret"),
        "{}",
        show(&out)
    );
    assert_eq!(stderr(&out), "");

    let out = seal(&[], &["--out", "sealed.yaml"]);
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("Sealed 1 key(s) into SealedSecret apps/db → sealed.yaml"),
        "{}",
        show(&out)
    );
    let written = std::fs::read_to_string(r.path("sealed.yaml")).unwrap();
    assert!(written.contains("kind: SealedSecret"), "{written}");

    let v = json_data(&seal(&["--json"], &[]));
    assert_eq!(
        (
            &v["name"],
            &v["namespace"],
            &v["scope"],
            &v["keys"],
            &v["out"]
        ),
        (
            &serde_json::json!("db"),
            &serde_json::json!("apps"),
            &serde_json::json!("strict"),
            &serde_json::json!(["password"]),
            &serde_json::Value::Null
        ),
        "{v}"
    );
    assert!(
        v["manifest"]
            .as_str()
            .unwrap()
            .contains("kind: SealedSecret"),
        "{v}"
    );
    let v = json_data(&seal(&["--json"], &["--out", "sealed2.yaml"]));
    assert_eq!(v["out"], "sealed2.yaml", "{v}");
    assert!(v["manifest"].is_null(), "{v}");
    assert!(r.path("sealed2.yaml").exists());
}
