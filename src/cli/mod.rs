//! Command line: clap definitions and one function per subcommand.

mod adhoc;
mod confirm;
mod doc;
mod engine;
mod history;
mod import;
mod info;
mod init;
pub(crate) mod load;
mod reboot;
mod removenode;
pub(crate) mod render;
mod run;
mod seal;
mod uninstall;
mod unlock;
mod vault;
mod wireguard;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::error::{CliError, Exit};

const EXIT_CODES: &str = "Exit codes:
  0    success (plan: no drift)
  1    a step, probe or handler failed on a host (reboot: a host did not come back, or a
       drain failed)
  2    plan only: changes are pending (import-ansible: something was left out)
  3    bad input (inventory, site, role, template, command line; apply or reboot without a
       terminal and without --yes (or --plan), remove-node and uninstall-cluster likewise);
       nothing was contacted
  4    vault problem (no key, wrong key, tampered or truncated file); nothing was contacted
  5    refused for safety (stale saved plan, untrusted host key, host locked by a live run,
       `no` at apply's or reboot's question, init on an existing repo)
  6    every failing host was unreachable
  130  interrupted";

/// `-i/--inventory` where no flag says otherwise, and the variable that says so for every command
/// that takes one (`run`, `kubectl`, `inventory`, `reboot`, `remove-node`, `uninstall-cluster`
/// and the site commands).
const INVENTORY: &str = "inventories/lab/hosts.yml";
const INVENTORY_ENV: &str = "LABCTL_INVENTORY";

#[derive(Debug, Parser)]
#[command(
    name = "labctl",
    version,
    about = "Plan and apply a small k3s lab on Debian/Ubuntu hosts over SSH",
    long_about = "labctl replaces ansible-playbook for small k3s labs: an Ansible-format inventory, roles as YAML data, \
age-encrypted secrets, one probe per host, and a plan you can read before anything changes.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// More detail on stderr (-v: per-host progress, -vv: remote stderr and timings)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Colour: auto, always, never
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "always", "never"])]
    color: String,
    /// age identity file for vaults (else $LABCTL_AGE_KEY_FILE, $SOPS_AGE_KEY_FILE, ~/.config/labctl/age.key)
    #[arg(long, global = true, value_name = "FILE")]
    vault_key: Option<PathBuf>,
    /// ansible-vault password file, or an executable that prints the password (repeatable; else
    /// $ANSIBLE_VAULT_PASSWORD_FILE, else a prompt when stdin is a terminal)
    #[arg(long, global = true, value_name = "FILE")]
    vault_password_file: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The site file: an ordered list of plays
    #[arg(default_value = "site.yml")]
    pub site: PathBuf,
    /// Inventory file (Ansible YAML format)
    #[arg(short = 'i', long, env = INVENTORY_ENV, default_value = INVENTORY)]
    pub inventory: PathBuf,
    #[command(flatten)]
    pub select: crate::site::select::Selection,
    /// Extra vars, highest precedence: key=value (value read as YAML) or @file.yml
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Hosts handled in parallel
    #[arg(short = 'f', long, default_value_t = 10)]
    pub forks: usize,
    /// Trust the host key of hosts not yet in known_hosts (changed keys are always refused)
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for a host to answer SSH
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds one remote execution (a probe, a resource's steps) may take
    #[arg(long, default_value_t = 900)]
    pub step_timeout: u64,
    /// apply: rolling batches of N hosts (the next batch starts when one is done)
    #[arg(long, value_name = "N")]
    pub serial: Option<usize>,
    /// apply: stop before the next batch when more than this percentage of hosts failed
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail_percent: Option<u8>,
}

impl Conn {
    /// `--accept-new-host-keys` as the transport's policy.
    pub fn host_key_policy(&self) -> crate::transport::HostKeyPolicy {
        crate::transport::HostKeyPolicy::from_flag(self.accept_new_host_keys)
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show what would change on each host (changes nothing). Exit 0: no drift, 2: changes pending
    Plan {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        conn: Conn,
        /// Save the plan (JSON, no secrets) for `apply --plan`
        #[arg(long, value_name = "PLANFILE")]
        out: Option<PathBuf>,
        /// After the plan, where the time went: per host and phase, waiting on the host vs
        /// labctl's own work, and labctl's CPU (with --json: a `timings` key)
        #[arg(long)]
        timings: bool,
    },
    /// Converge: change what drifted, fire handlers, print a recap
    ///
    /// On a terminal, apply first shows the plan and asks; only `yes` goes ahead, and exactly
    /// the plan shown is applied (a host that moved meanwhile is refused, exit 5). Without a
    /// terminal (scripts, CI) apply refuses (exit 3, nothing contacted) unless --yes or --plan
    /// FILE says what is approved. Every apply appends a line to .labctl/runs.jsonl (`labctl
    /// history`).
    Apply {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        conn: Conn,
        /// Apply exactly this saved plan; refused for hosts whose facts moved since
        #[arg(long, value_name = "PLANFILE")]
        plan: Option<PathBuf>,
        /// Apply without showing the plan and asking first (for scripts and CI)
        #[arg(short = 'y', long, conflicts_with = "plan")]
        yes: bool,
        /// After the recap, where the time went: per host and phase (connect, probe, diff, each
        /// change or batch, handlers), waiting on the host vs labctl's own work, and labctl's CPU
        /// (with --json: a `timings` key)
        #[arg(long)]
        timings: bool,
    },
    /// Write a labctl project from an Ansible playbook and its roles, reporting what was
    /// translated, approximated and left out (file:line). Exit 0: all translated, 2: something
    /// was left out, 3: unreadable input
    ImportAnsible(import::ImportArgs),
    /// Make a new lab repo (asks on a terminal, or takes flags), or --add-host to an existing one
    Init(init::InitArgs),
    /// Validate inventory, site, roles and templates offline (no SSH); report every problem
    Check {
        #[command(flatten)]
        target: Target,
    },
    /// Write what the site would send to the cluster, offline: values, manifests, Secrets
    /// (values read <secret>), and each chart rendered by the real helm from charts/
    ///
    /// With the kept charts (charts/NAME-VERSION.tgz), helm ($LABCTL_HELM or on PATH) and the
    /// Kubernetes schemas ($LABCTL_K8S_SCHEMAS), every release is rendered with `helm template`
    /// and every object validated strictly (the render gate; exit 3 on any problem). Without
    /// them, values and manifests are still written, and a warning says what was not done.
    Render {
        #[command(flatten)]
        target: Target,
        /// Only this host (default: every selected host that sends anything to a cluster)
        #[arg(long)]
        host: Option<String>,
        /// Write files into DIR/HOST/ instead of one YAML stream on stdout
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Kubernetes version to render for (default: from the host's k3s_version)
        #[arg(long, value_name = "VERSION")]
        kube_version: Option<String>,
    },
    /// The last applies in this project (from .labctl/runs.jsonl): who, when, which commit, what changed
    History {
        /// The site file; the log is in its folder
        #[arg(default_value = "site.yml")]
        site: PathBuf,
        /// How many runs to show
        #[arg(short = 'n', long, default_value_t = 10)]
        last: usize,
    },
    /// Print the facts labctl reads on a host (JSON)
    Facts {
        /// Host name from the inventory
        host: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show who holds a host's run lock and break it (asks first; --yes to skip the question)
    Unlock {
        /// Host name from the inventory
        host: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        conn: Conn,
        /// Break the lock without asking (for scripts); without it, a non-terminal stdin refuses
        #[arg(long)]
        yes: bool,
    },
    /// Print hosts, groups and merged vars (like ansible-inventory --list); secrets shown as <secret>
    Inventory {
        /// Inventory file
        #[arg(short = 'i', long, env = INVENTORY_ENV, default_value = INVENTORY)]
        inventory: PathBuf,
        /// Only this host's vars
        #[arg(long, conflicts_with = "list")]
        host: Option<String>,
        /// Every host and group (the default; accepted as ansible-inventory spells it)
        #[arg(long)]
        list: bool,
    },
    /// WireGuard helpers
    Wireguard {
        #[command(subcommand)]
        cmd: WgCmd,
    },
    /// age-encrypted vault files
    Vault {
        #[command(subcommand)]
        cmd: vault::VaultCmd,
    },
    /// Seal vault values into a SealedSecret manifest for the apps repo Argo CD deploys
    ///
    /// Each KEY=VAULT_PATH is sealed for the cluster's sealed-secrets controller (its public
    /// certificate, --cert), bound to --namespace/--name (strict scope): only that controller can
    /// turn it back into the Secret. The manifest goes to stdout or --out; it holds no secret.
    Seal {
        #[command(flatten)]
        args: crate::vault::seal::SealArgs,
    },
    /// Disposable Debian 12 or 13 test hosts (systemd-nspawn) with an inventory
    Testbed {
        #[command(subcommand)]
        cmd: crate::testbed::TestbedCmd,
    },
    /// Run a shell command on the hosts a pattern selects, in parallel (like `ansible PATTERN -m shell -a`)
    Run {
        /// Host pattern: `all`, a group, a host, `web*`, `~regex`, `group[0]`, `a:!b`
        pattern: String,
        /// The command line, after `--`
        #[arg(last = true, required = true)]
        command: Vec<String>,
        #[arg(short = 'i', long, env = INVENTORY_ENV, default_value = INVENTORY)]
        inventory: PathBuf,
        /// Run as root (sudo -n), whatever ansible_become says
        #[arg(short = 'b', long = "become")]
        become_: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Reboot the hosts a pattern selects, one at a time: k3s nodes are drained first (kubectl on
    /// the k3s server), each host must answer SSH with a new boot id (and its Node be Ready,
    /// then uncordoned) before the next; one that does not come back stops the rollout (exit 1)
    ///
    /// On a terminal it shows the steps and asks (only `yes` goes ahead); without a terminal it
    /// refuses (exit 3, nothing contacted) unless --yes. --check prints the steps only.
    Reboot(reboot::RebootArgs),
    /// Remove a host from the lab: a k3s agent is drained, its k3s stopped and its Node deleted;
    /// its lines are cut out of the inventory; the remaining hosts converge without it
    /// (`apply --tags wireguard,firewall`: WireGuard peers and firewall rules)
    ///
    /// On a terminal it shows the steps and asks (only `yes` goes ahead); without a terminal it
    /// refuses (exit 3, nothing contacted) unless --yes. --check prints the steps only. A name no
    /// longer in the inventory is nothing to do (exit 0).
    RemoveNode(removenode::RemoveNodeArgs),
    /// Uninstall k3s from the whole cluster, as k3s's own uninstall scripts do: agents first,
    /// then servers; units stopped and disabled, shims killed, pod mounts, CNI interfaces and
    /// KUBE-/CNI-/flannel iptables rules gone, units, binary and data removed; and the ufw rules
    /// labctl added for the cluster (`firewall_cluster_rules`), no other rule
    ///
    /// Kept: WireGuard, SSH, users, ufw's other rules and the backups (their folders are
    /// printed). On a terminal it shows the steps and asks (only `yes` goes ahead); without a
    /// terminal it refuses (exit 3, nothing contacted) unless --yes. --check prints the steps
    /// only. A second run finds nothing to do (exit 0).
    UninstallCluster(uninstall::UninstallArgs),
    /// Run kubectl on the first k3s server (group `k3s_server`, or `server`), as root
    Kubectl {
        /// kubectl's arguments, after `--`
        #[arg(last = true, required = true)]
        args: Vec<String>,
        /// Run it on this host instead
        #[arg(long, value_name = "HOST")]
        on: Option<String>,
        #[arg(short = 'i', long, env = INVENTORY_ENV, default_value = INVENTORY)]
        inventory: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// A resource type's reference (keys, examples); without TYPE, the list of types
    Doc {
        /// A resource type, e.g. `file`, `service`
        #[arg(value_name = "TYPE")]
        kind: Option<String>,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages into a folder
    Man {
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WgCmd {
    /// Print the client config for an admin peer listed in `wg_peers` (import it on the laptop).
    /// The vars are the wireguard role's, as `plan` sees them (play vars and -e included)
    PeerConfig {
        /// The peer's `name` in wg_peers
        peer: String,
        #[command(flatten)]
        target: Target,
    },
}

pub struct Global {
    /// The one output shell of this run: every subcommand prints through it.
    pub sh: std::sync::Arc<crate::ui::Shell>,
    pub verbose: u8,
    pub json: bool,
    pub vault_key: Option<PathBuf>,
    pub vault_password_files: Vec<PathBuf>,
}

pub fn main() -> i32 {
    // clap exits 2 on usage errors, which is `plan`'s "changes pending": map them to 3.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok.code()
                }
                _ => Exit::BadInput.code(),
            };
        }
    };
    let color = match cli.color.as_str() {
        "always" => Some(true),
        "never" => Some(false),
        _ => None,
    };
    let g = Global {
        sh: std::sync::Arc::new(crate::ui::Shell::stdio(color, cli.verbose)),
        verbose: cli.verbose,
        json: cli.json,
        vault_key: cli.vault_key,
        vault_password_files: cli.vault_password_file,
    };
    init_logging(g.verbose);
    let r = match cli.cmd {
        Cmd::Plan {
            target,
            conn,
            out,
            timings,
        } => run::plan(&g, &target, &conn, out.as_deref(), timings),
        Cmd::Apply {
            target,
            conn,
            plan,
            yes,
            timings,
        } => run::apply(
            &g,
            &target,
            &conn,
            plan.as_deref(),
            if yes {
                run::Approve::Yes
            } else {
                run::Approve::Ask
            },
            timings,
        ),
        Cmd::History { site, last } => history::history(&g, &site, last),
        Cmd::Doc { kind } => doc::doc(&g, kind.as_deref()),
        Cmd::Check { target } => run::check(&g, &target),
        Cmd::Render {
            target,
            host,
            out,
            kube_version,
        } => render::render(
            &g,
            &target,
            host.as_deref(),
            out.as_deref(),
            kube_version.as_deref(),
        ),
        Cmd::Init(a) => init::run(&g, a),
        Cmd::ImportAnsible(a) => import::run(&g, a),
        Cmd::Facts { host, target, conn } => info::facts(&g, &host, &target, &conn),
        Cmd::Unlock {
            host,
            target,
            conn,
            yes,
        } => unlock::unlock(&g, &host, &target, &conn, yes),
        Cmd::Inventory {
            inventory, host, ..
        } => info::inventory(&g, &inventory, host.as_deref()),
        Cmd::Wireguard {
            cmd: WgCmd::PeerConfig { peer, target },
        } => wireguard::peer_config(&g, &peer, &target),
        Cmd::Vault { cmd } => vault::run(&g, cmd),
        Cmd::Seal { args } => seal::seal(&g, args),
        Cmd::Testbed { cmd } => crate::testbed::run(&g.sh, cmd),
        Cmd::Run {
            pattern,
            command,
            inventory,
            become_,
            conn,
        } => adhoc::run(&g, &inventory, &pattern, &command, become_, &conn),
        Cmd::Kubectl {
            args,
            on,
            inventory,
            conn,
        } => adhoc::kubectl(&g, &inventory, &args, on.as_deref(), &conn),
        Cmd::Reboot(a) => reboot::run(&g, a),
        Cmd::RemoveNode(a) => removenode::run(&g, a),
        Cmd::UninstallCluster(a) => uninstall::run(&g, a),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "labctl", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Cmd::Man { out } => man(&g, &out),
    };
    match r {
        Ok(exit) | Err(CliError::Reported(exit)) => exit.code(),
        Err(e) => {
            g.sh.error(&e.to_string());
            e.exit().code()
        }
    }
}

fn man(g: &Global, out: &std::path::Path) -> Result<Exit, CliError> {
    std::fs::create_dir_all(out)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, out)?;
    g.sh.err(&format!("man pages written to {}\n", out.display()));
    Ok(Exit::Ok)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LABCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("labctl={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::ui::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
