//! `action`: commands a stack file declares, run by name (issue 29).

use std::time::Duration;

use crate::util::*;

/// A stack whose service `app` (two replicas, off the client's engine, so every run has a
/// helper) declares actions; `$$` is how a stack file writes a `$` for the shell.
fn stack_file(client: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {TARGET_IMAGE}
    command: ["sleep", "86400"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
        constraints: ["node.hostname != {client}"]
      labels:
        {TEST_LABEL}: e2e
        swarm-exec.action.greet: '["sh", "-c", "echo hi $$*; exit 3", "greet", "..."]'
        swarm-exec.action.mark: '["sh", "-c", "echo marked >> /tmp/marks; echo mark; exit 4"]'
        swarm-exec.action.slow: '["sh", "-c", "sleep 4; echo secret-arg-done"]'
        swarm-exec.action.broken: 'not json'
"#
    )
}

/// Deploys the stack; its service's name and the stack, removed when dropped.
fn deploy() -> (String, Stack) {
    lab();
    let name = format!("sxa{}", unique_hex(8));
    let file = std::env::temp_dir().join(format!("{name}.yml"));
    std::fs::write(&file, stack_file(client_node())).unwrap();
    let stack = deploy_stack(&name, file.to_str().unwrap());
    let _ = std::fs::remove_file(&file);
    let service = format!("{name}_app");
    eventually("two running tasks", Duration::from_secs(60), || {
        (running_task_lines(&service, "{{.ID}}").len() == 2).then_some(())
    });
    (service, stack)
}

/// How many times `mark` ran in each task (the lines of its file there).
fn marks(service: &str) -> Vec<usize> {
    let out = service_exec(
        &["--no-prefix"],
        service,
        &["sh", "-c", "cat /tmp/marks 2>/dev/null | wc -l"],
    );
    assert_exit(&out, 0);
    let mut n: Vec<usize> = out
        .stdout_str()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    n.sort_unstable();
    n
}

#[test]
fn declared_actions_run_by_name_and_nothing_else_runs() {
    let (svc, _stack) = deploy();
    // The list: each action with its command, the broken one saying why.
    let out = swarm_exec(&["action", &svc]);
    assert_exit(&out, 0);
    let list = out.stdout_str();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(
        lines[0].starts_with("broken") && lines[0].contains("not usable"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("greet") && lines[1].contains(r#""echo hi $*; exit 3""#),
        "{list}"
    );
    let out = swarm_exec(&["action", "--format", "json", &svc]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout_str()).unwrap();
    assert_eq!(json[2]["name"], "mark", "{json}");
    assert_eq!(json[2]["command"][0], "sh", "{json}");
    assert!(json[0]["error"].is_string(), "{json}");

    // One task: output and exit code pass through; extra arguments where it says "...".
    let out = swarm_exec(&["action", &svc, "greet", "a", "b c"]);
    assert_exit(&out, 3);
    assert_eq!(out.stdout_str(), "hi a b c\n");
    let out = swarm_exec(&["action", &svc, "mark"]);
    assert_exit(&out, 4);
    assert_eq!(out.stdout_str(), "mark\n");
    assert_eq!(marks(&svc), [0, 1]);

    // Refused, and nothing run: arguments it does not take, an undeclared or broken
    // action, a name that cannot be one.
    let out = swarm_exec(&["action", &svc, "mark", "--", "--drop"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "takes no arguments");
    let out = swarm_exec(&["action", &svc, "drop-db"]);
    assert_exit(&out, 125);
    assert_stderr_has(
        &out,
        "declares no action \"drop-db\" (declared: broken, greet, mark, slow)",
    );
    let out = swarm_exec(&["action", &svc, "broken"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "not usable");
    let out = swarm_exec(&["action", &svc, "../mark"]);
    assert_exit(&out, 125);
    let out = swarm_exec(&["action", "sxa-no-such-service", "mark"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "no service named sxa-no-such-service");
    assert_eq!(marks(&svc), [0, 1]);

    // Every task: each one's exit code in its object; 1 as service-exec gives it.
    let out = swarm_exec(&["action", "--all", "--format", "json", &svc, "mark"]);
    assert_exit(&out, 1);
    let text = out.stdout_str();
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{text}");
    for o in &objects {
        assert_eq!(o["exit_code"], 4, "{o}");
        assert_eq!(o["stdout"], "mark\n", "{o}");
    }
    assert_eq!(marks(&svc), [1, 2]);
}

/// The helper of an action names the actor and the action, never its command.
#[test]
fn an_actions_helper_names_the_actor_and_the_action_only() {
    let (svc, _stack) = deploy();
    let mut cmd = std::process::Command::new(SWARM_EXEC);
    cmd.args(["action", &svc, "slow"])
        .env("SWARM_EXEC_ACTOR", "ci/pipeline-812");
    let child = spawn_piped(&mut cmd);
    let helper = await_helper_of(&svc);
    let labels = docker_ok(&["service", "inspect", "-f", "{{json .Spec.Labels}}", &helper]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["swarm-exec.actor"], "ci/pipeline-812", "{labels}");
    assert_eq!(labels["swarm-exec.command"], "action", "{labels}");
    assert_eq!(labels["swarm-exec.action"], "slow", "{labels}");
    assert!(!labels.to_string().contains("secret-arg"), "{labels}");
    let out = wait(child, Duration::from_secs(60));
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "secret-arg-done\n");
    assert!(
        swarm_exec_objects("service", &svc).is_empty(),
        "helper left"
    );
}
