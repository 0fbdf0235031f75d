//! How the node side ends: a helper run's end and its exit code, and every way it, a
//! target's command or a session can fail.

use swarm_exec_proto::envelope::EnvelopeError;

/// The helper's exit codes (see [`NodeEnd::code`]).
pub const HELPER_FAILED: u8 = 125;
pub const HELPER_TIMED_OUT: u8 = 124;

/// How a helper run ended.
#[derive(Debug)]
pub enum NodeEnd {
    /// Every target has its exit or failure frame; the codes, in target order (`None`: it
    /// could not be run).
    Done(Vec<Option<i64>>),
    /// The deadline passed (or the helper was told to stop) first.
    TimedOut,
    /// The helper could not do its work (its frames say as much as they can).
    Failed(NodeError),
}

impl NodeEnd {
    /// With one target, the command's own code, so the helper task's state shows it too;
    /// with several, 0 when every command exited 0, else 1.
    pub fn code(&self) -> u8 {
        match self {
            NodeEnd::Done(codes) => match codes.as_slice() {
                [Some(code)] => u8::try_from(*code).unwrap_or(HELPER_FAILED),
                [None] => HELPER_FAILED,
                all if all.iter().all(|c| *c == Some(0)) => 0,
                _ => 1,
            },
            NodeEnd::TimedOut => HELPER_TIMED_OUT,
            NodeEnd::Failed(_) => HELPER_FAILED,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot read the envelope {path}: {source}")]
    ReadEnvelope {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the envelope {path} is not valid: {source}")]
    Envelope {
        path: String,
        #[source]
        source: EnvelopeError,
    },
    #[error("cannot connect to the node's engine: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error("writing frames: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot stop for the stop signal: {0}")]
    Signal(#[source] std::io::Error),
    #[error("the session ended early: {0}")]
    Session(#[source] SessionFailure),
    #[error("the run's not-after time passed {late_ms} ms before the helper started: the command was not run")]
    TooLate { late_ms: u64 },
}

/// Why one target's command could not be run or its end learnt.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid container ID {0:?}")]
    BadContainer(String),
    #[error("the run's not-after time passed {late_ms} ms before the helper started: the command was not run")]
    TooLate { late_ms: u64 },
    #[error("cannot exec in container {container}: {source}")]
    Create {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot start the command: {0}")]
    Start(#[source] bollard::errors::Error),
    #[error("the engine did not attach to the command")]
    NotAttached,
    #[error("reading the command's output: {0}")]
    Read(#[source] bollard::errors::Error),
    #[error("cannot read the command's exit code: {0}")]
    Inspect(#[source] bollard::errors::Error),
    #[error("the engine reported no exit code for the command")]
    NoExitCode,
    #[error("{}", engine_words(.0))]
    Archive(#[source] bollard::errors::Error),
    #[error("cannot create a debug container of {image}: {}", engine_words(.source))]
    Debug {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot pull the debug image {image}: {why}")]
    Pull { image: String, why: String },
    #[error("cannot start the debug container: {}", engine_words(.0))]
    DebugStart(#[source] bollard::errors::Error),
    #[error("cannot start the forwarder: {0}")]
    Forwarder(String),
    #[error("the task's container is no longer running")]
    TargetEnded,
}

/// The engine's own words for a failed archive call ("Could not find the file …").
fn engine_words(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Why the session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error("cannot reach the relay at {relay}: {source}")]
    Dial {
        relay: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the session's connection failed: {0}")]
    Conn(#[source] std::io::Error),
    #[error("the client's stream was refused: {0}")]
    Refused(#[source] swarm_exec_proto::session::SessionError),
    #[error("the client went away")]
    ClientGone,
    #[error("the keeper's run frames do not parse: {0}")]
    Frames(String),
}
