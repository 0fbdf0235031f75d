//! The helper side: runs inside the helper container on the target's node, execs the
//! command in the target container over the node's own socket, and reports everything as
//! [`frame`](crate::frame) records on its stdout.

use std::io::Write;
use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;

use crate::api::LogStream;
use crate::frame::{Encoder, Record};
use crate::helper::ExecSpec;
use crate::target::is_container_id;

/// The helper's own exit codes when the command did not run to completion.
pub const HELPER_FAILED: i32 = 125;
pub const HELPER_TIMED_OUT: i32 = 124;

/// Runs `exec` and writes its records to `out`; returns the code the helper should exit with
/// (the command's own, or one of the constants above).
pub async fn node_exec<W: Write>(
    docker: &Docker,
    exec: &ExecSpec,
    nonce: &str,
    timeout: Duration,
    out: &mut W,
) -> i32 {
    let enc = Encoder::new(nonce);
    let mut buf = Vec::with_capacity(16 * 1024);
    // The helper only ever execs into the one container it was created for, named by a
    // full ID; anything else is refused before the socket is touched.
    if !is_container_id(&exec.container_id) {
        let reason = format!("invalid container ID {:?}", exec.container_id);
        enc.encode(&Record::Failed(reason), &mut buf);
        let _ = out.write_all(&buf).and_then(|()| out.flush());
        return HELPER_FAILED;
    }
    let mut write_err = None;
    let run = exec_in_container(docker, exec, |stream, bytes| {
        let record = match stream {
            LogStream::Stdout => Record::Stdout(bytes.to_vec()),
            LogStream::Stderr => Record::Stderr(bytes.to_vec()),
        };
        enc.encode(&record, &mut buf);
        // One write per chunk keeps output live; the log driver sees whole lines.
        let r = out.write_all(&buf).and_then(|()| out.flush());
        buf.clear();
        if let Err(e) = r {
            write_err.get_or_insert(e);
        }
    });
    let result = tokio::time::timeout(timeout, run).await;
    let code = match result {
        Ok(Ok(_)) if write_err.is_some() => {
            let e = write_err
                .take()
                .unwrap_or_else(|| std::io::Error::other("?"));
            enc.encode(&Record::Failed(format!("writing output: {e}")), &mut buf);
            HELPER_FAILED
        }
        Ok(Ok(code)) => {
            enc.encode(&Record::Exit(code), &mut buf);
            // Exit statuses are 0-255; anything else (never seen) is reported as a failure.
            u8::try_from(code).map_or(HELPER_FAILED, i32::from)
        }
        Ok(Err(reason)) => {
            enc.encode(&Record::Failed(reason), &mut buf);
            HELPER_FAILED
        }
        Err(_) => {
            enc.encode(&Record::TimedOut, &mut buf);
            HELPER_TIMED_OUT
        }
    };
    let _ = out.write_all(&buf).and_then(|()| out.flush());
    code
}

/// Execs `exec` in its container on the engine `docker` talks to, handing each chunk of
/// output to `on_output` as it arrives; returns the command's exit code.
pub async fn exec_in_container(
    docker: &Docker,
    exec: &ExecSpec,
    mut on_output: impl FnMut(LogStream, &[u8]),
) -> Result<i64, String> {
    if exec.command.is_empty() {
        return Err("empty command".to_owned());
    }
    let config = ExecConfig {
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
        .create_exec(&exec.container_id, config)
        .await
        .map_err(|e| {
            format!(
                "cannot exec in container {}: {e}",
                short(&exec.container_id)
            )
        })?;
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
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err("the engine did not attach to the command".to_owned());
    };
    while let Some(item) = output.next().await {
        use bollard::container::LogOutput;
        match item {
            Ok(LogOutput::StdOut { message }) => on_output(LogStream::Stdout, &message),
            Ok(LogOutput::StdErr { message }) => on_output(LogStream::Stderr, &message),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the command's output: {e}")),
        }
    }
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
