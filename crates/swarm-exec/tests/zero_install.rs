//! Zero-install: nothing of swarm-exec on the workers; helpers run the node-side program
//! from swarm configs in the target task's own image, whatever that image is.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

const SCRATCH: &str = "swarm-exec-lab/scratch:1";
const USER: &str = "swarm-exec-lab/user:1";
const VOLUME: &str = "swarm-exec-lab/volume:1";

/// The precondition of every test here: no worker has any swarm-exec image.
fn no_swarm_exec_image_on_the_workers() {
    for n in [2, 3] {
        let out = docker_on(n, &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert_exit(&out, 0);
        let images = out.stdout_str();
        assert!(
            !images.lines().any(|i| i.starts_with("swarm-exec:")),
            "node{n} has a swarm-exec image, so this would not test zero-install:\n{images}"
        );
    }
}

/// Volumes on lab node `n`.
fn volumes(n: u32) -> Vec<String> {
    let out = docker_on(n, &["volume", "ls", "-q"]);
    assert_exit(&out, 0);
    let mut v: Vec<String> = out.stdout_str().lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Helper and stopper containers on lab node `n` that worked on `service` (helpers name
/// it, stoppers one of its `containers`); other tests' run beside them.
fn helper_containers(n: u32, service: &str, containers: &[String]) -> Vec<String> {
    let format = "{{.ID}} {{.Label \"swarm-exec.target.service\"}} \
                  {{.Label \"swarm-exec.target.container\"}}";
    let out = docker_on(
        n,
        &[
            "ps",
            "-a",
            "--filter",
            "label=swarm-exec.helper",
            "--format",
            format,
        ],
    );
    assert_exit(&out, 0);
    out.stdout_str()
        .lines()
        .filter(|l| {
            let mut f = l.split(' ').skip(1);
            let (s, c) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            s == service || containers.iter().any(|t| t == c)
        })
        .map(str::to_owned)
        .collect()
}

/// Once the runs on `svc` are over: no helper service of it, and (the nodes remove a
/// removed service's containers shortly after) no helper or stopper container of it on
/// any node; with
/// `volumes_before`, no volume that was not there before either. (Only the VOLUME image's
/// test compares volumes: its target is the one thing in the suite that makes any, so
/// the others, running at the same time, would see its target's come and go.)
fn nothing_left(svc: &Service, volumes_before: Option<&[Vec<String>]>) {
    assert!(
        svc.helpers().is_empty(),
        "helpers left: {:?}",
        svc.helpers()
    );
    let containers: Vec<String> = svc.tasks.iter().map(|t| container_of(&t.id)).collect();
    for n in 1..=3u32 {
        eventually(
            "helper containers and volumes to go",
            Duration::from_secs(30),
            || {
                let same = volumes_before.is_none_or(|b| volumes(n) == b[n as usize - 1]);
                let left = helper_containers(n, &svc.name, &containers);
                (left.is_empty() && same).then_some(())
            },
        );
    }
}

/// The checks every kind of target gets, on its task on node `node`: exit code, output,
/// stdin, `-e -u -w`, a timeout that stops the command, and service-exec over all nodes.
/// `bin` prefixes the programs' names: `/` for scratch (no PATH there), empty for busybox.
fn runs_everything_in(svc: &Service, bin: &str, node: &str) {
    let task = svc.at(node);
    let p = |name: &str| format!("{bin}{name}");

    let out = task_exec(&[], &task, &[&p("false")]);
    assert_exit(&out, 1);
    let out = task_exec(&[], &task, &[&p("echo"), "zero", "install"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "zero install\n");

    let out = swarm_exec_stdin(
        &task_exec_args(&["-i"], &task, &[&p("cat")]),
        b"\x00through stdin\xff\n".as_slice(),
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"\x00through stdin\xff\n");

    let out = task_exec(&["-e", "SX_ZERO=1", "-u", "4321"], &task, &[&p("id"), "-u"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "4321\n");
    let out = task_exec(&["-e", "SX_ZERO=value"], &task, &[&p("env")]);
    assert_exit(&out, 0);
    assert_stdout_has(&out, "SX_ZERO=value\n");
    let out = task_exec(&["-w", "/proc"], &task, &[&p("pwd")]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "/proc\n");

    let marker = "777";
    let t = svc.on(node).clone();
    let out = task_exec(&["--timeout", "4s"], &task, &[&p("sleep"), marker]);
    assert_exit(&out, 124);
    await_processes_gone(&t, &[&format!("sleep {marker}")]);

    let out = service_exec(&[], &svc.name, &[&p("echo"), "fan"]);
    assert_exit(&out, 0);
    for n in ["node1", "node2", "node3"] {
        assert_stdout_has(&out, &format!("@{n} | fan\n"));
    }
}

/// The plugin's `inst_exec` on the task on `node`: its exit code comes back (the step
/// fails, exit 2, for one that is not 0, as the reference plugin's does).
fn plugin_runs_in(svc: &Service, node: &str, command: Value, code: i64) {
    let t = svc.on(node);
    let input = json!({
        "project": "swarm-exec-e2e",
        "inst": [{"id": t.id, "ipaddr": "10.0.0.9"}],
        "command": command,
    });
    let out = swarm_exec(&["--compact", "inst_exec", &input.to_string()]);
    if code == 0 {
        assert_exit(&out, 0);
        let v: Value = serde_json::from_str(&out.stdout_str()).unwrap();
        assert_eq!(v["swarm_exec"][0]["exit_code"], 0, "{v}");
    } else {
        assert_exit(&out, 2);
        assert_stderr_has(&out, &format!("task {} exited with {code}", t.id));
    }
}

fn with_target(image: &str, options: &[&str], command: &[&str], check: impl FnOnce(&Service)) {
    no_swarm_exec_image_on_the_workers();
    let svc = Service::global_of(image, options, command);
    let before: Vec<Vec<String>> = (1..=3).map(volumes).collect();
    check(&svc);
    nothing_left(&svc, (image == VOLUME).then_some(before.as_slice()));
}

#[test]
fn a_busybox_target() {
    with_target(TARGET_IMAGE, &[], &["sleep", "3600"], |svc| {
        runs_everything_in(svc, "", "node2");
        plugin_runs_in(svc, "node3", json!("sh -c 'exit 9'"), 9);
    });
}

#[test]
fn an_image_of_one_static_program_and_nothing_else() {
    with_target(SCRATCH, &[], &[], |svc| {
        // No shell and no libc in the image: the helper brings its own static program.
        let out = task_exec(&[], &svc.at("node3"), &["sh", "-c", "true"]);
        assert_ne!(
            out.code,
            0,
            "a shell in the scratch image? {}",
            out.stdout_str()
        );
        runs_everything_in(svc, "/", "node3");
        plugin_runs_in(svc, "node2", json!(["/false"]), 1);
    });
}

#[test]
fn an_image_with_its_own_user_and_entrypoint() {
    with_target(USER, &[], &[], |svc| {
        // The command runs as the image's user and with its environment; the helper as
        // root, with its own entrypoint and none of that environment (its DOCKER_HOST
        // leads nowhere).
        let out = task_exec(&[], &svc.at("node2"), &["id", "-u"]);
        assert_exit(&out, 0);
        assert_eq!(out.stdout_str(), "65532\n");
        let out = task_exec(&[], &svc.at("node3"), &["env"]);
        assert_exit(&out, 0);
        assert_stdout_has(&out, "DOCKER_HOST=tcp://192.0.2.1:9\n");
        // Its STOPSIGNAL is SIGQUIT, which the helper (PID 1) would ignore: removing the
        // helper on Ctrl-C must still stop the command.
        let t = svc.on("node2").clone();
        let child = spawn_swarm_exec(&task_exec_args(&[], &svc.at("node2"), &["sleep", "779"]));
        await_processes(&t, &["sleep 779"]);
        kill(&child, "INT");
        assert_eq!(wait(child, Duration::from_secs(30)).code, 130);
        await_processes_gone(&t, &["sleep 779"]);
        runs_everything_in(svc, "", "node3");
        plugin_runs_in(svc, "node2", json!("sh -c 'exit 4'"), 4);
    });
}

#[test]
fn a_target_with_a_read_only_root_file_system() {
    with_target(TARGET_IMAGE, &["--read-only"], &["sleep", "3600"], |svc| {
        let out = task_exec(&[], &svc.at("node2"), &["sh", "-c", "touch /x"]);
        assert_ne!(out.code, 0, "the target's root is writable");
        runs_everything_in(svc, "", "node2");
        plugin_runs_in(svc, "node3", json!("true"), 0);
    });
}

#[test]
fn an_image_with_a_volume_and_a_healthcheck_that_fails_outside_its_own_process() {
    with_target(VOLUME, &[], &[], |svc| {
        // The target's own tasks are healthy: the check passes where `sleep` is PID 1.
        // A helper that ran it would be unhealthy after a second and be killed.
        let out = task_exec(
            &[],
            &svc.at("node3"),
            &["sh", "-c", "sleep 3; echo survived"],
        );
        assert_exit(&out, 0);
        assert_eq!(out.stdout_str(), "survived\n");
        runs_everything_in(svc, "", "node3");
        plugin_runs_in(svc, "node2", json!("sh -c 'exit 5'"), 5);
    });
}

#[test]
fn a_plain_service_name_runs_in_one_of_its_tasks_and_says_which() {
    let svc = Service::replicated(2);
    let out = task_exec(&[], &svc.name, &["cat", "/etc/hostname"]);
    assert_exit(&out, 0);
    let first = svc.tasks.iter().find(|t| t.slot == "1").expect("slot 1");
    let hostname = docker_ok(&[
        "inspect",
        "--format",
        "{{.Status.ContainerStatus.ContainerID}}",
        &first.id,
    ]);
    assert_eq!(
        out.stdout_str().trim(),
        &hostname[..12],
        "slot 1's container"
    );
    assert_stderr_has(&out, "has 2 running tasks; running in");
    assert_stderr_has(&out, &format!("{}.1", svc.name));
    // A name that is no service and no task.
    let out = task_exec(&[], "No-Such-Service", &["true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "no service named No-Such-Service");
}

#[test]
fn image_mode_still_works_where_the_image_is() {
    // The manager has the swarm-exec image (the workers do not): --image runs there. Plain
    // commands on the client's own engine need no helper at all (issue 28); debug and
    // port-forward always have one: theirs run from the image, with the image's own
    // entrypoint for the forwarder.
    let svc = Service::global();
    let image = format!("swarm-exec:{}", env!("CARGO_PKG_VERSION"));
    let on1 = svc.at("node1");
    let out = run(std::process::Command::new(SWARM_EXEC)
        .args([
            "debug",
            "--image",
            TARGET_IMAGE,
            &on1,
            "--",
            "sh",
            "-c",
            "exit 6",
        ])
        .env("SWARM_EXEC_IMAGE", &image));
    assert_exit(&out, 6);
    // A port nothing listens on: the forwarder from the image says so, per connection.
    let mut fwd = std::process::Command::new(SWARM_EXEC);
    fwd.args(["port-forward", &on1, ":7"])
        .env("SWARM_EXEC_IMAGE", &image)
        .stdin(std::process::Stdio::null());
    let mut child = spawn_piped(&mut fwd);
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let at = line
        .split_whitespace()
        .nth(2)
        .expect("an address")
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&at).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(
        std::io::Read::read(&mut conn, &mut buf),
        Ok(0) | Err(_)
    ));
    kill(&child, "TERM");
    let out = wait(child, Duration::from_secs(30));
    assert_eq!(out.code, 143, "{}", out.stderr_str());
    assert_stderr_has(&out, "a connection to port 7 failed");
    assert!(svc.helpers().is_empty());
}

/// Removes an image from lab node `n` when dropped.
struct NodeImage(u32, String);

impl Drop for NodeImage {
    fn drop(&mut self) {
        let _ = docker_on(self.0, &["image", "rm", "-f", &self.1]);
    }
}

/// The environment of the stopper's program working on `container` (started by the loader,
/// whose own process, for the moment before, still has what the engine gave), read from
/// the host's /proc while it lives (the lab's nodes share this machine's kernel).
fn stopper_environ(container: &str) -> Option<Vec<String>> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let dir = e.path();
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_it = args.first() == Some(&&b"swarm-exec-node"[..])
            && args.get(1) == Some(&&b"node-kill"[..])
            && args.contains(&container.as_bytes());
        if !is_it {
            return None;
        }
        let environ = std::fs::read(dir.join("environ")).ok()?;
        Some(
            environ
                .split(|&b| b == 0)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect(),
        )
    })
}

/// Issue 25: the stopper (root, CAP_SYS_PTRACE, the node's PID namespace) runs the target's
/// image, whose environment the engine adds to whatever a container is created with; the
/// loader, its entrypoint, starts it with none. A target image with `GLIBC_TUNABLES` and
/// `LD_PRELOAD`: the stopper's process has an empty environment, and the command that
/// ignores SIGTERM is still stopped at the timeout.
#[test]
fn the_stopper_gets_nothing_of_the_images_environment() {
    let image = NodeImage(2, format!("sxt-envimg-{}:1", unique_hex(6)));
    let base = format!("sx-envbase-{}", unique_hex(6));
    assert_exit(
        &docker_on(2, &["create", "--name", &base, TARGET_IMAGE, "true"]),
        0,
    );
    let committed = docker_on(
        2,
        &[
            "commit",
            "--change",
            "ENV GLIBC_TUNABLES=glibc.malloc.check=3",
            "--change",
            "ENV LD_PRELOAD=/nonexistent-preload.so",
            "--change",
            &format!("LABEL {TEST_LABEL}=e2e"),
            &base,
            &image.1,
        ],
    );
    assert_exit(&docker_on(2, &["rm", &base]), 0);
    assert_exit(&committed, 0);
    let env = docker_on(
        2,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            &image.1,
        ],
    );
    assert_stdout_has(&env, "GLIBC_TUNABLES=");
    assert_stdout_has(&env, "LD_PRELOAD=");

    let svc = Service::create_of(
        None,
        &image.1,
        &["--replicas", "1", "--constraint", "node.hostname==node2"],
        &["sleep", "3600"],
        1,
    );
    let task = svc.on("node2").clone();
    let container = container_of(&task.id);
    let marker = "sleep 3004";
    let child = spawn_swarm_exec(&task_exec_args(
        &["--timeout", "3s"],
        &task.id,
        &sh(&format!("trap '' TERM; {marker}")),
    ));
    // The command ignores SIGTERM: the stopper waits out its 5 s grace, time to look.
    let seen = eventually("the stopper's process", Duration::from_secs(30), || {
        stopper_environ(&container)
    });
    let out = wait(child, Duration::from_secs(60));
    assert_exit(&out, 124);
    assert!(seen.is_empty(), "the stopper's environment: {seen:?}");
    await_processes_gone(&task, &[marker]);
    nothing_left(&svc, None);
}
