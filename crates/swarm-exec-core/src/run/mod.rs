//! One helper's life on the manager side: create it, follow its records to the end, remove
//! it — on every path, including timeouts, interrupts and API errors. A helper serves one or
//! more target containers on its node; `task-exec` uses one, `service-exec` one per node.

mod error;
pub use error::RunError;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep_until, Instant};

use swarm_exec_proto::frame::{ReadError, Step};
use swarm_exec_proto::lines::Lines;
use swarm_exec_proto::{Event, Reader, Stream};

use crate::engine::{LogPiece, LogStream, SwarmApi, TaskFilter, TaskInfo};
use crate::helper::lifecycle::{create_or_stop, remove_helper, Created, RunSecret, Stop};
use crate::helper::{helper_spec, Carrier};
use crate::model::outcome::{Interrupt, NotRun, Outcome, TargetEnd};
use crate::model::state::TaskState;
use crate::model::target::HelperRef;
use crate::sink::OutputSink;

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
    /// Full IDs of the target containers, all on the node.
    pub containers: Vec<String>,
    /// How the helper gets its program (the same for every helper of a run).
    pub carrier: Carrier,
    /// The image of the first target's task: zero-install helpers run in it.
    pub target_image: String,
    /// The run's envelope (the command, its stdin, the key), shared by its helpers.
    pub envelope: RunSecret,
}

/// How long the helper may take to reach `running` before the run fails (125). Covers
/// scheduling and container start; a node that is down never gets there.
pub const HELPER_START_WAIT: Duration = Duration::from_secs(30);
/// How often the helper task is read while it starts, and afterwards. Results normally
/// arrive on the log stream, so the later polls are only a fallback.
const POLL_STARTING: Duration = Duration::from_millis(50);
const POLL_RUNNING: Duration = Duration::from_millis(250);
/// After the helper task ended, how long the followed log stream may stay quiet before the
/// helper's retained log is read again from its last frame (a follow never ends by itself,
/// and Docker 20.10's stops for good at a rotation of the log). Short: a reader that is
/// merely slow costs a read of one second's entries, a stalled one costs this wait.
const LOG_DRAIN: Duration = Duration::from_secs(1);
/// After the run's deadline, how long the helper's own report is waited for: it stops the
/// commands (SIGTERM, SIGKILL after 5 s) and says whether they are gone.
pub const REPORT_GRACE: Duration = Duration::from_secs(12);
/// A broken log stream (e.g. the manager's engine restarting) is opened again this often,
/// at most this many times; the frames already read are skipped.
const LOG_REOPEN_DELAY: Duration = Duration::from_millis(250);
const LOG_REOPENS: u32 = 60;
/// How often the helper's node is looked up while the helper has not ended: a node the
/// managers mark down (about 15 s after its last heartbeat to them) ends the run then,
/// not at its deadline.
pub const NODE_CHECK: Duration = Duration::from_secs(5);

/// Runs `job` until `deadline`; `sinks[i]` receives target `i`'s output. The helper is
/// removed before this returns, whatever happened.
///
/// A helper whose container did not start (the runtime failed to create it: seen now and
/// then on a busy node) is replaced once by a new one: its program never ran, so neither
/// did the command.
pub async fn run_helper<A, S, C>(
    api: &A,
    job: &HelperJob,
    sinks: &mut [S],
    deadline: Instant,
    cancel: C,
) -> Result<Vec<TargetEnd>, RunError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt>,
{
    assert_eq!(sinks.len(), job.containers.len(), "one sink per target");
    tokio::pin!(cancel);
    let mut retried = false;
    loop {
        match one_helper(api, job, sinks, deadline, &mut cancel).await {
            Err(RunError::ContainerNotStarted { at, reason })
                if !retried && Instant::now() < deadline =>
            {
                sinks[0].warn(&format!(
                    "{at}: its container did not start ({reason}); trying a new helper"
                ));
                retried = true;
            }
            r => return r,
        }
    }
}

/// One helper's life: see [`run_helper`].
async fn one_helper<A, S, C>(
    api: &A,
    job: &HelperJob,
    sinks: &mut [S],
    deadline: Instant,
    cancel: &mut Pin<&mut C>,
) -> Result<Vec<TargetEnd>, RunError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt>,
{
    let targets = job.containers.len();
    let all = |outcome: Outcome| Ok(vec![TargetEnd::now(Ok(outcome)); targets]);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let budget = deadline.saturating_duration_since(Instant::now());
    let spec = helper_spec(
        &job.node_id,
        &job.labels,
        &job.containers,
        &job.carrier,
        &job.target_image,
        &run_id,
        budget,
        (&job.envelope.id, &job.envelope.name),
    );
    let at = HelperRef {
        target: job.target.clone(),
        helper: spec.name.clone(),
        node: job.node_name.clone(),
    };

    let helper_id = match create_or_stop(api.create_service(&spec), cancel, deadline).await {
        Created::Done(Ok(id)) => id,
        Created::Done(Err(source)) => {
            // The create may have happened despite the error: remove by name.
            remove_helper(api, &spec.name, &mut sinks[0]).await;
            return Err(RunError::CreateHelper {
                target: at.target,
                node: at.node,
                source,
            });
        }
        Created::Stopped { stop, made } => {
            let id = made.unwrap_or_else(|| spec.name.clone());
            remove_helper(api, &id, &mut sinks[0]).await;
            return match stop {
                Stop::Interrupted(i) => all(Outcome::Interrupted(i)),
                Stop::Deadline => all(Outcome::TimedOut),
            };
        }
    };
    tracing::debug!(helper = %spec.name, id = %helper_id, node = %job.node_name, image = %spec.image, "helper created");

    let mut follower = Follower::new(&job.envelope.key, &spec.tag, targets);
    // The helper enforces the deadline itself and reports what it did; a result that
    // arrives first wins. Only if its report does not come is the deadline applied here.
    let stop = tokio::select! {
        r = follower.follow(api, &helper_id, &job.node_id, &at, sinks, deadline) => Some(r),
        _ = sleep_until(deadline + REPORT_GRACE) => None,
        i = cancel.as_mut() => Some(all(Outcome::Interrupted(i))),
    };
    let result = stop.unwrap_or_else(|| {
        sinks[0].warn(&format!(
            "{at}: no report from the helper {REPORT_GRACE:?} after the deadline; removing it stops the command"
        ));
        Ok(follower.results())
    });
    remove_helper(api, &helper_id, &mut sinks[0]).await;
    result
}

/// The state of following one helper: its frames so far, and its own diagnostics.
struct Follower {
    lines: Lines,
    reader: Reader,
    results: Vec<Option<TargetEnd>>,
    /// The helper's `timed out` frame: whether it saw the commands stop.
    timed_out: Option<bool>,
    /// What the helper printed outside its frames (its stderr, stray lines).
    diagnostics: Vec<u8>,
    unauthentic: usize,
}

/// What a piece of the log stream brought.
enum Fed {
    More,
    /// The last frame arrived: every byte and every result is in.
    Ended,
    /// This stream skipped frames from `expected` on: read the log again.
    Gap {
        expected: u64,
    },
}

/// How the helper's log is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Followed, as it is written.
    Follow,
    /// Read once more, whole, from its start (it ends by itself). `gap`: the first frame
    /// the stream before it missed, if it missed one.
    Again { gap: Option<u64> },
}

impl Follower {
    fn new(key: &[u8; 32], tag: &str, targets: usize) -> Self {
        Follower {
            lines: Lines::default(),
            reader: Reader::new(key, tag, targets),
            results: vec![None; targets],
            timed_out: None,
            diagnostics: Vec::new(),
            unauthentic: 0,
        }
    }

    /// One end per target, in order; targets unfinished now are timed out.
    fn results(&self) -> Vec<TargetEnd> {
        let unfinished = TargetEnd::now(Ok(Outcome::TimedOut));
        self.results
            .iter()
            .map(|r| r.clone().unwrap_or_else(|| unfinished.clone()))
            .collect()
    }

    /// Decodes one chunk of the helper's stdout, handing output to the sinks.
    fn feed<S: OutputSink>(&mut self, bytes: &[u8], sinks: &mut [S]) -> Result<Fed, ReadError> {
        let mut fed = Ok(Fed::More);
        let Follower {
            lines,
            reader,
            results,
            timed_out,
            diagnostics,
            unauthentic,
        } = self;
        lines.feed(bytes, |line| {
            if !matches!(fed, Ok(Fed::More)) {
                return;
            }
            let step = reader.line(line, &mut |event| match event {
                Event::Output {
                    target,
                    stream: Stream::Stdout,
                    bytes,
                } => sinks[target].stdout(bytes),
                Event::Output {
                    target,
                    stream: Stream::Stderr,
                    bytes,
                } => sinks[target].stderr(bytes),
                Event::Exit { target, code } => {
                    results[target] = Some(TargetEnd::now(Ok(Outcome::Exited(code))));
                }
                Event::Failed { target, reason } => {
                    results[target] = Some(TargetEnd::now(Err(NotRun(reason))));
                }
                Event::Done => {}
                Event::TimedOut { stopped } => *timed_out = Some(stopped),
            });
            fed = match step {
                Err(e) => Err(e),
                Ok(Step::Frame) if reader.ended() => Ok(Fed::Ended),
                Ok(Step::Frame | Step::Stale) => Ok(Fed::More),
                Ok(Step::Gap { expected, .. }) => Ok(Fed::Gap { expected }),
                Ok(Step::Unauthentic) => {
                    *unauthentic += 1;
                    Ok(Fed::More)
                }
                Ok(Step::NotOurs) => {
                    diagnostics.extend_from_slice(line);
                    diagnostics.push(b'\n');
                    Ok(Fed::More)
                }
            };
        });
        fed
    }

    /// Prepares for reading the helper's logs again from their start: frames already read
    /// are known by their sequence numbers and skipped.
    fn reopened(&mut self) {
        self.lines.reset();
        // Its stderr comes again too.
        self.diagnostics.clear();
    }

    /// Follows the helper until its last frame arrives. Output is never given up on while
    /// it may still come: when the followed stream goes quiet after the helper ended, or
    /// skips frames, the helper's retained log is read again, whole; only what is not
    /// there either is reported missing.
    async fn follow<A: SwarmApi, S: OutputSink>(
        &mut self,
        api: &A,
        helper_id: &str,
        node_id: &str,
        at: &HelperRef,
        sinks: &mut [S],
        deadline: Instant,
    ) -> Result<Vec<TargetEnd>, RunError> {
        let mut c = Course {
            api,
            helper_id,
            node_id,
            next_node_check: Instant::now() + NODE_CHECK,
            at,
            deadline,
            reading: Reading::Follow,
            logs: api.service_logs(helper_id, true, None),
            resume_at: None,
            partial_reads: true,
            read_since: None,
            logs_open: true,
            reopen_at: None,
            reopens: 0,
            started: Instant::now(),
            running: false,
            next_poll: Instant::now(),
            ended: None,
            progress: Instant::now(),
        };
        loop {
            let end = tokio::select! {
                // Output first: a poll never cuts in while frames are waiting.
                biased;
                item = c.logs.next(), if c.logs_open => c.on_log(self, item, sinks),
                _ = sleep_until(c.reopen_at.unwrap_or_else(Instant::now)), if c.reopen_at.is_some() => {
                    c.reopens += 1;
                    tracing::debug!(reopens = c.reopens, reading = ?c.reading, "reading the helper's logs again");
                    c.read_again(self, c.reading == Reading::Follow);
                    c.reopen_at = None;
                    None
                }
                _ = sleep_until(c.next_poll) => c.on_poll(self, sinks).await,
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// The last frame arrived, so every target's output is whole.
    fn finished<S: OutputSink>(
        &self,
        at: &HelperRef,
        sinks: &mut [S],
    ) -> Result<Vec<TargetEnd>, RunError> {
        if self.unauthentic > 0 {
            sinks[0].warn(&format!(
                "{} line(s) tagged as helper {}'s did not open with the run's key and were ignored",
                self.unauthentic, at.helper
            ));
        }
        if self.timed_out == Some(false) {
            sinks[0].warn(&format!(
                "{}: the command was told to stop at its deadline, but could not be seen to end",
                at
            ));
        }
        Ok(self.results())
    }

    /// The helper ended and its log, read whole, holds no last frame. No exit code is
    /// taken from the helper task's state: that is the helper's code, not the command's.
    fn ended_without_end(&self, task: &TaskInfo, at: &HelperRef) -> RunError {
        let diag = String::from_utf8_lossy(&self.diagnostics).trim().to_owned();
        let state = format!(
            "its task ended in state {}{}{}",
            task.state,
            task.exit_code
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default(),
            if task.err.is_empty() {
                String::new()
            } else {
                format!(" ({})", task.err)
            },
        );
        // The helper's program never started, so nothing ran (see `never_started`).
        let not_created = crate::model::state::never_started(&task.err);
        if self.reader.next_seq() == 0 && not_created {
            return RunError::ContainerNotStarted {
                at: Box::new(at.clone()),
                reason: task.err.clone(),
            };
        }
        if self.reader.next_seq() == 0 {
            return RunError::HelperFailed {
                at: Box::new(at.clone()),
                reason: if diag.is_empty() {
                    format!("{state} without a result")
                } else {
                    format!("{diag}; {state}")
                },
            };
        }
        RunError::OutputIncomplete {
            at: Box::new(at.clone()),
            missing: self.reader.missing(),
            why: if diag.is_empty() {
                state
            } else {
                format!("{diag}; {state}")
            },
        }
    }
}

/// Following one helper: how its log is read, and what its task was last seen doing.
struct Course<'a, A> {
    api: &'a A,
    helper_id: &'a str,
    node_id: &'a str,
    /// When the helper's node is next looked up.
    next_node_check: Instant,
    at: &'a HelperRef,
    deadline: Instant,
    reading: Reading,
    logs: futures_util::stream::BoxStream<'static, Result<LogPiece, crate::engine::ApiError>>,
    /// When the last frame read in order was logged: a read again starts at that second,
    /// not from the log's start (hundreds of MB, once a node's engine stopped
    /// following its rotated log file: Docker 20.10). `None` once such a read came short.
    resume_at: Option<i64>,
    partial_reads: bool,
    /// Where the stream being read starts (`None`: the log's start).
    read_since: Option<i64>,
    logs_open: bool,
    /// When a broken stream is opened again.
    reopen_at: Option<Instant>,
    reopens: u32,
    started: Instant,
    running: bool,
    next_poll: Instant,
    /// The helper's task, once it ended.
    ended: Option<TaskInfo>,
    /// When a frame last arrived (or the helper was seen to end).
    progress: Instant,
}

/// How following ended, once it did.
type End = Option<Result<Vec<TargetEnd>, RunError>>;

impl<A: SwarmApi> Course<'_, A> {
    fn incomplete(&self, f: &Follower, why: String) -> RunError {
        RunError::OutputIncomplete {
            at: Box::new(self.at.clone()),
            missing: f.reader.missing(),
            why,
        }
    }

    /// Opens the helper's log again, from the second of the last frame read in order (from
    /// its start if that is not known or came short): followed, or read once.
    fn read_again(&mut self, f: &mut Follower, follow: bool) {
        // The whole second of that frame: entries are whole lines (a frame's line is
        // shorter than the engine's 16 KiB copy buffer, so it is never split).
        let since = self.resume_at.filter(|_| self.partial_reads);
        tracing::debug!(follow, since, "reading the helper's log again");
        self.read_since = since;
        self.logs = self.api.service_logs(self.helper_id, follow, since);
        self.logs_open = true;
        f.reopened();
    }

    /// A stream that broke or ended early is opened again, a bounded number of times.
    fn broken(&mut self, f: &Follower, what: String) -> End {
        self.logs_open = false;
        if self.reopens < LOG_REOPENS {
            self.reopen_at = Some(Instant::now() + LOG_REOPEN_DELAY);
            None
        } else {
            Some(Err(self.incomplete(f, what)))
        }
    }

    /// What a piece of the helper's log brought.
    fn on_log<S: OutputSink>(
        &mut self,
        f: &mut Follower,
        item: Option<Result<LogPiece, crate::engine::ApiError>>,
        sinks: &mut [S],
    ) -> End {
        let (bytes, logged) = match item {
            Some(Ok(LogPiece {
                stream: LogStream::Stdout,
                bytes,
                logged,
            })) => (bytes, logged),
            Some(Ok(LogPiece {
                stream: LogStream::Stderr,
                bytes,
                ..
            })) => {
                f.diagnostics.extend_from_slice(&bytes);
                return None;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "helper log stream failed");
                return self.broken(f, format!("the helper's log stream kept failing ({e})"));
            }
            None => return self.on_log_end(f),
        };
        let before = f.reader.next_seq();
        let fed = match f.feed(&bytes, sinks) {
            Ok(fed) => fed,
            Err(e) => return Some(Err(self.incomplete(f, e.to_string()))),
        };
        if f.reader.next_seq() != before {
            self.progress = Instant::now();
            self.resume_at = logged.or(self.resume_at);
        }
        match fed {
            Fed::More => None,
            Fed::Ended => {
                tracing::debug!(after = ?self.started.elapsed(), frames = f.reader.next_seq(), "helper's last frame");
                Some(f.finished(self.at, sinks))
            }
            Fed::Gap { expected } => {
                let again = Reading::Again {
                    gap: Some(expected),
                };
                if self.reading == again && self.read_since.is_some() {
                    // Not there from that second on (a node's clock that went back?): the
                    // whole log, then.
                    self.partial_reads = false;
                    self.read_again(f, false);
                    return None;
                }
                if self.reading == again {
                    let why = "frames are missing from the helper's log".to_owned();
                    return Some(Err(self.incomplete(f, why)));
                }
                tracing::debug!(expected, reading = ?self.reading, "frames skipped; reading the helper's log again");
                self.reading = Reading::Again {
                    gap: Some(expected),
                };
                self.read_again(f, false);
                None
            }
        }
    }

    /// The log stream ended: a whole read is done, or a follow stopped early.
    fn on_log_end(&mut self, f: &mut Follower) -> End {
        match self.reading {
            Reading::Again { .. } if self.ended.is_some() && self.read_since.is_some() => {
                // Not in the log from that second on: the whole log, then.
                self.partial_reads = false;
                self.read_again(f, false);
                None
            }
            Reading::Again { .. } if self.ended.is_some() => {
                // The whole retained log was read and the end is not in it.
                let task = self.ended.as_ref().expect("checked");
                Some(Err(f.ended_without_end(task, self.at)))
            }
            Reading::Again { .. } => {
                tracing::debug!("read the helper's log again; following it on");
                self.reading = Reading::Follow;
                self.read_again(f, true);
                None
            }
            Reading::Follow => {
                tracing::debug!("helper log stream ended");
                self.broken(f, "the helper's log stream kept ending early".to_owned())
            }
        }
    }

    /// One look at the helper's task (or, once it ended, at how quiet its stream is).
    async fn on_poll<S: OutputSink>(&mut self, f: &mut Follower, sinks: &mut [S]) -> End {
        if self.ended.is_some() {
            // The helper is gone and the followed stream has gone quiet without its last
            // frame: a follow never ends by itself, a plain read does.
            if self.reading == Reading::Follow
                && self.logs_open
                && self.progress.elapsed() >= LOG_DRAIN
            {
                tracing::debug!("helper ended, its stream is quiet; reading its log again");
                self.reading = Reading::Again { gap: None };
                self.read_again(f, false);
            }
            self.next_poll = Instant::now() + POLL_RUNNING;
            return None;
        }
        // A helper that has not even started by the deadline has nothing to report: the
        // deadline applies now.
        if !self.running && f.reader.next_seq() == 0 && Instant::now() >= self.deadline {
            tracing::debug!("deadline passed before the helper started");
            return Some(Ok(f.results()));
        }
        let filter = TaskFilter {
            service: Some(self.helper_id.to_owned()),
            ..Default::default()
        };
        let tasks = match self.api.list_tasks(&filter).await {
            Ok(tasks) => tasks,
            // The manager is away longer than the retries (e.g. restarting): keep
            // following; the deadline bounds the wait.
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "cannot read the helper task yet");
                self.next_poll = Instant::now() + POLL_RUNNING;
                return None;
            }
            Err(source) => {
                let at = Box::new(self.at.clone());
                return Some(Err(RunError::Follow { at, source }));
            }
        };
        // Restart condition none: there is at most one task.
        let task = tasks.into_iter().find(|t| t.service_id == self.helper_id);
        self.report(task.as_ref(), sinks);
        // Only the scheduler's own states say the node never had the helper.
        let dispatched = task.as_ref().is_some_and(|t| {
            !matches!(
                t.state,
                TaskState::New | TaskState::Allocated | TaskState::Pending
            )
        });
        let end = match self.on_state(task) {
            None if self.ended.is_none() => self.node_lost(dispatched).await,
            end => end,
        };
        self.next_poll = Instant::now()
            + if self.running {
                POLL_RUNNING
            } else {
                POLL_STARTING
            };
        end
    }

    /// Every [`NODE_CHECK`]: whether the managers take the helper's node for gone. Not
    /// `unknown`: that is every node's state for a while after a new leader is elected.
    async fn node_lost(&mut self, dispatched: bool) -> End {
        if Instant::now() < self.next_node_check {
            return None;
        }
        self.next_node_check = Instant::now() + NODE_CHECK;
        let node = match self.api.inspect_node(self.node_id).await {
            Ok(node) => node,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the helper's node");
                return None;
            }
        };
        if !matches!(node.state.as_str(), "down" | "disconnected") {
            return None;
        }
        tracing::debug!(state = %node.state, message = %node.message, "the helper's node is lost");
        Some(Err(RunError::NodeLost {
            at: Box::new(self.at.clone()),
            state: node.state,
            message: node.message,
            dispatched: dispatched || self.running,
        }))
    }

    /// Where the helper is, on the first sink's progress line.
    fn report<S: OutputSink>(&self, task: Option<&TaskInfo>, sinks: &mut [S]) {
        let Some(sink) = sinks.first_mut() else {
            return;
        };
        let at = self.at;
        let status = if self.running {
            format!("running on {} (helper {})", at.node, at.helper)
        } else {
            let state = task.map_or(TaskState::New, |t| t.state.clone());
            let why = task
                .map(|t| first_non_empty(&t.message, &t.err))
                .unwrap_or_default();
            format!(
                "waiting for helper {} on {}: {state} {why}",
                at.helper, at.node
            )
        };
        sink.progress(status.trim_end());
    }

    /// What the helper task's state means for the run.
    fn on_state(&mut self, task: Option<TaskInfo>) -> End {
        let state = task.as_ref().map_or(TaskState::New, |t| t.state.clone());
        match &state {
            TaskState::Running if !self.running => {
                tracing::debug!(after = ?self.started.elapsed(), "helper running");
                self.running = true;
            }
            TaskState::Rejected => {
                let t = task.unwrap_or_default();
                return Some(Err(RunError::HelperRejected {
                    at: Box::new(self.at.clone()),
                    reason: first_non_empty(&t.err, &t.message),
                }));
            }
            s if s.is_final() => {
                tracing::debug!(state = %s, "helper task ended; reading the rest of its log");
                self.ended = Some(task.unwrap_or_default());
                self.progress = Instant::now();
            }
            s if !self.running && self.started.elapsed() >= HELPER_START_WAIT => {
                let t = task.unwrap_or_default();
                return Some(Err(RunError::HelperNotStarted {
                    at: Box::new(self.at.clone()),
                    state: s.to_string(),
                    message: first_non_empty(&t.err, &t.message),
                    waited: HELPER_START_WAIT,
                }));
            }
            _ => {}
        }
        None
    }
}

fn first_non_empty(a: &str, b: &str) -> String {
    if a.is_empty() { b } else { a }.to_owned()
}
