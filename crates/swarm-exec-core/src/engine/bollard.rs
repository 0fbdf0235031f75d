//! [`SwarmApi`] over bollard. Transient failures (the engine refusing connections while it
//! restarts, 5xx answers) are retried with bounded exponential backoff; client errors (4xx)
//! never are. Also the mapping of the engine's types onto the orchestration's.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bollard::models::{
    Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListTasksOptions, LogsOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::stream::{BoxStream, StreamExt};
use tokio_retry::strategy::{jitter, ExponentialBackoff};
use tokio_retry::RetryIf;

use crate::connect::{Endpoint, EndpointError};
use crate::engine::{
    ApiError, Attach, ExecOptions, ExecState, ImageImport, Listed, LogPiece, LogStream, Named,
    NetworkInfo, NodeInfo, ServiceInfo, SwarmApi, TaskFilter, TaskInfo,
};
use crate::escape;
use crate::model::spec::{HelperSpec, ImageInfo, RelaySpec};

/// [`SwarmApi`] over bollard.
#[derive(Debug, Clone)]
pub struct BollardApi {
    docker: Docker,
}

impl BollardApi {
    fn new(docker: Docker) -> Self {
        BollardApi { docker }
    }

    /// A client for `endpoint`. Nothing is sent yet: an unreachable engine shows on first use.
    pub fn connect(endpoint: &Endpoint) -> Result<BollardApi, EndpointError> {
        let fail = |reason: String| EndpointError::Connect {
            host: endpoint.host.clone(),
            source_of: endpoint.source.clone(),
            reason,
        };
        let h = endpoint.host.as_str();
        if h.starts_with("unix://") {
            Docker::connect_with_unix(h, REQUEST_TIMEOUT, API_DEFAULT_VERSION)
                .map_err(|e| fail(e.to_string()))
        } else if h.starts_with("tcp://") || h.starts_with("http://") || h.starts_with("https://") {
            match &endpoint.tls {
                Some(t) => Docker::connect_with_ssl(
                    h,
                    &t.key,
                    &t.cert,
                    &t.ca,
                    REQUEST_TIMEOUT,
                    API_DEFAULT_VERSION,
                ),
                None => Docker::connect_with_http(h, REQUEST_TIMEOUT, API_DEFAULT_VERSION),
            }
            .map_err(|e| fail(e.to_string()))
        } else if h.starts_with("ssh://") {
            crate::engine::ssh::connect(h).map_err(|e| fail(e.to_string()))
        } else {
            Err(EndpointError::Scheme(h.to_owned()))
        }
        .map(BollardApi::new)
    }
}

/// Seconds a request may take to answer (its headers; streams are not bounded by this).
const REQUEST_TIMEOUT: u64 = 120;

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

/// Creates an object by name with retries, returning its ID. A conflict on a retry means
/// an earlier attempt made it and only its answer was lost: `lookup` finds it by name.
async fn create_once<C, CF, L, LF>(what: &str, mut create: C, lookup: L) -> Result<String, ApiError>
where
    C: FnMut() -> CF,
    CF: Future<Output = Result<String, bollard::errors::Error>>,
    L: Fn() -> LF,
    LF: Future<Output = Result<String, bollard::errors::Error>>,
{
    let mut attempts = 0u32;
    retry(what, || {
        attempts += 1;
        let (made, retried) = (create(), attempts > 1);
        let lookup = &lookup;
        async move {
            match made.await {
                Ok(id) => Ok(id),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) if retried => lookup().await.map_err(classify),
                Err(e) => Err(classify(e)),
            }
        }
    })
    .await
}

/// Removes an object with the longer removal retries; one that is gone already is removed.
async fn remove_once<F, Fut>(what: &str, remove: F) -> Result<(), ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), bollard::errors::Error>>,
{
    match retry_n(what, REMOVE_RETRIES, || async {
        remove().await.map_err(classify)
    })
    .await
    {
        Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Maps bollard's error onto [`ApiError`].
pub fn classify(err: bollard::errors::Error) -> ApiError {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            // Engines pass on what workers and containers said: it reaches a terminal.
            let message = shown(message);
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
    shown(text)
}

/// Text from the swarm as it may be shown: control characters escaped (see [`escape`]).
fn shown(text: String) -> String {
    match escape::escape_control(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

fn state_of(state: Option<TaskState>) -> crate::model::state::TaskState {
    crate::model::state::TaskState::parse(&state.map(|s| s.to_string()).unwrap_or_default())
}

/// A task spec as far as the engine shows it on a task (see [`ServiceInfo::template`]):
/// the engine reports a task's container spec without some of what a service's carries
/// (`StopGracePeriod`, at times an empty `DNSConfig`), and no restart policy, resources or
/// placement at all; so those are left out of both. (Nor does its health check show: the
/// engine names it `Healthcheck`, the models `HealthCheck`.)
fn spec_key(spec: Option<&bollard::models::TaskSpec>) -> String {
    fn prune(v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                m.values_mut().for_each(prune);
                m.retain(|_, x| {
                    !(x.is_null()
                        || x.as_object().is_some_and(|o| o.is_empty())
                        || x.as_array().is_some_and(|a| a.is_empty())
                        || x.as_str() == Some(""))
                });
            }
            Value::Array(a) => a.iter_mut().for_each(prune),
            _ => {}
        }
    }
    let Some(spec) = spec else {
        return String::new();
    };
    let mut container = serde_json::to_value(&spec.container_spec).unwrap_or_default();
    if let Some(c) = container.as_object_mut() {
        c.remove("StopGracePeriod");
    }
    prune(&mut container);
    format!("{container}#{}", spec.force_update.unwrap_or(0))
}

fn task_info(t: bollard::models::Task) -> TaskInfo {
    let spec = spec_key(t.spec.as_ref());
    let container_spec = t.spec.and_then(|s| s.container_spec).unwrap_or_default();
    let mut container_labels: Vec<(String, String)> = container_spec
        .labels
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
        state: state_of(status.state),
        desired_state: state_of(t.desired_state),
        err: shown(status.err.unwrap_or_default()),
        message: shown(status.message.unwrap_or_default()),
        container_id: container.container_id.unwrap_or_default(),
        exit_code: container.exit_code,
        updated: t.updated_at.map(|d| d.to_string()).unwrap_or_default(),
        container_labels,
        image: container_spec.image.unwrap_or_default(),
        spec,
    }
}

/// A `label` filter (`key` or `key=value`) for a list call.
fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label.to_owned()])])
}

/// A secret or config as `gc` and zero-install's configs see it.
fn stored_object(
    id: Option<String>,
    name: Option<String>,
    labels: Option<HashMap<String, String>>,
    created_at: Option<&str>,
) -> ServiceInfo {
    let mut labels: Vec<(String, String)> = labels.unwrap_or_default().into_iter().collect();
    labels.sort();
    ServiceInfo {
        id: id.unwrap_or_default(),
        name: name.unwrap_or_default(),
        labels,
        created_at: created_at.and_then(unix_seconds),
        ..Default::default()
    }
}

fn service_info(s: bollard::models::Service) -> ServiceInfo {
    let spec = s.spec.unwrap_or_default();
    let template = spec_key(spec.task_template.as_ref());
    let mode = spec.mode.unwrap_or_default();
    let replicas = mode
        .replicated
        .as_ref()
        .and_then(|r| r.replicas)
        .and_then(|n| u64::try_from(n).ok());
    let mut labels: Vec<(String, String)> = spec.labels.unwrap_or_default().into_iter().collect();
    labels.sort();
    let container = spec
        .task_template
        .and_then(|t| t.container_spec)
        .unwrap_or_default();
    ServiceInfo {
        id: s.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        global: mode.global.is_some() || mode.global_job.is_some(),
        labels,
        created_at: s.created_at.as_deref().and_then(unix_seconds),
        updating: s.update_status.and_then(|u| u.state).is_some_and(|st| {
            use bollard::models::ServiceUpdateStatusStateEnum as U;
            matches!(st, U::UPDATING | U::ROLLBACK_STARTED)
        }),
        replicas,
        template,
        args: container.args.unwrap_or_default(),
        binds: container
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ == Some(MountType::BIND))
            .filter_map(|m| m.source)
            .collect(),
        data: Vec::new(),
    }
}

/// Unix seconds of an RFC 3339 time as the engine writes them
/// (`2026-12-01T21:07:13.123456789Z`, or with a `+01:00` offset).
/// A log entry asked for with timestamps: `2026-12-04T07:30:00.123456789Z <entry>`. An
/// entry without one (which the engine does not send) is left whole.
fn split_timestamp(message: &[u8]) -> (Option<i64>, &[u8]) {
    let parsed = message
        .iter()
        .take(40)
        .position(|&b| b == b' ')
        .and_then(|i| {
            let t = std::str::from_utf8(&message[..i]).ok()?;
            let secs = i64::try_from(unix_seconds(t)?).ok()?;
            Some((secs, &message[i + 1..]))
        });
    match parsed {
        Some((secs, rest)) => (Some(secs), rest),
        None => (None, message),
    }
}

pub fn unix_seconds(t: &str) -> Option<u64> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let clock_end = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(clock_end);
    let clock = clock.split('.').next()?;
    let mut c = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (c.next()??, c.next()??, c.next()??);
    let offset = match zone.as_bytes().first() {
        None | Some(b'Z' | b'z') => 0,
        Some(&sign) => {
            let (oh, om) = zone[1..].split_once(':')?;
            let secs = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil calendar (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss - offset).ok()
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
            filters: Some(label_filter(label)),
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
        let description = n.description.unwrap_or_default();
        let platform = description.platform.unwrap_or_default();
        let status = n.status.unwrap_or_default();
        Ok(NodeInfo {
            id: n.id.unwrap_or_default(),
            hostname: shown(description.hostname.unwrap_or_default()),
            os: platform.os.unwrap_or_default(),
            arch: platform.architecture.unwrap_or_default(),
            state: status.state.map(|s| s.to_string()).unwrap_or_default(),
            message: shown(status.message.unwrap_or_default()),
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
        create_once(
            "create service",
            || {
                let service = service.clone();
                async move {
                    let r = self.docker.create_service(service, None).await?;
                    Ok(r.id.unwrap_or_default())
                }
            },
            || async {
                let opts = None::<bollard::query_parameters::InspectServiceOptions>;
                let s = self.docker.inspect_service(&spec.name, opts).await?;
                Ok(s.id.unwrap_or_default())
            },
        )
        .await
    }

    async fn remove_service(&self, id: &str) -> Result<(), ApiError> {
        remove_once("remove service", || self.docker.delete_service(id)).await
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
        create_once(
            "create secret",
            || {
                let spec = spec.clone();
                async move { Ok(self.docker.create_secret(spec).await?.id) }
            },
            || async {
                Ok(self
                    .docker
                    .inspect_secret(name)
                    .await?
                    .id
                    .unwrap_or_default())
            },
        )
        .await
    }

    async fn remove_secret(&self, id: &str) -> Result<(), ApiError> {
        remove_once("remove secret", || self.docker.delete_secret(id)).await
    }

    async fn create_config(
        &self,
        name: &str,
        labels: &[(String, String)],
        data: &[u8],
    ) -> Result<ServiceInfo, ApiError> {
        use base64::Engine as _;
        let spec = bollard::models::ConfigSpec {
            name: Some(name.to_owned()),
            labels: Some(labels.iter().cloned().collect()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        // The config as the engine holds it, its data included: what the caller checks.
        let found = || async {
            let c = self.docker.inspect_config(name).await?;
            let spec = c.spec.unwrap_or_default();
            let data = spec.data.as_deref().unwrap_or_default();
            Ok(ServiceInfo {
                data: base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_default(),
                ..stored_object(c.id, spec.name, spec.labels, c.created_at.as_deref())
            })
        };
        let find = || async { found().await.map(|c| c.id) };
        // Another client may create the same content-addressed config at the same moment:
        // then it is there to be used (once checked), not a failure.
        let created = create_once(
            "create config",
            || {
                let spec = spec.clone();
                async move { Ok(self.docker.create_config(spec).await?.id) }
            },
            find,
        )
        .await;
        match created {
            Ok(id) => Ok(ServiceInfo {
                id,
                name: name.to_owned(),
                labels: labels.to_vec(),
                data: data.to_vec(),
                ..Default::default()
            }),
            Err(ApiError::Server { status: 409, .. }) => {
                retry("inspect config", || async {
                    found().await.map_err(classify)
                })
                .await
            }
            Err(e) => Err(e),
        }
    }

    async fn remove_config(&self, id: &str) -> Result<(), ApiError> {
        remove_once("remove config", || self.docker.delete_config(id)).await
    }

    async fn list_configs(&self, label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        let opts = bollard::query_parameters::ListConfigsOptions {
            filters: Some(label_filter(label)),
        };
        let configs = retry("list configs", || async {
            self.docker
                .list_configs(Some(opts.clone()))
                .await
                .map_err(classify)
        })
        .await?;
        Ok(configs
            .into_iter()
            .map(|c| {
                use base64::Engine as _;
                let spec = c.spec.unwrap_or_default();
                let data = spec.data.as_deref().unwrap_or_default();
                ServiceInfo {
                    data: base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .unwrap_or_default(),
                    ..stored_object(c.id, spec.name, spec.labels, c.created_at.as_deref())
                }
            })
            .collect())
    }

    async fn list_secrets(&self, label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        let opts = bollard::query_parameters::ListSecretsOptions {
            filters: Some(label_filter(label)),
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
                stored_object(s.id, spec.name, spec.labels, s.created_at.as_deref())
            })
            .collect())
    }

    async fn own_node_id(&self) -> Result<Option<String>, ApiError> {
        let info = retry("reading the engine's info", || async {
            self.docker.info().await.map_err(classify)
        })
        .await?;
        Ok(info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty()))
    }

    async fn engine_time(&self) -> Result<u64, ApiError> {
        let info = retry("read the engine's clock", || async {
            self.docker.info().await.map_err(classify)
        })
        .await?;
        let time = info.system_time.unwrap_or_default();
        unix_seconds(&time).ok_or_else(|| ApiError::Server {
            status: 200,
            message: format!("unreadable engine time {time:?}"),
        })
    }

    fn service_logs(
        &self,
        id: &str,
        follow: bool,
        since: Option<i64>,
    ) -> BoxStream<'static, Result<LogPiece, ApiError>> {
        let opts = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            // Each entry's time: a read again asks only for what follows the last frame.
            timestamps: true,
            since: since.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        self.docker
            .service_logs(id, Some(opts))
            .filter_map(|item| async move {
                use bollard::container::LogOutput;
                let (stream, message) = match item {
                    Ok(LogOutput::StdOut { message }) => (LogStream::Stdout, message),
                    Ok(LogOutput::StdErr { message }) => (LogStream::Stderr, message),
                    Ok(_) => return None,
                    Err(e) => return Some(Err(classify(e))),
                };
                let (logged, bytes) = split_timestamp(&message);
                Some(Ok(LogPiece {
                    stream,
                    bytes: bytes.to_vec(),
                    logged,
                }))
            })
            .boxed()
    }

    async fn import_image(&self, image: ImageImport) -> Result<(), ApiError> {
        let opts = bollard::query_parameters::CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(image.repo),
            tag: Some(image.tag),
            changes: image.changes,
            ..Default::default()
        };
        let mut progress =
            self.docker
                .create_image(Some(opts), Some(bollard::body_full(image.tar.into())), None);
        while let Some(p) = progress.next().await {
            p.map_err(classify)?;
        }
        Ok(())
    }

    async fn list_images(&self, label: &str) -> Result<Vec<Listed>, ApiError> {
        let opts = bollard::query_parameters::ListImagesOptions {
            filters: Some(label_filter(label)),
            ..Default::default()
        };
        let images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(classify)?;
        Ok(images
            .into_iter()
            .map(|i| Listed {
                id: i.id,
                names: i.repo_tags,
                labels: sorted(i.labels),
                created: u64::try_from(i.created).unwrap_or(0),
            })
            .collect())
    }

    async fn remove_image(&self, id: &str) -> Result<(), ApiError> {
        let opts = None::<bollard::query_parameters::RemoveImageOptions>;
        self.docker
            .remove_image(id, opts, None)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkInfo, ApiError> {
        let opts = None::<bollard::query_parameters::InspectNetworkOptions>;
        let n = self
            .docker
            .inspect_network(name_or_id, opts)
            .await
            .map_err(classify)?;
        Ok(NetworkInfo {
            id: n.id.unwrap_or_default(),
            driver: n.driver.unwrap_or_default(),
            attachable: n.attachable == Some(true),
            labels: sorted(n.labels.unwrap_or_default()),
        })
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &[(String, String)],
        subnet: Option<&str>,
    ) -> Result<String, ApiError> {
        let ipam = subnet.map(|subnet| bollard::models::Ipam {
            config: Some(vec![bollard::models::IpamConfig {
                subnet: Some(subnet.to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let create = bollard::models::NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(labels.iter().cloned().collect()),
            ipam,
            ..Default::default()
        };
        let made = self.docker.create_network(create).await.map_err(classify)?;
        Ok(made.id)
    }

    async fn list_networks(&self, label: &str) -> Result<Vec<Listed>, ApiError> {
        let opts = bollard::query_parameters::ListNetworksOptions {
            filters: Some(label_filter(label)),
        };
        let found = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(classify)?;
        Ok(found
            .into_iter()
            .map(|n| Listed {
                id: n.id.unwrap_or_default(),
                names: n.name.into_iter().collect(),
                labels: sorted(n.labels.unwrap_or_default()),
                created: n.created.as_deref().and_then(unix_seconds).unwrap_or(0),
            })
            .collect())
    }

    async fn remove_network(&self, id: &str) -> Result<(), ApiError> {
        self.docker.remove_network(id).await.map_err(classify)
    }

    async fn create_relay(&self, spec: &RelaySpec) -> Result<String, ApiError> {
        let opts = bollard::query_parameters::CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let made = self
            .docker
            .create_container(Some(opts), relay_container(spec))
            .await
            .map_err(classify)?;
        Ok(made.id)
    }

    async fn attach_container(&self, id: &str) -> Result<Attach, ApiError> {
        let opts = bollard::query_parameters::AttachContainerOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            stream: true,
            ..Default::default()
        };
        let bollard::container::AttachContainerResults { output, input } = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(classify)?;
        Ok(Attach {
            output: chunks(output),
            input,
        })
    }

    async fn start_container(&self, id: &str) -> Result<(), ApiError> {
        let opts = None::<bollard::query_parameters::StartContainerOptions>;
        self.docker
            .start_container(id, opts)
            .await
            .map_err(classify)
    }

    async fn container_address(
        &self,
        id: &str,
        network_id: &str,
    ) -> Result<Option<String>, ApiError> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(classify)?;
        Ok(c.network_settings
            .and_then(|n| n.networks)
            .and_then(|n| {
                n.into_values()
                    .find(|e| e.network_id.as_deref() == Some(network_id))
            })
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    async fn remove_container(&self, id: &str) -> Result<(), ApiError> {
        let opts = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.docker
            .remove_container(id, Some(opts))
            .await
            .map_err(classify)
    }

    async fn list_containers(&self, label: &str) -> Result<Vec<Listed>, ApiError> {
        let opts = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(label_filter(label)),
            ..Default::default()
        };
        let found = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(classify)?;
        Ok(found
            .into_iter()
            .map(|c| Listed {
                id: c.id.unwrap_or_default(),
                names: c
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .collect(),
                labels: sorted(c.labels.unwrap_or_default()),
                created: c.created.map_or(0, |t| u64::try_from(t).unwrap_or(0)),
            })
            .collect())
    }

    async fn remove_named(&self, what: Named<'_>) -> Result<(), ApiError> {
        match what {
            Named::Service(name) => self.docker.delete_service(name).await,
            Named::Secret(name) => self.docker.delete_secret(name).await,
            Named::Container(name) => {
                let opts = bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                self.docker.remove_container(name, Some(opts)).await
            }
            Named::Network(name) => self.docker.remove_network(name).await,
        }
        .map_err(classify)
    }

    async fn stop_exec(
        &self,
        stopper: &swarm_exec_node::stop::Stopper,
        exec_id: &str,
        container: &str,
        mark: &str,
    ) -> Result<(), String> {
        stopper
            .terminate(&self.docker, exec_id, container, mark)
            .await
            .map_err(|e| e.to_string())
    }

    async fn create_exec(&self, exec: &ExecOptions) -> Result<String, ApiError> {
        let config = bollard::models::ExecConfig {
            attach_stdin: Some(exec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(exec.tty),
            cmd: Some(exec.command.clone()),
            env: Some(exec.env.clone()),
            working_dir: exec.workdir.clone(),
            user: exec.user.clone(),
            privileged: Some(exec.privileged),
            ..Default::default()
        };
        let made = self
            .docker
            .create_exec(&exec.container, config)
            .await
            .map_err(classify)?;
        Ok(made.id)
    }

    async fn start_exec(&self, id: &str, tty: bool) -> Result<Option<Attach>, ApiError> {
        let opts = bollard::exec::StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        match self
            .docker
            .start_exec(id, Some(opts))
            .await
            .map_err(classify)?
        {
            bollard::exec::StartExecResults::Attached { output, input } => Ok(Some(Attach {
                output: chunks(output),
                input,
            })),
            bollard::exec::StartExecResults::Detached => Ok(None),
        }
    }

    async fn resize_exec(&self, id: &str, rows: u16, cols: u16) -> Result<(), ApiError> {
        let opts = bollard::exec::ResizeExecOptions {
            height: rows,
            width: cols,
        };
        self.docker.resize_exec(id, opts).await.map_err(classify)
    }

    async fn inspect_exec(&self, id: &str) -> Result<ExecState, ApiError> {
        let e = self.docker.inspect_exec(id).await.map_err(classify)?;
        Ok(ExecState {
            running: e.running,
            exit_code: e.exit_code,
        })
    }

    async fn archive_mode(&self, container: &str, path: &str) -> Result<Option<u32>, ApiError> {
        let opts = bollard::query_parameters::ContainerArchiveInfoOptions {
            path: path.to_owned(),
        };
        match self
            .docker
            .get_container_archive_info(container, Some(opts))
            .await
            .map_err(classify)
        {
            Ok(stat) => Ok(Some(stat.file_mode)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn download_archive(
        &self,
        container: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Vec<u8>, ApiError>> {
        let opts = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        self.docker
            .download_from_container(container, Some(opts))
            .map(|r| r.map(|b| b.to_vec()).map_err(classify))
            .boxed()
    }

    async fn upload_archive(
        &self,
        container: &str,
        dir: &str,
        body: BoxStream<'static, Vec<u8>>,
    ) -> Result<(), ApiError> {
        let opts = bollard::query_parameters::UploadToContainerOptions {
            path: dir.to_owned(),
            ..Default::default()
        };
        let body = bollard::body_stream(body.map(bytes::Bytes::from));
        self.docker
            .upload_to_container(container, Some(opts), body)
            .await
            .map_err(classify)
    }
}

/// An attach's frames as chunks of one stream or the other (a TTY's output is stdout).
fn chunks(
    output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
) -> crate::engine::OutputStream {
    use bollard::container::LogOutput as L;
    output
        .filter_map(|item| async move {
            match item {
                Ok(L::StdErr { message }) => Some(Ok((LogStream::Stderr, message.to_vec()))),
                Ok(L::StdOut { message } | L::Console { message }) => {
                    Some(Ok((LogStream::Stdout, message.to_vec())))
                }
                Ok(L::StdIn { .. }) => None,
                Err(e) => Some(Err(classify(e))),
            }
        })
        .boxed()
}

fn sorted(labels: HashMap<String, String>) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = labels.into_iter().collect();
    labels.sort();
    labels
}

/// The Engine API form of a [`RelaySpec`]: attached (stdin open, closed once), hardened.
fn relay_container(spec: &RelaySpec) -> bollard::models::ContainerCreateBody {
    bollard::models::ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.args.clone()),
        labels: Some(spec.labels.iter().cloned().collect()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        user: Some(spec.user.clone()),
        working_dir: Some("/".into()),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some(spec.network.clone()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            memory: Some(spec.memory),
            nano_cpus: Some(spec.nano_cpus),
            // Gone by itself if the client is killed (it exits once its stdin closes).
            auto_remove: Some(true),
            // The client reads it through the attach; logged too, every byte of a session
            // (ciphertext) would also be written, JSON-escaped, to the manager's disk.
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
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
            container_spec: Some(container_spec(h, labels)),
            networks: h.network.as_ref().map(|n| {
                vec![bollard::models::NetworkAttachmentConfig {
                    target: Some(n.clone()),
                    ..Default::default()
                }]
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
            // node's default (often syslog, fluentd, ...) nor its default options.
            log_driver: Some(TaskSpecLogDriver {
                name: Some(crate::model::spec::LOG_DRIVER.to_owned()),
                options: Some(
                    crate::model::spec::LOG_OPTIONS
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The helper's container: the program, its envelope and the node's socket; hardened.
fn container_spec(h: &HelperSpec, labels: HashMap<String, String>) -> TaskSpecContainerSpec {
    TaskSpecContainerSpec {
        image: Some(h.image.clone()),
        command: h.command.clone(),
        args: Some(h.args.clone()),
        // Nothing of the image's own user, working directory or healthcheck.
        user: h.user.clone(),
        dir: Some("/".to_owned()),
        health_check: Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        configs: (!h.configs.is_empty()).then(|| {
            h.configs
                .iter()
                .map(|c| bollard::models::TaskSpecContainerSpecConfigs {
                    file: Some(bollard::models::TaskSpecContainerSpecFile1 {
                        name: Some(c.file.clone()),
                        uid: Some("0".to_owned()),
                        gid: Some("0".to_owned()),
                        mode: Some(c.mode),
                    }),
                    config_id: Some(c.id.clone()),
                    config_name: Some(c.name.clone()),
                    ..Default::default()
                })
                .collect()
        }),
        labels: Some(labels),
        mounts: Some(vec![Mount {
            typ: Some(MountType::BIND),
            source: Some(h.socket.clone()),
            target: Some(h.socket.clone()),
            ..Default::default()
        }]),
        secrets: Some(vec![bollard::models::TaskSpecContainerSpecSecrets {
            file: Some(bollard::models::TaskSpecContainerSpecFile {
                name: Some(crate::model::spec::ENVELOPE_FILE_NAME.to_owned()),
                uid: Some("0".to_owned()),
                gid: Some("0".to_owned()),
                mode: Some(0o400),
            }),
            secret_id: Some(h.envelope_secret.0.clone()),
            secret_name: Some(h.envelope_secret.1.clone()),
        }]),
        read_only: Some(true),
        // The socket is owned by root, so the helper needs uid 0 but no capabilities.
        capability_drop: Some(vec!["ALL".to_owned()]),
        // Room to stop the commands when the helper is removed (service removal
        // itself does not wait for it). SIGTERM is what the helper handles (it is
        // PID 1, which ignores any other signal it has no handler for): never the
        // target image's STOPSIGNAL (nginx: SIGQUIT, postgres: SIGINT).
        stop_grace_period: Some(10_000_000_000),
        stop_signal: Some("SIGTERM".to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_log_entrys_time_is_split_off_and_an_entry_without_one_left_whole() {
        let (at, rest) = split_timestamp(b"2026-12-04T07:30:05.123456789Z swx2 tag AAAA\n");
        assert_eq!(at, Some(1_796_369_405));
        assert_eq!(rest, b"swx2 tag AAAA\n");
        // A frame line itself, or anything else, is never cut.
        for whole in [
            &b"swx2 tag AAAA\n"[..],
            b"no time here\n",
            b"",
            b"2026-12-04 x",
        ] {
            assert_eq!(split_timestamp(whole), (None, whole));
        }
    }

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
    fn engine_times() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_seconds("2026-12-01T21:07:13.123456789Z"),
            Some(1_796_159_233)
        );
        assert_eq!(
            unix_seconds("2026-12-01T22:07:13.5+01:00"),
            Some(1_796_159_233)
        );
        assert_eq!(
            unix_seconds("2024-02-29T12:00:00-00:30"),
            Some(1_709_208_000 + 1800)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-12-01",
            "2026-12-01Tnoon",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn helper_service_spec() {
        let h = HelperSpec {
            name: "swarm-exec-x".into(),
            tag: "x".into(),
            image: "sha256:abc".into(),
            node_id: "n".repeat(25),
            command: Some(vec!["/.swarm-exec/load".into()]),
            args: vec!["1:2".into(), "node-exec".into()],
            configs: vec![crate::model::node_program::ConfigMount {
                id: "cid".into(),
                name: "swarm-exec-node-0123456789ab-load".into(),
                file: "/.swarm-exec/load".into(),
                mode: 0o555,
            }],
            user: Some("0:0".into()),
            labels: vec![("swarm-exec.helper".into(), "1".into())],
            socket: "/var/run/docker.sock".into(),
            memory_limit: 64 << 20,
            nano_cpus: 500_000_000,
            envelope_secret: ("sid".into(), "swarm-exec-run-x".into()),
            network: None,
        };
        let json = serde_json::to_value(service_spec(&h)).unwrap();
        assert!(json["TaskTemplate"].get("Networks").is_none());
        let session = HelperSpec {
            network: Some("netid".into()),
            ..h.clone()
        };
        let s = serde_json::to_value(service_spec(&session)).unwrap();
        assert_eq!(s["TaskTemplate"]["Networks"][0]["Target"], "netid");
        let t = &json["TaskTemplate"];
        assert_eq!(t["RestartPolicy"]["Condition"], "none");
        assert_eq!(
            t["Placement"]["Constraints"][0],
            format!("node.id=={}", "n".repeat(25))
        );
        assert_eq!(t["ContainerSpec"]["Mounts"][0]["Type"], "bind");
        assert_eq!(t["ContainerSpec"]["ReadOnly"], true);
        // Nothing of the image's entrypoint, user, working directory or healthcheck.
        assert_eq!(t["ContainerSpec"]["Command"][0], "/.swarm-exec/load");
        assert_eq!(t["ContainerSpec"]["User"], "0:0");
        assert_eq!(t["ContainerSpec"]["Dir"], "/");
        assert_eq!(t["ContainerSpec"]["StopSignal"], "SIGTERM");
        assert_eq!(t["ContainerSpec"]["HealthCheck"]["Test"][0], "NONE");
        let config = &t["ContainerSpec"]["Configs"][0];
        assert_eq!(config["File"]["Name"], "/.swarm-exec/load");
        assert_eq!(config["File"]["Mode"], 0o555);
        assert_eq!(config["ConfigID"], "cid");
        assert_eq!(t["LogDriver"]["Name"], "json-file");
        // The node's own log options never apply: they could rotate frames away unread.
        assert_eq!(t["LogDriver"]["Options"]["max-size"], "256m");
        assert_eq!(t["LogDriver"]["Options"]["max-file"], "2");
        let secret = &t["ContainerSpec"]["Secrets"][0];
        assert_eq!(secret["SecretID"], "sid");
        assert_eq!(secret["File"]["Name"], "envelope");
        assert_eq!(secret["File"]["Mode"], 0o400);
        assert_eq!(json["Labels"]["swarm-exec.helper"], "1");
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 1);
    }
}
