//! The dispatcher: one module per subcommand, each a thin adapter over `swarm_exec_core`;
//! what they all set up (the engine, the runtime, tracing) is in `setup`.

mod action;
mod cp;
mod debug;
mod exec;
mod gc;
mod json;
mod persist;
mod plugin;
mod port_forward;
mod service_exec;
mod setup;
mod task_exec;
mod wait;

use crate::cli::Command;
use crate::exit::{CliError, Status};
use crate::invocation::Invocation;
use setup::{init_tracing, runtime};

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
        Command::NodeRelay(ref a) => return Ok(node(swarm_exec_proto::args::NODE_RELAY, a)),
        Command::NodeForward(ref a) => return Ok(node(swarm_exec_proto::args::NODE_FORWARD, a)),
        _ => {}
    }
    // Who runs what kind of thing, on every helper made from here on.
    let makes_helpers = match &cli.command {
        Command::TaskExec(_) => Some(("task-exec", None)),
        Command::ServiceExec(_) => Some(("service-exec", None)),
        Command::Cp(_) => Some(("cp", None)),
        Command::Debug(_) => Some(("debug", None)),
        Command::PortForward(_) => Some(("port-forward", None)),
        Command::Action(a) => a.name.as_deref().map(|n| ("action", Some(n))),
        Command::Persist(_) => Some(("persist", None)),
        _ => None,
    };
    if let Some((name, action)) = makes_helpers {
        setup::set_origin(name, action)?;
    }
    // The keeper makes its own runtime (with a set for its local tasks).
    if let Command::Persist(args) = cli.command {
        return persist::run(&cli.global, args);
    }
    let rt = runtime()?;
    match cli.command {
        Command::TaskExec(args) => rt.block_on(task_exec::run(&cli.global, args)),
        Command::ServiceExec(args) => rt.block_on(service_exec::run(&cli.global, args)),
        Command::Exec(args) => rt.block_on(exec::run(&cli.global, args)),
        Command::Gc(args) => rt.block_on(gc::run(&cli.global, args)),
        Command::Cp(args) => rt.block_on(cp::run(&cli.global, args)),
        Command::Debug(args) => rt.block_on(debug::run(&cli.global, args)),
        Command::PortForward(args) => rt.block_on(port_forward::run(&cli.global, args)),
        Command::Wait(args) => rt.block_on(wait::run(&cli.global, args)),
        Command::Action(args) => rt.block_on(action::run(&cli.global, args)),
        Command::NodeExec(_)
        | Command::NodeKill(_)
        | Command::NodeRelay(_)
        | Command::NodeForward(_) => {
            unreachable!("handled above")
        }
        Command::Completions { .. } | Command::Man | Command::Persist(_) => {
            unreachable!("handled above")
        }
    }
}

/// The node side (in the helper and stopper containers): its own entry decides its codes.
fn node(word: &str, a: &crate::cli::NodeArgs) -> Status {
    let args: Vec<String> = std::iter::once(word.to_owned())
        .chain(a.args.iter().cloned())
        .collect();
    Status::Helper(i32::from(swarm_exec_node::main(&args)))
}
