//! `wait`: a deployment pipeline's gate, against the engines' own view of the tasks.

use std::time::{Duration, Instant};

use crate::util::*;

/// A task's container is healthy only 8 s after it starts.
const SLOW_START: &str = "sleep 8; touch /tmp/ready; exec sleep 3600";

/// A replicated service whose containers become healthy ~8 s after they start, made
/// without waiting (the test waits itself), removed when dropped.
struct Slow {
    name: String,
}

impl Slow {
    fn new(replicas: &str, health: &str) -> Slow {
        lab();
        let name = format!("sxt-{}", unique_hex(10));
        let label = format!("{TEST_LABEL}=e2e");
        let health = format!("--health-cmd={health}");
        create_service_of(
            &name,
            &[
                "--container-label",
                &label,
                "--stop-grace-period",
                "1s",
                "--replicas",
                replicas,
                "--replicas-max-per-node",
                "1",
                &health,
                "--health-interval=1s",
                "--health-start-period=60s",
                "--health-retries=1",
                "--health-timeout=2s",
                "--update-parallelism=1",
                "--update-delay=3s",
            ],
            TARGET_IMAGE,
            &["sh", "-c", SLOW_START],
        );
        Slow { name }
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.name]);
    }
}

/// Every task the service wants running, as the engines see it at this moment: its node,
/// its container's health there, and its `V` (the spec's version).
fn engines_view(service: &str) -> Vec<(String, String, String)> {
    let ids = docker_ok(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "-q",
        "--no-trunc",
    ]);
    ids.lines()
        .map(|id| {
            let node = docker_ok(&["inspect", "-f", "{{.NodeID}}", id]);
            let host = docker_ok(&[
                "node",
                "inspect",
                "-f",
                "{{.Description.Hostname}}",
                node.trim(),
            ]);
            let n: u32 = host.trim().trim_start_matches("node").parse().unwrap();
            let cid = container_of(id);
            let health = docker(&[
                "-H",
                &node_socket(n),
                "inspect",
                "-f",
                "{{.State.Health.Status}}",
                cid.trim(),
            ])
            .stdout_str();
            let env = docker_ok(&["inspect", "-f", "{{.Spec.ContainerSpec.Env}}", id]);
            (
                host.trim().to_owned(),
                health.trim().to_owned(),
                env.trim().to_owned(),
            )
        })
        .collect()
}

#[test]
fn wait_returns_once_every_task_runs_the_new_spec_healthy() {
    let svc = Slow::new("2", "test -e /tmp/ready");
    let out = swarm_exec(&["wait", "--timeout", "90s", &svc.name]);
    assert_exit(&out, 0);
    // An update that takes a while: one task at a time, each healthy 8 s after it starts.
    docker_ok(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "V=2",
        &svc.name,
    ]);
    // Mid-update, once a task of the new spec runs, the service named alone runs in it.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let view = engines_view(&svc.name);
        let new = view
            .iter()
            .filter(|(_, h, e)| h == "healthy" && e.contains("V=2"))
            .count();
        if new >= 1 {
            let out = task_exec(&[], &svc.name, &["sh", "-c", "echo $V"]);
            assert_exit(&out, 0);
            assert_eq!(out.stdout_str(), "2\n", "{view:?}");
            break;
        }
        assert!(Instant::now() < until, "no task of the new spec: {view:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // --wait-ready: every task, once the service has converged, is of the new spec.
    let echo_v = ["sh", "-c", "echo $V"];
    let out = service_exec(&["--wait-ready", "90s", "--no-prefix"], &svc.name, &echo_v);
    assert_exit(&out, 0);
    assert_eq!(out.stdout_str(), "2\n2\n", "{}", out.stderr_str());
    let start = Instant::now();
    let out = swarm_exec(&["wait", "--timeout", "90s", &svc.name]);
    assert_exit(&out, 0);
    // At that moment, in the engines' own view: two tasks, each healthy and of the new spec.
    let view = engines_view(&svc.name);
    assert_eq!(view.len(), 2, "{view:?}");
    for (node, health, env) in &view {
        assert_eq!(health, "healthy", "{node}: {view:?}");
        assert!(env.contains("V=2"), "{node}: {view:?}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_service_that_never_becomes_healthy_is_named_at_the_timeout() {
    let svc = Slow::new("1", "false");
    let start = Instant::now();
    let out = swarm_exec(&["wait", "--timeout", "20s", &svc.name]);
    assert_exit(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_stderr_has(&out, &format!("{}: not converged after 20s", svc.name));
    assert_stderr_has(&out, "health check has not passed");
    // Nothing is run in a service that does not converge in --wait-ready.
    let out = task_exec(&["--wait-ready", "3s"], &svc.name, &["true"]);
    assert_exit(&out, 125);
    assert_stderr_has(&out, "not converged after --wait-ready 3s");
    // Bad input, before anything: no such service, no service at all.
    let out = swarm_exec(&["wait", "sxt-no-such-service"]);
    assert_exit(&out, 125);
    let out = swarm_exec(&["wait"]);
    assert_exit(&out, 125);
}
