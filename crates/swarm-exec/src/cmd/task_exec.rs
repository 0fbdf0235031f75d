//! `swarm-exec task-exec`.

use std::ffi::OsString;
use std::future::Future;

use swarm_exec_core::{
    task_exec, ExecError, ExecRequest, Interrupt, Outcome, OutputSink, RunOptions,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{ExecOptions, Global, TaskExecArgs};
use crate::cmd::setup::connect;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

/// `--timeout`'s default for a command (a `-t` session has none).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn run(global: &Global, args: TaskExecArgs) -> Result<Status, CliError> {
    if args.tty {
        return session(global, args).await;
    }
    // stdin (-i) is read first, while Ctrl-C still simply ends the process; then signals
    // are caught, before anything exists on the swarm.
    let command = args
        .command
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<_, _>>()?;
    let mut run = run_options(args.exec, command)?;
    if let Err(swarm_exec_core::model::options::InvalidRun::StdinTooLarge(..)) = run.check() {
        // More stdin than a secret holds: streamed, the part read so far first.
        let prefix = run.stdin.take().unwrap_or_default();
        return stream(global, &args.task, args.network.as_deref(), run, prefix).await;
    }
    let req = ExecRequest {
        target: args.task,
        run,
    };
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    let api = connect(global)?;
    let outcome = task_exec(&api, &req, &mut StdSink::new(global.quiet), interrupted).await?;
    Ok(Status::Outcome(outcome))
}

/// `task-exec -t`: an attached exec with a terminal, on the engine swarm-exec talks to.
async fn session(global: &Global, args: TaskExecArgs) -> Result<Status, CliError> {
    use crate::terminal;
    use swarm_exec_core::local::{attached, Attached};
    use swarm_exec_core::session::{remote_session, SessionRequest};
    use swarm_exec_core::task_exec::local_task;

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
    let run = run_options(
        ExecOptions {
            interactive: false,
            ..args.exec
        },
        command,
    )?;
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let api = connect(global)?;
    let (task, here) = tokio::select! {
        r = local_task(&api, &args.task) => r?,
        i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    let sizes = terminal::sizes().map_err(CliError::Runtime)?;
    if !here {
        // Another node: a relay, an overlay and a helper; the program is readied first,
        // while nothing exists yet.
        let carrier = tokio::select! {
            r = swarm_exec_core::task_exec::carrier_for(&api, &run.helper, &task) => r?,
            i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
        };
        let raw = if interactive {
            Some(
                terminal::RawMode::enable()
                    .map_err(|e| CliError::Failed(format!("raw mode: {e}")))?,
            )
        } else {
            None
        };
        let input = interactive.then(terminal::stdin_chunks);
        let mut sink = StdSink::new(true);
        let req = SessionRequest {
            task: &task,
            run: &run,
            carrier: &carrier,
            tty: true,
            network: args.network.as_deref(),
            stdin_prefix: Vec::new(),
            copy: None,
        };
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let outcome = remote_session(
            &api,
            req,
            input,
            sizes,
            &mut sink,
            deadline,
            &mut interrupted,
        )
        .await;
        drop(raw);
        return Ok(Status::Outcome(outcome.map_err(ExecError::from)?));
    }
    let exec = Attached::of(&task, &run, true);
    let raw = if interactive {
        Some(terminal::RawMode::enable().map_err(|e| CliError::Failed(format!("raw mode: {e}")))?)
    } else {
        None
    };
    let input = interactive.then(terminal::stdin_chunks);
    // Through the sink that notes write errors: output that could not be written makes
    // the run fail (125), not exit with the command's code.
    let mut sink = StdSink::new(true);
    let created = std::cell::OnceCell::new();
    let session = attached(
        &api,
        &exec,
        &created,
        input,
        sizes,
        |stream, bytes| match stream {
            swarm_exec_proto::Stream::Stderr => sink.stderr(bytes),
            _ => sink.stdout(bytes),
        },
    );
    let timeout = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = session => Outcome::Exited(r.map_err(|e| swarm_exec_core::ExecError::attach(e, &task))?),
        i = &mut interrupted => Outcome::Interrupted(i),
        () = timeout => Outcome::TimedOut,
    };
    drop(raw);
    if !matches!(outcome, Outcome::Exited(_)) {
        stop_attached(&api, &task, &exec, created.get(), &run.helper).await;
    }
    Ok(Status::Outcome(outcome))
}

/// How long stopping what an attached exec left running may take: its grace period between
/// SIGTERM and SIGKILL, and room to start the stopper.
const STOP_WAIT: std::time::Duration =
    swarm_exec_node::stop::STOP_GRACE.saturating_add(std::time::Duration::from_secs(25));

/// Stops the command of an attached exec on the client's own engine that the client no
/// longer waits for (timeout, signal): the engine has no way to signal an exec, so a
/// stopper does, as a helper's does — the exec's processes and every process of the
/// container carrying the run's mark. Says so on stderr if they could not be seen to end.
async fn stop_attached(
    api: &swarm_exec_core::BollardApi,
    task: &swarm_exec_core::lookup::resolve::Resolved,
    exec: &swarm_exec_core::local::Attached<'_>,
    exec_id: Option<&String>,
    helper: &swarm_exec_core::model::options::HelperSource,
) {
    use swarm_exec_core::model::options::HelperSource;
    use swarm_exec_node::stop::{Program, Stopper};
    // Not created: nothing runs.
    let Some(exec_id) = exec_id else { return };
    let stopper = match helper {
        HelperSource::Image(image) => Stopper {
            image: Some(image.clone()),
            program: Program::ThisOne,
            grace: swarm_exec_node::stop::STOP_GRACE,
        },
        HelperSource::Embedded(p) => Stopper {
            image: None,
            program: Program::Carried((p.program)()),
            grace: swarm_exec_node::stop::STOP_GRACE,
        },
    };
    let stopped = tokio::time::timeout(
        STOP_WAIT,
        stopper.terminate(api.docker(), exec_id, exec.container, &exec.mark),
    )
    .await;
    let why = match stopped {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not done within {} s", STOP_WAIT.as_secs()),
    };
    eprintln!(
        "\r\nswarm-exec: warning: task {}: the command was told to stop, but could not be \
         seen to end ({why}); it may still be running",
        task.task_id
    );
}

/// `task-exec -i` with more stdin than a secret holds: an attached exec on the engine
/// swarm-exec talks to, or a session through a relay for a task on another node; stdin is
/// streamed to the end (`prefix` first), stdout and stderr kept apart.
async fn stream(
    global: &Global,
    task: &swarm_exec_core::model::target::TaskRef,
    network: Option<&str>,
    run: RunOptions,
    prefix: Vec<u8>,
) -> Result<Status, CliError> {
    use swarm_exec_core::local::{attached, Attached};
    use swarm_exec_core::session::{remote_session, SessionRequest};
    use swarm_exec_core::task_exec::local_task;

    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let deadline = tokio::time::Instant::now() + run.timeout;
    let api = connect(global)?;
    let (task, here) = tokio::select! {
        r = local_task(&api, task) => r?,
        i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    let mut sink = StdSink::new(global.quiet);
    let no_sizes = futures_util::stream::empty();
    if here {
        let exec = Attached::of(&task, &run, false);
        let input = crate::terminal::stdin_chunks_after(prefix);
        let created = std::cell::OnceCell::new();
        let session = attached(
            &api,
            &exec,
            &created,
            Some(input),
            no_sizes,
            |stream, bytes| match stream {
                swarm_exec_proto::Stream::Stderr => sink.stderr(bytes),
                _ => sink.stdout(bytes),
            },
        );
        let outcome = tokio::select! {
            r = session => Outcome::Exited(r.map_err(|e| swarm_exec_core::ExecError::attach(e, &task))?),
            i = &mut interrupted => Outcome::Interrupted(i),
            () = tokio::time::sleep_until(deadline) => Outcome::TimedOut,
        };
        if !matches!(outcome, Outcome::Exited(_)) {
            stop_attached(&api, &task, &exec, created.get(), &run.helper).await;
        }
        return Ok(Status::Outcome(outcome));
    }
    let carrier = tokio::select! {
        r = swarm_exec_core::task_exec::carrier_for(&api, &run.helper, &task) => r?,
        i = &mut interrupted => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    let req = SessionRequest {
        task: &task,
        run: &run,
        carrier: &carrier,
        tty: false,
        network,
        stdin_prefix: prefix,
        copy: None,
    };
    let input = crate::terminal::stdin_rest(req.stdin_prefix.len() as u64);
    let outcome = remote_session(
        &api,
        req,
        Some(input),
        no_sizes,
        &mut sink,
        Some(deadline),
        &mut interrupted,
    )
    .await
    .map_err(ExecError::from)?;
    Ok(Status::Outcome(outcome))
}

/// A future that resolves on the first SIGINT, SIGTERM or SIGHUP; handlers are installed now.
pub fn interrupted() -> std::io::Result<impl Future<Output = Interrupt>> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => Interrupt::Sigint,
            _ = term.recv() => Interrupt::Sigterm,
            _ = hup.recv() => Interrupt::Sighup,
        }
    })
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
