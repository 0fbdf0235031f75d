//! `task-exec -t`: a terminal session in a task whose container is on the engine the client
//! talks to. No helper: the exec is attached as `docker exec -it` attaches it — stdin live,
//! a TTY of the local terminal's size, resized with it — and its exit code is the command's.
//!
//! A task on another node goes through a live session instead ([`crate::session`]);
//! `task_exec::local_task` says which of the two a task needs.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use swarm_exec_proto::args::RUN_ENV;
use swarm_exec_proto::Stream as Output;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::engine::{ApiError, Attach, ExecOptions, LogStream, SwarmApi};
use crate::lookup::resolve::Resolved;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("reading the engine's own node: {0}")]
    Info(#[source] ApiError),
    #[error("creating the exec: {0}")]
    Create(#[source] ApiError),
    #[error("starting the exec: {0}")]
    Start(#[source] ApiError),
    #[error("the engine did not attach the exec")]
    NotAttached,
    #[error("reading the exec's output: {0}")]
    Read(#[source] ApiError),
    #[error("reading the exec's exit code: {0}")]
    Inspect(#[source] ApiError),
    #[error("the engine gave no exit code for the exec")]
    NoExitCode,
}

/// What to run, attached.
#[derive(Debug, Clone)]
pub struct Attached<'a> {
    pub container: &'a str,
    pub command: &'a [String],
    pub env: &'a [String],
    pub workdir: Option<&'a str>,
    pub user: Option<&'a str>,
    pub privileged: bool,
    /// Allocate a TTY (`-t`); the output is then one stream, as the terminal shows it.
    pub tty: bool,
    /// The run's mark, put in the command's environment: what a stopper looks for in the
    /// processes that left the command's tree.
    pub mark: String,
}

impl<'a> Attached<'a> {
    /// `command` in `container` as it is: no TTY, environment, user or directory of its own.
    pub fn plain(container: &'a str, command: &'a [String]) -> Self {
        Attached {
            container,
            command,
            env: &[],
            workdir: None,
            user: None,
            privileged: false,
            tty: false,
            mark: fresh_mark(),
        }
    }

    /// `run`'s command in `task`'s container, with a fresh mark.
    pub fn of(task: &'a Resolved, run: &'a crate::model::options::RunOptions, tty: bool) -> Self {
        Attached {
            container: &task.container_id,
            command: &run.command,
            env: &run.env,
            workdir: run.workdir.as_deref(),
            user: run.user.as_deref(),
            privileged: run.privileged,
            tty,
            mark: fresh_mark(),
        }
    }
}

/// A run's mark: 12 random hex digits.
fn fresh_mark() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Runs `exec` attached: what `input` (when given) brings goes to its stdin, which ends
/// when `input` closes; each size from `sizes` (height, width) resizes its TTY, the first
/// as soon as it exists; its output goes to `out` (all of it on stdout with a TTY).
/// Returns its exit code; the exec's ID is in `created` from the moment it exists, for a
/// caller that stops waiting and has to stop the command.
///
/// `input` is a channel, not a reader: the caller reads its stdin on a thread of its own,
/// which a blocking read can leave behind (tokio's stdin would hold up the runtime's
/// shutdown until the user pressed Enter).
pub async fn attached<A, S, O>(
    api: &A,
    exec: &Attached<'_>,
    created: &std::cell::OnceCell<String>,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    mut sizes: S,
    mut out: O,
) -> Result<i64, AttachError>
where
    A: SwarmApi,
    S: Stream<Item = (u16, u16)> + Unpin,
    O: FnMut(Output, &[u8]),
{
    let options = ExecOptions {
        container: exec.container.to_owned(),
        command: exec.command.to_vec(),
        env: exec
            .env
            .iter()
            .cloned()
            .chain([format!("{RUN_ENV}={}", exec.mark)])
            .collect(),
        workdir: exec.workdir.map(str::to_owned),
        user: exec.user.map(str::to_owned),
        privileged: exec.privileged,
        tty: exec.tty,
        stdin: input.is_some(),
    };
    let id = api
        .create_exec(&options)
        .await
        .map_err(AttachError::Create)?;
    let _ = created.set(id.clone());
    let Some(Attach {
        mut output,
        input: mut stdin,
    }) = api
        .start_exec(&id, exec.tty)
        .await
        .map_err(AttachError::Start)?
    else {
        return Err(AttachError::NotAttached);
    };
    let mut input = input;
    let mut sizes_open = exec.tty;
    loop {
        tokio::select! {
            item = output.next() => match item {
                None => break,
                Some(Ok((LogStream::Stderr, bytes))) => out(Output::Stderr, &bytes),
                Some(Ok((LogStream::Stdout, bytes))) => out(Output::Stdout, &bytes),
                Some(Err(e)) => return Err(AttachError::Read(e)),
            },
            chunk = async { input.as_mut().expect("guarded").recv().await }, if input.is_some() => {
                match chunk {
                    // Local end of input: the command's stdin ends too.
                    None => {
                        let _ = stdin.shutdown().await;
                        input = None;
                    }
                    Some(bytes) => {
                        if stdin.write_all(&bytes).await.is_err() {
                            input = None;
                        }
                    }
                }
            }
            size = sizes.next(), if sizes_open => match size {
                // A resize that fails (the exec just ended) changes nothing.
                Some((rows, cols)) => {
                    let _ = api.resize_exec(&id, rows, cols).await;
                }
                None => sizes_open = false,
            },
        }
    }
    // The output can end a moment before the engine records the exit code.
    for _ in 0..200 {
        let state = api.inspect_exec(&id).await.map_err(AttachError::Inspect)?;
        match (state.running, state.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err(AttachError::NoExitCode)
}
