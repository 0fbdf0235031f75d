//! The helper: runs the envelope's command in every target container at once, over the
//! node's own socket, and reports everything as sealed frames on its stdout.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use swarm_exec_proto::args::{HelperArgs, RUN_ENV};
use swarm_exec_proto::envelope::EnvelopeError;
use swarm_exec_proto::{is_container_id, short_id as short, Envelope, ExecSpec, Stream, Writer};

use crate::stop::{Program, Stopper, STOP_GRACE};
use crate::{HELPER_FAILED, HELPER_TIMED_OUT};

/// Where the engine's socket is mounted in the helper.
pub const NODE_SOCKET: &str = "unix:///var/run/docker.sock";

/// Output is flushed to the log when the command has written nothing for this long...
const FLUSH_IDLE: Duration = Duration::from_millis(5);
/// ...and at least this often while it writes without a pause.
const FLUSH_MAX: Duration = Duration::from_millis(100);

/// How a helper run ended.
#[derive(Debug)]
pub enum NodeEnd {
    /// Every target has its exit or failure frame; the codes, in target order (`None`: it
    /// could not be run).
    Done(Vec<Option<i64>>),
    /// The deadline passed (or the helper was told to stop) first.
    TimedOut,
    /// The helper could not do its work (its frames say as much as they can).
    Failed(NodeError),
}

impl NodeEnd {
    /// With one target, the command's own code, so the helper task's state shows it too;
    /// with several, 0 when every command exited 0, else 1.
    pub fn code(&self) -> u8 {
        match self {
            NodeEnd::Done(codes) => match codes.as_slice() {
                [Some(code)] => u8::try_from(*code).unwrap_or(HELPER_FAILED),
                [None] => HELPER_FAILED,
                all if all.iter().all(|c| *c == Some(0)) => 0,
                _ => 1,
            },
            NodeEnd::TimedOut => HELPER_TIMED_OUT,
            NodeEnd::Failed(_) => HELPER_FAILED,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot read the envelope {path}: {source}")]
    ReadEnvelope {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the envelope {path} is not valid: {source}")]
    Envelope {
        path: String,
        #[source]
        source: EnvelopeError,
    },
    #[error("cannot connect to the node's engine: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error("writing frames: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot stop for the stop signal: {0}")]
    Signal(#[source] std::io::Error),
    #[error("the session ended early: {0}")]
    Session(#[source] crate::session::SessionFailure),
    #[error("the run's not-after time passed {late_ms} ms before the helper started: the command was not run")]
    TooLate { late_ms: u64 },
}

/// Why one target's command could not be run or its end learnt.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid container ID {0:?}")]
    BadContainer(String),
    #[error("the run's not-after time passed {late_ms} ms before the helper started: the command was not run")]
    TooLate { late_ms: u64 },
    #[error("cannot exec in container {container}: {source}")]
    Create {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot start the command: {0}")]
    Start(#[source] bollard::errors::Error),
    #[error("the engine did not attach to the command")]
    NotAttached,
    #[error("reading the command's output: {0}")]
    Read(#[source] bollard::errors::Error),
    #[error("cannot read the command's exit code: {0}")]
    Inspect(#[source] bollard::errors::Error),
    #[error("the engine reported no exit code for the command")]
    NoExitCode,
    #[error("{}", archive_message(.0))]
    Archive(#[source] bollard::errors::Error),
}

/// The engine's own words for a failed archive call ("Could not find the file …").
fn archive_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// `node-exec`: the whole helper run.
pub async fn run(args: &HelperArgs) -> NodeEnd {
    let bytes = match std::fs::read(&args.envelope) {
        Ok(b) => b,
        Err(source) => {
            return NodeEnd::Failed(NodeError::ReadEnvelope {
                path: args.envelope.clone(),
                source,
            })
        }
    };
    let envelope = match Envelope::decode(&bytes, args.containers.clone()) {
        Ok(e) => e,
        Err(source) => {
            return NodeEnd::Failed(NodeError::Envelope {
                path: args.envelope.clone(),
                source,
            })
        }
    };
    drop(bytes);
    // Always the node's own engine, whatever the environment says.
    let docker = match Docker::connect_with_unix(NODE_SOCKET, 120, bollard::API_DEFAULT_VERSION) {
        Ok(d) => d,
        Err(e) => return NodeEnd::Failed(NodeError::Connect(e)),
    };
    // Removing the helper service sends it SIGTERM: the commands are stopped, not left.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => return NodeEnd::Failed(NodeError::Signal(e)),
    };
    let stop = async move {
        term.recv().await;
    };
    let stopper = Stopper {
        image: args.image.clone(),
        program: Program::ThisOne,
        grace: STOP_GRACE,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    if let Some(spec) = &envelope.session {
        // Never late, as below; a session's client is told by the helper's task state.
        let Some(left) = envelope.not_after_ms.checked_sub(now_ms).filter(|&l| l > 0) else {
            let late_ms = now_ms - envelope.not_after_ms;
            return NodeEnd::Failed(NodeError::TooLate { late_ms });
        };
        let budget = args.budget.min(Duration::from_millis(left));
        return crate::session::run(&docker, &envelope, spec, &args.tag, budget, &stopper, stop)
            .await;
    }
    let run = NodeRun {
        envelope: &envelope,
        tag: &args.tag,
        now_ms,
        budget: args.budget,
        stopper: &stopper,
    };
    node_exec(&docker, run, stop, &mut std::io::stdout()).await
}

/// One helper's work.
pub struct NodeRun<'a> {
    pub envelope: &'a Envelope,
    pub tag: &'a str,
    /// The node's clock, in Unix milliseconds, when the helper started.
    pub now_ms: u64,
    /// The most the helper may take (it also ends at the envelope's not-after).
    pub budget: Duration,
    pub stopper: &'a Stopper,
}

/// Runs the command in every target at once and writes the frames to `out`; `stop`
/// resolves when the helper is told to stop (its service removed).
pub async fn node_exec<W: Write>(
    docker: &Docker,
    run: NodeRun<'_>,
    stop: impl std::future::Future<Output = ()>,
    out: &mut W,
) -> NodeEnd {
    let NodeRun {
        envelope,
        tag,
        now_ms,
        budget,
        stopper,
    } = run;
    // The marker lets the stopper find the processes that left the command's tree.
    let mut exec = envelope.exec.clone();
    exec.env.push(format!("{RUN_ENV}={tag}"));
    let exec = &exec;
    let targets = exec.containers.len();
    let out = RefCell::new(FrameOut {
        writer: Writer::new(&envelope.key, tag, targets),
        out,
        buf: Vec::with_capacity(64 * 1024),
        failed: None,
    });
    // Never late: a helper that starts after the run's deadline (its node was down, its
    // client long gone) runs nothing.
    if now_ms >= envelope.not_after_ms {
        let late_ms = now_ms - envelope.not_after_ms;
        let mut o = out.borrow_mut();
        for i in 0..targets {
            o.frame(|w, b| w.failed(i, &TargetError::TooLate { late_ms }.to_string(), b));
        }
        o.frame(|w, b| {
            w.done(b);
            Ok(())
        });
        return match o.failed.take() {
            Some(e) => NodeEnd::Failed(NodeError::Write(e)),
            None => NodeEnd::Done(vec![None; targets]),
        };
    }
    let budget = budget.min(Duration::from_millis(envelope.not_after_ms - now_ms));

    // Which exec runs in which container, for stopping them at the deadline.
    let started = RefCell::new(Vec::<(String, String)>::new());
    let runs = exec.containers.iter().enumerate().map(|(i, container)| {
        let (out, started) = (&out, &started);
        async move {
            // The helper only ever execs into the containers it was created for, named by
            // full ID; anything else is refused before the socket is touched.
            let result = if is_container_id(container) {
                let on_created = |id: &str| {
                    started
                        .borrow_mut()
                        .push((id.to_owned(), container.clone()))
                };
                let on_output = |stream: Stream, bytes: Option<&[u8]>| {
                    out.borrow_mut().frame(|w, b| match bytes {
                        Some(bytes) => w.output(i, stream, bytes, b),
                        None => w.flush(i, stream, b),
                    })
                };
                exec_in_container(
                    docker,
                    exec,
                    container,
                    envelope.stdin.as_deref(),
                    on_created,
                    on_output,
                )
                .await
            } else {
                Err(TargetError::BadContainer(container.clone()))
            };
            let mut o = out.borrow_mut();
            match &result {
                Ok(code) => o.frame(|w, b| w.exit(i, *code, b)),
                Err(e) => o.frame(|w, b| w.failed(i, &e.to_string(), b)),
            }
            result.ok()
        }
    });
    let all = join_all(runs);
    tokio::pin!(all);
    let finished = tokio::select! {
        r = &mut all => Some(r),
        _ = tokio::time::sleep(budget) => None,
        () = stop => None,
    };
    let mut o = match finished {
        Some(codes) => {
            let mut o = out.borrow_mut();
            o.frame(|w, b| {
                w.done(b);
                Ok(())
            });
            if o.failed.is_none() {
                return NodeEnd::Done(codes);
            }
            o
        }
        None => {
            // The commands are not left running: all at once (the helper has only its stop
            // grace period for this), and the client is told whether they are gone.
            let running = std::mem::take(&mut *started.borrow_mut());
            let stops = running
                .iter()
                .map(|(exec_id, container)| stopper.terminate(docker, exec_id, container, tag));
            let stopped = join_all(stops).await.iter().all(|r| r.is_ok());
            let mut o = out.borrow_mut();
            o.frame(|w, b| {
                w.timed_out(stopped, b);
                Ok(())
            });
            if o.failed.is_none() {
                return NodeEnd::TimedOut;
            }
            o
        }
    };
    NodeEnd::Failed(NodeError::Write(
        o.failed.take().expect("checked on both paths"),
    ))
}

/// Frames onto the helper's stdout, written as soon as they are made so output stays
/// live; the first error is kept and ends the run.
struct FrameOut<'a, W> {
    writer: Writer,
    out: &'a mut W,
    buf: Vec<u8>,
    failed: Option<std::io::Error>,
}

impl<W: Write> FrameOut<'_, W> {
    fn frame(&mut self, make: impl FnOnce(&mut Writer, &mut Vec<u8>) -> std::io::Result<()>) {
        if self.failed.is_some() {
            return;
        }
        self.buf.clear();
        let written = make(&mut self.writer, &mut self.buf).and_then(|()| {
            if self.buf.is_empty() {
                return Ok(());
            }
            self.out.write_all(&self.buf)?;
            self.out.flush()
        });
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }
}

/// Execs `exec`'s command in `container` on the engine `docker` talks to, handing each
/// chunk of output to `on_output` as it arrives — and `None` when the caller is to flush
/// (the command paused, or [`FLUSH_MAX`] passed) — and returns the command's exit code.
pub async fn exec_in_container(
    docker: &Docker,
    exec: &ExecSpec,
    container: &str,
    stdin: Option<&[u8]>,
    on_created: impl FnOnce(&str),
    mut on_output: impl FnMut(Stream, Option<&[u8]>),
) -> Result<i64, TargetError> {
    let config = ExecConfig {
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(exec.command.clone()),
        env: (!exec.env.is_empty()).then(|| exec.env.clone()),
        working_dir: exec.workdir.clone(),
        user: exec.user.clone(),
        privileged: Some(exec.privileged),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(|source| TargetError::Create {
            container: short(container).to_owned(),
            source,
        })?;
    on_created(&created.id);
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(TargetError::Start)?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(TargetError::NotAttached);
    };
    // The input is written while the output is read (a command may not read all of its
    // input before it writes), then closed, so the command sees end of file.
    let feed = async {
        if let Some(data) = stdin {
            use tokio::io::AsyncWriteExt;
            // A command that exits without reading its input is no error of ours.
            let _ = input.write_all(data).await;
            let _ = input.shutdown().await;
        }
    };
    let read = async {
        use bollard::container::LogOutput;
        let mut next = output.next().await;
        // Since when output has been held unflushed.
        let mut held: Option<tokio::time::Instant> = None;
        while let Some(item) = next {
            match item {
                Ok(LogOutput::StdOut { message }) => on_output(Stream::Stdout, Some(&message)),
                Ok(LogOutput::StdErr { message }) => on_output(Stream::Stderr, Some(&message)),
                Ok(_) => {}
                Err(e) => return Err(TargetError::Read(e)),
            }
            let since = *held.get_or_insert_with(tokio::time::Instant::now);
            // Flush when the command pauses (nothing more within FLUSH_IDLE), and at least
            // every FLUSH_MAX: a prompt or a progress line goes out at once, while bulk
            // output goes in few, full frames — a flush per chunk read costs a log line each.
            let wait = FLUSH_IDLE.min(FLUSH_MAX.saturating_sub(since.elapsed()));
            next = match tokio::time::timeout(wait, output.next()).await {
                Ok(n) if since.elapsed() < FLUSH_MAX => n,
                more => {
                    on_output(Stream::Stdout, None);
                    on_output(Stream::Stderr, None);
                    held = None;
                    match more {
                        Ok(n) => n,
                        Err(_) => output.next().await,
                    }
                }
            };
        }
        Ok(())
    };
    let ((), read) = tokio::join!(feed, read);
    read?;
    exit_code(docker, &created.id).await
}

/// The exec's exit code (its output can end a moment before the engine records it).
pub(crate) async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, TargetError> {
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
