//! `swarm-exec cp`: files and directories between a task's container and here, as
//! `docker cp` copies them; `-` for a tar stream on stdin or stdout.

use std::path::{Path, PathBuf};

use swarm_exec_core::copy::{copy_in, copy_out, put_into, CopyRequest, MODE_DIR};
use swarm_exec_core::model::target::TaskRef;
use swarm_exec_core::{BollardApi, Interrupt, Outcome, OutputSink, RunOptions};

use crate::archive::{pack, ChannelReader, ChannelWriter, Destination, UnpackOptions};
use crate::cli::{CpArgs, Global};
use crate::cmd::setup::connect;
use crate::cmd::setup::interrupted;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

/// `cp`'s default timeout: a copy is bounded by its size, not by a command.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Task(TaskRef, String),
    Local(PathBuf),
    /// `-`: a tar stream on stdin (source) or stdout (destination).
    Stream,
}

/// `docker cp`'s rule: `TASK:PATH` unless it is `-` or starts like a local path (`/`, `.`);
/// a local path with a `:` in it is written `./a:b`.
pub fn side(arg: &str) -> Result<Side, CliError> {
    if arg == "-" {
        return Ok(Side::Stream);
    }
    if arg.starts_with('/') || arg.starts_with('.') {
        return Ok(Side::Local(PathBuf::from(arg)));
    }
    let Some((task, path)) = arg.split_once(':') else {
        return Ok(Side::Local(PathBuf::from(arg)));
    };
    let task = crate::cli::parse_task(task).map_err(CliError::Usage)?;
    if !path.starts_with('/') {
        return Err(CliError::Usage(format!(
            "{arg:?}: the path in the task's container must be absolute (TASK:/path)"
        )));
    }
    if path.contains('\0') {
        return Err(CliError::Usage(format!("{arg:?}: a path cannot hold NUL")));
    }
    Ok(Side::Task(task, path.to_owned()))
}

pub async fn run(global: &Global, args: CpArgs) -> Result<Status, CliError> {
    let (src, dst) = (side(&args.src)?, side(&args.dst)?);
    let helper = crate::node_program::helper_source(args.image.filter(|i| !i.is_empty()));
    let run = RunOptions::helper_only("cp", helper, args.timeout.unwrap_or(DEFAULT_TIMEOUT));
    let (task, path, into) = match (src, dst) {
        (Side::Task(t, p), local @ (Side::Local(_) | Side::Stream)) => (t, p, Err(local)),
        (local @ (Side::Local(_) | Side::Stream), Side::Task(t, p)) => (t, p, Ok(local)),
        (Side::Task(..), Side::Task(..)) => {
            return Err(CliError::Usage(
                "copying between two tasks is not supported: copy to here, then on".into(),
            ))
        }
        _ => {
            return Err(CliError::Usage(
                "one of SRC and DST must be TASK:PATH (the other a local path or -)".into(),
            ))
        }
    };
    // Local checks before anything is looked up or made.
    let source = match &into {
        Ok(Side::Local(p)) => Some(source_of(p)?),
        _ => None,
    };
    let dest = match &into {
        Err(Side::Local(p)) => {
            let opts = UnpackOptions {
                archive: args.archive,
                force: args.force,
            };
            Some(Destination::of(p, opts).map_err(|e| CliError::Failed(format!("cp: {e}")))?)
        }
        _ => None,
    };

    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let api = connect(global)?;
    let req = CopyRequest {
        task: &task,
        path: &path,
        run: &run,
        network: args.network.as_deref(),
    };

    let outcome = match into {
        Err(_) => from_task(&api, &req, dest, global.quiet, &mut interrupted).await?,
        Ok(_) => into_task(&api, &req, source, global.quiet, &mut interrupted).await?,
    };
    Ok(Status::Outcome(outcome))
}

/// Out of the container: to stdout as is, or unpacked in `dest` on a thread of its own.
async fn from_task<C: std::future::Future<Output = Interrupt> + Unpin>(
    api: &BollardApi,
    req: &CopyRequest<'_>,
    dest: Option<Destination>,
    quiet: bool,
    interrupted: &mut C,
) -> Result<Outcome, CliError> {
    Ok(match dest {
        None => {
            let mut sink = StdSink::new(quiet);
            copy_out(api, req, &mut sink, interrupted).await?
        }
        Some(dest) => {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
            let unpacker = std::thread::spawn(move || dest.unpack(ChannelReader::new(rx)));
            let mut sink = Unpacking {
                tx: Some(tx),
                std: StdSink::new(quiet),
            };
            let outcome = copy_out(api, req, &mut sink, interrupted).await;
            sink.tx = None;
            let unpacked = unpacker
                .join()
                .map_err(|_| CliError::Failed("the unpacking thread panicked".into()))?;
            let outcome = outcome?;
            if matches!(outcome, Outcome::Exited(0)) {
                let unpacked = unpacked.map_err(|e| CliError::Failed(format!("cp: {e}")))?;
                if !unpacked.skipped.is_empty() {
                    sink.std.warn(&format!(
                        "not copied (devices and FIFOs are not made here): {}",
                        unpacked.skipped.join(", ")
                    ));
                }
            }
            outcome
        }
    })
}

/// Into the container: `source` packed here (or stdin's tar stream as it is), unpacked
/// where the helper's stat of the destination says.
async fn into_task<C: std::future::Future<Output = Interrupt> + Unpin>(
    api: &BollardApi,
    req: &CopyRequest<'_>,
    source: Option<(PathBuf, String, bool, bool)>,
    quiet: bool,
    interrupted: &mut C,
) -> Result<Outcome, CliError> {
    let dest = req.path.to_owned();
    let mut packer = None;
    let (decide, input): (swarm_exec_core::session::Decide, _) = match source {
        Some((source, name, is_dir, contents)) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            let (name_tx, name_rx) = std::sync::mpsc::channel::<String>();
            // What it could not read is reported after the copy (the engine takes
            // whatever archive it got): never a success.
            packer = Some(std::thread::spawn(move || match name_rx.recv() {
                Ok(top) => pack(&source, &top, ChannelWriter::new(tx))
                    .map_err(|e| format!("packing {}: {e}", source.display())),
                Err(_) => Ok(()),
            }));
            let decide = Box::new(move |stat: Option<u32>| {
                let (dir, top) = match stat {
                    // `DIR/.` into a directory: what DIR holds, not DIR itself.
                    Some(m) if contents && m & MODE_DIR != 0 => (dest, ".".to_owned()),
                    _ => put_into(&dest, stat, &name, is_dir)?,
                };
                let _ = name_tx.send(top);
                Ok(dir)
            });
            (decide, rx)
        }
        // `-`: a tar stream, unpacked in the destination directory as it is.
        None => {
            let decide = Box::new(move |stat: Option<u32>| match stat {
                Some(m) if m & MODE_DIR != 0 => Ok(dest),
                _ => Err(format!(
                    "{dest} is not a directory in the container: a tar stream (-) unpacks into one"
                )),
            });
            (decide as _, crate::terminal::stdin_chunks_after(Vec::new()))
        }
    };
    let mut sink = StdSink::new(quiet);
    let outcome = copy_in(api, req, decide, input, &mut sink, interrupted).await?;
    let copied = matches!(outcome, Outcome::Exited(0));
    if let Some(Ok(Err(e))) = packer.filter(|_| copied).map(|p| p.join()) {
        return Err(CliError::Failed(format!(
            "cp: {e}; what was packed before that was copied, the rest is missing"
        )));
    }
    Ok(outcome)
}

/// A local source: the path, the name its archive gets, whether it is a directory, and
/// whether only its contents are copied (`DIR/.`, as docker cp has it).
fn source_of(p: &Path) -> Result<(PathBuf, String, bool, bool), CliError> {
    use std::os::unix::ffi::OsStrExt;
    let meta = std::fs::symlink_metadata(p)
        .map_err(|e| CliError::Failed(format!("cp: {}: {e}", p.display())))?;
    // Its own name, as docker cp names it: a symbolic link is copied as itself, under its
    // name, not its target's. Only `.`, `..` and the like take the name of what they are.
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            std::fs::canonicalize(p)
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .ok_or_else(|| CliError::Usage(format!("cp: {}: not a path to copy", p.display())))?;
    let raw = p.as_os_str().as_bytes();
    let contents = meta.is_dir() && (raw == b"." || raw.ends_with(b"/."));
    Ok((p.to_owned(), name, meta.is_dir(), contents))
}

/// The archive's bytes to the unpacking thread; messages as usual.
struct Unpacking {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    std: StdSink,
}

impl OutputSink for Unpacking {
    fn stdout(&mut self, bytes: &[u8]) {
        // The thread stops at a refused entry: what comes after is dropped.
        if let Some(tx) = &self.tx {
            if tx.send(bytes.to_vec()).is_err() {
                self.tx = None;
            }
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.std.stderr(bytes);
    }
    fn warn(&mut self, message: &str) {
        self.std.warn(message);
    }
    fn note(&mut self, message: &str) {
        self.std.note(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_as_docker_cp_reads_them() {
        assert_eq!(side("-").unwrap(), Side::Stream);
        assert_eq!(side("./a:b").unwrap(), Side::Local("./a:b".into()));
        assert_eq!(side("/tmp/x").unwrap(), Side::Local("/tmp/x".into()));
        assert_eq!(side("out").unwrap(), Side::Local("out".into()));
        assert!(matches!(side("web.1:/etc/hosts").unwrap(), Side::Task(_, p) if p == "/etc/hosts"));
        assert!(side("web.1:etc").is_err(), "relative path in the container");
        assert!(side("web.1; ls:/x").is_err(), "invalid task");
    }
}
