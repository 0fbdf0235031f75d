//! `swarm-exec-node`: the node side on its own (`node-exec …`, `node-kill …`). The
//! `swarm-exec` binary runs the same code for its hidden subcommands of those names.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::ExitCode::from(swarm_exec_node::main(&args))
}
