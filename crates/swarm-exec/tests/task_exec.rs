//! `swarm-exec task-exec` against the lab swarm: exit codes, output, targets, cleanup.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::*;

#[test]
fn exit_codes_pass_through_from_a_worker() {
    let svc = shared();
    for (node, code) in [("node2", 0), ("node3", 1), ("node2", 7), ("node3", 255)] {
        let out = swarm_exec(&[
            "task-exec",
            &svc.at(node),
            "sh",
            "-c",
            &format!("exit {code}"),
        ]);
        assert_eq!(out.code, code, "{node}: {}", out.stderr_str());
        assert!(out.stderr.is_empty(), "{}", out.stderr_str());
    }
}

#[test]
fn runs_in_the_named_task_on_its_node() {
    let svc = shared();
    for task in &svc.tasks {
        let container = docker_ok(&[
            "inspect",
            "--format",
            "{{.Status.ContainerStatus.ContainerID}}",
            &task.id,
        ]);
        // A container's hostname is its short ID.
        let out = swarm_exec(&["task-exec", &task.id, "cat", "/etc/hostname"]);
        assert_eq!(out.code, 0, "{}", out.stderr_str());
        assert_eq!(
            out.stdout_str().trim(),
            &container[..12],
            "task on {}",
            task.node
        );
    }
}

#[test]
fn command_that_does_not_exist() {
    let out = swarm_exec(&["task-exec", &shared().at("node2"), "no-such-command-here"]);
    // Docker <= 27 reports 126 for this, Docker >= 28 reports 127.
    assert!(
        matches!(out.code, 126 | 127),
        "code {}: {}",
        out.code,
        out.stderr_str()
    );
    let all = out.stdout_str() + &out.stderr_str();
    assert!(all.contains("no-such-command-here"), "{all}");
    // Through a shell it is the shell's own 127.
    let out = swarm_exec(&[
        "task-exec",
        &shared().at("node3"),
        "sh",
        "-c",
        "no-such-command-here",
    ]);
    assert_eq!(out.code, 127, "{}", out.stderr_str());
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let out = swarm_exec(&[
        "task-exec",
        &shared().at("node3"),
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; printf tail",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout, b"to-out\ntail");
    assert_eq!(out.stderr, b"to-err\n");
}

#[test]
fn arguments_are_passed_verbatim_without_a_shell() {
    let out = swarm_exec(&[
        "task-exec",
        &shared().at("node2"),
        "printf",
        "[%s]",
        "a b",
        "$HOME",
        "; ls",
        "-e",
        "'q'",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "[a b][$HOME][; ls][-e]['q']");
}

#[test]
fn options_reach_the_exec() {
    let out = swarm_exec(&[
        "task-exec",
        "-e",
        "GREETING=hello world",
        "-w",
        "/tmp",
        "-u",
        "65534",
        &shared().at("node2"),
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "hello world\n/tmp\n65534\n");
}

#[test]
fn megabytes_of_binary_output_arrive_byte_exact() {
    let svc = shared();
    let blob = format!("/tmp/blob-{}", uuid::Uuid::new_v4().simple());
    let script =
        format!("head -c 1500000 /dev/urandom > {blob}; cat {blob}; printf '\\377\\376\\000end'");
    let out = swarm_exec(&["task-exec", &svc.at("node3"), "sh", "-c", &script]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout.len(), 1_500_000 + 6);
    assert!(out.stdout.ends_with(b"\xff\xfe\x00end"));
    let digest = format!("{:x}", Sha256::digest(&out.stdout[..1_500_000]));
    let check = swarm_exec(&[
        "task-exec",
        &svc.at("node3"),
        "sh",
        "-c",
        &format!("sha256sum {blob}; rm {blob}"),
    ]);
    assert_eq!(check.code, 0, "{}", check.stderr_str());
    assert!(
        check.stdout_str().starts_with(&digest),
        "{} vs {}",
        check.stdout_str(),
        digest
    );
}

#[test]
fn task_by_id_prefix_and_by_slot() {
    let svc = Service::replicated(3);
    for task in &svc.tasks {
        let prefix = &task.id[..12];
        let by_prefix = swarm_exec(&["task-exec", prefix, "hostname"]);
        let by_slot = swarm_exec(&[
            "task-exec",
            &format!("{}.{}", svc.name, task.slot),
            "hostname",
        ]);
        assert_eq!(by_prefix.code, 0, "{}", by_prefix.stderr_str());
        assert_eq!(by_slot.code, 0, "{}", by_slot.stderr_str());
        assert_eq!(by_prefix.stdout, by_slot.stdout);
    }
    // The three tasks are three different containers.
    let mut hosts: Vec<String> = svc
        .tasks
        .iter()
        .map(|t| swarm_exec(&["task-exec", &t.id, "hostname"]).stdout_str())
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
        let out = swarm_exec(&["task-exec", task, "true"]);
        assert_eq!(out.code, 125, "{task}");
        assert!(
            out.stderr_str().contains(expected),
            "{task}: {}",
            out.stderr_str()
        );
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn timeout_exits_124_and_removes_the_helper() {
    let svc = Service::global();
    let out = swarm_exec(&[
        "task-exec",
        "--timeout",
        "3s",
        &svc.at("node2"),
        "sleep",
        "60",
    ]);
    assert_eq!(out.code, 124, "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("timed out"),
        "{}",
        out.stderr_str()
    );
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    assert!(svc.helpers().is_empty(), "helper left: {:?}", svc.helpers());
}

#[test]
fn sigint_and_sigterm_remove_the_helper() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let svc = Service::global();
        let child = spawn_swarm_exec(&["task-exec", &svc.at("node3"), "sleep", "60"]);
        let pid = child.id().to_string();
        eventually("the helper to exist", Duration::from_secs(30), || {
            (!svc.helpers().is_empty()).then_some(())
        });
        docker_ok(&["version", "--format", "{{.Server.Version}}"]);
        let kill = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = wait(child, Duration::from_secs(30));
        assert_eq!(out.code, code, "{signal}: {}", out.stderr_str());
        // The helper is removed before swarm-exec exits.
        assert!(
            svc.helpers().is_empty(),
            "{signal}: helper left: {:?}",
            svc.helpers()
        );
    }
}

#[test]
fn runs_from_the_image_on_a_manager_without_installing() {
    let svc = shared();
    let image = format!("swarm-exec:{}", env!("CARGO_PKG_VERSION"));
    let out = docker(&[
        "run",
        "--rm",
        "--label",
        "swarm-exec.test=e2e",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        &image,
        "task-exec",
        &svc.at("node2"),
        "sh",
        "-c",
        "echo from-image; exit 5",
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "from-image\n");
}
