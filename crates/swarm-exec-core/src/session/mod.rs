//! A live session with a task on another node (`task-exec -t`, and `-i` with more stdin
//! than a secret holds): stdin streamed as it comes, a TTY resized with the local terminal,
//! output as it is written — through the manager's Engine API alone.
//!
//! The data path: the client is attached (a hijacked connection, as `docker run -i`) to a
//! **relay** container it creates on the engine it talks to, on an attachable overlay
//! network; the helper, on the task's node and on the same overlay, **dials the relay**
//! (it never listens) and presents the run's relay token; the relay pairs that one
//! connection with the client's stream and only copies bytes. Frames are sealed end to end
//! with keys derived from the run key, which travels in the run's envelope secret to the
//! helper only: the relay, and anything else on the overlay, can neither read nor inject.
//!
//! The relay has no socket, no capabilities, a read-only root and an unprivileged user; it
//! runs the node-side program (zero-install: from an image imported from this binary's
//! build, `swarm-exec-relay:<build>`; `--image`: that image, which the manager must have).
//! The overlay is kept between sessions (`swarm-exec-session`, or `--network NAME`): a new
//! overlay costs seconds on first use, an existing one about a second.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
};
use futures_util::{Stream, StreamExt};
use swarm_exec_proto::args::RelayArgs;
use swarm_exec_proto::envelope::SessionSpec;
use swarm_exec_proto::session::{
    halves, relay_token, Msg, Sealer, SessionError as FrameError, Side,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::engine::bollard::{classify, BollardApi};
use crate::engine::{ApiError, SwarmApi, TaskFilter};
use crate::helper::lifecycle::{create_envelope_named, envelope_name, remove_envelope};
use crate::helper::{helper_spec, secret_labels, Carrier};
use crate::lookup::resolve::Resolved;
use crate::model::labels::{BUDGET_LABEL, HELPER_LABEL, NETWORK_KIND, RELAY_KIND};
use crate::model::node_program::BUILD_LABEL;
use crate::model::options::{HelperSource, RunOptions};
use crate::model::outcome::{Interrupt, Outcome};
use crate::model::state::TaskState;
use crate::model::target::HelperRef;
use crate::sink::OutputSink;

/// The overlay sessions use unless `--network` names one.
pub const SESSION_NETWORK: &str = "swarm-exec-session";
/// Where the relay listens, in its own network namespace.
pub const RELAY_PORT: u16 = 7373;
/// Where the program is in the imported relay image.
const RELAY_PROGRAM: &str = "/swarm-exec-node";
/// When the first helper has run this long without reaching the relay, the user is told
/// that the overlay may be blocked (and what to open)...
pub const HELLO_WARN: Duration = Duration::from_secs(10);
/// ...and past this the session fails. Not sooner: a node that left the overlay moments
/// ago (its last session's helper, or the last relay on the manager) and joins it again
/// may not learn the other end's address until the engines' next full sync of the
/// overlay's peers, which comes every 30 s. Seen on the lab: one session in six waited
/// for it, up to 44 s; a blocked overlay cannot be told apart from that.
pub const HELLO_WAIT: Duration = Duration::from_secs(75);
/// How long the helper may take to reach `running`.
const START_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// What the session is to do.
pub struct SessionRequest<'a> {
    pub task: &'a Resolved,
    pub run: &'a RunOptions,
    pub carrier: &'a Carrier,
    /// A TTY for the command (`-t`).
    pub tty: bool,
    /// `--network`: an attachable overlay of the operator's instead of [`SESSION_NETWORK`].
    pub network: Option<&'a str>,
    /// Sent before anything read from `input` (what `-i` read to decide on a session).
    pub stdin_prefix: Vec<u8>,
    /// `cp` instead of a command.
    pub copy: Option<Copy>,
}

/// A `cp` through a session. Out of the container: its archive of `path` comes as stdout.
/// Into it: `decide` is given what `path` is there (see [`swarm_exec_proto::session::Msg::Stat`])
/// and names the directory to unpack in (or says why not); the archive then comes from
/// the session's input.
pub struct Copy {
    pub out: bool,
    pub path: String,
    pub decide: Option<Decide>,
}

/// See [`Copy`].
pub type Decide = Box<dyn FnOnce(Option<u32>) -> Result<String, String> + Send>;

/// What to do about an overlay that does not carry a session.
const OPEN_PORTS: &str = "Open 4789/udp and 7946/tcp+udp between them, or run without -t \
                          (no overlay needed)";

/// A session that failed: where, and at which step.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {source}")]
pub struct SessionError {
    pub at: Box<HelperRef>,
    #[source]
    pub source: SessionFailure,
}

/// Why a session failed, step by step.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error(
        "the manager has no image {0} for the relay (--image must name an image the manager has)"
    )]
    NoRelayImage(String),
    #[error("importing the relay image {image}: {source}")]
    ImportImage {
        image: String,
        #[source]
        source: ApiError,
    },
    #[error("network {name}: {source}")]
    Network {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "network {name} is not an attachable overlay network (driver {driver}, attachable \
         {attachable})"
    )]
    NotAttachable {
        name: String,
        driver: String,
        attachable: bool,
    },
    #[error("creating the relay container: {0}")]
    CreateRelay(#[source] ApiError),
    #[error("attaching to the relay container: {0}")]
    AttachRelay(#[source] ApiError),
    #[error("starting the relay container: {0}")]
    StartRelay(#[source] ApiError),
    #[error("the relay has no address on network {0}")]
    RelayAddress(String),
    #[error("writing to the relay: {0}")]
    WriteRelay(#[source] std::io::Error),
    #[error("reading from the relay: {0}")]
    ReadRelay(#[source] ApiError),
    #[error("creating the helper service: {0}")]
    CreateHelper(#[source] ApiError),
    #[error("the helper did not reach running within {0:?} (state {1})")]
    NotStarted(Duration, String),
    #[error("the helper ended before it reached the relay (state {state}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    HelperEnded { state: String, reason: String },
    #[error(
        "no connection from the helper within {HELLO_WAIT:?} of its start: the overlay between \
         this manager and node {node} carries no traffic. {OPEN_PORTS}{}",
        if .relay.is_empty() { String::new() } else { format!(" (relay: {})", .relay) }
    )]
    NoHello { node: String, relay: String },
    #[error("the session's stream was refused: {0}")]
    Refused(#[source] FrameError),
    #[error("the session ended without the command's exit{}", if .0.is_empty() { String::new() } else { format!(" (relay: {})", .0) })]
    Cut(String),
    #[error("the command's {stream} holds {received} bytes, its exit says {declared}")]
    Count {
        stream: &'static str,
        declared: u64,
        received: u64,
    },
    #[error("the command could not be run: {0}")]
    Failed(String),
    #[error("{0}")]
    Copy(String),
}

/// Runs a session; the relay, the helper and the envelope are removed before this returns,
/// whatever happened. `input` brings what is typed or piped (closed at end of input);
/// `sizes` the terminal's size, now and on every change.
pub async fn remote_session<S, O, C>(
    api: &BollardApi,
    mut req: SessionRequest<'_>,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    sizes: S,
    out: &mut O,
    deadline: Option<Instant>,
    cancel: C,
) -> Result<Outcome, SessionError>
where
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
    C: std::future::Future<Output = Interrupt>,
{
    let target = req.task.describe();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let tag = run_id[..12].to_owned();
    let mut made = Made::default();
    tokio::pin!(cancel);
    let far = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let decide = req.copy.as_mut().and_then(|c| c.decide.take());
    let result = tokio::select! {
        r = session(api, &req, &tag, (input, decide), sizes, out, &mut made, far) => r,
        i = cancel.as_mut() => Ok(Outcome::Interrupted(i)),
        _ = sleep_until(far) => Ok(Outcome::TimedOut),
    };
    made.remove(api, out).await;
    result.map_err(|source| SessionError {
        at: Box::new(HelperRef {
            target,
            helper: format!("swarm-exec-{tag}"),
            node: req.task.node_name.clone(),
        }),
        source,
    })
}

/// What a session made, removed at its end in reverse; and what it asked for by name but
/// got no answer about (it was stopped while the create was on its way), removed by name.
#[derive(Default)]
struct Made {
    relay: Option<String>,
    secret: Option<String>,
    helper: Option<String>,
    asked: Option<Asked>,
}

/// A create sent without its answer yet: what and by which name.
#[derive(Debug, Clone)]
enum Asked {
    Relay(String),
    Secret(String),
    Helper(String),
}

/// How long a create whose answer never came may take to land: removing it by name is
/// tried that long (a create still in flight on the manager is not found yet).
const ASKED_GRACE: Duration = Duration::from_secs(3);

impl Made {
    /// Runs `create` with `asked` noted while it is on its way: only a session stopped
    /// mid-create leaves the note.
    async fn asking<T>(&mut self, asked: Asked, create: impl std::future::Future<Output = T>) -> T {
        self.asked = Some(asked);
        let r = create.await;
        self.asked = None;
        r
    }

    async fn remove<O: OutputSink>(&mut self, api: &BollardApi, out: &mut O) {
        // First: a helper asked for would hold the secret; a secret or relay asked for is
        // the last thing the session did.
        if let Some(asked) = self.asked.take() {
            remove_asked(api, &asked, out).await;
        }
        if let Some(helper) = self.helper.take() {
            // Removing the helper stops the command if it still runs (SIGTERM → stopper).
            if let Err(e) = api.remove_service(&helper).await {
                out.warn(&format!(
                    "could not remove helper service {helper}: {e}; `docker service rm {helper}` removes it"
                ));
            }
        }
        if let Some(secret) = self.secret.take() {
            remove_envelope(api, &secret, out).await;
        }
        if let Some(relay) = self.relay.take() {
            remove_relay(api, &relay, out).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session<S, O>(
    api: &BollardApi,
    req: &SessionRequest<'_>,
    tag: &str,
    (mut input, mut decide): (Option<mpsc::Receiver<Vec<u8>>>, Option<Decide>),
    mut sizes: S,
    out: &mut O,
    made: &mut Made,
    deadline: Instant,
) -> Result<Outcome, SessionFailure>
where
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
{
    let started = Instant::now();
    let docker = api.docker();
    let network_name = req.network.unwrap_or(SESSION_NETWORK);
    let (image, network) = tokio::try_join!(
        relay_image(api, &req.run.helper),
        ensure_network(api, network_name, req.network.is_none())
    )?;
    let budget = deadline.saturating_duration_since(Instant::now());

    // The relay: created, attached, started; its address goes into the envelope.
    let relay_name = format!("swarm-exec-relay-{tag}");
    let mut labels: std::collections::HashMap<String, String> = secret_labels(budget)
        .into_iter()
        .map(|(k, v)| {
            let v = if k == HELPER_LABEL {
                RELAY_KIND.into()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    labels.insert("swarm-exec.target.task".into(), req.task.task_id.clone());
    labels.insert(
        "swarm-exec.target.service".into(),
        req.task.service_name.clone(),
    );
    let relay_args = RelayArgs {
        port: RELAY_PORT,
        wait: START_WAIT + HELLO_WAIT,
    };
    let config = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(relay_args.to_args()),
        labels: Some(labels),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        user: Some("65534:65534".into()),
        working_dir: Some("/".into()),
        host_config: Some(HostConfig {
            network_mode: Some(network.clone()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            memory: Some(64 << 20),
            nano_cpus: Some(1_000_000_000),
            // Gone by itself if this process is killed (it exits once its stdin closes).
            auto_remove: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(relay_name.clone()),
        ..Default::default()
    };
    // A network removed a moment ago can still be known to the manager's own engine, which
    // then cannot attach the relay to the one of that name made since: once more, later.
    let mut network = network;
    let mut config = config;
    let mut again = true;
    let (relay_id, mut relay_out, mut relay_in) = loop {
        if let Some(h) = config.host_config.as_mut() {
            h.network_mode = Some(network.clone());
        }
        match start_relay(docker, &opts, config.clone(), made).await {
            Err(SessionFailure::StartRelay(e)) if again && stale_network(&e) => {
                again = false;
                if let Some(relay) = made.relay.take() {
                    remove_relay(api, &relay, out).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                network = ensure_network(api, network_name, req.network.is_none()).await?;
            }
            r => break r?,
        }
    };
    let key = swarm_exec_proto::Envelope::new_key()
        .map_err(|e| SessionFailure::WriteRelay(std::io::Error::other(e)))?;
    relay_in
        .write_all(&relay_token(&key))
        .await
        .map_err(SessionFailure::WriteRelay)?;
    let inspected = docker
        .inspect_container(&relay_id, None)
        .await
        .map_err(|e| SessionFailure::StartRelay(classify(e)))?;
    let ip = inspected
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| {
            n.into_values()
                .find(|e| e.network_id.as_deref() == Some(network.as_str()))
        })
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| SessionFailure::RelayAddress(network_name.to_owned()))?;
    tracing::debug!(relay = %relay_name, %ip, ms = started.elapsed().as_millis(), "relay started");

    // The envelope and the helper, on the same overlay.
    let mut envelope = req
        .run
        .envelope(budget)
        .map_err(|e| SessionFailure::Failed(e.to_string()))?;
    envelope.key = key;
    envelope.stdin = None;
    envelope.session = Some(SessionSpec {
        relay: format!("{ip}:{RELAY_PORT}"),
        tty: req.tty,
        stdin: input.is_some(),
        copy: req
            .copy
            .as_ref()
            .map(|c| swarm_exec_proto::envelope::CopySpec {
                out: c.out,
                path: c.path.clone(),
            }),
    });
    let target_labels = vec![
        (
            "swarm-exec.target.task".to_owned(),
            req.task.task_id.clone(),
        ),
        (
            "swarm-exec.target.service".to_owned(),
            req.task.service_name.clone(),
        ),
        (
            "swarm-exec.target.container".to_owned(),
            req.task.container_id.clone(),
        ),
    ];
    let name = envelope_name();
    let secret = made
        .asking(
            Asked::Secret(name.clone()),
            create_envelope_named(api, name, &envelope, &target_labels, budget),
        )
        .await
        .map_err(|e| SessionFailure::Failed(format!("creating the envelope secret: {e}")))?;
    made.secret = Some(secret.id.clone());
    drop(envelope);
    let mut spec = helper_spec(
        &req.task.node_id,
        &target_labels,
        std::slice::from_ref(&req.task.container_id),
        req.carrier,
        &req.task.image,
        tag,
        budget,
        (&secret.id, &secret.name),
    );
    spec.network = Some(network.clone());
    let helper = made
        .asking(Asked::Helper(spec.name.clone()), api.create_service(&spec))
        .await
        .map_err(SessionFailure::CreateHelper)?;
    made.helper = Some(helper.clone());
    tracing::debug!(helper = %spec.name, ms = started.elapsed().as_millis(), "helper created");

    // Until the helper's hello: its task is watched, and the relay's stderr kept for
    // messages.
    let (mut seal, mut open) = halves(&key, Side::Client);
    let mut relay_said = String::new();
    let mut running_since: Option<Instant> = None;
    let mut next_poll = Instant::now();
    let mut warned = false;
    loop {
        let hello_by = running_since.map(|t| t + HELLO_WAIT);
        // From the helper's start, or the session's if the helper was slow to start.
        let warn_by = running_since
            .filter(|_| !warned)
            .map(|t| (t + HELLO_WARN).min(started + HELLO_WARN + Duration::from_secs(1)));
        tokio::select! {
            item = relay_out.next() => match item {
                Some(Ok(LogOutput::StdOut { message })) => {
                    open.feed(&message);
                    match open.next_msg() {
                        None => {}
                        Some(Ok(Msg::Hello)) => break,
                        Some(Ok(_)) => {
                            return Err(SessionFailure::Refused(FrameError::Malformed {
                                seq: 0,
                                what: "not a hello",
                            }))
                        }
                        Some(Err(e)) => return Err(SessionFailure::Refused(e)),
                    }
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    relay_said.push_str(String::from_utf8_lossy(&message).trim());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(SessionFailure::ReadRelay(classify(e))),
                None => return Err(SessionFailure::Cut(relay_said)),
            },
            _ = sleep_until(next_poll) => {
                next_poll = Instant::now() + POLL;
                let filter = TaskFilter {
                    service: Some(helper.clone()),
                    ..Default::default()
                };
                let tasks = api.list_tasks(&filter).await.unwrap_or_default();
                let state = tasks.first().map(|t| &t.state);
                match state {
                    Some(TaskState::Running) => {
                        running_since.get_or_insert_with(|| {
                            tracing::debug!(ms = started.elapsed().as_millis(), "helper running");
                            Instant::now()
                        });
                    }
                    Some(s) if s.is_final() => {
                        let t = &tasks[0];
                        let reason = [t.err.as_str(), t.message.as_str()]
                            .into_iter()
                            .find(|s| !s.is_empty())
                            .unwrap_or_default()
                            .to_owned();
                        return Err(SessionFailure::HelperEnded { state: s.to_string(), reason });
                    }
                    _ if started.elapsed() > START_WAIT => {
                        let state = state.map_or_else(|| "none".to_owned(), TaskState::to_string);
                        return Err(SessionFailure::NotStarted(START_WAIT, state));
                    }
                    _ => {}
                }
            }
            _ = async { sleep_until(warn_by.expect("guarded")).await }, if warn_by.is_some() => {
                warned = true;
                out.warn(&format!(
                    "no connection yet from the helper on node {} after {HELLO_WARN:?}: the \
                     overlay between this manager and that node may be blocked, or slow to \
                     learn the session's addresses (the engines resync it every 30 s). \
                     {OPEN_PORTS}. Waiting up to {HELLO_WAIT:?} in all",
                    req.task.node_name
                ));
            }
            _ = async { sleep_until(hello_by.expect("guarded")).await }, if hello_by.is_some() => {
                return Err(SessionFailure::NoHello {
                    node: req.task.node_name.clone(),
                    relay: relay_said,
                });
            }
        }
    }
    seal_and_send_start(&mut seal, &mut relay_in).await?;
    tracing::debug!(ms = started.elapsed().as_millis(), "session open");

    // The session. What goes to the relay is written by a future of its own, so that
    // reading never waits on writing (a command that echoes its input would otherwise
    // block both ends); a frame is sealed only once there is room to send it, since a
    // sealed frame that was not sent would break the sequence.
    let (to_relay, mut outgoing) = mpsc::channel::<Vec<u8>>(8);
    let writer = async {
        while let Some(bytes) = outgoing.recv().await {
            relay_in.write_all(&bytes).await?;
        }
        std::future::pending::<std::io::Result<()>>().await
    };
    tokio::pin!(writer);
    if !req.stdin_prefix.is_empty() {
        let mut wire = Vec::new();
        seal.seal(&Msg::Stdin(req.stdin_prefix.clone()), &mut wire);
        let _ = to_relay.send(wire).await;
    }
    let mut received = [0u64; 2];
    let mut sizes_open = req.tty;
    // Into a container, the archive waits for the helper's stat and the client's answer.
    let mut input_ready = decide.is_none();
    let mut write_failed = false;
    loop {
        // Frames already received (some may have come with the hello) first.
        while let Some(m) = open.next_msg() {
            match m.map_err(SessionFailure::Refused)? {
                Msg::Stdout(b) => {
                    received[0] += b.len() as u64;
                    out.stdout(&b);
                }
                Msg::Stderr(b) => {
                    received[1] += b.len() as u64;
                    out.stderr(&b);
                }
                Msg::Exit {
                    code,
                    stdout,
                    stderr,
                } => {
                    for (stream, declared, got) in [
                        ("stdout", stdout, received[0]),
                        ("stderr", stderr, received[1]),
                    ] {
                        if declared != got {
                            return Err(SessionFailure::Count {
                                stream,
                                declared,
                                received: got,
                            });
                        }
                    }
                    return Ok(Outcome::Exited(code));
                }
                Msg::Failed(reason) => return Err(SessionFailure::Failed(reason)),
                Msg::TimedOut { stopped } => {
                    if !stopped {
                        out.warn(&format!(
                            "the command in {} was told to stop at its deadline, but could not \
                             be seen to end",
                            req.task.describe()
                        ));
                    }
                    return Ok(Outcome::TimedOut);
                }
                Msg::Stat(mode) => {
                    let decide =
                        decide
                            .take()
                            .ok_or(SessionFailure::Refused(FrameError::Malformed {
                                seq: 0,
                                what: "a stat that was not asked for",
                            }))?;
                    let dir = decide(mode).map_err(SessionFailure::Copy)?;
                    let mut wire = Vec::new();
                    seal.seal(&Msg::PutInto(dir), &mut wire);
                    to_relay.send(wire).await.map_err(|_| {
                        SessionFailure::WriteRelay(std::io::ErrorKind::BrokenPipe.into())
                    })?;
                    input_ready = true;
                }
                _ => {}
            }
        }
        tokio::select! {
            // What arrived first: an exit frame already in must win over a failed write.
            biased;
            item = relay_out.next() => match item {
                Some(Ok(LogOutput::StdOut { message })) => open.feed(&message),
                Some(Ok(LogOutput::StdErr { message })) => {
                    relay_said.push_str(String::from_utf8_lossy(&message).trim());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(SessionFailure::ReadRelay(classify(e))),
                None => return Err(SessionFailure::Cut(relay_said)),
            },
            r = &mut writer, if !write_failed => {
                // The command may have ended without reading all its input (the relay is
                // gone): what it wrote and its exit may still be in; stop sending, read on.
                tracing::debug!(error = ?r.err(), "writing to the relay failed; reading on");
                write_failed = true;
                input = None;
                sizes_open = false;
            }
            (permit, chunk) = async {
                let permit = to_relay.reserve().await;
                (permit, input.as_mut().expect("guarded").recv().await)
            }, if input.is_some() && input_ready && !write_failed => {
                let mut wire = Vec::new();
                match chunk {
                    Some(bytes) => seal.seal(&Msg::Stdin(bytes), &mut wire),
                    None => {
                        seal.seal(&Msg::StdinEof, &mut wire);
                        input = None;
                    }
                }
                match permit {
                    Ok(p) => p.send(wire),
                    Err(_) => return Err(SessionFailure::WriteRelay(std::io::ErrorKind::BrokenPipe.into())),
                }
            }
            (permit, size) = async { (to_relay.reserve().await, sizes.next().await) }, if sizes_open => {
                match (permit, size) {
                    (Ok(p), Some((rows, cols))) => {
                        let mut wire = Vec::new();
                        seal.seal(&Msg::Resize { rows, cols }, &mut wire);
                        p.send(wire);
                    }
                    _ => sizes_open = false,
                }
            }
        }
    }
}

/// The client's start: the paired helper may begin.
async fn seal_and_send_start(
    seal: &mut Sealer,
    relay_in: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), SessionFailure> {
    let mut wire = Vec::new();
    seal.seal(&Msg::Start, &mut wire);
    relay_in
        .write_all(&wire)
        .await
        .map_err(SessionFailure::WriteRelay)
}

/// The image the relay runs on the manager: `--image`'s (the manager must have it), or one
/// imported from this build's node-side program (once per build).
async fn relay_image(api: &BollardApi, helper: &HelperSource) -> Result<String, SessionFailure> {
    let program = match helper {
        HelperSource::Image(image) => {
            return match api.inspect_image(image).await {
                Ok(Some(_)) => Ok(image.clone()),
                _ => Err(SessionFailure::NoRelayImage(image.clone())),
            }
        }
        HelperSource::Embedded(p) => p,
    };
    let build = program.build_id;
    let tag = &build[..12];
    let image = format!("swarm-exec-relay:{tag}");
    if let Ok(Some(_)) = api.inspect_image(&image).await {
        return Ok(image);
    }
    let tar = swarm_exec_proto::tar::tar_of(RELAY_PROGRAM, (program.program)());
    let opts = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some("swarm-exec-relay".into()),
        tag: Some(tag.into()),
        changes: vec![
            format!("LABEL {HELPER_LABEL}={RELAY_KIND} {BUILD_LABEL}={build}"),
            format!("ENTRYPOINT [\"{RELAY_PROGRAM}\"]"),
        ],
        ..Default::default()
    };
    let mut progress =
        api.docker()
            .create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
    while let Some(p) = progress.next().await {
        p.map_err(|e| SessionFailure::ImportImage {
            image: image.clone(),
            source: classify(e),
        })?;
    }
    Ok(image)
}

/// Removes by name what a create was asked for whose answer never came: it may not exist,
/// exist, or come to exist a moment later.
async fn remove_asked<O: OutputSink>(api: &BollardApi, asked: &Asked, out: &mut O) {
    let until = Instant::now() + ASKED_GRACE;
    loop {
        // The engine's own answers: "not there (yet)" must not read as removed.
        let docker = api.docker();
        let r = match asked {
            Asked::Helper(name) => docker.delete_service(name).await.map_err(classify),
            Asked::Secret(name) => docker.delete_secret(name).await.map_err(classify),
            Asked::Relay(name) => {
                let opts = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                docker
                    .remove_container(name, Some(opts))
                    .await
                    .map_err(classify)
            }
        };
        match r {
            Ok(()) => {
                tracing::debug!(?asked, "removed what a create stopped on its way made");
                return;
            }
            Err(ApiError::NotFound(_)) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(ApiError::NotFound(_)) => return,
            // A relay already on its way out.
            Err(ApiError::Server { status: 409, .. }) if matches!(asked, Asked::Relay(_)) => return,
            Err(e) => {
                out.warn(&format!(
                    "could not remove {asked:?}, made as the session stopped: {e}"
                ));
                return;
            }
        }
    }
}

/// The relay container: created (into `made`), attached to, started.
async fn start_relay(
    docker: &bollard::Docker,
    opts: &CreateContainerOptions,
    config: ContainerCreateBody,
    made: &mut Made,
) -> Result<(String, RelayOutput, RelayInput), SessionFailure> {
    let name = opts.name.clone().unwrap_or_default();
    let id = made
        .asking(
            Asked::Relay(name),
            docker.create_container(Some(opts.clone()), config),
        )
        .await
        .map_err(|e| SessionFailure::CreateRelay(classify(e)))?
        .id;
    made.relay = Some(id.clone());
    let attach = AttachContainerOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        stream: true,
        ..Default::default()
    };
    let bollard::container::AttachContainerResults { output, input } = docker
        .attach_container(&id, Some(attach))
        .await
        .map_err(|e| SessionFailure::AttachRelay(classify(e)))?;
    docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| SessionFailure::StartRelay(classify(e)))?;
    Ok((id, output, input))
}

type RelayOutput =
    std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
type RelayInput = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// The manager's engine could not attach a container to a network that the swarm does not
/// know by the id it still has (seen right after the network was removed and made again).
fn stale_network(e: &ApiError) -> bool {
    matches!(e, ApiError::Server { message, .. }
        if message.contains("Could not attach to network") && message.contains("not found"))
}

/// Removes the relay container `id` (it may be going already: it removes itself on exit).
async fn remove_relay<O: OutputSink>(api: &BollardApi, id: &str, out: &mut O) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    if let Err(e) = api.docker().remove_container(id, Some(opts)).await {
        let e = classify(e);
        let going = matches!(e, ApiError::Server { status: 409, .. });
        if !matches!(e, ApiError::NotFound(_)) && !going {
            out.warn(&format!(
                "could not remove relay container {id}: {e}; `docker rm -f {id}` removes it"
            ));
        }
    }
}

/// The network's ID: the kept session overlay, created (attachable, labelled) when missing,
/// or the operator's, which must be an attachable overlay.
async fn ensure_network(
    api: &BollardApi,
    name: &str,
    ours: bool,
) -> Result<String, SessionFailure> {
    let docker = api.docker();
    let err = |source| SessionFailure::Network {
        name: name.to_owned(),
        source,
    };
    match docker.inspect_network(name, None).await.map_err(classify) {
        Ok(n) => return settled(api, name, n).await,
        Err(ApiError::NotFound(_)) if ours => {}
        Err(e) => return Err(err(e)),
    }
    let create = NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("overlay".into()),
        attachable: Some(true),
        labels: Some([(HELPER_LABEL.to_owned(), NETWORK_KIND.to_owned())].into()),
        ..Default::default()
    };
    match docker.create_network(create).await.map_err(classify) {
        Ok(_) => {}
        // Made by a concurrent session: found below. A manager answers a name already
        // taken in the swarm's store with 500 ("name conflicts with an existing object").
        Err(ApiError::Server { status: 409, .. }) => {}
        Err(ApiError::Server { message, .. }) if message.contains("name conflicts") => {}
        Err(e) => return Err(err(e)),
    }
    let n = docker
        .inspect_network(name, None)
        .await
        .map_err(|e| err(classify(e)))?;
    settled(api, name, n).await
}

/// The id of network `name` once it shows as an attachable overlay. A swarm network just
/// made (by a concurrent session, say) has no driver until the managers have allocated it:
/// that is waited for, briefly; anything else is not a network a session can use.
async fn settled(
    api: &BollardApi,
    name: &str,
    mut n: bollard::models::NetworkInspect,
) -> Result<String, SessionFailure> {
    const ALLOCATION: Duration = Duration::from_secs(10);
    let until = Instant::now() + ALLOCATION;
    loop {
        let driver = n.driver.clone().unwrap_or_default();
        let attachable = n.attachable == Some(true);
        match (driver.as_str(), attachable, n.id.take()) {
            ("overlay", true, Some(id)) => return Ok(id),
            ("", _, _) if Instant::now() < until => {}
            (driver, _, _) => {
                let driver = if driver.is_empty() {
                    "none yet"
                } else {
                    driver
                };
                return Err(SessionFailure::NotAttachable {
                    name: name.to_owned(),
                    driver: driver.to_owned(),
                    attachable,
                });
            }
        }
        tokio::time::sleep(POLL).await;
        n = api
            .docker()
            .inspect_network(name, None)
            .await
            .map_err(|e| SessionFailure::Network {
                name: name.to_owned(),
                source: classify(e),
            })?;
    }
}

/// `gc` of what sessions leave on the engine swarm-exec talks to: relay containers whose
/// budget has passed (a relay normally removes itself), relay images of other builds than
/// `keep_build`, and with `all` every relay image and the kept session network (refused
/// by the engine while a session uses it: kept). Only objects with swarm-exec's name
/// pattern and label value are taken.
pub async fn gc_sessions(
    api: &BollardApi,
    all: bool,
    dry_run: bool,
    keep_build: Option<&str>,
) -> Result<Vec<crate::gc::Collected>, ApiError> {
    use crate::gc::{Collected, Kept, Why};
    use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};
    let docker = api.docker();
    let label = format!("{HELPER_LABEL}={RELAY_KIND}");
    let filters = || std::collections::HashMap::from([("label".to_owned(), vec![label.clone()])]);
    let now = api.engine_time().await?;
    let mut found = Vec::new();

    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters()),
            ..Default::default()
        }))
        .await
        .map_err(classify)?;
    for c in containers {
        let (Some(id), Some(name)) = (c.id, c.names.and_then(|n| n.into_iter().next())) else {
            continue;
        };
        let name = name.trim_start_matches('/').to_owned();
        if !name.starts_with("swarm-exec-relay-") {
            continue;
        }
        let budget = c
            .labels
            .as_ref()
            .and_then(|l| l.get(BUDGET_LABEL))
            .and_then(|b| b.parse::<u64>().ok());
        let stale = budget
            .map(|b| c.created.unwrap_or(0).max(0) as u64 + b + crate::gc::GRACE_SECS)
            .filter(|&end| now > end)
            .map(|end| Why::Stale(now - end));
        if let Some(why) = stale.or(all.then_some(Why::All)) {
            found.push(("container", name, id, why));
        }
    }
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters()),
            ..Default::default()
        }))
        .await
        .map_err(classify)?;
    for i in images {
        let Some(tag) = i
            .repo_tags
            .iter()
            .find(|t| t.starts_with("swarm-exec-relay:"))
            .cloned()
        else {
            // Two sessions that imported the relay image at once leave the first import
            // untagged: with --all, it goes by its id (refused while a relay runs it).
            let untagged = i.repo_tags.iter().all(|t| t == "<none>:<none>");
            if all && untagged && i.labels.contains_key(BUILD_LABEL) {
                found.push((
                    "image",
                    "swarm-exec-relay (untagged)".into(),
                    i.id,
                    Why::All,
                ));
            }
            continue;
        };
        let build = i.labels.get(BUILD_LABEL).map(String::as_str);
        let why = if all {
            Why::All
        } else if build.is_some() && build != keep_build {
            Why::OtherBuild
        } else {
            continue;
        };
        found.push(("image", tag.clone(), tag, why));
    }
    if all {
        if let Ok(n) = docker.inspect_network(SESSION_NETWORK, None).await {
            let ours = n
                .labels
                .as_ref()
                .and_then(|l| l.get(HELPER_LABEL))
                .map(String::as_str)
                == Some(NETWORK_KIND);
            if let (true, Some(id)) = (ours, n.id) {
                found.push(("network", SESSION_NETWORK.to_owned(), id, Why::All));
            }
        }
    }

    let mut collected = Vec::new();
    for (kind, name, id, why) in found {
        let removed = if dry_run {
            None
        } else {
            let r = match kind {
                "container" => docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await
                    .map(|_| ()),
                "image" => docker
                    .remove_image(&id, None::<RemoveImageOptions>, None)
                    .await
                    .map(|_| ()),
                _ => docker.remove_network(&id).await,
            };
            Some(match r.map_err(classify) {
                Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
                // A network with a session on it, an image a relay runs.
                Err(ApiError::Server { status: 409, .. }) if kind != "container" => {
                    Err(Kept::InUse)
                }
                Err(e) => Err(Kept::Failed(e.to_string())),
            })
        };
        collected.push(Collected {
            kind,
            name,
            id,
            why,
            removed,
        });
    }
    Ok(collected)
}
