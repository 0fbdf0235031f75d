//! The node-side build this binary carries for zero-install helpers (made by `build.rs`):
//! the static `swarm-exec-node` and the loader that starts it from its swarm configs.

use swarm_exec_core::options::HelperSource;
use swarm_exec_core::program::NodeProgram;

pub static NODE_PROGRAM: NodeProgram = NodeProgram {
    loader: include_bytes!(concat!(env!("OUT_DIR"), "/swarm-exec-load")),
    program: include_bytes!(concat!(env!("OUT_DIR"), "/swarm-exec-node")),
};

/// `--image` / `SWARM_EXEC_IMAGE` when given, else zero-install.
pub fn helper_source(image: Option<String>) -> HelperSource {
    match image {
        Some(image) => HelperSource::Image(image),
        None => HelperSource::Embedded(NODE_PROGRAM),
    }
}
