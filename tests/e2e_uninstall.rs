//! `labctl uninstall-cluster` on two test hosts: base-hardening and wireguard applied from the
//! repo's site.yml (ufw with the cluster's rules), then k3s installed by the k3s role through
//! its air-gap path with the k3s stand-in (as tests/e2e_k3s.rs does): the first host the
//! server, the second an agent. What the stand-in does not make, a running cluster has: pod
//! mounts, a containerd shim with a child, cni0 with a pod's veth, flannel.1, KUBE-/CNI-/flannel
//! iptables chains; the test makes them out of band, with a foreign ufw rule, user files under
//! /var/lib and a datastore backup that must all survive.
//!
//! Then the cluster is uninstalled and checked out of band (nsenter, never through labctl):
//! units, binary and symlinks, data folders, mounts, processes, interfaces, iptables chains and
//! labctl's cluster rules are gone; the foreign rule, SSH, WireGuard, the user's files and the
//! backup are not; the output never shows the token; a second run has nothing to do; and `plan`
//! of the k3s role would install k3s again.

use std::path::PathBuf;

use crate::common::{e2e_enabled, json_data, labctl, show, Testbed};
use crate::e2e_k3s::{airgap, V1};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a running k3s node has and the stand-in does not make (as root, on the host).
const TRACES: &str = "set -e
mkdir -p /var/lib/kubelet/pods/p1/volumes/v /run/k3s/containerd/t1/rootfs
mount -t tmpfs tmpfs /var/lib/kubelet/pods/p1/volumes/v
mount -t tmpfs tmpfs /run/k3s/containerd/t1/rootfs
shim=/var/lib/rancher/k3s/data/0123abc/bin/containerd-shim-runc-v2
mkdir -p ${shim%/*}
cp /bin/sh $shim
systemd-run --quiet --unit labctl-fake-shim $shim -c 'sleep 3601; true'
ip link add cni0 type bridge
ip link add vethuni0 type veth peer name vethuni1
ip link set vethuni0 master cni0
ip link add flannel.1 type vxlan id 1 dstport 8472
iptables -N KUBE-SERVICES
iptables -I FORWARD -j KUBE-SERVICES
iptables -t nat -N CNI-HOSTPORT-DNAT
iptables -N FLANNEL-FWD
iptables -A FLANNEL-FWD -s 10.42.0.0/16 -j ACCEPT
ip6tables -N KUBE-FIREWALL
mkdir -p /var/lib/mydata
echo mine > /var/lib/mydata/important.txt
echo mine > /var/lib/rancher/keep-me.txt
ufw allow proto tcp from 192.0.2.7 to any port 5555 comment mine >/dev/null
";

/// Everything of the cluster the host still has, one line each (empty: all gone).
const LEFT: &str = "
for u in k3s k3s-agent; do
  if systemctl is-active --quiet $u || systemctl is-enabled --quiet $u 2>/dev/null; then echo unit $u; fi
done
for p in /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env \
  /etc/systemd/system/k3s-agent.service /etc/systemd/system/k3s-agent.service.env \
  /usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr \
  /etc/rancher/k3s /var/lib/rancher/k3s /var/lib/kubelet /run/k3s /run/flannel /root/.kube/config \
  /etc/modules-load.d/k3s.conf /etc/sysctl.d/61-k3s.conf /usr/local/sbin/labctl-k3s-rollback; do
  if [ -e $p ] || [ -L $p ]; then echo path $p; fi
done
grep -E ' (/run/k3s|/var/lib/kubelet)' /proc/self/mounts | sed 's/^/mount /' || true
pgrep -af 'containerd-shi[m]|sleep 360[1]' | sed 's/^/process /' || true
for i in cni0 vethuni0 vethuni1 flannel.1; do if ip link show $i >/dev/null 2>&1; then echo iface $i; fi; done
iptables-save | grep -E 'KUBE-|CNI-|FLANNEL' | sed 's/^/iptables /' || true
ip6tables-save | grep -E 'KUBE-' | sed 's/^/ip6tables /' || true
";

#[test]
#[ignore = "end-to-end on test hosts (root): scripts/test.sh runs it with --include-ignored"]
fn uninstall_cluster_removes_k3s_and_its_rules_keeps_the_rest_and_a_second_run_is_nothing() {
    if !e2e_enabled() {
        return;
    }
    let tb = Testbed::up("uni", 2);
    let (server, agent) = (tb.hosts[0].name.clone(), tb.hosts[1].name.clone());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let admin_pub = std::fs::read_to_string(tb.dir.join("id_ed25519.pub")).unwrap();
    let sha = airgap(&dir.join("airgap"), V1);
    let vars = dir.join("test-vars.yml");
    std::fs::write(
        &vars,
        format!(
            "admin_authorized_keys:\n  - \"{}\"\nk3s_airgap_dir: {}\nk3s_airgap_images: k3s-airgap-images-amd64.tar.zst\n\
             k3s_version: \"{V1}\"\nk3s_sha256: {sha}\nk3s_ready_timeout: 60\nk3s_kubeconfig_dest: {}\n",
            admin_pub.trim(),
            dir.join("airgap").display(),
            dir.join("kubeconfig/server.yaml").display(),
        ),
    )
    .unwrap();
    let inv = tb.inventory.display().to_string();
    let key = tb.dir.join("age.key").display().to_string();
    let site = repo().join("site.yml").display().to_string();
    let evars = format!("@{}", vars.display());
    let run = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd, &site, "-i", &inv, "--vault-key", &key, "-e", &evars];
        a.extend_from_slice(extra);
        labctl(&a)
    };
    let o = labctl(&[
        "vault",
        "get",
        &tb.dir
            .join("group_vars/all/vault.yml.age")
            .display()
            .to_string(),
        "vault_k3s_token",
        "--vault-key",
        &key,
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(token.len() >= 16);

    // ---- the lab: firewall and WireGuard, then k3s by its role ----
    let o = run("apply", &["--tags", "base-hardening,wireguard", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = run("apply", &["--tags", "k3s", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = run("plan", &["--tags", "k3s"]);
    assert_eq!(o.status.code(), Some(0), "k3s is converged: {}", show(&o));
    assert_eq!(
        tb.sh_ok(&server, "systemctl is-active k3s").trim(),
        "active"
    );
    assert_eq!(
        tb.sh_ok(&agent, "systemctl is-active k3s-agent").trim(),
        "active"
    );
    for h in [&server, &agent] {
        let ufw = tb.sh_ok(h, "ufw status");
        assert!(
            ufw.contains("10.42.0.0/16") && ufw.contains("6443"),
            "{h}: {ufw}"
        );
        tb.sh_ok(h, TRACES);
        assert!(
            tb.sh_ok(h, LEFT).contains("process "),
            "{h}: the fake shim runs"
        );
    }
    // The backups role's datastore backup: its folder, and its timer (which would fail every
    // night without a cluster).
    tb.sh_ok(
        &server,
        "mkdir -p /var/backups/k3s && echo backup > /var/backups/k3s/k3s-datastore-20261207.db
         printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' > /etc/systemd/system/k3s-datastore-backup.service
         printf '[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n' > /etc/systemd/system/k3s-datastore-backup.timer
         systemctl daemon-reload && systemctl enable --now k3s-datastore-backup.timer",
    );
    let wg_before = tb.sh_ok(&server, "wg show wg0 public-key");

    let un = |extra: &[&str]| run("uninstall-cluster", extra);

    // ---- --check and no terminal: nothing changes ----
    let o = un(&["--check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let plan = json_data(&o);
    let order: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(order, [agent.as_str(), server.as_str()], "{plan:#}");
    let o = un(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(
        tb.sh_ok(&server, "systemctl is-active k3s").trim(),
        "active"
    );
    assert!(tb.sh_ok(&agent, LEFT).contains("iface cni0"));

    // ---- the uninstall ----
    let o = un(&["--yes"]);
    let out = show(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        !out.contains(token.as_str()),
        "the output shows the token:\n{out}"
    );
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s}: {out}"));
    assert!(
        at(&format!("Uninstalling {agent}")) < at(&format!("Uninstalling {server}")),
        "agents first: {out}"
    );
    assert!(
        out.contains("/var/backups/k3s (1 entry, newest k3s-datastore-20261207.db)"),
        "{out}"
    );
    assert!(out.contains("delete ufw rules"), "{out}");

    for h in [&server, &agent] {
        assert_eq!(tb.sh_ok(h, LEFT), "", "{h}: left after the uninstall");
        let ufw = tb.sh_ok(h, "ufw status");
        for gone in [
            "10.42.0.0/16",
            "10.43.0.0/16",
            "on wg0",
            "6443",
            "30432",
            "30379",
        ] {
            assert!(!ufw.contains(gone), "{h}: {gone} is still allowed:\n{ufw}");
        }
        for kept in ["22/tcp", "51820/udp", "443/tcp", "5555/tcp"] {
            assert!(ufw.contains(kept), "{h}: {kept} is gone:\n{ufw}");
        }
        assert!(ufw.contains("192.0.2.7"), "{h}: {ufw}");
        assert_eq!(
            tb.sh_ok(
                h,
                "cat /var/lib/mydata/important.txt /var/lib/rancher/keep-me.txt"
            ),
            "mine\nmine\n"
        );
        assert!(
            tb.sh(h, "ip link show wg0").status.success(),
            "{h}: wg0 is gone"
        );
    }
    assert_eq!(tb.sh_ok(&server, "wg show wg0 public-key"), wg_before);
    assert_eq!(
        String::from_utf8_lossy(
            &tb.sh(&server, "systemctl is-enabled k3s-datastore-backup.timer; systemctl is-active k3s-datastore-backup.timer").stdout
        ),
        "disabled\ninactive\n"
    );
    tb.sh_ok(
        &server,
        "test -e /etc/systemd/system/k3s-datastore-backup.timer",
    );
    assert_eq!(
        tb.sh_ok(&server, "ls /var/backups/k3s"),
        "k3s-datastore-20261207.db\n"
    );
    // SSH still lets labctl in.
    let o = labctl(&["run", "all", "-i", &inv, "--vault-key", &key, "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // ---- a second run: nothing to do, nothing changed ----
    let o = un(&["--yes", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let again = json_data(&o);
    for h in again["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], "nothing_to_do", "{again:#}");
        assert_eq!(h["steps"], serde_json::json!([]), "{again:#}");
        if h["host"] == server.as_str() {
            assert_eq!(
                h["kept"],
                serde_json::json!([{"dir": "/var/backups/k3s", "entries": 1, "newest": "k3s-datastore-20261207.db"}]),
                "{again:#}"
            );
        }
    }
    assert!(!show(&o).contains(token.as_str()));
    assert!(tb.sh_ok(&server, "ufw status").contains("5555/tcp"));

    // ---- the k3s role would install k3s again ----
    let o = run("plan", &["--tags", "k3s", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let plan = json_data(&o);
    let ids = |host: &str| -> Vec<String> {
        plan["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| {
                h["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    for (h, unit) in [(&server, "k3s"), (&agent, "k3s-agent")] {
        let have = ids(h);
        for id in [
            "k3s/file:k3s binary".to_string(),
            "k3s/file:k3s unit".to_string(),
            format!("k3s/service:{unit}"),
        ] {
            assert!(have.contains(&id), "{h}: the plan lacks {id}: {have:?}");
        }
    }
}
