//! A command attached on the engine the client talks to, where its task's container is: no
//! helper. `task-exec` (plain, `-t`, streamed `-i`) takes this way for such a task.

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
use crate::sink::OutputSink;

/// A command's whole stdin as [`run`]'s input: the bytes, then its end.
pub fn whole_input(bytes: Vec<u8>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(1);
    if !bytes.is_empty() {
        let _ = tx.try_send(bytes);
    }
    rx
}

/// `run`'s command in `task`'s container, attached on the client's own engine (with a TTY
/// for `tty`), until it exits, `deadline` passes or `cancel` fires; stopped, with what it
/// daemonized, if it is not waited for to its end.
#[allow(clippy::too_many_arguments)]
pub async fn run<A, S, O, C>(
    api: &A,
    task: &Resolved,
    run: &RunOptions,
    tty: bool,
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
    let exec = Attached::of(task, run, tty);
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
            r = session => Outcome::Exited(r.map_err(|e| ExecError::attach(e, task))?),
            i = &mut *cancel => Outcome::Interrupted(i),
            () = timeout => Outcome::TimedOut,
        }
    };
    if !matches!(outcome, Outcome::Exited(_)) {
        if let Some(exec_id) = created.get() {
            stop(api, task, &exec, exec_id, &run.helper, out).await;
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
