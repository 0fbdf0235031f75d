//! `gc`: removes helpers left behind (e.g. by a client that was SIGKILLed), found by label.
//!
//! Every helper carries [`HELPER_LABEL`] and [`DEADLINE_LABEL`] (Unix seconds). After its
//! deadline a helper has given up on its own (its node-local process stops there), so
//! removing it can disturb nothing; `all` removes helpers whose deadline is still ahead too.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::{ApiError, SwarmApi};
use crate::{DEADLINE_LABEL, HELPER_LABEL};

/// One helper `gc` looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub name: String,
    pub id: String,
    /// `None` when the label is missing or unreadable (such a helper counts as stale).
    pub deadline: Option<u64>,
    pub removed: Result<(), String>,
}

/// Removes stale helpers (or all of them); returns the ones it tried, in name order.
pub async fn gc<A: SwarmApi>(api: &A, all: bool) -> Result<Vec<Collected>, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut services = api.list_services(HELPER_LABEL).await?;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for s in services {
        let deadline = s
            .labels
            .iter()
            .find(|(k, _)| k == DEADLINE_LABEL)
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if !all && deadline.is_some_and(|d| d > now) {
            continue;
        }
        let removed = api.remove_service(&s.id).await.map_err(|e| e.to_string());
        out.push(Collected {
            name: s.name,
            id: s.id,
            deadline,
            removed,
        });
    }
    Ok(out)
}
