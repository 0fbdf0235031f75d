//! One helper's life on the manager side: create it, follow its records to the end, remove
//! it — on every path, including timeouts, interrupts and API errors. A helper serves one or
//! more target containers on its node; `task-exec` uses one, `service-exec` one per node.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep_until, Instant};

use crate::api::{ApiError, LogStream, SwarmApi, TaskFilter, TaskInfo};
use crate::frame::{Decoder, Line, Record};
use crate::helper::{helper_spec, ExecSpec};
use crate::task_exec::{ExecError, HelperRef, Interrupt, OutputSink};

/// What one helper is to do.
#[derive(Debug, Clone)]
pub struct HelperJob {
    pub node_id: String,
    /// For messages.
    pub node_name: String,
    /// The targets, for messages: e.g. "task abc (web.2, service web)".
    pub target: String,
    /// `swarm-exec.target.*` labels.
    pub labels: Vec<(String, String)>,
    pub exec: ExecSpec,
    /// The pinned image reference.
    pub image: String,
    /// (ID, name) of the secret holding the commands' stdin, if any.
    pub stdin_secret: Option<(String, String)>,
}

/// How one target's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetResult {
    Exited(i64),
    TimedOut,
    /// The command could not be run in this target (e.g. its container is not running).
    Failed(String),
}

/// How a helper run ended, when swarm-exec itself did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// One result per target, in order, with when it arrived; targets unfinished at the
    /// deadline are `TimedOut`.
    Finished(Vec<(TargetResult, Instant)>),
    Interrupted(Interrupt),
}

/// How long the helper may take to reach `running` before the run fails (125). Covers
/// scheduling and container start; a node that is down never gets there.
pub const HELPER_START_WAIT: Duration = Duration::from_secs(30);
/// How often the helper task is read while it starts, and afterwards. Results normally
/// arrive on the log stream, so the later polls are only a fallback.
const POLL_STARTING: Duration = Duration::from_millis(50);
const POLL_RUNNING: Duration = Duration::from_millis(250);
/// After the helper task ended without its last record, how long the log stream is given
/// to deliver it.
const LOG_DRAIN: Duration = Duration::from_secs(3);
/// A broken log stream (e.g. the manager's engine restarting) is opened again this often,
/// at most this many times; the lines already read are skipped.
const LOG_REOPEN_DELAY: Duration = Duration::from_millis(250);
const LOG_REOPENS: u32 = 60;

/// Runs `job` until `deadline`; `sinks[i]` receives target `i`'s output. The helper is
/// removed before this returns, whatever happened.
pub async fn run_helper<A, S, C>(
    api: &A,
    job: &HelperJob,
    sinks: &mut [S],
    deadline: Instant,
    cancel: C,
) -> Result<RunEnd, ExecError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt>,
{
    let targets = job.exec.containers.len();
    assert_eq!(sinks.len(), targets, "one sink per target");
    let timed_out = || {
        let now = Instant::now();
        Ok(RunEnd::Finished(vec![
            (TargetResult::TimedOut, now);
            targets
        ]))
    };
    tokio::pin!(cancel);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let budget = deadline.saturating_duration_since(Instant::now());
    let spec = helper_spec(
        &job.node_id,
        &job.labels,
        &job.exec,
        &job.image,
        &run_id,
        budget,
        job.stdin_secret.as_ref(),
    );
    let at = HelperRef {
        target: job.target.clone(),
        helper: spec.name.clone(),
        node: job.node_name.clone(),
    };

    let helper_id = match create_or_stop(api.create_service(&spec), &mut cancel, deadline).await {
        Created::Done(Ok(id)) => id,
        Created::Done(Err(source)) => {
            // The create may have happened despite the error: remove by name.
            cleanup(api, &spec.name, &mut sinks[0]).await;
            return Err(ExecError::CreateHelper {
                target: at.target,
                node: at.node,
                source,
            });
        }
        Created::Stopped { stop, made } => {
            let id = made.unwrap_or_else(|| spec.name.clone());
            cleanup(api, &id, &mut sinks[0]).await;
            return match stop {
                Stop::Interrupted(i) => Ok(RunEnd::Interrupted(i)),
                Stop::Deadline => timed_out(),
            };
        }
    };
    tracing::debug!(helper = %spec.name, id = %helper_id, node = %job.node_name, image = %job.image, "helper created");

    let mut follower = Follower::new(&run_id, targets);
    let stop = tokio::select! {
        r = follower.follow(api, &helper_id, &at, sinks) => Some(r),
        _ = sleep_until(deadline) => None,
        i = &mut cancel => Some(Ok(RunEnd::Interrupted(i))),
    };
    let result = stop.unwrap_or_else(|| Ok(RunEnd::Finished(follower.unfinished_timed_out())));
    cleanup(api, &helper_id, &mut sinks[0]).await;
    result
}

/// How long a create already sent is let finish after a cancel, so that what it made can
/// be removed by ID (removing by name while the create is still in flight may miss it).
const CREATE_GRACE: Duration = Duration::from_secs(10);

/// Why a create was stopped.
pub(crate) enum Stop {
    Interrupted(Interrupt),
    Deadline,
}

pub(crate) enum Created<T> {
    Done(Result<T, ApiError>),
    /// `made`: what the create made after all, if it finished within [`CREATE_GRACE`].
    Stopped {
        stop: Stop,
        made: Option<T>,
    },
}

/// Runs `create` until it ends, `cancel` fires or `deadline` passes. The create is polled
/// first, so it has been sent whenever it is stopped; it is then let finish (briefly) so
/// that the caller can remove what it made.
pub(crate) async fn create_or_stop<T, F, C>(
    create: F,
    cancel: &mut Pin<&mut C>,
    deadline: Instant,
) -> Created<T>
where
    F: Future<Output = Result<T, ApiError>>,
    C: Future<Output = Interrupt>,
{
    tokio::pin!(create);
    let stop = tokio::select! {
        biased;
        r = &mut create => return Created::Done(r),
        i = cancel.as_mut() => Stop::Interrupted(i),
        _ = sleep_until(deadline) => Stop::Deadline,
    };
    let made = match tokio::time::timeout(CREATE_GRACE, create).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    };
    Created::Stopped { stop, made }
}

/// Puts `data` (the commands' stdin) in a labelled secret, for helpers to mount.
pub async fn create_stdin_secret<A: SwarmApi>(
    api: &A,
    data: &[u8],
    budget: Duration,
) -> Result<(String, String), ApiError> {
    let name = format!(
        "swarm-exec-stdin-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let id = api
        .create_secret(&name, &crate::helper::secret_labels(budget), data)
        .await?;
    tracing::debug!(secret = %name, bytes = data.len(), "stdin secret created");
    Ok((id, name))
}

/// Removes the stdin secret, after every helper that mounted it is gone.
pub async fn remove_stdin_secret<A: SwarmApi, S: OutputSink>(api: &A, id: &str, out: &mut S) {
    match api.remove_secret(id).await {
        Ok(()) => tracing::debug!(secret = id, "stdin secret removed"),
        Err(e) => out.warn(&format!(
            "could not remove secret {id}: {e}; `docker secret rm {id}` removes it"
        )),
    }
}

async fn cleanup<A: SwarmApi, S: OutputSink>(api: &A, helper: &str, out: &mut S) {
    match api.remove_service(helper).await {
        Ok(()) => tracing::debug!(helper, "helper removed"),
        Err(e) => {
            out.warn(&format!(
                "could not remove helper service {helper}: {e}; `docker service rm {helper}` removes it"
            ));
        }
    }
}

/// The state of following one helper: results so far, and its own diagnostics.
struct Follower {
    decoder: Decoder,
    results: Vec<Option<(TargetResult, Instant)>>,
    /// What the helper printed outside the protocol (its stderr, stray lines).
    diagnostics: Vec<u8>,
    /// Lines of the helper's stdout read on the current stream, and how many of them a
    /// reopened stream must skip because they were read before.
    lines: usize,
    skip: usize,
}

impl Follower {
    fn new(run_id: &str, targets: usize) -> Self {
        Follower {
            decoder: Decoder::new(run_id),
            results: vec![None; targets],
            diagnostics: Vec::new(),
            lines: 0,
            skip: 0,
        }
    }

    fn unfinished_timed_out(&self) -> Vec<(TargetResult, Instant)> {
        let now = Instant::now();
        self.results
            .iter()
            .map(|r| r.clone().unwrap_or((TargetResult::TimedOut, now)))
            .collect()
    }

    /// Decodes one chunk of the helper's stdout; `Some` once the helper's last record came.
    fn feed<S: OutputSink>(
        &mut self,
        bytes: &[u8],
        sinks: &mut [S],
    ) -> Option<Vec<(TargetResult, Instant)>> {
        let mut end = None;
        let (results, diagnostics) = (&mut self.results, &mut self.diagnostics);
        let (lines, skip) = (&mut self.lines, self.skip);
        self.decoder.feed(bytes, |line| {
            *lines += 1;
            if *lines <= skip {
                return;
            }
            match line {
                Line::Record(Record::Stdout(i, b)) => {
                    if let Some(s) = sinks.get_mut(i) {
                        s.stdout(&b);
                    }
                }
                Line::Record(Record::Stderr(i, b)) => {
                    if let Some(s) = sinks.get_mut(i) {
                        s.stderr(&b);
                    }
                }
                Line::Record(Record::Exit(i, code)) => {
                    if let Some(r) = results.get_mut(i) {
                        *r = Some((TargetResult::Exited(code), Instant::now()));
                    }
                }
                Line::Record(Record::Failed(i, reason)) => {
                    if let Some(r) = results.get_mut(i) {
                        *r = Some((TargetResult::Failed(reason), Instant::now()));
                    }
                }
                Line::Record(Record::Done | Record::TimedOut) => end = Some(()),
                Line::Other(l) => {
                    diagnostics.extend_from_slice(&l);
                    diagnostics.push(b'\n');
                }
            }
        });
        end.map(|()| self.unfinished_timed_out())
    }

    /// Prepares for reading the helper's logs again from their start.
    fn reopened(&mut self) {
        self.decoder.reset();
        // Its stderr comes again too.
        self.diagnostics.clear();
        self.skip = self.lines;
        self.lines = 0;
    }

    /// Follows the helper until its last record arrives, or its task ends without one.
    async fn follow<A: SwarmApi, S: OutputSink>(
        &mut self,
        api: &A,
        helper_id: &str,
        at: &HelperRef,
        sinks: &mut [S],
    ) -> Result<RunEnd, ExecError> {
        let mut logs = api.service_logs(helper_id);
        let mut logs_open = true;
        let mut reopen_at: Option<Instant> = None;
        let mut reopens = 0;
        let filter = TaskFilter {
            service: Some(helper_id.to_owned()),
            ..Default::default()
        };
        let started = Instant::now();
        let mut running = false;
        let mut next_poll = Instant::now();
        let mut ended: Option<(TaskInfo, Instant)> = None;
        let at_box = || Box::new(at.clone());

        loop {
            tokio::select! {
                item = logs.next(), if logs_open => match item {
                    Some(Ok((LogStream::Stdout, bytes))) => {
                        if let Some(results) = self.feed(&bytes, sinks) {
                            tracing::debug!(after = ?started.elapsed(), "helper reported its results");
                            return Ok(RunEnd::Finished(results));
                        }
                    }
                    Some(Ok((LogStream::Stderr, bytes))) => self.diagnostics.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "helper log stream failed");
                        logs_open = false;
                        if reopens < LOG_REOPENS {
                            reopen_at = Some(Instant::now() + LOG_REOPEN_DELAY);
                        } else {
                            sinks[0].warn(&format!("lost the helper's output stream ({e}); output may be incomplete"));
                        }
                    }
                    None => {
                        tracing::debug!("helper log stream ended");
                        logs_open = false;
                        if reopens < LOG_REOPENS {
                            reopen_at = Some(Instant::now() + LOG_REOPEN_DELAY);
                        }
                    }
                },
                _ = sleep_until(reopen_at.unwrap_or_else(Instant::now)), if reopen_at.is_some() => {
                    reopens += 1;
                    tracing::debug!(reopens, "reading the helper's logs again");
                    logs = api.service_logs(helper_id);
                    logs_open = true;
                    reopen_at = None;
                    self.reopened();
                }
                _ = sleep_until(next_poll) => {
                    if let Some((task, since)) = &ended {
                        let drained = !logs_open && reopen_at.is_none();
                        if drained || since.elapsed() >= LOG_DRAIN {
                            return self.ended_without_record(task, at, sinks);
                        }
                        next_poll = Instant::now() + POLL_STARTING;
                        continue;
                    }
                    let tasks = match api.list_tasks(&filter).await {
                        Ok(tasks) => tasks,
                        // The manager is away longer than the retries (e.g. restarting):
                        // keep following; the deadline bounds the wait.
                        Err(e) if e.is_transient() => {
                            tracing::debug!(error = %e, "cannot read the helper task yet");
                            next_poll = Instant::now() + POLL_RUNNING;
                            continue;
                        }
                        Err(source) => return Err(ExecError::Follow { at: at_box(), source }),
                    };
                    // Restart condition none: there is at most one task.
                    let task = tasks.into_iter().find(|t| t.service_id == helper_id);
                    let state = task.as_ref().map_or_else(|| "new".to_owned(), |t| t.state.clone());
                    if let Some(sink) = sinks.first_mut() {
                        let status = if running {
                            format!("running on {} (helper {})", at.node, at.helper)
                        } else {
                            let why = task.as_ref().map(|t| first_non_empty(&t.message, &t.err)).unwrap_or_default();
                            format!("waiting for helper {} on {}: {state} {why}", at.helper, at.node)
                        };
                        sink.progress(status.trim_end());
                    }
                    match state.as_str() {
                        "running" if !running => {
                            tracing::debug!(after = ?started.elapsed(), "helper running");
                            running = true;
                        }
                        "rejected" => {
                            let t = task.unwrap_or_default();
                            return Err(ExecError::HelperRejected {
                                at: at_box(),
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
                                at: at_box(),
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

    /// The helper's task ended but its last record never arrived (the helper crashed, or the
    /// log stream broke). With one target, the helper's exit code is the command's.
    fn ended_without_record<S: OutputSink>(
        &self,
        task: &TaskInfo,
        at: &HelperRef,
        sinks: &mut [S],
    ) -> Result<RunEnd, ExecError> {
        let diag = String::from_utf8_lossy(&self.diagnostics).trim().to_owned();
        match (task.state.as_str(), task.exit_code, self.results.as_slice()) {
            // Only codes a command gives: 124/125 and ≥ 128 may be the helper's own end
            // (its deadline, its failure, a signal such as an OOM kill).
            ("complete" | "failed", Some(code @ (0..=123 | 126 | 127)), [None])
                if diag.is_empty() =>
            {
                sinks[0].warn(&format!(
                    "helper {} ended without reporting through its log stream; \
                     exit code {code} taken from its task state, output may be incomplete",
                    at.helper
                ));
                Ok(RunEnd::Finished(vec![(
                    TargetResult::Exited(code),
                    Instant::now(),
                )]))
            }
            _ => Err(ExecError::HelperFailed {
                at: Box::new(at.clone()),
                reason: if diag.is_empty() {
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
                },
            }),
        }
    }
}

fn first_non_empty(a: &str, b: &str) -> String {
    if a.is_empty() { b } else { a }.to_owned()
}
