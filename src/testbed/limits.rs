//! Kernel limits that many hosts on one machine run into.
//!
//! Every booted host's systemd, journald and logind open inotify instances, and all containers
//! count against ONE user (root: nspawn hosts here share the host's uids). The kernel's default
//! `fs.inotify.max_user_instances` is 128, so past about 19 hosts (fewer when other testbeds
//! run) the next host fails with "Too many open files". `up` raises the limit before booting,
//! or refuses with this explanation when it cannot.

use std::path::{Path, PathBuf};

pub const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// A booted Debian 12 host holds about 6-8 instances; twice that leaves room for units that
/// start later (and for `systemctl` runs in the host).
pub const PER_HOST: u64 = 16;
/// Room for the controller and whatever else runs as root.
const SPARE: u64 = 64;
/// When raising, go at least this high, so the next testbed does not need to raise it again.
const RAISE_TO: u64 = 1024;

/// What `up` must do about the limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Inotify {
    Enough,
    /// Write this value to the sysctl.
    Raise(u64),
}

/// Pure: `limit` is the current sysctl, `in_use` the instances root holds now.
pub fn plan_inotify(limit: u64, in_use: u64, hosts: usize) -> Inotify {
    let need = in_use + hosts as u64 * PER_HOST + SPARE;
    if limit >= need {
        Inotify::Enough
    } else {
        Inotify::Raise(need.max(RAISE_TO))
    }
}

/// inotify instances open by processes of uid 0, from /proc (an fd whose link reads
/// `anon_inode:inotify`). Processes that vanish while we look are skipped.
pub fn inotify_in_use() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for p in procs.flatten() {
        let dir = p.path();
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&dir).map(|m| m.uid()).unwrap_or(1) != 0 {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        n += fds
            .flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .map(|l| l.as_os_str() == "anon_inode:inotify")
                    .unwrap_or(false)
            })
            .count() as u64;
    }
    n
}

/// Why the inotify limit could not be made to fit: what to do is in the message.
#[derive(Debug, thiserror::Error)]
pub enum InotifyError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds `{text}`, not a number", path.display())]
    NotANumber { path: PathBuf, text: String },
    #[error(
        "{hosts} more host(s) need about {need} inotify instances ({in_use} in use by root now, ~{PER_HOST} per host), \
         but fs.inotify.max_user_instances is {limit}, and raising it failed ({source}); past the limit the next host \
         fails to boot with \"Too many open files\". Raise it first: sysctl -w fs.inotify.max_user_instances={to}"
    )]
    Raise {
        hosts: usize,
        need: u64,
        in_use: u64,
        limit: u64,
        to: u64,
        source: std::io::Error,
    },
}

/// Make room for `hosts` more hosts: read the limit at `sysctl`, raise it if needed.
/// Ok(Some(new)) when raised; Err with what to do when it is too low and cannot be raised.
pub fn ensure_inotify(
    sysctl: &Path,
    in_use: u64,
    hosts: usize,
) -> Result<Option<u64>, InotifyError> {
    let text = std::fs::read_to_string(sysctl).map_err(|source| InotifyError::Read {
        path: sysctl.to_path_buf(),
        source,
    })?;
    let limit: u64 = text.trim().parse().map_err(|_| InotifyError::NotANumber {
        path: sysctl.to_path_buf(),
        text: text.trim().to_string(),
    })?;
    match plan_inotify(limit, in_use, hosts) {
        Inotify::Enough => Ok(None),
        Inotify::Raise(to) => match std::fs::write(sysctl, to.to_string()) {
            Ok(()) => Ok(Some(to)),
            Err(source) => Err(InotifyError::Raise {
                hosts,
                need: hosts as u64 * PER_HOST,
                in_use,
                limit,
                to,
                source,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_is_raised_for_twenty_hosts_but_not_for_two() {
        assert_eq!(plan_inotify(128, 10, 2), Inotify::Enough);
        // 20 hosts at the kernel default: this is where booting failed before.
        assert_eq!(plan_inotify(128, 10, 20), Inotify::Raise(1024));
        // Many hosts: above the floor of 1024.
        assert_eq!(
            plan_inotify(1024, 200, 60),
            Inotify::Raise(200 + 60 * 16 + 64)
        );
        assert_eq!(plan_inotify(8192, 200, 60), Inotify::Enough);
    }

    #[test]
    fn raises_the_sysctl_file_or_refuses_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("max_user_instances");
        std::fs::write(&f, "128\n").unwrap();
        assert_eq!(ensure_inotify(&f, 10, 20).unwrap(), Some(1024));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1024");
        assert_eq!(ensure_inotify(&f, 10, 20).unwrap(), None);
        // A limit that cannot be written: the refusal says why and how to fix it.
        let ro = d.path().join("missing-dir").join("max_user_instances");
        assert!(ensure_inotify(&ro, 0, 20)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        // A read-only sysctl (0444 in /proc/sys refuses even root): the refusal says why and
        // what to run.
        let ro = Path::new("/proc/sys/kernel/ngroups_max");
        let e = ensure_inotify(ro, 0, 5000).unwrap_err().to_string();
        assert!(
            e.contains("max_user_instances is 65536")
                && e.contains("Too many open files")
                && e.contains("sysctl -w fs.inotify.max_user_instances=80064"),
            "{e}"
        );
    }

    #[test]
    fn counts_this_machines_instances_without_failing() {
        // Whatever runs here, counting must not fail or panic; as root it sees root's own.
        let _ = inotify_in_use();
    }
}
