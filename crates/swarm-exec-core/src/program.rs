//! Zero-install: the node-side program travels to the nodes as swarm configs and the helper
//! runs it in the target task's own image, so nothing has to be put on any node first.
//!
//! A config holds less than 1,024,000 bytes; the static node-side program is larger. So it
//! is cut into numbered parts, and a few-kilobyte loader (`swarm-exec-load`, no libc) is the
//! helper's entrypoint: it joins the parts in memory and executes the result (see its
//! source). Loader and parts are named by the build's digest, created on first use, labelled
//! and kept: a swarm stores each config in its raft log on every manager, so one set per
//! build, never one per run. Concurrent first uses each create or find the same names.
//!
//! The engine lists and inspects a config with its data, and a helper spec needs the
//! configs' IDs: looking the parts up would move 4 MB (base64) per run, over ssh too. So a
//! last, small config, the build's index, holds the parts' names and IDs; a run reads that
//! alone, by its own label.

use sha2::{Digest, Sha256};

use crate::api::{ApiError, SwarmApi};
use crate::HELPER_LABEL;

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

/// The largest part: the engine refuses configs of 1,024,000 bytes or more.
pub const PART_SIZE: usize = 1_000_000;
/// Where the helper sees the loader and the parts (`1` … `N`, beside it).
pub const DIR: &str = "/.swarm-exec";
pub const LOADER_FILE: &str = "/.swarm-exec/load";
/// The [`HELPER_LABEL`] value of the configs; the others say which build and part.
pub const CONFIG_KIND: &str = "node";
pub const BUILD_LABEL: &str = "swarm-exec.node-build";
pub const PART_LABEL: &str = "swarm-exec.node-part";
/// On the index config only: the build it indexes.
pub const INDEX_LABEL: &str = "swarm-exec.node-index";
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

    /// The loader's first argument: how many parts, and how many bytes in all.
    pub fn loader_arg(&self) -> String {
        format!(
            "{}:{}",
            self.program_len.div_ceil(PART_SIZE),
            self.program_len
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

/// Makes sure every config of `program` exists, creating what is missing; returns them in
/// mount order. Safe to run from many clients at once: each creates or finds the same
/// names, and the index is made only once every part exists.
pub async fn ensure_configs<A: SwarmApi>(
    api: &A,
    program: &NodeProgram,
) -> Result<Vec<ConfigMount>, ApiError> {
    let build = program.build_id();
    let parts = program.parts();
    let indexed = api.list_configs(&format!("{INDEX_LABEL}={build}")).await?;
    if let Some(mounts) = indexed.iter().find_map(|i| read_index(&i.data, &parts)) {
        return Ok(mounts);
    }
    let mut mounts = Vec::with_capacity(parts.len());
    for part in &parts {
        let labels = config_labels(&build, part, parts.len());
        // Made by an earlier or concurrent client: then found by name.
        let id = api
            .create_config(&part.name, &labels, part.data(program))
            .await?;
        mounts.push(ConfigMount {
            id,
            name: part.name.clone(),
            file: part.file.clone(),
            mode: part.mode,
        });
    }
    let index: String = mounts
        .iter()
        .map(|m| format!("{} {}\n", m.name, m.id))
        .collect();
    let mut labels = vec![
        (HELPER_LABEL.to_owned(), CONFIG_KIND.to_owned()),
        (BUILD_LABEL.to_owned(), build.clone()),
        (INDEX_LABEL.to_owned(), build.clone()),
    ];
    labels.sort();
    let name = format!("swarm-exec-node-{}-index", &build[..12]);
    api.create_config(&name, &labels, index.as_bytes()).await?;
    Ok(mounts)
}

/// The mounts an index lists, if it lists every part (`name id` lines).
fn read_index(data: &[u8], parts: &[Part]) -> Option<Vec<ConfigMount>> {
    let text = std::str::from_utf8(data).ok()?;
    parts
        .iter()
        .map(|part| {
            let id = text.lines().find_map(|l| {
                let (name, id) = l.split_once(' ')?;
                (name == part.name && !id.is_empty()).then(|| id.to_owned())
            })?;
            Some(ConfigMount {
                id,
                name: part.name.clone(),
                file: part.file.clone(),
                mode: part.mode,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static PROGRAM: [u8; 2_500_001] = [7; 2_500_001];

    fn whole() -> &'static [u8] {
        &PROGRAM
    }

    fn short() -> &'static [u8] {
        &PROGRAM[..1_500_000]
    }

    /// A build of `loader` and `program`.
    fn build(loader: &'static [u8], program: fn() -> &'static [u8]) -> NodeProgram {
        NodeProgram {
            loader,
            program,
            program_len: program().len(),
            build_id: build_id_of(loader, program()).leak(),
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
        assert_eq!(p.loader_arg(), "3:2500001");
        let id = p.build_id();
        let prefix = format!("swarm-exec-node-{}-", &id[..12]);
        assert!(parts.iter().all(|x| x.name.starts_with(&prefix)));
        // Another build, other names.
        let q = build(b"loader2", whole);
        assert_ne!(q.build_id(), id);
        assert_ne!(q, p);
    }

    #[tokio::test]
    async fn creates_what_is_missing_and_reuses_the_rest() {
        let f = std::sync::Arc::new(crate::fake::Fake::default());
        let p = build(b"loader", short);
        let first = ensure_configs(&f, &p).await.unwrap();
        assert_eq!(first.len(), 3);
        // The loader, two parts and the index.
        assert_eq!(f.configs.lock().unwrap().len(), 4);
        let again = ensure_configs(&f, &p).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(f.configs.lock().unwrap().len(), 4, "nothing created twice");
    }
}
