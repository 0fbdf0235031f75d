//! `swarm-exec node-kill`: the stopper container's entry point (not for users).

use std::time::Duration;

use swarm_exec_core::node_exec::node_kill;

use crate::cli::NodeKillArgs;
use crate::exit::{CliError, Status};

pub fn run(args: NodeKillArgs) -> Result<Status, CliError> {
    node_kill(
        args.pid,
        &args.container,
        Duration::from_millis(args.grace_ms),
    )
    .map_err(CliError::Failed)?;
    Ok(Status::Helper(0))
}
