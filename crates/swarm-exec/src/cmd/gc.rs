//! `swarm-exec gc`: removes helpers left behind, and says which.

use swarm_exec_core::gc::{gc, GcOptions};

use crate::cli::{GcArgs, Global};
use crate::cmd::setup::connect;
use crate::exit::{CliError, Status};

pub async fn run(global: &Global, args: GcArgs) -> Result<Status, CliError> {
    let api = connect(global)?;
    let opts = GcOptions {
        all: args.all,
        dry_run: args.dry_run,
    };
    let collected = gc(&api, opts).await.map_err(CliError::Connect)?;
    let mut failed = 0;
    for c in &collected {
        let why = match c.stale_for {
            Some(s) => format!("stale for {s} s"),
            None => "--all".to_owned(),
        };
        match &c.removed {
            None => println!("would remove {} {} ({why})", c.kind, c.name),
            Some(Ok(())) => println!("removed {} {} ({why})", c.kind, c.name),
            Some(Err(e)) => {
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
    Ok(Status::Done)
}
