//! Disposable Debian test hosts (12 by default, or 13) booted with systemd-nspawn.
//!
//! `up` boots PREFIX-1..N from a cached debootstrap rootfs of the chosen release
//! (copy-on-write per host; one cache per release, so both can run side by side),
//! gives each a /24 in 10.213.0.0/16, and writes an inventory, an SSH key and a
//! known_hosts file for them. The state file records the PIDs so `down` can stop
//! exactly what `up` started, even after a crash.

mod host;
mod limits;
mod net;
mod rootfs;
mod secrets;
mod state;
mod supervise;
mod sys;

use anyhow::{bail, Context, Result};

use crate::error::{CliError, Exit};
use crate::ui::Shell;
use host::{HostFiles, Paths};
pub use rootfs::Release;
use state::{HostState, InvHost, RootMode, State, STATE_VERSION};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use sys::{run as run_cmd, FileLock};

#[derive(Debug, clap::Subcommand)]
pub enum TestbedCmd {
    /// Boot disposable Debian hosts and write an inventory for them
    Up {
        /// Number of hosts; the first is the k3s server, the rest agents
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Testbed name; hosts are named NAME-1..N
        #[arg(long, default_value = "lab")]
        name: String,
        /// Directory holding testbeds (inventory, keys, state under DIR/NAME)
        #[arg(long, default_value = "./.testbed")]
        dir: PathBuf,
        /// Seconds to wait for every host's sshd
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Debian release of the hosts: bookworm (12) or trixie (13)
        #[arg(long, value_enum, default_value_t = Release::Bookworm)]
        release: Release,
    },
    /// Stop the hosts and remove their interfaces, files and state
    Down {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long, default_value = "./.testbed")]
        dir: PathBuf,
        /// Every testbed under DIR and every one registered on this machine
        #[arg(long)]
        all: bool,
    },
    /// (internal) Run one host's systemd-nspawn, and again after each reboot; `up` starts it
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        host: String,
    },
    /// List hosts with address, PID and whether sshd answers
    Status {
        #[arg(long, default_value = "lab")]
        name: String,
        #[arg(long, default_value = "./.testbed")]
        dir: PathBuf,
        /// Machine-readable: the JSON envelope, its `data` an array of host objects
        #[arg(long)]
        json: bool,
    },
}

/// Missing prerequisites are bad input (exit 3); they are listed before returning.
/// What it says goes through `sh` (the run's one Shell), as every command's output does.
pub fn run(sh: &Shell, cmd: TestbedCmd) -> std::result::Result<Exit, CliError> {
    sys::ensure_sbin_in_path();
    match cmd {
        TestbedCmd::Up {
            hosts,
            name,
            dir,
            timeout,
            release,
        } => {
            validate_name(&name)?;
            if !(1..=60).contains(&hosts) {
                return Err(
                    anyhow::anyhow!("--hosts must be between 1 and 60, got {hosts}").into(),
                );
            }
            check_prereqs(sh, Need::Up)?;
            inotify_room(sh, hosts)?;
            up(
                sh,
                &name,
                &abs(&dir)?,
                hosts,
                release,
                Duration::from_secs(timeout),
            )?;
        }
        TestbedCmd::Down { name, dir, all } => {
            if !all {
                validate_name(&name)?;
            }
            check_prereqs(sh, Need::Down)?;
            return Ok(down(sh, &name, &abs(&dir)?, all)?);
        }
        TestbedCmd::Supervise { dir, name, host } => {
            let code = supervise::run(&dir, &name, &host)?;
            return Ok(if code == 0 { Exit::Ok } else { Exit::Failed });
        }
        TestbedCmd::Status { name, dir, json } => {
            validate_name(&name)?;
            status(sh, &name, &abs(&dir)?, json)?;
        }
    }
    Ok(Exit::Ok)
}

/// Host names become hostnames, machine names and file names.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "invalid testbed name {name:?}: use 1-40 of a-z, 0-9 and '-', starting with a letter"
        );
    }
    Ok(())
}

fn abs(dir: &Path) -> Result<PathBuf> {
    let p = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    // Normalise "./.testbed" so paths in the inventory read cleanly.
    Ok(p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect())
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Up,
    Down,
}

/// Prints what is missing and how to get it; returns the exit code if anything is.
fn check_prereqs(sh: &Shell, need: Need) -> std::result::Result<(), CliError> {
    let mut missing: Vec<String> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    if !cfg!(target_os = "linux") {
        missing.push("Linux (systemd-nspawn containers only exist there)".into());
    }
    if !sys::is_root() {
        missing.push("root privileges (run it as root, e.g. `sudo labctl testbed ...`)".into());
    }
    let mut tools = vec![("ip", "iproute2")];
    if need == Need::Up {
        tools.extend([
            ("systemd-nspawn", "systemd-container"),
            ("debootstrap", "debootstrap"),
            ("iptables", "iptables"),
            ("ssh-keygen", "openssh-client"),
            ("ssh", "openssh-client"),
            ("nsenter", "util-linux"),
        ]);
    }
    for (tool, pkg) in tools {
        if sys::which(tool).is_none() {
            missing.push(format!("`{tool}` (package {pkg})"));
            if !packages.contains(&pkg) {
                packages.push(pkg);
            }
        }
    }
    if need == Need::Up && !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (load the module: `modprobe tun`)".into());
    }
    if missing.is_empty() {
        return Ok(());
    }
    sh.err("labctl testbed: missing prerequisites:\n");
    for m in &missing {
        sh.err(&format!("  - {m}\n"));
    }
    if !packages.is_empty() {
        sh.err(&format!("Fix: apt-get install -y {}\n", packages.join(" ")));
    }
    Err(CliError::Reported(Exit::BadInput))
}

/// Raise fs.inotify.max_user_instances for `hosts` more hosts, or refuse (see `limits`).
fn inotify_room(sh: &Shell, hosts: usize) -> std::result::Result<(), CliError> {
    let sysctl = Path::new(limits::MAX_USER_INSTANCES);
    match limits::ensure_inotify(sysctl, limits::inotify_in_use(), hosts) {
        Ok(Some(to)) => sh.err(&format!(
            "testbed: raised fs.inotify.max_user_instances to {to} (every host's systemd needs some; the default 128 runs out near 19 hosts)\n"
        )),
        Ok(None) => {}
        Err(why) => {
            sh.err(&format!("labctl testbed: {why}\n"));
            return Err(CliError::Reported(Exit::BadInput));
        }
    }
    Ok(())
}

struct Files {
    dir: PathBuf,
    state: PathBuf,
    inventory: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    lock: PathBuf,
}

impl Files {
    fn new(base: &Path, name: &str) -> Files {
        let dir = base.join(name);
        Files {
            state: State::path(&dir),
            inventory: dir.join("inventory.yml"),
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            // Outside DIR/NAME so `down` can delete that directory while holding the lock.
            lock: base.join(format!(".{name}.lock")),
            dir,
        }
    }
}

fn up(
    sh: &Shell,
    name: &str,
    base: &Path,
    n: usize,
    release: Release,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let f = Files::new(base, name);
    let _lock = FileLock::exclusive(&f.lock)?;

    if let Some(st) = State::load(&f.state)? {
        let running =
            !st.hosts.is_empty() && st.hosts.iter().all(host::is_running) && f.inventory.exists();
        if running && st.release != release {
            // Silently keeping the old release would run a "Debian 13" test on Debian 12.
            bail!(
                "testbed {name} is up with {}, not {}; `labctl testbed down --name {name}` first",
                st.release.label(),
                release.label()
            );
        }
        if running {
            sh.out(&format!(
                "testbed {name} is already up ({}); nothing to do.\ninventory: {}\n",
                hosts_word(st.hosts.len()),
                f.inventory.display()
            ));
            return Ok(());
        }
        sh.err(&format!(
            "testbed: {name} is only partly up (a crash or a host stopped); cleaning it up first\n"
        ));
        teardown(&st, &f)?;
    } else if f.dir.exists() {
        // Files without a state file were never booted (or their state was lost);
        // there are no PIDs to stop, only files.
        host::remove_tree(&f.dir)?;
    }

    let cache = rootfs::cache_dir();
    let lower = rootfs::ensure(sh, &cache, release)?;
    // Made here so a missing cache folder fails `up`, not each host's supervisor.
    rootfs::apt_archives(&cache)?;
    std::fs::create_dir_all(f.dir.join("hosts"))
        .with_context(|| format!("cannot create {}", f.dir.display()))?;

    let mode = match std::env::var("LABCTL_TESTBED_ROOT").as_deref() {
        Ok("copy") => RootMode::Copy,
        _ if host::overlay_works(&lower, &f.dir.join("hosts")) => RootMode::Overlay,
        _ => {
            sh.err(&format!(
                "testbed: overlayfs does not work under {}; copying the rootfs per host\n",
                f.dir.display()
            ));
            RootMode::Copy
        }
    };

    let names: Vec<String> = (1..=n).map(|i| format!("{name}-{i}")).collect();
    let mut st = {
        let _global = FileLock::exclusive(Path::new(net::GLOBAL_LOCK))?;
        let nets = net::allocate(&net::used_on_machine()?, n)?;
        net::reserve(&nets, &f.state)?;
        let st = State {
            version: STATE_VERSION,
            name: name.to_string(),
            dir: f.dir.clone(),
            rootfs: lower.clone(),
            release,
            mode,
            created_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            hosts: names
                .iter()
                .zip(&nets)
                .map(|(hn, &x)| HostState {
                    name: hn.clone(),
                    net: x,
                    address: net::address(x),
                    gateway: net::gateway(x),
                    host_if: net::host_if(x),
                    nspawn_pid: 0,
                    nspawn_start: 0,
                    init_pid: 0,
                    init_start: 0,
                    root: host::root_dir(&Paths::new(&f.dir, hn).host_dir, mode),
                })
                .collect(),
        };
        // From here on the state file exists, so `down` (or a failing `up`) can clean up.
        if let Err(e) = st.save(&f.state) {
            for x in &nets {
                net::release(*x, &f.state);
            }
            return Err(e);
        }
        let fwd = net::ensure_forwarding();
        if let Err(e) = fwd {
            drop(_global);
            let _ = teardown(&st, &f);
            return Err(e);
        }
        st
    };

    match boot(&mut st, &f, &lower, timeout) {
        Ok(()) => {}
        Err(e) => {
            if let Err(te) = teardown(&st, &f) {
                sh.err(&format!(
                    "testbed: cleanup after the failed `up` also failed: {te:#}\n"
                ));
            }
            return Err(e.context(format!(
                "testbed {name}: up failed; everything it started was torn down"
            )));
        }
    }

    sh.out(&format!(
        "testbed {name}: {} up in {:.1} s ({}, {:?} roots)\n",
        hosts_word(n),
        started.elapsed().as_secs_f64(),
        release.label(),
        mode
    ));
    for h in &st.hosts {
        sh.out(&format!(
            "  {:<14} {:<14} nspawn pid {}\n",
            h.name, h.address, h.nspawn_pid
        ));
    }
    sh.out(&format!("inventory: {}\n", f.inventory.display()));
    sh.out(&format!(
        "ssh: ssh -i {} -o UserKnownHostsFile={} root@{}\n",
        f.key.display(),
        f.known_hosts.display(),
        st.hosts[0].address
    ));
    Ok(())
}

/// Prepares, boots and waits for every host; records PIDs in the state as soon as known.
fn boot(st: &mut State, f: &Files, lower: &Path, timeout: Duration) -> Result<()> {
    let _ = std::fs::remove_file(&f.key);
    let _ = std::fs::remove_file(f.key.with_extension("pub"));
    run_cmd(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("labctl-testbed-{}", st.name),
                "-f",
            ])
            .arg(&f.key),
    )?;
    let client_pub = std::fs::read_to_string(f.key.with_extension("pub"))?;
    let resolv = host::resolv_conf_for_hosts();
    let peers: Vec<(String, String)> = st
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.address.clone()))
        .collect();

    // Per-host preparation is independent (and slow in copy mode): do it in parallel.
    let mode = st.mode;
    let prepared: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = st
            .hosts
            .iter()
            .map(|h| {
                let (peers, client_pub, resolv) = (&peers, &client_pub, &resolv);
                s.spawn(move || {
                    let p = Paths::new(&f.dir, &h.name);
                    std::fs::create_dir_all(&p.host_dir)?;
                    let files = HostFiles {
                        name: &h.name,
                        peers,
                        client_pub,
                        resolv_conf: resolv,
                    };
                    host::prepare(lower, &h.root, mode, &p.host_dir, &files).with_context(|| {
                        format!("{}: preparing its root in {}", h.name, h.root.display())
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("prepare thread panicked"))
            .collect()
    });
    prepared.into_iter().collect::<Result<Vec<()>>>()?;

    let mut kh = String::new();
    for h in &st.hosts {
        let pubkey = std::fs::read_to_string(
            Paths::new(&f.dir, &h.name)
                .host_dir
                .join("ssh_host_ed25519_key.pub"),
        )?;
        kh.push_str(&state::known_hosts_line(&h.address, &pubkey));
    }
    std::fs::write(&f.known_hosts, kh)?;
    rootfs::set_mode(&f.key, 0o600)?;

    let mut children = Vec::new();
    for i in 0..st.hosts.len() {
        let h = &st.hosts[i];
        let p = Paths::new(&f.dir, &h.name);
        let base = f.dir.parent().unwrap_or(&f.dir);
        let child = host::spawn(base, &st.name, &h.name, &p.console_log)?;
        let pid = child.id();
        st.hosts[i].nspawn_pid = pid;
        st.hosts[i].nspawn_start = sys::proc_stat(pid).map(|s| s.start).unwrap_or(0);
        children.push(child);
        st.save(&f.state)?;
    }

    let deadline = Instant::now() + timeout;
    let results: Vec<Result<(u32, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = st
            .hosts
            .iter()
            .zip(children.iter_mut())
            .map(|(h, child)| {
                s.spawn(move || -> Result<(u32, u64)> {
                    let log = Paths::new(&f.dir, &h.name).console_log;
                    let init = host::find_init(&h.name, child, &log, deadline)?;
                    net::configure_host_side(&h.host_if, &h.gateway)
                        .with_context(|| h.name.clone())?;
                    net::configure_inside(init.0, &h.address, &h.gateway)
                        .with_context(|| h.name.clone())?;
                    host::wait_ssh(&h.name, &h.address, &f.key, &f.known_hosts, &log, deadline)?;
                    Ok(init)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("boot thread panicked"))
            .collect()
    });
    let mut errors = Vec::new();
    for (h, r) in st.hosts.iter_mut().zip(results) {
        match r {
            Ok((pid, start)) => {
                h.init_pid = pid;
                h.init_start = start;
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    // Record init PIDs even on failure: teardown needs them if nspawn is already gone.
    if init_pids_missing(st) {
        for h in st.hosts.iter_mut().filter(|h| h.init_pid == 0) {
            if let Some((pid, s)) = sys::children_of(h.nspawn_pid)
                .into_iter()
                .find(|(_, s)| s.comm == "systemd")
            {
                h.init_pid = pid;
                h.init_start = s.start;
            }
        }
    }
    st.save(&f.state)?;
    if !errors.is_empty() {
        bail!("{}", errors.join("\n\n"));
    }

    let inv_hosts: Vec<InvHost> = st
        .hosts
        .iter()
        .map(|h| InvHost {
            name: &h.name,
            address: &h.address,
        })
        .collect();
    let yaml = state::inventory_yaml(&inv_hosts, &f.key, &f.known_hosts);
    let tmp = f.inventory.with_extension("yml.tmp");
    std::fs::write(&tmp, yaml)?;
    std::fs::rename(&tmp, &f.inventory)?;
    let names: Vec<String> = st.hosts.iter().map(|h| h.name.clone()).collect();
    secrets::write(&f.dir, &names)?;
    Ok(())
}

fn hosts_word(n: usize) -> String {
    if n == 1 {
        "1 host".into()
    } else {
        format!("{n} hosts")
    }
}

fn init_pids_missing(st: &State) -> bool {
    st.hosts.iter().any(|h| h.init_pid == 0)
}

/// Stops every host of `st` and deletes the testbed's files. Keeps going past
/// per-host errors so one stuck host does not leave the others running.
fn teardown(st: &State, f: &Files) -> Result<()> {
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = st
            .hosts
            .iter()
            .map(|h| s.spawn(move || host::stop(h, &f.dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("stop thread panicked"))
            .collect()
    });
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !errors.is_empty() {
        // Keep the state file: it is the only record of what still needs stopping.
        bail!(
            "could not fully stop testbed {}:\n{}",
            st.name,
            errors.join("\n")
        );
    }
    for h in &st.hosts {
        net::release(h.net, &f.state);
    }
    host::remove_tree(&f.dir)
}

fn down(sh: &Shell, name: &str, base: &Path, all: bool) -> Result<Exit> {
    let mut targets: Vec<(String, PathBuf)> = Vec::new();
    if all {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                if State::path(&e.path()).exists() {
                    targets.push((
                        e.file_name().to_string_lossy().into_owned(),
                        base.to_path_buf(),
                    ));
                }
            }
        }
        for (_, state_file) in net::reservations() {
            let (Some(dir), true) = (state_file.parent(), state_file.exists()) else {
                continue;
            };
            if let (Some(n), Some(b)) = (dir.file_name(), dir.parent()) {
                let t = (n.to_string_lossy().into_owned(), b.to_path_buf());
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        // Reservations whose testbed is gone entirely only block addresses.
        for (x, state_file) in net::reservations() {
            if !state_file.exists() {
                net::release(x, &state_file);
            }
        }
        if targets.is_empty() {
            sh.out("no testbeds found\n");
        }
    } else {
        targets.push((name.to_string(), base.to_path_buf()));
    }

    let mut failed = false;
    for (tname, tbase) in targets {
        let f = Files::new(&tbase, &tname);
        let _lock = FileLock::exclusive(&f.lock)?;
        let res = match State::load(&f.state)? {
            Some(st) => teardown(&st, &f).map(|_| {
                sh.out(&format!(
                    "testbed {tname}: down ({})\n",
                    hosts_word(st.hosts.len())
                ))
            }),
            None => {
                let existed = f.dir.exists();
                host::remove_tree(&f.dir).map(|_| {
                    if existed {
                        sh.out(&format!(
                            "testbed {tname}: no state file; removed {}\n",
                            f.dir.display()
                        ));
                    } else {
                        sh.out(&format!("testbed {tname}: not up; nothing to do\n"));
                    }
                })
            }
        };
        // The lock file stays: deleting it would let a waiter and a newcomer lock
        // different inodes and run at the same time.
        drop(_lock);
        if let Err(e) = res {
            sh.error(&format!("{e:#}"));
            failed = true;
        }
    }
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

#[derive(serde::Serialize)]
struct HostStatus<'a> {
    name: &'a str,
    /// The release the testbed was built from (the same for every host of a testbed).
    release: Release,
    address: &'a str,
    host_if: &'a str,
    nspawn_pid: u32,
    init_pid: u32,
    root: &'a Path,
    running: bool,
    ssh: bool,
}

fn status(sh: &Shell, name: &str, base: &Path, json: bool) -> Result<()> {
    let f = Files::new(base, name);
    let Some(st) = State::load(&f.state)? else {
        if json {
            sh.out(&crate::ui::json_envelope("testbed status", &[(); 0])?);
        } else {
            sh.out(&format!(
                "testbed {name}: not up (no {})\n",
                f.state.display()
            ));
        }
        return Ok(());
    };
    let rows: Vec<HostStatus> = std::thread::scope(|s| {
        let handles: Vec<_> = st
            .hosts
            .iter()
            .map(|h| {
                s.spawn(move || {
                    let running = host::is_running(h);
                    // The current boot's init: a reboot starts a new one.
                    // (0 between two boots; the recorded one only while it is that process).
                    let init_pid = host::live_init(h)
                        .map(|(p, _)| p)
                        .or_else(|| sys::alive(h.init_pid, h.init_start).then_some(h.init_pid))
                        .unwrap_or(0);
                    HostStatus {
                        name: &h.name,
                        release: st.release,
                        address: &h.address,
                        host_if: &h.host_if,
                        nspawn_pid: h.nspawn_pid,
                        init_pid,
                        root: &h.root,
                        running,
                        ssh: running && host::tcp_open(&h.address, Duration::from_secs(1)),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("status thread panicked"))
            .collect()
    });
    if json {
        sh.out(&crate::ui::json_envelope("testbed status", &rows)?);
        return Ok(());
    }
    sh.out(&format!(
        "testbed {name} ({}, {:?} roots, inventory {})\n",
        st.release.label(),
        st.mode,
        f.inventory.display()
    ));
    sh.out(&format!(
        "  {:<14} {:<14} {:>8} {:>8}  {:<8} sshd\n",
        "HOST", "ADDRESS", "NSPAWN", "INIT", "STATE"
    ));
    for r in &rows {
        sh.out(&format!(
            "  {:<14} {:<14} {:>8} {:>8}  {:<8} {}\n",
            r.name,
            r.address,
            r.nspawn_pid,
            r.init_pid,
            if r.running { "running" } else { "stopped" },
            if r.ssh { "answers" } else { "-" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("lab").is_ok());
        assert!(validate_name("e2e-tb-1").is_ok());
        for bad in ["", "Lab", "1lab", "a b", "a/b", "a_b", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn abs_strips_cur_dir() {
        let p = abs(Path::new("./.testbed")).unwrap();
        assert!(p.is_absolute());
        assert!(p.ends_with(".testbed"));
        assert!(!p.to_string_lossy().contains("/./"));
    }

    #[test]
    fn files_layout() {
        let f = Files::new(Path::new("/t"), "lab");
        assert_eq!(f.state, Path::new("/t/lab/state.json"));
        assert_eq!(f.inventory, Path::new("/t/lab/inventory.yml"));
        assert_eq!(f.lock, Path::new("/t/.lab.lock"));
    }
}
