//! One session's course, phase by phase: the relay and the network, the envelope and the
//! helper, the helper's hello, then the sealed frames both ways until the command's exit.

use futures_util::{Stream, StreamExt};
use swarm_exec_proto::envelope::{CopySpec, SessionSpec};
use swarm_exec_proto::session::{
    halves, relay_token, Msg, Opener, Sealer, Side, HEARTBEAT_EVERY, SILENCE_LIMIT,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Duration, Instant};

use super::error::{FrameError, SessionFailure, OPEN_PORTS};
use super::network;
use super::relay::{self, RELAY_PORT};
use super::request::{Decide, SessionRequest, HELLO_WAIT, HELLO_WARN, POLL, START_WAIT};
use super::teardown::{Asked, Made};
use crate::engine::{InputSink, LogStream, OutputStream, SwarmApi, TaskFilter};
use crate::helper::helper_spec;
use crate::helper::lifecycle::{create_envelope_named, envelope_name};
use crate::model::labels::{
    HELPER_LABEL, NETWORK_KIND, RELAY_NODE_LABEL, SESSION_LABEL, TARGET_CONTAINER_LABEL,
    TARGET_SERVICE_LABEL, TARGET_TASK_LABEL,
};
use crate::model::outcome::Outcome;
use crate::model::state::TaskState;
use crate::sink::OutputSink;

/// What the caller brings to a session: its input, cp's decision, the terminal's sizes.
pub(super) struct Io<S> {
    pub(super) input: Option<mpsc::Receiver<Vec<u8>>>,
    pub(super) decide: Option<Decide>,
    pub(super) sizes: S,
}

/// The client's end of the relay: what comes from it, opened, and what the relay itself
/// said on its stderr (for messages).
struct Link {
    from_relay: OutputStream,
    open: Opener,
    relay_said: String,
}

/// What a piece of the relay's output brought.
enum Read {
    Frames,
    Said,
}

impl Link {
    /// The next piece from the relay: frames fed to the opener, or words of the relay's.
    async fn read(&mut self) -> Result<Read, SessionFailure> {
        match self.from_relay.next().await {
            Some(Ok((LogStream::Stdout, bytes))) => {
                self.open.feed(&bytes);
                Ok(Read::Frames)
            }
            Some(Ok((LogStream::Stderr, bytes))) => {
                self.relay_said
                    .push_str(String::from_utf8_lossy(&bytes).trim());
                Ok(Read::Said)
            }
            Some(Err(e)) => Err(SessionFailure::ReadRelay(e)),
            None => Err(SessionFailure::Cut(std::mem::take(&mut self.relay_said))),
        }
    }
}

/// The whole session, to the command's outcome; what it makes goes into `made`.
pub(super) async fn run<A, S, O>(
    api: &A,
    req: &SessionRequest<'_>,
    tag: &str,
    io: Io<S>,
    out: &mut O,
    made: &mut Made,
    deadline: Instant,
) -> Result<Outcome, SessionFailure>
where
    A: SwarmApi,
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
{
    let started = Instant::now();
    let network_name = req
        .network
        .map_or_else(|| network::own_name(tag), str::to_owned);
    // The relay's node, then the network, which names it; meanwhile the relay's image.
    let network = session_network(api, req, tag, &network_name, made, started);
    let (image, (network, relay_node)) =
        tokio::try_join!(relay::image(api, &req.run.helper), network)?;
    let budget = deadline.saturating_duration_since(Instant::now());
    let relay = relay::start(api, req, tag, &image, network, budget, made, out).await?;
    let relay::Relay {
        id: relay_id,
        network,
        attach,
    } = relay;
    let mut to_relay = attach.input;
    let key = swarm_exec_proto::Envelope::new_key()
        .map_err(|e| SessionFailure::WriteRelay(std::io::Error::other(e)))?;
    to_relay
        .write_all(&relay_token(&key))
        .await
        .map_err(SessionFailure::WriteRelay)?;
    let ip = api
        .container_address(&relay_id, &network)
        .await
        .map_err(SessionFailure::StartRelay)?
        .ok_or_else(|| SessionFailure::RelayAddress(network_name.clone()))?;
    tracing::debug!(relay = %relay_id, %ip, ms = started.elapsed().as_millis(), "relay started");

    let relay_at = format!("{ip}:{RELAY_PORT}");
    let at = RelayAt {
        address: &relay_at,
        network: &network,
        node: &relay_node,
    };
    let stdin = io.input.is_some();
    let mut helper = start_helper(api, req, tag, key, &at, budget, stdin, made).await?;
    tracing::debug!(helper = %helper, ms = started.elapsed().as_millis(), "helper created");

    let (mut seal, open) = halves(&key, Side::Client);
    let mut link = Link {
        from_relay: attach.output,
        open,
        relay_said: String::new(),
    };
    let mut retried = false;
    loop {
        match await_hello(api, req, &helper, &mut link, out, started).await {
            // Its program never started, so nothing ran: one new helper (and envelope),
            // as the log path does. The relay still waits for its one connection.
            Err(SessionFailure::HelperEnded { reason, .. })
                if !retried && crate::model::state::never_started(&reason) =>
            {
                retried = true;
                tracing::debug!(%reason, "helper never started; a new one");
                made.remove_helper(api, out).await;
                helper = start_helper(api, req, tag, key, &at, budget, stdin, made).await?;
            }
            r => break r?,
        }
    }
    tracing::debug!(ms = started.elapsed().as_millis(), "helper connected");
    let mut wire = Vec::new();
    seal.seal(&Msg::Start, &mut wire);
    to_relay
        .write_all(&wire)
        .await
        .map_err(SessionFailure::WriteRelay)?;
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        "session open: command started"
    );
    pump(req, link, to_relay, seal, io, out).await
}

/// The network the session uses (the operator's, or one of its own made now) once it is
/// ready, and the swarm node of the engine the relay will run on.
async fn session_network<A: SwarmApi>(
    api: &A,
    req: &SessionRequest<'_>,
    tag: &str,
    network_name: &str,
    made: &mut Made,
    started: Instant,
) -> Result<(String, String), SessionFailure> {
    let node = api
        .own_node_id()
        .await
        .map_err(SessionFailure::StartRelay)?
        .unwrap_or_default();
    let network = match req.network {
        Some(name) => network::ready(api, name, name).await?,
        None => {
            let labels = [
                (HELPER_LABEL.to_owned(), NETWORK_KIND.to_owned()),
                (SESSION_LABEL.to_owned(), tag.to_owned()),
                (RELAY_NODE_LABEL.to_owned(), node.clone()),
                (
                    TARGET_SERVICE_LABEL.to_owned(),
                    req.task.service_name.clone(),
                ),
            ];
            let made_it = Asked::Network(network_name.to_owned());
            let id = made
                .asking(made_it, network::create_own(api, tag, &labels))
                .await?;
            made.network = Some(id.clone());
            network::ready(api, network_name, &id).await?
        }
    };
    tracing::debug!(name = %network_name, ms = started.elapsed().as_millis(), "session network ready");
    Ok((network, node))
}

/// Where the session's relay is: its address, its network, the swarm node of its engine.
struct RelayAt<'a> {
    address: &'a str,
    network: &'a str,
    node: &'a str,
}

/// The run's envelope (its relay, key and what to do) and the helper that reads it, on
/// the session's network; both into `made`. Returns the helper's ID.
#[allow(clippy::too_many_arguments)]
async fn start_helper<A: SwarmApi>(
    api: &A,
    req: &SessionRequest<'_>,
    tag: &str,
    key: [u8; 32],
    relay: &RelayAt<'_>,
    budget: Duration,
    stdin: bool,
    made: &mut Made,
) -> Result<String, SessionFailure> {
    let mut envelope = req.run.envelope(budget).map_err(SessionFailure::Invalid)?;
    envelope.key = key;
    envelope.stdin = None;
    envelope.session = Some(SessionSpec {
        relay: relay.address.to_owned(),
        tty: req.tty,
        stdin,
        copy: req.copy.as_ref().map(|c| CopySpec {
            out: c.out,
            path: c.path.clone(),
        }),
        forward: req.forward.clone(),
        serve: req.serve,
    });
    // Its relay's liveness is the session's: see SESSION_LABEL.
    let target_labels = vec![
        (SESSION_LABEL.to_owned(), tag.to_owned()),
        (RELAY_NODE_LABEL.to_owned(), relay.node.to_owned()),
        (TARGET_TASK_LABEL.to_owned(), req.task.task_id.clone()),
        (
            TARGET_SERVICE_LABEL.to_owned(),
            req.task.service_name.clone(),
        ),
        (
            TARGET_CONTAINER_LABEL.to_owned(),
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
        .map_err(SessionFailure::Envelope)?;
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
    spec.network = Some(relay.network.to_owned());
    let helper = made
        .asking(Asked::Helper(spec.name.clone()), api.create_service(&spec))
        .await
        .map_err(SessionFailure::CreateHelper)?;
    made.helper = Some(helper.clone());
    Ok(helper)
}

/// Until the helper's hello: its task is watched (it may end, or never start), the user
/// warned once when it is slow to connect, and the session given up after [`HELLO_WAIT`].
async fn await_hello<A: SwarmApi, O: OutputSink>(
    api: &A,
    req: &SessionRequest<'_>,
    helper: &str,
    link: &mut Link,
    out: &mut O,
    started: Instant,
) -> Result<(), SessionFailure> {
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
            read = link.read() => {
                if let Read::Frames = read? {
                    match link.open.next_msg() {
                        None => {}
                        Some(Ok(Msg::Hello)) => return Ok(()),
                        Some(Ok(_)) => {
                            return Err(SessionFailure::Refused(FrameError::Malformed {
                                seq: 0,
                                what: "not a hello",
                            }))
                        }
                        Some(Err(e)) => return Err(SessionFailure::Refused(e)),
                    }
                }
            }
            _ = sleep_until(next_poll) => {
                next_poll = Instant::now() + POLL;
                helper_state(api, helper, started, &mut running_since).await?;
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
                    relay: std::mem::take(&mut link.relay_said),
                });
            }
        }
    }
}

/// One look at the helper's task before its hello: running (noted once), ended (the
/// session fails with its reason), or not started within [`START_WAIT`].
async fn helper_state<A: SwarmApi>(
    api: &A,
    helper: &str,
    started: Instant,
    running_since: &mut Option<Instant>,
) -> Result<(), SessionFailure> {
    let filter = TaskFilter {
        service: Some(helper.to_owned()),
        ..Default::default()
    };
    let tasks = api.list_tasks(&filter).await.unwrap_or_default();
    match tasks.first().map(|t| (t, &t.state)) {
        Some((_, TaskState::Running)) => {
            running_since.get_or_insert_with(|| {
                tracing::debug!(ms = started.elapsed().as_millis(), "helper running");
                Instant::now()
            });
        }
        Some((t, state)) if state.is_final() => {
            let reason = [t.err.as_str(), t.message.as_str()]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default()
                .to_owned();
            return Err(SessionFailure::HelperEnded {
                state: state.to_string(),
                reason,
            });
        }
        found if started.elapsed() > START_WAIT => {
            let state = found.map_or_else(|| "none".to_owned(), |(_, s)| s.to_string());
            return Err(SessionFailure::NotStarted(START_WAIT, state));
        }
        _ => {}
    }
    Ok(())
}

/// The open session's state on the client's side.
struct Pump<'r, O> {
    req: &'r SessionRequest<'r>,
    out: &'r mut O,
    seal: Sealer,
    to_relay: mpsc::Sender<Vec<u8>>,
    decide: Option<Decide>,
    /// Bytes of stdout and stderr received, checked against the exit's counts.
    received: [u64; 2],
    /// Into a container, the archive waits for the helper's stat and the client's answer.
    input_ready: bool,
    /// The helper sends heartbeats (helpers of earlier builds do not): only then is its
    /// silence a sign that it is gone.
    beating: bool,
}

impl<O: OutputSink> Pump<'_, O> {
    /// Acts on the frames already opened; the command's outcome once it is known.
    async fn take_frames(&mut self, link: &mut Link) -> Result<Option<Outcome>, SessionFailure> {
        while let Some(m) = link.open.next_msg() {
            match m.map_err(SessionFailure::Refused)? {
                Msg::Stdout(b) => {
                    self.received[0] += b.len() as u64;
                    self.out.stdout(&b);
                }
                Msg::Stderr(b) => {
                    self.received[1] += b.len() as u64;
                    self.out.stderr(&b);
                }
                Msg::Exit {
                    code,
                    stdout,
                    stderr,
                } => return self.exit(code, stdout, stderr).map(Some),
                Msg::Failed(reason) => return Err(SessionFailure::Failed(reason)),
                Msg::TimedOut { stopped } => {
                    if !stopped {
                        self.out.warn(&format!(
                            "the command in {} was told to stop at its deadline, but could not \
                             be seen to end",
                            self.req.task.describe()
                        ));
                    }
                    return Ok(Some(Outcome::TimedOut));
                }
                Msg::Stat(mode) => self.put_into(mode).await?,
                Msg::Heartbeat => self.beating = true,
                _ => {}
            }
        }
        Ok(None)
    }

    /// The exit, once every byte it declares has arrived.
    fn exit(&self, code: i64, stdout: u64, stderr: u64) -> Result<Outcome, SessionFailure> {
        for (stream, declared, got) in [
            ("stdout", stdout, self.received[0]),
            ("stderr", stderr, self.received[1]),
        ] {
            if declared != got {
                return Err(SessionFailure::Count {
                    stream,
                    declared,
                    received: got,
                });
            }
        }
        Ok(Outcome::Exited(code))
    }

    /// cp into a container: the helper's stat of the destination is answered with the
    /// directory to unpack in; the archive may then flow.
    async fn put_into(&mut self, mode: Option<u32>) -> Result<(), SessionFailure> {
        let decide = self
            .decide
            .take()
            .ok_or(SessionFailure::Refused(FrameError::Malformed {
                seq: 0,
                what: "a stat that was not asked for",
            }))?;
        let dir = decide(mode).map_err(SessionFailure::Copy)?;
        let mut wire = Vec::new();
        self.seal.seal(&Msg::PutInto(dir), &mut wire);
        self.to_relay
            .send(wire)
            .await
            .map_err(|_| SessionFailure::WriteRelay(std::io::ErrorKind::BrokenPipe.into()))?;
        self.input_ready = true;
        Ok(())
    }

    /// Seals `msg` into a send already reserved (a sealed frame that was not sent would
    /// break the sequence).
    fn send(&mut self, permit: mpsc::Permit<'_, Vec<u8>>, msg: &Msg) {
        let mut wire = Vec::new();
        self.seal.seal(msg, &mut wire);
        permit.send(wire);
    }
}

/// The open session: frames from the relay to the sink, stdin and resizes to the relay,
/// until the command's exit (or the session's failure).
async fn pump<S, O>(
    req: &SessionRequest<'_>,
    mut link: Link,
    mut to_relay: InputSink,
    seal: Sealer,
    io: Io<S>,
    out: &mut O,
) -> Result<Outcome, SessionFailure>
where
    S: Stream<Item = (u16, u16)> + Unpin,
    O: OutputSink,
{
    // What goes to the relay is written by a future of its own, so that reading never
    // waits on writing (a command that echoes its input would otherwise block both ends).
    let (sender, mut outgoing) = mpsc::channel::<Vec<u8>>(8);
    let writer = async {
        while let Some(bytes) = outgoing.recv().await {
            to_relay.write_all(&bytes).await?;
        }
        std::future::pending::<std::io::Result<()>>().await
    };
    tokio::pin!(writer);
    let Io {
        mut input,
        decide,
        mut sizes,
    } = io;
    let mut pump = Pump {
        req,
        out,
        seal,
        to_relay: sender.clone(),
        input_ready: decide.is_none(),
        decide,
        received: [0; 2],
        beating: false,
    };
    if !req.stdin_prefix.is_empty() {
        if let Ok(p) = sender.reserve().await {
            pump.send(p, &Msg::Stdin(req.stdin_prefix.clone()));
        }
    }
    let mut sizes_open = req.tty;
    let mut write_failed = false;
    let mut beat = tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        // Frames already received (some may have come with the hello) first.
        if let Some(outcome) = pump.take_frames(&mut link).await? {
            return Ok(outcome);
        }
        tokio::select! {
            // What arrived first: an exit frame already in must win over a failed write,
            // and over silence (a client that was itself held up finds frames waiting).
            biased;
            read = link.read() => {
                if let Read::Frames = read? {
                    heard = Instant::now();
                }
            }
            () = sleep_until(heard + SILENCE_LIMIT), if pump.beating => {
                return Err(SessionFailure::Silent {
                    node: req.task.node_name.clone(),
                    after: SILENCE_LIMIT,
                });
            }
            _ = beat.tick(), if !write_failed => {
                // Anything queued for the relay says as much; a full queue needs no more.
                if let Ok(p) = sender.try_reserve() {
                    pump.send(p, &Msg::Heartbeat);
                }
            }
            r = &mut writer, if !write_failed => {
                // The command may have ended without reading all its input (the relay is
                // gone): what it wrote and its exit may still be in; stop sending, read on.
                tracing::debug!(error = ?r.err(), "writing to the relay failed; reading on");
                write_failed = true;
                input = None;
                sizes_open = false;
            }
            (permit, chunk) = async {
                let permit = sender.reserve().await;
                (permit, input.as_mut().expect("guarded").recv().await)
            }, if input.is_some() && pump.input_ready && !write_failed => {
                let Ok(permit) = permit else {
                    return Err(SessionFailure::WriteRelay(std::io::ErrorKind::BrokenPipe.into()));
                };
                match chunk {
                    Some(bytes) => pump.send(permit, &Msg::Stdin(bytes)),
                    None => {
                        pump.send(permit, &Msg::StdinEof);
                        input = None;
                    }
                }
            }
            (permit, size) = async { (sender.reserve().await, sizes.next().await) }, if sizes_open => {
                match (permit, size) {
                    (Ok(p), Some((rows, cols))) => pump.send(p, &Msg::Resize { rows, cols }),
                    _ => sizes_open = false,
                }
            }
        }
    }
}
