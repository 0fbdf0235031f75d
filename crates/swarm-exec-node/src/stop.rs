//! Stopping commands that outlive their helper. The engine has no API to signal an exec, so
//! the helper starts a short-lived container in the node's PID namespace, with only CAP_KILL
//! and CAP_SYS_PTRACE, which runs `node-kill`. Its image is the helper's own (image mode),
//! or (zero-install) the target container's, into which the loader and this very program
//! are copied through the engine's archive API before it starts — no `tar`, shell or libc
//! needed in the image. The engine gives such a container the image's environment whatever
//! it is asked (it adds every image variable the create does not name), so the loader is
//! its entrypoint: it has no libc to read any of it, checks the program's SHA-256 and
//! starts it with an empty environment — no `GLIBC_TUNABLES` or the like of the image's
//! reaches a root process with CAP_SYS_PTRACE in the node's PID namespace.
//!
//! `node-kill`: it checks that the exec'd process belongs to the target container (its
//! cgroup path names the container as a whole component) and signals it, its descendants
//! and every process of the container that carries the run's marker in its environment (a
//! daemonized child has left the tree, not the environment) — SIGTERM, then SIGKILL after
//! the grace period — each through a pidfd taken before that check, so a PID reused in
//! between is never signalled; it exits 0 only when they are gone.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use swarm_exec_proto::args::{KillArgs, NODE_KILL, RUN_ENV};
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

/// The node program a zero-install stopper runs, and the loader that starts it.
#[derive(Debug, Clone, Copy)]
pub enum Program {
    /// This very program, in a zero-install helper: its loader is mounted at [`LOADER`].
    ThisOne,
    /// What a client carries (a client that stops a command on its own engine).
    Carried {
        loader: &'static [u8],
        program: &'static [u8],
    },
}

/// Where a zero-install helper's loader is (core's `LOADER_FILE`); the loader's config may
/// carry more bytes after the loader itself, which change nothing when it runs.
const LOADER: &str = "/.swarm-exec/load";
/// Where the loader and the program (its one part) are copied in a zero-install stopper.
const COPIED_DIR: &str = ".swarm-exec";
pub(crate) const COPIED_LOADER: &str = "/.swarm-exec/load";

/// What a zero-install stopper is given: the archive copied in, and the loader's argument.
pub(crate) struct CopyIn {
    pub(crate) tar: Vec<u8>,
    pub(crate) loader_arg: String,
}

impl Program {
    pub(crate) fn copy_in(self) -> Result<CopyIn, StopError> {
        let (loader, program) = match self {
            Program::ThisOne => (
                std::fs::read(LOADER).map_err(StopError::ReadSelf)?,
                std::fs::read("/proc/self/exe").map_err(StopError::ReadSelf)?,
            ),
            Program::Carried { loader, program } => (loader.to_vec(), program.to_vec()),
        };
        let sha: String = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(&program);
            digest.iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(CopyIn {
            loader_arg: format!("1:{}:{sha}", program.len()),
            tar: swarm_exec_proto::tar::tar_of_files(
                COPIED_DIR,
                &[("load", &loader), ("1", &program)],
            ),
        })
    }
}

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
    #[error("reading this program and its loader to copy them into the stopper: {0}")]
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
        let image = self.image_for(docker, container).await?;
        // Zero-install: the loader and the program go in; image mode runs the image's own.
        let copy = match self.image {
            Some(_) => None,
            None => Some(self.program.copy_in()?),
        };
        let body = stopper_body(
            image,
            copy.as_ref().map(|c| c.loader_arg.as_str()),
            &kill,
            labels,
        );
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
        let result = self
            .run(docker, &created.id, container, copy.map(|c| c.tar))
            .await;
        // `v`: with the anonymous volumes an image's VOLUMEs made.
        let opts = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&created.id, Some(opts)).await;
        result
    }

    /// The image the stopper runs: the helper's own, or (zero-install) the target's image by
    /// ID — exactly what the target runs, present on this node.
    pub(crate) async fn image_for(
        &self,
        docker: &Docker,
        container: &str,
    ) -> Result<String, StopError> {
        if let Some(image) = &self.image {
            return Ok(image.clone());
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
        Ok(target.image.unwrap_or_default())
    }

    /// Starts the stopper `id` (`copy_in` unpacked into it first) and waits for its exit:
    /// 0 when the processes are gone.
    async fn run(
        &self,
        docker: &Docker,
        id: &str,
        container: &str,
        copy_in: Option<Vec<u8>>,
    ) -> Result<(), StopError> {
        let c = || short(container).to_owned();
        if let Some(tar) = copy_in {
            let opts = bollard::query_parameters::UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            };
            docker
                .upload_to_container(id, Some(opts), bollard::body_full(tar.into()))
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
/// SYS_PTRACE (to read other processes' environment, for the marker), no healthcheck.
/// `loader_arg`: zero-install, started by the copied loader, which drops the image's
/// environment (the engine adds it to whatever `env` says).
fn stopper_body(
    image: String,
    loader_arg: Option<&str>,
    kill: &KillArgs,
    labels: HashMap<String, String>,
) -> bollard::models::ContainerCreateBody {
    let copy_in = loader_arg.is_some();
    let (entrypoint, cmd) = match loader_arg {
        Some(arg) => {
            let mut cmd = vec![arg.to_owned()];
            cmd.extend(kill.to_args());
            (Some(vec![COPIED_LOADER.to_owned()]), cmd)
        }
        None => (None, kill.to_args()),
    };
    bollard::models::ContainerCreateBody {
        image: Some(image),
        entrypoint,
        cmd: Some(cmd),
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

/// A stopper lives seconds (its grace, then SIGKILL and 2 s); one older than this was left
/// by a helper that was itself killed while it waited for it.
const STOPPER_LEFT_AFTER: Duration = Duration::from_secs(120);

/// Removes the stoppers on this node that helpers left behind. `gc` works through the
/// managers, which do not list a node's plain containers, so each helper does this for its
/// node as it starts. Only containers labelled as stoppers whose command is `node-kill`,
/// and long past any stopper's life; best effort.
pub async fn collect_left_stoppers(docker: &Docker) {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{HELPER_LABEL}=stopper")])]);
    let opts = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let Ok(found) = docker.list_containers(Some(opts)).await else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    for c in found {
        let ours = c
            .command
            .as_deref()
            .is_some_and(|cmd| cmd.contains(NODE_KILL));
        let old = c
            .created
            .is_some_and(|t| now - t > STOPPER_LEFT_AFTER.as_secs() as i64);
        if let (true, true, Some(id)) = (ours, old, c.id) {
            let opts = bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = docker.remove_container(&id, Some(opts)).await;
        }
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
            .is_ok_and(|c| in_cgroup_of(&c, container))
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
    signal(&first, libc::SIGTERM, &in_target);
    if wait_gone(&first, *grace) {
        return Ok(first.len());
    }
    // Looked at again, from every process still there (in the target): PIDs may have been
    // reused, children forked since.
    let left: Vec<i32> = first.iter().copied().filter(|&p| alive(p)).collect();
    let again = ours(&left);
    signal(&again, libc::SIGKILL, &in_target);
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

/// Whether a `/proc/PID/cgroup` listing puts the process in container `id`'s cgroup: a
/// path component that is the ID (cgroupfs: `/docker/<id>`) or its systemd scope
/// (`/system.slice/docker-<id>.scope`), on any line (v1 hierarchies or the v2 one). Whole
/// components only: an ID that merely starts with another's is not it.
fn in_cgroup_of(listing: &str, id: &str) -> bool {
    let scope = format!("docker-{id}.scope");
    listing.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        path.split('/').any(|c| c == id || c == scope)
    })
}

/// Signals each of `pids` that `ours` still accepts, through a pidfd opened before that
/// check: the pidfd holds the process it was opened on, so one that ended and whose PID was
/// reused by then is never signalled (the check sees the newcomer and refuses it, or the
/// signal finds the old one gone). Kernels before 5.3 have no pidfd: there the check is
/// made just before kill(2), which leaves the reuse race only that narrow.
fn signal(pids: &[i32], sig: i32, ours: &dyn Fn(i32) -> bool) {
    for &p in pids {
        // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0) };
        if fd < 0 {
            let no_pidfd = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
            if no_pidfd && ours(p) {
                // SAFETY: kill(2) with a PID and a signal number has no memory effects.
                unsafe { libc::kill(p, sig) };
            }
            continue;
        }
        if ours(p) {
            // SAFETY: a pidfd we own, a signal number, no siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd as libc::c_int,
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        // SAFETY: closing the descriptor opened above, once.
        unsafe { libc::close(fd as libc::c_int) };
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
        let loader = b"loader".to_vec();
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
        let dir = std::env::temp_dir().join(format!("swarm-exec-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let tar =
            swarm_exec_proto::tar::tar_of_files(COPIED_DIR, &[("load", &loader), ("1", &data)]);
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
        use std::os::unix::fs::PermissionsExt as _;
        for (name, want) in [("load", &loader), ("1", &data)] {
            let file = dir.join(".swarm-exec").join(name);
            assert_eq!(&std::fs::read(&file).unwrap(), want);
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o555);
        }
        assert_eq!(COPIED_LOADER, "/.swarm-exec/load");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const ID: &str = "3f1c9a0e5b7d2c4a6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5";

    #[test]
    fn the_cgroup_names_the_container_as_a_whole_component() {
        // cgroup v1 with the cgroupfs driver, v2 with systemd, v2 with cgroupfs, and v2
        // seen from another cgroup namespace.
        let v1 = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n0::/");
        let systemd = format!("0::/system.slice/docker-{ID}.scope");
        let cgroupfs = format!("0::/docker/{ID}");
        let other_ns = format!("0::/../{ID}");
        for listing in [&v1, &systemd, &cgroupfs, &other_ns] {
            assert!(in_cgroup_of(listing, ID), "{listing}");
        }
        // Near misses: a longer ID that starts with this one, an ID as part of a name, a
        // different scope, the host's own cgroups, a line with no path.
        let longer = format!("0::/docker/{ID}ff");
        let inside = format!("0::/docker/x{ID}");
        let other_scope = format!("0::/system.slice/containerd-{ID}.scope");
        for listing in [
            longer.as_str(),
            &inside,
            &other_scope,
            "0::/system.slice/docker.service",
            "0::/",
            "garbage",
        ] {
            assert!(!in_cgroup_of(listing, ID), "{listing}");
        }
    }

    /// A child of this test signalled through its pidfd; one the check refuses is not.
    #[test]
    fn signals_go_through_a_pidfd_and_only_to_what_the_check_accepts() {
        let mut spared = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut stopped = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (spared_pid, stopped_pid) = (spared.id() as i32, stopped.id() as i32);
        signal(&[spared_pid, stopped_pid], libc::SIGTERM, &|p| {
            p == stopped_pid
        });
        let status = stopped.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            spared.try_wait().unwrap().is_none(),
            "refused by the check, yet signalled"
        );
        spared.kill().unwrap();
        spared.wait().unwrap();
    }
}
