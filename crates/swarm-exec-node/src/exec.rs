//! `node-exec`: the helper's entry. It reads its envelope and connects to its node's own
//! engine, then serves the run the envelope describes: a live session ([`crate::session`])
//! or a run on the log path ([`crate::batch`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use swarm_exec_proto::args::HelperArgs;
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
    let stop = async move {
        term.recv().await;
    };
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
    node_exec(&docker, run, stop, &mut std::io::stdout()).await
}
