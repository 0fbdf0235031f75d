//! `swarm-exec service-exec` against the lab swarm: every task, one helper per node,
//! filters, rolling waves, JSON output, exit codes, nothing left behind.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn every_replica_over_three_nodes_with_one_helper_per_node() {
    assert_eq!(client_node(), "node1", "the e2e run goes through node1");
    let svc = Service::replicated(6);
    let nodes: BTreeSet<&str> = svc.tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        3,
        "replicas spread over the 3 nodes: {:?}",
        svc.tasks
    );
    // Count the helpers while the commands run.
    let script = "cut -d' ' -f1 /proc/uptime >&2; sleep 2; echo out-$(hostname); echo err >&2";
    let mut child = spawn_swarm_exec(&["service-exec", &svc.name, "sh", "-c", script]);
    let mut most = 0;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        most = most.max(svc.helpers().len());
        thread::sleep(Duration::from_millis(100));
    }
    let out = wait(child, Duration::from_secs(60));
    assert_exit(&out, 0);
    // The client's own node needs none: its tasks are exec'd directly.
    assert_eq!(most, 2, "one helper per other node, not one per task");
    // Every task answered once, on stdout, with the `docker service logs` prefix.
    let lines: BTreeSet<String> = out.stdout_str().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout_str());
    for t in &svc.tasks {
        let prefix = format!("{}.{}@{} | out-", svc.name, t.slot, t.node);
        assert!(
            lines.iter().any(|l| l.starts_with(&prefix)),
            "{prefix}: {lines:?}"
        );
        assert_stderr_has(&out, &format!("{}.{}@{} | err", svc.name, t.slot, t.node));
    }
    // All six ran at once: their 2 s runs overlap (the lab's nodes share one kernel, so
    // /proc/uptime is one clock).
    let starts: Vec<f64> = out
        .stderr_str()
        .lines()
        .filter_map(|l| l.split_once(" | ")?.1.parse().ok())
        .collect();
    assert_eq!(starts.len(), 6, "{}", out.stderr_str());
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 2.0, "{starts:?}");
    assert!(svc.helpers().is_empty());
}

#[test]
fn one_failing_replica_fails_the_run_and_is_named() {
    let svc = Service::replicated(6);
    let victim = &svc.tasks[3];
    let host = container_of(&victim.id);
    let script = format!("[ $(hostname) != {} ] || exit 9", &host[..12]);
    let out = service_exec(&[], &svc.name, &sh(&script));
    assert_exit(&out, 1);
    let err = out.stderr_str();
    assert!(err.contains("1 of 6 tasks did not succeed"), "{err}");
    assert!(
        err.contains(&format!(
            "{}.{}@{} (task {}): exited with 9",
            svc.name, victim.slot, victim.node, victim.id
        )),
        "{err}"
    );
    assert!(svc.helpers().is_empty());
}

#[test]
fn filters_select_by_node_slot_and_label() {
    let svc = Service::replicated(6);
    let names = |args: &[&str]| -> BTreeSet<String> {
        let options = [&["--format", "json"], args].concat();
        let out = service_exec(&options, &svc.name, &["true"]);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr_str());
        json_lines(&out)
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let expect = |pred: &dyn Fn(&Task) -> bool| -> BTreeSet<String> {
        svc.tasks
            .iter()
            .filter(|t| pred(t))
            .map(|t| format!("{}.{}@{}", svc.name, t.slot, t.node))
            .collect()
    };
    assert_eq!(names(&["-f", "node=node3"]), expect(&|t| t.node == "node3"));
    assert_eq!(
        names(&["-f", "node=node2", "-f", "node=node3"]),
        expect(&|t| t.node != "node1")
    );
    assert_eq!(
        names(&["-f", "slot=2", "-f", "slot=5"]),
        expect(&|t| t.slot == "2" || t.slot == "5")
    );
    // Different keys must all match; an empty selection is an error, checked below.
    let both = expect(&|t| (t.slot == "2" || t.slot == "5") && t.node != "node1");
    if !both.is_empty() {
        assert_eq!(
            names(&[
                "-f",
                "slot=2",
                "-f",
                "slot=5",
                "-f",
                "node=node2",
                "-f",
                "node=node3"
            ]),
            both
        );
    }
    // Container labels: the test services carry swarm-exec.test=e2e.
    assert_eq!(names(&["-f", "label=swarm-exec.test"]).len(), 6);
    assert_eq!(names(&["-f", "label=swarm-exec.test=e2e"]).len(), 6);
    let out = service_exec(&["-f", "label=swarm-exec.test=other"], &svc.name, &["true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "no running task");
    for bad in ["node", "slot=0", "slot=x", "color=red", "label="] {
        let out = service_exec(&["-f", bad], &svc.name, &["true"]);
        assert_eq!(out.code, 125, "{bad}");
        let err = out.stderr_str();
        assert!(err.contains("invalid --filter"), "{bad}: {err}");
    }
    assert!(svc.helpers().is_empty());
}

/// Also issue 25: each task's object is printed as soon as that task has ended, not when
/// the last one has.
#[test]
fn global_service_and_json_output() {
    use std::io::BufRead as _;
    let svc = Service::global();
    // node2's task takes its time.
    let slow = container_of(&svc.on("node2").id);
    docker_on(2, &["exec", &slow, "touch", "/tmp/sx-slow"]);
    let script = "test -e /tmp/sx-slow && sleep 8; printf 'o\\n'; printf 'e' >&2; exit 4";
    let mut child = spawn_swarm_exec(&service_exec_args(
        &["--format", "json"],
        &svc.name,
        &sh(script),
    ));
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let running = child.try_wait().unwrap().is_none();
    let first: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_ne!(first["node"], "node2", "{first}");
    assert!(running, "the first object came only at the end: {first}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut out = wait(child, Duration::from_secs(60));
    out.stdout = format!("{first}\n{rest}").into_bytes();
    assert_exit(&out, 1);
    let results = json_lines(&out);
    assert_eq!(results.last().unwrap()["node"], "node2");
    assert_eq!(results.len(), 3, "{}", out.stdout_str());
    let ids: BTreeSet<&str> = results
        .iter()
        .map(|v| v["task_id"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = svc.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, expected);
    for v in &results {
        let node = v["node"].as_str().unwrap();
        assert_eq!(v["name"], format!("{}@{node}", svc.name));
        assert_eq!(v["slot"], Value::Null);
        assert_eq!(v["service"], svc.name);
        assert_eq!(v["exit_code"], 4);
        assert_eq!(v["outcome"], "exited");
        assert_eq!(v["stdout"], "o\n");
        assert_eq!(v["stderr"], "e");
        assert_eq!(v["container_id"].as_str().unwrap().len(), 64);
        assert!(v["duration_s"].as_f64().unwrap() > 0.0);
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn json_output_is_bounded_and_keeps_bytes_that_are_not_utf8() {
    let svc = shared();
    let on2 = format!("node={}", svc.on("node2").node);
    let bounded = ["--format", "json", "--max-output", "1K", "--filter", &on2];
    let script = "head -c 5000 /dev/zero | tr '\\0' a; printf 'err' >&2";
    let out = service_exec(&bounded, &svc.name, &sh(script));
    assert_exit(&out, 0);
    let results = json_lines(&out);
    let v = &results[0];
    assert_eq!(v["stdout"], "a".repeat(1024));
    assert_eq!(v["stdout_bytes"], 5000);
    assert_eq!(v["stderr"], "");
    assert_eq!(v["stderr_bytes"], 3);
    assert_eq!(v["truncated"], true);

    let json_on2 = ["--format", "json", "--filter", &on2];
    let out = service_exec(&json_on2, &svc.name, &["printf", "caf\\303\\251 \\377"]);
    assert_exit(&out, 0);
    let v = &json_lines(&out)[0];
    assert_eq!(v["stdout"], "café \u{fffd}");
    assert_eq!(v["stdout_base64"], "Y2Fmw6kg/w==");
    assert_eq!(v["truncated"], false);
    assert!(v.get("stderr_base64").is_none());

    let bad = service_exec(&["--max-output", "0"], &svc.name, &["true"]);
    assert_exit(&bad, 125);
    assert_stderr_has(&bad, "--max-output");
}

#[test]
fn parallel_one_with_delay_is_a_rolling_exec() {
    let svc = Service::replicated(3);
    let start = Instant::now();
    let options = ["--parallel", "1", "--delay", "2s", "--no-prefix"];
    let uptime = ["cut", "-d", " ", "-f1", "/proc/uptime"];
    let out = service_exec(&options, &svc.name, &uptime);
    assert_exit(&out, 0);
    let times: Vec<f64> = out
        .stdout_str()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{}", out.stdout_str());
    // One at a time, each at least the delay after the one before (all nodes of the lab
    // share one kernel, so /proc/uptime is one clock).
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 2.0, "{times:?}");
    }
    assert!(start.elapsed() >= Duration::from_secs(4));
    // --fail-fast: the first failure stops the roll.
    let out = service_exec(&["--parallel", "1", "--fail-fast"], &svc.name, &["false"]);
    assert_exit(&out, 1);
    let err = out.stderr_str();
    assert_eq!(err.matches("exited with 1").count(), 1, "{err}");
    assert_eq!(err.matches("skipped (--fail-fast)").count(), 2, "{err}");
    assert!(svc.helpers().is_empty());
}

#[test]
fn a_whole_stack() {
    lab();
    let stack = format!("st{}", unique_hex(8));
    let _rm = deploy_example_stack(&stack);
    let out = eventually(
        "all 6 stack tasks to answer",
        Duration::from_secs(60),
        || {
            let out = swarm_exec(&[
                "service-exec",
                "--format",
                "json",
                "--stack",
                &stack,
                "true",
            ]);
            (out.code == 0 && json_lines(&out).len() == 6).then_some(out)
        },
    );
    let services: BTreeSet<String> = json_lines(&out)
        .iter()
        .map(|v| v["service"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([format!("{stack}_agent"), format!("{stack}_web")])
    );
    let out = swarm_exec(&["service-exec", "--stack", "no-such-stack", "true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "stack no-such-stack has no services");
}

#[test]
fn right_after_an_update_every_replica_runs_or_the_run_fails_naming_them() {
    let svc = Service::replicated(3);
    docker_ok(&[
        "service", "update", "--force", "--detach", "--quiet", &svc.name,
    ]);
    let out = service_exec(&["--no-prefix"], &svc.name, &["hostname"]);
    let running = svc.running_tasks();
    if out.code == 0 {
        // Every replica the update left answered, each once.
        let names: BTreeSet<String> = out.stdout_str().lines().map(str::to_owned).collect();
        assert_eq!(names.len(), 3, "{}", out.stdout_str());
        assert_eq!(running.len(), 3);
    } else {
        let err = out.stderr_str();
        assert!(err.contains("task") || err.contains(&svc.name), "{err}");
    }
    assert!(svc.helpers().is_empty());
}

/// Issue 29: an update that paused leaves tasks of the new spec beside ones of the old:
/// service-exec (and task-exec SERVICE) run in the new ones, and say which were left out.
#[test]
fn after_an_update_paused_only_tasks_of_the_current_spec_are_run_in() {
    let svc = Service::create_of(
        None,
        TARGET_IMAGE,
        &["--replicas", "2", "--replicas-max-per-node", "1"],
        &["sleep", "3600"],
        2,
    );
    let name = svc.name.clone();
    // The first task updated passes its health check (and keeps passing: it marks itself);
    // the second starts after the deadline and fails it, so the update pauses with one
    // task of each spec running (start-first keeps the old one).
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8;
    let health = format!(
        "--health-cmd=test -e /tmp/ok || {{ test $(date +%s) -lt {deadline} && touch /tmp/ok; }}"
    );
    docker_ok(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--env-add",
        "V=2",
        &health,
        "--health-interval=1s",
        "--health-retries=1",
        "--health-timeout=2s",
        "--update-order=start-first",
        "--update-failure-action=pause",
        "--update-monitor=15s",
        "--update-parallelism=1",
        "--update-delay=10s",
        "--restart-condition=none",
        &name,
    ]);
    eventually("the update to pause", Duration::from_secs(90), || {
        let state = docker_ok(&["service", "inspect", "-f", "{{.UpdateStatus.State}}", &name]);
        (state.trim() == "paused").then_some(())
    });
    let echo_v = ["sh", "-c", "echo V=${V:-1}"];
    // Both specs run: the engines' own view.
    let all = docker_ok(&[
        "service",
        "ps",
        &name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}",
    ]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("Running")).count(),
        2,
        "{all}"
    );
    let out = service_exec(&["--no-prefix"], &name, &echo_v);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "V=2\n", "{}", out.stderr_str());
    assert_stderr_has(&out, "left out, as they run an earlier spec");
    let out = task_exec(&[], &name, &echo_v);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "V=2\n", "{}", out.stderr_str());
}
