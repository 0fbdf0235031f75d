//! The narrow slice of the Docker Engine API that the orchestration uses.
//!
//! [`SwarmApi`] speaks in small owned types so a fake can implement it in unit tests;
//! [`crate::engine::bollard::BollardApi`] implements it over bollard, with the retry policy.

pub mod bollard;
#[cfg(test)]
pub(crate) mod fake;
pub mod ssh;

use std::future::Future;

use futures_util::stream::BoxStream;

pub use crate::model::state::TaskState;

use crate::model::spec::{HelperSpec, ImageInfo, RelaySpec};

/// A task as the orchestration sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    /// 0 for global services.
    pub slot: u64,
    pub node_id: String,
    pub state: TaskState,
    pub desired_state: TaskState,
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
    /// The image of the task's spec, as swarm runs it (`name:tag@sha256:…` when the
    /// service was deployed with its digest).
    pub image: String,
    /// What of its spec tells it from a task of another version of its service: see
    /// [`ServiceInfo::template`].
    pub spec: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub global: bool,
    /// The service's own labels.
    pub labels: Vec<(String, String)>,
    /// When the manager created it (Unix seconds, the manager's clock).
    pub created_at: Option<u64>,
    /// An update (or its rollback) is under way: tasks are being replaced.
    pub updating: bool,
    /// How many tasks a replicated service asks for (`None`: global, or a job).
    pub replicas: Option<u64>,
    /// Its task template as far as a task's spec shows it (the container spec, empty
    /// values left out, and the force-update counter): a task whose [`TaskInfo::spec`]
    /// differs is of an earlier version.
    pub template: String,
    /// Its container's arguments and bind-mount sources (empty for a secret).
    pub args: Vec<String>,
    pub binds: Vec<String>,
    /// A config's data (the engine lists it; never a secret's).
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// `Description.Platform`: e.g. `linux`, `x86_64`.
    pub os: String,
    pub arch: String,
    /// `Status.State` in the managers' view: `ready`, `down`, `disconnected`, `unknown`.
    pub state: String,
    /// `Status.Message`, e.g. why it is down.
    pub message: String,
}

/// Which stream of the helper a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One entry of a service's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPiece {
    pub stream: LogStream,
    pub bytes: Vec<u8>,
    /// When the node logged it, in Unix seconds (when the engine said).
    pub logged: Option<i64>,
}

/// A stream of output from the engine (an attached container or exec): chunks as they
/// come, each with its stream. It ends when the other side does.
pub type OutputStream = BoxStream<'static, Result<(LogStream, Vec<u8>), ApiError>>;
/// What is written to an attached container's or exec's stdin; shut down to end it.
pub type InputSink = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Both ends of an attach.
pub struct Attach {
    pub output: OutputStream,
    pub input: InputSink,
}

/// A network as sessions see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    pub id: String,
    /// Empty until a swarm network has been allocated by the managers.
    pub driver: String,
    pub attachable: bool,
    pub labels: Vec<(String, String)>,
}

/// A container or image found by label (`gc`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// A container's name (without `/`); an image's tags.
    pub names: Vec<String>,
    pub labels: Vec<(String, String)>,
    /// Unix seconds.
    pub created: u64,
}

impl Listed {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An exec to create in a container, attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub tty: bool,
    pub stdin: bool,
}

/// What the engine says of an exec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecState {
    pub running: Option<bool>,
    pub exit_code: Option<i64>,
}

/// Something to remove by name, whose absence is reported ([`ApiError::NotFound`]) rather
/// than taken as done: what a create stopped on its way may or may not have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    Service(&'a str),
    Secret(&'a str),
    Container(&'a str),
    Network(&'a str),
}

/// An image made from a tar of files (`docker import`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageImport {
    pub repo: String,
    pub tag: String,
    /// Dockerfile instructions applied to it (`LABEL …`, `ENTRYPOINT […]`).
    pub changes: Vec<String>,
    pub tar: Vec<u8>,
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
    /// Creates a config holding `data`; one that exists already under `name` (made by a
    /// concurrent client, or by anyone) is found instead. Returns the config under that
    /// name with its data — the caller decides whether a found one will do.
    fn create_config(
        &self,
        name: &str,
        labels: &[(String, String)],
        data: &[u8],
    ) -> impl Future<Output = Result<ServiceInfo, ApiError>> + Send;
    /// Removes a config; one that is already gone is not an error, one in use is.
    fn remove_config(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Configs carrying `label` (`key` or `key=value`), as services (name, ID, labels).
    fn list_configs(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ServiceInfo>, ApiError>> + Send;
    /// The swarm node ID of the engine itself (`None` when it is not in a swarm).
    fn own_node_id(&self) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// The engine's clock, in Unix seconds (gc measures staleness on the managers' clock).
    fn engine_time(&self) -> impl Future<Output = Result<u64, ApiError>> + Send;

    /// The helper's log from its start (or from the entries of Unix second `since` on):
    /// followed as it is written (`follow`; such a stream never ends by itself), or what is
    /// retained now (it ends). Each piece carries the time its entry was logged.
    fn service_logs(
        &self,
        id: &str,
        follow: bool,
        since: Option<i64>,
    ) -> BoxStream<'static, Result<LogPiece, ApiError>>;

    // The engine the client talks to, for sessions, the direct path and `cp`: one call
    // each, no retries (their callers decide what a failure means).

    /// An image made from files, as `docker import` makes it.
    fn import_image(&self, image: ImageImport)
        -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Images carrying `label`.
    fn list_images(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, ApiError>> + Send;
    /// Removes an image by tag or ID.
    fn remove_image(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn inspect_network(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<NetworkInfo, ApiError>> + Send;
    /// Creates an attachable overlay network, on `subnet` when given; returns its ID.
    fn create_network(
        &self,
        name: &str,
        labels: &[(String, String)],
        subnet: Option<&str>,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Networks carrying `label` (`key=value`); names in `names`, `created` in Unix seconds.
    fn list_networks(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, ApiError>> + Send;
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Creates a session's relay container (not started); returns its ID.
    fn create_relay(
        &self,
        spec: &RelaySpec,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Attaches to a container's stdin, stdout and stderr (before it starts).
    fn attach_container(&self, id: &str) -> impl Future<Output = Result<Attach, ApiError>> + Send;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// A container's address on a network, if it has one.
    fn container_address(
        &self,
        id: &str,
        network_id: &str,
    ) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// Removes a container, forcibly, with its anonymous volumes.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Containers (running or not) carrying `label`.
    fn list_containers(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, ApiError>> + Send;
    /// Removes by name, once; [`ApiError::NotFound`] when there is nothing of that name.
    fn remove_named(&self, what: Named<'_>) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Stops the processes of exec `exec_id` in `container`, and those carrying the run's
    /// `mark`, with the node side's stopper (a short-lived container on this engine): the
    /// engine has no call to signal an exec. Says why when they could not be seen to end.
    fn stop_exec(
        &self,
        stopper: &swarm_exec_node::stop::Stopper,
        exec_id: &str,
        container: &str,
        mark: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Creates an exec; returns its ID.
    fn create_exec(
        &self,
        exec: &ExecOptions,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Starts an exec attached; `None` if the engine did not attach it.
    fn start_exec(
        &self,
        id: &str,
        tty: bool,
    ) -> impl Future<Output = Result<Option<Attach>, ApiError>> + Send;
    fn resize_exec(
        &self,
        id: &str,
        rows: u16,
        cols: u16,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn inspect_exec(&self, id: &str) -> impl Future<Output = Result<ExecState, ApiError>> + Send;
    /// The mode of `path` in a container (Go's `os.FileMode` bits), `None` if it is not there.
    fn archive_mode(
        &self,
        container: &str,
        path: &str,
    ) -> impl Future<Output = Result<Option<u32>, ApiError>> + Send;
    /// A tar archive of `path` in a container, as it comes.
    fn download_archive(
        &self,
        container: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Vec<u8>, ApiError>>;
    /// Unpacks the tar archive `body` brings into directory `dir` of a container.
    fn upload_archive(
        &self,
        container: &str,
        dir: &str,
        body: BoxStream<'static, Vec<u8>>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
