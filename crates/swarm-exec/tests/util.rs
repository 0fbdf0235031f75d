//! Shared machinery for the end-to-end tests: the lab swarm they run against, target
//! services they create (labelled, uniquely named, removed on drop), and running the real
//! binary with a hard time limit.
//!
//! The lab is the one `scripts/lab up` brings up; `DOCKER_HOST` points at its manager.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Every object the tests create carries this label.
pub const TEST_LABEL: &str = "swarm-exec.test";
pub const TARGET_IMAGE: &str = "swarm-exec-lab/busybox:1";
pub const WORKERS: [&str; 2] = ["node2", "node3"];

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

/// Collects a child's output and status; kills it if it outlives `limit`.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        out_pipe.read_to_end(&mut v).unwrap();
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        err_pipe.read_to_end(&mut v).unwrap();
        v
    });
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
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: start.elapsed(),
    }
}

/// Starts the swarm-exec binary under test.
pub fn spawn_swarm_exec<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_swarm-exec"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start swarm-exec")
}

/// Runs the swarm-exec binary under test to completion (at most two minutes).
pub fn swarm_exec<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    wait(spawn_swarm_exec(args), Duration::from_secs(120))
}

/// Runs the swarm-exec binary with `input` on its stdin.
pub fn swarm_exec_stdin(args: &[&str], input: impl AsRef<[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm-exec"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start swarm-exec");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_ref().to_vec();
    // From a thread, so a child that does not read cannot block the test.
    thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    wait(child, Duration::from_secs(120))
}

/// Runs the docker CLI against the lab manager.
pub fn docker(args: &[&str]) -> Output {
    let child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start docker");
    wait(child, Duration::from_secs(120))
}

/// Runs the docker CLI against lab node `n`'s own engine (1 is the manager).
pub fn docker_on(n: u32, args: &[&str]) -> Output {
    let lab = std::env::var("SWARM_EXEC_LAB").unwrap_or_else(|_| "/var/tmp/swarm-exec-lab".into());
    let mut full = vec!["-H".to_owned(), format!("unix://{lab}/node{n}/docker.sock")];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    docker(&full)
}

/// The processes of a task's container, as its node's engine lists them.
pub fn processes(task: &Task) -> String {
    let n: u32 = task
        .node
        .trim_start_matches("node")
        .parse()
        .expect("a lab node");
    let container = docker_ok(&[
        "inspect",
        "--format",
        "{{.Status.ContainerStatus.ContainerID}}",
        &task.id,
    ]);
    docker_on(n, &["top", &container, "-o", "pid,args"]).stdout_str()
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

    fn create(fixed_name: Option<&str>, mode: &[&str], expect: usize) -> Service {
        lab();
        let owned = fixed_name.is_none();
        let name = fixed_name.map_or_else(
            || format!("sxt-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            str::to_owned,
        );
        let label = format!("{TEST_LABEL}=e2e");
        let mut options = vec!["--container-label", &label, "--stop-grace-period", "1s"];
        options.extend_from_slice(mode);
        // A fixed-name service from an earlier run is reused, not duplicated.
        if owned || docker(&["service", "inspect", &name]).code != 0 {
            create_service(&name, &options, &["sleep", "3600"]);
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
        let out = docker_ok(&[
            "service",
            "ps",
            &self.name,
            "--filter",
            "desired-state=running",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Node}} {{.Name}} {{.CurrentState}}",
        ]);
        out.lines()
            .filter(|l| l.contains(" Running "))
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
    args.push(TARGET_IMAGE);
    args.extend_from_slice(command);
    docker_ok(&args);
}

/// IDs of the `kind`s (`service`, `secret`) swarm-exec made for runs on `service` that
/// are still there: its helpers and its runs' envelopes.
pub fn swarm_exec_objects(kind: &str, service: &str) -> Vec<String> {
    let target = format!("label=swarm-exec.target.service={service}");
    let out = docker_ok(&[
        kind,
        "ls",
        "-q",
        "--filter",
        "label=swarm-exec.helper",
        "--filter",
        &target,
    ]);
    out.lines().map(str::to_owned).collect()
}

/// A deployed stack, removed when dropped.
pub struct Stack(pub String);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.0]);
    }
}

/// The global target service shared by tests that only run commands in it. It has a fixed
/// name so later runs reuse it; `scripts/test` removes it (by label) at the end.
pub fn shared() -> &'static Service {
    static SHARED: OnceLock<Service> = OnceLock::new();
    SHARED.get_or_init(|| Service::create(Some("sxt-shared"), &["--mode", "global"], 3))
}
