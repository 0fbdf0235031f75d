//! The helper service: a one-shot service pinned to the target task's node, with that node's
//! docker socket mounted, whose container runs this binary's node-local exec mode.

pub mod configs;
pub mod lifecycle;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarm_exec_proto::args::HelperArgs;

use crate::model::labels::{
    BUDGET_LABEL, DEADLINE_LABEL, ENVELOPE_KIND, HELPER_KIND, HELPER_LABEL,
};
use crate::model::node_program::{ConfigMount, LOADER_FILE};
use crate::model::spec::{HelperSpec, ImageInfo, ENVELOPE_FILE_NAME};

/// Where the engine's socket is on a node, and where the helper sees it.
pub const NODE_SOCKET: &str = "/var/run/docker.sock";

/// How a run's helpers get the node-side program; decided once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// `--image`: a swarm-exec image (pinned), whose entrypoint is the binary.
    Image(String),
    /// Zero-install: each helper runs its target's own image, as user 0, with the loader
    /// of these configs as its entrypoint (see [`crate::helper::configs`]).
    Configs {
        mounts: Vec<ConfigMount>,
        loader_arg: String,
    },
}

/// Builds the helper service for one exec on `node_id`. `target_labels` describe what it
/// works on (`swarm-exec.target.*`); `target_image` is the image of the first target's task
/// (zero-install runs in it); `run_id` makes the name unique and tags the helper's frames;
/// `budget` is how long the helper may run before it gives up.
#[allow(clippy::too_many_arguments)]
pub fn helper_spec(
    node_id: &str,
    target_labels: &[(String, String)],
    containers: &[String],
    carrier: &Carrier,
    target_image: &str,
    run_id: &str,
    budget: Duration,
    envelope_secret: (&str, &str),
) -> HelperSpec {
    let deadline = deadline_after(budget);
    // Service names are at most 63 characters; a 12-character run ID keeps it unique.
    let tag = run_id[..12.min(run_id.len())].to_owned();
    let node_args = |image: Option<&str>| {
        HelperArgs {
            containers: containers.to_vec(),
            tag: tag.clone(),
            envelope: format!("/run/secrets/{ENVELOPE_FILE_NAME}"),
            budget,
            // The stopper runs this image again, or (none) the target's with the program
            // copied in.
            image: image.map(str::to_owned),
        }
        .to_args()
    };
    let (image, command, args, configs, user) = match carrier {
        Carrier::Image(image) => (
            image.clone(),
            None,
            node_args(Some(image)),
            Vec::new(),
            None,
        ),
        Carrier::Configs { mounts, loader_arg } => {
            let mut args = vec![loader_arg.clone()];
            args.extend(node_args(None));
            (
                target_image.to_owned(),
                Some(vec![LOADER_FILE.to_owned()]),
                args,
                mounts.clone(),
                Some("0:0".to_owned()),
            )
        }
    };
    let mut labels = vec![
        (HELPER_LABEL.to_owned(), HELPER_KIND.to_owned()),
        (DEADLINE_LABEL.to_owned(), deadline.to_string()),
        (BUDGET_LABEL.to_owned(), budget_secs(budget)),
        ("swarm-exec.target.node".to_owned(), node_id.to_owned()),
    ];
    labels.extend_from_slice(target_labels);
    labels.extend_from_slice(crate::model::labels::origin());
    HelperSpec {
        name: format!("swarm-exec-{tag}"),
        tag,
        image,
        node_id: node_id.to_owned(),
        command,
        args,
        configs,
        user,
        labels,
        socket: NODE_SOCKET.to_owned(),
        memory_limit: 64 << 20,
        nano_cpus: 500_000_000,
        envelope_secret: (envelope_secret.0.to_owned(), envelope_secret.1.to_owned()),
        network: None,
    }
}

fn budget_secs(budget: Duration) -> String {
    budget.as_secs_f64().ceil().to_string()
}

/// Unix seconds, `budget` from now: the value of the deadline label.
fn deadline_after(budget: Duration) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(budget)
        .as_secs()
}

/// Labels for a run's envelope secret: found and collected like helpers.
pub fn secret_labels(budget: Duration) -> Vec<(String, String)> {
    let deadline = deadline_after(budget);
    vec![
        (HELPER_LABEL.to_owned(), ENVELOPE_KIND.to_owned()),
        (DEADLINE_LABEL.to_owned(), deadline.to_string()),
        (BUDGET_LABEL.to_owned(), budget_secs(budget)),
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
        let image = |id: &str, digests: &[&str]| ImageInfo {
            id: id.into(),
            repo_digests: digests.iter().map(|d| d.to_string()).collect(),
        };
        let local = image("sha256:1111", &[]);
        let pinned = |reference, info: &ImageInfo| pinned_image(reference, Some(info));
        assert_eq!(pinned("swarm-exec:0.1.0", &local), "sha256:1111");
        assert_eq!(pinned_image("swarm-exec:0.1.0", None), "swarm-exec:0.1.0");
        let pulled = image("sha256:2222", &["reg:5000/ops/swarm-exec@sha256:3333"]);
        assert_eq!(
            pinned("reg:5000/ops/swarm-exec:1", &pulled),
            "reg:5000/ops/swarm-exec:1@sha256:3333"
        );
        let hub = image("sha256:2222", &["busybox@sha256:4444"]);
        assert_eq!(pinned("busybox:latest", &hub), "busybox:latest@sha256:4444");
        assert_eq!(pinned("x@sha256:5555", &local), "x@sha256:5555");
    }

    #[test]
    fn helpers_carry_who_made_them_and_for_what_never_the_command() {
        crate::model::labels::set_origin("ci@runner-7", "action", Some("migrate"));
        let carrier = Carrier::Image("swarm-exec:test".into());
        let h = helper_spec(
            "node2",
            &[],
            &["c".repeat(64)],
            &carrier,
            "app:1",
            "0123456789abcdef",
            Duration::from_secs(60),
            ("sid", "sname"),
        );
        let label = |k: &str| {
            h.labels
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(label("swarm-exec.actor"), Some("ci@runner-7"));
        assert_eq!(label("swarm-exec.command"), Some("action"));
        assert_eq!(label("swarm-exec.action"), Some("migrate"));
    }

    #[test]
    fn spec_carries_labels_and_constraint_and_nothing_of_the_command() {
        let containers = vec!["c".repeat(64), "d".repeat(64)];
        let labels = [("swarm-exec.target.service".to_owned(), "web".to_owned())];
        let h = helper_spec(
            "n",
            &labels,
            &containers,
            &Carrier::Image("img".into()),
            "target-img",
            "0123456789abcdef",
            Duration::from_secs(5),
            ("sid", "swarm-exec-run-x"),
        );
        assert_eq!(h.name, "swarm-exec-0123456789ab");
        assert_eq!(h.tag, "0123456789ab");
        assert!(h.labels.iter().any(|(k, _)| k == HELPER_LABEL));
        assert!(h.labels.iter().any(|(k, _)| k == DEADLINE_LABEL));
        assert!(h.labels.contains(&labels[0]));
        assert_eq!(h.node_id, "n");
        let parsed = swarm_exec_proto::args::NodeCommand::parse(&h.args).unwrap();
        let swarm_exec_proto::args::NodeCommand::Exec(args) = parsed else {
            panic!("not node-exec: {:?}", h.args)
        };
        assert_eq!(args.containers, containers);
        assert_eq!(args.envelope, "/run/secrets/envelope");
        assert_eq!(
            h.envelope_secret,
            ("sid".to_owned(), "swarm-exec-run-x".to_owned())
        );
        assert_eq!(
            (h.image.as_str(), &h.command, &h.user),
            ("img", &None, &None)
        );
        assert_eq!(args.image.as_deref(), Some("img"));
    }

    #[test]
    fn zero_install_runs_the_loader_in_the_targets_image_as_root() {
        let mount = ConfigMount {
            id: "cid".into(),
            name: "swarm-exec-node-0123456789ab-load".into(),
            file: LOADER_FILE.into(),
            mode: 0o555,
        };
        let carrier = Carrier::Configs {
            mounts: vec![mount.clone()],
            loader_arg: "3:2705664".into(),
        };
        let h = helper_spec(
            "n",
            &[],
            &["c".repeat(64)],
            &carrier,
            "app:1@sha256:abcd",
            "0123456789abcdef",
            Duration::from_secs(5),
            ("sid", "swarm-exec-run-x"),
        );
        assert_eq!(h.image, "app:1@sha256:abcd");
        assert_eq!(h.command, Some(vec!["/.swarm-exec/load".to_owned()]));
        assert_eq!(h.user.as_deref(), Some("0:0"));
        assert_eq!(h.configs, vec![mount]);
        assert_eq!(h.args[0], "3:2705664");
        let parsed = swarm_exec_proto::args::NodeCommand::parse(&h.args[1..]).unwrap();
        let swarm_exec_proto::args::NodeCommand::Exec(args) = parsed else {
            panic!("not node-exec: {:?}", h.args)
        };
        assert_eq!(args.image, None, "the stopper runs the target's image too");
    }
}
