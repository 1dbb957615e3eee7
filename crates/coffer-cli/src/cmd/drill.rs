//! `coffer drill`: the command line made into a `coffer::server::drill` spec, the verdict printed.

use super::human;
use crate::cli::DrillArgs;
use anyhow::Result;
use coffer::repo::recovery::Until;
use coffer::server::drill::{DrillReport, DrillSpec};
use coffer::Location;

pub fn run(args: DrillArgs, quiet: bool, threads: usize) -> Result<()> {
    let until = match (&args.until, &args.until_gtid, &args.until_position) {
        (Some(t), _, _) => Some(Until::parse_time(t)?),
        (_, Some(g), _) => Some(Until::parse_gtid(g)?),
        (_, _, Some(p)) => Some(Until::parse_position(p)?),
        _ if args.binlogs.is_some() => {
            return Err(crate::exit::usage("--binlogs goes with --until, --until-gtid or --until-position"))
        }
        _ => None,
    };
    let mut keys = args.key.sources();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // A drill runs unattended: a passphrase comes from a file, never a prompt on a pipe.
        keys.passphrase_prompt &= args.key.passphrase;
    }
    let spec = DrillSpec {
        image: args.image.clone(),
        scratch: args.scratch.clone(),
        keys,
        bases: args.base.iter().map(|b| Location::from_path(b)).collect(),
        until,
        binlogs: args.binlogs.clone(),
        options: args.prepare_options.clone(),
        owner: args.owner.clone(),
    };
    let metrics = crate::metrics::Metrics::start(args.metrics_file.clone(), "drill");
    let env = crate::report::env(quiet || args.json, threads);
    let (report, error) = coffer::server::drill::drill(&spec, &env);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !quiet {
        print(&report);
    }
    let result = match (error, report.passed) {
        (Some(e), _) => Err(anyhow::Error::new(e).context("drill failed")),
        (None, false) => Err(anyhow::anyhow!("drill failed: {}", report.failure.clone().unwrap_or_default())),
        (None, true) => Ok(()),
    };
    let mut metrics = metrics;
    set_gauges(&mut metrics, &report);
    metrics.finish(result, |_, _| {})
}

fn set_gauges(m: &mut crate::metrics::Metrics, r: &DrillReport) {
    m.set("coffer_drill_passed", "1 if the last drill passed every step, else 0.", f64::from(u8::from(r.passed)));
    m.set("coffer_drill_restore_seconds", "Seconds the drill's restore and prepare took.", r.restore_seconds);
    m.set("coffer_drill_check_seconds", "Seconds the drill's server start, checks and shutdown took.", r.check_seconds);
    m.set("coffer_drill_tables_checked", "Tables CHECK TABLE passed in the last drill.", r.tables_checked as f64);
    m.set("coffer_drill_tables_failed", "Tables CHECK TABLE failed in the last drill.", r.tables_failed.len() as f64);
    m.set("coffer_innodb_pages_checked", "InnoDB pages checked.", r.pages_checked as f64);
    m.set("coffer_innodb_pages_corrupt", "Corrupt InnoDB pages found.", r.pages_corrupt as f64);
    m.set("coffer_bytes_restored", "Bytes of files restored.", r.needed_bytes as f64);
}

fn print(r: &DrillReport) {
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    eprintln!("coffer: drill of {} ({}): {verdict}", r.image, if r.kind.is_empty() { "not restored" } else { &r.kind });
    if r.kind.is_empty() {
        // Nothing was restored: the error line says why.
        return;
    }
    if r.backups.len() > 1 {
        eprintln!("  chain:    {}", r.backups.join(" <- "));
    }
    eprintln!(
        "  restore:  {} in {:.1} s (scratch had {} free)",
        human(r.needed_bytes),
        r.restore_seconds,
        human(r.free_bytes)
    );
    if let Some(p) = &r.pitr {
        eprintln!("  replayed: {} transactions to {}:{}", p.transactions, p.stop.0, p.stop.1);
    }
    eprintln!("  pages:    {} checked, {} corrupt", r.pages_checked, r.pages_corrupt);
    if let Some(v) = &r.server_version {
        eprintln!(
            "  tables:   {} passed CHECK TABLE, {} failed, {} not checkable (server {v}, {:.1} s)",
            r.tables_checked,
            r.tables_failed.len(),
            r.tables_skipped,
            r.check_seconds
        );
    }
    for t in &r.tables_failed {
        eprintln!("  FAILED    {}: {}", t.table, t.message);
    }
}
