//! How a session fails, step by step, and where.

use std::time::Duration;

pub(super) use swarm_exec_proto::session::SessionError as FrameError;

use super::request::HELLO_WAIT;
use crate::engine::ApiError;
use crate::model::target::HelperRef;

/// What to do about an overlay that does not carry a session.
pub(crate) const OPEN_PORTS: &str =
    "Open 4789/udp and 7946/tcp+udp between them, or run without -t \
                          (no overlay needed)";

/// A session that failed: where, and at which step.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {source}")]
pub struct SessionError {
    pub at: Box<HelperRef>,
    #[source]
    pub source: SessionFailure,
}

/// Why a session failed, step by step.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error(
        "the manager has no image {0} for the relay (--image must name an image the manager has)"
    )]
    NoRelayImage(String),
    #[error("importing the relay image {image}: {source}")]
    ImportImage {
        image: String,
        #[source]
        source: ApiError,
    },
    #[error("network {name}: {source}")]
    Network {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "network {name} is not an attachable overlay network (driver {driver}, attachable \
         {attachable})"
    )]
    NotAttachable {
        name: String,
        driver: String,
        attachable: bool,
    },
    #[error("creating the relay container: {0}")]
    CreateRelay(#[source] ApiError),
    #[error("attaching to the relay container: {0}")]
    AttachRelay(#[source] ApiError),
    #[error("starting the relay container: {0}")]
    StartRelay(#[source] ApiError),
    #[error("the relay has no address on network {0}")]
    RelayAddress(String),
    #[error("writing to the relay: {0}")]
    WriteRelay(#[source] std::io::Error),
    #[error("reading from the relay: {0}")]
    ReadRelay(#[source] ApiError),
    #[error("creating the helper service: {0}")]
    CreateHelper(#[source] ApiError),
    #[error("the helper did not reach running within {0:?} (state {1})")]
    NotStarted(Duration, String),
    #[error("the helper ended before it reached the relay (state {state}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    HelperEnded { state: String, reason: String },
    #[error(
        "no connection from the helper within {HELLO_WAIT:?} of its start: the overlay between \
         this manager and node {node} carries no traffic. {OPEN_PORTS}{}",
        if .relay.is_empty() { String::new() } else { format!(" (relay: {})", .relay) }
    )]
    NoHello { node: String, relay: String },
    #[error("the session's stream was refused: {0}")]
    Refused(#[source] FrameError),
    #[error("the session ended without the command's exit{}", if .0.is_empty() { String::new() } else { format!(" (relay: {})", .0) })]
    Cut(String),
    #[error(
        "nothing from the helper on node {node} for {after:?}: that node, or the network \
         between it and this manager, is down or cut off. The command's outcome is unknown; \
         the helper stops it when its connection to the relay fails"
    )]
    Silent { node: String, after: Duration },
    #[error("the command's {stream} holds {received} bytes, its exit says {declared}")]
    Count {
        stream: &'static str,
        declared: u64,
        received: u64,
    },
    /// What the helper said (its node's engine, the exec): no cause of ours to carry.
    #[error("the command could not be run: {0}")]
    Failed(String),
    #[error("the command could not be run: {0}")]
    Invalid(#[source] crate::model::options::InvalidRun),
    #[error("the command could not be run: creating the envelope secret: {0}")]
    Envelope(#[source] ApiError),
    #[error("{0}")]
    Copy(String),
}
