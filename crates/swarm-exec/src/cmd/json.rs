//! `--format json`'s objects: `task-exec`'s one (here), and the output fields every such
//! object has (`service-exec`'s too).

use std::io::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};
use swarm_exec_core::sink::{bytes_json, Captured, Cut, RunsIn};
use swarm_exec_core::{ExecError, Interrupt, Outcome, OutputSink};

use crate::exit::Status;
use crate::output::note;

/// `stdout`, `stderr` (their kept bytes: text, or base64 when not UTF-8), their byte
/// counts, and whether any was cut.
pub fn output_fields(obj: &mut Map<String, Value>, c: &Captured, stdout: &[u8], stderr: &[u8]) {
    let cut = |kept: &[u8], total: u64| {
        if total > kept.len() as u64 {
            Cut::KeptStart
        } else {
            Cut::None
        }
    };
    bytes_json(obj, "stdout", stdout, cut(stdout, c.stdout_total));
    bytes_json(obj, "stderr", stderr, cut(stderr, c.stderr_total));
    obj.insert("stdout_bytes".to_owned(), c.stdout_total.into());
    obj.insert("stderr_bytes".to_owned(), c.stderr_total.into());
    obj.insert("truncated".to_owned(), c.truncated().into());
}

/// `task-exec --format json`: the output kept (up to `--max-output`), the task once found;
/// one object on stdout at the end, and nothing before it.
pub struct JsonRun {
    kept: Captured,
    task: Option<Map<String, Value>>,
}

impl JsonRun {
    pub fn new(max_output: usize) -> Self {
        JsonRun {
            kept: Captured::new(max_output),
            task: None,
        }
    }

    /// Prints the run's object; the status is the run's own (the command's exit code),
    /// or a failure already reported in the object (125).
    pub fn finish(mut self, result: Result<Outcome, ExecError>, took: Duration) -> Status {
        let (stdout, stderr, lost) = match self.kept.take() {
            Ok((o, e)) => (o, e, None),
            // Output that cannot be given whole is no success.
            Err(e) => (Vec::new(), Vec::new(), Some(e)),
        };
        let (outcome, exit_code, error, status) = match (&result, lost) {
            (_, Some(e)) => {
                let why = format!("its output could not be kept: {e}");
                ("failed", None, Some(why), Status::FailedReported)
            }
            (Ok(Outcome::Exited(c)), None) => (
                "exited",
                Some(*c),
                None,
                Status::Outcome(Outcome::Exited(*c)),
            ),
            (Ok(Outcome::TimedOut), None) => {
                ("timed_out", None, None, Status::Outcome(Outcome::TimedOut))
            }
            (Ok(Outcome::Interrupted(i)), None) => {
                let i: Interrupt = *i;
                (
                    "interrupted",
                    None,
                    None,
                    Status::Outcome(Outcome::Interrupted(i)),
                )
            }
            (Err(e), None) => (
                "failed",
                None,
                Some(crate::exit::causes(e).join(": ")),
                Status::FailedReported,
            ),
        };
        let mut obj = self.task.take().unwrap_or_default();
        obj.insert("outcome".to_owned(), outcome.into());
        obj.insert("exit_code".to_owned(), exit_code.into());
        obj.insert("error".to_owned(), error.into());
        let secs = swarm_exec_core::model::outcome::seconds(took);
        obj.insert("duration_s".to_owned(), json!(secs));
        output_fields(&mut obj, &self.kept, &stdout, &stderr);
        let mut out = std::io::stdout().lock();
        note(writeln!(out, "{}", Value::Object(obj)).and_then(|()| out.flush()));
        status
    }
}

impl OutputSink for JsonRun {
    fn stdout(&mut self, bytes: &[u8]) {
        self.kept.stdout(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.kept.stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        eprintln!("swarm-exec: warning: {message}");
    }
    fn runs_in(&mut self, t: &RunsIn<'_>) {
        let Value::Object(obj) = json!({
            "task_id": t.task_id,
            "name": t.name,
            "service": t.service,
            "node": t.node,
            "node_id": t.node_id,
            "container_id": t.container_id,
        }) else {
            unreachable!("a JSON object literal")
        };
        self.task = Some(obj);
    }
}
