//! A k3s upgrade with a way back, end to end on two test hosts (a server and an agent): the k3s
//! plays of the repo's site.yml, the stand-in k3s through the air-gap path at V1, then V2.
//!
//! The upgrade backs up the old binary (and on the server the SQLite datastore and its token)
//! before the binary changes, the run log names the folder, and `labctl-k3s-rollback` (shipped by
//! the role) puts V1 and the datastore back; pinning V1 again then changes nothing. The file-based
//! stand-in keeps no datastore of its own, so the test writes one where k3s keeps it
//! (`server/db/state.db`, a kine-like table) with a marker row. Everything is checked out of
//! band (nsenter), never through labctl.

use std::path::Path;

use crate::common::{e2e_enabled, labctl, show, Testbed};
use crate::e2e_k3s::{airgap, project, V1, V2};

const DB: &str = "/var/lib/rancher/k3s/server/db/state.db";

struct Lab {
    tb: Testbed,
    dir: tempfile::TempDir,
    site: std::path::PathBuf,
}

impl Lab {
    fn run(&self, cmd: &str, overlays: &[&str], extra: &[&str]) -> std::process::Output {
        let mut a = self
            .tb
            .site_args(cmd, &self.site, self.dir.path(), overlays);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        labctl(&refs)
    }

    fn apply(&self, overlays: &[&str], extra: &[&str]) -> (i32, String) {
        let a: Vec<&str> = std::iter::once("--yes")
            .chain(extra.iter().copied())
            .collect();
        let o = self.run("apply", overlays, &a);
        (o.status.code().unwrap_or(-1), show(&o))
    }

    fn sh(&self, host: &str, script: &str) -> String {
        self.tb.sh_ok(host, script).trim().to_string()
    }

    fn version(&self, host: &str) -> String {
        self.sh(host, "/usr/local/bin/k3s --version | head -n 1")
    }

    fn rows(&self, host: &str, db: &str) -> String {
        self.sh(
            host,
            &format!("sqlite3 -cmd '.timeout 10000' {db} 'select name from kine order by id'"),
        )
    }

    /// The last line of the project's run log.
    fn last_run(&self) -> serde_json::Value {
        let log = self.site.parent().unwrap().join(".labctl/runs.jsonl");
        let text = std::fs::read_to_string(&log).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    }

    fn vars(&self, name: &str, yaml: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.yml")), yaml).unwrap();
    }
}

fn changed<'a>(run: &'a serde_json::Value, host: &str) -> Vec<&'a str> {
    run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .map(|h| {
            h["changed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn airgap_yaml(dir: &Path, version: &str, sha: &str) -> String {
    format!(
        "k3s_airgap_dir: {}\nk3s_version: \"{version}\"\nk3s_sha256: {sha}\n",
        dir.display()
    )
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn a_k3s_upgrade_is_backed_up_recorded_and_rolled_back() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("upg", 2);
    let dir = tempfile::tempdir().unwrap();
    let site = project(&dir.path().join("project"));
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let lab = Lab { tb, dir, site };
    let a1 = lab.dir.path().join("airgap1");
    let a2 = lab.dir.path().join("airgap2");
    let sha1 = airgap(&a1, V1);
    let sha2 = airgap(&a2, V2);
    lab.vars(
        "base",
        &format!(
            "{}k3s_with_base_hardening: false\nk3s_after: []\nk3s_ready_timeout: 30\n",
            airgap_yaml(&a1, V1, &sha1)
        ),
    );
    lab.vars("v2", &airgap_yaml(&a2, V2, &sha2));
    let backup = format!("/var/lib/labctl/k3s-upgrades/before-{V2}");
    let backup_id = format!("k3s/command:k3s upgrade backup into {backup}");

    // ---- V1, and a datastore with a marker row ----
    lab.sh(&server, "export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q sqlite3 >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q sqlite3 >/dev/null)");
    let (code, out) = lab.apply(&[], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("k3s upgrade backup"),
        "a first install backs nothing up:\n{out}"
    );
    for h in [&server, &agent] {
        assert_eq!(lab.version(h), format!("k3s version {V1} (a562d090)"));
        lab.sh(h, "test -x /usr/local/sbin/labctl-k3s-rollback");
    }
    lab.sh(
        &server,
        &format!(
            "mkdir -p $(dirname {DB}) && sqlite3 {DB} \"pragma journal_mode=wal; create table kine (id integer primary key, name text, value blob); \
             insert into kine (name, value) values ('/registry/marker/before-upgrade', randomblob(64));\""
        ),
    );
    let token = lab.sh(&server, "cat /var/lib/rancher/k3s/server/token");

    // ---- a failed backup stops the upgrade on that host: V1 keeps running ----
    lab.sh(
        &server,
        "mkdir -p /var/lib/labctl && rm -rf /var/lib/labctl/k3s-upgrades && : > /var/lib/labctl/k3s-upgrades",
    );
    let starts = lab.sh(&server, "wc -l < /var/lib/rancher/k3s/standin/starts");
    // --max-fail-percent 0: once the server failed, the agents' play does not start either.
    let (code, out) = lab.apply(&["v2"], &["--max-fail-percent", "0"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("labctl-k3s-upgrade-backup"), "{out}");
    assert_eq!(lab.version(&server), format!("k3s version {V1} (a562d090)"));
    assert_eq!(lab.sh(&server, "systemctl is-active k3s"), "active");
    assert_eq!(
        lab.sh(&server, "wc -l < /var/lib/rancher/k3s/standin/starts"),
        starts,
        "nothing restarted"
    );
    assert_eq!(lab.version(&agent), format!("k3s version {V1} (a562d090)"));
    let run = lab.last_run();
    assert_eq!(
        changed(&run, &server),
        Vec::<&str>::new(),
        "the failed backup is logged as failed, not changed"
    );
    let failed = &run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == server.as_str())
        .unwrap()["failed"];
    assert_eq!(failed, &serde_json::json!([backup_id]), "{run:#}");
    lab.sh(&server, "rm -f /var/lib/labctl/k3s-upgrades");

    // ---- V2: the plan names the backup, apply takes it before the binary changes ----
    let o = lab.run("plan", &["v2"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains(&backup), "{}", show(&o));
    let (code, out) = lab.apply(&["v2"], &[]);
    assert_eq!(code, 0, "{out}");
    let run = lab.last_run();
    for h in [&server, &agent] {
        let c = changed(&run, h);
        let b = c.iter().position(|i| *i == backup_id);
        let bin = c.iter().position(|i| *i == "k3s/file:k3s binary");
        assert!(
            matches!((b, bin), (Some(b), Some(bin)) if b < bin),
            "the run log names the backup, before the binary, on {h}: {c:?}"
        );
        assert_eq!(lab.version(h), format!("k3s version {V2} (a562d090)"));
        // Out of band: the old binary is in the folder the log names.
        assert_eq!(
            lab.sh(h, &format!("{backup}/k3s --version | head -n 1")),
            format!("k3s version {V1} (a562d090)")
        );
        assert_eq!(lab.sh(h, &format!("stat -c %a {backup}")), "700");
        assert!(lab
            .sh(h, &format!("cat {backup}/info"))
            .contains(&format!("to={V2}")));
    }
    assert_eq!(
        lab.rows(&server, &format!("{backup}/db/state.db")),
        "/registry/marker/before-upgrade"
    );
    assert_eq!(
        lab.sh(
            &server,
            &format!("sqlite3 {backup}/db/state.db 'pragma integrity_check'")
        ),
        "ok"
    );
    assert_eq!(lab.sh(&server, &format!("cat {backup}/token")), token);
    lab.sh(
        &agent,
        &format!("test ! -e {backup}/db && test ! -e {backup}/token"),
    );
    assert_eq!(
        lab.run("plan", &["v2"], &[]).status.code(),
        Some(0),
        "converged at V2"
    );

    // ---- V2 writes to the datastore; then the drill: agents first, then the server ----
    lab.sh(
        &server,
        &format!(
            "sqlite3 -cmd '.timeout 10000' {DB} \"delete from kine; insert into kine (name, value) values ('/registry/marker/after-upgrade', x'00');\""
        ),
    );
    assert_eq!(lab.rows(&server, DB), "/registry/marker/after-upgrade");
    for h in [&agent, &server] {
        let out = lab.sh(h, &format!("/usr/local/sbin/labctl-k3s-rollback {backup}"));
        assert!(out.contains("ok:"), "{out}");
    }
    for (h, unit) in [(&server, "k3s"), (&agent, "k3s-agent")] {
        assert_eq!(lab.version(h), format!("k3s version {V1} (a562d090)"));
        assert_eq!(lab.sh(h, &format!("systemctl is-active {unit}")), "active");
        assert_eq!(lab.sh(h, "stat -c '%a %U' /usr/local/bin/k3s"), "755 root");
        assert!(
            lab.sh(h, "tail -n 1 /var/lib/rancher/k3s/standin/starts")
                .ends_with(V1),
            "V1 is what runs on {h}"
        );
    }
    assert_eq!(lab.rows(&server, DB), "/registry/marker/before-upgrade");
    assert_eq!(
        lab.sh(&server, "cat /var/lib/rancher/k3s/server/token"),
        token
    );
    // What the rollback replaced stays beside it.
    assert_eq!(
        lab.rows(
            &server,
            "$(ls -d /var/lib/rancher/k3s/server/db.before-rollback-*)/state.db"
        ),
        "/registry/marker/after-upgrade"
    );

    // ---- pinned at V1 again: nothing to do ----
    let starts = (
        lab.sh(&server, "wc -l < /var/lib/rancher/k3s/standin/starts"),
        lab.sh(&agent, "wc -l < /var/lib/rancher/k3s/standin/starts"),
    );
    let o = lab.run("plan", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let (code, out) = lab.apply(&[], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("changed=0").count(), 2, "{out}");
    assert_eq!(
        (
            lab.sh(&server, "wc -l < /var/lib/rancher/k3s/standin/starts"),
            lab.sh(&agent, "wc -l < /var/lib/rancher/k3s/standin/starts"),
        ),
        starts,
        "nothing restarted"
    );
    assert_eq!(lab.rows(&server, DB), "/registry/marker/before-upgrade");
}
