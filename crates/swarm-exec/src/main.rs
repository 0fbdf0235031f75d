//! `swarm-exec`: `docker service exec` for Docker Swarm. See the README for the exit codes.

mod cli;
mod cmd;
mod exit;
mod output;

fn main() -> std::process::ExitCode {
    match cli::parse() {
        Ok(invocation) => exit::run(invocation),
        Err(code) => std::process::ExitCode::from(code),
    }
}
