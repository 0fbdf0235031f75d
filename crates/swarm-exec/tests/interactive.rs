//! `task-exec -it`: a terminal session, driven through `script` (a real pseudo-terminal),
//! into a task on the engine swarm-exec talks to (the lab's manager, node1).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Runs `inner` (a shell line) under `script`, on a terminal of 40 rows and 100 columns
/// that becomes 30 × 90 three seconds in; types each `(after, text)` of `keys` at its
/// time. Returns what the terminal showed and the exit code.
fn in_a_terminal(inner: &str, keys: &[(u64, &[u8])]) -> Output {
    let line = format!(
        "stty rows 40 cols 100; stty -g > \"$SX_DIR/before\"; \
         (sleep 3; stty rows 30 cols 90 < /dev/tty) & {inner}; rc=$?; \
         stty -g > \"$SX_DIR/after\"; exit $rc"
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
    let mut stdin = child.stdin.take().unwrap();
    let keys: Vec<(u64, Vec<u8>)> = keys.iter().map(|(t, k)| (*t, k.to_vec())).collect();
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        for (at, k) in keys {
            let wait = Duration::from_millis(at).saturating_sub(start.elapsed());
            std::thread::sleep(wait);
            let _ = stdin.write_all(&k).and_then(|()| stdin.flush());
        }
        // Held open long after the session: swarm-exec must end with its command, not
        // wait for the end of its input.
        std::thread::sleep(Duration::from_secs(30));
    });
    let out = wait(child, Duration::from_secs(60));
    assert!(
        out.elapsed < Duration::from_secs(25),
        "still there {:?} after the session, with its input open",
        out.elapsed
    );
    let before = std::fs::read_to_string(dir.join("before")).unwrap_or_default();
    let after = std::fs::read_to_string(dir.join("after")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        !before.is_empty(),
        "no terminal settings read: {}",
        out.stdout_str()
    );
    assert_eq!(before, after, "the terminal was not restored");
    out
}

/// A session in `svc`'s task on `node`: typing, the terminal's size and a resize, Ctrl-C to
/// the remote command, its exit code; nothing left behind.
fn a_session_on(svc: &Service, node: &str) {
    let at = svc.at(node);
    let inner = format!("\"$SX\" task-exec -it {at} sh");
    let out = in_a_terminal(
        &inner,
        &[
            (1500, b"echo $((6*7))\r"),
            (2500, b"stty size\r"),
            (5000, b"stty size\r"),
            // Ctrl-C reaches the remote command, not swarm-exec.
            (5500, b"sleep 100\r"),
            (6500, b"\x03"),
            (7000, b"echo after-ctrl-c\r"),
            (7500, b"exit 3\r"),
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
    assert!(
        svc.helpers().is_empty(),
        "helpers left: {:?}",
        svc.helpers()
    );
    // A relay removes itself as it exits; give that a moment.
    eventually("no relay left", Duration::from_secs(10), || {
        relays_of(&svc.name).is_empty().then_some(())
    });
}

#[test]
fn a_terminal_session_in_a_task_on_each_node() {
    // node1, the manager swarm-exec talks to: direct, no helper at all. The workers
    // (Docker 26 and 20): through a relay on the manager and the overlay. One after the
    // other, so that what each leaves is its own.
    for node in ["node1", "node2", "node3"] {
        a_session_on(shared(), node);
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
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        docker_on(2, &["kill", &container])
    });
    let out = in_a_terminal(
        &format!("\"$SX\" task-exec -it {} sh", task.id),
        &[(1500, b"echo ready\r"), (2000, b"sleep 100\r")],
    );
    assert_eq!(
        killer.join().unwrap().code,
        0,
        "could not kill the container"
    );
    assert!(out.stdout_str().contains("ready"), "{}", out.stdout_str());
    assert_ne!(out.code, 0, "a session whose container was killed ended 0");
    eventually("no relay left", Duration::from_secs(10), || {
        relays_of(&svc.name).is_empty().then_some(())
    });
    assert!(svc.helpers().is_empty(), "helpers left");

    // SIGTERM to swarm-exec: 143, and the remote `sleep` is gone.
    let task = svc.on("node3").clone();
    let marker = format!(
        "sleep {}",
        100_000 + u32::from_str_radix(&unique_hex(4), 16).unwrap()
    );
    let inner = format!(
        "\"$SX\" task-exec -it {} sh < /dev/tty & pid=$!; sleep 7; kill -TERM $pid; wait $pid",
        task.id
    );
    let typed = format!("{marker}\r");
    let seen = {
        let (task, marker) = (task.clone(), marker.clone());
        std::thread::spawn(move || await_processes(&task, &[&marker]))
    };
    let out = in_a_terminal(&inner, &[(2000, typed.as_bytes())]);
    seen.join().expect("the remote command ran");
    assert_exit(&out, 143);
    await_processes_gone(&task, &[&marker]);
    eventually("no relay left", Duration::from_secs(10), || {
        relays_of(&svc.name).is_empty().then_some(())
    });
    assert!(svc.helpers().is_empty(), "helpers left");
}
