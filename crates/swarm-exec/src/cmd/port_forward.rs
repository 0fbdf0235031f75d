//! `swarm-exec port-forward`: the listeners here; the streams and the session are core's.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use swarm_exec_core::forward::{port_forward, ForwardRequest};
use swarm_exec_core::live::find_route;
use swarm_exec_core::Outcome;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cli::{Global, PortForwardArgs};
use crate::cmd::setup::connect;
use crate::cmd::setup::interrupted;
use crate::exit::{CliError, Status};
use crate::output::StdSink;

pub async fn run(global: &Global, args: PortForwardArgs) -> Result<Status, CliError> {
    let addresses = addresses(&args.address)?;
    let mut remote: Vec<u16> = args.ports.iter().map(|&(_, r)| r).collect();
    remote.sort_unstable();
    remote.dedup();
    // Every listener first: a port taken here is an error before anything is made there.
    let mut listeners = Vec::new();
    for &(local, to) in &args.ports {
        for &ip in &addresses {
            let at = SocketAddr::new(ip, local);
            let l = TcpListener::bind(at)
                .await
                .map_err(|e| CliError::Failed(format!("cannot listen on {at}: {e}")))?;
            listeners.push((l, to));
        }
    }
    let interrupted = interrupted().map_err(CliError::Runtime)?;
    tokio::pin!(interrupted);
    let api = connect(global)?;
    let helper = crate::node_program::helper_source(
        std::env::var("SWARM_EXEC_IMAGE")
            .ok()
            .filter(|i| !i.is_empty()),
    );
    let plan = match find_route(&api, &args.task, &helper, true, &mut interrupted).await? {
        Ok(plan) => plan,
        Err(i) => return Ok(Status::Outcome(Outcome::Interrupted(i))),
    };
    // Printed once the task is found; connections made before the session is up wait.
    let (tx, accepted) = mpsc::channel(64);
    let mut shown = String::new();
    for (l, to) in listeners {
        let at = l.local_addr().map_err(CliError::Runtime)?;
        shown.push_str(&format!("Forwarding from {at} -> {to}\n"));
        let tx = tx.clone();
        tokio::spawn(async move {
            // A failed accept (out of descriptors) is not the end of the listener.
            loop {
                match l.accept().await {
                    Ok((conn, _)) => {
                        if tx.send((conn, to)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
    }
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(shown.as_bytes())
        .and_then(|()| stdout.flush());
    let req = ForwardRequest {
        plan: &plan,
        helper: &helper,
        ports: remote,
        network: args.network.as_deref(),
    };
    let mut sink = StdSink::new(global.quiet);
    let outcome = port_forward(&api, req, accepted, &mut sink, interrupted).await?;
    Ok(Status::Outcome(outcome))
}

/// `--address`'s list: IPs, or `localhost` (both loopbacks).
fn addresses(given: &[String]) -> Result<Vec<IpAddr>, CliError> {
    let mut out = Vec::new();
    for a in given {
        match a.as_str() {
            "localhost" => out.extend([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]),
            ip => out.push(ip.parse().map_err(|_| {
                CliError::Usage(format!(
                    "invalid --address {ip:?}: an IP address, or localhost"
                ))
            })?),
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|ip| seen.insert(*ip));
    Ok(out)
}
