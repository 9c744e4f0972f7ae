//! The testbed state file and the files derived from it (inventory, known_hosts).

use super::rootfs::Release;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// `systemd-nspawn --overlay=`: the cached rootfs is the lower layer, `root` the upper.
    Overlay,
    /// A full `cp -a --reflink=auto` copy of the cached rootfs in `root`.
    Copy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub name: String,
    /// Absolute `DIR/PREFIX`.
    pub dir: PathBuf,
    /// The cached rootfs the hosts were made from.
    pub rootfs: PathBuf,
    /// State files from before releases existed are bookworm, the only release then.
    #[serde(default)]
    pub release: Release,
    pub mode: RootMode,
    pub created_unix: u64,
    pub hosts: Vec<HostState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    /// X in 10.213.X.0/24.
    pub net: u8,
    pub address: String,
    pub gateway: String,
    pub host_if: String,
    /// 0 until spawned. The process `up` started: the host's supervisor, which runs
    /// systemd-nspawn and starts it again after each reboot (`supervise`). The name stays
    /// from when it was nspawn itself.
    pub nspawn_pid: u32,
    /// /proc start time of nspawn_pid, so `down` never signals a reused PID.
    pub nspawn_start: u64,
    /// 0 until found. The first boot's init; after a reboot the current one is under the
    /// supervisor (`host::live_init`, what `status` reports).
    pub init_pid: u32,
    pub init_start: u64,
    /// Where the host's own files live on the machine: the overlay upper dir, or the full copy.
    pub root: PathBuf,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn load(path: &Path) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let st = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a testbed state file; remove it by hand",
                path.display()
            )
        })?;
        Ok(Some(st))
    }

    /// Written via rename so a crash never leaves a truncated state file behind.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
    }
}

/// YAML scalars: plain when unambiguous, otherwise double-quoted (JSON escapes are valid YAML).
fn scalar(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    let looks_like_ip = s.chars().all(|c| c.is_ascii_digit() || c == '.');
    if plain_safe || (looks_like_ip && s.matches('.').count() == 3) {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings always serialize")
    }
}

pub struct InvHost<'a> {
    pub name: &'a str,
    pub address: &'a str,
}

/// Ansible YAML inventory: the first host is the k3s server, the rest agents, all in `lab`.
pub fn inventory_yaml(hosts: &[InvHost], key: &Path, known_hosts: &Path) -> String {
    let key = scalar(&key.to_string_lossy());
    let mut y = String::new();
    y.push_str("# Written by `labctl testbed up`; removed by `labctl testbed down`.\n");
    y.push_str("all:\n  vars:\n");
    y.push_str(&format!(
        "    labctl_known_hosts: {}\n",
        scalar(&known_hosts.to_string_lossy())
    ));
    // Containers share the machine's kernel: kernel-wide sysctls cannot be set inside.
    y.push_str("    sysctl_kernel: false\n");
    y.push_str("  children:\n    lab:\n      children:\n");
    let groups: [(&str, &[InvHost]); 2] = [
        ("k3s_server", &hosts[..hosts.len().min(1)]),
        ("k3s_agents", &hosts[hosts.len().min(1)..]),
    ];
    for (group, members) in groups {
        y.push_str(&format!("        {group}:\n"));
        if members.is_empty() {
            y.push_str("          hosts: {}\n");
            continue;
        }
        y.push_str("          hosts:\n");
        for h in members {
            let n = hosts.iter().position(|x| x.name == h.name).unwrap_or(0) + 1;
            y.push_str(&format!("            {}:\n", scalar(h.name)));
            // The host's WireGuard address (roles/wireguard); its key is in the testbed vault.
            y.push_str(&format!("              wg_address: 10.200.0.{n}\n"));
            y.push_str(&format!(
                "              ansible_host: {}\n",
                scalar(h.address)
            ));
            y.push_str("              ansible_user: root\n");
            y.push_str(&format!(
                "              ansible_ssh_private_key_file: {key}\n"
            ));
        }
    }
    y
}

/// One line per host: `ADDRESS ssh-ed25519 AAAA...` from the host's generated public key.
pub fn known_hosts_line(address: &str, host_pub: &str) -> String {
    let mut parts = host_pub.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    format!("{address} {kind} {key}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            version: STATE_VERSION,
            name: "lab".into(),
            dir: "/x/.testbed/lab".into(),
            rootfs: "/root/.cache/labctl/rootfs/debian-13".into(),
            release: Release::Trixie,
            mode: RootMode::Overlay,
            created_unix: 1_700_000_000,
            hosts: vec![HostState {
                name: "lab-1".into(),
                net: 7,
                address: "10.213.7.2".into(),
                gateway: "10.213.7.1".into(),
                host_if: "ltb-7".into(),
                nspawn_pid: 4242,
                nspawn_start: 99,
                init_pid: 4245,
                init_start: 100,
                root: "/x/.testbed/lab/hosts/lab-1/upper".into(),
            }],
        }
    }

    #[test]
    fn state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = State::path(dir.path());
        assert_eq!(State::load(&path).unwrap(), None);
        let st = sample();
        st.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(st));
        assert!(!path.with_extension("json.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"mode\": \"overlay\""), "{text}");
        assert!(text.contains("\"release\": \"trixie\""), "{text}");
    }

    #[test]
    fn state_without_a_release_is_bookworm() {
        // Written before `--release` existed, when every testbed was Debian 12.
        let dir = tempfile::tempdir().unwrap();
        let path = State::path(dir.path());
        let mut v = serde_json::to_value(sample()).unwrap();
        v.as_object_mut().unwrap().remove("release");
        std::fs::write(&path, v.to_string()).unwrap();
        let st = State::load(&path).unwrap().unwrap();
        assert_eq!(st.release, Release::Bookworm);
    }

    #[test]
    fn garbage_state_is_an_actionable_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = State::path(dir.path());
        std::fs::write(&path, "{not json").unwrap();
        let err = format!("{:#}", State::load(&path).unwrap_err());
        assert!(err.contains("remove it by hand"), "{err}");
    }

    #[test]
    fn inventory_groups_and_vars() {
        let hosts = [
            InvHost {
                name: "lab-1",
                address: "10.213.3.2",
            },
            InvHost {
                name: "lab-2",
                address: "10.213.4.2",
            },
            InvHost {
                name: "lab-3",
                address: "10.213.5.2",
            },
        ];
        let y = inventory_yaml(
            &hosts,
            Path::new("/t/lab/id_ed25519"),
            Path::new("/t/lab/known_hosts"),
        );
        let expected = "\
# Written by `labctl testbed up`; removed by `labctl testbed down`.
all:
  vars:
    labctl_known_hosts: /t/lab/known_hosts
    sysctl_kernel: false
  children:
    lab:
      children:
        k3s_server:
          hosts:
            lab-1:
              wg_address: 10.200.0.1
              ansible_host: 10.213.3.2
              ansible_user: root
              ansible_ssh_private_key_file: /t/lab/id_ed25519
        k3s_agents:
          hosts:
            lab-2:
              wg_address: 10.200.0.2
              ansible_host: 10.213.4.2
              ansible_user: root
              ansible_ssh_private_key_file: /t/lab/id_ed25519
            lab-3:
              wg_address: 10.200.0.3
              ansible_host: 10.213.5.2
              ansible_user: root
              ansible_ssh_private_key_file: /t/lab/id_ed25519
";
        assert_eq!(y, expected);
    }

    #[test]
    fn inventory_single_host_has_empty_agents() {
        let hosts = [InvHost {
            name: "solo-1",
            address: "10.213.9.2",
        }];
        let y = inventory_yaml(&hosts, Path::new("/k"), Path::new("/kh"));
        assert!(
            y.contains("        k3s_agents:\n          hosts: {}\n"),
            "{y}"
        );
    }

    #[test]
    fn odd_paths_are_quoted() {
        assert_eq!(scalar("/a b/c"), "\"/a b/c\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("10.213.1.2"), "10.213.1.2");
        assert_eq!(scalar("/plain/path_1.x"), "/plain/path_1.x");
        assert_eq!(scalar("a:b"), "\"a:b\"");
    }

    #[test]
    fn known_hosts_drops_comment() {
        assert_eq!(
            known_hosts_line("10.213.1.2", "ssh-ed25519 AAAAC3Nz root@lab-1\n"),
            "10.213.1.2 ssh-ed25519 AAAAC3Nz\n"
        );
    }
}
