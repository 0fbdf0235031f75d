//! The manager side of an exec: resolve the task, create the helper, follow it to the end,
//! and remove it — on every path, including timeouts, interrupts and API errors.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep_until, Instant};

use crate::api::{ApiError, LogStream, SwarmApi, TaskFilter, TaskInfo};
use crate::frame::{Decoder, Line, Record};
use crate::helper::{helper_spec, pinned_image, ExecSpec, HelperTarget};
use crate::resolve::{resolve, ResolveError, Resolved};
use crate::target::TaskRef;

/// One `task-exec`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub target: TaskRef,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// For the whole run, from the call to the exit code.
    pub timeout: Duration,
    pub image: String,
}

/// How a run ended when swarm-exec itself did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this code.
    Exited(i64),
    /// `timeout` passed first.
    TimedOut,
    /// The caller's cancellation fired first.
    Interrupted(Interrupt),
}

/// Why the caller cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Sigint,
    Sigterm,
}

/// Where the command's output goes. Errors are the sink's business (e.g. a closed pipe);
/// the run carries on so the helper is still removed and the exit code still reported.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
    /// A note about the run, not from the command (e.g. incomplete output).
    fn warn(&mut self, message: &str);
}

/// Failures of swarm-exec itself; every one names the task, node and service involved.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the command is empty")]
    EmptyCommand,
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{target}: cannot read helper image {image} on the manager: {source}")]
    Image {
        target: String,
        image: String,
        #[source]
        source: ApiError,
    },
    #[error("{target}: cannot create the helper service for node {node}: {source}")]
    CreateHelper {
        target: String,
        node: String,
        #[source]
        source: ApiError,
    },
    #[error("{at}: helper was rejected: {reason}")]
    HelperRejected { at: Box<HelperRef>, reason: String },
    #[error("{at}: helper was not started within {waited:?} (state {state}{})", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    HelperNotStarted {
        at: Box<HelperRef>,
        state: String,
        message: String,
        waited: Duration,
    },
    #[error("{at}: helper failed: {reason}")]
    HelperFailed { at: Box<HelperRef>, reason: String },
    #[error("{at}: following the helper: {source}")]
    Follow {
        at: Box<HelperRef>,
        #[source]
        source: ApiError,
    },
}

/// How long the helper may take to reach `running` before the run fails (125). Covers
/// scheduling and container start; a node that is down never gets there.
pub const HELPER_START_WAIT: Duration = Duration::from_secs(30);
/// How long a starting target task is waited for.
pub const TARGET_START_WAIT: Duration = Duration::from_secs(60);
/// How often the helper task is read while it starts, and afterwards. The exit code
/// normally arrives on the log stream, so the later polls are only a fallback.
const POLL_STARTING: Duration = Duration::from_millis(50);
const POLL_RUNNING: Duration = Duration::from_millis(250);
/// After the helper task ended without its exit record, how long the log stream is given
/// to deliver it.
const LOG_DRAIN: Duration = Duration::from_secs(3);

/// Runs `req`. `cancel` resolves when the caller wants to stop (e.g. on SIGINT); the helper
/// is removed before this returns, whatever happened.
pub async fn task_exec<A, S, C>(
    api: &A,
    req: &ExecRequest,
    out: &mut S,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt>,
{
    if req.command.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    let deadline = Instant::now() + req.timeout;
    tokio::pin!(cancel);

    // Nothing exists on the swarm yet: stopping here needs no cleanup.
    let prepared = tokio::select! {
        r = prepare(api, req) => r?,
        _ = sleep_until(deadline) => return Ok(Outcome::TimedOut),
        i = &mut cancel => return Ok(Outcome::Interrupted(i)),
    };
    let (resolved, image) = prepared;
    let target = format!(
        "task {} ({}, service {})",
        resolved.task_id, resolved.display, resolved.service_name
    );
    let node = resolved.node_name.clone();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let exec = ExecSpec {
        container_id: resolved.container_id.clone(),
        command: req.command.clone(),
        env: req.env.clone(),
        workdir: req.workdir.clone(),
        user: req.user.clone(),
        privileged: req.privileged,
    };
    let budget = deadline.saturating_duration_since(Instant::now());
    let spec = helper_spec(
        &HelperTarget {
            task_id: &resolved.task_id,
            node_id: &resolved.node_id,
            service_name: &resolved.service_name,
        },
        &exec,
        &image,
        &run_id,
        budget,
    );

    // A create interrupted mid-flight may still have created the helper, so from here on
    // cleanup runs by name whatever happens.
    let created = tokio::select! {
        r = api.create_service(&spec) => r,
        _ = sleep_until(deadline) => Err(ApiError::Other("timed out".into())),
        i = &mut cancel => {
            cleanup(api, &spec.name, out).await;
            return Ok(Outcome::Interrupted(i));
        }
    };
    let helper_id = match created {
        Ok(id) => id,
        Err(source) => {
            cleanup(api, &spec.name, out).await;
            if Instant::now() >= deadline {
                return Ok(Outcome::TimedOut);
            }
            return Err(ExecError::CreateHelper {
                target,
                node,
                source,
            });
        }
    };
    tracing::debug!(helper = %spec.name, id = %helper_id, node = %node, image = %image, "helper created");

    let ctx = HelperRef {
        target,
        helper: spec.name.clone(),
        node,
    };
    let result = tokio::select! {
        r = follow(api, &helper_id, &run_id, &ctx, out) => r,
        _ = sleep_until(deadline) => Ok(Outcome::TimedOut),
        i = &mut cancel => Ok(Outcome::Interrupted(i)),
    };
    cleanup(api, &helper_id, out).await;
    result
}

async fn prepare<A: SwarmApi>(api: &A, req: &ExecRequest) -> Result<(Resolved, String), ExecError> {
    // The image lookup does not depend on the task: do both at once.
    let (resolved, image) = tokio::join!(
        resolve(api, &req.target, TARGET_START_WAIT),
        api.inspect_image(&req.image)
    );
    let resolved = resolved?;
    let image = image.map_err(|source| ExecError::Image {
        target: resolved.display.clone(),
        image: req.image.clone(),
        source,
    })?;
    Ok((resolved, pinned_image(&req.image, image.as_ref())))
}

async fn cleanup<A: SwarmApi, S: OutputSink>(api: &A, helper: &str, out: &mut S) {
    if let Err(e) = api.remove_service(helper).await {
        out.warn(&format!(
            "could not remove helper service {helper}: {e}; `docker service rm {helper}` removes it"
        ));
    }
}

/// The target and the helper working on it, as failures name them.
#[derive(Debug, Clone)]
pub struct HelperRef {
    pub target: String,
    pub helper: String,
    pub node: String,
}

impl std::fmt::Display for HelperRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on node {} (helper {})",
            self.target, self.node, self.helper
        )
    }
}

/// Follows the helper until its exit record arrives, or its task ends without one.
async fn follow<A: SwarmApi, S: OutputSink>(
    api: &A,
    helper_id: &str,
    run_id: &str,
    ctx: &HelperRef,
    out: &mut S,
) -> Result<Outcome, ExecError> {
    let mut logs = api.service_logs(helper_id);
    let mut logs_open = true;
    let mut decoder = Decoder::new(run_id);
    // What the helper printed outside the protocol: its own diagnostics.
    let mut diagnostics: Vec<u8> = Vec::new();
    let filter = TaskFilter {
        service: Some(helper_id.to_owned()),
        ..Default::default()
    };
    let started = Instant::now();
    let mut running = false;
    let mut next_poll = Instant::now();
    let mut ended: Option<(TaskInfo, Instant)> = None;

    loop {
        tokio::select! {
            item = logs.next(), if logs_open => match item {
                Some(Ok((stream, bytes))) => {
                    if stream == LogStream::Stderr {
                        diagnostics.extend_from_slice(&bytes);
                        continue;
                    }
                    let mut done = None;
                    decoder.feed(&bytes, |line| match line {
                        Line::Record(Record::Stdout(b)) => out.stdout(&b),
                        Line::Record(Record::Stderr(b)) => out.stderr(&b),
                        Line::Record(Record::Exit(code)) => done = Some(Ok(Outcome::Exited(code))),
                        Line::Record(Record::TimedOut) => done = Some(Ok(Outcome::TimedOut)),
                        Line::Record(Record::Failed(reason)) => done = Some(Err(reason)),
                        Line::Other(l) => {
                            diagnostics.extend_from_slice(&l);
                            diagnostics.push(b'\n');
                        }
                    });
                    match done {
                        Some(Ok(outcome)) => return Ok(outcome),
                        Some(Err(reason)) => return Err(ExecError::HelperFailed {
                            at: Box::new(ctx.clone()),
                            reason,
                        }),
                        None => {}
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "helper log stream failed");
                    out.warn(&format!("lost the helper's output stream ({e}); output may be incomplete"));
                    logs_open = false;
                }
                None => {
                    tracing::debug!("helper log stream ended");
                    logs_open = false;
                }
            },
            _ = sleep_until(next_poll) => {
                if let Some((task, since)) = &ended {
                    if !logs_open || since.elapsed() >= LOG_DRAIN {
                        return ended_without_record(task, &diagnostics, ctx, out);
                    }
                    next_poll = Instant::now() + POLL_STARTING;
                    continue;
                }
                let tasks = api.list_tasks(&filter).await.map_err(|source| ExecError::Follow {
                    at: Box::new(ctx.clone()),
                    source,
                })?;
                // Restart condition none: there is at most one task.
                let task = tasks.into_iter().find(|t| t.service_id == helper_id);
                let state = task.as_ref().map_or_else(|| "new".to_owned(), |t| t.state.clone());
                match state.as_str() {
                    "running" if !running => {
                        tracing::debug!(after = ?started.elapsed(), "helper running");
                        running = true;
                    }
                    "rejected" => {
                        let t = task.unwrap_or_default();
                        return Err(ExecError::HelperRejected {
                            at: Box::new(ctx.clone()),
                            reason: first_non_empty(&t.err, &t.message),
                        });
                    }
                    "complete" | "failed" | "shutdown" | "orphaned" | "remove" => {
                        tracing::debug!(state, "helper task ended; draining its logs");
                        ended = Some((task.unwrap_or_default(), Instant::now()));
                    }
                    s if !running && started.elapsed() >= HELPER_START_WAIT => {
                        let t = task.unwrap_or_default();
                        return Err(ExecError::HelperNotStarted {
                            at: Box::new(ctx.clone()),
                            state: s.to_owned(),
                            message: first_non_empty(&t.err, &t.message),
                            waited: HELPER_START_WAIT,
                        });
                    }
                    _ => {}
                }
                next_poll = Instant::now() + if running { POLL_RUNNING } else { POLL_STARTING };
            }
        }
    }
}

fn first_non_empty(a: &str, b: &str) -> String {
    if a.is_empty() { b } else { a }.to_owned()
}

/// The helper's task ended but its exit record never arrived (the helper crashed, or the
/// log stream broke). Its container's exit code is the command's when the command ran.
fn ended_without_record<S: OutputSink>(
    task: &TaskInfo,
    diagnostics: &[u8],
    ctx: &HelperRef,
    out: &mut S,
) -> Result<Outcome, ExecError> {
    let diag = String::from_utf8_lossy(diagnostics).trim().to_owned();
    let failed = |reason: String| ExecError::HelperFailed {
        at: Box::new(ctx.clone()),
        reason,
    };
    match (task.state.as_str(), task.exit_code) {
        ("complete" | "failed", Some(code)) if diag.is_empty() => {
            out.warn(&format!(
                "helper {} ended without reporting through its log stream; \
                 exit code {code} taken from its task state, output may be incomplete",
                ctx.helper
            ));
            Ok(Outcome::Exited(code))
        }
        _ => Err(failed(if diag.is_empty() {
            format!(
                "its task ended in state {} without a result{}",
                task.state,
                if task.err.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", task.err)
                }
            )
        } else {
            diag
        })),
    }
}

#[cfg(test)]
mod tests;
