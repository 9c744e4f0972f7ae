//! The import's report: one line per task or keyword that was not a plain translation, then the
//! counts. The same data is the `--json` envelope's `data`.

use serde::Serialize;

use super::modules::Outcome;
use super::read::Src;

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub file: String,
    pub line: usize,
    /// The module (or keyword) it is about.
    pub module: String,
    pub task: Option<String>,
    /// `translated`, `approximated` or `left_out`.
    pub outcome: &'static str,
    pub why: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub translated: usize,
    pub approximated: usize,
    pub left_out: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub out: String,
    pub items: Vec<Item>,
    /// What holds for the whole result (handler timing, files not copied).
    pub notes: Vec<String>,
    pub counts: Counts,
}

impl Report {
    pub fn add(&mut self, src: &Src, module: &str, task: Option<&str>, outcome: &Outcome) {
        let (word, why) = match outcome {
            Outcome::Translated => {
                self.counts.translated += 1;
                ("translated", None)
            }
            Outcome::Approximated(w) => {
                self.counts.approximated += 1;
                ("approximated", Some(w.clone()))
            }
            Outcome::LeftOut(w) => {
                self.counts.left_out += 1;
                ("left_out", Some(w.clone()))
            }
        };
        self.items.push(Item {
            file: src.file.clone(),
            line: src.line,
            module: module.to_string(),
            task: task.map(String::from),
            outcome: word,
            why,
        });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    /// The text for stderr: what was approximated or left out (translations are only counted),
    /// then the notes and the counts.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for word in ["left_out", "approximated"] {
            for i in self.items.iter().filter(|i| i.outcome == word) {
                let label = if word == "left_out" {
                    "left out"
                } else {
                    "approximated"
                };
                s.push_str(&format!(
                    "{label}: {}:{} {}{}: {}\n",
                    i.file,
                    i.line,
                    i.module,
                    i.task
                        .as_deref()
                        .map(|t| format!(" \"{t}\""))
                        .unwrap_or_default(),
                    i.why.as_deref().unwrap_or("")
                ));
            }
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        let c = &self.counts;
        s.push_str(&format!(
            "imported into {}: {} translated, {} approximated, {} left out\n",
            self.out, c.translated, c.approximated, c.left_out
        ));
        s
    }
}
