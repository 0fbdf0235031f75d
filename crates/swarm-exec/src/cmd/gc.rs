//! `swarm-exec gc`: removes helpers left behind, and says which.

use swarm_exec_core::gc::{gc, GcOptions, Kept, Why};

use crate::cli::{GcArgs, Global};
use crate::cmd::setup::connect;
use crate::exit::{CliError, Status};

pub async fn run(global: &Global, args: GcArgs) -> Result<Status, CliError> {
    let api = connect(global)?;
    let opts = GcOptions {
        all: args.all,
        dry_run: args.dry_run,
        keep_build: Some(crate::node_program::NODE_PROGRAM.build_id()),
    };
    let keep = opts.keep_build.clone();
    let mut collected = gc(&api, opts).await.map_err(CliError::Connect)?;
    // What live sessions leave on this engine: relay containers and images, the overlay.
    collected.extend(
        swarm_exec_core::gc::gc_sessions(&api, args.all, args.dry_run, keep.as_deref())
            .await
            .map_err(CliError::Connect)?,
    );
    let mut failed = 0;
    for c in &collected {
        let why = match c.why {
            Why::Stale(s) => format!("stale for {s} s"),
            Why::All => "--all".to_owned(),
            Why::OtherBuild => "another build's".to_owned(),
            Why::SessionOver => "its session's relay is gone".to_owned(),
        };
        match &c.removed {
            None => println!("would remove {} {} ({why})", c.kind, c.name),
            Some(Ok(())) => println!("removed {} {} ({why})", c.kind, c.name),
            Some(Err(Kept::InUse)) => println!("kept {} {} (in use)", c.kind, c.name),
            Some(Err(Kept::Failed(e))) => {
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
