//! The helper side: runs inside the helper container on the target's node, execs the
//! command in the target container over the node's own socket, and reports everything as
//! [`frame`](crate::frame) records on its stdout.

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;

use crate::api::LogStream;
use crate::frame::{Encoder, Record};
use crate::helper::ExecSpec;
use crate::target::is_container_id;

/// The helper's own exit codes when the command did not run to completion.
pub const HELPER_FAILED: i32 = 125;
pub const HELPER_TIMED_OUT: i32 = 124;

/// One helper's work, as its arguments describe it.
pub struct NodeRun<'a> {
    pub exec: &'a ExecSpec,
    /// The commands' stdin (from the mounted secret).
    pub stdin: Option<&'a [u8]>,
    /// Tags the records (chosen by the manager).
    pub nonce: &'a str,
    /// When to give up, stopping the commands.
    pub timeout: Duration,
    pub stopper: &'a Stopper,
}

/// Runs the command in every container of `run.exec` at once and writes the records to
/// `out`; `stop` resolves when the helper is told to stop (its service removed). Returns the
/// code the helper should exit with: with one container, the command's own (or one of the
/// constants above), so the helper task's final state carries it too; with several, 0 when
/// every command exited 0, else 1.
pub async fn node_exec<W: Write>(
    docker: &Docker,
    run: NodeRun<'_>,
    stop: impl std::future::Future<Output = ()>,
    out: &mut W,
) -> i32 {
    let NodeRun {
        exec,
        stdin,
        nonce,
        timeout,
        stopper,
    } = run;
    let enc = Encoder::new(nonce);
    let out = RefCell::new(RecordWriter {
        out,
        buf: Vec::with_capacity(16 * 1024),
        failed: None,
    });
    // Which exec runs in which container, for stopping them at the deadline.
    let started = RefCell::new(Vec::<(String, String)>::new());
    let runs = exec.containers.iter().enumerate().map(|(i, container)| {
        let (enc, out, started) = (&enc, &out, &started);
        async move {
            // The helper only ever execs into the containers it was created for, named by
            // full ID; anything else is refused before the socket is touched.
            let result = if is_container_id(container) {
                let on_created = |id: &str| {
                    started
                        .borrow_mut()
                        .push((id.to_owned(), container.clone()))
                };
                exec_in_container(
                    docker,
                    exec,
                    container,
                    stdin,
                    on_created,
                    |stream, bytes| {
                        let record = match stream {
                            LogStream::Stdout => Record::Stdout(i, bytes.to_vec()),
                            LogStream::Stderr => Record::Stderr(i, bytes.to_vec()),
                        };
                        out.borrow_mut().write(enc, &record);
                    },
                )
                .await
            } else {
                Err(format!("invalid container ID {container:?}"))
            };
            let record = match &result {
                Ok(code) => Record::Exit(i, *code),
                Err(reason) => Record::Failed(i, reason.clone()),
            };
            out.borrow_mut().write(enc, &record);
            result
        }
    });
    let all = join_all(runs);
    tokio::pin!(all);
    let finished = tokio::select! {
        r = &mut all => Some(r),
        _ = tokio::time::sleep(timeout) => None,
        () = stop => None,
    };
    let code = match finished {
        Some(results) => {
            let mut w = out.borrow_mut();
            if let Some(e) = w.failed.take() {
                // stdout is the only channel back; say so on stderr, where the manager
                // looks when records stop.
                eprintln!("swarm-exec helper: writing output: {e}");
                return HELPER_FAILED;
            }
            w.write(&enc, &Record::Done);
            match results.as_slice() {
                // Exit statuses are 0-255; anything else (never seen) counts as a failure.
                [Ok(code)] => u8::try_from(*code).map_or(HELPER_FAILED, i32::from),
                [Err(_)] => HELPER_FAILED,
                all if all.iter().all(|r| matches!(r, Ok(0))) => 0,
                _ => 1,
            }
        }
        None => {
            // The commands are not left running: each gets SIGTERM, then SIGKILL.
            // All at once: the helper has only its stop grace period for this.
            let running = std::mem::take(&mut *started.borrow_mut());
            let stops = running.iter().map(|(exec_id, container)| async move {
                if let Err(e) = stopper.terminate(docker, exec_id, container).await {
                    eprintln!(
                        "swarm-exec helper: could not stop the command in {}: {e}",
                        short(container)
                    );
                }
            });
            join_all(stops).await;
            out.borrow_mut().write(&enc, &Record::TimedOut);
            HELPER_TIMED_OUT
        }
    };
    code
}

/// How the helper stops commands that outlive it (the engine has no API to signal an exec):
/// a short-lived container of the helper image, in the node's PID namespace with only
/// CAP_KILL, runs `node-kill`, which checks that the exec'd process belongs to the target
/// container and signals it and its descendants — SIGTERM, then SIGKILL after `grace`.
#[derive(Debug, Clone)]
pub struct Stopper {
    /// The helper's own image (pinned by the manager), which holds `node-kill`.
    pub image: String,
    pub grace: Duration,
}

/// How long a command that outlived its helper gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The hidden subcommand the stopper container runs.
pub const NODE_KILL_MODE: &str = "node-kill";

impl Stopper {
    async fn terminate(
        &self,
        docker: &Docker,
        exec_id: &str,
        container: &str,
    ) -> Result<(), String> {
        let info = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| format!("inspecting the exec: {e}"))?;
        let (Some(true), Some(pid)) = (info.running, info.pid) else {
            return Ok(()); // already ended
        };
        if pid <= 1 {
            return Err(format!("implausible PID {pid}"));
        }
        let labels = std::collections::HashMap::from([
            (crate::HELPER_LABEL.to_owned(), "stopper".to_owned()),
            (
                "swarm-exec.target.container".to_owned(),
                container.to_owned(),
            ),
        ]);
        let body = bollard::models::ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(vec![
                NODE_KILL_MODE.to_owned(),
                "--pid".to_owned(),
                pid.to_string(),
                "--container".to_owned(),
                container.to_owned(),
                "--grace-ms".to_owned(),
                self.grace.as_millis().to_string(),
            ]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(bollard::models::HostConfig {
                pid_mode: Some("host".to_owned()),
                auto_remove: Some(true),
                cap_drop: Some(vec!["ALL".to_owned()]),
                cap_add: Some(vec!["KILL".to_owned()]),
                readonly_rootfs: Some(true),
                network_mode: Some("none".to_owned()),
                memory: Some(32 << 20),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|e| format!("creating the stopper: {e}"))?;
        let started = docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await;
        if let Err(e) = started {
            // Auto-remove only applies to a container that ran: remove it here.
            let opts = bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = docker.remove_container(&created.id, Some(opts)).await;
            return Err(format!("starting the stopper: {e}"));
        }
        Ok(())
    }
}

/// Encodes records onto the helper's stdout, one write per record so output stays live;
/// the first write error is kept and ends the run.
struct RecordWriter<'a, W> {
    out: &'a mut W,
    buf: Vec<u8>,
    failed: Option<std::io::Error>,
}

impl<W: Write> RecordWriter<'_, W> {
    fn write(&mut self, enc: &Encoder, record: &Record) {
        if self.failed.is_some() {
            return;
        }
        self.buf.clear();
        enc.encode(record, &mut self.buf);
        if let Err(e) = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush())
        {
            self.failed = Some(e);
        }
    }
}

/// Execs `exec`'s command in `container` on the engine `docker` talks to, handing each
/// chunk of output to `on_output` as it arrives; returns the command's exit code.
pub async fn exec_in_container(
    docker: &Docker,
    exec: &ExecSpec,
    container: &str,
    stdin: Option<&[u8]>,
    on_created: impl FnOnce(&str),
    mut on_output: impl FnMut(LogStream, &[u8]),
) -> Result<i64, String> {
    if exec.command.is_empty() {
        return Err("empty command".to_owned());
    }
    let config = ExecConfig {
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(exec.command.clone()),
        env: (!exec.env.is_empty()).then(|| exec.env.clone()),
        working_dir: exec.workdir.clone(),
        user: exec.user.clone(),
        privileged: Some(exec.privileged),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(|e| format!("cannot exec in container {}: {e}", short(container)))?;
    on_created(&created.id);
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| format!("cannot start the command: {e}"))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err("the engine did not attach to the command".to_owned());
    };
    // The input is written while the output is read (a command may not read all of its
    // input before it writes), then closed, so the command sees end of file.
    let feed = async {
        if let Some(data) = stdin {
            use tokio::io::AsyncWriteExt;
            // A command that exits without reading its input is no error of ours.
            let _ = input.write_all(data).await;
            let _ = input.shutdown().await;
        }
    };
    let read = async {
        while let Some(item) = output.next().await {
            use bollard::container::LogOutput;
            match item {
                Ok(LogOutput::StdOut { message }) => on_output(LogStream::Stdout, &message),
                Ok(LogOutput::StdErr { message }) => on_output(LogStream::Stderr, &message),
                Ok(_) => {}
                Err(e) => return Err(format!("reading the command's output: {e}")),
            }
        }
        Ok(())
    };
    let ((), read) = tokio::join!(feed, read);
    read?;
    // The output can end a moment before the engine records the exit code.
    for _ in 0..200 {
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| format!("cannot read the command's exit code: {e}"))?;
        match (inspected.running, inspected.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err("the engine reported no exit code for the command".to_owned())
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// `node-kill`: signals process `pid` and its descendants — only those in `container`'s
/// cgroup — with SIGTERM, then SIGKILL for any left after `grace`. Runs in the node's PID
/// namespace (see [`Stopper`]). Returns how many processes it signalled.
pub fn node_kill(pid: i32, container: &str, grace: Duration) -> Result<usize, String> {
    if pid <= 1 || !is_container_id(container) {
        return Err(format!(
            "refusing to signal pid {pid} of container {container:?}"
        ));
    }
    let in_target = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| c.contains(container))
    };
    let tree = process_tree(pid, &in_target);
    if tree.is_empty() {
        // Gone already, or not the target's (a reused PID): nothing to do.
        return Ok(0);
    }
    signal(&tree, libc::SIGTERM);
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        if tree.iter().all(|&p| !alive(p)) {
            return Ok(tree.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Looked at again, from every process of the tree still there (in the target): PIDs
    // may have been reused, children forked since.
    let mut again: Vec<i32> = tree
        .iter()
        .filter(|&&p| alive(p))
        .flat_map(|&p| process_tree(p, &in_target))
        .collect();
    again.sort_unstable();
    again.dedup();
    signal(&again, libc::SIGKILL);
    Ok(tree.len())
}

/// `pid` and its descendants that `keep` accepts.
fn process_tree(pid: i32, keep: &dyn Fn(i32) -> bool) -> Vec<i32> {
    if !keep(pid) {
        return Vec::new();
    }
    let children = parents();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            children
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.retain(|&p| keep(p));
    tree
}

fn signal(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) with a PID and a signal number has no memory effects.
        unsafe { libc::kill(p, sig) };
    }
}

/// (pid, parent pid) of every process visible in /proc.
fn parents() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields resume after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let ppid = rest.split(' ').nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// Still running (a zombie counts as ended).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}
