//! `scripts/bench --persist`: runs through a keeper's standing helper (`SWARM_EXEC_PERSIST`)
//! into a task on each worker, beside `docker exec` on that worker's own engine and a plain
//! `task-exec` (a helper per run), interleaved round by round; a section of its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::{direct_exec, exec_output, median, percentile, sh, splice, Node, Res, Task};

/// One worker's task, and that worker's own engine.
struct Worker<'a> {
    label: String,
    task: &'a str,
    container: &'a str,
    docker: &'a Docker,
}

/// How the runs go: the binary, the manager, and a private runtime directory for the
/// bench's own keeper.
struct Runner<'a> {
    bin: &'a str,
    host: &'a str,
    dir: PathBuf,
}

impl Runner<'_> {
    /// One `task-exec` run (persisted or not) to its end; its wall time and stdout bytes.
    /// Its exit code must be `code`.
    fn run(&self, persist: bool, args: &[&str], code: i32) -> Res<(Duration, usize)> {
        let mut cmd = Command::new(self.bin);
        cmd.args(args)
            .env("DOCKER_HOST", self.host)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env_remove("SWARM_EXEC_PERSIST")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if persist {
            cmd.env("SWARM_EXEC_PERSIST", "120s");
        }
        let t = Instant::now();
        let out = cmd.output()?;
        let elapsed = t.elapsed();
        if out.status.code() != Some(code) {
            return Err(format!("swarm-exec {args:?}: {} (wanted {code})", out.status).into());
        }
        Ok((elapsed, out.stdout.len()))
    }

    fn stop(&self) {
        let _ = Command::new(self.bin)
            .args(["persist", "stop"])
            .env("DOCKER_HOST", self.host)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .stdout(Stdio::null())
            .status();
    }
}

const BIG: usize = 3_000_000;

/// `--persist-only`: the section for the lab's two workers, spliced into the report.
pub async fn alone(
    nodes: &[Node],
    one: &[Task],
    bin: &str,
    manager_host: &str,
    rounds: usize,
    out: &str,
) -> Res<()> {
    let mut workers = Vec::new();
    for n in nodes.iter().skip(1).take(2) {
        let t = one
            .iter()
            .find(|t| t.node == n.name)
            .ok_or("no bench task on a worker")?;
        let v = n.docker.version().await?.version.unwrap_or_default();
        workers.push(Worker {
            label: format!("{} (Docker {v})", n.name),
            task: &t.id,
            container: &t.container,
            docker: &n.docker,
        });
    }
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let section = section(bin, manager_host, &workers, rounds, &date).await?;
    splice(out, &section)?;
    println!("{section}");
    Ok(())
}

/// The section: per worker, `true` and 3 MB of output through the keeper, beside
/// `docker exec` on the worker's engine and a plain run.
async fn section(
    bin: &str,
    host: &str,
    workers: &[Worker<'_>],
    rounds: usize,
    date: &str,
) -> Res<String> {
    let dir = std::env::temp_dir().join(format!("swarm-exec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runner = Runner { bin, host, dir };
    let measured = rows(&runner, workers, rounds).await;
    runner.stop();
    let _ = std::fs::remove_dir_all(&runner.dir);
    let rows = measured?;
    let mut s = String::from(
        "## Persist: runs through a standing helper (`SWARM_EXEC_PERSIST`)\n\n\
         | worker | what | `docker exec` on its engine | persisted: first run (opens) | \
         persisted median | p95 | target | plain task-exec median |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    s.push_str(&rows);
    let _ = write!(
        s,
        "\n{rounds} rounds, interleaved; all times in ms, wall time of the client process. \
         Target: the median at most max(150 ms, 2 × `docker exec` on the worker's own \
         engine). \"3 MB\" is `cat` of 3,000,000 random bytes and `exit 7`, each run's bytes \
         and exit code checked. A persisted run pays a connection to the keeper, the task's \
         look-up on the manager, and an exec by the standing helper; the first one also opens \
         the session. Measured by `scripts/bench --persist` on {date}.\n"
    );
    Ok(s)
}

async fn rows(runner: &Runner<'_>, workers: &[Worker<'_>], rounds: usize) -> Res<String> {
    let mut s = String::new();
    for w in workers {
        eprintln!("bench: persist on {}", w.label);
        let blob = format!("head -c {BIG} /dev/urandom > /tmp/bench-blob");
        exec_output(w.docker, w.container, &["sh", "-c", &blob]).await?;
        let cat = [
            "task-exec",
            w.task,
            "sh",
            "-c",
            "cat /tmp/bench-blob; exit 7",
        ];
        let truth = ["task-exec", w.task, "true"];
        let (first, _) = runner.run(true, &truth, 0)?;
        let [mut direct, mut kept, mut plain] = [Vec::new(), Vec::new(), Vec::new()];
        let [mut big_direct, mut big_kept] = [Vec::new(), Vec::new()];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for round in 0..rounds {
            eprintln!("bench: persist round {}/{rounds}", round + 1);
            direct.push(ms(direct_exec(w.docker, w.container).await?));
            kept.push(ms(runner.run(true, &truth, 0)?.0));
            plain.push(ms(runner.run(false, &truth, 0)?.0));
            let read = ["cat", "/tmp/bench-blob"];
            big_direct.push(ms(exec_output(w.docker, w.container, &read).await?.0));
            let (d, n) = runner.run(true, &cat, 7)?;
            if n != BIG {
                return Err(format!("persisted cat gave {n} bytes, not {BIG}").into());
            }
            big_kept.push(ms(d));
        }
        let d = median(&mut direct);
        let target = (2.0 * d).max(150.0);
        let _ = writeln!(
            s,
            "| {} | `true` | {d:.0} | {:.0} | **{:.0}** | {:.0} | ≤ {target:.0} | {:.0} |",
            w.label,
            ms(first),
            median(&mut kept),
            percentile(&mut kept, 95.0),
            median(&mut plain),
        );
        let _ = writeln!(
            s,
            "| {} | 3 MB, exit 7 | {:.0} | – | **{:.0}** | {:.0} | – | – |",
            w.label,
            median(&mut big_direct),
            median(&mut big_kept),
            percentile(&mut big_kept, 95.0),
        );
    }
    Ok(s)
}
