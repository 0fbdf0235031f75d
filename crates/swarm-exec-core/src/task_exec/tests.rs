//! Error paths and timing of [`task_exec`] against the fake [`SwarmApi`], on paused time.
//! The real behaviour is tested end to end against a real swarm (crates/swarm-exec/tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::engine::fake::*;
use crate::engine::TaskInfo;
use crate::model::node_program::NodeProgram;
use crate::model::options::InvalidRun;
use crate::run::{RunError, HELPER_START_WAIT, NODE_CHECK, REPORT_GRACE};

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
            helper: HelperSource::Image("swarm-exec:test".into()),
            stdin: None,
            debug: None,
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

/// The target task web.1 on node2, running.
fn running_task() -> TaskInfo {
    task(TASK, 1, "running", "running")
}

/// The fake with the running target task, whose helper follows `script`.
fn fake_with(script: Script) -> Arc<Fake> {
    Fake::with_task(running_task(), script)
}

/// A helper that runs from the start and writes `logs`.
fn running_with(logs: Vec<(u64, Option<Record>)>) -> Script {
    Script {
        states: vec![(0, "running", "", None)],
        logs,
    }
}

/// A helper that goes through `states` and writes nothing.
fn silent(states: Vec<(u64, &'static str, &'static str, Option<i64>)>) -> Script {
    Script {
        states,
        logs: vec![],
    }
}

/// Whether the run warned about `what`.
fn warned(sink: &Sink, what: &str) -> bool {
    sink.warnings.iter().any(|w| w.contains(what))
}

/// Asserts that `msg` mentions every one of `parts`.
#[track_caller]
fn assert_mentions(msg: &str, parts: &[&str]) {
    assert!(parts.iter().all(|p| msg.contains(p)), "{msg}");
}

fn running_then_exit() -> Script {
    Script {
        states: vec![(0, "pending", "", None), (300, "running", "", None)],
        logs: vec![
            (400, Some(Record::Stdout(b"out\xff".to_vec()))),
            (410, Some(Record::Stderr(b"err".to_vec()))),
            (420, Some(Record::Exit(7))),
            (421, Some(Record::Done)),
        ],
    }
}

/// Asserts the outcome and output of a run of [`running_then_exit`].
#[track_caller]
fn assert_exited_7_with_its_output(r: Result<Outcome, ExecError>, sink: &Sink) {
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(sink.out, b"out\xff");
    assert_eq!(sink.err, b"err");
}

#[tokio::test(start_paused = true)]
async fn exit_code_and_output_come_from_the_records_and_the_helper_is_removed() {
    let fake = fake_with(running_then_exit());
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_exited_7_with_its_output(r, &sink);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
    let spec = fake.created.lock().unwrap()[0].clone();
    // The manager's local image is pinned by ID so the node does not consult a registry.
    assert_eq!(spec.image, "sha256:feed");
    assert_eq!(spec.node_id, NODE);
}

#[tokio::test(start_paused = true)]
async fn a_broken_log_stream_is_read_again_without_repeating_output() {
    let fake = fake_with(running_then_exit());
    *fake.log_breaks.lock().unwrap() = 3;
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_exited_7_with_its_output(r, &sink);
    assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn stdin_travels_in_a_secret_that_is_removed_after_the_helper() {
    let fake = fake_with(running_then_exit());
    let mut req = request("web.1", 300);
    req.run.stdin = Some(b"input".to_vec());
    let (r, _) = run(&fake, &req).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    let spec = fake.created.lock().unwrap()[0].clone();
    let (id, name) = spec.envelope_secret.clone();
    assert!(name.starts_with("swarm-exec-run-"));
    let envelope = fake.envelope.lock().unwrap().clone().unwrap();
    assert_eq!(envelope.stdin.as_deref(), Some(&b"input"[..]));
    // The helper goes first: a secret still mounted cannot be removed.
    assert_eq!(fake.removal_order(), vec![HELPER_ID.to_owned(), id]);
}

#[tokio::test(start_paused = true)]
async fn the_command_and_its_environment_travel_in_the_envelope_not_the_spec() {
    let fake = fake_with(running_then_exit());
    let mut req = request("web.1", 300);
    req.run.env = vec!["PASSWORD=hunter2".into()];
    req.run.user = Some("postgres".into());
    let (r, _) = run(&fake, &req).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    let spec = fake.created.lock().unwrap()[0].clone();
    let visible = format!("{:?} {:?}", spec.args, spec.labels);
    for secret in ["exit 7", "hunter2", "postgres"] {
        assert!(!visible.contains(secret), "{secret} in {visible}");
    }
    let envelope = fake.envelope.lock().unwrap().clone().unwrap();
    assert_eq!(envelope.exec.command, req.run.command);
    assert_eq!(envelope.exec.env, req.run.env);
    assert!(envelope.stdin.is_none());
    // Every run's envelope is removed, with or without stdin.
    assert_eq!(
        fake.removal_order(),
        vec![
            HELPER_ID.to_owned(),
            format!("secret-{}", spec.envelope_secret.1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn too_much_stdin_is_refused_before_anything_is_created() {
    let fake = fake_with(running_then_exit());
    let mut req = request("web.1", 300);
    req.run.stdin = Some(vec![0; crate::model::options::MAX_STDIN + 1]);
    let (r, _) = run(&fake, &req).await;
    assert!(matches!(
        r,
        Err(ExecError::Invalid(InvalidRun::StdinTooLarge(..)))
    ));
    assert_eq!(fake.created(), 0);
    assert!(fake.removed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_removes_the_helper_at_the_deadline() {
    let fake = fake_with(running_with(vec![]));
    let start = Instant::now();
    let (r, sink) = run(&fake, &request(TASK, 5)).await;
    assert_eq!(r.unwrap(), Outcome::TimedOut);
    // No report from the helper: the deadline is applied here, after the helper's grace.
    assert_eq!(start.elapsed(), Duration::from_secs(5) + REPORT_GRACE);
    assert!(warned(&sink, "no report"), "{:?}", sink.warnings);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn the_helpers_timeout_report_ends_the_run_and_says_if_the_command_stopped() {
    for stopped in [true, false] {
        let fake = fake_with(running_with(vec![(5_200, Some(Record::TimedOut(stopped)))]));
        let start = Instant::now();
        let (r, sink) = run(&fake, &request(TASK, 5)).await;
        assert_eq!(r.unwrap(), Outcome::TimedOut);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(6), "{took:?}");
        let warned = warned(&sink, "could not be seen to end");
        assert_eq!(warned, !stopped, "{:?}", sink.warnings);
        assert_eq!(fake.removed(), vec![HELPER_ID]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_helper_not_started_by_the_deadline_times_out_at_it() {
    let fake = fake_with(silent(vec![(0, "pending", "no suitable node", None)]));
    let start = Instant::now();
    let (r, _) = run(&fake, &request(TASK, 5)).await;
    assert_eq!(r.unwrap(), Outcome::TimedOut);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn an_exit_that_arrives_at_the_deadline_wins_over_it() {
    let script = running_with(vec![
        (4_990, Some(Record::Stdout(b"made it".to_vec()))),
        (5_100, Some(Record::Exit(0))),
        (5_100, Some(Record::Done)),
    ]);
    let fake = fake_with(script);
    let (r, sink) = run(&fake, &request(TASK, 5)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    assert_eq!(sink.out, b"made it");
}

#[tokio::test(start_paused = true)]
async fn interrupt_removes_the_helper() {
    let fake = fake_with(running_with(vec![]));
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
    let script = silent(vec![
        (0, "pending", "", None),
        (200, "rejected", "No such image: sha256:feed", None),
    ]);
    let fake = fake_with(script);
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert_mentions(&msg, &["on node node2", "rejected"]);
    assert_mentions(&msg, &["No such image"]);
    assert_mentions(&msg, &["web.1", TASK]);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn helper_that_is_never_scheduled_fails_after_a_bounded_wait() {
    let fake = fake_with(silent(vec![(0, "pending", "no suitable node", None)]));
    let start = Instant::now();
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, ExecError::Run(RunError::HelperNotStarted { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("no suitable node"));
    let waited = start.elapsed();
    assert!(waited >= HELPER_START_WAIT && waited < HELPER_START_WAIT + Duration::from_secs(1));
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn failure_record_from_the_helper_is_an_error() {
    let failed = Record::Failed("cannot exec in container cccccccccccc: is not running");
    let fake = fake_with(running_with(vec![(50, Some(failed))]));
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let msg = r.unwrap_err().to_string();
    assert_mentions(&msg, &["is not running", "node2"]);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn helper_ending_without_its_last_frame_fails_and_never_passes_on_its_task_code() {
    let script = silent(vec![
        (0, "running", "", None),
        (100, "failed", "task: non-zero exit (127)", Some(127)),
    ]);
    let fake = fake_with(script);
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, ExecError::Run(RunError::HelperFailed { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert_mentions(&msg, &["state failed", "exit code 127"]);
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

fn bulk_then_exit(chunks: usize) -> Script {
    let mut logs: Vec<(u64, Option<Record>)> = (0..chunks)
        .map(|i| {
            (
                400 + i as u64,
                Some(Record::Stdout(format!("chunk {i}\n").into_bytes())),
            )
        })
        .collect();
    logs.push((500, Some(Record::Exit(0))));
    logs.push((500, Some(Record::Done)));
    Script {
        states: vec![(0, "running", "", None), (600, "complete", "", Some(0))],
        logs,
    }
}

fn bulk_text(chunks: usize) -> Vec<u8> {
    (0..chunks)
        .flat_map(|i| format!("chunk {i}\n").into_bytes())
        .collect()
}

/// Runs [`bulk_then_exit`] of `chunks` while the followed log stream skips the frames
/// `skips`, and asserts that the run exits 0 with every chunk, once and in order.
async fn assert_bulk_arrives_whole_despite(skips: Vec<usize>, chunks: usize) -> Arc<Fake> {
    let fake = fake_with(bulk_then_exit(chunks));
    *fake.follow_skips.lock().unwrap() = skips;
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    assert_eq!(sink.out, bulk_text(chunks));
    fake
}

#[tokio::test(start_paused = true)]
async fn frames_a_followed_stream_skips_are_read_again_exactly_once() {
    let fake = assert_bulk_arrives_whole_despite(vec![5, 6, 13], 20).await;
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_goes_quiet_after_the_helper_ended_is_read_again_whole() {
    // The followed stream never brings the last frames (a slow reader, a stalled log
    // path): they are in the retained log, and the exit code waits for them.
    assert_bulk_arrives_whole_despite(vec![8, 9, 10, 11], 10).await;
}

/// Chunks a second apart, then the exit: a follow that stops after `followed` frames
/// (Docker 20.10 stops following a helper's rotated log) is read again from the second of
/// the last frame it brought, not from the log's start; where that part lacks the
/// rest (a node clock set back), the whole log is read.
async fn stalled_follow(followed: usize, clock_back_from: Option<usize>) -> Arc<Fake> {
    let mut logs: Vec<(u64, Option<Record>)> = (0..6)
        .map(|i| {
            (
                1000 * i,
                Some(Record::Stdout(format!("chunk {i}\n").into_bytes())),
            )
        })
        .collect();
    logs.push((6000, Some(Record::Exit(0))));
    logs.push((6000, Some(Record::Done)));
    let fake = fake_with(Script {
        states: vec![(0, "running", "", None), (7000, "complete", "", Some(0))],
        logs,
    });
    *fake.follow_skips.lock().unwrap() = (followed..8).collect();
    *fake.clock_back_from.lock().unwrap() = clock_back_from;
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    assert_eq!(sink.out, bulk_text(6));
    fake
}

#[tokio::test(start_paused = true)]
async fn a_stalled_follow_is_read_again_from_its_last_frame_not_from_the_start() {
    let fake = stalled_follow(4, None).await;
    // The fourth frame (chunk 3) was logged at second 3.
    let from = crate::engine::fake::logged_at(3000);
    assert_eq!(
        *fake.log_reads.lock().unwrap(),
        [(true, None), (false, Some(from))]
    );
    let fake = stalled_follow(4, Some(4)).await;
    assert_eq!(
        *fake.log_reads.lock().unwrap(),
        [(true, None), (false, Some(from)), (false, None)]
    );
}

#[tokio::test(start_paused = true)]
async fn frames_lost_for_good_are_reported_with_what_is_missing_never_as_success() {
    for lost in [vec![3], vec![10], vec![11]] {
        let fake = fake_with(bulk_then_exit(10));
        *fake.lost.lock().unwrap() = lost.clone();
        let (r, sink) = run(&fake, &request("web.1", 300)).await;
        let err = r.unwrap_err();
        assert!(
            matches!(err, ExecError::Run(RunError::OutputIncomplete { .. })),
            "{lost:?}: {err}"
        );
        let msg = err.to_string();
        assert_mentions(&msg, &["not reported", "did not arrive"]);
        // What arrived before the gap is written, nothing after it.
        assert!(bulk_text(10).starts_with(&sink.out), "{lost:?}");
        assert_eq!(fake.removed(), vec![HELPER_ID]);
    }
}

#[tokio::test(start_paused = true)]
async fn create_failure_is_reported_and_nothing_is_left() {
    let fake = fake_with(Script::default());
    *fake.create_error.lock().unwrap() = Some(ApiError::Server {
        status: 400,
        message: "invalid spec".into(),
    });
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, ExecError::Run(RunError::CreateHelper { .. })),
        "{err}"
    );
    // Cleanup by name still runs, in case the create happened despite the error.
    assert_eq!(fake.removed().len(), 1);
    assert!(fake.removed()[0].starts_with("swarm-exec-"));
}

#[tokio::test(start_paused = true)]
async fn unknown_and_unfit_targets_fail_before_anything_is_created() {
    // A running target named as `target`, and a target web.1 in another state.
    let running = |target, expected| (running_task(), false, target, expected);
    let in_state =
        |state, desired, expected| (task(TASK, 1, state, desired), false, "web.1", expected);
    let cases: Vec<(TaskInfo, bool, &str, &str)> = vec![
        running("zzz", "no task matches zzz"),
        running("web.9", "no task in slot 9 (running slots: 1)"),
        running("db.1", "no service named db"),
        running("Db", "no service named Db"),
        in_state("failed", "shutdown", "being shut down"),
        in_state("complete", "running", "on node node2 is complete"),
        (running_task(), true, "web.1", "is global"),
        running("web@node9", "no node named node9"),
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

static LOADER: [u8; 16] = [1; 16];
static PROGRAM: [u8; 1_200_000] = [2; 1_200_000];

fn zero_install(target: &str) -> ExecRequest {
    let mut req = request(target, 30);
    req.run.helper = HelperSource::Embedded(NodeProgram {
        loader: &LOADER,
        program: || &PROGRAM,
        program_len: PROGRAM.len(),
        build_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        program_sha256: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
    });
    req
}

#[tokio::test(start_paused = true)]
async fn zero_install_runs_the_configs_loader_in_the_targets_own_image() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(7)))]));
    let (r, _) = run(&fake, &zero_install("web.1")).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    let spec = fake.created.lock().unwrap()[0].clone();
    assert_eq!(
        spec.image, "app:1@sha256:0123",
        "the target task's own image"
    );
    assert_eq!(spec.command, Some(vec!["/.swarm-exec/load".to_owned()]));
    assert_eq!(spec.user.as_deref(), Some("0:0"));
    assert_eq!(
        spec.args[0],
        "2:1200000:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
    );
    let names: Vec<&str> = spec.configs.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(
        names,
        ["/.swarm-exec/load", "/.swarm-exec/1", "/.swarm-exec/2"]
    );
    // Made once (two parts, then the loader that indexes them), kept, and reused by the
    // next run.
    assert_eq!(fake.configs.lock().unwrap().len(), 3);
    let (r, _) = run(&fake, &zero_install("web.1")).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(fake.configs.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_node_of_another_platform_is_refused_before_anything_is_created() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(0)))]));
    *fake.node_arch.lock().unwrap() = Some("aarch64".into());
    let (r, _) = run(&fake, &zero_install("web.1")).await;
    let msg = r.unwrap_err().to_string();
    assert_mentions(&msg, &["node2", "aarch64", "--image"]);
    assert!(fake.created.lock().unwrap().is_empty());
    assert!(fake.configs.lock().unwrap().is_empty());
    assert!(fake.envelope.lock().unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_service_named_alone_runs_in_its_lowest_running_slot_and_says_so() {
    let mut second = task("task2aaaaaaaaaaaaaaaaaaaa", 2, "running", "running");
    second.container_id = "d".repeat(64);
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(0)))]));
    fake.tasks.lock().unwrap().insert(0, second);
    let (r, sink) = run(&fake, &request("web", 30)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    let spec = fake.created.lock().unwrap()[0].clone();
    let args = spec.args.join(" ");
    assert!(args.contains(&container()), "slot 1's container: {args}");
    assert!(warned(&sink, "has 2 running tasks"), "{:?}", sink.warnings);
}

#[tokio::test(start_paused = true)]
async fn a_helper_whose_container_did_not_start_is_replaced_once_then_reported() {
    let runtime = "starting container failed: failed to create task for container: \
                   OCI runtime create failed: runc create failed";
    let fake = fake_with(silent(vec![(100, "failed", runtime, Some(128))]));
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, ExecError::Run(RunError::ContainerNotStarted { .. })),
        "{err}"
    );
    assert_mentions(
        &err.to_string(),
        &["did not start", "runc create failed", "node2"],
    );
    assert_eq!(fake.created(), 2, "one more helper, no more");
    assert_eq!(fake.removed(), vec![HELPER_ID, HELPER_ID]);
    assert!(warned(&sink, "trying a new helper"), "{:?}", sink.warnings);
}

#[tokio::test(start_paused = true)]
async fn a_secrets_remount_that_failed_before_the_runtime_is_replaced_too() {
    let engine = "starting container failed: unable to remount dir as readonly: mount \
                  tmpfs:/var/lib/docker/containers/x/mounts/secrets, flags: 0x21: \
                  device or resource busy";
    let fake = fake_with(silent(vec![(100, "failed", engine, Some(128))]));
    let (r, sink) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, ExecError::Run(RunError::ContainerNotStarted { .. })),
        "{err}"
    );
    assert_eq!(fake.created(), 2, "one more helper, no more");
    assert!(warned(&sink, "trying a new helper"), "{:?}", sink.warnings);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_goes_down_under_its_running_helper_ends_the_run_outcome_unknown() {
    let fake = fake_with(running_with(vec![]));
    let down = async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        *fake.node_state.lock().unwrap() = Some("down".into());
    };
    let start = Instant::now();
    let req = request("web.1", 300);
    let ((r, _), ()) = tokio::join!(run(&fake, &req), down);
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::Run(RunError::NodeLost {
                dispatched: true,
                ..
            })
        ),
        "{err}"
    );
    assert_mentions(&err.to_string(), &["node2 is down", "outcome is unknown"]);
    // Seen at the next look at the node, not at the run's deadline.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took <= Duration::from_secs(20) + NODE_CHECK,
        "{took:?}"
    );
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn a_helper_never_given_to_its_down_node_did_not_run_the_command() {
    let fake = fake_with(silent(vec![(0, "pending", "no suitable node", None)]));
    *fake.node_state.lock().unwrap() = Some("down".into());
    let start = Instant::now();
    let (r, _) = run(&fake, &request("web.1", 300)).await;
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::Run(RunError::NodeLost {
                dispatched: false,
                ..
            })
        ),
        "{err}"
    );
    assert_mentions(&err.to_string(), &["node2 is down", "did not run"]);
    assert!(start.elapsed() <= NODE_CHECK + Duration::from_secs(1));
    assert_eq!(fake.removed(), vec![HELPER_ID]);
}

#[tokio::test(start_paused = true)]
async fn a_task_on_the_engines_own_node_is_exec_d_there_with_no_helper_or_secret() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(7)))]));
    *fake.own_node.lock().unwrap() = Some(NODE.into());
    let (r, _) = run(&fake, &request("web.1", 60)).await;
    // The fake has no execs: the direct path's own error, and nothing made on the swarm.
    let err = r.unwrap_err().to_string();
    assert!(err.contains("creating the exec"), "{err}");
    assert_eq!(fake.created(), 0, "no helper");
    assert!(fake.secrets.lock().unwrap().is_empty(), "no envelope");
    // Elsewhere, the helper as ever.
    *fake.own_node.lock().unwrap() = Some("manager1aaaaaaaaaaaaaaaaa".into());
    let (r, _) = run(&fake, &request("web.1", 60)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(7));
    assert_eq!(fake.created(), 1);
}

#[tokio::test(start_paused = true)]
async fn debug_goes_through_a_helper_even_on_the_engines_own_node() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(4)))]));
    *fake.own_node.lock().unwrap() = Some(NODE.into());
    let mut req = request("web.1", 60);
    req.run.debug = Some("busybox".into());
    let (r, _) = run(&fake, &req).await;
    assert_eq!(r.unwrap(), Outcome::Exited(4));
    assert_eq!(fake.created(), 1, "the debug container is made by a helper");
}

#[tokio::test(start_paused = true)]
async fn a_bad_debug_image_is_refused_before_anything_is_made() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(0)))]));
    let mut req = request("web.1", 60);
    req.run.debug = Some("Not An Image".into());
    let (r, _) = run(&fake, &req).await;
    assert!(
        matches!(r, Err(ExecError::Invalid(InvalidRun::BadDebugImage(_)))),
        "{r:?}"
    );
    assert_eq!(fake.created(), 0);
    assert!(fake.secrets.lock().unwrap().is_empty());
}

/// Mid-update, a service named alone runs in a task of its current spec, though an older
/// one holds a lower slot.
#[tokio::test(start_paused = true)]
async fn a_service_named_alone_runs_in_a_task_of_its_current_spec() {
    let fake = fake_with(running_with(vec![(0, Some(Record::Exit(0)))]));
    let mut new = task("task2aaaaaaaaaaaaaaaaaaaa", 2, "running", "running");
    new.container_id = "d".repeat(64);
    new.spec = "v2".into();
    {
        let mut tasks = fake.tasks.lock().unwrap();
        tasks[0].spec = "v1".into();
        tasks.push(new);
    }
    *fake.template.lock().unwrap() = "v2".into();
    let (r, _) = run(&fake, &request("web", 60)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    let spec = fake.created.lock().unwrap()[0].clone();
    assert!(spec.args.contains(&"d".repeat(64)), "{:?}", spec.args);
    // With no task of the current spec running, the lowest slot as before.
    *fake.template.lock().unwrap() = "v3".into();
    fake.created.lock().unwrap().clear();
    let (r, _) = run(&fake, &request("web", 60)).await;
    assert_eq!(r.unwrap(), Outcome::Exited(0));
    let spec = fake.created.lock().unwrap()[0].clone();
    assert!(spec.args.contains(&"c".repeat(64)), "{:?}", spec.args);
}
