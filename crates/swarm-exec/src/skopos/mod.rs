//! The Skopos plugin protocol's command line, as the reference plugin's helper reads it:
//! `swarm-exec [--debug] [--compact|-c] [--stdout FILE] [--stderr FILE] <action> [JSON...]`,
//! told apart from swarm-exec's own command line (`cli.rs`). Running the action is
//! `cmd/plugin.rs`.

pub mod inst_exec;

use std::ffi::OsString;

/// `swarm-exec [--debug] [--compact|-c] [--stdout FILE] [--stderr FILE] <action> [JSON...]`,
/// parsed as the reference plugin's helper parses it: the flags may appear anywhere.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PluginArgs {
    pub debug: bool,
    pub compact: bool,
    pub stdout: Option<OsString>,
    pub stderr: Option<OsString>,
    pub action: String,
    /// Joined with spaces, these are the input JSON; without them it is read from stdin.
    pub input: Vec<OsString>,
}

/// Subcommand names and flags that mean swarm-exec's own command line. Plugin actions are
/// Skopos action names (`inst_exec`): a word with a `-` (a mistyped `task-exce`) is a
/// command line too, so that it gets a usage error (125), not "unsupported action" (2).
fn is_cli_word(arg: &str) -> bool {
    arg.contains('-') || is_cli_name(arg)
}

/// A subcommand of swarm-exec's own command line (taken from its definition, so that a new
/// one is never read as a plugin action).
fn is_cli_name(arg: &str) -> bool {
    use clap::CommandFactory;
    arg == "help"
        || crate::cli::Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == arg)
}

/// The plugin protocol's reading of `args` (without argv[0]), unless they are a
/// swarm-exec command line. `Err` is a usage error of the plugin protocol.
pub fn plugin_args(args: &[OsString]) -> Option<Result<PluginArgs, String>> {
    let mut p = PluginArgs::default();
    let mut action = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        let mut file_flag =
            |name: &str, slot: &mut Option<OsString>| -> Option<Result<(), String>> {
                if text == name {
                    Some(match it.next() {
                        Some(v) => {
                            *slot = Some(v.clone());
                            Ok(())
                        }
                        None => Err(format!("{name} needs a file name")),
                    })
                } else {
                    text.strip_prefix(&format!("{name}=")).map(|v| {
                        *slot = Some(OsString::from(v));
                        Ok(())
                    })
                }
            };
        if let Some(r) = file_flag("--stdout", &mut p.stdout) {
            if let Err(e) = r {
                return Some(Err(e));
            }
            continue;
        }
        if let Some(r) = file_flag("--stderr", &mut p.stderr) {
            if let Err(e) = r {
                return Some(Err(e));
            }
            continue;
        }
        match text.as_ref() {
            "--debug" => p.debug = true,
            "--compact" | "-c" => p.compact = true,
            _ if action.is_none() => {
                if is_cli_word(&text) {
                    return None;
                }
                action = Some(text.into_owned());
            }
            _ => p.input.push(arg.clone()),
        }
    }
    p.action = action?;
    Some(Ok(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(args: &[&str]) -> Option<Result<PluginArgs, String>> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        plugin_args(&args)
    }

    #[test]
    fn plugin_protocol_is_told_apart_from_the_cli() {
        assert_eq!(plugin(&["task-exec", "web.1", "true"]), None);
        assert_eq!(plugin(&["exec", "abc", "true"]), None);
        assert_eq!(plugin(&["--help"]), None);
        assert_eq!(plugin(&[]), None);
        assert_eq!(plugin(&["--compact"]), None);
        let p = plugin(&[
            "--debug",
            "-c",
            "--stdout",
            "o.txt",
            "inst_exec",
            "{\"a\":",
            "1}",
            "--stderr=e.txt",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            PluginArgs {
                debug: true,
                compact: true,
                stdout: Some("o.txt".into()),
                stderr: Some("e.txt".into()),
                action: "inst_exec".into(),
                input: vec!["{\"a\":".into(), "1}".into()],
            }
        );
        assert!(plugin(&["inst_exec", "--stdout"]).unwrap().is_err());
    }
}
