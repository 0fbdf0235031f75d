//! Every exit code swarm-exec can return is decided here.
//!
//! | code    | meaning                                                                   |
//! |---------|---------------------------------------------------------------------------|
//! | 0–255   | the command's own exit code, passed through                               |
//! | 124     | `--timeout` expired before the command finished                           |
//! | 125     | swarm-exec itself failed: bad usage, engine unreachable, not a manager,  |
//! |         | task not found/ambiguous/not running, helper rejected or never started,  |
//! |         | or the output is incomplete: frames lost on the way (the message says    |
//! |         | how many bytes of which stream), or it could not be written locally;     |
//! |         | or streamed stdin (`-i`, `cp -`) could not be read to its end             |
//! | 126/127 | the command could not be invoked / was not found (as the engine reports)  |
//! | 130     | interrupted by SIGINT (the helper is removed first)                       |
//! | 143     | terminated by SIGTERM (the helper is removed first)                       |
//! | 129     | SIGHUP: the terminal or ssh session went away (the helper is removed first) |
//!
//! 124–127 may also be the command's own code; the message on stderr tells them apart.
//!
//! `service-exec`: 0 when every task's command exited 0; 1 when any failed, timed out or
//! could not run; 125, 130 and 143 as above.
//!
//! As a Skopos plugin (`swarm-exec [OPTIONS] <action> [JSON]`) the protocol's codes apply:
//! 0 success, 2 failure (one line on stderr), and 130/143 as above.
//!
//! Before any command runs ([`early`]): 0 once help, the version or the docker CLI plugin
//! metadata is printed; 125 for a usage error (as docker does for its own), 2 for one of the
//! plugin protocol.
//!
//! This module only decides: `main` parses, runs the command and hands the result here.

use std::process::ExitCode;

use swarm_exec_core::{ExecError, Interrupt, Outcome};

use crate::invocation::Early;
use crate::message::clip;

pub const SUCCESS: u8 = 0;
pub const TIMED_OUT: u8 = 124;
pub const FAILED: u8 = 125;
pub const SIGINT: u8 = 130;
pub const SIGTERM: u8 = 143;
pub const SIGHUP: u8 = 129;
pub const PLUGIN_FAILED: u8 = 2;
pub const TASKS_FAILED: u8 = 1;

/// The exit code of a process that ended before running anything (see [`Early`]).
pub fn early(early: Early) -> ExitCode {
    ExitCode::from(match early {
        Early::Printed => SUCCESS,
        Early::Usage => FAILED,
        Early::PluginUsage => PLUGIN_FAILED,
    })
}

/// The exit code of a command that ran, from its result, the first error that lost some of
/// its output (`output::write_error`) and the failed read that cut its streamed input
/// short (`terminal::read_error`), if any.
pub fn code(
    result: Result<Status, CliError>,
    write_error: Option<String>,
    read_error: Option<String>,
) -> ExitCode {
    // Output that could not be written (disk full, ...) is lost: never the command's code,
    // which would say all went well.
    if let Ok(
        Status::Outcome(Outcome::Exited(_))
        | Status::Tasks {
            interrupted: None, ..
        },
    ) = &result
    {
        if let Some(e) = write_error {
            eprintln!(
                "swarm-exec: error: writing the command's output: {e}; the output is incomplete"
            );
            return ExitCode::from(FAILED);
        }
    }
    // Input cut short by a failed read: the command answered less than it was given.
    if let (Ok(Status::Outcome(Outcome::Exited(_))), Some(e)) = (&result, read_error) {
        eprintln!(
            "swarm-exec: error: {e}; the command saw its input end there, so its exit code \
             is not given"
        );
        return ExitCode::from(FAILED);
    }
    let code = match result {
        Ok(Status::Outcome(outcome)) => outcome_code(outcome),
        Ok(Status::Done) => SUCCESS,
        Ok(Status::Helper(code)) => u8::try_from(code).unwrap_or(FAILED),
        Ok(Status::PluginDone) => 0,
        Ok(Status::Tasks {
            interrupted: Some(i),
            ..
        }) => outcome_code(Outcome::Interrupted(i)),
        Ok(Status::Tasks { failed, .. }) => {
            if failed > 0 {
                TASKS_FAILED
            } else {
                0
            }
        }
        Ok(Status::PluginFailed) => PLUGIN_FAILED,
        Ok(Status::FailedReported) => FAILED,
        Err(err) => {
            report(&err);
            FAILED
        }
    };
    ExitCode::from(code)
}

/// What a subcommand ended with, short of failing.
pub enum Status {
    /// A subcommand of swarm-exec's own (gc, completions, man) did what it was asked.
    Done,
    Outcome(Outcome),
    /// The node side (`node-exec`, `node-kill`): the code its own entry decided
    /// (`swarm_exec_node::main`).
    Helper(i32),
    /// A plugin action succeeded (its JSON is printed).
    PluginDone,
    /// A plugin action failed (its one-line reason is printed).
    PluginFailed,
    /// swarm-exec failed, and its `--format json` object said so already.
    FailedReported,
    /// `service-exec`: how many tasks did not succeed, and whether it was interrupted.
    Tasks {
        failed: usize,
        interrupted: Option<Interrupt>,
    },
}

fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        // Exit statuses are 0–255; anything else could only come from a broken engine.
        Outcome::Exited(code) => u8::try_from(code).unwrap_or(FAILED),
        Outcome::TimedOut => {
            eprintln!("swarm-exec: timed out");
            TIMED_OUT
        }
        Outcome::Interrupted(Interrupt::Sigint) => SIGINT,
        Outcome::Interrupted(Interrupt::Sigterm) => SIGTERM,
        Outcome::Interrupted(Interrupt::Sighup) => SIGHUP,
    }
}

/// The error and its causes, on one line each, on stderr.
fn report(err: &(dyn std::error::Error + 'static)) {
    let msg = format!("swarm-exec: error: {}", causes(err).join("\n  caused by: "));
    eprintln!("{}", clip(&msg));
}

/// An error and each of its causes that does not repeat what came before it.
pub fn causes(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut said = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !said.iter().any(|t| t.contains(&text)) {
            said.push(text);
        }
        source = s.source();
    }
    said
}

/// Failures of the binary's own layer, around the library's.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    ServiceExec(#[from] swarm_exec_core::service_exec::ServiceExecError),
    #[error(transparent)]
    Endpoint(#[from] swarm_exec_core::connect::EndpointError),
    #[error("cannot connect to the Docker engine: {0}")]
    Connect(#[source] swarm_exec_core::ApiError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
