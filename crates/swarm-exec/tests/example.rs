//! The files under example/ work on the lab swarm as their comments say.

use std::time::Duration;

use crate::util::*;

#[test]
fn stack_file_deploys_and_its_tasks_take_task_exec() {
    lab();
    let stack = deploy_example_stack(&format!("ex{}", unique_hex(8)));
    let web = format!("{}_web", stack.0);
    let agent = format!("{}_agent", stack.0);
    eventually("the stack's tasks to run", Duration::from_secs(60), || {
        let running = |svc: &str| running_task_lines(svc, "{{.ID}}").len();
        (running(&web) == 3 && running(&agent) == 3).then_some(())
    });
    let out = task_exec(&[], &format!("{web}.2"), &sh("echo hello from $(hostname)"));
    assert_exit(&out, 0);
    let hello = out.stdout_str();
    assert!(hello.starts_with("hello from "), "{hello}");
    let out = task_exec(&[], &format!("{agent}@node3"), &["cat", "/etc/hostname"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str().trim().len(), 12, "{}", out.stdout_str());
    // Its declared action, listed and run by name in every task.
    let out = swarm_exec(&["action", &web]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "hostname  [\"cat\",\"/etc/hostname\"]\n");
    let out = swarm_exec(&["action", "--all", "--no-prefix", &web, "hostname"]);
    assert_exit(&out, 0);
    let text = out.stdout_str();
    let names: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(names.len(), 3, "{text}");
    assert!(names.iter().all(|n| n.len() == 12), "{names:?}");
}
