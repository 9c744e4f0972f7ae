//! The run's SSH connections: one per host, opened once and shared by its plays.

use std::sync::Arc;

use super::Opts;
use crate::facts::Facts;
use crate::plan::HostError;
use crate::site::select::HostWork;
use crate::transport::Transport;

/// One connection per host for the whole run: opened at the host's first play and reused by
/// its later ones (a lab's server is in three plays; each used to pay its own SSH handshake).
#[derive(Clone, Default)]
pub(super) struct Conns(Arc<std::sync::Mutex<std::collections::HashMap<usize, Arc<Transport>>>>);

impl Conns {
    /// The host's connection, opened now if this is its first play. A host runs one play at a
    /// time, so no two tasks open the same host's connection; the map is never locked across
    /// the connect, so hosts connect in parallel.
    pub async fn get(
        &self,
        i: usize,
        work: &HostWork,
        opts: &Opts,
    ) -> Result<Arc<Transport>, HostError> {
        if let Some(t) = self.0.lock().expect("conns").get(&i) {
            return Ok(t.clone());
        }
        let clock = opts.time(super::timings::Split::Remote);
        let t = Transport::connect(&work.conn, opts.host_keys, opts.connect_timeout).await;
        opts.lap(clock, Some(&work.host), || {
            super::timings::connect_label(&t)
        });
        let t = Arc::new(t?);
        self.0.lock().expect("conns").insert(i, t.clone());
        Ok(t)
    }

    /// The host's connection and its first probe's answers (if it had one); a failed first
    /// probe is the host's error.
    pub async fn ready(
        &self,
        i: usize,
        work: &HostWork,
        opts: &Opts,
        pre: Option<Result<Facts, HostError>>,
    ) -> Result<(Arc<Transport>, Option<Facts>), HostError> {
        let pre = pre.transpose()?;
        Ok((self.get(i, work, opts).await?, pre))
    }

    pub async fn close_all(&self) {
        let all: Vec<Arc<Transport>> = self
            .0
            .lock()
            .expect("conns")
            .drain()
            .map(|(_, t)| t)
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for t in all {
            if let Ok(t) = Arc::try_unwrap(t) {
                set.spawn(t.close());
            }
        }
        while set.join_next().await.is_some() {}
    }
}
