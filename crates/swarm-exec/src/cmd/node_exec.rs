//! `swarm-exec node-exec`: the helper container's entry point (not for users).

use std::time::Duration;

use bollard::Docker;
use swarm_exec_core::helper::ExecSpec;
use swarm_exec_core::node_exec::node_exec;

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
    let code = node_exec(
        &docker,
        &exec,
        &args.nonce,
        Duration::from_millis(args.timeout_ms),
        &mut std::io::stdout(),
    )
    .await;
    Ok(Status::Helper(code))
}
