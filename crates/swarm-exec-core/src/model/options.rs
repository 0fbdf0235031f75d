//! What to run and how — the part `task-exec`, `service-exec` and the plugin share — and
//! its checks, made before anything is created on the swarm.

use std::time::Duration;

use swarm_exec_proto::{Envelope, ExecSpec};

use crate::model::node_program::NodeProgram;

/// stdin travels in the run's envelope secret: at most this much, less the command.
pub const MAX_STDIN: usize = swarm_exec_proto::envelope::MAX_SECRET;

/// Where a run's helpers get the node-side program from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperSource {
    /// Zero-install: this build, carried as swarm configs, run in each target's own image.
    Embedded(NodeProgram),
    /// `--image`: a swarm-exec image that the nodes have or can pull.
    Image(String),
}

/// What to run, and how: the part `task-exec` and `service-exec` share.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// `task-exec`: for the whole run, from the call to the exit code; `service-exec`: for
    /// each wave.
    pub timeout: Duration,
    pub helper: HelperSource,
    /// What the command reads on its stdin (at most [`MAX_STDIN`] bytes); `None`: nothing.
    pub stdin: Option<Vec<u8>>,
    /// `debug`: the command runs in a container of this image beside the task, in its
    /// namespaces, instead of in the task's container (always through a helper).
    pub debug: Option<String>,
}

/// The kernel's limit on one argument or environment entry (MAX_ARG_STRLEN, with its NUL).
pub const MAX_ARG: usize = 128 * 1024 - 1;

/// Why [`RunOptions`] were refused, before anything was created.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRun {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("invalid helper image reference {0:?}")]
    BadImage(String),
    #[error("invalid image reference {0:?}")]
    BadDebugImage(String),
    #[error(
        "stdin holds {0} bytes or more; at most {MAX_STDIN} bytes fit in a swarm secret, {1} of them beside this command"
    )]
    StdinTooLarge(usize, usize),
    #[error("argument {index} of the command holds {len} bytes; Linux passes at most {MAX_ARG} in one argument")]
    ArgTooLong { index: usize, len: usize },
    #[error("environment entry {index} holds {len} bytes; Linux passes at most {MAX_ARG} in one")]
    EnvTooLong { index: usize, len: usize },
    #[error("the command and its environment hold {0} bytes; at most {1} fit in the run's secret")]
    CommandTooLarge(usize, usize),
    #[error("cannot make the run's key: {0}")]
    Key(#[source] std::io::Error),
}

impl RunOptions {
    /// What a helper needs of a run that runs no command of the user's (`cp`,
    /// `port-forward`): its program and its budget; `word` stands in for the command.
    pub fn helper_only(word: &str, helper: HelperSource, timeout: Duration) -> Self {
        RunOptions {
            command: vec![word.to_owned()],
            env: Vec::new(),
            workdir: None,
            user: None,
            privileged: false,
            timeout,
            helper,
            stdin: None,
            debug: None,
        }
    }

    pub fn check(&self) -> Result<(), InvalidRun> {
        if self.command.is_empty() {
            return Err(InvalidRun::EmptyCommand);
        }
        if let HelperSource::Image(image) = &self.helper {
            if !crate::model::target::is_image_ref(image) {
                return Err(InvalidRun::BadImage(image.clone()));
            }
        }
        if let Some(image) = &self.debug {
            if !crate::model::target::is_image_ref(image) {
                return Err(InvalidRun::BadDebugImage(image.clone()));
            }
        }
        let long = |words: &[String]| {
            words
                .iter()
                .enumerate()
                .find(|(_, w)| w.len() > MAX_ARG)
                .map(|(index, w)| (index, w.len()))
        };
        if let Some((index, len)) = long(&self.command) {
            return Err(InvalidRun::ArgTooLong { index, len });
        }
        if let Some((index, len)) = long(&self.env) {
            return Err(InvalidRun::EnvTooLong { index, len });
        }
        let bare = self.envelope_without_stdin(0, [0; 32]);
        if bare.stdin_room() == 0 {
            let size = bare.encode().len();
            return Err(InvalidRun::CommandTooLarge(size, MAX_STDIN - 1));
        }
        match &self.stdin {
            Some(data) => {
                let room = bare.stdin_room();
                if data.len() > room {
                    return Err(InvalidRun::StdinTooLarge(data.len(), room));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn envelope_without_stdin(&self, not_after_ms: u64, key: [u8; 32]) -> Envelope {
        Envelope {
            exec: ExecSpec {
                containers: Vec::new(),
                command: self.command.clone(),
                env: self.env.clone(),
                workdir: self.workdir.clone(),
                user: self.user.clone(),
                privileged: self.privileged,
                debug: self.debug.clone(),
            },
            stdin: None,
            not_after_ms,
            key,
            session: None,
        }
    }

    /// The run's envelope, with a fresh key: the command must not start after `budget`
    /// from now.
    pub fn envelope(&self, budget: Duration) -> Result<Envelope, InvalidRun> {
        let not_after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(budget);
        let key = Envelope::new_key().map_err(InvalidRun::Key)?;
        Ok(Envelope {
            stdin: self.stdin.clone(),
            ..self.envelope_without_stdin(
                u64::try_from(not_after.as_millis()).unwrap_or(u64::MAX),
                key,
            )
        })
    }
}
