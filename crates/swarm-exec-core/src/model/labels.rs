//! The labels swarm-exec puts on what it creates, and their values: how `gc` and an
//! operator tell its objects apart from everything else on the swarm.

pub use swarm_exec_proto::HELPER_LABEL;
/// Unix time (seconds) after which a helper is stale and may be garbage-collected.
pub const DEADLINE_LABEL: &str = "swarm-exec.deadline";
/// The [`HELPER_LABEL`] values of what swarm-exec creates: helper services, and the
/// envelope secrets of their runs.
pub const HELPER_KIND: &str = "1";
pub const ENVELOPE_KIND: &str = "envelope";
/// How long (whole seconds, rounded up) from its creation a helper or envelope may be in
/// use; `gc` adds this to the manager's creation time, so no client clock is involved.
pub const BUDGET_LABEL: &str = "swarm-exec.budget";
/// The [`HELPER_LABEL`] values of a session's relay container, its image and its network.
pub const RELAY_KIND: &str = "relay";
pub const NETWORK_KIND: &str = "network";
/// On a live session's helper and envelope: the session's tag (its relay is the container
/// `swarm-exec-relay-<tag>`) and the swarm node of the engine that runs the relay. The
/// relay ends with the client's attachment to it, so a session whose relay is gone is
/// over: `gc` on that engine takes its helper and envelope at once, whatever their budget
/// (`-t` has none to speak of).
pub const SESSION_LABEL: &str = "swarm-exec.session";
pub const RELAY_NODE_LABEL: &str = "swarm-exec.relay-node";
/// What a helper, envelope or relay works on.
pub const TARGET_TASK_LABEL: &str = "swarm-exec.target.task";
pub const TARGET_SERVICE_LABEL: &str = "swarm-exec.target.service";
pub const TARGET_CONTAINER_LABEL: &str = "swarm-exec.target.container";

/// Who started a helper: `SWARM_EXEC_ACTOR` when set, else `user@host` of the client.
pub const ACTOR_LABEL: &str = "swarm-exec.actor";
/// What kind of thing a helper does: the client's subcommand (`task-exec`, `debug`, …),
/// never the command it runs.
pub const COMMAND_LABEL: &str = "swarm-exec.command";

/// Which named action a helper runs (`swarm-exec action`): its name, never its command.
pub const ACTION_LABEL: &str = "swarm-exec.action";

/// The origin every helper of this process is labelled with (see [`set_origin`]).
static ORIGIN: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Names, once per process, who runs swarm-exec, which subcommand and (for `action`) which
/// action: every helper made after carries them as [`ACTOR_LABEL`], [`COMMAND_LABEL`] and
/// [`ACTION_LABEL`], so `docker service inspect` and the engine's events show who ran what
/// kind of thing where.
pub fn set_origin(actor: &str, command: &str, action: Option<&str>) {
    let mut labels = vec![
        (ACTOR_LABEL.to_owned(), actor.to_owned()),
        (COMMAND_LABEL.to_owned(), command.to_owned()),
    ];
    if let Some(a) = action {
        labels.push((ACTION_LABEL.to_owned(), a.to_owned()));
    }
    let _ = ORIGIN.set(labels);
}

/// The labels [`set_origin`] gave, if any.
pub fn origin() -> &'static [(String, String)] {
    ORIGIN.get().map_or(&[], |o| o.as_slice())
}
