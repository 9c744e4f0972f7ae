//! Firing a role's notified handlers, each clearing its journal record once it succeeded.

use super::diff;
use super::execute::execute;
use super::HostCx;
use crate::facts;
use crate::plan::{Failure, Recap, Step};

/// Fire the notified handlers of a role, each on its own (a failing one does not stop the next).
/// True when any ran.
pub(super) async fn run_handlers(
    cx: &HostCx<'_>,
    role: &crate::site::select::RoleWork,
    notified: &[String],
    recap: &mut Recap,
) -> bool {
    let mut ran = false;
    for h in &role.handlers {
        if !notified.contains(&h.name) {
            continue;
        }
        ran = true;
        let steps = match h.inst.handler(h.secret) {
            // Cleared in the same execution, only once the handler succeeded.
            Ok(mut s) => {
                s.push(Step::sh(facts::journal::clear(&diff::handler_key(
                    &role.role, &h.name,
                ))));
                s
            }
            Err(e) => {
                recap.failed.push(Failure {
                    resource: diff::handler_id(&role.role, &h.name).to_string(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let clock = cx.opts.time(super::timings::Split::Via(cx.t));
        let r = execute(cx.t, &steps, cx.opts).await;
        cx.opts.lap(clock, Some(&cx.work.host), || {
            format!("handler {}/{}", role.role, h.name)
        });
        match r {
            Ok(()) => {
                let id = format!("{}/{}", role.role, h.name);
                if h.inst.kind() == crate::resources::reboot::KIND && recap.reboot.is_none() {
                    recap.reboot = Some(format!("handler {id}"));
                }
                recap.handlers.push(id);
            }
            Err(e) => recap.failed.push(Failure {
                resource: diff::handler_id(&role.role, &h.name).to_string(),
                message: e.to_string(),
            }),
        }
    }
    ran
}
