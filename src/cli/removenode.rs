//! `labctl remove-node NAME [SITE] -i INVENTORY`: one host out of the lab (the removal itself is
//! `crate::removenode`). Asks first on a terminal, refuses without one unless `--yes`, as
//! `apply` and `reboot` do; `--check` only prints the steps. The convergence afterwards is
//! `apply --yes` on the edited inventory with the tags `removenode::CONVERGE_TAGS`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::error::{CliError, Exit};
use crate::removenode::{self, edit, Event, Opts, Removal, Step};
use crate::ui::Shell;

use super::reboot::{node_name, AGENT_GROUPS, SERVER_GROUPS};
use super::{Global, Target};

#[derive(Debug, clap::Args)]
pub struct RemoveNodeArgs {
    /// The host to remove, as the inventory names it
    name: String,
    /// The site file the remaining hosts converge with
    #[arg(default_value = "site.yml")]
    site: PathBuf,
    /// Inventory file (Ansible YAML format, or INI); the host's lines are cut out of it
    #[arg(short = 'i', long, env = super::INVENTORY_ENV, default_value = super::INVENTORY)]
    inventory: PathBuf,
    /// Extra vars for the convergence, as apply takes them: key=value or @file.yml
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE")]
    extra_vars: Vec<String>,
    /// Print what would be done and change nothing (no host is contacted)
    #[arg(long)]
    check: bool,
    /// Remove without asking first (for scripts); without it, a non-terminal stdin refuses
    #[arg(short = 'y', long, conflicts_with = "check")]
    yes: bool,
    /// Seconds `kubectl drain` may take to evict the node's pods
    #[arg(long, value_name = "SECS", default_value_t = crate::reboot::DRAIN_TIMEOUT_SECS)]
    drain_timeout: u64,
    #[command(flatten)]
    conn: super::Conn,
}

pub fn run(g: &Global, a: RemoveNodeArgs) -> Result<Exit, CliError> {
    // Refused before anything is read or contacted, as `apply` is.
    super::confirm::refuse_without_terminal(
        a.check || a.yes,
        "remove a node",
        "pass --yes to remove it without asking, or --check to see the steps",
    )?;
    let sh = &g.sh;
    let (inv, all, vars) = super::adhoc::targets_with_vars(g, &a.inventory, "all")?;
    let Some(conn) = all
        .iter()
        .find(|(h, _)| *h == a.name)
        .map(|(_, c)| c.clone())
    else {
        // Already gone (a second run): nothing to do, and nothing is contacted.
        sh.status(
            "Nothing",
            &format!(
                "to do: {} is not in {} (if an earlier remove-node stopped before the rest converged: `labctl apply --tags {}`)",
                a.name,
                a.inventory.display(),
                removenode::CONVERGE_TAGS.join(",")
            ),
        );
        if g.json {
            sh.out(&crate::ui::json_envelope(
                "remove-node",
                &json!({ "host": a.name, "in_inventory": false, "steps": [] }),
            )?);
        }
        return Ok(Exit::Ok);
    };
    let groups = inv.groups_map();
    let in_groups = |names: &[&str]| {
        names
            .iter()
            .any(|n| groups.get(*n).is_some_and(|hs| hs.contains(&a.name)))
    };
    if in_groups(&SERVER_GROUPS) {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "{} is a k3s server: remove-node takes agents and hosts outside the cluster only (a server holds the datastore; to take the whole cluster down: `labctl uninstall-cluster`)",
                a.name
            ),
        ));
    }
    let node = in_groups(&AGENT_GROUPS).then(|| node_name(&vars, &a.name));
    let server = super::reboot::server(&vars, &a.inventory, &groups)?;
    if node.is_some() && server.is_none() {
        return Err(CliError::new(
            Exit::BadInput,
            format!("{} is a k3s agent but the inventory has no host in group `k3s_server` (or `server`) to drain it from", a.name),
        ));
    }
    // The new text is made before anything changes: an inventory this edit cannot cut is
    // refused while the cluster and the hosts are still as they were.
    let original = std::fs::read_to_string(&a.inventory).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", a.inventory.display()),
        )
    })?;
    let edited = if edit::is_yaml(&a.inventory) {
        edit::remove_yaml(&original, &a.name)
    } else {
        edit::remove_ini(&original, &a.name)
    }
    .map_err(|e| CliError::new(Exit::BadInput, format!("{}: {e}", a.inventory.display())))?;
    let inv_dir = a.inventory.parent().unwrap_or(Path::new("."));
    let mut conn = conn;
    conn.become_ = true;
    let r = Removal {
        host: a.name.clone(),
        conn,
        node,
        server: server.filter(|_| in_groups(&AGENT_GROUPS)),
        inventory: a.inventory.clone(),
        host_vars: edit::host_vars_of(inv_dir, &a.name),
        remaining: all
            .iter()
            .map(|(h, _)| h.clone())
            .filter(|h| *h != a.name)
            .collect(),
    };
    let o = Opts {
        host_keys: a.conn.host_key_policy(),
        connect_timeout: Duration::from_secs(a.conn.connect_timeout),
        drain_timeout: Duration::from_secs(a.drain_timeout),
    };
    let steps = removenode::steps(&r);
    let plan = plan_text(&r, &steps, &o);
    if let Some(exit) = super::confirm::check_or_ask(
        g,
        "remove-node",
        (a.check, a.yes),
        (&plan, ""),
        || json!({ "host": r.host, "in_inventory": true, "node": r.node, "steps": steps }),
        &format!("Remove {} from the lab? Only 'yes' is accepted", r.host),
    )? {
        return Ok(exit);
    }

    // 1. The cluster: drain, stop k3s, delete the Node.
    let on = |e: Event| progress(sh, e, &o);
    let k3s = super::engine::runtime().block_on(removenode::k3s_steps(&r, &o, &on));
    let k3s = match k3s {
        Ok(k) => k,
        Err(e) => {
            sh.error(&format!(
                "{e}\n  = note: {} is still in {}; nothing else was changed",
                r.host,
                a.inventory.display()
            ));
            return Ok(Exit::Failed);
        }
    };
    // 2. The inventory file.
    write_inventory(g, &r, &edited.text)?;
    sh.status(
        "Removed",
        &format!(
            "{} from {} ({} line(s))",
            r.host,
            a.inventory.display(),
            edited
                .removed
                .iter()
                .map(|l| l.clone().count())
                .sum::<usize>()
        ),
    );
    for f in &r.host_vars {
        std::fs::rename(f, edit::set_aside(f))?;
        sh.status("Set aside", &format!("{f} as {}", edit::set_aside(f)));
    }
    // 3. The remaining hosts, on the edited inventory.
    if r.remaining.is_empty() {
        sh.status(
            "Nothing",
            "left to converge: the inventory has no other host",
        );
        return Ok(Exit::Ok);
    }
    sh.status(
        "Converging",
        &Step::Converge {
            hosts: r.remaining.clone(),
            tags: removenode::CONVERGE_TAGS
                .iter()
                .map(|t| t.to_string())
                .collect(),
        }
        .describe(&o),
    );
    let t = Target {
        site: a.site.clone(),
        inventory: a.inventory.clone(),
        select: crate::site::select::Selection {
            tags: removenode::CONVERGE_TAGS
                .iter()
                .map(|t| t.to_string())
                .collect(),
            skip_tags: vec![],
            limit: None,
        },
        extra_vars: a.extra_vars.clone(),
    };
    let exit = super::run::apply(g, &t, &a.conn, None, super::run::Approve::Yes, false)?;
    if k3s.unreachable.is_some() {
        sh.warn(&format!(
            "{} was not reached, so k3s may still run on it: if it comes back, stop it (`systemctl disable --now k3s-agent`) before it rejoins",
            r.host
        ));
    }
    Ok(exit)
}

/// Writes the edited inventory next to the original, loads it to prove the host is gone and
/// every other host kept, then moves it over the original (same permissions).
fn write_inventory(g: &Global, r: &Removal, text: &str) -> Result<(), CliError> {
    let path = &r.inventory;
    let name = path
        .file_name()
        .map_or_else(|| "inventory".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".labctl-remove-node.{name}"));
    let mode = std::fs::metadata(path).map_or(0o644, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
    });
    crate::fsutil::write_atomic(&tmp, text.as_bytes(), mode, false)?;
    let bad = |why: String| {
        let _ = std::fs::remove_file(&tmp);
        CliError::new(
            Exit::Failed,
            format!(
                "the edited inventory was not written ({why}); {} is unchanged: take {} out by hand",
                path.display(),
                r.host
            ),
        )
    };
    // Its host_vars would name a host the edited inventory lacks: moved aside only after
    // the new text is in place, so the check here passes them over (they are dot-files then).
    let keys = super::load::keyring(g)?;
    let check = with_host_vars_aside(&r.host_vars, || {
        super::load::inventory(&g.sh, &tmp, &keys, &super::load::passwords(g))
    });
    let inv = check.map_err(|e| bad(format!("it does not load: {e}")))?;
    let mut left: Vec<String> = inv.hosts.keys().cloned().collect();
    left.sort();
    let mut want = r.remaining.clone();
    want.sort();
    if left != want {
        return Err(bad(format!(
            "it would hold {left:?} where {want:?} was expected"
        )));
    }
    std::fs::rename(&tmp, path).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// Runs `f` with the host_vars entries renamed to their set-aside names, then renames them back.
fn with_host_vars_aside<T>(files: &[String], f: impl FnOnce() -> T) -> T {
    let moved: Vec<&String> = files
        .iter()
        .filter(|p| std::fs::rename(p, edit::set_aside(p)).is_ok())
        .collect();
    let out = f();
    for p in moved {
        let _ = std::fs::rename(edit::set_aside(p), p);
    }
    out
}

fn plan_text(r: &Removal, steps: &[Step], o: &Opts) -> String {
    let mut t = format!("Remove {}", r.host);
    if let Some(n) = &r.node {
        t.push_str(&format!(" (k3s node {n})"));
    }
    t.push_str(":\n");
    for (i, s) in steps.iter().enumerate() {
        t.push_str(&format!("  {}. {}\n", i + 1, s.describe(o)));
    }
    t
}

fn progress(sh: &Shell, e: Event, o: &Opts) {
    match e {
        Event::Step(s) => sh.status("", &s.describe(o)),
        Event::NoNode(n) => sh.status(
            "Skipped",
            &format!("drain and delete: the cluster has no node {n}"),
        ),
        Event::Unreachable { host, why } => sh.warn(&format!(
            "{host} cannot be reached to stop k3s ({why}); removing it all the same"
        )),
    }
}
