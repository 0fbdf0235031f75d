//! One module per subcommand; each is a thin adapter over `swarm_exec_core`.

mod exec;
mod gc;
mod plugin;
mod service_exec;
mod task_exec;

use swarm_exec_core::endpoint::{self, EndpointFlags};
use swarm_exec_core::BollardApi;

use crate::cli::{Command, Global, Invocation};
use crate::exit::{CliError, Status};

pub fn run(invocation: Invocation) -> Result<Status, CliError> {
    let cli = match invocation {
        Invocation::Cli(cli) => cli,
        Invocation::Plugin(args) => return Ok(plugin::run(args)),
    };
    init_tracing(
        cli.global
            .verbose
            .then_some("swarm_exec_core=debug,swarm_exec=debug"),
    );
    match cli.command {
        // Generated from the clap definitions; written whole, so `| head` is no error.
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, "swarm-exec", &mut text);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &text);
            return Ok(Status::Done);
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut text)
                .map_err(CliError::Runtime)?;
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &text);
            return Ok(Status::Done);
        }
        // The node side: its own entry decides its exit codes.
        Command::NodeExec(ref a) => return Ok(node(swarm_exec_proto::args::NODE_EXEC, a)),
        Command::NodeKill(ref a) => return Ok(node(swarm_exec_proto::args::NODE_KILL, a)),
        _ => {}
    }
    let rt = runtime()?;
    match cli.command {
        Command::TaskExec(args) => rt.block_on(task_exec::run(&cli.global, args)),
        Command::ServiceExec(args) => rt.block_on(service_exec::run(&cli.global, args)),
        Command::Exec(args) => rt.block_on(exec::run(&cli.global, args)),
        Command::Gc(args) => rt.block_on(gc::run(&cli.global, args)),
        Command::NodeExec(_) | Command::NodeKill(_) => unreachable!("handled above"),
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
}

/// The node side (in the helper and stopper containers): its own entry decides its codes.
fn node(word: &str, a: &crate::cli::NodeArgs) -> Status {
    let args: Vec<String> = std::iter::once(word.to_owned())
        .chain(a.args.iter().cloned())
        .collect();
    Status::Helper(i32::from(swarm_exec_node::main(&args)))
}

/// The engine the flags and environment name (see [`Global`]).
pub fn connect(global: &Global) -> Result<BollardApi, CliError> {
    let flags = EndpointFlags {
        host: global.host.clone(),
        context: global.context.clone(),
    };
    // The docker CLI's own flags, passed to its plugin, stand for its variables.
    let env = |k: &str| match k {
        "DOCKER_CONFIG" if global.config.is_some() => global.config.clone(),
        "DOCKER_CERT_PATH" if global.cert_path.is_some() => global.cert_path.clone(),
        "DOCKER_TLS_VERIFY" if global.tls_verify => Some("1".to_owned()),
        _ => std::env::var(k).ok(),
    };
    let endpoint = endpoint::resolve(&flags, &env).map_err(CliError::Endpoint)?;
    tracing::debug!(host = %endpoint.host, source = %endpoint.source, "engine");
    let docker = endpoint::connect(&endpoint).map_err(CliError::Endpoint)?;
    Ok(BollardApi::new(docker))
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
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init();
    }
}
