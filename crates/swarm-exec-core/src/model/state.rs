//! A swarm task's state, as one enum: which states are on the way to `running`, and which
//! are final, is said here once.

use std::fmt;

/// `Status.State` (or `DesiredState`) of a swarm task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TaskState {
    New,
    Allocated,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
    /// No state given (an empty string), or one this build does not know: kept as given,
    /// so messages still name it.
    #[default]
    Unknown,
    Other(String),
}

impl TaskState {
    /// The engine's lower-case name of a state; an empty string is [`TaskState::Unknown`].
    pub fn parse(s: &str) -> TaskState {
        use TaskState::*;
        match s {
            "new" => New,
            "allocated" => Allocated,
            "pending" => Pending,
            "assigned" => Assigned,
            "accepted" => Accepted,
            "preparing" => Preparing,
            "ready" => Ready,
            "starting" => Starting,
            "running" => Running,
            "complete" => Complete,
            "shutdown" => Shutdown,
            "failed" => Failed,
            "rejected" => Rejected,
            "remove" => Remove,
            "orphaned" => Orphaned,
            "" => Unknown,
            other => Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        use TaskState::*;
        match self {
            New => "new",
            Allocated => "allocated",
            Pending => "pending",
            Assigned => "assigned",
            Accepted => "accepted",
            Preparing => "preparing",
            Ready => "ready",
            Starting => "starting",
            Running => "running",
            Complete => "complete",
            Shutdown => "shutdown",
            Failed => "failed",
            Rejected => "rejected",
            Remove => "remove",
            Orphaned => "orphaned",
            Unknown => "",
            Other(s) => s,
        }
    }

    /// A state a task passes through before `running`: worth waiting on.
    pub fn is_starting(&self) -> bool {
        use TaskState::*;
        matches!(
            self,
            New | Allocated | Pending | Assigned | Accepted | Preparing | Ready | Starting
        )
    }

    /// A state the task never leaves: its container ended, or never will run. `rejected`
    /// is one of them; callers that tell it apart (the log path reports the node's reason)
    /// match it first.
    pub fn is_final(&self) -> bool {
        use TaskState::*;
        matches!(
            self,
            Complete | Failed | Rejected | Shutdown | Orphaned | Remove
        )
    }
}

/// Whether a failed task's `Status.Err` says its container's process never started: the
/// engine or the runtime could not even create its task, so nothing of it ran and a new
/// helper may be tried. The secrets tmpfs is remounted read-only while the spec is built,
/// before the runtime is asked, and under load that remount fails with EBUSY (moby/moby
/// #48783; engines before 29.4.1 do not retry it). A failure of the start itself is not
/// matched: the process may have run by then.
pub fn never_started(err: &str) -> bool {
    err.starts_with("starting container failed")
        && (err.contains("failed to create task for container")
            || err.contains("OCI runtime create failed")
            || err.contains("unable to remount dir as readonly"))
}

impl From<&str> for TaskState {
    fn from(s: &str) -> Self {
        TaskState::parse(s)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state the engine names.
    const NAMES: [&str; 15] = [
        "new",
        "allocated",
        "pending",
        "assigned",
        "accepted",
        "preparing",
        "ready",
        "starting",
        "running",
        "complete",
        "shutdown",
        "failed",
        "rejected",
        "remove",
        "orphaned",
    ];

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for name in NAMES.into_iter().chain([""]) {
            assert_eq!(TaskState::parse(name).to_string(), name);
        }
        assert_eq!(
            TaskState::parse("paused"),
            TaskState::Other("paused".into())
        );
        assert_eq!(TaskState::parse("paused").to_string(), "paused");
    }

    #[test]
    fn starting_and_final_do_not_overlap() {
        let all = NAMES.map(TaskState::parse);
        for s in &all {
            assert!(!(s.is_starting() && s.is_final()), "{s}");
        }
        assert!(!TaskState::Running.is_starting() && !TaskState::Running.is_final());
        assert_eq!(all.iter().filter(|s| s.is_starting()).count(), 8);
        assert_eq!(all.iter().filter(|s| s.is_final()).count(), 6);
    }
}
