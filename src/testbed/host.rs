//! One host: its files, its systemd-nspawn process, waiting for it, stopping it.

use super::net;
use super::rootfs::{self, lookup_user, set_mode};
use super::state::{HostState, RootMode};
use super::sys::{self, run};
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Paths {
    /// `DIR/PREFIX/hosts/NAME`
    pub host_dir: PathBuf,
    pub console_log: PathBuf,
    pub apt_upper: PathBuf,
}

impl Paths {
    pub fn new(testbed_dir: &Path, name: &str) -> Paths {
        let host_dir = testbed_dir.join("hosts").join(name);
        Paths {
            console_log: host_dir.join("console.log"),
            apt_upper: host_dir.join("apt"),
            host_dir,
        }
    }
}

/// Where the host's own files go: the overlay's upper dir or a full copy.
pub fn root_dir(host_dir: &Path, mode: RootMode) -> PathBuf {
    match mode {
        RootMode::Overlay => host_dir.join("upper"),
        RootMode::Copy => host_dir.join("rootfs"),
    }
}

/// Whether the kernel lets us stack an overlay on the cache with an upper dir under
/// `scratch`; nspawn's `--overlay=` needs exactly that.
pub fn overlay_works(lower: &Path, scratch: &Path) -> bool {
    let probe = scratch.join(format!(".overlay-probe-{}", std::process::id()));
    let (upper, work, mnt) = (probe.join("u"), probe.join("w"), probe.join("m"));
    let ok = [&upper, &work, &mnt]
        .iter()
        .all(|d| std::fs::create_dir_all(d).is_ok())
        && Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&mnt)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if ok {
        let _ = Command::new("umount").arg(&mnt).status();
    }
    if sys::mounts_under(&probe).is_empty() {
        let _ = std::fs::remove_dir_all(&probe);
    }
    ok
}

pub struct HostFiles<'a> {
    pub name: &'a str,
    /// (name, address) of every host in the testbed, for /etc/hosts.
    pub peers: &'a [(String, String)],
    pub client_pub: &'a str,
    pub resolv_conf: &'a str,
}

/// Writes the per-host files into `root` before boot, so sshd starts with its own key
/// and the right name on the first try.
pub fn prepare(
    lower: &Path,
    root: &Path,
    mode: RootMode,
    host_dir: &Path,
    f: &HostFiles,
) -> Result<()> {
    std::fs::create_dir_all(host_dir.join("apt"))?;
    match mode {
        RootMode::Overlay => std::fs::create_dir_all(root)?,
        RootMode::Copy => {
            run(Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(lower)
                .arg(root))?;
        }
    }
    let key = host_dir.join("ssh_host_ed25519_key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("root@{}", f.name))
        .arg("-f")
        .arg(&key))?;

    let put = |rel: &str, content: &[u8], mode: u32, owner: Option<(u32, u32)>| -> Result<()> {
        let dst = root.join(rel);
        mkdir_like(
            lower,
            root,
            Path::new(rel).parent().unwrap_or(Path::new("")),
        )?;
        // Replace rather than write through: the lower copy may be a symlink (resolv.conf).
        let _ = std::fs::remove_file(&dst);
        std::fs::write(&dst, content).with_context(|| format!("cannot write {}", dst.display()))?;
        set_mode(&dst, mode)?;
        if let Some((u, g)) = owner {
            std::os::unix::fs::chown(&dst, Some(u), Some(g))?;
        }
        Ok(())
    };

    put(
        "etc/hostname",
        format!("{}\n", f.name).as_bytes(),
        0o644,
        None,
    )?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        f.name
    );
    for (n, a) in f.peers {
        hosts.push_str(&format!("{a}\t{n}\n"));
    }
    put("etc/hosts", hosts.as_bytes(), 0o644, None)?;
    put("etc/resolv.conf", f.resolv_conf.as_bytes(), 0o644, None)?;
    put(
        "etc/machine-id",
        format!("{}\n", sys::random_hex16()?).as_bytes(),
        0o444,
        None,
    )?;
    put(
        "etc/ssh/ssh_host_ed25519_key",
        &std::fs::read(&key)?,
        0o600,
        None,
    )?;
    put(
        "etc/ssh/ssh_host_ed25519_key.pub",
        &std::fs::read(key.with_extension("pub"))?,
        0o644,
        None,
    )?;

    let auth = format!("{}\n", f.client_pub.trim());
    put("root/.ssh/authorized_keys", auth.as_bytes(), 0o600, None)?;
    set_mode(&root.join("root/.ssh"), 0o700)?;
    let tester = lookup_user(lower, "tester")?;
    put(
        "home/tester/.ssh/authorized_keys",
        auth.as_bytes(),
        0o600,
        Some(tester),
    )?;
    let dot_ssh = root.join("home/tester/.ssh");
    set_mode(&dot_ssh, 0o700)?;
    std::os::unix::fs::chown(&dot_ssh, Some(tester.0), Some(tester.1))?;
    Ok(())
}

/// Creates `rel` (and its parents) under `root` with the mode and owner the same path
/// has in `lower`. An overlay shows the upper dir's metadata for merged directories,
/// so a plain mkdir would turn /root into 0755 and /home/tester into root's.
fn mkdir_like(lower: &Path, root: &Path, rel: &Path) -> Result<()> {
    let mut cur = PathBuf::new();
    for comp in rel.components() {
        cur.push(comp);
        let dst = root.join(&cur);
        if dst.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
        match lower.join(&cur).metadata() {
            Ok(m) => {
                set_mode(&dst, m.mode() & 0o7777)?;
                std::os::unix::fs::chown(&dst, Some(m.uid()), Some(m.gid()))?;
            }
            Err(_) => set_mode(&dst, 0o755)?,
        }
    }
    Ok(())
}

pub struct Spawn<'a> {
    pub name: &'a str,
    pub lower: &'a Path,
    pub root: &'a Path,
    pub mode: RootMode,
    pub host_if: &'a str,
    pub apt_archives: &'a Path,
    /// This host's own layer over the shared package cache.
    pub apt_upper: &'a Path,
}

/// nspawn treats ':' as a separator in --overlay/--bind; paths must escape it.
fn esc(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

pub fn nspawn_command(s: &Spawn) -> Command {
    let mut cmd = Command::new("systemd-nspawn");
    cmd.arg("--boot");
    match s.mode {
        RootMode::Overlay => {
            cmd.arg("--directory").arg(s.lower);
            cmd.arg(format!("--overlay={}:{}:/", esc(s.lower), esc(s.root)));
        }
        RootMode::Copy => {
            cmd.arg("--directory").arg(s.root);
        }
    }
    cmd.arg(format!("--machine={}", s.name))
        // No machined here (and none needed): the state file is our registry.
        .arg("--register=no")
        .arg("--keep-unit")
        .arg(format!("--network-veth-extra={}:host0", s.host_if))
        // nspawn grants CAP_NET_ADMIN with a private network; wireguard-go also needs the device node.
        .arg("--bind=/dev/net/tun")
        .arg(format!(
            "--overlay={}:{}:/var/cache/apt/archives",
            esc(s.apt_archives),
            esc(s.apt_upper)
        ))
        .arg(format!(
            "--bind={}:{}",
            esc(s.apt_archives),
            rootfs::SHARED_DEBS
        ))
        // We write resolv.conf ourselves: the machine's may point at a loopback stub.
        .arg("--resolv-conf=off")
        .arg("--link-journal=no")
        .arg("--console=read-only");
    cmd
}

/// The word after `testbed` in a supervisor's command line (`supervise`; matched by it here).
const SUBCOMMAND: &str = "supervise";

/// The command `up` starts for one host: this same labctl binary, detached from the caller's
/// process group (see `host::spawn`).
pub fn supervisor_command(base: &Path, testbed: &str, host: &str) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the labctl binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["testbed", SUBCOMMAND, "--dir"])
        .arg(base)
        .args(["--name", testbed, "--host", host]);
    Ok(cmd)
}

/// Starts the host's supervisor (which runs nspawn, again after each reboot: `supervise`)
/// detached from our process group, so a Ctrl-C aimed at the caller (or a test runner) does
/// not take the hosts down mid-test.
pub fn spawn(base: &Path, testbed: &str, name: &str, console_log: &Path) -> Result<Child> {
    let log = std::fs::File::create(console_log)
        .with_context(|| format!("cannot create {}", console_log.display()))?;
    let mut cmd = supervisor_command(base, testbed, name)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("{name}: cannot start `{}`", sys::describe(&cmd)))
}

/// The guest's init under `pid`: its child `systemd` when `pid` is nspawn, or the one under
/// its nspawn when `pid` is the host's supervisor.
fn init_under(pid: u32) -> Option<(u32, u64)> {
    for (c, st) in sys::children_of(pid) {
        if st.comm == "systemd" {
            return Some((c, st.start));
        }
        if st.comm == "systemd-nspawn" {
            if let Some(x) = sys::children_of(c)
                .into_iter()
                .find(|(_, s)| s.comm == "systemd")
            {
                return Some((x.0, x.1.start));
            }
        }
    }
    None
}

/// The init of the host's current boot (it changes with every reboot), if it runs now.
pub fn live_init(h: &HostState) -> Option<(u32, u64)> {
    if !is_running(h) {
        return None;
    }
    init_under(h.nspawn_pid)
}

/// The container's init: the `systemd` under the nspawn that `child` is or runs.
pub fn find_init(
    name: &str,
    child: &mut Child,
    console_log: &Path,
    deadline: Instant,
) -> Result<(u32, u64)> {
    let pid = child.id();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name}: systemd-nspawn exited ({status}) before the container started; console.log:\n{}",
                sys::tail_file(console_log, 15)
            );
        }
        if let Some(init) = init_under(pid) {
            return Ok(init);
        }
        if Instant::now() >= deadline {
            bail!(
                "{name}: no systemd process under PID {pid} yet; console.log:\n{}",
                sys::tail_file(console_log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn ssh_command(key: &Path, known_hosts: &Path, user_at: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(user_at)
        .stdin(Stdio::null());
    cmd
}

pub fn tcp_open(addr: &str, timeout: Duration) -> bool {
    let Ok(sa) = format!("{addr}:22").parse::<SocketAddr>() else {
        return false;
    };
    TcpStream::connect_timeout(&sa, timeout).is_ok()
}

/// What root runs once sshd answers: wait for boot to settle, then say whether logins are open.
/// pam_nologin refuses every user but root while /run/nologin exists ("System is booting up"),
/// so sshd answering root is not yet a host a test's `tester` can use. systemd-user-sessions is
/// what removes /run/nologin; under heavy load its start was seen to fail once (the fault suite's
/// three hosts on a busy 2-core machine), so a failed start is retried once before giving up.
const SETTLED: &str = "timeout 30 systemctl is-system-running --wait >/dev/null 2>&1; \
    if [ -e /run/nologin ] && systemctl is-failed -q systemd-user-sessions.service; then \
        systemctl restart systemd-user-sessions.service >/dev/null 2>&1; fi; \
    state=$(systemctl is-system-running 2>/dev/null); \
    if [ -e /run/nologin ]; then \
        echo \"state $state, /run/nologin present, systemd-user-sessions $(systemctl is-active systemd-user-sessions.service)\"; exit 3; fi; \
    echo \"$state\"";

/// Waits until sshd accepts our key and presents the host key we generated, boot has settled
/// (`systemctl is-system-running --wait`), and the unprivileged `tester` can log in too.
pub fn wait_ssh(
    name: &str,
    addr: &str,
    key: &Path,
    known_hosts: &Path,
    console_log: &Path,
    deadline: Instant,
) -> Result<()> {
    let mut last = String::from("sshd never accepted a TCP connection on port 22");
    loop {
        if tcp_open(addr, Duration::from_millis(500)) {
            let out = ssh_command(key, known_hosts, &format!("root@{addr}"))
                .arg(SETTLED)
                .output()?;
            if out.status.success() {
                let tester = ssh_command(key, known_hosts, &format!("tester@{addr}"))
                    .arg("true")
                    .output()?;
                if tester.status.success() {
                    return Ok(());
                }
                last = format!(
                    "boot settled ({}) but ssh tester@{addr} true: {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    sys::tail(&String::from_utf8_lossy(&tester.stderr), 4)
                );
            } else if out.status.code() == Some(3) {
                last = format!(
                    "logins not open yet: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                );
            } else {
                last = format!(
                    "ssh root@{addr}: {}",
                    sys::tail(&String::from_utf8_lossy(&out.stderr), 4)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} ({addr}) did not answer over ssh in time. Last attempt: {last}\nconsole.log:\n{}",
                sys::tail_file(console_log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True if `pid` is the very process `up` started for `name` (its supervisor, or nspawn itself
/// for a testbed from before supervisors), not a reused PID.
fn is_our_nspawn(pid: u32, start: u64, name: &str) -> bool {
    sys::alive(pid, start)
        && sys::cmdline(pid).is_some_and(|args| {
            nspawn_args_match(&args, name, None) || supervisor_args_match(&args, name)
        })
}

/// `labctl testbed supervise … --host NAME`.
fn supervisor_args_match(args: &[String], name: &str) -> bool {
    args.get(1).is_some_and(|a| a == "testbed")
        && args.get(2).is_some_and(|a| a == SUBCOMMAND)
        && args.windows(2).any(|w| w[0] == "--host" && w[1] == name)
}

/// Supervisors of host `name` of the testbed in `testbed_dir` still running, found by command
/// line (a state file whose PID is missing or wrong).
fn find_supervisors(name: &str, testbed_dir: &Path) -> Vec<(u32, u64)> {
    let arg = |args: &[String], flag: &str| -> Option<String> {
        args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
    };
    let ours = |args: &[String]| {
        supervisor_args_match(args, name)
            && arg(args, "--dir").map(PathBuf::from).as_deref() == testbed_dir.parent()
            && arg(args, "--name").as_deref() == testbed_dir.file_name().and_then(|n| n.to_str())
    };
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let (Some(args), Some(st)) = (sys::cmdline(pid), sys::proc_stat(pid)) {
            if st.state != 'Z' && ours(&args) {
                out.push((pid, st.start));
            }
        }
    }
    out
}

fn nspawn_args_match(args: &[String], name: &str, root: Option<&Path>) -> bool {
    let is_nspawn = args.first().is_some_and(|a| a.ends_with("systemd-nspawn"));
    let machine = format!("--machine={name}");
    is_nspawn
        && args.iter().any(|a| a == &machine)
        && match root {
            None => true,
            // --directory takes the raw path, --overlay= the escaped one.
            Some(r) => {
                let (raw, escaped) = (r.to_string_lossy(), esc(r));
                args.iter()
                    .any(|a| *a == raw || a.contains(&format!(":{escaped}:")))
            }
        }
}

/// nspawn processes booting this host's root, found by command line. Covers a state file
/// whose PIDs are missing (crash right after spawning) or wrong.
fn find_nspawns(name: &str, root: &Path) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let (Some(args), Some(st)) = (sys::cmdline(pid), sys::proc_stat(pid)) {
            if st.state != 'Z' && nspawn_args_match(&args, name, Some(root)) {
                out.push((pid, st.start));
            }
        }
    }
    out
}

pub fn is_running(h: &HostState) -> bool {
    is_our_nspawn(h.nspawn_pid, h.nspawn_start, &h.name)
}

/// Stops the host and removes its interface and files. Safe on any half state.
pub fn stop(h: &HostState, testbed_dir: &Path) -> Result<()> {
    // The supervisor first: told to stop, it passes SIGTERM on to its nspawn and boots no more.
    let mut supervisors = find_supervisors(&h.name, testbed_dir);
    let recorded = (
        h.nspawn_pid,
        sys::proc_stat(h.nspawn_pid).map_or(0, |s| s.start),
    );
    if is_our_nspawn(h.nspawn_pid, h.nspawn_start, &h.name)
        && !supervisors.iter().any(|(p, _)| *p == h.nspawn_pid)
        && sys::cmdline(h.nspawn_pid).is_some_and(|a| supervisor_args_match(&a, &h.name))
    {
        supervisors.push(recorded);
    }
    for (pid, _) in &supervisors {
        sys::kill(*pid, libc::SIGTERM);
    }
    let mut nspawns: Vec<(u32, u64)> = Vec::new();
    if is_our_nspawn(h.nspawn_pid, h.nspawn_start, &h.name)
        && !supervisors.iter().any(|(p, _)| *p == h.nspawn_pid)
    {
        nspawns.push(recorded);
    }
    for p in find_nspawns(&h.name, &h.root) {
        if !nspawns.iter().any(|(pid, _)| *pid == p.0) {
            nspawns.push(p);
        }
    }
    // A SIGKILLed nspawn leaves its container running; killing the namespace's init
    // takes every process in it down. A recorded init PID counts only with its start
    // time: a bare PID from a crashed run may have been reused.
    let mut inits: Vec<(u32, u64)> = Vec::new();
    if h.init_pid != 0
        && h.init_start != 0
        && sys::alive(h.init_pid, h.init_start)
        && sys::proc_stat(h.init_pid).is_some_and(|s| s.comm == "systemd")
    {
        inits.push((h.init_pid, h.init_start));
    }
    for (pid, _) in &nspawns {
        for (c, st) in sys::children_of(*pid) {
            if st.comm == "systemd" && !inits.iter().any(|(p, _)| *p == c) {
                inits.push((c, st.start));
            }
        }
    }

    // nspawn turns SIGTERM into a clean shutdown request to the container's systemd.
    for (pid, _) in &nspawns {
        sys::kill(*pid, libc::SIGTERM);
    }
    for (pid, start) in &nspawns {
        if !sys::wait_gone(*pid, *start, Duration::from_secs(20)) {
            sys::kill(*pid, libc::SIGKILL);
            sys::wait_gone(*pid, *start, Duration::from_secs(5));
        }
    }
    for (pid, start) in &supervisors {
        if !sys::wait_gone(*pid, *start, Duration::from_secs(20)) {
            sys::kill(*pid, libc::SIGKILL);
            sys::wait_gone(*pid, *start, Duration::from_secs(5));
        }
    }
    // An nspawn a supervisor started while it was being stopped (a reboot at that moment).
    for (pid, start) in find_nspawns(&h.name, &h.root) {
        for (c, st) in sys::children_of(pid) {
            if st.comm == "systemd" && !inits.iter().any(|(p, _)| *p == c) {
                inits.push((c, st.start));
            }
        }
        sys::kill(pid, libc::SIGTERM);
        if !sys::wait_gone(pid, start, Duration::from_secs(20)) {
            sys::kill(pid, libc::SIGKILL);
            sys::wait_gone(pid, start, Duration::from_secs(5));
        }
    }
    for (pid, start) in &inits {
        if sys::alive(*pid, *start) {
            sys::kill(*pid, libc::SIGKILL);
            if !sys::wait_gone(*pid, *start, Duration::from_secs(10)) {
                bail!(
                    "{}: container init PID {pid} survived SIGKILL; its files are left in place",
                    h.name
                );
            }
        }
    }
    if let Some((pid, _)) = nspawns
        .iter()
        .chain(&supervisors)
        .find(|(p, s)| sys::alive(*p, *s))
    {
        bail!(
            "{}: systemd-nspawn PID {pid} survived SIGKILL; its files are left in place",
            h.name
        );
    }
    net::remove_link(&h.host_if).with_context(|| format!("{}: removing its interface", h.name))?;
    let host_dir = Paths::new(testbed_dir, &h.name).host_dir;
    remove_tree(&host_dir).with_context(|| h.name.clone())?;
    // nspawn leaves this empty directory behind for every machine name.
    let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&h.name));
    Ok(())
}

pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = sys::mounts_under(dir);
    if !mounts.is_empty() {
        bail!(
            "refusing to delete {}: still mounted below it: {}",
            dir.display(),
            mounts
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// The resolv.conf hosts get: the machine's, unless it points at a loopback stub
/// (systemd-resolved) that does not exist inside a container; then resolved's upstream list.
pub fn resolv_conf_for_hosts() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if resolv_has_remote_ns(&host) {
        return host;
    }
    let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default();
    if resolv_has_remote_ns(&upstream) {
        return upstream;
    }
    host
}

fn resolv_has_remote_ns(s: &str) -> bool {
    s.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver")
            && w.next()
                .is_some_and(|ip| !ip.starts_with("127.") && ip != "::1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_not_remote() {
        assert!(!resolv_has_remote_ns(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(resolv_has_remote_ns("# x\nnameserver 10.255.255.53\n"));
    }

    #[test]
    fn nspawn_args_escape_colons_and_use_overlay() {
        let s = Spawn {
            name: "lab-1",
            lower: Path::new("/c/rootfs/debian-12"),
            root: Path::new("/t/a:b/upper"),
            mode: RootMode::Overlay,
            host_if: "ltb-3",
            apt_archives: Path::new("/c/apt-archives"),
            apt_upper: Path::new("/t/apt"),
        };
        let args: Vec<String> = nspawn_command(&s)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"--overlay=/c/rootfs/debian-12:/t/a\\:b/upper:/".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--network-veth-extra=ltb-3:host0".to_string()));
        assert!(args.contains(&"--machine=lab-1".to_string()));
    }

    #[test]
    fn nspawn_cmdline_matching() {
        let args: Vec<String> = [
            "/usr/bin/systemd-nspawn",
            "--boot",
            "--directory",
            "/c/rootfs",
            "--overlay=/c/rootfs:/t/lab/hosts/lab-1/upper:/",
            "--machine=lab-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(nspawn_args_match(&args, "lab-1", None));
        assert!(nspawn_args_match(
            &args,
            "lab-1",
            Some(Path::new("/t/lab/hosts/lab-1/upper"))
        ));
        assert!(!nspawn_args_match(
            &args,
            "lab-1",
            Some(Path::new("/other/lab/hosts/lab-1/upper"))
        ));
        assert!(!nspawn_args_match(&args, "lab-10", None));
        let mut not_nspawn = args.clone();
        not_nspawn[0] = "sleep".into();
        assert!(!nspawn_args_match(&not_nspawn, "lab-1", None));
    }

    #[test]
    fn supervisor_cmdline_matching() {
        let args: Vec<String> = supervisor_command(Path::new("/t"), "lab", "lab-1")
            .unwrap()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let argv: Vec<String> = std::iter::once("/usr/bin/labctl".to_string())
            .chain(args)
            .collect();
        assert_eq!(
            argv[1..],
            [
                "testbed",
                "supervise",
                "--dir",
                "/t",
                "--name",
                "lab",
                "--host",
                "lab-1"
            ]
        );
        assert!(supervisor_args_match(&argv, "lab-1"));
        assert!(!supervisor_args_match(&argv, "lab-10"));
        assert!(!nspawn_args_match(&argv, "lab-1", None));
    }

    #[test]
    fn mkdir_like_copies_lower_metadata() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        std::fs::create_dir_all(lower.join("root")).unwrap();
        set_mode(&lower.join("root"), 0o700).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        mkdir_like(&lower, &upper, Path::new("root/.ssh")).unwrap();
        let m = upper.join("root").metadata().unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        assert!(upper.join("root/.ssh").is_dir());
    }
}
