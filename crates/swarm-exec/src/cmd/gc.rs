//! `swarm-exec gc`: removes helpers left behind, and says which.

use swarm_exec_core::gc::gc;

use crate::cli::{GcArgs, Global};
use crate::exit::{CliError, Status};

pub async fn run(global: &Global, args: GcArgs) -> Result<Status, CliError> {
    let api = super::connect(global)?;
    let collected = gc(&api, args.all).await.map_err(CliError::Connect)?;
    let mut failed = 0;
    for c in &collected {
        let why = match c.deadline {
            Some(d) if !args.all => format!("deadline {d} passed"),
            Some(_) => "--all".to_owned(),
            None => "no deadline label".to_owned(),
        };
        match &c.removed {
            Ok(()) => println!("removed {} {} ({why})", c.kind, c.name),
            Err(e) => {
                failed += 1;
                eprintln!("swarm-exec: could not remove {}: {e}", c.name);
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} helper(s) could not be removed"
        )));
    }
    Ok(Status::Outcome(swarm_exec_core::Outcome::Exited(0)))
}
