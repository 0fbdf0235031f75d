//! How the process was invoked, read from its arguments: as the docker CLI plugin (its
//! metadata, or its flags in front of ours: `docker_plugin.rs`), by the Skopos plugin
//! protocol (`skopos.rs`), or with swarm-exec's own command line (`cli.rs`).
//!
//! Help, the version, the plugin metadata and usage errors are printed here, and the
//! process is to end at once: [`Early`] says why, and `exit.rs` gives each its code.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::docker_plugin::{cli_plugin_args, cli_plugin_name, CLI_PLUGIN_METADATA};
use crate::message::clip;
use crate::skopos::{plugin_args, PluginArgs};

/// How the process was invoked: swarm-exec's own command line, or the Skopos plugin protocol.
#[derive(Debug)]
pub enum Invocation {
    Cli(Box<Cli>),
    Plugin(PluginArgs),
}

/// Why the process ends before running anything; what was to be said is already printed.
#[derive(Debug)]
pub enum Early {
    /// What was asked for: help, the version or the docker CLI plugin metadata.
    Printed,
    /// A usage error of swarm-exec's command line, also as a docker CLI plugin.
    Usage,
    /// A usage error of the Skopos plugin protocol.
    PluginUsage,
}

/// Parses the process's arguments. `Err`: help, version or a usage error was printed, and
/// the process is to end (`exit::early`).
pub fn parse() -> Result<Invocation, Early> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == "docker-cli-plugin-metadata")
    {
        println!("{CLI_PLUGIN_METADATA}");
        return Err(Early::Printed);
    }
    let mut plugin_global = None;
    if let Some(name) = cli_plugin_name(&args) {
        match cli_plugin_args(&name, &args) {
            Ok((global, rest)) => {
                plugin_global = Some((global, name));
                args = rest;
            }
            Err(e) => {
                eprintln!("docker {name}: {e}");
                return Err(Early::Usage);
            }
        }
    }
    match plugin_args(args.get(1..).unwrap_or_default()) {
        Some(Ok(p)) => return Ok(Invocation::Plugin(p)),
        Some(Err(e)) => {
            eprintln!("swarm-exec: {e}");
            return Err(Early::PluginUsage);
        }
        None => {}
    }
    let mut cmd = Cli::command();
    if let Some((_, name)) = &plugin_global {
        cmd = cmd.bin_name(format!("docker {name}"));
    }
    let parsed = cmd
        .try_get_matches_from(args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", clip(e.render().to_string().trim_end()));
            return Err(Early::Usage);
        }
        Err(e) => {
            let _ = e.print();
            return Err(Early::Printed);
        }
    };
    if let Some((g, _)) = plugin_global {
        cli.global.host = cli.global.host.or(g.host);
        cli.global.context = cli.global.context.or(g.context);
        cli.global.config = g.config;
        cli.global.cert_path = g.cert_path;
        cli.global.tls_verify = g.tls_verify;
    }
    Ok(Invocation::Cli(Box::new(cli)))
}
