//! `--persist`: a keeper — a background process of the user's — holds one live session per
//! node with a standing helper that runs many commands (see the node side's `serve`), so
//! that a run after the first pays neither a helper's scheduling nor a session's opening.
//! Runs come to the keeper from client processes over a connection each (the binary's
//! unix socket; here any byte stream), as [`swarm_exec_proto::serve`] frames with id 0;
//! the keeper gives each an id on its node's session and passes frames both ways.
//!
//! What a keeper makes is what a session makes — a relay, a network, an envelope and a
//! helper, labelled, leased by the relay's attach (see [`crate::gc`]) — and it all goes
//! when the keeper ends its sessions: after its idle time with no run, on `persist stop`,
//! or when it is killed (then the next `gc`). A session that breaks is dropped, its runs
//! told so (their outcome is not known); the next run to that node opens a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_exec_proto::serve::{Decoder, Frame, RunSpec, GRANT_EVERY, WINDOW};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::engine::SwarmApi;
use crate::lookup::resolve::Resolved;
use crate::model::options::{HelperSource, RunOptions};
use crate::model::outcome::{Interrupt, Outcome};
use crate::session::{remote_session, SessionRequest};
use crate::sink::OutputSink;
use crate::task_exec::carrier_for;

/// Why a run is refused by a keeper that is ending (its client starts another).
pub const ENDING: &str = "the keeper is ending";

/// The most input a run's client may send (its whole stdin, a secret's worth at most).
const MAX_INPUT: usize = 4 << 20;

/// What a client asks the keeper for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeeperRun {
    /// The task, as the client found it: its node's session runs the command.
    pub task: Resolved,
    pub run: RunSpec,
    /// The keeper's idle time from now on (the last run's `--persist` wins).
    pub idle_ms: u64,
}

/// `persist status` and `persist stop`, and the keeper's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum Control {
    Status,
    Stop,
}

/// What stands: the keeper's answer to [`Control`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Standing {
    pub pid: u32,
    /// How long the keeper stays with no run.
    pub idle_ms: u64,
    /// How long it has had none (0 while runs go on).
    pub idle_for_ms: u64,
    pub runs_served: u64,
    pub sessions: Vec<StandingSession>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StandingSession {
    pub node: String,
    /// The task the session's helper was made for (it serves any task on its node).
    pub opened_for: String,
    pub open_for_ms: u64,
    pub runs_now: usize,
}

/// A keeper's sessions and runs. One per process; the caller accepts connections and
/// hands each to [`Keeper::serve_client`], and ends when [`Keeper::done`] resolves.
pub struct Keeper<A> {
    api: A,
    helper: HelperSource,
    nodes: Mutex<HashMap<String, Arc<NodeLink>>>,
    clock: Mutex<Clock>,
    /// Set once the keeper is to end: sessions are closed, clients refused.
    ending: watch::Sender<bool>,
    /// The sessions' tasks, to wait for their removal at the end.
    sessions: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Clock {
    idle: Duration,
    active: usize,
    last: Instant,
    served: u64,
}

/// One node's session, as its runs see it.
struct NodeLink {
    node: String,
    opened_for: String,
    since: Instant,
    /// Frames for the helper (the session's input).
    input: mpsc::Sender<Vec<u8>>,
    runs: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    /// Why the session ended, once it has: runs that come after are told.
    ended: Mutex<Option<String>>,
}

/// One run, as its node's session sees it.
struct Slot {
    /// The run's frames from the helper.
    to_client: mpsc::UnboundedSender<Frame>,
    /// What the helper has granted of the run's input and the keeper not yet sent.
    input_window: Arc<Semaphore>,
}

impl NodeLink {
    /// Tells every run of the session that it ended, and why; later runs are told at once.
    fn close(&self, why: &str) {
        *self.ended.lock().expect("not poisoned") = Some(why.to_owned());
        for (id, slot) in self.runs.lock().expect("not poisoned").drain() {
            let reason = why.to_owned();
            let _ = slot.to_client.send(Frame::Failed { id, reason });
        }
    }
}

impl<A: SwarmApi + Clone + 'static> Keeper<A> {
    pub fn new(api: A, helper: HelperSource, idle: Duration) -> Arc<Keeper<A>> {
        Arc::new(Keeper {
            api,
            helper,
            nodes: Mutex::default(),
            clock: Mutex::new(Clock {
                idle,
                active: 0,
                last: Instant::now(),
                served: 0,
            }),
            ending: watch::channel(false).0,
            sessions: Mutex::default(),
        })
    }

    /// Resolves when the keeper is to end: its idle time passed with no run, or it was
    /// told to stop. Then [`Keeper::close`].
    pub async fn done(&self) {
        let mut ending = self.ending.subscribe();
        loop {
            let wake = {
                let c = self.clock.lock().expect("not poisoned");
                (c.active == 0).then(|| c.last + c.idle)
            };
            let idle = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = idle => {
                    let c = self.clock.lock().expect("not poisoned");
                    if c.active == 0 && c.last.elapsed() >= c.idle {
                        break;
                    }
                }
                _ = ending.wait_for(|e| *e) => break,
                // A run began or ended: the idle time is counted again.
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        self.ending.send_replace(true);
    }

    /// Ends every session (each removes what it made) and waits until they have.
    pub async fn close(&self) {
        self.ending.send_replace(true);
        let sessions = std::mem::take(&mut *self.sessions.lock().expect("not poisoned"));
        for s in sessions {
            let _ = s.await;
        }
    }

    /// Serves one client connection: a run, or a [`Control`].
    pub async fn serve_client<S>(self: Arc<Self>, conn: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (rx, mut tx) = tokio::io::split(conn);
        let mut rx = FrameReader::new(rx);
        let first = match rx.next().await {
            Some(Ok(f)) => f,
            _ => return,
        };
        match first {
            Frame::Control { json, .. } => {
                let answer = self.control(&json);
                let _ = tx.write_all(&answer.encode()).await;
            }
            Frame::Run { request, .. } => {
                let reply = match serde_json::from_slice::<KeeperRun>(&request) {
                    Ok(run) => {
                        self.begin(Duration::from_millis(run.idle_ms));
                        let ran = self.clone().run(run, &mut rx, &mut tx).await;
                        self.end();
                        ran
                    }
                    Err(e) => Some(format!("not a run request: {e}")),
                };
                if let Some(reason) = reply {
                    let f = Frame::Failed { id: 0, reason };
                    let _ = tx.write_all(&f.encode()).await;
                }
            }
            _ => {}
        }
        let _ = tx.shutdown().await;
    }

    fn control(&self, json: &[u8]) -> Frame {
        let standing = self.standing();
        if let Ok(Control::Stop) = serde_json::from_slice(json) {
            self.ending.send_replace(true);
        }
        let json = serde_json::to_vec(&standing).unwrap_or_default();
        Frame::Control { id: 0, json }
    }

    fn standing(&self) -> Standing {
        let c = self.clock.lock().expect("not poisoned");
        let sessions = self
            .nodes
            .lock()
            .expect("not poisoned")
            .values()
            .map(|l| StandingSession {
                node: l.node.clone(),
                opened_for: l.opened_for.clone(),
                open_for_ms: l.since.elapsed().as_millis() as u64,
                runs_now: l.runs.lock().expect("not poisoned").len(),
            })
            .collect();
        Standing {
            pid: std::process::id(),
            idle_ms: c.idle.as_millis() as u64,
            idle_for_ms: match c.active {
                0 => c.last.elapsed().as_millis() as u64,
                _ => 0,
            },
            runs_served: c.served,
            sessions,
        }
    }

    fn begin(&self, idle: Duration) {
        let mut c = self.clock.lock().expect("not poisoned");
        c.idle = idle;
        c.active += 1;
        c.served += 1;
    }

    fn end(&self) {
        let mut c = self.clock.lock().expect("not poisoned");
        c.active -= 1;
        c.last = Instant::now();
    }

    /// One run on its node's session, to its last frame (passed to the client); `Some`
    /// with why when it could not be asked for at all.
    async fn run<R, W>(
        self: Arc<Self>,
        run: KeeperRun,
        rx: &mut FrameReader<R>,
        tx: &mut W,
    ) -> Option<String>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if *self.ending.borrow() {
            return Some(ENDING.to_owned());
        }
        let (to_client, mut from_node) = mpsc::unbounded_channel();
        let input_window = Arc::new(Semaphore::new(WINDOW as usize));
        let slot = Slot {
            to_client,
            input_window: input_window.clone(),
        };
        let request = serde_json::to_vec(&run.run).expect("serializable");
        let (link, id) = match self.ask(&run.task, slot, request).await {
            Ok(asked) => asked,
            Err(why) => return Some(why),
        };
        // The client's input and stop go on while its output comes: a command that does
        // not read its input must not hold up its output. Its input waits for the helper's
        // grant apart from the rest, so that a stop never waits behind it.
        let (queue, mut queued) = mpsc::unbounded_channel::<Frame>();
        let inbound = async {
            let mut held = 0usize;
            while let Some(Ok(f)) = rx.next().await {
                match f {
                    Frame::Input { ref bytes, .. } => {
                        // The client sends at most its whole stdin (a secret's worth).
                        held += bytes.len();
                        if held > MAX_INPUT {
                            break;
                        }
                        let _ = queue.send(f.with_id(id));
                    }
                    Frame::InputEof { .. } => {
                        let _ = queue.send(f.with_id(id));
                    }
                    Frame::Stop { .. } => {
                        let _ = link.input.send(Frame::Stop { id }.encode()).await;
                    }
                    _ => {}
                }
            }
            // The client is gone (or broke the protocol): its command is stopped.
            let _ = link.input.send(Frame::Stop { id }.encode()).await;
            std::future::pending::<()>().await
        };
        let forward_input = async {
            while let Some(f) = queued.recv().await {
                // The helper grants again what it has written (a frame is at most 64 KiB).
                if let Frame::Input { bytes, .. } = &f {
                    let n = (bytes.len() as u32).min(WINDOW);
                    if let Ok(p) = input_window.acquire_many(n).await {
                        p.forget();
                    }
                }
                if link.input.send(f.encode()).await.is_err() {
                    break;
                }
            }
            std::future::pending::<()>().await
        };
        let outbound = async {
            let mut owed = 0u32;
            let mut client_there = true;
            while let Some(f) = from_node.recv().await {
                let end = f.is_end();
                if let Frame::Stdout { bytes, .. } | Frame::Stderr { bytes, .. } = &f {
                    owed += bytes.len() as u32;
                }
                if client_there && tx.write_all(&f.with_id(0).encode()).await.is_err() {
                    client_there = false;
                }
                if end {
                    return;
                }
                if owed >= GRANT_EVERY {
                    let grant = Frame::Grant { id, bytes: owed };
                    let _ = link.input.send(grant.encode()).await;
                    owed = 0;
                }
            }
        };
        tokio::select! {
            () = inbound => unreachable!("pending"),
            () = forward_input => unreachable!("pending"),
            () = outbound => {}
        }
        link.runs.lock().expect("not poisoned").remove(&id);
        None
    }

    /// Asks `task`'s node's session for a run (`request`), `slot` to take its frames: the
    /// session and the run's id there. A session that ended before the run reached it
    /// (nothing ran) is left for a new one, once.
    async fn ask(
        self: &Arc<Self>,
        task: &Resolved,
        slot: Slot,
        request: Vec<u8>,
    ) -> Result<(Arc<NodeLink>, u32), String> {
        let mut slot = Some(slot);
        for _ in 0..2 {
            let link = self.link_for(task);
            let id = link.next_id.fetch_add(1, Ordering::Relaxed);
            // (link_for hands out no ended session, and nothing runs in between: one thread.)
            let taken = slot.take().expect("put back after each try");
            link.runs.lock().expect("not poisoned").insert(id, taken);
            let frame = Frame::Run {
                id,
                request: request.clone(),
            };
            if link.input.send(frame.encode()).await.is_ok() {
                return Ok((link, id));
            }
            slot = link.runs.lock().expect("not poisoned").remove(&id);
            if slot.is_none() {
                // Told already that the session ended (its runs were failed).
                break;
            }
        }
        Err("the session to the node ended before the run reached it".to_owned())
    }

    /// The session to `task`'s node, opened now if there is none.
    fn link_for(self: &Arc<Self>, task: &Resolved) -> Arc<NodeLink> {
        let mut nodes = self.nodes.lock().expect("not poisoned");
        if let Some(link) = nodes.get(&task.node_id) {
            // A session whose input is closed is over, though still being taken down.
            let ended = link.ended.lock().expect("not poisoned").is_some();
            if !ended && !link.input.is_closed() {
                return link.clone();
            }
        }
        let (input, session_input) = mpsc::channel(64);
        let link = Arc::new(NodeLink {
            node: task.node_name.clone(),
            opened_for: task.describe(),
            since: Instant::now(),
            input,
            runs: Mutex::default(),
            next_id: AtomicU32::new(1),
            ended: Mutex::new(None),
        });
        nodes.insert(task.node_id.clone(), link.clone());
        let session = self.clone().hold(link.clone(), task.clone(), session_input);
        let handle = tokio::task::spawn_local(session);
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|s| !s.is_finished());
        sessions.push(handle);
        link
    }

    /// One node's session, from its opening to its end; then its runs are told, and the
    /// node has none until a run asks again.
    async fn hold(
        self: Arc<Self>,
        link: Arc<NodeLink>,
        task: Resolved,
        input: mpsc::Receiver<Vec<u8>>,
    ) {
        let mut ending = self.ending.subscribe();
        let stop = async move {
            let _ = ending.wait_for(|e| *e).await;
            Interrupt::Sigterm
        };
        let mut sink = RunsSink {
            link: link.clone(),
            decoder: Decoder::default(),
        };
        let opened = async {
            let carrier = carrier_for(&self.api, &self.helper, &task).await?;
            // The session has no deadline of its own (a year, as port-forward's).
            let year = Duration::from_secs(86_400 * 365);
            let run = RunOptions::helper_only("serve", self.helper.clone(), year);
            let req = SessionRequest {
                task: &task,
                run: &run,
                carrier: &carrier,
                tty: false,
                network: None,
                stdin_prefix: Vec::new(),
                copy: None,
                forward: None,
                serve: true,
            };
            let sizes = futures_util::stream::empty();
            let ran = remote_session(&self.api, req, Some(input), sizes, &mut sink, None, stop);
            Ok::<_, crate::error::ExecError>(ran.await?)
        };
        let why = match opened.await {
            Ok(Outcome::Interrupted(_)) => "the keeper ended".to_owned(),
            Ok(_) => format!("the helper on node {} ended", task.node_name),
            Err(e) => format!("the session to node {}: {e}", task.node_name),
        };
        tracing::debug!(node = %task.node_name, %why, "session over");
        link.close(&why);
        let mut nodes = self.nodes.lock().expect("not poisoned");
        if nodes
            .get(&task.node_id)
            .is_some_and(|l| Arc::ptr_eq(l, &link))
        {
            nodes.remove(&task.node_id);
        }
    }
}

/// The session's output: the helper's stdout is its runs' frames, each passed to its run.
struct RunsSink {
    link: Arc<NodeLink>,
    decoder: Decoder,
}

impl OutputSink for RunsSink {
    fn stdout(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
        while let Some(f) = self.decoder.next_frame() {
            let f = match f {
                Ok(f) => f,
                // Sealed frames that do not parse come from no helper of ours.
                Err(e) => return self.link.close(&format!("the helper's frames broke: {e}")),
            };
            let mut runs = self.link.runs.lock().expect("not poisoned");
            let id = f.id();
            match f {
                Frame::Grant { bytes, .. } => {
                    if let Some(slot) = runs.get(&id) {
                        slot.input_window.add_permits(bytes as usize);
                    }
                }
                f => {
                    let end = f.is_end();
                    if let Some(slot) = runs.get(&id) {
                        let _ = slot.to_client.send(f);
                    }
                    if end {
                        runs.remove(&id);
                    }
                }
            }
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        tracing::debug!(said = %String::from_utf8_lossy(bytes), "helper");
    }
    fn warn(&mut self, message: &str) {
        tracing::warn!("{message}");
    }
    fn note(&mut self, message: &str) {
        tracing::debug!("{message}");
    }
}

/// Frames as they come on one end of a connection.
pub struct FrameReader<R> {
    rx: R,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rx: R) -> Self {
        FrameReader {
            rx,
            decoder: Decoder::default(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// The next frame; `None` when the connection ended (or failed).
    pub async fn next(&mut self) -> Option<Result<Frame, swarm_exec_proto::serve::FrameError>> {
        loop {
            if let Some(f) = self.decoder.next_frame() {
                return Some(f);
            }
            match self.rx.read(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.feed(&self.buf[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests;
