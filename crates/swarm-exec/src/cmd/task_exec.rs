//! `swarm-exec task-exec`.

use std::ffi::OsString;

use swarm_exec_core::live::{self, LiveRequest};
use swarm_exec_core::{task_exec, ExecRequest, Outcome, RunOptions};

use crate::cli::{ExecOptions, Global, TaskExecArgs};
use crate::cmd::setup::{connect, interrupted};
use crate::exit::{CliError, Status};
use crate::output::StdSink;
use swarm_exec_core::sink::OutputSink as _;

/// `--timeout`'s default for a command (a `-t` session has none).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn run(global: &Global, args: TaskExecArgs) -> Result<Status, CliError> {
    run_in(global, args, None).await
}

/// `debug`: as task-exec, with the command in a container of `image` beside the task.
pub async fn run_debug(
    global: &Global,
    args: TaskExecArgs,
    image: String,
) -> Result<Status, CliError> {
    run_in(global, args, Some(image)).await
}

/// task-exec, or (`debug` an image) debug.
async fn run_in(
    global: &Global,
    args: TaskExecArgs,
    debug: Option<String>,
) -> Result<Status, CliError> {
    if let Some(image) = debug.as_deref() {
        if !swarm_exec_core::model::target::is_image_ref(image) {
            return Err(CliError::Usage(format!("invalid --image {image:?}")));
        }
    }
    let json = args.format == "json";
    if args.wait_ready.is_some() && (args.tty || args.via == "session") {
        return Err(CliError::Usage(
            "--wait-ready takes a plain run on the log path (not -t, not --via session)".into(),
        ));
    }
    if json && (args.tty || args.via == "session") {
        return Err(CliError::Usage(
            "--format json takes a plain run on the log path (not -t, not --via session)".into(),
        ));
    }
    if args.tty {
        return session(global, args, debug).await;
    }
    // stdin (-i) is read first, while Ctrl-C still simply ends the process; then signals
    // are caught, before anything exists on the swarm.
    let command = args
        .command
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<_, _>>()?;
    let mut run = run_options(args.exec, command)?;
    run.debug = debug;
    if let Err(swarm_exec_core::model::options::InvalidRun::StdinTooLarge(..)) = run.check() {
        if json {
            return Err(CliError::Usage(
                "--format json takes stdin up to a swarm secret's worth (500 KiB)".into(),
            ));
        }
        // More stdin than a secret holds: streamed, the part read so far first.
        let prefix = run.stdin.take().unwrap_or_default();
        let stdin = Stdin::Rest(prefix);
        return stream(global, &args.task, args.network.as_deref(), run, stdin).await;
    }
    if args.via == "session" {
        run.check().map_err(|e| CliError::Usage(e.to_string()))?;
        let stdin = Stdin::Whole(run.stdin.take());
        return stream(global, &args.task, args.network.as_deref(), run, stdin).await;
    }
    let req = ExecRequest {
        target: args.task,
        run,
    };
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let api = connect(global)?;
    if let Some(d) = args.wait_ready {
        let which = [crate::cmd::wait::service_of(&req.target)];
        tokio::select! {
            r = crate::cmd::wait::ready_first(&api, &which, d) => r?,
            i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
        }
    }
    let keeps = !json && req.run.debug.is_none();
    if let (Some(idle), true) = (args.persist, keeps) {
        if let swarm_exec_core::HelperSource::Embedded(_) = req.run.helper {
            return persisted(global, &api, req, idle, interrupted).await;
        }
    }
    if json {
        let mut sink = crate::cmd::json::JsonRun::new(args.max_output);
        let started = std::time::Instant::now();
        let result = task_exec(&api, &req, &mut sink, interrupted).await;
        return Ok(sink.finish(result, started.elapsed()));
    }
    let outcome = task_exec(&api, &req, &mut StdSink::new(global.quiet), interrupted).await?;
    Ok(Status::Outcome(outcome))
}

/// `--persist`: a task on another node through the keeper's standing helper; one on this
/// engine directly, as always.
async fn persisted<C>(
    global: &Global,
    api: &swarm_exec_core::BollardApi,
    req: ExecRequest,
    idle: std::time::Duration,
    interrupted: std::pin::Pin<&mut C>,
) -> Result<Status, CliError>
where
    C: std::future::Future<Output = swarm_exec_core::Interrupt>,
{
    let mut interrupted = interrupted;
    req.run
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let found = tokio::select! {
        r = swarm_exec_core::task_exec::local_task(api, &req.target) => r?,
        i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    let mut sink = StdSink::new(global.quiet);
    let outcome = match found {
        (_, true) => task_exec(api, &req, &mut sink, interrupted).await?,
        (task, false) => {
            if let Some(n) = task.chosen_from.filter(|&n| n > 1) {
                sink.note(&format!(
                    "service {} has {n} running tasks; running in {}",
                    task.service_name,
                    task.describe()
                ));
            }
            let run = &req.run;
            crate::cmd::persist::task_exec(global, task, run, idle, &mut sink, interrupted).await?
        }
    };
    Ok(Status::Outcome(outcome))
}

/// `task-exec -t`: a terminal session, attached on the engine swarm-exec talks to or
/// through a live session (core decides which); here only the terminal is readied.
async fn session(
    global: &Global,
    args: TaskExecArgs,
    debug: Option<String>,
) -> Result<Status, CliError> {
    use crate::terminal;

    let (interactive, timeout) = (args.exec.interactive, args.exec.timeout);
    if interactive && !terminal::stdin_is_terminal() {
        return Err(CliError::Usage(
            "the input device is not a TTY: -it needs a terminal on stdin (without -t, stdin \
             is passed whole)"
                .into(),
        ));
    }
    let command = args
        .command
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<_, _>>()?;
    // The same checks as any task-exec's; stdin is not read whole here but streamed.
    let mut run = run_options(
        ExecOptions {
            interactive: false,
            ..args.exec
        },
        command,
    )?;
    run.debug = debug;
    run.check().map_err(|e| CliError::Usage(e.to_string()))?;
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let api = connect(global)?;
    let helper_only = run.debug.is_some();
    let plan = match live::find_route(&api, &args.task, &run.helper, helper_only, &mut interrupted)
        .await?
    {
        Ok(plan) => plan,
        Err(i) => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    let sizes = terminal::sizes().map_err(CliError::Runtime)?;
    let raw = if interactive {
        Some(terminal::RawMode::enable().map_err(|e| CliError::Failed(format!("raw mode: {e}")))?)
    } else {
        None
    };
    let input = interactive.then(terminal::stdin_chunks);
    // Through the sink that notes write errors: output that could not be written makes
    // the run fail (125), not exit with the command's code.
    let mut sink = StdSink::new(true);
    let req = LiveRequest {
        run: &run,
        tty: true,
        network: args.network.as_deref(),
        stdin_prefix: Vec::new(),
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let outcome = live::run(
        &api,
        &plan,
        req,
        input,
        sizes,
        &mut sink,
        deadline,
        &mut interrupted,
    )
    .await;
    drop(raw);
    Ok(Status::Outcome(outcome?))
}

/// Where a live plain run's stdin comes from.
enum Stdin {
    /// What `-i` read so far, then the rest of this process's stdin, streamed to its end
    /// (more than a secret holds).
    Rest(Vec<u8>),
    /// All of it, read already (`--via session`); none without `-i`.
    Whole(Option<Vec<u8>>),
}

/// A plain run live — `task-exec -i` with more stdin than a secret holds, or `--via
/// session`: attached on the engine swarm-exec talks to, or through a live session;
/// stdout and stderr kept apart.
async fn stream(
    global: &Global,
    task: &swarm_exec_core::model::target::TaskRef,
    network: Option<&str>,
    run: RunOptions,
    stdin: Stdin,
) -> Result<Status, CliError> {
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let deadline = tokio::time::Instant::now() + run.timeout;
    let api = connect(global)?;
    let helper_only = run.debug.is_some();
    let plan =
        match live::find_route(&api, task, &run.helper, helper_only, &mut interrupted).await? {
            Ok(plan) => plan,
            Err(i) => return Ok(Status::Outcome(Outcome::Interrupted(i))),
        };
    // Directly, what was read goes first as it is; a session sends it itself, apart.
    let (input, stdin_prefix) = match stdin {
        Stdin::Whole(bytes) => (bytes.map(swarm_exec_core::direct::whole_input), Vec::new()),
        Stdin::Rest(prefix) if plan.direct() => (
            Some(crate::terminal::stdin_chunks_after(prefix)),
            Vec::new(),
        ),
        Stdin::Rest(prefix) => (
            Some(crate::terminal::stdin_rest(prefix.len() as u64)),
            prefix,
        ),
    };
    let mut sink = StdSink::new(global.quiet);
    let req = LiveRequest {
        run: &run,
        tty: false,
        network,
        stdin_prefix,
    };
    let outcome = live::run(
        &api,
        &plan,
        req,
        input,
        futures_util::stream::empty(),
        &mut sink,
        Some(deadline),
        &mut interrupted,
    )
    .await?;
    Ok(Status::Outcome(outcome))
}

/// [`ExecOptions`], checked, with the command; reads stdin for `-i`.
pub fn run_options(o: ExecOptions, command: Vec<String>) -> Result<RunOptions, CliError> {
    Ok(RunOptions {
        command,
        env: o
            .env
            .iter()
            .filter_map(|e| env_var(e).transpose())
            .collect::<Result<_, _>>()?,
        workdir: o.workdir.map(|w| non_empty("--workdir", w)).transpose()?,
        user: o.user.map(|u| non_empty("--user", u)).transpose()?,
        privileged: o.privileged,
        timeout: o.timeout.unwrap_or(DEFAULT_TIMEOUT),
        helper: crate::node_program::helper_source(
            o.image.map(|i| non_empty("--image", i)).transpose()?,
        ),
        stdin: if o.interactive {
            Some(read_stdin()?)
        } else {
            None
        },
        debug: None,
    })
}

/// All of stdin, up to one byte more than can be passed (the library refuses that).
fn read_stdin() -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let mut data = Vec::new();
    std::io::stdin()
        .take(swarm_exec_core::model::options::MAX_STDIN as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| CliError::Failed(format!("reading stdin: {e}")))?;
    Ok(data)
}

/// The Engine API carries arguments as JSON strings: they must be UTF-8.
pub fn utf8_arg(arg: OsString) -> Result<String, CliError> {
    arg.into_string().map_err(|a| {
        CliError::Usage(format!(
            "command argument {a:?} is not valid UTF-8, which the Docker API cannot carry"
        ))
    })
}

fn non_empty(flag: &str, value: String) -> Result<String, CliError> {
    if value.is_empty() {
        Err(CliError::Usage(format!("{flag} must not be empty")))
    } else {
        Ok(value)
    }
}

/// `KEY=VALUE` as is; `KEY` alone takes this process's value, or is dropped if unset (as
/// `docker exec -e KEY` does).
fn env_var(spec: &str) -> Result<Option<String>, CliError> {
    let key = spec.split_once('=').map_or(spec, |(k, _)| k);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "invalid --env {spec:?}: expected KEY=VALUE or KEY"
        )));
    }
    if spec.contains('=') {
        return Ok(Some(spec.to_owned()));
    }
    Ok(std::env::var(key).ok().map(|v| format!("{key}={v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_forms() {
        assert_eq!(env_var("A=1").unwrap().as_deref(), Some("A=1"));
        assert_eq!(env_var("A=").unwrap().as_deref(), Some("A="));
        assert_eq!(env_var("A=b=c").unwrap().as_deref(), Some("A=b=c"));
        assert_eq!(env_var("SWARM_EXEC_SURELY_UNSET_VAR").unwrap(), None);
        assert!(env_var("=1").is_err());
        assert!(env_var("").is_err());
        assert!(env_var("A B=1").is_err());
    }
}
