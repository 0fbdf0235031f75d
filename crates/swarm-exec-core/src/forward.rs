//! `port-forward`: connections accepted here reach ports of a task, each a stream of
//! [`swarm_exec_proto::forward`] inside one live session with a forwarder in the task's
//! network namespace (made by the helper on its node: see the node side's `forward`). The
//! caller listens and hands over what it accepts; this runs the session until it is
//! cancelled or fails (the task ended, the node went away).

use std::future::Future;

use swarm_exec_proto::args::NODE_FORWARD;
use swarm_exec_proto::forward::{Event, Mux};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::engine::SwarmApi;
use crate::error::ExecError;
use crate::model::options::{HelperSource, RunOptions};
use crate::model::outcome::{Interrupt, Outcome};
use crate::session::{remote_session, SessionRequest};
use crate::sink::OutputSink;
use crate::task_exec::{Plan, Route};

/// One port-forward.
pub struct ForwardRequest<'a> {
    /// The task and the session's way to it (see [`crate::live::find_route`], with
    /// `helper_only`: the forwarder is made by a helper, also on this engine).
    pub plan: &'a Plan,
    pub helper: &'a HelperSource,
    /// The task's ports that connections may go to.
    pub ports: Vec<u16>,
    /// `--network` for the session.
    pub network: Option<&'a str>,
}

/// Forwards each `(connection, remote port)` that `accepted` brings until `cancel` fires
/// (then [`Outcome::Interrupted`]) or the session ends; a connection the task refuses is
/// reported to `out` and closed, and the others go on. Nothing is left.
pub async fn port_forward<A, O, C>(
    api: &A,
    req: ForwardRequest<'_>,
    mut accepted: mpsc::Receiver<(TcpStream, u16)>,
    out: &mut O,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt>,
{
    let Route::Session(carrier) = &req.plan.route else {
        unreachable!("port-forward's route is always a session (helper_only)");
    };
    // Unused timeout: the session has no deadline (a year, as a `-t` session's).
    let year = std::time::Duration::from_secs(86_400 * 365);
    let run = RunOptions::helper_only(NODE_FORWARD, req.helper.clone(), year);
    let (to_session, input) = mpsc::channel::<Vec<u8>>(64);
    let mux = Mux::new(to_session);
    let session = SessionRequest {
        task: &req.plan.task,
        run: &run,
        carrier,
        tty: false,
        network: req.network,
        stdin_prefix: Vec::new(),
        copy: None,
        forward: Some(req.ports.clone()),
        serve: false,
    };
    let opener = async {
        while let Some((conn, port)) = accepted.recv().await {
            tracing::debug!(port, peer = ?conn.peer_addr().ok(), "connection accepted");
            mux.open(conn, port).await;
        }
        std::future::pending::<()>().await
    };
    let (broken_tx, broken) = tokio::sync::oneshot::channel();
    let mut sink = StreamsSink {
        mux: mux.clone(),
        out,
        broken: Some(broken_tx),
    };
    let sizes = futures_util::stream::empty();
    // Frames that do not parse end it (what follows them cannot be read either), as an
    // interrupt would: the session removes what it made.
    let why_broken = std::sync::Mutex::new(None);
    let stop = async {
        tokio::select! {
            i = cancel => i,
            Ok(why) = broken => {
                *why_broken.lock().expect("not poisoned") = Some(why);
                Interrupt::Sigterm
            }
        }
    };
    let ran = remote_session(api, session, Some(input), sizes, &mut sink, None, stop);
    let outcome = tokio::select! {
        r = ran => r?,
        () = opener => unreachable!("pending"),
    };
    if let Some(why) = why_broken.lock().expect("not poisoned").take() {
        mux.close_all();
        return Err(failed(
            &req,
            format!("the forwarder's streams broke: {why}"),
        ));
    }
    mux.close_all();
    match outcome {
        // The forwarder ends only when its input does, which this side never closes: it
        // failed, and said why on its stderr.
        Outcome::Exited(code) => Err(failed(&req, format!("the forwarder ended with {code}"))),
        // No deadline of ours: the helper was stopped by someone else.
        Outcome::TimedOut => Err(failed(&req, "the helper was stopped".to_owned())),
        other => Ok(other),
    }
}

fn failed(req: &ForwardRequest<'_>, why: String) -> ExecError {
    ExecError::CannotRun {
        target: req.plan.task.describe(),
        node: req.plan.task.node_name.clone(),
        reason: crate::model::outcome::NotRun(why),
    }
}

/// The session's output: the forwarder's stdout is the streams' frames; the rest goes to
/// the caller's sink.
struct StreamsSink<'a, O> {
    mux: Mux,
    out: &'a mut O,
    /// Told once when the streams' frames stop making sense.
    broken: Option<tokio::sync::oneshot::Sender<String>>,
}

impl<O: OutputSink> OutputSink for StreamsSink<'_, O> {
    fn stdout(&mut self, bytes: &[u8]) {
        match self.mux.feed(bytes) {
            Ok(events) => {
                for e in events {
                    if let Event::Refused { port, reason, .. } = e {
                        let reason = crate::escape::escape_control(&reason);
                        self.out
                            .warn(&format!("a connection to port {port} failed: {reason}"));
                    }
                }
            }
            // Sealed frames that do not parse come from no forwarder of ours.
            Err(e) => {
                self.mux.close_all();
                if let Some(tx) = self.broken.take() {
                    let _ = tx.send(e.to_string());
                }
            }
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.out.stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        self.out.warn(message);
    }
    fn note(&mut self, message: &str) {
        self.out.note(message);
    }
    fn progress(&mut self, status: &str) {
        self.out.progress(status);
    }
}
