//! `labctl reboot PATTERN`: the hosts a pattern selects, rebooted one at a time, k3s nodes
//! drained first and uncordoned once Ready (the rollout itself is `crate::reboot`). Asks first
//! on a terminal, refuses without one unless `--yes`, as `apply` does; `--check` only prints
//! the steps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::error::{CliError, Exit};
use crate::inventory::Inventory;
use crate::reboot::{self, Event, HostReport, Opts, Server, Status, Target};
use crate::ui::Shell;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct RebootArgs {
    /// Host pattern (as --limit takes it): `all`, a group, a host, `web*`, `a:!b`
    pattern: String,
    /// Inventory file (Ansible YAML format)
    #[arg(short = 'i', long, env = super::INVENTORY_ENV, default_value = super::INVENTORY)]
    inventory: PathBuf,
    /// Print what would be done, host by host, and change nothing (no host is contacted)
    #[arg(long)]
    check: bool,
    /// Reboot without asking first (for scripts); without it, a non-terminal stdin refuses
    #[arg(short = 'y', long, conflicts_with = "check")]
    yes: bool,
    /// Seconds `kubectl drain` may take to evict a node's pods
    #[arg(long, value_name = "SECS", default_value_t = reboot::DRAIN_TIMEOUT_SECS)]
    drain_timeout: u64,
    /// Seconds a host may take after `systemctl reboot` to answer SSH with a new boot id, and
    /// then its Node to be Ready; past it the rollout stops (exit 1)
    #[arg(long, value_name = "SECS", default_value_t = reboot::TIMEOUT_SECS)]
    timeout: u64,
    /// Trust the host key of hosts not yet in known_hosts (changed keys are always refused)
    #[arg(long)]
    accept_new_host_keys: bool,
    /// Seconds to wait for a host to answer SSH (each attempt)
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u64,
}

/// The k3s groups, as `labctl kubectl` and the k3s role name them (k3s-ansible's spelling too).
pub(super) const SERVER_GROUPS: [&str; 2] = ["k3s_server", "server"];
pub(super) const AGENT_GROUPS: [&str; 2] = ["k3s_agents", "agent"];

/// The k3s role names the Node `k3s_node_name`, by default the inventory name; an inventory
/// that sets it to a plain string is followed.
pub(super) fn node_name(
    vars: &indexmap::IndexMap<String, crate::inventory::VarLayer>,
    h: &str,
) -> String {
    vars.get(h)
        .and_then(|l| l.values.get("k3s_node_name"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.contains("{{"))
        .map_or_else(|| h.to_string(), str::to_string)
}

pub fn run(g: &Global, a: RebootArgs) -> Result<Exit, CliError> {
    // Refused before anything is read or contacted, as `apply` is: a script that means to
    // reboot hosts says so.
    super::confirm::refuse_without_terminal(
        a.check || a.yes,
        "reboot",
        "pass --yes to reboot without asking, or --check to see the steps",
    )?;
    let (targets, server) = targets(g, &a.inventory, &a.pattern)?;
    let o = Opts {
        host_keys: crate::transport::HostKeyPolicy::from_flag(a.accept_new_host_keys),
        connect_timeout: Duration::from_secs(a.connect_timeout),
        drain_timeout: Duration::from_secs(a.drain_timeout),
        timeout: Duration::from_secs(a.timeout),
        poll: Duration::from_secs(2),
        record: crate::apply::RunInfo::new().record(),
    };

    let sh = &g.sh;
    let plan = plan_text(&targets, server.as_ref(), &o);
    let will = format!(
        "\nlabctl will reboot {} host(s) above, one at a time.\n",
        targets.len()
    );
    if let Some(exit) = super::confirm::check_or_ask(
        g,
        "reboot",
        (a.check, a.yes),
        (&plan, &will),
        || plan_json(&targets, &o),
        "Reboot them? Only 'yes' is accepted",
    )? {
        return Ok(exit);
    }
    let reports = roll(sh, &targets, server.as_ref(), &o);
    super::confirm::print_reports(g, "reboot", &reports, || recap(sh, &reports))?;
    Ok(reboot::exit_of(&reports))
}

/// The hosts `pattern` selects, in inventory order, as the rollout takes them (each k3s node
/// with its Node name), and the k3s server that drains them.
pub(super) fn targets(
    g: &Global,
    inventory: &Path,
    pattern: &str,
) -> Result<(Vec<Target>, Option<Server>), CliError> {
    let (inv, selected, vars) = super::adhoc::targets_with_vars(g, inventory, pattern)?;
    if selected.is_empty() {
        return Err(CliError::new(
            Exit::BadInput,
            format!("host pattern `{pattern}` selects no host"),
        ));
    }
    let groups = inv.groups_map();
    let in_groups = |h: &str, names: &[&str]| {
        names
            .iter()
            .any(|n| groups.get(*n).is_some_and(|hs| hs.iter().any(|x| x == h)))
    };
    let targets: Vec<Target> = selected
        .into_iter()
        .map(|(host, mut conn)| {
            // Rebooting and reading what it needs is root's, whatever ansible_become says.
            conn.become_ = true;
            let node = (in_groups(&host, &SERVER_GROUPS) || in_groups(&host, &AGENT_GROUPS))
                .then(|| node_name(&vars, &host));
            Target { host, conn, node }
        })
        .collect();
    let server = server(&vars, inventory, &groups)?;
    if server.is_none() && targets.iter().any(|t| t.node.is_some()) {
        return Err(CliError::new(
            Exit::BadInput,
            "k3s nodes selected but no k3s server to drain them from: the inventory has no host in group `k3s_server` (or `server`)",
        ));
    }
    Ok((targets, server))
}

/// The rollout, its progress printed as it goes, and its recap (unless `--json`).
pub(super) fn roll(
    sh: &Shell,
    targets: &[Target],
    server: Option<&Server>,
    o: &Opts,
) -> Vec<HostReport> {
    let on = |e: Event| progress(sh, e, o);
    super::engine::runtime().block_on(reboot::rollout(targets, server, o, &on))
}

/// The first k3s server, where kubectl runs as root.
pub(super) fn server(
    vars: &indexmap::IndexMap<String, crate::inventory::VarLayer>,
    inv_path: &Path,
    groups: &indexmap::IndexMap<String, Vec<String>>,
) -> Result<Option<Server>, CliError> {
    let Some(host) = SERVER_GROUPS
        .iter()
        .find_map(|g| groups.get(*g).and_then(|hs| hs.first().cloned()))
    else {
        return Ok(None);
    };
    let root = inv_path.parent().unwrap_or(Path::new("."));
    let values = vars
        .get(&host)
        .map(|l| l.values.clone())
        .unwrap_or_default();
    let mut conn = Inventory::conn(&host, &values, root)
        .map_err(|e| CliError::new(Exit::BadInput, e.to_string()))?;
    conn.become_ = true;
    Ok(Some(Server { host, conn }))
}

fn plan_text(targets: &[Target], server: Option<&Server>, o: &Opts) -> String {
    let mut t = String::new();
    for (i, h) in targets.iter().enumerate() {
        let what = match &h.node {
            Some(n) => format!(
                " (k3s node {n}; kubectl on {})",
                server.map_or("?", |s| s.host.as_str())
            ),
            None => String::new(),
        };
        t.push_str(&format!("{}. {}{what}\n", i + 1, h.host));
        for s in reboot::steps(h) {
            t.push_str(&format!("     {}\n", s.describe(o)));
        }
    }
    t.push_str(&format!(
        "One host at a time; a host that does not come back within {}s stops the rollout (the rest stay untouched).\n",
        o.timeout.as_secs()
    ));
    t
}

fn plan_json(targets: &[Target], o: &Opts) -> serde_json::Value {
    json!({
        "hosts": targets.iter().map(|h| json!({
            "host": h.host,
            "node": h.node,
            "steps": reboot::steps(h),
        })).collect::<Vec<_>>(),
        "timeout_secs": o.timeout.as_secs(),
        "drain_timeout_secs": o.drain_timeout.as_secs(),
    })
}

fn progress(sh: &Shell, e: Event, o: &Opts) {
    match e {
        Event::Start { host, index, of } => {
            sh.status("Rebooting", &format!("{host} ({index}/{of})"))
        }
        Event::Step { host, step } => sh.status("", &format!("{host}: {}", step.describe(o))),
        Event::Done { host, secs } => sh.status("Back", &format!("{host} in {secs:.0}s")),
        Event::Failed { host, error } => sh.error(&format!("{host}: {error}")),
        Event::Skipped { host } => sh.status("Untouched", &format!("{host} (the rollout stopped)")),
    }
}

pub(super) fn recap(sh: &Shell, reports: &[HostReport]) -> String {
    crate::ui::host_recap(
        "Reboot recap",
        reports.iter().map(|r| {
            let word = match r.status {
                Status::Rebooted => sh.paint("32", "rebooted"),
                Status::Failed => sh.paint("31", "FAILED"),
                Status::Untouched => sh.paint("33", "untouched"),
            };
            (r.host.as_str(), word, r.error.as_deref())
        }),
    )
}
