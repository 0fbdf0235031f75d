//! The orchestration behind `swarm-exec`: run a command in the container of a Docker Swarm
//! task from a manager, through a one-shot helper service pinned to the task's node.
//!
//! This crate is the manager side only and has no CLI concerns: it never prints and never
//! exits. What the helper runs on the node is `swarm-exec-node`; the wire between the two
//! is `swarm-exec-proto`. Adapters (the `swarm-exec` binary, the Skopos plugin) sit on top.
//!
//! # Layout
//!
//! Layers, each a folder, from the bottom up; a module imports only from layers below it.
//!
//! - [`model`]: plain values — task references, durations, run options, outcomes, task
//!   states, labels, the node-side build, the helper spec.
//! - [`connect`]: which engine to talk to (flags, DOCKER_HOST, contexts), as the docker CLI
//!   decides it.
//! - [`engine`]: the one port to a Docker engine ([`engine::SwarmApi`]), its bollard
//!   adapter with the retry policy and the connection (`ssh://` too), and (tests only) its
//!   fake. The only module that names bollard (`tests/layers.rs` holds it to that).
//! - [`sink`]: where output goes; [`cancel`]: one cancellation fanned out to many runs.
//! - [`lookup`]: services, nodes, tasks; [`lookup::resolve`] from a task reference to a
//!   running task with its node and container.
//! - [`helper`]: the helper service's spec, its envelope secret, creating and removing
//!   both, and zero-install's configs.
//! - [`run`]: one helper's life on the log path: follow its frames until every byte is in.
//! - [`session`]: a live session with a task on another node: a relay on the manager, an
//!   overlay the helper dials it on, frames sealed end to end.
//! - [`local`]: an attached exec on the engine the client talks to.
//! - Entry points, each one command: [`task_exec`](mod@task_exec), [`live`] (`-t` and streamed `-i`,
//!   directly or through a session), [`service_exec`], [`copy`] (`cp`), [`forward`]
//!   (`port-forward`; `debug` is `task_exec` and `live` with a debug image), [`gc`], [`wait`]
//!   (until services have converged), [`persist`] (`--persist`'s keeper), [`multi`]
//!   (what the Skopos plugin runs); [`error`] is theirs: only they build [`ExecError`].

pub mod cancel;
pub mod connect;
pub mod copy;
pub mod direct;
pub mod engine;
pub mod error;
pub mod escape;
pub mod forward;
pub mod gc;
pub mod helper;
pub mod live;
pub mod local;
pub mod lookup;
pub mod model;
pub mod multi;
pub mod persist;
pub mod run;
pub mod service_exec;
pub mod session;
pub mod sink;
pub mod task_exec;
pub mod wait;

pub use engine::bollard::BollardApi;
pub use engine::{ApiError, SwarmApi};
pub use error::ExecError;
pub use model::labels::{DEADLINE_LABEL, HELPER_LABEL};
pub use model::options::{HelperSource, RunOptions};
pub use model::outcome::{Interrupt, Outcome};
pub use sink::OutputSink;
pub use task_exec::{task_exec, ExecRequest};

/// The helper image used when none is given: this project's own image, tagged with the
/// version of the binary, so a manager and its helpers always speak the same protocol.
pub const DEFAULT_IMAGE: &str = concat!("swarm-exec:", env!("CARGO_PKG_VERSION"));
