//! Uninstalling the whole cluster (`labctl uninstall-cluster`), with the semantics of k3s's own
//! k3s-killall.sh and k3s(-agent)-uninstall.sh: units stopped and disabled, containerd shims
//! killed, pod mounts unmounted, the CNI interfaces and KUBE-/CNI-/flannel iptables rules
//! deleted, then the units, env files, binary (and its kubectl/crictl/ctr symlinks, when they
//! point at it) and data folders removed. Agents first, then servers, then the hosts that only
//! carry the cluster's firewall rules; on each, the ufw rules labctl's base-hardening role added
//! for the cluster (`firewall_cluster_rules`) are deleted, and nothing else of ufw.
//!
//! Kept, on purpose: WireGuard, users, SSH, ufw itself and every other rule, the backups (the
//! datastore's under `k3s_backup_dir`, PostgreSQL's under `pg_backup_dir`, the volumes' under
//! `volume_backup_dir`, the upgrades' under `k3s_upgrade_backup_dir`), and the controller's copy
//! of the kubeconfig.
//!
//! This file is the pure part: who goes in which order, what the probe found, the steps that
//! remove it and their scripts, tested without a host. `run` executes them over the transport:
//! one connection per host, the probe, the steps, and the probe again to prove nothing is left.

mod run;

use serde::Serialize;

pub use run::{uninstall, Opts};

/// What a host is to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Server,
    /// Runs no k3s, but carries the cluster's firewall rules.
    FirewallOnly,
}

/// One host to uninstall.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub conn: crate::inventory::Conn,
    pub role: Role,
    /// The cluster's ufw rules on this host, written as a `ufw` resource's `rules` (base-hardening's
    /// `firewall_cluster_rules`); `Null` when the host runs no firewall role.
    pub ufw_rules: serde_json::Value,
    /// Backup folders that are kept, to say where they are.
    pub kept: Vec<String>,
}

/// Agents first (they would otherwise keep trying to reach a server that is going away), then
/// servers, then the hosts that only carry firewall rules; the inventory's order within each.
pub fn order(mut targets: Vec<Target>) -> Vec<Target> {
    let rank = |r: Role| match r {
        Role::Agent => 0,
        Role::Server => 1,
        Role::FirewallOnly => 2,
    };
    targets.sort_by_key(|t| rank(t.role));
    targets
}

/// The files k3s and labctl's k3s role put on a node (removed when present).
pub const FILES: [&str; 12] = [
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/k3s-agent.service.env",
    "/usr/local/bin/k3s",
    "/usr/local/bin/k3s-killall.sh",
    "/usr/local/bin/k3s-uninstall.sh",
    "/usr/local/bin/k3s-agent-uninstall.sh",
    "/etc/modules-load.d/k3s.conf",
    "/etc/sysctl.d/61-k3s.conf",
    "/usr/local/sbin/labctl-k3s-upgrade-backup",
    "/usr/local/sbin/labctl-k3s-rollback",
];

/// Symlinks removed only when they point at what k3s installed (another kubectl stays): the
/// link, and its targets as a `case` pattern (labctl's role links absolutely, k3s's install
/// script relatively).
pub const LINKS: [(&str, &str); 4] = [
    ("/usr/local/bin/kubectl", "/usr/local/bin/k3s|k3s"),
    ("/usr/local/bin/crictl", "/usr/local/bin/k3s|k3s"),
    ("/usr/local/bin/ctr", "/usr/local/bin/k3s|k3s"),
    ("/root/.kube/config", "/etc/rancher/k3s/k3s.yaml"),
];

/// k3s's folders: configuration, the datastore and images (local-path volumes too, under
/// storage/), the kubelet's, and the runtime state.
pub const DIRS: [&str; 7] = [
    "/etc/rancher/k3s",
    "/etc/rancher/node",
    "/var/lib/rancher/k3s",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/k3s",
    "/run/flannel",
];

/// Parents `DIRS` leave behind, removed after them when they are empty (`rmdir`).
pub const EMPTY_PARENTS: [&str; 3] = ["/etc/rancher", "/var/lib/rancher", "/root/.kube"];

/// What the uninstall removes that would take the folder `dir` with it: a folder of `DIRS` that
/// is `dir` or holds it, or a path removed as itself (`EMPTY_PARENTS`, `FILES`, `LINKS`) that is
/// `dir`. None: `dir` survives the uninstall. Compared as written, with `.`, `..`, `//` and a
/// trailing `/` resolved: a symlink on the host is not seen (no host is asked).
pub fn removed_with(dir: &str) -> Option<&'static str> {
    let d = crate::fsutil::lexical(dir);
    let holds = |r: &str| d == r || d.strip_prefix(r).is_some_and(|t| t.starts_with('/'));
    DIRS.iter().copied().find(|r| holds(r)).or_else(|| {
        EMPTY_PARENTS
            .iter()
            .chain(FILES.iter())
            .chain(LINKS.iter().map(|(l, _)| l))
            .copied()
            .find(|r| d == *r)
    })
}

/// The units k3s runs as (their files are removed too).
pub const UNITS: [&str; 2] = ["k3s.service", "k3s-agent.service"];

/// Units of labctl's roles that only work with the cluster, stopped and disabled but kept on
/// disk (their role enables them again): the datastore and volume backups would fail every
/// night. The off-site push stays: it keeps uploading the kept archives.
pub const DISABLED: [&str; 2] = ["k3s-datastore-backup.timer", "labctl-volume-backup.timer"];

/// Mount points under these are unmounted (k3s-killall.sh's list).
pub const MOUNTS: [&str; 4] = [
    "/run/k3s",
    "/var/lib/kubelet/pods",
    "/var/lib/kubelet/plugins",
    "/run/netns/cni-",
];

/// The interfaces k3s's flannel and kube-proxy make (the pods' veths on cni0 go first).
pub const IFACES: [&str; 6] = [
    "cni0",
    "flannel.1",
    "flannel-v6.1",
    "kube-ipvs0",
    "flannel-wg",
    "flannel-wg-v6",
];

/// What the probe found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Found {
    pub units: Vec<String>,
    pub shims: usize,
    pub mounts: Vec<String>,
    pub netns: Vec<String>,
    pub ifaces: Vec<String>,
    /// iptables rules (lines of iptables-save, IPv4 then IPv6) k3s's filter would drop.
    pub iptables: usize,
    pub files: Vec<String>,
    /// Symlinks that point at what k3s installed.
    pub links: Vec<String>,
    pub dirs: Vec<String>,
    pub kept: Vec<Kept>,
}

/// A backup folder that stays, as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub dir: String,
    pub entries: usize,
    /// The newest entry's name (empty for an empty folder).
    pub newest: String,
}

/// Why the probe's answer could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unexpected probe line `{0}`")]
pub struct ProbeParseError(String);

impl Found {
    /// Everything that could be there: what `--check` lists, without asking the host.
    pub fn anything(role: Role) -> Found {
        if role == Role::FirewallOnly {
            return Found::default();
        }
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Found {
            units: UNITS
                .iter()
                .chain(&DISABLED)
                .map(|u| u.to_string())
                .collect(),
            shims: 0,
            mounts: s(&MOUNTS),
            netns: vec![],
            ifaces: s(&IFACES),
            iptables: 0,
            files: s(&FILES),
            links: LINKS.iter().map(|(l, _)| l.to_string()).collect(),
            dirs: s(&DIRS),
            kept: vec![],
        }
    }

    /// Reads the probe's lines (`script::probe`): tab-separated, a kind first.
    pub fn parse(out: &str) -> Result<Found, ProbeParseError> {
        let mut f = Found::default();
        let mut done = false;
        for line in out.lines().filter(|l| !l.is_empty()) {
            let w: Vec<&str> = line.split('\t').collect();
            let bad = || ProbeParseError(line.to_string());
            match w.as_slice() {
                ["unit", u] => f.units.push(u.to_string()),
                ["shim", _] => f.shims += 1,
                ["mount", m] => f.mounts.push(m.to_string()),
                ["netns", n] => f.netns.push(n.to_string()),
                ["iface", i] => f.ifaces.push(i.to_string()),
                ["iptables", _, n] => f.iptables += n.parse::<usize>().map_err(|_| bad())?,
                ["file", p] => f.files.push(p.to_string()),
                ["link", p] => f.links.push(p.to_string()),
                ["dir", p] => f.dirs.push(p.to_string()),
                ["kept", d, n, newest] => f.kept.push(Kept {
                    dir: d.to_string(),
                    entries: n.parse().map_err(|_| bad())?,
                    newest: newest.to_string(),
                }),
                ["done"] => done = true,
                _ => return Err(bad()),
            }
        }
        if !done {
            return Err(ProbeParseError("(answer cut short)".into()));
        }
        Ok(f)
    }
}

/// One step on one host, in the order `steps` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `systemctl stop` and `disable` (then reset-failed) each unit.
    StopUnits { units: Vec<String> },
    /// containerd-shim processes of k3s's own containerd, with their children (SIGKILL).
    KillShims { count: usize },
    /// Pod and k3s mounts, deepest first, and the CNI network namespaces.
    Unmount {
        mounts: Vec<String>,
        netns: Vec<String>,
    },
    /// The pods' veths on cni0, then cni0, flannel.1 and the like.
    DeleteInterfaces { interfaces: Vec<String> },
    /// The cluster's ufw rules (labctl's `firewall_cluster_rules`), with their IPv6 twins.
    DeleteUfwRules { rules: Vec<String> },
    /// `iptables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore`,
    /// and the same for ip6tables.
    FilterIptables { rules: usize },
    /// Unit files, env files, the binary, the k3s role's files, and the symlinks to k3s's
    /// binary and kubeconfig; then daemon-reload.
    RemoveFiles {
        paths: Vec<String>,
        links: Vec<String>,
    },
    /// The data and configuration folders (`rm -rf`).
    RemoveDirs { paths: Vec<String> },
}

impl Step {
    /// What the step does, in words (the plan, progress lines).
    pub fn describe(&self) -> String {
        match self {
            Step::StopUnits { units } => format!("stop and disable {}", units.join(", ")),
            Step::KillShims { count: 0 } => {
                "kill k3s's containerd-shim processes and their children".into()
            }
            Step::KillShims { count } => {
                format!("kill {count} containerd-shim process(es) of k3s and their children")
            }
            Step::Unmount { mounts, netns } => {
                let mut t = format!("unmount {}", list_or(mounts, "nothing"));
                if !netns.is_empty() {
                    t.push_str(&format!("; delete network namespaces {}", netns.join(", ")));
                }
                t
            }
            Step::DeleteInterfaces { interfaces } => {
                format!("delete interfaces {}", interfaces.join(", "))
            }
            Step::DeleteUfwRules { rules } => {
                format!("delete ufw rules: {}", rules.join("; "))
            }
            Step::FilterIptables { rules: 0 } => {
                "delete the KUBE-/CNI-/flannel iptables and ip6tables rules and chains".into()
            }
            Step::FilterIptables { rules } => format!(
                "delete {rules} KUBE-/CNI-/flannel iptables/ip6tables line(s) (iptables-save | grep -v | iptables-restore)"
            ),
            Step::RemoveFiles { paths, links } => {
                let mut t = format!("remove {}", list_or(paths, "no file"));
                if !links.is_empty() {
                    t.push_str(&format!("; the symlinks to k3s {}", links.join(", ")));
                }
                t
            }
            Step::RemoveDirs { paths } => format!("remove (rm -rf) {}", paths.join(", ")),
        }
    }

    /// The step's shell script, run as root. Each one derives what it removes again on the
    /// host (a shim may have exited since the probe) and tolerates what is already gone.
    pub fn script(&self) -> String {
        match self {
            Step::StopUnits { units } => script::stop(units),
            Step::KillShims { .. } => script::kill_shims(),
            Step::Unmount { .. } => script::unmount(),
            Step::DeleteInterfaces { .. } => script::ifaces(),
            // Run by the caller with the driver program on stdin.
            Step::DeleteUfwRules { .. } => crate::resources::ufw::RuleDeletion::SCRIPT.into(),
            Step::FilterIptables { .. } => script::IPTABLES.into(),
            Step::RemoveFiles { paths, links } => {
                script::remove_files(&[paths.as_slice(), links.as_slice()].concat())
            }
            Step::RemoveDirs { paths } => script::remove_dirs(paths),
        }
    }
}

fn list_or(v: &[String], none: &str) -> String {
    if v.is_empty() {
        none.into()
    } else {
        v.join(", ")
    }
}

/// The steps that remove what was found, in k3s's order: stop, kill, unmount, links, firewall,
/// files, folders. Nothing found: no step (a second run has nothing to do).
pub fn steps(f: &Found, ufw_rules: &[String]) -> Vec<Step> {
    let mut v = Vec::new();
    if !f.units.is_empty() {
        v.push(Step::StopUnits {
            units: f.units.clone(),
        });
    }
    if f.shims > 0 {
        v.push(Step::KillShims { count: f.shims });
    }
    if !f.mounts.is_empty() || !f.netns.is_empty() {
        v.push(Step::Unmount {
            mounts: f.mounts.clone(),
            netns: f.netns.clone(),
        });
    }
    if !f.ifaces.is_empty() {
        v.push(Step::DeleteInterfaces {
            interfaces: f.ifaces.clone(),
        });
    }
    // Before the iptables filter: ufw deletes its rules from its own chains by matching them.
    if !ufw_rules.is_empty() {
        v.push(Step::DeleteUfwRules {
            rules: ufw_rules.to_vec(),
        });
    }
    if f.iptables > 0 {
        v.push(Step::FilterIptables { rules: f.iptables });
    }
    if !f.files.is_empty() || !f.links.is_empty() {
        v.push(Step::RemoveFiles {
            paths: f.files.clone(),
            links: f.links.clone(),
        });
    }
    if !f.dirs.is_empty() {
        v.push(Step::RemoveDirs {
            paths: f.dirs.clone(),
        });
    }
    v
}

/// The steps `--check` and the question list for a host (no host is asked): everything that
/// may be there; `ufw_rules` are the rules as the site lists them.
pub fn planned(t: &Target, ufw_rules: &[String]) -> Vec<Step> {
    let mut v = steps(&Found::anything(t.role), ufw_rules);
    if t.role != Role::FirewallOnly {
        v.insert(1, Step::KillShims { count: 0 });
        let at = v
            .iter()
            .position(|s| matches!(s, Step::RemoveFiles { .. }))
            .unwrap_or(v.len());
        v.insert(at, Step::FilterIptables { rules: 0 });
    }
    v
}

/// Why a host's uninstall failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UninstallError {
    #[error("cannot reach {host}: {why}")]
    Unreachable { host: String, why: String },
    #[error("the probe of {host} failed: {why}")]
    Probe { host: String, why: String },
    #[error("the firewall rules of {host} cannot be read: {why}")]
    Rules { host: String, why: String },
    #[error("{step} failed on {host}: {why}")]
    Step {
        host: String,
        step: String,
        why: String,
    },
    #[error("{host}: {why}")]
    Locked { host: String, why: String },
    #[error("still on {host} after the uninstall: {left}")]
    Left { host: String, left: String },
}

impl UninstallError {
    /// Unreachable before anything was done is exit 6 and a host another run holds 5 (when
    /// that is every failure, see `exit_of`), the rest 1.
    pub fn exit(&self) -> crate::error::Exit {
        match self {
            UninstallError::Unreachable { .. } => crate::error::Exit::Unreachable,
            UninstallError::Locked { .. } => crate::error::Exit::Refused,
            _ => crate::error::Exit::Failed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Something was removed and nothing is left.
    Uninstalled,
    /// Nothing of the cluster was found.
    NothingToDo,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub role: Role,
    pub status: Status,
    pub steps: Vec<Step>,
    /// Backup folders kept on the host.
    pub kept: Vec<Kept>,
    pub error: Option<String>,
    #[serde(skip)]
    pub exit: Option<crate::error::Exit>,
}

/// 0 when every host is uninstalled (or had nothing), 6 when every failure was an unreachable
/// host, 5 when every failure was a host another run holds, else 1.
pub fn exit_of(reports: &[HostReport]) -> crate::error::Exit {
    use crate::error::Exit;
    let fails: Vec<Exit> = reports.iter().filter_map(|r| r.exit).collect();
    if fails.is_empty() {
        Exit::Ok
    } else if fails.iter().all(|e| *e == Exit::Unreachable) {
        Exit::Unreachable
    } else if fails.iter().all(|e| *e == Exit::Refused) {
        Exit::Refused
    } else {
        Exit::Failed
    }
}

/// What the verification probe still sees, in words (empty: all gone). Kept folders are no
/// leftover, and neither are shims (gone with their processes, seen again only if k3s runs).
pub fn leftovers(f: &Found, ufw_left: &[String]) -> String {
    let mut v: Vec<String> = Vec::new();
    v.extend(f.units.iter().map(|u| format!("unit {u}")));
    if f.shims > 0 {
        v.push(format!("{} containerd-shim process(es)", f.shims));
    }
    v.extend(f.mounts.iter().map(|m| format!("mount {m}")));
    v.extend(f.netns.iter().map(|n| format!("netns {n}")));
    v.extend(f.ifaces.iter().map(|i| format!("interface {i}")));
    if f.iptables > 0 {
        v.push(format!(
            "{} KUBE-/CNI-/flannel iptables line(s)",
            f.iptables
        ));
    }
    v.extend(ufw_left.iter().map(|r| format!("ufw rule {r}")));
    v.extend(f.files.iter().cloned());
    v.extend(f.links.iter().cloned());
    v.extend(f.dirs.iter().cloned());
    v.join(", ")
}

/// Progress, as it happens.
pub enum Event<'a> {
    Start {
        host: &'a str,
        role: Role,
        index: usize,
        of: usize,
    },
    Step {
        host: &'a str,
        step: &'a Step,
    },
    Nothing {
        host: &'a str,
    },
    Done {
        host: &'a str,
    },
    Failed {
        host: &'a str,
        error: &'a UninstallError,
    },
}

/// The scripts, run as root. None reads a token or prints a file's content.
pub mod script {
    use crate::sh::q;

    use super::{DIRS, DISABLED, EMPTY_PARENTS, FILES, IFACES, LINKS, MOUNTS, UNITS};

    /// The awk test for a mount point under one of `MOUNTS`.
    fn mount_test() -> String {
        format!("$2 ~ \"^({})\"", MOUNTS.join("|"))
    }

    /// Lists what is there, one tab-separated line each, then `done`. `kept` are backup
    /// folders to report (their entry count and newest name only).
    pub fn probe(kept: &[String]) -> String {
        let mut s = String::from(
            "set -u\nT=$(printf '\\t')\nhave() { printf '%s\\t%s\\n' \"$1\" \"$2\"; }\n",
        );
        s.push_str(&format!(
            "for u in {}; do\n  if [ -e \"/etc/systemd/system/$u\" ] || systemctl is-active --quiet \"$u\" 2>/dev/null || systemctl is-enabled --quiet \"$u\" 2>/dev/null; then have unit \"$u\"; fi\ndone\n",
            UNITS.join(" ")
        ));
        s.push_str(&format!(
            "for u in {}; do\n  if systemctl is-active --quiet \"$u\" 2>/dev/null || systemctl is-enabled --quiet \"$u\" 2>/dev/null; then have unit \"$u\"; fi\ndone\n",
            DISABLED.join(" ")
        ));
        s.push_str(SHIMS);
        s.push_str(" | while read -r p; do have shim \"$p\"; done\n");
        s.push_str(&format!(
            "awk '{} {{print $2}}' /proc/self/mounts | sort -r | while IFS= read -r m; do have mount \"$m\"; done\n",
            mount_test()
        ));
        s.push_str("ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}' | while read -r n; do have netns \"$n\"; done\n");
        s.push_str(VETHS);
        s.push_str(" | while read -r i; do have iface \"$i\"; done\n");
        s.push_str(&format!(
            "for i in {}; do if ip link show \"$i\" >/dev/null 2>&1; then have iface \"$i\"; fi; done\n",
            IFACES.join(" ")
        ));
        s.push_str(
            "for f in iptables ip6tables; do\n  command -v \"$f-save\" >/dev/null 2>&1 || continue\n  all=$(\"$f-save\" 2>/dev/null) || continue\n  n=$(( $(printf '%s\\n' \"$all\" | wc -l) - $(printf '%s\\n' \"$all\" | grep -v KUBE- | grep -v CNI- | grep -iv flannel | wc -l) ))\n  [ \"$n\" = 0 ] || printf 'iptables\\t%s\\t%s\\n' \"$f\" \"$n\"\ndone\n",
        );
        s.push_str(&format!(
            "for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then have file \"$p\"; fi; done\n",
            FILES.iter().map(|f| q(f)).collect::<Vec<_>>().join(" ")
        ));
        for (link, targets) in LINKS {
            s.push_str(&format!(
                "if [ -L {l} ]; then case \"$(readlink {l})\" in {targets}) have link {l};; esac; fi\n",
                l = q(link),
            ));
        }
        s.push_str(&format!(
            "for p in {}; do if [ -e \"$p\" ]; then have dir \"$p\"; fi; done\n",
            DIRS.join(" ")
        ));
        for d in kept {
            s.push_str(&format!(
                "if [ -d {d} ]; then printf 'kept\\t%s\\t%s\\t%s\\n' {d} \"$(ls -A {d} | wc -l)\" \"$(ls -At {d} | head -n 1 | tr -d \"$T\")\"; fi\n",
                d = q(d)
            ));
        }
        s.push_str("echo done\n");
        s
    }

    /// The PIDs of k3s's containerd shims (the executable under k3s's data dir).
    const SHIMS: &str = "ps -e -o pid= -o args= | awk '$2 ~ /\\/k3s\\/data\\/[^\\/]*\\/bin\\/containerd-shim/ {print $1}'";
    /// The interfaces enslaved to cni0 (the pods' veths).
    const VETHS: &str = "ip -o link show 2>/dev/null | awk '/ master cni0 / {sub(/:$/, \"\", $2); sub(/@.*/, \"\", $2); print $2}'";

    pub fn stop(units: &[String]) -> String {
        let us: Vec<String> = units.iter().map(|u| q(u)).collect();
        format!(
            "for u in {}; do\n  systemctl stop \"$u\" 2>/dev/null || true\n  systemctl disable \"$u\" 2>/dev/null || true\n  systemctl reset-failed \"$u\" 2>/dev/null || true\ndone\n! systemctl is-active --quiet {}",
            us.join(" "),
            us.join(" ")
        )
    }

    /// k3s-killall.sh's killtree: a shim's children first, then the shim.
    pub fn kill_shims() -> String {
        format!(
            "killtree() {{\n  for p in \"$@\"; do\n    kids=$(ps -o pid= --ppid \"$p\" 2>/dev/null)\n    [ -z \"$kids\" ] || killtree $kids\n    kill -9 \"$p\" 2>/dev/null || true\n  done\n}}\npids=$({SHIMS})\n[ -z \"$pids\" ] || killtree $pids"
        )
    }

    pub fn unmount() -> String {
        format!(
            "set -e\nawk '{} {{print $2}}' /proc/self/mounts | sort -r | while IFS= read -r m; do umount -f \"$m\" 2>/dev/null || umount -l \"$m\"; done\nip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {{print $1}}' | while read -r n; do ip netns delete \"$n\"; done",
            mount_test()
        )
    }

    pub fn ifaces() -> String {
        format!(
            "set -e\n{VETHS} | while read -r i; do ip link delete \"$i\"; done\nfor i in {}; do if ip link show \"$i\" >/dev/null 2>&1; then ip link delete \"$i\"; fi; done",
            IFACES.join(" ")
        )
    }

    /// k3s-killall.sh's filter, each family saved once and restored only when it has lines to
    /// drop (a failed save never restores an empty ruleset).
    pub const IPTABLES: &str = "set -e\nfor f in iptables ip6tables; do\n  command -v \"$f-save\" >/dev/null 2>&1 || continue\n  all=$(\"$f-save\")\n  kept=$(printf '%s\\n' \"$all\" | grep -v KUBE- | grep -v CNI- | grep -iv flannel)\n  [ \"$kept\" != \"$all\" ] || continue\n  printf '%s\\n' \"$kept\" | \"$f-restore\"\ndone";

    /// Removes the files, then has systemd forget the removed units.
    pub fn remove_files(paths: &[String]) -> String {
        let ps: Vec<String> = paths.iter().map(|p| q(p)).collect();
        format!("set -e\nrm -f -- {}\nsystemctl daemon-reload", ps.join(" "))
    }

    /// Removes the folders; their empty parents go too (`EMPTY_PARENTS`), anything else in
    /// them stays.
    pub fn remove_dirs(paths: &[String]) -> String {
        let ps: Vec<String> = paths.iter().map(|p| q(p)).collect();
        format!(
            "set -e\nrm -rf -- {}\nrmdir {} 2>/dev/null || true",
            ps.join(" "),
            EMPTY_PARENTS.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, role: Role) -> Target {
        Target {
            host: host.into(),
            conn: crate::inventory::Conn::default(),
            role,
            ufw_rules: serde_json::Value::Null,
            kept: vec![],
        }
    }

    /// The steps' kinds, as --json names them.
    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| {
                serde_json::to_value(s).unwrap()["step"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn agents_go_first_then_servers_then_firewall_only_hosts() {
        let t = order(vec![
            target("s1", Role::Server),
            target("fw", Role::FirewallOnly),
            target("a1", Role::Agent),
            target("s2", Role::Server),
            target("a2", Role::Agent),
        ]);
        let names: Vec<&str> = t.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(names, ["a1", "a2", "s1", "s2", "fw"]);
    }

    #[test]
    fn the_probe_answer_is_read_and_becomes_steps_in_k3s_order() {
        let out = "unit\tk3s.service\nshim\t123\nshim\t456\nmount\t/var/lib/kubelet/pods/x/volumes\nmount\t/run/k3s/containerd/y\nnetns\tcni-1\niface\tveth1\niface\tcni0\niface\tflannel.1\n\
                   iptables\tiptables\t12\niptables\tip6tables\t3\nfile\t/usr/local/bin/k3s\nlink\t/usr/local/bin/kubectl\ndir\t/var/lib/rancher/k3s\n\
                   kept\t/var/backups/k3s\t3\tk3s-datastore-20261207.tar.zst\ndone\n";
        let f = Found::parse(out).unwrap();
        assert_eq!(f.shims, 2);
        assert_eq!(f.iptables, 15);
        assert_eq!(
            f.kept,
            [Kept {
                dir: "/var/backups/k3s".into(),
                entries: 3,
                newest: "k3s-datastore-20261207.tar.zst".into()
            }]
        );
        let s = steps(&f, &["allow any/any from 10.42.0.0/16".into()]);
        assert_eq!(
            kinds(&s),
            [
                "stop_units",
                "kill_shims",
                "unmount",
                "delete_interfaces",
                "delete_ufw_rules",
                "filter_iptables",
                "remove_files",
                "remove_dirs"
            ]
        );
        assert_eq!(s[3].describe(), "delete interfaces veth1, cni0, flannel.1");
    }

    #[test]
    fn nothing_found_is_no_step_and_nothing_left() {
        let f = Found::parse("kept\t/var/backups/k3s\t0\t\ndone\n").unwrap();
        assert!(steps(&f, &[]).is_empty());
        assert_eq!(leftovers(&f, &[]), "");
        let left = Found {
            units: vec!["k3s.service".into()],
            dirs: vec!["/var/lib/kubelet".into()],
            ..Found::default()
        };
        assert_eq!(
            leftovers(&left, &["allow 6443/tcp".into()]),
            "unit k3s.service, ufw rule allow 6443/tcp, /var/lib/kubelet"
        );
    }

    #[test]
    fn a_cut_or_strange_probe_answer_is_an_error() {
        assert!(Found::parse("unit\tk3s.service\n").is_err());
        assert!(Found::parse("bogus\tx\ndone\n").is_err());
        assert!(Found::parse("iptables\tiptables\tmany\ndone\n").is_err());
    }

    #[test]
    fn the_plan_lists_everything_that_may_be_there() {
        let s = planned(&target("a1", Role::Agent), &[]);
        assert_eq!(
            kinds(&s),
            [
                "stop_units",
                "kill_shims",
                "unmount",
                "delete_interfaces",
                "filter_iptables",
                "remove_files",
                "remove_dirs"
            ]
        );
        let text: String = s.iter().map(|s| s.describe() + "\n").collect();
        for p in [
            "/usr/local/bin/k3s,",
            "/etc/rancher/k3s",
            "/var/lib/rancher/k3s",
            "/var/lib/kubelet",
            "/run/flannel",
            "k3s-agent.service",
        ] {
            assert!(text.contains(p), "{p}: {text}");
        }
        // Only k3s's own folders: never /var/lib/rancher or /var/lib as a whole.
        assert!(!DIRS.contains(&"/var/lib/rancher") && !DIRS.contains(&"/var/lib"));
        let fw = planned(
            &target("fw", Role::FirewallOnly),
            &["allow 6443/tcp from 10.200.0.0/24".into()],
        );
        assert_eq!(
            fw,
            [Step::DeleteUfwRules {
                rules: vec!["allow 6443/tcp from 10.200.0.0/24".into()]
            }]
        );
    }

    #[test]
    fn scripts_never_read_a_token_and_links_go_only_when_they_point_at_k3s() {
        let p = script::probe(&["/var/backups/k3s".into()]);
        assert!(!p.contains("cat "), "{p}");
        assert!(p.contains(
            "if [ -L /usr/local/bin/kubectl ]; then case \"$(readlink /usr/local/bin/kubectl)\" in /usr/local/bin/k3s|k3s) have link"
        ));
        assert!(!FILES.contains(&"/usr/local/bin/kubectl"));
        for s in Found::anything(Role::Server)
            .files
            .iter()
            .chain(&Found::anything(Role::Server).dirs)
        {
            assert!(
                !s.contains("backups") && !s.contains("/var/lib/labctl"),
                "{s}"
            );
        }
        assert!(script::IPTABLES.contains("grep -v KUBE- | grep -v CNI- | grep -iv flannel"));
        assert_eq!(
            script::stop(&["k3s.service".into()]),
            "for u in k3s.service; do\n  systemctl stop \"$u\" 2>/dev/null || true\n  systemctl disable \"$u\" 2>/dev/null || true\n  systemctl reset-failed \"$u\" 2>/dev/null || true\ndone\n! systemctl is-active --quiet k3s.service"
        );
    }

    #[test]
    fn a_folder_inside_what_is_removed_is_removed_with_it() {
        // Inside k3s's data folder, or one of its folders itself, however written.
        assert_eq!(
            removed_with("/var/lib/rancher/k3s/backups"),
            Some("/var/lib/rancher/k3s")
        );
        assert_eq!(removed_with("/var/lib/kubelet"), Some("/var/lib/kubelet"));
        assert_eq!(
            removed_with("//var/lib/./rancher/x/../k3s/server/db/snapshots/"),
            Some("/var/lib/rancher/k3s")
        );
        assert_eq!(removed_with("/etc/rancher/k3s/"), Some("/etc/rancher/k3s"));
        // Removed as themselves: the parents rmdir takes when empty, the files.
        assert_eq!(removed_with("/var/lib/rancher"), Some("/var/lib/rancher"));
        assert_eq!(
            removed_with("/usr/local/bin/k3s"),
            Some("/usr/local/bin/k3s")
        );
        assert_eq!(
            removed_with("/root/.kube/config"),
            Some("/root/.kube/config")
        );
        // Beside them, above them, or only sharing a prefix of the name: kept.
        for kept in [
            "/var/lib/rancher/k3s-backups",
            "/var/lib/rancher/backups",
            "/var/lib/kubelet-backups",
            "/var/lib",
            "/",
            "/var/lib/rancher/k3s/../backups",
        ] {
            assert_eq!(removed_with(kept), None, "{kept}");
        }
        // The roles' defaults stay.
        for d in [
            "/var/backups/postgres",
            "/var/backups/volumes",
            "/var/backups/k3s",
            "/var/lib/labctl/k3s-upgrades",
        ] {
            assert_eq!(removed_with(d), None, "{d}");
        }
    }

    #[test]
    fn unreachable_alone_is_exit_6_locked_alone_5() {
        use crate::error::Exit;
        let r = |exit| HostReport {
            host: "h".into(),
            role: Role::Agent,
            status: Status::Failed,
            steps: vec![],
            kept: vec![],
            error: None,
            exit,
        };
        assert_eq!(exit_of(&[r(None)]), Exit::Ok);
        assert_eq!(exit_of(&[r(Some(Exit::Unreachable))]), Exit::Unreachable);
        assert_eq!(
            exit_of(&[r(Some(Exit::Unreachable)), r(Some(Exit::Failed))]),
            Exit::Failed
        );
        // A host another run holds: refused, as apply refuses it.
        assert_eq!(
            UninstallError::Locked {
                host: "h".into(),
                why: "busy".into()
            }
            .exit(),
            Exit::Refused
        );
        assert_eq!(exit_of(&[r(Some(Exit::Refused))]), Exit::Refused);
    }

    #[test]
    fn every_script_is_valid_sh() {
        let mut all = vec![script::probe(&["/var/backups/k3s".into()])];
        all.extend(
            planned(&target("a", Role::Server), &["allow 6443/tcp".into()])
                .iter()
                .filter(|s| !matches!(s, Step::DeleteUfwRules { .. }))
                .map(Step::script),
        );
        for s in all {
            let o = std::process::Command::new("sh")
                .args(["-n", "-c", &s])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{s}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
