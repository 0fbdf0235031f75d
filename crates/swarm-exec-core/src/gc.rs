//! `gc`: removes helpers (and stdin secrets) left behind, e.g. by a client that was
//! SIGKILLed, found by label.
//!
//! Every helper carries [`HELPER_LABEL`] and [`DEADLINE_LABEL`] (Unix seconds). After its
//! deadline a helper has given up on its own (its node-local process stops there), so
//! removing it can disturb nothing; `all` removes helpers whose deadline is still ahead too.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::{ApiError, SwarmApi};
use crate::{DEADLINE_LABEL, HELPER_LABEL};

/// One helper service or stdin secret `gc` removed (or tried to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// "service" or "secret".
    pub kind: &'static str,
    pub name: String,
    pub id: String,
    /// `None` when the label is missing or unreadable (such a helper counts as stale).
    pub deadline: Option<u64>,
    pub removed: Result<(), String>,
}

/// How long after its deadline a helper counts as stale. The client that made it stops
/// following it at the deadline and then removes it; gc must not pull it away under it.
pub const GRACE_SECS: u64 = 10;

/// Removes stale helpers (or all of them); returns the ones it tried, in name order.
pub async fn gc<A: SwarmApi>(api: &A, all: bool) -> Result<Vec<Collected>, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let stale = |labels: &[(String, String)], all: bool| {
        let deadline = labels
            .iter()
            .find(|(k, _)| k == DEADLINE_LABEL)
            .and_then(|(_, v)| v.parse::<u64>().ok());
        (all || deadline.is_none_or(|d| d.saturating_add(GRACE_SECS) <= now)).then_some(deadline)
    };
    let mut out = Vec::new();
    // Services first: a secret cannot go while a helper still mounts it.
    let mut services = api.list_services(HELPER_LABEL).await?;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    for s in services {
        let Some(deadline) = stale(&s.labels, all) else {
            continue;
        };
        let removed = api.remove_service(&s.id).await.map_err(|e| e.to_string());
        out.push(Collected {
            kind: "service",
            name: s.name,
            id: s.id,
            deadline,
            removed,
        });
    }
    let mut secrets = api.list_secrets(HELPER_LABEL).await?;
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    for s in secrets {
        let Some(deadline) = stale(&s.labels, all) else {
            continue;
        };
        let removed = api.remove_secret(&s.id).await.map_err(|e| e.to_string());
        out.push(Collected {
            kind: "secret",
            name: s.name,
            id: s.id,
            deadline,
            removed,
        });
    }
    Ok(out)
}
