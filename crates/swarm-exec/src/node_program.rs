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
    program_sha256: built::PROGRAM_SHA256,
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
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;
    use swarm_exec_core::model::node_program::sha256_hex;

    /// A directory removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The embedded loader, set up as a helper sees it: `load` and parts `1`…`N` of
    /// `program` (cut in two here) in one directory.
    fn loader_beside(program: &[u8], name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sx-loader-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let load = dir.join("load");
        std::fs::write(&load, NODE_PROGRAM.loader).unwrap();
        std::fs::set_permissions(&load, std::fs::Permissions::from_mode(0o555)).unwrap();
        let half = program.len() / 2;
        std::fs::write(dir.join("1"), &program[..half]).unwrap();
        std::fs::write(dir.join("2"), &program[half..]).unwrap();
        Scratch(dir)
    }

    fn load(dir: &Scratch, spec: &str) -> std::process::Output {
        Command::new(dir.0.join("load")).arg(spec).output().unwrap()
    }

    /// The loader executes the joined parts only when they hash to the digest it is
    /// given: run here on this machine's own `true` and `false`, as it runs in a helper.
    #[test]
    fn the_loader_executes_only_the_program_its_digest_names() {
        let truth = std::fs::read("/bin/true").unwrap();
        let len = truth.len();
        let dir = loader_beside(&truth, "true");
        let ok = load(&dir, &format!("2:{len}:{}", sha256_hex(&truth)));
        assert_eq!(ok.status.code(), Some(0), "{ok:?}");

        // Another program of the same size under the same names: refused, not run.
        let mut other = std::fs::read("/bin/false").unwrap();
        other.resize(len, 0);
        let dir = loader_beside(&other, "other");
        let refused = load(&dir, &format!("2:{len}:{}", sha256_hex(&truth)));
        assert_eq!(refused.status.code(), Some(125), "{refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("SHA-256 differs"), "{stderr}");
        assert!(stderr.contains("not executed"), "{stderr}");

        // No digest, or a malformed one: refused before anything is read.
        for spec in [
            format!("2:{len}"),
            format!("2:{len}:abc"),
            format!("2:{len}:{}:x", sha256_hex(&truth)),
        ] {
            let out = load(&dir, &spec);
            assert_eq!(out.status.code(), Some(125), "{spec}: {out:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("not PARTS:BYTES:SHA256"), "{stderr}");
        }
    }

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
        assert_eq!(sha256_hex(program), p.program_sha256);
        assert!(
            PACKED.len() < program.len() / 2,
            "compressed: {}",
            PACKED.len()
        );
    }
}
