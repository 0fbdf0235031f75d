//! `--persist`'s standing helper: one session, many runs. The session's input brings
//! [`swarm_exec_proto::serve`] frames from the client's keeper — a run to start in a
//! container on this node, its input, a stop, grants — and each run's output and end go
//! back as frames of its own on the session's stdout, sealed as any command's. Runs go on
//! side by side, each with its own timeout; the session ends when its input does (the
//! keeper is done), and what still runs then is stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::{FutureExt, StreamExt};
use swarm_exec_proto::args::RUN_ENV;
use swarm_exec_proto::serve::{Decoder, Frame, RunSpec, CHUNK, GRANT_EVERY, WINDOW};
use swarm_exec_proto::session::{Msg, HEARTBEAT_EVERY};
use swarm_exec_proto::{is_container_id, short_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use crate::docker_exec::exit_code;
use crate::end::{NodeEnd, NodeError, SessionFailure, TargetError};
use crate::link::Link;
use crate::stop::Stopper;

/// How long the runs still going when the session ends get to stop their commands.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// What the session's reader hands a run.
struct RunHandle {
    /// `Input` and `InputEof` frames.
    input: mpsc::UnboundedSender<Frame>,
    /// What the keeper has granted of its output and this side not yet sent.
    window: Arc<Semaphore>,
    stop: Arc<Notify>,
}

type Runs = Arc<Mutex<HashMap<u32, RunHandle>>>;

/// Serves runs on `link` until the keeper ends its input, the session breaks, or the
/// helper's deadline or stop comes; then stops what still runs.
pub(crate) async fn serve<S: std::future::Future<Output = ()> + Unpin>(
    docker: &Docker,
    stopper: &Stopper,
    link: Link,
    deadline: Instant,
    stop: &mut S,
) -> NodeEnd {
    let Link {
        mut rx,
        mut tx,
        mut seal,
        mut open,
    } = link;
    let (out, mut frames) = mpsc::channel::<Frame>(64);
    let runs: Runs = Arc::default();
    let tasks = Mutex::new(Vec::new());
    let mut sent = 0u64;
    let (ended, drained) = {
        // Every run's frames and the heartbeats, one writer; done once every run has ended
        // and its frames are out.
        let writer = async {
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                let msg = tokio::select! {
                    f = frames.recv() => match f {
                        Some(f) => {
                            let bytes = f.encode();
                            sent += bytes.len() as u64;
                            Msg::Stdout(bytes)
                        }
                        None => return Ok(()),
                    },
                    _ = beat.tick() => Msg::Heartbeat,
                };
                send_msg(&mut tx, &mut seal, &msg).await?;
            }
        };
        tokio::pin!(writer);
        let serving = Serving {
            docker,
            stopper,
            runs: &runs,
            out: &out,
            tasks: &tasks,
        };
        let reader = read_runs(&mut rx, &mut open, &serving);
        // `Some` once the writer is done: it is not to be polled again.
        let mut written = None;
        let ended = tokio::select! {
            r = reader => r,
            r = &mut writer => {
                written = Some(r);
                Err(SessionFailure::ClientGone)
            }
            _ = tokio::time::sleep_until(deadline) => Err(SessionFailure::ClientGone),
            () = &mut *stop => Err(SessionFailure::ClientGone),
        };
        // Nothing is left running: each run still going stops its command and says so.
        for run in runs.lock().expect("not poisoned").values() {
            run.stop.notify_one();
        }
        drop(out);
        let drained = match written {
            Some(r) => Ok(r),
            None => tokio::time::timeout(STOP_WAIT, &mut writer).await,
        };
        (ended, drained)
    };
    // The writer is gone, and with it the frames' receiver: a run that could not say how
    // it ended goes on stopping its command all the same, and is waited for.
    let tasks = std::mem::take(&mut *tasks.lock().expect("not poisoned"));
    let _ = tokio::time::timeout(STOP_WAIT, futures_util::future::join_all(tasks)).await;
    match (ended, drained) {
        (Ok(()), Ok(Ok(()))) => {
            let link = Link { rx, tx, seal, open };
            link.last(&Msg::Exit {
                code: 0,
                stdout: sent,
                stderr: 0,
            })
            .await;
            NodeEnd::Done(vec![Some(0)])
        }
        (Err(e), _) | (Ok(()), Ok(Err(e))) => NodeEnd::Failed(NodeError::Session(e)),
        (Ok(()), Err(_)) => NodeEnd::TimedOut,
    }
}

/// The keeper's frames, each acted on, until its input ends (`Ok`) or the session breaks.
async fn read_runs(
    rx: &mut tokio::net::tcp::OwnedReadHalf,
    open: &mut swarm_exec_proto::session::Opener,
    serving: &Serving<'_>,
) -> Result<(), SessionFailure> {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    // Frames that came with the keeper's start are in the opener already.
    loop {
        while let Some(msg) = open.next_msg() {
            match msg.map_err(SessionFailure::Refused)? {
                Msg::Stdin(bytes) => {
                    decoder.feed(&bytes);
                    while let Some(f) = decoder.next_frame() {
                        let f = f.map_err(|e| SessionFailure::Frames(e.to_string()))?;
                        serving.take(f).await;
                    }
                }
                // The keeper is done.
                Msg::StdinEof => return Ok(()),
                _ => {}
            }
        }
        match rx.read(&mut buf).await {
            Ok(0) => return Err(SessionFailure::ClientGone),
            Err(e) => return Err(SessionFailure::Conn(e)),
            Ok(n) => open.feed(&buf[..n]),
        }
    }
}

async fn send_msg(
    tx: &mut tokio::net::tcp::OwnedWriteHalf,
    seal: &mut swarm_exec_proto::session::Sealer,
    msg: &Msg,
) -> Result<(), SessionFailure> {
    let mut b = Vec::new();
    seal.seal(msg, &mut b);
    tx.write_all(&b).await.map_err(SessionFailure::Conn)
}

/// What the session's reader starts runs with.
struct Serving<'a> {
    docker: &'a Docker,
    stopper: &'a Stopper,
    runs: &'a Runs,
    out: &'a mpsc::Sender<Frame>,
    /// Every run's task, to wait for at the end.
    tasks: &'a Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Serving<'_> {
    /// Acts on one frame from the keeper.
    async fn take(&self, f: Frame) {
        let id = f.id();
        let handle = |f: &dyn Fn(&RunHandle)| {
            if let Some(run) = self.runs.lock().expect("not poisoned").get(&id) {
                f(run);
            }
        };
        match f {
            Frame::Run { request, .. } => self.start(id, &request).await,
            Frame::Input { .. } | Frame::InputEof { .. } => handle(&|run| {
                let _ = run.input.send(f.clone());
            }),
            Frame::Stop { .. } => handle(&|run| run.stop.notify_one()),
            Frame::Grant { bytes, .. } => handle(&|run| run.window.add_permits(bytes as usize)),
            _ => {}
        }
    }

    /// Starts run `id` on a task of its own.
    async fn start(&self, id: u32, request: &[u8]) {
        let spec = match RunSpec::from_json(request) {
            Ok(spec) => spec,
            Err(e) => {
                let reason = format!("not a run request: {e}");
                let _ = self.out.send(Frame::Failed { id, reason }).await;
                return;
            }
        };
        let (input, inbox) = mpsc::unbounded_channel();
        let run = RunHandle {
            input,
            window: Arc::new(Semaphore::new(WINDOW as usize)),
            stop: Arc::default(),
        };
        let ends = Ends {
            id,
            out: self.out.clone(),
            inbox,
            window: run.window.clone(),
            stop: run.stop.clone(),
        };
        self.runs.lock().expect("not poisoned").insert(id, run);
        let (docker, stopper) = (self.docker.clone(), self.stopper.clone());
        let runs = self.runs.clone();
        let task = tokio::spawn(async move {
            let out = ends.out.clone();
            let last = run_one(&docker, &stopper, &spec, ends).await;
            runs.lock().expect("not poisoned").remove(&id);
            let _ = out.send(last).await;
        });
        let mut tasks = self.tasks.lock().expect("not poisoned");
        // A helper that stands for long serves many runs: only those going are kept.
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

/// A run's side of its [`RunHandle`], and where its frames go.
struct Ends {
    id: u32,
    out: mpsc::Sender<Frame>,
    inbox: mpsc::UnboundedReceiver<Frame>,
    window: Arc<Semaphore>,
    stop: Arc<Notify>,
}

/// One run, to its last frame: its output sent as it comes (within the keeper's grant),
/// its input written, and its end — its exit, its timeout or its stop, the command and
/// what it started then stopped.
async fn run_one(docker: &Docker, stopper: &Stopper, spec: &RunSpec, ends: Ends) -> Frame {
    let Ends {
        id,
        out,
        mut inbox,
        window,
        stop,
    } = ends;
    let failed = |reason: String| Frame::Failed { id, reason };
    if !is_container_id(&spec.container) {
        return failed(TargetError::BadContainer(spec.container.clone()).to_string());
    }
    if spec.command.is_empty() || !valid_tag(&spec.tag) {
        return failed("not a run request: no command, or a bad tag".to_owned());
    }
    let deadline = Instant::now() + Duration::from_millis(spec.timeout_ms);
    // A stop (or a deadline of nothing) that came with the run: nothing is started.
    if stop.notified().now_or_never().is_some() {
        return Frame::Stopped { id, gone: true };
    }
    if spec.timeout_ms == 0 {
        return Frame::TimedOut { id, stopped: true };
    }
    let (exec_id, mut output, mut input) = match start(docker, spec).await {
        Ok(started) => started,
        Err(e) => return failed(e.to_string()),
    };
    let mut counts = [0u64; 2];
    let pump = send_output(&mut output, &window, &out, id, &mut counts);
    let feed = feed_input(&mut inbox, &mut input, spec.stdin, &out, id);
    let stopped = |gone: bool, timed_out: bool| match timed_out {
        true => Frame::TimedOut { id, stopped: gone },
        false => Frame::Stopped { id, gone },
    };
    let ended = tokio::select! {
        r = pump => r.map(|()| None),
        () = feed => unreachable!("pending"),
        _ = tokio::time::sleep_until(deadline) => Ok(Some(true)),
        () = stop.notified() => Ok(Some(false)),
    };
    let terminate = || stopper.terminate(docker, &exec_id, &spec.container, &spec.tag);
    match ended {
        Ok(None) => match exit_code(docker, &exec_id).await {
            Ok(code) => Frame::Exit {
                id,
                code,
                stdout: counts[0],
                stderr: counts[1],
            },
            Err(e) => failed(e.to_string()),
        },
        Ok(Some(timed_out)) => stopped(terminate().await.is_ok(), timed_out),
        Err(e) => {
            let _ = terminate().await;
            failed(e.to_string())
        }
    }
}

/// The run's output to the keeper as it comes, within its grant, counted.
async fn send_output(
    output: &mut Output,
    window: &Semaphore,
    out: &mpsc::Sender<Frame>,
    id: u32,
    counts: &mut [u64; 2],
) -> Result<(), TargetError> {
    while let Some(item) = output.next().await {
        let (which, message) = match item {
            Ok(LogOutput::StdErr { message }) => (1, message),
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => (0, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => return Err(TargetError::Read(e)),
        };
        for piece in message.chunks(CHUNK) {
            // Closed only with the session, whose end stops this run.
            if let Ok(p) = window.acquire_many(piece.len() as u32).await {
                p.forget();
            }
            counts[which] += piece.len() as u64;
            let bytes = piece.to_vec();
            let f = match which {
                0 => Frame::Stdout { id, bytes },
                _ => Frame::Stderr { id, bytes },
            };
            if out.send(f).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The keeper's input for the run, written to its exec (when it has stdin) and granted
/// again; never resolves.
async fn feed_input(
    inbox: &mut mpsc::UnboundedReceiver<Frame>,
    input: &mut Input,
    stdin: bool,
    out: &mpsc::Sender<Frame>,
    id: u32,
) {
    let (mut open, mut owed) = (stdin, 0u32);
    while let Some(f) = inbox.recv().await {
        match f {
            // A command that stopped reading is no error of ours; the bytes are granted
            // again all the same, or the keeper would wait for ever.
            Frame::Input { bytes, .. } => {
                if open && input.write_all(&bytes).await.is_err() {
                    open = false;
                }
                owed += bytes.len() as u32;
                if owed >= GRANT_EVERY {
                    let _ = out.send(Frame::Grant { id, bytes: owed }).await;
                    owed = 0;
                }
            }
            Frame::InputEof { .. } if open => {
                let _ = input.shutdown().await;
                open = false;
            }
            _ => {}
        }
    }
    std::future::pending::<()>().await
}

/// A run's tag goes into the command's environment and the stopper's arguments.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= 32 && tag.bytes().all(|b| b.is_ascii_alphanumeric())
}

type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;
type Input = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// The run's exec, created and started attached, with its mark in its environment.
async fn start(docker: &Docker, spec: &RunSpec) -> Result<(String, Output, Input), TargetError> {
    let mut env = spec.env.clone();
    env.push(format!("{RUN_ENV}={}", spec.tag));
    let config = ExecConfig {
        attach_stdin: Some(spec.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(spec.command.clone()),
        env: Some(env),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        privileged: Some(spec.privileged),
        ..Default::default()
    };
    let id = docker
        .create_exec(&spec.container, config)
        .await
        .map_err(|source| TargetError::Create {
            container: short_id(&spec.container).to_owned(),
            source,
        })?
        .id;
    let opts = StartExecOptions {
        detach: false,
        tty: false,
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
}
