//! `swarm-exec debug`: task-exec's paths with a debug container in place of an exec.

use crate::cli::{DebugArgs, ExecOptions, Global, TaskExecArgs};
use crate::exit::{CliError, Status};

/// What runs in the debug container when no command is given.
const DEFAULT_COMMAND: &str = "sh";

pub async fn run(global: &Global, args: DebugArgs) -> Result<Status, CliError> {
    let command = if args.command.is_empty() {
        vec![DEFAULT_COMMAND.into()]
    } else {
        args.command
    };
    // `--image` names the debug image here; the helper's comes from the environment only.
    let helper = std::env::var("SWARM_EXEC_IMAGE")
        .ok()
        .filter(|i| !i.is_empty());
    let exec = TaskExecArgs {
        exec: ExecOptions {
            env: args.env,
            workdir: args.workdir,
            user: args.user,
            privileged: args.privileged,
            interactive: args.interactive,
            timeout: args.timeout,
            image: helper,
        },
        tty: args.tty,
        network: args.network,
        via: "log".to_owned(),
        format: "text".to_owned(),
        max_output: 0,
        wait_ready: None,
        persist: None,
        task: args.task,
        command,
    };
    crate::cmd::task_exec::run_debug(global, exec, args.image).await
}
