//! Measures swarm-exec on the lab swarm (scripts/lab up) against its floors, interleaved
//! round by round, and writes the figures to BENCHMARKS.md. Run it with `scripts/bench`.
//!
//! - single task: `swarm-exec task-exec <task on a worker> true`, beside a direct
//!   `docker exec` on the worker's own engine and a bare helper round trip (create a helper
//!   service that runs `exec`, poll it every 50 ms, read its exit code, remove it);
//! - fan-out: `swarm-exec service-exec` over N tasks on all nodes, beside the same tasks
//!   exec'd directly and concurrently through each node's own engine;
//! - bulk output: `task-exec` of N MB of text beside `docker exec` of the same command on
//!   the worker's own engine, and of N MB of random bytes beside the log medium's own floor
//!   (a bare one-shot service on the worker writing the same bytes base64 to its log,
//!   followed from its creation until the last byte);
//! - swarm-exec's peak RSS (also of a 1 GB run), its start-up time, the helper image size.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ExecConfig, Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::ListTasksOptions;
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;

mod persist;
mod sessions;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TARGET_IMAGE: &str = "swarm-exec-lab/busybox:1";
const FAN_SERVICE: &str = "bench-fan";
const ONE_SERVICE: &str = "bench-one";
/// The reference implementation's median for `true` on a worker, as measured in issue 6
/// on the same kind of machine; it is not re-measured here.
const REFERENCE_MS: f64 = 1260.0;

struct Node {
    name: String,
    docker: Docker,
}

struct Task {
    id: String,
    node: String,
    node_id: String,
    slot: u64,
    container: String,
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let rounds: usize = opt("--rounds", "15").parse()?;
    let fans: Vec<usize> = opt("--fan", "6,30,60")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let bin = opt(
        "--bin",
        "target/x86_64-unknown-linux-gnu/release/swarm-exec",
    );
    let out = opt("--out", "BENCHMARKS.md");
    // Only the fan-out figures (e.g. on a lab of 10 nodes), put into the report's section
    // for that many nodes; the rest of the report stays.
    let fan_only = args.iter().any(|a| a == "--fan-only");
    // Only the live-session figures, into their own section.
    let sessions_only = args.iter().any(|a| a == "--sessions-only");
    // Only the bulk-output figures, into their section.
    let bulk_only = args.iter().any(|a| a == "--bulk-only");
    // Only the memory of service-exec's JSON over many tasks, into its section.
    let memory_only = args.iter().any(|a| a == "--memory-only");
    // Only the runs through a standing helper (`--persist`), into their section.
    let persist_only = args.iter().any(|a| a == "--persist-only");
    let bulk = Bulk {
        rounds: opt("--bulk-rounds", "5").parse()?,
        bytes: opt("--bulk-mb", "200").parse::<u64>()? * 1_000_000,
        // With --bulk-only: which node's task (2: the first worker; 3: the 20.10 one).
        node: if bulk_only {
            opt("--bulk-node", "2").parse::<usize>()?.saturating_sub(1)
        } else {
            1
        },
    };
    let lab = std::env::var("SWARM_EXEC_LAB").unwrap_or_else(|_| "/var/tmp/swarm-exec-lab".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(
            &lab,
            &bin,
            rounds,
            &fans,
            bulk,
            &out,
            Only {
                fan: fan_only,
                sessions: sessions_only,
                bulk: bulk_only,
                memory: memory_only,
                persist: persist_only,
            },
        ))
}

/// The bulk-output measurement: how many rounds, of how many bytes.
#[derive(Debug, Clone, Copy)]
struct Bulk {
    rounds: usize,
    bytes: u64,
    /// The node (index) whose task `--bulk-only` measures.
    node: usize,
}

const TEXT: &str = "yes 'a line of text, much like a dump has'";

/// Parts of the report measured on their own, each spliced into its section.
#[derive(Debug, Clone, Copy)]
struct Only {
    fan: bool,
    sessions: bool,
    bulk: bool,
    memory: bool,
    persist: bool,
}

async fn run(
    lab: &str,
    bin: &str,
    rounds: usize,
    fans: &[usize],
    bulk: Bulk,
    out: &str,
    only: Only,
) -> Res<()> {
    let mut nodes = Vec::new();
    for n in 1.. {
        let sock = format!("{lab}/node{n}/docker.sock");
        if !std::path::Path::new(&sock).exists() {
            break;
        }
        let docker = Docker::connect_with_unix(&sock, 120, bollard::API_DEFAULT_VERSION)?;
        let name = docker.info().await?.name.unwrap_or_default();
        nodes.push(Node { name, docker });
    }
    if nodes.len() < 3 {
        return Err(format!("need the lab's 3 nodes under {lab}: scripts/lab up").into());
    }
    let manager = nodes[0].docker.clone();
    let manager_host = format!("unix://{lab}/node1/docker.sock");
    let max_fan = fans.iter().copied().max().unwrap_or(6);

    eprintln!("bench: creating {ONE_SERVICE} (global) and {FAN_SERVICE} ({max_fan} replicas)");
    for (name, replicas) in [(ONE_SERVICE, None), (FAN_SERVICE, Some(max_fan))] {
        let _ = manager.delete_service(name).await;
        manager
            .create_service(target_spec(name, replicas), None)
            .await?;
    }
    let result = measure(
        &nodes,
        &manager,
        &manager_host,
        bin,
        rounds,
        fans,
        max_fan,
        bulk,
        out,
        only,
    )
    .await;
    for name in [ONE_SERVICE, FAN_SERVICE] {
        let _ = manager.delete_service(name).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    nodes: &[Node],
    manager: &Docker,
    manager_host: &str,
    bin: &str,
    rounds: usize,
    fans: &[usize],
    max_fan: usize,
    bulk: Bulk,
    out: &str,
    only: Only,
) -> Res<()> {
    let fan_only = only.fan;
    let one = wait_tasks(manager, ONE_SERVICE, nodes.len()).await?;
    let fan = wait_tasks(manager, FAN_SERVICE, max_fan).await?;
    let worker = one
        .iter()
        .find(|t| t.node == nodes[1].name)
        .ok_or("no bench task on the first worker")?;
    let worker_docker = &nodes[1].docker;
    let bulk_at = BulkAt {
        bin,
        manager_host,
        manager,
        worker,
        worker_docker,
    };
    if only.sessions {
        let on_manager = one
            .iter()
            .find(|t| t.node == nodes[0].name)
            .ok_or("no bench task on the manager")?;
        let lab_dir = manager_host
            .trim_start_matches("unix://")
            .trim_end_matches("/node1/docker.sock");
        let other_worker = one
            .iter()
            .find(|t| nodes.get(2).is_some_and(|n| t.node == n.name))
            .ok_or("no bench task on the second worker")?;
        let lab = sessions::Lab {
            bin,
            manager_host,
            other_worker_task: &other_worker.id,
            worker_task: &worker.id,
            worker_container: &worker.container,
            worker_host: format!("unix://{lab_dir}/node2/docker.sock"),
            manager_task: &on_manager.id,
            manager_container: &on_manager.container,
        };
        let mut engines = Vec::new();
        for (i, n) in nodes.iter().take(3).enumerate() {
            let v = n.docker.version().await?.version.unwrap_or_default();
            let role = if i == 0 { "manager" } else { "worker" };
            engines.push(format!("{} ({role}) Docker {v}", n.name));
        }
        let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let section = sessions::section(&lab, rounds, 200, &date, &engines.join(", "))?;
        splice(out, &section)?;
        println!("{section}");
        return Ok(());
    }
    if only.persist {
        return persist::alone(nodes, &one, bin, manager_host, rounds, out).await;
    }
    if only.memory {
        let section = memory_section(bin, manager_host, max_fan, rounds)?;
        splice(out, &section)?;
        println!("{section}");
        return Ok(());
    }
    if only.bulk {
        return bulk_alone(nodes, &one, bulk_at, bulk, out).await;
    }
    let by_name: HashMap<&str, &Docker> =
        nodes.iter().map(|n| (n.name.as_str(), &n.docker)).collect();
    let helper_image = manager
        .inspect_image(swarm_exec_core::DEFAULT_IMAGE)
        .await?;
    let image_id = helper_image.id.clone().unwrap_or_default();
    let image_size = helper_image.size.unwrap_or(0);

    let mut m: HashMap<String, Vec<f64>> = HashMap::new();
    let mut rss: Vec<i64> = Vec::new();
    let mut rec = |k: &str, d: Duration| {
        m.entry(k.to_owned())
            .or_default()
            .push(d.as_secs_f64() * 1000.0)
    };
    // Image mode: the same run with the swarm-exec image (scripts/bench puts it on the
    // workers for this comparison; zero-install needs nothing there).
    let image_mode = [
        "task-exec",
        "--image",
        swarm_exec_core::DEFAULT_IMAGE,
        &worker.id,
        "true",
    ];
    // One of each first, unrecorded: caches, connections, images, the program's configs.
    run_swarm_exec(bin, manager_host, &["task-exec", &worker.id, "true"])?;
    if !fan_only {
        run_swarm_exec(bin, manager_host, &image_mode)?;
    }
    bare_helper(manager, &image_id, worker).await?;

    for round in 0..rounds {
        eprintln!("bench: round {}/{rounds}", round + 1);
        if !fan_only {
            let (d, kb) = run_swarm_exec(bin, manager_host, &["task-exec", &worker.id, "true"])?;
            rec("task-exec", d);
            rss.push(kb);
            let (d, kb) = run_swarm_exec(bin, manager_host, &image_mode)?;
            rec("task-exec image", d);
            rss.push(kb);
            rec(
                "direct",
                direct_exec(worker_docker, &worker.container).await?,
            );
        }
        rec("bare", bare_helper(manager, &image_id, worker).await?);
        if fan_only {
            rec(
                "bare at once",
                bare_helpers_at_once(manager, &image_id, &one).await?,
            );
        }
        for &n in fans {
            let mut args = vec!["service-exec".to_owned(), "--no-prefix".to_owned()];
            for slot in 1..=n {
                args.extend(["-f".to_owned(), format!("slot={slot}")]);
            }
            args.extend([FAN_SERVICE.to_owned(), "true".to_owned()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (d, kb) = run_swarm_exec(bin, manager_host, &args)?;
            rec(&format!("service-exec {n}"), d);
            rss.push(kb);
            let targets: Vec<&Task> = fan.iter().filter(|t| t.slot as usize <= n).collect();
            rec(
                &format!("fan-out floor {n}"),
                fan_out_floor(&by_name, &targets).await?,
            );
        }
    }
    if fan_only {
        let title = format!(
            "## Fan-out on {} nodes: `service-exec` over N tasks",
            nodes.len()
        );
        let mut section = fan_section(&m, fans, &fan, &title);
        let mut engines = Vec::new();
        for n in nodes {
            engines.push(n.docker.version().await?.version.unwrap_or_default());
        }
        engines.sort();
        engines.dedup();
        let _ = writeln!(
            section,
            "\nMeasured by `scripts/bench --nodes {}` on {}: {} rounds, interleaved; times in ms; \
             engines {}.",
            nodes.len(),
            sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            rounds,
            engines.join(", ")
        );
        splice(out, &section)?;
        println!("{section}");
        return Ok(());
    }
    let rss_1gb = bulk_rounds(&bulk_at, bulk, &mut rec, &mut rss).await?;

    let mut startup = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let s = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        if !s.success() {
            return Err("swarm-exec --version failed".into());
        }
        startup.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let phases = phases(bin, manager_host, &worker.id, 5)?;
    // Every node's engine: the lab's swarm is mixed.
    let mut engines = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let v = n.docker.version().await?.version.unwrap_or_default();
        let role = if i == 0 { " (manager)" } else { "" };
        engines.push(format!("{}{role} Docker {v}", n.name));
    }
    let engine = engines.join(", ");
    let configs = program_configs(manager).await?;
    let report = report(
        &m,
        &rss,
        (bulk, rss_1gb),
        &startup,
        (image_size, &configs),
        &phases,
        rounds,
        fans,
        &engine,
        nodes.len(),
        &fan,
    );
    // Sections measured on their own (`--fan-only` on 10 nodes, `--sessions-only`) stay.
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let kept: String = [
        "\n## Fan-out on ",
        "\n## Live sessions",
        "\n## Memory",
        "\n## Bulk output on another worker",
        "\n## Persist",
    ]
    .iter()
    .filter_map(|h| {
        let rest = &old[old.find(h)? + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
        Some(rest[..end].trim_end().to_owned() + "\n\n")
    })
    .collect();
    std::fs::write(
        out,
        format!("{report}\n{kept}").trim_end().to_owned() + "\n",
    )?;
    println!("{report}");
    Ok(())
}

fn target_spec(name: &str, replicas: Option<usize>) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([("swarm-exec.test".into(), "bench".into())])),
        mode: Some(match replicas {
            Some(n) => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(n as i64),
                }),
                ..Default::default()
            },
            None => ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(TARGET_IMAGE.into()),
                args: Some(vec!["sleep".into(), "86400".into()]),
                stop_grace_period: Some(1_000_000_000),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn wait_tasks(manager: &Docker, service: &str, n: usize) -> Res<Vec<Task>> {
    let start = Instant::now();
    loop {
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([
                ("service".into(), vec![service.into()]),
                ("desired-state".into(), vec!["running".into()]),
            ])),
        };
        let tasks = manager.list_tasks(Some(opts)).await?;
        let mut running = Vec::new();
        for t in tasks {
            let status = t.status.clone().unwrap_or_default();
            if status.state.map(|s| s.to_string()).as_deref() != Some("running") {
                continue;
            }
            let node_id = t.node_id.clone().unwrap_or_default();
            let node = manager
                .inspect_node(&node_id)
                .await?
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_default();
            running.push(Task {
                id: t.id.unwrap_or_default(),
                node,
                node_id,
                slot: t.slot.unwrap_or(0) as u64,
                container: status
                    .container_status
                    .and_then(|c| c.container_id)
                    .unwrap_or_default(),
            });
        }
        if running.len() == n {
            return Ok(running);
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("{service}: {} of {n} tasks running", running.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs swarm-exec to completion; returns its wall time and peak RSS (KiB).
fn run_swarm_exec(bin: &str, host: &str, args: &[&str]) -> Res<(Duration, i64)> {
    let t = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .env("DOCKER_HOST", host)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4 for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = t.elapsed();
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        return Err(format!("swarm-exec {args:?} failed: {status}").into());
    }
    Ok((elapsed, usage.ru_maxrss))
}

/// `--bulk-only`: the bulk rounds from the task on node `bulk.node`, spliced into that
/// worker's section.
async fn bulk_alone(
    nodes: &[Node],
    one: &[Task],
    at: BulkAt<'_>,
    bulk: Bulk,
    out: &str,
) -> Res<()> {
    let mut m: HashMap<String, Vec<f64>> = HashMap::new();
    let mut rec = |k: &str, d: Duration| {
        m.entry(k.to_owned())
            .or_default()
            .push(d.as_secs_f64() * 1000.0)
    };
    let node = nodes.get(bulk.node).ok_or("no such --bulk-node")?;
    let worker = one
        .iter()
        .find(|t| t.node == node.name)
        .ok_or("no bench task on that node")?;
    let at = BulkAt {
        worker,
        worker_docker: &node.docker,
        ..at
    };
    // One run first, unrecorded: the program's configs, connections, caches.
    run_swarm_exec(at.bin, at.manager_host, &["task-exec", &worker.id, "true"])?;
    let mut rss = Vec::new();
    let rss_1gb = bulk_rounds(&at, bulk, &mut rec, &mut rss).await?;
    let v = node.docker.version().await?.version.unwrap_or_default();
    let mut section = bulk_section(&m, bulk, rss_1gb, &format!("{} Docker {v}", node.name));
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(section, "\nMeasured by `scripts/bench --bulk` on {date}.");
    splice(out, &section)?;
    println!("{section}");
    Ok(())
}

/// How much output each task prints in the memory measurement.
const MEMORY_TASK_BYTES: usize = 4 << 20;

/// `service-exec --format json` over `tasks` tasks that each print 4 MiB: its peak RSS
/// (the most of `rounds` runs) against its target, as a section of its own.
fn memory_section(bin: &str, host: &str, tasks: usize, rounds: usize) -> Res<String> {
    let script = format!("yes 0123456789abcdef | head -c {MEMORY_TASK_BYTES}");
    let args = [
        "service-exec",
        "--format",
        "json",
        FAN_SERVICE,
        "sh",
        "-c",
        &script,
    ];
    let mut kb = Vec::new();
    let mut ms = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: memory round {}/{rounds}", round + 1);
        let (d, k) = run_swarm_exec(bin, host, &args)?;
        kb.push(k);
        ms.push(d.as_secs_f64() * 1000.0);
    }
    let peak = kb.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
    let total = (tasks * MEMORY_TASK_BYTES) >> 20;
    Ok(format!(
        "## Memory: `service-exec --format json` over {tasks} tasks\n\n\
         | what | peak RSS (most of {rounds} runs) | target |\n|---|---:|---:|\n\
         | {tasks} tasks printing 4 MiB each ({total} MiB of output, every byte in the objects) \
         | {peak:.1} MiB | < 64 MiB |\n\n\
         Each task's object is printed as it ends and its output let go; past 64 KiB a task's \
         output waits in an unlinked temporary file. Wall time median {:.0} ms. Measured by \
         `scripts/bench --memory` on {}.\n",
        median(&mut ms),
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    ))
}

/// `docker exec <container> true` through the node's own engine.
async fn direct_exec(docker: &Docker, container: &str) -> Res<Duration> {
    Ok(exec_output(docker, container, &["true"]).await?.0)
}

/// `cmd` in `container` through the node's own engine, all its output read; returns the
/// time and the number of stdout bytes. The command must exit 0.
async fn exec_output(docker: &Docker, container: &str, cmd: &[&str]) -> Res<(Duration, u64)> {
    let t = Instant::now();
    let created = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(cmd.iter().map(|c| (*c).to_owned()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut bytes = 0;
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None::<StartExecOptions>)
        .await?
    {
        while let Some(item) = output.next().await {
            if let bollard::container::LogOutput::StdOut { message } = item? {
                bytes += message.len() as u64;
            }
        }
    }
    let code = docker.inspect_exec(&created.id).await?.exit_code;
    if code != Some(0) {
        return Err(format!("direct exec of {cmd:?} exited {code:?}").into());
    }
    Ok((t.elapsed(), bytes))
}

/// A one-shot service (restart none) of `image` running `args` on node `node_id`, named
/// `prefix` and a random suffix.
fn one_shot(prefix: &str, image: &str, args: Vec<String>, node_id: &str) -> ServiceSpec {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    ServiceSpec {
        name: Some(name),
        labels: Some(HashMap::from([("swarm-exec.test".into(), "bench".into())])),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                args: Some(args),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={node_id}")]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The log medium's own floor: a one-shot service on the worker writes `n` random bytes,
/// base64 (busybox wraps at 76 columns), to its log; its logs are followed from creation
/// until the last byte arrives (a follow never ends by itself).
async fn log_floor(manager: &Docker, worker: &Task, n: u64) -> Res<Duration> {
    let encoded = n.div_ceil(3) * 4;
    let expected = encoded + encoded.div_ceil(76);
    let t = Instant::now();
    let mut spec = one_shot(
        "bench-floor",
        TARGET_IMAGE,
        vec![
            "sh".into(),
            "-c".into(),
            format!("head -c {n} /dev/urandom | base64"),
        ],
        &worker.node_id,
    );
    if let Some(t) = spec.task_template.as_mut() {
        // As swarm-exec's helper has: its own driver, no rotation before the end.
        t.log_driver = Some(bollard::models::TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: Some(HashMap::from([("max-size".into(), "1g".into())])),
        });
    }
    let id = manager
        .create_service(spec, None)
        .await?
        .id
        .unwrap_or_default();
    let result = async {
        let mut got = 0u64;
        while got < expected {
            let opts = bollard::query_parameters::LogsOptions {
                follow: true,
                stdout: true,
                ..Default::default()
            };
            let mut logs = manager.service_logs(&id, Some(opts));
            got = 0;
            while let Some(item) = logs.next().await {
                match item {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        got += message.len() as u64;
                        if got >= expected {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if got < expected {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if t.elapsed() > Duration::from_secs(600) {
                return Err(format!("log floor: {got} of {expected} bytes").into());
            }
        }
        Ok(t.elapsed())
    }
    .await;
    manager.delete_service(&id).await?;
    result
}

/// The same tasks, exec'd directly and concurrently through each node's own engine.
async fn fan_out_floor(nodes: &HashMap<&str, &Docker>, tasks: &[&Task]) -> Res<Duration> {
    let t = Instant::now();
    let runs = tasks
        .iter()
        .map(|task| direct_exec(nodes[task.node.as_str()], &task.container));
    for r in join_all(runs).await {
        r?;
    }
    Ok(t.elapsed())
}

/// The reference mechanism without the reference's fixed sleeps: create a helper service
/// that runs `exec`, poll its task every 50 ms, read the exit code, remove the service.
async fn bare_helper(manager: &Docker, image_id: &str, target: &Task) -> Res<Duration> {
    let t = Instant::now();
    let mut spec = one_shot(
        "bench-bare",
        image_id,
        vec!["exec".into(), target.container.clone(), "true".into()],
        &target.node_id,
    );
    spec.labels
        .get_or_insert_with(HashMap::new)
        .insert("swarm-exec.helper".into(), "bench".into());
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        c.mounts = Some(vec![Mount {
            typ: Some(MountType::BIND),
            source: Some("/var/run/docker.sock".into()),
            target: Some("/var/run/docker.sock".into()),
            ..Default::default()
        }]);
    }
    let id = manager
        .create_service(spec, None)
        .await?
        .id
        .unwrap_or_default();
    let result = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let opts = ListTasksOptions {
                filters: Some(HashMap::from([("service".into(), vec![id.clone()])])),
            };
            let tasks = manager.list_tasks(Some(opts)).await?;
            let Some(task) = tasks.into_iter().next() else {
                continue;
            };
            let status = task.status.unwrap_or_default();
            match status.state.map(|s| s.to_string()).as_deref() {
                Some("complete") => return Ok(()),
                Some("failed" | "rejected" | "shutdown") => {
                    return Err(
                        format!("bare helper ended {:?}: {:?}", status.state, status.err).into(),
                    )
                }
                _ => {}
            }
        }
    }
    .await;
    manager.delete_service(&id).await?;
    result.map(|()| t.elapsed())
}

/// One bare helper on every node at once (`targets`: a task on each), until the last ends.
async fn bare_helpers_at_once(manager: &Docker, image_id: &str, targets: &[Task]) -> Res<Duration> {
    let t = Instant::now();
    let runs = join_all(
        targets
            .iter()
            .map(|target| bare_helper(manager, image_id, target)),
    )
    .await;
    for r in runs {
        r?;
    }
    Ok(t.elapsed())
}

/// Where a task-exec's time goes, from its debug trace: median milliseconds from start to
/// each step, over `runs` runs.
fn phases(bin: &str, host: &str, task: &str, runs: usize) -> Res<Vec<(String, f64)>> {
    use std::io::BufRead;
    let marks = [
        (
            "helper created",
            "helper service created (task resolved, image pinned)",
        ),
        ("helper running", "manager sees the helper task running"),
        ("helper removed", "exit code received, helper removed"),
    ];
    let mut seen: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut total = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = Command::new(bin)
            .args(["task-exec", task, "true"])
            .env("DOCKER_HOST", host)
            .env("SWARM_EXEC_LOG", "swarm_exec_core=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line?;
            let at = t.elapsed().as_secs_f64() * 1000.0;
            for (needle, _) in &marks {
                if line.contains(needle) {
                    seen.entry(needle).or_default().push(at);
                }
            }
        }
        child.wait()?;
        total.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut out: Vec<(String, f64)> = marks
        .iter()
        .filter_map(|(needle, label)| seen.get_mut(needle).map(|v| (label.to_string(), median(v))))
        .collect();
    out.push(("process exited".into(), median(&mut total)));
    Ok(out)
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
/// The fan-out table: `service-exec` over N tasks beside its floor (a bare helper round
/// trip plus the engines' own concurrent exec of the same tasks).
fn fan_section(m: &HashMap<String, Vec<f64>>, fans: &[usize], fan: &[Task], title: &str) -> String {
    let stat = |k: &str| -> (f64, f64) {
        let mut v = m.get(k).cloned().unwrap_or_default();
        (median(&mut v), percentile(&mut v, 90.0))
    };
    let (bare, _) = stat("bare");
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for t in fan {
        *per_node.entry(t.node.as_str()).or_default() += 1;
    }
    let mut spread: Vec<(&str, usize)> = per_node.into_iter().collect();
    spread.sort_by_key(|(n, _)| (n.len(), n.to_string()));
    let spread: Vec<String> = spread.iter().map(|(n, c)| format!("{n}: {c}")).collect();
    let mut s = String::new();
    let _ = writeln!(s, "\n{title}\n");
    let _ = writeln!(
        s,
        "Tasks of `{FAN_SERVICE}` by node: {}.\n",
        spread.join(", ")
    );
    let _ = writeln!(
        s,
        "| N | service-exec median | p90 | fan-out floor median | bare helper + floor | ratio (target ≤ 1.2) |\n|---:|---:|---:|---:|---:|---:|"
    );
    for n in fans {
        let (med, p90) = stat(&format!("service-exec {n}"));
        let (floor, _) = stat(&format!("fan-out floor {n}"));
        let bound = bare + floor;
        let _ = writeln!(
            s,
            "| {n} | {med:.0} | {p90:.0} | {floor:.0} | {bound:.0} | **{:.2}** |",
            med / bound
        );
    }
    let (at_once, _) = stat("bare at once");
    if at_once > 0.0 {
        let nodes = fan
            .iter()
            .map(|t| t.node.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        let _ = writeln!(
            s,
            "\nThe floor above has one bare helper; swarm-exec starts one per node, all at once. \
             A bare helper on each of the {} nodes at once takes **{at_once:.0} ms** (median): \
             against that plus the concurrent exec, the ratios are {}.",
            nodes.len(),
            fans.iter()
                .map(|n| {
                    let (med, _) = stat(&format!("service-exec {n}"));
                    let (floor, _) = stat(&format!("fan-out floor {n}"));
                    format!("**{:.2}** (N = {n})", med / (at_once + floor))
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// Where the bulk rounds run: the binary, the manager, and the first worker's task and
/// engine.
#[derive(Clone, Copy)]
struct BulkAt<'a> {
    bin: &'a str,
    manager_host: &'a str,
    manager: &'a Docker,
    worker: &'a Task,
    worker_docker: &'a Docker,
}

/// The bulk-output rounds: 200 MB of text through `task-exec` beside `docker exec` of the
/// same on the worker's engine, and of random bytes beside the log medium's floor; then the
/// peak RSS of a 1 GB text run, which it returns.
async fn bulk_rounds(
    at: &BulkAt<'_>,
    bulk: Bulk,
    rec: &mut impl FnMut(&str, Duration),
    rss: &mut Vec<i64>,
) -> Res<i64> {
    let BulkAt {
        bin,
        manager_host,
        manager,
        worker,
        worker_docker,
    } = *at;
    let n = bulk.bytes;
    // `task-exec` of a shell line in the worker's task.
    let shell = |line: &str| {
        run_swarm_exec(
            bin,
            manager_host,
            &["task-exec", &worker.id, "sh", "-c", line],
        )
    };
    for round in 0..bulk.rounds {
        eprintln!("bench: bulk round {}/{}", round + 1, bulk.rounds);
        let text = format!("{TEXT} | head -c {n}");
        let (d, kb) = shell(&text)?;
        rec("bulk text", d);
        rss.push(kb);
        let (d, got) = exec_output(worker_docker, &worker.container, &["sh", "-c", &text]).await?;
        if got != n {
            return Err(format!("docker exec gave {got} bytes of {n}").into());
        }
        rec("bulk text docker exec", d);
        let (d, kb) = shell(&format!("head -c {n} /dev/urandom"))?;
        rec("bulk random", d);
        rss.push(kb);
        rec("log floor", log_floor(manager, worker, n).await?);
    }

    let (_, rss_1gb) = shell(&format!("{TEXT} | head -c 1000000000"))?;
    Ok(rss_1gb)
}

/// The bulk-output section of the report, from the figures of [`bulk_rounds`].
fn bulk_section(m: &HashMap<String, Vec<f64>>, bulk: Bulk, rss_1gb: i64, worker: &str) -> String {
    let stat = |k: &str| -> (f64, f64) {
        let mut v = m.get(k).cloned().unwrap_or_default();
        (median(&mut v), percentile(&mut v, 90.0))
    };
    let mut s = String::new();
    let mb = bulk.bytes / 1_000_000;
    // The first worker's section is the report's own; another's is kept beside it.
    let title = if bulk.node == 1 {
        "Bulk output"
    } else {
        "Bulk output on another worker"
    };
    let _ = writeln!(
        s,
        "\n## {title}: {mb} MB from a task on a worker ({worker})\n"
    );
    let _ = writeln!(
        s,
        "{} rounds, interleaved. Text is `{TEXT} | head -c N` (compresses well); random is \
         `head -c N /dev/urandom` (does not). Output to /dev/null; byte-exactness is the \
         end-to-end tests' business.\n",
        bulk.rounds
    );
    let _ = writeln!(
        s,
        "| what | median ms | MB/s | p90 ms |\n|---|---:|---:|---:|"
    );
    for (k, label) in [
        ("bulk text", "`task-exec` text"),
        ("bulk text docker exec", "floor: `docker exec` of the same, on the worker's own engine"),
        ("bulk random", "`task-exec` random"),
        ("log floor", "floor: the log medium (a bare service writing the same bytes base64 to its log, followed from creation)"),
    ] {
        let (med, p90) = stat(k);
        let _ = writeln!(s, "| {label} | {med:.0} | {:.1} | {p90:.0} |", mb as f64 / (med / 1000.0));
    }
    let (text, _) = stat("bulk text");
    let (direct, _) = stat("bulk text docker exec");
    let (random, _) = stat("bulk random");
    let (floor, _) = stat("log floor");
    let _ = writeln!(
        s,
        "\nRatios: text / `docker exec` = **{:.2}** (target ≤ 1.3); random / log floor = **{:.2}** (target ≤ 1.2). \
         Peak RSS of a 1 GB text run: **{:.1} MiB** (target ≤ 30 MiB).",
        text / direct,
        random / floor,
        rss_1gb as f64 / 1024.0
    );
    s
}

/// Puts `section` into the report at `out` in place of an earlier one that starts with the
/// same first line (up to the next `## ` heading), or at its end.
fn splice(out: &str, section: &str) -> Res<()> {
    let report = std::fs::read_to_string(out)?;
    let heading = section.trim_start().lines().next().unwrap_or_default();
    let new = match report.find(heading) {
        Some(start) => {
            let rest = &report[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(report.len(), |i| start + heading.len() + i + 1);
            format!(
                "{}{}\n\n{}",
                &report[..start],
                section.trim(),
                &report[end..]
            )
        }
        None => format!("{}\n\n{}\n", report.trim_end(), section.trim_end()),
    };
    std::fs::write(out, new)?;
    Ok(())
}

/// The zero-install configs on the swarm: (name, bytes), in name order.
async fn program_configs(manager: &Docker) -> Res<Vec<(String, usize)>> {
    use base64::Engine as _;
    let opts = bollard::query_parameters::ListConfigsOptions {
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec!["swarm-exec.helper=node".to_owned()],
        )])),
    };
    let mut configs = Vec::new();
    for c in manager.list_configs(Some(opts)).await? {
        let spec = c.spec.unwrap_or_default();
        let data =
            base64::engine::general_purpose::STANDARD.decode(spec.data.unwrap_or_default())?;
        configs.push((spec.name.unwrap_or_default(), data.len()));
    }
    configs.sort();
    Ok(configs)
}

// Every figure the report is made of; a struct of them would only rename the arguments.
#[allow(clippy::too_many_arguments)]
fn report(
    m: &HashMap<String, Vec<f64>>,
    rss: &[i64],
    (bulk, rss_1gb): (Bulk, i64),
    startup: &[f64],
    (image_size, configs): (i64, &[(String, usize)]),
    phases: &[(String, f64)],
    rounds: usize,
    fans: &[usize],
    engine: &str,
    nodes: usize,
    fan: &[Task],
) -> String {
    let stat = |k: &str| -> (f64, f64) {
        let mut v = m.get(k).cloned().unwrap_or_default();
        (median(&mut v), percentile(&mut v, 90.0))
    };
    let cpu = sh(
        "sh",
        &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
    );
    let mem = sh(
        "sh",
        &[
            "-c",
            "grep MemTotal /proc/meminfo | awk '{printf \"%.0f GiB\", $2/1048576}'",
        ],
    );
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Measured by `scripts/bench` (crates/swarm-exec-bench) on {}: {} cores ({}), {}, \
         a lab swarm of {} nodes on that one machine ({}). {} rounds, \
         interleaved; times in ms.\n",
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        sh("nproc", &[]),
        cpu.trim(),
        mem,
        nodes,
        engine,
        rounds,
    );
    let _ = writeln!(s, "## One task on a worker: `true`\n");
    let _ = writeln!(s, "| what | median | p90 |\n|---|---:|---:|");
    for (k, label) in [
        ("task-exec", "`swarm-exec task-exec <task> true`"),
        (
            "bare",
            "floor: bare helper round trip (create, poll every 50 ms, read state, remove)",
        ),
        ("direct", "floor: `docker exec` on the worker's own engine"),
    ] {
        let (med, p90) = stat(k);
        let _ = writeln!(s, "| {label} | {med:.0} | {p90:.0} |");
    }
    let _ = writeln!(s, "| the reference implementation (issue 6's figure, not re-measured here) | {REFERENCE_MS:.0} | |");
    let (te, _) = stat("task-exec");
    let (bare, _) = stat("bare");
    let _ = writeln!(
        s,
        "\nRatios: task-exec / bare helper = **{:.2}** (target < 1); reference / task-exec = **{:.1}×** \
         (target ≥ 2, against the issue's figure).\n",
        te / bare,
        REFERENCE_MS / te
    );
    let (image_mode, image_p90) = stat("task-exec image");
    let (zero_p90, _) = {
        let mut v = m.get("task-exec").cloned().unwrap_or_default();
        (percentile(&mut v, 90.0), ())
    };
    let _ = writeln!(
        s,
        "### Zero-install beside image mode
"
    );
    let _ = writeln!(
        s,
        "`task-exec` runs the node-side program from swarm configs in the target's own image \
         (the default; the rows above), or from the swarm-exec image on the node \
         (`--image`). Same task, same rounds, interleaved.\n"
    );
    let _ = writeln!(s, "| mode | median | p90 |\n|---|---:|---:|");
    let _ = writeln!(s, "| zero-install (default) | {te:.0} | {zero_p90:.0} |");
    let _ = writeln!(
        s,
        "| image mode (`--image swarm-exec:{}`) | {image_mode:.0} | {image_p90:.0} |",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "\nRatio: zero-install / image mode = **{:.2}** (target ≤ 1.1).\n",
        te / image_mode
    );
    let total: usize = configs.iter().map(|c| c.1).sum();
    let largest = configs.iter().map(|c| c.1).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "The node-side build as configs on the swarm (each must be < 1,024,000 bytes): \
         {} configs, {total} bytes in all, the largest {largest} bytes.\n",
        configs.len()
    );
    let _ = writeln!(s, "| config | bytes |\n|---|---:|");
    for (name, bytes) in configs {
        let _ = writeln!(s, "| `{name}` | {bytes} |");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Where a task-exec's time goes (median ms from start, one debug-traced run each of 5):\n"
    );
    let _ = writeln!(s, "| step | at |\n|---|---:|");
    for (label, at) in phases {
        let _ = writeln!(s, "| {label} | {at:.0} |");
    }
    s.push_str(&fan_section(
        m,
        fans,
        fan,
        "## Fan-out: `service-exec` over N tasks",
    ));
    if bulk.rounds > 0 {
        // The bulk runs use the first worker (the engines are listed manager first).
        let worker = engine.split(", ").nth(1).unwrap_or("the first worker");
        s.push_str(&bulk_section(m, bulk, rss_1gb, worker));
    }
    let mut startup = startup.to_vec();
    let peak = rss.iter().copied().max().unwrap_or(0);
    let _ = writeln!(s, "\n## Footprint\n");
    let _ = writeln!(s, "| what | figure | target |\n|---|---:|---:|");
    let _ = writeln!(
        s,
        "| peak RSS of swarm-exec (all runs above) | {:.1} MiB | ≤ 20 MiB |",
        peak as f64 / 1024.0
    );
    let _ = writeln!(
        s,
        "| start-up (`swarm-exec --version`, median of 30) | {:.1} ms | |",
        median(&mut startup)
    );
    let _ = writeln!(
        s,
        "| helper image (`swarm-exec:{}`) | {:.1} MB | ≤ 10 MB |",
        env!("CARGO_PKG_VERSION"),
        image_size as f64 / 1e6
    );
    s
}
