//! `wait`: until services have converged — what a deployment pipeline waits for before it
//! runs a migration or a smoke check in the new tasks. A service has converged when no
//! update (or rollback) is under way, every task it wants running runs and is of its
//! current spec, none of an earlier spec still runs, and a replicated service has as many
//! as it asks for. A task with a health check counts as running only once it has passed
//! it: the engine keeps such a task `starting` until its container is healthy (and fails
//! it when it turns unhealthy), so running is healthy here.

use std::time::Duration;

use tokio::time::{sleep, Instant};

use crate::engine::{ServiceInfo, SwarmApi, TaskInfo};
use crate::lookup;
use crate::model::state::TaskState;
use crate::service_exec::{fetch_services, ServiceExecError, Services};

/// How often the managers are asked again.
pub const POLL: Duration = Duration::from_millis(500);

/// A service that has not converged, and why (one line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub service: String,
    pub why: Vec<String>,
}

/// Waits until every service in `which` has converged, at most `timeout`; `progress` is
/// told what is still awaited on each look. Returns what had not converged at the timeout
/// (empty: all did).
pub async fn wait_converged<A: SwarmApi>(
    api: &A,
    which: &[Services],
    timeout: Duration,
    mut progress: impl FnMut(&[NotReady]),
) -> Result<Vec<NotReady>, ServiceExecError> {
    let until = Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        for services in which {
            for svc in fetch_services(api, services).await? {
                let tasks = lookup::service_tasks(api, &svc.id, None).await?;
                let why = not_converged(&svc, &tasks);
                if !why.is_empty() {
                    pending.push(NotReady {
                        service: svc.name,
                        why,
                    });
                }
            }
        }
        if pending.is_empty() || Instant::now() >= until {
            return Ok(pending);
        }
        progress(&pending);
        sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// Why `svc`, with its `tasks`, has not converged; empty when it has.
pub fn not_converged(svc: &ServiceInfo, tasks: &[TaskInfo]) -> Vec<String> {
    let mut why = Vec::new();
    if svc.updating {
        why.push("an update is under way".to_owned());
    }
    let wanted: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running)
        .collect();
    let current = |t: &TaskInfo| t.spec == svc.template;
    let ready = wanted
        .iter()
        .filter(|t| t.state == TaskState::Running && current(t))
        .count();
    if let Some(n) = svc.replicas {
        if (ready as u64) < n {
            why.push(format!("{ready} of {n} tasks running the current spec"));
        }
    }
    let name = |t: &TaskInfo| match t.slot {
        0 => format!("task {} (on node {})", t.id, t.node_id),
        slot => format!("task {} (slot {slot})", t.id),
    };
    for t in &wanted {
        if t.state != TaskState::Running {
            let detail = match (&t.state, t.err.as_str()) {
                // The engine holds a task with a health check there until it passes (the
                // spec of a task does not show whether it has one).
                (TaskState::Starting, "") => {
                    ": its health check has not passed yet, or its container is still starting"
                        .to_owned()
                }
                (_, "") => String::new(),
                (_, err) => format!(": {err}"),
            };
            // A task that keeps starting says little; the one it replaced says why (an
            // unhealthy container, a crash).
            let before = tasks
                .iter()
                .filter(|o| {
                    o.id != t.id
                        && match t.slot {
                            0 => o.slot == 0 && o.node_id == t.node_id,
                            slot => o.slot == slot,
                        }
                        && o.state == TaskState::Failed
                        && !o.err.is_empty()
                })
                .max_by(|a, b| a.updated.cmp(&b.updated))
                .map(|o| format!(" (the task before it failed: {})", o.err))
                .unwrap_or_default();
            why.push(format!("{} is {}{detail}{before}", name(t), t.state));
        } else if !current(t) {
            why.push(format!("{} runs an earlier spec", name(t)));
        }
    }
    for t in tasks
        .iter()
        .filter(|t| t.desired_state != TaskState::Running && t.state == TaskState::Running)
    {
        why.push(format!("{} of an earlier spec is still running", name(t)));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::task;

    fn service(replicas: Option<u64>, updating: bool) -> ServiceInfo {
        ServiceInfo {
            name: "web".into(),
            replicas,
            updating,
            template: "v2".into(),
            ..Default::default()
        }
    }

    fn t(id: &str, slot: u64, state: &str, desired: &str, spec: &str) -> TaskInfo {
        TaskInfo {
            spec: spec.into(),
            ..task(id, slot, state, desired)
        }
    }

    #[test]
    fn converged_only_when_every_wanted_task_runs_the_current_spec() {
        let done = [
            t("a", 1, "running", "running", "v2"),
            t("b", 2, "running", "running", "v2"),
            t("old", 1, "shutdown", "shutdown", "v1"),
        ];
        assert!(not_converged(&service(Some(2), false), &done).is_empty());
        // Mid-update: the managers say so, an old task still runs, a new one starts.
        let mid = [
            t("a", 1, "running", "running", "v2"),
            t("b", 2, "running", "shutdown", "v1"),
            t("c", 2, "starting", "running", "v2"),
        ];
        let why = not_converged(&service(Some(2), true), &mid);
        assert_eq!(
            why,
            [
                "an update is under way",
                "1 of 2 tasks running the current spec",
                "task c (slot 2) is starting: its health check has not passed yet, or its \
                 container is still starting",
                "task b (slot 2) of an earlier spec is still running",
            ]
        );
        // A task that failed says why; one of an earlier spec that is wanted is named.
        let mut failed = t("d", 1, "failed", "running", "v2");
        failed.err = "task: non-zero exit (1)".into();
        let why = not_converged(
            &service(Some(2), false),
            &[failed, t("e", 2, "running", "running", "v1")],
        );
        assert_eq!(
            why,
            [
                "0 of 2 tasks running the current spec",
                "task d (slot 1) is failed: task: non-zero exit (1)",
                "task e (slot 2) runs an earlier spec",
            ]
        );
        // A slot whose task keeps failing its health check says so.
        let mut unhealthy = t("f", 1, "failed", "shutdown", "v2");
        unhealthy.err = "task: non-zero exit (137): dockerexec: unhealthy container".into();
        let starting = t("g", 1, "starting", "running", "v2");
        let why = not_converged(&service(Some(1), false), &[unhealthy, starting]);
        assert_eq!(
            why[1],
            "task g (slot 1) is starting: its health check has not passed yet, or its \
             container is still starting (the task before it failed: task: non-zero exit \
             (137): dockerexec: unhealthy container)"
        );
        // A global service: every task it wants, on its node.
        let global = [t("g", 0, "running", "running", "v2")];
        assert!(not_converged(&service(None, false), &global).is_empty());
    }
}
