//! The command line, as clap definitions; doc comments are the help text.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use swarm_exec_core::duration::parse_duration;
use swarm_exec_core::target::TaskRef;
use swarm_exec_core::DEFAULT_IMAGE;

use crate::exit;

/// Run commands in Docker Swarm service tasks, on any node, from a manager.
///
/// swarm-exec talks to a swarm manager (the local socket, or DOCKER_HOST), starts a
/// one-shot helper service on the task's node that execs the command there, streams the
/// command's output back and exits with the command's exit code.
#[derive(Debug, Parser)]
#[command(name = "swarm-exec", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: the command's own; 124 timeout; 125 swarm-exec failed; \
126/127 cannot invoke / not found; 130/143 SIGINT/SIGTERM. See the README."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in the container of one service task
    #[command(after_help = TASK_EXEC_EXAMPLES)]
    TaskExec(TaskExecArgs),
    /// (internal) Run inside the helper container: exec in a container on this node
    #[command(hide = true)]
    NodeExec(NodeExecArgs),
}

const TASK_EXEC_EXAMPLES: &str = "\
Examples:
  swarm-exec task-exec web.2 cat /etc/hostname
  swarm-exec task-exec q1mh1syk49e0 -- ls -la /data
  swarm-exec task-exec agent@node3 sh -c 'kill -HUP 1'
  swarm-exec task-exec -e LEVEL=debug -u nobody -w /app web.1 ./reload
  swarm-exec task-exec --timeout 30s web.1 ./migrate --check
  docker run --rm -v /var/run/docker.sock:/var/run/docker.sock \\
      swarm-exec:0.1.0 task-exec web.1 true

TASK is a task ID or unique ID prefix (see `docker service ps SERVICE`), SERVICE.SLOT
for a replicated service, or SERVICE@NODE (hostname or node ID) for any service.
The command is run directly, not through a shell; use `sh -c '...'` for shell syntax.

Exit codes: the command's own; 124 timeout; 125 swarm-exec failed; 126/127 cannot
invoke / not found; 130/143 interrupted by SIGINT/SIGTERM (the helper is removed first).";

#[derive(Debug, Args)]
pub struct TaskExecArgs {
    /// Set an environment variable in the command (KEY=VALUE; KEY alone passes on this
    /// process's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as (name or UID, optionally :GROUP)
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,

    /// Give up after this long (e.g. 30, 30s, 5m, 1m30s); exit code 124
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Helper image; must hold this version of swarm-exec and be present on (or pullable
    /// by) the task's node
    #[arg(long, value_name = "IMAGE", env = "SWARM_EXEC_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,

    /// The task: ID or unique ID prefix, SERVICE.SLOT, or SERVICE@NODE
    #[arg(value_name = "TASK", value_parser = parse_task)]
    pub task: TaskRef,

    /// The command and its arguments, passed as is (no shell)
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct NodeExecArgs {
    /// Full ID of the container to exec in
    #[arg(long)]
    pub container: String,
    /// Tags this run's records
    #[arg(long)]
    pub nonce: String,
    /// Give up after this many milliseconds
    #[arg(long)]
    pub timeout_ms: u64,
    #[arg(long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub workdir: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub privileged: bool,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_task(s: &str) -> Result<TaskRef, String> {
    TaskRef::parse(s).map_err(|e| e.to_string())
}

/// Parses the arguments; prints help or version and exits 0, or prints a usage error and
/// exits 125, as docker does for its own usage errors.
pub fn parse_or_exit() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        let code = if e.use_stderr() { exit::FAILED } else { 0 };
        std::process::exit(code.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_after_task_keeps_its_own_flags() {
        let cli = Cli::try_parse_from([
            "swarm-exec",
            "task-exec",
            "-e",
            "A=1",
            "web.1",
            "ls",
            "-la",
            "--timeout",
            "1",
        ])
        .unwrap();
        let Command::TaskExec(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.env, ["A=1"]);
        assert_eq!(a.command, ["ls", "-la", "--timeout", "1"]);
        assert_eq!(a.timeout, Duration::from_secs(300));
    }

    #[test]
    fn bad_task_and_timeout_are_usage_errors() {
        for args in [
            vec!["swarm-exec", "task-exec", "web.1; ls", "true"],
            vec!["swarm-exec", "task-exec", "--timeout", "0", "web.1", "true"],
            vec![
                "swarm-exec",
                "task-exec",
                "--timeout",
                "-5",
                "web.1",
                "true",
            ],
            vec!["swarm-exec", "task-exec", "web.1"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
