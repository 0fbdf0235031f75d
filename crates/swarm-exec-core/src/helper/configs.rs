//! Zero-install: the node-side program travels to the nodes as swarm configs and the helper
//! runs it in the target task's own image, so nothing has to be put on any node first.
//!
//! A config holds less than 1,024,000 bytes; the static node-side program is larger. So it
//! is cut into numbered parts, and a few-kilobyte loader (`swarm-exec-load`, no libc) is the
//! helper's entrypoint: it joins the parts in memory, checks them against the program's
//! SHA-256 it is given, and executes the result (see its source). Loader and parts are named
//! by the build's digest, created on first use, labelled and kept: a swarm stores each
//! config in its raft log on every manager, so one set per build, never one per run.
//! Concurrent first uses each create or find the same names.
//!
//! Names are not trusted: whoever may create configs can create one under this build's
//! names first. A config found under a part's name must hold exactly that part, and the
//! loader's must begin with this build's loader, or the run is refused before any helper
//! exists; the loader then refuses parts that do not hash to the program's SHA-256.
//!
//! The engine lists and inspects a config with its data, and a helper spec needs the
//! configs' IDs: looking the parts up would move 4 MB (base64) per run, over ssh too. So the
//! loader's config, made last, also holds the build's index — the parts' names and IDs,
//! after the loader's bytes — and a run reads that one config alone, by its label, and
//! checks its loader bytes as it reads them.

use crate::engine::{ApiError, ServiceInfo, SwarmApi};
use crate::model::node_program::{
    config_labels, ConfigMount, NodeProgram, Part, INDEX_LABEL, INDEX_MARK,
};

/// Why the program's configs cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A config under one of this build's names holds something else: made by someone
    /// other than this build of swarm-exec. Never used, never removed here.
    #[error(
        "config {name} (ID {id}) exists but does not hold this build's node program, so it \
         was not used and nothing ran: something other than this swarm-exec made it under \
         that name. Check who did (docker config inspect {name}), remove it, and run again"
    )]
    NotOurs { name: String, id: String },
}

/// Makes sure every config of `program` exists, creating what is missing; returns them in
/// mount order (the loader first). Safe to run from many clients at once: each creates or
/// finds the same names, and the loader (the index) is made only once every part exists.
pub async fn ensure_configs<A: SwarmApi>(
    api: &A,
    program: &NodeProgram,
) -> Result<Vec<ConfigMount>, ConfigError> {
    let build = program.build_id();
    let parts = program.parts();
    let (loader, program_parts) = parts.split_first().expect("a build has a loader");
    let indexed = api.list_configs(&format!("{INDEX_LABEL}={build}")).await?;
    // A config that carries the label but not the loader's name is someone else's: skipped.
    if let Some(mounts) = indexed
        .iter()
        .filter(|c| c.name == loader.name)
        .find_map(|c| read_index(c, program, &parts))
    {
        return Ok(mounts);
    }
    let mut mounts = Vec::with_capacity(parts.len());
    for part in program_parts {
        let labels = config_labels(&build, part, parts.len());
        let data = part.data(program);
        // Made by an earlier or concurrent client: then found by name, and checked.
        let found = api.create_config(&part.name, &labels, data).await?;
        if found.data != data {
            return Err(not_ours(found));
        }
        mounts.push(mount(part, found.id));
    }
    let index: String = mounts
        .iter()
        .map(|m| format!("{} {}\n", m.name, m.id))
        .collect();
    let data = [program.loader, INDEX_MARK, index.as_bytes()].concat();
    let mut labels = config_labels(&build, loader, parts.len());
    labels.push((INDEX_LABEL.to_owned(), build.clone()));
    labels.sort();
    let found = api.create_config(&loader.name, &labels, &data).await?;
    // One made concurrently lists the same parts; one left from parts made earlier (and
    // since removed) lists others: either way its loader is what runs, and it is checked.
    if !found.data.starts_with(program.loader) {
        return Err(not_ours(found));
    }
    mounts.insert(0, mount(loader, found.id));
    Ok(mounts)
}

fn not_ours(c: ServiceInfo) -> ConfigError {
    ConfigError::NotOurs {
        name: c.name,
        id: c.id,
    }
}

fn mount(part: &Part, id: String) -> ConfigMount {
    ConfigMount {
        id,
        name: part.name.clone(),
        file: part.file.clone(),
        mode: part.mode,
    }
}

/// The mounts the loader's config `c` lists, if it holds this build's loader and lists
/// every part (`name id` lines after [`INDEX_MARK`]).
fn read_index(c: &ServiceInfo, program: &NodeProgram, parts: &[Part]) -> Option<Vec<ConfigMount>> {
    let rest = c.data.strip_prefix(program.loader)?;
    let text = std::str::from_utf8(rest.strip_prefix(INDEX_MARK)?).ok()?;
    let (loader, program_parts) = parts.split_first()?;
    let mut mounts = vec![mount(loader, c.id.clone())];
    for part in program_parts {
        let id = text.lines().find_map(|l| {
            let (name, id) = l.split_once(' ')?;
            (name == part.name && !id.is_empty()).then(|| id.to_owned())
        })?;
        mounts.push(mount(part, id));
    }
    Some(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::Fake;
    use crate::model::labels::HELPER_LABEL;
    use crate::model::node_program::tests::build;
    use std::sync::Arc;

    static PROGRAM: [u8; 1_500_000] = [7; 1_500_000];

    fn short() -> &'static [u8] {
        &PROGRAM
    }

    fn names(f: &Fake) -> Vec<String> {
        f.configs
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    fn squat(f: &Fake, name: &str, labels: &[(&str, &str)], data: &[u8]) {
        f.configs.lock().unwrap().push(ServiceInfo {
            id: format!("squat-{name}"),
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            data: data.to_vec(),
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn creates_what_is_missing_and_reuses_the_rest() {
        let f = Arc::new(Fake::default());
        let p = build(b"loader", short);
        let first = ensure_configs(&f, &p).await.unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].file, "/.swarm-exec/load");
        // The two parts, then the loader that indexes them.
        let made = names(&f);
        assert_eq!(made.len(), 3);
        assert!(made[2].ends_with("-load"), "{made:?}");
        let loader = f.configs.lock().unwrap()[2].data.clone();
        let index = format!(
            "{} {}\n{} {}\n",
            first[1].name, first[1].id, first[2].name, first[2].id
        );
        assert_eq!(
            loader,
            [&b"loader"[..], INDEX_MARK, index.as_bytes()].concat()
        );
        let again = ensure_configs(&f, &p).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(names(&f).len(), 3, "nothing created twice");
    }

    #[tokio::test]
    async fn a_part_squatted_under_its_name_is_refused_before_anything_runs() {
        let f = Arc::new(Fake::default());
        let p = build(b"loader", short);
        let name = p.parts()[1].name.clone();
        // Same size, other bytes, and this build's labels: as a squatter would make it.
        let build_label = ("swarm-exec.node-build", p.build_id);
        squat(
            &f,
            &name,
            &[(HELPER_LABEL, "node"), build_label],
            &[9; 1_000_000],
        );
        let err = ensure_configs(&f, &p).await.unwrap_err();
        assert!(
            matches!(&err, ConfigError::NotOurs { name: n, .. } if *n == name),
            "{err}"
        );
        assert!(err.to_string().contains("was not used"), "{err}");
        assert!(
            !names(&f).iter().any(|n| n.ends_with("-load")),
            "no index made"
        );
    }

    #[tokio::test]
    async fn a_loader_squatted_under_its_name_is_refused() {
        let f = Arc::new(Fake::default());
        let p = build(b"loader", short);
        let name = p.parts()[0].name.clone();
        squat(
            &f,
            &name,
            &[(HELPER_LABEL, "node")],
            b"#!/bin/sh\necho owned\n",
        );
        let err = ensure_configs(&f, &p).await.unwrap_err();
        assert!(
            matches!(&err, ConfigError::NotOurs { name: n, .. } if *n == name),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_index_of_another_name_or_loader_is_not_taken() {
        let f = Arc::new(Fake::default());
        let p = build(b"loader", short);
        let index = [&b"evil"[..], INDEX_MARK, b"x 1\n"].concat();
        // The index label on a config of another name, and on one of the loader's name
        // with other bytes: neither is read as this build's index.
        squat(&f, "other", &[(INDEX_LABEL, p.build_id)], &index);
        let mounts = ensure_configs(&f, &p).await.unwrap();
        assert!(
            mounts.iter().all(|m| !m.id.starts_with("squat-")),
            "{mounts:?}"
        );
        let f = Arc::new(Fake::default());
        squat(&f, &p.parts()[0].name, &[(INDEX_LABEL, p.build_id)], &index);
        assert!(matches!(
            ensure_configs(&f, &p).await,
            Err(ConfigError::NotOurs { .. })
        ));
    }

    #[tokio::test]
    async fn a_loader_left_with_an_older_index_is_used_with_the_parts_made_now() {
        let f = Arc::new(Fake::default());
        let p = build(b"loader", short);
        let stale = [&b"loader"[..], INDEX_MARK, b"gone gone\n"].concat();
        squat(&f, &p.parts()[0].name, &[], &stale);
        let mounts = ensure_configs(&f, &p).await.unwrap();
        assert_eq!(mounts[0].id, format!("squat-{}", p.parts()[0].name));
        assert!(mounts[1..].iter().all(|m| m.id.starts_with("config-")));
    }
}
