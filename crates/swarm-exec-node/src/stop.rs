//! Stopping commands that outlive their helper. The engine has no API to signal an exec, so
//! the helper starts a short-lived container in the node's PID namespace, with only CAP_KILL
//! and CAP_SYS_PTRACE, which runs `node-kill`. Its image is the helper's own (image mode),
//! or (zero-install) the target container's, into which this very program is copied through
//! the engine's archive API before it starts — no `tar`, shell or libc needed in the image.
//! `node-kill`: it checks that the exec'd
//! process belongs to the target container and signals it, its descendants and every
//! process of the container that carries the run's marker in its environment (a daemonized
//! child has left the tree, not the environment) — SIGTERM, then SIGKILL after the grace
//! period — and exits 0 only when they are gone.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use swarm_exec_proto::args::{KillArgs, RUN_ENV};
use swarm_exec_proto::tar::tar_of;
use swarm_exec_proto::{is_container_id, short_id as short, HELPER_LABEL};

/// How long a command that outlived its helper gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The stopper: see the module docs.
#[derive(Debug, Clone)]
pub struct Stopper {
    /// The helper's own image (pinned by the manager), whose entrypoint runs `node-kill`;
    /// `None`: the target container's image, with the node program copied in.
    pub image: Option<String>,
    /// That node program: this very one (the helper's), or the one a client carries (a
    /// client that stops a command it ran on its own engine, whose binary may be another).
    pub program: Program,
    pub grace: Duration,
}

/// The node program a zero-install stopper runs.
#[derive(Debug, Clone, Copy)]
pub enum Program {
    ThisOne,
    Carried(&'static [u8]),
}

/// Where the copied program is, in a zero-install stopper.
const COPIED: &str = "/.swarm-exec/node";

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("inspecting the exec in {container}: {source}")]
    Inspect {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("implausible PID {0}")]
    Pid(i64),
    #[error("inspecting target container {container} for its image: {source}")]
    TargetImage {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("reading this program to copy it into the stopper: {0}")]
    ReadSelf(#[source] std::io::Error),
    #[error("copying this program into the stopper for {container}: {source}")]
    Copy {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("creating the stopper for {container}: {source}")]
    Create {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("starting the stopper for {container}: {source}")]
    Start {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the stopper for {container} ended with {code}: processes may be left")]
    Left { container: String, code: i64 },
    #[error("waiting for the stopper for {container}: {source}")]
    Wait {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl Stopper {
    /// Stops exec `exec_id` in `container`, run by the helper tagged `run`, and waits until
    /// its processes are gone.
    pub async fn terminate(
        &self,
        docker: &Docker,
        exec_id: &str,
        container: &str,
        run: &str,
    ) -> Result<(), StopError> {
        let c = || short(container).to_owned();
        let info = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|source| StopError::Inspect {
                container: c(),
                source,
            })?;
        let (Some(true), Some(pid)) = (info.running, info.pid) else {
            return Ok(()); // already ended
        };
        let pid = i32::try_from(pid)
            .ok()
            .filter(|&p| p > 1)
            .ok_or(StopError::Pid(pid))?;
        let labels = HashMap::from([
            (HELPER_LABEL.to_owned(), "stopper".to_owned()),
            (
                "swarm-exec.target.container".to_owned(),
                container.to_owned(),
            ),
        ]);
        let kill = KillArgs {
            pid,
            container: container.to_owned(),
            run: run.to_owned(),
            grace: self.grace,
        };
        let (image, entrypoint) = self.image_for(docker, container).await?;
        let copy_in = entrypoint.is_some();
        let body = stopper_body(image, entrypoint, &kill, labels);
        let created = docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|source| StopError::Create {
                container: c(),
                source,
            })?;
        // Not auto-removed: its exit code says whether the processes are gone.
        let result = self.run(docker, &created.id, container, copy_in).await;
        // `v`: with the anonymous volumes an image's VOLUMEs made.
        let opts = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&created.id, Some(opts)).await;
        result
    }

    /// The image the stopper runs and its entrypoint: the helper's own image as it is, or
    /// (zero-install) the target's image by ID — exactly what the target runs, present on
    /// this node — with the node program copied in as the entrypoint.
    async fn image_for(
        &self,
        docker: &Docker,
        container: &str,
    ) -> Result<(String, Option<Vec<String>>), StopError> {
        if let Some(image) = &self.image {
            return Ok((image.clone(), None));
        }
        let target = docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|source| StopError::TargetImage {
                container: short(container).to_owned(),
                source,
            })?;
        Ok((
            target.image.unwrap_or_default(),
            Some(vec![COPIED.to_owned()]),
        ))
    }

    /// Starts the stopper `id` (its program copied in first when `copy_in`) and waits for
    /// its exit: 0 when the processes are gone.
    async fn run(
        &self,
        docker: &Docker,
        id: &str,
        container: &str,
        copy_in: bool,
    ) -> Result<(), StopError> {
        let c = || short(container).to_owned();
        if copy_in {
            let program = match self.program {
                Program::ThisOne => std::fs::read("/proc/self/exe").map_err(StopError::ReadSelf)?,
                Program::Carried(p) => p.to_vec(),
            };
            let opts = bollard::query_parameters::UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            };
            docker
                .upload_to_container(
                    id,
                    Some(opts),
                    bollard::body_full(tar_of(COPIED, &program).into()),
                )
                .await
                .map_err(|source| StopError::Copy {
                    container: c(),
                    source,
                })?;
        }
        docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|source| StopError::Start {
                container: c(),
                source,
            })?;
        let mut wait =
            docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(r)) if r.status_code == 0 => Ok(()),
            Some(Ok(r)) => Err(StopError::Left {
                container: c(),
                code: r.status_code,
            }),
            // A non-zero exit comes as an error from bollard.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Err(StopError::Left {
                    container: c(),
                    code,
                })
            }
            Some(Err(source)) => Err(StopError::Wait {
                container: c(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// The stopper's container: the target's PID namespace, no network, only KILL and
/// SYS_PTRACE (to read other processes' environment, for the marker), nothing of the
/// image's environment or healthcheck.
fn stopper_body(
    image: String,
    entrypoint: Option<Vec<String>>,
    kill: &KillArgs,
    labels: HashMap<String, String>,
) -> bollard::models::ContainerCreateBody {
    let copy_in = entrypoint.is_some();
    bollard::models::ContainerCreateBody {
        image: Some(image),
        entrypoint,
        cmd: Some(kill.to_args()),
        user: Some("0:0".to_owned()),
        working_dir: Some("/".to_owned()),
        env: Some(Vec::new()),
        healthcheck: Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(bollard::models::HostConfig {
            pid_mode: Some("host".to_owned()),
            cap_drop: Some(vec!["ALL".to_owned()]),
            // SYS_PTRACE: to read other processes' environment, for the marker.
            cap_add: Some(vec!["KILL".to_owned(), "SYS_PTRACE".to_owned()]),
            // The copy needs a writable layer; it goes with the container.
            readonly_rootfs: Some(!copy_in),
            network_mode: Some("none".to_owned()),
            memory: Some(32 << 20),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("refusing to signal pid {pid} of container {container:?}")]
    Refused { pid: i32, container: String },
    #[error("{0} process(es) still there after SIGKILL")]
    Left(usize),
}

/// `node-kill`: signals `pid` and its descendants and the processes that carry the run's
/// marker — only those in the container's cgroup — with SIGTERM, then SIGKILL for any left
/// after the grace period. Returns how many processes it signalled; an error when some are
/// still there at the end.
pub fn node_kill(args: &KillArgs) -> Result<usize, KillError> {
    let KillArgs {
        pid,
        container,
        run,
        grace,
    } = args;
    let pid = *pid;
    if pid <= 1 || !is_container_id(container) || run.is_empty() {
        return Err(KillError::Refused {
            pid,
            container: container.clone(),
        });
    }
    let in_target = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup"))
            .is_ok_and(|c| c.contains(container.as_str()))
    };
    let mark = format!("{RUN_ENV}={run}");
    let ours = |roots: &[i32]| {
        let mut all: Vec<i32> = roots
            .iter()
            .flat_map(|&p| process_tree(p, &in_target))
            .chain(marked(mark.as_bytes(), &in_target))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let first = ours(&[pid]);
    if first.is_empty() {
        // Gone already, or not the target's (a reused PID): nothing to do.
        return Ok(0);
    }
    signal(&first, libc::SIGTERM);
    if wait_gone(&first, *grace) {
        return Ok(first.len());
    }
    // Looked at again, from every process still there (in the target): PIDs may have been
    // reused, children forked since.
    let left: Vec<i32> = first.iter().copied().filter(|&p| alive(p)).collect();
    let again = ours(&left);
    signal(&again, libc::SIGKILL);
    if wait_gone(&again, Duration::from_secs(2)) {
        Ok(first.len().max(again.len()))
    } else {
        Err(KillError::Left(again.iter().filter(|&&p| alive(p)).count()))
    }
}

fn wait_gone(pids: &[i32], within: Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if start.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The processes that `keep` accepts whose environment holds the entry `mark` (a process
/// may change its environment: this finds those that kept what they inherited).
fn marked(mark: &[u8], keep: &dyn Fn(i32) -> bool) -> Vec<i32> {
    parents()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|&p| keep(p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == mark))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_a_tar_that_tar_reads_back_exactly() {
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
        let dir = std::env::temp_dir().join(format!("swarm-exec-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let tar = tar_of(COPIED, &data);
        assert_eq!(tar.len() % 512, 0);
        std::fs::write(&archive, &tar).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = dir.join(".swarm-exec/node");
        assert_eq!(std::fs::read(&file).unwrap(), data);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o555);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
