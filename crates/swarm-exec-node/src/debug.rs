//! `debug`: a container of the caller's image beside a target, in the target's PID and
//! network namespaces (and its IPC, when the target lets others join it), attached as an
//! exec would be — for targets whose image has no shell or tools. It is the helper's own:
//! labelled with the run, removed by the helper on every path, and by the next helper on
//! this node when the one that made it was killed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use swarm_exec_proto::{short_id as short, ExecSpec, HELPER_LABEL};

use crate::end::TargetError;

/// The label values that mark a debug container and a forwarder (`port-forward`'s, see
/// [`crate::forward`]), the helper's own containers; the run's tag is under [`RUN_LABEL`].
pub const DEBUG: &str = "debug";
pub const FORWARD: &str = "forward";
pub const RUN_LABEL: &str = "swarm-exec.run";

/// A debug container, started and attached.
pub struct Attached {
    pub id: String,
    pub output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// What a debug container is made of.
pub struct Debug<'a> {
    pub image: &'a str,
    pub exec: &'a ExecSpec,
    /// The target's full container ID.
    pub target: &'a str,
    /// The run's tag, also the helper's argument: how a left container is told.
    pub tag: &'a str,
    pub tty: bool,
    pub stdin: bool,
}

impl Debug<'_> {
    /// Creates the container (pulling its image when this node lacks it), attaches to it
    /// and starts it. A command the image cannot run is reported as the engine records it
    /// for `docker run` (126 or 127, with its message on stderr); the container then stays
    /// until [`remove`] like any other.
    /// `on_created` is told the container's ID as soon as it exists.
    pub async fn start(
        &self,
        docker: &Docker,
        on_created: impl FnOnce(&str),
    ) -> Result<Attached, TargetError> {
        let ipc = self.shares_ipc(docker).await?;
        let body = self.body(ipc);
        let id = match create(docker, body.clone()).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.pull(docker).await?;
                create(docker, body).await
            }
            r => r,
        }
        .map_err(|source| TargetError::Debug {
            image: self.image.to_owned(),
            source,
        })?;
        on_created(&id);
        match attach_and_start(docker, &id, self.stdin).await {
            Ok(a) => Ok(a),
            Err(source) => {
                let refused = start_refused(docker, &id, source).await;
                if refused.is_err() {
                    let _ = remove(docker, &id).await;
                }
                refused
            }
        }
    }

    /// Whether the target's IPC namespace may be joined: only a `shareable` one (the
    /// engine's default, `private`, refuses it).
    async fn shares_ipc(&self, docker: &Docker) -> Result<bool, TargetError> {
        let target = docker
            .inspect_container(self.target, None::<InspectContainerOptions>)
            .await
            .map_err(TargetError::Inspect)?;
        let mode = target.host_config.and_then(|h| h.ipc_mode);
        Ok(mode.as_deref() == Some("shareable"))
    }

    fn body(&self, ipc: bool) -> ContainerCreateBody {
        let join = format!("container:{}", self.target);
        let labels = HashMap::from([
            (HELPER_LABEL.to_owned(), DEBUG.to_owned()),
            (RUN_LABEL.to_owned(), self.tag.to_owned()),
            (
                "swarm-exec.target.container".to_owned(),
                self.target.to_owned(),
            ),
        ]);
        // The command is run as given, whatever entrypoint the image names.
        let (program, args) = self.exec.command.split_first().map_or_else(
            || (Vec::new(), Vec::new()),
            |(p, a)| (vec![p.clone()], a.to_vec()),
        );
        ContainerCreateBody {
            image: Some(self.image.to_owned()),
            entrypoint: Some(program),
            cmd: Some(args),
            env: Some(self.exec.env.clone()),
            working_dir: self.exec.workdir.clone(),
            user: self.exec.user.clone(),
            tty: Some(self.tty),
            open_stdin: Some(self.stdin),
            stdin_once: Some(self.stdin),
            attach_stdin: Some(self.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            labels: Some(labels),
            host_config: Some(HostConfig {
                pid_mode: Some(join.clone()),
                network_mode: Some(join.clone()),
                ipc_mode: ipc.then_some(join),
                privileged: Some(self.exec.privileged),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Pulls the image as the node would for a task (anonymously).
    async fn pull(&self, docker: &Docker) -> Result<(), TargetError> {
        // Without a tag the engine would pull every tag of the repository: `latest`, as
        // `docker run` takes it.
        let name_part = self.image.rsplit('/').next().unwrap_or(self.image);
        let tagged = self.image.contains('@') || name_part.contains(':');
        let opts = CreateImageOptions {
            from_image: Some(self.image.to_owned()),
            tag: (!tagged).then(|| "latest".to_owned()),
            ..Default::default()
        };
        let mut progress = docker.create_image(Some(opts), None, None);
        while let Some(step) = progress.next().await {
            let failed = match step {
                Err(e) => Some(e.to_string()),
                Ok(info) => info.error_detail.and_then(|d| d.message),
            };
            if let Some(why) = failed {
                return Err(TargetError::Pull {
                    image: self.image.to_owned(),
                    why,
                });
            }
        }
        Ok(())
    }
}

async fn create(
    docker: &Docker,
    body: ContainerCreateBody,
) -> Result<String, bollard::errors::Error> {
    let made = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await?;
    Ok(made.id)
}

/// Attached before it starts, so that nothing it writes is missed.
pub(crate) async fn attach_and_start(
    docker: &Docker,
    id: &str,
    stdin: bool,
) -> Result<Attached, bollard::errors::Error> {
    let opts = AttachContainerOptions {
        stream: true,
        stdin,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let attached = docker.attach_container(id, Some(opts)).await?;
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await?;
    Ok(Attached {
        id: id.to_owned(),
        output: attached.output,
        input: attached.input,
    })
}

/// A start the engine refused: when it recorded an exit code for it (126: cannot invoke,
/// 127: not found, as `docker run` reports), that is the run's end, its message the only
/// output; anything else is an error of the run.
async fn start_refused(
    docker: &Docker,
    id: &str,
    source: bollard::errors::Error,
) -> Result<Attached, TargetError> {
    let code = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.exit_code);
    let message = match &source {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    match code {
        Some(126 | 127) => {
            let line = bollard::container::LogOutput::StdErr {
                message: format!("{message}\n").into_bytes().into(),
            };
            Ok(Attached {
                id: id.to_owned(),
                output: Box::pin(futures_util::stream::iter([Ok(line)])),
                input: Box::pin(tokio::io::sink()),
            })
        }
        _ => Err(TargetError::DebugStart(source)),
    }
}

/// The log path's debug run: the container started (its ID to `on_created`), `stdin` fed
/// and its output handed on as [`crate::docker_exec::pump`] does, its exit code read, the
/// container removed.
pub async fn run(
    docker: &Docker,
    debug: &Debug<'_>,
    stdin: Option<&[u8]>,
    on_created: impl FnOnce(&str),
    on_output: impl FnMut(swarm_exec_proto::Stream, Option<&[u8]>),
) -> Result<i64, TargetError> {
    let mut made = None;
    let started = debug
        .start(docker, |id| {
            made = Some(id.to_owned());
            on_created(id);
        })
        .await;
    let result = match started {
        Ok(a) => match crate::docker_exec::pump(a.output, a.input, stdin, on_output).await {
            Ok(()) => exit_code(docker, &a.id).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Some(id) = made {
        let _ = remove(docker, &id).await;
    }
    result
}

/// The container's exit code, once it has ended (its output can end a moment before the
/// engine records it).
pub async fn exit_code(docker: &Docker, id: &str) -> Result<i64, TargetError> {
    for _ in 0..200 {
        let state = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(TargetError::Inspect)?
            .state
            .unwrap_or_default();
        match (state.running, state.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err(TargetError::NoExitCode)
}

/// Removes a debug container, stopping what runs in it (with the target's PID namespace
/// shared, the engine kills every process of the container, not only its first). Its
/// anonymous volumes go with it. Whether it is gone (one already gone is).
pub async fn remove(docker: &Docker, id: &str) -> bool {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => true,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "swarm-exec node: cannot remove container {}: {e}",
                short(id)
            );
            false
        }
    }
}

/// Removes the debug containers and forwarders on this node whose helper is gone (killed
/// before it could remove its own): one is its helper's while a running container's
/// command names the same run tag.
pub async fn collect_left(docker: &Docker) {
    // Values of one filter key are alternatives.
    let labels = [DEBUG, FORWARD].map(|v| format!("{HELPER_LABEL}={v}"));
    let opts = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
        ..Default::default()
    };
    let Ok(debugs) = docker.list_containers(Some(opts)).await else {
        return;
    };
    if debugs.is_empty() {
        return;
    }
    let Ok(running) = docker.list_containers(None::<ListContainersOptions>).await else {
        return;
    };
    for d in debugs {
        let tag = d.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
        let helper_there = tag.is_some_and(|tag| {
            running.iter().any(|c| {
                c.id != d.id
                    && c.command
                        .as_deref()
                        .is_some_and(|cmd| cmd.contains(tag.as_str()))
            })
        });
        if let (false, Some(id)) = (helper_there, &d.id) {
            let _ = remove(docker, id).await;
        }
    }
}
