//! `task-exec -t`, and `-i` with more stdin than a secret holds: a command attached live.
//! Which way it goes is decided here: a task on the engine the client talks to is attached
//! directly (no helper); one on another node goes through a live session. A caller first
//! finds the task and its way ([`find_route`]: nothing is created yet), readies its
//! terminal for the way chosen, then [`run`]s.

use std::future::Future;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::engine::SwarmApi;
use crate::error::ExecError;
use crate::local::{attached, Attached};
use crate::lookup::resolve::Resolved;
use crate::model::options::{HelperSource, RunOptions};
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
        Route::Direct => return direct(api, plan, &req, input, sizes, out, deadline, cancel).await,
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
    };
    Ok(remote_session(api, session, input, sizes, out, deadline, cancel).await?)
}

/// A command's whole stdin as [`run`]'s input: the bytes, then its end.
pub fn whole_input(bytes: Vec<u8>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(1);
    if !bytes.is_empty() {
        let _ = tx.try_send(bytes);
    }
    rx
}

/// An exec attached on the client's own engine; stopped if it is not waited for to its end.
#[allow(clippy::too_many_arguments)]
async fn direct<A, S, O, C>(
    api: &A,
    plan: &Plan,
    req: &LiveRequest<'_>,
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
    let exec = Attached::of(&plan.task, req.run, req.tty);
    let created = std::cell::OnceCell::new();
    let outcome = {
        let session = attached(
            api,
            &exec,
            &created,
            input,
            sizes,
            |stream, bytes| match stream {
                swarm_exec_proto::Stream::Stderr => out.stderr(bytes),
                _ => out.stdout(bytes),
            },
        );
        let timeout = async {
            match deadline {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = session => Outcome::Exited(r.map_err(|e| ExecError::attach(e, &plan.task))?),
            i = &mut *cancel => Outcome::Interrupted(i),
            () = timeout => Outcome::TimedOut,
        }
    };
    if !matches!(outcome, Outcome::Exited(_)) {
        if let Some(exec_id) = created.get() {
            stop(api, &plan.task, &exec, exec_id, &req.run.helper, out).await;
        }
    }
    Ok(outcome)
}

/// How long stopping what an attached exec left running may take: its grace period between
/// SIGTERM and SIGKILL, and room to start the stopper.
const STOP_WAIT: Duration =
    swarm_exec_node::stop::STOP_GRACE.saturating_add(Duration::from_secs(25));

/// Stops the command of an attached exec that the client no longer waits for (timeout,
/// signal), as a helper's stopper does: the exec's processes and every process of the
/// container carrying the run's mark. Warns if they could not be seen to end.
async fn stop<A: SwarmApi, O: OutputSink>(
    api: &A,
    task: &Resolved,
    exec: &Attached<'_>,
    exec_id: &str,
    helper: &HelperSource,
    out: &mut O,
) {
    use swarm_exec_node::stop::{Program, Stopper, STOP_GRACE};
    let stopper = match helper {
        HelperSource::Image(image) => Stopper {
            image: Some(image.clone()),
            program: Program::ThisOne,
            grace: STOP_GRACE,
        },
        HelperSource::Embedded(p) => Stopper {
            image: None,
            program: Program::Carried {
                loader: p.loader,
                program: (p.program)(),
            },
            grace: STOP_GRACE,
        },
    };
    let stopped = tokio::time::timeout(
        STOP_WAIT,
        api.stop_exec(&stopper, exec_id, exec.container, &exec.mark),
    )
    .await;
    let why = match stopped {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => format!("not done within {} s", STOP_WAIT.as_secs()),
    };
    out.warn(&format!(
        "task {}: the command was told to stop, but could not be seen to end ({why}); it may \
         still be running",
        task.task_id
    ));
}
