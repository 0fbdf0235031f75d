//! The helper's end of a live session once it is open: the connection to the relay and
//! its sealing halves, and how the session ends on this side. Shared by a command's
//! session and `--persist`'s serving one.

use std::time::Duration;

use swarm_exec_proto::session::{Msg, Opener, Sealer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The helper's end of a session: the connection to the relay and its sealing halves.
pub(crate) struct Link {
    pub(crate) rx: tokio::net::tcp::OwnedReadHalf,
    pub(crate) tx: tokio::net::tcp::OwnedWriteHalf,
    pub(crate) seal: Sealer,
    pub(crate) open: Opener,
}

impl Link {
    /// The helper's last frame, then the end of the session (see [`finish`]). A client
    /// already gone cannot be told: nothing more to do.
    pub(crate) async fn last(mut self, msg: &Msg) {
        let mut b = Vec::new();
        self.seal.seal(msg, &mut b);
        let _ = self.tx.write_all(&b).await;
        finish(self.tx, self.rx).await;
    }
}

/// How long the helper waits, after its last frame, for the relay to close.
const LINGER: Duration = Duration::from_secs(10);

/// Ends the helper's side and waits until the relay has closed its own: only then has all
/// that was written arrived. (A helper that exits at once loses what the kernel still held
/// to send: its container's network goes with it.)
async fn finish(mut tx: tokio::net::tcp::OwnedWriteHalf, mut rx: tokio::net::tcp::OwnedReadHalf) {
    let _ = tx.shutdown().await;
    let drained = async {
        let mut buf = [0u8; 4096];
        while matches!(rx.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER, drained).await;
}
