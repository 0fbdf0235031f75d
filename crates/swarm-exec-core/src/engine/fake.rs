//! A fake of [`SwarmApi`] for unit tests of error paths and timing, on paused time: one
//! target task, a scripted helper (its task states and frames over time), and a record of
//! what was created and removed. The real behaviour is tested end to end against a real
//! swarm (crates/swarm-exec/tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::engine::{ApiError, SwarmApi};
use crate::engine::{
    Attach, ExecOptions, ExecState, ImageImport, Listed, LogPiece, LogStream, Named, NetworkInfo,
    NodeInfo, ServiceInfo, TaskFilter, TaskInfo,
};
use crate::model::spec::{HelperSpec, ImageInfo, RelaySpec};
use crate::sink::OutputSink;
use swarm_exec_proto::lines::Lines;
use swarm_exec_proto::{Envelope, Stream, Writer};

pub(crate) const NODE: &str = "node2aaaaaaaaaaaaaaaaaaaa";
pub(crate) const TASK: &str = "task1aaaaaaaaaaaaaaaaaaaa";
pub(crate) const SVC: &str = "svc1aaaaaaaaaaaaaaaaaaaaa";
pub(crate) const HELPER_ID: &str = "helperaaaaaaaaaaaaaaaaaaa";

pub(crate) fn container() -> String {
    "c".repeat(64)
}

pub(crate) fn task(id: &str, slot: u64, state: &str, desired: &str) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: SVC.into(),
        slot,
        node_id: NODE.into(),
        state: state.into(),
        desired_state: desired.into(),
        container_id: container(),
        image: "app:1@sha256:0123".into(),
        ..Default::default()
    }
}

/// One thing the fake helper reports (for target 0), as frames.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i64),
    Failed(&'static str),
    Done,
    TimedOut(bool),
}

/// What the helper "does" once created: its task state and log lines over time.
#[derive(Clone, Default)]
pub(crate) struct Script {
    /// (offset from creation, state, err, exit code)
    pub(crate) states: Vec<(u64, &'static str, &'static str, Option<i64>)>,
    /// (offset from creation, record); `None` closes the stream.
    pub(crate) logs: Vec<(u64, Option<Record>)>,
}

/// The helper's log lines, each with its offset from creation, as a real helper would
/// write them with the run's key.
/// The Unix second the fake's node logged an entry scripted at `at` ms.
pub(crate) fn logged_at(at: u64) -> i64 {
    1_700_000_000 + i64::try_from(at / 1000).unwrap()
}

pub(crate) fn frames(script: &Script, key: &[u8; 32], tag: &str) -> Vec<(u64, Option<Vec<u8>>)> {
    let mut w = Writer::new(key, tag, 1);
    let mut out = Vec::new();
    for (at, record) in &script.logs {
        let Some(record) = record else {
            out.push((*at, None));
            break;
        };
        let mut wire = Vec::new();
        match record {
            Record::Stdout(b) | Record::Stderr(b) => {
                let s = if matches!(record, Record::Stdout(_)) {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                w.output(0, s, b, &mut wire).unwrap();
                w.flush(0, s, &mut wire).unwrap();
            }
            Record::Exit(code) => w.exit(0, *code, &mut wire).unwrap(),
            Record::Failed(why) => w.failed(0, why, &mut wire).unwrap(),
            Record::Done => w.done(&mut wire),
            Record::TimedOut(stopped) => w.timed_out(*stopped, &mut wire),
        }
        Lines::default().feed(&wire, |line| {
            let mut l = line.to_vec();
            l.push(b'\n');
            out.push((*at, Some(l)));
        });
    }
    out
}

/// A create a session makes, which a test can hold up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Creating {
    Relay,
    Secret,
    Helper,
}

/// The relay's side of a session's attach, as a test drives it: what it sends the client
/// (frames on stdout, words on stderr, an error, or the end when dropped) and what the
/// client wrote to it.
pub(crate) struct RelayEnds {
    pub(crate) to_client:
        tokio::sync::mpsc::UnboundedSender<Result<(LogStream, Vec<u8>), ApiError>>,
    pub(crate) from_client: tokio::io::DuplexStream,
}

#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) tasks: Mutex<Vec<TaskInfo>>,
    pub(crate) global: bool,
    /// The service's current task template (see `ServiceInfo::template`).
    pub(crate) template: Mutex<String>,
    pub(crate) script: Script,
    pub(crate) create_error: Mutex<Option<ApiError>>,
    pub(crate) created: Mutex<Vec<HelperSpec>>,
    pub(crate) created_at: Mutex<Option<Instant>>,
    pub(crate) removed: Mutex<Vec<String>>,
    /// Services and secrets, in the order they were removed.
    pub(crate) removal_order: Mutex<Vec<String>>,
    /// The envelope of the last secret created.
    pub(crate) envelope: Mutex<Option<Envelope>>,
    /// Frames (by sequence number) a followed log stream skips; a plain read has them.
    pub(crate) follow_skips: Mutex<Vec<usize>>,
    /// Each log read asked for: (followed, since).
    pub(crate) log_reads: Mutex<Vec<(bool, Option<i64>)>>,
    /// From this frame on, the node's clock is a minute behind (it was set back).
    pub(crate) clock_back_from: Mutex<Option<usize>>,
    /// The engine's clock; services and secrets listed by label.
    pub(crate) engine_time: Mutex<u64>,
    pub(crate) listed_services: Mutex<Vec<ServiceInfo>>,
    pub(crate) listed_secrets: Mutex<Vec<ServiceInfo>>,
    /// Configs listed by gc; and those created (listed too, by their labels).
    pub(crate) listed_configs: Mutex<Vec<ServiceInfo>>,
    pub(crate) configs: Mutex<Vec<ServiceInfo>>,
    /// Containers listed by label (gc's relays).
    pub(crate) listed_containers: Mutex<Vec<Listed>>,
    /// What `list_networks` answers.
    pub(crate) listed_networks: Mutex<Vec<Listed>>,
    /// Networks created (name, subnet) and removed (id).
    pub(crate) networks_made: Mutex<Vec<(String, Option<String>)>>,
    pub(crate) networks_removed: Mutex<Vec<String>>,
    /// The node's state in the managers' view, when not `ready`.
    pub(crate) node_state: Mutex<Option<String>>,
    /// The node's architecture, when not x86_64.
    pub(crate) node_arch: Mutex<Option<String>>,
    /// How many more listings show the last target task as still starting.
    pub(crate) starting_lists: Mutex<u32>,
    /// Frames missing from every read of the log.
    pub(crate) lost: Mutex<Vec<usize>>,
    /// Target-task states served by successive `inspect_task` calls.
    pub(crate) inspect_states: Mutex<Vec<&'static str>>,
    /// The node of the engine the client talks to.
    pub(crate) own_node: Mutex<Option<String>>,
    /// Sessions: the relay's far ends once a client attached to it; what each create that
    /// a session makes answers (an error, or a wait first); what was removed by name.
    pub(crate) relay: Mutex<Option<RelayEnds>>,
    pub(crate) relay_error: Mutex<Option<ApiError>>,
    pub(crate) create_delay: Mutex<Option<(Creating, Duration)>>,
    pub(crate) removed_named: Mutex<Vec<String>>,
    pub(crate) removed_containers: Mutex<Vec<String>>,
    /// Secrets created (name), for tests of what a stopped create left.
    pub(crate) secrets: Mutex<Vec<String>>,
    /// How many times the log stream breaks after its first two records.
    pub(crate) log_breaks: Mutex<u32>,
}

impl Fake {
    pub(crate) fn with_task(t: TaskInfo, script: Script) -> Arc<Fake> {
        Arc::new(Fake {
            tasks: Mutex::new(vec![t]),
            script,
            ..Default::default()
        })
    }
    /// The services removed.
    pub(crate) fn removed(&self) -> Vec<String> {
        self.removed.lock().unwrap().clone()
    }
    pub(crate) fn removal_order(&self) -> Vec<String> {
        self.removal_order.lock().unwrap().clone()
    }
    /// Waits for what a create of `what` is held up by, if a test asked for it.
    async fn creating(&self, what: Creating) {
        let delay = *self.create_delay.lock().unwrap();
        if let Some((w, d)) = delay.filter(|(w, _)| *w == what) {
            let _ = w;
            tokio::time::sleep(d).await;
        }
    }
    pub(crate) fn created(&self) -> usize {
        self.created.lock().unwrap().len()
    }
}

impl SwarmApi for Arc<Fake> {
    async fn inspect_task(&self, id: &str) -> Result<TaskInfo, ApiError> {
        let mut t = self
            .tasks
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(id.into()))?;
        let mut states = self.inspect_states.lock().unwrap();
        if !states.is_empty() {
            t.state = states.remove(0).into();
        }
        Ok(t)
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskInfo>, ApiError> {
        if filter.service.as_deref() == Some(HELPER_ID) {
            let Some(at) = *self.created_at.lock().unwrap() else {
                return Ok(vec![]);
            };
            let now = at.elapsed().as_millis() as u64;
            let current = self.script.states.iter().rfind(|(t, ..)| *t <= now);
            return Ok(current
                .map(|(_, state, err, code)| TaskInfo {
                    id: "helpertask".into(),
                    service_id: HELPER_ID.into(),
                    node_id: NODE.into(),
                    state: (*state).into(),
                    desired_state: "running".into(),
                    err: (*err).into(),
                    exit_code: *code,
                    ..Default::default()
                })
                .into_iter()
                .collect());
        }
        let mut starting = self.starting_lists.lock().unwrap();
        let mut tasks = self.tasks.lock().unwrap().clone();
        if *starting > 0 {
            *starting -= 1;
            if let Some(last) = tasks.last_mut() {
                last.state = "starting".into();
            }
        }
        Ok(tasks
            .iter()
            .filter(|t| {
                filter
                    .id_prefix
                    .as_ref()
                    .is_none_or(|p| t.id.starts_with(p.as_str()))
            })
            .filter(|t| filter.service.as_ref().is_none_or(|s| &t.service_id == s))
            .filter(|t| filter.node.as_ref().is_none_or(|n| &t.node_id == n))
            .cloned()
            .collect())
    }

    async fn inspect_service(&self, name_or_id: &str) -> Result<ServiceInfo, ApiError> {
        if name_or_id == "web" || name_or_id == SVC {
            Ok(ServiceInfo {
                id: SVC.into(),
                name: "web".into(),
                global: self.global,
                template: self.template.lock().unwrap().clone(),
                ..Default::default()
            })
        } else {
            Err(ApiError::NotFound(name_or_id.into()))
        }
    }

    async fn list_services(&self, _label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        Ok(self.listed_services.lock().unwrap().clone())
    }

    async fn inspect_node(&self, name_or_id: &str) -> Result<NodeInfo, ApiError> {
        if name_or_id == "node2" || name_or_id == NODE {
            Ok(NodeInfo {
                id: NODE.into(),
                hostname: "node2".into(),
                os: "linux".into(),
                arch: self
                    .node_arch
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| "x86_64".into()),
                state: self
                    .node_state
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| "ready".into()),
                message: String::new(),
            })
        } else {
            Err(ApiError::NotFound(name_or_id.into()))
        }
    }

    async fn inspect_image(&self, _name: &str) -> Result<Option<ImageInfo>, ApiError> {
        Ok(Some(ImageInfo {
            id: "sha256:feed".into(),
            repo_digests: vec![],
        }))
    }

    async fn create_service(&self, spec: &HelperSpec) -> Result<String, ApiError> {
        self.creating(Creating::Helper).await;
        if let Some(e) = self.create_error.lock().unwrap().take() {
            return Err(e);
        }
        self.created.lock().unwrap().push(spec.clone());
        *self.created_at.lock().unwrap() = Some(Instant::now());
        Ok(HELPER_ID.into())
    }

    async fn remove_service(&self, id: &str) -> Result<(), ApiError> {
        self.removed.lock().unwrap().push(id.into());
        self.removal_order.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn create_secret(
        &self,
        name: &str,
        _labels: &[(String, String)],
        data: &[u8],
    ) -> Result<String, ApiError> {
        self.creating(Creating::Secret).await;
        self.secrets.lock().unwrap().push(name.to_owned());
        let envelope = Envelope::decode(data, vec![]).expect("an envelope");
        *self.envelope.lock().unwrap() = Some(envelope);
        Ok(format!("secret-{name}"))
    }

    async fn remove_secret(&self, id: &str) -> Result<(), ApiError> {
        self.removal_order.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn list_secrets(&self, _label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        Ok(self.listed_secrets.lock().unwrap().clone())
    }

    async fn create_config(
        &self,
        name: &str,
        labels: &[(String, String)],
        data: &[u8],
    ) -> Result<ServiceInfo, ApiError> {
        let mut configs = self.configs.lock().unwrap();
        // As the engine: a name that exists is found, with its own data, not made twice.
        if let Some(c) = configs.iter().find(|c| c.name == name) {
            return Ok(c.clone());
        }
        let c = ServiceInfo {
            id: format!("config-{name}"),
            name: name.to_owned(),
            labels: labels.to_vec(),
            data: data.to_vec(),
            ..Default::default()
        };
        configs.push(c.clone());
        Ok(c)
    }

    async fn remove_config(&self, id: &str) -> Result<(), ApiError> {
        self.removal_order.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn list_configs(&self, label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (label, None),
        };
        let created = self.configs.lock().unwrap().clone();
        Ok(self
            .listed_configs
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .chain(created)
            .filter(|c| {
                c.labels
                    .iter()
                    .any(|(k, v)| k == key && value.is_none_or(|want| want == v))
            })
            .collect())
    }

    async fn own_node_id(&self) -> Result<Option<String>, ApiError> {
        Ok(self.own_node.lock().unwrap().clone())
    }

    async fn engine_time(&self) -> Result<u64, ApiError> {
        Ok(*self.engine_time.lock().unwrap())
    }

    async fn import_image(&self, _image: ImageImport) -> Result<(), ApiError> {
        Ok(())
    }

    async fn list_images(&self, _label: &str) -> Result<Vec<Listed>, ApiError> {
        Ok(Vec::new())
    }

    async fn remove_image(&self, _id: &str) -> Result<(), ApiError> {
        Ok(())
    }

    async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkInfo, ApiError> {
        let id = match name_or_id.strip_prefix("net-") {
            Some(_) => name_or_id.to_owned(),
            None => format!("net-{name_or_id}"),
        };
        Ok(NetworkInfo {
            id,
            driver: "overlay".into(),
            attachable: true,
            labels: Vec::new(),
        })
    }

    async fn create_network(
        &self,
        name: &str,
        _labels: &[(String, String)],
        subnet: Option<&str>,
    ) -> Result<String, ApiError> {
        self.networks_made
            .lock()
            .unwrap()
            .push((name.to_owned(), subnet.map(str::to_owned)));
        Ok(format!("net-{name}"))
    }

    async fn list_networks(&self, _label: &str) -> Result<Vec<Listed>, ApiError> {
        Ok(self.listed_networks.lock().unwrap().clone())
    }

    async fn remove_network(&self, id: &str) -> Result<(), ApiError> {
        self.networks_removed.lock().unwrap().push(id.to_owned());
        self.removal_order.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn create_relay(&self, spec: &RelaySpec) -> Result<String, ApiError> {
        self.creating(Creating::Relay).await;
        if let Some(e) = self.relay_error.lock().unwrap().take() {
            return Err(e);
        }
        Ok(format!("relay-{}", spec.name))
    }

    async fn attach_container(&self, _id: &str) -> Result<Attach, ApiError> {
        let (to_client, mut output) = tokio::sync::mpsc::unbounded_channel();
        let (input, from_client) = tokio::io::duplex(1 << 20);
        *self.relay.lock().unwrap() = Some(RelayEnds {
            to_client,
            from_client,
        });
        Ok(Attach {
            output: futures_util::stream::poll_fn(move |cx| output.poll_recv(cx)).boxed(),
            input: Box::pin(input),
        })
    }

    async fn start_container(&self, _id: &str) -> Result<(), ApiError> {
        Ok(())
    }

    async fn container_address(
        &self,
        _id: &str,
        _network_id: &str,
    ) -> Result<Option<String>, ApiError> {
        Ok(Some("10.0.9.2".into()))
    }

    async fn remove_container(&self, id: &str) -> Result<(), ApiError> {
        self.removed_containers.lock().unwrap().push(id.into());
        self.removal_order.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn list_containers(&self, _label: &str) -> Result<Vec<Listed>, ApiError> {
        Ok(self.listed_containers.lock().unwrap().clone())
    }

    async fn remove_named(&self, what: Named<'_>) -> Result<(), ApiError> {
        let name = match what {
            Named::Service(n) | Named::Secret(n) | Named::Container(n) | Named::Network(n) => n,
        };
        self.removed_named.lock().unwrap().push(name.to_owned());
        Ok(())
    }

    async fn stop_exec(
        &self,
        _stopper: &swarm_exec_node::stop::Stopper,
        _exec_id: &str,
        _container: &str,
        _mark: &str,
    ) -> Result<(), String> {
        Ok(())
    }

    async fn create_exec(&self, _exec: &ExecOptions) -> Result<String, ApiError> {
        Err(ApiError::Other("no execs in the fake".into()))
    }

    async fn start_exec(&self, _id: &str, _tty: bool) -> Result<Option<Attach>, ApiError> {
        Err(ApiError::Other("no execs in the fake".into()))
    }

    async fn resize_exec(&self, _id: &str, _rows: u16, _cols: u16) -> Result<(), ApiError> {
        Ok(())
    }

    async fn inspect_exec(&self, _id: &str) -> Result<ExecState, ApiError> {
        Err(ApiError::Other("no execs in the fake".into()))
    }

    async fn archive_mode(&self, _container: &str, _path: &str) -> Result<Option<u32>, ApiError> {
        Ok(None)
    }

    fn download_archive(
        &self,
        _container: &str,
        _path: &str,
    ) -> BoxStream<'static, Result<Vec<u8>, ApiError>> {
        futures_util::stream::empty().boxed()
    }

    async fn upload_archive(
        &self,
        _container: &str,
        _dir: &str,
        _body: BoxStream<'static, Vec<u8>>,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    fn service_logs(
        &self,
        _id: &str,
        follow: bool,
        since: Option<i64>,
    ) -> BoxStream<'static, Result<LogPiece, ApiError>> {
        self.log_reads.lock().unwrap().push((follow, since));
        let spec = self.created.lock().unwrap().last().cloned().unwrap();
        let key = self.envelope.lock().unwrap().as_ref().unwrap().key;
        let created = self.created_at.lock().unwrap().unwrap();
        let skips = if follow {
            self.follow_skips.lock().unwrap().clone()
        } else {
            Vec::new()
        };
        let lost = self.lost.lock().unwrap().clone();
        let back_from = *self.clock_back_from.lock().unwrap();
        // (scripted at, line or the end, when the node logged it)
        let mut logs: Vec<(u64, Option<Vec<u8>>, i64)> = frames(&self.script, &key, &spec.tag)
            .into_iter()
            .enumerate()
            .filter(|(seq, _)| !skips.contains(seq) && !lost.contains(seq))
            .map(|(seq, (at, l))| {
                let back = back_from.is_some_and(|from| seq >= from);
                (at, l, logged_at(at) - if back { 60 } else { 0 })
            })
            .filter(|(.., logged)| since.is_none_or(|s| *logged >= s))
            .collect();
        let piece = |(l, logged): (Vec<u8>, i64)| LogPiece {
            stream: LogStream::Stdout,
            bytes: l,
            logged: Some(logged),
        };
        if !follow {
            // What is retained now, at once; then the stream ends.
            let now = created.elapsed().as_millis() as u64;
            logs.retain(|(at, ..)| *at <= now);
            return futures_util::stream::iter(
                logs.into_iter()
                    .map_while(|(_, l, logged)| Some((l?, logged)))
                    .map(move |x| Ok(piece(x))),
            )
            .boxed();
        }
        let breaks = {
            let mut b = self.log_breaks.lock().unwrap();
            let now = *b > 0;
            *b = b.saturating_sub(1);
            now
        };
        if breaks {
            logs.truncate(2);
        }
        let broken = futures_util::stream::iter(
            breaks.then(|| Err(ApiError::Connect("connection reset".into()))),
        );
        futures_util::stream::iter(logs)
            .then(move |(at, line, logged)| async move {
                tokio::time::sleep_until(created + Duration::from_millis(at)).await;
                line.map(|l| (l, logged))
            })
            .take_while(|l| std::future::ready(l.is_some()))
            .map(move |l| Ok(piece(l.unwrap())))
            .chain(broken)
            // After the script, the stream stays open like a followed log does.
            .chain(futures_util::stream::pending())
            .boxed()
    }
}

#[derive(Default)]
pub(crate) struct Sink {
    pub(crate) out: Vec<u8>,
    pub(crate) err: Vec<u8>,
    pub(crate) warnings: Vec<String>,
}

impl OutputSink for Sink {
    fn stdout(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    fn stderr(&mut self, b: &[u8]) {
        self.err.extend_from_slice(b);
    }
    fn warn(&mut self, m: &str) {
        self.warnings.push(m.into());
    }
}
