//! `labctl uninstall-cluster [SITE] -i INVENTORY`: k3s off every host of the cluster, agents
//! first, with the ufw rules labctl added for it (the uninstall itself is `crate::uninstall`).
//! Which hosts run k3s, as server or agent, and which firewall rules are the cluster's, come
//! from the site compiled as `plan` compiles it (`k3s_node_role`, `firewall_cluster_rules`).
//! Asks first on a terminal, refuses without one unless `--yes`, as `apply`, `reboot` and
//! `remove-node` do; `--check` only prints the steps.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::error::{CliError, Exit};
use crate::resources::ufw::RuleDeletion;
use crate::ui::Shell;
use crate::uninstall::{self, Event, HostReport, Opts, Role, Status, Target};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The site file: which hosts run the k3s role (server or agent), and the firewall's rules
    #[arg(default_value = "site.yml")]
    site: PathBuf,
    /// Inventory file (Ansible YAML format, or INI)
    #[arg(short = 'i', long, env = super::INVENTORY_ENV, default_value = super::INVENTORY)]
    inventory: PathBuf,
    /// Only these hosts: a pattern like `lab`, `lab-1`, `all:!k3s_agents`, `web*`
    #[arg(short = 'l', long)]
    limit: Option<String>,
    /// Extra vars, as plan takes them: key=value or @file.yml
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE")]
    extra_vars: Vec<String>,
    /// Print what would be done, host by host, and change nothing (no host is contacted)
    #[arg(long)]
    check: bool,
    /// Uninstall without asking first (for scripts); without it, a non-terminal stdin refuses
    #[arg(short = 'y', long, conflicts_with = "check")]
    yes: bool,
    /// Trust the host key of hosts not yet in known_hosts (changed keys are always refused)
    #[arg(long)]
    accept_new_host_keys: bool,
    /// Seconds to wait for a host to answer SSH
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds one step on a host may take
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    step_timeout: u64,
}

/// The vars that name backup folders, each kept and reported: the datastore's, PostgreSQL's,
/// the volumes' and the k3s upgrades'. One inside a folder the uninstall removes (k3s's data
/// folder, say) is refused before any host is contacted: it would be deleted, yet said kept.
const KEPT_VARS: [&str; 4] = [
    "k3s_backup_dir",
    "pg_backup_dir",
    "volume_backup_dir",
    "k3s_upgrade_backup_dir",
];

pub fn run(g: &Global, a: UninstallArgs) -> Result<Exit, CliError> {
    // Refused before anything is read or contacted, as `apply` is.
    super::confirm::refuse_without_terminal(
        a.check || a.yes,
        "uninstall the cluster",
        "pass --yes to uninstall it without asking, or --check to see the steps",
    )?;
    let sh = &g.sh;
    let t = super::Target {
        site: a.site.clone(),
        inventory: a.inventory.clone(),
        select: crate::site::select::Selection {
            tags: vec![],
            skip_tags: vec![],
            limit: a.limit.clone(),
        },
        extra_vars: a.extra_vars.clone(),
    };
    // --check needs no secret: an unopened vault is read as placeholders, as `check` does.
    let l = super::load::load(sh, g, &t, a.check)?;
    let targets = targets(&l.compiled)?;
    if targets.is_empty() {
        sh.status(
            "Nothing",
            "to uninstall: no selected host runs the k3s role or carries the cluster's firewall rules",
        );
        if g.json {
            sh.out(&crate::ui::json_envelope(
                "uninstall-cluster",
                &json!({ "hosts": [] }),
            )?);
        }
        return Ok(Exit::Ok);
    }
    let targets = uninstall::order(targets);
    let o = Opts {
        host_keys: crate::transport::HostKeyPolicy::from_flag(a.accept_new_host_keys),
        connect_timeout: Duration::from_secs(a.connect_timeout),
        step_timeout: Duration::from_secs(a.step_timeout),
    };
    let plan = plan_text(&targets)?;
    let will = format!(
        "\nlabctl will uninstall k3s from the {} host(s) above: the cluster, its workloads and its volumes are gone afterwards.\n",
        targets.len()
    );
    if let Some(exit) = super::confirm::check_or_ask(
        g,
        "uninstall-cluster",
        (a.check, a.yes),
        (&plan, &will),
        || plan_json(&targets),
        "Uninstall the cluster? Only 'yes' is accepted",
    )? {
        return Ok(exit);
    }
    let on = |e: Event| progress(sh, e);
    let (reports, exit) = super::engine::runtime().block_on(uninstall::uninstall(targets, &o, &on));
    super::confirm::print_reports(g, "uninstall-cluster", &reports, || recap(sh, &reports))?;
    Ok(exit)
}

/// Who is uninstalled: the selected hosts that run the k3s role (its `k3s_node_role` says
/// server or agent) or that have cluster firewall rules (`firewall_cluster_rules`, from
/// whichever of their roles sets it), in the inventory's order.
fn targets(c: &crate::site::select::Compiled) -> Result<Vec<Target>, CliError> {
    let mut v = Vec::new();
    // Backup folders the uninstall would delete while reporting them kept: refused for every
    // host before any host is contacted.
    let mut doomed: Vec<String> = Vec::new();
    for h in &c.hosts {
        let var = |name: &str| {
            h.roles
                .iter()
                .find_map(|r| r.vars.values.get(name).filter(|v| !v.is_null()))
        };
        let role = match h.roles.iter().find(|r| r.role == "k3s") {
            Some(r) => match r.vars.values.get("k3s_node_role").and_then(|v| v.as_str()) {
                Some("server") => Role::Server,
                _ => Role::Agent,
            },
            None => Role::FirewallOnly,
        };
        let ufw_rules = var("firewall_cluster_rules")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if !ufw_rules.is_null() && !ufw_rules.is_array() {
            return Err(CliError::new(
                Exit::BadInput,
                format!("{}: firewall_cluster_rules is not a list of rules", h.host),
            ));
        }
        let has_rules = ufw_rules.as_array().is_some_and(|a| !a.is_empty());
        if role == Role::FirewallOnly && !has_rules {
            continue;
        }
        let mut kept: Vec<String> = Vec::new();
        if role != Role::FirewallOnly {
            for k in KEPT_VARS {
                if let Some(d) = var(k).and_then(|v| v.as_str()) {
                    if !d.starts_with('/') {
                        continue;
                    }
                    if let Some(removed) = uninstall::removed_with(d) {
                        doomed.push(format!(
                            "{}: {k} is {d}; uninstall-cluster removes {removed}",
                            h.host
                        ));
                    } else if !kept.iter().any(|x| x == d) {
                        kept.push(d.to_string());
                    }
                }
            }
        }
        let mut conn = h.conn.clone();
        // Uninstalling is root's, whatever ansible_become says (sudo -n when not root).
        conn.become_ = true;
        v.push(Target {
            host: h.host.clone(),
            conn,
            role,
            ufw_rules,
            kept,
        });
    }
    if !doomed.is_empty() {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "refusing to uninstall the cluster: a backup folder it would keep lies in what it removes, and would be deleted with it\n{}\n  = help: move those backups to a folder outside k3s's (the roles' defaults are under /var/backups and /var/lib/labctl), point the var at it, and run again; nothing was changed",
                doomed.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    Ok(v)
}

fn role_words(r: Role) -> &'static str {
    match r {
        Role::Agent => "k3s agent",
        Role::Server => "k3s server",
        Role::FirewallOnly => "no k3s; the cluster's firewall rules only",
    }
}

fn labels(t: &Target) -> Result<Vec<String>, CliError> {
    if t.ufw_rules.is_null() {
        return Ok(vec![]);
    }
    RuleDeletion::labels(&t.ufw_rules).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("{}: firewall_cluster_rules: {e}", t.host),
        )
    })
}

fn plan_text(targets: &[Target]) -> Result<String, CliError> {
    let mut t = String::from("Uninstall the k3s cluster, agents first, then servers:\n");
    for (i, h) in targets.iter().enumerate() {
        t.push_str(&format!("{}. {} ({})\n", i + 1, h.host, role_words(h.role)));
        for s in uninstall::planned(h, &labels(h)?) {
            t.push_str(&format!("     {}\n", s.describe()));
        }
    }
    t.push_str("Each step runs only for what the host has; a second run finds nothing to do.\n");
    t.push_str("Kept: WireGuard, SSH, users, ufw and every other rule");
    let kept: Vec<String> = targets
        .iter()
        .flat_map(|h| h.kept.iter().map(move |d| format!("{}:{d}", h.host)))
        .collect();
    if !kept.is_empty() {
        t.push_str(&format!("; the backups in {}", kept.join(", ")));
    }
    t.push_str(".\n");
    Ok(t)
}

fn plan_json(targets: &[Target]) -> serde_json::Value {
    json!({
        "hosts": targets.iter().map(|h| json!({
            "host": h.host,
            "role": h.role,
            "steps": uninstall::planned(h, &labels(h).unwrap_or_default()),
            "kept": h.kept,
        })).collect::<Vec<_>>(),
    })
}

fn progress(sh: &Shell, e: Event) {
    match e {
        Event::Start {
            host,
            role,
            index,
            of,
        } => sh.status(
            "Uninstalling",
            &format!("{host} ({}; {index}/{of})", role_words(role)),
        ),
        Event::Step { host, step } => sh.status("", &format!("{host}: {}", step.describe())),
        Event::Nothing { host } => sh.status("Nothing", &format!("to do on {host}")),
        Event::Done { host } => {
            sh.status("Done", &format!("{host}: nothing of the cluster is left"))
        }
        Event::Failed { host, error } => sh.error(&format!("{host}: {error}")),
    }
}

fn recap(sh: &Shell, reports: &[HostReport]) -> String {
    let mut t = crate::ui::host_recap(
        "Uninstall recap",
        reports.iter().map(|r| {
            let word = match r.status {
                Status::Uninstalled => sh.paint("32", "uninstalled"),
                Status::NothingToDo => sh.paint("32", "nothing to do"),
                Status::Failed => sh.paint("31", "FAILED"),
            };
            (r.host.as_str(), word, r.error.as_deref())
        }),
    );
    let kept: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.kept.iter().map(move |k| {
                let (d, newest) = (&k.dir, &k.newest);
                match k.entries {
                    0 => format!("  {}:{d} (empty)", r.host),
                    1 => format!("  {}:{d} (1 entry, newest {newest})", r.host),
                    n => format!("  {}:{d} ({n} entries, newest {newest})", r.host),
                }
            })
        })
        .collect();
    if !kept.is_empty() {
        t.push_str("Kept backups (restore: docs/backups.md)\n");
        for k in kept {
            t.push_str(&k);
            t.push('\n');
        }
    }
    t
}
