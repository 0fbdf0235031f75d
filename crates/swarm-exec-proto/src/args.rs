//! The helper's command line: what its service spec says, and nothing secret. Written by
//! the manager side ([`HelperArgs::to_args`]), read by the node side ([`NodeCommand::parse`]).

use std::time::Duration;

/// The subcommand the helper container runs.
pub const NODE_EXEC: &str = "node-exec";
/// The subcommand the stopper container runs.
pub const NODE_KILL: &str = "node-kill";
/// The subcommand a live session's relay container runs on the manager.
pub const NODE_RELAY: &str = "node-relay";
/// The subcommand `port-forward`'s forwarder container runs, in the target's network.
pub const NODE_FORWARD: &str = "node-forward";
/// Set to the helper's tag in the environment of every command it execs. Processes inherit
/// it, also those that leave the command's process tree (a daemon that forks and detaches),
/// so the stopper finds them all in the target container.
pub const RUN_ENV: &str = "SWARM_EXEC_RUN";

/// The helper's log rotates at this many MiB (its service's `max-size`, two files kept). A
/// helper whose frames came to most of that stays, idle, until it is removed (at most
/// [`ROTATED_LINGER`]): Docker 20.10 stops following a log at its rotation when the
/// container has already exited, and the client, behind, would then wait for a read again.
pub const HELPER_LOG_MAX_MB: u64 = 256;
/// How long such a helper stays after its last frame, unless removed first.
pub const ROTATED_LINGER: Duration = Duration::from_secs(60);

/// `node-exec`: run the envelope's command in these containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// Full IDs of the target containers, all on the helper's node.
    pub containers: Vec<String>,
    /// Names this helper's frames (also the suffix of its service name).
    pub tag: String,
    /// Where the envelope secret is mounted.
    pub envelope: String,
    /// How long the helper may run at most (it also stops at the envelope's not-after).
    pub budget: Duration,
    /// The helper's own image, which holds this program as its entrypoint and which the
    /// stopper runs; `None` (zero-install): the stopper runs the target container's image
    /// with this program copied in.
    pub image: Option<String>,
}

/// `node-kill`: signal `pid` and its descendants in `container`, and every process there
/// whose environment has [`RUN_ENV`]`=run`; SIGKILL after `grace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillArgs {
    pub pid: i32,
    pub container: String,
    /// The helper's tag, the value of [`RUN_ENV`] in its commands' environment.
    pub run: String,
    pub grace: Duration,
}

/// `node-relay`: on the manager, pair the one connection to `port` that presents the relay
/// token (read from stdin first) and copy bytes between it and stdin/stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayArgs {
    pub port: u16,
    /// How long a helper's connection is waited for.
    pub wait: Duration,
}

/// `node-forward`: connect the streams its stdin asks for (see [`crate::forward`]) to
/// these ports on localhost, and no others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardArgs {
    pub ports: Vec<u16>,
}

/// What the node side was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCommand {
    Exec(HelperArgs),
    Kill(KillArgs),
    Relay(RelayArgs),
    Forward(ForwardArgs),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("expected {NODE_EXEC}, {NODE_KILL}, {NODE_RELAY} or {NODE_FORWARD}")]
    NoCommand,
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{0} needs a value")]
    NoValue(&'static str),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0}: not a number: {1:?}")]
    NotANumber(&'static str, String),
}

/// `command` and then each flag with its value, as the node side's command line.
fn command_line(command: &str, flags: &[(&str, String)]) -> Vec<String> {
    let mut args = vec![command.to_owned()];
    for (flag, value) in flags {
        args.extend([(*flag).to_owned(), value.clone()]);
    }
    args
}

/// Every flag either command takes, each with a value.
const FLAGS: [&str; 9] = [
    "--port",
    "--container",
    "--tag",
    "--envelope",
    "--timeout-ms",
    "--image",
    "--pid",
    "--grace-ms",
    "--run",
];

/// A flag's value as a number.
fn number<T: std::str::FromStr>(flag: &'static str, value: &str) -> Result<T, ArgsError> {
    value
        .parse()
        .map_err(|_| ArgsError::NotANumber(flag, value.to_owned()))
}

impl HelperArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut flags: Vec<(&str, String)> = self
            .containers
            .iter()
            .map(|c| ("--container", c.clone()))
            .collect();
        flags.extend([
            ("--tag", self.tag.clone()),
            ("--envelope", self.envelope.clone()),
            ("--timeout-ms", self.budget.as_millis().to_string()),
        ]);
        flags.extend(self.image.iter().map(|i| ("--image", i.clone())));
        command_line(NODE_EXEC, &flags)
    }
}

impl KillArgs {
    pub fn to_args(&self) -> Vec<String> {
        let flags = [
            ("--pid", self.pid.to_string()),
            ("--container", self.container.clone()),
            ("--run", self.run.clone()),
            ("--grace-ms", self.grace.as_millis().to_string()),
        ];
        command_line(NODE_KILL, &flags)
    }
}

impl RelayArgs {
    pub fn to_args(&self) -> Vec<String> {
        let flags = [
            ("--port", self.port.to_string()),
            ("--timeout-ms", self.wait.as_millis().to_string()),
        ];
        command_line(NODE_RELAY, &flags)
    }
}

impl ForwardArgs {
    pub fn to_args(&self) -> Vec<String> {
        let flags: Vec<(&str, String)> = self
            .ports
            .iter()
            .map(|p| ("--port", p.to_string()))
            .collect();
        command_line(NODE_FORWARD, &flags)
    }
}

impl NodeCommand {
    /// `args` without the program name.
    pub fn parse(args: &[String]) -> Result<NodeCommand, ArgsError> {
        let (cmd, rest) = args.split_first().ok_or(ArgsError::NoCommand)?;
        let mut containers = Vec::new();
        let (mut tag, mut envelope, mut timeout, mut image, mut pid, mut grace, mut run) =
            (None, None, None, None, None, None, None);
        let mut ports = Vec::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let name = FLAGS
                .into_iter()
                .find(|f| f == flag)
                .ok_or_else(|| ArgsError::Unknown(flag.clone()))?;
            let value = it.next().ok_or(ArgsError::NoValue(name))?.clone();
            match name {
                "--container" => containers.push(value),
                "--tag" => tag = Some(value),
                "--envelope" => envelope = Some(value),
                "--timeout-ms" => timeout = Some(Duration::from_millis(number(name, &value)?)),
                "--image" => image = Some(value),
                "--grace-ms" => grace = Some(Duration::from_millis(number(name, &value)?)),
                "--run" => run = Some(value),
                "--port" => ports.push(number::<u16>(name, &value)?),
                _ => pid = Some(number::<i32>(name, &value)?),
            }
        }
        match cmd.as_str() {
            NODE_EXEC => {
                if containers.is_empty() {
                    return Err(ArgsError::Missing("--container"));
                }
                Ok(NodeCommand::Exec(HelperArgs {
                    containers,
                    tag: tag.ok_or(ArgsError::Missing("--tag"))?,
                    envelope: envelope.ok_or(ArgsError::Missing("--envelope"))?,
                    budget: timeout.ok_or(ArgsError::Missing("--timeout-ms"))?,
                    image,
                }))
            }
            NODE_KILL => {
                let [container] = <[String; 1]>::try_from(containers)
                    .map_err(|_| ArgsError::Missing("--container"))?;
                Ok(NodeCommand::Kill(KillArgs {
                    pid: pid.ok_or(ArgsError::Missing("--pid"))?,
                    container,
                    run: run.ok_or(ArgsError::Missing("--run"))?,
                    grace: grace.ok_or(ArgsError::Missing("--grace-ms"))?,
                }))
            }
            NODE_RELAY => Ok(NodeCommand::Relay(RelayArgs {
                port: ports.pop().ok_or(ArgsError::Missing("--port"))?,
                wait: timeout.ok_or(ArgsError::Missing("--timeout-ms"))?,
            })),
            NODE_FORWARD if ports.is_empty() => Err(ArgsError::Missing("--port")),
            NODE_FORWARD => Ok(NodeCommand::Forward(ForwardArgs { ports })),
            _ => Err(ArgsError::NoCommand),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_commands_round_trip() {
        let exec = HelperArgs {
            containers: vec!["a".repeat(64), "b".repeat(64)],
            tag: "0123456789ab".into(),
            envelope: "/run/secrets/envelope".into(),
            budget: Duration::from_millis(1500),
            image: Some("sha256:1234".into()),
        };
        assert_eq!(
            NodeCommand::parse(&exec.to_args()),
            Ok(NodeCommand::Exec(exec.clone()))
        );
        let zero_install = HelperArgs {
            image: None,
            ..exec
        };
        assert_eq!(
            NodeCommand::parse(&zero_install.to_args()),
            Ok(NodeCommand::Exec(zero_install))
        );
        let kill = KillArgs {
            pid: 4242,
            container: "c".repeat(64),
            run: "0123456789ab".into(),
            grace: Duration::from_secs(5),
        };
        assert_eq!(
            NodeCommand::parse(&kill.to_args()),
            Ok(NodeCommand::Kill(kill))
        );
        let relay = RelayArgs {
            port: 7373,
            wait: Duration::from_secs(20),
        };
        assert_eq!(
            NodeCommand::parse(&relay.to_args()),
            Ok(NodeCommand::Relay(relay))
        );
        let forward = ForwardArgs {
            ports: vec![8080, 5432],
        };
        assert_eq!(
            NodeCommand::parse(&forward.to_args()),
            Ok(NodeCommand::Forward(forward))
        );
        assert_eq!(
            NodeCommand::parse(&["node-forward".into()]),
            Err(ArgsError::Missing("--port"))
        );
    }

    #[test]
    fn refuses_what_the_manager_never_writes() {
        let p =
            |a: &[&str]| NodeCommand::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&[]), Err(ArgsError::NoCommand));
        assert_eq!(p(&["node-exec", "--tag"]), Err(ArgsError::NoValue("--tag")));
        assert_eq!(
            p(&["node-exec", "--x", "1"]),
            Err(ArgsError::Unknown("--x".into()))
        );
        assert_eq!(
            p(&["node-exec", "--tag", "t"]),
            Err(ArgsError::Missing("--container"))
        );
        assert!(matches!(
            p(&["node-kill", "--pid", "x"]),
            Err(ArgsError::NotANumber("--pid", _))
        ));
    }
}
