//! Each resource type's reference: its module doc (`//!` lines of `src/resources/TYPE.rs`),
//! captured at build time. `labctl doc`, the JSON Schema and the README's resource reference
//! all come from these.

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

    /// The README's resource reference is these docs: `#### \`TYPE\`` then the doc without
    /// its "`TYPE`: " prefix.
    #[test]
    fn readme_reference_is_the_module_docs() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for k in crate::resources::KINDS {
            let head = format!("#### `{k}`\n");
            let at = readme
                .find(&head)
                .unwrap_or_else(|| panic!("README has no {head:?}"));
            let body = &readme[at + head.len()..];
            let body = &body[..body.find("\n#").map_or(body.len(), |e| e + 1)];
            let want = super::doc(k).unwrap();
            let want = want.strip_prefix(&format!("`{k}`: ")).unwrap_or(want);
            // Blank lines may differ (the README keeps the heading's sentence with its example).
            let lines = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(
                lines(body),
                lines(want),
                "README's `{k}` section differs from src/resources/{k}.rs"
            );
        }
    }
}
