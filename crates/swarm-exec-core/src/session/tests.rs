//! A live session against the fake engine, on paused time: the fake's relay hands the test
//! its far end, where the test plays the helper (hello, frames, exit) or fails to. The real
//! data path is tested end to end on the lab (crates/swarm-exec/tests).

use std::sync::Arc;
use std::time::Duration;

use swarm_exec_proto::session::{halves, relay_token, Opener, Sealer, Side};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::error::FrameError;
use super::*;
use crate::engine::fake::*;
use crate::engine::{ApiError, LogStream};
use crate::helper::Carrier;
use crate::lookup::resolve::Resolved;
use crate::model::options::{HelperSource, RunOptions};

pub(crate) fn resolved() -> Resolved {
    Resolved {
        task_id: TASK.into(),
        service_id: SVC.into(),
        service_name: "web".into(),
        display: "web.1".into(),
        node_id: NODE.into(),
        node_name: "node2".into(),
        node_os: "linux".into(),
        node_arch: "x86_64".into(),
        container_id: container(),
        image: "app:1@sha256:0123".into(),
        chosen_from: None,
    }
}

fn run_options() -> RunOptions {
    RunOptions {
        command: vec!["sh".into()],
        env: vec![],
        workdir: None,
        user: None,
        privileged: false,
        timeout: Duration::from_secs(300),
        helper: HelperSource::Image("swarm-exec:test".into()),
        stdin: None,
        debug: None,
    }
}

/// The fake whose helper service goes through `states` (offset from its creation in ms).
fn fake(states: Vec<(u64, &'static str, &'static str, Option<i64>)>) -> Arc<Fake> {
    let script = Script {
        states,
        logs: vec![],
    };
    Fake::with_task(task(TASK, 1, "running", "running"), script)
}

pub(crate) fn running() -> Arc<Fake> {
    fake(vec![(0, "running", "", None)])
}

/// What a test gives the session besides the fake.
struct Call {
    input: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    stdin_prefix: Vec<u8>,
    deadline: Option<Instant>,
    /// When the caller interrupts, from the start.
    interrupt_after: Option<Duration>,
}

impl Default for Call {
    fn default() -> Self {
        Call {
            input: None,
            stdin_prefix: Vec::new(),
            deadline: Some(Instant::now() + Duration::from_secs(600)),
            interrupt_after: None,
        }
    }
}

async fn session(fake: &Arc<Fake>, call: Call) -> (Result<Outcome, SessionError>, Sink) {
    let task = resolved();
    let run = run_options();
    let carrier = Carrier::Image("sha256:feed".into());
    let req = SessionRequest {
        task: &task,
        run: &run,
        carrier: &carrier,
        tty: false,
        network: None,
        stdin_prefix: call.stdin_prefix,
        copy: None,
        forward: None,
        serve: false,
    };
    let mut sink = Sink::default();
    let cancel = async move {
        match call.interrupt_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
        Interrupt::Sigint
    };
    let sizes = futures_util::stream::pending();
    let r = remote_session(
        fake,
        req,
        call.input,
        sizes,
        &mut sink,
        call.deadline,
        cancel,
    )
    .await;
    (r, sink)
}

/// The helper's end of the relay, as the test plays it.
pub(crate) struct FarEnd {
    seal: Sealer,
    open: Opener,
    to_client: UnboundedSender<Result<(LogStream, Vec<u8>), ApiError>>,
    from_client: DuplexStream,
}

impl FarEnd {
    /// Once the client is attached to the relay and the helper exists: the client's relay
    /// token is checked, and the keys are the run's (from the envelope the helper reads).
    pub(crate) async fn connect(fake: &Arc<Fake>) -> FarEnd {
        loop {
            let attached = fake.relay.lock().unwrap().is_some();
            if attached && fake.created() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let RelayEnds {
            to_client,
            mut from_client,
        } = fake.relay.lock().unwrap().take().unwrap();
        let key = fake.envelope.lock().unwrap().as_ref().unwrap().key;
        let mut token = [0u8; 32];
        from_client.read_exact(&mut token).await.unwrap();
        assert_eq!(token, relay_token(&key), "the relay token comes first");
        let (seal, open) = halves(&key, Side::Helper);
        FarEnd {
            seal,
            open,
            to_client,
            from_client,
        }
    }

    pub(crate) fn sealed(&mut self, msg: &Msg) -> Vec<u8> {
        let mut wire = Vec::new();
        self.seal.seal(msg, &mut wire);
        wire
    }

    pub(crate) fn send_wire(&self, wire: Vec<u8>) {
        self.to_client.send(Ok((LogStream::Stdout, wire))).unwrap();
    }

    pub(crate) fn send(&mut self, msg: &Msg) {
        let wire = self.sealed(msg);
        self.send_wire(wire);
    }

    /// The next frame from the client but its heartbeats (as the helper takes them).
    pub(crate) async fn recv(&mut self) -> Msg {
        loop {
            match self.recv_any().await {
                Msg::Heartbeat => {}
                m => return m,
            }
        }
    }

    /// The next frame from the client.
    pub(crate) async fn recv_any(&mut self) -> Msg {
        loop {
            if let Some(m) = self.open.next_msg() {
                return m.expect("the client's frames open with the run's key");
            }
            let mut buf = [0u8; 4096];
            let n = self.from_client.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed the relay");
            self.open.feed(&buf[..n]);
        }
    }

    /// Hello, and the client's start in answer.
    pub(crate) async fn open(fake: &Arc<Fake>) -> FarEnd {
        let mut far = FarEnd::connect(fake).await;
        far.send(&Msg::Hello);
        assert_eq!(far.recv().await, Msg::Start);
        far
    }
}

use swarm_exec_proto::session::Msg;

/// Nothing the session made is left: its helper, its envelope secret, its relay.
pub(crate) fn nothing_left(fake: &Fake) {
    let order = fake.removal_order();
    if fake.created() > 0 {
        assert!(fake.removed().contains(&HELPER_ID.to_owned()), "{order:?}");
    }
    for name in fake.secrets.lock().unwrap().iter() {
        assert!(order.contains(&format!("secret-{name}")), "{order:?}");
    }
    let relays = fake.removed_containers.lock().unwrap().clone();
    assert!(
        relays
            .iter()
            .all(|r| r.starts_with("relay-swarm-exec-relay-")),
        "{relays:?}"
    );
}

/// The relay was made and removed (once).
fn relay_removed(fake: &Fake) {
    assert_eq!(fake.removed_containers.lock().unwrap().len(), 1);
}

fn failure(r: Result<Outcome, SessionError>) -> SessionFailure {
    match r {
        Err(e) => {
            assert_eq!(e.at.node, "node2");
            e.source
        }
        Ok(o) => panic!("the session did not fail: {o:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn output_and_exit_code_come_through_the_relay_and_everything_is_removed_in_order() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Stdout(b"hello\n".to_vec()));
        far.send(&Msg::Stderr(b"oops".to_vec()));
        far.send(&Msg::Exit {
            code: 7,
            stdout: 6,
            stderr: 4,
        });
        far
    };
    let ((r, sink), _far) = tokio::join!(session(&fake, Call::default()), helper);
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(sink.out, b"hello\n");
    assert_eq!(sink.err, b"oops");
    assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
    nothing_left(&fake);
    relay_removed(&fake);
    // The helper first (it holds the secret), then its secret, then the relay, then the
    // session's own network.
    let order = fake.removal_order();
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(order[0], HELPER_ID);
    assert!(order[1].starts_with("secret-swarm-exec-run-"), "{order:?}");
    assert!(order[2].starts_with("relay-"), "{order:?}");
    // The session made a network of its own, on a /24 of 10.160.0.0/11, and the helper
    // joined it and was told where the relay is.
    let made = fake.networks_made.lock().unwrap().clone();
    assert_eq!(made.len(), 1, "{made:?}");
    let (name, subnet) = &made[0];
    assert!(name.starts_with("swarm-exec-session-"), "{name}");
    let subnet = subnet.as_deref().expect("a subnet of its own");
    let octets: Vec<u32> = subnet
        .trim_end_matches(".0/24")
        .split('.')
        .map(|o| o.parse().unwrap())
        .collect();
    assert!(
        octets.len() == 3 && octets[0] == 10 && (160..192).contains(&octets[1]) && octets[2] < 256,
        "{subnet}"
    );
    assert_eq!(order[3], format!("net-{name}"));
    let spec = fake.created.lock().unwrap()[0].clone();
    assert_eq!(spec.network.as_deref(), Some(order[3].as_str()));
    let envelope = fake.envelope.lock().unwrap().clone().unwrap();
    let session = envelope.session.unwrap();
    assert_eq!(session.relay, "10.0.9.2:7373");
    assert!(envelope.stdin.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_exit_whose_counts_disagree_with_what_arrived_is_no_exit_code() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Stdout(b"hello".to_vec()));
        far.send(&Msg::Exit {
            code: 0,
            stdout: 9,
            stderr: 0,
        });
        far
    };
    let ((r, _), _far) = tokio::join!(session(&fake, Call::default()), helper);
    match failure(r) {
        SessionFailure::Count {
            stream: "stdout",
            declared: 9,
            received: 5,
        } => {}
        other => panic!("{other:?}"),
    }
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_relay_never_paired_warns_then_gives_up_after_the_hello_wait() {
    let fake = running();
    let start = Instant::now();
    let (r, sink) = session(&fake, Call::default()).await;
    match failure(r) {
        SessionFailure::NoHello { node, .. } => assert_eq!(node, "node2"),
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited >= HELLO_WAIT, "{waited:?}");
    assert!(waited < HELLO_WAIT + Duration::from_secs(1), "{waited:?}");
    assert_eq!(sink.warnings.len(), 1, "{:?}", sink.warnings);
    assert!(sink.warnings[0].contains("no connection yet from the helper on node node2"));
    nothing_left(&fake);
    relay_removed(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_helper_ends_the_session_with_the_nodes_reason() {
    let fake = fake(vec![
        (0, "pending", "", None),
        (400, "rejected", "no such image: app:1", None),
    ]);
    let start = Instant::now();
    let (r, _) = session(&fake, Call::default()).await;
    match failure(r) {
        SessionFailure::HelperEnded { state, reason } => {
            assert_eq!(state, "rejected");
            assert_eq!(reason, "no such image: app:1");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.created(), 1, "no second helper: the node said why");
    nothing_left(&fake);
}

/// A helper whose container the engine could not even create (the secrets tmpfs remount
/// race, moby/moby#48783) ran nothing: one new helper and envelope are tried, and the
/// first pair is removed before it.
#[tokio::test(start_paused = true)]
async fn a_helper_that_never_started_is_tried_once_more() {
    const RACE: &str = "starting container failed: unable to remount dir as readonly: mount \
                        tmpfs:/var/lib/docker/containers/x/mounts/secrets, flags: 0x21";
    let fake = fake(vec![(0, "pending", "", None), (300, "failed", RACE, None)]);
    let (r, _) = session(&fake, Call::default()).await;
    // The fake's second helper fails the same way: then the session does.
    match failure(r) {
        SessionFailure::HelperEnded { state, reason } => {
            assert_eq!(state, "failed");
            assert!(reason.contains("unable to remount"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.created(), 2, "one new helper, no more");
    let secrets = fake.secrets.lock().unwrap().clone();
    assert_eq!(secrets.len(), 2, "an envelope for each: {secrets:?}");
    // The first helper and its envelope went before the second pair was made.
    let order = fake.removal_order();
    let first_secret = format!("secret-{}", secrets[0]);
    assert_eq!(
        order[..2],
        [HELPER_ID.to_owned(), first_secret],
        "{order:?}"
    );
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_helper_that_never_runs_fails_after_the_start_wait() {
    let fake = fake(vec![(0, "pending", "", None)]);
    let (r, _) = session(&fake, Call::default()).await;
    match failure(r) {
        SessionFailure::NotStarted(waited, state) => {
            assert_eq!(waited, START_WAIT);
            assert_eq!(state, "pending");
        }
        other => panic!("{other:?}"),
    }
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_helper_that_ends_without_its_exit_frame_gives_no_exit_code() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Stdout(b"partial".to_vec()));
        far.to_client
            .send(Ok((LogStream::Stderr, b"helper went away".to_vec())))
            .unwrap();
        // The relay's stream ends: the helper (or the relay) is gone.
        drop(far.to_client);
    };
    let ((r, sink), ()) = tokio::join!(session(&fake, Call::default()), helper);
    match failure(r) {
        SessionFailure::Cut(relay) => assert_eq!(relay, "helper went away"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sink.out, b"partial", "what arrived was passed on");
    nothing_left(&fake);
    relay_removed(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_relay_connection_that_breaks_mid_stream_fails_the_session() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Stdout(b"some".to_vec()));
        far.to_client
            .send(Err(ApiError::Connect("connection reset by peer".into())))
            .unwrap();
        far
    };
    let ((r, _), _far) = tokio::join!(session(&fake, Call::default()), helper);
    match failure(r) {
        SessionFailure::ReadRelay(ApiError::Connect(m)) => assert!(m.contains("reset")),
        other => panic!("{other:?}"),
    }
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_forged_frame_is_refused() {
    let fake = running();
    let helper = async {
        let far = FarEnd::open(&fake).await;
        // Sealed with another key: what a stranger on the overlay could send.
        let (mut forger, _) = halves(&[9; 32], Side::Helper);
        let mut wire = Vec::new();
        forger.seal(&Msg::Hello, &mut wire);
        forger.seal(
            &Msg::Exit {
                code: 0,
                stdout: 0,
                stderr: 0,
            },
            &mut wire,
        );
        far.send_wire(wire);
        far
    };
    let ((r, _), _far) = tokio::join!(session(&fake, Call::default()), helper);
    match failure(r) {
        SessionFailure::Refused(FrameError::Unauthentic { .. }) => {}
        other => panic!("{other:?}"),
    }
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn frames_out_of_order_are_refused() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        let first = far.sealed(&Msg::Stdout(b"one".to_vec()));
        let second = far.sealed(&Msg::Exit {
            code: 0,
            stdout: 3,
            stderr: 0,
        });
        // The exit before the output it counts: a reordering on the way.
        far.send_wire(second);
        far.send_wire(first);
        far
    };
    let ((r, sink), _far) = tokio::join!(session(&fake, Call::default()), helper);
    match failure(r) {
        // The opener expects the output (frame 1) and finds the exit in its place.
        SessionFailure::Refused(FrameError::Unauthentic { seq: 1 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(sink.out.is_empty());
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn stdin_goes_through_in_order_after_its_prefix_and_its_end_is_sent() {
    let fake = running();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let feeder = async move {
        tx.send(b"two ".to_vec()).await.unwrap();
        tx.send(b"three".to_vec()).await.unwrap();
        // The input ends here (its reader stopped: at its end, or on a failed read).
    };
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        let mut got = Vec::new();
        loop {
            match far.recv().await {
                Msg::Stdin(b) => got.extend_from_slice(&b),
                Msg::StdinEof => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, b"one two three");
        far.send(&Msg::Exit {
            code: 0,
            stdout: 0,
            stderr: 0,
        });
        far
    };
    let call = Call {
        input: Some(rx),
        stdin_prefix: b"one ".to_vec(),
        ..Call::default()
    };
    let ((r, _), (), _far) = tokio::join!(session(&fake, call), feeder, helper);
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    let envelope = fake.envelope.lock().unwrap().clone().unwrap();
    assert!(
        envelope.session.unwrap().stdin,
        "the helper is told stdin comes"
    );
    nothing_left(&fake);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_while_the_command_runs_ends_the_session_and_removes_everything() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Stdout(b"working".to_vec()));
        far
    };
    let start = Instant::now();
    let call = Call {
        deadline: Some(start + Duration::from_secs(20)),
        ..Call::default()
    };
    let ((r, sink), _far) = tokio::join!(session(&fake, call), helper);
    assert_eq!(r.unwrap(), Outcome::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert_eq!(sink.out, b"working");
    nothing_left(&fake);
    relay_removed(&fake);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_each_create_removes_what_that_create_made_by_name() {
    for (what, prefix) in [
        (Creating::Relay, "swarm-exec-relay-"),
        (Creating::Secret, "swarm-exec-run-"),
        (Creating::Helper, "swarm-exec-"),
    ] {
        let fake = running();
        *fake.create_delay.lock().unwrap() = Some((what, Duration::from_secs(5)));
        let call = Call {
            interrupt_after: Some(Duration::from_secs(1)),
            ..Call::default()
        };
        let (r, _) = session(&fake, call).await;
        assert_eq!(
            r.unwrap(),
            Outcome::Interrupted(Interrupt::Sigint),
            "{what:?}"
        );
        let named = fake.removed_named.lock().unwrap().clone();
        assert_eq!(named.len(), 1, "{what:?}: {named:?}");
        assert!(named[0].starts_with(prefix), "{what:?}: {named:?}");
        // What was made before is removed as usual.
        let relays = fake.removed_containers.lock().unwrap().len();
        assert_eq!(relays, usize::from(what != Creating::Relay), "{what:?}");
        if what == Creating::Helper {
            let secrets = fake.secrets.lock().unwrap().clone();
            assert_eq!(secrets.len(), 1);
            assert!(fake
                .removal_order()
                .contains(&format!("secret-{}", secrets[0])));
        }
        assert_eq!(fake.created(), 0, "{what:?}: no helper was made");
    }
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_cannot_be_created_fails_at_that_step_with_nothing_made() {
    let fake = running();
    *fake.relay_error.lock().unwrap() = Some(ApiError::Server {
        status: 500,
        message: "no space left".into(),
    });
    let (r, _) = session(&fake, Call::default()).await;
    match failure(r) {
        SessionFailure::CreateRelay(ApiError::Server { status: 500, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.created(), 0);
    assert!(fake.secrets.lock().unwrap().is_empty());
    // Only the session's network had been made: it goes.
    let made = fake.networks_made.lock().unwrap().clone();
    assert_eq!(made.len(), 1);
    assert_eq!(fake.removal_order(), [format!("net-{}", made[0].0)]);
}

#[tokio::test(start_paused = true)]
async fn a_helper_that_beats_then_falls_silent_ends_the_session_naming_its_node() {
    let fake = running();
    let opened = std::sync::Mutex::new(None);
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        far.send(&Msg::Heartbeat);
        far.send(&Msg::Stdout(b"partial".to_vec()));
        *opened.lock().unwrap() = Some(Instant::now());
        // Then nothing, the relay still attached: a node cut off.
        far
    };
    let ((r, sink), _far) = tokio::join!(session(&fake, Call::default()), helper);
    let silent_for = opened.lock().unwrap().unwrap().elapsed();
    match failure(r) {
        SessionFailure::Silent { node, after } => {
            assert_eq!(node, "node2");
            assert_eq!(after, swarm_exec_proto::session::SILENCE_LIMIT);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        silent_for >= Duration::from_secs(8) && silent_for < Duration::from_secs(9),
        "{silent_for:?}"
    );
    assert_eq!(sink.out, b"partial", "what came before the silence is kept");
    nothing_left(&fake);
    relay_removed(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_helper_that_does_not_beat_is_never_taken_for_gone() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        // A helper of an earlier build: a command quiet for a minute, then its end.
        tokio::time::sleep(Duration::from_secs(60)).await;
        far.send(&Msg::Stdout(b"late\n".to_vec()));
        far.send(&Msg::Exit {
            code: 0,
            stdout: 5,
            stderr: 0,
        });
        far
    };
    let ((r, sink), _far) = tokio::join!(session(&fake, Call::default()), helper);
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    assert_eq!(sink.out, b"late\n");
}

#[tokio::test(start_paused = true)]
async fn the_client_beats_every_two_seconds_and_a_beating_helper_keeps_it_waiting() {
    let fake = running();
    let helper = async {
        let mut far = FarEnd::open(&fake).await;
        let start = Instant::now();
        let mut beats = Vec::new();
        // Thirty seconds of a quiet command whose helper beats: the client waits on, and
        // beats itself.
        while start.elapsed() < Duration::from_secs(30) {
            far.send(&Msg::Heartbeat);
            let next = Instant::now() + Duration::from_secs(2);
            while Instant::now() < next {
                let got = tokio::time::timeout_at(next, far.recv_any()).await;
                if let Ok(m) = got {
                    assert_eq!(m, Msg::Heartbeat, "nothing else was asked for");
                    beats.push(start.elapsed());
                }
            }
        }
        far.send(&Msg::Exit {
            code: 4,
            stdout: 0,
            stderr: 0,
        });
        (far, beats)
    };
    let ((r, _sink), (_far, beats)) = tokio::join!(session(&fake, Call::default()), helper);
    assert_eq!(r.unwrap(), Outcome::Exited(4));
    assert!((14..=16).contains(&beats.len()), "{beats:?}");
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1900) && gap <= Duration::from_millis(2100),
            "{beats:?}"
        );
    }
}
