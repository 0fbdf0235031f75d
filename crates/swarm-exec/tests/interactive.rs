//! `task-exec -it`: a terminal session, driven through `script` (a real pseudo-terminal),
//! into a task on the engine swarm-exec talks to (the lab's manager, node1).

use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// A session in `svc`'s task on `node`: typing, the terminal's size and a resize, Ctrl-C to
/// the remote command, its exit code; nothing left behind.
fn a_session_on(svc: &Service, node: &str) {
    let at = svc.at(node);
    let inner = format!("\"$SX\" task-exec -it {at} sh");
    let out = in_a_terminal(
        &inner,
        &[
            (0, b"echo $((6*7))\r"),
            (500, b"stty size\r"),
            (1000, RESIZE),
            (2000, b"stty size\r"),
            // Ctrl-C reaches the remote command, not swarm-exec.
            (2500, b"sleep 100\r"),
            (3500, b"\x03"),
            (4000, b"echo after-ctrl-c\r"),
            (4500, b"exit 3\r"),
        ],
    );
    let shown = out.stdout_str();
    assert_exit(&out, 3);
    assert!(shown.contains("\r\n42\r\n"), "{shown:?}");
    assert!(
        shown.contains("\r\n40 100\r\n"),
        "the terminal's size: {shown:?}"
    );
    assert!(shown.contains("\r\n30 90\r\n"), "resized: {shown:?}");
    assert!(shown.contains("\r\nafter-ctrl-c\r\n"), "{shown:?}");
    no_session_left(&svc.name);
}

/// `-t --timeout` in a task on the manager's own engine (an attached exec, no helper): exit
/// 124, and the command and the child it daemonized are stopped.
#[test]
fn a_terminal_session_on_the_managers_engine_is_stopped_at_its_timeout() {
    let svc = Service::global();
    let at = svc.at("node1");
    let inner = format!(
        "\"$SX\" task-exec -t --timeout 6s {at} sh -c 'echo \"# \"; \
         sh -c \"setsid sleep 341 </dev/null >/dev/null 2>&1 &\"; sleep 342'"
    );
    let out = in_a_terminal(&inner, &[]);
    assert_exit(&out, 124);
    assert!(out.stdout_str().contains("# "), "{}", out.stdout_str());
    assert!(
        !out.stdout_str().contains("warning"),
        "{}",
        out.stdout_str()
    );
    await_processes_gone(svc.on("node1"), &["sleep 341", "sleep 342"]);
    assert!(svc.helpers().is_empty());
}

#[test]
fn a_terminal_session_in_a_task_on_each_node() {
    // node1, the manager swarm-exec talks to: direct, no helper at all. The workers
    // (Docker 26 and 20): through a relay on the manager and the overlay. One after the
    // other, so that what each leaves is its own.
    // A service of its own: what is left is looked for by service.
    let svc = Service::global();
    for node in ["node1", "node2", "node3"] {
        a_session_on(&svc, node);
    }
}

#[test]
fn a_terminal_is_refused_where_it_cannot_be_given() {
    let svc = shared();
    // stdin not a terminal, as docker says it.
    let out = task_exec(&["-it"], &svc.at("node1"), &["sh"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "not a TTY");
    let out = task_exec(&["-it"], &svc.at("node3"), &["sh"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "not a TTY");
    assert!(svc.helpers().is_empty());
}

/// A session on a worker whose container is killed mid-session, and one whose client gets
/// SIGTERM: each ends with the terminal as it was and nothing left; SIGTERM stops the
/// remote command too.
#[test]
fn a_session_on_a_worker_ends_cleanly_when_its_container_dies_or_it_is_stopped() {
    let svc = Service::replicated(3);
    let task = svc.on("node2").clone();
    let container = container_of(&task.id);
    let killer = {
        let task = task.clone();
        std::thread::spawn(move || {
            await_processes(&task, &["sleep 100"]);
            docker_on(2, &["kill", &container])
        })
    };
    let out = in_a_terminal(
        &format!("\"$SX\" task-exec -it {} sh", task.id),
        &[(0, b"echo ready\r"), (500, b"sleep 100\r")],
    );
    assert_eq!(
        killer.join().unwrap().code,
        0,
        "could not kill the container"
    );
    assert!(out.stdout_str().contains("ready"), "{}", out.stdout_str());
    assert_ne!(out.code, 0, "a session whose container was killed ended 0");
    no_session_left(&svc.name);

    // SIGTERM to swarm-exec: 143, and the remote `sleep` is gone.
    let task = svc.on("node3").clone();
    let marker = format!(
        "sleep {}",
        100_000 + u32::from_str_radix(&unique_hex(4), 16).unwrap()
    );
    let inner = format!("\"$SX\" task-exec -it {} sh < /dev/tty & wait $!", task.id);
    let typed = format!("{marker}\r");
    // Once the remote command runs: SIGTERM to swarm-exec.
    let stopper = {
        let (task, marker) = (task.clone(), marker.clone());
        std::thread::spawn(move || {
            await_processes(&task, &[&marker]);
            // swarm-exec itself, not the shells whose command lines name it.
            let pattern = format!("^{SWARM_EXEC} task-exec -it {} sh$", task.id);
            let ok = Command::new("pkill")
                .args(["-TERM", "-f", &pattern])
                .status();
            ok.map(|s| s.success()).unwrap_or(false)
        })
    };
    let out = in_a_terminal(&inner, &[(0, typed.as_bytes())]);
    assert!(
        stopper.join().expect("the remote command ran"),
        "no swarm-exec to stop"
    );
    assert_exit(&out, 143);
    await_processes_gone(&task, &[&marker]);
    no_session_left(&svc.name);
}

/// Issue 26: a `-t` client killed with SIGKILL cleans up nothing itself. Its relay ends
/// with its attachment, its helper (hearing the relay close) stops the command, and plain
/// `gc` — no `--all`, though `-t` labels a year's budget — takes the helper and envelope
/// at once, since the session's relay is gone.
#[test]
fn a_killed_terminal_clients_leftovers_go_with_plain_gc() {
    let svc = Service::replicated(3);
    let task = svc.on("node2").clone();
    let marker = format!(
        "sleep {}",
        200_000 + u32::from_str_radix(&unique_hex(4), 16).unwrap()
    );
    // A killed program cannot restore the terminal: the shell line around it does.
    let inner = format!(
        "s=$(stty -g); \"$SX\" task-exec -it {} sh < /dev/tty & wait $!; rc=$?; \
         stty \"$s\"; (exit $rc)",
        task.id
    );
    let typed = format!("{marker}\r");
    let killer = {
        let (task, marker) = (task.clone(), marker.clone());
        std::thread::spawn(move || {
            await_processes(&task, &[&marker]);
            let pattern = format!("^{SWARM_EXEC} task-exec -it {} sh$", task.id);
            let ok = Command::new("pkill")
                .args(["-KILL", "-f", &pattern])
                .status();
            ok.map(|s| s.success()).unwrap_or(false)
        })
    };
    let out = in_a_terminal(&inner, &[(0, typed.as_bytes())]);
    assert!(
        killer.join().expect("the remote command ran"),
        "no swarm-exec to kill"
    );
    assert_exit(&out, 137);
    assert_eq!(
        swarm_exec_objects("service", &svc.name).len(),
        1,
        "the killed client left its helper (as it must: it could not remove it)"
    );
    // A year's budget: only the session rule lets a plain gc take it now.
    let helper = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.Name}} {{index .Spec.Labels \"swarm-exec.budget\"}}",
        &swarm_exec_objects("service", &svc.name)[0],
    ]);
    let (name, budget) = helper.split_once(' ').unwrap();
    assert!(budget.parse::<u64>().unwrap() > 86_400 * 300, "{helper}");
    await_processes_gone(&task, &[&marker]);
    let mut said = String::new();
    eventually(
        "plain gc to take the session",
        Duration::from_secs(60),
        || {
            let gc = swarm_exec(&["gc"]);
            assert_exit(&gc, 0);
            said.push_str(&gc.stdout_str());
            (swarm_exec_objects("service", &svc.name).is_empty()
                && swarm_exec_objects("secret", &svc.name).is_empty())
            .then_some(())
        },
    );
    // This test's gc took them, or another test's plain gc did a moment before (by the
    // same rule: nothing else lets a plain gc take a year's budget).
    if said.contains(name) {
        assert!(
            said.contains(&format!(
                "removed service {name} (its session's relay is gone)"
            )),
            "{said}"
        );
    }
    // Its network, once the managers let go of the helper and it is a minute old (its
    // relay is made a moment after it).
    eventually(
        "plain gc to take the session's network",
        Duration::from_secs(120),
        || {
            let gc = swarm_exec(&["gc"]);
            assert_exit(&gc, 0);
            swarm_exec_objects("network", &svc.name)
                .is_empty()
                .then_some(())
        },
    );
    no_session_left(&svc.name);
}
