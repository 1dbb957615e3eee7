//! `coffer validate`: the command line made into a `coffer::validate::ValidateSpec`, the job
//! run, its reports printed.

use crate::cli::ValidateArgs;
use anyhow::Result;
use coffer::validate::ValidateSpec;
use std::io::Write;

pub fn run(args: ValidateArgs, quiet: bool, threads: usize) -> Result<()> {
    let mut metrics = crate::metrics::start(args.metrics_file.clone(), "validate");
    let result = validate(args, quiet, threads, &mut metrics);
    crate::metrics::finish(metrics, result, |_, _| {})
}

fn validate(args: ValidateArgs, quiet: bool, threads: usize, metrics: &mut coffer::service::MetricsFile) -> Result<()> {
    let policy = coffer::validate::policy(args.checksum_algorithm.as_deref())?;
    args.paths.iter().try_for_each(|p| super::refuse_stdin_terminal(p))?;
    let spec = ValidateSpec { paths: args.paths.clone(), innodb: args.innodb, policy, keys: args.key.sources() };
    // With --json, stdout is the report: no progress bar beside it (warnings still go to stderr).
    let env = crate::report::env_with_bars(quiet, threads, !args.json);
    let mut validation = coffer::validate::validate(&spec, &env)?;
    let o = validation.totals();
    coffer::service::gauges::validate(metrics.run(), o.pages, o.corrupt_pages, o.corrupt_files, o.bytes);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in validation.shown(args.json, args.max_corrupt_pages, quiet) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    match validation.image_error.take() {
        Some(e) => Err(e.into()),
        None => Ok(o.corrupt_error().map_or(Ok(()), Err)?),
    }
}
