//! `swarm-exec exec CONTAINER CMD...`: the reference plugin's node-local word. Execs on the
//! engine swarm-exec talks to, with the output passed straight through.

use swarm_exec_core::{Outcome, OutputSink};
use swarm_exec_node::exec::exec_in_container;
use swarm_exec_proto::{ExecSpec, Stream};

use crate::cli::{ExecArgs, Global};
use crate::cmd::setup::connect;
use crate::cmd::task_exec::utf8_arg;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

pub async fn run(global: &Global, args: ExecArgs) -> Result<Status, CliError> {
    let api = connect(global)?;
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
        |stream, bytes| match (stream, bytes) {
            (Stream::Stdout, Some(bytes)) => sink.stdout(bytes),
            (Stream::Stderr, Some(bytes)) => sink.stderr(bytes),
            (_, None) => {}
        },
    )
    .await
    .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(Status::Outcome(Outcome::Exited(code)))
}
