//! Executing a rollout over the transport: one host after the other, each through `steps`.
//! Every look at a host or at the k3s server opens its own connection: a reboot kills the old
//! one (and the server may be the host that rebooted).

use std::time::{Duration, Instant, SystemTime};

use crate::transport::{Output, Transport};

use super::remote::{self, failed_output};
use super::{
    back_verdict, next_action, parse_boot_id, ready_verdict, script, steps, Event, HostReport,
    Next, Opts, RebootError, Seen, Server, Status, Step, Target, Verdict,
};

/// Time one short command may take (boot id, kubectl get, uncordon).
const SHORT: Duration = Duration::from_secs(30);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `remote::once` with the rollout's host key policy, the error in words.
async fn once(
    conn: &crate::inventory::Conn,
    o: &Opts,
    connect_timeout: Duration,
    script: &str,
    timeout: Duration,
) -> Result<Output, String> {
    remote::once(conn, o.host_keys, connect_timeout, script, timeout)
        .await
        .map_err(|e| e.to_string())
}

/// The hosts in order; after the first failure, the rest are reported untouched.
pub async fn rollout(
    targets: &[Target],
    server: Option<&Server>,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
) -> Vec<HostReport> {
    let mut reports: Vec<HostReport> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if next_action(&reports) == Next::LeaveUntouched {
            on(Event::Skipped { host: &t.host });
            reports.push(HostReport::untouched(t));
            continue;
        }
        on(Event::Start {
            host: &t.host,
            index: i + 1,
            of: targets.len(),
        });
        let started = Instant::now();
        let mut r = HostReport::untouched(t);
        r.started = Some(now());
        match host(t, server, o, on, &mut r).await {
            Ok(()) => {
                r.status = Status::Rebooted;
                r.finished = Some(now());
                on(Event::Done {
                    host: &t.host,
                    secs: started.elapsed().as_secs_f64(),
                });
            }
            Err(e) => {
                r.status = Status::Failed;
                r.finished = Some(now());
                r.error = Some(e.to_string());
                r.exit = Some(e.exit());
                on(Event::Failed {
                    host: &t.host,
                    error: &e,
                });
            }
        }
        reports.push(r);
    }
    reports
}

async fn host(
    t: &Target,
    server: Option<&Server>,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
    r: &mut HostReport,
) -> Result<(), RebootError> {
    let all = steps(t);
    let upto = all
        .iter()
        .position(|s| *s == Step::Reboot)
        .map_or(0, |i| i + 1);
    let (down, up) = all.split_at(upto);
    // One connection until the reboot: the boot id first (a host that cannot be reached is
    // not drained), then the run lock, held until the reboot takes it down with /run, so no
    // `apply` starts on a host being drained and none is running on it.
    let tr = Transport::connect(&t.conn, o.host_keys, o.connect_timeout)
        .await
        .map_err(|e| RebootError::Unreachable {
            host: t.host.clone(),
            why: e.to_string(),
        })?;
    let r1 = match boot_id(t, &tr).await {
        Ok(before) => {
            r.boot_id_before = Some(before);
            going_down(t, server, o, on, &tr, down).await
        }
        Err(e) => Err(e),
    };
    // A master whose host just went down may take a while to notice: do not wait on it.
    let _ = tokio::time::timeout(Duration::from_secs(5), tr.close()).await;
    r1?;
    let before = r.boot_id_before.clone().unwrap_or_default();
    for step in up {
        on(Event::Step {
            host: &t.host,
            step,
        });
        match step {
            Step::WaitBack => r.boot_id_after = Some(wait_back(t, o, &before).await?),
            Step::WaitReady { node } => wait_ready(need_server(server)?, node, o).await?,
            Step::Uncordon { node } => {
                let s = need_server(server)?;
                let out = once(
                    &s.conn,
                    o,
                    o.connect_timeout,
                    &script::uncordon(node),
                    SHORT,
                )
                .await
                .map_err(|why| RebootError::Uncordon {
                    node: node.clone(),
                    why,
                })?;
                if out.status != 0 {
                    return Err(RebootError::Uncordon {
                        node: node.clone(),
                        why: failed_output(&out),
                    });
                }
            }
            Step::Drain { .. } | Step::Reboot => unreachable!("`steps` drains and reboots first"),
        }
    }
    Ok(())
}

fn need_server(server: Option<&Server>) -> Result<&Server, RebootError> {
    server.ok_or_else(|| RebootError::Server {
        server: "(none)".into(),
        why: "the inventory has no host in group `k3s_server` (or `server`)".into(),
    })
}

/// The steps up to the reboot, under the host's run lock (renewed while the drain runs).
async fn going_down(
    t: &Target,
    server: Option<&Server>,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
    tr: &Transport,
    down: &[Step],
) -> Result<(), RebootError> {
    let (mut lock, _took_over) =
        tr.lock(&o.record, &t.host)
            .await
            .map_err(|e| RebootError::Locked {
                host: t.host.clone(),
                why: e.to_string(),
            })?;
    for step in down {
        on(Event::Step {
            host: &t.host,
            step,
        });
        let r = match step {
            Step::Drain { node } => {
                crate::transport::lock::with_lease(&mut lock, drain(server, node, o)).await
            }
            // The lock goes down with the host (its holder dies, /run is emptied).
            Step::Reboot => return reboot(t, tr).await,
            _ => unreachable!("`steps` waits only after the reboot"),
        };
        if let Err(e) = r {
            lock.release().await;
            return Err(e);
        }
    }
    lock.release().await;
    Ok(())
}

async fn drain(server: Option<&Server>, node: &str, o: &Opts) -> Result<(), RebootError> {
    let s = need_server(server)?;
    let out = once(
        &s.conn,
        o,
        o.connect_timeout,
        &script::drain(node, o.drain_timeout.as_secs()),
        o.drain_timeout + SHORT,
    )
    .await
    .map_err(|why| RebootError::Server {
        server: s.host.clone(),
        why,
    })?;
    if out.status != 0 {
        let mut why = failed_output(&out);
        // kubectl's own words when evictions were still refused at its --timeout (it retries
        // each 429 silently): say the usual cause, which its message does not name.
        if out.stderr_tail().contains("global timeout reached") {
            why.push_str(&format!(
                "\n  = help: evictions were still refused after --drain-timeout ({}s): a PodDisruptionBudget that allows no disruption (`kubectl get pdb -A`), or pods slow to stop",
                o.drain_timeout.as_secs()
            ));
        }
        return Err(RebootError::Drain {
            node: node.into(),
            why,
        });
    }
    Ok(())
}

async fn boot_id(t: &Target, tr: &Transport) -> Result<String, RebootError> {
    let out = tr
        .run(script::BOOT_ID, None, SHORT)
        .await
        .map_err(|e| RebootError::Unreachable {
            host: t.host.clone(),
            why: e.to_string(),
        })?;
    parse_boot_id(&out.stdout_str()).ok_or_else(|| RebootError::BootId {
        host: t.host.clone(),
        why: failed_output(&out),
    })
}

async fn reboot(t: &Target, tr: &Transport) -> Result<(), RebootError> {
    match tr.run(script::REBOOT, None, SHORT).await {
        Ok(out) if out.status == 0 => Ok(()),
        // ssh's own status when the connection went away under the command (255), or no status
        // at all (-1): systemd took sshd down, which is the reboot under way.
        Ok(out) if out.status == 255 || out.status == -1 => Ok(()),
        Err(crate::transport::TransportError::Lost { .. }) => Ok(()),
        Ok(out) => Err(RebootError::Reboot {
            host: t.host.clone(),
            why: failed_output(&out),
        }),
        Err(e) => Err(RebootError::Reboot {
            host: t.host.clone(),
            why: e.to_string(),
        }),
    }
}

async fn wait_back(t: &Target, o: &Opts, before: &str) -> Result<String, RebootError> {
    let start = Instant::now();
    loop {
        // Never wait on one attempt past the deadline (but give each a second at least).
        let left = o.timeout.saturating_sub(start.elapsed());
        let connect = o.connect_timeout.min(left).max(Duration::from_secs(1));
        let seen = match once(&t.conn, o, connect, script::BOOT_ID, SHORT.min(connect * 3)).await {
            Ok(out) => match parse_boot_id(&out.stdout_str()) {
                Some(id) => Seen::BootId(id),
                None => Seen::NoAnswer(failed_output(&out)),
            },
            Err(why) => Seen::NoAnswer(why),
        };
        match back_verdict(before, &seen, start.elapsed(), o.timeout) {
            Verdict::Back(id) => return Ok(id),
            Verdict::Retry => tokio::time::sleep(o.poll).await,
            Verdict::TimedOut => {
                return Err(RebootError::NotBack {
                    host: t.host.clone(),
                    secs: o.timeout.as_secs(),
                    last: match seen {
                        Seen::NoAnswer(why) => format!("last attempt: {why}"),
                        Seen::BootId(_) => "it still answers with the boot id from before".into(),
                    },
                })
            }
        }
    }
}

async fn wait_ready(s: &Server, node: &str, o: &Opts) -> Result<(), RebootError> {
    let start = Instant::now();
    loop {
        let (status, last) =
            match once(&s.conn, o, o.connect_timeout, &script::ready(node), SHORT).await {
                Ok(out) if out.status == 0 => {
                    let st = out.stdout_str();
                    let last = format!("Ready is {:?}", st.trim());
                    (Some(st), last)
                }
                Ok(out) => (None, format!("kubectl: {}", failed_output(&out))),
                Err(why) => (None, format!("the k3s server {}: {why}", s.host)),
            };
        match ready_verdict(status.as_deref(), start.elapsed(), o.timeout) {
            Verdict::Back(_) => return Ok(()),
            Verdict::Retry => tokio::time::sleep(o.poll).await,
            Verdict::TimedOut => {
                return Err(RebootError::NotReady {
                    node: node.into(),
                    secs: o.timeout.as_secs(),
                    last,
                })
            }
        }
    }
}
