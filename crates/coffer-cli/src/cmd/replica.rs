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
    let s = seeded?;
    super::say(quiet, s.line());
    if spec.start.is_none() {
        super::say(
            quiet,
            format!(
                "start it with the server's own service (e.g. systemctl start mariadb); it replicates from {}",
                s.primary
            ),
        );
    }
    Ok(())
}

fn spec(a: &SeedArgs) -> Result<SeedSpec> {
    let primary = a.primary.spec()?.ok_or_else(|| crate::exit::usage("replica seed needs --primary HOST[:PORT]"))?;
    let live = match (&a.listen, a.tls.given()) {
        (Some(_), Some(t)) if t.ca.is_none() && t.peer_fingerprints.is_empty() => {
            return Err(crate::exit::usage("--listen needs --ca or --peer-fingerprint: the sender is authenticated"))
        }
        (Some(listen), Some(tls)) => Some(coffer::transfer::ReceiveSpec {
            listen: listen.clone(),
            // The receiver takes as many connections as the sender opens.
            tls: coffer::net::TlsOptions { streams: 1, resume: false, limit_rate: None, ..tls },
            to: None,
            output: None,
            keys: a.key.sources(),
            owner: a.owner.clone(),
            keep_setuid: false,
            force: true,
            checkpoint: 256 << 20,
        }),
        (Some(_), None) => return Err(crate::exit::usage("--listen needs --cert and --key")),
        (None, _) => None,
    };
    Ok(SeedSpec {
        source: a.source.clone().unwrap_or_default(),
        live,
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
        start: a.start_with.as_ref().map(|c| StartSpec {
            command: c.clone(),
            socket: a.replica_socket.clone(),
            timeout: std::time::Duration::from_secs(a.wait_timeout),
        }),
    })
}
