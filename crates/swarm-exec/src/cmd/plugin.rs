//! The Skopos plugin protocol: `swarm-exec [OPTIONS] <action> [JSON]`.
//!
//! Reads the input object (arguments, else stdin), runs the action, and prints either the
//! input echoed with the results (stdout, exit 0) or one line saying why not (stderr,
//! exit 2). Nothing is written to stdout unless the action succeeded.

use std::fs::File;
use std::io::{self, Read};

use crate::skopos::inst_exec::{finish, inst_exec_args, parse_input, run_inst_exec, PluginError};
use serde_json::{Map, Value};
use swarm_exec_core::model::target::TaskRef;

use crate::cli::Global;
use crate::cmd::setup::interrupted;
use crate::cmd::setup::{connect, init_tracing, runtime};
use crate::exit::Status;
use crate::output::{line, stream, PrefixedSink, Stream};
use crate::skopos::PluginArgs;

/// Where the plugin's stdout and stderr go (`--stdout`/`--stderr` may name files; the same
/// file for both means one file).
struct Streams {
    out: Stream,
    err: Stream,
}

impl Streams {
    fn open(args: &PluginArgs) -> io::Result<Streams> {
        let out = match &args.stdout {
            Some(p) => stream(File::create(p)?),
            None => stream(io::stdout()),
        };
        let err = match &args.stderr {
            Some(p) if Some(p) == args.stdout.as_ref() => out.clone(),
            Some(p) => stream(File::create(p)?),
            None => stream(io::stderr()),
        };
        Ok(Streams { out, err })
    }
}

pub fn run(args: PluginArgs) -> Status {
    let streams = match Streams::open(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Plugin swarm-exec cannot open its output files: {e}");
            return Status::PluginFailed;
        }
    };
    init_tracing(args.debug.then_some("debug"));
    let fail = |msg: &str| {
        line(&streams.err, msg);
        Status::PluginFailed
    };
    let run_action = match args.action.as_str() {
        "inst_exec" => true,
        "preflight" | "postflight" => false,
        other => {
            return fail(&format!(
                "Plugin swarm-exec does not support action {other}"
            ))
        }
    };
    let input = match read_input(&args).and_then(|src| parse_input(&src)) {
        Ok(i) => i,
        Err(e) => return fail(&e.to_string()),
    };
    if run_action {
        if let Err(e) = crate::cmd::setup::set_origin("inst_exec", None) {
            return fail(&e.to_string());
        }
    }
    let output = if run_action {
        match inst_exec(input, &streams) {
            Ok(o) => o,
            Err(PluginError::Interrupted(i)) => {
                line(&streams.err, &PluginError::Interrupted(i).to_string());
                return Status::Outcome(swarm_exec_core::Outcome::Interrupted(i));
            }
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        Map::new()
    };
    let value = Value::Object(output);
    let text = if args.compact {
        serde_json::to_string(&value)
    } else {
        serde_json::to_string_pretty(&value)
    };
    match text {
        Ok(t) => {
            line(&streams.out, &t);
            Status::PluginDone
        }
        Err(e) => fail(&format!(
            "Plugin swarm-exec failed to encode its output: {e}"
        )),
    }
}

fn read_input(args: &PluginArgs) -> Result<String, PluginError> {
    if !args.input.is_empty() {
        let parts: Option<Vec<&str>> = args.input.iter().map(|a| a.to_str()).collect();
        return parts
            .map(|p| p.join(" "))
            .ok_or_else(|| PluginError::Json("the input is not valid UTF-8".into()));
    }
    // A step's input is a few kilobytes; more than this is not one.
    const MAX_INPUT: u64 = 16 << 20;
    let mut src = String::new();
    io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut src)
        .map_err(|e| PluginError::Json(format!("cannot read stdin: {e}")))?;
    if src.len() as u64 > MAX_INPUT {
        return Err(PluginError::Json(format!(
            "the input is larger than {MAX_INPUT} bytes"
        )));
    }
    Ok(src)
}

fn inst_exec(
    input: Map<String, Value>,
    streams: &Streams,
) -> Result<Map<String, Value>, PluginError> {
    let default_helper = crate::node_program::helper_source(
        std::env::var("SWARM_EXEC_IMAGE")
            .ok()
            .filter(|i| !i.is_empty()),
    );
    // Everything is validated before anything is created on the swarm.
    let args = inst_exec_args(&input, &default_helper)?;
    if args.tasks.is_empty() {
        return finish(input, &args, &[]);
    }
    let failed = |e: String| PluginError::Failed(e);
    // The protocol has no engine flags: DOCKER_HOST, DOCKER_CONTEXT or the config decide.
    let api = connect(&Global::default()).map_err(|e| failed(e.to_string()))?;
    let rt = runtime().map_err(|e| failed(e.to_string()))?;
    let several = args.tasks.len() > 1;
    let results = rt.block_on(async {
        // Signal handlers need the runtime; they are installed before any helper exists.
        let cancel = interrupted().map_err(|e| failed(e.to_string()))?;
        Ok(run_inst_exec(
            &api,
            &args,
            // The commands' output all goes to stderr: stdout carries only the JSON.
            |_, task| {
                let prefix = several.then(|| prefix(task));
                PrefixedSink::new(streams.err.clone(), streams.err.clone(), prefix)
            },
            cancel,
        )
        .await)
    })?;
    finish(input, &args, &results)
}

fn prefix(task: &TaskRef) -> String {
    match task {
        TaskRef::Id(id) => format!("{} | ", &id[..12.min(id.len())]),
        other => format!("{other} | "),
    }
}
