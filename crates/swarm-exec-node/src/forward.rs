//! `port-forward` on the node. The helper cannot enter the target's network namespace
//! itself (it has no capabilities, and a service cannot join another container's
//! network), so it makes a **forwarder**: a container of its own in `container:<target>`
//! network mode, running this program as `node-forward` — the stopper's way: the helper's
//! image, or (zero-install) the target's image with the loader and program copied in, an
//! empty environment, no capabilities. The helper attaches to it and bridges its stdin and
//! stdout to the session, so the client's streams reach it sealed end to end; it connects
//! each to the port asked for on the target's localhost, and to no port it was not given.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use swarm_exec_proto::args::ForwardArgs;
use swarm_exec_proto::forward::{Event, FrameError, Mux};
use swarm_exec_proto::HELPER_LABEL;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::debug::{Attached, FORWARD, RUN_LABEL};
use crate::end::TargetError;
use crate::stop::{Stopper, COPIED_LOADER};

/// How long one connection to the target's port may take.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Creates, attaches to and starts the forwarder for `target`, allowed `ports`.
/// `on_created` is told its ID as soon as it exists.
pub async fn start(
    docker: &Docker,
    stopper: &Stopper,
    target: &str,
    tag: &str,
    ports: &[u16],
    on_created: impl FnOnce(&str),
) -> Result<Attached, TargetError> {
    let failed = |e: &dyn std::fmt::Display| TargetError::Forwarder(e.to_string());
    let image = stopper
        .image_for(docker, target)
        .await
        .map_err(|e| failed(&e))?;
    let args = ForwardArgs {
        ports: ports.to_vec(),
    }
    .to_args();
    // Zero-install: the loader and program go in; image mode runs the image's own.
    let copy = match stopper.image {
        Some(_) => None,
        None => Some(stopper.program.copy_in().map_err(|e| failed(&e))?),
    };
    let (entrypoint, cmd) = match &copy {
        Some(c) => {
            let mut cmd = vec![c.loader_arg.clone()];
            cmd.extend(args);
            (Some(vec![COPIED_LOADER.to_owned()]), cmd)
        }
        None => (None, args),
    };
    let labels = HashMap::from([
        (HELPER_LABEL.to_owned(), FORWARD.to_owned()),
        (RUN_LABEL.to_owned(), tag.to_owned()),
        ("swarm-exec.target.container".to_owned(), target.to_owned()),
    ]);
    let body = bollard::models::ContainerCreateBody {
        image: Some(image),
        entrypoint,
        cmd: Some(cmd),
        user: Some("0:0".to_owned()),
        working_dir: Some("/".to_owned()),
        env: Some(Vec::new()),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        healthcheck: Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        labels: Some(labels),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some(format!("container:{target}")),
            cap_drop: Some(vec!["ALL".to_owned()]),
            // The copy needs a writable layer; it goes with the container.
            readonly_rootfs: Some(copy.is_none()),
            // Each connection may hold its window each way and a read buffer (~0.6 MB).
            memory: Some(256 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(|e| failed(&e))?
        .id;
    on_created(&id);
    let started = async {
        if let Some(c) = copy {
            let opts = bollard::query_parameters::UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            };
            docker
                .upload_to_container(&id, Some(opts), bollard::body_full(c.tar.into()))
                .await?;
        }
        crate::debug::attach_and_start(docker, &id, true).await
    };
    match started.await {
        Ok(a) => Ok(a),
        Err(e) => {
            let _ = crate::debug::remove(docker, &id).await;
            Err(failed(&e))
        }
    }
}

/// Resolves when `target` is no longer running (or cannot be watched): a forward to it
/// is over.
pub async fn target_gone(docker: &Docker, target: &str) {
    use futures_util::StreamExt;
    let opts = bollard::query_parameters::WaitContainerOptions {
        condition: "not-running".to_owned(),
    };
    let mut wait = docker.wait_container(target, Some(opts));
    let _ = wait.next().await;
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("reading the session: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing to the session: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// `node-forward`: the client's streams from stdin, connected to `args.ports` on this
/// network namespace's localhost; their frames back on stdout. Ends when stdin does (the
/// client is done), closing every connection.
pub async fn node_forward(args: &ForwardArgs) -> Result<(), ForwardError> {
    let (out, mut frames) = mpsc::channel::<Vec<u8>>(64);
    let mux = Mux::new(out);
    let writer = async {
        let mut stdout = tokio::io::stdout();
        while let Some(bytes) = frames.recv().await {
            stdout
                .write_all(&bytes)
                .await
                .map_err(ForwardError::Write)?;
            // Several frames may wait: one flush for all of them.
            if frames.is_empty() {
                stdout.flush().await.map_err(ForwardError::Write)?;
            }
        }
        Ok(())
    };
    let reader = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin.read(&mut buf).await.map_err(ForwardError::Read)?;
            if n == 0 {
                return Ok(());
            }
            for event in mux.feed(&buf[..n])? {
                if let Event::Open { id, port } = event {
                    let (mux, allowed) = (mux.clone(), args.ports.contains(&port));
                    tokio::spawn(async move { connect(&mux, id, port, allowed).await });
                }
            }
        }
    };
    let ended = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    mux.close_all();
    ended
}

/// Stream `id` connected to `port` on localhost (IPv4, then IPv6), or refused with why.
async fn connect(mux: &Mux, id: u32, port: u16, allowed: bool) {
    if !allowed {
        let why = format!("port {port} is not one this forward was started for");
        return mux.refuse(id, why).await;
    }
    let mut last = None;
    for host in ["127.0.0.1", "::1"] {
        match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect((host, port))).await {
            Ok(Ok(conn)) => return mux.opened(id, conn).await,
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some(format!("no answer within {}s", CONNECT_WAIT.as_secs())),
        }
    }
    let why = last.unwrap_or_default();
    mux.refuse(id, format!("connecting to port {port}: {why}"))
        .await;
}
