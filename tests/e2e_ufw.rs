//! `ufw` on a real test host with the real ufw: labctl runs a resource's ufw commands in one
//! Python process (ufw's own parser and frontend) and enables a disabled firewall the way the
//! host boots (rules files, then ufw-init). Checked out of band: the result equals what the
//! same `ufw` commands leave when typed one by one (files and the live iptables ruleset); a
//! second run changes nothing; drift is fixed; `plan` changes nothing; a rule ufw refuses names
//! the resource, changes nothing, and stops the rest of its batch.

use crate::common::{e2e_enabled, labctl, show, skip, Testbed};

const ROLE: &str = r#"resources:
  - name: firewall
    ufw:
      default_incoming: deny
      default_outgoing: allow
      rules: {{ fw_rules }}
  - name: after
    file: {path: /etc/conv-after.conf, content: "after the firewall\n"}
"#;

const GOOD: &str = r#"[{port: "22", comment: ssh}, {port: 80}, {port: "8472", proto: udp, from: 10.0.0.0/24, comment: "vx lan"}, {from: 10.42.0.0/16}]"#;

/// The same commands, as a user would type them, for the reference state.
const BY_HAND: &str = "ufw allow proto tcp from any to any port 22 comment ssh && \
    ufw allow proto tcp from any to any port 80 && \
    ufw allow proto udp from 10.0.0.0/24 to any port 8472 comment 'vx lan' && \
    ufw allow from 10.42.0.0/16 to any && \
    ufw --force default deny incoming && ufw --force default allow outgoing && ufw --force enable";

/// What ufw itself reports, with rule numbers: must read the same after labctl as after the CLI.
const STATUS: &str = "ufw status verbose; ufw status numbered";

/// ufw's files and the live ruleset (both families), without counters.
const STATE: &str = "cat /etc/ufw/ufw.conf /etc/default/ufw /etc/ufw/user.rules /etc/ufw/user6.rules; \
    for t in iptables-save ip6tables-save; do $t | grep -v '^#' | sed 's/\\[[0-9]*:[0-9]*\\]//g'; done";

struct Fw {
    tb: Testbed,
    dir: tempfile::TempDir,
}

impl Fw {
    fn setup(rules: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("roles/fw")).unwrap();
        std::fs::write(
            d.path().join("site.yml"),
            "- name: fw\n  hosts: lab\n  roles: [fw]\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("roles/fw/role.yml"),
            ROLE.replace("{{ fw_rules }}", rules),
        )
        .unwrap();
        d
    }
    fn run(&self, cmd: &str) -> std::process::Output {
        self.run_in(self.dir.path(), cmd)
    }
    fn run_in(&self, dir: &std::path::Path, cmd: &str) -> std::process::Output {
        let site = dir.join("site.yml").display().to_string();
        let inv = self.tb.inventory.display().to_string();
        let key = self.tb.dir.join("age.key").display().to_string();
        let mut a = vec![cmd, &site, "-i", &inv, "--vault-key", &key];
        if cmd == "apply" {
            a.push("--yes");
        }
        labctl(&a)
    }
    fn state(&self) -> String {
        self.tb.sh_ok(&self.tb.hosts[0].name, STATE)
    }
    fn sh(&self, script: &str) -> String {
        self.tb.sh_ok(&self.tb.hosts[0].name, script)
    }
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn ufw_in_one_process_matches_the_cli_and_converges() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("conv-ufw", 1);
    let h = tb.hosts[0].name.clone();
    let install = tb.sh(
        &h,
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q ufw >/dev/null 2>&1 || \
         { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ufw >/dev/null; }",
    );
    if !install.status.success() {
        skip(&format!(
            "e2e_ufw: cannot install ufw on the test host: {}",
            show(&install)
        ));
        return;
    }
    let fw = Fw {
        tb,
        dir: Fw::setup(GOOD),
    };
    let fresh = fw.state();

    // A rule ufw itself refuses (ufw does not take `'` in a comment): the resource is named,
    // nothing of the firewall changes, and the change after it in the same batch never runs.
    let bad = Fw::setup(r#"[{port: "22"}, {port: 80}, {port: 443, comment: "it's"}]"#);
    let o = fw.run_in(bad.path(), "apply");
    let out = show(&o);
    assert!(
        !o.status.success(),
        "a refused rule must fail the run:\n{out}"
    );
    assert!(out.contains("fw/ufw:firewall"), "{out}");
    assert!(
        out.contains("comment \"it's\"") && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(fw.state(), fresh, "a refused rule changed the firewall");
    assert_eq!(
        fw.sh("test -e /etc/conv-after.conf && echo yes || echo no"),
        "no\n",
        "the change after the failed one ran"
    );

    // Check mode (plan) changes nothing.
    let o = fw.run("plan");
    assert!(show(&o).contains("ufw:firewall"), "{}", show(&o));
    assert_eq!(fw.state(), fresh, "plan changed the firewall");

    // Absent → created, in one process.
    let o = fw.run("apply");
    assert!(o.status.success(), "{}", show(&o));
    let applied = fw.state();
    let status = fw.sh(STATUS);
    assert!(status.contains("Status: active"), "{status}");
    let rules = fw.sh("cat /etc/ufw/user.rules; echo ==; cat /etc/ufw/user6.rules");
    // The same as typing the commands one by one: files (byte for byte), live ruleset, and what
    // `ufw status` says, numbers included.
    fw.sh("ufw --force reset >/dev/null && rm -f /etc/ufw/*.rules.2* /etc/ufw/*.conf.2* /etc/default/ufw.2*");
    fw.sh(BY_HAND);
    assert_eq!(
        fw.sh("cat /etc/ufw/user.rules; echo ==; cat /etc/ufw/user6.rules"),
        rules,
        "user.rules/user6.rules: labctl's differ from the CLI's one rule at a time"
    );
    assert_eq!(fw.state(), applied, "labctl's ufw differs from the CLI's");
    assert_eq!(fw.sh(STATUS), status, "`ufw status` differs from the CLI's");

    // Present → no change.
    let o = fw.run("apply");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !show(&o).contains("changed  fw/ufw:firewall"),
        "{}",
        show(&o)
    );

    // Drifted → fixed: a rule gone, an unmanaged one added, a policy flipped (live, enabled).
    fw.sh(
        "ufw --force delete allow proto tcp from any to any port 80 >/dev/null && \
           ufw allow 8080/tcp >/dev/null && ufw default allow incoming >/dev/null",
    );
    let o = fw.run("apply");
    assert!(o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("fw/ufw:firewall"), "{}", show(&o));
    // user.rules keep the order rules were added in: compare the ruleset as a set.
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(fw.state()),
        sorted(applied.clone()),
        "drift not fixed"
    );

    // Disabled with the chains gone → enabled again through the fast path, same ruleset.
    fw.sh("ufw --force disable >/dev/null");
    let o = fw.run("apply");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        sorted(fw.state()),
        sorted(applied.clone()),
        "re-enable differs"
    );

    // A human's `ufw` after labctl's one-process run works as on any host, and the next apply
    // takes the unmanaged rule back out.
    let added = fw.sh("ufw allow 9999/tcp && ufw status numbered");
    assert!(
        added.contains("Rule added") && added.contains("9999/tcp"),
        "{added}"
    );
    let o = fw.run("apply");
    assert!(o.status.success(), "{}", show(&o));
    assert!(!fw.sh("ufw status").contains("9999"), "unmanaged rule kept");
    assert_eq!(sorted(fw.state()), sorted(applied), "purge differs");
}
