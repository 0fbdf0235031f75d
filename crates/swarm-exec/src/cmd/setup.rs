//! What the subcommands set up before their work: the connection to the engine, the async
//! runtime, the tracing of API steps.

use swarm_exec_core::connect::{self, EndpointFlags};
use swarm_exec_core::BollardApi;

use crate::cli::Global;
use crate::exit::CliError;

/// The engine the flags and environment name (see [`Global`]).
pub fn connect(global: &Global) -> Result<BollardApi, CliError> {
    let flags = EndpointFlags {
        host: global.host.clone(),
        context: global.context.clone(),
    };
    // The docker CLI's own flags, passed to its plugin, stand for its variables.
    let env = |k: &str| match k {
        "DOCKER_CONFIG" if global.config.is_some() => global.config.clone(),
        "DOCKER_CERT_PATH" if global.cert_path.is_some() => global.cert_path.clone(),
        "DOCKER_TLS_VERIFY" if global.tls_verify => Some("1".to_owned()),
        _ => std::env::var(k).ok(),
    };
    let endpoint = connect::resolve(&flags, &env).map_err(CliError::Endpoint)?;
    tracing::debug!(host = %endpoint.host, source = %endpoint.source, "engine");
    BollardApi::connect(&endpoint).map_err(CliError::Endpoint)
}

/// A runtime for one command: one thread is plenty (the work is waiting on sockets), and it
/// keeps start-up and memory small.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// `SWARM_EXEC_LOG=debug` traces each API step on stderr.
pub fn init_tracing(default: Option<&str>) {
    if let Some(filter) = std::env::var("SWARM_EXEC_LOG")
        .ok()
        .or(default.map(str::to_owned))
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            // Colours only for a person at a terminal: a log piped to a file or a test stays
            // plain text.
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_target(false)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init();
    }
}
