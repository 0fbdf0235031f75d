//! Faults that take an engine away (issue 5). They disturb the whole lab, so they live in
//! their own test binary, which cargo runs after the others, and run one at a time.

#[allow(dead_code)]
mod util;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lab_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab");
    let ok = Command::new(script).args(args).status().unwrap().success();
    assert!(ok, "scripts/lab {args:?}");
}

/// Brings a stopped node back, whatever the test did.
struct Restart(u32);

impl Drop for Restart {
    fn drop(&mut self) {
        let n = self.0.to_string();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab");
        let _ = Command::new(script).args(["start-node", &n]).status();
        // Ready again in the manager's view, so later tests find a whole swarm.
        eventually("the node to be Ready", Duration::from_secs(90), || {
            let out = docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            (out.code == 0 && out.stdout_str().contains(&format!("node{} Ready", self.0)))
                .then_some(())
        });
    }
}

#[test]
fn worker_engine_down_before_the_helper_is_scheduled() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let target = svc.on("node3").id.clone();
    lab_script(&["stop-node", "3"]);
    let _back = Restart(3);
    let start = Instant::now();
    let out = task_exec(&[], &target, &["true"]);
    assert_exit(&out, 125);
    let err = out.stderr_str();
    let node3_id = docker_ok(&["node", "inspect", "-f", "{{.ID}}", "node3"]);
    assert!(err.contains("node3") || err.contains(&node3_id), "{err}");
    // Not started in time, or (once the managers have marked the node down) lost: never
    // given to it, or given to it just before (the outcome is then not known for sure);
    // or, the node's engine gone, its task of the global service already being shut down
    // by the managers before the run began.
    assert!(
        err.contains("not started within")
            || err.contains("rejected")
            || err.contains("node node3 is down in the managers' view")
            || err.contains("is being shut down"),
        "{err}"
    );
    // Bounded: the helper's start wait (30 s) plus the lookups.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(svc.helpers().is_empty());
}

#[test]
fn manager_engine_restart_during_a_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let task = svc.on("node2").clone();
    let script = "sleep 8; echo done; exit 3";
    let child = spawn_swarm_exec(&task_exec_args(&[], &task.id, &sh(script)));
    await_processes(&task, &["sleep 8"]);
    lab_script(&["stop-node", "1"]);
    let back = Restart(1);
    drop(back);
    let out = wait(child, Duration::from_secs(120));
    // Either the run completes correctly (transient errors retried, the log stream read
    // again without repeating output), or it fails with a clear message.
    match out.code {
        3 => assert_eq!(out.stdout_str(), "done\n", "{}", out.stderr_str()),
        125 => assert_stderr_has(&out, "swarm-exec: error:"),
        other => panic!("exit {other}: {}", out.stderr_str()),
    }
    eventually("no helper left", Duration::from_secs(30), || {
        svc.helpers().is_empty().then_some(())
    });
}

#[test]
fn gc_all_removes_a_helper_still_at_work_and_its_command_stops() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let task = svc.on("node3").clone();
    let child = spawn_swarm_exec(&task_exec_args(&[], &task.id, &["sleep", "57"]));
    await_processes(&task, &["sleep 57"]);
    kill(&child, "KILL");
    let _ = wait(child, Duration::from_secs(10));
    assert_eq!(svc.helpers().len(), 1);
    let gc = swarm_exec(&["gc", "--all"]);
    assert_exit(&gc, 0);
    assert_stdout_has(&gc, "(--all)");
    assert!(svc.helpers().is_empty());
    // Removing the helper stopped it, and it stopped the command.
    await_processes_gone(&task, &["sleep 57"]);
}

/// Makes node3 take tasks again, whatever the test did.
struct Unpause;

impl Drop for Unpause {
    fn drop(&mut self) {
        let _ = docker(&["node", "update", "--availability", "active", "node3"]);
    }
}

#[test]
fn a_helper_that_starts_after_the_runs_deadline_runs_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    lab();
    // A target whose /data is a directory this test can look into: the nodes share the
    // machine's file system outside /run and /var/lib/docker.
    let hex = &unique_hex(10);
    let dir = format!("/tmp/sxt-late-{hex}");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("sxt-late-{hex}");
    let mount = format!("type=bind,source={dir},target=/data");
    let options = [
        "--constraint",
        "node.hostname==node3",
        "--mount",
        &mount,
        "--stop-grace-period",
        "1s",
    ];
    create_service(&name, &options, &["sleep", "3600"]);
    let task = eventually("the target to run", Duration::from_secs(60), || {
        let lines = running_task_lines(&name, "{{.ID}}");
        let id = lines.first()?.split_whitespace().next();
        id.map(str::to_owned)
    });
    // The marker can be seen when the command does run.
    let out = task_exec(&[], &task, &["touch", "/data/on-time"]);
    assert_exit(&out, 0);
    assert!(std::path::Path::new(&format!("{dir}/on-time")).exists());

    // The helper cannot start while its node takes no tasks; its client dies meanwhile.
    docker_ok(&["node", "update", "--availability", "pause", "node3"]);
    let unpause = Unpause;
    let late = ["touch", "/data/late"];
    let child = spawn_swarm_exec(&task_exec_args(&["--timeout", "4s"], &task, &late));
    let helper = await_helper_of(&name);
    kill(&child, "KILL");
    let _ = wait(child, Duration::from_secs(10));
    // Past the run's deadline, the node takes tasks again and the helper starts.
    std::thread::sleep(Duration::from_secs(6));
    drop(unpause);
    let state = eventually(
        "the helper to start and end",
        Duration::from_secs(60),
        || {
            let format = "{{.CurrentState}} {{.Error}}";
            let out = docker_ok(&["service", "ps", &helper, "--format", format]);
            (out.starts_with("Complete") || out.starts_with("Failed")).then_some(out)
        },
    );
    assert!(state.contains("(125)"), "the helper refused: {state}");
    assert!(
        !std::path::Path::new(&format!("{dir}/late")).exists(),
        "the command ran after its deadline"
    );
    docker_ok(&["service", "rm", &helper, &name]);
    let secrets = swarm_exec_objects("secret", &name);
    for s in &secrets {
        eventually("the envelope to be unused", Duration::from_secs(30), || {
            (docker(&["secret", "rm", s]).code == 0).then_some(())
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node-side program's configs on the swarm: (name, ID, build) of each.
fn program_configs() -> Vec<(String, String, String)> {
    let format = "{{.Spec.Name}} {{.ID}} {{index .Spec.Labels \"swarm-exec.node-build\"}}";
    let ids = docker_ok(&[
        "config",
        "ls",
        "-q",
        "--filter",
        "label=swarm-exec.helper=node",
    ]);
    let mut configs: Vec<(String, String, String)> = ids
        .lines()
        .map(|id| {
            let line = docker_ok(&["config", "inspect", "--format", format, id]);
            let f: Vec<&str> = line.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    configs.sort();
    configs
}

/// Zero-install's configs are per build: made once by concurrent first uses, reused by
/// every run after, removed by `gc --all`. Serial: it needs a swarm without them at first.
#[test]
fn one_set_of_program_configs_for_twenty_concurrent_first_uses_and_a_hundred_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let gc = swarm_exec(&["gc", "--all"]);
    assert_exit(&gc, 0);
    assert!(program_configs().is_empty(), "{:?}", program_configs());

    let children: Vec<_> = (0..20)
        .map(|i| {
            let node = ["node1", "node2", "node3"][i % 3];
            let script = format!("echo first-{i}");
            spawn_swarm_exec(&["task-exec", &svc.at(node), "sh", "-c", &script])
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = wait(child, Duration::from_secs(120));
        assert_exit(&out, 0);
        assert_eq!(out.stdout_str(), format!("first-{i}\n"));
    }
    let made = program_configs();
    let builds: std::collections::BTreeSet<&str> = made.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(builds.len(), 1, "one build: {made:?}");
    // The loader and the parts of one program, each once.
    assert!(made.iter().any(|c| c.0.ends_with("-load")), "{made:?}");
    assert!(made.iter().any(|c| c.0.ends_with("-1")), "{made:?}");
    assert!(made.len() >= 3, "{made:?}");

    for i in 0..100 {
        let node = ["node2", "node3"][i % 2];
        let out = task_exec(&[], &svc.at(node), &["true"]);
        assert_exit(&out, 0);
    }
    assert_eq!(program_configs(), made, "the same configs, none added");

    // Another build's config goes with a plain gc; this build's stay.
    let other = "swarm-exec-node-000000000000-1";
    let dir = std::env::temp_dir().join(format!("sx-cfg-{}", unique_hex(8)));
    std::fs::write(&dir, b"another build").unwrap();
    docker_ok(&[
        "config",
        "create",
        "--label",
        "swarm-exec.helper=node",
        "--label",
        &format!("swarm-exec.node-build={}", "0".repeat(64)),
        other,
        dir.to_str().unwrap(),
    ]);
    std::fs::remove_file(&dir).unwrap();
    let gc = swarm_exec(&["gc"]);
    assert_exit(&gc, 0);
    assert_stdout_has(&gc, &format!("removed config {other} (another build's)"));
    assert_eq!(program_configs(), made, "this build's are kept");

    let gc = swarm_exec(&["gc", "--all"]);
    assert_exit(&gc, 0);
    for (name, _, _) in &made {
        assert_stdout_has(&gc, &format!("removed config {name} (--all)"));
    }
    assert!(program_configs().is_empty(), "{:?}", program_configs());
    assert!(svc.helpers().is_empty());
}

/// Drops VXLAN (4789/udp) into a worker's network namespace while it is in scope.
struct Blocked(&'static str);

impl Blocked {
    fn vxlan(netns: &'static str) -> Blocked {
        let ok = Command::new("ip")
            .args([
                "netns", "exec", netns, "iptables", "-I", "INPUT", "-p", "udp",
            ])
            .args(["--dport", "4789", "-j", "DROP"])
            .status()
            .expect("ip netns exec … iptables");
        assert!(ok.success(), "could not drop 4789/udp in {netns}");
        Blocked(netns)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", self.0, "iptables", "-D", "INPUT", "-p", "udp",
            ])
            .args(["--dport", "4789", "-j", "DROP"])
            .status();
    }
}

/// A live session to a worker whose VXLAN traffic is dropped: the user is told what to open
/// within 15 s, the session fails (125), nothing is left. Serial: it cuts every overlay to
/// that node while it runs.
#[test]
fn a_blocked_overlay_is_reported_within_15_seconds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::replicated(3);
    let task = svc.on("node2").id.clone();
    let input = vec![b'x'; 600_000];
    let blocked = Blocked::vxlan("sxlab-node2");
    let start = Instant::now();
    let mut child = spawn_swarm_exec_stdin(&task_exec_args(&["-i"], &task, &["wc", "-c"]), &input);
    // When each line of stderr came.
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|l| (start.elapsed(), l))
            .collect::<Vec<_>>()
    });
    let out = wait(child, Duration::from_secs(120));
    drop(blocked);
    let lines = lines.join().unwrap();
    assert_exit(&out, 125);
    let (warned_at, _) = lines
        .iter()
        .find(|(_, l)| l.contains("may be blocked") && l.contains("Open 4789/udp and 7946/tcp+udp"))
        .unwrap_or_else(|| panic!("no warning naming the ports: {lines:?}"));
    assert!(
        *warned_at < Duration::from_secs(15),
        "warned after {warned_at:?}"
    );
    assert!(
        lines.iter().any(|(_, l)| l.contains("carries no traffic")),
        "no final error: {lines:?}"
    );
    no_session_left(&svc.name);
}

/// The loader this build embeds: the start of its `-load` config.
static LOADER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swarm-exec-load"));

/// Removes configs (by name or ID) when dropped, whatever the test did.
struct RemoveConfigs(Vec<String>);

impl Drop for RemoveConfigs {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = docker(&["config", "rm", c]);
        }
    }
}

/// Creates config `name` holding `data` with `labels`; returns its ID.
fn create_config(name: &str, labels: &[String], data: &[u8]) -> String {
    let file = std::env::temp_dir().join(format!("sx-squat-{}", unique_hex(8)));
    std::fs::write(&file, data).unwrap();
    let mut args = vec!["config".to_owned(), "create".to_owned()];
    for l in labels {
        args.extend(["--label".to_owned(), l.clone()]);
    }
    args.extend([name.to_owned(), file.to_str().unwrap().to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker_ok(&args).trim().to_owned();
    std::fs::remove_file(&file).unwrap();
    id
}

/// Program configs are trusted by their content, not their names (issue 25): a part squatted
/// under this build's name, of the same size, is refused before any helper exists; an index
/// forged to list it gets as far as the loader, which refuses parts whose SHA-256 is not the
/// client's. Either way the squatted program never runs. Serial: it
/// takes this build's configs away from every other test while it runs.
#[test]
fn program_configs_squatted_under_the_builds_names_are_refused_and_never_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let target = svc.at("node2");
    assert_exit(&task_exec(&[], &target, &["true"]), 0);
    let made = program_configs();
    let find = |suffix: &str| made.iter().find(|c| c.0.ends_with(suffix)).unwrap().clone();
    let (load, part1) = (find("-load"), find("-1"));
    let build = part1.2.clone();
    let parts = made.len() - 1;
    // A program that would say so if it ran, as long as the part it replaces.
    let mut squatted = b"#!/bin/sh\necho SQUATTED-RAN\nexit 99\n".to_vec();
    squatted.resize(1_000_000, b'#');
    let ours = |extra: &[String]| {
        let mut l = vec![
            "swarm-exec.helper=node".to_owned(),
            format!("swarm-exec.node-build={build}"),
        ];
        l.extend_from_slice(extra);
        l
    };
    let never_ran = |out: &Output| {
        assert!(!out.stdout_str().contains("SQUATTED"), "{out:?}");
        assert!(!out.stderr_str().contains("SQUATTED"), "{out:?}");
    };

    // A part made by someone else under its name (the loader goes first, as gc takes it).
    docker_ok(&["config", "rm", &load.0, &part1.0]);
    let mut forged = RemoveConfigs(vec![load.0.clone(), part1.0.clone()]);
    let labels = ours(&[format!("swarm-exec.node-part=1/{parts}")]);
    let squatted_id = create_config(&part1.0, &labels, &squatted);
    let out = task_exec(&[], &target, &["true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, &part1.0);
    assert_stderr_has(&out, "was not used");
    never_ran(&out);
    assert!(svc.helpers().is_empty(), "refused before any helper");
    assert!(
        !program_configs().iter().any(|c| c.0 == load.0),
        "no index made"
    );

    // And an index forged beside it: this build's loader, listing the squatted part (the
    // swarm mounts a config only under its own name, so a forgery can point nowhere else).
    let index: String = made
        .iter()
        .filter(|c| c.0 != load.0)
        .map(|c| {
            format!(
                "{} {}\n",
                c.0,
                if c.0 == part1.0 { &squatted_id } else { &c.1 }
            )
        })
        .collect();
    let data = [LOADER, b"\n#swarm-exec-index\n", index.as_bytes()].concat();
    let labels = ours(&[format!("swarm-exec.node-index={build}")]);
    create_config(&load.0, &labels, &data);
    let out = task_exec(&[], &target, &["true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "SHA-256 differs");
    never_ran(&out);
    assert!(svc.helpers().is_empty());

    // Once the forgeries are gone the build makes its own again.
    docker_ok(&["config", "rm", &load.0, &part1.0]);
    forged.0.clear();
    let out = task_exec(&[], &target, &["sh", "-c", "echo made-again"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "made-again\n");
    assert_eq!(program_configs().len(), made.len());
}

/// Cuts a lab node off the network (all but its loopback, both ways) while in scope; its
/// engine's unix socket still answers the test.
struct CutOff(&'static str);

impl CutOff {
    fn node(netns: &'static str) -> CutOff {
        let cut = CutOff(netns);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            let ok = Command::new("ip")
                .args([
                    "netns", "exec", netns, "iptables", "-I", chain, "1", "!", dir, "lo",
                ])
                .args(["-j", "DROP"])
                .status()
                .expect("ip netns exec … iptables");
            assert!(ok.success(), "could not cut {netns} off ({chain})");
        }
        cut
    }
}

impl Drop for CutOff {
    fn drop(&mut self) {
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", self.0, "iptables", "-D", chain, "!", dir, "lo",
                ])
                .args(["-j", "DROP"])
                .status();
        }
        eventually("the node to be Ready", Duration::from_secs(90), || {
            let out = docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            let node = self.0.trim_start_matches("sxlab-");
            (out.code == 0 && out.stdout_str().contains(&format!("{node} Ready"))).then_some(())
        });
    }
}

/// Issue 26: a worker cut off in the middle of a terminal session. The client hears no
/// heartbeat and ends within 20 s with 125, naming the node, the terminal restored; the
/// helper's connection to the relay fails and it stops the command, the node still cut
/// off; once the node is back nothing is left. Serial: it takes a node off the swarm.
#[test]
fn a_node_cut_off_mid_session_ends_it_within_20_seconds_and_stops_the_command() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Global: its task on node2 stays there while the node is away.
    let svc = Service::global();
    let task = svc.on("node2").clone();
    let marker = format!(
        "sleep {}",
        300_000 + u32::from_str_radix(&unique_hex(4), 16).unwrap()
    );
    let cutter = {
        let (task, marker) = (task.clone(), marker.clone());
        std::thread::spawn(move || {
            await_processes(&task, &[&marker]);
            (CutOff::node("sxlab-node2"), Instant::now())
        })
    };
    let typed = format!("{marker}\r");
    // The terminal's own checks: restored, and not held open by its input.
    let out = in_a_terminal(
        &format!("\"$SX\" task-exec -it {} sh", task.id),
        &[(0, typed.as_bytes())],
    );
    let ended = Instant::now();
    let (cut, at) = cutter.join().expect("the remote command ran");
    assert_exit(&out, 125);
    let shown = out.stdout_str();
    assert!(
        shown.contains("nothing from the helper on node node2"),
        "{shown}"
    );
    assert!(shown.contains("outcome is unknown"), "{shown}");
    let took = ended - at;
    assert!(
        took < Duration::from_secs(20),
        "ended {took:?} after the cut"
    );
    // The helper, on its own, stops the command while its node is still cut off.
    await_processes_gone(&task, &[&marker]);
    assert!(at.elapsed() < Duration::from_secs(45), "{:?}", at.elapsed());
    drop(cut);
    // The managers keep the session's network while the cut-off helper's task is not
    // known to be gone: the client said so, and plain gc takes it once it can.
    if !swarm_exec_objects("network", &svc.name).is_empty() {
        assert!(
            shown.contains("could not remove the session's network"),
            "{shown}"
        );
        eventually(
            "plain gc to take the network",
            Duration::from_secs(120),
            || {
                assert_exit(&swarm_exec(&["gc"]), 0);
                swarm_exec_objects("network", &svc.name)
                    .is_empty()
                    .then_some(())
            },
        );
    }
    no_session_left(&svc.name);
    eventually(
        "the helper's container to go",
        Duration::from_secs(60),
        || {
            // Helpers' containers are named after their services: swarm-exec-<hex>.1.<task>.
            let ps = docker_on(
                2,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Names}}",
                    "--filter",
                    "name=swarm-exec-",
                ],
            );
            ps.stdout_str().trim().is_empty().then_some(())
        },
    );
}

/// Issue 26: a worker cut off during a plain run (the log path). The managers mark it down
/// and the client ends within 60 s with 125, the outcome unknown, not at its timeout; once
/// the node is back its helper's removal reaches it, the command is stopped and nothing is
/// left. Serial: it takes a node off the swarm for a while.
#[test]
fn a_node_cut_off_mid_run_ends_it_within_60_seconds() {
    use std::io::Read as _;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let task = svc.on("node2").clone();
    let mut child = spawn_swarm_exec(&task_exec_args(
        &[],
        &task.id,
        &sh("echo started; exec sleep 3002"),
    ));
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"started\n");

    let cut = CutOff::node("sxlab-node2");
    let at = Instant::now();
    let out = wait(child, Duration::from_secs(120));
    let took = at.elapsed();
    assert_exit(&out, 125);
    assert_stderr_has(&out, "node node2 is down");
    assert_stderr_has(&out, "outcome is unknown");
    assert!(
        took < Duration::from_secs(60),
        "ended {took:?} after the cut"
    );
    drop(cut);
    eventually("the command to be stopped", Duration::from_secs(60), || {
        (!processes(&task).contains("sleep 3002")).then_some(())
    });
    no_session_left(&svc.name);
    eventually(
        "the helper's container to go",
        Duration::from_secs(60),
        || {
            let ps = docker_on(
                2,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Names}}",
                    "--filter",
                    "name=swarm-exec-",
                ],
            );
            ps.stdout_str().trim().is_empty().then_some(())
        },
    );
}

/// Issue 12: output lost on the node is never a success. The helper's node is cut off while
/// it writes 120 MB of random bytes, so that what its engine has not yet sent to the
/// managers stays in the helper's log file (the engine's log reader holds a bounded number
/// of lines); once the helper has ended, the file is emptied and the node let back in. The
/// client gets part of the output and says so with 125. (Holding the client's stdout is
/// not enough: the managers take a worker's log lines whether the client reads or not, and
/// on a fast machine the engine's reader keeps up with the helper.) Serial: it takes a node
/// off the swarm for a few seconds.
#[test]
fn output_lost_on_the_node_is_reported_never_a_success() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::global();
    let total = 120_000_000u64;
    // Time to cut the node off before the bytes flow.
    let script = format!("sleep 2; head -c {total} /dev/urandom");
    let child = spawn_swarm_exec(&task_exec_args(&[], &svc.at("node3"), &sh(&script)));
    let helper = svc.await_helper();
    let helper_id = docker_ok(&["service", "inspect", "-f", "{{.ID}}", &helper]);
    let of_helper = format!("label=com.docker.swarm.service.id={helper_id}");
    let container_where = |filters: &[&str], what: &str| {
        let ps = [&["ps", "-q", "--filter", &of_helper], filters].concat();
        eventually(what, Duration::from_secs(60), || {
            let id = docker_on(3, &ps).stdout_str().trim().to_owned();
            (!id.is_empty()).then_some(id)
        })
    };
    container_where(&["--filter", "status=running"], "the helper to run");
    let cut = CutOff::node("sxlab-node3");
    // node3's own engine is reached through its socket, not the cut link.
    let container = container_where(&["-a", "--filter", "status=exited"], "the helper to end");
    let path = docker_on(3, &["inspect", "-f", "{{.LogPath}}", &container]).stdout_str();
    let rel = path
        .trim()
        .strip_prefix("/var/lib/docker/")
        .expect("a data-root path");
    let on_host = format!("{}/node3/data/{rel}", lab_dir());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&on_host)
        .and_then(|f| f.set_len(0))
        .unwrap_or_else(|e| panic!("{on_host}: {e}"));
    drop(cut);

    let out = wait(child, Duration::from_secs(300));
    let err = out.stderr_str();
    let got = out.stdout.len() as u64;
    assert!(got < total, "all {got} bytes arrived: nothing was lost");
    assert_eq!(out.code, 125, "{err}");
    assert!(err.contains("output incomplete"), "{err}");
    // It says what it delivered: either how many bytes are missing or, with the exit frame
    // lost too, how far the output got.
    assert!(
        err.contains(&format!("{} bytes of target 0's stdout", total - got))
            || err.contains(&format!("after its first {got} bytes of stdout")),
        "{got} bytes delivered: {err}"
    );
    assert!(svc.helpers().is_empty());
}
