//! `swarm-exec exec CONTAINER CMD...`: the reference plugin's node-local word. Execs on the
//! engine swarm-exec talks to, with the output passed straight through.

use swarm_exec_core::api::LogStream;
use swarm_exec_core::helper::ExecSpec;
use swarm_exec_core::node_exec::exec_in_container;
use swarm_exec_core::{Outcome, OutputSink};

use crate::cli::{ExecArgs, Global};
use crate::cmd::task_exec::utf8_arg;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

pub async fn run(global: &Global, args: ExecArgs) -> Result<Status, CliError> {
    let api = super::connect(global)?;
    let exec = ExecSpec {
        command: args
            .command
            .into_iter()
            .map(utf8_arg)
            .collect::<Result<_, _>>()?,
        ..Default::default()
    };
    let mut sink = StdSink::new(true);
    let code = exec_in_container(
        api.docker(),
        &exec,
        &args.container,
        None,
        |_| {},
        |stream, bytes| match stream {
            LogStream::Stdout => sink.stdout(bytes),
            LogStream::Stderr => sink.stderr(bytes),
        },
    )
    .await
    .map_err(CliError::Failed)?;
    Ok(Status::Outcome(Outcome::Exited(code)))
}
