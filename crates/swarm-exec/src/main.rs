//! `swarm-exec`: `docker service exec` for Docker Swarm. See the README for the exit codes.

mod cli;
mod cmd;
mod exit;
mod output;

fn main() -> std::process::ExitCode {
    exit::run(cli::parse_or_exit())
}
