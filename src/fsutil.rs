//! Atomic writes on the controller (plan files, fetched files, vaults, keys): one writer,
//! so every file labctl writes locally gets the same guarantees as the host-side writer.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `dest` atomically: a temp file in the same directory (exclusive, 0600 before
/// any content), fsync, final mode, rename, fsync the directory. With `no_clobber`, a `dest` that
/// exists is never replaced (link instead of rename, which fails if the name is taken).
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32, no_clobber: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(
            ".{name}.labctl-tmp.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let r = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if no_clobber {
            std::fs::hard_link(&tmp, dest)?;
            std::fs::remove_file(&tmp)?;
        } else {
            std::fs::rename(&tmp, dest)?;
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Tests: writes `text` at `rel` under `dir`, creating the directories between (a site, an
/// inventory, a role tree laid out file by file).
#[cfg(test)]
pub fn write_rel(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// An absolute path with `.`, `..` and empty components resolved, as the kernel would without
/// symlinks: `//etc/./` is `/etc`, `/var/lib/rancher/k3s/../k3s/` is `/var/lib/rancher/k3s`.
/// Nothing on disk is read.
pub fn lexical(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_modes_and_no_clobber() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("out.age");
        write_atomic(&p, b"one", 0o644, false).unwrap();
        write_atomic(&p, b"two", 0o600, false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_atomic(&p, b"three", 0o600, true).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temp files left behind");
    }
}
