//! Writing the labctl project: site.yml, roles/NAME/{role.yml,defaults.yml,templates/,files/},
//! and the inventory with its group_vars/ and host_vars/ copied unchanged. Each entry carries a
//! comment naming the Ansible task it came from.

use std::path::Path;

use serde_json::Value;

use super::{OutRole, Project};

/// A value as YAML lines, each indented by `indent`, the first one prefixed by `- `.
fn list_item(v: &Value, indent: &str) -> String {
    let text = serde_saphyr::to_string(v).unwrap_or_default();
    let mut out = String::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        let lead = if i == 0 { "- " } else { "  " };
        out.push_str(&format!("{indent}{lead}{line}\n"));
    }
    out
}

fn entries(out: &mut String, key: &str, list: &[(String, Value)]) {
    if list.is_empty() {
        out.push_str(&format!("{key}: []\n"));
        return;
    }
    out.push_str(&format!("{key}:\n"));
    for (c, e) in list {
        out.push_str(&format!("  # {c}\n"));
        out.push_str(&list_item(e, "  "));
    }
}

pub fn role_yml(r: &OutRole) -> String {
    let mut s = format!(
        "# {}: imported from Ansible by `labctl import-ansible`\n",
        r.name
    );
    entries(&mut s, "resources", &r.resources);
    entries(&mut s, "handlers", &r.handlers);
    s
}

pub fn site_yml(p: &Project) -> String {
    let mut s = String::from(
        "# yaml-language-server: $schema=schemas/site.schema.json\n# Imported from Ansible by `labctl import-ansible`.\n",
    );
    for play in &p.plays {
        s.push_str(&format!("\n# {}\n", play.comment));
        s.push_str(&list_item(&Value::Object(play.play.clone()), ""));
    }
    s
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// Write the project into `out` (which must not exist, or be empty). Returns the inventory path
/// written, if any.
pub fn write(p: &Project, out: &Path, inventory: Option<&Path>) -> std::io::Result<Option<String>> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty: import writes a new project",
                out.display()
            ),
        ));
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("site.yml"), site_yml(p))?;
    for r in &p.roles {
        let dir = out.join("roles").join(&r.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("role.yml"), role_yml(r))?;
        if let Some(d) = &r.defaults {
            std::fs::copy(d, dir.join("defaults.yml"))?;
        }
        for (src, sub) in &r.dirs {
            copy_dir(src, &dir.join(sub))?;
        }
        for (src, sub, name) in &r.assets {
            let dest = dir.join(sub).join(name);
            std::fs::create_dir_all(dest.parent().unwrap_or(&dir))?;
            std::fs::copy(src, dest)?;
        }
    }
    let Some(inv) = inventory else {
        return Ok(None);
    };
    let name = inv.file_name().unwrap_or_default();
    let idir = out.join("inventory");
    std::fs::create_dir_all(&idir)?;
    if inv.is_dir() {
        copy_dir(inv, &idir)?;
        return Ok(Some("inventory".into()));
    }
    std::fs::copy(inv, idir.join(name))?;
    let beside = inv.parent().unwrap_or(Path::new("."));
    for sub in ["group_vars", "host_vars"] {
        if beside.join(sub).is_dir() {
            copy_dir(&beside.join(sub), &idir.join(sub))?;
        }
    }
    Ok(Some(format!("inventory/{}", name.to_string_lossy())))
}
