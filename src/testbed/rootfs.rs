//! The cached Debian root filesystems hosts are made from: one per release, built once.

use super::sys::{self, run, FileLock};
use crate::ui::Shell;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bump when `customize` changes so existing caches are rebuilt.
const ROOTFS_VERSION: &str = "2";
const STAMP: &str = ".labctl-rootfs";
const MIRROR: &str = "http://deb.debian.org/debian";
const INCLUDE: &str = "systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2";

/// The Debian release a testbed's hosts run. Bookworm is the default: every test was written
/// against it; trixie is the release a user installing today gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Debian 12
    #[default]
    #[value(alias = "12", alias = "debian-12")]
    Bookworm,
    /// Debian 13
    #[value(alias = "13", alias = "debian-13")]
    Trixie,
}

impl Release {
    /// debootstrap's suite name (a codename, so a new stable never changes what we build).
    pub fn suite(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Release::Bookworm => "12",
            Release::Trixie => "13",
        }
    }

    /// The cache directory's name, also the prefix of its lock and temp directories.
    fn dir_name(self) -> String {
        format!("debian-{}", self.version())
    }

    pub fn label(self) -> String {
        format!("Debian {} ({})", self.version(), self.suite())
    }
}

/// Units that only cost boot time or grab the apt lock behind a test's back.
const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
];

pub fn cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("LABCTL_CACHE_DIR"),
        std::env::var_os("HOME"),
    )
}

fn cache_dir_from(env: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(d) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = home
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/labctl")
}

pub fn rootfs_path(cache: &Path, release: Release) -> PathBuf {
    cache.join("rootfs").join(release.dir_name())
}

pub fn is_ready(root: &Path) -> bool {
    std::fs::read_to_string(root.join(STAMP))
        .map(|s| s.trim() == ROOTFS_VERSION)
        .unwrap_or(false)
}

/// Where hosts see the shared package cache read-write, to publish what they downloaded.
pub const SHARED_DEBS: &str = "/var/cache/apt/shared";

/// Publishes what this host downloaded. Copy-then-rename so another host never sees a
/// half-written .deb (apt only trusts a cached file whose size matches).
const SHARE_DEBS_SCRIPT: &str = r#"#!/bin/sh
# labctl testbed: publish downloaded packages to the cache shared by all test hosts.
shared=/var/cache/apt/shared
[ -d "$shared" ] && [ -w "$shared" ] || exit 0
for f in /var/cache/apt/archives/*.deb; do
    [ -f "$f" ] || continue
    b=${f##*/}
    [ -e "$shared/$b" ] && continue
    if cp "$f" "$shared/.$b.$$"; then mv -f "$shared/.$b.$$" "$shared/$b"; else rm -f "$shared/.$b.$$"; fi
done
exit 0
"#;

/// Shared by all hosts and runs so each .deb is downloaded once. Hosts see it as the
/// read-only lower layer of their own /var/cache/apt/archives overlay: binding it there
/// directly would share apt's archives lock, and apt in one host fails at once (no
/// waiting) while another host installs.
pub fn apt_archives(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("apt-archives");
    std::fs::create_dir_all(dir.join("partial"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Returns the cached rootfs of `release`, building it first if needed. Safe to call from
/// parallel runs; each release has its own lock, so building one never waits for another.
pub fn ensure(sh: &Shell, cache: &Path, release: Release) -> Result<PathBuf> {
    let root = rootfs_path(cache, release);
    if is_ready(&root) {
        return Ok(root);
    }
    let parent = root
        .parent()
        .expect("rootfs path has a parent")
        .to_path_buf();
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let base = release.dir_name();
    let _lock = FileLock::exclusive(&parent.join(format!(".{base}.lock")))?;
    if is_ready(&root) {
        // Another run built it while we waited for the lock.
        return Ok(root);
    }
    // Under the lock no one else builds this release, so leftovers of crashed builds can go.
    for e in std::fs::read_dir(&parent)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".{base}.tmp-")) || n.starts_with(&format!(".{base}.old-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let started = Instant::now();
    sh.err(&format!(
        "testbed: building the {} rootfs cache in {} (once; about a minute)...\n",
        release.label(),
        root.display()
    ));
    let built = build(release, &tmp, &parent);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if root.exists() {
        // Stale version: move it aside atomically, then delete. Hosts still running on it
        // keep their open files.
        let old = parent.join(format!(".{base}.old-{}", std::process::id()));
        std::fs::rename(&root, &old)?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp, &root)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), root.display()))?;
    sh.err(&format!(
        "testbed: rootfs cache built in {:.0} s\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(root)
}

fn build(release: Release, tmp: &Path, parent: &Path) -> Result<()> {
    std::fs::create_dir_all(tmp)?;
    let suite = release.suite();
    // One log per release: two releases may build at the same time.
    let log_path = parent.join(format!("debootstrap-{suite}.log"));
    let log = std::fs::File::create(&log_path)?;
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), suite])
        .arg(tmp)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        // debootstrap's own log has the real reason (e.g. a failed download).
        let inner = sys::tail_file(&tmp.join("debootstrap/debootstrap.log"), 10);
        bail!(
            "debootstrap {suite} failed ({status}); see {}:\n{}\n{inner}",
            log_path.display(),
            sys::tail_file(&log_path, 10)
        );
    }
    customize(tmp)
}

fn customize(root: &Path) -> Result<()> {
    // Each host gets its own host key, written at `up`; shared keys would make
    // known_hosts meaningless.
    for e in std::fs::read_dir(root.join("etc/ssh"))?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(e.path())?;
        }
    }
    std::fs::write(
        root.join("etc/ssh/sshd_config.d/labctl-testbed.conf"),
        "# labctl testbed: only the per-host ed25519 key exists; key-only root login.\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         UseDNS no\n",
    )?;

    run(Command::new("chroot").arg(root).args([
        "useradd",
        "-m",
        "-s",
        "/bin/bash",
        "-G",
        "sudo",
        "tester",
    ]))?;
    // '*' rather than useradd's '!': sshd treats '!' as a locked account.
    run(Command::new("chroot")
        .arg(root)
        .args(["usermod", "-p", "*", "tester"]))?;
    let sudoers = root.join("etc/sudoers.d/labctl-tester");
    std::fs::write(&sudoers, "tester ALL=(ALL:ALL) NOPASSWD: ALL\n")?;
    set_mode(&sudoers, 0o440)?;

    let hook = root.join("usr/local/sbin/labctl-share-debs");
    std::fs::write(&hook, SHARE_DEBS_SCRIPT)?;
    set_mode(&hook, 0o755)?;
    std::fs::write(
        root.join("etc/apt/apt.conf.d/90labctl-shared-cache"),
        "// labctl testbed: see /usr/local/sbin/labctl-share-debs\n\
         DPkg::Post-Invoke { \"/usr/local/sbin/labctl-share-debs\"; };\n",
    )?;
    std::fs::create_dir_all(root.join(SHARED_DEBS.trim_start_matches('/')))?;

    for unit in MASKED_UNITS {
        let link = root.join("etc/systemd/system").join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)?;
    }
    // Empty so each host can be given its own id before first boot.
    std::fs::write(root.join("etc/machine-id"), "")?;
    let _ = std::fs::remove_file(root.join("var/lib/dbus/machine-id"));
    std::fs::write(root.join(STAMP), format!("{ROOTFS_VERSION}\n"))?;
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// The uid/gid of `user` in the rootfs' /etc/passwd.
pub fn lookup_user(root: &Path, user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    parse_passwd(&passwd, user)
        .with_context(|| format!("user {user} missing from {}/etc/passwd", root.display()))
}

fn parse_passwd(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\ntester:x:1000:1001::/home/tester:/bin/bash\n";
        assert_eq!(parse_passwd(p, "tester"), Some((1000, 1001)));
        assert_eq!(parse_passwd(p, "nobody"), None);
    }

    #[test]
    fn cache_dir_honours_env() {
        let c = cache_dir_from(Some("/tmp/c".into()), Some("/home/u".into()));
        assert_eq!(c, PathBuf::from("/tmp/c"));
        let c = cache_dir_from(Some("".into()), Some("/home/u".into()));
        assert_eq!(c, PathBuf::from("/home/u/.cache/labctl"));
        assert_eq!(
            cache_dir_from(None, None),
            PathBuf::from("/root/.cache/labctl")
        );
    }

    #[test]
    fn one_cache_per_release() {
        let c = Path::new("/c");
        assert_eq!(
            rootfs_path(c, Release::default()),
            Path::new("/c/rootfs/debian-12")
        );
        assert_eq!(
            rootfs_path(c, Release::Trixie),
            Path::new("/c/rootfs/debian-13")
        );
        use clap::ValueEnum;
        for (arg, want) in [
            ("bookworm", Release::Bookworm),
            ("12", Release::Bookworm),
            ("trixie", Release::Trixie),
            ("debian-13", Release::Trixie),
        ] {
            assert_eq!(Release::from_str(arg, false), Ok(want), "{arg}");
        }
        assert!(Release::from_str("sid", false).is_err());
    }
}
