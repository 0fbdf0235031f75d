//! Fitting the Docker toolbox (issue 7): the Docker CLI plugin, contexts, stdin.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn lab_manager() -> String {
    let lab = std::env::var("SWARM_EXEC_LAB").unwrap_or_else(|_| "/var/tmp/swarm-exec-lab".into());
    format!("unix://{lab}/node1/docker.sock")
}

/// A fresh Docker config dir, removed afterwards.
struct ConfigDir(std::path::PathBuf);

impl ConfigDir {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!(
            "sx-docker-config-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&d).unwrap();
        ConfigDir(d)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait(child, Duration::from_secs(120))
}

#[test]
fn docker_cli_plugin_runs_task_exec_on_the_engine_docker_uses() {
    let svc = shared();
    let cfg = ConfigDir::new();
    let plugins = cfg.0.join("cli-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_swarm-exec"),
        plugins.join("docker-swarmexec"),
    )
    .unwrap();
    // Listed by the docker CLI.
    let help = run(Command::new("docker").args(["--config", cfg.path(), "--help"]));
    assert!(
        help.stdout_str().contains("swarmexec"),
        "{}",
        help.stdout_str()
    );
    // The engine docker would use: here DOCKER_HOST (the lab manager), and a context.
    let out = run(Command::new("docker").args([
        "--config",
        cfg.path(),
        "swarmexec",
        "task-exec",
        &svc.at("node2"),
        "sh",
        "-c",
        "echo via-plugin; exit 4",
    ]));
    assert_eq!(out.code, 4, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "via-plugin\n");
    let created = run(Command::new("docker").args([
        "--config",
        cfg.path(),
        "context",
        "create",
        "lab",
        "--docker",
        &format!("host={}", lab_manager()),
    ]));
    assert_eq!(created.code, 0, "{}", created.stderr_str());
    let out = run(Command::new("docker")
        .args([
            "--config",
            cfg.path(),
            "--context",
            "lab",
            "swarmexec",
            "task-exec",
            &svc.at("node3"),
            "true",
        ])
        .env_remove("DOCKER_HOST"));
    assert_eq!(out.code, 0, "{}", out.stderr_str());
}

#[test]
fn contexts_choose_the_engine_as_the_docker_cli_does() {
    let svc = shared();
    let cfg = ConfigDir::new();
    let created = run(Command::new("docker").args([
        "--config",
        cfg.path(),
        "context",
        "create",
        "lab",
        "--docker",
        &format!("host={}", lab_manager()),
    ]));
    assert_eq!(created.code, 0, "{}", created.stderr_str());
    let exec = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_swarm-exec"));
        c.args(args)
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", cfg.path());
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };
    let at = svc.at("node2");
    // --context, DOCKER_CONTEXT, and the config's current context.
    assert_eq!(
        exec(&["--context", "lab", "task-exec", &at, "true"], &[]).code,
        0
    );
    assert_eq!(
        exec(&["task-exec", &at, "true"], &[("DOCKER_CONTEXT", "lab")]).code,
        0
    );
    let used = run(Command::new("docker").args(["--config", cfg.path(), "context", "use", "lab"]));
    assert_eq!(used.code, 0, "{}", used.stderr_str());
    assert_eq!(exec(&["task-exec", &at, "true"], &[]).code, 0);
    // DOCKER_HOST wins over the config's context: here it points nowhere.
    let out = exec(
        &["task-exec", &at, "true"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
    );
    assert_eq!(out.code, 125, "{}", out.stderr_str());
    // A missing or broken context: 125, naming it.
    let out = exec(&["--context", "nope", "task-exec", &at, "true"], &[]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("context \"nope\" does not exist"),
        "{}",
        out.stderr_str()
    );
    let out = exec(&["task-exec", &at, "true"], &[("DOCKER_CONTEXT", "nope")]);
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("\"nope\""),
        "{}",
        out.stderr_str()
    );
    let out = exec(
        &[
            "--host",
            &lab_manager(),
            "--context",
            "lab",
            "task-exec",
            &at,
            "true",
        ],
        &[],
    );
    assert_eq!(out.code, 125);
    assert!(
        out.stderr_str().contains("conflicting options"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn stdin_reaches_the_command_byte_exact_and_no_secret_is_left() {
    let svc = Service::global();
    let text = b"line one\nline two\n".to_vec();
    let out = swarm_exec_stdin(&["task-exec", "-i", &svc.at("node2"), "cat"], &text);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout, text);
    let binary: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let out = swarm_exec_stdin(
        &["task-exec", "--interactive", &svc.at("node3"), "cat"],
        &binary,
    );
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert!(
        out.stdout == binary,
        "{} bytes back of {}",
        out.stdout.len(),
        binary.len()
    );
    // The command sees end of file.
    let out = swarm_exec_stdin(&["task-exec", "-i", &svc.at("node2"), "wc", "-c"], b"12345");
    assert_eq!(out.stdout_str().trim(), "5");
    // The same input to every task of a service.
    let out = swarm_exec_stdin(
        &["service-exec", "-i", "--no-prefix", &svc.name, "cat"],
        b"to all\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "to all\nto all\nto all\n");
    // More than a secret can hold: refused before anything is created.
    let out = swarm_exec_stdin(
        &["task-exec", "-i", &svc.at("node2"), "cat"],
        vec![b'x'; 600 * 1024],
    );
    assert_eq!(out.code, 125, "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("at most 512000"),
        "{}",
        out.stderr_str()
    );
    assert!(svc.helpers().is_empty());
    // Every run removed its secret.
    assert_eq!(
        swarm_exec_objects("secret", &svc.name),
        Vec::<String>::new()
    );
}

/// The private sshd that `scripts/sshd-lab up` runs (scripts/test starts it): on
/// 127.0.0.1:2222, its `docker` reaching the lab manager; its `bin/ssh` wrapper carries the
/// client key, so it goes first in PATH.
fn sshd_path() -> String {
    let state =
        std::env::var("SWARM_EXEC_SSHD").unwrap_or_else(|_| "/var/tmp/swarm-exec-sshd".into());
    assert!(
        std::path::Path::new(&format!("{state}/bin/ssh")).exists(),
        "the ssh tests need scripts/sshd-lab up (scripts/test starts it)"
    );
    format!("{state}/bin:{}", std::env::var("PATH").unwrap_or_default())
}

#[test]
fn ssh_endpoints_reach_the_engine_through_dial_stdio() {
    let svc = shared();
    let path = sshd_path();
    let exec = |args: &[&str], cfg: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_swarm-exec"));
        c.args(args).env_remove("DOCKER_HOST").env("PATH", &path);
        if let Some(cfg) = cfg {
            c.env("DOCKER_CONFIG", cfg);
        }
        run(&mut c)
    };
    let out = exec(
        &[
            "-H",
            "ssh://root@127.0.0.1:2222",
            "task-exec",
            &svc.at("node3"),
            "sh",
            "-c",
            "echo over-ssh; exit 6",
        ],
        None,
    );
    assert_eq!(out.code, 6, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "over-ssh\n");
    // A context with an ssh endpoint, as `docker context create` writes it.
    let cfg = ConfigDir::new();
    let created = run(Command::new("docker").args([
        "--config",
        cfg.path(),
        "context",
        "create",
        "viassh",
        "--docker",
        "host=ssh://root@127.0.0.1:2222",
    ]));
    assert_eq!(created.code, 0, "{}", created.stderr_str());
    let out = exec(
        &[
            "--context",
            "viassh",
            "service-exec",
            "--no-prefix",
            &svc.name,
            "echo",
            "x",
        ],
        Some(cfg.path()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "x\nx\nx\n");
    // Nothing listening: 125, with ssh's own words.
    let out = exec(
        &[
            "-H",
            "ssh://root@127.0.0.1:2299",
            "task-exec",
            &svc.at("node3"),
            "true",
        ],
        None,
    );
    assert_eq!(out.code, 125, "{}", out.stderr_str());
    assert!(out.stderr_str().contains("ssh"), "{}", out.stderr_str());
}

/// On a terminal (here a pseudo-terminal from util-linux's `script`), a quiet run shows
/// what it waits on, and clears it when output comes; `-q` and a non-terminal show nothing.
#[test]
fn status_line_only_on_a_terminal_and_not_with_q() {
    let svc = shared();
    let bin = env!("CARGO_BIN_EXE_swarm-exec");
    let cmd = format!(
        "{bin} task-exec {} sh -c 'sleep 3; echo done'",
        svc.at("node2")
    );
    let on_tty = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    assert_eq!(on_tty.code, 0, "{}", on_tty.stdout_str());
    let text = on_tty.stdout_str();
    assert!(text.contains("running on node2"), "{text:?}");
    // Cleared before the output: carriage return and erase-line, then the command's line.
    assert!(text.contains("\r\x1b[Kdone"), "{text:?}");
    let quiet = run(Command::new("script").args([
        "-qec",
        &format!("{bin} -q {}", &cmd[bin.len() + 1..]),
        "/dev/null",
    ]));
    assert!(
        !quiet.stdout_str().contains("running on"),
        "{:?}",
        quiet.stdout_str()
    );
    // Off a terminal: nothing but the output.
    let piped = swarm_exec(&[
        "task-exec",
        &svc.at("node2"),
        "sh",
        "-c",
        "sleep 2; echo done",
    ]);
    assert_eq!(piped.stdout_str(), "done\n");
    assert!(piped.stderr.is_empty(), "{}", piped.stderr_str());
}
