//! `swarm-exec node-exec`: the helper container's entry point (not for users).

use std::time::Duration;

use bollard::Docker;
use swarm_exec_core::helper::ExecSpec;
use swarm_exec_core::node_exec::{node_exec, NodeRun, Stopper, STOP_GRACE};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::NodeExecArgs;
use crate::exit::{CliError, Status};

pub async fn run(args: NodeExecArgs) -> Result<Status, CliError> {
    // Always the node's own engine, whatever the environment says.
    let docker = Docker::connect_with_unix(
        "unix:///var/run/docker.sock",
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| CliError::Connect(swarm_exec_core::api::classify(e)))?;
    let exec = ExecSpec {
        containers: args.containers,
        command: args.command,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        privileged: args.privileged,
    };
    let stopper = Stopper {
        image: args.image,
        grace: STOP_GRACE,
    };
    // Removing the helper service sends it SIGTERM: the commands are stopped, not left.
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Runtime)?;
    let stop = async move {
        term.recv().await;
    };
    let stdin = match &args.stdin {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            CliError::Failed(format!("reading stdin from {}: {e}", path.display()))
        })?),
        None => None,
    };
    let run = NodeRun {
        exec: &exec,
        stdin: stdin.as_deref(),
        nonce: &args.nonce,
        timeout: Duration::from_millis(args.timeout_ms),
        stopper: &stopper,
    };
    let code = node_exec(&docker, run, stop, &mut std::io::stdout()).await;
    Ok(Status::Helper(code))
}
