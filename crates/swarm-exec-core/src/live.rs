//! `task-exec -t`, and `-i` with more stdin than a secret holds: a command attached live.
//! Which way it goes is decided here: a task on the engine the client talks to is attached
//! directly (no helper); one on another node goes through a live session. A caller first
//! finds the task and its way ([`find_route`]: nothing is created yet), readies its
//! terminal for the way chosen, then [`run`]s.

use std::future::Future;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::direct;
use crate::engine::SwarmApi;
use crate::error::ExecError;
use crate::model::options::RunOptions;
use crate::model::outcome::{Interrupt, Outcome};
use crate::session::{remote_session, SessionRequest};
use crate::sink::OutputSink;
pub use crate::task_exec::{find_route, Plan, Route};

/// What runs live, and how.
pub struct LiveRequest<'a> {
    pub run: &'a RunOptions,
    /// A TTY for the command (`-t`).
    pub tty: bool,
    /// `--network` for a session.
    pub network: Option<&'a str>,
    /// What `-i` read before deciding to stream: it goes first.
    pub stdin_prefix: Vec<u8>,
}

/// Runs the command the way `plan` says, until it exits, `deadline` passes or `cancel`
/// fires; `input` brings its stdin (the prefix already sent on a direct path is the
/// caller's to put in front), `sizes` its terminal's size. A command no longer waited
/// for is stopped, with what it daemonized; nothing is left.
#[allow(clippy::too_many_arguments)]
pub async fn run<A, S, O, C>(
    api: &A,
    plan: &Plan,
    req: LiveRequest<'_>,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    sizes: S,
    out: &mut O,
    deadline: Option<Instant>,
    cancel: &mut C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
    C: Future<Output = Interrupt> + Unpin,
{
    let carrier = match &plan.route {
        Route::Direct => {
            let task = &plan.task;
            return direct::run(
                api, task, req.run, req.tty, input, sizes, out, deadline, cancel,
            )
            .await;
        }
        Route::Session(carrier) => carrier,
    };
    let session = SessionRequest {
        task: &plan.task,
        run: req.run,
        carrier,
        tty: req.tty,
        network: req.network,
        stdin_prefix: req.stdin_prefix,
        copy: None,
        forward: None,
        serve: false,
    };
    Ok(remote_session(api, session, input, sizes, out, deadline, cancel).await?)
}
