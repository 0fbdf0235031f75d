//! `service-exec`: run a command in every selected task of a service (or of a stack), with
//! one helper per node that execs into all of that node's selected containers at once.
//!
//! With `parallel`, tasks go in waves of that many (each wave again one helper per node
//! involved), `delay` apart: a rolling exec, as `docker service update` rolls in batches.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::{sleep, Instant};

use crate::cancel::CancelHub;
use crate::engine::{ApiError, NodeInfo, ServiceInfo, SwarmApi, TaskFilter, TaskInfo};
use crate::helper::lifecycle::{create_envelope, remove_envelope, RunSecret};
use crate::helper::Carrier;
use crate::lookup::resolve::TARGET_START_WAIT;
use crate::lookup::{self, LookupError};
use crate::model::options::HelperSource;
use crate::model::options::{InvalidRun, RunOptions};
use crate::model::outcome::{Interrupt, NotRun, Outcome};
use crate::model::state::TaskState;
use crate::model::target::{check_service_name, is_container_id, is_swarm_id, InvalidRef};
use crate::run::{run_helper, HelperJob};
use crate::sink::OutputSink;
use crate::task_exec::{pin_image, zero_install};

/// Which services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    Named(String),
    /// Every service of a stack (`com.docker.stack.namespace`).
    Stack(String),
}

/// `--filter`s: values of one key are alternatives, different keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Hostnames or node IDs.
    pub nodes: Vec<String>,
    pub slots: Vec<u64>,
    /// Container labels: `key` (present) or `key=value`.
    pub labels: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct ServiceExecRequest {
    pub services: Services,
    pub filters: Filters,
    /// The same input goes to every task; the timeout is for each wave (without
    /// `parallel`: for the whole run).
    pub run: RunOptions,
    /// At most this many tasks at once.
    pub parallel: Option<usize>,
    /// Between waves.
    pub delay: Duration,
    /// Start no new wave after a failure.
    pub fail_fast: bool,
}

/// One selected task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub task_id: String,
    pub service: String,
    /// 0 for global services.
    pub slot: u64,
    pub node_id: String,
    pub node: String,
    /// The node's platform, empty when it could not be read.
    pub node_os: String,
    pub node_arch: String,
    pub container_id: String,
    /// The image of the task's spec.
    pub image: String,
}

impl Target {
    /// The task as task-exec finds it, for the direct path.
    fn resolved(&self) -> crate::lookup::resolve::Resolved {
        crate::lookup::resolve::Resolved {
            task_id: self.task_id.clone(),
            service_id: String::new(),
            service_name: self.service.clone(),
            display: self.name(),
            node_id: self.node_id.clone(),
            node_name: self.node.clone(),
            node_os: self.node_os.clone(),
            node_arch: self.node_arch.clone(),
            container_id: self.container_id.clone(),
            image: self.image.clone(),
            chosen_from: None,
        }
    }

    /// As `docker service logs` names a task: `web.2@node3`, or `agent@node3` when global.
    pub fn name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}@{}", self.service, self.slot, self.node)
        } else {
            format!("{}@{}", self.service, self.node)
        }
    }
}

/// How one task's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Exited(i64),
    TimedOut,
    /// The command could not be run there (the message says why).
    Failed(String),
    /// Not started: an earlier wave failed and `fail_fast` was set.
    Skipped,
    Interrupted(Interrupt),
}

impl TaskOutcome {
    /// The interrupt, when the task's run was interrupted.
    pub fn interrupt(&self) -> Option<Interrupt> {
        match self {
            TaskOutcome::Interrupted(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&Result<Outcome, NotRun>> for TaskOutcome {
    fn from(r: &Result<Outcome, NotRun>) -> Self {
        match r {
            Ok(Outcome::Exited(c)) => TaskOutcome::Exited(*c),
            Ok(Outcome::TimedOut) => TaskOutcome::TimedOut,
            Ok(Outcome::Interrupted(i)) => TaskOutcome::Interrupted(*i),
            Err(NotRun(why)) => TaskOutcome::Failed(why.clone()),
        }
    }
}

/// One task's run, with the sink that received its output.
#[derive(Debug)]
pub struct TaskRun<S> {
    pub target: Target,
    pub outcome: TaskOutcome,
    pub duration: Duration,
    pub sink: S,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceExecError {
    #[error(transparent)]
    Invalid(#[from] InvalidRef),
    #[error("no service named {0}")]
    NoService(String),
    #[error("stack {0} has no services")]
    EmptyStack(String),
    #[error("no node named {0}")]
    NoNode(String),
    #[error("no running task of {what} matches")]
    NoTasks { what: String },
    #[error("still not running after {waited:?}, so the command would not reach them: {}", .what.join(", "))]
    NotRunning { waited: Duration, what: Vec<String> },
    #[error("invalid --parallel 0: at least one task must run at a time")]
    ZeroParallel,
    #[error(transparent)]
    InvalidRun(#[from] InvalidRun),
    #[error("interrupted before any helper was created")]
    Interrupted(Interrupt),
    /// The targets cannot run the embedded node-side program, or its configs cannot be made.
    #[error(transparent)]
    Program(Box<crate::error::ExecError>),
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: ApiError,
    },
}

impl From<LookupError> for ServiceExecError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NoService(s) => ServiceExecError::NoService(s),
            LookupError::NoNode(n) => ServiceExecError::NoNode(n),
            LookupError::Api { step, source } => ServiceExecError::Api { step, source },
        }
    }
}

fn api(step: &'static str) -> impl Fn(ApiError) -> ServiceExecError {
    move |source| ServiceExecError::Api { step, source }
}

/// The services named, as they are now.
/// The services `services` names: one by name, or a stack's (by name).
pub(crate) async fn fetch_services<A: SwarmApi>(
    api_: &A,
    services: &Services,
) -> Result<Vec<ServiceInfo>, ServiceExecError> {
    match services {
        Services::Named(name) => {
            check_service_name(name)?;
            Ok(vec![lookup::service(api_, name).await?])
        }
        Services::Stack(stack) => {
            check_service_name(stack)?;
            let label = format!("com.docker.stack.namespace={stack}");
            let mut all = api_
                .list_services(&label)
                .await
                .map_err(api("list the stack's services"))?;
            if all.is_empty() {
                return Err(ServiceExecError::EmptyStack(stack.clone()));
            }
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(all)
        }
    }
}

/// How often the tasks are listed again while some are starting or a service is updating.
const START_POLL: Duration = Duration::from_millis(250);

/// The selected tasks, and those left out because they run an earlier spec.
#[derive(Debug, Default)]
pub struct Selection {
    pub targets: Vec<Target>,
    /// One line each (`task ID of SERVICE (slot N)`), for a note.
    pub earlier: Vec<String>,
}

/// Selects the tasks; nothing is created on the swarm until this has succeeded. Tasks
/// that are still starting, and services in the middle of an update, are waited for (up
/// to [`TARGET_START_WAIT`]): a task that is selected is never silently skipped. Where a
/// service runs tasks of its current spec beside ones of an earlier spec (an update that
/// paused), only the current ones are selected, and the others named.
pub async fn select<A: SwarmApi>(
    api_: &A,
    wanted: &Services,
    filters: &Filters,
) -> Result<Selection, ServiceExecError> {
    let mut services_now = fetch_services(api_, wanted).await?;
    let mut filter_nodes = Vec::new();
    for n in &filters.nodes {
        if !crate::model::target::is_node_name(n) {
            return Err(ServiceExecError::Invalid(InvalidRef::Node(n.clone())));
        }
        filter_nodes.push(lookup::node(api_, n).await?.id);
    }

    let waiting_since = Instant::now();
    let (services, picked) = loop {
        let services = services_now;
        let task_filters: Vec<TaskFilter> = services
            .iter()
            .map(|s| TaskFilter {
                service: Some(s.id.clone()),
                ..Default::default()
            })
            .collect();
        let lists = join_all(task_filters.iter().map(|f| api_.list_tasks(f))).await;
        let mut picked: Vec<(usize, TaskInfo)> = Vec::new();
        let mut starting: Vec<String> = Vec::new();
        for (i, (svc, tasks)) in services.iter().zip(lists).enumerate() {
            let tasks = tasks.map_err(api("list the service's tasks"))?;
            for t in tasks
                .into_iter()
                .filter(|t| t.service_id == svc.id && t.desired_state == TaskState::Running)
                .filter(|t| filter_nodes.is_empty() || filter_nodes.contains(&t.node_id))
                .filter(|t| filters.slots.is_empty() || filters.slots.contains(&t.slot))
                .filter(|t| labels_match(&filters.labels, &t.container_labels))
            {
                if t.state == TaskState::Running {
                    if is_container_id(&t.container_id) && is_swarm_id(&t.node_id) {
                        picked.push((i, t));
                    }
                } else if t.state.is_starting() {
                    starting.push(format!("task {} of {} ({})", t.id, svc.name, t.state));
                }
            }
        }
        let updating: Vec<&str> = services
            .iter()
            .filter(|s| s.updating)
            .map(|s| s.name.as_str())
            .collect();
        if starting.is_empty() && updating.is_empty() {
            break (services, picked);
        }
        if waiting_since.elapsed() >= TARGET_START_WAIT {
            starting.extend(updating.iter().map(|s| format!("service {s} (updating)")));
            return Err(ServiceExecError::NotRunning {
                waited: TARGET_START_WAIT,
                what: starting,
            });
        }
        tracing::debug!(?starting, ?updating, "waiting for tasks to start");
        sleep(START_POLL).await;
        services_now = fetch_services(api_, wanted).await?;
    };
    let (picked, earlier) = current_spec_first(&services, picked);
    if picked.is_empty() {
        let what = match services.as_slice() {
            [one] => format!("service {}", one.name),
            _ => "those services".to_owned(),
        };
        return Err(ServiceExecError::NoTasks { what });
    }

    // Hostnames for names and messages, one look-up per node.
    let mut node_ids: Vec<String> = picked.iter().map(|(_, t)| t.node_id.clone()).collect();
    node_ids.sort_unstable();
    node_ids.dedup();
    let found = join_all(node_ids.iter().map(|id| lookup::task_node(api_, id))).await;
    let nodes: HashMap<String, NodeInfo> = node_ids.into_iter().zip(found).collect();

    let mut targets: Vec<Target> = picked
        .into_iter()
        .map(|(svc, t)| Target {
            node: nodes[t.node_id.as_str()].hostname.clone(),
            node_os: nodes[t.node_id.as_str()].os.clone(),
            node_arch: nodes[t.node_id.as_str()].arch.clone(),
            image: t.image,
            task_id: t.id,
            service: svc.name.clone(),
            slot: t.slot,
            node_id: t.node_id,
            container_id: t.container_id,
        })
        .collect();
    targets.sort_by(|a, b| (&a.service, a.slot, &a.node).cmp(&(&b.service, b.slot, &b.node)));
    Ok(Selection { targets, earlier })
}

/// The picked tasks with their services; of a service that runs any task of its current
/// spec, those of an earlier spec are left out (and named in the second list).
fn current_spec_first(
    services: &[ServiceInfo],
    picked: Vec<(usize, TaskInfo)>,
) -> (Vec<(&ServiceInfo, TaskInfo)>, Vec<String>) {
    let has_current = |i: usize| {
        picked
            .iter()
            .any(|(j, t)| *j == i && t.spec == services[i].template)
    };
    let keep: Vec<bool> = (0..services.len()).map(has_current).collect();
    let mut earlier = Vec::new();
    let mut kept = Vec::new();
    for (i, t) in picked {
        let svc = &services[i];
        if keep[i] && t.spec != svc.template {
            let slot = match t.slot {
                0 => format!("on node {}", t.node_id),
                n => format!("slot {n}"),
            };
            earlier.push(format!("task {} of {} ({slot})", t.id, svc.name));
        } else {
            kept.push((svc, t));
        }
    }
    (kept, earlier)
}

fn labels_match(wanted: &[(String, Option<String>)], have: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| {
        have.iter()
            .any(|(hk, hv)| hk == k && v.as_ref().is_none_or(|v| v == hv))
    })
}

/// The selected tasks and the helpers' program; nothing is created but zero-install's
/// configs, once the targets are fit for them.
/// The selected tasks, which node this engine is (its tasks are exec'd directly), and how
/// the helpers for the others get their program (`None`: no task needs one).
struct Prepared {
    targets: Vec<Target>,
    /// Left out: they run an earlier spec than other tasks of their service.
    earlier: Vec<String>,
    own_node: Option<String>,
    carrier: Option<Carrier>,
}

async fn prepare<A: SwarmApi>(
    api_: &A,
    req: &ServiceExecRequest,
) -> Result<Prepared, ServiceExecError> {
    // Unknown means a helper for every task.
    let here = async { api_.own_node_id().await.ok().flatten() };
    let (selection, own_node) = tokio::join!(select(api_, &req.services, &req.filters), here);
    let Selection { targets, earlier } = selection?;
    let remote: Vec<&Target> = targets
        .iter()
        .filter(|t| own_node.as_ref() != Some(&t.node_id))
        .collect();
    let carrier = match (&req.run.helper, remote.is_empty()) {
        (_, true) => None,
        (HelperSource::Image(image), false) => {
            let pinned = pin_image(api_, image)
                .await
                .map_err(api("read the helper image on the manager"))?;
            Some(Carrier::Image(pinned))
        }
        (HelperSource::Embedded(program), false) => {
            let checked = remote
                .iter()
                .map(|t| (&t.node, &t.node_os, &t.node_arch, &t.image));
            let carrier = zero_install(api_, program, "service-exec", checked)
                .await
                .map_err(|e| ServiceExecError::Program(Box::new(e)))?;
            Some(carrier)
        }
    };
    Ok(Prepared {
        targets,
        earlier,
        own_node,
        carrier,
    })
}

/// Runs the command in every selected task. `sink_for` gives each task its output sink;
/// `ended` is called once for every task as soon as its outcome is known (when its node's
/// helper has ended; for tasks that never ran, at the end), so a caller can report it and
/// let go of its output; `cancel` stops everything (every helper is removed first).
pub async fn service_exec<A, S, F, E, C>(
    api_: &A,
    req: &ServiceExecRequest,
    mut sink_for: F,
    ended: E,
    cancel: C,
) -> Result<Vec<TaskRun<S>>, ServiceExecError>
where
    A: SwarmApi,
    S: OutputSink,
    F: FnMut(&Target) -> S,
    E: Fn(&mut TaskRun<S>),
    C: std::future::Future<Output = Interrupt>,
{
    if req.parallel == Some(0) {
        return Err(ServiceExecError::ZeroParallel);
    }
    req.run.check()?;
    let hub = CancelHub::default();
    let prepare = prepare(api_, req);
    tokio::pin!(cancel);
    let Prepared {
        targets,
        earlier,
        own_node,
        carrier,
    } = tokio::select! {
        r = prepare => r?,
        // Nothing was created yet (configs of the node-side build are kept anyway).
        i = &mut cancel => return Err(ServiceExecError::Interrupted(i)),
    };
    let helpers = match carrier {
        Some(carrier) => Some((carrier, envelope_for(api_, req, &targets).await?)),
        None => None,
    };
    let ways = Ways {
        own_node: own_node.as_deref(),
        helpers: helpers.as_ref(),
    };

    let mut runs: Vec<TaskRun<S>> = targets
        .into_iter()
        .map(|t| TaskRun {
            sink: sink_for(&t),
            target: t,
            outcome: TaskOutcome::Skipped,
            duration: Duration::ZERO,
        })
        .collect();
    note_earlier(&mut runs, &earlier);
    let wave_size = req.parallel.unwrap_or(runs.len()).max(1);
    let work = async {
        // How many runs (from the first) went through a wave, and so were reported.
        let mut ran = 0;
        let mut first = true;
        for wave in runs.chunks_mut(wave_size) {
            if !first {
                tokio::select! {
                    _ = sleep(req.delay) => {}
                    i = hub.subscribe() => {
                        mark(wave, TaskOutcome::Interrupted(i));
                        continue;
                    }
                }
            }
            first = false;
            run_wave(api_, req, &ways, wave, &hub, &ended).await;
            ran += wave.len();
            let interrupted = wave.iter().any(|r| r.outcome.interrupt().is_some());
            let failed = wave.iter().any(|r| r.outcome != TaskOutcome::Exited(0));
            if interrupted || (req.fail_fast && failed) {
                break;
            }
        }
        ran
    };
    let ran = hub.run(work, cancel).await;
    // Waves that never started because of an interrupt are interrupted, not skipped.
    let interrupt = runs.iter().find_map(|r| r.outcome.interrupt());
    if let Some(i) = interrupt {
        for r in runs
            .iter_mut()
            .filter(|r| r.outcome == TaskOutcome::Skipped)
        {
            r.outcome = TaskOutcome::Interrupted(i);
        }
    }
    for r in &mut runs[ran..] {
        ended(r);
    }
    if let (Some((_, secret)), Some(first)) = (&helpers, runs.first_mut()) {
        remove_envelope(api_, &secret.id, &mut first.sink).await;
    }
    Ok(runs)
}

/// Tasks left out for their earlier spec are named once, through the first run's sink.
fn note_earlier<S: OutputSink>(runs: &mut [TaskRun<S>], earlier: &[String]) {
    if let (false, Some(first)) = (earlier.is_empty(), runs.first_mut()) {
        first.sink.note(&format!(
            "left out, as they run an earlier spec than their service's other tasks (an \
             update that paused?): {}",
            earlier.join(", ")
        ));
    }
}

/// One envelope for every helper; it lives until the last wave could end.
async fn envelope_for<A: SwarmApi>(
    api_: &A,
    req: &ServiceExecRequest,
    targets: &[Target],
) -> Result<RunSecret, ServiceExecError> {
    let waves = req.parallel.map_or(1, |p| targets.len().div_ceil(p.max(1)));
    let budget = (req.run.timeout + req.delay) * u32::try_from(waves).unwrap_or(u32::MAX);
    let envelope = req.run.envelope(budget)?;
    let mut services: Vec<&str> = targets.iter().map(|t| t.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let labels = [("swarm-exec.target.service".to_owned(), services.join(","))];
    create_envelope(api_, &envelope, &labels, budget)
        .await
        .map_err(api("create the run's envelope secret"))
}

/// How a wave's tasks are reached: those on `own_node` directly, the others through
/// helpers with this program and envelope.
struct Ways<'a> {
    own_node: Option<&'a str>,
    helpers: Option<&'a (Carrier, RunSecret)>,
}

fn mark<S>(runs: &mut [TaskRun<S>], outcome: TaskOutcome) {
    for r in runs {
        r.outcome = outcome.clone();
    }
}

/// One wave: a helper per node, all at once; the tasks on the client's own engine directly.
async fn run_wave<A: SwarmApi, S: OutputSink>(
    api_: &A,
    req: &ServiceExecRequest,
    ways: &Ways<'_>,
    wave: &mut [TaskRun<S>],
    hub: &CancelHub,
    ended: &impl Fn(&mut TaskRun<S>),
) {
    let deadline = Instant::now() + req.run.timeout;
    let started = Instant::now();
    // Group the wave's runs by node, keeping their order.
    let mut by_node: BTreeMap<String, Vec<&mut TaskRun<S>>> = BTreeMap::new();
    for r in wave.iter_mut() {
        by_node.entry(r.target.node_id.clone()).or_default().push(r);
    }
    let jobs = by_node.into_iter().map(|(node_id, mut group)| async move {
        let helpers = match ways.helpers {
            Some(h) if ways.own_node != Some(node_id.as_str()) => h,
            // On this engine (without helpers, every task is).
            _ => {
                let runs = group
                    .iter_mut()
                    .map(|r| run_direct(api_, req, r, deadline, started, hub, ended));
                join_all(runs).await;
                return;
            }
        };
        let job = helper_job(&group, helpers);
        let end = {
            let mut sinks: Vec<&mut S> = group.iter_mut().map(|r| &mut r.sink).collect();
            run_helper(api_, &job, &mut sinks, deadline, hub.subscribe()).await
        };
        for (i, r) in group.iter_mut().enumerate() {
            let (outcome, at) = match &end {
                Ok(ends) => (TaskOutcome::from(&ends[i].result), ends[i].at),
                Err(e) => (TaskOutcome::Failed(e.to_string()), Instant::now()),
            };
            r.outcome = outcome;
            r.duration = at.saturating_duration_since(started);
            ended(r);
        }
    });
    join_all(jobs).await;
}

/// The helper for one node's tasks of a wave.
fn helper_job<S>(
    group: &[&mut TaskRun<S>],
    (carrier, envelope): &(Carrier, RunSecret),
) -> HelperJob {
    let first = &group[0].target;
    let services: Vec<&str> = {
        let mut s: Vec<&str> = group.iter().map(|r| r.target.service.as_str()).collect();
        s.dedup();
        s
    };
    HelperJob {
        node_id: first.node_id.clone(),
        node_name: first.node.clone(),
        target: format!("{} task(s) of {}", group.len(), services.join(", ")),
        labels: vec![
            ("swarm-exec.target.service".to_owned(), services.join(",")),
            (
                "swarm-exec.target.tasks".to_owned(),
                group.len().to_string(),
            ),
        ],
        containers: group
            .iter()
            .map(|r| r.target.container_id.clone())
            .collect(),
        carrier: carrier.clone(),
        target_image: first.image.clone(),
        envelope: envelope.clone(),
    }
}

/// One task on the client's own engine, exec'd there as task-exec does (no helper).
async fn run_direct<A: SwarmApi, S: OutputSink>(
    api_: &A,
    req: &ServiceExecRequest,
    r: &mut TaskRun<S>,
    deadline: Instant,
    started: Instant,
    hub: &CancelHub,
    ended: &impl Fn(&mut TaskRun<S>),
) {
    let task = r.target.resolved();
    let input = req.run.stdin.clone().map(crate::direct::whole_input);
    let mut cancelled = Box::pin(hub.subscribe());
    let sizes = futures_util::stream::empty();
    let result = crate::direct::run(
        api_,
        &task,
        &req.run,
        false,
        input,
        sizes,
        &mut r.sink,
        Some(deadline),
        &mut cancelled,
    )
    .await;
    r.outcome = match result {
        Ok(outcome) => TaskOutcome::from(&Ok(outcome)),
        Err(e) => TaskOutcome::Failed(e.to_string()),
    };
    r.duration = started.elapsed();
    ended(r);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::engine::fake::{task, Fake, Sink, NODE, TASK};

    fn two_tasks() -> Arc<Fake> {
        let mut second = task("task2aaaaaaaaaaaaaaaaaaaa", 2, "running", "running");
        second.container_id = "d".repeat(64);
        Arc::new(Fake {
            tasks: Mutex::new(vec![task(TASK, 1, "running", "running"), second]),
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_still_starting_are_waited_for_not_skipped() {
        let fake = two_tasks();
        *fake.starting_lists.lock().unwrap() = 3;
        let start = Instant::now();
        let targets = select(&fake, &Services::Named("web".into()), &Filters::default())
            .await
            .unwrap();
        assert_eq!(targets.targets.len(), 2);
        assert_eq!(start.elapsed(), START_POLL * 3);
    }

    /// An update that paused leaves tasks of two specs running: the current ones are
    /// selected and the others named; with none of the current spec running, all are.
    #[tokio::test(start_paused = true)]
    async fn tasks_of_an_earlier_spec_are_left_out_when_current_ones_run() {
        let fake = two_tasks();
        *fake.template.lock().unwrap() = "v2".into();
        for (t, spec) in fake.tasks.lock().unwrap().iter_mut().zip(["v1", "v2"]) {
            t.spec = spec.into();
        }
        let web = Services::Named("web".into());
        let sel = select(&fake, &web, &Filters::default()).await.unwrap();
        let slots: Vec<u64> = sel.targets.iter().map(|t| t.slot).collect();
        assert_eq!(slots, [2]);
        assert_eq!(sel.earlier, [format!("task {TASK} of web (slot 1)")]);
        // None of the current spec runs: every running task is selected, none named.
        fake.tasks.lock().unwrap()[1].spec = "v1".into();
        let sel = select(&fake, &web, &Filters::default()).await.unwrap();
        assert_eq!(sel.targets.len(), 2);
        assert!(sel.earlier.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_never_starts_is_named_and_nothing_runs() {
        let fake = two_tasks();
        *fake.starting_lists.lock().unwrap() = u32::MAX;
        let err = select(&fake, &Services::Named("web".into()), &Filters::default())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ServiceExecError::NotRunning { .. }), "{msg}");
        assert!(
            msg.contains("task2aaaaaaaaaaaaaaaaaaaa") && msg.contains("starting"),
            "{msg}"
        );
        assert_eq!(fake.created(), 0);
    }

    /// Tasks on the engine the client talks to are exec'd there: no helper, no envelope,
    /// no configs — the fake has no execs, so each says why its direct exec failed.
    #[tokio::test(start_paused = true)]
    async fn tasks_on_the_clients_own_engine_need_no_helper() {
        let fake = two_tasks();
        *fake.own_node.lock().unwrap() = Some(NODE.into());
        let req = ServiceExecRequest {
            services: Services::Named("web".into()),
            filters: Filters::default(),
            run: RunOptions {
                command: vec!["true".into()],
                env: vec![],
                workdir: None,
                user: None,
                privileged: false,
                timeout: Duration::from_secs(60),
                helper: HelperSource::Image("swarm-exec:test".into()),
                stdin: None,
                debug: None,
            },
            parallel: None,
            delay: Duration::ZERO,
            fail_fast: false,
        };
        let never = std::future::pending();
        let runs = service_exec(&fake, &req, |_| Sink::default(), |_| {}, never)
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        for r in &runs {
            assert!(
                matches!(&r.outcome, TaskOutcome::Failed(why) if why.contains("creating the exec")),
                "{:?}",
                r.outcome
            );
        }
        assert_eq!(fake.created(), 0, "no helper");
        assert!(fake.secrets.lock().unwrap().is_empty(), "no envelope");
    }
}
