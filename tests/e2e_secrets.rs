//! Canary secrets planted in a vault must appear only in their destination files on the host:
//! never in check/plan/apply output (human, --json, -vv), the plan file, error messages, the
//! host's process list sampled during apply, its temp dirs, $HOME or its journal.

use std::path::Path;
use std::process::Output;

use crate::common::{e2e_enabled, labctl, show, Testbed};

fn site() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/secrets/site.yml")
        .display()
        .to_string()
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn canaries_reach_only_their_destination_files() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2esec", 1);
    let h = tb.hosts[0].name.clone();
    let canary = format!("canary-{:x}", rand_u64());

    // A second vault file in the testbed inventory, encrypted for the testbed's key with the real
    // age CLI (so this also covers age → labctl interop).
    let key = tb.dir.join("age.key");
    let pubkey = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .expect("age-keygen (install age)");
    assert!(pubkey.status.success());
    let plain = tb.dir.join("canary.yml");
    std::fs::write(&plain, format!("vault_canary_token: \"{canary}\"\n")).unwrap();
    let enc = tb.dir.join("group_vars/all/canary.yml.age");
    let o = std::process::Command::new("age")
        .args([
            "-a",
            "-r",
            String::from_utf8_lossy(&pubkey.stdout).trim(),
            "-o",
        ])
        .arg(&enc)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    std::fs::remove_file(&plain).unwrap();

    let inv = tb.inventory.display().to_string();
    let key_s = key.display().to_string();
    let base = |cmd: &str| -> Vec<String> {
        let yes = (cmd == "apply").then(|| "--yes".to_string());
        [cmd.to_string()]
            .into_iter()
            .chain(yes)
            .chain([
                site(),
                "-i".into(),
                inv.clone(),
                "--vault-key".into(),
                key_s.clone(),
            ])
            .collect()
    };
    let run = |args: Vec<String>| -> Output {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        labctl(&refs)
    };
    let mut seen = String::new();

    // check, plan (human, json, saved), all with -vv.
    let o = run([base("check"), vec!["-vv".into()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    seen += &all_output(&o);
    let o = run([base("plan"), vec!["-vv".into()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("(secret changed"),
        "{}",
        show(&o)
    );
    seen += &all_output(&o);
    let plan_file = tb.dir.join("plan.json");
    let o = run([
        base("plan"),
        vec![
            "--json".into(),
            "--out".into(),
            plan_file.display().to_string(),
        ],
    ]
    .concat());
    seen += &all_output(&o);
    seen += &std::fs::read_to_string(&plan_file).unwrap();

    // A failing apply (validation rejects the secret file): error output, and no temp file left.
    let o = run([
        base("apply"),
        vec!["-vv".into(), "-e".into(), "canary_validate=false".into()],
    ]
    .concat());
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(all_output(&o).contains("validation failed"), "{}", show(&o));
    seen += &all_output(&o);
    assert_eq!(
        tb.sh_ok(&h, "ls -A /etc/canary | grep -c labctl || true")
            .trim(),
        "0",
        "no temp file left"
    );

    // A template that fails to render mentions the missing name, not the secret.
    let o = run([base("check"), vec!["-e".into(), "canary_break=true".into()]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(all_output(&o).contains("missing_variable"), "{}", show(&o));
    seen += &all_output(&o);

    // The real apply, with the host's process list sampled throughout.
    tb.sh_ok(&h, "nohup sh -c 'echo $$ > /run/sampler.pid; i=0; while [ $i -lt 600 ]; do for p in /proc/[0-9]*; do tr \"\\0\" \" \" < $p/cmdline 2>/dev/null; echo; done; i=$((i+1)); sleep 0.01; done' > /var/log/labctl-ps.log 2>&1 &");
    let o = run([base("apply"), vec!["-vv".into()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    seen += &all_output(&o);
    let o = run(base("plan"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "second run is converged: {}",
        show(&o)
    );
    seen += &all_output(&o);

    assert!(
        !seen.contains(&canary),
        "a canary leaked into labctl output or the plan file"
    );

    // On the host: only the destination files hold it, with the expected modes.
    assert_eq!(tb.sh_ok(&h, "cat /etc/canary/token"), format!("{canary}\n"));
    assert_eq!(
        tb.sh_ok(&h, "stat -c %a /etc/canary/app.env /etc/canary/token"),
        "600\n640\n"
    );
    let ps = tb.sh_ok(
        &h,
        "sleep 1; wc -l < /var/log/labctl-ps.log; grep -c labctl /var/log/labctl-ps.log || true",
    );
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].trim().parse::<u32>().unwrap() > 100,
        "the sampler ran: {ps}"
    );
    assert_ne!(
        lines[1].trim(),
        "0",
        "the sampler saw labctl's remote processes: {ps}"
    );
    // Stop the sampler first, and search with a pattern that does not match its own command
    // line (`canar[y]-…`), or the search would find itself in the sampled process list.
    tb.sh_ok(
        &h,
        "kill $(cat /run/sampler.pid) 2>/dev/null; sleep 0.2; true",
    );
    let pat = canary.replacen("canary", "canar[y]", 1);
    let found = tb.sh_ok(&h, &format!("grep -rl -- '{pat}' /var/log/labctl-ps.log /tmp /var/tmp /root /run 2>/dev/null || true; journalctl --no-pager 2>/dev/null | grep -c -- '{pat}' || true"));
    assert_eq!(
        found.trim(),
        "0",
        "canary found outside its destination: {found}"
    );
    let everywhere = tb.sh_ok(
        &h,
        &format!("grep -rl --exclude-dir=proc --exclude-dir=sys -- '{pat}' / 2>/dev/null || true"),
    );
    let mut files: Vec<&str> = everywhere.lines().collect();
    files.sort();
    assert_eq!(
        files,
        vec!["/etc/canary/app.env", "/etc/canary/token"],
        "files holding the canary"
    );
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}
