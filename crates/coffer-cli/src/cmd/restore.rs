//! `coffer restore` and `coffer extract`: the command line made into `coffer::restore` specs,
//! the job run, its summary printed.

use super::refuse_terminal;
use crate::cli::{ExtractArgs, RestoreArgs};
use anyhow::Result;
use coffer::pitr::{PitrSpec, Until};
use coffer::restore::{ExtractSpec, RestoreSpec, RestoreSummary};
use coffer::Location;

impl RestoreArgs {
    /// The restore as the library takes it.
    pub fn spec(&self) -> RestoreSpec {
        RestoreSpec {
            image: Some(Location::from_path(&self.image)),
            to: self.to.clone(),
            keys: self.key.sources(),
            owner: self.owner.clone(),
            keep_setuid: self.keep_setuid,
            force: self.force,
            sync: !self.no_sync,
        }
    }
}

pub fn restore(args: RestoreArgs, quiet: bool, threads: usize) -> Result<()> {
    if let Some(until) = until(&args)? {
        return restore_until(args, until, quiet, threads);
    }
    if !args.prepare && !args.prepare_options.is_empty() {
        return Err(crate::exit::usage("--prepare-option goes with --prepare or --until"));
    }
    let spec = args.spec();
    refuse_terminal(spec.image.as_ref().expect("an image"))?;
    let env = crate::report::env(quiet, threads);
    if !args.prepare {
        let s = coffer::restore::restore(&spec, &env)?;
        print_restored(&s, quiet);
        if args.json {
            println!("{}", restored_json(&s));
        }
        return Ok(());
    }
    if args.json {
        return Err(crate::exit::usage("--json goes with a plain restore or --until, not --prepare yet"));
    }
    let image = spec.image.as_ref().expect("an image");
    let bases: Vec<Location> = args.base.iter().map(|b| Location::from_path(b)).collect();
    // A chain is resolved and checked before anything is written.
    let plan = coffer::restore::plan(image, &bases, &spec.keys, &env)?;
    let copy_back = if args.copy_back { args.datadir.as_deref() } else { None };
    let Some(chain) = &plan.chain else {
        print_restored(&plan.restore(&spec, &env)?, quiet);
        coffer::restore::prepare(&args.to, &args.prepare_options, copy_back, args.force, &env)?;
        return Ok(());
    };
    if !quiet {
        let names: Vec<String> = chain.iter().map(|k| format!("{} ({})", k.shown(), k.what())).collect();
        eprintln!("coffer: restoring a chain of {}: {}", names.len(), names.join(" <- "));
    }
    let s = coffer::restore::restore_chain(&plan, &spec, &args.prepare_options, &env)?;
    if !quiet {
        eprintln!(
            "coffer: restored and prepared the chain of {} backups into {} in {:.1} s",
            s.backups.len(),
            s.to.display(),
            s.seconds
        );
    }
    if let Some(datadir) = copy_back {
        coffer::restore::copy_back(&args.to, &chain[0].info, datadir, args.force, &env)?;
    }
    Ok(())
}

/// The point-in-time target asked for, if any.
fn until(args: &RestoreArgs) -> Result<Option<Until>> {
    Ok(match (&args.until, &args.until_gtid, &args.until_position) {
        (Some(t), _, _) => Some(Until::parse_time(t)?),
        (_, Some(g), _) => Some(Until::parse_gtid(g)?),
        (_, _, Some(p)) => Some(Until::parse_position(p)?),
        _ => {
            if args.print_replay || args.binlogs.is_some() {
                return Err(crate::exit::usage(
                    "--print-replay and --binlogs go with --until, --until-gtid or --until-position",
                ));
            }
            None
        }
    })
}

fn restore_until(args: RestoreArgs, until: Until, quiet: bool, threads: usize) -> Result<()> {
    let backups = args.image.to_string_lossy().into_owned();
    if !backups.ends_with('/') || !matches!(Location::parse(&backups), Location::Object(_)) {
        return Err(crate::exit::usage(format!(
            "{backups}: point-in-time recovery reads the backups under a prefix (s3://B/P/, file:///D/)"
        )));
    }
    let spec = PitrSpec {
        binlogs: args.binlogs.clone().unwrap_or_else(|| coffer::pitr::default_binlog_prefix(&backups)),
        backups,
        until,
        restore: RestoreSpec { image: None, ..args.spec() },
        options: args.prepare_options.clone(),
        print_replay: args.print_replay,
        applier: match args.replay_with {
            crate::cli::ReplayWith::SqlThread => coffer::pitr::Applier::SqlThread,
            crate::cli::ReplayWith::Client => coffer::pitr::Applier::Client,
        },
    };
    let s = coffer::pitr::restore_until(&spec, &crate::report::env(quiet || args.json, threads))?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else if let Some(commands) = &s.commands {
        println!("{commands}");
    }
    if !quiet {
        let last = match (&s.last_gtid, s.last_time) {
            (Some(g), Some(t)) => format!("; the last transaction: GTID {g} at {} UTC", coffer::text::utc(t)),
            _ => String::new(),
        };
        match &s.binlog_dir {
            Some(dir) => eprintln!(
                "coffer: restored and prepared {} into {}; the binary logs to replay ({}:{} .. {}:{}, {} transactions) are in {}",
                s.backups.last().map(String::as_str).unwrap_or_default(),
                args.to.display(),
                s.start.0,
                s.start.1,
                s.stop.0,
                s.stop.1,
                s.transactions,
                dir.display()
            ),
            None => eprintln!(
                "coffer: restored {} and replayed {} events ({} transactions, {}) from {}:{} to {}:{}{last}; GTID position {}; \
                 restore {:.1} s, replay {:.1} s, into {}",
                s.backups.last().map(String::as_str).unwrap_or_default(),
                s.events,
                s.transactions,
                super::human(s.bytes),
                s.start.0,
                s.start.1,
                s.stop.0,
                s.stop.1,
                if s.gtid_state.is_empty() { "none" } else { &s.gtid_state },
                s.restore_seconds,
                s.replay_seconds,
                args.to.display()
            ),
        }
    }
    Ok(())
}

/// What a restore did, as `--json` prints it.
fn restored_json(s: &RestoreSummary) -> serde_json::Value {
    serde_json::json!({
        "to": s.to,
        "entries": s.read.entries,
        "files": s.files,
        "logical_bytes": s.read.logical_bytes,
        "synced": s.synced,
        "seconds": s.seconds,
    })
}

/// Prints what a restore did.
fn print_restored(s: &RestoreSummary, quiet: bool) {
    if !quiet {
        eprintln!("coffer: {}", s.line());
    }
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
