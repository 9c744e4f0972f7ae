//! The volume backup's list of the lab's PVCs (roles/backups `volume_backup_pvcs`) against the
//! PVCs the roles really make: Redis's StatefulSet claim (roles/redis's template rendered from
//! its defaults) and kube-prometheus-stack's (the kept chart rendered by the real helm through
//! `labctl render`: Grafana's PVC, and the claims the Prometheus operator makes for the
//! Prometheus and Alertmanager it defines). A renamed release or a chart change cannot leave a
//! volume out silently; and the names follow the inventory's vars.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::alerts::{rendered_monitoring_chart, rendered_monitoring_chart_with};
use super::*;

/// A plain value of a role's defaults.yml.
fn default_of(role: &str, key: &str) -> String {
    let text = std::fs::read_to_string(root().join(format!("roles/{role}/defaults.yml"))).unwrap();
    yaml(&text)[key]
        .as_str()
        .unwrap_or_else(|| panic!("{role}: no {key}"))
        .to_string()
}

/// VOLUME_BACKUP_PVCS as the backups role writes it for `ctx`.
fn listed(ctx: &Ctx) -> BTreeSet<String> {
    let (env, _) = render("backups", "labctl-volume-backup.env.j2", ctx);
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME_BACKUP_PVCS="))
        .unwrap_or_else(|| panic!("no VOLUME_BACKUP_PVCS in:\n{env}"));
    line.trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The claims a StatefulSet's pods get: CLAIM-STATEFULSET-ORDINAL, in its namespace.
fn statefulset_claims(sts: &Value) -> Vec<String> {
    let ns = sts["metadata"]["namespace"].as_str().unwrap();
    let name = sts["metadata"]["name"].as_str().unwrap();
    let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
    let mut v = Vec::new();
    for t in sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let claim = t["metadata"]["name"].as_str().unwrap();
        for i in 0..replicas {
            v.push(format!("{ns}/{claim}-{name}-{i}"));
        }
    }
    v
}

/// The claim the Prometheus operator makes for a Prometheus or Alertmanager with storage:
/// its StatefulSet is KIND-NAME, the claim template KIND-NAME-db unless the spec names it.
fn operator_claim(o: &Value, ns: &str) -> Option<String> {
    let tmpl = o["spec"]["storage"].get("volumeClaimTemplate")?;
    let kind = o["kind"].as_str().unwrap().to_lowercase();
    let name = o["metadata"]["name"].as_str().unwrap();
    let claim = tmpl["metadata"]["name"]
        .as_str()
        .map(String::from)
        .unwrap_or(format!("{kind}-{name}-db"));
    Some(format!("{ns}/{claim}-{kind}-{name}-0"))
}

/// The claims kube-prometheus-stack's output makes: its own PVCs (Grafana's), its
/// StatefulSets' claims, and the operator's for each Prometheus and Alertmanager; objects
/// without a namespace are in `ns`.
fn chart_claims(chart: &[Value], ns: &str) -> BTreeSet<String> {
    let mut made = BTreeSet::new();
    for o in chart {
        match o["kind"].as_str() {
            Some("PersistentVolumeClaim") => {
                made.insert(format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or(ns),
                    o["metadata"]["name"].as_str().unwrap()
                ));
            }
            Some("StatefulSet") => made.extend(statefulset_claims(o)),
            Some("Prometheus") | Some("Alertmanager") => made.extend(operator_claim(o, ns)),
            _ => {}
        }
    }
    made
}

#[test]
fn the_volume_backup_lists_every_pvc_the_roles_make_but_postgres() {
    let Some(chart) = rendered_monitoring_chart() else {
        return;
    };
    let mut made = BTreeSet::new();
    let (redis, _) = render("redis", "redis.k8s.j2", &role_ctx("redis", &[]));
    for d in redis
        .split("\n---")
        .map(yaml)
        .filter(|d| d["kind"] == "StatefulSet")
    {
        made.extend(statefulset_claims(&d));
    }
    let ns = default_of("monitoring", "monitoring_namespace");
    made.extend(chart_claims(&chart, &ns));
    // Redis's, Grafana's, Prometheus's and Alertmanager's.
    assert_eq!(made.len(), 4, "{made:#?}");
    let list = listed(&role_ctx("backups", &[]));
    assert_eq!(list, made, "volume_backup_pvcs against what the roles make");
    // PostgreSQL's volume is backed up by pg_dump, never as a folder.
    let pg_ns = default_of("postgres", "postgres_namespace");
    assert!(
        !list.iter().any(|p| p.starts_with(&format!("{pg_ns}/"))),
        "{list:?}"
    );
}

/// The chart names its objects after its fullname, which depends on the release name (its
/// _helpers.tpl): the list must follow it for any release, not only the default `monitoring`.
/// Each release here is the real chart rendered again with that `monitoring_release`.
#[test]
fn the_monitoring_pvcs_follow_any_release_name() {
    let ns = default_of("monitoring", "monitoring_namespace");
    for release in [
        // Short: RELEASE-kube-prometheus-stack fits in the chart's 26 characters.
        "mon",
        // Long: cut to 26 right after a `-`, which the chart drops.
        "lab-observability-staging",
        // Holding both charts' names: the release itself is the fullname, cut to 26 for
        // Prometheus and Alertmanager, whole for Grafana.
        "kube-prometheus-stack-grafana",
    ] {
        let Some(chart) =
            rendered_monitoring_chart_with(&[&format!("monitoring_release={release}")])
        else {
            return;
        };
        let made = chart_claims(&chart, &ns);
        assert_eq!(made.len(), 3, "{release}: {made:#?}");
        let list: BTreeSet<String> = listed(&role_ctx(
            "backups",
            &[("monitoring_release", json!(release))],
        ))
        .into_iter()
        .filter(|p| p.starts_with(&format!("{ns}/")))
        .collect();
        assert_eq!(
            list, made,
            "release {release}: volume_backup_pvcs against the chart's claims"
        );
    }
}

#[test]
fn the_lab_pvc_names_follow_the_inventory() {
    let list = listed(&role_ctx(
        "backups",
        &[
            ("redis_namespace", json!("cache-staging")),
            ("redis_name", json!("kv")),
            ("monitoring_release", json!("mon")),
        ],
    ));
    assert!(list.contains("cache-staging/data-kv-0"), "{list:?}");
    assert!(list.contains("monitoring/mon-grafana"), "{list:?}");
    // The chart's fullname for `mon` is mon-kube-prometheus-stack (26 characters fit it whole).
    assert!(
        list.contains("monitoring/prometheus-mon-kube-prometheus-stack-prometheus-db-prometheus-mon-kube-prometheus-stack-prometheus-0"),
        "{list:?}"
    );
    assert!(
        list.contains("monitoring/alertmanager-mon-kube-prometheus-stack-alertmanager-db-alertmanager-mon-kube-prometheus-stack-alertmanager-0"),
        "{list:?}"
    );
}

// ---- volume_backup: false turns the job off (roles/backups/role.yml) ----

/// The backups role's work on the example lab's server, compiled offline with `volume_backup`
/// set: (id, {kind: rendered spec}) in run order.
fn backups_work(volume_backup: bool) -> Vec<(String, Value)> {
    let c = crate::lab_check::compile_lab(&[("volume_backup", json!(volume_backup))]);
    crate::lab_check::items(&c, "lab-server-1")
        .into_iter()
        .filter(|i| i.id.role == "backups")
        .map(|i| {
            let mut spec = serde_json::Map::new();
            spec.insert(i.id.kind.clone(), i.rendered.clone());
            (i.id.to_string(), Value::Object(spec))
        })
        .collect()
}

/// The metric file volume-backup.sh writes (its name in the script, in the role's folder).
fn metric_file() -> String {
    let script = std::fs::read_to_string(root().join("scripts/volume-backup.sh")).unwrap();
    assert!(
        script.contains("\"$BACKUP_METRICS_DIR/labctl_volume_backup.prom\""),
        "volume-backup.sh no longer writes labctl_volume_backup.prom: follow it here and in roles/backups/role.yml"
    );
    format!(
        "{}/labctl_volume_backup.prom",
        default_of("backups", "node_exporter_textfile_dir")
    )
}

#[test]
fn volume_backup_false_stops_the_timer_and_removes_the_metric() {
    let metric = metric_file();
    let off = backups_work(false);
    let pos = |want: &dyn Fn(&Value) -> bool, what: &str| {
        off.iter()
            .position(|(_, r)| want(r))
            .unwrap_or_else(|| panic!("volume_backup: false: no {what} in {off:#?}"))
    };
    let timer = pos(
        &|r| {
            r["service"]["name"] == "labctl-volume-backup.timer"
                && r["service"]["enabled"] == json!(false)
                && r["service"]["state"] == "stopped"
        },
        "timer stopped and disabled",
    );
    let run = pos(
        &|r| {
            r["service"]["name"] == "labctl-volume-backup.service"
                && r["service"]["state"] == "stopped"
        },
        "run in progress stopped",
    );
    let gone = pos(
        &|r| r["file"]["path"] == json!(metric) && r["file"]["state"] == "absent",
        "metric file removed",
    );
    // A run stopped after its metric was removed would write it again on its way out.
    assert!(timer < run && run < gone, "{off:#?}");
    // Nothing of it is started, enabled or written any more.
    for (id, r) in &off {
        let s = r.to_string();
        assert!(
            !(s.contains("labctl-volume-backup")
                && (s.contains("\"started\"") || s.contains("\"enabled\":true")))
                && !s.contains("labctl-volume-backup.env.j2"),
            "volume_backup: false still has {id}: {r}"
        );
    }

    // On: the timer enabled and started, and the metric left to the script.
    let on = backups_work(true);
    assert!(
        on.iter().any(
            |(_, r)| r["service"]["name"] == "labctl-volume-backup.timer"
                && r["service"]["enabled"] == json!(true)
                && r["service"]["state"] == "started"
        ),
        "{on:#?}"
    );
    assert!(
        !on.iter()
            .any(|(_, r)| r["file"]["path"] == json!(metric) || r["service"]["state"] == "stopped"),
        "volume_backup: true turns something off: {on:#?}"
    );
}

// ---- the scripts, run here with a stand-in kubectl (no cluster, no root) ----

/// A scratch lab for scripts/volume-backup.sh: one PVC `apps/uploads` bound to the local
/// folder `vol`, archives (and the script's work folder) into `out`, the metric into `prom`.
struct BackupBench {
    dir: tempfile::TempDir,
}

impl BackupBench {
    fn new() -> BackupBench {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["vol", "out", "prom", "bin"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("vol/data"), "volume data\n").unwrap();
        // The API server's answers to the script's three questions.
        let kubectl = format!(
            "#!/bin/sh\ncase \"$*\" in\n  *'get pvc -A -l'*) ;;\n  *'get pvc -A'*) printf 'apps/uploads\\tBound\\tpv1\\n' ;;\n  *'get pv '*) printf 'pv1\\t{}\\t\\n' ;;\nesac\n",
            d.join("vol").display()
        );
        let k = d.join("kubectl");
        std::fs::write(&k, kubectl).unwrap();
        // A tar that writes part of its archive, says who it is, then hangs: a run caught mid-tar.
        let slow = "#!/bin/sh\ncase \" $* \" in *' --create '*) ;; *) exec tar \"$@\" ;; esac\n\
                    while [ $# -gt 0 ]; do [ \"$1\" = --file ] && f=$2; shift; done\n\
                    printf 'half an archive' >\"$f\"; echo $$ >\"$SLOW_TAR_PID\"; exec sleep 60\n";
        std::fs::write(d.join("bin/tar"), slow).unwrap();
        for f in [k, d.join("bin/tar")] {
            run(Command::new("chmod").arg("755").arg(f));
        }
        BackupBench { dir }
    }
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
    /// The script with the bench's settings; `slow`: with the hanging tar first in PATH.
    fn command(&self, slow: bool) -> Command {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/volume-backup.sh"))
            .env("VOLUME_BACKUP_DIR", self.path("out"))
            .env("VOLUME_BACKUP_PVCS", "apps/uploads")
            .env("VOLUME_BACKUP_NODE", "n1")
            .env("VOLUME_BACKUP_KUBECTL", self.path("kubectl"))
            .env("BACKUP_METRICS_DIR", self.path("prom"))
            .env("SLOW_TAR_PID", self.path("tar.pid"));
        if slow {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", self.path("bin").display()));
        }
        c
    }
    fn ls(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    fn metric(&self) -> String {
        std::fs::read_to_string(self.path("prom/labctl_volume_backup.prom"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("labctl_backup_last_run_ok{kind=\"volume-archive\"} "))
            .unwrap_or("none")
            .to_string()
    }
    fn spawn_slow(&self) -> std::process::Child {
        self.command(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
    /// Starts a run with the hanging tar; returns it once its partial archive is on disk, with
    /// the tar's PID.
    // clippy sees the spawn but not that the child is returned: the caller waits for it.
    #[allow(clippy::zombie_processes)]
    fn caught_mid_tar(&self) -> (std::process::Child, i32) {
        let _ = std::fs::remove_file(self.path("tar.pid"));
        let child = self.spawn_slow();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(p) = std::fs::read_to_string(self.path("tar.pid")) {
                if let Ok(pid) = p.trim().parse() {
                    return (child, pid);
                }
            }
            if Instant::now() >= until {
                let mut child = child;
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("the run never reached tar:\n{}", show(&o));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn partials(b: &BackupBench) -> Vec<String> {
    b.ls("out")
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect()
}

#[test]
fn a_stopped_volume_backup_leaves_no_partial_archive_and_fails() {
    if have("tar").is_none() || have("flock").is_none() {
        return;
    }
    let b = BackupBench::new();
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (child, tar) = b.caught_mid_tar();
        assert_eq!(partials(&b).len(), 1, "{:?}", b.ls("out"));
        // SAFETY: signalling the script this test started, by its PID.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", show(&o));
        assert_eq!(partials(&b), Vec::<String>::new(), "signal {sig}");
        assert_eq!(
            b.ls("out"),
            Vec::<String>::new(),
            "signal {sig}: its work folder stayed"
        );
        assert!(!alive(tar), "signal {sig}: its tar still runs");
        assert_eq!(b.metric(), "0", "a stopped run is a failed run");
    }
}

#[test]
fn a_killed_volume_backup_leaves_no_partial_archive_after_the_next_run() {
    if have("tar").is_none() || have("flock").is_none() {
        return;
    }
    let b = BackupBench::new();
    // One run at a time: a run started while another writes is refused, its archive untouched.
    let (busy, busy_tar) = b.caught_mid_tar();
    let o = b.command(false).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another run is writing"),
        "{}",
        show(&o)
    );
    assert_eq!(partials(&b).len(), 1, "{:?}", b.ls("out"));
    // SAFETY: the script this test started, by its PID.
    unsafe { libc::kill(busy.id() as i32, libc::SIGTERM) };
    busy.wait_with_output().unwrap();
    assert!(!alive(busy_tar));
    assert_eq!(b.ls("out"), Vec::<String>::new());

    // kill -9 (or a crash, a power cut): no trap runs, the partial archive and the work folder
    // stay.
    let (mut child, tar) = b.caught_mid_tar();
    // SAFETY: the script and its tar, which this test started, by PID.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
        libc::kill(tar, libc::SIGKILL);
    }
    child.wait().unwrap();
    let left = b.ls("out");
    assert!(
        left.len() == 2 && left[0].starts_with(".work.") && left[1].ends_with(".partial"),
        "{left:?}"
    );

    // The next run (a second later: a new stamp) removes what the killed one left.
    std::thread::sleep(Duration::from_millis(1100));
    let o = b.command(false).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for f in &left {
        assert!(
            out.contains(&format!("removed {}", b.path("out").join(f).display())),
            "{out}"
        );
    }
    let archives = b.ls("out");
    assert!(
        archives.len() == 1
            && archives[0].starts_with("apps_uploads-")
            && archives[0].ends_with(".tar.gz"),
        "{archives:?}"
    );
    assert_eq!(b.metric(), "1");
}

/// A restore (scripts/volume-restore.sh, into a plain folder from a local encrypted archive),
/// watched by a tar that, each time the script runs it, looks in $TMPDIR, /tmp's restore work
/// folders and the target's parent for an archive in clear (a gzip or tar file): there is none,
/// at any moment, and nothing is left after.
#[test]
fn a_volume_restore_never_writes_the_archive_in_clear() {
    for p in ["tar", "age", "age-keygen", "gzip"] {
        if have(p).is_none() {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["vol/sub", "src", "tmp", "parent", "bin"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("vol/sub/file"), "volume-canary-local\n").unwrap();
    let sh = |script: &str| {
        let o = run(Command::new("sh").arg("-ec").arg(script).current_dir(d));
        assert!(o.status.success(), "{script}:\n{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    sh("age-keygen -o key 2>/dev/null && tar -czf - -C vol . | age -r \"$(age-keygen -y key)\" -o src/apps_uploads-20260101T000000Z.tar.gz.age");
    let spy = "#!/bin/sh\nfor f in $(find \"$TMPDIR\" \"$SPY_PARENT\" /tmp/volume-restore.* -type f 2>/dev/null); do\n\
               m=$(head -c 2 \"$f\" | od -An -tx1 | tr -d ' \\n'); u=$(tail -c +258 \"$f\" | head -c 5)\n\
               if [ \"$m\" = 1f8b ] || [ \"$u\" = ustar ]; then echo \"$f\" >>\"$SPY_LOG\"; fi\ndone\n\
               echo tar >>\"$SPY_LOG.runs\"\nexec \"$REAL_TAR\" \"$@\"\n";
    std::fs::write(d.join("bin/tar"), spy).unwrap();
    sh("chmod 755 bin/tar");
    let path = std::env::var("PATH").unwrap_or_default();
    let o = run(Command::new("bash")
        .arg(root().join("scripts/volume-restore.sh"))
        .current_dir(d)
        .env("PATH", format!("{}:{path}", d.join("bin").display()))
        .env("REAL_TAR", have("tar").unwrap())
        .env("TMPDIR", d.join("tmp"))
        .env("SPY_PARENT", d.join("parent"))
        .env("SPY_LOG", d.join("spy.log"))
        .env("RESTORE_PVC", "apps/uploads")
        .env("RESTORE_DIR", d.join("parent/restored"))
        .env(
            "RESTORE_FILE",
            d.join("src/apps_uploads-20260101T000000Z.tar.gz.age"),
        )
        .env("AGE_IDENTITY", d.join("key")));
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("identical to the archive"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(d.join("parent/restored/sub/file")).unwrap(),
        "volume-canary-local\n"
    );
    // Checked, unpacked, compared: three reads, each of the archive decrypted on the fly.
    let runs = std::fs::read_to_string(d.join("spy.log.runs")).unwrap_or_default();
    assert!(runs.lines().count() >= 3, "tar ran {runs:?}");
    let seen = std::fs::read_to_string(d.join("spy.log")).unwrap_or_default();
    assert_eq!(seen, "", "archives in clear on disk during the restore");
    assert_eq!(sh("ls -A tmp parent"), "parent:\nrestored\n\ntmp:\n");
}
