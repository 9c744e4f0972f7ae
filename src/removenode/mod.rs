//! Removing one node from the lab (`labctl remove-node NAME`): a k3s node is drained, its k3s
//! stopped and disabled, then its Node deleted (in that order: a running kubelet would register
//! the Node again); the host leaves the inventory file (its lines cut out, the rest kept as
//! written, `edit`); then the remaining hosts converge on the edited inventory for what is
//! derived from the list of nodes (WireGuard peers, the firewall's node rules).
//!
//! This file is the pure part: who is removed and the steps, in order, tested without a host.
//! `run` executes the k3s steps over the transport; the caller writes the inventory and runs the
//! engine (`apply`) for the convergence.

pub mod edit;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use run::k3s_steps;

/// The tags the remaining hosts converge on: the wireguard role (wg0.conf lists every node of
/// `wg_nodes_group` as a peer) and base-hardening's `firewall` (its k3s rules list every k3s
/// node's wg_address). Nothing else in the roles changes when an agent leaves.
pub const CONVERGE_TAGS: [&str; 2] = ["wireguard", "firewall"];

/// Who is removed, and where.
#[derive(Debug, Clone)]
pub struct Removal {
    pub host: String,
    pub conn: crate::inventory::Conn,
    /// Its Kubernetes Node, when the host is a k3s agent.
    pub node: Option<String>,
    /// The k3s server kubectl runs on (when `node` is set).
    pub server: Option<crate::reboot::Server>,
    pub inventory: PathBuf,
    /// Its host_vars files or folder (paths), set aside with the inventory edit.
    pub host_vars: Vec<String>,
    /// The hosts left in the inventory, which converge afterwards.
    pub remaining: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub host_keys: crate::transport::HostKeyPolicy,
    pub connect_timeout: Duration,
    /// kubectl drain's own --timeout.
    pub drain_timeout: Duration,
}

/// One step of a removal, in the order `steps` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=…` on the server
    /// (skipped, with the delete, when the cluster has no such Node).
    Drain { node: String, server: String },
    /// `systemctl disable --now` k3s and k3s-agent on the host (those it has).
    StopK3s { host: String },
    /// `kubectl delete node NODE` on the server.
    DeleteNode { node: String, server: String },
    /// The host's lines cut out of the inventory file; its host_vars files or folder renamed
    /// to dot-files (kept, and skipped by the loader).
    EditInventory {
        host: String,
        inventory: String,
        host_vars: Vec<String>,
    },
    /// The engine (as `apply --yes`) on the remaining hosts, with these tags.
    Converge {
        hosts: Vec<String>,
        tags: Vec<String>,
    },
}

impl Step {
    /// What the step does, in words (plan-only output, progress lines).
    pub fn describe(&self, o: &Opts) -> String {
        match self {
            Step::Drain { node, server } => format!(
                "drain node {node} on {server} (cordon; evict pods, DaemonSets skipped; timeout {}s)",
                o.drain_timeout.as_secs()
            ),
            Step::StopK3s { host } => {
                format!("stop and disable k3s / k3s-agent on {host}")
            }
            Step::DeleteNode { node, server } => {
                format!("delete node {node} from the cluster (kubectl on {server})")
            }
            Step::EditInventory {
                host,
                inventory,
                host_vars,
            } => {
                let mut t = format!(
                    "take {host} out of {inventory} (its lines only; the rest stays as written)"
                );
                for f in host_vars {
                    t.push_str(&format!("; rename {f} to {}", edit::set_aside(f)));
                }
                t
            }
            Step::Converge { hosts, tags } if hosts.is_empty() => format!(
                "converge --tags {}: no host is left to converge",
                tags.join(",")
            ),
            Step::Converge { hosts, tags } => format!(
                "converge {} (apply --tags {}): WireGuard peers and firewall rules without the node",
                hosts.join(", "),
                tags.join(",")
            ),
        }
    }
}

/// The steps of a removal: the k3s ones for a k3s node (drain, stop, delete), then the
/// inventory, then the remaining hosts.
pub fn steps(r: &Removal) -> Vec<Step> {
    let mut v = Vec::new();
    if let (Some(node), Some(s)) = (&r.node, &r.server) {
        v.push(Step::Drain {
            node: node.clone(),
            server: s.host.clone(),
        });
        v.push(Step::StopK3s {
            host: r.host.clone(),
        });
        v.push(Step::DeleteNode {
            node: node.clone(),
            server: s.host.clone(),
        });
    }
    v.push(Step::EditInventory {
        host: r.host.clone(),
        inventory: r.inventory.display().to_string(),
        host_vars: r.host_vars.clone(),
    });
    v.push(Step::Converge {
        hosts: r.remaining.clone(),
        tags: CONVERGE_TAGS.iter().map(|t| t.to_string()).collect(),
    });
    v
}

/// Why the k3s part of a removal failed. The inventory is not touched after any of them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoveError {
    #[error("cannot reach the k3s server {server}: {why}")]
    Server { server: String, why: String },
    #[error("kubectl on {server} cannot read node {node}: {why}")]
    Lookup {
        server: String,
        node: String,
        why: String,
    },
    #[error("drain of node {node} failed (it may be left cordoned): {why}")]
    Drain { node: String, why: String },
    #[error("stopping k3s on {host} failed: {why}")]
    Stop { host: String, why: String },
    #[error("delete of node {node} failed: {why}")]
    Delete { node: String, why: String },
}

/// What the k3s steps did, for the recap.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct K3sReport {
    /// The Node was in the cluster (and was drained and deleted).
    pub node_found: bool,
    /// k3s was stopped on the host; false when the host could not be reached.
    pub stopped: bool,
    /// Why the host was not reached, when it was not (a dead node is removed all the same).
    pub unreachable: Option<String>,
}

/// Progress of the k3s steps.
pub enum Event<'a> {
    Step(&'a Step),
    /// The cluster has no such Node: drain and delete are skipped.
    NoNode(&'a str),
    /// The host could not be reached to stop k3s: the removal goes on.
    Unreachable {
        host: &'a str,
        why: &'a str,
    },
}

/// The scripts of the k3s steps. kubectl's run on the k3s server as root (`k3s kubectl` reads
/// /etc/rancher/k3s/k3s.yaml); the drain is reboot's.
pub mod script {
    use crate::sh::q;

    pub use crate::reboot::script::drain;

    /// Prints `node/NAME` when the Node exists, nothing when it does not.
    pub fn lookup(node: &str) -> String {
        format!(
            "k3s kubectl get node {} --ignore-not-found -o name --request-timeout=30s",
            q(node)
        )
    }

    pub fn delete(node: &str) -> String {
        format!(
            "k3s kubectl delete node {} --ignore-not-found --timeout=60s",
            q(node)
        )
    }

    /// Stops and disables the k3s units the host has (an agent has k3s-agent, a server k3s).
    pub const STOP: &str = "set -e
for u in k3s.service k3s-agent.service; do
  if systemctl cat \"$u\" >/dev/null 2>&1; then systemctl disable --now \"$u\"; fi
done";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(node: Option<&str>) -> Removal {
        Removal {
            host: "lab-3".into(),
            conn: crate::inventory::Conn::default(),
            node: node.map(String::from),
            server: node.map(|_| crate::reboot::Server {
                host: "lab-1".into(),
                conn: crate::inventory::Conn::default(),
            }),
            inventory: "inv/hosts.yml".into(),
            host_vars: vec![],
            remaining: vec!["lab-1".into(), "lab-2".into()],
        }
    }

    #[test]
    fn a_k3s_node_is_drained_stopped_then_deleted_before_the_inventory() {
        let s = steps(&removal(Some("n3")));
        assert_eq!(
            s[..4],
            [
                Step::Drain {
                    node: "n3".into(),
                    server: "lab-1".into()
                },
                Step::StopK3s {
                    host: "lab-3".into()
                },
                Step::DeleteNode {
                    node: "n3".into(),
                    server: "lab-1".into()
                },
                Step::EditInventory {
                    host: "lab-3".into(),
                    inventory: "inv/hosts.yml".into(),
                    host_vars: vec![],
                },
            ]
        );
        assert_eq!(
            s[4],
            Step::Converge {
                hosts: vec!["lab-1".into(), "lab-2".into()],
                tags: vec!["wireguard".into(), "firewall".into()]
            }
        );
    }

    #[test]
    fn another_host_only_leaves_the_inventory_and_the_rest_converge() {
        let s = steps(&removal(None));
        assert_eq!(s.len(), 2);
        assert!(matches!(s[0], Step::EditInventory { .. }));
        assert!(matches!(s[1], Step::Converge { .. }));
    }

    #[test]
    fn steps_in_words_and_json() {
        let o = Opts {
            host_keys: crate::transport::HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(120),
        };
        let s = steps(&removal(Some("n3")));
        assert!(s[0].describe(&o).contains("timeout 120s"));
        assert!(s[4]
            .describe(&o)
            .contains("apply --tags wireguard,firewall"));
        let j = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(j["step"], "drain");
        assert_eq!(j["node"], "n3");
    }

    #[test]
    fn kubectl_lines_quote_the_node() {
        assert_eq!(
            script::lookup("a b"),
            "k3s kubectl get node 'a b' --ignore-not-found -o name --request-timeout=30s"
        );
        assert_eq!(
            script::delete("n3"),
            "k3s kubectl delete node n3 --ignore-not-found --timeout=60s"
        );
    }
}
