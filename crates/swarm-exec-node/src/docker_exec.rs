//! One command exec'd in a container over the node's socket, its output handed on as it
//! comes (and flushed when the command pauses), its exit code read back.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use swarm_exec_proto::{short_id as short, ExecSpec, Stream};

use crate::end::TargetError;

/// Output is flushed to the log when the command has written nothing for this long...
const FLUSH_IDLE: Duration = Duration::from_millis(5);
/// ...and at least this often while it writes without a pause.
const FLUSH_MAX: Duration = Duration::from_millis(100);

/// Execs `exec`'s command in `container` on the engine `docker` talks to, handing each
/// chunk of output to `on_output` as it arrives — and `None` when the caller is to flush
/// (the command paused, or [`FLUSH_MAX`] passed) — and returns the command's exit code.
pub async fn exec_in_container(
    docker: &Docker,
    exec: &ExecSpec,
    container: &str,
    stdin: Option<&[u8]>,
    on_created: impl FnOnce(&str),
    on_output: impl FnMut(Stream, Option<&[u8]>),
) -> Result<i64, TargetError> {
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
        .map_err(|source| TargetError::Create {
            container: short(container).to_owned(),
            source,
        })?;
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
        .map_err(TargetError::Start)?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(TargetError::NotAttached);
    };
    pump(output, input, stdin, on_output).await?;
    exit_code(docker, &created.id).await
}

/// The attached output stream of a command.
pub type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// Feeds `stdin` to an attached command (then closes it) while its output goes to
/// `on_output` as it comes, with a `None` when the caller is to flush, until the output
/// ends.
pub async fn pump(
    mut output: Output,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    stdin: Option<&[u8]>,
    mut on_output: impl FnMut(Stream, Option<&[u8]>),
) -> Result<(), TargetError> {
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
        let mut next = output.next().await;
        // Since when output has been held unflushed.
        let mut held: Option<tokio::time::Instant> = None;
        while let Some(item) = next {
            match item {
                Ok(LogOutput::StdOut { message }) => on_output(Stream::Stdout, Some(&message)),
                Ok(LogOutput::StdErr { message }) => on_output(Stream::Stderr, Some(&message)),
                Ok(_) => {}
                Err(e) => return Err(TargetError::Read(e)),
            }
            let since = *held.get_or_insert_with(tokio::time::Instant::now);
            // Flush when the command pauses (nothing more within FLUSH_IDLE), and at least
            // every FLUSH_MAX: a prompt or a progress line goes out at once, while bulk
            // output goes in few, full frames — a flush per chunk read costs a log line each.
            let wait = FLUSH_IDLE.min(FLUSH_MAX.saturating_sub(since.elapsed()));
            next = match tokio::time::timeout(wait, output.next()).await {
                Ok(n) if since.elapsed() < FLUSH_MAX => n,
                more => {
                    on_output(Stream::Stdout, None);
                    on_output(Stream::Stderr, None);
                    held = None;
                    match more {
                        Ok(n) => n,
                        Err(_) => output.next().await,
                    }
                }
            };
        }
        Ok(())
    };
    let ((), read) = tokio::join!(feed, read);
    read
}

/// The exec's exit code (its output can end a moment before the engine records it).
pub(crate) async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, TargetError> {
    for _ in 0..200 {
        let inspected = docker
            .inspect_exec(exec_id)
            .await
            .map_err(TargetError::Inspect)?;
        match (inspected.running, inspected.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    Err(TargetError::NoExitCode)
}
