//! `coffer validate`: the command line made into a `coffer::validate::ValidateSpec`, the job
//! run, its reports printed.

use super::{human, rate, refuse_terminal};
use crate::cli::ValidateArgs;
use crate::exit::usage;
use anyhow::Result;
use coffer::validate::ValidateSpec;
use coffer_innodb::{FileReport, Policy, Status};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub fn run(args: ValidateArgs, quiet: bool, threads: usize) -> Result<()> {
    let mut metrics = crate::metrics::start(args.metrics_file.clone(), "validate");
    let result = validate(args, quiet, threads, &mut metrics);
    crate::metrics::finish(metrics, result, |_, _| {})
}

fn validate(args: ValidateArgs, quiet: bool, threads: usize, metrics: &mut coffer::service::MetricsFile) -> Result<()> {
    let policy = match &args.checksum_algorithm {
        Some(name) => Policy::parse(name).ok_or_else(|| usage(format!("unknown checksum algorithm {name}")))?,
        None => Policy::Auto,
    };
    if args.paths.iter().any(|p| p == Path::new("-")) {
        refuse_terminal(&coffer::Location::Stdio)?;
    }
    let spec = ValidateSpec { paths: args.paths.clone(), innodb: args.innodb, policy, keys: args.key.sources() };
    // With --json, stdout is the report: no progress bar beside it (warnings still go to stderr).
    let env = crate::report::env_with_bars(quiet, threads, !args.json);
    let validation = coffer::validate::validate(&spec, &env)?;
    let reports = validation.reports;
    let outcome = summarize(&reports, validation.seconds);
    let o = &outcome;
    coffer::service::gauges::validate(metrics.run(), o.pages, o.corrupt_pages, o.corrupt_files, o.bytes);
    let image_error = validation.image_error.map(anyhow::Error::from);
    if args.json {
        print_json(&reports, &outcome, args.max_corrupt_pages, image_error.as_ref())?;
    } else {
        print_text(&reports, &outcome, args.max_corrupt_pages, quiet)?;
    }
    if let Some(e) = image_error {
        return Err(e);
    }
    if outcome.corrupt_pages > 0 {
        return Err(anyhow::Error::new(coffer::Error::CorruptPages(format!(
            "{} corrupt InnoDB page{} in {} file{}",
            outcome.corrupt_pages,
            plural(outcome.corrupt_pages),
            outcome.corrupt_files,
            plural(outcome.corrupt_files)
        ))));
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

struct Outcome {
    files: u64,
    innodb_files: u64,
    not_checked: u64,
    pages: u64,
    bytes: u64,
    corrupt_pages: u64,
    corrupt_files: u64,
    unverifiable_pages: u64,
    seconds: f64,
}

fn summarize(reports: &[FileReport], seconds: f64) -> Outcome {
    let checked = |r: &&FileReport| r.status != Status::NotChecked;
    Outcome {
        files: reports.len() as u64,
        innodb_files: reports.iter().filter(checked).count() as u64,
        not_checked: reports.iter().filter(|r| r.status == Status::NotChecked).count() as u64,
        pages: reports.iter().map(|r| r.tally.pages).sum(),
        bytes: reports.iter().filter(checked).map(|r| r.bytes).sum(),
        corrupt_pages: reports.iter().map(|r| r.tally.corrupt.len() as u64).sum(),
        corrupt_files: reports.iter().filter(|r| r.status == Status::Corrupt).count() as u64,
        unverifiable_pages: reports.iter().map(|r| r.tally.unverifiable_pages()).sum(),
        seconds,
    }
}

fn print_text(reports: &[FileReport], o: &Outcome, max: Option<usize>, quiet: bool) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in reports {
        let table = r.table.as_ref().map(|t| format!(" ({t})")).unwrap_or_default();
        match r.status {
            Status::Corrupt => {
                let n = r.tally.corrupt.len();
                writeln!(out, "ERROR: {} is corrupt and has : {n} corrupt page{}{table}", r.path, plural(n as u64))?;
                let listed = max.unwrap_or(usize::MAX).min(n);
                for c in &r.tally.corrupt[..listed] {
                    writeln!(out, "  page {} at byte {}: {}", c.page, c.offset, c.reason)?;
                }
                if listed < n {
                    writeln!(out, "  ... and {} more corrupt pages (--max-corrupt-pages {})", n - listed, listed)?;
                }
            }
            Status::Unverifiable => {
                writeln!(out, "WARNING: {} could not be verified{table}: {}", r.path, r.note.as_deref().unwrap_or(""))?;
            }
            Status::Ok if !quiet => {
                let extra = r.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
                writeln!(out, "ok           {}  {} pages, {}{table}{extra}", r.path, r.tally.pages, r.algorithm())?;
            }
            Status::NotChecked if !quiet => {
                writeln!(out, "not checked  {}  {}", r.path, r.note.as_deref().unwrap_or(""))?;
            }
            _ => {}
        }
    }
    if !quiet || o.corrupt_pages > 0 {
        writeln!(
            out,
            "coffer: validated {} files ({} InnoDB, {} not checked): {} pages, {}; {} corrupt page{} in {} file{}{}; {:.1} s, {}",
            o.files,
            o.innodb_files,
            o.not_checked,
            o.pages,
            human(o.bytes),
            o.corrupt_pages,
            plural(o.corrupt_pages),
            o.corrupt_files,
            plural(o.corrupt_files),
            if o.unverifiable_pages > 0 { format!("; {} pages not verifiable", o.unverifiable_pages) } else { String::new() },
            o.seconds,
            rate(o.bytes, o.seconds)
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_json(
    reports: &[FileReport],
    o: &Outcome,
    max: Option<usize>,
    image_error: Option<&anyhow::Error>,
) -> Result<()> {
    let files: Vec<_> = reports
        .iter()
        .map(|r| {
            let listed = max.unwrap_or(usize::MAX).min(r.tally.corrupt.len());
            let pages: Vec<_> =
                r.tally.corrupt[..listed].iter().map(|c| json!({"page": c.page, "offset": c.offset, "reason": c.reason})).collect();
            let valid: BTreeMap<&str, u64> = r.tally.valid.iter().map(|(a, n)| (a.name(), *n)).collect();
            json!({
                "path": r.path,
                "status": r.status.name(),
                "pages": r.tally.pages,
                "algorithm": if r.status == Status::NotChecked { serde_json::Value::Null } else { json!(r.algorithm()) },
                "corrupt_pages": pages,
                "corrupt_page_count": r.tally.corrupt.len(),
                "table": r.table,
                "format": r.format,
                "bytes": r.bytes,
                "valid_pages": valid,
                "empty_pages": r.tally.empty,
                "decompressed_pages": r.tally.decompressed,
                "unverifiable_pages": r.tally.unverifiable_pages(),
                "skipped_pages": r.tally.skipped.values().sum::<u64>(),
                "note": r.note,
            })
        })
        .collect();
    let doc = json!({
        "files": files,
        "summary": {
            "files": o.files,
            "innodb_files": o.innodb_files,
            "not_checked_files": o.not_checked,
            "pages": o.pages,
            "bytes": o.bytes,
            "corrupt_pages": o.corrupt_pages,
            "corrupt_files": o.corrupt_files,
            "unverifiable_pages": o.unverifiable_pages,
            "seconds": o.seconds,
            "bytes_per_second": (o.bytes as f64 / o.seconds.max(1e-9)) as u64,
            "image_error": image_error.map(|e| format!("{e:#}")),
        },
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}
