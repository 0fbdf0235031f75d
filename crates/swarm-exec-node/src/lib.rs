//! The node side of swarm-exec: what runs in the helper container on the target's node,
//! with that node's docker socket and nothing else.
//!
//! # Layout
//!
//! - [`exec`]: the helper's entry (`node-exec`): reads its envelope and serves it as
//!   [`batch`] (the log path: the command in each target container over the node's
//!   socket, everything back as sealed frames on its stdout) or as a [`session`].
//! - [`docker_exec`]: one exec in a container, its output handed on as it comes;
//!   [`end`]: how a run ends and every way it can fail.
//! - [`session`]: the helper of a live session (`-t`, streamed `-i`): it dials the relay
//!   and bridges an attached exec to sealed frames; [`relay`]: `node-relay`, the relay
//!   container on the manager that pairs that connection with the client's attach stream.
//! - [`serve`]: `--persist`'s standing helper, which runs many commands in containers on
//!   its node over one session; `link`: an open session's connection, shared by both.
//! - [`debug`]: `debug`'s container beside the target, in its namespaces, in place of an
//!   exec (both paths).
//! - [`forward`]: `port-forward`'s forwarder, a container in the target's network
//!   namespace that the helper bridges to the session, and `node-forward`, which it runs.
//! - [`stop`]: stopping commands that outlive their helper: the stopper container and the
//!   `node-kill` it runs.
//! - [`main`]: the entry point (of `swarm-exec-node` and of `swarm-exec`'s hidden
//!   `node-exec`/`node-kill`): the only place here that prints or picks an exit code.
//!
//! The manager side never learns results from these exit codes — it reads frames — they
//! only show in the helper task's state, for whoever looks at it.

pub mod batch;
pub mod debug;
pub mod docker_exec;
pub mod end;
pub mod exec;
pub mod forward;
mod link;
pub mod relay;
pub mod serve;
pub mod session;
pub mod stop;

use std::io::Write as _;

use swarm_exec_proto::args::NodeCommand;

pub use end::{NodeEnd, HELPER_FAILED, HELPER_TIMED_OUT};

/// Runs `node-exec …` or `node-kill …` (`args` without the program name) and returns the
/// process's exit code.
pub fn main(args: &[String]) -> u8 {
    let say = |what: &dyn std::fmt::Display| {
        let _ = writeln!(std::io::stderr(), "swarm-exec node: {what}");
    };
    match NodeCommand::parse(args) {
        Err(e) => {
            say(&e);
            HELPER_FAILED
        }
        Ok(NodeCommand::Relay(r)) => match relay::node_relay(&r) {
            Ok(()) => 0,
            Err(e) => {
                say(&e);
                HELPER_FAILED
            }
        },
        Ok(NodeCommand::Kill(k)) => match stop::node_kill(&k) {
            Ok(_) => 0,
            Err(e) => {
                say(&e);
                1
            }
        },
        Ok(NodeCommand::Forward(f)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let ended = match rt {
                Ok(rt) => rt
                    .block_on(forward::node_forward(&f))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match ended {
                Ok(()) => 0,
                Err(e) => {
                    say(&e);
                    HELPER_FAILED
                }
            }
        }
        Ok(NodeCommand::Exec(a)) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let end = match rt {
                Ok(rt) => rt.block_on(exec::run(&a)),
                Err(e) => NodeEnd::Failed(end::NodeError::Runtime(e)),
            };
            if let NodeEnd::Failed(e) = &end {
                // stdout is the channel back; stderr is where the manager looks when
                // frames stop.
                say(e);
            }
            end.code()
        }
    }
}
