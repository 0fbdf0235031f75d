//! The swarm look-ups that resolving one task and selecting a service's tasks share:
//! services by name, nodes by name or ID, a node's hostname for messages, a service's
//! tasks, and which task states are on their way to `running`.

pub mod resolve;

use crate::engine::{ApiError, NodeInfo, ServiceInfo, SwarmApi, TaskFilter, TaskInfo};

/// Why a look-up failed; each caller folds it into its own error.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no service named {0}")]
    NoService(String),
    #[error("no node named {0}")]
    NoNode(String),
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: ApiError,
    },
}

fn api(step: &'static str) -> impl FnOnce(ApiError) -> LookupError {
    move |source| LookupError::Api { step, source }
}

/// The service named `name` (or with that full ID). The engine's inspect also matches ID
/// prefixes; a name must match exactly.
pub async fn service<A: SwarmApi>(api_: &A, name: &str) -> Result<ServiceInfo, LookupError> {
    match api_.inspect_service(name).await {
        Ok(s) if s.name == name || s.id == name => Ok(s),
        Ok(_) | Err(ApiError::NotFound(_)) => Err(LookupError::NoService(name.to_owned())),
        Err(e) => Err(api("inspect service")(e)),
    }
}

/// The node named `node` (hostname or ID).
pub async fn node<A: SwarmApi>(api_: &A, node: &str) -> Result<NodeInfo, LookupError> {
    match api_.inspect_node(node).await {
        Ok(n) => Ok(n),
        Err(ApiError::NotFound(_)) => Err(LookupError::NoNode(node.to_owned())),
        Err(e) => Err(api("inspect node")(e)),
    }
}

/// The node a task is on, for messages and the platform check: when it cannot be read,
/// its ID stands in for its hostname and its platform is unknown (empty).
pub async fn task_node<A: SwarmApi>(api_: &A, node_id: &str) -> NodeInfo {
    let unknown = |hostname: &str| NodeInfo {
        id: node_id.to_owned(),
        hostname: hostname.to_owned(),
        ..Default::default()
    };
    if node_id.is_empty() {
        return unknown("(not assigned)");
    }
    match api_.inspect_node(node_id).await {
        Ok(n) if !n.hostname.is_empty() => n,
        Ok(n) => NodeInfo {
            hostname: node_id.to_owned(),
            ..n
        },
        Err(_) => unknown(node_id),
    }
}

/// The tasks of service `service_id` (on node `node_id` if given), every desired state.
pub async fn service_tasks<A: SwarmApi>(
    api_: &A,
    service_id: &str,
    node_id: Option<&str>,
) -> Result<Vec<TaskInfo>, LookupError> {
    let filter = TaskFilter {
        service: Some(service_id.to_owned()),
        node: node_id.map(str::to_owned),
        ..Default::default()
    };
    Ok(api_
        .list_tasks(&filter)
        .await
        .map_err(api("list the service's tasks"))?
        .into_iter()
        // The service filter is a prefix match on some engines; keep exact matches only.
        .filter(|t| t.service_id == service_id && node_id.is_none_or(|n| t.node_id == n))
        .collect())
}
