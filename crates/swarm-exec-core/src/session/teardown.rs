//! What a session made, removed at its end in reverse — and what it asked for by name but
//! got no answer about (it was stopped while the create was on its way), removed by name.

use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{ApiError, Named, SwarmApi};
use crate::helper::lifecycle::remove_envelope;
use crate::sink::OutputSink;

#[derive(Default)]
pub(super) struct Made {
    pub(super) relay: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) helper: Option<String>,
    /// The session's own network (not the operator's `--network`).
    pub(super) network: Option<String>,
    asked: Option<Asked>,
}

/// A create sent without its answer yet: what and by which name.
#[derive(Debug, Clone)]
pub(super) enum Asked {
    Relay(String),
    Secret(String),
    Helper(String),
    Network(String),
}

/// How long a create whose answer never came may take to land: removing it by name is
/// tried that long (a create still in flight on the manager is not found yet).
const ASKED_GRACE: Duration = Duration::from_secs(3);

impl Made {
    /// Runs `create` with `asked` noted while it is on its way: only a session stopped
    /// mid-create leaves the note.
    pub(super) async fn asking<T>(
        &mut self,
        asked: Asked,
        create: impl std::future::Future<Output = T>,
    ) -> T {
        self.asked = Some(asked);
        let r = create.await;
        self.asked = None;
        r
    }

    /// The helper and its envelope, made again when a helper never started.
    pub(super) async fn remove_helper<A: SwarmApi, O: OutputSink>(&mut self, api: &A, out: &mut O) {
        if let Some(helper) = self.helper.take() {
            // Removing the helper stops the command if it still runs (SIGTERM → stopper).
            if let Err(e) = api.remove_service(&helper).await {
                out.warn(&format!(
                    "could not remove helper service {helper}: {e}; `docker service rm {helper}` removes it"
                ));
            }
        }
        if let Some(secret) = self.secret.take() {
            remove_envelope(api, &secret, out).await;
        }
    }

    pub(super) async fn remove<A: SwarmApi, O: OutputSink>(&mut self, api: &A, out: &mut O) {
        // First: a helper asked for would hold the secret; a secret or relay asked for is
        // the last thing the session did.
        if let Some(asked) = self.asked.take() {
            remove_asked(api, &asked, out).await;
        }
        self.remove_helper(api, out).await;
        if let Some(relay) = self.relay.take() {
            remove_relay(api, &relay, out).await;
        }
        // Last: the managers refuse it while the relay or the helper is on it.
        if let Some(network) = self.network.take() {
            remove_network(api, &network, out).await;
        }
    }
}

/// Removes by name what a create was asked for whose answer never came: it may not exist,
/// exist, or come to exist a moment later.
async fn remove_asked<A: SwarmApi, O: OutputSink>(api: &A, asked: &Asked, out: &mut O) {
    let until = Instant::now() + ASKED_GRACE;
    let named = match asked {
        Asked::Helper(name) => Named::Service(name),
        Asked::Secret(name) => Named::Secret(name),
        Asked::Relay(name) => Named::Container(name),
        Asked::Network(name) => Named::Network(name),
    };
    loop {
        // The engine's own answers: "not there (yet)" must not read as removed.
        match api.remove_named(named).await {
            Ok(()) => {
                tracing::debug!(?asked, "removed what a create stopped on its way made");
                return;
            }
            Err(ApiError::NotFound(_)) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(ApiError::NotFound(_)) => return,
            // A relay already on its way out.
            Err(ApiError::Server { status: 409, .. }) if matches!(asked, Asked::Relay(_)) => return,
            Err(e) => {
                out.warn(&format!(
                    "could not remove {asked:?}, made as the session stopped: {e}"
                ));
                return;
            }
        }
    }
}

/// Removes the relay container `id` (it may be going already: it removes itself on exit).
pub(super) async fn remove_relay<A: SwarmApi, O: OutputSink>(api: &A, id: &str, out: &mut O) {
    match api.remove_container(id).await {
        Ok(()) | Err(ApiError::NotFound(_)) | Err(ApiError::Server { status: 409, .. }) => {}
        Err(e) => out.warn(&format!(
            "could not remove relay container {id}: {e}; `docker rm -f {id}` removes it"
        )),
    }
}

/// How long the session's network may stay in use once its relay and helper are removed
/// (the managers release a removed service's attachments a moment later).
const NETWORK_RELEASE: Duration = Duration::from_secs(10);

/// Removes the session's own network, trying again while it is still in use.
async fn remove_network<A: SwarmApi, O: OutputSink>(api: &A, id: &str, out: &mut O) {
    let until = Instant::now() + NETWORK_RELEASE;
    loop {
        match api.remove_network(id).await {
            Ok(()) | Err(ApiError::NotFound(_)) => return,
            Err(ApiError::Server { .. }) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                out.warn(&format!(
                    "could not remove the session's network {id}: {e}; `swarm-exec gc` or \
                     `docker network rm {id}` removes it"
                ));
                return;
            }
        }
    }
}
