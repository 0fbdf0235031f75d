//! The orchestration behind `swarm-exec`: run a command in the container of a Docker Swarm
//! task from a manager, through a one-shot helper service pinned to the task's node.
//!
//! This crate is the manager side only and has no CLI concerns: it never prints and never
//! exits. What the helper runs on the node is `swarm-exec-node`; the wire between the two
//! is `swarm-exec-proto`. Adapters (the `swarm-exec` binary, the Skopos plugin) sit on top.
//!
//! # Layout
//!
//! - [`target`]: parsing and validating what the user names (`TASK`, IDs, names).
//! - [`duration`]: the duration syntax of `--timeout` (`30`, `30s`, `5m`, `1m30s`).
//! - [`endpoint`]: which engine to talk to (flags, DOCKER_HOST, contexts), as the docker
//!   CLI decides it; [`ssh`]: `ssh://` endpoints through `docker system dial-stdio`.
//! - [`api`]: the narrow Docker API the orchestration needs ([`api::SwarmApi`]), its types
//!   and its error; [`docker`]: its bollard implementation, with bounded retries of
//!   transient errors.
//! - [`lookup`]: the look-ups `resolve` and `service_exec` share (services, nodes,
//!   hostnames, a service's tasks, starting states).
//! - [`resolve`]: from a [`target::TaskRef`] to a running task with its node and container.
//! - [`helper`]: the helper service spec (labels, constraint, mounts, log options, limits).
//! - [`program`]: zero-install: the embedded node-side build as content-addressed swarm
//!   configs, which helpers run in their target's own image.
//! - [`run`]: one helper's life on the manager side: create its run's envelope secret and
//!   the helper, follow its frames until every byte is in, remove both.
//! - [`options`]: what to run and how ([`options::RunOptions`]), checked before anything
//!   is created; [`outcome`]: how a run ended; [`error`]: how swarm-exec itself failed.
//! - [`task_exec`]: one task: resolve it, then run one helper for it.
//! - [`service_exec`]: every selected task of a service or stack, one helper per node.
//! - [`attach`]: `task-exec -t` on the engine the client talks to: attached, no helper.
//! - [`copy`]: `cp`: archives out of and into a task's container, through the engine's
//!   archive API (directly, or by the helper through a session).
//! - [`session`]: a live session with a task on another node: a relay container on the
//!   manager, an overlay the helper dials it on, frames sealed end to end.
//! - [`sink`]: where output goes ([`sink::OutputSink`]), and the bounded keepers of
//!   `--format json` and the plugin, with JSON that keeps non-UTF-8 bytes.
//! - [`cancel`]: one cancellation fanned out to every helper run under way.
//! - [`gc`]: removing helpers and envelopes left behind: only swarm-exec's (name, label,
//!   command and mount), once stale on the managers' clock.
//! - `fake` (tests only): a fake [`api::SwarmApi`] with a scripted helper.
//! - [`plugin`]: the Skopos plugin's `inst_exec` action over several instances.

pub mod api;
pub mod attach;
pub mod cancel;
pub mod copy;
pub mod docker;
pub mod duration;
pub mod endpoint;
pub mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod gc;
pub mod helper;
pub mod lookup;
pub mod options;
pub mod outcome;
pub mod plugin;
pub mod program;
pub mod resolve;
pub mod run;
pub mod service_exec;
pub mod session;
pub mod sink;
pub mod ssh;
pub mod target;
pub mod task_exec;

pub use api::{ApiError, SwarmApi};
pub use docker::BollardApi;
pub use error::ExecError;
pub use options::{HelperSource, RunOptions};
pub use outcome::{Interrupt, Outcome};
pub use sink::OutputSink;
pub use task_exec::{task_exec, ExecRequest};

pub use swarm_exec_proto::HELPER_LABEL;
/// Unix time (seconds) after which a helper is stale and may be garbage-collected.
pub const DEADLINE_LABEL: &str = "swarm-exec.deadline";

/// The helper image used when none is given: this project's own image, tagged with the
/// version of the binary, so a manager and its helpers always speak the same protocol.
pub const DEFAULT_IMAGE: &str = concat!("swarm-exec:", env!("CARGO_PKG_VERSION"));
