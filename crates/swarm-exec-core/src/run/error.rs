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
    /// The helper's node is down or cut off in the managers' view: its helper cannot
    /// report. `dispatched`: the helper was given to the node, so the command may have run.
    #[error(
        "{at}: node {} is {state} in the managers' view{}: {}",
        .at.node,
        if .message.is_empty() { String::new() } else { format!(" ({})", .message) },
        if *.dispatched {
            "its helper cannot report. The command's outcome is unknown; the helper stops it \
             at its deadline, or when the helper's removal reaches the node"
        } else {
            "the helper was never given to it, so the command did not run"
        }
    )]
    NodeLost {
        at: Box<HelperRef>,
        state: String,
        message: String,
        dispatched: bool,
    },
    #[error("{at}: following the helper: {source}")]
    Follow {
        at: Box<HelperRef>,
        #[source]
        source: ApiError,
    },
}
