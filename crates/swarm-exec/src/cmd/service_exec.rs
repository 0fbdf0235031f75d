//! `swarm-exec service-exec`: every selected task of a service or stack.

use std::io::{self, Write};

use serde_json::json;
use swarm_exec_core::service_exec::{
    service_exec, Filters, ServiceExecError, ServiceExecRequest, Services, Target, TaskOutcome,
    TaskRun,
};
use swarm_exec_core::sink::Captured;
use swarm_exec_core::{Interrupt, OutputSink};

use crate::cli::{Global, ServiceExecArgs};
use crate::cmd::setup::connect;
use crate::cmd::setup::interrupted;
use crate::cmd::task_exec::{run_options, utf8_arg};
use crate::exit::{CliError, Status};
use crate::output::{note, stream, PrefixedSink};

pub async fn run(global: &Global, args: ServiceExecArgs) -> Result<Status, CliError> {
    let mut words = args
        .args
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let services = match args.stack {
        Some(stack) => Services::Stack(stack),
        None => Services::Named(words.next().unwrap_or_default()),
    };
    let command: Vec<String> = words.collect();
    if command.is_empty() {
        return Err(CliError::Usage(
            "no command given: swarm-exec service-exec SERVICE COMMAND [ARG...]".into(),
        ));
    }
    let req = ServiceExecRequest {
        services,
        filters: parse_filters(&args.filter)?,
        // stdin (-i) is read here, while Ctrl-C still simply ends the process.
        run: run_options(args.exec, command)?,
        parallel: args.parallel,
        delay: args.delay.unwrap_or_default(),
        fail_fast: args.fail_fast,
    };
    let cancel = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(cancel);
    let api = connect(global)?;
    if let Some(d) = args.wait_ready {
        let which = std::slice::from_ref(&req.services);
        tokio::select! {
            r = crate::cmd::wait::ready_first(&api, which, d) => r?,
            i = &mut cancel => return Ok(interrupted_early(i)),
        }
    }
    let json = args.format == "json";
    let max_output = args.max_output;
    let status = if json {
        let sink_for = |t: &Target| JsonTask {
            name: t.name(),
            kept: Captured::new(max_output),
        };
        // Each task's object as soon as it has ended, and its output let go.
        let ended = |r: &mut TaskRun<JsonTask>| {
            let mut out = io::stdout().lock();
            let line = to_json(r);
            note(writeln!(out, "{line}").and_then(|()| out.flush()));
        };
        let runs = match service_exec(&api, &req, sink_for, ended, cancel).await {
            Err(ServiceExecError::Interrupted(i)) => return Ok(interrupted_early(i)),
            r => r?,
        };
        summarize(&runs)
    } else {
        let (out, err) = (stream(io::stdout()), stream(io::stderr()));
        let prefixed = !args.no_prefix;
        let runs = service_exec(
            &api,
            &req,
            |t| {
                let prefix = prefixed.then(|| format!("{} | ", t.name()));
                PrefixedSink::new(out.clone(), err.clone(), prefix)
            },
            // A last line without its newline is shown as soon as its task ends.
            |r: &mut TaskRun<PrefixedSink>| r.sink.finish_lines(),
            cancel,
        )
        .await;
        let runs = match runs {
            Err(ServiceExecError::Interrupted(i)) => return Ok(interrupted_early(i)),
            r => r?,
        };
        summarize(&runs)
    };
    Ok(status)
}

fn interrupted_early(i: Interrupt) -> Status {
    Status::Tasks {
        failed: 0,
        interrupted: Some(i),
    }
}

/// `node=…`, `slot=…`, `label=KEY[=VALUE]`.
fn parse_filters(specs: &[String]) -> Result<Filters, CliError> {
    let mut f = Filters::default();
    for spec in specs {
        let bad = |why: &str| CliError::Usage(format!("invalid --filter {spec:?}: {why}"));
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        if value.is_empty() {
            return Err(bad("empty value"));
        }
        match key {
            "node" => f.nodes.push(value.to_owned()),
            "slot" => match value.parse::<u64>() {
                Ok(n) if n > 0 => f.slots.push(n),
                _ => return Err(bad("slot must be a positive number")),
            },
            "label" => {
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_owned())),
                    None => (value, None),
                };
                if k.is_empty() {
                    return Err(bad("empty label key"));
                }
                f.labels.push((k.to_owned(), v));
            }
            _ => return Err(bad("keys are node, slot and label")),
        }
    }
    Ok(f)
}

fn describe(outcome: &TaskOutcome) -> (&'static str, Option<i64>, Option<String>) {
    match outcome {
        TaskOutcome::Exited(c) => ("exited", Some(*c), None),
        TaskOutcome::TimedOut => ("timed_out", None, None),
        TaskOutcome::Failed(why) => ("failed", None, Some(why.clone())),
        TaskOutcome::Skipped => ("skipped", None, None),
        TaskOutcome::Interrupted(_) => ("interrupted", None, None),
    }
}

/// One task's output kept for its JSON object; notes about the run go to stderr at once.
struct JsonTask {
    name: String,
    kept: Captured,
}

impl OutputSink for JsonTask {
    fn stdout(&mut self, bytes: &[u8]) {
        self.kept.stdout(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.kept.stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        eprintln!("swarm-exec: warning: {}: {message}", self.name);
    }
    fn note(&mut self, message: &str) {
        eprintln!("swarm-exec: {message}");
    }
}

/// The task's JSON object; its kept output is taken from the sink.
fn to_json(r: &mut TaskRun<JsonTask>) -> serde_json::Value {
    let (stdout, stderr) = match r.sink.kept.take() {
        Ok(kept) => kept,
        Err(e) => {
            // Output that cannot be given whole is no success.
            r.outcome = TaskOutcome::Failed(format!("its output could not be kept: {e}"));
            (Vec::new(), Vec::new())
        }
    };
    let (outcome, exit_code, error) = describe(&r.outcome);
    let t = &r.target;
    let c = &r.sink.kept;
    let serde_json::Value::Object(mut obj) = json!({
        "task_id": t.task_id,
        "name": t.name(),
        "service": t.service,
        "slot": (t.slot > 0).then_some(t.slot),
        "node": t.node,
        "node_id": t.node_id,
        "container_id": t.container_id,
        "outcome": outcome,
        "exit_code": exit_code,
        "error": error,
        "duration_s": swarm_exec_core::model::outcome::seconds(r.duration),
    }) else {
        unreachable!("a JSON object literal")
    };
    crate::cmd::json::output_fields(&mut obj, c, &stdout, &stderr);
    serde_json::Value::Object(obj)
}

/// A summary of the failures on stderr, and the status the exit code follows.
fn summarize<S: OutputSink>(runs: &[TaskRun<S>]) -> Status {
    let interrupted = runs.iter().find_map(|r| r.outcome.interrupt());
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let what = match &r.outcome {
                TaskOutcome::Exited(0) | TaskOutcome::Interrupted(_) => return None,
                TaskOutcome::Exited(c) => format!("exited with {c}"),
                TaskOutcome::TimedOut => "timed out".to_owned(),
                TaskOutcome::Failed(why) => format!("failed: {why}"),
                TaskOutcome::Skipped => "skipped (--fail-fast)".to_owned(),
            };
            Some(format!(
                "  {} (task {}): {what}",
                r.target.name(),
                r.target.task_id
            ))
        })
        .collect();
    if !failed.is_empty() {
        eprintln!(
            "swarm-exec: {} of {} tasks did not succeed:\n{}",
            failed.len(),
            runs.len(),
            failed.join("\n")
        );
    }
    Status::Tasks {
        failed: failed.len(),
        interrupted,
    }
}
