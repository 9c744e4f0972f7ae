//! Off-site backups and restores, end to end on a real test host: the repo's own site.yml
//! applies the backups role (its host half; the CronJob half needs a cluster), real PostgreSQL
//! and a real SQLite datastore behind a k3s-like unit produce archives, `backup-offsite.sh`
//! encrypts them with age and pushes them with rclone (Debian's) to a real S3 server (moto,
//! started here on the testbed's gateway address), and the restore scripts bring them back.
//! Checked out of band (nsenter on the host, rclone from the controller): retention 30 daily /
//! 8 weekly, a failed upload (exit code, metric, local copy kept, rotation holds it), restores
//! with matching row counts, and tampered or truncated archives refused before anything changes.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::common::{e2e_enabled, labctl, show, Testbed};

const S3_SECRET: &str = "canary-s3-secret-4b7f";
const PG_PW: &str = "backup-test-pw-9e2";

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The S3 server; killed by its PID when the test ends, also on panic.
pub(crate) struct Moto(pub(crate) Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn moto_server() -> Option<PathBuf> {
    let venv = std::env::var_os("LABCTL_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/labctl/test-venv"))
        })?;
    Some(venv.join("bin/moto_server")).filter(|p| p.is_file())
}

struct Lab {
    tb: Testbed,
    host: String,
    vars: PathBuf,
    rclone_conf: PathBuf,
    seen: std::cell::RefCell<String>,
}

impl Lab {
    fn labctl(&self, cmd: &str) -> Output {
        let key = self.tb.dir.join("age.key").display().to_string();
        let inv = self.tb.inventory.display().to_string();
        let vars = format!("@{}", self.vars.display());
        let site = repo("site.yml");
        // apply asks first unless told: these runs are scripted.
        let yes = if cmd == "apply" {
            vec!["--yes"]
        } else {
            vec![]
        };
        let o = labctl(
            &[
                &[cmd][..],
                &yes,
                &[
                    &site,
                    "-i",
                    &inv,
                    "--vault-key",
                    &key,
                    "--tags",
                    "backups",
                    "--skip-tags",
                    "backups-k8s",
                    "-e",
                    &vars,
                ],
            ]
            .concat(),
        );
        self.seen.borrow_mut().push_str(&text(&o));
        o
    }
    fn sh(&self, script: &str) -> String {
        self.tb.sh_ok(&self.host, script)
    }
    /// One off-site run that must succeed; its journal is in the failure message.
    fn offsite(&self) {
        let o = self
            .tb
            .sh(&self.host, "systemctl start labctl-backup-offsite.service");
        if !o.status.success() {
            let j = self.tb.sh(
                &self.host,
                "journalctl -u labctl-backup-offsite.service --no-pager -n 60",
            );
            panic!("off-site run failed:\n{}\n{}", show(&o), text(&j));
        }
    }
    fn sh_fails(&self, script: &str) -> String {
        let o = self.tb.sh(&self.host, script);
        assert!(
            !o.status.success(),
            "`{script}` should have failed:\n{}",
            show(&o)
        );
        text(&o)
    }
    fn rclone(&self, args: &[&str]) -> Output {
        rclone(&self.rclone_conf, args)
    }
    fn objects(&self, dir: &str) -> Vec<String> {
        s3_objects(&self.rclone_conf, &self.host, dir)
    }
    fn put_object(&self, local: &Path, dir: &str, name: &str) {
        let dest = format!("s3:lab-backups/{}/{dir}/{name}", self.host);
        let o = self.rclone(&["copyto", &local.display().to_string(), &dest]);
        assert!(o.status.success(), "{}", show(&o));
    }
    fn get_object(&self, dir: &str, name: &str, local: &Path) {
        let src = format!("s3:lab-backups/{}/{dir}/{name}", self.host);
        let o = self.rclone(&["copyto", &src, &local.display().to_string()]);
        assert!(o.status.success(), "{}", show(&o));
    }
    fn delete_object(&self, dir: &str, name: &str) {
        let o = self.rclone(&[
            "deletefile",
            &format!("s3:lab-backups/{}/{dir}/{name}", self.host),
        ]);
        assert!(o.status.success(), "{}", show(&o));
    }
    /// The restore scripts' environment on the server: the role's settings and the operator's key.
    fn restore_env(&self) -> &'static str {
        "set -a; . /etc/labctl-backup/offsite.env; set +a; export AGE_IDENTITY=/root/restore.key \
         PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD=backup-test-pw-9e2;"
    }
}

/// Debian's rclone on the controller, with the test's own config (never the host's).
pub(crate) fn rclone(conf: &Path, args: &[&str]) -> Output {
    Command::new("/usr/bin/rclone")
        .arg("--config")
        .arg(conf)
        .args(args)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("cannot run rclone")
}

/// The object names under `lab-backups/HOST/DIR/`, sorted.
pub(crate) fn s3_objects(conf: &Path, host: &str, dir: &str) -> Vec<String> {
    let o = rclone(
        conf,
        &[
            "lsf",
            "--files-only",
            &format!("s3:lab-backups/{host}/{dir}/"),
        ],
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// The off-site settings a test lab uses, as a user keeps them: rclone's remote for the moto
/// server at `endpoint`, the repo's recipients (here the testbed vault's key: whoever holds it
/// can restore), the S3 keys in a vault in the testbed's group_vars, and a vars file turning the
/// off-site push on (plus `extra` YAML lines). Returns (rclone.conf, the vars file).
pub(crate) fn offsite_setup(
    tb: &Testbed,
    tmp: &Path,
    endpoint: &str,
    s3_secret: &str,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let rclone_conf = tmp.join("rclone.conf");
    std::fs::write(
        &rclone_conf,
        format!("[s3]\ntype = s3\nprovider = Other\naccess_key_id = labctl-test\nsecret_access_key = {s3_secret}\nendpoint = {endpoint}\nregion = us-east-1\n"),
    )
    .unwrap();
    let key_text = std::fs::read_to_string(tb.dir.join("age.key")).unwrap();
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let recipients = tmp.join("age-recipients");
    std::fs::write(&recipients, format!("# test recipients\n{public}\n")).unwrap();
    let gv = tb.dir.join("group_vars/all");
    std::fs::create_dir_all(&gv).unwrap();
    let plain = gv.join("backup.yml");
    std::fs::write(
        &plain,
        format!(
            "vault_backup_s3_access_key: labctl-test\nvault_backup_s3_secret_key: {s3_secret}\n"
        ),
    )
    .unwrap();
    let o = labctl(&[
        "vault",
        "encrypt",
        "--in-place",
        "--recipients",
        &recipients.display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let vars = tmp.join("vars.yml");
    std::fs::write(
        &vars,
        format!("backup_offsite: true\n{extra}backup_s3_bucket: lab-backups\nbackup_s3_endpoint: {endpoint}\nbackup_age_recipients_file: {}\n", recipients.display()),
    )
    .unwrap();
    (rclone_conf, vars)
}

pub(crate) fn metric(prom: &str, line_start: &str) -> Option<String> {
    prom.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next().map(String::from))
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn offsite_backups_and_restores_on_a_test_host() {
    if !e2e_enabled() {
        return;
    }
    let Some(moto) = moto_server() else {
        crate::common::skip("moto_server is not in the test venv (scripts/setup.sh)");
        return;
    };
    if !Path::new("/usr/bin/rclone").is_file() {
        crate::common::skip("Debian's rclone is not installed (scripts/setup.sh)");
        return;
    }
    let tb = Testbed::up("seeds-backup", 1);
    let host = tb.hosts[0].name.clone();
    let addr = tb.hosts[0].address.clone();
    // The machine's end of the host's veth (10.213.X.1): an address this testbed created.
    let gw = format!("{}.1", addr.rsplit_once('.').unwrap().0);
    let port = TcpListener::bind((gw.as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Moto(
        Command::new(&moto)
            .args(["-H", &gw, "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start moto_server"),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect((gw.as_str(), port)).is_err() {
        assert!(
            Instant::now() < until,
            "moto_server did not listen on {gw}:{port}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let endpoint = format!("http://{gw}:{port}");

    let tmp = tempfile::tempdir().unwrap();
    // No cluster on this host, so no volumes to back up (tests/e2e_volumes.rs has them).
    let key = tb.dir.join("age.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let (rclone_conf, vars) = offsite_setup(
        &tb,
        tmp.path(),
        &endpoint,
        S3_SECRET,
        "volume_backup: false\n",
    );
    let lab = Lab {
        tb,
        host,
        vars,
        rclone_conf,
        seen: Default::default(),
    };
    let o = lab.rclone(&["--s3-no-check-bucket=false", "mkdir", "s3:lab-backups"]);
    assert!(
        o.status.success(),
        "cannot create the bucket:\n{}",
        show(&o)
    );

    // What the role does not own: PostgreSQL with data, and a k3s-like server whose SQLite
    // datastore is open and written (WAL) while it runs.
    lab.sh("export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q postgresql sqlite3 >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q postgresql sqlite3 >/dev/null)");
    lab.sh(&format!("pg_isready -t 30 && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -c \"alter user postgres password '{PG_PW}'\" -c 'create database app' && \
        runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d app -c \"create table users (id serial primary key, name text); \
        insert into users (name) select 'u' || g || E'\\n' || 'second line' from generate_series(1, 250) g; \
        create schema shop; create table shop.\\\"Orders\\\" (id int, total numeric); insert into shop.\\\"Orders\\\" select g, g * 1.5 from generate_series(1, 40) g; \
        create table empty_one (x int);\""));
    lab.sh("mkdir -p /var/lib/rancher/k3s/server/db /etc/rancher/k3s && cd /var/lib/rancher/k3s/server && \
        printf 'K10feedbeef::server:tok-7d3a\\n' > token && printf 'tok-7d3a\\n' > /etc/rancher/k3s/token && \
        sqlite3 db/state.db 'pragma journal_mode=wal; create table kine (id integer primary key, name text, value blob); create table beats (at text); \
        insert into kine (name, value) select \"/registry/k\" || value, randomblob(200) from generate_series(1, 100);' && \
        printf '#!/bin/sh\\nwhile :; do sqlite3 -cmd .timeout\\ 10000 /var/lib/rancher/k3s/server/db/state.db \"insert into beats values (datetime())\"; sleep 1; done\\n' > /usr/local/bin/fake-k3s && chmod 755 /usr/local/bin/fake-k3s && \
        printf '[Service]\\nExecStart=/usr/local/bin/fake-k3s\\n' > /etc/systemd/system/k3s.service && \
        systemctl daemon-reload && systemctl start k3s && sleep 2 && systemctl is-active k3s");

    // The role, through labctl: apply, then nothing left to do.
    let o = lab.labctl("apply");
    assert!(o.status.success(), "apply:\n{}", show(&o));
    let o = lab.labctl("plan");
    assert_eq!(
        o.status.code(),
        Some(0),
        "a second plan shows drift:\n{}",
        show(&o)
    );
    assert_eq!(
        lab.sh("stat -c '%a %U' /etc/labctl-backup/rclone.conf /var/backups/postgres")
            .trim(),
        "600 root\n700 pg-backup"
    );
    lab.sh("systemctl is-enabled labctl-backup-offsite.timer k3s-datastore-backup.timer && command -v rclone age");

    // Producers: a dump written by the job's uid, the datastore by its timer's service.
    let script = std::fs::read_to_string(repo("scripts/pg-backup.sh")).unwrap();
    lab.sh(&format!("cat > /usr/local/bin/pg-backup.sh <<'LABCTL_EOF'\n{script}LABCTL_EOF\nchmod 755 /usr/local/bin/pg-backup.sh"));
    let dump = |lab: &Lab| {
        lab.sh(&format!("runuser -u pg-backup -- env PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD={PG_PW} BACKUP_DIR=/var/backups/postgres BACKUP_REQUIRE_OFFSITE=1 /usr/local/bin/pg-backup.sh"))
    };
    dump(&lab);
    lab.sh("systemctl start k3s-datastore-backup.service");
    lab.offsite();
    let daily_pg = lab.objects("postgres/daily");
    let daily_k3s = lab.objects("k3s-datastore/daily");
    assert_eq!(daily_pg.len(), 1, "{daily_pg:?}");
    assert_eq!(daily_k3s.len(), 1, "{daily_k3s:?}");
    assert_eq!(
        lab.objects("postgres/weekly"),
        daily_pg,
        "the week's first archive is its weekly copy"
    );
    // Encrypted before it left: the age header, and no row or token in clear.
    let got = tmp.path().join("got.age");
    lab.get_object("postgres/daily", &daily_pg[0], &got);
    let bytes = std::fs::read(&got).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&got)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the recipients' key opens it: {}",
        show(&o)
    );
    lab.get_object("k3s-datastore/daily", &daily_k3s[0], &got);
    let bytes = std::fs::read(&got).unwrap();
    assert!(
        !bytes.windows(8).any(|w| w == b"tok-7d3a"),
        "the token left in clear"
    );
    let prom = lab.sh("cat /var/lib/prometheus/node-exporter/labctl_backup.prom");
    assert_eq!(
        metric(&prom, "labctl_backup_last_run_ok{kind=\"postgres\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "labctl_backup_last_run_ok{kind=\"k3s-datastore\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    assert!(
        metric(
            &prom,
            "labctl_backup_last_success_timestamp_seconds{kind=\"postgres\"}"
        )
        .is_some(),
        "{prom}"
    );
    lab.sh("ls /var/backups/postgres/app-*.sql.gz.offsite /var/backups/k3s/k3s-datastore-*.tar.gz.offsite");

    // Retention 30 daily / 8 weekly per series: 31 older dailies and 10 older weeklies exist.
    let filler = tmp.path().join("filler");
    std::fs::write(&filler, b"old").unwrap();
    for d in 1..=31 {
        lab.put_object(
            &filler,
            "postgres/daily",
            &format!("app-200001{d:02}T020000Z.sql.gz.age"),
        );
    }
    for w in 0..10 {
        lab.put_object(
            &filler,
            "postgres/weekly",
            &format!("app-2000{:02}03T020000Z.sql.gz.age", w + 1),
        );
    }
    lab.put_object(
        &filler,
        "postgres/daily",
        "other-20000101T020000Z.sql.gz.age",
    );
    std::thread::sleep(Duration::from_secs(1)); // a new stamp for the next dump
    dump(&lab);
    lab.offsite();
    let daily = lab.objects("postgres/daily");
    let app: Vec<&String> = daily.iter().filter(|n| n.starts_with("app-")).collect();
    assert_eq!(app.len(), 30, "{daily:?}");
    assert!(
        !daily.contains(&"app-20000103T020000Z.sql.gz.age".to_string())
            && daily.contains(&"app-20000104T020000Z.sql.gz.age".to_string()),
        "the oldest go first: {daily:?}"
    );
    assert!(
        daily.contains(&"other-20000101T020000Z.sql.gz.age".to_string()),
        "another series keeps its own count"
    );
    let weekly = lab.objects("postgres/weekly");
    assert_eq!(weekly.len(), 8, "{weekly:?}");
    assert!(
        weekly.contains(&daily_pg[0]),
        "the newest weekly stays: {weekly:?}"
    );

    // A failed upload: loud (exit code, metric), and the local copy stays, even past rotation.
    lab.sh(
        "sed -i 's|^endpoint = .*|endpoint = http://127.0.0.1:9|' /etc/labctl-backup/rclone.conf",
    );
    std::thread::sleep(Duration::from_secs(1));
    dump(&lab);
    let failed = lab.sh_fails("systemctl start labctl-backup-offsite.service");
    let journal = lab.sh("journalctl -u labctl-backup-offsite.service --no-pager -n 40");
    assert!(
        journal.contains("local copies kept")
            && journal.contains("FAILED for: k3s-datastore postgres"),
        "{failed}\n{journal}"
    );
    assert!(
        !journal.contains(S3_SECRET),
        "the journal shows the S3 secret"
    );
    let prom = lab.sh("cat /var/lib/prometheus/node-exporter/labctl_backup.prom");
    assert_eq!(
        metric(&prom, "labctl_backup_last_run_ok{kind=\"postgres\"}").as_deref(),
        Some("0"),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "labctl_backup_offsite_pending{kind=\"postgres\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    let pending = lab.sh(
        "cd /var/backups/postgres && for f in app-*.sql.gz; do [ -e $f.offsite ] || echo $f; done",
    );
    let pending = pending.trim().to_string();
    assert!(pending.starts_with("app-"), "{pending}");
    lab.sh(&format!(
        "touch -d '40 days ago' /var/backups/postgres/{pending}"
    ));
    let o = lab.tb.sh(&lab.host, &format!("runuser -u pg-backup -- env PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD={PG_PW} BACKUP_DIR=/var/backups/postgres BACKUP_REQUIRE_OFFSITE=1 BACKUP_KEEP_DAYS=7 /usr/local/bin/pg-backup.sh"));
    assert!(
        o.status.success() && text(&o).contains("not off-site yet"),
        "{}",
        show(&o)
    );
    lab.sh(&format!("test -f /var/backups/postgres/{pending}"));
    // labctl sees the broken storage config and repairs it; the next run catches up.
    let o = lab.labctl("plan");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o).contains("file:off-site storage") && text(&o).contains("1 to change"),
        "{}",
        show(&o)
    );
    let o = lab.labctl("apply");
    assert!(o.status.success(), "{}", show(&o));
    lab.offsite();
    assert!(lab
        .objects("postgres/daily")
        .contains(&format!("{pending}.age")));
    let prom = lab.sh("cat /var/lib/prometheus/node-exporter/labctl_backup.prom");
    assert_eq!(
        metric(&prom, "labctl_backup_last_run_ok{kind=\"postgres\"}").as_deref(),
        Some("1"),
        "{prom}"
    );

    // PostgreSQL restore: the newest off-site dump into a fresh database, counts compared.
    let key_body = key_text.clone();
    lab.sh(&format!(
        "umask 077; cat > /root/restore.key <<'LABCTL_EOF'\n{key_body}LABCTL_EOF"
    ));
    let out = lab.sh(&format!("{} RESTORE_DATABASE=app RESTORE_TARGET=app_restored RESTORE_COMPARE_SOURCE=1 pg-restore-offsite.sh", lab.restore_env()));
    assert!(
        out.contains("row counts match the dump and the live app") && out.contains("3 tables"),
        "{out}"
    );
    let newest = lab
        .objects("postgres/daily")
        .into_iter()
        .rfind(|n| n.starts_with("app-"))
        .unwrap();
    assert!(
        out.contains(&format!("using {newest}")),
        "the newest: {out}"
    );
    assert_eq!(lab.sh("runuser -u postgres -- psql -X -At -d app_restored -c 'select count(*) from users' -c 'select count(*) from shop.\"Orders\"'").trim(), "250\n40");
    // An existing target is never overwritten.
    let e = lab.sh_fails(&format!(
        "{} RESTORE_DATABASE=app RESTORE_TARGET=app_restored pg-restore-offsite.sh",
        lab.restore_env()
    ));
    assert!(e.contains("exists already"), "{e}");

    // Tampered and truncated archives: refused before any database exists.
    let good = tmp.path().join("good.age");
    lab.get_object("postgres/daily", &newest, &good);
    let mut b = std::fs::read(&good).unwrap();
    let bad = tmp.path().join("bad.age");
    let mid = b.len() - 40;
    b[mid] ^= 0x55;
    std::fs::write(&bad, &b).unwrap();
    let cut = tmp.path().join("cut.age");
    let g = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &g[..g.len() * 2 / 3]).unwrap();
    for (what, file) in [("tampered", &bad), ("truncated", &cut)] {
        let name = "app-29990101T000000Z.sql.gz.age";
        lab.put_object(file, "postgres/daily", name);
        let e = lab.sh_fails(&format!(
            "{} RESTORE_DATABASE=app RESTORE_TARGET=app_bad pg-restore-offsite.sh",
            lab.restore_env()
        ));
        assert!(
            e.contains("cannot decrypt") && e.contains("tampered, truncated"),
            "{what}: {e}"
        );
        assert_eq!(lab.sh("runuser -u postgres -- psql -X -At -c \"select count(*) from pg_database where datname = 'app_bad'\"").trim(), "0", "{what}");
        lab.delete_object("postgres/daily", name);
    }

    // k3s datastore restore: a later loss (rows deleted) is undone by the newest archive.
    lab.sh("sqlite3 -cmd '.timeout 10000' /var/lib/rancher/k3s/server/db/state.db 'delete from kine where id > 10'");
    let before = lab.sh("systemctl show -p ActiveEnterTimestamp k3s");
    // Refused cleanly first, with k3s left running untouched: a tampered archive ...
    let k3s_newest = lab.objects("k3s-datastore/daily").last().unwrap().clone();
    lab.get_object("k3s-datastore/daily", &k3s_newest, &good);
    let mut b = std::fs::read(&good).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&bad, &b).unwrap();
    lab.put_object(
        &bad,
        "k3s-datastore/daily",
        "k3s-datastore-29990101T000000Z.tar.gz.age",
    );
    let e = lab.sh_fails(&format!("{} k3s-datastore-restore.sh", lab.restore_env()));
    assert!(e.contains("tampered, truncated"), "{e}");
    lab.delete_object(
        "k3s-datastore/daily",
        "k3s-datastore-29990101T000000Z.tar.gz.age",
    );
    // ... and a token that differs from the archive's.
    lab.sh(
        "cp /etc/rancher/k3s/token /root/token.keep && echo other-token > /etc/rancher/k3s/token",
    );
    let e = lab.sh_fails(&format!("{} k3s-datastore-restore.sh", lab.restore_env()));
    assert!(
        e.contains("different token") && !e.contains("tok-7d3a"),
        "{e}"
    );
    lab.sh("mv /root/token.keep /etc/rancher/k3s/token");
    assert_eq!(
        lab.sh("systemctl show -p ActiveEnterTimestamp k3s"),
        before,
        "k3s was restarted by a refused restore"
    );
    assert_eq!(
        lab.sh("sqlite3 -cmd '.timeout 10000' /var/lib/rancher/k3s/server/db/state.db 'select count(*) from kine'")
            .trim(),
        "10"
    );

    let out = lab.sh(&format!("{} k3s-datastore-restore.sh", lab.restore_env()));
    assert!(out.contains("ok:") && out.contains(&k3s_newest), "{out}");
    lab.sh("systemctl is-active k3s");
    assert_eq!(lab.sh("sqlite3 -cmd '.timeout 10000' /var/lib/rancher/k3s/server/db/state.db 'pragma integrity_check; select count(*) from kine'").trim(), "ok\n100");
    assert_eq!(
        lab.sh("cat /var/lib/rancher/k3s/server/token").trim(),
        "K10feedbeef::server:tok-7d3a"
    );
    // The old datastore is kept aside, whole.
    let aside =
        lab.sh("find /var/lib/rancher/k3s/server -maxdepth 1 -type d -name 'db.before-restore-*'");
    assert_eq!(
        lab.sh(&format!(
            "sqlite3 {}/state.db 'select count(*) from kine'",
            aside.trim()
        ))
        .trim(),
        "10"
    );

    // Leftovers: no key, no decrypted dump or archive in /tmp, no secret in labctl's output.
    lab.sh("rm /root/restore.key");
    assert_eq!(
        lab.sh("ls /tmp | grep -c -e restore -e offsite || true")
            .trim(),
        "0"
    );
    assert!(
        !lab.seen.borrow().contains(S3_SECRET),
        "labctl printed the S3 secret"
    );
}
