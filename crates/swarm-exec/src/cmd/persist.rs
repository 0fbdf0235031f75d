//! `--persist` / `SWARM_EXEC_PERSIST` (ssh's ControlPersist, for swarm-exec) and `swarm-exec
//! persist`: the client's side of the keeper ([`swarm_exec_core::persist`]). A run to a task
//! on another node goes to the keeper of this user and endpoint through its unix socket,
//! starting it first if none answers; the keeper is this binary, in the background
//! (`persist keep`), until its idle time passes.
//!
//! The socket lives in a directory only the user can enter (`$XDG_RUNTIME_DIR/swarm-exec`, or
//! `/tmp/swarm-exec-UID`), is the user's alone (0600), and the keeper checks each peer's
//! uid; its name holds this build's ID and the endpoint's digest, so a client never talks to
//! a keeper of another build or engine.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_exec_core::lookup::resolve::Resolved;
use swarm_exec_core::persist::{Control, FrameReader, Keeper, KeeperRun, Standing, ENDING};
use swarm_exec_core::sink::OutputSink;
use swarm_exec_core::{Interrupt, Outcome, RunOptions};
use swarm_exec_proto::serve::{Frame, RunSpec, CHUNK};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::cli::{Global, PersistArgs, PersistCommand};
use crate::exit::{CliError, Status};

/// How long a client waits for a keeper it started to answer (one that finds another
/// ending waits for it to end: the removal of its sessions).
const START_WAIT: Duration = Duration::from_secs(60);
/// After a stop is asked for (interrupted, or the deadline passed), how long a client
/// waits for the run's end.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Where this user's keeper for the endpoint `global` names listens.
pub struct Place {
    socket: PathBuf,
    lock: PathBuf,
}

impl Place {
    pub fn of(global: &Global) -> Result<Place, CliError> {
        let endpoint = crate::cmd::setup::endpoint(global)?;
        let dir = own_dir()?;
        let build = crate::node_program::NODE_PROGRAM.build_id;
        // The endpoint and the credentials it is reached with: another set of them is
        // another keeper.
        let mut id = endpoint.host.clone();
        if let Some(tls) = &endpoint.tls {
            for p in [&tls.ca, &tls.cert, &tls.key] {
                id.push('\0');
                id.push_str(&p.to_string_lossy());
            }
        }
        let name = format!(
            "keeper-{}-{:016x}",
            &build[..build.len().min(12)],
            fnv1a(id.as_bytes())
        );
        Ok(Place {
            socket: dir.join(format!("{name}.sock")),
            lock: dir.join(format!("{name}.lock")),
        })
    }
}

/// FNV-1a: a name for the endpoint, stable across builds (not a secret: the directory is).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The user's directory for keepers, made if missing; refused unless it is a directory
/// of the user's that no one else may enter.
fn own_dir() -> Result<PathBuf, CliError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_dir()) {
        Some(d) => PathBuf::from(d).join("swarm-exec"),
        None => std::env::temp_dir().join(format!("swarm-exec-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(CliError::Failed(format!("{}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(CliError::Failed(format!(
            "refusing the keeper directory {}: it must be a directory of yours that only you \
             may enter (mode 0700)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// `swarm-exec persist status|stop|keep`.
pub fn run(global: &Global, args: PersistArgs) -> Result<Status, CliError> {
    let place = Place::of(global)?;
    match args.command {
        PersistCommand::Keep => keep(global, &place),
        PersistCommand::Status { json } => {
            let rt = crate::cmd::setup::runtime()?;
            match rt.block_on(ask(&place, Control::Status))? {
                Some(s) if json => {
                    println!("{}", serde_json::to_string(&s).expect("serializable"));
                    Ok(Status::Done)
                }
                Some(s) => {
                    print_standing(&s);
                    Ok(Status::Done)
                }
                None => {
                    println!("no keeper stands for this endpoint");
                    Ok(Status::Helper(1))
                }
            }
        }
        PersistCommand::Stop => {
            let rt = crate::cmd::setup::runtime()?;
            match rt.block_on(ask(&place, Control::Stop))? {
                Some(s) => {
                    // Its sessions go before it exits; wait for that, so that what stood
                    // is gone when this returns.
                    rt.block_on(gone(s.pid));
                    println!("stopped the keeper (pid {})", s.pid);
                    Ok(Status::Done)
                }
                None => {
                    println!("no keeper stands for this endpoint");
                    Ok(Status::Done)
                }
            }
        }
    }
}

fn print_standing(s: &Standing) {
    let secs = |ms: u64| ms as f64 / 1000.0;
    println!(
        "keeper pid {}: {} runs served; ends after {:.0}s with no run (idle {:.1}s)",
        s.pid,
        s.runs_served,
        secs(s.idle_ms),
        secs(s.idle_for_ms)
    );
    for session in &s.sessions {
        println!(
            "  node {}: helper standing for {:.1}s, {} runs now (opened for {})",
            session.node,
            secs(session.open_for_ms),
            session.runs_now,
            session.opened_for
        );
    }
}

/// Asks the keeper, if one answers.
async fn ask(place: &Place, what: Control) -> Result<Option<Standing>, CliError> {
    let Ok(conn) = UnixStream::connect(&place.socket).await else {
        return Ok(None);
    };
    let (rx, mut tx) = conn.into_split();
    let json = serde_json::to_vec(&what).expect("serializable");
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(format!("the keeper: {e}"));
    tx.write_all(&Frame::Control { id: 0, json }.encode())
        .await
        .map_err(|e| failed(&e))?;
    match FrameReader::new(rx).next().await {
        Some(Ok(Frame::Control { json, .. })) => serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| failed(&e)),
        _ => Err(failed(&"no answer")),
    }
}

/// Until the keeper `pid` has exited (at most a minute: its sessions' removal).
async fn gone(pid: u32) {
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `persist keep`: the keeper itself. One per user and endpoint: the lock file decides;
/// a keeper that finds another answering leaves it be.
fn keep(global: &Global, place: &Place) -> Result<Status, CliError> {
    let failed = |what: &str, e: std::io::Error| CliError::Failed(format!("{what}: {e}"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&place.lock)
        .map_err(|e| failed("the keeper's lock", e))?;
    if !take_lock(&lock, &place.socket) {
        return Ok(Status::Done);
    }
    // Stale: its keeper is gone (it holds the lock while it lives).
    let _ = std::fs::remove_file(&place.socket);
    let listener = std::os::unix::net::UnixListener::bind(&place.socket)
        .map_err(|e| failed("the keeper's socket", e))?;
    std::fs::set_permissions(&place.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| failed("the keeper's socket", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed("the keeper's socket", e))?;
    let rt = crate::cmd::setup::runtime()?;
    let local = tokio::task::LocalSet::new();
    let served = local.block_on(&rt, async {
        let listener = tokio::net::UnixListener::from_std(listener)
            .map_err(|e| failed("the keeper's socket", e))?;
        let api = crate::cmd::setup::connect(global)?;
        let helper = crate::node_program::helper_source(None);
        let keeper = Keeper::new(api, helper, Duration::from_secs(60));
        let done = keeper.done();
        tokio::pin!(done);
        // A polite kill ends it as `persist stop` does: what it made goes first.
        let signalled = crate::cmd::setup::interrupted().map_err(CliError::Runtime)?;
        tokio::pin!(signalled);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((conn, _)) = accepted else { continue };
                    if !same_user(&conn) {
                        continue;
                    }
                    tokio::task::spawn_local(keeper.clone().serve_client(conn));
                }
                () = &mut done => break,
                _ = &mut signalled => break,
            }
        }
        // New clients start a new keeper (which waits for this one's lock).
        let _ = std::fs::remove_file(&place.socket);
        drop(listener);
        keeper.close().await;
        Ok::<_, CliError>(())
    });
    drop(lock);
    served.map(|()| Status::Done)
}

/// Takes the keeper's lock; `false` when another keeper holds it and answers. One that
/// holds it without answering is ending: its lock is waited for.
fn take_lock(lock: &std::fs::File, socket: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let until = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        // SAFETY: a valid descriptor; the lock goes with it (at exit, whatever the cause).
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok()
            || std::time::Instant::now() > until
        {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The peer is this user (the directory and the socket's mode say so already).
fn same_user(conn: &UnixStream) -> bool {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    conn.peer_cred().is_ok_and(|c| c.uid() == uid)
}

/// Connects to the keeper, starting one when none answers.
async fn connect_or_start(global: &Global, place: &Place) -> Result<UnixStream, CliError> {
    if let Ok(conn) = UnixStream::connect(&place.socket).await {
        tracing::debug!(socket = %place.socket.display(), "through the persist keeper");
        return Ok(conn);
    }
    let mut child = start_keeper(global)?;
    tracing::debug!(pid = child.id(), socket = %place.socket.display(), "persist keeper started");
    let until = tokio::time::Instant::now() + START_WAIT;
    loop {
        if let Ok(conn) = UnixStream::connect(&place.socket).await {
            return Ok(conn);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another keeper may have won the race: it answers, or this one said why not.
            if let Ok(conn) = UnixStream::connect(&place.socket).await {
                return Ok(conn);
            }
            if !status.success() {
                return Err(CliError::Failed(format!(
                    "the persist keeper could not start ({status}); run `swarm-exec persist \
                     keep` to see why"
                )));
            }
        }
        if tokio::time::Instant::now() > until {
            return Err(CliError::Failed(format!(
                "no persist keeper answered on {} within {START_WAIT:?}",
                place.socket.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This binary as `persist keep`, for the same endpoint, in a session of its own, with no
/// terminal and no pipes of the client's (a caller waiting for this process's output must
/// not wait for the keeper's).
fn start_keeper(global: &Global) -> Result<std::process::Child, CliError> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find this program to keep: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    // The endpoint the flags chose, as the variables that stand for them (a docker CLI
    // plugin takes no flags of ours before its name).
    if let Some(h) = &global.host {
        cmd.env("DOCKER_HOST", h).env_remove("DOCKER_CONTEXT");
    }
    if let Some(c) = &global.context {
        cmd.env("DOCKER_CONTEXT", c).env_remove("DOCKER_HOST");
    }
    if let Some(c) = &global.config {
        cmd.env("DOCKER_CONFIG", c);
    }
    if let Some(c) = &global.cert_path {
        cmd.env("DOCKER_CERT_PATH", c);
    }
    if global.tls_verify {
        cmd.env("DOCKER_TLS_VERIFY", "1");
    }
    // As a docker CLI plugin (`docker-swarmexec`), the plugin's name comes first.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(name) = crate::docker_plugin::cli_plugin_name(&args) {
        cmd.arg(name);
    }
    cmd.args(["persist", "keep"])
        .env_remove("SWARM_EXEC_PERSIST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: setsid, close_range and fcntl are async-signal-safe. The keeper leaves the
    // client's session, so the terminal's hangup or the client's process group's signals
    // do not reach it; and it keeps no descriptor it inherited but 0-2 (a CI harness's
    // pipe would stay open until it ends): all are marked close-on-exec (close_range with
    // CLOSE_RANGE_CLOEXEC, Linux 5.11; else one by one), which leaves the pipe that
    // reports a failed exec working.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
            let marked = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            if marked != 0 {
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| CliError::Failed(format!("cannot start the persist keeper: {e}")))
}

/// A plain `task-exec` through the keeper: the task (on another node) found by the
/// caller, `run` its options. Output to `out` as it comes; the command's outcome, or a
/// failure when it cannot be known.
pub async fn task_exec<O, C>(
    global: &Global,
    task: Resolved,
    run: &RunOptions,
    idle: Duration,
    out: &mut O,
    cancel: C,
) -> Result<Outcome, CliError>
where
    O: OutputSink,
    C: std::future::Future<Output = Interrupt>,
{
    let started = tokio::time::Instant::now();
    let place = Place::of(global)?;
    // The run's mark, as a helper's tag is: hex of a fresh UUID.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let request = KeeperRun {
        run: RunSpec {
            container: task.container_id.clone(),
            command: run.command.clone(),
            env: run.env.clone(),
            workdir: run.workdir.clone(),
            user: run.user.clone(),
            privileged: run.privileged,
            timeout_ms: run.timeout.as_millis() as u64,
            stdin: run.stdin.is_some(),
            tag,
        },
        task,
        idle_ms: idle.as_millis() as u64,
    };
    let target = request.task.describe();
    let request = serde_json::to_vec(&request).expect("serializable");
    let deadline = started + run.timeout;
    tokio::pin!(cancel);
    // A keeper that was ending as this run came refuses it before anything ran: the run
    // goes to the next keeper (started now), once.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut ended = Ended {
            target: &target,
            counts: [0, 0],
            ending: false,
        };
        let conn = connect_or_start(global, &place).await?;
        let r = once(
            conn,
            &request,
            run.stdin.as_deref(),
            &mut ended,
            out,
            cancel.as_mut(),
            deadline,
        )
        .await;
        if !(ended.ending && attempts < 2) {
            return r;
        }
        tracing::debug!("the keeper was ending; to the next one");
    }
}

/// One try of a run through the keeper at `conn`.
async fn once<O, C>(
    conn: UnixStream,
    request: &[u8],
    stdin: Option<&[u8]>,
    ended: &mut Ended<'_>,
    out: &mut O,
    cancel: std::pin::Pin<&mut C>,
    deadline: tokio::time::Instant,
) -> Result<Outcome, CliError>
where
    O: OutputSink,
    C: std::future::Future<Output = Interrupt>,
{
    let (rx, tx) = conn.into_split();
    let (frames, to_keeper) = mpsc::channel::<Vec<u8>>(4);
    let request = request.to_vec();
    let _ = frames.send(Frame::Run { id: 0, request }.encode()).await;
    let writer = write_frames(tx, to_keeper);
    let feeder = async {
        if let Some(bytes) = stdin {
            for piece in bytes.chunks(CHUNK) {
                let f = Frame::Input {
                    id: 0,
                    bytes: piece.to_vec(),
                };
                let _ = frames.send(f.encode()).await;
            }
            let _ = frames.send(Frame::InputEof { id: 0 }.encode()).await;
        }
        std::future::pending::<()>().await
    };
    let target = ended.target;
    let reading = ended.read(FrameReader::new(rx), out, &frames, cancel, deadline);
    tokio::select! {
        r = reading => r,
        () = writer => Err(CliError::Failed(format!(
            "the persist keeper went away: the outcome of the command in {target} is not known"
        ))),
        () = feeder => unreachable!("pending"),
    }
}

/// Writes what comes to the keeper; resolves only if the connection fails.
async fn write_frames(mut tx: tokio::net::unix::OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if tx.write_all(&bytes).await.is_err() {
            return;
        }
    }
    std::future::pending().await
}

/// A run's frames as they come back, to its end.
struct Ended<'a> {
    target: &'a str,
    counts: [u64; 2],
    /// Refused by a keeper that was ending, before anything ran.
    ending: bool,
}

impl Ended<'_> {
    async fn read<O, C>(
        &mut self,
        mut rx: FrameReader<tokio::net::unix::OwnedReadHalf>,
        out: &mut O,
        frames: &mpsc::Sender<Vec<u8>>,
        mut cancel: std::pin::Pin<&mut C>,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, CliError>
    where
        O: OutputSink,
        C: std::future::Future<Output = Interrupt>,
    {
        // Why the command was told to stop, once it was: an interrupt, or the deadline.
        let mut stopping: Option<Option<Interrupt>> = None;
        let mut until = deadline;
        loop {
            let f = tokio::select! {
                f = rx.next() => f,
                i = cancel.as_mut(), if stopping.is_none() => {
                    stopping = Some(Some(i));
                    until = tokio::time::Instant::now() + STOP_WAIT;
                    let _ = frames.send(Frame::Stop { id: 0 }.encode()).await;
                    continue;
                }
                () = tokio::time::sleep_until(until) => {
                    if stopping.is_some() {
                        return Err(self.unknown("no end came from its helper"));
                    }
                    stopping = Some(None);
                    until = tokio::time::Instant::now() + STOP_WAIT;
                    let _ = frames.send(Frame::Stop { id: 0 }.encode()).await;
                    continue;
                }
            };
            match f {
                Some(Ok(f)) => {
                    if let Some(outcome) = self.take(f, out, stopping)? {
                        return Ok(outcome);
                    }
                }
                Some(Err(e)) => return Err(self.unknown(&e.to_string())),
                None => return Err(self.unknown("the persist keeper went away")),
            }
        }
    }

    fn unknown(&self, why: &str) -> CliError {
        CliError::Failed(format!(
            "{why}: the outcome of the command in {} is not known",
            self.target
        ))
    }

    /// Acts on one frame; the outcome once it is known.
    fn take<O: OutputSink>(
        &mut self,
        f: Frame,
        out: &mut O,
        stopping: Option<Option<Interrupt>>,
    ) -> Result<Option<Outcome>, CliError> {
        match f {
            Frame::Stdout { bytes, .. } => {
                self.counts[0] += bytes.len() as u64;
                out.stdout(&bytes);
            }
            Frame::Stderr { bytes, .. } => {
                self.counts[1] += bytes.len() as u64;
                out.stderr(&bytes);
            }
            Frame::Exit {
                code,
                stdout,
                stderr,
                ..
            } => {
                if [stdout, stderr] != self.counts {
                    return Err(self.unknown(&format!(
                        "its output did not all arrive ({} of {stdout} bytes of stdout, {} of \
                         {stderr} of stderr)",
                        self.counts[0], self.counts[1]
                    )));
                }
                return Ok(Some(Outcome::Exited(code)));
            }
            Frame::TimedOut { stopped, .. } => {
                if !stopped {
                    out.warn(&format!(
                        "the command in {} was told to stop at its deadline, but could not be \
                         seen to end",
                        self.target
                    ));
                }
                return Ok(Some(Outcome::TimedOut));
            }
            Frame::Stopped { gone, .. } => {
                if !gone {
                    out.warn(&format!(
                        "the command in {} was told to stop, but could not be seen to end",
                        self.target
                    ));
                }
                // Stopped at the deadline (the session took long to open), or interrupted;
                // stopped unasked (the helper itself was stopped), it did not end by itself.
                return match stopping {
                    Some(Some(i)) => Ok(Some(Outcome::Interrupted(i))),
                    Some(None) => Ok(Some(Outcome::TimedOut)),
                    None => Err(self.unknown("the helper stopped the command before it ended")),
                };
            }
            Frame::Failed { reason, .. } if reason == ENDING && stopping.is_none() => {
                self.ending = self.counts == [0, 0];
                return Err(CliError::Failed(format!(
                    "cannot run in {} through the persist keeper: {reason}",
                    self.target
                )));
            }
            // It did not run (a container gone), or its session broke under it: either
            // way its outcome is not known to be anything.
            Frame::Failed { reason, .. } => {
                let reason = swarm_exec_core::escape::escape_control(&reason);
                return Err(self.unknown(&format!("through the persist keeper: {reason}")));
            }
            _ => {}
        }
        Ok(None)
    }
}
