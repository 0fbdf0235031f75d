//! The overlay a session's relay and helper meet on: the kept session network, created
//! (attachable, labelled) when missing, or the operator's `--network`, which must be an
//! attachable overlay.

use std::time::Duration;

use tokio::time::Instant;

use super::error::SessionFailure;
use super::request::POLL;
use crate::engine::{ApiError, NetworkInfo, SwarmApi};
use crate::model::labels::{HELPER_LABEL, NETWORK_KIND};

/// The overlay sessions use unless `--network` names one.
pub const SESSION_NETWORK: &str = "swarm-exec-session";

/// How long a swarm network just made may take to be allocated by the managers.
const ALLOCATION: Duration = Duration::from_secs(10);

/// The network's ID. `ours`: the kept session overlay, made when missing.
pub(super) async fn ensure<A: SwarmApi>(
    api: &A,
    name: &str,
    ours: bool,
) -> Result<String, SessionFailure> {
    let err = |source| SessionFailure::Network {
        name: name.to_owned(),
        source,
    };
    match api.inspect_network(name).await {
        Ok(n) => return settled(api, name, n).await,
        Err(ApiError::NotFound(_)) if ours => {}
        Err(e) => return Err(err(e)),
    }
    let labels = [(HELPER_LABEL.to_owned(), NETWORK_KIND.to_owned())];
    match api.create_network(name, &labels).await {
        Ok(_) => {}
        // Made by a concurrent session: found below. A manager answers a name already
        // taken in the swarm's store with 500 ("name conflicts with an existing object").
        Err(ApiError::Server { status: 409, .. }) => {}
        Err(ApiError::Server { message, .. }) if message.contains("name conflicts") => {}
        Err(e) => return Err(err(e)),
    }
    let n = api.inspect_network(name).await.map_err(err)?;
    settled(api, name, n).await
}

/// The id of network `name` once it shows as an attachable overlay. A swarm network just
/// made (by a concurrent session, say) has no driver until the managers have allocated it:
/// that is waited for, briefly; anything else is not a network a session can use.
async fn settled<A: SwarmApi>(
    api: &A,
    name: &str,
    mut n: NetworkInfo,
) -> Result<String, SessionFailure> {
    let until = Instant::now() + ALLOCATION;
    loop {
        match (n.driver.as_str(), n.attachable) {
            ("overlay", true) if !n.id.is_empty() => return Ok(n.id),
            ("", _) if Instant::now() < until => {}
            (driver, attachable) => {
                let driver = if driver.is_empty() {
                    "none yet"
                } else {
                    driver
                };
                return Err(SessionFailure::NotAttachable {
                    name: name.to_owned(),
                    driver: driver.to_owned(),
                    attachable,
                });
            }
        }
        tokio::time::sleep(POLL).await;
        n = api
            .inspect_network(name)
            .await
            .map_err(|source| SessionFailure::Network {
                name: name.to_owned(),
                source,
            })?;
    }
}

/// The manager's engine could not attach a container to a network that the swarm does not
/// know by the id it still has (seen right after the network was removed and made again).
pub(super) fn stale(e: &ApiError) -> bool {
    matches!(e, ApiError::Server { message, .. }
        if message.contains("Could not attach to network") && message.contains("not found"))
}
