//! End to end for cluster services, on real test hosts.
//! (a) helm_repo / helm_release / k8s_manifest / k8s_secret against the stand-in helm and
//!     kubectl (tests/standins): install → no-op → values change → upgrade → drift repair, and
//!     vault canaries never in any output, the plan file or any argv.
//! (b) the backup, restore-drill and smoke-test scripts against REAL PostgreSQL, SQLite and
//!     Redis from Debian's packages.
//! Host state is checked out of band (nsenter), never through labctl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{e2e_enabled, labctl, show, Testbed};

const CANARY_ADMIN: &str = "canary-pg-admin-5ad1";
const CANARY_APP: &str = "canary-pg-app-77c2";
const CANARY_TOKEN: &str = "canary-values-token-e03f";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Run {
    tb: Testbed,
    key: PathBuf,
    seen: std::cell::RefCell<String>,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn labctl(&self, cmd: &str, extra: &[&str]) -> Output {
        let site = root().join("tests/fixtures/cluster/site.yml");
        let standins = format!("standins_dir={}", root().join("tests/standins").display());
        let mut a: Vec<String> = vec![
            cmd.into(),
            site.display().to_string(),
            "-i".into(),
            self.tb.inventory.display().to_string(),
        ];
        if cmd == "apply" {
            a.push("--yes".into());
        }
        a.extend([
            "--vault-key".into(),
            self.key.display().to_string(),
            "-e".into(),
            standins,
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = labctl(&refs);
        self.seen.borrow_mut().push_str(&text(&o));
        o
    }
    fn plan(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut e = vec!["--json"];
        e.extend_from_slice(extra);
        let o = self.labctl("plan", &e);
        let v = crate::common::json_data(&o);
        (o.status.code().unwrap_or(-1), v)
    }
}

fn changes(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["changes"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ids(plan: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = changes(plan)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn assert_no_canary(what: &str, s: &str) {
    for c in [CANARY_ADMIN, CANARY_APP, CANARY_TOKEN] {
        assert!(!s.contains(c), "{what} leaks {c}:\n{s}");
    }
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn cluster_types_converge_on_standins_without_leaking_secrets() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2eclu", 1);
    let tmp = tempfile::tempdir().unwrap();
    // The testbed writes its own vault and key; our canaries go in a second vault for that key.
    let key = tb.dir.join("age.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("the key file names its public key")
        .to_string();
    std::fs::write(tmp.path().join("recipients"), format!("{public}\n")).unwrap();
    let gv = tb.dir.join("group_vars/all");
    let plain = gv.join("cluster.yml");
    std::fs::write(&plain, format!("vault_pg_admin: {CANARY_ADMIN}\nvault_pg_app: {CANARY_APP}\nvault_values_token: {CANARY_TOKEN}\n")).unwrap();
    let o = labctl(&[
        "vault",
        "encrypt",
        "--in-place",
        "--recipients",
        &tmp.path().join("recipients").display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(
        o.status.success() && gv.join("cluster.yml.age").exists(),
        "{}",
        show(&o)
    );
    let run = Run {
        tb,
        key,
        seen: Default::default(),
        _tmp: tmp,
    };
    let h = run.tb.hosts[0].name.clone();
    let state = |cmd: &str| run.tb.sh_ok(&h, cmd);

    // Fresh host: no helm, no kubectl. The plan creates everything and changes nothing.
    let (code, plan) = run.plan(&[]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(changes(&plan).len(), 9, "{plan:#}");
    assert!(
        changes(&plan)
            .iter()
            .filter(|c| c["kind"] != "file")
            .all(|c| c["action"] == "create"),
        "{plan:#}"
    );
    assert!(!run
        .tb
        .sh(&h, "test -e /usr/local/bin/helm")
        .status
        .success());

    // Install.
    let o = run.labctl("apply", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/meta").contains("revision=1"));
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/meta")
        .contains("chart=postgresql-16.7.4"));
    let values: serde_json::Value = serde_json::from_str(&state(
        "cat /var/lib/standin-k8s/releases/db/postgres/values",
    ))
    .unwrap();
    assert_eq!(
        values["primary"]["service"]["nodePorts"]["postgresql"],
        30432
    );
    assert_eq!(
        values["commonAnnotations"]["lab/token"], CANARY_TOKEN,
        "values reached helm intact (over stdin)"
    );
    let secret: serde_json::Value = serde_json::from_str(&state(
        "cat /var/lib/standin-k8s/objects/secret/db/pg-auth.json",
    ))
    .unwrap();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    assert_eq!(secret["data"]["postgres-password"], b64(CANARY_ADMIN));
    assert_eq!(secret["data"]["password"], b64(CANARY_APP));
    assert!(
        state("cat /var/lib/standin-k8s/objects/cronjob/db/pg-backup.json")
            .contains("\"schedule\":\"0 2 * * *\"")
    );
    assert!(
        !state("cat /var/lib/standin-k8s/calls.log").contains("repo update"),
        "the pinned chart was in the index: no refresh"
    );

    // Converged: plan 0, and a second apply touches nothing.
    let (code, plan) = run.plan(&[]);
    assert_eq!(code, 0, "{plan:#}");
    let o = run.labctl("apply", &[]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );

    // A values change upgrades exactly that release; the secret-bearing values show no values.
    let (code, plan) = run.plan(&["-e", "pg_node_port=30433", "-e", "redis_node_port=30380"]);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis",
            "cluster/helm_release:db/postgres"
        ],
        "{plan:#}"
    );
    let cs = changes(&plan);
    let pg = cs.iter().find(|c| c["name"] == "db/postgres").unwrap();
    assert_eq!(pg["action"], "update");
    assert!(
        pg["reasons"][0]
            .as_str()
            .unwrap()
            .contains("primary.service.nodePorts.postgresql"),
        "{pg:#}"
    );
    assert!(
        pg["diff"]
            .as_str()
            .unwrap()
            .contains("(secret changed: now hmac-sha256:"),
        "{pg:#}"
    );
    let redis = cs.iter().find(|c| c["name"] == "cache/redis").unwrap();
    let rd = redis["diff"].as_str().unwrap();
    let line = |sign: char, s: &str| {
        rd.lines()
            .any(|l| l.starts_with(sign) && l.trim_end().ends_with(s))
    };
    assert!(
        line('-', "redis: 30379") && line('+', "redis: 30380"),
        "a non-secret values diff is shown:\n{rd}"
    );
    let plan_file = run._tmp.path().join("plan.json");
    let o = run.labctl(
        "plan",
        &[
            "-e",
            "pg_node_port=30433",
            "-e",
            "redis_node_port=30380",
            "--out",
            &plan_file.display().to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_no_canary(
        "the saved plan",
        &std::fs::read_to_string(&plan_file).unwrap(),
    );
    let o = run.labctl(
        "apply",
        &["-e", "pg_node_port=30433", "-e", "redis_node_port=30380"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/meta").contains("revision=2"));
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/values").contains("30433"));
    let (code, plan) = run.plan(&["-e", "pg_node_port=30433", "-e", "redis_node_port=30380"]);
    assert_eq!(code, 0, "{plan:#}");

    // Out-of-band drift: a managed manifest field, an extra key in the Secret, a new chart
    // version missing from the repo index (refreshed once, inside the release's step).
    state("sed -i 's/\"keep_days\":\"7\"/\"keep_days\":\"1\"/' /var/lib/standin-k8s/objects/configmap/db/pg-backup.json");
    state("sed -i 's/\"data\":{/\"data\":{\"stale\":\"eA==\",/' /var/lib/standin-k8s/objects/secret/db/pg-auth.json");
    state("echo 'postgresql 16.7.5' > /var/lib/standin-k8s/repos/bitnami.lacks");
    let extra = [
        "-e",
        "pg_node_port=30433",
        "-e",
        "redis_node_port=30380",
        "-e",
        "pg_chart_version=16.7.5",
    ];
    let (code, plan) = run.plan(&extra);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:db/postgres",
            "cluster/k8s_manifest:backup.yaml.j2",
            "cluster/k8s_secret:db/pg-auth"
        ],
        "{plan:#}"
    );
    let cs = changes(&plan);
    let m = cs.iter().find(|c| c["kind"] == "k8s_manifest").unwrap();
    assert_eq!(
        m["reasons"][0], "ConfigMap/db/pg-backup differs at data.keep_days",
        "{m:#}"
    );
    let md = m["diff"].as_str().unwrap();
    assert!(
        md.lines()
            .any(|l| l.starts_with('-') && l.contains("keep_days") && l.contains('1')),
        "{md}"
    );
    assert!(
        md.lines()
            .any(|l| l.starts_with('+') && l.contains("keep_days") && l.contains('7')),
        "{md}"
    );
    let s = cs.iter().find(|c| c["kind"] == "k8s_secret").unwrap();
    assert_eq!(s["reasons"][0], "extra key stale", "{s:#}");
    let o = run.labctl("apply", &extra);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(state("cat /var/lib/standin-k8s/calls.log").contains("helm repo update bitnami"));
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/meta")
        .contains("chart=postgresql-16.7.5"));
    assert!(!state("cat /var/lib/standin-k8s/objects/secret/db/pg-auth.json").contains("stale"));
    let (code, plan) = run.plan(&extra);
    assert_eq!(code, 0, "{plan:#}");

    // Removal: `state: absent` takes back a release, a manifest's objects and a Secret.
    let mut rm = extra.to_vec();
    rm.extend(["-e", "cleanup=true"]);
    let (code, plan) = run.plan(&rm);
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        ids(&plan),
        vec![
            "cluster/helm_release:cache/redis",
            "cluster/k8s_manifest:backup.yaml.j2",
            "cluster/k8s_secret:db/pg-auth"
        ],
        "{plan:#}"
    );
    assert!(
        changes(&plan).iter().all(|c| c["action"] == "remove"),
        "{plan:#}"
    );
    // Check mode: planning the removal removed nothing.
    assert!(state("ls /var/lib/standin-k8s/releases/cache").contains("redis"));
    let o = run.labctl("apply", &rm);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let gone = state(
        "cd /var/lib/standin-k8s; for f in releases/cache/redis objects/secret/db/pg-auth.json \
         objects/configmap/db/pg-backup.json objects/cronjob/db/pg-backup.json; do [ -e $f ] && echo $f; done; true",
    );
    assert_eq!(gone.trim(), "", "still there: {gone}");
    assert!(state("cat /var/lib/standin-k8s/releases/db/postgres/meta").contains("deployed"));
    let (code, plan) = run.plan(&rm);
    assert_eq!(code, 0, "{plan:#}");
    let o = run.labctl("apply", &rm);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("changed=0"),
        "{}",
        show(&o)
    );

    // Secrets never in any output, any argv (calls.log records every helm/kubectl argv), the
    // journal, or a temp dir.
    assert_no_canary("labctl output", &run.seen.borrow());
    assert_no_canary(
        "argv of helm/kubectl",
        &state("cat /var/lib/standin-k8s/calls.log"),
    );
    assert_no_canary(
        "the journal",
        &state("journalctl --no-pager -q 2>/dev/null || true"),
    );
    assert_no_canary(
        "temp dirs",
        &state("grep -rl canary /tmp /var/tmp 2>/dev/null || true"),
    );
    let site = root()
        .join("tests/fixtures/cluster/site.yml")
        .display()
        .to_string();
    let standins = format!("standins_dir={}", root().join("tests/standins").display());
    let o = labctl(&[
        "facts",
        &h,
        &site,
        "-i",
        &run.tb.inventory.display().to_string(),
        "--vault-key",
        &run.key.display().to_string(),
        "-e",
        &standins,
    ]);
    assert_no_canary("labctl facts", &text(&o));
}

// ---- (b) scripts against real servers ----

fn put(tb: &Testbed, host: &str, path: &str, script: &Path) {
    let body = std::fs::read_to_string(script).unwrap();
    assert!(!body.contains("LABCTL_EOF"));
    tb.sh_ok(host, &format!("mkdir -p \"$(dirname {path})\" && cat > {path} <<'LABCTL_EOF'\n{body}LABCTL_EOF\nchmod 755 {path}"));
}

fn controller_has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn controller_apt(pkgs: &[&str]) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {} >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {})", pkgs.join(" "), pkgs.join(" ")))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cannot install {pkgs:?} on the controller:\n{}",
        show(&o)
    );
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn backup_drill_and_smoke_scripts_work_against_real_servers() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("e2eclb", 1);
    let h = tb.hosts[0].name.clone();
    let addr = tb.hosts[0].address.clone();
    let sh = |s: &str| tb.sh_ok(&h, s);
    sh("export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q postgresql sqlite3 redis-server >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q postgresql sqlite3 redis-server >/dev/null)");
    for s in [
        "pg-backup.sh",
        "pg-restore-drill.sh",
        "k3s-datastore-backup.sh",
    ] {
        put(
            &tb,
            &h,
            &format!("/usr/local/bin/{s}"),
            &root().join("scripts").join(s),
        );
    }

    // PostgreSQL: a database with a few tables and rows.
    sh("pg_isready -t 30");
    sh("runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -q -c 'create database app' && \
        runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -q -d app -c \"create table users (id serial primary key, name text); \
        insert into users (name) select 'u' || g from generate_series(1, 250) g; \
        create schema shop; create table shop.\\\"Orders\\\" (id int, total numeric); insert into shop.\\\"Orders\\\" select g, g * 1.5 from generate_series(1, 40) g; \
        create table empty_one (x int);\"");
    let pg = |env: &str, script: &str| {
        tb.sh(&h, &format!("mkdir -p /var/backups/pg && chown postgres /var/backups/pg && runuser -u postgres -- env BACKUP_DIR=/var/backups/pg {env} {script}"))
    };

    // Backup + rotation: a 10-day-old dump goes, a 2-day-old one stays.
    sh("mkdir -p /var/backups/pg && cd /var/backups/pg && echo old | gzip > app-20000101T000000Z.sql.gz && touch -d '10 days ago' app-20000101T000000Z.sql.gz \
        && echo recent | gzip > app-20000102T000000Z.sql.gz && touch -d '2 days ago' app-20000102T000000Z.sql.gz && chown -R postgres /var/backups/pg");
    let o = pg("BACKUP_KEEP_DAYS=7", "pg-backup.sh");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o).contains("rotated out /var/backups/pg/app-20000101T000000Z.sql.gz"),
        "{}",
        show(&o)
    );
    let files = sh("ls /var/backups/pg");
    assert!(
        !files.contains("app-20000101") && files.contains("app-20000102"),
        "{files}"
    );
    assert_eq!(
        files
            .lines()
            .filter(|l| l.starts_with("app-2") && !l.starts_with("app-2000"))
            .count(),
        1,
        "{files}"
    );
    assert_eq!(
        sh("stat -c %a /var/backups/pg/app-20[!0]*.sql.gz").trim(),
        "600",
        "dumps are owner-only"
    );
    assert!(sh("zcat /var/backups/pg/app-20[!0]*.sql.gz").contains("CREATE TABLE shop.\"Orders\""));

    // The drill restores the newest dump and compares every table's row count.
    let o = pg("", "pg-restore-drill.sh");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o).contains("app ok:") && text(&o).contains("3 tables, row counts match"),
        "{}",
        show(&o)
    );
    assert!(
        !sh("runuser -u postgres -- psql -X -At -c 'select datname from pg_database'")
            .contains("drill_"),
        "scratch database dropped"
    );

    // A mismatch with the source fails (rows written after the dump are caught).
    sh("runuser -u postgres -- psql -X -q -d app -c \"insert into users (name) values ('late')\"");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success()
            && text(&o).contains("table public.users has 251 rows in the source but 250"),
        "{}",
        show(&o)
    );

    // A corrupt (truncated) newest dump fails loudly; so does a dump that is valid gzip but bad SQL.
    sh("cd /var/backups/pg && f=$(ls app-20[!0]*.sql.gz) && head -c 300 $f > app-29990101T000000Z.sql.gz && chown postgres app-29990101T000000Z.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("is corrupt"),
        "{}",
        show(&o)
    );
    sh("cd /var/backups/pg && echo 'this is not SQL;' | gzip > app-29990101T000000Z.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("restoring"),
        "{}",
        show(&o)
    );
    // A stale newest dump (the backup job stopped) fails too.
    sh("cd /var/backups/pg && rm app-2999* && touch -d '3 days ago' app-20[!0]*.sql.gz");
    let o = pg("", "pg-restore-drill.sh");
    assert!(
        !o.status.success() && text(&o).contains("older than 26 hours"),
        "{}",
        show(&o)
    );

    // k3s datastore: a real SQLite file in WAL mode, backed up with its token, rotated.
    sh("mkdir -p /var/lib/rancher/k3s/server/db && cd /var/lib/rancher/k3s/server && echo 'K10canary::server:token' > token && chmod 600 token && \
        sqlite3 db/state.db 'pragma journal_mode=wal; create table kine (id integer primary key, name text, value blob); \
        with recursive c(x) as (select 1 union all select x + 1 from c where x < 500) insert into kine (name, value) select \"/registry/k\" || x, randomblob(64) from c;'");
    sh("mkdir -p /var/backups/k3s && cd /var/backups/k3s && : > k3s-datastore-20000101T000000Z.tar.gz && touch -d '9 days ago' k3s-datastore-20000101T000000Z.tar.gz");
    let o = tb.sh(&h, "BACKUP_KEEP_DAYS=7 k3s-datastore-backup.sh");
    assert!(o.status.success(), "{}", show(&o));
    let files = sh("ls /var/backups/k3s");
    assert!(
        !files.contains("20000101") && files.lines().count() == 1,
        "{files}"
    );
    assert_eq!(
        sh("stat -c %a /var/backups/k3s/k3s-datastore-*.tar.gz").trim(),
        "600"
    );
    let restored = sh("d=$(mktemp -d) && tar -C $d -xzf /var/backups/k3s/k3s-datastore-*.tar.gz && cat $d/token && sqlite3 $d/db/state.db 'pragma integrity_check; select count(*) from kine;' && ls $d/db");
    assert_eq!(
        restored, "K10canary::server:token\nok\n500\nstate.db\n",
        "token + consistent db, no stale -wal/-shm"
    );
    sh("mv /var/lib/rancher/k3s/server/token /root/token.aside");
    let o = tb.sh(&h, "k3s-datastore-backup.sh");
    assert!(
        !o.status.success() && text(&o).contains("without its token"),
        "{}",
        show(&o)
    );

    // Smoke tests from the controller against real servers on the host, password from a 0600 file.
    for (tool, pkg) in [("psql", "postgresql-client"), ("redis-cli", "redis-tools")] {
        if !controller_has(tool) {
            controller_apt(&[pkg]);
        }
    }
    let pw = "canary-smoke-pw-31";
    sh(&format!(
        "f=$(ls /etc/postgresql/*/main/postgresql.conf) && echo \"listen_addresses = '*'\" >> $f && \
         echo 'host all all 0.0.0.0/0 scram-sha-256' >> $(dirname $f)/pg_hba.conf && \
         echo \"alter user postgres password '{pw}'\" | runuser -u postgres -- psql -X -q && systemctl restart postgresql && pg_isready -t 30 -h {addr}"
    ));
    sh(&format!(
        "sed -i 's/^bind .*/bind 0.0.0.0/; s/^protected-mode .*/protected-mode no/' /etc/redis/redis.conf && echo 'requirepass {pw}' >> /etc/redis/redis.conf && systemctl restart redis-server && sleep 1"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bad = tmp.path().join("bad");
    std::fs::write(&bad, "wrong").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let script = |name: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(root().join("scripts").join(name));
        c.env_remove("PGPASSWORD").env_remove("REDISCLI_AUTH");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let pwf = pwfile.display().to_string();
    let badf = bad.display().to_string();
    let o = script(
        "test-postgres.sh",
        &[
            ("PGHOST", &addr),
            ("PGPORT", "5432"),
            ("PG_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("test-postgres: ok"),
        "{}",
        show(&o)
    );
    assert_eq!(
        sh("runuser -u postgres -- psql -X -At -c 'select count(*) from labctl_smoke'").trim(),
        "0",
        "the test row was cleaned up"
    );
    let o = script(
        "test-postgres.sh",
        &[
            ("PGHOST", &addr),
            ("PGPORT", "5432"),
            ("PG_PASSWORD_FILE", &badf),
        ],
    );
    assert!(!o.status.success(), "a wrong password fails:\n{}", show(&o));
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("test-redis: ok"),
        "{}",
        show(&o)
    );
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &badf),
        ],
    );
    assert!(!o.status.success(), "a wrong password fails:\n{}", show(&o));
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = script(
        "test-redis.sh",
        &[
            ("REDIS_HOST", &addr),
            ("REDIS_PORT", "6379"),
            ("REDIS_PASSWORD_FILE", &pwf),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("must be mode 0600"),
        "{}",
        show(&o)
    );
}
