//! `coffer catalog` and `coffer prune`: the backups under a prefix of an object store
//! (`coffer::repo::catalog`), printed.

use crate::cli::{CatalogArgs, PruneArgs};
use anyhow::Result;

pub fn catalog(args: CatalogArgs, quiet: bool) -> Result<()> {
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let env = crate::report::env(quiet, 1);
    let primary = args.primary.spec()?;
    let mut catalog = coffer::repo::catalog::catalog(&args.prefix, args.binlogs.as_deref(), keys.as_ref(), &env)?;
    if let Some(p) = &primary {
        coffer::server::replica::catalog_primary(&mut catalog, p, &env)?;
    }
    let outcome = catalog.outcome().map_err(anyhow::Error::from);
    catalog.shown(args.json).iter().for_each(|l| println!("{l}"));
    if !args.json {
        super::say(quiet, catalog.total(&args.prefix));
    }
    outcome
}

pub fn prune(args: PruneArgs, quiet: bool) -> Result<()> {
    let mut metrics = crate::metrics::start(args.metrics_file.clone(), "prune");
    let result = prune_run(args, quiet, &mut metrics);
    crate::metrics::finish(metrics, result, |_, _| {})
}

fn prune_run(args: PruneArgs, quiet: bool, metrics: &mut coffer::service::MetricsFile) -> Result<()> {
    let policy = coffer::repo::catalog::Policy::given(args.keep_last, args.keep_daily, args.keep_weekly);
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let pitr = coffer::repo::prune::KeepPitr::given(args.keep_pitr, args.binlogs.as_deref(), &args.prefix);
    let env = crate::report::env(quiet, 1);
    let plan = coffer::repo::prune::prune_plan(&args.prefix, policy, pitr.as_ref(), keys.as_ref(), args.dry_run, &env)?;
    if !args.json {
        plan.lines().iter().for_each(|l| super::say(quiet, l));
    }
    coffer::service::gauges::prune_plan(metrics.run(), &plan);
    let refused = plan.refusal.as_ref().filter(|_| !args.allow_deleting_newest);
    if args.json {
        println!("{}", plan.to_json(args.dry_run, refused));
    }
    if let Some(why) = refused {
        return Err(anyhow::anyhow!("{why}: refusing (--allow-deleting-newest carries it out); nothing was deleted"));
    }
    if !args.json && pitr.is_some() {
        super::say(quiet, plan.segments_line());
    }
    if args.dry_run {
        super::say(quiet, plan.dry_run_line());
        return Ok(());
    }
    let pruned = plan.carry_out()?;
    coffer::service::gauges::pruned(metrics.run(), pruned.backups, pruned.segments, pruned.freed + pruned.freed_logs);
    super::say(quiet, pruned.line());
    Ok(())
}
