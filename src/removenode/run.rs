//! The k3s steps of a removal over the transport: kubectl on the server (lookup, drain,
//! delete) and systemctl on the host, each on a fresh connection (reboot's `remote`).

use std::time::Duration;

use crate::reboot::remote::{failed_output, once};

use super::{script, steps, Event, K3sReport, Opts, Removal, RemoveError, Step};

/// Time one short command may take (lookup, stop, delete).
const SHORT: Duration = Duration::from_secs(90);

/// Runs the k3s steps of `r` (none when it is not a k3s node). The Node missing from the
/// cluster skips drain and delete (an earlier, interrupted removal); the host unreachable skips
/// the stop (a dead node is what one removes most often) and says so.
pub async fn k3s_steps(
    r: &Removal,
    o: &Opts,
    on: &(dyn Fn(Event) + Sync),
) -> Result<K3sReport, RemoveError> {
    let mut rep = K3sReport::default();
    let (Some(node), Some(s)) = (&r.node, &r.server) else {
        return Ok(rep);
    };
    let server = |script: String, timeout: Duration| async move {
        once(&s.conn, o.host_keys, o.connect_timeout, &script, timeout)
            .await
            .map_err(|e| RemoveError::Server {
                server: s.host.clone(),
                why: e.to_string(),
            })
    };
    let out = server(script::lookup(node), SHORT).await?;
    if out.status != 0 {
        return Err(RemoveError::Lookup {
            server: s.host.clone(),
            node: node.clone(),
            why: failed_output(&out),
        });
    }
    rep.node_found = !out.stdout_str().trim().is_empty();
    if !rep.node_found {
        on(Event::NoNode(node));
    }
    for step in steps(r) {
        match &step {
            Step::Drain { .. } if rep.node_found => {
                on(Event::Step(&step));
                let out = server(
                    script::drain(node, o.drain_timeout.as_secs()),
                    o.drain_timeout + SHORT,
                )
                .await?;
                if out.status != 0 {
                    return Err(RemoveError::Drain {
                        node: node.clone(),
                        why: failed_output(&out),
                    });
                }
            }
            Step::StopK3s { host } => {
                on(Event::Step(&step));
                match once(&r.conn, o.host_keys, o.connect_timeout, script::STOP, SHORT).await {
                    Ok(out) if out.status == 0 => rep.stopped = true,
                    Ok(out) => {
                        return Err(RemoveError::Stop {
                            host: host.clone(),
                            why: failed_output(&out),
                        })
                    }
                    Err(e) => {
                        let why = e.to_string();
                        on(Event::Unreachable { host, why: &why });
                        rep.unreachable = Some(why);
                    }
                }
            }
            Step::DeleteNode { .. } if rep.node_found => {
                on(Event::Step(&step));
                let out = server(script::delete(node), SHORT).await?;
                if out.status != 0 {
                    return Err(RemoveError::Delete {
                        node: node.clone(),
                        why: failed_output(&out),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(rep)
}
