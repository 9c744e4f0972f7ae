//! The shipped `site.yml` and `roles/`, embedded at build time (see build.rs).
//!
//! A new lab gets a COPY of the roles, not a reference to this binary's: roles are data the
//! lab owns (tuned, versioned and reviewed with its inventory), and an upgrade of labctl must
//! not change a running lab's roles behind its back. The copy is the one this binary was built
//! and tested with, so `init` needs no checkout of labctl's sources.

include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// The shipped files as text (every shipped file is text).
pub fn texts() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .filter_map(|(p, b)| Some((*p, std::str::from_utf8(b).ok()?)))
}

/// What the shipped roles need from a lab.
pub fn needs() -> super::scan::Needs {
    super::scan::scan(texts().filter(|(p, _)| p.starts_with("roles/")))
}
