//! `coffer replica seed` (`coffer::server::replica`).

use crate::cli::{ReplicaCommand, SeedArgs};
use anyhow::Result;
use coffer::server::replica::{SeedSpec, SeedSummary, StartSpec};

pub fn run(cmd: ReplicaCommand, quiet: bool, threads: usize) -> Result<()> {
    let ReplicaCommand::Seed(args) = cmd;
    let spec = spec(&args)?;
    let seeded = coffer::server::replica::seed(&spec, &crate::report::env(quiet || args.json, threads));
    if args.json {
        println!("{}", seeded.as_ref().map_or_else(SeedSummary::failed_json, SeedSummary::to_json));
    }
    seeded?.lines().iter().for_each(|l| super::say(quiet, l));
    Ok(())
}

fn spec(a: &SeedArgs) -> Result<SeedSpec> {
    let primary = a.primary.spec()?.ok_or_else(|| crate::exit::usage("replica seed needs --primary HOST[:PORT]"))?;
    Ok(SeedSpec {
        source: a.source.clone().unwrap_or_default(),
        live: SeedSpec::receiver(a.listen.as_deref(), a.tls.given())?,
        bases: a.base.iter().map(|b| coffer::Location::from_path(b)).collect(),
        restore: coffer::restore::RestoreSpec {
            to: a.to.clone(),
            keys: a.key.sources(),
            owner: a.owner.clone(),
            force: a.force,
            ..Default::default()
        },
        options: a.prepare_options.clone(),
        primary,
        binlogs: a.binlogs.clone(),
        archive: a.archive,
        replica_config: a.replica_config.clone(),
        start: a.start_with.as_ref().map(|c| StartSpec::new(c, &a.replica_socket, a.wait_timeout)),
    })
}
