//! The failures of one run of swarm-exec itself (as opposed to the command's), each naming
//! the task, node, service and helper involved. The entry points build them; each layer's
//! own error is wrapped here, never the other way round.

use crate::engine::ApiError;
use crate::helper::configs::ConfigError;
use crate::local::AttachError;
use crate::lookup::resolve::{ResolveError, Resolved};
use crate::model::options::InvalidRun;
use crate::model::outcome::NotRun;
use crate::run::RunError;
use crate::session::SessionError;

/// Failures of swarm-exec itself; every one names the task, node and service involved.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Invalid(#[from] InvalidRun),
    #[error("{target}: cannot create the run's envelope secret: {source}")]
    Envelope {
        target: String,
        #[source]
        source: ApiError,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{target}: cannot read helper image {image} on the manager: {source}")]
    Image {
        target: String,
        image: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "{target}: node {node} is {os}/{arch}; the node-side program built into this swarm-exec \
         runs on {}/{} only: use --image with a swarm-exec image built for that platform",
        crate::model::node_program::OS,
        crate::model::node_program::ARCH
    )]
    Platform {
        target: String,
        node: String,
        os: String,
        arch: String,
    },
    #[error("{target}: the task's spec names no usable image ({image:?}) to run the helper in; use --image")]
    TargetImage { target: String, image: String },
    #[error("{target}: the node-side program's configs: {source}")]
    NodeConfigs {
        target: String,
        #[source]
        source: ConfigError,
    },
    #[error("{target}: {source}")]
    Attach {
        target: String,
        #[source]
        source: AttachError,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{target} on node {node}: {reason}")]
    CannotRun {
        target: String,
        node: String,
        reason: NotRun,
    },
    #[error("{target}: cp: {reason}")]
    Copy { target: String, reason: String },
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl ExecError {
    /// An attached exec on the client's own engine that failed, in `at`.
    pub fn attach(source: AttachError, at: &Resolved) -> Self {
        ExecError::Attach {
            target: format!("task {} ({})", at.task_id, at.display),
            source,
        }
    }
}
