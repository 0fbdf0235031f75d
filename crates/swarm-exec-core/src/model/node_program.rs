//! The node-side build this binary carries, as values: its digest, how it is cut into
//! config-sized parts, where the helper sees them, and the labels that name them. Creating
//! the configs on a swarm is [`crate::helper::configs`].

use sha2::{Digest, Sha256};

use crate::model::labels::HELPER_LABEL;

/// The node-side build embedded in the binary: the loader and the program it starts.
#[derive(Clone, Copy)]
pub struct NodeProgram {
    pub loader: &'static [u8],
    /// The program itself, made on first need: the binary carries it compressed, and a run
    /// that finds its configs on the swarm never needs it.
    pub program: fn() -> &'static [u8],
    pub program_len: usize,
    /// [`build_id_of`] the loader and the program, computed when the binary was built.
    pub build_id: &'static str,
    /// The program's own SHA-256 (hex), computed when the binary was built: the loader
    /// executes the joined parts only if they hash to it.
    pub program_sha256: &'static str,
}

impl std::fmt::Debug for NodeProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProgram")
            .field("build_id", &self.build_id)
            .field("program_len", &self.program_len)
            .finish_non_exhaustive()
    }
}

/// Two builds are the same when their digests are.
impl PartialEq for NodeProgram {
    fn eq(&self, other: &Self) -> bool {
        self.build_id == other.build_id
    }
}
impl Eq for NodeProgram {}

/// The digest (hex) that names a build's configs: sha256 of the loader's length (8 bytes,
/// little-endian), the loader and the program. `crates/swarm-exec/build.rs` computes the
/// same at build time.
pub fn build_id_of(loader: &[u8], program: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((loader.len() as u64).to_le_bytes());
    h.update(loader);
    h.update(program);
    hex(&h.finalize())
}

/// The SHA-256 (hex) of `data`: what the loader checks the joined program against.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The largest part: the engine refuses configs of 1,024,000 bytes or more.
pub const PART_SIZE: usize = 1_000_000;
/// Where the helper sees the loader and the parts (`1` … `N`, beside it).
pub const DIR: &str = "/.swarm-exec";
pub const LOADER_FILE: &str = "/.swarm-exec/load";
/// The [`HELPER_LABEL`] value of the configs; the others say which build and part.
pub const CONFIG_KIND: &str = "node";
pub const BUILD_LABEL: &str = "swarm-exec.node-build";
pub const PART_LABEL: &str = "swarm-exec.node-part";
/// On the loader's config only, which is also the build's index: the build it indexes.
pub const INDEX_LABEL: &str = "swarm-exec.node-index";
/// Between the loader's bytes and the index in the loader's config. The kernel maps only
/// what the loader's program headers name, so bytes after them do not change what runs.
pub const INDEX_MARK: &[u8] = b"\n#swarm-exec-index\n";
/// The platform the embedded build runs on (`Description.Platform` of a node).
pub const OS: &str = "linux";
pub const ARCH: &str = "x86_64";

/// One config of a build, before it exists on the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// `load`, or the part's number.
    pub index: String,
    /// Where it is mounted in the helper, and with which mode.
    pub file: String,
    pub mode: u32,
    /// Which bytes of the program; `None`: the loader.
    pub bytes: Option<std::ops::Range<usize>>,
}

impl Part {
    /// What the config holds (the program is made now if it was not yet).
    pub fn data(&self, p: &NodeProgram) -> &'static [u8] {
        match &self.bytes {
            None => p.loader,
            Some(range) => &(p.program)()[range.clone()],
        }
    }
}

/// A config as the helper spec mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMount {
    pub id: String,
    pub name: String,
    pub file: String,
    pub mode: u32,
}

impl NodeProgram {
    /// The build's digest (hex): names its configs.
    pub fn build_id(&self) -> String {
        self.build_id.to_owned()
    }

    /// The loader first, then the program's parts in order.
    pub fn parts(&self) -> Vec<Part> {
        let name = |index: &str| format!("swarm-exec-node-{}-{index}", &self.build_id[..12]);
        let mut parts = vec![Part {
            name: name("load"),
            index: "load".to_owned(),
            file: LOADER_FILE.to_owned(),
            mode: 0o555,
            bytes: None,
        }];
        for start in (0..self.program_len).step_by(PART_SIZE) {
            let index = (start / PART_SIZE + 1).to_string();
            parts.push(Part {
                name: name(&index),
                file: format!("{DIR}/{index}"),
                index,
                mode: 0o444,
                bytes: Some(start..self.program_len.min(start + PART_SIZE)),
            });
        }
        parts
    }

    /// The loader's first argument: how many parts, how many bytes in all, and the
    /// SHA-256 they must hash to.
    pub fn loader_arg(&self) -> String {
        format!(
            "{}:{}:{}",
            self.program_len.div_ceil(PART_SIZE),
            self.program_len,
            self.program_sha256
        )
    }
}

/// Whether the embedded build runs on a node of this platform (as `Description.Platform`
/// gives it). A platform that could not be read is given the benefit of the doubt: the
/// helper then fails on its own, with the engine's words.
pub fn runs_on(os: &str, arch: &str) -> bool {
    (os.is_empty() || os == OS) && (arch.is_empty() || arch == ARCH || arch == "amd64")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The labels of `part` of build `build`.
pub fn config_labels(build: &str, part: &Part, parts: usize) -> Vec<(String, String)> {
    vec![
        (HELPER_LABEL.to_owned(), CONFIG_KIND.to_owned()),
        (BUILD_LABEL.to_owned(), build.to_owned()),
        (
            PART_LABEL.to_owned(),
            format!("{}/{}", part.index, parts - 1),
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    static PROGRAM: [u8; 2_500_001] = [7; 2_500_001];

    fn whole() -> &'static [u8] {
        &PROGRAM
    }

    /// A build of `loader` and `program`.
    pub(crate) fn build(loader: &'static [u8], program: fn() -> &'static [u8]) -> NodeProgram {
        NodeProgram {
            loader,
            program,
            program_len: program().len(),
            build_id: build_id_of(loader, program()).leak(),
            program_sha256: sha256_hex(program()).leak(),
        }
    }

    #[test]
    fn parts_fit_in_configs_and_add_up_to_the_program() {
        let p = build(b"loader", whole);
        let parts = p.parts();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].file, "/.swarm-exec/load");
        assert_eq!(parts[0].mode, 0o555);
        assert_eq!(parts[0].data(&p), b"loader");
        assert!(parts.iter().all(|x| x.data(&p).len() < 1_024_000));
        let joined: Vec<u8> = parts[1..]
            .iter()
            .flat_map(|x| x.data(&p).to_vec())
            .collect();
        assert_eq!(joined, PROGRAM);
        assert_eq!(parts[3].file, "/.swarm-exec/3");
        assert_eq!(
            p.loader_arg(),
            format!("3:2500001:{}", sha256_hex(&PROGRAM))
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let id = p.build_id();
        let prefix = format!("swarm-exec-node-{}-", &id[..12]);
        assert!(parts.iter().all(|x| x.name.starts_with(&prefix)));
        // Another build, other names.
        let q = build(b"loader2", whole);
        assert_ne!(q.build_id(), id);
        assert_ne!(q, p);
    }
}
