//! `labctl reboot` on two test hosts that really reboot: the guest's `systemctl reboot` ends its
//! systemd-nspawn with status 133 and the testbed's supervisor boots it again (a new init, a new
//! boot id). The hosts are a k3s cluster through the k3s stand-in in kit mode, installed here by
//! hand (not through the k3s role, which needs WireGuard and the air-gap upload first): on the
//! first host `k3s server` runs the real control plane (kube-apiserver, controller-manager,
//! scheduler, kine; scripts/controlplane.sh) as a systemd service that comes back after its
//! reboot, on the second `k3s agent` registers its Node with the join token. kwok plays both
//! kubelets, so a Node's Ready is kwok's, not a kubelet's on the rebooted host; drain (cordon and
//! evictions through the Eviction API), Ready and uncordon are real API calls by the real
//! kubectl (`k3s kubectl` on the server, as labctl runs it).
//!
//! Checked out of band (nsenter, the machine's /proc): each host's boot id changed, the second
//! host's new init started after the first host's, the pods that ran before were evicted and
//! replaced, both Nodes schedulable again; a drain blocked by a PodDisruptionBudget fails at
//! its timeout (exit 1, the host not rebooted, its Node left cordoned); then a host whose sshd is masked (it reboots, but SSH
//! never answers) stops the rollout with exit 1 naming it, and the host after it keeps its boot
//! id and stays schedulable.

use crate::cluster_kit::{k3s_cluster, wait_until};
use crate::common::{e2e_enabled, json_data, labctl, proc_start, show, Testbed};
use crate::controlplane::kit;

const TOKEN: &str = "rbt-join-token-0123456789";

fn boot_id(tb: &Testbed, host: &str) -> String {
    tb.sh_ok(host, "cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_string()
}

/// `k3s kubectl ARGS` on the server, out of band.
fn kubectl(tb: &Testbed, server: &str, args: &str) -> String {
    tb.sh_ok(server, &format!("k3s kubectl {args}"))
}

fn unschedulable(tb: &Testbed, server: &str, node: &str) -> bool {
    kubectl(
        tb,
        server,
        &format!("get node {node} -o jsonpath={{.spec.unschedulable}}"),
    )
    .trim()
        == "true"
}

/// The UIDs of the web pods, sorted.
fn pod_uids(tb: &Testbed, server: &str) -> Vec<String> {
    let mut v: Vec<String> = kubectl(
        tb,
        server,
        "get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.uid}{\"\\n\"}{end}'",
    )
    .lines()
    .map(str::to_string)
    .filter(|l| !l.is_empty())
    .collect();
    v.sort();
    v
}

fn reboot_cmd(tb: &Testbed, extra: &[&str]) -> std::process::Output {
    let inv = tb.inventory.display().to_string();
    let key = tb.dir.join("age.key").display().to_string();
    let mut args = vec!["reboot", "all", "-i", &inv, "--vault-key", &key, "--json"];
    args.extend_from_slice(extra);
    labctl(&args)
}

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn a_rolling_reboot_drains_reboots_and_uncordons_one_host_at_a_time() {
    if !e2e_enabled() || !kit() {
        return;
    }
    let tb = Testbed::up("rbt", 2);
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let server_addr = tb.hosts[0].address.clone();

    // ---- the cluster: the stand-in k3s in kit mode, as systemd services that survive reboots ----
    k3s_cluster(&tb, &server, &server_addr, &[agent.as_str()], TOKEN);
    // Pods for the drains to evict: kwok runs them on both Nodes.
    kubectl(
        &tb,
        &server,
        "create deployment web --image=registry.k8s.io/pause:3.10 --replicas=4",
    );
    wait_until("4 web pods Running", 120, || {
        kubectl(&tb, &server, "get pods -l app=web --no-headers")
            .lines()
            .filter(|l| l.contains("Running"))
            .count()
            == 4
    });
    let pods_before = pod_uids(&tb, &server);

    // ---- plan only: the steps, and nothing changes ----
    let ids = [boot_id(&tb, &server), boot_id(&tb, &agent)];
    let out = reboot_cmd(&tb, &["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan = json_data(&out);
    assert_eq!(plan["hosts"][0]["host"], server.as_str(), "{plan}");
    assert_eq!(plan["hosts"][0]["steps"][0]["step"], "drain", "{plan}");
    assert_eq!(plan["hosts"][1]["node"], agent.as_str(), "{plan}");
    assert_eq!([boot_id(&tb, &server), boot_id(&tb, &agent)], ids);
    // Without a terminal and without --yes: refused before anything is contacted.
    let out = reboot_cmd(&tb, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));

    // ---- the rollout: both hosts, one after the other ----
    let inits_before = [tb.init_pid_now(&server), tb.init_pid_now(&agent)];
    let out = reboot_cmd(&tb, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let recap = json_data(&out);
    let hosts = recap["hosts"].as_array().unwrap();
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["status"], "rebooted", "{recap}");
        assert_eq!(h["boot_id_before"], ids[i].as_str(), "{recap}");
    }
    // One after the other: the second started once the first was back, Ready and uncordoned.
    assert!(
        hosts[0]["finished"].as_f64().unwrap() <= hosts[1]["started"].as_f64().unwrap(),
        "{recap}"
    );
    // Out of band: new boots (new boot ids, new inits), the server's before the agent's.
    let after = [boot_id(&tb, &server), boot_id(&tb, &agent)];
    for i in 0..2 {
        assert_ne!(after[i], ids[i], "{} kept its boot id", tb.hosts[i].name);
        assert_eq!(hosts[i]["boot_id_after"], after[i].as_str(), "{recap}");
    }
    let inits_after = [tb.init_pid_now(&server), tb.init_pid_now(&agent)];
    assert!(inits_after[0] != inits_before[0] && inits_after[1] != inits_before[1]);
    let (s0, s1) = (
        proc_start(inits_after[0]).unwrap(),
        proc_start(inits_after[1]).unwrap(),
    );
    assert!(
        s0 < s1,
        "the agent's new boot ({s1}) started before the server's ({s0})"
    );
    // Every pod from before was evicted by a drain and replaced; both Nodes take pods again.
    let pods_after = pod_uids(&tb, &server);
    assert_eq!(pods_after.len(), 4, "{pods_after:?}");
    assert!(
        pods_before.iter().all(|p| !pods_after.contains(p)),
        "a pod survived both drains: before {pods_before:?}, after {pods_after:?}"
    );
    assert!(!unschedulable(&tb, &server, &server) && !unschedulable(&tb, &server, &agent));

    // ---- a drain a PodDisruptionBudget blocks: the API refuses every eviction (429), kubectl
    // gives up at --drain-timeout, and the host is not rebooted ----
    kubectl(
        &tb,
        &server,
        "create poddisruptionbudget web --selector=app=web --min-available=4",
    );
    wait_until("the budget allows no disruption", 60, || {
        kubectl(
            &tb,
            &server,
            "get pdb web -o jsonpath={.status.currentHealthy}",
        )
        .trim()
            == "4"
    });
    // The node the pods run on now (the last drain moved them all to the other one).
    let busy = kubectl(
        &tb,
        &server,
        "get pods -l app=web -o jsonpath={.items[0].spec.nodeName}",
    )
    .trim()
    .to_string();
    assert!(busy == server || busy == agent, "{busy}");
    let busy_id = boot_id(&tb, &busy);
    let inv = tb.inventory.display().to_string();
    let key = tb.dir.join("age.key").display().to_string();
    let out = labctl(&[
        "reboot",
        &busy,
        "-i",
        &inv,
        "--vault-key",
        &key,
        "--yes",
        "--drain-timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("drain of node {busy} failed"))
            && show(&out).contains("a PodDisruptionBudget that allows no disruption"),
        "{}",
        show(&out)
    );
    assert_eq!(
        boot_id(&tb, &busy),
        busy_id,
        "rebooted after a failed drain"
    );
    assert!(
        unschedulable(&tb, &server, &busy),
        "left cordoned for the operator"
    );
    assert_eq!(
        pod_uids(&tb, &server),
        pods_after,
        "a pod was evicted past its budget"
    );
    kubectl(&tb, &server, "delete pdb web");
    kubectl(&tb, &server, &format!("uncordon {busy}"));

    // ---- a host that does not come back: it reboots, but sshd is masked for its next boot ----
    let ids = [boot_id(&tb, &server), boot_id(&tb, &agent)];
    tb.sh_ok(&server, "systemctl mask ssh.service");
    let started = std::time::Instant::now();
    let out = reboot_cmd(&tb, &["--yes", "--timeout", "40"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{server} did not come back within 40s")),
        "{}",
        show(&out)
    );
    let recap = json_data(&out);
    assert_eq!(recap["hosts"][0]["status"], "failed", "{recap}");
    assert_eq!(recap["hosts"][1]["status"], "untouched", "{recap}");
    assert!(started.elapsed().as_secs() < 200, "{:?}", started.elapsed());
    // It did reboot (honestly not back: a new boot without sshd) and is left cordoned for the
    // operator; the agent was neither drained nor rebooted.
    assert_ne!(boot_id(&tb, &server), ids[0]);
    assert_eq!(
        boot_id(&tb, &agent),
        ids[1],
        "the host after the failed one was rebooted"
    );
    wait_until("the API server back on the server", 120, || {
        tb.sh(&server, "k3s kubectl get --raw /readyz")
            .status
            .success()
    });
    assert!(unschedulable(&tb, &server, &server));
    assert!(
        !unschedulable(&tb, &server, &agent),
        "the agent was drained"
    );

    // ---- `down` after reboots: the supervisors, the current nspawns and inits all stop ----
    let mut pids: Vec<u32> = Vec::new();
    for h in tb.status() {
        pids.push(h["nspawn_pid"].as_u64().unwrap() as u32);
        pids.push(h["init_pid"].as_u64().unwrap() as u32);
    }
    let nspawns = |pids: &mut Vec<u32>| {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("systemd-nspawn\0") && cmd.contains("--machine=rbt-") {
                pids.push(e.file_name().to_string_lossy().parse().unwrap());
            }
        }
    };
    nspawns(&mut pids);
    assert!(pids.len() >= 6, "supervisors, nspawns and inits: {pids:?}");
    let base = crate::common::testbeds_dir().display().to_string();
    let out = labctl(&["testbed", "down", "--name", &tb.name, "--dir", &base]);
    assert!(out.status.success(), "{}", show(&out));
    for p in pids {
        assert!(
            !crate::common::pid_alive(p),
            "PID {p} still runs after down"
        );
    }
    let mut left = Vec::new();
    nspawns(&mut left);
    assert!(left.is_empty(), "nspawn left after down: {left:?}");
}

/// A role's `reboot` resource and handler inside `apply`, on two plain hosts (no k3s; the drain
/// and Ready steps of a k3s node are the rollout above, which `apply` calls): the
/// reboots wait for the end of the run and go one host at a time; a host the run did not ask
/// for keeps its boot; a pending `/run/reboot-required` is drift that the next apply acts on;
/// a request left by a run that stopped first shows in `plan`; and `labctl reboot` refuses a
/// host whose run lock another run holds (exit 5), touching nothing.
#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn apply_reboots_what_its_roles_ask_for_at_the_end_one_host_at_a_time() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("rba", 2);
    let (a, b) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    crate::common::write(
        dir,
        "site.yml",
        "- name: boot\n  hosts: all\n  roles: [boot]\n",
    );
    crate::common::write(
        dir,
        "roles/boot/role.yml",
        "resources:\n\
         \x20 - name: a setting read at boot\n\
         \x20   file: {path: /etc/rba-setting.conf, content: \"{{ setting }}\\n\"}\n\
         \x20   notify: reboot for the setting\n\
         \x20 - name: reboot when the host waits for one\n\
         \x20   reboot: {reason: pending reboot}\n\
         handlers:\n\
         \x20 - name: reboot for the setting\n\
         \x20   reboot: {reason: new setting}\n",
    );
    let site = dir.join("site.yml").display().to_string();
    // Plain hosts: the testbed's inventory without its k3s groups (a k3s node would be
    // drained through a k3s server these hosts do not run).
    let plain = std::fs::read_to_string(&tb.inventory)
        .unwrap()
        .replace("k3s_server:", "web:")
        .replace("k3s_agents:", "db:");
    assert!(!plain.contains("k3s"), "{plain}");
    crate::common::write(dir, "hosts.yml", &plain);
    let inv = dir.join("hosts.yml").display().to_string();
    let key = tb.dir.join("age.key").display().to_string();
    let run = |cmd: &str, setting: &str| {
        let e = format!("setting={setting}");
        let mut args = vec![
            cmd,
            site.as_str(),
            "-i",
            &inv,
            "--vault-key",
            &key,
            "-e",
            &e,
            "--json",
        ];
        if cmd == "apply" {
            args.push("--yes");
        }
        labctl(&args)
    };

    // ---- the handler: both hosts' file changes, both ask; the reboots come after the run ----
    let before = (boot_id(&tb, &a), boot_id(&tb, &b));
    let o = run("apply", "one");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let data = json_data(&o);
    for h in data["hosts"].as_array().unwrap() {
        assert_eq!(h["reboot"], "handler boot/reboot for the setting", "{h}");
    }
    let reboots = data["reboots"].as_array().expect("the rollout's reports");
    assert_eq!(reboots.len(), 2, "{data}");
    assert_eq!(
        (reboots[0]["host"].as_str(), reboots[1]["host"].as_str()),
        (Some(a.as_str()), Some(b.as_str()))
    );
    for r in reboots {
        assert_eq!(r["status"], "rebooted", "{r}");
    }
    // One at a time: the second host's reboot started once the first was back.
    assert!(
        reboots[1]["started"].as_f64().unwrap() >= reboots[0]["finished"].as_f64().unwrap(),
        "{data}"
    );
    let after = (boot_id(&tb, &a), boot_id(&tb, &b));
    assert!(
        after.0 != before.0 && after.1 != before.1,
        "both rebooted: {before:?} {after:?}"
    );
    assert_eq!(reboots[0]["boot_id_after"].as_str(), Some(after.0.as_str()));
    tb.sh_ok(
        &a,
        "grep -qx one /etc/rba-setting.conf && test ! -e /run/labctl/reboot-requested",
    );

    // ---- nothing to do: no change, no reboot ----
    let o = run("apply", "one");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(json_data(&o).get("reboots").is_none(), "{}", show(&o));
    assert_eq!((boot_id(&tb, &a), boot_id(&tb, &b)), after);

    // ---- the resource: a package's marker on the first host only is drift, acted on ----
    tb.sh_ok(
        &a,
        "echo '*** System restart required ***' > /run/reboot-required && echo libc6 > /run/reboot-required.pkgs",
    );
    let o = run("plan", "one");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let plan = json_data(&o);
    let changes: Vec<String> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| {
            h["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| format!("{}:{}", h["host"], c["id"]))
        })
        .collect();
    assert_eq!(
        changes,
        [format!(
            "\"{a}\":\"boot/reboot:reboot when the host waits for one\""
        )],
        "{plan}"
    );
    let o = run("apply", "one");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let reboots = json_data(&o)["reboots"].clone();
    assert_eq!(reboots.as_array().map(Vec::len), Some(1), "{reboots}");
    assert_eq!(reboots[0]["host"], a.as_str());
    let again = (boot_id(&tb, &a), boot_id(&tb, &b));
    assert!(again.0 != after.0, "the first host rebooted");
    assert_eq!(again.1, after.1, "the second host was not asked to");
    tb.sh_ok(&a, "test ! -e /run/reboot-required");
    let o = run("plan", "one");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // ---- a request left by a run that stopped before its reboots: the plan says so ----
    tb.sh_ok(
        &b,
        "mkdir -p /run/labctl && echo 'new setting' > /run/labctl/reboot-requested",
    );
    let o = run("plan", "one");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let plan = json_data(&o);
    let hb = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == b.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        hb["reboot_required"]["requested"],
        serde_json::json!(["new setting"]),
        "{hb}"
    );
    assert_eq!(hb["reboot_required"]["required"], false, "{hb}");

    // ---- `labctl reboot` on a host another run holds: refused, nothing done ----
    tb.sh_ok(
        &b,
        "nohup flock /run/lock/labctl.lock sleep 15 >/dev/null 2>&1 & sleep 0.3",
    );
    let o = labctl(&[
        "reboot",
        &b,
        "-i",
        &inv,
        "--vault-key",
        &key,
        "--yes",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        show(&o).contains("another labctl run holds the host's lock"),
        "{}",
        show(&o)
    );
    assert_eq!(boot_id(&tb, &b), again.1, "a locked host is not rebooted");
    // Once the other run is gone, the request is carried out and the plan is clean.
    tb.sh_ok(&b, "flock /run/lock/labctl.lock true");
    let o = labctl(&["reboot", &b, "-i", &inv, "--vault-key", &key, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_ne!(boot_id(&tb, &b), again.1);
    let o = run("plan", "one");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
