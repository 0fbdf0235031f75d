//! `gc`: removes helpers and their runs' envelope secrets left behind, e.g. by a client
//! that was SIGKILLed — and only those: an object counts as swarm-exec's when its name,
//! its [`HELPER_LABEL`] value and (for a service) its command and socket mount are all a
//! helper's, so a user's service that merely carries the label is never touched.
//!
//! Staleness is measured on the managers' clock: an object is stale [`GRACE_SECS`] after
//! its creation time plus its [`BUDGET_LABEL`] (by then a helper has given up on its own:
//! its node-local process stops at the run's deadline). Objects without that label are left
//! alone unless `all`. A live session's helper and envelope go sooner: once its relay is
//! gone from the engine that ran it (see [`SESSION_LABEL`]) — judged only by `gc` on that
//! engine, which alone can see the relay.
//!
//! The node-side program's configs (see [`crate::helper::configs`]) are kept on purpose: `gc`
//! removes those of other builds than the running one, `all` removes them all; a config
//! that a helper still mounts stays (the engine refuses), and is reported as kept.

use crate::engine::{ApiError, ServiceInfo, SwarmApi};
use crate::helper::NODE_SOCKET;
use crate::model::labels::HELPER_LABEL;
use crate::model::labels::{
    BUDGET_LABEL, ENVELOPE_KIND, HELPER_KIND, NETWORK_KIND, RELAY_KIND, RELAY_NODE_LABEL,
    SESSION_LABEL,
};
use crate::model::node_program::{BUILD_LABEL, CONFIG_KIND};
use crate::session::SESSION_NETWORK;

/// One helper service, envelope secret or program config `gc` removed (or would remove,
/// or tried to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// "service", "secret" or "config".
    pub kind: &'static str,
    pub name: String,
    pub id: String,
    pub why: Why,
    /// `None` on a dry run.
    pub removed: Option<Result<(), Kept>>,
}

/// Why `gc` took an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Stale since this many seconds.
    Stale(u64),
    /// `all` was asked for.
    All,
    /// A config of another build of the node-side program.
    OtherBuild,
    /// A live session's helper or envelope whose relay is gone: the session is over.
    SessionOver,
}

/// Why an object was not removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A config still mounted by a helper: not a failure.
    InUse,
    Failed(String),
}

/// How long after its budget a helper counts as stale. The client that made it waits up to
/// `run::REPORT_GRACE` past the deadline for the helper's report, then removes it; gc must
/// not pull it away under it.
pub const GRACE_SECS: u64 = 15;
/// A session's network is judged by its relay only once it is this old: a session makes
/// its network a moment before its relay.
const NETWORK_GRACE_SECS: u64 = 60;

#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Also what is still at work, and the running build's program configs.
    pub all: bool,
    /// List, remove nothing.
    pub dry_run: bool,
    /// The digest of the running build's node-side program, whose configs are kept.
    pub keep_build: Option<String>,
}

/// A helper service, by everything swarm-exec gives one.
fn is_helper(s: &ServiceInfo) -> bool {
    named(&s.name, "swarm-exec-")
        && label(s, HELPER_LABEL) == Some(HELPER_KIND)
        // Zero-install helpers start with the loader's argument.
        && s.args.iter().take(2).any(|a| a == swarm_exec_proto::args::NODE_EXEC)
        && s.binds.iter().any(|b| b == NODE_SOCKET)
}

/// A run's envelope secret (or the stdin secret of earlier versions).
fn is_envelope(s: &ServiceInfo) -> bool {
    (named(&s.name, "swarm-exec-run-") && label(s, HELPER_LABEL) == Some(ENVELOPE_KIND))
        || (named(&s.name, "swarm-exec-stdin-") && label(s, HELPER_LABEL) == Some("stdin"))
}

/// A config of the node-side program: `swarm-exec-node-<12 hex>-<load or a number>`.
fn is_program_config(s: &ServiceInfo) -> bool {
    let part = s
        .name
        .strip_prefix("swarm-exec-node-")
        .and_then(|rest| rest.split_at_checked(12))
        .and_then(|(id, rest)| Some((id, rest.strip_prefix('-')?)));
    part.is_some_and(|(id, index)| {
        is_hex12(id)
            && (index == "load"
                || index == "index"
                || (!index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())))
    }) && label(s, HELPER_LABEL) == Some(CONFIG_KIND)
        && label(s, BUILD_LABEL)
            .is_some_and(|b| b.as_bytes().get(..12) == Some(&s.name.as_bytes()[16..28]))
}

/// The live sessions whose relays run on the engine `gc` talks to.
struct LiveSessions {
    /// That engine's swarm node (`None`: not in a swarm, so no session can be judged).
    node: Option<String>,
    /// The tags of the relays there, running or not (a relay removes itself as it ends).
    tags: std::collections::HashSet<String>,
}

impl LiveSessions {
    async fn on<A: SwarmApi>(api: &A) -> Result<LiveSessions, ApiError> {
        let node = api.own_node_id().await?;
        let relays = api
            .list_containers(&format!("{HELPER_LABEL}={RELAY_KIND}"))
            .await?;
        let tags = relays
            .iter()
            .flat_map(|c| &c.names)
            .filter_map(|n| n.trim_start_matches('/').strip_prefix("swarm-exec-relay-"))
            .map(str::to_owned)
            .collect();
        Ok(LiveSessions { node, tags })
    }

    /// Whether `s` belongs to a session whose relay ran on this engine and is gone.
    fn over(&self, s: &ServiceInfo) -> bool {
        self.over_at(label(s, SESSION_LABEL), label(s, RELAY_NODE_LABEL))
    }

    /// Whether session `tag`, whose relay ran on `node`, had it on this engine and it is gone.
    fn over_at(&self, tag: Option<&str>, node: Option<&str>) -> bool {
        let (Some(tag), Some(node)) = (tag, node) else {
            return false;
        };
        !node.is_empty() && self.node.as_deref() == Some(node) && !self.tags.contains(tag)
    }
}

/// `prefix` and then exactly 12 lowercase hex digits.
fn named(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(is_hex12)
}

fn is_hex12(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn label<'a>(s: &'a ServiceInfo, key: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Removes stale helpers and envelopes (or all of them); returns the ones it found, in
/// name order, services first.
pub async fn gc<A: SwarmApi>(api: &A, opts: GcOptions) -> Result<Vec<Collected>, ApiError> {
    let now = api.engine_time().await?;
    // Services first: a secret cannot go while a helper still mounts it.
    let mut services = api.list_services(HELPER_LABEL).await?;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut secrets = api.list_secrets(HELPER_LABEL).await?;
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    // Listed after the helpers and envelopes, each of which is made after its relay: a
    // session whose relay is not in this list had its relay when its objects were made.
    let sessions = LiveSessions::on(api).await?;
    // Some(why) when to be removed.
    let due = |kind: &str, s: &ServiceInfo| -> Option<Why> {
        if kind == "config" {
            return match label(s, BUILD_LABEL) {
                _ if opts.all => Some(Why::All),
                b if b != opts.keep_build.as_deref() => Some(Why::OtherBuild),
                _ => None,
            };
        }
        let budget = label(s, BUDGET_LABEL).and_then(|b| b.parse::<u64>().ok());
        let end = s.created_at.zip(budget).map(|(c, b)| c + b + GRACE_SECS);
        match end {
            Some(end) if end <= now => Some(Why::Stale(now - end)),
            _ if sessions.over(s) => Some(Why::SessionOver),
            _ if opts.all => Some(Why::All),
            _ => None,
        }
    };
    let mut found = Vec::new();
    // Configs last: the helpers that mount them go first.
    let mut configs = api.list_configs(HELPER_LABEL).await?;
    // A build's index (its loader; older builds had a separate `-index`) before its
    // parts: a run never reads an index whose parts are gone.
    configs.sort_by_key(|c| {
        let index = c.name.ends_with("-load") || c.name.ends_with("-index");
        (!index, c.name.clone())
    });
    let candidates = services
        .into_iter()
        .filter(is_helper)
        .map(|s| ("service", s))
        .chain(
            secrets
                .into_iter()
                .filter(is_envelope)
                .map(|s| ("secret", s)),
        )
        .chain(
            configs
                .into_iter()
                .filter(is_program_config)
                .map(|s| ("config", s)),
        );
    for (kind, s) in candidates {
        let Some(why) = due(kind, &s) else {
            continue;
        };
        let removed = if opts.dry_run {
            None
        } else {
            let r = match kind {
                "service" => api.remove_service(&s.id).await,
                "secret" => api.remove_secret(&s.id).await,
                _ => api.remove_config(&s.id).await,
            };
            Some(r.map_err(|e| match e {
                // The engine's answer for a config that a service still mounts.
                ApiError::Server {
                    status: 400,
                    message,
                } if message.contains("in use") => Kept::InUse,
                e => Kept::Failed(e.to_string()),
            }))
        };
        found.push(Collected {
            kind,
            name: s.name,
            id: s.id,
            why,
            removed,
        });
    }
    Ok(found)
}

/// `gc` of what sessions leave on the engine swarm-exec talks to: relay containers whose
/// budget has passed (a relay normally removes itself), relay images of other builds than
/// `keep_build`, sessions' own networks whose relay (on this engine) is gone, and with
/// `all` every relay image and session network (refused by the managers while a session
/// uses it: kept). Only objects with swarm-exec's name pattern and label value are taken.
pub async fn gc_sessions<A: SwarmApi>(
    api: &A,
    all: bool,
    dry_run: bool,
    keep_build: Option<&str>,
) -> Result<Vec<Collected>, ApiError> {
    let label = format!("{HELPER_LABEL}={RELAY_KIND}");
    let now = api.engine_time().await?;
    let mut found = Vec::new();
    for c in api.list_containers(&label).await? {
        let Some(name) = c.names.first().cloned() else {
            continue;
        };
        if c.id.is_empty() || !name.starts_with("swarm-exec-relay-") {
            continue;
        }
        let budget = c.label(BUDGET_LABEL).and_then(|b| b.parse::<u64>().ok());
        let stale = budget
            .map(|b| c.created + b + GRACE_SECS)
            .filter(|&end| now > end)
            .map(|end| Why::Stale(now - end));
        if let Some(why) = stale.or(all.then_some(Why::All)) {
            found.push(("container", name, c.id, why));
        }
    }
    for i in api.list_images(&label).await? {
        let Some(tag) = i
            .names
            .iter()
            .find(|t| t.starts_with("swarm-exec-relay:"))
            .cloned()
        else {
            // Two sessions that imported the relay image at once leave the first import
            // untagged: with --all, it goes by its id (refused while a relay runs it).
            let untagged = i.names.iter().all(|t| t == "<none>:<none>");
            if all && untagged && i.label(BUILD_LABEL).is_some() {
                found.push((
                    "image",
                    "swarm-exec-relay (untagged)".into(),
                    i.id,
                    Why::All,
                ));
            }
            continue;
        };
        let build = i.label(BUILD_LABEL);
        let why = if all {
            Why::All
        } else if build.is_some() && build != keep_build {
            Why::OtherBuild
        } else {
            continue;
        };
        found.push(("image", tag.clone(), tag, why));
    }
    found.extend(session_networks(api, all, now).await?);
    let mut collected = Vec::new();
    for (kind, name, id, why) in found {
        let removed = if dry_run {
            None
        } else {
            let r = match kind {
                "container" => api.remove_container(&id).await,
                "image" => api.remove_image(&id).await,
                _ => api.remove_network(&id).await,
            };
            Some(match r {
                Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
                // A network with a session on it, an image a relay runs.
                Err(ApiError::Server { status: 409, .. }) if kind != "container" => {
                    Err(Kept::InUse)
                }
                Err(e) => Err(Kept::Failed(e.to_string())),
            })
        };
        collected.push(Collected {
            kind,
            name,
            id,
            why,
            removed,
        });
    }
    Ok(collected)
}

/// Sessions' own networks once their session is over: their relay, on this engine, gone
/// (listed after the relays, and a network a minute old had its relay by then). The
/// network sessions shared before, with `all`. The managers refuse a network in use.
async fn session_networks<A: SwarmApi>(
    api: &A,
    all: bool,
    now: u64,
) -> Result<Vec<(&'static str, String, String, Why)>, ApiError> {
    let live = LiveSessions::on(api).await?;
    let mut found = Vec::new();
    for n in api
        .list_networks(&format!("{HELPER_LABEL}={NETWORK_KIND}"))
        .await?
    {
        let Some(name) = n.names.first().cloned() else {
            continue;
        };
        let own = name
            .strip_prefix(SESSION_NETWORK)
            .and_then(|t| t.strip_prefix('-'))
            .is_some_and(|tag| n.label(SESSION_LABEL) == Some(tag));
        if n.id.is_empty() || !(own || name == SESSION_NETWORK) {
            continue;
        }
        let over = own
            && now > n.created + NETWORK_GRACE_SECS
            && live.over_at(n.label(SESSION_LABEL), n.label(RELAY_NODE_LABEL));
        let why = if all {
            Why::All
        } else if over {
            Why::SessionOver
        } else {
            continue;
        };
        found.push(("network", name, n.id, why));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::fake::Fake;

    const CREATED: u64 = 1_800_000_000;

    fn helper(name: &str, budget: Option<u64>) -> ServiceInfo {
        let mut labels = vec![(HELPER_LABEL.to_owned(), HELPER_KIND.to_owned())];
        labels.extend(budget.map(|b| (BUDGET_LABEL.to_owned(), b.to_string())));
        ServiceInfo {
            id: format!("id-{name}"),
            name: name.to_owned(),
            labels,
            created_at: Some(CREATED),
            args: vec!["node-exec".into(), "--container".into()],
            binds: vec![NODE_SOCKET.into()],
            ..Default::default()
        }
    }

    fn envelope(name: &str, kind: &str) -> ServiceInfo {
        ServiceInfo {
            id: format!("id-{name}"),
            name: name.to_owned(),
            labels: vec![
                (HELPER_LABEL.to_owned(), kind.to_owned()),
                (BUDGET_LABEL.to_owned(), "60".to_owned()),
            ],
            created_at: Some(CREATED),
            ..Default::default()
        }
    }

    fn fake(now: u64) -> Arc<Fake> {
        let f = Fake::default();
        *f.engine_time.lock().unwrap() = now;
        let mut user = helper("swarm-exec-userservice", Some(60));
        user.labels[0].1 = "allowed".into();
        let mut labelled_only = helper("swarm-exec-0123456789ab", Some(60));
        labelled_only.labels[0].1 = "allowed".into();
        let mut no_socket = helper("swarm-exec-aaaaaaaaaaaa", Some(60));
        no_socket.binds.clear();
        let mut other_command = helper("swarm-exec-bbbbbbbbbbbb", Some(60));
        other_command.args = vec!["nginx".into()];
        *f.listed_services.lock().unwrap() = vec![
            helper("swarm-exec-ffffffffffff", Some(60)),
            helper("swarm-exec-eeeeeeeeeeee", None),
            user,
            labelled_only,
            no_socket,
            other_command,
        ];
        *f.listed_secrets.lock().unwrap() = vec![
            envelope("swarm-exec-run-ffffffffffff", ENVELOPE_KIND),
            envelope("swarm-exec-run-userssecret", ENVELOPE_KIND),
            envelope("my-secret", ENVELOPE_KIND),
            envelope("swarm-exec-run-dddddddddddd", "allowed"),
        ];
        let mut users_config = config("swarm-exec-node-aaaaaaaaaaaa-1", OTHER);
        users_config.labels.retain(|(k, _)| k != HELPER_LABEL);
        *f.listed_configs.lock().unwrap() = vec![
            config("swarm-exec-node-aaaaaaaaaaaa-1", OURS),
            config("swarm-exec-node-aaaaaaaaaaaa-load", OURS),
            config("swarm-exec-node-bbbbbbbbbbbb-1", OTHER),
            config("swarm-exec-node-bbbbbbbbbbbb-x", OTHER),
            config("swarm-exec-node-cccccccccccc-1", OTHER),
            users_config,
        ];
        Arc::new(f)
    }

    const OURS: &str = "aaaaaaaaaaaa0000";
    const OTHER: &str = "bbbbbbbbbbbb0000";

    fn config(name: &str, build: &str) -> ServiceInfo {
        ServiceInfo {
            id: format!("id-{name}"),
            name: name.to_owned(),
            labels: vec![
                (HELPER_LABEL.to_owned(), CONFIG_KIND.to_owned()),
                (BUILD_LABEL.to_owned(), build.to_owned()),
            ],
            created_at: Some(CREATED),
            ..Default::default()
        }
    }

    fn keep_ours() -> GcOptions {
        GcOptions {
            keep_build: Some(OURS.into()),
            ..Default::default()
        }
    }

    fn names(c: &[Collected]) -> Vec<&str> {
        c.iter().map(|c| c.name.as_str()).collect()
    }

    #[tokio::test]
    async fn removes_only_what_swarm_exec_made_once_stale_on_the_managers_clock() {
        // 60 s budget + 15 s grace after creation, by the engine's clock.
        let f = fake(CREATED + 74);
        let c = gc(&f, keep_ours()).await.unwrap();
        // Only the other build's config (the one named and labelled as such).
        assert_eq!(names(&c), ["swarm-exec-node-bbbbbbbbbbbb-1"]);
        assert_eq!(c[0].why, Why::OtherBuild);
        let f = fake(CREATED + 75);
        let c = gc(&f, keep_ours()).await.unwrap();
        assert_eq!(
            names(&c),
            [
                "swarm-exec-ffffffffffff",
                "swarm-exec-run-ffffffffffff",
                "swarm-exec-node-bbbbbbbbbbbb-1"
            ]
        );
        assert_eq!(
            f.removal_order(),
            [
                "id-swarm-exec-ffffffffffff",
                "id-swarm-exec-run-ffffffffffff",
                "id-swarm-exec-node-bbbbbbbbbbbb-1"
            ]
        );
        assert!(c.iter().all(|c| c.removed == Some(Ok(()))));
    }

    #[tokio::test]
    async fn all_takes_helpers_at_work_and_without_a_budget_but_nothing_of_the_users() {
        let f = fake(CREATED);
        let c = gc(
            &f,
            GcOptions {
                all: true,
                ..keep_ours()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            names(&c),
            [
                "swarm-exec-eeeeeeeeeeee",
                "swarm-exec-ffffffffffff",
                "swarm-exec-run-ffffffffffff",
                // A build's loader (its index) before its parts.
                "swarm-exec-node-aaaaaaaaaaaa-load",
                "swarm-exec-node-aaaaaaaaaaaa-1",
                "swarm-exec-node-bbbbbbbbbbbb-1"
            ]
        );
        assert!(c.iter().all(|c| c.why == Why::All));
    }

    #[tokio::test]
    async fn a_dry_run_removes_nothing() {
        let f = fake(CREATED + 1000);
        let c = gc(
            &f,
            GcOptions {
                all: true,
                dry_run: true,
                keep_build: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(c.len(), 6);
        assert!(c.iter().all(|c| c.removed.is_none()));
        assert!(f.removal_order().is_empty());
    }

    /// A session's helper or envelope: a year's budget, as `-t` gives, made just now.
    fn of_session(mut s: ServiceInfo, tag: &str, relay_node: &str) -> ServiceInfo {
        s.labels.retain(|(k, _)| k != BUDGET_LABEL);
        s.labels.extend([
            (BUDGET_LABEL.to_owned(), (365 * 86_400).to_string()),
            (SESSION_LABEL.to_owned(), tag.to_owned()),
            (RELAY_NODE_LABEL.to_owned(), relay_node.to_owned()),
        ]);
        s
    }

    #[tokio::test]
    async fn a_sessions_helper_and_envelope_go_once_its_relay_is_gone_from_this_engine() {
        let f = Arc::new(Fake::default());
        *f.engine_time.lock().unwrap() = CREATED + 60;
        *f.own_node.lock().unwrap() = Some("manager1".into());
        *f.listed_services.lock().unwrap() = vec![
            of_session(
                helper("swarm-exec-aaaaaaaaaaaa", None),
                "aaaaaaaaaaaa",
                "manager1",
            ),
            of_session(
                helper("swarm-exec-bbbbbbbbbbbb", None),
                "bbbbbbbbbbbb",
                "manager1",
            ),
            // Its relay ran on another manager's engine: not for this gc to judge.
            of_session(
                helper("swarm-exec-cccccccccccc", None),
                "cccccccccccc",
                "manager2",
            ),
        ];
        *f.listed_secrets.lock().unwrap() = vec![
            of_session(
                envelope("swarm-exec-run-111111111111", ENVELOPE_KIND),
                "aaaaaaaaaaaa",
                "manager1",
            ),
            of_session(
                envelope("swarm-exec-run-222222222222", ENVELOPE_KIND),
                "bbbbbbbbbbbb",
                "manager1",
            ),
        ];
        // Session bbbb's relay is still there (running, or exited and not yet removed).
        *f.listed_containers.lock().unwrap() = vec![crate::engine::Listed {
            id: "relay-b".into(),
            names: vec!["swarm-exec-relay-bbbbbbbbbbbb".into()],
            ..Default::default()
        }];
        let c = gc(&f, keep_ours()).await.unwrap();
        assert_eq!(
            names(&c),
            ["swarm-exec-aaaaaaaaaaaa", "swarm-exec-run-111111111111"]
        );
        assert!(c.iter().all(|c| c.why == Why::SessionOver));
        assert!(c.iter().all(|c| c.removed == Some(Ok(()))));

        // Where this engine is not in a swarm, nothing is judged by its relays.
        *f.own_node.lock().unwrap() = None;
        assert!(gc(&f, keep_ours()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_sessions_network_goes_once_its_relay_is_gone_and_it_is_a_minute_old() {
        use crate::engine::Listed;
        let now = CREATED + 1000;
        let f = Arc::new(Fake::default());
        *f.engine_time.lock().unwrap() = now;
        *f.own_node.lock().unwrap() = Some("node-1".into());
        let net = |tag: &str, node: &str, age: u64| Listed {
            id: format!("id-{tag}"),
            names: vec![format!("swarm-exec-session-{tag}")],
            labels: vec![
                (HELPER_LABEL.to_owned(), NETWORK_KIND.to_owned()),
                (SESSION_LABEL.to_owned(), tag.to_owned()),
                (RELAY_NODE_LABEL.to_owned(), node.to_owned()),
            ],
            created: now - age,
        };
        let mut foreign = net("dddddddddddd", "node-1", 600);
        foreign.labels[1].1 = "not-its-name".into();
        let shared = Listed {
            id: "id-shared".into(),
            names: vec![SESSION_NETWORK.to_owned()],
            labels: vec![(HELPER_LABEL.to_owned(), NETWORK_KIND.to_owned())],
            created: now - 600,
        };
        *f.listed_networks.lock().unwrap() = vec![
            // Over: its relay is not on this engine any more.
            net("aaaaaaaaaaaa", "node-1", 600),
            // Its relay still runs.
            net("bbbbbbbbbbbb", "node-1", 600),
            // Too young to judge: its relay may be on its way.
            net("cccccccccccc", "node-1", 30),
            // Its relay was on another manager's engine.
            net("eeeeeeeeeeee", "node-2", 600),
            foreign,
            shared,
        ];
        *f.listed_containers.lock().unwrap() = vec![Listed {
            id: "relay-b".into(),
            names: vec!["swarm-exec-relay-bbbbbbbbbbbb".into()],
            labels: vec![(HELPER_LABEL.to_owned(), RELAY_KIND.to_owned())],
            ..Default::default()
        }];
        let c = gc_sessions(&f, false, false, None).await.unwrap();
        let networks: Vec<(&str, &Why)> = c
            .iter()
            .filter(|c| c.kind == "network")
            .map(|c| (c.name.as_str(), &c.why))
            .collect();
        assert_eq!(
            networks,
            [("swarm-exec-session-aaaaaaaaaaaa", &Why::SessionOver)]
        );
        assert_eq!(*f.networks_removed.lock().unwrap(), ["id-aaaaaaaaaaaa"]);

        // --all: every session network, the one shared before too; never one not ours.
        let c = gc_sessions(&f, true, true, None).await.unwrap();
        let mut names: Vec<&str> = c
            .iter()
            .filter(|c| c.kind == "network")
            .map(|c| c.name.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "swarm-exec-session",
                "swarm-exec-session-aaaaaaaaaaaa",
                "swarm-exec-session-bbbbbbbbbbbb",
                "swarm-exec-session-cccccccccccc",
                "swarm-exec-session-eeeeeeeeeeee",
            ]
        );
    }
}
