//! `coffer restore` and `coffer extract`: the command line made into `coffer::restore` specs,
//! the job run, its summary printed.

use super::refuse_terminal;
use crate::cli::{ExtractArgs, RestoreArgs};
use anyhow::Result;
use coffer::repo::recovery::Until;
use coffer::restore::{ExtractSpec, RestoreSpec, RestoreSummary};
use coffer::server::pitr::PitrSpec;
use coffer::Location;

impl RestoreArgs {
    /// The restore as the library takes it.
    pub fn spec(&self) -> RestoreSpec {
        RestoreSpec {
            image: Some(Location::from_path(&self.image)),
            to: self.to.clone().unwrap_or_default(),
            keys: self.key.sources(),
            owner: self.owner.clone(),
            keep_setuid: self.keep_setuid,
            force: self.force,
            sync: !self.no_sync,
            limit_rate: self.limit_rate,
        }
    }
}

/// The restores done, for their metrics (none for a point-in-time recovery).
type Totals = Option<Vec<RestoreSummary>>;

pub fn restore(args: RestoreArgs, quiet: bool, threads: usize) -> Result<()> {
    let metrics = crate::metrics::start(args.metrics_file.clone(), "restore");
    // Before the job starts any thread or the engine: they inherit it.
    let result = super::io_priority(args.io_priority).and_then(|()| run(args, quiet, threads));
    crate::metrics::finish(metrics, result, |m, restores| {
        if let Some(restores) = restores {
            coffer::service::gauges::restore(m, restores);
        }
    })
    .map(|_| ())
}

fn run(args: RestoreArgs, quiet: bool, threads: usize) -> Result<Totals> {
    if args.tables.tables.is_some() {
        restore_tables(args, quiet, threads)?;
        return Ok(None);
    }
    if args.tables.into_server.is_some() || args.tables.scratch_dir.is_some() {
        return Err(crate::exit::usage("--into-server and --scratch-dir go with --tables"));
    }
    if let Some(until) = until(&args)? {
        restore_until(args, until, quiet, threads)?;
        return Ok(None);
    }
    if !args.prepare && !args.prepare_options.is_empty() {
        return Err(crate::exit::usage("--prepare-option goes with --prepare or --until"));
    }
    let spec = args.spec();
    refuse_terminal(spec.image.as_ref().expect("an image"))?;
    let env = crate::report::env(quiet, threads);
    if !args.prepare {
        let s = coffer::restore::restore(&spec, &env)?;
        super::say(quiet, s.line());
        if args.json {
            println!("{}", s.to_json());
        }
        return Ok(Some(vec![s]));
    }
    let bases: Vec<Location> = args.base.iter().map(|b| Location::from_path(b)).collect();
    let copy_back = if args.copy_back { args.datadir.as_deref() } else { None };
    let p = coffer::server::prepare::restore_prepared(&spec, &bases, &args.prepare_options, copy_back, &env)?;
    if args.json {
        println!("{}", p.to_json());
    }
    Ok(Some(p.backups.into_iter().map(|b| b.restore).collect()))
}

/// The point-in-time target asked for, if any.
fn until(args: &RestoreArgs) -> Result<Option<Until>> {
    let until = Until::chosen(
        args.until.as_deref(),
        args.until_gtid.as_deref(),
        args.until_position.as_deref(),
        args.exclusive,
    )?;
    if until.is_none() && (args.print_replay || args.binlogs.is_some()) {
        return Err(crate::exit::usage(
            "--print-replay and --binlogs go with --until, --until-gtid or --until-position",
        ));
    }
    Ok(until)
}

fn restore_until(args: RestoreArgs, until: Until, quiet: bool, threads: usize) -> Result<()> {
    let backups = args.image.to_string_lossy().into_owned();
    coffer::server::pitr::check_backups_prefix(&backups)?;
    let spec = PitrSpec {
        binlogs: args.binlogs.clone().unwrap_or_else(|| coffer::repo::recovery::default_binlog_prefix(&backups)),
        backups,
        until,
        restore: RestoreSpec { image: None, ..args.spec() },
        options: args.prepare_options.clone(),
        print_replay: args.print_replay,
        applier: match args.replay_with {
            crate::cli::ReplayWith::SqlThread => coffer::server::pitr::Applier::SqlThread,
            crate::cli::ReplayWith::Client => coffer::server::pitr::Applier::Client,
        },
    };
    let s = coffer::server::pitr::restore_until(&spec, &crate::report::env(quiet || args.json, threads))?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else if let Some(commands) = &s.commands {
        println!("{commands}");
    }
    super::say(quiet, s.line(&args.to.clone().unwrap_or_default()));
    Ok(())
}

/// `restore --tables`: some tables into a running server, or exported into a directory.
fn restore_tables(args: RestoreArgs, quiet: bool, threads: usize) -> Result<()> {
    use coffer::server::tables::{Destination, TablesSpec};
    if args.prepare || args.copy_back || args.print_replay || args.replay_with == crate::cli::ReplayWith::Client {
        return Err(crate::exit::usage(
            "--tables prepares and replays by itself: not with --prepare, --copy-back, --print-replay or --replay-with client",
        ));
    }
    let t = &args.tables;
    let source = args.image.to_string_lossy().into_owned();
    let into = match (&t.into_server, &args.to) {
        (Some(at), _) => {
            let tls = coffer::source::server_tls(t.ssl_mode.map(|m| m.mode()), &t.ssl_ca, &None, &None);
            Destination::Server(Box::new(coffer::server::tables::server_at(
                at,
                t.user.clone(),
                t.password_file.clone(),
                tls,
            )?))
        }
        (None, Some(dir)) => Destination::Dir(dir.clone()),
        (None, None) => return Err(crate::exit::usage("--tables goes --into-server or --to a directory")),
    };
    let renames = t
        .rename
        .iter()
        .map(|r| coffer_mysql::tables::parse_rename(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::exit::usage(e.to_string()))?;
    let until = until(&args)?.map(|u| {
        let binlogs = args.binlogs.clone().unwrap_or_else(|| coffer::repo::recovery::default_binlog_prefix(&source));
        (u, binlogs)
    });
    let spec = TablesSpec {
        source,
        bases: Vec::new(),
        tables: t.tables.clone().expect("--tables given"),
        into,
        partitions: t.partitions.clone(),
        renames,
        replace: t.replace,
        until,
        keys: args.key.sources(),
        owner: args.owner.clone(),
        options: args.prepare_options.clone(),
        scratch: t.scratch_dir.clone(),
        force: args.force,
    };
    let s = coffer::server::tables::restore_tables(&spec, &crate::report::env(quiet || args.json, threads))?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else if let Some(statements) = &s.statements {
        println!("{statements}");
    }
    super::say(quiet, s.line());
    Ok(())
}

pub fn extract(args: ExtractArgs, quiet: bool, threads: usize) -> Result<()> {
    let image = Location::from_path(&args.image);
    refuse_terminal(&image)?;
    let spec = ExtractSpec {
        image: Some(image),
        paths: args.paths.clone(),
        to: args.to.clone(),
        keys: args.key.sources(),
        owner: args.owner.clone(),
        keep_setuid: args.keep_setuid,
        force: args.force,
    };
    Ok(coffer::restore::extract(&spec, &crate::report::env(quiet, threads))?)
}
