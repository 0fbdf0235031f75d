//! Faults, load and bad input (issue 5), in the shared end-to-end binary: each test has its
//! own target service, so the others' helpers never count as its leftovers. Faults that
//! take an engine away run alone, in tests/serial.rs.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

#[test]
fn sigkilled_client_leaves_a_helper_that_gc_removes_after_its_deadline() {
    let svc = Service::global();
    let at = svc.at("node2");
    let child = spawn_swarm_exec(&task_exec_args(&["--timeout", "8s"], &at, &["sleep", "60"]));
    svc.await_helper();
    kill(&child, "KILL");
    let out = wait(child, Duration::from_secs(10));
    assert_eq!(out.code, -1, "killed by a signal");
    let left = svc.helpers();
    let why = "the killed client could not remove its helper";
    assert_eq!(left.len(), 1, "{why}");
    // Before its deadline, gc leaves it alone: it may still be at work.
    let gc = swarm_exec(&["gc"]);
    assert_exit(&gc, 0);
    assert_eq!(svc.helpers(), left);
    // After it, the helper's own process has given up (and stopped the command): gc removes it.
    // (gc leaves a helper alone until 15 s after its budget, on the manager's clock.)
    thread::sleep(Duration::from_secs(30));
    let gc = swarm_exec(&["gc"]);
    assert_exit(&gc, 0);
    // This gc took it, or another test's plain gc took it a moment before: either way after
    // its deadline, which no gc may do before (above).
    assert!(svc.helpers().is_empty(), "{}", gc.stdout_str());
    await_processes_gone(svc.on("node2"), &["sleep 60"]);
}

#[test]
fn timeout_stops_a_daemonized_child_too() {
    let svc = Service::global();
    // The inner shell starts a detached `sleep 303` and exits: it is reparented to the
    // container's init, out of the command's process tree, and must still be stopped.
    // On a worker (a helper) and on the manager swarm-exec talks to (directly, issue 28).
    for (node, n) in [("node2", 303), ("node1", 313)] {
        let script = format!(
            "sh -c 'setsid sleep {n} </dev/null >/dev/null 2>&1 &'; sleep {}",
            n + 1
        );
        let at = svc.at(node);
        let child = spawn_swarm_exec(&task_exec_args(&["--timeout", "6s"], &at, &sh(&script)));
        let sleeps = [format!("sleep {n}"), format!("sleep {}", n + 1)];
        let sleeps = [sleeps[0].as_str(), sleeps[1].as_str()];
        await_processes(svc.on(node), &sleeps);
        let out = wait(child, Duration::from_secs(60));
        assert_exit(&out, 124);
        await_processes_gone(svc.on(node), &sleeps);
        assert!(svc.helpers().is_empty(), "{node}");
    }
}

#[test]
fn timeout_and_signals_stop_the_command_in_the_target() {
    let svc = Service::global();
    // --timeout: 124, the helper gone, and the command (and its children) stopped.
    let script = "sleep 61; echo never";
    let out = task_exec(&["--timeout", "2s"], &svc.at("node3"), &sh(script));
    assert_exit(&out, 124);
    assert!(svc.helpers().is_empty());
    await_processes_gone(svc.on("node3"), &["sleep 61"]);
    // SIGINT and SIGTERM: 130 and 143 within 2 s, the helper gone, the command stopped.
    for (signal, code, node) in [("INT", 130, "node2"), ("TERM", 143, "node3")] {
        let marker = format!("sleep 6{code}");
        let child = spawn_swarm_exec(&task_exec_args(&[], &svc.at(node), &sh(&marker)));
        await_processes(svc.on(node), &[marker.as_str()]);
        let sent = Instant::now();
        kill(&child, signal);
        let out = wait(child, Duration::from_secs(30));
        assert_eq!(out.code, code, "{signal}: {}", out.stderr_str());
        let took = sent.elapsed();
        assert!(took < Duration::from_secs(2), "{signal}: {took:?}");
        assert!(svc.helpers().is_empty(), "{signal}");
        await_processes_gone(svc.on(node), &[marker.as_str()]);
    }
}

#[test]
fn target_container_dying_mid_exec_is_a_clear_failure() {
    let svc = Service::global();
    let task = svc.on("node2").clone();
    let container = container_of(&task.id);
    let child = spawn_swarm_exec(&task_exec_args(&[], &task.id, &["sleep", "30"]));
    await_processes(&task, &["sleep 30"]);
    assert_eq!(docker_on(2, &["kill", &container]).code, 0);
    let out = wait(child, Duration::from_secs(60));
    assert_ne!(out.code, 0);
    let (code, err) = (out.code, out.stderr_str());
    assert!(matches!(code, 125 | 137), "{code}: {err}");
    if out.code == 125 {
        assert_stderr_has(&out, &task.id);
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn helper_image_missing_on_the_node_is_a_clear_error() {
    let svc = Service::global();
    // An image only the manager has: nodes cannot pull it from anywhere.
    let tag = format!("sx-only-on-manager:{}", unique_hex(8));
    let dir = std::env::temp_dir().join(format!("sx-img-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("unique"), uuid::Uuid::new_v4().to_string()).unwrap();
    let mut tar = Command::new("tar")
        .args(["-C", dir.to_str().unwrap(), "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let imported = Command::new("docker")
        .args(["-H", &node_socket(1), "import", "-", &tag])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let out = task_exec(&["--image", &tag], &svc.at("node3"), &["true"]);
    let _ = docker_on(1, &["image", "rm", &tag]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_exit(&out, 125);
    let err = out.stderr_str();
    assert!(
        err.contains("rejected") && err.contains("node3") && err.contains("No such image"),
        "{err}"
    );
    assert!(svc.helpers().is_empty());
}

#[test]
fn gc_touches_only_what_swarm_exec_made() {
    lab();
    let hex = &unique_hex(12);
    let users = format!("sxt-users-{hex}");
    let lookalike = format!("swarm-exec-{hex}");
    // A user's service that carries the label, and a helper-looking one without a budget.
    let socket = "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock";
    for (name, value, command) in [
        (&users, "allowed", vec!["sleep", "3600"]),
        (&lookalike, "1", vec!["node-exec", "--tag", "x"]),
    ] {
        let helper_label = format!("swarm-exec.helper={value}");
        let options = [
            "--label",
            &helper_label,
            "--restart-condition",
            "none",
            "--mount",
            socket,
        ];
        create_service(name, &options, &command);
    }
    let exists = |name: &str| docker(&["service", "inspect", name]).code == 0;
    let gc = swarm_exec(&["gc"]);
    assert_exit(&gc, 0);
    assert!(!gc.stdout_str().contains(hex), "{}", gc.stdout_str());
    let dry = swarm_exec(&["gc", "--all", "--dry-run"]);
    assert_exit(&dry, 0);
    assert_stdout_has(&dry, &format!("would remove service {lookalike}"));
    let listed = dry.stdout_str();
    assert!(!listed.contains(&users), "{listed}");
    assert!(!listed.contains("removed"), "{listed}");
    assert!(exists(&users) && exists(&lookalike));
    docker_ok(&["service", "rm", &users, &lookalike]);
}

#[test]
fn bad_cli_input_is_refused_with_125_and_nothing_is_created() {
    let svc = Service::global();
    let at = svc.at("node2");
    // A single argument may hold at most 128 KiB (MAX_ARG_STRLEN).
    let huge = "x".repeat(100_000);
    let os = |v: &[u8]| OsString::from_vec(v.to_vec());
    let s = |v: &str| OsString::from(v);
    let cases: Vec<Vec<OsString>> = vec![
        vec![s("task-exec"), s(""), s("true")],
        vec![s("task-exec"), s(&huge), s("true")],
        vec![s("task-exec"), os(b"web\xff.1"), s("true")],
        vec![s("task-exec"), s(&at), os(b"echo\xff")],
        vec![s("task-exec"), s(&at), s("echo"), os(b"\xfe")],
        vec![s("task-exec"), s(&format!("{at}; ls")), s("true")],
        vec![s("task-exec"), s(&format!("{}.1==x", svc.name)), s("true")],
        vec![s("task-exec"), s("node.id==abc"), s("true")],
        vec![s("task-exec"), s("../../etc"), s("true")],
        vec![
            s("task-exec"),
            s(&format!("{}@../node2", svc.name)),
            s("true"),
        ],
        vec![s("task-exec"), s(&at)],
        vec![s("task-exec"), s("--timeout"), s("0"), s(&at), s("true")],
        vec![s("task-exec"), s("--timeout"), s("-1s"), s(&at), s("true")],
        vec![
            s("task-exec"),
            s("--timeout"),
            s("9999999h"),
            s(&at),
            s("true"),
        ],
        vec![s("task-exec"), s("--timeout"), s(""), s(&at), s("true")],
        vec![s("task-exec"), s("-e"), s(""), s(&at), s("true")],
        vec![s("task-exec"), s("-e"), s("=x"), s(&at), s("true")],
        vec![s("task-exec"), s("-w"), s(""), s(&at), s("true")],
        vec![s("task-exec"), s("-u"), s(""), s(&at), s("true")],
        vec![s("task-exec"), s("--image"), s(""), s(&at), s("true")],
        vec![s("service-exec"), s(""), s("true")],
        vec![
            s("service-exec"),
            s(&format!("{}; ls", svc.name)),
            s("true"),
        ],
        vec![
            s("service-exec"),
            s("-f"),
            s("node=../x"),
            s(&svc.name),
            s("true"),
        ],
        vec![
            s("service-exec"),
            s("--parallel"),
            s("0"),
            s(&svc.name),
            s("true"),
        ],
        vec![
            s("service-exec"),
            s("--parallel"),
            s("-1"),
            s(&svc.name),
            s("true"),
        ],
        vec![s("service-exec"), s(&svc.name)],
        vec![s("exec"), s("../x"), s("true")],
        vec![s("task-exec"), s("--no-such-flag"), s(&at), s("true")],
        // (An unknown first word is a plugin action: exit 2, tested with the plugin.)
    ];
    for args in cases {
        let out = swarm_exec(&args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().chars().take(60).collect())
            .collect();
        assert_eq!(out.code, 125, "{shown:?}: {}", out.stderr_str());
        let err = out.stderr_str();
        assert!(
            !err.trim().is_empty() && err.len() < 4000,
            "{shown:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{shown:?}: {err}");
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn bad_plugin_input_is_refused_with_2_and_nothing_is_created() {
    let svc = Service::global();
    let id = svc.on("node2").id.clone();
    let huge = "y".repeat(300_000);
    let inputs = [
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"{huge}"}}"#),
        format!(r#"{{"inst":[{{"id":"{huge}"}}],"command":"true"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"tr\u0000ue"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":["a\u0000"]}}"#),
        format!(r#"{{"inst":[{{"id":"{id}\u0000"}}],"command":"true"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}; ls"}}],"command":"true"}}"#),
        format!(r#"{{"inst":[{{"id":"node.id=={id}"}}],"command":"true"}}"#),
        format!(r#"{{"inst":[{{"id":"../{id}"}}],"command":"true"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"true","timeout":0}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"true","timeout":-30}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"true","timeout":1e300}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"true","timeout":"{huge}"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"true","image":"a\nb"}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":""}}"#),
        format!(r#"{{"inst":[{{"id":"{id}"}}],"command":"   "}}"#),
        "{\"inst\":[], \"command\": \"true\"".to_owned(),
    ];
    for input in &inputs {
        let out = swarm_exec_stdin(&["inst_exec"], input);
        let shown: String = input.chars().take(80).collect();
        assert_eq!(out.code, 2, "{shown}: {}", out.stderr_str());
        assert!(out.stdout.is_empty(), "{shown}");
        assert_eq!(
            out.stderr_str().lines().count(),
            1,
            "{shown}: {}",
            out.stderr_str()
        );
    }
    // Not UTF-8 at all.
    let child = spawn_swarm_exec_stdin(&["inst_exec"], b"{\"inst\": [\xff]}");
    let out = wait(child, Duration::from_secs(30));
    assert_exit(&out, 2);
    assert!(svc.helpers().is_empty());
}

#[test]
fn fifty_concurrent_task_execs_all_get_their_own_result() {
    let svc = Service::global();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let node = ["node1", "node2", "node3"][i % 3];
            let script = format!("echo out-{i}; echo err-{i} >&2; exit {}", i % 7);
            (
                i,
                spawn_swarm_exec(&["task-exec", &svc.at(node), "sh", "-c", &script]),
            )
        })
        .collect();
    for (i, child) in children {
        let out = wait(child, Duration::from_secs(180));
        assert_eq!(out.code, (i % 7) as i32, "#{i}: {}", out.stderr_str());
        assert_eq!(out.stdout_str(), format!("out-{i}\n"), "#{i}");
        // The command's stderr exactly. Under 50 creates at once an engine may fail to
        // start a helper's container before its process runs (EBUSY remounting its
        // secrets); the helper is then replaced, which swarm-exec says, and nothing else.
        let stderr = out.stderr_str();
        let (replaced, rest): (Vec<&str>, Vec<&str>) = stderr.lines().partition(|l| {
            l.starts_with("swarm-exec: warning: ") && l.ends_with("trying a new helper")
        });
        assert!(replaced.len() <= 1, "#{i}: {stderr}");
        assert_eq!(rest, [format!("err-{i}").as_str()], "#{i}");
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn service_exec_over_sixty_tasks() {
    let svc = Service::replicated(60);
    let out = swarm_exec(&[
        "service-exec",
        "--format",
        "json",
        &svc.name,
        "sh",
        "-c",
        "echo $(hostname)",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    let results: Vec<Value> = out
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 60);
    for r in &results {
        assert_eq!(r["exit_code"], 0);
        let container = r["container_id"].as_str().unwrap();
        assert_eq!(r["stdout"], format!("{}\n", &container[..12]));
    }
    assert!(svc.helpers().is_empty());
}
