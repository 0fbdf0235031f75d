//! The result channel (issue 12): every byte of the output arrives before an exit code is
//! given, however large or slowly read; nothing readable is left on the node or in the
//! helper's spec; lost output is never a success (that test cuts a node off, so it is in
//! `serial.rs`).
//!
//! node2's daemon logs nothing by default and node3's rotates every log at 1 MB (see
//! `scripts/lab`): the helper must carry its output whole through both.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::*;

/// Bulk runs move hundreds of MB through the log path (~10 MB/s per helper); the tests run
/// the debug binary, beside other tests.
const BULK: Duration = Duration::from_secs(300);

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A command that writes `make` (a shell pipeline) to a file in the target, prints the
/// file's sha256 on stderr and the file on stdout.
fn emit(make: &str) -> String {
    format!("{make} > /tmp/sx-blob && sha256sum < /tmp/sx-blob >&2 && cat /tmp/sx-blob; rc=$?; rm -f /tmp/sx-blob; exit $rc")
}

/// The sha256 the command printed on stderr (`sha256sum`'s first word).
fn printed_sha(out: &Output) -> String {
    out.stderr_str()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The container of `helper` on node3, once `docker ps -q FILTERS` lists it (waiting for
/// `what` at most `secs` seconds).
fn helper_container(helper: &str, filters: &[&str], what: &str, secs: u64) -> String {
    let helper_id = docker_ok(&["service", "inspect", "-f", "{{.ID}}", helper]);
    let of_helper = format!("label=com.docker.swarm.service.id={helper_id}");
    let ps = [&["ps", "-q", "--filter", &of_helper], filters].concat();
    eventually(what, Duration::from_secs(secs), || {
        let id = docker_on(3, &ps).stdout_str().trim().to_owned();
        (!id.is_empty()).then_some(id)
    })
}

#[test]
fn bulk_random_and_text_arrive_whole_with_their_exit_code() {
    let svc = shared();
    for (node, make, len) in [
        // Through a daemon that rotates logs at 1 MB: the helper's own log options hold.
        ("node3", "head -c 200000000 /dev/urandom", 200_000_000),
        // Through a daemon whose default log driver is none.
        (
            "node2",
            "yes 'a line of text, much like a dump has' | head -c 200000000",
            200_000_000,
        ),
    ] {
        let (at, script) = (svc.at(node), emit(make));
        let args = task_exec_args(&[], &at, &sh(&script));
        let out = wait(spawn_swarm_exec(&args), BULK);
        assert_eq!(out.code, 0, "{node}: {}", out.stderr_str());
        assert_eq!(out.stdout.len(), len, "{node}");
        assert_eq!(sha(&out.stdout), printed_sha(&out), "{node}");
    }
}

#[test]
fn a_reader_that_starts_late_still_gets_every_byte() {
    let svc = shared();
    let script = emit("head -c 30000000 /dev/urandom");
    let mut child = spawn_swarm_exec(&task_exec_args(&[], &svc.at("node2"), &sh(&script)));
    let err = read_in_background(child.stderr.take().unwrap());
    // The helper is long done before anyone reads.
    thread::sleep(Duration::from_secs(15));
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.len(), 30_000_000);
    assert_eq!(
        sha(&stdout),
        stderr.split_whitespace().next().unwrap_or_default()
    );
}

#[test]
fn output_that_cannot_be_written_is_never_a_success() {
    let svc = shared();
    let full = std::fs::File::create("/dev/full").unwrap();
    let child = Command::new(SWARM_EXEC)
        .args(["task-exec", &svc.at("node3"), "echo", "hello"])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("writing the command's output"), "{err}");
    // A reader that closes the pipe early is the reader's choice, as with any tool.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} task-exec {} sh -c 'yes | head -c 5000000' | head -c 10",
            SWARM_EXEC,
            svc.at("node2")
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"y\ny\ny\ny\ny\n");
}

#[test]
fn nothing_of_the_run_is_readable_in_the_spec_on_the_node_or_in_its_logs() {
    let svc = Service::global();
    // The marker only exists once the command runs: the command's text says MARK$((...)).
    let script = "for i in 1 2 3 4 5 6 7 8; do echo MARK$((6*7))ER-$i; sleep 1; done";
    let env = ["-e", "SX_SECRET_VALUE=hunter-7f3a"];
    let child = spawn_swarm_exec(&task_exec_args(&env, &svc.at("node3"), &sh(script)));
    let helper = svc.await_helper();
    // Running, with output written.
    thread::sleep(Duration::from_secs(4));
    let spec = docker_ok(&["service", "inspect", &helper]);
    let container = helper_container(&helper, &[], "the helper's container", 10);
    let config = docker_on(3, &["inspect", &container]).stdout_str();
    let top = docker_on(3, &["top", &container, "-o", "args"]).stdout_str();
    let logs = docker(&["service", "logs", "--raw", &helper]).stdout_str();
    for (what, text) in [
        ("spec", &spec),
        ("container", &config),
        ("ps", &top),
        ("logs", &logs),
    ] {
        for secret in ["hunter-7f3a", "SX_SECRET_VALUE", "MARK", "sleep 1"] {
            assert!(
                !text.contains(secret),
                "{secret} in the helper's {what}: {text}"
            );
        }
    }
    assert!(
        logs.contains("swx2 "),
        "the helper's log holds its frames: {logs}"
    );
    // No file of the node's engine holds the output in clear.
    let data = format!("{}/node3/data", lab_dir());
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", "--devices=skip", "MARK42ER", &data])
        .output()
        .unwrap();
    assert_eq!(
        grep.status.code(),
        Some(1),
        "output in clear under {data}: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        (1..=8)
            .map(|i| format!("MARK42ER-{i}\n"))
            .collect::<String>()
    );
    assert!(svc.helpers().is_empty());
}

#[test]
fn service_exec_brings_every_tasks_bulk_output_whole() {
    let svc = Service::replicated(6);
    let make = "head -c 37500000 /dev/urandom | base64";
    let script = emit(make);
    let args = service_exec_args(&[], &svc.name, &sh(&script));
    let out = wait(spawn_swarm_exec(&args), BULK);
    assert_exit(&out, 0);
    // Lines come prefixed `NAME.SLOT@NODE | `; put each task's stdout back together.
    let mut streams: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for line in out.stdout.split_inclusive(|&b| b == b'\n') {
        let text = std::str::from_utf8(line).expect("base64 text");
        let (prefix, rest) = text.split_once(" | ").expect("a prefixed line");
        streams
            .entry(prefix.to_owned())
            .or_default()
            .extend_from_slice(rest.as_bytes());
    }
    let mut sums: std::collections::BTreeMap<String, String> = Default::default();
    for line in out.stderr_str().lines() {
        if let Some((prefix, rest)) = line.split_once(" | ") {
            if let Some(sum) = rest.split_whitespace().next().filter(|s| s.len() == 64) {
                sums.insert(prefix.to_owned(), sum.to_owned());
            }
        }
    }
    assert_eq!(streams.len(), 6, "{:?}", streams.keys());
    for (task, bytes) in &streams {
        assert_eq!(bytes.len(), 50_657_895, "{task}");
        assert_eq!(Some(&sha(bytes)), sums.get(task), "{task}");
    }
    assert!(svc.helpers().is_empty());
}
