//! `cp`: an archive of a path out of a task's container, or one unpacked into it, through
//! the engine's archive API — no `tar` (or anything else) needed in the target's image. A
//! task on the engine swarm-exec talks to is served directly; one on another node through
//! a live session ([`crate::session`]), the helper calling its node's archive API.
//!
//! Only archives travel here; what they are made of or unpacked into locally is the
//! caller's (the CLI's `cp`).

use std::future::Future;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::engine::SwarmApi;
use crate::error::ExecError;
use crate::helper::Carrier;
use crate::lookup::resolve::Resolved;
use crate::model::options::RunOptions;
use crate::model::outcome::{Interrupt, Outcome};
use crate::model::target::TaskRef;
use crate::session::{remote_session, Copy, Decide, SessionRequest};
use crate::sink::OutputSink;
use crate::task_exec::{find_route, Route};
use crate::ApiError;

/// Go's `os.ModeDir`, as the archive API's stat reports a directory.
pub const MODE_DIR: u32 = 1 << 31;

/// What `cp` names in a task: the task, the path in its container, the helper's program
/// and the copy's timeout (`run`: no command of it is run), `--network` for a session.
pub struct CopyRequest<'a> {
    pub task: &'a TaskRef,
    pub path: &'a str,
    pub run: &'a RunOptions,
    pub network: Option<&'a str>,
}

/// Where a copy goes or comes from, once found.
struct CopyTarget<'a> {
    task: Resolved,
    /// For a task on another node; `None`: its container is on the engine `api` talks to.
    carrier: Option<Carrier>,
    /// The helper's program and the run's timeout (its command is not run).
    run: &'a RunOptions,
    network: Option<&'a str>,
}

/// The task of `req` and the way to it: directly when its container is on the engine `api`
/// talks to, else through a session whose helper's program is readied now.
async fn locate<'a, A: SwarmApi, C: Future<Output = Interrupt> + Unpin>(
    api: &A,
    req: &CopyRequest<'a>,
    cancel: &mut C,
) -> Result<Result<CopyTarget<'a>, Interrupt>, ExecError> {
    let plan = match find_route(api, req.task, &req.run.helper, false, cancel).await? {
        Ok(plan) => plan,
        Err(i) => return Ok(Err(i)),
    };
    Ok(Ok(CopyTarget {
        task: plan.task,
        carrier: match plan.route {
            Route::Direct => None,
            Route::Session(carrier) => Some(carrier),
        },
        run: req.run,
        network: req.network,
    }))
}

fn failed(task: &Resolved, reason: impl std::fmt::Display) -> ExecError {
    ExecError::Copy {
        target: task.describe(),
        reason: reason.to_string(),
    }
}

/// The engine's answer, as a message ("Could not find the file … in container …").
fn engine_said(e: ApiError) -> String {
    match e {
        ApiError::NotFound(m) | ApiError::Server { message: m, .. } => m,
        other => other.to_string(),
    }
}

/// The archive of `req.path` in the task's container, to `out`'s stdout as it comes.
pub async fn copy_out<A, O, C>(
    api: &A,
    req: &CopyRequest<'_>,
    out: &mut O,
    cancel: &mut C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt> + Unpin,
{
    let target = match locate(api, req, cancel).await? {
        Ok(target) => target,
        Err(i) => return Ok(Outcome::Interrupted(i)),
    };
    archive_out(api, target, req.path, out, cancel).await
}

async fn archive_out<A, O, C>(
    api: &A,
    target: CopyTarget<'_>,
    path: &str,
    out: &mut O,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt>,
{
    let deadline = Instant::now() + target.run.timeout;
    if target.carrier.is_some() {
        return through_session(api, target, path, None, None, out, deadline, cancel).await;
    }
    tokio::pin!(cancel);
    let mut archive = api.download_archive(&target.task.container_id, path);
    loop {
        tokio::select! {
            chunk = archive.next() => match chunk {
                None => return Ok(Outcome::Exited(0)),
                Some(Ok(bytes)) => out.stdout(&bytes),
                Some(Err(e)) => return Err(failed(&target.task, engine_said(e))),
            },
            i = &mut cancel => return Ok(Outcome::Interrupted(i)),
            _ = sleep_until(deadline) => return Ok(Outcome::TimedOut),
        }
    }
}

/// Unpacks the archive `input` brings into the task's container: `decide` is told what
/// `req.path` is there (its mode, `None` if missing) and names the directory to unpack in.
pub async fn copy_in<A, O, C>(
    api: &A,
    req: &CopyRequest<'_>,
    decide: Decide,
    input: mpsc::Receiver<Vec<u8>>,
    out: &mut O,
    cancel: &mut C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt> + Unpin,
{
    let target = match locate(api, req, cancel).await? {
        Ok(target) => target,
        Err(i) => return Ok(Outcome::Interrupted(i)),
    };
    archive_in(api, target, req.path, decide, input, out, cancel).await
}

#[allow(clippy::too_many_arguments)]
async fn archive_in<A, O, C>(
    api: &A,
    target: CopyTarget<'_>,
    path: &str,
    decide: Decide,
    input: mpsc::Receiver<Vec<u8>>,
    out: &mut O,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt>,
{
    let deadline = Instant::now() + target.run.timeout;
    if target.carrier.is_some() {
        let input = Some(input);
        return through_session(
            api,
            target,
            path,
            Some(decide),
            input,
            out,
            deadline,
            cancel,
        )
        .await;
    }
    tokio::pin!(cancel);
    let container = &target.task.container_id;
    let mode = api
        .archive_mode(container, path)
        .await
        .map_err(|e| failed(&target.task, engine_said(e)))?;
    let dir = decide(mode).map_err(|m| failed(&target.task, m))?;
    let mut input = input;
    let body = futures_util::stream::poll_fn(move |cx| input.poll_recv(cx)).boxed();
    let upload = api.upload_archive(container, &dir, body);
    tokio::select! {
        r = upload => match r {
            Ok(()) => Ok(Outcome::Exited(0)),
            Err(e) => Err(failed(&target.task, engine_said(e))),
        },
        i = &mut cancel => Ok(Outcome::Interrupted(i)),
        _ = sleep_until(deadline) => Ok(Outcome::TimedOut),
    }
}

#[allow(clippy::too_many_arguments)]
async fn through_session<A, O, C>(
    api: &A,
    target: CopyTarget<'_>,
    path: &str,
    decide: Option<Decide>,
    input: Option<mpsc::Receiver<Vec<u8>>>,
    out: &mut O,
    deadline: Instant,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    O: OutputSink,
    C: Future<Output = Interrupt>,
{
    let carrier = target
        .carrier
        .as_ref()
        .expect("a carrier for a task on another node");
    let req = SessionRequest {
        task: &target.task,
        run: target.run,
        carrier,
        tty: false,
        network: target.network,
        stdin_prefix: Vec::new(),
        copy: Some(Copy {
            out: decide.is_none(),
            path: path.to_owned(),
            decide,
        }),
        forward: None,
        serve: false,
    };
    let none = futures_util::stream::empty();
    let task = &target.task;
    remote_session(api, req, input, none, out, Some(deadline), cancel)
        .await
        .map_err(|e| match e {
            // What the helper's archive call said is the copy's failure, not a command's.
            crate::session::SessionError {
                source:
                    crate::session::SessionFailure::Failed(reason)
                    | crate::session::SessionFailure::Copy(reason),
                ..
            } => failed(task, reason),
            other => other.into(),
        })
}

/// Where an archive of `source_name` (a directory when `source_is_dir`) unpacks for
/// `cp … TASK:dest`, as `docker cp` decides it: into `dest` when it is a directory there;
/// otherwise as `dest` itself, in its parent. Returns (the directory to unpack in, the name
/// the archive's top entry must have).
pub fn put_into(
    dest: &str,
    stat: Option<u32>,
    source_name: &str,
    source_is_dir: bool,
) -> Result<(String, String), String> {
    let is_dir = stat.is_some_and(|m| m & MODE_DIR != 0);
    if is_dir {
        return Ok((dest.to_owned(), source_name.to_owned()));
    }
    if dest.ends_with('/') {
        return Err(match stat {
            None => format!("no directory {dest} in the container"),
            Some(_) => format!("{dest} is not a directory in the container"),
        });
    }
    if stat.is_some() && source_is_dir {
        return Err(format!(
            "cannot copy a directory onto the file {dest} in the container"
        ));
    }
    let trimmed = dest.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => (".", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{dest}: not a path to copy to"));
    }
    Ok((parent.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_a_directory_or_as_the_destination_itself() {
        let dir = Some(MODE_DIR | 0o755);
        let file = Some(0o644);
        assert_eq!(
            put_into("/srv", dir, "tree", true),
            Ok(("/srv".into(), "tree".into()))
        );
        assert_eq!(
            put_into("/srv/new", None, "tree", true),
            Ok(("/srv".into(), "new".into()))
        );
        assert_eq!(
            put_into("/etc/motd", file, "motd.txt", false),
            Ok(("/etc".into(), "motd".into()))
        );
        assert_eq!(
            put_into("/x", None, "f", false),
            Ok(("/".into(), "x".into()))
        );
        assert!(put_into("/etc/motd", file, "tree", true).is_err());
        assert!(put_into("/nope/", None, "f", false).is_err());
        assert!(put_into("/etc/motd/", file, "f", false).is_err());
        assert!(put_into("/srv/..", None, "f", false).is_err());
    }
}
