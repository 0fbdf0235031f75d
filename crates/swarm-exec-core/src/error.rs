//! The failures of one run of swarm-exec itself (as opposed to the command's), each naming
//! the task, node, service and helper involved.

use std::time::Duration;

use crate::api::ApiError;
use crate::options::InvalidRun;
use crate::outcome::NotRun;
use crate::resolve::ResolveError;

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
        crate::program::OS,
        crate::program::ARCH
    )]
    Platform {
        target: String,
        node: String,
        os: String,
        arch: String,
    },
    #[error("{target}: the task's spec names no usable image ({image:?}) to run the helper in; use --image")]
    TargetImage { target: String, image: String },
    #[error("{target}: cannot create the node-side program's configs: {source}")]
    NodeConfigs {
        target: String,
        #[source]
        source: ApiError,
    },
    #[error("{target}: cannot create the helper service for node {node}: {source}")]
    CreateHelper {
        target: String,
        node: String,
        #[source]
        source: ApiError,
    },
    #[error("{at}: helper was rejected: {reason}")]
    HelperRejected { at: Box<HelperRef>, reason: String },
    #[error("{at}: helper was not started within {waited:?} (state {state}{})", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    HelperNotStarted {
        at: Box<HelperRef>,
        state: String,
        message: String,
        waited: Duration,
    },
    #[error("{target}: {source}")]
    Attach {
        target: String,
        #[source]
        source: crate::attach::AttachError,
    },
    #[error("{at}: helper failed: {reason}")]
    HelperFailed { at: Box<HelperRef>, reason: String },
    /// The runtime could not create the helper's container: its program never ran.
    #[error("{at}: the helper's container did not start: {reason}")]
    ContainerNotStarted { at: Box<HelperRef>, reason: String },
    #[error("{target} on node {node}: {reason}")]
    CannotRun {
        target: String,
        node: String,
        reason: NotRun,
    },
    #[error("{at}: output incomplete, the command's exit code is not reported: {missing} did not arrive ({why})")]
    OutputIncomplete {
        at: Box<HelperRef>,
        missing: String,
        why: String,
    },
    #[error("{target}: cp: {reason}")]
    Copy { target: String, reason: String },
    #[error("{at}: {source}")]
    Session {
        at: Box<HelperRef>,
        #[source]
        source: crate::session::SessionFailure,
    },
    #[error("{at}: following the helper: {source}")]
    Follow {
        at: Box<HelperRef>,
        #[source]
        source: ApiError,
    },
}

/// The target and the helper working on it, as failures name them.
#[derive(Debug, Clone)]
pub struct HelperRef {
    pub target: String,
    pub helper: String,
    pub node: String,
}

impl std::fmt::Display for HelperRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on node {} (helper {})",
            self.target, self.node, self.helper
        )
    }
}
