//! Fitting the Docker toolbox (issue 7): the Docker CLI plugin, contexts, stdin.

use std::process::Command;

use crate::util::*;

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
    /// The docker CLI with this config dir and `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(["--config", self.path()]).args(args);
        c
    }
    /// Runs the docker CLI with this config dir.
    fn docker(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }
    /// Creates context `name` for the engine at `host` in this config dir.
    fn create_context(&self, name: &str, host: &str) {
        let host = format!("host={host}");
        let created = self.docker(&["context", "create", name, "--docker", &host]);
        assert_exit(&created, 0);
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn docker_cli_plugin_runs_task_exec_on_the_engine_docker_uses() {
    let svc = shared();
    let cfg = ConfigDir::new();
    let plugins = cfg.0.join("cli-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(SWARM_EXEC, plugins.join("docker-swarmexec")).unwrap();
    // Listed by the docker CLI.
    let help = cfg.docker(&["--help"]);
    assert_stdout_has(&help, "swarmexec");
    // The engine docker would use: here DOCKER_HOST (the lab manager), and a context.
    let at2 = svc.at("node2");
    let in_plugin = task_exec_args(&[], &at2, &sh("echo via-plugin; exit 4"));
    let out = run(cfg.command(&["swarmexec"]).args(in_plugin));
    assert_exit(&out, 4);
    assert_eq!(out.stdout_str(), "via-plugin\n");
    cfg.create_context("lab", &node_socket(1));
    let at3 = svc.at("node3");
    let in_plugin = task_exec_args(&[], &at3, &["true"]);
    let mut in_context = cfg.command(&["--context", "lab", "swarmexec"]);
    let out = run(in_context.args(in_plugin).env_remove("DOCKER_HOST"));
    assert_exit(&out, 0);
}

#[test]
fn contexts_choose_the_engine_as_the_docker_cli_does() {
    let svc = shared();
    let cfg = ConfigDir::new();
    cfg.create_context("lab", &node_socket(1));
    let at = svc.at("node2");
    // `swarm-exec GLOBAL... task-exec SERVICE@node2 true`: this config dir, no DOCKER_HOST
    // but what `env` sets.
    let exec_true = |global: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(SWARM_EXEC);
        c.args(global)
            .args(["task-exec", &at, "true"])
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", cfg.path());
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };
    // --context, DOCKER_CONTEXT, and the config's current context.
    assert_eq!(exec_true(&["--context", "lab"], &[]).code, 0);
    assert_eq!(exec_true(&[], &[("DOCKER_CONTEXT", "lab")]).code, 0);
    let used = cfg.docker(&["context", "use", "lab"]);
    assert_exit(&used, 0);
    assert_eq!(exec_true(&[], &[]).code, 0);
    // DOCKER_HOST wins over the config's context: here it points nowhere.
    let out = exec_true(&[], &[("DOCKER_HOST", "unix:///nonexistent.sock")]);
    assert_exit(&out, 125);
    // A missing or broken context: 125, naming it.
    let out = exec_true(&["--context", "nope"], &[]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "context \"nope\" does not exist");
    let out = exec_true(&[], &[("DOCKER_CONTEXT", "nope")]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "\"nope\"");
    let out = exec_true(&["--host", &node_socket(1), "--context", "lab"], &[]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "conflicting options");
}

#[test]
fn stdin_reaches_the_command_byte_exact_and_no_secret_is_left() {
    let svc = Service::global();
    let text = b"line one\nline two\n".to_vec();
    let out = swarm_exec_stdin(&["task-exec", "-i", &svc.at("node2"), "cat"], &text);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, text);
    let binary: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let at3 = svc.at("node3");
    let out = swarm_exec_stdin(&["task-exec", "--interactive", &at3, "cat"], &binary);
    assert_exit(&out, 0);
    let (back, sent) = (out.stdout.len(), binary.len());
    assert!(out.stdout == binary, "{back} bytes back of {sent}");
    // The command sees end of file.
    let out = swarm_exec_stdin(&["task-exec", "-i", &svc.at("node2"), "wc", "-c"], b"12345");
    assert_eq!(out.stdout_str().trim(), "5");
    // The same input to every task of a service.
    let to_all = ["service-exec", "-i", "--no-prefix", &svc.name, "cat"];
    let out = swarm_exec_stdin(&to_all, b"to all\n");
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "to all\nto all\nto all\n");
    // More than a secret can hold: task-exec streams it (through a live session), exact;
    // service-exec refuses it before anything is created.
    let too_much: Vec<u8> = (0..600 * 1024u32).map(|i| (i % 253) as u8).collect();
    let out = swarm_exec_stdin(&["task-exec", "-i", &svc.at("node2"), "cat"], &too_much);
    assert_exit(&out, 0);
    assert!(out.stdout == too_much, "{} bytes back", out.stdout.len());
    let to_all = ["service-exec", "-i", "--no-prefix", &svc.name, "cat"];
    let out = swarm_exec_stdin(&to_all, &too_much);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "at most 512000");
    no_session_left(&svc.name);
    // Every run removed its secret.
    let secrets = swarm_exec_objects("secret", &svc.name);
    assert_eq!(secrets, Vec::<String>::new());
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
    let exec = |global: &[&str], args: &[&str], cfg: Option<&str>| {
        let mut c = Command::new(SWARM_EXEC);
        c.args(global).args(args);
        c.env_remove("DOCKER_HOST").env("PATH", &path);
        if let Some(cfg) = cfg {
            c.env("DOCKER_CONFIG", cfg);
        }
        run(&mut c)
    };
    let at3 = svc.at("node3");
    let over_ssh = task_exec_args(&[], &at3, &sh("echo over-ssh; exit 6"));
    let out = exec(&["-H", "ssh://root@127.0.0.1:2222"], &over_ssh, None);
    assert_exit(&out, 6);
    assert_eq!(out.stdout_str(), "over-ssh\n");
    // A context with an ssh endpoint, as `docker context create` writes it.
    let cfg = ConfigDir::new();
    cfg.create_context("viassh", "ssh://root@127.0.0.1:2222");
    let echo_x = service_exec_args(&["--no-prefix"], &svc.name, &["echo", "x"]);
    let out = exec(&["--context", "viassh"], &echo_x, Some(cfg.path()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "x\nx\nx\n");
    // debug, as any command.
    let debug = [
        "debug",
        "--image",
        TARGET_IMAGE,
        &at3,
        "--",
        "sh",
        "-c",
        "exit 3",
    ];
    let out = exec(&["--context", "viassh"], &debug, Some(cfg.path()));
    assert_exit(&out, 3);
    // Nothing listening: 125, with ssh's own words.
    let true_at3 = task_exec_args(&[], &at3, &["true"]);
    let out = exec(&["-H", "ssh://root@127.0.0.1:2299"], &true_at3, None);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "ssh");
}

/// On a terminal (here a pseudo-terminal from util-linux's `script`), a quiet run shows
/// what it waits on, and clears it when output comes; `-q` and a non-terminal show nothing.
#[test]
fn status_line_only_on_a_terminal_and_not_with_q() {
    let svc = shared();
    let bin = SWARM_EXEC;
    let at2 = svc.at("node2");
    let cmd = format!("{bin} task-exec {at2} sh -c 'sleep 3; echo done'");
    let on_tty = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    assert_eq!(on_tty.code, 0, "{}", on_tty.stdout_str());
    let text = on_tty.stdout_str();
    assert!(text.contains("running on node2"), "{text:?}");
    // Cleared before the output: carriage return and erase-line, then the command's line.
    assert!(text.contains("\r\x1b[Kdone"), "{text:?}");
    let quiet_cmd = format!("{bin} -q {}", &cmd[bin.len() + 1..]);
    let quiet = run(Command::new("script").args(["-qec", &quiet_cmd, "/dev/null"]));
    let shown = quiet.stdout_str();
    assert!(!shown.contains("running on"), "{shown:?}");
    // Off a terminal: nothing but the output.
    let piped = task_exec(&[], &at2, &sh("sleep 2; echo done"));
    assert_eq!(piped.stdout_str(), "done\n");
    assert!(piped.stderr.is_empty(), "{}", piped.stderr_str());
}
