//! Creating and removing what a run puts on the swarm: its envelope secret and its helper
//! service. A create that is stopped midway is let finish briefly so that what it made can
//! be removed by ID; names are chosen first, so that removal by name is possible too.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use swarm_exec_proto::Envelope;
use tokio::time::{sleep_until, Instant};

use crate::engine::{ApiError, SwarmApi};
use crate::model::outcome::Interrupt;
use crate::sink::OutputSink;

/// A run's envelope, created as a swarm secret: its ID and name, and the key its helpers'
/// frames are sealed with.
#[derive(Clone)]
pub struct RunSecret {
    pub id: String,
    pub name: String,
    pub key: [u8; 32],
}

/// Never the key, whatever traces a job.
impl std::fmt::Debug for RunSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSecret")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How long a create already sent is let finish after a cancel, so that what it made can
/// be removed by ID (removing by name while the create is still in flight may miss it).
const CREATE_GRACE: Duration = Duration::from_secs(10);

/// Why a create was stopped.
pub enum Stop {
    Interrupted(Interrupt),
    Deadline,
}

pub enum Created<T> {
    Done(Result<T, ApiError>),
    /// `made`: what the create made after all, if it finished within `CREATE_GRACE`.
    Stopped {
        stop: Stop,
        made: Option<T>,
    },
}

/// Runs `create` until it ends, `cancel` fires or `deadline` passes. The create is polled
/// first, so it has been sent whenever it is stopped; it is then let finish (briefly) so
/// that the caller can remove what it made.
pub async fn create_or_stop<T, F, C>(
    create: F,
    cancel: &mut Pin<&mut C>,
    deadline: Instant,
) -> Created<T>
where
    F: Future<Output = Result<T, ApiError>>,
    C: Future<Output = Interrupt>,
{
    tokio::pin!(create);
    let stop = tokio::select! {
        biased;
        r = &mut create => return Created::Done(r),
        i = cancel.as_mut() => Stop::Interrupted(i),
        _ = sleep_until(deadline) => Stop::Deadline,
    };
    let made = match tokio::time::timeout(CREATE_GRACE, create).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    };
    Created::Stopped { stop, made }
}

/// Creates a run's envelope secret, labelled like helpers (so `gc` finds it) and with what
/// it is for (`target_labels`).
pub async fn create_envelope<A: SwarmApi>(
    api: &A,
    envelope: &Envelope,
    target_labels: &[(String, String)],
    budget: Duration,
) -> Result<RunSecret, ApiError> {
    create_envelope_named(api, envelope_name(), envelope, target_labels, budget).await
}

/// A fresh name for an envelope secret.
pub fn envelope_name() -> String {
    format!(
        "swarm-exec-run-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// [`create_envelope`] under a name chosen beforehand (so that a caller stopped while the
/// create is on its way can still find it).
pub async fn create_envelope_named<A: SwarmApi>(
    api: &A,
    name: String,
    envelope: &Envelope,
    target_labels: &[(String, String)],
    budget: Duration,
) -> Result<RunSecret, ApiError> {
    let data = envelope.encode();
    let mut labels = crate::helper::secret_labels(budget);
    labels.extend_from_slice(target_labels);
    let id = api.create_secret(&name, &labels, &data).await?;
    tracing::debug!(secret = %name, bytes = data.len(), "envelope secret created");
    Ok(RunSecret {
        id,
        name,
        key: envelope.key,
    })
}

/// Removes the envelope secret, after every helper that mounted it is gone.
pub async fn remove_envelope<A: SwarmApi, S: OutputSink>(api: &A, id: &str, out: &mut S) {
    match api.remove_secret(id).await {
        Ok(()) => tracing::debug!(secret = id, "envelope secret removed"),
        Err(e) => out.warn(&format!(
            "could not remove secret {id}: {e}; `docker secret rm {id}` removes it"
        )),
    }
}

pub async fn remove_helper<A: SwarmApi, S: OutputSink>(api: &A, helper: &str, out: &mut S) {
    match api.remove_service(helper).await {
        Ok(()) => tracing::debug!(helper, "helper removed"),
        Err(e) => {
            out.warn(&format!(
                "could not remove helper service {helper}: {e}; `docker service rm {helper}` removes it"
            ));
        }
    }
}
