//! The wire between swarm-exec's two sides: what the manager hands a helper and what the
//! helper sends back (no I/O but port-forward's sockets, in `forward`).
//!
//! # Layout
//!
//! - [`envelope`]: everything about a run that is not needed to schedule its helper — the
//!   command, its environment, user and working directory, its stdin, a not-after time and
//!   a fresh key — in the bytes of one swarm secret.
//! - [`frame`]: the lines a helper writes on its log stream: sealed (authenticated and
//!   encrypted with the run's key), numbered, the output compressed; and the reader that
//!   checks that every byte arrived, in order, before it gives an exit code.
//! - [`lines`]: lines out of arbitrarily split log chunks.
//! - [`tar`]: a one-file tar archive (the program, for a stopper or the relay image).
//! - [`session`]: the sealed two-way stream of a live session (`-t`, streamed `-i`)
//!   between the client and a helper on another node, through a relay that cannot read it.
//! - [`forward`]: `port-forward`'s connections as streams with windows inside a session,
//!   and the pumps that move them, the same at both ends.
//! - [`serve`]: `--persist`'s runs, many at once inside one session with a standing helper.
//!
//! Both sides depend on this crate; nothing that talks to an engine belongs here.

pub mod args;
pub mod envelope;
pub mod forward;
pub mod frame;
pub mod lines;
mod mux;
pub mod serve;
pub mod session;
pub mod tar;

pub use envelope::{Envelope, ExecSpec};
pub use frame::{Event, Reader, Stream, Writer};

/// The label every object swarm-exec creates carries; leftovers are found by it.
pub const HELPER_LABEL: &str = "swarm-exec.helper";

/// A full container ID: 64 lowercase hex digits. The helper only ever execs into
/// containers named this way.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An ID as messages show it: its first 12 characters, as `docker ps` does.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
