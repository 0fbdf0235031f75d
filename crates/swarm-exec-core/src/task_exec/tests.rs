//! Error paths and timing of [`task_exec`] against a fake [`SwarmApi`], on paused time.
//! The real behaviour is tested end to end against a real swarm (crates/swarm-exec/tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::*;
use crate::api::{ImageInfo, LogStream, NodeInfo, ServiceInfo, TaskFilter, TaskInfo};
use crate::frame::Encoder;
use crate::frame::Record;
use crate::helper::HelperSpec;
use crate::run::HELPER_START_WAIT;

const NODE: &str = "node2aaaaaaaaaaaaaaaaaaaa";
const TASK: &str = "task1aaaaaaaaaaaaaaaaaaaa";
const SVC: &str = "svc1aaaaaaaaaaaaaaaaaaaaa";
const HELPER_ID: &str = "helperaaaaaaaaaaaaaaaaaaa";

fn container() -> String {
    "c".repeat(64)
}

fn task(id: &str, slot: u64, state: &str, desired: &str) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: SVC.into(),
        slot,
        node_id: NODE.into(),
        state: state.into(),
        desired_state: desired.into(),
        container_id: container(),
        ..Default::default()
    }
}

/// What the helper "does" once created: its task state and log lines over time.
#[derive(Clone, Default)]
struct Script {
    /// (offset from creation, state, err, exit code)
    states: Vec<(u64, &'static str, &'static str, Option<i64>)>,
    /// (offset from creation, record); `None` closes the stream.
    logs: Vec<(u64, Option<Record>)>,
}

#[derive(Default)]
struct Fake {
    tasks: Mutex<Vec<TaskInfo>>,
    global: bool,
    script: Script,
    create_error: Mutex<Option<ApiError>>,
    created: Mutex<Vec<HelperSpec>>,
    created_at: Mutex<Option<Instant>>,
    removed: Mutex<Vec<String>>,
    /// Target-task states served by successive `inspect_task` calls.
    inspect_states: Mutex<Vec<&'static str>>,
    /// How many times the log stream breaks after its first two records.
    log_breaks: Mutex<u32>,
}

impl Fake {
    fn with_task(t: TaskInfo, script: Script) -> Arc<Fake> {
        Arc::new(Fake {
            tasks: Mutex::new(vec![t]),
            script,
            ..Default::default()
        })
    }
    fn removed(&self) -> Vec<String> {
        self.removed.lock().unwrap().clone()
    }
    fn created(&self) -> usize {
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
        Ok(self
            .tasks
            .lock()
            .unwrap()
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
                labels: vec![],
            })
        } else {
            Err(ApiError::NotFound(name_or_id.into()))
        }
    }

    async fn list_services(&self, _label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        Ok(vec![])
    }

    async fn inspect_node(&self, name_or_id: &str) -> Result<NodeInfo, ApiError> {
        if name_or_id == "node2" || name_or_id == NODE {
            Ok(NodeInfo {
                id: NODE.into(),
                hostname: "node2".into(),
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
        if let Some(e) = self.create_error.lock().unwrap().take() {
            return Err(e);
        }
        self.created.lock().unwrap().push(spec.clone());
        *self.created_at.lock().unwrap() = Some(Instant::now());
        Ok(HELPER_ID.into())
    }

    async fn remove_service(&self, id: &str) -> Result<(), ApiError> {
        self.removed.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn create_secret(
        &self,
        name: &str,
        _labels: &[(String, String)],
        _data: &[u8],
    ) -> Result<String, ApiError> {
        Ok(format!("secret-{name}"))
    }

    async fn remove_secret(&self, id: &str) -> Result<(), ApiError> {
        self.removed.lock().unwrap().push(id.into());
        Ok(())
    }

    async fn list_secrets(&self, _label: &str) -> Result<Vec<ServiceInfo>, ApiError> {
        Ok(vec![])
    }

    fn service_logs(
        &self,
        _id: &str,
    ) -> BoxStream<'static, Result<(LogStream, Vec<u8>), ApiError>> {
        let spec = self.created.lock().unwrap().last().cloned().unwrap();
        let nonce_at = spec.args.iter().position(|a| a == "--nonce").unwrap() + 1;
        let enc = Encoder::new(&spec.args[nonce_at]);
        let start = Instant::now();
        let mut logs = self.script.logs.clone();
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
            .then(move |(at, record)| async move {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                record
            })
            .take_while(|r| std::future::ready(r.is_some()))
            .map(move |r| {
                let mut wire = Vec::new();
                enc.encode(&r.unwrap(), &mut wire);
                Ok((LogStream::Stdout, wire))
            })
            .chain(broken)
            // After the script, the stream stays open like a followed log does.
            .chain(futures_util::stream::pending())
            .boxed()
    }
}

#[derive(Default)]
struct Sink {
    out: Vec<u8>,
    err: Vec<u8>,
    warnings: Vec<String>,
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

fn request(target: &str, timeout: u64) -> ExecRequest {
    ExecRequest {
        target: TaskRef::parse(target).unwrap(),
        run: RunOptions {
            command: vec!["sh".into(), "-c".into(), "exit 7".into()],
            env: vec![],
            workdir: None,
            user: None,
            privileged: false,
            timeout: Duration::from_secs(timeout),
            image: "swarm-exec:test".into(),
            stdin: None,
        },
    }
}

fn never() -> impl Future<Output = Interrupt> {
    std::future::pending()
}

async fn run(fake: &Arc<Fake>, req: &ExecRequest) -> (Result<Outcome, ExecError>, Sink) {
    let mut sink = Sink::default();
    let r = task_exec(fake, req, &mut sink, never()).await;
    (r, sink)
}

fn running_then_exit() -> Script {
    Script {
        states: vec![(0, "pending", "", None), (300, "running", "", None)],
        logs: vec![
            (400, Some(Record::Stdout(0, b"out\xff".to_vec()))),
            (410, Some(Record::Stderr(0, b"err".to_vec()))),
            (420, Some(Record::Exit(0, 7))),
            (421, Some(Record::Done)),
        ],
    }
}

#[tokio::test(start_paused = true)]
async fn exit_code_and_output_come_from_the_records_and_the_helper_is_removed() {
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), running_then_exit());
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(sink.out, b"out\xff");
    assert_eq!(sink.err, b"err");
    assert_eq!(fake.removed(), vec![HELPER_ID]);
    let spec = fake.created.lock().unwrap()[0].clone();
    // The manager's local image is pinned by ID so the node does not consult a registry.
    assert_eq!(spec.image, "sha256:feed");
    assert_eq!(spec.node_id, NODE);
}

#[tokio::test(start_paused = true)]
async fn a_broken_log_stream_is_read_again_without_repeating_output() {
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), running_then_exit());
    *fake.log_breaks.lock().unwrap() = 3;
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(sink.out, b"out\xff");
    assert_eq!(sink.err, b"err");
    assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn stdin_travels_in_a_secret_that_is_removed_after_the_helper() {
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), running_then_exit());
    let mut req = request("web.1", 300);
    req.run.stdin = Some(b"input".to_vec());
    let (r, _) = run(&fake, &req).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    let spec = fake.created.lock().unwrap()[0].clone();
    let (id, name) = spec.stdin_secret.clone().expect("a secret mounted");
    assert!(name.starts_with("swarm-exec-stdin-"));
    assert!(spec
        .args
        .windows(2)
        .any(|w| w[0] == "--stdin" && w[1] == "/run/secrets/stdin"));
    // The helper goes first: a secret still mounted cannot be removed.
    assert_eq!(fake.removed(), vec![HELPER_ID.to_owned(), id]);
}

#[tokio::test(start_paused = true)]
async fn too_much_stdin_is_refused_before_anything_is_created() {
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), running_then_exit());
    let mut req = request("web.1", 300);
    req.run.stdin = Some(vec![0; crate::helper::MAX_STDIN + 1]);
    let (r, _) = run(&fake, &req).await;
    assert!(matches!(
        r,
        Err(ExecError::Invalid(InvalidRun::StdinTooLarge(_)))
    ));
    assert_eq!(fake.created(), 0);
    assert!(fake.removed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_removes_the_helper_at_the_deadline() {
    let script = Script {
        states: vec![(0, "running", "", None)],
        logs: vec![],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let start = Instant::now();
    let (r, _) = run(&fake, &request(TASK, 5)).await;
    assert_eq!(r.unwrap(), Outcome::TimedOut);
    assert_eq!(start.elapsed().as_secs(), 5);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn interrupt_removes_the_helper() {
    let script = Script {
        states: vec![(0, "running", "", None)],
        logs: vec![],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let mut sink = Sink::default();
    let cancel = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Interrupt::Sigterm
    };
    let r = task_exec(&fake, &request("web.1", 300), &mut sink, cancel).await;
    assert_eq!(r.unwrap(), Outcome::Interrupted(Interrupt::Sigterm));
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn rejected_helper_names_node_and_reason() {
    let script = Script {
        states: vec![
            (0, "pending", "", None),
            (200, "rejected", "No such image: sha256:feed", None),
        ],
        logs: vec![],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("on node node2") && msg.contains("rejected"),
        "{msg}"
    );
    assert!(msg.contains("No such image"), "{msg}");
    assert!(msg.contains("web.1") && msg.contains(TASK), "{msg}");
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn helper_that_is_never_scheduled_fails_after_a_bounded_wait() {
    let script = Script {
        states: vec![(0, "pending", "no suitable node", None)],
        logs: vec![],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let start = Instant::now();
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(matches!(err, ExecError::HelperNotStarted { .. }), "{err}");
    assert!(err.to_string().contains("no suitable node"));
    let waited = start.elapsed();
    assert!(waited >= HELPER_START_WAIT && waited < HELPER_START_WAIT + Duration::from_secs(1));
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn failure_record_from_the_helper_is_an_error() {
    let script = Script {
        states: vec![(0, "running", "", None)],
        logs: vec![(
            50,
            Some(Record::Failed(
                0,
                "cannot exec in container cccccccccccc: is not running".into(),
            )),
        )],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("is not running") && msg.contains("node2"),
        "{msg}"
    );
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn helper_ending_without_its_record_falls_back_to_the_task_state() {
    let script = Script {
        states: vec![
            (0, "running", "", None),
            (100, "failed", "task: non-zero exit (3)", Some(3)),
        ],
        logs: vec![],
    };
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), script);
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(3));
    assert_eq!(sink.warnings.len(), 1, "{:?}", sink.warnings);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn create_failure_is_reported_and_nothing_is_left() {
    let fake = Fake::with_task(task(TASK, 1, "running", "running"), Script::default());
    *fake.create_error.lock().unwrap() = Some(ApiError::Server {
        status: 400,
        message: "invalid spec".into(),
    });
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(matches!(err, ExecError::CreateHelper { .. }), "{err}");
    // Cleanup by name still runs, in case the create happened despite the error.
    assert_eq!(fake.removed().len(), 1);
    assert!(fake.removed()[0].starts_with("swarm-exec-"));
}

#[tokio::test(start_paused = true)]
async fn unknown_and_unfit_targets_fail_before_anything_is_created() {
    let cases: Vec<(TaskInfo, bool, &str, &str)> = vec![
        (
            task(TASK, 1, "running", "running"),
            false,
            "zzz",
            "no task matches zzz",
        ),
        (
            task(TASK, 1, "running", "running"),
            false,
            "web.9",
            "no task in slot 9 (running slots: 1)",
        ),
        (
            task(TASK, 1, "running", "running"),
            false,
            "db.1",
            "no service named db",
        ),
        (
            task(TASK, 1, "running", "running"),
            false,
            "web",
            "web is a service: name one of its tasks as web.SLOT",
        ),
        (
            task(TASK, 1, "failed", "shutdown"),
            false,
            "web.1",
            "being shut down",
        ),
        (
            task(TASK, 1, "complete", "running"),
            false,
            "web.1",
            "on node node2 is complete",
        ),
        (
            task(TASK, 1, "running", "running"),
            true,
            "web.1",
            "is global",
        ),
        (
            task(TASK, 1, "running", "running"),
            false,
            "web@node9",
            "no node named node9",
        ),
    ];
    for (t, global, target, expected) in cases {
        let fake = Arc::new(Fake {
            tasks: Mutex::new(vec![t]),
            global,
            ..Default::default()
        });
        let (r, _) = run(&fake, &request(target, 300)).await;
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains(expected), "{target}: {msg}");
        assert_eq!(fake.created(), 0, "{target}");
        assert!(fake.removed().is_empty(), "{target}");
    }
}

#[tokio::test(start_paused = true)]
async fn ambiguous_prefix_names_the_candidates() {
    let fake = Arc::new(Fake {
        tasks: Mutex::new(vec![
            task("abc1aaaaaaaaaaaaaaaaaaaaa", 1, "running", "running"),
            task("abc2aaaaaaaaaaaaaaaaaaaaa", 2, "running", "running"),
        ]),
        ..Default::default()
    });
    let (r, _) = run(&fake, &request("abc", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("ambiguous"), "{msg}");
    assert!(msg.contains("abc1aaaaaaaaaaaaaaaaaaaaa") && msg.contains("abc2aaaaaaaaaaaaaaaaaaaaa"));
    assert_eq!(fake.created(), 0);
}

#[tokio::test(start_paused = true)]
async fn starting_target_is_waited_for() {
    let fake = Fake::with_task(task(TASK, 1, "preparing", "running"), running_then_exit());
    *fake.inspect_states.lock().unwrap() = vec!["preparing", "starting", "running"];
    let (r, _) = run(&fake, &request("web@node2", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
}

#[tokio::test(start_paused = true)]
async fn target_that_never_starts_is_an_error_not_a_hang() {
    let fake = Fake::with_task(task(TASK, 1, "preparing", "running"), Script::default());
    let start = Instant::now();
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("did not start"), "{msg}");
    assert!(start.elapsed() >= TARGET_START_WAIT);
    assert_eq!(fake.created(), 0);
}
