//! Each resource type's reference: its module doc (`//!` lines of `src/resources/TYPE.rs`),
//! captured at build time. `labctl doc`, the JSON Schema and docs/resources.md all come from
//! these (tests/docs_commands.rs keeps docs/resources.md equal to what `labctl doc` prints).

include!(concat!(env!("OUT_DIR"), "/resource_docs.rs"));

/// The module doc of `kind`, if it is a resource type.
pub fn doc(kind: &str) -> Option<&'static str> {
    if !crate::resources::KINDS.contains(&kind) {
        return None;
    }
    DOCS.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d)
}

/// The doc's first paragraph on one line, without its leading "`kind`: ".
pub fn summary(kind: &str) -> String {
    let para: Vec<&str> = doc(kind)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = para.join(" ");
    match first.strip_prefix(&format!("`{kind}`: ")) {
        Some(rest) => rest.to_string(),
        None => first,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_type_has_a_doc_with_an_example() {
        for k in crate::resources::KINDS {
            let d = super::doc(k).unwrap_or_else(|| panic!("{k} has no module doc"));
            assert!(
                d.starts_with(&format!("`{k}`: ")),
                "{k}: the doc starts with \"`{k}`: \""
            );
            assert!(d.contains("```yaml"), "{k}: the doc shows a YAML example");
        }
    }
}
