//! `<fact:NAME>` placeholders: what a fact renders as before its host was probed. One must never
//! reach a host nor a diff; these find one and turn it into an error naming host and resource.

use crate::facts;
use crate::plan::build::Planned;
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
