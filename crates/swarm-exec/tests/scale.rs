//! Scale: `service-exec` over a whole 10-node lab. Ignored in the ordinary run (the lab has
//! 3 nodes); scripts/test brings up a 10-node lab and runs it with `--ignored scale::`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// Each task's exit code, from its own container ID, so that a code given to the wrong
/// task shows.
const SCRIPT: &str =
    "echo \"$SWARM_EXEC_RUN $(hostname)\"; exit $(( 0x$(hostname | cut -c1-2) % 7 ))";

/// `service-exec` over `svc`'s `tasks` tasks, which cover all 10 nodes: every task's output
/// and exit code its own, one helper per node but the client's own, whose tasks are exec'd
/// directly (each with a mark of its own).
fn fans_out_with_one_helper_per_node(svc: &Service, tasks: usize) {
    let mut args = vec!["service-exec", "--format", "json", &svc.name];
    args.extend(sh(SCRIPT));
    let out = swarm_exec(&args);
    let results: Vec<Value> = out
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(results.len(), tasks, "{}", out.stderr_str());

    // Helper tags by node: the commands' SWARM_EXEC_RUN names the helper that ran them.
    let mut helpers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut any_failed = false;
    for r in &results {
        let container = r["container_id"].as_str().expect("container_id");
        let stdout = r["stdout"].as_str().expect("stdout");
        let (tag, hostname) = stdout
            .trim_end()
            .split_once(' ')
            .unwrap_or_else(|| panic!("tag and hostname: {r}"));
        assert_eq!(hostname, &container[..12], "output of another task: {r}");
        let expected = i64::from_str_radix(&container[..2], 16).unwrap() % 7;
        assert_eq!(r["exit_code"], expected, "{r}");
        any_failed |= expected != 0;
        let node = r["node"].as_str().expect("node").to_owned();
        helpers.entry(node).or_default().insert(tag.to_owned());
    }
    assert_eq!(helpers.len(), 10, "tasks on every node: {helpers:?}");
    let direct = helpers
        .remove(client_node())
        .expect("tasks on the client's node");
    let on_client = results
        .iter()
        .filter(|r| r["node"] == client_node())
        .count();
    assert_eq!(
        direct.len(),
        on_client,
        "a mark per direct exec: {direct:?}"
    );
    for (node, tags) in &helpers {
        assert_eq!(tags.len(), 1, "one helper on {node}: {tags:?}");
    }
    let all: BTreeSet<&String> = helpers.values().flatten().chain(&direct).collect();
    assert_eq!(
        all.len(),
        9 + on_client,
        "a helper of its own per node: {helpers:?}"
    );
    assert_eq!(out.code, i32::from(any_failed), "{}", out.stderr_str());
}

#[test]
#[ignore = "needs the 10-node lab (SWARM_EXEC_LAB_NODES=10); scripts/test runs it"]
fn service_exec_over_30_replicas_and_a_global_service_on_10_nodes() {
    lab();
    let nodes = docker_ok(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    let ready = nodes.lines().filter(|l| l.ends_with(" Ready")).count();
    assert_eq!(ready, 10, "a 10-node lab:\n{nodes}");
    let sleep = ["sleep", "3600"];
    let spread = ["--replicas", "30", "--replicas-max-per-node", "3"];
    let replicated = Service::create_of(None, TARGET_IMAGE, &spread, &sleep, 30);
    let global = Service::create_of(None, TARGET_IMAGE, &["--mode", "global"], &sleep, 10);
    for (svc, tasks) in [(&replicated, 30), (&global, 10)] {
        fans_out_with_one_helper_per_node(svc, tasks);
    }

    assert!(replicated.helpers().is_empty() && global.helpers().is_empty());
    for n in 1..=10u32 {
        eventually(
            "the helpers' containers to go",
            Duration::from_secs(30),
            || {
                let ps = docker_on(n, &["ps", "-aq", "--filter", "label=swarm-exec.helper"]);
                (ps.code == 0 && ps.stdout_str().trim().is_empty()).then_some(())
            },
        );
    }
}
