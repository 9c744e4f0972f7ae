//! Keeping a host up across its own reboots, as `systemd-nspawn@.service` does for machined
//! (`RestartForceExitStatus=133`): when the guest's systemd reboots, nspawn exits with status
//! 133 and the container is gone. `up` starts one supervisor per host (a hidden `labctl testbed
//! supervise`), which runs nspawn, boots it again after every 133, and gives the new boot the
//! host's address (nspawn made a fresh veth pair). Any other exit of nspawn ends it with that
//! status. SIGTERM (from `down`) is passed on to nspawn, which shuts the container down
//! cleanly, and no new boot follows.
//!
//! The supervisor is the PID the state file records as the host's (`nspawn_pid`): `down` and
//! `status` find the current nspawn and the guest's init under it (`host::live_init`). Its command line is `host::supervisor_command`.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::host::{self, Paths, Spawn};
use super::state::State;
use super::{net, rootfs};

/// nspawn's exit status when the container asked for a reboot (systemd-nspawn(1)).
pub const REBOOT_STATUS: i32 = 133;

static STOP: AtomicBool = AtomicBool::new(false);
static CHILD: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe work here: two atomics and kill(2).
    STOP.store(true, Ordering::SeqCst);
    let c = CHILD.load(Ordering::SeqCst);
    if c != 0 {
        // SAFETY: kill(2) is async-signal-safe; c is our own child's PID.
        unsafe { libc::kill(c as libc::pid_t, libc::SIGTERM) };
    }
}

fn install_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only touches atomics and calls kill(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// What to do after nspawn exited with `code` (None: killed by a signal).
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    BootAgain,
    Exit(i32),
}

pub fn after(code: Option<i32>, stopping: bool) -> After {
    match code {
        Some(REBOOT_STATUS) if !stopping => After::BootAgain,
        Some(c) => After::Exit(c),
        None => After::Exit(1),
    }
}

/// Runs until nspawn exits for another reason than a reboot; returns its status.
pub fn run(base: &Path, testbed: &str, host_name: &str) -> Result<i32> {
    install_handlers();
    let dir = base.join(testbed);
    let st = State::load(&State::path(&dir))?
        .with_context(|| format!("no testbed {testbed} in {}", base.display()))?;
    let h = st
        .hosts
        .iter()
        .find(|h| h.name == host_name)
        .with_context(|| format!("testbed {testbed} has no host {host_name}"))?;
    let apt_archives = rootfs::apt_archives(&rootfs::cache_dir())?;
    let p = Paths::new(&dir, &h.name);
    let mut boots = 0u32;
    loop {
        let mut cmd = host::nspawn_command(&Spawn {
            name: &h.name,
            lower: &st.rootfs,
            root: &h.root,
            mode: st.mode,
            host_if: &h.host_if,
            apt_archives: &apt_archives,
            apt_upper: &p.apt_upper,
        });
        // Our stdout and stderr are the host's console.log: nspawn writes there as before.
        cmd.stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start systemd-nspawn", h.name))?;
        CHILD.store(child.id(), Ordering::SeqCst);
        if STOP.load(Ordering::SeqCst) {
            // A SIGTERM that came between two boots: this one shuts down at once.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        if boots > 0 {
            // `up` addressed the first boot; a reboot's fresh veth pair has no address.
            let deadline = Instant::now() + Duration::from_secs(60);
            let r = host::find_init(&h.name, &mut child, &p.console_log, deadline).and_then(
                |(pid, _)| {
                    net::configure_host_side(&h.host_if, &h.gateway)?;
                    net::configure_inside(pid, &h.address, &h.gateway)
                },
            );
            if let Err(e) = r {
                eprintln!(
                    "labctl testbed: {}: boot {boots} left without its address: {e:#}",
                    h.name
                );
            }
        }
        let status = child.wait()?;
        CHILD.store(0, Ordering::SeqCst);
        match after(status.code(), STOP.load(Ordering::SeqCst)) {
            After::Exit(c) => return Ok(c),
            After::BootAgain => {
                boots += 1;
                eprintln!(
                    "labctl testbed: {} rebooted (systemd-nspawn exit {REBOOT_STATUS}): boot {}",
                    h.name,
                    boots + 1
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reboot_boots_again_anything_else_ends() {
        assert_eq!(after(Some(133), false), After::BootAgain);
        // `down` asked: a reboot racing the stop does not come back.
        assert_eq!(after(Some(133), true), After::Exit(133));
        assert_eq!(after(Some(0), false), After::Exit(0));
        assert_eq!(after(Some(1), false), After::Exit(1));
        assert_eq!(after(None, false), After::Exit(1));
    }
}
