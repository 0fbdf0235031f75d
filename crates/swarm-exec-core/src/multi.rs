//! One command in several named tasks at once, each with its own helper and the tail of
//! its output: what the Skopos plugin's `inst_exec` runs (its JSON is the binary's).

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::cancel::CancelHub;
use crate::engine::SwarmApi;
use crate::model::options::{HelperSource, RunOptions};
use crate::model::outcome::{Interrupt, Outcome};
use crate::model::target::TaskRef;
use crate::sink::{OutputSink, Tail};
use crate::task_exec::{task_exec, ExecRequest};

/// What to run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiExec {
    pub tasks: Vec<TaskRef>,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub helper: HelperSource,
    /// Bytes of each task's output the result keeps (the last ones).
    pub max_output: usize,
}

/// One task's run.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task: String,
    pub outcome: Result<Outcome, String>,
    pub duration: Duration,
    pub tail: Vec<u8>,
    /// Bytes of output in all, kept in `tail` or not.
    pub total: u64,
}

impl TaskResult {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Ok(Outcome::Exited(0)))
    }
}

/// Runs the command in every task at once. `sink_for(i, task)` gives task `i` its
/// output sink; `cancel` stops them all (each removes its helper first).
pub async fn multi_exec<A, S, F, C>(
    api: &A,
    args: &MultiExec,
    mut sink_for: F,
    cancel: C,
) -> Vec<TaskResult>
where
    A: SwarmApi,
    S: OutputSink,
    F: FnMut(usize, &TaskRef) -> S,
    C: std::future::Future<Output = Interrupt>,
{
    let hub = CancelHub::default();
    let runs = args.tasks.iter().enumerate().map(|(i, task)| {
        let mut sink = Tail::new(sink_for(i, task), args.max_output);
        let cancelled = hub.subscribe();
        let req = ExecRequest {
            target: task.clone(),
            run: RunOptions {
                command: args.command.clone(),
                env: Vec::new(),
                workdir: None,
                user: None,
                privileged: false,
                timeout: args.timeout,
                helper: args.helper.clone(),
                stdin: None,
                debug: None,
            },
        };
        async move {
            let started = Instant::now();
            let outcome = task_exec(api, &req, &mut sink, cancelled)
                .await
                .map_err(|e| e.to_string());
            let (_, tail, total) = sink.into_parts();
            TaskResult {
                task: req.target.to_string(),
                outcome,
                duration: started.elapsed(),
                tail,
                total,
            }
        }
    });
    hub.run(join_all(runs), cancel).await
}
