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
//! replaced, both Nodes schedulable again; then a host whose sshd is masked (it reboots, but SSH
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
