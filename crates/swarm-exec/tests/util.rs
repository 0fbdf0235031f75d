//! Shared machinery for the end-to-end tests: the lab swarm they run against, target
//! services they create (labelled, uniquely named, removed on drop), and running the real
//! binary with a hard time limit.
//!
//! The lab is the one `scripts/lab up` brings up; `DOCKER_HOST` points at its manager.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Every object the tests create carries this label.
pub const TEST_LABEL: &str = "swarm-exec.test";
pub const TARGET_IMAGE: &str = "swarm-exec-lab/busybox:1";
pub const WORKERS: [&str; 2] = ["node2", "node3"];
/// The binary under test.
pub const SWARM_EXEC: &str = env!("CARGO_BIN_EXE_swarm-exec");
/// How long one run of a command may take at most, unless a test says otherwise.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Panics with instructions unless the lab manager answers.
pub fn lab() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let out = docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        assert!(
            out.code == 0,
            "the end-to-end tests need the lab swarm (scripts/lab up, then \
             `. /var/tmp/swarm-exec-lab/env`); DOCKER_HOST={host:?}: {}",
            out.stderr_str()
        );
        for node in ["node1"].iter().chain(WORKERS.iter()) {
            assert!(
                out.stdout_str().contains(&format!("{node} Ready")),
                "lab node {node} is not ready:\n{}",
                out.stdout_str()
            );
        }
    });
}

/// The lab's own directory: the nodes' sockets and data roots are below it.
pub fn lab_dir() -> String {
    std::env::var("SWARM_EXEC_LAB").unwrap_or_else(|_| "/var/tmp/swarm-exec-lab".into())
}

/// The endpoint of lab node `n`'s own engine (1 is the manager).
pub fn node_socket(n: u32) -> String {
    format!("unix://{}/node{n}/docker.sock", lab_dir())
}

/// The lab node whose engine `DOCKER_HOST` names: swarm-exec runs a command in a task there
/// directly, without a helper. The test script also runs the task-exec tests through node3.
pub fn client_node() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        docker_ok(&["info", "--format", "{{.Name}}"])
            .trim()
            .to_owned()
    })
}

/// A worker that is not the client's own node: a run there goes through a helper.
pub fn remote_worker() -> &'static str {
    WORKERS
        .into_iter()
        .find(|w| *w != client_node())
        .expect("two workers")
}

/// `n` random hex digits, for names no other run uses.
pub fn unique_hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Asserts the exit code; stderr is the failure message.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.code, code, "{}", out.stderr_str());
}

/// Asserts that stderr holds `needle`; stderr is the failure message.
#[track_caller]
pub fn assert_stderr_has(out: &Output, needle: &str) {
    assert!(out.stderr_str().contains(needle), "{}", out.stderr_str());
}

/// Asserts that stdout holds `needle`; stdout is the failure message.
#[track_caller]
pub fn assert_stdout_has(out: &Output, needle: &str) {
    assert!(out.stdout_str().contains(needle), "{}", out.stdout_str());
}

/// Reads `pipe` to its end on a thread of its own.
pub fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        pipe.read_to_end(&mut v).unwrap();
        v
    })
}

/// Collects a child's output and status (what of it the caller has not taken); kills it if
/// it outlives `limit`.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let out = child.stdout.take().map(read_in_background);
    let err = child.stderr.take().map(read_in_background);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out.map(|t| t.join().unwrap()).unwrap_or_default(),
        stderr: err.map(|t| t.join().unwrap()).unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Sends `signal` (`INT`, `KILL`...) to a child.
pub fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
}

/// Starts `cmd` with its stdout and stderr piped (and its stdin as the caller set it).
pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

/// Runs `cmd` to completion (at most two minutes), with nothing on its stdin.
pub fn run(cmd: &mut Command) -> Output {
    wait(spawn_piped(cmd.stdin(Stdio::null())), RUN_LIMIT)
}

/// Starts the swarm-exec binary under test.
pub fn spawn_swarm_exec<S: AsRef<OsStr>>(args: &[S]) -> Child {
    spawn_piped(Command::new(SWARM_EXEC).args(args).stdin(Stdio::null()))
}

/// Runs the swarm-exec binary under test to completion (at most two minutes).
pub fn swarm_exec<S: AsRef<OsStr>>(args: &[S]) -> Output {
    wait(spawn_swarm_exec(args), RUN_LIMIT)
}

/// Starts the swarm-exec binary with `input` on its stdin.
pub fn spawn_swarm_exec_stdin(args: &[&str], input: impl AsRef<[u8]>) -> Child {
    let mut child = spawn_piped(Command::new(SWARM_EXEC).args(args).stdin(Stdio::piped()));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_ref().to_vec();
    // From a thread, so a child that does not read cannot block the test.
    thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    child
}

/// Runs the swarm-exec binary with `input` on its stdin.
pub fn swarm_exec_stdin(args: &[&str], input: impl AsRef<[u8]>) -> Output {
    wait(spawn_swarm_exec_stdin(args, input), RUN_LIMIT)
}

/// `sub OPTIONS... TARGET COMMAND...`: the arguments of one of swarm-exec's exec commands.
fn exec_args<'a>(
    sub: &'a str,
    options: &[&'a str],
    target: &'a str,
    command: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![sub];
    args.extend_from_slice(options);
    args.push(target);
    args.extend_from_slice(command);
    args
}

/// `sh -c SCRIPT`, a command for the exec commands below.
pub fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

/// The arguments of `swarm-exec task-exec OPTIONS... TASK COMMAND...`.
pub fn task_exec_args<'a>(options: &[&'a str], task: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    exec_args("task-exec", options, task, command)
}

/// Runs `swarm-exec task-exec OPTIONS... TASK COMMAND...` to completion.
pub fn task_exec(options: &[&str], task: &str, command: &[&str]) -> Output {
    swarm_exec(&task_exec_args(options, task, command))
}

/// The arguments of `swarm-exec service-exec OPTIONS... SERVICE COMMAND...`.
pub fn service_exec_args<'a>(
    options: &[&'a str],
    service: &'a str,
    command: &[&'a str],
) -> Vec<&'a str> {
    exec_args("service-exec", options, service, command)
}

/// Runs `swarm-exec service-exec OPTIONS... SERVICE COMMAND...` to completion.
pub fn service_exec(options: &[&str], service: &str, command: &[&str]) -> Output {
    swarm_exec(&service_exec_args(options, service, command))
}

/// Runs the docker CLI against the lab manager.
pub fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

/// Runs the docker CLI against lab node `n`'s own engine (1 is the manager).
pub fn docker_on(n: u32, args: &[&str]) -> Output {
    run(Command::new("docker")
        .args(["-H", &node_socket(n)])
        .args(args))
}

/// The full ID of a task's container.
pub fn container_of(task_id: &str) -> String {
    let format = "{{.Status.ContainerStatus.ContainerID}}";
    docker_ok(&["inspect", "--format", format, task_id])
}

/// The processes of a task's container, as its node's engine lists them.
pub fn processes(task: &Task) -> String {
    let n: u32 = task
        .node
        .trim_start_matches("node")
        .parse()
        .expect("a lab node");
    let container = container_of(&task.id);
    docker_on(n, &["top", &container, "-o", "pid,args"]).stdout_str()
}

/// Waits (at most 30 s) until every one of `markers` shows in the processes of `task`.
pub fn await_processes(task: &Task, markers: &[&str]) {
    let all_run = |ps: &str| markers.iter().all(|m| ps.contains(m));
    await_ps(task, &format!("{markers:?} to run"), 30, all_run);
}

/// Waits (at most 15 s) until none of `markers` shows in the processes of `task`.
pub fn await_processes_gone(task: &Task, markers: &[&str]) {
    let none_runs = |ps: &str| !markers.iter().any(|m| ps.contains(m));
    await_ps(task, &format!("{markers:?} to be stopped"), 15, none_runs);
}

fn await_ps(task: &Task, what: &str, secs: u64, done: impl Fn(&str) -> bool) {
    eventually(what, Duration::from_secs(secs), || {
        done(&processes(task)).then_some(())
    });
}

/// Runs the docker CLI and insists that it succeeds; returns its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert_eq!(out.code, 0, "docker {args:?} failed: {}", out.stderr_str());
    out.stdout_str().trim().to_owned()
}

/// Polls `f` every 100 ms until it returns `Some`, at most `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `docker service ps` of the tasks of `service` that are meant to run and do: one line
/// each, `format` followed by the task's current state.
pub fn running_task_lines(service: &str, format: &str) -> Vec<String> {
    let format = format!("{format} {{{{.CurrentState}}}}");
    let out = docker_ok(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--no-trunc",
        "--format",
        &format,
    ]);
    out.lines()
        .filter(|l| l.contains(" Running "))
        .map(str::to_owned)
        .collect()
}

/// A running task of a target service.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub node: String,
    pub slot: String,
}

/// A target service made for one test, removed when dropped (unless shared).
pub struct Service {
    pub name: String,
    pub tasks: Vec<Task>,
    owned: bool,
}

impl Service {
    /// A global service: one `sleep` task on every node.
    pub fn global() -> Service {
        Service::create(None, &["--mode", "global"], 3)
    }

    /// A replicated service with `n` tasks.
    pub fn replicated(n: usize) -> Service {
        Service::create(None, &["--replicas", &n.to_string()], n)
    }

    /// A global service of `image` running `command` (its own CMD when empty), with
    /// `options` (e.g. `--read-only`).
    pub fn global_of(image: &str, options: &[&str], command: &[&str]) -> Service {
        let mut mode = vec!["--mode", "global"];
        mode.extend_from_slice(options);
        Service::create_of(None, image, &mode, command, 3)
    }

    fn create(fixed_name: Option<&str>, mode: &[&str], expect: usize) -> Service {
        Service::create_of(fixed_name, TARGET_IMAGE, mode, &["sleep", "3600"], expect)
    }

    pub fn create_of(
        fixed_name: Option<&str>,
        image: &str,
        mode: &[&str],
        command: &[&str],
        expect: usize,
    ) -> Service {
        lab();
        let owned = fixed_name.is_none();
        let name = fixed_name.map_or_else(|| format!("sxt-{}", unique_hex(10)), str::to_owned);
        let label = format!("{TEST_LABEL}=e2e");
        let mut options = vec!["--container-label", &label, "--stop-grace-period", "1s"];
        options.extend_from_slice(mode);
        // A fixed-name service from an earlier run is reused, not duplicated.
        if owned || docker(&["service", "inspect", &name]).code != 0 {
            create_service_of(&name, &options, image, command);
        }
        let mut svc = Service {
            name,
            tasks: Vec::new(),
            owned,
        };
        svc.tasks = eventually("target tasks to run", Duration::from_secs(60), || {
            let tasks = svc.running_tasks();
            (tasks.len() == expect).then_some(tasks)
        });
        svc
    }

    pub fn running_tasks(&self) -> Vec<Task> {
        running_task_lines(&self.name, "{{.ID}} {{.Node}} {{.Name}}")
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Task {
                    id: f[0].to_owned(),
                    node: f[1].to_owned(),
                    slot: f[2].rsplit('.').next().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// `service@node` for a worker.
    pub fn at(&self, node: &str) -> String {
        format!("{}@{node}", self.name)
    }

    /// The running task on a node.
    pub fn on(&self, node: &str) -> &Task {
        self.tasks
            .iter()
            .find(|t| t.node == node)
            .expect("a task on that node")
    }

    /// Helper services swarm-exec left for tasks of this service.
    pub fn helpers(&self) -> Vec<String> {
        swarm_exec_objects("service", &self.name)
    }

    /// Waits (at most 30 s) for a helper of this service to exist; returns the first.
    pub fn await_helper(&self) -> String {
        await_helper_of(&self.name)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.owned {
            let _ = docker(&["service", "rm", &self.name]);
        }
    }
}

/// Creates a service of the target image running `command`, labelled as the tests'; its
/// name and `options` (mode, mounts, constraints...) are the caller's.
pub fn create_service(name: &str, options: &[&str], command: &[&str]) {
    create_service_of(name, options, TARGET_IMAGE, command);
}

/// [`create_service`] of another image.
pub fn create_service_of(name: &str, options: &[&str], image: &str, command: &[&str]) {
    let label = format!("{TEST_LABEL}=e2e");
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--quiet",
        "--no-resolve-image",
        "--name",
        name,
        "--label",
        &label,
    ];
    args.extend_from_slice(options);
    args.push(image);
    args.extend_from_slice(command);
    docker_ok(&args);
}

/// IDs of the `kind`s (`service`, `secret`) swarm-exec made for runs on `service` that
/// are still there: its helpers and its runs' envelopes.
pub fn swarm_exec_objects(kind: &str, service: &str) -> Vec<String> {
    let target = format!("label=swarm-exec.target.service={service}");
    let helper = "label=swarm-exec.helper";
    let out = docker_ok(&[kind, "ls", "-q", "--filter", helper, "--filter", &target]);
    out.lines().map(str::to_owned).collect()
}

/// Relay containers (on the manager, node1) swarm-exec left for sessions with `service`'s
/// tasks.
pub fn relays_of(service: &str) -> Vec<String> {
    let target = format!("label=swarm-exec.target.service={service}");
    let relay = "label=swarm-exec.helper=relay";
    docker_ok(&["ps", "-aq", "--filter", relay, "--filter", &target])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Nothing of a live session with `service`'s tasks is left: no relay (it removes itself
/// as it exits: given a moment), no helper, no envelope secret, no network of its own.
pub fn no_session_left(service: &str) {
    eventually("no relay left", Duration::from_secs(10), || {
        relays_of(service).is_empty().then_some(())
    });
    assert!(
        swarm_exec_objects("service", service).is_empty(),
        "helpers left"
    );
    assert!(
        swarm_exec_objects("secret", service).is_empty(),
        "secrets left"
    );
    // The session's own network goes last, once the managers have let go of the helper.
    eventually("no session network left", Duration::from_secs(15), || {
        swarm_exec_objects("network", service)
            .is_empty()
            .then_some(())
    });
}

/// Waits (at most 30 s) for a helper of `service` to exist; returns the first.
pub fn await_helper_of(service: &str) -> String {
    eventually("the helper", Duration::from_secs(30), || {
        swarm_exec_objects("service", service).into_iter().next()
    })
}

/// A deployed stack, removed when dropped.
pub struct Stack(pub String);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.0]);
    }
}

/// Deploys example/stack.yml as stack `name`, removed when the result is dropped.
pub fn deploy_example_stack(name: &str) -> Stack {
    deploy_stack(
        name,
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../example/stack.yml"),
    )
}

/// Deploys the stack file `file` as stack `name`, removed when the result is dropped.
pub fn deploy_stack(name: &str, file: &str) -> Stack {
    let stack = Stack(name.to_owned());
    docker_ok(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        file,
        name,
    ]);
    stack
}

/// The global target service shared by tests that only run commands in it. It has a fixed
/// name so later runs reuse it; `scripts/test` removes it (by label) at the end.
pub fn shared() -> &'static Service {
    static SHARED: OnceLock<Service> = OnceLock::new();
    SHARED.get_or_init(|| Service::create(Some("sxt-shared"), &["--mode", "global"], 3))
}

/// What a key schedule sends instead of typing: the terminal becomes 30 × 90.
pub const RESIZE: &[u8] = b"<resize>";

/// Runs `inner` (a shell line) under `script`, on a terminal of 40 rows and 100 columns;
/// once the remote shell's prompt (`# `) shows, types each `(after, text)` of `keys` at its
/// time from then ([`RESIZE`]: resizes the terminal instead). Returns what the terminal
/// showed and the exit code.
pub fn in_a_terminal(inner: &str, keys: &[(u64, &[u8])]) -> Output {
    let line = format!(
        "stty rows 40 cols 100; stty -g > \"$SX_DIR/before\"; \
         (while [ ! -e \"$SX_DIR/resize\" ]; do sleep 0.05; done; stty rows 30 cols 90 < /dev/tty) & \
         {inner}; rc=$?; stty -g > \"$SX_DIR/after\"; exit $rc"
    );
    let dir = std::env::temp_dir().join(format!("sx-tty-{}", unique_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("SX_DIR", &dir)
        .env("SX", SWARM_EXEC)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let (mut stdout, shown) = (child.stdout.take().unwrap(), shown.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let keys: Vec<(u64, Vec<u8>)> = keys.iter().map(|(t, k)| (*t, k.to_vec())).collect();
    let (resize, prompt_seen) = (dir.join("resize"), shown.clone());
    let ready_at = std::sync::Arc::new(std::sync::Mutex::new(None));
    let ready = ready_at.clone();
    std::thread::spawn(move || {
        // A session through the relay takes a moment (more on a busy machine): keys typed
        // before it is up would meet the local terminal, not the remote shell. Up to the
        // overlay's next 30 s resync when a node rejoins it (see HELLO_WAIT).
        let until = std::time::Instant::now() + Duration::from_secs(80);
        while !prompt_seen.lock().unwrap().windows(2).any(|w| w == b"# ")
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = std::time::Instant::now();
        *ready.lock().unwrap() = Some(start);
        for (at, k) in keys {
            let wait = Duration::from_millis(at).saturating_sub(start.elapsed());
            std::thread::sleep(wait);
            if k == RESIZE {
                let _ = std::fs::write(&resize, b"");
            } else {
                let _ = stdin.write_all(&k).and_then(|()| stdin.flush());
            }
        }
        // Held open long after the session: swarm-exec must end with its command, not
        // wait for the end of its input.
        std::thread::sleep(Duration::from_secs(30));
    });
    let mut out = wait(child, Duration::from_secs(150));
    let after_ready = ready_at.lock().unwrap().map(|t| t.elapsed());
    assert!(
        after_ready.is_some_and(|d| d < Duration::from_secs(20)),
        "still there {after_ready:?} after the prompt, its input open: it must end with its \
         command; the terminal showed:\n{}",
        String::from_utf8_lossy(&shown.lock().unwrap())
    );
    reader.join().unwrap();
    out.stdout = std::mem::take(&mut *shown.lock().unwrap());
    let before = std::fs::read_to_string(dir.join("before")).unwrap_or_default();
    let after = std::fs::read_to_string(dir.join("after")).unwrap_or_default();
    let _ = std::fs::write(dir.join("resize"), b"");
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        !before.is_empty(),
        "no terminal settings read: {}",
        out.stdout_str()
    );
    assert_eq!(before, after, "the terminal was not restored");
    out
}

/// The containers of `kind` (`debug`, `forward`) that helpers made beside `svc`'s tasks, on
/// their nodes; `all`: also those that are not running.
pub fn containers_beside(svc: &Service, kind: &str, all: bool) -> Vec<String> {
    let mut found = Vec::new();
    for task in &svc.tasks {
        let target = format!(
            "label=swarm-exec.target.container={}",
            container_of(&task.id)
        );
        let n: u32 = task.node.trim_start_matches("node").parse().unwrap();
        let (host, kind) = (node_socket(n), format!("label=swarm-exec.helper={kind}"));
        let mut args = vec!["-H", &host, "ps", "-q"];
        if all {
            args.push("-a");
        }
        args.extend(["--filter", &kind, "--filter", &target]);
        found.extend(
            docker(&args)
                .stdout_str()
                .split_whitespace()
                .map(str::to_owned),
        );
    }
    found
}

/// None of `kind` beside `svc`'s tasks: the helper removes its own on every path.
pub fn no_container_beside(svc: &Service, kind: &str) {
    eventually(
        &format!("{kind} containers to go"),
        Duration::from_secs(20),
        || containers_beside(svc, kind, true).is_empty().then_some(()),
    );
}
