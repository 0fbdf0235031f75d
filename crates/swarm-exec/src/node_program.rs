//! The node-side build this binary carries for zero-install helpers (made by `build.rs`):
//! the loader, and the static `swarm-exec-node` compressed — unpacked only when a run has to
//! create its configs, and then once.

use std::sync::OnceLock;

use swarm_exec_core::model::node_program::NodeProgram;
use swarm_exec_core::model::options::HelperSource;

mod built {
    include!(concat!(env!("OUT_DIR"), "/node_program.rs"));
}

static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swarm-exec-node.zst"));

fn program() -> &'static [u8] {
    static PROGRAM: OnceLock<Vec<u8>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        // What build.rs packed: it cannot fail but on a corrupt binary.
        zstd::bulk::decompress(PACKED, built::PROGRAM_LEN).expect("the embedded node program")
    })
}

pub static NODE_PROGRAM: NodeProgram = NodeProgram {
    loader: include_bytes!(concat!(env!("OUT_DIR"), "/swarm-exec-load")),
    program,
    program_len: built::PROGRAM_LEN,
    build_id: built::BUILD_ID,
};

/// `--image` / `SWARM_EXEC_IMAGE` when given, else zero-install.
pub fn helper_source(image: Option<String>) -> HelperSource {
    match image {
        Some(image) => HelperSource::Image(image),
        None => HelperSource::Embedded(NODE_PROGRAM),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_build_unpacks_to_what_its_digest_names() {
        let p = &NODE_PROGRAM;
        let program = (p.program)();
        assert_eq!(program.len(), p.program_len);
        assert_eq!(&program[..4], b"\x7fELF", "a static ELF program");
        assert_eq!(
            swarm_exec_core::model::node_program::build_id_of(p.loader, program),
            p.build_id
        );
        assert!(
            PACKED.len() < program.len() / 2,
            "compressed: {}",
            PACKED.len()
        );
    }
}
