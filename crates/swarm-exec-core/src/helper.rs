//! The helper service: a one-shot service pinned to the target task's node, with that node's
//! docker socket mounted, whose container runs this binary's node-local exec mode.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::ImageInfo;
use crate::{DEADLINE_LABEL, HELPER_LABEL};

/// Where the engine's socket is on a node, and where the helper sees it.
pub const NODE_SOCKET: &str = "/var/run/docker.sock";

/// The hidden subcommand the helper container runs.
pub const NODE_EXEC_MODE: &str = "node-exec";

/// `-i`: the input travels in a swarm secret (encrypted in the managers' raft store, never
/// in a spec or a log), mounted into the helper only, at this name under /run/secrets.
pub const STDIN_FILE_NAME: &str = "stdin";
/// A swarm secret holds at most 500 KiB.
pub const MAX_STDIN: usize = 500 * 1024;

/// Everything the helper service is made of; [`crate::api`] turns it into an Engine API spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperSpec {
    pub name: String,
    pub image: String,
    pub node_id: String,
    /// Arguments to the image's entrypoint (the swarm-exec binary).
    pub args: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub socket: String,
    pub memory_limit: i64,
    pub nano_cpus: i64,
    /// (ID, name) of the secret holding the command's stdin.
    pub stdin_secret: Option<(String, String)>,
}

/// What the helper is asked to run, in each of its target containers (all on its node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    pub containers: Vec<String>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
}

/// Builds the helper service for one exec on `node_id`. `target_labels` describe what it
/// works on (`swarm-exec.target.*`); `run_id` makes the name unique and is the nonce of the
/// helper's records; `budget` is how long the helper may run before it gives up.
pub fn helper_spec(
    node_id: &str,
    target_labels: &[(String, String)],
    exec: &ExecSpec,
    image: &str,
    run_id: &str,
    budget: Duration,
    stdin_secret: Option<&(String, String)>,
) -> HelperSpec {
    let deadline = deadline_after(budget);
    let mut args = vec![NODE_EXEC_MODE.to_owned()];
    for c in &exec.containers {
        args.push("--container".to_owned());
        args.push(c.clone());
    }
    args.extend([
        "--nonce".to_owned(),
        run_id.to_owned(),
        "--timeout-ms".to_owned(),
        budget.as_millis().to_string(),
        // The helper runs its own image again to stop commands that outlive it.
        "--image".to_owned(),
        image.to_owned(),
    ]);
    for e in &exec.env {
        args.push("--env".to_owned());
        args.push(e.clone());
    }
    if let Some(w) = &exec.workdir {
        args.push("--workdir".to_owned());
        args.push(w.clone());
    }
    if let Some(u) = &exec.user {
        args.push("--user".to_owned());
        args.push(u.clone());
    }
    if exec.privileged {
        args.push("--privileged".to_owned());
    }
    if stdin_secret.is_some() {
        args.push("--stdin".to_owned());
        args.push(format!("/run/secrets/{STDIN_FILE_NAME}"));
    }
    args.push("--".to_owned());
    args.extend(exec.command.iter().cloned());

    let mut labels = vec![
        (HELPER_LABEL.to_owned(), "1".to_owned()),
        (DEADLINE_LABEL.to_owned(), deadline.to_string()),
        ("swarm-exec.target.node".to_owned(), node_id.to_owned()),
    ];
    labels.extend_from_slice(target_labels);
    HelperSpec {
        // Service names are at most 63 characters; a 12-character run ID keeps it unique.
        name: format!("swarm-exec-{}", &run_id[..12.min(run_id.len())]),
        image: image.to_owned(),
        node_id: node_id.to_owned(),
        args,
        labels,
        socket: NODE_SOCKET.to_owned(),
        memory_limit: 64 << 20,
        nano_cpus: 500_000_000,
        stdin_secret: stdin_secret.cloned(),
    }
}

/// Unix seconds, `budget` from now: the value of the deadline label.
fn deadline_after(budget: Duration) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(budget)
        .as_secs()
}

/// Labels for a secret that carries a run's stdin: found and collected like helpers.
pub fn secret_labels(budget: Duration) -> Vec<(String, String)> {
    let deadline = deadline_after(budget);
    vec![
        (HELPER_LABEL.to_owned(), "stdin".to_owned()),
        (DEADLINE_LABEL.to_owned(), deadline.to_string()),
    ]
}

/// The image reference to put in the helper spec.
///
/// A node pulls a tag on every task start, even when it has the image (and a node with no
/// registry access waits for that pull to fail). A digest or an image ID is used as is when
/// present. So: when the manager has the image, pin it — `repo@digest` if it came from a
/// registry (nodes without it can still pull), else its ID (a locally built or loaded image,
/// which no registry could serve anyway). When the manager lacks it, pass the name through.
pub fn pinned_image(requested: &str, manager_copy: Option<&ImageInfo>) -> String {
    let Some(info) = manager_copy else {
        return requested.to_owned();
    };
    if requested.contains('@') || requested.starts_with("sha256:") {
        return requested.to_owned();
    }
    let repo = repository_of(requested);
    let digest = info.repo_digests.iter().find_map(|rd| {
        let (r, d) = rd.split_once('@')?;
        (normalize(r) == repo).then_some(d)
    });
    match digest {
        Some(d) => format!("{requested}@{d}"),
        None if !info.id.is_empty() => info.id.clone(),
        None => requested.to_owned(),
    }
}

/// `registry:5000/team/img:tag` → `registry:5000/team/img`, normalized.
fn repository_of(reference: &str) -> String {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => normalize(&reference[..last_slash + colon]),
        None => normalize(reference),
    }
}

/// Docker Hub names in one spelling: `busybox`, `docker.io/busybox` → `library/busybox`.
fn normalize(repo: &str) -> String {
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    if repo.contains('/') {
        repo.to_owned()
    } else {
        format!("library/{repo}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_images_so_nodes_skip_the_registry() {
        let local = ImageInfo {
            id: "sha256:1111".into(),
            repo_digests: vec![],
        };
        assert_eq!(
            pinned_image("swarm-exec:0.1.0", Some(&local)),
            "sha256:1111"
        );
        assert_eq!(pinned_image("swarm-exec:0.1.0", None), "swarm-exec:0.1.0");
        let pulled = ImageInfo {
            id: "sha256:2222".into(),
            repo_digests: vec!["reg:5000/ops/swarm-exec@sha256:3333".into()],
        };
        assert_eq!(
            pinned_image("reg:5000/ops/swarm-exec:1", Some(&pulled)),
            "reg:5000/ops/swarm-exec:1@sha256:3333"
        );
        let hub = ImageInfo {
            id: "sha256:2222".into(),
            repo_digests: vec!["busybox@sha256:4444".into()],
        };
        assert_eq!(
            pinned_image("busybox:latest", Some(&hub)),
            "busybox:latest@sha256:4444"
        );
        assert_eq!(pinned_image("x@sha256:5555", Some(&local)), "x@sha256:5555");
    }

    #[test]
    fn spec_carries_labels_constraint_and_verbatim_argv() {
        let exec = ExecSpec {
            containers: vec!["c".repeat(64), "d".repeat(64)],
            command: vec!["sh".into(), "-c".into(), "echo 'a b'; exit 3".into()],
            env: vec!["A=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("nobody".into()),
            privileged: true,
        };
        let labels = [("swarm-exec.target.service".to_owned(), "web".to_owned())];
        let h = helper_spec(
            "n",
            &labels,
            &exec,
            "img",
            "0123456789abcdef",
            Duration::from_secs(5),
            None,
        );
        assert_eq!(h.name, "swarm-exec-0123456789ab");
        assert!(h.labels.iter().any(|(k, _)| k == HELPER_LABEL));
        assert!(h.labels.iter().any(|(k, _)| k == DEADLINE_LABEL));
        let dash = h.args.iter().position(|a| a == "--").unwrap();
        assert_eq!(h.args[dash + 1..], exec.command[..]);
        assert!(h.args.contains(&"--privileged".to_owned()));
        assert_eq!(h.args.iter().filter(|a| *a == "--container").count(), 2);
        assert!(h.labels.contains(&labels[0]));
        assert_eq!(h.node_id, "n");
    }
}
