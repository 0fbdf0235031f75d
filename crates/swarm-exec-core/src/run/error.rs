//! How one helper's run on the log path can fail, each naming the target, node and helper.

use std::time::Duration;

use crate::engine::ApiError;
use crate::model::target::HelperRef;

/// The log path's own failures (the command's are outcomes).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
    #[error("{at}: helper failed: {reason}")]
    HelperFailed { at: Box<HelperRef>, reason: String },
    /// The runtime could not create the helper's container: its program never ran.
    #[error("{at}: the helper's container did not start: {reason}")]
    ContainerNotStarted { at: Box<HelperRef>, reason: String },
    #[error("{at}: output incomplete, the command's exit code is not reported: {missing} did not arrive ({why})")]
    OutputIncomplete {
        at: Box<HelperRef>,
        missing: String,
        why: String,
    },
    #[error("{at}: following the helper: {source}")]
    Follow {
        at: Box<HelperRef>,
        #[source]
        source: ApiError,
    },
}
