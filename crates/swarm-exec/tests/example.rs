//! The files under example/ work on the lab swarm as their comments say.

use std::time::Duration;

use crate::util::*;

#[test]
fn stack_file_deploys_and_its_tasks_take_task_exec() {
    lab();
    let stack = Stack(format!(
        "ex{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../example/stack.yml");
    docker_ok(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        file,
        &stack.0,
    ]);
    let web = format!("{}_web", stack.0);
    let agent = format!("{}_agent", stack.0);
    eventually("the stack's tasks to run", Duration::from_secs(60), || {
        let running = |svc: &str| {
            docker_ok(&[
                "service",
                "ps",
                svc,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ])
            .lines()
            .filter(|l| l.starts_with("Running"))
            .count()
        };
        (running(&web) == 3 && running(&agent) == 3).then_some(())
    });
    let out = swarm_exec(&[
        "task-exec",
        &format!("{web}.2"),
        "sh",
        "-c",
        "echo hello from $(hostname)",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert!(
        out.stdout_str().starts_with("hello from "),
        "{}",
        out.stdout_str()
    );
    let out = swarm_exec(&[
        "task-exec",
        &format!("{agent}@node3"),
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str().trim().len(), 12, "{}", out.stdout_str());
}
