//! What the subcommands set up before their work: the connection to the engine, the async
//! runtime, the tracing of API steps.

use swarm_exec_core::connect::{self, EndpointFlags};
use swarm_exec_core::{BollardApi, Interrupt};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::Global;
use crate::exit::CliError;

/// The engine the flags and environment name (see [`Global`]).
pub fn connect(global: &Global) -> Result<BollardApi, CliError> {
    let endpoint = endpoint(global)?;
    tracing::debug!(host = %endpoint.host, source = %endpoint.source, "engine");
    BollardApi::connect(&endpoint).map_err(CliError::Endpoint)
}

/// Where the flags and environment say the engine is.
pub fn endpoint(global: &Global) -> Result<connect::Endpoint, CliError> {
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
    connect::resolve(&flags, &env).map_err(CliError::Endpoint)
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

/// The most of `SWARM_EXEC_ACTOR` that is taken (a label, not a document).
const ACTOR_MAX: usize = 256;

/// Labels every helper this process makes with who made it, for which subcommand and which
/// named action (see `swarm_exec_core::model::labels::set_origin`): `SWARM_EXEC_ACTOR` when
/// a pipeline sets it, else `user@host` of this client.
pub fn set_origin(command: &str, action: Option<&str>) -> Result<(), CliError> {
    let actor = match std::env::var("SWARM_EXEC_ACTOR") {
        Ok(a) if a.is_empty() || a.len() > ACTOR_MAX || a.chars().any(char::is_control) => {
            return Err(CliError::Usage(format!(
                "SWARM_EXEC_ACTOR must be 1 to {ACTOR_MAX} bytes without control characters"
            )));
        }
        Ok(a) => a,
        Err(_) => format!("{}@{}", user_name(), host_name()),
    };
    swarm_exec_core::model::labels::set_origin(&actor, command, action);
    Ok(())
}

/// The user this process runs as: `USER` (or `LOGNAME`), else its numeric ID.
fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_control))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| unsafe { libc::getuid() }.to_string())
}

/// This machine's host name, or `unknown`.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a buffer of the length given; the name is NUL-terminated when it fits.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match (ok, std::str::from_utf8(&buf[..end])) {
        (true, Ok(name)) if !name.is_empty() => name.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// A future that resolves on the first SIGINT, SIGTERM or SIGHUP; handlers are installed now.
pub fn interrupted() -> std::io::Result<impl std::future::Future<Output = Interrupt>> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => Interrupt::Sigint,
            _ = term.recv() => Interrupt::Sigterm,
            _ = hup.recv() => Interrupt::Sighup,
        }
    })
}
