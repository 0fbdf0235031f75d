//! The overlay a session's relay and helper meet on: one of the session's own, made for it
//! and removed with it, or the operator's `--network`, which must be an attachable overlay.
//!
//! Why a network of its own (measured on the lab, see the design document): on a network
//! kept between sessions, the manager and the helper's node leave it and join it again with
//! every session, and now and then the helper's node comes back without knowing that the
//! manager is on it. Its engine then drops the relay's address as it arrives and learns it
//! only at the overlay's next periodic push-pull, up to a minute later. A network nobody
//! was on before has no such history.

use std::time::Duration;

use tokio::time::Instant;

use super::error::SessionFailure;
use super::request::POLL;
use crate::engine::{ApiError, SwarmApi};

/// The name sessions' own networks start with (and the network sessions shared before).
pub const SESSION_NETWORK: &str = "swarm-exec-session";

/// How long a swarm network just made may take to be allocated by the managers.
const ALLOCATION: Duration = Duration::from_secs(10);

/// A session's own network: `swarm-exec-session-<tag>`.
pub fn own_name(tag: &str) -> String {
    format!("{SESSION_NETWORK}-{tag}")
}

/// A /24 drawn at random from 10.160.0.0/11 (8192 of them). Left to the managers, a new
/// network gets the lowest free subnet, which is the one the last session's network just
/// gave back; a node that has not yet let go of that one refuses the helper ("Pool
/// overlaps with other one on this address space", seen on Docker 20.10). Nothing but
/// the relay and the helper is on the network, and neither talks to anything else, so the
/// range may overlap a LAN's.
fn random_subnet() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("10.{}.{}.0/24", 160 + b[0] % 32, b[1])
}

/// Makes the session's own attachable overlay (labelled with `labels`) and returns its ID
/// (see [`ready`] for when it can be used). A subnet already taken is drawn again.
pub(super) async fn create_own<A: SwarmApi>(
    api: &A,
    tag: &str,
    labels: &[(String, String)],
) -> Result<String, SessionFailure> {
    let name = own_name(tag);
    let err = |source| SessionFailure::Network {
        name: name.clone(),
        source,
    };
    let mut draws = 0;
    let id = loop {
        let subnet = random_subnet();
        match api.create_network(&name, labels, Some(&subnet)).await {
            Ok(id) => break id,
            Err(ApiError::Server { message, .. }) if message.contains("overlaps") && draws < 8 => {
                draws += 1;
            }
            Err(e) => return Err(err(e)),
        }
    };
    Ok(id)
}

/// The ID of network `name_or_id` (`name` in messages) once it shows as an attachable
/// overlay: the session's own by its ID, the operator's (`--network`) by its name. A swarm
/// network just made has no driver until the managers have allocated it: that is waited
/// for, briefly; anything else is not a network a session can use.
pub(super) async fn ready<A: SwarmApi>(
    api: &A,
    name: &str,
    name_or_id: &str,
) -> Result<String, SessionFailure> {
    let until = Instant::now() + ALLOCATION;
    loop {
        let n =
            api.inspect_network(name_or_id)
                .await
                .map_err(|source| SessionFailure::Network {
                    name: name.to_owned(),
                    source,
                })?;
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
    }
}

/// The manager's engine could not attach a container to a network that the swarm does not
/// know by the id it still has (seen right after the network was removed and made again).
pub(super) fn stale(e: &ApiError) -> bool {
    matches!(e, ApiError::Server { message, .. }
        if message.contains("Could not attach to network") && message.contains("not found"))
}
