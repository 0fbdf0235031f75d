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

use crate::engine::{ApiError, SwarmApi};
use crate::model::labels::HELPER_LABEL;
use crate::model::node_program::{
    config_labels, ConfigMount, NodeProgram, Part, BUILD_LABEL, CONFIG_KIND, INDEX_LABEL,
};

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
    use crate::model::node_program::tests::build;

    static PROGRAM: [u8; 1_500_000] = [7; 1_500_000];

    fn short() -> &'static [u8] {
        &PROGRAM
    }

    #[tokio::test]
    async fn creates_what_is_missing_and_reuses_the_rest() {
        let f = std::sync::Arc::new(crate::engine::fake::Fake::default());
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
