//! Ad-hoc commands: `labctl run PATTERN -- COMMAND` (Ansible's `ansible PATTERN -m shell -a`)
//! and `labctl kubectl -- ARGS` (kubectl on the first k3s server). No site, no roles: only the
//! inventory and its connection vars.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::error::{CliError, Exit};
use crate::inventory::{pattern, Inventory, VarLayer};
use crate::template::Engine;
use crate::transport::{Transport, TransportError};

use super::{load, Conn, Global};

/// One host's result: its exit status and output, or why it could not run (typed as plan's and
/// apply's are, so the three commands share one exit rule).
enum Outcome {
    Ran {
        status: i32,
        stdout: String,
        stderr: String,
    },
    Refused(crate::plan::HostError),
}

/// Connection settings of every host the pattern selects, from the resolved inventory vars.
fn targets(
    g: &Global,
    inv_path: &Path,
    host_pattern: &str,
) -> Result<(Inventory, Vec<(String, crate::inventory::Conn)>), CliError> {
    targets_with_vars(g, inv_path, host_pattern).map(|(inv, t, _)| (inv, t))
}

/// The selected hosts in pattern order, each with its connection settings, and every host's
/// resolved inventory vars (`reboot` reads `k3s_node_name` there).
pub(super) type Selected = (
    Inventory,
    Vec<(String, crate::inventory::Conn)>,
    IndexMap<String, VarLayer>,
);

pub(super) fn targets_with_vars(
    g: &Global,
    inv_path: &Path,
    host_pattern: &str,
) -> Result<Selected, CliError> {
    let keys = load::keyring(g)?;
    let inv = load::inventory(&g.sh, inv_path, &keys, &load::passwords(g))?;
    if !inv.unopened_vaults.is_empty() {
        return Err(CliError::new(
            Exit::Vault,
            format!(
                "cannot open {}",
                load::unopened_message(&inv.unopened_vaults)
            ),
        ));
    }
    let hosts = pattern::select(&inv, host_pattern)
        .map_err(|e| CliError::new(Exit::BadInput, format!("host pattern: {e}")))?;
    let root = inv_path.parent().unwrap_or(Path::new("."));
    let engine = Engine::new(Path::new("."));
    let hostvars = crate::site::select::inventory_hostvars(
        &inv,
        &VarLayer::default(),
        &engine,
        false,
        &|_| None,
    )
    .map_err(|d| {
        load::report(&g.sh, &d);
        CliError::Reported(Exit::BadInput)
    })?;
    g.sh.set_secrets(hostvars.values().flat_map(|l| l.secret_strings()).collect());
    let mut out = Vec::new();
    for h in hosts {
        let conn = Inventory::conn(&h, &hostvars[&h].values, root)
            .map_err(|e| CliError::new(Exit::BadInput, e.to_string()))?;
        out.push((h, conn));
    }
    Ok((inv, out, hostvars))
}

/// Run `script` on every target in parallel (at most `forks` at once); print each host's
/// output as it finishes, Ansible-style, and exit non-zero if any host failed.
fn run_on(
    g: &Global,
    c: &Conn,
    become_: bool,
    targets: Vec<(String, crate::inventory::Conn)>,
    script: String,
) -> Result<Exit, CliError> {
    let policy = c.host_key_policy();
    let connect_timeout = Duration::from_secs(c.connect_timeout);
    let step_timeout = Duration::from_secs(c.step_timeout);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sh = g.sh.clone();
    let results: IndexMap<String, Outcome> = rt.block_on(async move {
        let sem = Arc::new(tokio::sync::Semaphore::new(c.forks.max(1)));
        let script = Arc::new(script);
        let mut tasks = tokio::task::JoinSet::new();
        for (host, mut conn) in targets {
            conn.become_ |= become_;
            let (sem, script, sh) = (sem.clone(), script.clone(), sh.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore open");
                let outcome = match Transport::connect(&conn, policy, connect_timeout).await {
                    Err(e) => Outcome::Refused(e.into()),
                    Ok(t) => {
                        let r = t.run(&script, None, step_timeout).await;
                        t.close().await;
                        match r {
                            Ok(o) => Outcome::Ran {
                                status: o.status,
                                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                            },
                            Err(TransportError::SudoPassword(d)) => Outcome::Ran {
                                status: -1,
                                stdout: String::new(),
                                stderr: TransportError::SudoPassword(d).to_string(),
                            },
                            Err(e) => Outcome::Refused(e.into()),
                        }
                    }
                };
                print_outcome(&sh, &host, &outcome);
                (host, outcome)
            });
        }
        let mut out = IndexMap::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok((h, o)) = r {
                out.insert(h, o);
            }
        }
        out
    });
    Ok(exit_of(results.values()))
}

/// plan's and apply's rule (`HostError::exit_of`): unreachable-only is exit 6, a refusal (an
/// untrusted host key) outranks a failure (exit 5), and a command that ran and failed is exit 1.
fn exit_of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Exit {
    let mut failed_command = false;
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Ran { status, .. } => failed_command |= *status != 0,
            Outcome::Refused(e) => errors.push(e),
        }
    }
    match crate::plan::HostError::exit_of(errors) {
        None if failed_command => Exit::Failed,
        None => Exit::Ok,
        Some(Exit::Unreachable) if failed_command => Exit::Failed,
        Some(e) => e,
    }
}

fn print_outcome(sh: &crate::ui::Shell, host: &str, o: &Outcome) {
    // One write per host, so parallel hosts never interleave their lines.
    let text = match o {
        Outcome::Ran {
            status,
            stdout,
            stderr,
        } => {
            let word = if *status == 0 {
                sh.paint("32", "SUCCESS")
            } else {
                sh.paint("31", "FAILED")
            };
            let mut t = format!("{host} | {word} | rc={status} >>\n{stdout}");
            if !stdout.is_empty() && !stdout.ends_with('\n') {
                t.push('\n');
            }
            if !stderr.trim().is_empty() {
                t.push_str(stderr);
                if !stderr.ends_with('\n') {
                    t.push('\n');
                }
            }
            t
        }
        Outcome::Refused(e) => {
            let word = if e.exit() == Exit::Unreachable {
                "UNREACHABLE"
            } else {
                "REFUSED"
            };
            format!("{host} | {} >>\n{e}\n", sh.paint("31", word))
        }
    };
    sh.out(&text);
}

pub fn run(
    g: &Global,
    inventory: &Path,
    host_pattern: &str,
    command: &[String],
    become_: bool,
    c: &Conn,
) -> Result<Exit, CliError> {
    if command.is_empty() {
        return Err(CliError::new(
            Exit::BadInput,
            "no command given: labctl run PATTERN -- COMMAND",
        ));
    }
    let (_, targets) = targets(g, inventory, host_pattern)?;
    if targets.is_empty() {
        return Err(CliError::new(
            Exit::BadInput,
            format!("host pattern `{host_pattern}` selects no host"),
        ));
    }
    // Like `-m shell -a '…'`: the words are one shell command line.
    run_on(g, c, become_, targets, command.join(" "))
}

/// kubectl on the first k3s server (group `k3s_server`, or k3s-ansible's `server`), as root:
/// the admin kubeconfig is readable by root only.
pub fn kubectl(
    g: &Global,
    inventory: &Path,
    args: &[String],
    on: Option<&str>,
    c: &Conn,
) -> Result<Exit, CliError> {
    let (inv, _) = targets(g, inventory, "all")?;
    let groups = inv.groups_map();
    let server = match on {
        Some(h) => h.to_string(),
        None => ["k3s_server", "server"]
            .iter()
            .find_map(|g| groups.get(*g).and_then(|hs| hs.first().cloned()))
            .ok_or_else(|| {
                CliError::new(
                    Exit::BadInput,
                    "no k3s server: the inventory has no host in group `k3s_server` (or `server`); pass --on HOST",
                )
            })?,
    };
    let (_, targets) = targets(g, inventory, &server)?;
    let words: Vec<String> = args.iter().map(|a| crate::sh::q(a)).collect();
    run_on(
        g,
        c,
        true,
        targets,
        format!("k3s kubectl {}", words.join(" ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::HostError;

    fn ran(status: i32) -> Outcome {
        Outcome::Ran {
            status,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    #[test]
    fn run_exits_as_plan_and_apply_do() {
        let down = || Outcome::Refused(HostError::Unreachable("down".into()));
        let key = || Outcome::Refused(HostError::HostKey("changed".into()));
        assert_eq!(exit_of(&[ran(0), ran(0)]), Exit::Ok);
        assert_eq!(exit_of(&[ran(0), ran(2)]), Exit::Failed);
        assert_eq!(exit_of(&[ran(0), down()]), Exit::Unreachable);
        assert_eq!(exit_of(&[ran(1), down()]), Exit::Failed);
        // An untrusted host key is a refusal here too (it was "unreachable", exit 6).
        assert_eq!(exit_of(&[ran(0), key()]), Exit::Refused);
        assert_eq!(exit_of(&[ran(1), down(), key()]), Exit::Refused);
    }
}
