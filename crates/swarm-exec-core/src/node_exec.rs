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

/// Runs the command in every container of `exec` at once and writes the records to `out`.
/// Returns the code the helper should exit with: with one container, the command's own (or
/// one of the constants above), so the helper task's final state carries it too; with
/// several, 0 when every command exited 0, else 1.
pub async fn node_exec<W: Write>(
    docker: &Docker,
    exec: &ExecSpec,
    nonce: &str,
    timeout: Duration,
    out: &mut W,
) -> i32 {
    let enc = Encoder::new(nonce);
    let out = RefCell::new(RecordWriter {
        out,
        buf: Vec::with_capacity(16 * 1024),
        failed: None,
    });
    let runs = exec.containers.iter().enumerate().map(|(i, container)| {
        let (enc, out) = (&enc, &out);
        async move {
            // The helper only ever execs into the containers it was created for, named by
            // full ID; anything else is refused before the socket is touched.
            let result = if is_container_id(container) {
                exec_in_container(docker, exec, container, |stream, bytes| {
                    let record = match stream {
                        LogStream::Stdout => Record::Stdout(i, bytes.to_vec()),
                        LogStream::Stderr => Record::Stderr(i, bytes.to_vec()),
                    };
                    out.borrow_mut().write(enc, &record);
                })
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
    let code = match tokio::time::timeout(timeout, join_all(runs)).await {
        Ok(results) => {
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
        Err(_) => {
            out.borrow_mut().write(&enc, &Record::TimedOut);
            HELPER_TIMED_OUT
        }
    };
    code
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
        .create_exec(container, config)
        .await
        .map_err(|e| format!("cannot exec in container {}: {e}", short(container)))?;
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
