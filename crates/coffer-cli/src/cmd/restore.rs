//! `coffer restore` and `coffer extract`: the command line made into `coffer::restore` specs,
//! the job run, its summary printed.

use super::refuse_terminal;
use crate::cli::{ExtractArgs, RestoreArgs};
use anyhow::Result;
use coffer::repo::recovery::Until;
use coffer::restore::{ExtractSpec, RestoreSpec, RestoreSummary};
use coffer::server::pitr::PitrSpec;
use coffer::Location;
use coffer_mysql::meta::BackupKind;
use std::path::Path;

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
        print_restored(&s, quiet);
        if args.json {
            println!("{}", restored_json(&s));
        }
        return Ok(Some(vec![s]));
    }
    let started = std::time::Instant::now();
    let image = spec.image.as_ref().expect("an image");
    let bases: Vec<Location> = args.base.iter().map(|b| Location::from_path(b)).collect();
    // A chain is resolved and checked before anything is written.
    let plan = coffer::server::prepare::plan(image, &bases, &spec.keys, &env)?;
    let copy_back = if args.copy_back { args.datadir.as_deref() } else { None };
    let Some(chain) = &plan.chain else {
        let s = plan.restore(&spec, &env)?;
        print_restored(&s, quiet);
        let p = coffer::server::prepare::prepare(&args.to, &args.prepare_options, copy_back, args.force, &env)?;
        if args.json {
            let one = Prepared {
                to: &args.to,
                synced: s.synced,
                seconds: started.elapsed().as_secs_f64(),
                engine: p.engine,
                backups: vec![(image.shown(), Some(BackupKind::Full), &s, p.seconds)],
                copied_back_to: copy_back,
            };
            println!("{}", one.json());
        }
        return Ok(Some(vec![s]));
    };
    if !quiet {
        let names: Vec<String> = chain.iter().map(|k| format!("{} ({})", k.shown(), k.what())).collect();
        eprintln!("coffer: restoring a chain of {}: {}", names.len(), names.join(" <- "));
    }
    let s = coffer::server::prepare::restore_chain(&plan, &spec, &args.prepare_options, &env)?;
    if !quiet {
        eprintln!(
            "coffer: restored and prepared the chain of {} backups into {} in {:.1} s",
            s.backups.len(),
            s.to.display(),
            s.seconds
        );
    }
    if let Some(datadir) = copy_back {
        coffer::server::prepare::copy_back(&args.to, &chain[0].info, datadir, args.force, &env)?;
    }
    if args.json {
        let backups = s.backups.iter().zip(&s.kinds).zip(&s.restores).zip(&s.prepare_seconds);
        let all = Prepared {
            to: &s.to,
            synced: s.restores.first().is_some_and(|r| r.synced),
            seconds: started.elapsed().as_secs_f64(),
            engine: s.engine,
            backups: backups.map(|(((name, kind), r), p)| (name.clone(), Some(*kind), r, *p)).collect(),
            copied_back_to: copy_back,
        };
        println!("{}", all.json());
    }
    Ok(Some(s.restores))
}

/// A restore with its prepare (of one backup, or of a chain), as `--json` prints it.
struct Prepared<'a> {
    to: &'a Path,
    synced: bool,
    /// Everything: restores, prepares and the copy-back.
    seconds: f64,
    engine: &'static str,
    /// Each backup restored (full first): its name, kind, restore and prepare (or apply) time.
    backups: Vec<(String, Option<BackupKind>, &'a RestoreSummary, f64)>,
    copied_back_to: Option<&'a Path>,
}

impl Prepared<'_> {
    /// The object: what `restore --json` prints of a plain restore (entries, files and bytes
    /// summed over the backups), what was prepared, and each backup.
    fn json(&self) -> serde_json::Value {
        let sum = |f: fn(&RestoreSummary) -> u64| self.backups.iter().map(|b| f(b.2)).sum::<u64>();
        serde_json::json!({
            "to": self.to,
            "entries": sum(|r| r.read.entries),
            "files": sum(|r| r.files),
            "logical_bytes": sum(|r| r.read.logical_bytes),
            "synced": self.synced,
            "seconds": self.seconds,
            "prepared": {
                "engine": self.engine,
                "seconds": self.backups.iter().map(|b| b.3).sum::<f64>(),
            },
            "copied_back_to": self.copied_back_to,
            "backups": self.backups.iter().map(|(name, kind, r, prepare)| serde_json::json!({
                "image": name,
                "kind": kind.map(BackupKind::name),
                "entries": r.read.entries,
                "files": r.files,
                "logical_bytes": r.read.logical_bytes,
                "image_bytes": r.read.image_bytes,
                "seconds": r.seconds,
                "prepare_seconds": prepare,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The point-in-time target asked for, if any.
fn until(args: &RestoreArgs) -> Result<Option<Until>> {
    let until = super::until(&args.until, &args.until_gtid, &args.until_position)?;
    if until.is_none() && (args.print_replay || args.binlogs.is_some()) {
        return Err(crate::exit::usage(
            "--print-replay and --binlogs go with --until, --until-gtid or --until-position",
        ));
    }
    Ok(until)
}

fn restore_until(args: RestoreArgs, until: Until, quiet: bool, threads: usize) -> Result<()> {
    let backups = args.image.to_string_lossy().into_owned();
    if !backups.ends_with('/') || !matches!(Location::parse(&backups), Location::Object(_)) {
        return Err(crate::exit::usage(format!(
            "{backups}: point-in-time recovery reads the backups under a prefix (s3://B/P/, file:///D/)"
        )));
    }
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
