//! `node-exec`: the helper's entry. It reads its envelope and connects to its node's own
//! engine, then serves the run the envelope describes: a live session ([`crate::session`])
//! or a run on the log path ([`crate::batch`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use swarm_exec_proto::args::{HelperArgs, HELPER_LOG_MAX_MB, ROTATED_LINGER};
use swarm_exec_proto::Envelope;

use crate::batch::{node_exec, NodeRun};
pub use crate::end::{NodeEnd, NodeError, TargetError};
use crate::stop::{Program, Stopper, STOP_GRACE};

/// Where the engine's socket is mounted in the helper.
pub const NODE_SOCKET: &str = "unix:///var/run/docker.sock";

/// `node-exec`: the whole helper run.
pub async fn run(args: &HelperArgs) -> NodeEnd {
    let bytes = match std::fs::read(&args.envelope) {
        Ok(b) => b,
        Err(source) => {
            return NodeEnd::Failed(NodeError::ReadEnvelope {
                path: args.envelope.clone(),
                source,
            })
        }
    };
    let envelope = match Envelope::decode(&bytes, args.containers.clone()) {
        Ok(e) => e,
        Err(source) => {
            return NodeEnd::Failed(NodeError::Envelope {
                path: args.envelope.clone(),
                source,
            })
        }
    };
    drop(bytes);
    // Always the node's own engine, whatever the environment says.
    let docker = match Docker::connect_with_unix(NODE_SOCKET, 120, bollard::API_DEFAULT_VERSION) {
        Ok(d) => d,
        Err(e) => return NodeEnd::Failed(NodeError::Connect(e)),
    };
    // Alongside the run: stoppers and debug containers left on this node by helpers that
    // were killed.
    let collector = docker.clone();
    tokio::spawn(async move {
        crate::stop::collect_left_stoppers(&collector).await;
        crate::debug::collect_left(&collector).await;
    });
    // Removing the helper service sends it SIGTERM: the commands are stopped, not left.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => return NodeEnd::Failed(NodeError::Signal(e)),
    };
    // Stopped once: the run is told, and so is a helper that stays after it (below).
    let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        term.recv().await;
        let _ = stopped_tx.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let stop = until_stopped(stopped.clone());
    let stopper = Stopper {
        image: args.image.clone(),
        program: Program::ThisOne,
        grace: STOP_GRACE,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    if let Some(spec) = &envelope.session {
        // Never late, as below; a session's client is told by the helper's task state.
        let Some(left) = envelope.not_after_ms.checked_sub(now_ms).filter(|&l| l > 0) else {
            let late_ms = now_ms - envelope.not_after_ms;
            return NodeEnd::Failed(NodeError::TooLate { late_ms });
        };
        let budget = args.budget.min(Duration::from_millis(left));
        return crate::session::run(&docker, &envelope, spec, &args.tag, budget, &stopper, stop)
            .await;
    }
    let run = NodeRun {
        envelope: &envelope,
        tag: &args.tag,
        now_ms,
        budget: args.budget,
        stopper: &stopper,
    };
    let mut out = Counted {
        inner: std::io::stdout(),
        bytes: 0,
    };
    let end = node_exec(&docker, run, stop, &mut out).await;
    // Frames enough to have rotated the log: stay until removed, so the node's engine goes
    // on following it (see ROTATED_LINGER).
    let rotated = out.bytes >= HELPER_LOG_MAX_MB * 7 / 8 * 1024 * 1024;
    if rotated && !matches!(end, NodeEnd::Failed(_)) {
        let _ = tokio::time::timeout(ROTATED_LINGER, until_stopped(stopped)).await;
    }
    end
}

/// The helper's stdout, counting what was written to it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
