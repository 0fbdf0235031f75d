//! What a session is asked to do, and how long it waits for each step.

use std::time::Duration;

use crate::helper::Carrier;
use crate::lookup::resolve::Resolved;
use crate::model::options::RunOptions;

/// When the first helper has run this long without reaching the relay, the user is told
/// that the overlay may be blocked (and what to open)...
pub const HELLO_WARN: Duration = Duration::from_secs(10);
/// ...and past this the session fails. Not sooner: a node that left the overlay moments
/// ago (its last session's helper, or the last relay on the manager) and joins it again
/// may not learn the other end's address until the engines' next full sync of the
/// overlay's peers, which comes every 30 s. Seen on the lab: one session in six waited
/// for it, up to 44 s; a blocked overlay cannot be told apart from that.
pub const HELLO_WAIT: Duration = Duration::from_secs(75);
/// How long the helper may take to reach `running`.
pub const START_WAIT: Duration = Duration::from_secs(30);
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// What the session is to do.
pub struct SessionRequest<'a> {
    pub task: &'a Resolved,
    pub run: &'a RunOptions,
    pub carrier: &'a Carrier,
    /// A TTY for the command (`-t`).
    pub tty: bool,
    /// `--network`: an attachable overlay of the operator's instead of [`SESSION_NETWORK`](crate::session::SESSION_NETWORK).
    pub network: Option<&'a str>,
    /// Sent before anything read from `input` (what `-i` read to decide on a session).
    pub stdin_prefix: Vec<u8>,
    /// `cp` instead of a command.
    pub copy: Option<Copy>,
    /// `port-forward` instead of a command: the remote ports its forwarder may connect to;
    /// the streams travel as the session's input and output.
    pub forward: Option<Vec<u16>>,
    /// `--persist`'s standing helper instead of a command: it runs what the session's
    /// input asks for (see [`swarm_exec_proto::serve`]).
    pub serve: bool,
}

/// A `cp` through a session. Out of the container: its archive of `path` comes as stdout.
/// Into it: `decide` is given what `path` is there (see [`swarm_exec_proto::session::Msg::Stat`])
/// and names the directory to unpack in (or says why not); the archive then comes from
/// the session's input.
pub struct Copy {
    pub out: bool,
    pub path: String,
    pub decide: Option<Decide>,
}

/// See [`Copy`](struct@Copy).
pub type Decide = Box<dyn FnOnce(Option<u32>) -> Result<String, String> + Send>;
