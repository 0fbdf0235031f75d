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
