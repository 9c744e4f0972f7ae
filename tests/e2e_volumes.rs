//! Volume backups, end to end on a real test host: the real control plane (the k3s stand-in in
//! kit mode: kube-apiserver, controller-manager, scheduler, kwok as the kubelet) with a lab PVC
//! (Redis's StatefulSet claim `cache/data-redis-0`, shaped as roles/redis makes it) and a
//! user-labelled PVC, bound to hostPath volumes by the local-path stand-in (pods.py). The
//! repo's site.yml applies the backups role (its host half); `labctl-volume-backup` (its unit)
//! archives the volumes' real files, `backup-offsite.sh` encrypts them with age and pushes them
//! with Debian's rclone to a real S3 server (moto), and `labctl-volume-restore` brings them back
//! onto a fresh PVC and, in place, onto the original with its workload scaled to 0; the files
//! are compared byte for byte (diff -r) and by mode, owner and link target. Failures checked:
//! listed PVCs that do not exist, a labelled PVC whose folder is missing, one that is not bound
//! (each: exit 1, metric 0, named), a restore onto a volume in use, a tampered archive. Left
//! behind: nothing by a run stopped mid-tar, nothing after the next run by one killed with
//! SIGKILL, no archive in clear during a restore (a tar on PATH looks at each of its reads);
//! `volume_backup: false` after true: timer inactive and disabled, no metric file.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster_kit::{k3s_cluster, serve, wait_until};
use crate::common::{e2e_enabled, labctl, show, Testbed};
use crate::controlplane::kit;
use crate::e2e_backups::{metric, moto_server, offsite_setup, rclone, s3_objects, text, Moto};

const TOKEN: &str = "vol-join-token-0123456789";
const S3_SECRET: &str = "canary-s3-vol-5c1e";
/// Written into the volumes: must never be in S3 in clear.
const CANARY: &str = "volume-canary-7f3a91";
const PROM: &str = "/var/lib/prometheus/node-exporter";
/// The restore scripts' environment on the server: the role's settings and the operator's key.
const RESTORE_ENV: &str =
    "set -a; . /etc/labctl-backup/offsite.env; . /etc/default/labctl-volume-backup; set +a; \
     export AGE_IDENTITY=/root/restore.key;";

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

struct Lab {
    tb: Testbed,
    host: String,
    vars: Vec<String>,
    rclone_conf: std::path::PathBuf,
    seen: std::cell::RefCell<String>,
}

impl Lab {
    fn labctl(&self, cmd: &str, extra_vars: &[&Path]) -> Output {
        let key = self.tb.dir.join("age.key").display().to_string();
        let inv = self.tb.inventory.display().to_string();
        let mut a: Vec<String> = vec![cmd.into()];
        if cmd == "apply" {
            a.push("--yes".into());
        }
        a.extend(
            [
                repo("site.yml"),
                "-i".into(),
                inv,
                "--vault-key".into(),
                key,
                "--tags".into(),
                "backups".into(),
                "--skip-tags".into(),
                "backups-k8s".into(),
            ]
            .into_iter()
            .chain(
                self.vars
                    .iter()
                    .flat_map(|v| ["-e".into(), format!("@{v}")]),
            )
            .chain(
                extra_vars
                    .iter()
                    .flat_map(|v| ["-e".into(), format!("@{}", v.display())]),
            ),
        );
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = labctl(&refs);
        self.seen.borrow_mut().push_str(&text(&o));
        o
    }
    fn sh(&self, script: &str) -> String {
        self.tb.sh_ok(&self.host, script)
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
    fn k(&self, args: &str) -> String {
        self.sh(&format!("k3s kubectl {args}")).trim().to_string()
    }
    fn apply(&self, manifest: &str) {
        self.sh(&format!(
            "k3s kubectl apply -f - <<'LABCTL_EOF'\n{manifest}\nLABCTL_EOF"
        ));
    }
    /// The hostPath folder of a PVC, once the local-path stand-in bound it.
    fn folder(&self, ns: &str, pvc: &str) -> String {
        wait_until(&format!("{ns}/{pvc} Bound"), 120, || {
            self.tb
                .sh(
                    &self.host,
                    &format!("k3s kubectl get pvc -n {ns} {pvc} -o jsonpath={{.status.phase}}"),
                )
                .stdout
                == b"Bound"
        });
        let pv = self.k(&format!(
            "get pvc -n {ns} {pvc} -o jsonpath={{.spec.volumeName}}"
        ));
        self.k(&format!("get pv {pv} -o jsonpath={{.spec.hostPath.path}}"))
    }
    /// One run of the volume backup unit: Ok(its log) or Err(its log).
    fn backup(&self) -> Result<String, String> {
        let o = self
            .tb
            .sh(&self.host, "systemctl start labctl-volume-backup.service");
        let j = self.sh(
            "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value labctl-volume-backup.service)",
        );
        // A new stamp for the next run.
        std::thread::sleep(Duration::from_millis(1100));
        if o.status.success() {
            Ok(j)
        } else {
            Err(j)
        }
    }
    fn volume_metric(&self) -> Option<String> {
        let prom = self.sh(&format!("cat {PROM}/labctl_volume_backup.prom"));
        metric(&prom, "labctl_backup_last_run_ok{kind=\"volume-archive\"}")
    }
    fn rclone(&self, args: &[&str]) -> Output {
        rclone(&self.rclone_conf, args)
    }
    fn objects(&self, dir: &str) -> Vec<String> {
        s3_objects(&self.rclone_conf, &self.host, dir)
    }
    fn s3(&self, verb: &str, a: &str, b: &str) {
        let o = self.rclone(&[verb, a, b]);
        assert!(o.status.success(), "{}", show(&o));
    }
    /// What a folder holds, to compare after a restore: each entry's path, type, mode, owner,
    /// size and link target (contents: diff -r against the pristine copy).
    fn manifest(&self, dir: &str) -> String {
        self.sh(&format!(
            "cd '{dir}' && find . -printf '%p %y %m %U:%G %s %l\\n' | grep -v '^\\. ' | sort"
        ))
    }
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn volumes_go_off_site_encrypted_and_come_back_onto_a_fresh_volume() {
    if !e2e_enabled() || !kit() {
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
    let tb = Testbed::up("vol", 1);
    let host = tb.hosts[0].name.clone();
    let addr = tb.hosts[0].address.clone();
    k3s_cluster(&tb, &host, &addr, &[], TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let _pods = serve(&tb, &host, tmp.path(), "etc/rancher/k3s/k3s.yaml", false);

    // A real S3 server on the testbed's gateway address (the machine's end of the host's veth).
    let gw = format!("{}.1", addr.rsplit_once('.').unwrap().0);
    let port = TcpListener::bind((gw.as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Moto(
        Command::new(&moto)
            .args(["-H", &gw, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server"),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect((gw.as_str(), port)).is_err() {
        assert!(Instant::now() < until, "moto_server did not listen");
        std::thread::sleep(Duration::from_millis(300));
    }
    let endpoint = format!("http://{gw}:{port}");
    let key = tb.dir.join("age.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let (rclone_conf, vars) = offsite_setup(&tb, tmp.path(), &endpoint, S3_SECRET, "");
    let lab = Lab {
        tb,
        host,
        vars: vec![vars.display().to_string()],
        rclone_conf,
        seen: Default::default(),
    };
    let o = lab.rclone(&["--s3-no-check-bucket=false", "mkdir", "s3:lab-backups"]);
    assert!(o.status.success(), "cannot create the bucket: {}", show(&o));

    // ---- the volumes: Redis's claim as roles/redis makes it, and a user's labelled PVC ----
    lab.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: cache}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: cache}
spec:
  serviceName: redis
  replicas: 1
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: redis, image: registry.k8s.io/pause:3.10, volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: uploads, namespace: apps, labels: {labctl.io/backup: \"true\"}}
spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: uploader, namespace: apps}
spec:
  containers: [{name: app, image: registry.k8s.io/pause:3.10, volumeMounts: [{name: d, mountPath: /d}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: uploads}}]",
    );
    let redis_dir = lab.folder("cache", "data-redis-0");
    let uploads_dir = lab.folder("apps", "uploads");
    assert!(
        redis_dir.starts_with("/var/lib/rancher/k3s/storage/pvc-")
            && redis_dir.ends_with("_cache_data-redis-0"),
        "{redis_dir}"
    );
    // Real files, as the pods would leave them (the kubelet would create the folder).
    for (dir, uid) in [(&redis_dir, 999), (&uploads_dir, 1000)] {
        lab.sh(&format!(
            "set -e; mkdir -p '{dir}' && cd '{dir}' && chmod 0770 . && \
             printf 'REDIS0011 {CANARY}\\n' > dump.rdb && mkdir -p appendonlydir 'sub dir/deep' && \
             head -c 3000000 /dev/urandom > appendonlydir/blob.aof && printf '' > empty && \
             printf 'x %s\\n' $(seq 1 2000) > 'sub dir/deep/list.txt' && ln -s dump.rdb latest && \
             chmod 0640 dump.rdb && chown -R {uid}:{uid} . && chown 0:0 empty && \
             truncate -s 50M sparse.img && printf 'end' >> sparse.img && \
             rm -rf '/root/pristine{uid}' && cp -a . '/root/pristine{uid}'"
        ));
    }

    // ---- the role, through labctl: the lab's list by default ----
    let o = lab.labctl("apply", &[]);
    assert!(o.status.success(), "apply:\n{}", show(&o));
    let o = lab.labctl("plan", &[]);
    assert_eq!(o.status.code(), Some(0), "a second plan:\n{}", show(&o));
    let env = lab.sh("cat /etc/default/labctl-volume-backup /etc/labctl-backup/offsite.env");
    assert!(
        env.contains(&format!("VOLUME_BACKUP_NODE={}\n", lab.host))
            && env.contains("cache/data-redis-0 monitoring/monitoring-grafana monitoring/prometheus-monitoring-kube-prometheus-prometheus-db-prometheus-monitoring-kube-prometheus-prometheus-0 monitoring/alertmanager-")
            && env.contains("BACKUP_KINDS=\"k3s-datastore postgres volumes\""),
        "{env}"
    );
    lab.sh("systemctl is-enabled labctl-volume-backup.timer && test -x /usr/local/sbin/labctl-volume-restore && stat -c %a /var/backups/volumes | grep -qx 700");

    // Failure: the monitoring role's PVCs are listed but this lab has none: loud, named, and
    // every volume that is there is archived all the same.
    let j = lab.backup().expect_err("listed PVCs are missing");
    assert!(
        j.contains("monitoring/monitoring-grafana: no such PVC")
            && j.contains("FAILED for: monitoring/")
            && j.contains("cache/data-redis-0 (pvc-")
            && j.contains("apps/uploads (pvc-"),
        "{j}"
    );
    assert_eq!(lab.volume_metric().as_deref(), Some("0"));
    // A lab without the monitoring role lists only its own.
    let only = tmp.path().join("only-redis.yml");
    std::fs::write(&only, "volume_backup_pvcs: [cache/data-redis-0]\n").unwrap();
    let o = lab.labctl("apply", &[&only]);
    assert!(o.status.success(), "{}", show(&o));
    lab.sh("rm -f /var/backups/volumes/*");
    let j = lab
        .backup()
        .unwrap_or_else(|j| panic!("backup failed:\n{j}"));
    assert!(j.contains("volume-backup: ok: 2 volumes"), "{j}");
    assert_eq!(lab.volume_metric().as_deref(), Some("1"));
    let local = lab.sh("cd /var/backups/volumes && ls; stat -c %a *.tar.gz | sort -u");
    assert!(
        local.contains("cache_data-redis-0-")
            && local.contains("apps_uploads-")
            && local.trim_end().ends_with("\n600"),
        "{local}"
    );
    // The archive keeps numeric owners, modes, the symlink and the hole.
    let listing =
        lab.sh("tar -tvzf /var/backups/volumes/cache_data-redis-0-*.tar.gz --numeric-owner");
    assert!(
        listing.contains("-rw-r----- 999/999") && listing.contains("latest -> dump.rdb"),
        "{listing}"
    );

    // ---- off-site: the unit's script and settings, for this kind (no dumps on this host) ----
    let out = lab.sh("set -a; . /etc/labctl-backup/offsite.env; set +a; BACKUP_KINDS=volumes /usr/local/sbin/backup-offsite.sh 2>&1");
    assert!(out.contains("backup-offsite: ok"), "{out}");
    let daily = lab.objects("volumes/daily");
    assert_eq!(daily.len(), 2, "{daily:?}");
    assert_eq!(
        lab.objects("volumes/weekly"),
        daily,
        "the week's first copies"
    );
    let prom = lab.sh(&format!("cat {PROM}/labctl_backup.prom"));
    assert_eq!(
        metric(&prom, "labctl_backup_last_run_ok{kind=\"volumes\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    // The two files declare the metric with the same help: node-exporter keeps both.
    let help = |f: &str| {
        lab.sh(&format!(
            "grep '^# HELP labctl_backup_last_run_ok' {PROM}/{f}"
        ))
    };
    assert_eq!(
        help("labctl_backup.prom"),
        help("labctl_volume_backup.prom")
    );
    lab.sh("ls /var/backups/volumes/*.tar.gz.offsite | wc -l | grep -qx 2");
    // Encrypted before it left: the age header, neither gzip nor the canary in clear; the
    // recipients' key opens it and it holds the files.
    let uploads_obj = daily
        .iter()
        .find(|n| n.starts_with("apps_uploads-"))
        .unwrap()
        .clone();
    let got = tmp.path().join("got.age");
    lab.s3(
        "copyto",
        &format!("s3:lab-backups/{}/volumes/daily/{uploads_obj}", lab.host),
        &got.display().to_string(),
    );
    let bytes = std::fs::read(&got).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | tar -tzf -",
            key.display(),
            got.display()
        ))
        .output()
        .unwrap();
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stdout).contains("./sub dir/deep/list.txt"),
        "{}",
        show(&o)
    );

    // ---- restore onto a fresh volume: a new PVC, bound by a pod that is then gone ----
    lab.sh(&format!(
        "umask 077; cat > /root/restore.key <<'LABCTL_EOF'\n{key_text}LABCTL_EOF"
    ));
    // The data is lost.
    lab.sh(&format!(
        "rm -rf '{uploads_dir}'/* && test -z \"$(ls -A '{uploads_dir}')\""
    ));
    lab.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: uploads-restored, namespace: apps}
spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: binder, namespace: apps}
spec:
  containers: [{name: b, image: registry.k8s.io/pause:3.10, volumeMounts: [{name: d, mountPath: /d}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: uploads-restored}}]",
    );
    let fresh_dir = lab.folder("apps", "uploads-restored");
    let e = lab.sh_fails(&format!(
        "{RESTORE_ENV} RESTORE_PVC=apps/uploads RESTORE_INTO=apps/uploads-restored labctl-volume-restore"
    ));
    assert!(e.contains("in use by pod(s) binder"), "{e}");
    lab.k("delete pod -n apps binder --grace-period=0 --force --wait=true");
    // Watched by a tar that, each time the script runs it, looks for an archive in clear (a
    // gzip or tar file) written since the restore began: in /tmp, and beside the target (the
    // storage folder, and any hidden folder there but the staging one, which holds the
    // volume's own files).
    lab.sh(&format!(
        "mkdir -p /root/spy && rm -f /root/spy/log /root/spy/runs && touch /root/spy/start && \
         cat > /root/spy/tar <<'LABCTL_EOF'\n#!/bin/sh\n\
         S=$(dirname '{fresh_dir}')\n\
         {{ find /tmp -type f -newer /root/spy/start; find \"$S\" -maxdepth 1 -type f -newer /root/spy/start; \
            find \"$S\" -mindepth 2 -maxdepth 2 -path \"$S/.*\" ! -path '*.restore-*' -type f -newer /root/spy/start; }} 2>/dev/null |\n\
         while IFS= read -r f; do\n\
           m=$(head -c 2 \"$f\" | od -An -tx1 | tr -d ' \\n'); u=$(tail -c +258 \"$f\" | head -c 5)\n\
           if [ \"$m\" = 1f8b ] || [ \"$u\" = ustar ]; then echo \"$f\" >> /root/spy/log; fi\n\
         done\n\
         echo tar >> /root/spy/runs\n\
         exec /usr/bin/tar \"$@\"\nLABCTL_EOF\n\
         chmod 755 /root/spy/tar"
    ));
    let out = lab.sh(&format!(
        "{RESTORE_ENV} RESTORE_PVC=apps/uploads RESTORE_INTO=apps/uploads-restored PATH=/root/spy:$PATH labctl-volume-restore"
    ));
    assert!(
        out.contains(&format!("using {uploads_obj}")) && out.contains("identical to the archive"),
        "{out}"
    );
    assert_eq!(
        lab.sh("cat /root/spy/log 2>/dev/null || true"),
        "",
        "an archive in clear on disk during the restore"
    );
    let runs = lab.sh("wc -l < /root/spy/runs");
    assert!(runs.trim().parse::<u32>().unwrap() >= 3, "tar ran {runs}");
    lab.sh(&format!(
        "diff -r --no-dereference /root/pristine1000 '{fresh_dir}'"
    ));
    assert_eq!(lab.manifest(&fresh_dir), lab.manifest("/root/pristine1000"));
    assert_eq!(
        lab.sh(&format!("stat -c '%a %u' '{fresh_dir}'")).trim(),
        "770 1000"
    );
    // The hole stayed a hole.
    let blocks: u64 = lab
        .sh(&format!("du -k '{fresh_dir}/sparse.img' | cut -f1"))
        .trim()
        .parse()
        .unwrap();
    assert!(blocks < 1024, "sparse.img takes {blocks} KiB");

    // ---- restore in place: Redis's own volume, its StatefulSet scaled to 0 ----
    lab.sh(&format!(
        "cd '{redis_dir}' && rm appendonlydir/blob.aof && echo garbage > dump.rdb"
    ));
    let e = lab.sh_fails(&format!(
        "{RESTORE_ENV} RESTORE_PVC=cache/data-redis-0 labctl-volume-restore"
    ));
    assert!(e.contains("in use by pod(s) redis-0"), "{e}");
    assert_eq!(
        lab.sh(&format!("cat '{redis_dir}/dump.rdb'")).trim(),
        "garbage"
    );
    lab.k("scale statefulset -n cache redis --replicas=0");
    wait_until("redis-0 gone", 120, || {
        lab.k("get pods -n cache -o name").is_empty()
    });
    let out = lab.sh(&format!(
        "{RESTORE_ENV} RESTORE_PVC=cache/data-redis-0 labctl-volume-restore"
    ));
    assert!(out.contains("what was there is in"), "{out}");
    lab.sh(&format!(
        "diff -r --no-dereference /root/pristine999 '{redis_dir}'"
    ));
    assert_eq!(lab.manifest(&redis_dir), lab.manifest("/root/pristine999"));
    let aside = lab.sh(&format!("ls -d '{redis_dir}'.before-restore-*"));
    assert_eq!(
        lab.sh(&format!("cat '{}/dump.rdb'", aside.trim())).trim(),
        "garbage"
    );
    lab.k("scale statefulset -n cache redis --replicas=1");

    // ---- a tampered archive: refused before the target exists ----
    let mut b = std::fs::read(&got).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    let bad = tmp.path().join("bad.age");
    std::fs::write(&bad, &b).unwrap();
    let bad_name = "apps_uploads-29990101T000000Z.tar.gz.age";
    lab.s3(
        "copyto",
        &bad.display().to_string(),
        &format!("s3:lab-backups/{}/volumes/daily/{bad_name}", lab.host),
    );
    let e = lab.sh_fails(&format!(
        "{RESTORE_ENV} RESTORE_PVC=apps/uploads RESTORE_DIR=/root/never labctl-volume-restore"
    ));
    assert!(e.contains("tampered, truncated"), "{e}");
    lab.sh("test ! -e /root/never");

    // ---- failure: labelled PVCs it cannot back up, one with no folder, one never bound ----
    lab.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: lost, namespace: apps, labels: {labctl.io/backup: \"true\"}}
spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: loser, namespace: apps}
spec:
  containers: [{name: b, image: registry.k8s.io/pause:3.10, volumeMounts: [{name: d, mountPath: /d}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: lost}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: waiting, namespace: apps, labels: {labctl.io/backup: \"true\"}}
spec: {accessModes: [ReadWriteOnce], storageClassName: local-path, resources: {requests: {storage: 1Gi}}}",
    );
    let lost_dir = lab.folder("apps", "lost");
    lab.sh(&format!("test ! -e '{lost_dir}'"));
    let j = lab.backup().expect_err("a labelled volume is missing");
    assert!(
        j.contains("apps/lost: volume pvc-")
            && j.contains(&format!("its folder {lost_dir} is missing"))
            && j.contains("apps/waiting: not bound to a volume (phase Pending)")
            && j.contains("FAILED for: apps/lost apps/waiting"),
        "{j}"
    );
    assert_eq!(lab.volume_metric().as_deref(), Some("0"));
    // labctl.io/backup=false takes them out: the run is whole again.
    lab.k("label pvc -n apps lost waiting labctl.io/backup=false --overwrite");
    let j = lab.backup().unwrap_or_else(|j| panic!("{j}"));
    assert!(j.contains("ok: 2 volumes"), "{j}");
    assert_eq!(lab.volume_metric().as_deref(), Some("1"));

    // A disk too full for the archives: each volume fails before tar writes a byte.
    let e = lab.sh_fails(
        "set -a; . /etc/default/labctl-volume-backup; set +a; \
         VOLUME_BACKUP_MIN_FREE_PERCENT=100 labctl-volume-backup",
    );
    assert!(
        e.contains("apps/uploads: not enough free space in /var/backups/volumes")
            && e.contains("FAILED for: apps/uploads cache/data-redis-0"),
        "{e}"
    );
    assert_eq!(lab.volume_metric().as_deref(), Some("0"));
    lab.sh("! ls /var/backups/volumes | grep -q partial");

    // A live volume: a file whose metadata changes all through its read is archived as read,
    // logged, and the run still succeeds (tar's exit 1 is no failure).
    lab.sh(&format!(
        "head -c 40000000 /dev/urandom > '{uploads_dir}/busy.bin'"
    ));
    let writer = lab.sh(&format!(
        "nohup sh -c 'while :; do touch \"{uploads_dir}/busy.bin\"; done' >/dev/null 2>&1 & echo $!"
    ));
    let j = lab.backup();
    lab.sh(&format!("kill {}", writer.trim()));
    let j = j.unwrap_or_else(|j| panic!("{j}"));
    assert!(
        j.contains("apps/uploads: files changed while read") && j.contains("ok: 2 volumes"),
        "{j}"
    );
    assert_eq!(lab.volume_metric().as_deref(), Some("1"));
    lab.sh("f=$(ls /var/backups/volumes/apps_uploads-*.tar.gz | tail -n 1) && tar -tzf $f | grep -qx ./busy.bin");

    // ---- a run stopped mid-tar (systemd's stop: SIGTERM), and one killed (kill -9) ----
    // A volume big enough for a tar that lasts.
    lab.sh(&format!(
        "rm -f '{uploads_dir}/busy.bin' && head -c 300000000 /dev/urandom > '{uploads_dir}/big.bin'"
    ));
    let mid_tar = || {
        lab.sh(
            "systemctl start --no-block labctl-volume-backup.service && \
             for i in $(seq 1200); do ls /var/backups/volumes/*.partial >/dev/null 2>&1 && exit 0; sleep 0.05; done; \
             echo 'no partial archive appeared' >&2; exit 1",
        );
    };
    mid_tar();
    lab.sh("systemctl stop labctl-volume-backup.service");
    lab.sh("! ls -A /var/backups/volumes | grep -e '\\.partial$' -e '^\\.work\\.'");
    assert_eq!(
        lab.volume_metric().as_deref(),
        Some("0"),
        "a stopped run failed"
    );
    std::thread::sleep(Duration::from_millis(1100));
    mid_tar();
    lab.sh("systemctl kill -s KILL labctl-volume-backup.service");
    wait_until("the killed run gone", 60, || {
        matches!(
            lab.sh("systemctl is-active labctl-volume-backup.service || true")
                .trim(),
            "failed" | "inactive"
        )
    });
    // No trap ran: the partial archive and the work folder stay, until the next run.
    let left = lab.sh("cd /var/backups/volumes && ls -d *.partial .work.*");
    assert_eq!(left.lines().count(), 2, "{left}");
    lab.sh(&format!("rm '{uploads_dir}/big.bin'"));
    let j = lab.backup().unwrap_or_else(|j| panic!("{j}"));
    for f in left.lines() {
        assert!(
            j.contains(&format!("removed /var/backups/volumes/{f}, left by a run")),
            "{j}"
        );
    }
    assert!(j.contains("ok: 2 volumes"), "{j}");
    lab.sh("! ls -A /var/backups/volumes | grep -e '\\.partial$' -e '^\\.work\\.'");
    assert_eq!(lab.volume_metric().as_deref(), Some("1"));

    // ---- volume_backup: false after true: off, not merely left as it was ----
    let off = tmp.path().join("off.yml");
    std::fs::write(&off, "volume_backup: false\n").unwrap();
    let o = lab.labctl("apply", &[&off]);
    assert!(o.status.success(), "{}", show(&o));
    let o = lab.labctl("plan", &[&off]);
    assert_eq!(o.status.code(), Some(0), "a second plan:\n{}", show(&o));
    assert_eq!(
        lab.sh("systemctl is-active labctl-volume-backup.timer; systemctl is-enabled labctl-volume-backup.timer; true")
            .trim(),
        "inactive\ndisabled"
    );
    lab.sh(&format!(
        "test ! -e {PROM}/labctl_volume_backup.prom && test -x /usr/local/sbin/labctl-volume-restore && \
         ! grep -q '^BACKUP_KINDS=.*volumes' /etc/labctl-backup/offsite.env"
    ));
    // And on again.
    let o = lab.labctl("apply", &[&only]);
    assert!(o.status.success(), "{}", show(&o));
    lab.sh("systemctl is-active labctl-volume-backup.timer && systemctl is-enabled labctl-volume-backup.timer");

    // Leftovers: no key, no decrypted archive or staging folder; no secret in labctl's output.
    lab.sh("rm /root/restore.key");
    assert_eq!(
        lab.sh("ls /tmp | grep -c -e volume -e offsite || true")
            .trim(),
        "0"
    );
    assert_eq!(
        lab.sh("ls -a /var/lib/rancher/k3s/storage | grep -c '\\.restore-' || true")
            .trim(),
        "0"
    );
    assert!(
        !lab.seen.borrow().contains(S3_SECRET),
        "labctl printed the S3 secret"
    );
}
