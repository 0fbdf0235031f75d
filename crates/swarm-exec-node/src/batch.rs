//! The helper on the log path: the command in every target container at once, everything
//! reported as sealed frames on its stdout, the commands stopped at the deadline.

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::join_all;
use swarm_exec_proto::args::RUN_ENV;
use swarm_exec_proto::{is_container_id, Envelope, ExecSpec, Stream, Writer};

use crate::docker_exec::exec_in_container;
use crate::end::{NodeEnd, NodeError, TargetError};
use crate::stop::Stopper;

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
        return out.borrow_mut().too_late(late_ms, targets);
    }
    let budget = budget.min(Duration::from_millis(envelope.not_after_ms - now_ms));

    // What runs where, for stopping it at the deadline.
    let started = RefCell::new(Vec::<Running>::new());
    let runs = exec.containers.iter().enumerate().map(|(i, container)| {
        let target = Target {
            docker,
            exec,
            stdin: envelope.stdin.as_deref(),
            index: i,
            container,
        };
        target.run(&out, &started, tag)
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
            let stopped = stop_all(docker, stopper, &running, tag).await;
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
    /// A helper started after the run's not-after time: every target is told it was not
    /// run.
    fn too_late(&mut self, late_ms: u64, targets: usize) -> NodeEnd {
        for i in 0..targets {
            self.frame(|w, b| w.failed(i, &TargetError::TooLate { late_ms }.to_string(), b));
        }
        self.frame(|w, b| {
            w.done(b);
            Ok(())
        });
        match self.failed.take() {
            Some(e) => NodeEnd::Failed(NodeError::Write(e)),
            None => NodeEnd::Done(vec![None; targets]),
        }
    }

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

/// A command started in a target.
enum Running {
    /// An exec (its ID) in a container.
    Exec { id: String, container: String },
    /// A debug container beside the target.
    Debug(String),
}

/// Stops everything still `running` at once — the helper has only its stop grace period
/// for this; whether they are all gone.
async fn stop_all(docker: &Docker, stopper: &Stopper, running: &[Running], tag: &str) -> bool {
    let stops = running.iter().map(|r| async move {
        match r {
            Running::Exec { id, container } => {
                stopper.terminate(docker, id, container, tag).await.is_ok()
            }
            Running::Debug(id) => crate::debug::remove(docker, id).await,
        }
    });
    join_all(stops).await.iter().all(|&gone| gone)
}

/// One target of the run.
struct Target<'a> {
    docker: &'a Docker,
    exec: &'a ExecSpec,
    stdin: Option<&'a [u8]>,
    index: usize,
    container: &'a String,
}

impl Target<'_> {
    /// The command in this target, its output and its end as frames; its exec noted in
    /// `started` from the moment it exists. Its exit code, if it has one.
    async fn run<W: Write>(
        self,
        out: &RefCell<FrameOut<'_, W>>,
        started: &RefCell<Vec<Running>>,
        tag: &str,
    ) -> Option<i64> {
        let (i, container) = (self.index, self.container);
        let on_output = |stream: Stream, bytes: Option<&[u8]>| {
            out.borrow_mut().frame(|w, b| match bytes {
                Some(bytes) => w.output(i, stream, bytes, b),
                None => w.flush(i, stream, b),
            })
        };
        // The helper only ever execs into the containers it was created for, named by full
        // ID; anything else is refused before the socket is touched.
        let result = if !is_container_id(container) {
            Err(TargetError::BadContainer(container.clone()))
        } else if let Some(image) = &self.exec.debug {
            let debug = crate::debug::Debug {
                image,
                exec: self.exec,
                target: container,
                tag,
                tty: false,
                stdin: self.stdin.is_some(),
            };
            let on_created = |id: &str| started.borrow_mut().push(Running::Debug(id.to_owned()));
            crate::debug::run(self.docker, &debug, self.stdin, on_created, on_output).await
        } else {
            let on_created = |id: &str| {
                started.borrow_mut().push(Running::Exec {
                    id: id.to_owned(),
                    container: container.clone(),
                })
            };
            exec_in_container(
                self.docker,
                self.exec,
                container,
                self.stdin,
                on_created,
                on_output,
            )
            .await
        };
        let mut o = out.borrow_mut();
        match &result {
            Ok(code) => o.frame(|w, b| w.exit(i, *code, b)),
            Err(e) => o.frame(|w, b| w.failed(i, &e.to_string(), b)),
        }
        result.ok()
    }
}
