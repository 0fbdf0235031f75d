//! `swarm-exec`: `docker service exec` for Docker Swarm. See the README for the exit codes.
//!
//! `main` reads how the process was invoked (`invocation`), runs the command (`cmd`) and
//! hands the result to `exit`, which decides the exit code.

mod archive;
mod cli;
mod cmd;
mod docker_plugin;
mod exit;
mod invocation;
mod message;
mod node_program;
mod output;
mod skopos;
mod terminal;

use std::process::ExitCode;

fn main() -> ExitCode {
    match invocation::parse() {
        Ok(invocation) => {
            let result = cmd::run(invocation);
            // Read once the command is done: whether any of its output was lost.
            exit::code(result, output::write_error(), terminal::read_error())
        }
        Err(early) => exit::early(early),
    }
}
