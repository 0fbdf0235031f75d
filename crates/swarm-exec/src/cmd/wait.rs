//! `swarm-exec wait`: until services have converged (core's `wait`); the status line and
//! the report of what is not there yet are here.

use swarm_exec_core::escape::escape_control;
use swarm_exec_core::service_exec::Services;
use swarm_exec_core::wait::{wait_converged, NotReady};
use swarm_exec_core::OutputSink;

use crate::cli::{Global, WaitArgs};
use crate::cmd::setup::connect;
use crate::cmd::setup::interrupted;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

pub async fn run(global: &Global, args: WaitArgs) -> Result<Status, CliError> {
    let which: Vec<Services> = args
        .services
        .into_iter()
        .map(Services::Named)
        .chain(args.stack.into_iter().map(Services::Stack))
        .collect();
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    let api = connect(global)?;
    let mut sink = StdSink::new(global.quiet);
    let progress = |pending: &[NotReady]| {
        let first = pending
            .first()
            .map(|p| {
                format!(
                    "{}: {}",
                    p.service,
                    p.why.first().cloned().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let more = match pending.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more services)", n - 1),
        };
        sink.progress(&escape_control(&format!("waiting for {first}{more}")));
    };
    let waited = tokio::select! {
        r = wait_converged(&api, &which, args.timeout, progress) => r?,
        i = interrupted => {
            return Ok(Status::Tasks { failed: 0, interrupted: Some(i) });
        }
    };
    sink.clear_status();
    for p in &waited {
        let why = p.why.join("; ");
        sink.note(&format!(
            "{}: not converged after {:?}: {why}",
            p.service, args.timeout
        ));
    }
    Ok(Status::Tasks {
        failed: waited.len(),
        interrupted: None,
    })
}

/// `--wait-ready D`: waits up to `d` for `which` to converge before anything runs; a
/// service that has not is an error naming what it still waits on.
pub async fn ready_first(
    api: &swarm_exec_core::BollardApi,
    which: &[Services],
    d: std::time::Duration,
) -> Result<(), CliError> {
    let pending = wait_converged(api, which, d, |_| {})
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if pending.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = pending
        .iter()
        .map(|p| format!("{}: {}", p.service, p.why.join("; ")))
        .collect();
    Err(CliError::Failed(format!(
        "not converged after --wait-ready {d:?}, so nothing was run: {}",
        why.join(" | ")
    )))
}

/// The service a task reference names, for `--wait-ready` (a bare ID is taken as a name:
/// a service may be named like one).
pub fn service_of(task: &swarm_exec_core::model::target::TaskRef) -> Services {
    use swarm_exec_core::model::target::TaskRef;
    match task {
        TaskRef::Slot { service, .. } | TaskRef::OnNode { service, .. } => {
            Services::Named(service.clone())
        }
        TaskRef::Service(name) | TaskRef::Id(name) => Services::Named(name.clone()),
    }
}
