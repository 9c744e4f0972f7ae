//! `labctl seal`: vault values sealed into a SealedSecret manifest (`vault::seal`), printed or
//! written, through the Shell; under `--json` the envelope says what was sealed, and holds the
//! manifest when it was not written to a file.

use clap::ValueEnum;
use serde_json::json;

use crate::error::{CliError, Exit};
use crate::vault::seal::SealArgs;

use super::Global;

pub fn seal(g: &Global, args: SealArgs) -> Result<Exit, CliError> {
    let sealed = crate::vault::seal::seal(&args, g.vault_key.as_deref())?;
    if let Some(o) = &args.out {
        crate::fsutil::write_atomic(o, sealed.manifest.as_bytes(), 0o644, false).map_err(|e| {
            CliError::new(Exit::Failed, format!("cannot write {}: {e}", o.display()))
        })?;
    }
    if g.json {
        let scope = args
            .scope
            .to_possible_value()
            .map(|v| v.get_name().to_string());
        g.sh.out(&crate::ui::json_envelope(
            "seal",
            &json!({
                "name": args.name,
                "namespace": args.namespace,
                "scope": scope,
                "keys": sealed.keys,
                "out": args.out,
                "manifest": args.out.is_none().then_some(&sealed.manifest),
            }),
        )?);
        return Ok(Exit::Ok);
    }
    match &args.out {
        Some(o) => g.sh.status(
            "Sealed",
            &format!(
                "{} key(s) into SealedSecret {}/{} → {} (scope {:?}); commit it to the apps repo",
                sealed.keys.len(),
                args.namespace,
                args.name,
                o.display(),
                args.scope
            ),
        ),
        None => g.sh.out(&sealed.manifest),
    }
    Ok(Exit::Ok)
}
