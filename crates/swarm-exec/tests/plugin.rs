//! The Skopos plugin protocol against the lab swarm, with input fed exactly as Skopos
//! feeds it: a JSON object on stdin (or as arguments), the step's arguments at top level.

use serde_json::{json, Value};

use crate::util::*;

/// The JSON on stdout with what varies from run to run (task IDs, durations) replaced, so
/// it can be snapshotted.
fn normalized(out: &Output, tasks: &[&Task]) -> String {
    let mut text = out.stdout_str();
    for (i, t) in tasks.iter().enumerate() {
        text = text.replace(&t.id, &format!("<task{i}>"));
    }
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if let Some(results) = v.get_mut("swarm_exec").and_then(Value::as_array_mut) {
        for r in results {
            let d = r["duration_s"].as_f64().expect("duration_s");
            assert!(d > 0.0 && d < 60.0, "{d}");
            r["duration_s"] = json!("<duration>");
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

fn input(tasks: &[&Task], command: Value, extra: Value) -> String {
    let mut v = json!({
        "project": "swarm-exec-e2e",
        "inst": tasks.iter().map(|t| json!({"id": t.id, "ipaddr": "10.0.0.9"})).collect::<Vec<_>>(),
        "selector": "new",
        "command": command,
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// Runs `swarm-exec --compact inst_exec INPUT` on `t`, insists that it succeeds, and returns
/// the JSON it printed.
fn compact_inst_exec(t: &Task, command: Value, extra: Value) -> Value {
    let out = swarm_exec(&["--compact", "inst_exec", &input(&[t], command, extra)]);
    assert_exit(&out, 0);
    serde_json::from_str(&out.stdout_str()).unwrap()
}

fn worker_task(svc: &Service, node: &str) -> Task {
    svc.tasks
        .iter()
        .find(|t| t.node == node)
        .cloned()
        .expect("task on node")
}

#[test]
fn true_succeeds_and_echoes_the_input_with_results() {
    let svc = shared();
    let t = worker_task(svc, "node2");
    let out = swarm_exec_stdin(&["inst_exec"], input(&[&t], json!("true"), json!({})));
    assert_exit(&out, 0);
    assert!(out.stderr.is_empty(), "{}", out.stderr_str());
    insta::assert_snapshot!("inst_exec_true", normalized(&out, &[&t]));
}

#[test]
fn failures_exit_2_with_one_line_and_nothing_on_stdout() {
    // Its own service, so that no other test's helper counts as a leftover of this one.
    let svc = &Service::global();
    let t = worker_task(svc, "node3");
    let sleep = || json!("sleep 5");
    let cases = [
        (json!("false"), json!({}), "exited with 1"),
        (json!("no-such-command-here"), json!({}), "exited with 12"), // 126 or 127
        (sleep(), json!({"timeout": 1}), "timed out after 1s"),
        (sleep(), json!({"timeout": "2s"}), "timed out after 2s"),
    ];
    for (command, extra, expected) in cases {
        let out = swarm_exec_stdin(&["inst_exec"], input(&[&t], command.clone(), extra));
        assert_eq!(out.code, 2, "{command}: {}", out.stderr_str());
        assert!(out.stdout.is_empty(), "{command}: {}", out.stdout_str());
        let err = out.stderr_str();
        let last = err.lines().last().unwrap_or_default();
        let failed = "inst_exec failed: task ";
        assert!(last.starts_with(failed), "{command}: {last}");
        assert!(last.contains(expected), "{command}: {last}");
        assert!(last.contains(&t.id), "{command}: {last}");
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn sleep_5_succeeds_within_the_default_timeout() {
    let t = worker_task(shared(), "node2");
    let input = input(&[&t], json!("sleep 5"), json!({"timeout": "30"}));
    let out = swarm_exec(&["--compact", "inst_exec", &input]);
    assert_exit(&out, 0);
    assert!(out.elapsed.as_secs_f64() >= 5.0);
    // --compact: one line.
    assert_eq!(out.stdout_str().lines().count(), 1, "{}", out.stdout_str());
    insta::assert_snapshot!("inst_exec_compact_sleep", normalized(&out, &[&t]));
}

#[test]
fn two_instances_on_two_nodes_run_at_once_with_prefixed_output() {
    let svc = shared();
    let (a, b) = (worker_task(svc, "node2"), worker_task(svc, "node3"));
    let command = "sh -c 'cut -d\" \" -f1 /proc/uptime; sleep 2; echo done on $(hostname)'";
    let out = swarm_exec_stdin(&["inst_exec"], input(&[&a, &b], json!(command), json!({})));
    assert_exit(&out, 0);
    let err = out.stderr_str();
    // Concurrently, not one after the other: the two 2 s runs overlap (the lab's nodes
    // share one kernel, so /proc/uptime is one clock).
    let starts: Vec<f64> = [&a, &b]
        .iter()
        .map(|t| {
            let prefix = format!("{} | ", &t.id[..12]);
            err.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                .unwrap_or_else(|| panic!("no start time for {}: {err}", t.id))
        })
        .collect();
    assert!((starts[0] - starts[1]).abs() < 2.0, "{starts:?}");
    for t in [&a, &b] {
        let done = format!("{} | done on ", &t.id[..12]);
        assert!(err.contains(&done), "{err}");
    }
    let v: Value = serde_json::from_str(&out.stdout_str()).unwrap();
    for (i, t) in [&a, &b].iter().enumerate() {
        assert_eq!(v["swarm_exec"][i]["id"], json!(t.id));
        let tail = v["swarm_exec"][i]["output_tail"].as_str().unwrap();
        let done = format!("\ndone on {}\n", container_host(t));
        assert!(tail.ends_with(&done), "{tail:?}");
        assert_eq!(v["swarm_exec"][i]["output_bytes"], json!(tail.len()));
        assert_eq!(v["swarm_exec"][i]["output_truncated"], json!(false));
    }
    // The tails name the containers, which differ per run; they were checked above.
    let redacted = normalized(&out, &[&a, &b])
        .lines()
        .map(|l| {
            if l.contains("\"output_tail\"") {
                "      \"output_tail\": \"<checked>\","
            } else if l.contains("\"output_bytes\"") {
                "      \"output_bytes\": \"<checked>\","
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("inst_exec_two_instances", redacted);
}

#[test]
fn max_output_keeps_the_last_bytes_and_says_the_tail_is_cut() {
    let t = worker_task(shared(), "node3");
    // 5000 bytes, the last line a marker; then bytes that are not UTF-8, exactly kept.
    let script = "head -c 4990 /dev/zero | tr '\\0' a; echo; echo the-end";
    let out = compact_inst_exec(&t, json!(sh(script)), json!({"max_output": 100}));
    let r = &out["swarm_exec"][0];
    let tail = r["output_tail"].as_str().unwrap();
    assert_eq!(tail.len(), 100, "{tail:?}");
    assert!(tail.ends_with("a\nthe-end\n"), "{tail:?}");
    assert_eq!(r["output_bytes"], json!(4990 + 1 + 8));
    assert_eq!(r["output_truncated"], json!(true));

    let out = compact_inst_exec(&t, json!(["printf", "a\\377b"]), json!({}));
    let r = &out["swarm_exec"][0];
    assert_eq!(r["output_tail"], json!("a\u{fffd}b"));
    assert_eq!(r["output_tail_base64"], json!("Yf9i"));
    assert_eq!(r["output_truncated"], json!(false));
}

#[test]
fn one_failing_instance_fails_the_step_and_is_named() {
    let svc = shared();
    let (a, b) = (worker_task(svc, "node2"), worker_task(svc, "node3"));
    // Each container's hostname is its own ID: only one of them matches.
    let command = format!("sh -c '[ $(hostname) = {} ] || exit 4'", container_host(&a));
    let out = swarm_exec_stdin(&["inst_exec"], input(&[&a, &b], json!(command), json!({})));
    assert_exit(&out, 2);
    let last = out.stderr_str().lines().last().unwrap().to_owned();
    let expected = format!("inst_exec failed: task {} exited with 4", b.id);
    assert_eq!(last, expected);
}

fn container_host(t: &Task) -> String {
    container_of(&t.id)[..12].to_owned()
}

#[test]
fn quoted_arguments_are_split_like_a_shell_would_but_not_run_by_one() {
    let t = worker_task(shared(), "node3");
    let cases = [
        (
            json!(r#"printf '[%s]' "a  b" 'c d' e\ f '$HOME'"#),
            "[a  b][c d][e f][$HOME]",
        ),
        (json!(r#"["printf", "[%s]", "x y", "; ls"]"#), "[x y][; ls]"),
        (json!(["printf", "[%s]", "list form"]), "[list form]"),
    ];
    for (command, expected) in cases {
        let out = swarm_exec_stdin(&["inst_exec"], input(&[&t], command.clone(), json!({})));
        assert_eq!(out.code, 0, "{command}: {}", out.stderr_str());
        assert_eq!(out.stderr_str(), expected, "{command}");
    }
}

#[test]
fn bad_input_exits_2_before_anything_is_created() {
    let svc = Service::global();
    let t = worker_task(&svc, "node2");
    let id = t.id.as_str();
    // Input on stdin to inst_exec, or other arguments with nothing on stdin.
    let stdin = |input: &str, expected| (vec!["inst_exec"], input.to_owned(), expected);
    let args = |args: Vec<&'static str>, expected| (args, String::new(), expected);
    let on_id = |rest: &str| format!("{{\"inst\":[{{\"id\":\"{id}\"}}]{rest}}}");
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        stdin("{\"inst\": [", "failed to parse input data"),
        args(
            vec!["inst_exec", "{not", "json}"],
            "failed to parse input data",
        ),
        stdin(&on_id(""), "invalid argument command: missing"),
        stdin("{\"command\":\"true\"}", "invalid argument inst: missing"),
        stdin(
            &on_id(",\"command\":\"true\",\"timeout\":\"soon\""),
            "invalid argument timeout",
        ),
        stdin(
            &on_id(",\"command\":\"true\",\"timeout\":-3"),
            "invalid argument timeout",
        ),
        stdin(&on_id(",\"command\":\"'oops\""), "invalid argument command"),
        stdin(
            "{\"inst\":[{\"id\":\"web.1; ls\"}],\"command\":\"true\"}",
            "invalid argument inst",
        ),
        stdin("[1,2]", "must be a JSON object"),
        (
            vec!["do_something"],
            "{}".to_owned(),
            "Plugin swarm-exec does not support action do_something",
        ),
    ];
    for (args, stdin, expected) in cases {
        let out = swarm_exec_stdin(&args, &stdin);
        assert_eq!(out.code, 2, "{args:?} {stdin}: {}", out.stderr_str());
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = out.stderr_str();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{args:?} {stdin}: {err}");
    }
    assert!(svc.helpers().is_empty());
}

#[test]
fn empty_inst_preflight_and_postflight_succeed_without_touching_the_swarm() {
    let empty = r#"{"inst": [], "command": "true", "project": "p"}"#;
    let out = swarm_exec_stdin(&["inst_exec"], empty);
    assert_exit(&out, 0);
    insta::assert_snapshot!("inst_exec_empty_inst", out.stdout_str());
    for action in ["preflight", "postflight"] {
        let out = swarm_exec_stdin(&[action], r#"{"project": "p", "inst": []}"#);
        assert_exit(&out, 0);
        assert_eq!(out.stdout_str(), "{}\n");
        let out = swarm_exec_stdin(&[action], "");
        assert_eq!((out.code, out.stdout_str()), (0, "{}\n".to_owned()));
    }
}

#[test]
fn stdout_and_stderr_can_be_redirected_to_files() {
    let t = worker_task(shared(), "node2");
    let dir =
        std::env::temp_dir().join(format!("swarm-exec-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (o, e, both) = (
        dir.join("out.json"),
        dir.join("err.txt"),
        dir.join("both.txt"),
    );
    let json_in = input(&[&t], json!("sh -c 'echo to-stderr-of-plugin'"), json!({}));
    let out = swarm_exec_stdin(
        &[
            "--stdout",
            o.to_str().unwrap(),
            "--stderr",
            e.to_str().unwrap(),
            "-c",
            "inst_exec",
        ],
        &json_in,
    );
    assert_eq!(out.code, 0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&o).unwrap()).unwrap();
    assert_eq!(v["swarm_exec"][0]["exit_code"], json!(0));
    assert_eq!(
        std::fs::read_to_string(&e).unwrap(),
        "to-stderr-of-plugin\n"
    );
    // One file for both.
    let p = both.to_str().unwrap();
    let out = swarm_exec_stdin(
        &["--stdout", p, "--stderr", p, "inst_exec"],
        "{\"inst\": [], \"command\": \"\"}",
    );
    assert_eq!(out.code, 2);
    assert!(std::fs::read_to_string(&both)
        .unwrap()
        .contains("invalid argument command"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reference_words_keep_working() {
    let svc = shared();
    // `--image`: only the manager has the swarm-exec image (zero-install needs none).
    let t = worker_task(svc, "node1");
    let image = format!("swarm-exec:{}", env!("CARGO_PKG_VERSION"));
    let out = task_exec(&["--image", &image], &t.id, &sh("exit 6"));
    assert_exit(&out, 6);
    // `exec CONTAINER CMD` runs on the engine swarm-exec talks to: the manager's task.
    let m = svc
        .tasks
        .iter()
        .find(|t| t.node == "node1")
        .expect("manager task");
    let container = container_of(&m.id);
    let out = swarm_exec(&["exec", &container, "sh", "-c", "echo local; exit 3"]);
    assert_eq!(
        (out.code, out.stdout_str()),
        (3, "local\n".to_owned()),
        "{}",
        out.stderr_str()
    );
}
