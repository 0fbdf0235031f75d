//! One module per subcommand; each is a thin adapter over `swarm_exec_core`.

mod exec;
mod gc;
mod node_exec;
mod node_kill;
mod plugin;
mod service_exec;
mod task_exec;

use crate::cli::{Command, Invocation};
use crate::exit::{CliError, Status};

pub fn run(invocation: Invocation) -> Result<Status, CliError> {
    let cli = match invocation {
        Invocation::Cli(cli) => cli,
        Invocation::Plugin(args) => return Ok(plugin::run(args)),
    };
    init_tracing(None);
    let rt = runtime()?;
    match cli.command {
        Command::TaskExec(args) => rt.block_on(task_exec::run(args)),
        Command::NodeExec(args) => rt.block_on(node_exec::run(args)),
        Command::ServiceExec(args) => rt.block_on(service_exec::run(args)),
        Command::Exec(args) => rt.block_on(exec::run(args)),
        Command::Gc(args) => rt.block_on(gc::run(args)),
        Command::NodeKill(args) => node_kill::run(args),
    }
}

/// A runtime for one command: one thread is plenty (the work is waiting on sockets), and it
/// keeps start-up and memory small.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// `SWARM_EXEC_LOG=debug` traces each API step on stderr.
fn init_tracing(default: Option<&str>) {
    if let Some(filter) = std::env::var("SWARM_EXEC_LOG")
        .ok()
        .or(default.map(str::to_owned))
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}
