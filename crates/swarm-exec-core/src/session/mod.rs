//! A live session with a task on another node (`task-exec -t`, and `-i` with more stdin
//! than a secret holds): stdin streamed as it comes, a TTY resized with the local terminal,
//! output as it is written — through the manager's Engine API alone.
//!
//! The data path: the client is attached (a hijacked connection, as `docker run -i`) to a
//! **relay** container it creates on the engine it talks to, on an attachable overlay
//! network; the helper, on the task's node and on the same overlay, **dials the relay**
//! (it never listens) and presents the run's relay token; the relay pairs that one
//! connection with the client's stream and only copies bytes. Frames are sealed end to end
//! with keys derived from the run key, which travels in the run's envelope secret to the
//! helper only: the relay, and anything else on the overlay, can neither read nor inject.
//!
//! The relay has no socket, no capabilities, a read-only root and an unprivileged user; it
//! runs the node-side program (zero-install: from an image imported from this binary's
//! build, `swarm-exec-relay:<build>`; `--image`: that image, which the manager must have).
//! Each session makes an overlay of its own (`swarm-exec-session-<tag>`, on a random /24)
//! and removes it last; `--network NAME` uses the operator's instead. Why not one kept
//! between sessions: see `network`.

use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::engine::SwarmApi;
use crate::model::outcome::{Interrupt, Outcome};
use crate::model::target::HelperRef;
use crate::sink::OutputSink;

mod driver;
mod error;
mod network;
mod relay;
mod request;
mod teardown;

#[cfg(test)]
pub(crate) mod tests;

pub use error::{SessionError, SessionFailure};
pub use network::SESSION_NETWORK;
pub use relay::RELAY_PORT;
pub use request::{Copy, Decide, SessionRequest, HELLO_WAIT, HELLO_WARN, START_WAIT};
use teardown::Made;

/// Runs a session; the relay, the helper and the envelope are removed before this returns,
/// whatever happened. `input` brings what is typed or piped (closed at end of input);
/// `sizes` the terminal's size, now and on every change.
pub async fn remote_session<A, S, O, C>(
    api: &A,
    mut req: SessionRequest<'_>,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    sizes: S,
    out: &mut O,
    deadline: Option<Instant>,
    cancel: C,
) -> Result<Outcome, SessionError>
where
    A: SwarmApi,
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
    C: std::future::Future<Output = Interrupt>,
{
    let target = req.task.describe();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let tag = run_id[..12].to_owned();
    let mut made = Made::default();
    tokio::pin!(cancel);
    let far = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let decide = req.copy.as_mut().and_then(|c| c.decide.take());
    let io = driver::Io {
        input,
        decide,
        sizes,
    };
    let result = tokio::select! {
        r = driver::run(api, &req, &tag, io, out, &mut made, far) => r,
        i = cancel.as_mut() => Ok(Outcome::Interrupted(i)),
        _ = sleep_until(far) => Ok(Outcome::TimedOut),
    };
    made.remove(api, out).await;
    result.map_err(|source| SessionError {
        at: Box::new(HelperRef {
            target,
            helper: format!("swarm-exec-{tag}"),
            node: req.task.node_name.clone(),
        }),
        source,
    })
}
