//! `labctl import-ansible PLAYBOOK --out DIR`: write a labctl project from an Ansible playbook
//! and its roles, and report what was translated, approximated and left out.

use std::path::PathBuf;

use clap::Args;

use crate::error::{CliError, Exit};
use crate::import::{self, Options};

use super::Global;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The playbook (its plays, roles and included task files are read)
    pub playbook: PathBuf,
    /// A folder holding roles (repeatable; the playbook's roles/ is always looked in last)
    #[arg(long = "roles-path", value_name = "DIR")]
    pub roles_path: Vec<PathBuf>,
    /// The inventory file (or folder) to copy unchanged, with the group_vars/ and host_vars/
    /// beside it
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Where to write the labctl project (a new or empty folder)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Exit 0 when everything was translated (approximations are reported), 2 when something was
/// left out, 3 when the input could not be read.
pub fn run(g: &Global, a: ImportArgs) -> Result<Exit, CliError> {
    let opts = Options {
        playbook: a.playbook,
        roles_paths: a.roles_path,
        out: a.out.clone(),
    };
    let (project, mut report) = match import::import(&opts) {
        Ok(r) => r,
        Err(d) => {
            g.sh.err(&format!("{}\n", d.render("error")));
            return Err(CliError::Reported(Exit::BadInput));
        }
    };
    if let Some(inv) = &a.inventory {
        if !inv.exists() {
            return Err(CliError::new(
                Exit::BadInput,
                format!("cannot read inventory {}", inv.display()),
            ));
        }
    }
    match import::write::write(&project, &a.out, a.inventory.as_deref()) {
        Ok(Some(inv)) => report.note(format!(
            "inventory copied to {inv}: `labctl check -i {}/{inv} {}/site.yml`",
            a.out.display(),
            a.out.display()
        )),
        Ok(None) => report.note("no inventory given (-i): none copied"),
        Err(e) => {
            return Err(CliError::new(
                Exit::BadInput,
                format!("cannot write {}: {e}", a.out.display()),
            ))
        }
    }
    g.sh.err(&report.render());
    if g.json {
        g.sh.out(&crate::ui::json_envelope("import-ansible", &report)?);
    }
    // 2 is plan's "changes pending"; here it says "something was left out".
    Ok(if report.counts.left_out > 0 {
        Exit::Drift
    } else {
        Exit::Ok
    })
}
