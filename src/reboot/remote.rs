//! One command on a fresh connection, and a failed command's output in words: what `reboot`
//! and `remove-node` run on a host or on the k3s server. A fresh connection each time because
//! a reboot kills the old one (and the server may be the host that rebooted).

use std::time::Duration;

use crate::transport::{HostKeyPolicy, Output, Transport, TransportError};

/// Runs `script` on a fresh connection to `conn` and closes it.
pub async fn once(
    conn: &crate::inventory::Conn,
    host_keys: HostKeyPolicy,
    connect_timeout: Duration,
    script: &str,
    timeout: Duration,
) -> Result<Output, TransportError> {
    let t = Transport::connect(conn, host_keys, connect_timeout).await?;
    let r = t.run(script, None, timeout).await;
    // A master whose host just went down may take a while to notice: do not wait on it.
    let _ = tokio::time::timeout(Duration::from_secs(5), t.close()).await;
    r
}

/// A command's failure: its exit status and the tail of its stderr.
pub fn failed_output(o: &Output) -> String {
    let tail = o.stderr_tail();
    if tail.is_empty() {
        format!("exit {}", o.status)
    } else {
        format!("exit {}: {tail}", o.status)
    }
}
