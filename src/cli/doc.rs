//! `labctl doc [TYPE]`: the resource reference, from the same module docs as docs/resources.md
//! and the JSON Schema.

use crate::error::{CliError, Exit};
use crate::schema::docs;

use super::Global;

pub fn doc(g: &Global, kind: Option<&str>) -> Result<Exit, CliError> {
    let sh = &g.sh;
    match kind {
        None => {
            let width = crate::resources::KINDS
                .iter()
                .map(|k| k.len())
                .max()
                .unwrap_or(0);
            let mut s = String::new();
            for k in crate::resources::KINDS {
                s.push_str(&format!("{k:width$}  {}\n", docs::summary(k)));
            }
            sh.out(&s);
            sh.status("More", "`labctl doc TYPE` shows a type's keys and examples");
            Ok(Exit::Ok)
        }
        Some(k) => match docs::doc(k) {
            Some(d) => {
                sh.out(&format!("{d}\n"));
                Ok(Exit::Ok)
            }
            None => Err(CliError::new(
                Exit::BadInput,
                format!(
                    "`{k}` is not a resource type; the types are: {}",
                    crate::resources::KINDS.join(", ")
                ),
            )),
        },
    }
}
