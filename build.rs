//! Embeds what `labctl init` writes into a new lab repo (the shipped site.yml and roles/) and
//! the resource types' module docs (for `labctl doc`), so an installed binary needs no checkout.
//! Hand-written instead of a crate (include_dir): a directory walk and `include_bytes!` lines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `word` occurs in `text` with no name character (letter, digit, `_`, `-`, `.`) around it.
fn mentions(text: &str, word: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(name_char) && !after.is_some_and(name_char)
    })
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for p in ["roles", "site.yml", "scripts", "values", "src/resources"] {
        println!("cargo:rerun-if-changed={p}");
    }

    let mut files = vec![root.join("site.yml")];
    walk(&root.join("roles"), &mut files);
    // Project files the roles name (`src: scripts/x.sh`, `values/x.yaml.j2`): a lab needs them,
    // not the rest of scripts/ (labctl's own test and setup scripts).
    let role_text: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    // (values/ holds the charts' values templates the roles render from the project root.)
    let mut shared = Vec::new();
    for dir in ["scripts", "values"] {
        if root.join(dir).is_dir() {
            walk(&root.join(dir), &mut shared);
        }
    }
    // By file name, as a whole word: roles may loop over names (`src: "scripts/{{ item }}"`).
    files.extend(shared.into_iter().filter(|f| {
        let name = f
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        mentions(&role_text, &name)
    }));
    let mut s = String::from("/// (path in the repo, content) of every shipped file `labctl init` writes.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under the repo");
        writeln!(
            s,
            "    ({:?}, include_bytes!({:?})),",
            rel.to_string_lossy(),
            f.to_string_lossy()
        )
        .unwrap();
    }
    s.push_str("];\n");
    std::fs::write(out_dir.join("shipped.rs"), s).expect("write shipped.rs");

    // Each resource file's `//!` module doc: the reference `labctl doc TYPE` prints.
    let mut docs = String::from("/// (type, module doc) for every file in src/resources except mod.rs.\npub static DOCS: &[(&str, &str)] = &[\n");
    let mut rs = Vec::new();
    walk(&root.join("src/resources"), &mut rs);
    for f in rs
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read resource file");
        let doc: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.strip_prefix("//!").unwrap_or(l))
            })
            .collect();
        writeln!(docs, "    ({name:?}, {:?}),", doc.join("\n")).unwrap();
    }
    docs.push_str("];\n");
    std::fs::write(out_dir.join("resource_docs.rs"), docs).expect("write resource_docs.rs");
}
