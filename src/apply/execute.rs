//! Sending steps to a host: one change's steps, or several changes' in one framed execution,
//! as one script with the content on stdin (`script`); fetched files written locally.

use std::path::PathBuf;

use super::{script, Opts};
use crate::plan::Step;
use crate::transport::{Transport, TransportError};

/// Why a change's steps failed on the host (its recap line says which change).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The connection failed before or while the steps ran.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A batch's connection failed: the first change is reported, the rest are unknown.
    #[error("{source} (in one execution with the {after} change(s) after it; whether they ran is unknown)")]
    BatchLost {
        source: TransportError,
        after: usize,
    },
    /// The steps exited non-zero: the exit status and the tail of their stderr.
    #[error("exit {status}: {stderr}")]
    Exit { status: i32, stderr: String },
    /// A fetched file could not be read on the host.
    #[error("cannot read {path} on the host: {stderr}")]
    FetchRead { path: String, stderr: String },
    /// A fetched file's bytes did not come back as base64.
    #[error("{path}: bad transfer")]
    FetchTransfer { path: String },
    /// The fetched file's folder on the controller could not be made.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The fetched file could not be written on the controller.
    #[error("cannot write {}: {source}", dest.display())]
    Write {
        dest: PathBuf,
        source: std::io::Error,
    },
}

/// Run several changes' steps in one execution. Returns how many completed and, if one
/// failed, its error (with its own stderr only).
pub(super) async fn execute_batch(
    t: &Transport,
    groups: &[&[Step]],
    opts: &Opts,
) -> (usize, Option<StepError>) {
    if groups.len() == 1 {
        return match execute(t, groups[0], opts).await {
            Ok(()) => (1, None),
            Err(e) => (0, Some(e)),
        };
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    let compiled = script::compile_batch(groups, Some(&nonce));
    let started = std::time::Instant::now();
    let out = match t
        .run(
            &compiled.script,
            Some(compiled.stdin.expose()),
            opts.step_timeout,
        )
        .await
    {
        Ok(o) => o,
        // The connection is gone: which of the changes finished is unknown. The first is
        // reported; the next run re-plans the rest from what the host then says.
        Err(source) => {
            return (
                0,
                Some(StepError::BatchLost {
                    source,
                    after: groups.len() - 1,
                }),
            )
        }
    };
    tracing::debug!(
        host = t.dest(),
        changes = groups.len(),
        stdin_bytes = compiled.stdin.expose().len(),
        exit = out.status,
        ms = started.elapsed().as_millis() as u64,
        "batch"
    );
    let (done, stderr) = script::batch_outcome(
        &nonce,
        groups.len(),
        &out.stdout_str(),
        &String::from_utf8_lossy(&out.stderr),
    );
    if done == groups.len() {
        return (done, None);
    }
    let tail = crate::transport::tail(&stderr[done]);
    (
        done,
        Some(StepError::Exit {
            status: out.status,
            stderr: tail,
        }),
    )
}

pub(super) async fn execute(t: &Transport, steps: &[Step], opts: &Opts) -> Result<(), StepError> {
    let compiled = script::compile(steps);
    let started = std::time::Instant::now();
    if steps.iter().any(|s| !matches!(s, Step::Fetch { .. })) {
        let out = t
            .run(
                &compiled.script,
                Some(compiled.stdin.expose()),
                opts.step_timeout,
            )
            .await?;
        tracing::debug!(
            host = t.dest(),
            steps = steps.len(),
            stdin_bytes = compiled.stdin.expose().len(),
            exit = out.status,
            ms = started.elapsed().as_millis() as u64,
            "steps"
        );
        if !out.stderr.is_empty() {
            tracing::debug!(host = t.dest(), stderr = %out.stderr_tail(), "steps stderr");
        }
        if out.status != 0 {
            return Err(StepError::Exit {
                status: out.status,
                stderr: out.stderr_tail(),
            });
        }
    }
    for s in steps {
        if let Step::Fetch { path, dest, mode } = s {
            let out = t
                .run(
                    &format!("base64 -w0 -- {}", crate::sh::q(path)),
                    None,
                    opts.step_timeout,
                )
                .await?;
            if out.status != 0 {
                return Err(StepError::FetchRead {
                    path: path.clone(),
                    stderr: out.stderr_tail(),
                });
            }
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(out.stdout_str().trim())
                .map_err(|_| StepError::FetchTransfer { path: path.clone() })?;
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(|source| StepError::CreateDir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
            }
            crate::fsutil::write_atomic(dest, &bytes, *mode, false).map_err(|source| {
                StepError::Write {
                    dest: dest.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::testutil::opts;

    fn local() -> Transport {
        Transport::local(false)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_batch_stops_at_the_first_failed_change_with_its_own_stderr() {
        let d = tempfile::tempdir().unwrap();
        let mark = |n: &str| d.path().join(n).display().to_string();
        let first = [Step::sh(format!("echo one > {}", crate::sh::q(&mark("1"))))];
        let second = [Step::sh("echo first-broke >&2; exit 3")];
        let third = [Step::sh(format!(
            "echo three > {}",
            crate::sh::q(&mark("3"))
        ))];
        let (done, err) =
            rt().block_on(execute_batch(&local(), &[&first, &second, &third], &opts()));
        assert_eq!(done, 1);
        let err = err.expect("the second change failed");
        assert!(
            matches!(&err, StepError::Exit { stderr, .. } if stderr.contains("first-broke")),
            "{err}"
        );
        assert!(d.path().join("1").exists());
        assert!(
            !d.path().join("3").exists(),
            "a change after the failed one ran"
        );
    }

    #[test]
    fn a_lost_batch_says_the_changes_after_it_are_unknown() {
        let e = StepError::BatchLost {
            source: TransportError::Lost {
                dest: "root@h".into(),
                why: "timeout".into(),
            },
            after: 2,
        };
        assert_eq!(
            e.to_string(),
            "connection to root@h failed while running a command: timeout (in one execution with the 2 change(s) after it; whether they ran is unknown)"
        );
        let e = StepError::Exit {
            status: 3,
            stderr: "boom".into(),
        };
        assert_eq!(e.to_string(), "exit 3: boom");
    }
}
