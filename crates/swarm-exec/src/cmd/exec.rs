//! `swarm-exec exec CONTAINER CMD...`: the reference plugin's node-local word. Execs on the
//! engine swarm-exec talks to, with the output passed straight through.

use swarm_exec_core::local::{attached, Attached};
use swarm_exec_core::{ExecError, Outcome, OutputSink};
use swarm_exec_proto::Stream;

use crate::cli::{ExecArgs, Global};
use crate::cmd::setup::connect;
use crate::cmd::task_exec::utf8_arg;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

pub async fn run(global: &Global, args: ExecArgs) -> Result<Status, CliError> {
    let api = connect(global)?;
    let command: Vec<String> = args
        .command
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<_, _>>()?;
    let exec = Attached::plain(&args.container, &command);
    let mut sink = StdSink::new(true);
    let created = std::cell::OnceCell::new();
    let no_sizes = futures_util::stream::empty();
    let code = attached(
        &api,
        &exec,
        &created,
        None,
        no_sizes,
        |stream, bytes| match stream {
            Stream::Stderr => sink.stderr(bytes),
            _ => sink.stdout(bytes),
        },
    )
    .await
    .map_err(|e| {
        CliError::Exec(ExecError::Attach {
            target: format!("container {}", args.container),
            source: e,
        })
    })?;
    Ok(Status::Outcome(Outcome::Exited(code)))
}
