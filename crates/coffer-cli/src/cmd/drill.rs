//! `coffer drill`: the command line made into a `coffer::server::drill` spec, the verdict printed.

use crate::cli::DrillArgs;
use anyhow::Result;
use coffer::repo::recovery::Until;
use coffer::server::drill::DrillSpec;
use coffer::Location;

pub fn run(args: DrillArgs, quiet: bool, threads: usize) -> Result<()> {
    let (time, position) = (args.until.as_deref(), args.until_position.as_deref());
    let until = Until::chosen(time, args.until_gtid.as_deref(), position, args.exclusive)?;
    if until.is_none() && args.binlogs.is_some() {
        return Err(crate::exit::usage("--binlogs goes with --until, --until-gtid or --until-position"));
    }
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
    let mut metrics = crate::metrics::start(args.metrics_file.clone(), "drill");
    let env = crate::report::env(quiet || args.json, threads);
    let (report, error) = coffer::server::drill::drill(&spec, &env);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !quiet {
        eprintln!("coffer: {}", report.verdict());
        report.details().iter().for_each(|line| eprintln!("{line}"));
    }
    let result = report.outcome(error).map_err(anyhow::Error::from);
    coffer::service::gauges::drill(metrics.run(), &report);
    crate::metrics::finish(metrics, result, |_, _| {})
}
