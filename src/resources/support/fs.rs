//! Paths and ownership, for every type that manages something in the filesystem.

use crate::resources::ResourceError;
use crate::sh::q;

/// Paths must be absolute and plain: no `..`, no newlines (they travel in scripts).
pub fn check_path(p: &str) -> Result<(), ResourceError> {
    if !p.starts_with('/') {
        return Err(ResourceError::spec(format!("path `{p}` must be absolute")));
    }
    if p.split('/').any(|c| c == "..") || p.contains('\n') || p.contains('\0') {
        return Err(ResourceError::spec(format!(
            "path `{p}` must not contain `..` or control characters"
        )));
    }
    Ok(())
}

pub fn meta_commands(
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
    no_deref: bool,
) -> String {
    let mut cmds = Vec::new();
    let h = if no_deref { "-h " } else { "" };
    match (owner, group) {
        (Some(o), Some(g)) => cmds.push(format!("chown {h}{}:{} -- {}", q(o), q(g), q(path))),
        (Some(o), None) => cmds.push(format!("chown {h}{} -- {}", q(o), q(path))),
        (None, Some(g)) => cmds.push(format!("chgrp {h}{} -- {}", q(g), q(path))),
        (None, None) => {}
    }
    if let Some(m) = mode {
        cmds.push(format!("chmod {m} -- {}", q(path)));
    }
    cmds.join(" && ")
}
