//! Executing an uninstall over the transport: per host ONE connection (multiplexed SSH, as root
//! through sudo when the user is not root), on which the probe, each step and the verifying
//! probe run one after the other. A host that fails does not stop the others: an uninstall is
//! asked for the whole cluster, and what one host kept is said in its report.

use std::time::Duration;

use crate::facts::Fact;
use crate::reboot::remote::failed_output;
use crate::resources::ufw::RuleDeletion;
use crate::transport::{HostKeyPolicy, Transport};

use super::{
    exit_of, leftovers, order, script, steps, Event, Found, HostReport, Status, Step, Target,
    UninstallError,
};

#[derive(Debug, Clone)]
pub struct Opts {
    pub host_keys: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// What one step (or probe) may take.
    pub step_timeout: Duration,
}

/// Every target in `order`, each on its own connection.
pub async fn uninstall(
    targets: Vec<Target>,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
) -> (Vec<HostReport>, crate::error::Exit) {
    let targets = order(targets);
    let of = targets.len();
    let mut reports = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        on(Event::Start {
            host: &t.host,
            role: t.role,
            index: i + 1,
            of,
        });
        let mut r = HostReport {
            host: t.host.clone(),
            role: t.role,
            status: Status::Failed,
            steps: vec![],
            kept: vec![],
            error: None,
            exit: None,
        };
        match host(t, o, on, &mut r).await {
            Ok(()) if r.steps.is_empty() => {
                r.status = Status::NothingToDo;
                on(Event::Nothing { host: &t.host });
            }
            Ok(()) => {
                r.status = Status::Uninstalled;
                on(Event::Done { host: &t.host });
            }
            Err(e) => {
                on(Event::Failed {
                    host: &t.host,
                    error: &e,
                });
                r.error = Some(e.to_string());
                r.exit = Some(e.exit());
            }
        }
        reports.push(r);
    }
    let exit = exit_of(&reports);
    (reports, exit)
}

async fn host(
    t: &Target,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
    r: &mut HostReport,
) -> Result<(), UninstallError> {
    let conn = Transport::connect(&t.conn, o.host_keys, o.connect_timeout)
        .await
        .map_err(|e| UninstallError::Unreachable {
            host: t.host.clone(),
            why: e.to_string(),
        })?;
    let out = work(&conn, t, o, on, r).await;
    conn.close().await;
    out
}

async fn work(
    conn: &Transport,
    t: &Target,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
    r: &mut HostReport,
) -> Result<(), UninstallError> {
    let (found, ufw) = look(conn, t, o).await?;
    r.kept = found.kept.clone();
    let labels = ufw.as_ref().map(|d| d.rules.clone()).unwrap_or_default();
    let steps = steps(&found, &labels);
    if steps.is_empty() {
        return Ok(());
    }
    // The run lock `apply` takes: an apply (or another uninstall) on this host meanwhile is
    // refused, and this one is refused while another run holds the host.
    let run = crate::apply::RunInfo::new();
    let (mut lock, _) =
        conn.lock(&run.record(), &t.host)
            .await
            .map_err(|e| UninstallError::Locked {
                host: t.host.clone(),
                why: e.to_string(),
            })?;
    let done =
        crate::transport::lock::with_lease(&mut lock, run_steps(conn, t, o, on, r, &steps, &ufw))
            .await;
    lock.release().await;
    done?;
    // The proof: the same probe finds nothing left (kept folders aside).
    let (after, ufw_after) = look(conn, t, o).await?;
    let left = leftovers(&after, &ufw_after.map(|d| d.rules).unwrap_or_default());
    if !left.is_empty() {
        return Err(UninstallError::Left {
            host: t.host.clone(),
            left,
        });
    }
    Ok(())
}

async fn run_steps(
    conn: &Transport,
    t: &Target,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
    r: &mut HostReport,
    steps: &[Step],
    ufw: &Option<RuleDeletion>,
) -> Result<(), UninstallError> {
    for step in steps {
        on(Event::Step {
            host: &t.host,
            step,
        });
        let stdin = match (step, ufw) {
            (Step::DeleteUfwRules { .. }, Some(d)) => Some(d.program.as_slice()),
            _ => None,
        };
        let res = conn.run(&step.script(), stdin, o.step_timeout).await;
        let failed = |why: String| UninstallError::Step {
            host: t.host.clone(),
            step: step.describe(),
            why,
        };
        match res {
            Ok(out) if out.status == 0 => {}
            Ok(out) => return Err(failed(failed_output(&out))),
            Err(e) => return Err(failed(e.to_string())),
        }
        r.steps.push(step.clone());
    }
    Ok(())
}

/// The probe (k3s's traces, and the kept folders) and, when the host has cluster rules listed,
/// ufw's rules files.
async fn look(
    conn: &Transport,
    t: &Target,
    o: &Opts,
) -> Result<(Found, Option<RuleDeletion>), UninstallError> {
    let probe_err = |why: String| UninstallError::Probe {
        host: t.host.clone(),
        why,
    };
    let mut found = Found::default();
    if t.role != super::Role::FirewallOnly {
        let out = conn
            .run(&script::probe(&t.kept), None, o.step_timeout)
            .await
            .map_err(|e| probe_err(e.to_string()))?;
        if out.status != 0 {
            return Err(probe_err(failed_output(&out)));
        }
        found = Found::parse(&out.stdout_str()).map_err(|e| probe_err(e.to_string()))?;
    }
    let listed = t.ufw_rules.as_array().is_some_and(|a| !a.is_empty());
    if !listed {
        return Ok((found, None));
    }
    let rules_err = |why: String| UninstallError::Rules {
        host: t.host.clone(),
        why,
    };
    let q = crate::facts::ufw::UfwQuery;
    let out = conn
        .run(&q.script(), None, o.step_timeout)
        .await
        .map_err(|e| rules_err(e.to_string()))?;
    if out.status != 0 {
        return Err(rules_err(failed_output(&out)));
    }
    let seen = q
        .parse(&out.stdout_str())
        .map_err(|e| rules_err(e.to_string()))?;
    let deletion = RuleDeletion::of(&t.ufw_rules, &seen).map_err(|e| rules_err(e.to_string()))?;
    Ok((found, deletion))
}
