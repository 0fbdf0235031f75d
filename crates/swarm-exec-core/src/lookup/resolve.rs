//! From what the user named to one running task, with its node and container.

use std::time::Duration;

use tokio::time::{sleep, Instant};

use crate::engine::{ApiError, NodeInfo, SwarmApi, TaskFilter, TaskInfo};
use crate::lookup::{self, LookupError};
use crate::model::state::TaskState;
use crate::model::target::{is_container_id, is_swarm_id, TaskRef};

/// How long a starting target task is waited for.
pub const TARGET_START_WAIT: Duration = Duration::from_secs(60);

/// A task ready to exec into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub task_id: String,
    pub service_id: String,
    pub service_name: String,
    /// `web.2` or `web@node2`, for messages.
    pub display: String,
    pub node_id: String,
    pub node_name: String,
    /// The node's platform (`linux`, `x86_64`), empty when it could not be read.
    pub node_os: String,
    pub node_arch: String,
    pub container_id: String,
    /// The image of the task's spec.
    pub image: String,
    /// Named by its service alone: how many running tasks it was chosen from.
    pub chosen_from: Option<usize>,
}

impl Resolved {
    /// The task as messages name it: "task ID (DISPLAY, service NAME)".
    pub fn describe(&self) -> String {
        format!(
            "task {} ({}, service {})",
            self.task_id, self.display, self.service_name
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no task matches {0}")]
    NotFound(String),
    #[error("{given} is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error("no service named {0}")]
    NoService(String),
    #[error("no node named {0}")]
    NoNode(String),
    #[error("service {service} has no task in slot {slot}{}", slots_hint(.slots))]
    NoSlot {
        service: String,
        slot: u64,
        slots: Vec<u64>,
    },
    #[error("service {service} has no running task")]
    NoRunningTask { service: String },
    #[error("service {service} is global: name its task as {service}@NODE")]
    GlobalNeedsNode { service: String },
    #[error("service {service} has no task on node {node}")]
    NoTaskOnNode { service: String, node: String },
    #[error("task {task} ({display}) on node {node} is {state}{}", err_suffix(.err))]
    NotRunning {
        task: String,
        display: String,
        node: String,
        state: String,
        err: String,
    },
    #[error("task {task} ({display}) is being shut down (desired state {desired})")]
    ShuttingDown {
        task: String,
        display: String,
        desired: String,
    },
    #[error(
        "task {task} ({display}) on node {node} did not start within {waited:?} (still {state})"
    )]
    StartTimeout {
        task: String,
        display: String,
        node: String,
        state: String,
        waited: Duration,
    },
    #[error("task {task} reports an invalid container ID {container:?}")]
    BadContainer { task: String, container: String },
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: ApiError,
    },
}

fn slots_hint(slots: &[u64]) -> String {
    if slots.is_empty() {
        String::new()
    } else {
        let s: Vec<String> = slots.iter().map(u64::to_string).collect();
        format!(" (running slots: {})", s.join(", "))
    }
}

fn err_suffix(err: &str) -> String {
    if err.is_empty() {
        String::new()
    } else {
        format!(": {err}")
    }
}

impl From<LookupError> for ResolveError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NoService(s) => ResolveError::NoService(s),
            LookupError::NoNode(n) => ResolveError::NoNode(n),
            LookupError::Api { step, source } => ResolveError::Api { step, source },
        }
    }
}

fn api_failed(step: &'static str) -> impl FnOnce(ApiError) -> ResolveError {
    move |source| ResolveError::Api { step, source }
}

/// How often a starting task is re-read.
const START_POLL: Duration = Duration::from_millis(100);

/// Finds the task `target` names and waits (at most `start_wait`) for it to be running.
pub async fn resolve<A: SwarmApi>(
    api: &A,
    target: &TaskRef,
    start_wait: Duration,
) -> Result<Resolved, ResolveError> {
    let (mut task, chosen_from) = find(api, target).await?;
    let service = api
        .inspect_service(&task.service_id)
        .await
        .map_err(api_failed("inspect the task's service"))?;
    let mut display = match target {
        TaskRef::OnNode { service, node } => format!("{service}@{node}"),
        _ if task.slot > 0 => format!("{}.{}", service.name, task.slot),
        _ => format!("{}@{}", service.name, task.node_id),
    };

    let started = Instant::now();
    // Looked up once rather than on every poll.
    let mut known_node: Option<NodeInfo> = None;
    loop {
        if task.desired_state != TaskState::Running {
            return Err(ResolveError::ShuttingDown {
                task: task.id,
                display,
                desired: task.desired_state.to_string(),
            });
        }
        if task.state == TaskState::Running {
            break;
        }
        let node = match &known_node {
            Some(n) if n.id == task.node_id => n.hostname.clone(),
            _ => {
                let n = lookup::task_node(api, &task.node_id).await;
                let name = n.hostname.clone();
                known_node = Some(n);
                name
            }
        };
        if !task.state.is_starting() {
            return Err(ResolveError::NotRunning {
                task: task.id,
                display,
                node,
                state: task.state.to_string(),
                err: task.err,
            });
        }
        if started.elapsed() >= start_wait {
            return Err(ResolveError::StartTimeout {
                task: task.id,
                display,
                node,
                state: task.state.to_string(),
                waited: start_wait,
            });
        }
        tracing::debug!(task = %task.id, state = %task.state, "waiting for the task to run");
        sleep(START_POLL).await;
        task = api
            .inspect_task(&task.id)
            .await
            .map_err(api_failed("inspect the task"))?;
    }

    if !is_container_id(&task.container_id) {
        return Err(ResolveError::BadContainer {
            task: task.id,
            container: task.container_id,
        });
    }
    if !is_swarm_id(&task.node_id) {
        return Err(ResolveError::Api {
            step: "read the task's node",
            source: ApiError::Other(format!("invalid node ID {:?}", task.node_id)),
        });
    }
    let node = match known_node {
        Some(n) if n.id == task.node_id => n,
        _ => lookup::task_node(api, &task.node_id).await,
    };
    if task.slot == 0 && !matches!(target, TaskRef::OnNode { .. }) {
        display = format!("{}@{}", service.name, node.hostname);
    }
    Ok(Resolved {
        task_id: task.id,
        service_id: service.id,
        service_name: service.name,
        display,
        node_id: task.node_id,
        node_name: node.hostname,
        node_os: node.os,
        node_arch: node.arch,
        container_id: task.container_id,
        image: task.image,
        chosen_from,
    })
}

async fn find<A: SwarmApi>(
    api: &A,
    target: &TaskRef,
) -> Result<(TaskInfo, Option<usize>), ResolveError> {
    let task = match target {
        TaskRef::Id(prefix) => {
            let filter = TaskFilter {
                id_prefix: Some(prefix.clone()),
                ..Default::default()
            };
            let mut tasks: Vec<TaskInfo> = api
                .list_tasks(&filter)
                .await
                .map_err(api_failed("list tasks"))?
                .into_iter()
                .filter(|t| t.id.starts_with(prefix.as_str()))
                .collect();
            // A full ID, then a service of exactly that name, then ID prefixes: the order
            // in which docker itself reads a name or ID.
            if let Some(i) = tasks.iter().position(|t| t.id == *prefix) {
                return Ok((tasks.remove(i), None));
            }
            if let Some(found) = by_service_name(api, prefix).await? {
                return Ok(found);
            }
            match tasks.len() {
                0 => return Err(ResolveError::NotFound(prefix.clone())),
                1 => tasks.remove(0),
                _ => {
                    return Err(ResolveError::Ambiguous {
                        given: prefix.clone(),
                        candidates: describe(&tasks),
                    })
                }
            }
        }
        TaskRef::Service(name) => {
            return by_service_name(api, name)
                .await?
                .ok_or_else(|| ResolveError::NoService(name.clone()))
        }
        TaskRef::Slot { service, slot } => {
            let svc = lookup::service(api, service).await?;
            if svc.global {
                return Err(ResolveError::GlobalNeedsNode { service: svc.name });
            }
            let tasks = lookup::service_tasks(api, &svc.id, None).await?;
            pick(
                tasks.iter().filter(|t| t.slot == *slot).cloned().collect(),
                target,
            )
            .ok_or_else(|| {
                let mut slots: Vec<u64> = tasks
                    .iter()
                    .filter(|t| t.desired_state == TaskState::Running)
                    .map(|t| t.slot)
                    .collect();
                slots.sort_unstable();
                slots.dedup();
                ResolveError::NoSlot {
                    service: svc.name.clone(),
                    slot: *slot,
                    slots,
                }
            })??
        }
        TaskRef::OnNode { service, node } => {
            let svc = lookup::service(api, service).await?;
            let n = lookup::node(api, node).await?;
            let tasks = lookup::service_tasks(api, &svc.id, Some(&n.id)).await?;
            pick(tasks, target).ok_or_else(|| ResolveError::NoTaskOnNode {
                service: svc.name.clone(),
                node: node.clone(),
            })??
        }
    };
    Ok((task, None))
}

/// The service named exactly `name`, if there is one, and the running task of its lowest
/// slot (a global service's: of the lowest node ID) with how many it was chosen from —
/// of the service's current spec when any such runs (mid-update, an old task may be about
/// to be replaced). Only when none runs, the lowest one on its way there, which resolving
/// waits for.
async fn by_service_name<A: SwarmApi>(
    api: &A,
    name: &str,
) -> Result<Option<(TaskInfo, Option<usize>)>, ResolveError> {
    let svc = match lookup::service(api, name).await {
        Ok(s) if s.name == name => s,
        Ok(_) | Err(LookupError::NoService(_)) => return Ok(None),
        // The engine also reads the name as a service ID prefix, which can be ambiguous
        // (400): then it is no service's name.
        Err(LookupError::Api {
            source: ApiError::Server { status: 400, .. },
            ..
        }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let tasks = lookup::service_tasks(api, &svc.id, None).await?;
    let wanted = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running);
    let mut running: Vec<&TaskInfo> = wanted
        .clone()
        .filter(|t| t.state == TaskState::Running)
        .collect();
    if running.is_empty() {
        running = wanted.collect();
    }
    let key = |t: &TaskInfo| (t.spec != svc.template, t.slot, t.node_id.clone());
    running.sort_by_key(|t| key(t));
    match running.first() {
        Some(t) => Ok(Some(((*t).clone(), Some(running.len())))),
        None => Err(ResolveError::NoRunningTask { service: svc.name }),
    }
}

/// Among the tasks of one slot (or node), the one meant to be running; failing that, the
/// most recent one, so the error can say what became of it.
fn pick(mut tasks: Vec<TaskInfo>, target: &TaskRef) -> Option<Result<TaskInfo, ResolveError>> {
    let running: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running)
        .collect();
    match running.len() {
        1 => return Some(Ok(running[0].clone())),
        n if n > 1 => {
            let running: Vec<TaskInfo> = running.into_iter().cloned().collect();
            return Some(Err(ResolveError::Ambiguous {
                given: target.to_string(),
                candidates: describe(&running),
            }));
        }
        _ => {}
    }
    tasks.sort_by(|a, b| a.updated.cmp(&b.updated));
    tasks.pop().map(Ok)
}

fn describe(tasks: &[TaskInfo]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| format!("{} ({}, {})", t.id, t.state, t.node_id))
        .collect()
}
