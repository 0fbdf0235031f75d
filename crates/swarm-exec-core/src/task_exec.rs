//! `task-exec`: resolve one task, then run one helper for it on its node ([`crate::run`]),
//! or, when its container is on the engine the client talks to, exec it there directly
//! ([`crate::live`]'s direct path: no helper, `docker exec`'s speed).

use std::future::Future;

use tokio::time::{sleep_until, Instant};

use crate::engine::{ApiError, SwarmApi};
use crate::error::ExecError;
use crate::helper::configs::ensure_configs;
use crate::helper::lifecycle::{create_envelope, create_or_stop, remove_envelope, Created, Stop};
use crate::helper::{pinned_image, Carrier};
use crate::lookup::resolve::{resolve, Resolved, TARGET_START_WAIT};
use crate::model::node_program::{runs_on, NodeProgram};
use crate::model::options::{HelperSource, RunOptions};
use crate::model::outcome::{Interrupt, Outcome};
use crate::model::target::TaskRef;
use crate::run::{run_helper, HelperJob};
use crate::sink::OutputSink;

/// One `task-exec`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub target: TaskRef,
    pub run: RunOptions,
}

/// Runs `req`. `cancel` resolves when the caller wants to stop (e.g. on SIGINT); the helper
/// is removed before this returns, whatever happened.
pub async fn task_exec<A, S, C>(
    api: &A,
    req: &ExecRequest,
    out: &mut S,
    cancel: C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt>,
{
    req.run.check()?;
    let deadline = Instant::now() + req.run.timeout;
    tokio::pin!(cancel);

    // Nothing exists on the swarm yet: stopping here needs no cleanup.
    let (resolved, carrier) = tokio::select! {
        r = prepare(api, req) => r?,
        _ = sleep_until(deadline) => return Ok(Outcome::TimedOut),
        i = &mut cancel => return Ok(Outcome::Interrupted(i)),
    };
    let target = resolved.describe();
    out.runs_in(&crate::sink::RunsIn {
        task_id: &resolved.task_id,
        service: &resolved.service_name,
        name: &resolved.display,
        node: &resolved.node_name,
        node_id: &resolved.node_id,
        container_id: &resolved.container_id,
    });
    if let Some(n) = resolved.chosen_from.filter(|&n| n > 1) {
        out.note(&format!(
            "service {} has {n} running tasks; running in {}",
            resolved.service_name, target
        ));
    }
    let Some(carrier) = carrier else {
        return direct(api, req, resolved, out, deadline, &mut cancel).await;
    };
    // Everything about the run but where it runs travels in one secret.
    let budget = deadline.saturating_duration_since(Instant::now());
    let envelope = req.run.envelope(budget)?;
    let labels = vec![
        (
            "swarm-exec.target.task".to_owned(),
            resolved.task_id.clone(),
        ),
        (
            "swarm-exec.target.service".to_owned(),
            resolved.service_name.clone(),
        ),
        (
            "swarm-exec.target.container".to_owned(),
            resolved.container_id.clone(),
        ),
    ];
    let create = create_envelope(api, &envelope, &labels, budget);
    let secret = match create_or_stop(create, &mut cancel, deadline).await {
        Created::Done(Ok(secret)) => secret,
        Created::Done(Err(source)) => {
            return Err(ExecError::Envelope {
                target: target.clone(),
                source,
            })
        }
        Created::Stopped { stop, made } => {
            if let Some(secret) = made {
                remove_envelope(api, &secret.id, out).await;
            }
            return Ok(match stop {
                Stop::Interrupted(i) => Outcome::Interrupted(i),
                Stop::Deadline => Outcome::TimedOut,
            });
        }
    };
    drop(envelope);
    let job = HelperJob {
        envelope: secret.clone(),
        target: target.clone(),
        labels,
        containers: vec![resolved.container_id],
        node_id: resolved.node_id,
        node_name: resolved.node_name,
        carrier,
        target_image: resolved.image,
    };
    let end = run_helper(api, &job, std::slice::from_mut(out), deadline, cancel).await;
    remove_envelope(api, &secret.id, out).await;
    match end?.into_iter().next().map(|e| e.result) {
        Some(Ok(outcome)) => Ok(outcome),
        None => Ok(Outcome::TimedOut),
        Some(Err(reason)) => Err(ExecError::CannotRun {
            target: job.target,
            node: job.node_name,
            reason,
        }),
    }
}

/// The command attached on the engine the client talks to, where `task`'s container is:
/// no helper, the command's stdin whole, its streams apart, stopped with what it
/// daemonized at the deadline or on `cancel`.
async fn direct<A, S, C>(
    api: &A,
    req: &ExecRequest,
    task: Resolved,
    out: &mut S,
    deadline: Instant,
    cancel: &mut C,
) -> Result<Outcome, ExecError>
where
    A: SwarmApi,
    S: OutputSink,
    C: Future<Output = Interrupt> + Unpin,
{
    let input = req.run.stdin.clone().map(crate::direct::whole_input);
    let sizes = futures_util::stream::empty();
    let run = &req.run;
    crate::direct::run(
        api,
        &task,
        run,
        false,
        input,
        sizes,
        out,
        Some(deadline),
        cancel,
    )
    .await
}

/// Finds the task and, unless its container is on the engine `api` talks to (then `None`:
/// no helper is needed), readies the helper's program; creates nothing unless both the
/// task and its node are fit for it.
pub(crate) async fn prepare<A: SwarmApi>(
    api: &A,
    req: &ExecRequest,
) -> Result<(Resolved, Option<Carrier>), ExecError> {
    // Which node this engine is, beside the task's look-up; unknown means a helper, as
    // does `debug` (its container is made by a helper).
    let here = async {
        match req.run.debug {
            Some(_) => None,
            None => api.own_node_id().await.ok().flatten(),
        }
    };
    let program = match &req.run.helper {
        HelperSource::Image(image) => {
            // The image lookup does not depend on the task: do all at once.
            let (resolved, pinned, here) = tokio::join!(
                resolve(api, &req.target, TARGET_START_WAIT),
                pin_image(api, image),
                here
            );
            let resolved = resolved?;
            if here.is_some_and(|id| id == resolved.node_id) {
                return Ok((resolved, None));
            }
            let pinned = pinned.map_err(|source| ExecError::Image {
                target: resolved.display.clone(),
                image: image.clone(),
                source,
            })?;
            return Ok((resolved, Some(Carrier::Image(pinned))));
        }
        HelperSource::Embedded(program) => program,
    };
    let (resolved, here) = tokio::join!(resolve(api, &req.target, TARGET_START_WAIT), here);
    let resolved = resolved?;
    if here.is_some_and(|id| id == resolved.node_id) {
        return Ok((resolved, None));
    }
    let carrier = zero_install(
        api,
        program,
        &resolved.describe(),
        [(
            &resolved.node_name,
            &resolved.node_os,
            &resolved.node_arch,
            &resolved.image,
        )],
    )
    .await?;
    Ok((resolved, Some(carrier)))
}

/// How the helper for `task` gets its program (see `prepare`): `helper`'s image, pinned,
/// or zero-install's configs once the task's node and image are fit for it.
pub async fn carrier_for<A: SwarmApi>(
    api: &A,
    helper: &HelperSource,
    task: &Resolved,
) -> Result<Carrier, ExecError> {
    match helper {
        HelperSource::Image(image) => {
            let pinned = pin_image(api, image)
                .await
                .map_err(|source| ExecError::Image {
                    target: task.display.clone(),
                    image: image.clone(),
                    source,
                })?;
            Ok(Carrier::Image(pinned))
        }
        HelperSource::Embedded(program) => {
            let t = (&task.node_name, &task.node_os, &task.node_arch, &task.image);
            zero_install(api, program, &task.describe(), [t]).await
        }
    }
}

/// The configs of `program`, once every target (node, os, arch, image) is checked: its
/// node must be able to run the build, and its task must name an image to run it in.
pub async fn zero_install<'a, A: SwarmApi>(
    api: &A,
    program: &NodeProgram,
    target: &str,
    targets: impl IntoIterator<Item = (&'a String, &'a String, &'a String, &'a String)>,
) -> Result<Carrier, ExecError> {
    for (node, os, arch, image) in targets {
        if !runs_on(os, arch) {
            return Err(ExecError::Platform {
                target: target.to_owned(),
                node: node.clone(),
                os: os.clone(),
                arch: arch.clone(),
            });
        }
        if !crate::model::target::is_image_ref(image) {
            return Err(ExecError::TargetImage {
                target: target.to_owned(),
                image: image.clone(),
            });
        }
    }
    let mounts = ensure_configs(api, program)
        .await
        .map_err(|source| ExecError::NodeConfigs {
            target: target.to_owned(),
            source,
        })?;
    Ok(Carrier::Configs {
        mounts,
        loader_arg: program.loader_arg(),
    })
}

/// The image reference for helpers: see [`pinned_image`].
pub async fn pin_image<A: SwarmApi>(api: &A, image: &str) -> Result<String, ApiError> {
    Ok(pinned_image(
        image,
        api.inspect_image(image).await?.as_ref(),
    ))
}

/// The task `target` names, and whether its container is on the engine `api` talks to
/// (then it is reached directly, without a helper).
pub async fn local_task<A: SwarmApi>(
    api: &A,
    target: &TaskRef,
) -> Result<(Resolved, bool), ExecError> {
    let resolved = resolve(api, target, TARGET_START_WAIT).await?;
    let own = api
        .own_node_id()
        .await
        .map_err(|e| ExecError::attach(crate::local::AttachError::Info(e), &resolved))?;
    let here = own.is_some_and(|id| id == resolved.node_id);
    Ok((resolved, here))
}

/// How a live command or a copy reaches its task.
pub enum Route {
    /// Attached on the engine the client talks to.
    Direct,
    /// Through a relay and a helper with this program.
    Session(Carrier),
}

/// A task found, and the way to it; nothing exists on the swarm yet.
pub struct Plan {
    pub task: Resolved,
    pub route: Route,
}

impl Plan {
    pub fn direct(&self) -> bool {
        matches!(self.route, Route::Direct)
    }
}

/// Finds the task named by `target` and the way to it for a live command or a copy: directly
/// when its container is on this engine (unless `helper_only`: `debug`'s container is made
/// by a helper), else a session, whose helper's program is readied now. Nothing is
/// created; `cancel` ends the search.
pub async fn find_route<A, C>(
    api: &A,
    target: &TaskRef,
    helper: &HelperSource,
    helper_only: bool,
    cancel: &mut C,
) -> Result<Result<Plan, Interrupt>, ExecError>
where
    A: SwarmApi,
    C: Future<Output = Interrupt> + Unpin,
{
    let (task, here) = tokio::select! {
        r = local_task(api, target) => r?,
        i = &mut *cancel => return Ok(Err(i)),
    };
    if here && !helper_only {
        return Ok(Ok(Plan {
            task,
            route: Route::Direct,
        }));
    }
    let carrier = tokio::select! {
        r = carrier_for(api, helper, &task) => r?,
        i = &mut *cancel => return Ok(Err(i)),
    };
    Ok(Ok(Plan {
        task,
        route: Route::Session(carrier),
    }))
}

#[cfg(test)]
mod tests;
