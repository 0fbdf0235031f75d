//! `task-exec`: resolve one task, then run one helper for it on its node ([`crate::run`]).

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::api::{ApiError, SwarmApi};
use swarm_exec_proto::{Envelope, ExecSpec};

use crate::helper::{pinned_image, MAX_STDIN};
use crate::resolve::{resolve, ResolveError, Resolved};
use crate::run::{
    create_envelope, create_or_stop, remove_envelope, run_helper, Created, HelperJob, RunEnd, Stop,
    TargetResult,
};
use crate::sink::OutputSink;
use crate::target::TaskRef;

/// One `task-exec`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub target: TaskRef,
    pub run: RunOptions,
}

/// What to run, and how: the part `task-exec` and `service-exec` share.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// `task-exec`: for the whole run, from the call to the exit code; `service-exec`: for
    /// each wave.
    pub timeout: Duration,
    pub image: String,
    /// What the command reads on its stdin (at most [`MAX_STDIN`] bytes); `None`: nothing.
    pub stdin: Option<Vec<u8>>,
}

/// The kernel's limit on one argument or environment entry (MAX_ARG_STRLEN, with its NUL).
pub const MAX_ARG: usize = 128 * 1024 - 1;

/// Why [`RunOptions`] were refused, before anything was created.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRun {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("invalid helper image reference {0:?}")]
    BadImage(String),
    #[error(
        "stdin holds {0} bytes or more; at most {MAX_STDIN} bytes fit in a swarm secret, {1} of them beside this command"
    )]
    StdinTooLarge(usize, usize),
    #[error("argument {index} of the command holds {len} bytes; Linux passes at most {MAX_ARG} in one argument")]
    ArgTooLong { index: usize, len: usize },
    #[error("environment entry {index} holds {len} bytes; Linux passes at most {MAX_ARG} in one")]
    EnvTooLong { index: usize, len: usize },
    #[error("the command and its environment hold {0} bytes; at most {1} fit in the run's secret")]
    CommandTooLarge(usize, usize),
    #[error("cannot make the run's key: {0}")]
    Key(#[source] std::io::Error),
}

impl RunOptions {
    pub fn check(&self) -> Result<(), InvalidRun> {
        if self.command.is_empty() {
            return Err(InvalidRun::EmptyCommand);
        }
        if !crate::target::is_image_ref(&self.image) {
            return Err(InvalidRun::BadImage(self.image.clone()));
        }
        let long = |words: &[String]| {
            words
                .iter()
                .enumerate()
                .find(|(_, w)| w.len() > MAX_ARG)
                .map(|(index, w)| (index, w.len()))
        };
        if let Some((index, len)) = long(&self.command) {
            return Err(InvalidRun::ArgTooLong { index, len });
        }
        if let Some((index, len)) = long(&self.env) {
            return Err(InvalidRun::EnvTooLong { index, len });
        }
        let bare = self.envelope_without_stdin(0, [0; 32]);
        if bare.stdin_room() == 0 {
            let size = bare.encode().len();
            return Err(InvalidRun::CommandTooLarge(size, MAX_STDIN - 1));
        }
        match &self.stdin {
            Some(data) => {
                let room = bare.stdin_room();
                if data.len() > room {
                    return Err(InvalidRun::StdinTooLarge(data.len(), room));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn envelope_without_stdin(&self, not_after_ms: u64, key: [u8; 32]) -> Envelope {
        Envelope {
            exec: ExecSpec {
                containers: Vec::new(),
                command: self.command.clone(),
                env: self.env.clone(),
                workdir: self.workdir.clone(),
                user: self.user.clone(),
                privileged: self.privileged,
            },
            stdin: None,
            not_after_ms,
            key,
        }
    }

    /// The run's envelope, with a fresh key: the command must not start after `budget`
    /// from now.
    pub fn envelope(&self, budget: Duration) -> Result<Envelope, InvalidRun> {
        let not_after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(budget);
        let key = Envelope::new_key().map_err(InvalidRun::Key)?;
        Ok(Envelope {
            stdin: self.stdin.clone(),
            ..self.envelope_without_stdin(
                u64::try_from(not_after.as_millis()).unwrap_or(u64::MAX),
                key,
            )
        })
    }
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
    /// The terminal (or the ssh session) went away.
    Sighup,
}

/// Failures of swarm-exec itself; every one names the task, node and service involved.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Invalid(#[from] InvalidRun),
    #[error("{target}: cannot create the run's envelope secret: {source}")]
    Envelope {
        target: String,
        #[source]
        source: ApiError,
    },
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
    #[error("{target} on node {node}: {reason}")]
    CannotRun {
        target: String,
        node: String,
        reason: String,
    },
    #[error("{at}: output incomplete, the command's exit code is not reported: {missing} did not arrive ({why})")]
    OutputIncomplete {
        at: Box<HelperRef>,
        missing: String,
        why: String,
    },
    #[error("{at}: following the helper: {source}")]
    Follow {
        at: Box<HelperRef>,
        #[source]
        source: ApiError,
    },
}

/// How long a starting target task is waited for.
pub const TARGET_START_WAIT: Duration = Duration::from_secs(60);

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
    req.run.check()?;
    let deadline = Instant::now() + req.run.timeout;
    tokio::pin!(cancel);

    // Nothing exists on the swarm yet: stopping here needs no cleanup.
    let (resolved, image) = tokio::select! {
        r = prepare(api, req) => r?,
        _ = sleep_until(deadline) => return Ok(Outcome::TimedOut),
        i = &mut cancel => return Ok(Outcome::Interrupted(i)),
    };
    let target = format!(
        "task {} ({}, service {})",
        resolved.task_id, resolved.display, resolved.service_name
    );
    // Everything about the run but where it runs travels in one secret.
    let budget = deadline.saturating_duration_since(Instant::now());
    let envelope = req.run.envelope(budget)?;
    let labels = vec![
        (
            "swarm-exec.target.task".to_owned(),
            resolved.task_id.clone(),
        ),
        (
            "swarm-exec.target.service".to_owned(),
            resolved.service_name.clone(),
        ),
        (
            "swarm-exec.target.container".to_owned(),
            resolved.container_id.clone(),
        ),
    ];
    let create = create_envelope(api, &envelope, &labels, budget);
    let secret = match create_or_stop(create, &mut cancel, deadline).await {
        Created::Done(Ok(secret)) => secret,
        Created::Done(Err(source)) => {
            return Err(ExecError::Envelope {
                target: target.clone(),
                source,
            })
        }
        Created::Stopped { stop, made } => {
            if let Some(secret) = made {
                remove_envelope(api, &secret.id, out).await;
            }
            return Ok(match stop {
                Stop::Interrupted(i) => Outcome::Interrupted(i),
                Stop::Deadline => Outcome::TimedOut,
            });
        }
    };
    drop(envelope);
    let job = HelperJob {
        envelope: secret.clone(),
        target: target.clone(),
        labels,
        containers: vec![resolved.container_id],
        node_id: resolved.node_id,
        node_name: resolved.node_name,
        image,
    };
    let end = run_helper(api, &job, std::slice::from_mut(out), deadline, cancel).await;
    remove_envelope(api, &secret.id, out).await;
    match end? {
        RunEnd::Interrupted(i) => Ok(Outcome::Interrupted(i)),
        RunEnd::Finished(results) => match results.into_iter().next().map(|(r, _)| r) {
            Some(TargetResult::Exited(code)) => Ok(Outcome::Exited(code)),
            Some(TargetResult::TimedOut) | None => Ok(Outcome::TimedOut),
            Some(TargetResult::Failed(reason)) => Err(ExecError::CannotRun {
                target: job.target,
                node: job.node_name,
                reason,
            }),
        },
    }
}

async fn prepare<A: SwarmApi>(api: &A, req: &ExecRequest) -> Result<(Resolved, String), ExecError> {
    // The image lookup does not depend on the task: do both at once.
    let (resolved, image) = tokio::join!(
        resolve(api, &req.target, TARGET_START_WAIT),
        pin_image(api, &req.run.image)
    );
    let resolved = resolved?;
    let image = image.map_err(|source| ExecError::Image {
        target: resolved.display.clone(),
        image: req.run.image.clone(),
        source,
    })?;
    Ok((resolved, image))
}

/// The image reference for helpers: see [`pinned_image`].
pub async fn pin_image<A: SwarmApi>(api: &A, image: &str) -> Result<String, ApiError> {
    Ok(pinned_image(
        image,
        api.inspect_image(image).await?.as_ref(),
    ))
}

#[cfg(test)]
mod tests;
