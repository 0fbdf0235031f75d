//! The relay container on the engine the client talks to: its image, its spec, and its
//! start (created, attached to, started), once more on a network the engine knew stale.

use std::time::Duration;

use swarm_exec_proto::args::RelayArgs;

use super::error::SessionFailure;
use super::network;
use super::request::{SessionRequest, HELLO_WAIT, START_WAIT};
use super::teardown::{remove_relay, Asked, Made};
use crate::engine::{Attach, ImageImport, SwarmApi};
use crate::helper::secret_labels;
use crate::model::labels::{HELPER_LABEL, RELAY_KIND, TARGET_SERVICE_LABEL, TARGET_TASK_LABEL};
use crate::model::node_program::BUILD_LABEL;
use crate::model::options::HelperSource;
use crate::model::spec::RelaySpec;
use crate::sink::OutputSink;

/// Where the relay listens, in its own network namespace.
pub const RELAY_PORT: u16 = 7373;
/// Where the program is in the imported relay image.
const RELAY_PROGRAM: &str = "/swarm-exec-node";

/// A started relay: its ID, the network it is on, and the client's attach to it.
pub(super) struct Relay {
    pub(super) id: String,
    pub(super) network: String,
    pub(super) attach: Attach,
}

/// The image the relay runs on the manager: `--image`'s (the manager must have it), or one
/// imported from this build's node-side program (once per build).
pub(super) async fn image<A: SwarmApi>(
    api: &A,
    helper: &HelperSource,
) -> Result<String, SessionFailure> {
    let program = match helper {
        HelperSource::Image(image) => {
            return match api.inspect_image(image).await {
                Ok(Some(_)) => Ok(image.clone()),
                _ => Err(SessionFailure::NoRelayImage(image.clone())),
            }
        }
        HelperSource::Embedded(p) => p,
    };
    let build = program.build_id;
    let tag = &build[..12];
    let image = format!("swarm-exec-relay:{tag}");
    if let Ok(Some(_)) = api.inspect_image(&image).await {
        return Ok(image);
    }
    let import = ImageImport {
        repo: "swarm-exec-relay".into(),
        tag: tag.into(),
        changes: vec![
            format!("LABEL {HELPER_LABEL}={RELAY_KIND} {BUILD_LABEL}={build}"),
            format!("ENTRYPOINT [\"{RELAY_PROGRAM}\"]"),
        ],
        tar: swarm_exec_proto::tar::tar_of(RELAY_PROGRAM, (program.program)()),
    };
    api.import_image(import)
        .await
        .map_err(|source| SessionFailure::ImportImage {
            image: image.clone(),
            source,
        })?;
    Ok(image)
}

/// The relay's container: unprivileged, on `network`, labelled like what gc collects.
fn spec(
    req: &SessionRequest<'_>,
    tag: &str,
    image: &str,
    network: &str,
    budget: Duration,
) -> RelaySpec {
    let mut labels: Vec<(String, String)> = secret_labels(budget)
        .into_iter()
        .map(|(k, v)| {
            let v = if k == HELPER_LABEL {
                RELAY_KIND.into()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    labels.push((TARGET_TASK_LABEL.into(), req.task.task_id.clone()));
    labels.push((TARGET_SERVICE_LABEL.into(), req.task.service_name.clone()));
    let args = RelayArgs {
        port: RELAY_PORT,
        wait: START_WAIT + HELLO_WAIT,
    };
    RelaySpec {
        name: format!("swarm-exec-relay-{tag}"),
        image: image.to_owned(),
        args: args.to_args(),
        labels,
        user: "65534:65534".into(),
        network: network.to_owned(),
        memory: 64 << 20,
        nano_cpus: 1_000_000_000,
    }
}

/// Creates (into `made`), attaches to and starts the relay on `network`. A network removed
/// a moment ago can still be known to the manager's own engine, which then cannot attach
/// the relay to the one of that name made since: once more, on the network found again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start<A: SwarmApi, O: OutputSink>(
    api: &A,
    req: &SessionRequest<'_>,
    tag: &str,
    image: &str,
    mut network: String,
    budget: Duration,
    made: &mut Made,
    out: &mut O,
) -> Result<Relay, SessionFailure> {
    let mut again = true;
    loop {
        let spec = spec(req, tag, image, &network, budget);
        match start_once(api, &spec, made).await {
            Err(SessionFailure::StartRelay(e)) if again && network::stale(&e) => {
                again = false;
                if let Some(relay) = made.relay.take() {
                    remove_relay(api, &relay, out).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // The operator's network may have been made again under its name; the
                // session's own is the one it made.
                if let Some(name) = req.network {
                    network = network::ready(api, name, name).await?;
                }
            }
            Ok((id, attach)) => {
                return Ok(Relay {
                    id,
                    network,
                    attach,
                })
            }
            Err(e) => return Err(e),
        }
    }
}

async fn start_once<A: SwarmApi>(
    api: &A,
    spec: &RelaySpec,
    made: &mut Made,
) -> Result<(String, Attach), SessionFailure> {
    let id = made
        .asking(Asked::Relay(spec.name.clone()), api.create_relay(spec))
        .await
        .map_err(SessionFailure::CreateRelay)?;
    made.relay = Some(id.clone());
    let attach = api
        .attach_container(&id)
        .await
        .map_err(SessionFailure::AttachRelay)?;
    api.start_container(&id)
        .await
        .map_err(SessionFailure::StartRelay)?;
    Ok((id, attach))
}
