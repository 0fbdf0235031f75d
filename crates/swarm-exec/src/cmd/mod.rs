//! One module per subcommand; each is a thin adapter over `swarm_exec_core`.

mod node_exec;
mod task_exec;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, Status};

pub fn run(cli: Cli) -> Result<Status, CliError> {
    init_tracing();
    // One thread is plenty: the work is waiting on sockets, and it keeps start-up and
    // memory small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    match cli.command {
        Command::TaskExec(args) => rt.block_on(task_exec::run(args)),
        Command::NodeExec(args) => rt.block_on(node_exec::run(args)),
    }
}

/// `SWARM_EXEC_LOG=debug` traces each API step on stderr.
fn init_tracing() {
    if let Ok(filter) = std::env::var("SWARM_EXEC_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}
