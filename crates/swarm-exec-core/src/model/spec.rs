//! What the engine is asked to create, as plain values: the helper service's spec and what
//! the manager knows of an image. Built by [`crate::helper`], turned into Engine API specs
//! by [`crate::engine`].

use crate::model::node_program::ConfigMount;

/// The run's envelope (see [`swarm_exec_proto::envelope`]) is mounted into the helper only,
/// at this name under /run/secrets.
pub const ENVELOPE_FILE_NAME: &str = "envelope";

/// The helper's log: its own driver and options, never the node's defaults (a daemon-wide
/// `max-size=1m` would rotate frames away before they are read; `none` or `syslog` cannot
/// be read back at all). Rotation bounds what one run can leave on the node's disk; output
/// that runs further ahead of its reader than that is reported missing, never dropped
/// silently.
pub const LOG_DRIVER: &str = "json-file";
pub const LOG_OPTIONS: [(&str, &str); 2] = [("max-size", "256m"), ("max-file", "2")];

#[cfg(test)]
#[test]
fn the_helper_knows_when_its_log_rotates() {
    let max = format!("{}m", swarm_exec_proto::args::HELPER_LOG_MAX_MB);
    assert_eq!(LOG_OPTIONS[0], ("max-size", max.as_str()));
}

/// Everything the helper service is made of; the engine turns it into an Engine API spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperSpec {
    pub name: String,
    /// Names the helper's frames.
    pub tag: String,
    pub image: String,
    pub node_id: String,
    /// Replaces the image's entrypoint (zero-install: the loader); `None` keeps it (the
    /// swarm-exec image's binary).
    pub command: Option<Vec<String>>,
    /// Its arguments: nothing secret.
    pub args: Vec<String>,
    /// Zero-install: the node-side program's configs, and the user the helper runs as
    /// whatever the image says (root: the socket is root's).
    pub configs: Vec<ConfigMount>,
    pub user: Option<String>,
    pub labels: Vec<(String, String)>,
    pub socket: String,
    pub memory_limit: i64,
    pub nano_cpus: i64,
    /// (ID, name) of the run's envelope secret.
    pub envelope_secret: (String, String),
    /// A live session's overlay network (its ID), which the helper joins to dial the relay.
    pub network: Option<String>,
}

/// What the manager's engine knows of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
}

/// A live session's relay container on the engine the client talks to. It is always run
/// hardened (see the engine's mapping): no capabilities, no new privileges, a read-only
/// root, the user given here, removed by the engine once it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelaySpec {
    pub name: String,
    pub image: String,
    pub args: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub user: String,
    /// The network's ID.
    pub network: String,
    pub memory: i64,
    pub nano_cpus: i64,
}
