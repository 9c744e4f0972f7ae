//! Addressing: one /24 per host inside 10.213.0.0/16, the machine routing between them
//! and masquerading traffic that leaves the range.

use super::sys::{self, run};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

pub const RANGE: &str = "10.213.0.0/16";
/// Serialises allocation across concurrent `labctl testbed up` runs (tests run in parallel).
pub const GLOBAL_LOCK: &str = "/run/labctl-testbed.lock";
/// One file per allocated /24, naming the state file that owns it. Addresses only show up
/// in `ip addr` after nspawn created the veth, so this closes the window between
/// allocation and boot.
pub const REGISTRY: &str = "/run/labctl/testbed-net";
/// A reservation whose state file is gone is kept this long: its `up` may still be
/// between allocation and writing the state file.
const RESERVATION_GRACE: Duration = Duration::from_secs(600);

pub fn gateway(x: u8) -> String {
    format!("10.213.{x}.1")
}

pub fn address(x: u8) -> String {
    format!("10.213.{x}.2")
}

/// Host-side veth name. Not `ve-*`: systemd-networkd on the machine would otherwise
/// claim it with its default container network config and fight over addresses.
pub fn host_if(x: u8) -> String {
    format!("ltb-{x}")
}

/// The third octets of 10.213.X.* addresses in `ip -o -4 addr` output.
pub fn used_from_ip_addr(output: &str) -> BTreeSet<u8> {
    let mut used = BTreeSet::new();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w != "inet" {
                continue;
            }
            let Some(cidr) = words.next() else { break };
            let ip = cidr.split('/').next().unwrap_or_default();
            let o: Vec<&str> = ip.split('.').collect();
            if o.len() == 4 && o[0] == "10" && o[1] == "213" {
                if let Ok(x) = o[2].parse::<u8>() {
                    used.insert(x);
                }
            }
        }
    }
    used
}

/// The first `n` free /24s. 0 and 255 are skipped so no address looks like a
/// network or broadcast address of the /16.
pub fn allocate(used: &BTreeSet<u8>, n: usize) -> Result<Vec<u8>> {
    let free: Vec<u8> = (1..=254u8).filter(|x| !used.contains(x)).take(n).collect();
    if free.len() < n {
        bail!(
            "only {} free /24 networks left in {RANGE} for {n} hosts; run `labctl testbed down --all` to free stale testbeds",
            free.len()
        );
    }
    Ok(free)
}

/// Everything that marks a /24 as taken on this machine right now.
pub fn used_on_machine() -> Result<BTreeSet<u8>> {
    let out = run(Command::new("ip").args(["-o", "-4", "addr", "show"]))?;
    let mut used = used_from_ip_addr(&String::from_utf8_lossy(&out.stdout));
    let links = run(Command::new("ip").args(["-o", "link", "show"]))?;
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        // "12: ltb-7@if2: <...>"
        if let Some(name) = line.split(": ").nth(1) {
            let name = name.split('@').next().unwrap_or_default();
            if let Some(x) = name.strip_prefix("ltb-").and_then(|x| x.parse::<u8>().ok()) {
                used.insert(x);
            }
        }
    }
    for (x, owner) in reservations() {
        let fresh = std::fs::metadata(reservation_path(x))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < RESERVATION_GRACE);
        if owner.exists() || fresh {
            used.insert(x);
        }
    }
    Ok(used)
}

fn reservation_path(x: u8) -> PathBuf {
    Path::new(REGISTRY).join(x.to_string())
}

/// All reservations: (X, state file path of the owning testbed).
pub fn reservations() -> Vec<(u8, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(REGISTRY) {
        for e in rd.flatten() {
            let Some(x) = e.file_name().to_str().and_then(|s| s.parse::<u8>().ok()) else {
                continue;
            };
            if let Ok(owner) = std::fs::read_to_string(e.path()) {
                out.push((x, PathBuf::from(owner.trim())));
            }
        }
    }
    out
}

pub fn reserve(xs: &[u8], state_file: &Path) -> Result<()> {
    std::fs::create_dir_all(REGISTRY).with_context(|| format!("cannot create {REGISTRY}"))?;
    for x in xs {
        let p = reservation_path(*x);
        std::fs::write(&p, state_file.to_string_lossy().as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Drops a reservation only if it is still ours; another testbed may have reclaimed it.
pub fn release(x: u8, state_file: &Path) {
    let p = reservation_path(x);
    if let Ok(owner) = std::fs::read_to_string(&p) {
        if Path::new(owner.trim()) == state_file {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// ip_forward so hosts reach each other and the outside; MASQUERADE so apt works inside;
/// FORWARD accepts in case the machine's policy is DROP (e.g. Docker installed).
/// Rules are machine-wide and shared by all testbeds, so `down` leaves them in place.
pub fn ensure_forwarding() -> Result<()> {
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(fwd)
        .map(|s| s.trim() != "1")
        .unwrap_or(true)
    {
        std::fs::write(fwd, "1").with_context(|| format!("cannot enable {fwd}"))?;
    }
    let rules: [(&str, &str, Vec<&str>); 3] = [
        (
            "nat",
            "POSTROUTING",
            vec!["-s", RANGE, "!", "-d", RANGE, "-j", "MASQUERADE"],
        ),
        ("filter", "FORWARD", vec!["-s", RANGE, "-j", "ACCEPT"]),
        ("filter", "FORWARD", vec!["-d", RANGE, "-j", "ACCEPT"]),
    ];
    for (table, chain, rule) in rules {
        let present = Command::new("iptables")
            .args(["-w", "-t", table, "-C", chain])
            .args(&rule)
            .output()
            .with_context(|| "cannot run iptables")?
            .status
            .success();
        if !present {
            let op = if chain == "FORWARD" { "-I" } else { "-A" };
            run(Command::new("iptables")
                .args(["-w", "-t", table, op, chain])
                .args(&rule))?;
        }
    }
    Ok(())
}

pub fn configure_host_side(ifname: &str, gw: &str) -> Result<()> {
    run(Command::new("ip").args(["addr", "replace", &format!("{gw}/24"), "dev", ifname]))?;
    run(Command::new("ip").args(["link", "set", ifname, "up"]))?;
    Ok(())
}

/// Configured from outside through the container's netns: no network manager inside
/// needs to be installed or started, and the address is there before sshd starts.
pub fn configure_inside(init_pid: u32, addr: &str, gw: &str) -> Result<()> {
    let script = format!(
        "ip link set lo up && ip addr replace {addr}/24 dev host0 && ip link set host0 up && ip route replace default via {gw}"
    );
    run(Command::new("nsenter").args([
        "-t",
        &init_pid.to_string(),
        "-n",
        "--",
        "sh",
        "-c",
        &script,
    ]))?;
    Ok(())
}

pub fn link_exists(ifname: &str) -> bool {
    Path::new("/sys/class/net").join(ifname).exists()
}

pub fn remove_link(ifname: &str) -> Result<()> {
    if link_exists(ifname) {
        let out = Command::new("ip").args(["link", "del", ifname]).output()?;
        // The veth vanishes by itself when the container's netns dies; racing that is fine.
        if !out.status.success() && link_exists(ifname) {
            bail!(
                "cannot remove interface {ifname}: {}",
                sys::tail(&String::from_utf8_lossy(&out.stderr), 3)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addr_output() {
        let out = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
9: ltb-3    inet 10.213.3.1/24 scope global ltb-3\\       valid_lft forever
10: br0    inet 10.213.200.77/16 scope global br0
11: x    inet 10.21.3.1/24 scope global x
";
        let used = used_from_ip_addr(out);
        assert_eq!(used.into_iter().collect::<Vec<_>>(), vec![3, 200]);
    }

    #[test]
    fn allocates_lowest_free_and_skips_used() {
        let used: BTreeSet<u8> = [1, 2, 4].into_iter().collect();
        assert_eq!(allocate(&used, 3).unwrap(), vec![3, 5, 6]);
        assert_eq!(allocate(&BTreeSet::new(), 2).unwrap(), vec![1, 2]);
    }

    #[test]
    fn allocation_never_hands_out_0_or_255_and_fails_when_full() {
        let used: BTreeSet<u8> = (1..=253u8).collect();
        assert_eq!(allocate(&used, 1).unwrap(), vec![254]);
        let err = allocate(&used, 2).unwrap_err().to_string();
        assert!(err.contains("only 1 free"), "{err}");
    }

    #[test]
    fn parallel_allocations_do_not_collide() {
        // What two serialized `up`s see: the second one's scan includes the first's reservation.
        let mut used = BTreeSet::new();
        let a = allocate(&used, 3).unwrap();
        used.extend(a.iter().copied());
        let b = allocate(&used, 3).unwrap();
        assert!(a.iter().all(|x| !b.contains(x)));
    }

    #[test]
    fn names_fit_ifnamsiz() {
        assert!(host_if(254).len() <= 15);
        assert_eq!(address(7), "10.213.7.2");
        assert_eq!(gateway(7), "10.213.7.1");
    }
}
