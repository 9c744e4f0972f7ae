//! `<fact:NAME>` placeholders: what a fact renders as before its host was probed. One must never
//! reach a host nor a diff; these find one and turn it into an error naming host and resource.

use super::diff::Planned;
use crate::facts;
use crate::plan::Step;
use crate::site::select::Item;

/// `<fact:NAME>`, what a fact renders as before the host's facts are known.
pub(super) fn has_placeholder(s: &str) -> bool {
    s.contains(facts::host::PLACEHOLDER)
}

/// A placeholder must never reach a host nor a diff: an item that still renders one (another
/// host's fact, read through `hostvars`, of a host not probed yet in this run) is an error.
pub(crate) fn refuse_placeholder(host: &str, item: &Item, p: &mut Planned) {
    // Walked, not serialised: this runs for every item of every plan.
    let in_spec = || {
        facts::host::holds_placeholder(&item.rendered)
            .then(|| placeholder_in(&item.rendered.to_string()))
            .flatten()
    };
    let found = match p {
        Planned::Error(_) => return,
        Planned::InSync => in_spec(),
        Planned::Change(c) => in_spec()
            .or_else(|| c.diff.as_deref().and_then(placeholder_in))
            .or_else(|| c.reasons.iter().find_map(|r| placeholder_in(r)))
            .or_else(|| in_steps(&c.steps)),
    };
    if let Some(name) = found {
        *p = Planned::Error(format!(
            "{}: on host `{host}`, `{name}` is a fact that was not gathered (another host's, read through hostvars, outside --limit or not yet probed in this run); nothing was run",
            item.id
        ));
    }
}

/// The first `<fact:NAME>` in anything these steps send.
pub(super) fn in_steps(steps: &[Step]) -> Option<String> {
    steps
        .iter()
        .find_map(|s| s.find_tag(facts::host::PLACEHOLDER))
}

/// The first `<fact:NAME>` in `text`.
pub(super) fn placeholder_in(text: &str) -> Option<String> {
    crate::plan::step::tag_in(text.as_bytes(), facts::host::PLACEHOLDER.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::testutil::item;
    use crate::plan::{Action, Change};
    use serde_json::json;

    #[test]
    fn placeholders_are_found_by_name_in_text_and_steps() {
        assert!(has_placeholder("file:/etc/<fact:hostname>"));
        assert!(!has_placeholder("file:/etc/hostname"));
        assert_eq!(
            placeholder_in("arch is <fact:architecture>, host <fact:hostname>").as_deref(),
            Some("<fact:architecture>")
        );
        assert_eq!(placeholder_in("no facts here"), None);
        let steps = [Step::sh("true"), Step::sh("echo <fact:fqdn> > /etc/x")];
        assert_eq!(in_steps(&steps).as_deref(), Some("<fact:fqdn>"));
        assert_eq!(in_steps(&steps[..1]), None);
    }

    fn change(it: &Item, steps: Vec<Step>) -> Change {
        Change {
            id: it.id.clone(),
            action: Action::Update,
            reasons: vec![],
            diff: None,
            notify: vec![],
            fingerprint: String::new(),
            steps,
        }
    }

    #[test]
    fn an_item_that_would_send_a_placeholder_is_an_error_naming_host_and_resource() {
        let clean = item("file", json!({"path": "/etc/x", "content": "y\n"}));
        let mut p = Planned::InSync;
        refuse_placeholder("h1", &clean, &mut p);
        assert!(matches!(p, Planned::InSync));
        let mut p = Planned::Change(change(&clean, vec![Step::sh("echo y > /etc/x")]));
        refuse_placeholder("h1", &clean, &mut p);
        assert!(matches!(p, Planned::Change(_)));

        // The spec is clean, but a step would carry the placeholder to the host.
        let mut p = Planned::Change(change(&clean, vec![Step::sh("echo <fact:fqdn>")]));
        refuse_placeholder("h1", &clean, &mut p);
        match p {
            Planned::Error(e) => assert!(
                e.starts_with(
                    "r/file:/etc/x: on host `h1`, `<fact:fqdn>` is a fact that was not gathered"
                ),
                "{e}"
            ),
            _ => panic!("the placeholder would reach the host"),
        }

        // In the spec: refused even when the diff found the host in sync.
        let dirty = item(
            "file",
            json!({"path": "/etc/x", "content": "<fact:architecture>\n"}),
        );
        let mut p = Planned::InSync;
        refuse_placeholder("h2", &dirty, &mut p);
        assert!(
            matches!(&p, Planned::Error(e) if e.contains("`h2`") && e.contains("<fact:architecture>")),
            "{p:?}"
        );

        // A diff error already names the item: it is kept as it is.
        let mut p = Planned::Error("r/file:/etc/x: boom".into());
        refuse_placeholder("h2", &dirty, &mut p);
        assert!(matches!(&p, Planned::Error(e) if e == "r/file:/etc/x: boom"));
    }
}
