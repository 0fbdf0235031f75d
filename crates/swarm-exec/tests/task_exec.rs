//! `swarm-exec task-exec` against the lab swarm: exit codes, output, targets, cleanup.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::*;

#[test]
fn exit_codes_pass_through_from_a_worker() {
    let svc = shared();
    for (node, code) in [("node2", 0), ("node3", 1), ("node2", 7), ("node3", 255)] {
        let out = task_exec(&[], &svc.at(node), &sh(&format!("exit {code}")));
        assert_eq!(out.code, code, "{node}: {}", out.stderr_str());
        assert!(out.stderr.is_empty(), "{}", out.stderr_str());
    }
}

#[test]
fn runs_in_the_named_task_on_its_node() {
    let svc = shared();
    for task in &svc.tasks {
        let container = container_of(&task.id);
        // A container's hostname is its short ID.
        let out = task_exec(&[], &task.id, &["cat", "/etc/hostname"]);
        assert_exit(&out, 0);
        let host = out.stdout_str();
        assert_eq!(host.trim(), &container[..12], "task on {}", task.node);
    }
}

#[test]
fn command_that_does_not_exist() {
    // Docker <= 27 reports 126 for this, Docker >= 28 reports 127: each node's engine says
    // which it is (the lab's nodes run different ones).
    for n in 1..=3 {
        let version = docker_on(n, &["version", "-f", "{{.Server.Version}}"]).stdout_str();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or_else(|| panic!("node{n}'s engine version {version:?}"));
        let expected = if major >= 28 { 127 } else { 126 };
        let out = task_exec(
            &[],
            &shared().at(&format!("node{n}")),
            &["no-such-command-here"],
        );
        assert_eq!(
            out.code,
            expected,
            "node{n}, Docker {}: {}",
            version.trim(),
            out.stderr_str()
        );
        let all = out.stdout_str() + &out.stderr_str();
        assert!(all.contains("no-such-command-here"), "{all}");
    }
    // Through a shell it is the shell's own 127.
    let out = task_exec(&[], &shared().at("node3"), &sh("no-such-command-here"));
    assert_exit(&out, 127);
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let script = "echo to-out; echo to-err >&2; printf tail";
    let out = task_exec(&[], &shared().at("node3"), &sh(script));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"to-out\ntail");
    assert_eq!(out.stderr, b"to-err\n");
}

#[test]
fn arguments_are_passed_verbatim_without_a_shell() {
    let command = ["printf", "[%s]", "a b", "$HOME", "; ls", "-e", "'q'"];
    let out = task_exec(&[], &shared().at("node2"), &command);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "[a b][$HOME][; ls][-e]['q']");
}

#[test]
fn options_reach_the_exec() {
    let options = ["-e", "GREETING=hello world", "-w", "/tmp", "-u", "65534"];
    let script = "echo \"$GREETING\"; pwd; id -u";
    let out = task_exec(&options, &shared().at("node2"), &sh(script));
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "hello world\n/tmp\n65534\n");
}

#[test]
fn megabytes_of_binary_output_arrive_byte_exact() {
    let svc = shared();
    let blob = format!("/tmp/blob-{}", uuid::Uuid::new_v4().simple());
    let script =
        format!("head -c 1500000 /dev/urandom > {blob}; cat {blob}; printf '\\377\\376\\000end'");
    let out = task_exec(&[], &svc.at("node3"), &sh(&script));
    assert_exit(&out, 0);
    assert_eq!(out.stdout.len(), 1_500_000 + 6);
    assert!(out.stdout.ends_with(b"\xff\xfe\x00end"));
    let digest = format!("{:x}", Sha256::digest(&out.stdout[..1_500_000]));
    let script = format!("sha256sum {blob}; rm {blob}");
    let check = task_exec(&[], &svc.at("node3"), &sh(&script));
    assert_exit(&check, 0);
    let sum = check.stdout_str();
    assert!(sum.starts_with(&digest), "{sum} vs {digest}");
}

#[test]
fn task_by_id_prefix_and_by_slot() {
    let svc = Service::replicated(3);
    for task in &svc.tasks {
        let by_prefix = task_exec(&[], &task.id[..12], &["hostname"]);
        let by_slot = task_exec(&[], &format!("{}.{}", svc.name, task.slot), &["hostname"]);
        assert_exit(&by_prefix, 0);
        assert_exit(&by_slot, 0);
        assert_eq!(by_prefix.stdout, by_slot.stdout);
    }
    // The three tasks are three different containers.
    let mut hosts: Vec<String> = svc
        .tasks
        .iter()
        .map(|t| task_exec(&[], &t.id, &["hostname"]).stdout_str())
        .collect();
    hosts.dedup();
    assert_eq!(hosts.len(), 3);
}

#[test]
fn unknown_and_unfit_tasks_fail_with_125_and_a_clear_message() {
    // Its own service, so that no other test's helper counts as a leftover of this one.
    let svc = &Service::global();
    let cases = [
        ("zzzzzzzzzzzz", "no task matches zzzzzzzzzzzz"),
        ("no-such-service.1", "no service named no-such-service"),
        (&format!("{}.1", svc.name), "is global"),
        (&format!("{}@node9", svc.name), "no node named node9"),
        ("web.1; ls", "invalid"),
        ("x==y", "invalid"),
        ("../etc", "invalid"),
    ];
    for (task, expected) in cases {
        let out = task_exec(&[], task, &["true"]);
        assert_eq!(out.code, 125, "{task}");
        let err = out.stderr_str();
        assert!(err.contains(expected), "{task}: {err}");
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn timeout_exits_124_and_removes_the_helper() {
    let svc = Service::global();
    let out = task_exec(&["--timeout", "3s"], &svc.at("node2"), &["sleep", "60"]);
    assert_exit(&out, 124);
    assert_stderr_has(&out, "timed out");
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(svc.helpers().is_empty(), "helper left: {:?}", svc.helpers());
}

#[test]
fn sigint_and_sigterm_remove_the_helper() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let svc = Service::global();
        let at = svc.at(remote_worker());
        let child = spawn_swarm_exec(&task_exec_args(&[], &at, &["sleep", "60"]));
        svc.await_helper();
        docker_ok(&["version", "--format", "{{.Server.Version}}"]);
        kill(&child, signal);
        let out = wait(child, Duration::from_secs(30));
        assert_eq!(out.code, code, "{signal}: {}", out.stderr_str());
        // The helper is removed before swarm-exec exits.
        let left = svc.helpers();
        assert!(left.is_empty(), "{signal}: helper left: {left:?}");
    }
}

#[test]
fn runs_from_the_image_on_a_manager_without_installing() {
    let svc = shared();
    let image = format!("swarm-exec:{}", env!("CARGO_PKG_VERSION"));
    let at = svc.at("node2");
    let mut args = vec!["run", "--rm", "--label", "swarm-exec.test=e2e"];
    let sock = "/var/run/docker.sock:/var/run/docker.sock";
    args.extend(["-v", sock, &image]);
    let script = "echo from-image; exit 5";
    args.extend(task_exec_args(&[], &at, &sh(script)));
    // On node1, which has the image (the workers have none), whichever manager DOCKER_HOST
    // names for the rest.
    let out = docker_on(1, &args);
    assert_exit(&out, 5);
    assert_eq!(out.stdout_str(), "from-image\n");
}

/// Issue 28: a task on the engine swarm-exec talks to (a manager of the lab) is exec'd there
/// directly, as `docker exec` would: no helper and no envelope secret are ever made, and
/// output, stdin and exit code are exact.
#[test]
fn a_task_on_the_clients_own_engine_needs_no_helper() {
    let svc = Service::global();
    let at = svc.at(client_node());
    let child = spawn_swarm_exec_stdin(
        &task_exec_args(
            &["-i"],
            &at,
            &sh("cat; printf 'to stderr' >&2; sleep 2; exit 9"),
        ),
        b"\x00bytes\xff through stdin\n".as_slice(),
    );
    // While it runs: no helper for this service, no secret for its task.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(svc.helpers().is_empty(), "a helper was made");
    assert!(
        swarm_exec_objects("secret", &svc.name).is_empty(),
        "an envelope was made"
    );
    let out = wait(child, Duration::from_secs(60));
    assert_exit(&out, 9);
    assert_eq!(out.stdout, b"\x00bytes\xff through stdin\n");
    assert_eq!(out.stderr_str(), "to stderr");
}

/// Issue 29: every helper names who started it (`SWARM_EXEC_ACTOR`, else user@host) and
/// for which subcommand, never the command; a bad actor is refused before anything exists.
#[test]
fn helpers_name_their_actor_and_subcommand() {
    let svc = Service::global();
    let at = svc.at(remote_worker());
    let args = task_exec_args(&[], &at, &["sh", "-c", "sleep 4; echo secret-arg-done"]);
    let mut cmd = std::process::Command::new(SWARM_EXEC);
    cmd.args(&args)
        .env("SWARM_EXEC_ACTOR", "deploy-pipeline#42");
    let child = spawn_piped(&mut cmd);
    let helper = svc.await_helper();
    let labels = docker_ok(&["service", "inspect", "-f", "{{json .Spec.Labels}}", &helper]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["swarm-exec.actor"], "deploy-pipeline#42", "{labels}");
    assert_eq!(labels["swarm-exec.command"], "task-exec", "{labels}");
    assert!(!labels.to_string().contains("secret-arg"), "{labels}");
    let out = wait(child, Duration::from_secs(60));
    assert_exit(&out, 0);
    let mut cmd = std::process::Command::new(SWARM_EXEC);
    cmd.args(&args).env("SWARM_EXEC_ACTOR", "bad\u{1b}[2J");
    let out = run(&mut cmd);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "SWARM_EXEC_ACTOR");
    assert!(svc.helpers().is_empty());
}

/// Issue 29: `--format json` gives one object at the end, field by field as documented;
/// the exit code is the command's, or 125 when swarm-exec failed (then too an object).
#[test]
fn format_json_is_one_object_with_the_task_and_its_result() {
    let svc = Service::global();
    let worker = remote_worker();
    let at = svc.at(worker);
    let task = svc.on(worker);
    let script = "printf 'out\\n'; printf 'err' >&2; exit 3";
    let out = task_exec(&["--format", "json"], &at, &sh(script));
    assert_exit(&out, 3);
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one object: {}", out.stdout_str());
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["task_id"], task.id.as_str(), "{v}");
    assert_eq!(v["service"], svc.name.as_str(), "{v}");
    assert_eq!(v["name"], at.as_str(), "{v}");
    assert_eq!(v["node"], worker, "{v}");
    assert_eq!(v["container_id"], container_of(&task.id).trim(), "{v}");
    assert_eq!(v["outcome"], "exited", "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["error"], serde_json::Value::Null, "{v}");
    assert_eq!(v["stdout"], "out\n", "{v}");
    assert_eq!(v["stderr"], "err", "{v}");
    assert_eq!(v["stdout_bytes"], 4, "{v}");
    assert_eq!(v["stderr_bytes"], 3, "{v}");
    assert_eq!(v["truncated"], false, "{v}");
    assert!(v["duration_s"].as_f64().is_some_and(|d| d > 0.0), "{v}");
    // Bytes that are not UTF-8 come as base64 too; --max-output cuts and says so.
    let bytes = "printf '\\377\\376abcdefgh'";
    let out = task_exec(&["--format", "json", "--max-output", "4"], &at, &sh(bytes));
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_str(out.stdout_str().trim()).unwrap();
    assert_eq!(v["stdout_base64"], "//5hYg==", "{v}");
    assert_eq!(v["stdout_bytes"], 10, "{v}");
    assert_eq!(v["truncated"], true, "{v}");
    // A task that does not exist: an object saying so, and 125.
    let out = task_exec(&["--format", "json"], "sxt-no-such-task.1", &["true"]);
    assert_exit(&out, 125);
    let v: serde_json::Value = serde_json::from_str(out.stdout_str().trim()).unwrap();
    assert_eq!(v["outcome"], "failed", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("sxt-no-such-task")),
        "{v}"
    );
    // Not with -t.
    let out = task_exec(&["--format", "json", "-t"], &at, &["true"]);
    assert_exit(&out, 125);
}
