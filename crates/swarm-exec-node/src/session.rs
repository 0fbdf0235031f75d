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
use swarm_exec_proto::session::{halves, relay_token, Msg, Opener, Sealer, Side, HEARTBEAT_EVERY};
use swarm_exec_proto::{is_container_id, Envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::docker_exec::exit_code;
use crate::end::{NodeEnd, NodeError, SessionFailure, TargetError};
use crate::link::Link;
use crate::stop::Stopper;

/// How long the relay is dialled for before the helper gives up (the client, which gives
/// up on an overlay that does not carry the connection after 75 s, removes it before).
const DIAL_FOR: Duration = Duration::from_secs(120);
const DIAL_EVERY: Duration = Duration::from_millis(50);
const DIAL_TRY: Duration = Duration::from_millis(500);

/// The session run: one target container.
#[allow(clippy::too_many_arguments)]
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
    tokio::pin!(stop);
    let mut link = match open(envelope, spec, deadline, &mut stop).await {
        Ok(link) => link,
        Err(e) => return NodeEnd::Failed(NodeError::Session(e)),
    };
    let Some(container) = envelope
        .exec
        .containers
        .first()
        .filter(|c| is_container_id(c))
    else {
        let why = TargetError::BadContainer(envelope.exec.containers.join(",")).to_string();
        link.last(&Msg::Failed(why)).await;
        return NodeEnd::Done(vec![None]);
    };
    if spec.serve {
        return crate::serve::serve(docker, stopper, link, deadline, &mut stop).await;
    }
    if let Some(copy) = &spec.copy {
        return serve_copy(docker, container, copy, link, deadline, &mut stop).await;
    }
    let at = Where {
        docker,
        envelope,
        spec,
        tag,
        container,
    };
    let exec = match start(&at, stopper, deadline, &mut stop).await {
        Started::Running(exec) => exec,
        Started::Failed(e) => {
            link.last(&Msg::Failed(e.to_string())).await;
            return NodeEnd::Done(vec![None]);
        }
        Started::Stopped { gone } => {
            link.last(&Msg::TimedOut { stopped: gone }).await;
            return NodeEnd::TimedOut;
        }
    };
    let (exec_id, own) = (exec.id.clone(), exec.own);
    let mut counts = [0u64; 2];
    let bridged = bridge(
        docker,
        spec,
        exec,
        &mut link,
        &mut counts,
        deadline,
        &mut stop,
    );
    // A forward is over when its target is: the forwarder would hold a dead namespace.
    let ended = match spec.forward {
        Some(_) => tokio::select! {
            r = bridged => r,
            () = crate::forward::target_gone(docker, container) => {
                Err(Ending::Target(TargetError::TargetEnded))
            }
        },
        None => bridged.await,
    };
    match ended {
        Ok(()) => exited(docker, &exec_id, own, counts, link).await,
        Err(ending) => {
            // The command is not left running, whoever went away.
            let stopped = if own {
                crate::debug::remove(docker, &exec_id).await
            } else {
                stopper
                    .terminate(docker, &exec_id, container, tag)
                    .await
                    .is_ok()
            };
            match ending {
                Ending::Deadline => {
                    link.last(&Msg::TimedOut { stopped }).await;
                    NodeEnd::TimedOut
                }
                Ending::Target(e) => {
                    link.last(&Msg::Failed(e.to_string())).await;
                    NodeEnd::Done(vec![None])
                }
                Ending::Failure(f) => NodeEnd::Failed(NodeError::Session(f)),
            }
        }
    }
}

/// The command ended by itself: its exit code and how many bytes of each stream went out,
/// as the session's last message (a container of the helper's own is removed first).
async fn exited(
    docker: &Docker,
    exec_id: &str,
    own: bool,
    counts: [u64; 2],
    link: Link,
) -> NodeEnd {
    let code = match own {
        true => crate::debug::exit_code(docker, exec_id).await,
        false => exit_code(docker, exec_id).await,
    };
    if own {
        let _ = crate::debug::remove(docker, exec_id).await;
    }
    let msg = match code {
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
    link.last(&msg).await;
    NodeEnd::Done(vec![code])
}

/// What a session's command runs in, and as what.
struct Where<'a> {
    docker: &'a Docker,
    envelope: &'a Envelope,
    spec: &'a SessionSpec,
    tag: &'a str,
    container: &'a str,
}

/// How starting the command went.
enum Started {
    Running(Exec),
    Failed(TargetError),
    /// The helper was told to stop, or its deadline passed, while it made a container of
    /// its own; `gone`: that container is removed.
    Stopped {
        gone: bool,
    },
}

/// Starts the command: an exec in the target, or a container of the helper's own
/// (debug's, the forwarder). Making one of those may take long (a pull), so the helper's
/// stop and the deadline end it, and what was made is removed; a plain exec is started as
/// it is (the bridge then stops it).
async fn start<S: std::future::Future<Output = ()> + Unpin>(
    at: &Where<'_>,
    stopper: &Stopper,
    deadline: tokio::time::Instant,
    stop: &mut S,
) -> Started {
    let Where {
        docker,
        envelope,
        spec,
        tag,
        container,
    } = *at;
    // Noted as soon as it exists, so that one made as the helper is stopped is not left.
    let made = std::sync::Mutex::new(None::<String>);
    let note = |id: &str| *made.lock().expect("not poisoned") = Some(id.to_owned());
    let starting = async {
        match &spec.forward {
            Some(ports) => crate::forward::start(docker, stopper, container, tag, ports, note)
                .await
                .map(|a| Exec {
                    id: a.id,
                    own: true,
                    output: a.output,
                    input: a.input,
                }),
            None => start_exec(docker, envelope, spec, tag, container, note).await,
        }
    };
    let own = spec.forward.is_some() || envelope.exec.debug.is_some();
    let started = match own {
        true => tokio::select! {
            r = starting => Some(r),
            _ = tokio::time::sleep_until(deadline) => None,
            () = &mut *stop => None,
        },
        false => Some(starting.await),
    };
    match started {
        Some(Ok(exec)) => Started::Running(exec),
        Some(Err(e)) => Started::Failed(e),
        None => {
            let made = made.lock().expect("not poisoned").take();
            let gone = match made {
                Some(id) => crate::debug::remove(docker, &id).await,
                None => true,
            };
            Started::Stopped { gone }
        }
    }
}

/// Dials the relay, presents the relay token and the hello, and waits for the client's
/// start: nothing runs until the client says so (a helper the relay did not pair never
/// hears it). A connection the relay closes before the start (it was pushed out by a flood
/// of others on the overlay) is dialled again, for as long as dialling may take.
async fn open<S: std::future::Future<Output = ()> + Unpin>(
    envelope: &Envelope,
    spec: &SessionSpec,
    deadline: tokio::time::Instant,
    stop: &mut S,
) -> Result<Link, SessionFailure> {
    let until = tokio::time::Instant::now() + DIAL_FOR;
    loop {
        let tried = tokio::select! {
            r = offer(envelope, &spec.relay) => r,
            () = &mut *stop => return Err(SessionFailure::ClientGone),
            _ = tokio::time::sleep_until(deadline) => return Err(SessionFailure::ClientGone),
        };
        match tried {
            Err(SessionFailure::ClientGone | SessionFailure::Conn(_))
                if tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(DIAL_EVERY).await;
            }
            r => return r,
        }
    }
}

/// One connection to the relay, offered: the token and the hello, then the client's
/// start. [`SessionFailure::ClientGone`] or [`SessionFailure::Conn`] when it closed or
/// broke first.
async fn offer(envelope: &Envelope, relay: &str) -> Result<Link, SessionFailure> {
    let mut conn = dial(relay).await?;
    let (mut seal, mut open) = halves(&envelope.key, Side::Helper);
    let mut out = relay_token(&envelope.key).to_vec();
    seal.seal(&Msg::Hello, &mut out);
    conn.write_all(&out).await.map_err(SessionFailure::Conn)?;
    let (mut rx, tx) = conn.into_split();
    match first_frame(&mut rx, &mut open).await? {
        Msg::Start => Ok(Link { rx, tx, seal, open }),
        _ => Err(SessionFailure::Refused(
            swarm_exec_proto::session::SessionError::Malformed {
                seq: 0,
                what: "not a start",
            },
        )),
    }
}

/// `cp` through the session (see [`copy_archive`]), to its last frame.
async fn serve_copy<S: std::future::Future<Output = ()> + Unpin>(
    docker: &Docker,
    container: &str,
    copy: &swarm_exec_proto::envelope::CopySpec,
    mut link: Link,
    deadline: tokio::time::Instant,
    stop: &mut S,
) -> NodeEnd {
    let ends = Ends {
        rx: &mut link.rx,
        tx: &mut link.tx,
        seal: &mut link.seal,
        open: &mut link.open,
    };
    let copied = tokio::select! {
        r = copy_archive(docker, container, copy, ends) => r,
        _ = tokio::time::sleep_until(deadline) => Err(Ending::Deadline),
        () = &mut *stop => Err(Ending::Deadline),
    };
    let (msg, end) = match copied {
        Ok(counts) => (
            Msg::Exit {
                code: 0,
                stdout: counts,
                stderr: 0,
            },
            NodeEnd::Done(vec![Some(0)]),
        ),
        Err(Ending::Target(e)) => (Msg::Failed(e.to_string()), NodeEnd::Done(vec![None])),
        Err(Ending::Deadline) => (Msg::TimedOut { stopped: true }, NodeEnd::TimedOut),
        Err(Ending::Failure(f)) => return NodeEnd::Failed(NodeError::Session(f)),
    };
    link.last(&msg).await;
    end
}

/// The command's exec, started attached — or a container of the helper's own: `debug`'s,
/// or `port-forward`'s forwarder.
struct Exec {
    /// The exec's ID, or the container's.
    id: String,
    own: bool,
    output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// Creates and starts the envelope's command in `container`, attached (with a TTY when
/// asked), with the run's mark in its environment.
async fn start_exec(
    docker: &Docker,
    envelope: &Envelope,
    spec: &SessionSpec,
    tag: &str,
    container: &str,
    on_created: impl FnOnce(&str),
) -> Result<Exec, TargetError> {
    let mut env = envelope.exec.env.clone();
    env.push(format!("{RUN_ENV}={tag}"));
    if let Some(image) = &envelope.exec.debug {
        let exec = swarm_exec_proto::ExecSpec {
            env,
            ..envelope.exec.clone()
        };
        let debug = crate::debug::Debug {
            image,
            exec: &exec,
            target: container,
            tag,
            tty: spec.tty,
            stdin: spec.stdin,
        };
        let a = debug.start(docker, on_created).await?;
        return Ok(Exec {
            id: a.id,
            own: true,
            output: a.output,
            input: a.input,
        });
    }
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
        StartExecResults::Attached { output, input } => Ok(Exec {
            id,
            own: false,
            output,
            input,
        }),
        StartExecResults::Detached => Err(TargetError::NotAttached),
    }
}

/// The command's output to the client as sealed frames (counted in `counts`), the
/// client's stdin and resizes to the command, until its output ends (`Ok`) or the session
/// does. Three at once, so that none holds up another: stdin the command does not read yet
/// must not stop its output from being sent, nor the client's resizes.
async fn bridge<S: std::future::Future<Output = ()> + Unpin>(
    docker: &Docker,
    spec: &SessionSpec,
    exec: Exec,
    link: &mut Link,
    counts: &mut [u64; 2],
    deadline: tokio::time::Instant,
    stop: &mut S,
) -> Result<(), Ending> {
    let Exec {
        id: exec_id,
        own,
        mut output,
        mut input,
    } = exec;
    let Link { rx, tx, seal, open } = link;
    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<Msg>(16);
    let reader = async {
        let mut buf = vec![0u8; 64 * 1024];
        // Frames that came with the client's start (a streamed -i's first input) are in
        // the opener already: taken before anything is read, not when the next bytes come.
        loop {
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
            match rx.read(&mut buf).await {
                Ok(0) => return Ending::Failure(SessionFailure::ClientGone),
                Err(e) => return Ending::Failure(SessionFailure::Conn(e)),
                Ok(n) => open.feed(&buf[..n]),
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
                // A resize as the command ends changes nothing.
                Msg::Resize { rows, cols } if spec.tty && own => {
                    let size = bollard::query_parameters::ResizeContainerTTYOptions {
                        h: i32::from(rows),
                        w: i32::from(cols),
                    };
                    let _ = docker.resize_container_tty(&exec_id, size).await;
                }
                Msg::Resize { rows, cols } if spec.tty => {
                    let size = ResizeExecOptions {
                        height: rows,
                        width: cols,
                    };
                    let _ = docker.resize_exec(&exec_id, size).await;
                }
                _ => {}
            }
        }
        std::future::pending::<()>().await
    };
    let pump = async {
        // The first at once: the client then knows this helper beats, and may count on it.
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            let item = tokio::select! {
                item = output.next() => match item {
                    Some(item) => item,
                    None => break,
                },
                _ = beat.tick() => {
                    send(tx, seal, &Msg::Heartbeat).await?;
                    continue;
                }
            };
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
            send(tx, seal, &msg).await?;
        }
        Ok(())
    };
    tokio::select! {
        r = pump => r,
        e = reader => Err(e),
        () = writer => Ok(()),
        _ = tokio::time::sleep_until(deadline) => Err(Ending::Deadline),
        () = &mut *stop => Err(Ending::Deadline),
    }
}

/// Seals `msg` and writes it to the relay.
async fn send(
    tx: &mut tokio::net::tcp::OwnedWriteHalf,
    seal: &mut Sealer,
    msg: &Msg,
) -> Result<(), Ending> {
    let mut b = Vec::new();
    seal.seal(msg, &mut b);
    tx.write_all(&b)
        .await
        .map_err(|e| Ending::Failure(SessionFailure::Conn(e)))
}

enum Ending {
    Deadline,
    Target(TargetError),
    Failure(SessionFailure),
}

/// Both directions of a session's connection, with their sealing halves.
struct Ends<'a> {
    rx: &'a mut tokio::net::tcp::OwnedReadHalf,
    tx: &'a mut tokio::net::tcp::OwnedWriteHalf,
    seal: &'a mut Sealer,
    open: &'a mut Opener,
}

impl Ends<'_> {
    async fn send(&mut self, msg: &Msg) -> Result<(), Ending> {
        send(self.tx, self.seal, msg).await
    }

    /// The client's next frame.
    async fn next(&mut self) -> Result<Msg, Ending> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.open.next_msg() {
                return m.map_err(|e| Ending::Failure(SessionFailure::Refused(e)));
            }
            match self.rx.read(&mut buf).await {
                Ok(0) => return Err(Ending::Failure(SessionFailure::ClientGone)),
                Ok(n) => self.open.feed(&buf[..n]),
                Err(e) => return Err(Ending::Failure(SessionFailure::Conn(e))),
            }
        }
    }
}

/// `cp` through the session, with the node engine's archive API (nothing of the target
/// image is used): out of the container, its archive of the path goes to the client as
/// stdout; into it, the path's stat goes first, then the client names the directory to
/// unpack in and sends the archive as stdin. Returns the bytes of archive sent.
async fn copy_archive(
    docker: &Docker,
    container: &str,
    copy: &swarm_exec_proto::envelope::CopySpec,
    mut ends: Ends<'_>,
) -> Result<u64, Ending> {
    use bollard::query_parameters::{
        ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
    };
    if copy.out {
        let opts = DownloadFromContainerOptions {
            path: copy.path.clone(),
        };
        let mut archive = docker.download_from_container(container, Some(opts));
        let mut sent = 0u64;
        while let Some(chunk) = archive.next().await {
            let chunk = chunk.map_err(|e| Ending::Target(TargetError::Archive(e)))?;
            sent += chunk.len() as u64;
            ends.send(&Msg::Stdout(chunk.to_vec())).await?;
        }
        return Ok(sent);
    }
    let opts = ContainerArchiveInfoOptions {
        path: copy.path.clone(),
    };
    let mode = match docker
        .get_container_archive_info(container, Some(opts))
        .await
    {
        Ok(stat) => Some(stat.file_mode),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => return Err(Ending::Target(TargetError::Archive(e))),
    };
    ends.send(&Msg::Stat(mode)).await?;
    let dir = loop {
        match ends.next().await? {
            Msg::PutInto(dir) => break dir,
            Msg::Failed(_) | Msg::StdinEof => return Ok(0),
            _ => {}
        }
    };
    // The archive streams from the client into the engine as it comes; a frame is taken
    // from the client only when there is room for it (the engine sets the pace).
    let (chunks, mut body) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let body = futures_util::stream::poll_fn(move |cx| body.poll_recv(cx));
    let opts = UploadToContainerOptions {
        path: dir,
        ..Default::default()
    };
    let upload = docker.upload_to_container(container, Some(opts), bollard::body_stream(body));
    tokio::pin!(upload);
    let mut chunks = Some(chunks);
    loop {
        let eof = tokio::select! {
            r = &mut upload => {
                r.map_err(|e| Ending::Target(TargetError::Archive(e)))?;
                return Ok(0);
            }
            (permit, m) = async {
                (chunks.as_ref().expect("guarded").reserve().await, ends.next().await)
            }, if chunks.is_some() => match (permit, m?) {
                (Ok(p), Msg::Stdin(b)) => {
                    p.send(b.into());
                    false
                }
                (_, Msg::StdinEof) => true,
                _ => false,
            },
        };
        if eof {
            // The end of the archive: the upload finishes once the body ends.
            chunks = None;
        }
    }
}

/// The client's first frame.
async fn first_frame(
    rx: &mut tokio::net::tcp::OwnedReadHalf,
    open: &mut Opener,
) -> Result<Msg, SessionFailure> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = open.next_msg() {
            return m.map_err(SessionFailure::Refused);
        }
        match rx.read(&mut buf).await {
            Ok(0) => return Err(SessionFailure::ClientGone),
            Ok(n) => open.feed(&buf[..n]),
            Err(e) => return Err(SessionFailure::Conn(e)),
        }
    }
}

/// The relay's address, dialled until it answers (its network may still be coming up on
/// this node). Each try is cut short: a SYN sent before the overlay knows the relay is
/// lost, and the kernel's own retries back off (1, 3, 7, 15, 31 s), which made sessions
/// take up to 45 s to open; a fresh try every half second does not wait for them.
async fn dial(relay: &str) -> Result<TcpStream, SessionFailure> {
    let until = tokio::time::Instant::now() + DIAL_FOR;
    loop {
        let tried = tokio::time::timeout(DIAL_TRY, TcpStream::connect(relay))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        match tried {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                watch_link(&c);
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

/// After this long with what it sent unacknowledged, or with its probes unanswered, the
/// connection to the relay is taken for cut and the command stopped.
const LINK_LOST_AFTER: Duration = Duration::from_secs(10);

/// Has the kernel notice when the relay's node stops answering — a cut link, a node gone —
/// within [`LINK_LOST_AFTER`]: keepalive probes while the connection is idle, and a limit
/// on how long sent data may stay unacknowledged while it is not. Not a silence rule of
/// our own: a client whose output is paused (`| less`) sends no heartbeats, yet the relay
/// and its node answer for it, so the command is not stopped under a reader who is there.
fn watch_link(c: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = c.as_raw_fd();
    // An option the kernel refuses leaves its default: the session works, only slower to
    // notice a cut.
    let set = |level, name, value: libc::c_int| {
        // SAFETY: a valid socket, and an int option of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    };
    let secs = |d: Duration| d.as_secs() as libc::c_int;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(HEARTBEAT_EVERY));
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        secs(HEARTBEAT_EVERY),
    );
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4);
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        LINK_LOST_AFTER.as_millis() as libc::c_int,
    );
}
