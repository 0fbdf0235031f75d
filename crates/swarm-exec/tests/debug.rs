//! `debug`: a container of another image beside a task, in its namespaces — here beside a
//! task whose image is one static program (busybox under a few names, httpd among them)
//! and no shell.

use std::time::Duration;

use crate::util::*;

const SCRATCH: &str = "swarm-exec-lab/scratch:1";

/// A scratch task on every node, serving its own root on port 8080.
fn scratch_server() -> Service {
    Service::global_of(SCRATCH, &[], &["/httpd", "-f", "-p", "8080", "-h", "/"])
}

fn debug_args<'a>(options: &[&'a str], task: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["debug", "--image", TARGET_IMAGE];
    args.extend_from_slice(options);
    args.push(task);
    if !command.is_empty() {
        args.push("--");
        args.extend_from_slice(command);
    }
    args
}

#[test]
fn a_task_without_a_shell_is_seen_from_beside_it() {
    let svc = scratch_server();
    // A worker that needs a helper and the engine swarm-exec talks to, where debug still
    // goes through one (its container is made on the node).
    for node in [remote_worker(), client_node()] {
        let at = svc.at(node);
        // Its processes, its files, and its port on localhost, answered by the task itself:
        // the file it serves is the one under /proc/1/root.
        let script = "ps -o pid,args; ls /proc/1/root; \
                      wget -q -O - http://127.0.0.1:8080/echo | md5sum; \
                      md5sum < /proc/1/root/echo; exit 4";
        let out = swarm_exec(&debug_args(&[], &at, &["sh", "-c", script]));
        assert_exit(&out, 4);
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("1 ") && l.contains("/httpd -f -p 8080")),
            "{node}: the task's own process as PID 1: {text}"
        );
        for file in ["httpd", "sleep", "true"] {
            assert!(lines.contains(&file), "{node}: /proc/1/root/{file}: {text}");
        }
        let sums: Vec<&str> = lines
            .iter()
            .filter(|l| l.ends_with("  -"))
            .copied()
            .collect();
        assert_eq!(sums.len(), 2, "{node}: {text}\n{}", out.stderr_str());
        assert_eq!(sums[0], sums[1], "{node}: served and read differ");
        // The task's container itself was not changed: still no shell in it.
        let out = task_exec(&[], &at, &["sh", "-c", "true"]);
        assert_ne!(
            out.code,
            0,
            "a shell appeared in the task: {}",
            out.stdout_str()
        );
    }
    // Stdin whole, a command that is not found (as `docker run` reports it), no command
    // given (sh, which reads the input).
    let at = svc.at(remote_worker());
    let out = swarm_exec_stdin(&debug_args(&["-i"], &at, &["wc", "-c"]), "12345");
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str().trim(), "5");
    let out = swarm_exec(&debug_args(&[], &at, &["no-such-program"]));
    assert_exit(&out, 127);
    let out = swarm_exec_stdin(&debug_args(&["-i"], &at, &[]), "echo from-sh; exit 6");
    assert_exit(&out, 6);
    assert_eq!(out.stdout_str(), "from-sh\n");
    assert!(svc.helpers().is_empty(), "helper left: {:?}", svc.helpers());
    no_container_beside(&svc, "debug");
}

#[test]
fn a_debug_shell_in_a_terminal() {
    let svc = scratch_server();
    let at = svc.at(remote_worker());
    let inner = format!("\"$SX\" debug -it --image {TARGET_IMAGE} {at}");
    let keys: &[(u64, &[u8])] = &[(0, b"ps -o pid,args; exit 5\r")];
    let out = in_a_terminal(&inner, keys);
    assert_exit(&out, 5);
    assert!(
        out.stdout_str().contains("/httpd -f -p 8080"),
        "{}",
        out.stdout_str()
    );
    no_session_left(&svc.name);
    no_container_beside(&svc, "debug");
}

#[test]
fn timeouts_interrupts_and_missing_images_leave_nothing() {
    let svc = scratch_server();
    let at = svc.at(remote_worker());
    let out = swarm_exec(&debug_args(&["--timeout", "3s"], &at, &["sleep", "60"]));
    assert_exit(&out, 124);
    let child = spawn_swarm_exec(&debug_args(&[], &at, &["sleep", "60"]));
    svc.await_helper();
    // The debug container is there while its command runs.
    eventually("the debug container", Duration::from_secs(30), || {
        (!containers_beside(&svc, "debug", false).is_empty()).then_some(())
    });
    kill(&child, "INT");
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, 130, "{}", out.stderr_str());
    // An image no node has, and nothing can pull: 125, naming the node.
    let out = swarm_exec(&[
        "debug",
        "--image",
        "swarm-exec-lab/no-such-image:1",
        &at,
        "--",
        "true",
    ]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, &format!("on node {}", remote_worker()));
    assert_stderr_has(&out, "swarm-exec-lab/no-such-image:1");
    // A bad image reference creates nothing.
    let out = swarm_exec(&["debug", "--image", "Not An Image", &at]);
    assert_exit(&out, 125);
    assert!(svc.helpers().is_empty(), "helper left: {:?}", svc.helpers());
    no_container_beside(&svc, "debug");
}
