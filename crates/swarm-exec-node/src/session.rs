//! The helper in a live session: it dials the relay named in its envelope, proves it holds
//! the run key, and bridges the command's exec (attached, with a TTY when asked) to sealed
//! frames on that connection (see [`swarm_exec_proto::session`]).

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use swarm_exec_proto::args::RUN_ENV;
use swarm_exec_proto::envelope::SessionSpec;
use swarm_exec_proto::session::{halves, relay_token, Msg, Side};
use swarm_exec_proto::{is_container_id, Envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::exec::{NodeEnd, NodeError, TargetError};
use crate::stop::Stopper;

/// How long the relay is dialled for before the helper gives up (the client reports an
/// overlay that does not carry the connection well before).
const DIAL_FOR: Duration = Duration::from_secs(20);
const DIAL_EVERY: Duration = Duration::from_millis(50);

/// Why the session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error("cannot reach the relay at {relay}: {source}")]
    Dial {
        relay: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the session's connection failed: {0}")]
    Conn(#[source] std::io::Error),
    #[error("the client's stream was refused: {0}")]
    Refused(#[source] swarm_exec_proto::session::SessionError),
    #[error("the client went away")]
    ClientGone,
}

/// The session run: one target container.
pub async fn run(
    docker: &Docker,
    envelope: &Envelope,
    spec: &SessionSpec,
    tag: &str,
    budget: Duration,
    stopper: &Stopper,
    stop: impl std::future::Future<Output = ()>,
) -> NodeEnd {
    let deadline = tokio::time::Instant::now() + budget;
    let mut conn = match dial(&spec.relay).await {
        Ok(c) => c,
        Err(e) => return NodeEnd::Failed(NodeError::Session(e)),
    };
    let (mut seal, mut open) = halves(&envelope.key, Side::Helper);
    let mut out = relay_token(&envelope.key).to_vec();
    seal.seal(&Msg::Hello, &mut out);
    if let Err(e) = conn.write_all(&out).await {
        return NodeEnd::Failed(NodeError::Session(SessionFailure::Conn(e)));
    }
    let (mut rx, mut tx) = conn.into_split();
    let send = |seal: &mut swarm_exec_proto::session::Sealer, msg: &Msg| {
        let mut b = Vec::new();
        seal.seal(msg, &mut b);
        b
    };

    let Some(container) = envelope
        .exec
        .containers
        .first()
        .filter(|c| is_container_id(c))
    else {
        let why = TargetError::BadContainer(envelope.exec.containers.join(",")).to_string();
        let _ = tx.write_all(&send(&mut seal, &Msg::Failed(why))).await;
        return NodeEnd::Done(vec![None]);
    };
    let mut env = envelope.exec.env.clone();
    env.push(format!("{RUN_ENV}={tag}"));
    let config = ExecConfig {
        attach_stdin: Some(spec.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(spec.tty),
        cmd: Some(envelope.exec.command.clone()),
        env: Some(env),
        working_dir: envelope.exec.workdir.clone(),
        user: envelope.exec.user.clone(),
        privileged: Some(envelope.exec.privileged),
        ..Default::default()
    };
    let started = async {
        let id = docker
            .create_exec(container, config)
            .await
            .map_err(|source| TargetError::Create {
                container: swarm_exec_proto::short_id(container).to_owned(),
                source,
            })?
            .id;
        let opts = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: None,
        };
        match docker
            .start_exec(&id, Some(opts))
            .await
            .map_err(TargetError::Start)?
        {
            StartExecResults::Attached { output, input } => Ok((id, output, input)),
            StartExecResults::Detached => Err(TargetError::NotAttached),
        }
    };
    let (exec_id, mut output, mut input) = match started.await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .write_all(&send(&mut seal, &Msg::Failed(e.to_string())))
                .await;
            return NodeEnd::Done(vec![None]);
        }
    };

    tokio::pin!(stop);
    let mut counts = [0u64; 2];
    let ended: Result<(), Ending> = {
        // Three at once, so that none holds up another: stdin the command does not read
        // yet must not stop its output from being sent, nor the client's resizes.
        let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Msg>(16);
        let reader = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match rx.read(&mut buf).await {
                    Ok(0) => return Ending::Failure(SessionFailure::ClientGone),
                    Err(e) => return Ending::Failure(SessionFailure::Conn(e)),
                    Ok(n) => n,
                };
                open.feed(&buf[..n]);
                while let Some(msg) = open.next_msg() {
                    match msg {
                        Err(e) => return Ending::Failure(SessionFailure::Refused(e)),
                        Ok(m) => {
                            if ctl_tx.send(m).await.is_err() {
                                return Ending::Failure(SessionFailure::ClientGone);
                            }
                        }
                    }
                }
            }
        };
        let writer = async {
            let mut stdin_open = spec.stdin;
            while let Some(m) = ctl_rx.recv().await {
                match m {
                    // A command that stopped reading is no error of ours.
                    Msg::Stdin(bytes) if stdin_open && input.write_all(&bytes).await.is_err() => {
                        stdin_open = false;
                    }
                    Msg::StdinEof if stdin_open => {
                        let _ = input.shutdown().await;
                        stdin_open = false;
                    }
                    Msg::Resize { rows, cols } if spec.tty => {
                        let size = ResizeExecOptions {
                            height: rows,
                            width: cols,
                        };
                        // A resize as the exec ends changes nothing.
                        let _ = docker.resize_exec(&exec_id, size).await;
                    }
                    _ => {}
                }
            }
            std::future::pending::<()>().await
        };
        let pump = async {
            while let Some(item) = output.next().await {
                let msg = match item {
                    Ok(LogOutput::StdErr { message }) => {
                        counts[1] += message.len() as u64;
                        Msg::Stderr(message.to_vec())
                    }
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        counts[0] += message.len() as u64;
                        Msg::Stdout(message.to_vec())
                    }
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => return Err(Ending::Target(TargetError::Read(e))),
                };
                if let Err(e) = tx.write_all(&send(&mut seal, &msg)).await {
                    return Err(Ending::Failure(SessionFailure::Conn(e)));
                }
            }
            Ok(())
        };
        tokio::select! {
            r = pump => r,
            e = reader => Err(e),
            () = writer => Ok(()),
            _ = tokio::time::sleep_until(deadline) => Err(Ending::Deadline),
            () = &mut stop => Err(Ending::Deadline),
        }
    };
    match ended {
        Ok(()) => {
            let msg = match exit_code(docker, &exec_id).await {
                Ok(code) => Msg::Exit {
                    code,
                    stdout: counts[0],
                    stderr: counts[1],
                },
                Err(e) => Msg::Failed(e.to_string()),
            };
            let code = match &msg {
                Msg::Exit { code, .. } => Some(*code),
                _ => None,
            };
            let _ = tx.write_all(&send(&mut seal, &msg)).await;
            let _ = tx.shutdown().await;
            NodeEnd::Done(vec![code])
        }
        Err(ending) => {
            // The command is not left running, whoever went away.
            let stopped = stopper
                .terminate(docker, &exec_id, container, tag)
                .await
                .is_ok();
            match ending {
                Ending::Deadline => {
                    let _ = tx
                        .write_all(&send(&mut seal, &Msg::TimedOut { stopped }))
                        .await;
                    NodeEnd::TimedOut
                }
                Ending::Target(e) => {
                    let _ = tx
                        .write_all(&send(&mut seal, &Msg::Failed(e.to_string())))
                        .await;
                    NodeEnd::Done(vec![None])
                }
                Ending::Failure(f) => NodeEnd::Failed(NodeError::Session(f)),
            }
        }
    }
}

enum Ending {
    Deadline,
    Target(TargetError),
    Failure(SessionFailure),
}

/// The relay's address, dialled until it answers (its network may still be coming up on
/// this node).
async fn dial(relay: &str) -> Result<TcpStream, SessionFailure> {
    let until = tokio::time::Instant::now() + DIAL_FOR;
    loop {
        match TcpStream::connect(relay).await {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                return Ok(c);
            }
            Err(source) if tokio::time::Instant::now() >= until => {
                return Err(SessionFailure::Dial {
                    relay: relay.to_owned(),
                    source,
                })
            }
            Err(_) => tokio::time::sleep(DIAL_EVERY).await,
        }
    }
}

/// The exec's exit code (the output can end a moment before the engine records it).
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, TargetError> {
    for _ in 0..200 {
        let inspected = docker
            .inspect_exec(exec_id)
            .await
            .map_err(TargetError::Inspect)?;
        match (inspected.running, inspected.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err(TargetError::NoExitCode)
}
