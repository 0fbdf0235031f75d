//! `--persist` / `SWARM_EXEC_PERSIST`: runs into a worker's tasks through a keeper's
//! standing helper. Each test has a keeper of its own (its own `XDG_RUNTIME_DIR`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::util::*;

/// A private runtime directory (removed on drop): the keeper's socket goes there.
struct Keeps {
    dir: PathBuf,
}

impl Keeps {
    fn new() -> Keeps {
        let dir = std::env::temp_dir().join(format!("sxt-persist-{}", unique_hex(8)));
        std::fs::create_dir(&dir).unwrap();
        Keeps { dir }
    }

    fn cmd(&self, persist: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(SWARM_EXEC);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("SWARM_EXEC_PERSIST", persist)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, persist: &str, args: &[&str]) -> Output {
        run(&mut self.cmd(persist, args))
    }

    /// `persist status --json`, when a keeper stands.
    fn status(&self) -> Option<serde_json::Value> {
        let out = self.run("20s", &["persist", "status", "--json"]);
        match out.code {
            0 => Some(serde_json::from_slice(&out.stdout).expect("JSON")),
            1 => None,
            _ => panic!("persist status: {}", out.stderr_str()),
        }
    }
}

impl Drop for Keeps {
    fn drop(&mut self) {
        let _ = run(Command::new(SWARM_EXEC)
            .args(["persist", "stop"])
            .env("XDG_RUNTIME_DIR", &self.dir));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The keeper's process is gone.
fn no_process(pid: u64) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

#[test]
fn persisted_runs_go_through_one_standing_helper_exact_and_leave_nothing_once_idle() {
    let node = remote_worker();
    let constraint = format!("node.hostname=={node}");
    let mode = ["--replicas", "2", "--constraint", &constraint];
    let data = "head -c 3000000 /dev/urandom > /tmp/blob && exec sleep 3600";
    let svc = Service::create_of(None, TARGET_IMAGE, &mode, &sh(data), 2);
    let name = svc.name.clone();
    let tasks: Vec<String> = svc.tasks.iter().map(|t| t.id.clone()).collect();
    let keeps = Keeps::new();
    // The first run opens the session.
    let first = keeps.run("20s", &task_exec_args(&[], &tasks[0], &["hostname"]));
    assert_exit(&first, 0);
    let status = keeps.status().expect("a keeper stands");
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{status}");
    assert_eq!(sessions[0]["node"], node);
    assert_eq!(swarm_exec_objects("service", &name).len(), 1, "one helper");

    // 3 MB of random bytes, exact, with the command's exit code; in the other task too.
    let want = keeps.run(
        "20s",
        &task_exec_args(&[], &tasks[1], &["sha256sum", "/tmp/blob"]),
    );
    assert_exit(&want, 0);
    let cat = keeps.run(
        "20s",
        &task_exec_args(&[], &tasks[1], &sh("cat /tmp/blob; exit 7")),
    );
    assert_exit(&cat, 7);
    assert_eq!(cat.stdout.len(), 3_000_000);
    assert!(
        want.stdout_str().starts_with(&sha(&cat.stdout)),
        "{}",
        want.stdout_str()
    );

    // stdin through, stderr apart.
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut cmd = keeps.cmd(
        "20s",
        &task_exec_args(&["-i"], &tasks[0], &sh("cat; echo err >&2")),
    );
    let echoed = wait(
        {
            cmd.stdin(Stdio::piped());
            let mut child = spawn_piped(&mut cmd);
            let mut stdin = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, &input).unwrap();
            drop(stdin);
            child
        },
        Duration::from_secs(60),
    );
    assert_exit(&echoed, 0);
    assert_eq!(sha(&echoed.stdout), sha(&input));
    assert_eq!(echoed.stderr_str(), "err\n");

    // Ten at once, each its own output and code.
    let children: Vec<_> = (0..10)
        .map(|i| {
            let script = format!("seq {i} 40000{i}; exit {}", 10 + i);
            let args = task_exec_args(&[], &tasks[i % 2], &sh(&script));
            spawn_piped(keeps.cmd("20s", &args).stdin(Stdio::null()))
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = wait(child, Duration::from_secs(60));
        assert_exit(&out, 10 + i as i32);
        let expect: String = (i..=(40000 * 10 + i)).map(|n| format!("{n}\n")).collect();
        assert!(
            out.stdout_str() == expect,
            "run {i}: {} bytes",
            out.stdout.len()
        );
    }
    let status = keeps.status().expect("a keeper stands");
    assert_eq!(status["sessions"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(
        swarm_exec_objects("service", &name).len(),
        1,
        "still one helper"
    );

    // A timeout stops the command and what it started; the helper stays.
    let started = Instant::now();
    let timed = keeps.run(
        "20s",
        &task_exec_args(
            &["--timeout", "2s"],
            &tasks[0],
            &sh("sleep 300 & sleep 301"),
        ),
    );
    assert_exit(&timed, 124);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let ps = keeps.run(
        "20s",
        &task_exec_args(&[], &tasks[0], &["ps", "-o", "args"]),
    );
    assert!(!ps.stdout_str().contains("sleep 30"), "{}", ps.stdout_str());

    // Sequential runs, timed (the benchmark holds the figure; this only reports it).
    let mut times: Vec<Duration> = (0..10)
        .map(|_| {
            let out = keeps.run("20s", &task_exec_args(&[], &tasks[0], &["true"]));
            assert_exit(&out, 0);
            out.elapsed
        })
        .collect();
    times.sort();
    eprintln!(
        "persisted `true`: median {:?}, max {:?}",
        times[5], times[9]
    );

    // 20 s after the last run the keeper ends; everything goes with it.
    let pid = keeps.status().expect("a keeper stands")["pid"]
        .as_u64()
        .unwrap();
    let last = Instant::now();
    eventually("the keeper to end", Duration::from_secs(45), || {
        no_process(pid).then_some(())
    });
    assert!(
        last.elapsed() >= Duration::from_secs(15),
        "{:?}",
        last.elapsed()
    );
    no_session_left(&name);
    assert!(keeps.status().is_none());
}

#[test]
fn a_stopped_or_killed_keeper_leaves_nothing_and_a_run_after_starts_afresh() {
    let svc = Service::global();
    let node = remote_worker();
    let task = svc.at(node);
    let keeps = Keeps::new();
    assert_exit(&keeps.run("5m", &task_exec_args(&[], &task, &["true"])), 0);
    assert_eq!(svc.helpers().len(), 1);
    // stop: gone when it returns.
    let stop = keeps.run("5m", &["persist", "stop"]);
    assert_exit(&stop, 0);
    no_session_left(&svc.name);
    assert!(keeps.status().is_none());

    // A helper removed by someone else mid-run: the run's outcome is not known (125, not
    // the command's code nor a timeout), its command is stopped, and the session dropped;
    // the next run opens another.
    let t = svc.on(node);
    let long = sh("echo up; exec sleep 3597");
    let child = spawn_piped(&mut keeps.cmd("5m", &task_exec_args(&[], &task, &long)));
    await_processes(t, &["sleep 3597"]);
    let first = svc.helpers();
    assert_eq!(first.len(), 1);
    docker_ok(&["service", "rm", &first[0]]);
    let cut = wait(child, Duration::from_secs(60));
    assert_exit(&cut, 125);
    assert_stderr_has(&cut, "not known");
    await_processes_gone(t, &["sleep 3597"]);
    eventually("the session dropped", Duration::from_secs(30), || {
        let s = keeps.status().expect("a keeper stands");
        s["sessions"].as_array().unwrap().is_empty().then_some(())
    });
    let out = keeps.run("5m", &task_exec_args(&[], &task, &sh("echo anew; exit 2")));
    assert_exit(&out, 2);
    assert_eq!(out.stdout_str(), "anew\n");
    let second = svc.helpers();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new helper");

    // A run whose client is killed is stopped on its node.
    let mut cmd = keeps.cmd(
        "5m",
        &task_exec_args(&[], &task, &sh("echo up; exec sleep 3599")),
    );
    let child = spawn_piped(&mut cmd);
    await_processes(t, &["sleep 3599"]);
    kill(&child, "KILL");
    assert_eq!(wait(child, Duration::from_secs(10)).code, -1, "killed");
    await_processes_gone(t, &["sleep 3599"]);
    let out = keeps.run("5m", &task_exec_args(&[], &task, &sh("echo again; exit 3")));
    assert_exit(&out, 3);
    assert_eq!(out.stdout_str(), "again\n");
    assert_eq!(svc.helpers().len(), 1, "the same helper");
    // Killed: its session's lease is its relay; plain gc takes the rest.
    let pid = keeps.status().expect("a keeper stands")["pid"]
        .as_u64()
        .unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    assert!(killed.unwrap().success());
    eventually("the keeper gone", Duration::from_secs(10), || {
        no_process(pid).then_some(())
    });
    // (gc leaves a session's network until it is a minute old: it is made before its relay.)
    eventually("gc to take the session", Duration::from_secs(120), || {
        assert_exit(&swarm_exec(&["gc"]), 0);
        std::thread::sleep(Duration::from_secs(2));
        let left = svc.helpers().len() + swarm_exec_objects("network", &svc.name).len();
        (left == 0).then_some(())
    });
    no_session_left(&svc.name);
}
