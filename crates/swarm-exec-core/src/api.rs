//! The narrow slice of the Docker Engine API that the orchestration uses.
//!
//! [`SwarmApi`] speaks in small owned types so a fake can implement it in unit tests;
//! [`BollardApi`] implements it over bollard. Transient failures (the engine refusing
//! connections while it restarts, 5xx answers) are retried with bounded exponential backoff;
//! client errors (4xx) never are.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bollard::models::{
    Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListTasksOptions, LogsOptions};
use bollard::Docker;
use futures_util::stream::{BoxStream, StreamExt};
use tokio_retry::strategy::{jitter, ExponentialBackoff};
use tokio_retry::RetryIf;

use crate::helper::HelperSpec;

/// A task as the orchestration sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    /// 0 for global services.
    pub slot: u64,
    pub node_id: String,
    /// Lower-case Swarm task state: `pending`, `running`, `complete`, `failed`, ...
    pub state: String,
    pub desired_state: String,
    /// `Status.Err`, e.g. "task: non-zero exit (7)" or "No such image: ...".
    pub err: String,
    /// `Status.Message`, e.g. "started" or "no suitable node".
    pub message: String,
    pub container_id: String,
    pub exit_code: Option<i64>,
    /// RFC 3339 time of the last status change; used only to order a slot's history.
    pub updated: String,
    /// The container labels of the task's spec.
    pub container_labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub global: bool,
    /// The service's own labels.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
}

/// Which stream of the helper a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Server-side filter for [`SwarmApi::list_tasks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub id_prefix: Option<String>,
    pub service: Option<String>,
    pub node: Option<String>,
}

/// A failed Docker API call, classified for retries and for messages.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the Docker engine is not a swarm manager: {0}")]
    NotManager(String),
    /// Any other answer from the engine (4xx, or a 5xx that retries did not cure).
    #[error("the engine answered {status}: {message}")]
    Server { status: u16, message: String },
    /// The engine could not be reached (after retries, when the failure looked transient).
    #[error("cannot reach the Docker engine: {0}")]
    Connect(String),
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Server { status, .. } => *status >= 500,
            ApiError::Connect(_) => true,
            _ => false,
        }
    }
}

/// The Docker calls the orchestration needs, against a swarm manager.
pub trait SwarmApi: Send + Sync {
    fn inspect_task(&self, id: &str) -> impl Future<Output = Result<TaskInfo, ApiError>> + Send;
    fn list_tasks(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<Vec<TaskInfo>, ApiError>> + Send;
    /// By exact name or full ID.
    fn inspect_service(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<ServiceInfo, ApiError>> + Send;
    /// Services carrying `label` (`key` or `key=value`).
    fn list_services(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInfo>, ApiError>> + Send;
    /// By hostname or ID.
    fn inspect_node(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<NodeInfo, ApiError>> + Send;
    /// The manager's own copy of an image, if it has one.
    fn inspect_image(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, ApiError>> + Send;
    /// Creates the helper service; returns its ID.
    fn create_service(
        &self,
        spec: &HelperSpec,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Removes a service; a service that is already gone is not an error.
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Creates a secret holding `data`; returns its ID.
    fn create_secret(
        &self,
        name: &str,
        labels: &[(String, String)],
        data: &[u8],
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Removes a secret; one that is already gone is not an error.
    fn remove_secret(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Secrets carrying `label` (`key` or `key=value`), as services (name, ID, labels).
    fn list_secrets(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInfo>, ApiError>> + Send;
    /// Follows a service's logs from its start.
    fn service_logs(&self, id: &str) -> BoxStream<'static, Result<(LogStream, Vec<u8>), ApiError>>;
}

/// [`SwarmApi`] over bollard.
#[derive(Debug, Clone)]
pub struct BollardApi {
    docker: Docker,
}

impl BollardApi {
    pub fn new(docker: Docker) -> Self {
        BollardApi { docker }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

/// How often and how long transient failures are retried: 50 ms doubling to 1 s (each
/// delay between half and all of that), `retries` attempts after the first.
fn backoff(retries: usize) -> impl Iterator<Item = Duration> {
    ExponentialBackoff::from_millis(2)
        .factor(25)
        .max_delay(Duration::from_secs(1))
        // Half fixed, half random: spread out, yet bounded below.
        .map(|d| d / 2 + jitter(d / 2))
        .take(retries)
}

/// Retries for most calls: 3.3 to 6.5 s in all.
const RETRIES: usize = 10;
/// Removing a helper matters more than waiting: 18 to 36 s, enough for an engine restart.
const REMOVE_RETRIES: usize = 40;

/// Runs `op`, retrying while it fails transiently.
pub async fn retry<T, F, Fut>(what: &str, op: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    retry_n(what, RETRIES, op).await
}

async fn retry_n<T, F, Fut>(what: &str, retries: usize, mut op: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    RetryIf::start(
        backoff(retries),
        || {
            let fut = op();
            async move {
                let r = fut.await;
                if let Err(e) = &r {
                    if e.is_transient() {
                        tracing::debug!(call = what, error = %e, "transient failure");
                    }
                }
                r
            }
        },
        ApiError::is_transient,
    )
    .await
}

/// Maps bollard's error onto [`ApiError`].
pub fn classify(err: bollard::errors::Error) -> ApiError {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            // 503 also means "this node is not a swarm manager": that one is final.
            if message.contains("not a swarm manager") || message.contains("not part of a swarm") {
                ApiError::NotManager(message)
            } else if status_code == 404 {
                ApiError::NotFound(message)
            } else {
                ApiError::Server {
                    status: status_code,
                    message,
                }
            }
        }
        E::HyperLegacyError { .. } | E::IOError { .. } | E::RequestTimeoutError => {
            let text = error_chain(&err);
            // Permission on the socket will not come by retrying. A missing socket may: an
            // engine that restarts removes its socket until it is back.
            if text.contains("Permission denied") {
                ApiError::Other(format!("cannot reach the Docker engine: {text}"))
            } else {
                ApiError::Connect(text)
            }
        }
        other => ApiError::Other(error_chain(&other)),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn state_str(state: Option<TaskState>) -> String {
    state.map(|s| s.to_string()).unwrap_or_default()
}

fn task_info(t: bollard::models::Task) -> TaskInfo {
    let mut container_labels: Vec<(String, String)> = t
        .spec
        .and_then(|s| s.container_spec)
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    container_labels.sort();
    let status = t.status.unwrap_or_default();
    let container = status.container_status.unwrap_or_default();
    TaskInfo {
        id: t.id.unwrap_or_default(),
        service_id: t.service_id.unwrap_or_default(),
        slot: t.slot.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        node_id: t.node_id.unwrap_or_default(),
        state: state_str(status.state),
        desired_state: state_str(t.desired_state),
        err: status.err.unwrap_or_default(),
        message: status.message.unwrap_or_default(),
        container_id: container.container_id.unwrap_or_default(),
        exit_code: container.exit_code,
        updated: t.updated_at.map(|d| d.to_string()).unwrap_or_default(),
        container_labels,
    }
}

fn service_info(s: bollard::models::Service) -> ServiceInfo {
    let spec = s.spec.unwrap_or_default();
    let mode = spec.mode.unwrap_or_default();
    let mut labels: Vec<(String, String)> = spec.labels.unwrap_or_default().into_iter().collect();
    labels.sort();
    ServiceInfo {
        id: s.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        global: mode.global.is_some() || mode.global_job.is_some(),
        labels,
    }
}

impl SwarmApi for BollardApi {
    async fn inspect_task(&self, id: &str) -> Result<TaskInfo, ApiError> {
        retry("inspect task", || async {
            self.docker.inspect_task(id).await.map_err(classify)
        })
        .await
        .map(task_info)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskInfo>, ApiError> {
        let mut filters = HashMap::new();
        for (key, value) in [
            ("id", &filter.id_prefix),
            ("service", &filter.service),
            ("node", &filter.node),
        ] {
            if let Some(v) = value {
                filters.insert(key.to_owned(), vec![v.clone()]);
            }
        }
        let opts = ListTasksOptions {
            filters: Some(filters),
        };
        let tasks = retry("list tasks", || async {
            self.docker
                .list_tasks(Some(opts.clone()))
                .await
                .map_err(classify)
        })
        .await?;
        Ok(tasks.into_iter().map(task_info).collect())
    }

    async fn inspect_service(&self, name_or_id: &str) -> Result<ServiceInfo, ApiError> {
        let s = retry("inspect service", || async {
            self.docker
                .inspect_service(
                    name_or_id,
                    None::<bollard::query_parameters::InspectServiceOptions>,
                )
                .await
                .map_err(classify)
        })
        .await?;
        Ok(service_info(s))
    }

    async fn list_services(&self, label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        let opts = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            status: None,
        };
        let services = retry("list services", || async {
            self.docker
                .list_services(Some(opts.clone()))
                .await
                .map_err(classify)
        })
        .await?;
        Ok(services.into_iter().map(service_info).collect())
    }

    async fn inspect_node(&self, name_or_id: &str) -> Result<NodeInfo, ApiError> {
        let n = retry("inspect node", || async {
            self.docker.inspect_node(name_or_id).await.map_err(classify)
        })
        .await?;
        Ok(NodeInfo {
            id: n.id.unwrap_or_default(),
            hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
        })
    }

    async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>, ApiError> {
        let r = retry("inspect image", || async {
            self.docker.inspect_image(name).await.map_err(classify)
        })
        .await;
        match r {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
            })),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_service(&self, spec: &HelperSpec) -> Result<String, ApiError> {
        let service = service_spec(spec);
        let mut attempts = 0u32;
        retry("create service", || {
            attempts += 1;
            let service = service.clone();
            let retried = attempts > 1;
            async move {
                match self.docker.create_service(service, None).await {
                    Ok(r) => Ok(r.id.unwrap_or_default()),
                    // A retry after a lost answer: the first attempt did create it.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 409,
                        ..
                    }) if retried => self
                        .docker
                        .inspect_service(
                            &spec.name,
                            None::<bollard::query_parameters::InspectServiceOptions>,
                        )
                        .await
                        .map(|s| s.id.unwrap_or_default())
                        .map_err(classify),
                    Err(e) => Err(classify(e)),
                }
            }
        })
        .await
    }

    async fn remove_service(&self, id: &str) -> Result<(), ApiError> {
        match retry_n("remove service", REMOVE_RETRIES, || async {
            self.docker.delete_service(id).await.map_err(classify)
        })
        .await
        {
            Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_secret(
        &self,
        name: &str,
        labels: &[(String, String)],
        data: &[u8],
    ) -> Result<String, ApiError> {
        use base64::Engine as _;
        let spec = bollard::models::SecretSpec {
            name: Some(name.to_owned()),
            labels: Some(labels.iter().cloned().collect()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let mut attempts = 0u32;
        retry("create secret", || {
            attempts += 1;
            let (spec, retried) = (spec.clone(), attempts > 1);
            async move {
                match self.docker.create_secret(spec).await {
                    Ok(r) => Ok(r.id),
                    // A retry after a lost answer: the first attempt did create it.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 409,
                        ..
                    }) if retried => self
                        .docker
                        .inspect_secret(name)
                        .await
                        .map(|s| s.id.unwrap_or_default())
                        .map_err(classify),
                    Err(e) => Err(classify(e)),
                }
            }
        })
        .await
    }

    async fn remove_secret(&self, id: &str) -> Result<(), ApiError> {
        match retry_n("remove secret", REMOVE_RETRIES, || async {
            self.docker.delete_secret(id).await.map_err(classify)
        })
        .await
        {
            Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_secrets(&self, label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        let opts = bollard::query_parameters::ListSecretsOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
        };
        let secrets = retry("list secrets", || async {
            self.docker
                .list_secrets(Some(opts.clone()))
                .await
                .map_err(classify)
        })
        .await?;
        Ok(secrets
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let mut labels: Vec<(String, String)> =
                    spec.labels.unwrap_or_default().into_iter().collect();
                labels.sort();
                ServiceInfo {
                    id: s.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    global: false,
                    labels,
                }
            })
            .collect())
    }

    fn service_logs(&self, id: &str) -> BoxStream<'static, Result<(LogStream, Vec<u8>), ApiError>> {
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        self.docker
            .service_logs(id, Some(opts))
            .filter_map(|item| async move {
                use bollard::container::LogOutput;
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        Some(Ok((LogStream::Stdout, message.to_vec())))
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        Some(Ok((LogStream::Stderr, message.to_vec())))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(classify(e))),
                }
            })
            .boxed()
    }
}

/// The Engine API form of a [`HelperSpec`].
fn service_spec(h: &HelperSpec) -> ServiceSpec {
    let labels: HashMap<String, String> = h.labels.iter().cloned().collect();
    ServiceSpec {
        name: Some(h.name.clone()),
        labels: Some(labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(h.image.clone()),
                args: Some(h.args.clone()),
                labels: Some(labels),
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some(h.socket.clone()),
                    target: Some(h.socket.clone()),
                    ..Default::default()
                }]),
                secrets: h.stdin_secret.as_ref().map(|(id, name)| {
                    vec![bollard::models::TaskSpecContainerSpecSecrets {
                        file: Some(bollard::models::TaskSpecContainerSpecFile {
                            name: Some(crate::helper::STDIN_FILE_NAME.to_owned()),
                            uid: Some("0".to_owned()),
                            gid: Some("0".to_owned()),
                            mode: Some(0o400),
                        }),
                        secret_id: Some(id.clone()),
                        secret_name: Some(name.clone()),
                    }]
                }),
                read_only: Some(true),
                // The socket is owned by root, so the helper needs uid 0 but no capabilities.
                capability_drop: Some(vec!["ALL".to_owned()]),
                // Room to stop the commands when the helper is removed (service removal
                // itself does not wait for it).
                stop_grace_period: Some(10_000_000_000),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={}", h.node_id)]),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(bollard::models::Limit {
                    memory_bytes: Some(h.memory_limit),
                    nano_cpus: Some(h.nano_cpus),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            // Service logs need a driver the engine can read back; never rely on the
            // node's default (often syslog, fluentd, ...).
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".to_owned()),
                options: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn classification() {
        let e = |status_code: u16, message: &str| {
            classify(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.into(),
            })
        };
        assert!(e(500, "rpc error").is_transient());
        assert!(e(503, "raft unavailable").is_transient());
        assert!(!e(400, "bad spec").is_transient());
        assert!(!e(409, "name conflicts").is_transient());
        assert!(matches!(e(404, "no such task"), ApiError::NotFound(_)));
        let not_mgr = e(
            503,
            "This node is not a swarm manager. Use \"docker swarm init\"",
        );
        assert!(matches!(not_mgr, ApiError::NotManager(_)));
        assert!(!not_mgr.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_with_bounded_backoff() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = retry("t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Connect("refused".into()))
        })
        .await;
        assert!(matches!(r, Err(ApiError::Connect(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        let waited = start.elapsed();
        assert!(waited <= Duration::from_secs(9), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_client_errors_and_stops_on_success() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry("t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Server {
                status: 400,
                message: "bad".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r = retry("t", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(ApiError::Server {
                    status: 502,
                    message: "bad gateway".into(),
                })
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn helper_service_spec() {
        let h = HelperSpec {
            name: "swarm-exec-x".into(),
            image: "sha256:abc".into(),
            node_id: "n".repeat(25),
            args: vec!["node-exec".into()],
            labels: vec![("swarm-exec.helper".into(), "1".into())],
            socket: "/var/run/docker.sock".into(),
            memory_limit: 64 << 20,
            nano_cpus: 500_000_000,
            stdin_secret: None,
        };
        let json = serde_json::to_value(service_spec(&h)).unwrap();
        let t = &json["TaskTemplate"];
        assert_eq!(t["RestartPolicy"]["Condition"], "none");
        assert_eq!(
            t["Placement"]["Constraints"][0],
            format!("node.id=={}", "n".repeat(25))
        );
        assert_eq!(t["ContainerSpec"]["Mounts"][0]["Type"], "bind");
        assert_eq!(t["ContainerSpec"]["ReadOnly"], true);
        assert_eq!(t["LogDriver"]["Name"], "json-file");
        assert_eq!(json["Labels"]["swarm-exec.helper"], "1");
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 1);
    }
}
