//! The docker CLI plugin shim: installed as `docker-swarmexec`, the binary is also
//! `docker swarmexec`. The docker CLI runs it with its own global flags first; those that
//! choose the engine are kept as the endpoint flags of [`Global`] (never put in the
//! process's environment), and the rest of the command line is swarm-exec's own.

use std::ffi::OsString;

use crate::cli::Global;

/// The Docker CLI plugin's metadata (`docker-cli-plugin-metadata`), so that the binary
/// installed as `docker-swarmexec` becomes `docker swarmexec`. (Plugin names must match
/// `^[a-z][a-z0-9]*$`: the docker CLI refuses `swarm-exec`.)
pub const CLI_PLUGIN_METADATA: &str = concat!(
    r#"{"SchemaVersion":"0.1.0","Vendor":"swarm-exec","Version":""#,
    env!("CARGO_PKG_VERSION"),
    r#"","ShortDescription":"Run commands in Swarm service tasks, on any node","URL":"https://github.com/swarm-exec/swarm-exec"}"#
);

/// The plugin name when run by the docker CLI as a plugin (installed as `docker-NAME`, or
/// with the variable the CLI sets for its plugins).
pub fn cli_plugin_name(args: &[OsString]) -> Option<String> {
    let file = args
        .first()
        .and_then(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    match file.strip_prefix("docker-") {
        Some(name) => Some(name.to_owned()),
        None => std::env::var_os("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND")
            .map(|_| "swarmexec".to_owned()),
    }
}

/// The docker CLI runs a plugin with all of its own arguments: its global flags, then the
/// plugin's name, then ours. The flags that choose the engine are kept; the rest of the
/// docker CLI's global flags are accepted and ignored.
pub fn cli_plugin_args(name: &str, args: &[OsString]) -> Result<(Global, Vec<OsString>), String> {
    let mut global = Global::default();
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let a = arg.to_string_lossy();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.to_string(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            f if f == name => {
                let mut rest = vec![OsString::from(format!("docker {name}"))];
                rest.extend(it.cloned());
                return Ok((global, rest));
            }
            "-c" | "--context" => global.context = Some(value()?),
            "-H" | "--host" => global.host = Some(value()?),
            "--config" => global.config = Some(value()?),
            "--tlscacert" | "--tlskey" | "--log-level" | "-l" => {
                value()?;
            }
            "--tlscert" => {
                let cert = value()?;
                if let Some(dir) = std::path::Path::new(&cert).parent() {
                    global.cert_path = Some(dir.to_string_lossy().into_owned());
                }
            }
            "--tls" | "--tlsverify" => global.tls_verify = true,
            "-D" | "--debug" => {}
            other => return Err(format!("unexpected argument {other:?} before {name}")),
        }
    }
    Err(format!(
        "run as a docker CLI plugin, but without its name: docker {name} ..."
    ))
}
