//! `coffer restore` and `coffer extract`: the command line made into `coffer::restore` specs,
//! the job run, its summary printed.

use super::refuse_terminal;
use crate::cli::{ExtractArgs, RestoreArgs};
use anyhow::Result;
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
    let spec = args.spec();
    refuse_terminal(spec.image.as_ref().expect("an image"))?;
    let env = crate::report::env(quiet, threads);
    if !args.prepare {
        print_restored(&coffer::restore::restore(&spec, &env)?, quiet);
        return Ok(());
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
