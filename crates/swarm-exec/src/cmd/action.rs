//! `swarm-exec action`: a service's named actions (its `swarm-exec.action.NAME` labels),
//! listed, or one run by name through task-exec's or (`--all`) service-exec's paths.

use std::io::Write;

use swarm_exec_core::lookup;
use swarm_exec_core::model::action::{self, is_action_name};
use swarm_exec_core::model::target::{check_service_name, TaskRef};

use crate::cli::{ActionArgs, Global, ServiceExecArgs, TaskExecArgs};
use crate::cmd::setup::connect;
use crate::cmd::task_exec::utf8_arg;
use crate::exit::{CliError, Status};

pub async fn run(global: &Global, mut args: ActionArgs) -> Result<Status, CliError> {
    // Everything the user typed is checked before the engine is asked anything.
    check_service_name(&args.service).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(name) = args.name.as_deref().filter(|n| !is_action_name(n)) {
        return Err(CliError::Usage(
            action::ActionError::BadName(name.to_owned()).to_string(),
        ));
    }
    let extra: Vec<String> = std::mem::take(&mut args.args)
        .into_iter()
        .map(utf8_arg)
        .collect::<Result<_, _>>()?;
    let api = connect(global)?;
    let labels = lookup::service(&api, &args.service)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .labels;
    let Some(name) = args.name.clone() else {
        if !extra.is_empty() {
            return Err(CliError::Usage(
                "arguments given without an action's name".into(),
            ));
        }
        return list(&args.service, &labels, args.format == "json");
    };
    let command = action::command(&args.service, &labels, &name, &extra)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let command = command.into_iter().map(Into::into).collect();
    if args.all {
        let run = ServiceExecArgs {
            exec: args.exec,
            stack: None,
            filter: args.filter,
            parallel: args.parallel,
            delay: args.delay,
            fail_fast: args.fail_fast,
            wait_ready: args.wait_ready,
            no_prefix: args.no_prefix,
            format: args.format,
            max_output: args.max_output,
            args: std::iter::once(args.service.into())
                .chain(command)
                .collect(),
        };
        return crate::cmd::service_exec::run(global, run).await;
    }
    let run = TaskExecArgs {
        exec: args.exec,
        tty: false,
        network: None,
        via: "log".to_owned(),
        format: args.format,
        max_output: args.max_output,
        wait_ready: args.wait_ready,
        persist: args.persist,
        task: TaskRef::Service(args.service),
        command,
    };
    crate::cmd::task_exec::run(global, run).await
}

/// The declared actions, one per line (`NAME  COMMAND`), or as one JSON array.
fn list(service: &str, labels: &[(String, String)], json: bool) -> Result<Status, CliError> {
    let actions = action::declared(labels);
    let mut out = std::io::stdout().lock();
    let written = if json {
        let items: Vec<serde_json::Value> = actions
            .iter()
            .map(|a| match &a.argv {
                Ok(argv) => serde_json::json!({ "name": a.name, "command": argv }),
                Err(why) => serde_json::json!({ "name": a.name, "error": why }),
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items))
    } else if actions.is_empty() {
        drop(out);
        eprintln!(
            "swarm-exec: service {service} declares no actions (labels {}NAME)",
            action::ACTION_LABEL_PREFIX
        );
        return Ok(Status::Done);
    } else {
        let width = actions.iter().map(|a| a.name.len()).max().unwrap_or(0);
        let mut w = Ok(());
        for a in &actions {
            let name = swarm_exec_core::escape::escape_control(&a.name);
            let text = a.to_string();
            let text = swarm_exec_core::escape::escape_control(&text);
            w = w.and_then(|()| writeln!(out, "{name:width$}  {text}"));
        }
        w
    };
    crate::output::note(written.and_then(|()| out.flush()));
    Ok(Status::Done)
}
