//! `reboot`: ask for a reboot, which the apply carries out once every host has converged, one
//! host at a time, k3s nodes drained first (the rollout of `labctl reboot`).
//!
//! ```yaml
//! - name: reboot when an upgrade asks for it
//!   reboot: {reason: "unattended-upgrades"}    # in sync unless /run/reboot-required exists
//! handlers:
//!   - name: reboot for the new kernel command line
//!     reboot: {}                               # notified: always asks
//! ```
//!
//! As a resource it drifts while the host waits for a reboot: Debian's `/run/reboot-required`,
//! or a request an earlier run made and never carried out. As a handler it asks whenever it
//! is notified. Either way the step only writes the request (`/run/labctl/reboot-requested`,
//! one reason per line); the reboot itself waits for the end of the run, so no host goes down
//! while another still converges, and never two at once. The request lives in /run: the reboot
//! clears it, and a run stopped before its reboots leaves it for the next plan to show.

use serde::Deserialize;

use super::{q, DiffCx, PrepareCx, Resource, ResourceError};
use crate::facts::reboot::{RebootQuery, REQUEST};
use crate::facts::{Fact, FactQuery, Facts};
use crate::plan::{Action, Drift, Step, Touch};

pub struct Reboot;

/// The YAML key, for the engine that looks for it in a run's changes and handlers.
pub const KIND: &str = "reboot";

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Why, in one line: shown in the plan and kept in the request until the reboot.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Spec {
    fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("a `reboot` resource")
    }
}

/// The reason is written by a script, and scripts show in the host's process list.
const SECRET_REFUSED: &str =
    "this `reboot`'s reason uses a secret, and it is written by a script the host's process list shows: give a reason without one";

fn check(spec: &Spec) -> Result<(), ResourceError> {
    if let Some(r) = &spec.reason {
        if r.trim().is_empty() || r.chars().any(char::is_control) {
            return Err(ResourceError::spec(
                "`reason` must be one non-empty line of text",
            ));
        }
    }
    Ok(())
}

/// Append the request (the reboot clears /run, and with it every request).
fn request(reason: &str) -> Step {
    let dir = REQUEST.rsplit_once('/').map_or("/run", |(d, _)| d);
    Step::sh(format!(
        "mkdir -p {dir} && printf '%s\\n' {} >> {REQUEST}",
        q(reason)
    ))
}

impl Resource for Reboot {
    const KIND: &'static str = KIND;
    type Spec = Spec;

    fn name(spec: &Spec) -> String {
        spec.reason.clone().unwrap_or_else(|| "host".into())
    }

    fn prepare(spec: &mut Spec, _cx: &PrepareCx) -> Result<(), ResourceError> {
        check(spec)
    }

    fn facts(_spec: &Spec) -> Vec<FactQuery> {
        vec![RebootQuery.query()]
    }

    fn diff(spec: &Spec, facts: &Facts, cx: &DiffCx) -> Result<Option<Drift>, ResourceError> {
        if cx.secret {
            return Err(ResourceError::spec(SECRET_REFUSED));
        }
        let Some(pending) = facts.get(&RebootQuery)? else {
            return Ok(None);
        };
        let mut reasons = vec![];
        if pending.required {
            let mut why = String::from("the host waits for a reboot (/run/reboot-required");
            if !pending.packages.is_empty() {
                why.push_str(&format!(": {}", pending.packages.join(", ")));
            }
            why.push(')');
            reasons.push(why);
        }
        if !pending.requested.is_empty() {
            reasons.push(format!(
                "an earlier run asked for a reboot and stopped first ({})",
                pending.requested.join(", ")
            ));
        }
        reasons.push("rebooted at the end of the run, one host at a time".into());
        Ok(Some(Drift::new(
            Action::Run,
            reasons,
            vec![request(spec.reason())],
        )))
    }

    fn touches(_spec: &Spec) -> Vec<Touch> {
        vec![Touch::path(REQUEST)]
    }

    fn handler(spec: &Spec, secret: bool) -> Result<Vec<Step>, ResourceError> {
        if secret {
            return Err(ResourceError::Handler(SECRET_REFUSED.into()));
        }
        check(spec).map_err(ResourceError::for_handler)?;
        Ok(vec![request(
            spec.reason.as_deref().unwrap_or("a `reboot` handler"),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::reboot::KEY;
    use crate::resources::testutil::*;

    #[test]
    fn no_pending_reboot_is_in_sync() {
        let s = spec::<Reboot>("{}");
        assert!(Reboot::diff(&s, &facts(&[(KEY, "")]), &cx())
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_marker_is_drift_whose_step_only_asks() {
        let s = spec::<Reboot>("reason: new kernel\n");
        let d = Reboot::diff(
            &s,
            &facts(&[(
                KEY,
                "required 2026-12-07T04:00:00Z\npkg linux-image-amd64\n",
            )]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.action, Action::Run);
        assert_eq!(
            d.reasons,
            [
                "the host waits for a reboot (/run/reboot-required: linux-image-amd64)",
                "rebooted at the end of the run, one host at a time"
            ]
        );
        assert_eq!(
            scripts(&d),
            "mkdir -p /run/labctl && printf '%s\\n' 'new kernel' >> /run/labctl/reboot-requested"
        );
        assert_eq!(Reboot::name(&s), "new kernel");
    }

    #[test]
    fn a_request_left_by_a_stopped_run_is_drift_too() {
        let s = spec::<Reboot>("{}");
        let d = Reboot::diff(
            &s,
            &facts(&[(KEY, "requested a `reboot` handler\n")]),
            &cx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            d.reasons[0],
            "an earlier run asked for a reboot and stopped first (a `reboot` handler)"
        );
        assert_eq!(Reboot::name(&s), "host");
    }

    #[test]
    fn as_a_handler_it_always_asks() {
        let s = spec::<Reboot>("{}");
        let steps = Reboot::handler(&s, false).unwrap();
        let d = Drift::new(Action::Run, vec![], steps);
        assert_eq!(
            scripts(&d),
            "mkdir -p /run/labctl && printf '%s\\n' 'a `reboot` handler' >> /run/labctl/reboot-requested"
        );
    }

    #[test]
    fn the_request_written_is_the_one_the_probe_reads() {
        // The step's script, pointed at a temp dir, then the probe's snippet over the result.
        let d = tempfile::tempdir().unwrap();
        let req = d.path().join("labctl/reboot-requested");
        let Step::Sh { script } = request("kernel 6.1; it's time") else {
            panic!()
        };
        let script = script.replace(REQUEST, &req.display().to_string()).replace(
            "/run/labctl",
            &d.path().join("labctl").display().to_string(),
        );
        crate::facts::testutil::run_sh(&script);
        crate::facts::testutil::run_sh(&script);
        let probe = RebootQuery
            .script()
            .replace(REQUEST, &req.display().to_string())
            .replace(crate::facts::reboot::MARKER, "/nonexistent/reboot-required");
        let r = crate::facts::reboot::parse(&crate::facts::testutil::run_sh(&probe))
            .unwrap()
            .unwrap();
        assert!(!r.required);
        assert_eq!(r.requested, ["kernel 6.1; it's time"]);
    }

    #[test]
    fn a_secret_reason_is_refused_before_it_reaches_a_script() {
        let s = spec::<Reboot>("reason: hunter2\n");
        let e = Reboot::diff(&s, &facts(&[(KEY, "required\n")]), &secret_cx()).unwrap_err();
        assert!(e.to_string().contains("process list"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
        let e = Reboot::handler(&s, true).unwrap_err();
        assert!(matches!(e, ResourceError::Handler(_)), "{e:?}");
    }

    #[test]
    fn a_reason_is_one_line() {
        for bad in ["reason: \"\"\n", "reason: \"a\\nb\"\n"] {
            let mut s = spec::<Reboot>(bad);
            let e = with_prepare(|cx| Reboot::prepare(&mut s, cx)).unwrap_err();
            assert!(e.to_string().contains("one non-empty line"), "{e}");
        }
        assert!(spec_err::<Reboot>("when: always\n").contains("unknown field"));
    }
}
