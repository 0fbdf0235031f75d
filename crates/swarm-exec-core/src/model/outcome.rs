//! How a run ended when swarm-exec itself did not fail, and why a caller cancels.

/// How a run ended when swarm-exec itself did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this code.
    Exited(i64),
    /// `timeout` passed first.
    TimedOut,
    /// The caller's cancellation fired first.
    Interrupted(Interrupt),
}

/// Why the caller cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Sigint,
    Sigterm,
    /// The terminal (or the ssh session) went away.
    Sighup,
}

impl Outcome {
    /// The interrupt, when the run was interrupted.
    pub fn interrupt(&self) -> Option<Interrupt> {
        match self {
            Outcome::Interrupted(i) => Some(*i),
            _ => None,
        }
    }
}

/// A duration as JSON results give it: seconds, to the millisecond.
pub fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A target the command could not be run in, with the helper's reason (e.g. its container
/// is not running).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotRun(pub String);

/// How the command ended in one target of a helper — or why it could not run there — and
/// when that was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEnd {
    pub result: Result<Outcome, NotRun>,
    pub at: tokio::time::Instant,
}

impl TargetEnd {
    pub fn now(result: Result<Outcome, NotRun>) -> Self {
        TargetEnd {
            result,
            at: tokio::time::Instant::now(),
        }
    }
}
