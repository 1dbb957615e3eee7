//! `coffer binlog archive|list|fetch`: the command line made into `coffer::binlog` calls.

use crate::cli::{ArchiveArgs, BinlogCommand, BinlogListArgs, FetchArgs, ShowArgs};
use anyhow::Result;
use std::time::Duration;

pub fn run(cmd: BinlogCommand, quiet: bool) -> Result<()> {
    match cmd {
        BinlogCommand::Archive(a) => archive(*a, quiet),
        BinlogCommand::List(a) => list(*a, quiet),
        BinlogCommand::Fetch(a) => fetch(*a, quiet),
        BinlogCommand::Show(a) => show(*a, quiet),
    }
}

fn archive(a: ArchiveArgs, quiet: bool) -> Result<()> {
    let spec = coffer::binlog::ArchiveSpec {
        server: a.server(),
        prefix: a.output,
        keys: a.key.sources(),
        seal: a.seal.options(),
        follow: a.follow,
        segment_time: Duration::from_secs(a.segment_time.max(1)),
        segment_size: u64::from(a.segment_size.max(4096)),
        server_id: a.server_id,
        stop: None,
    };
    let options = coffer::service::ServiceOptions {
        command: "binlog-archive".into(),
        profile: crate::config::profile_name().map(str::to_owned),
        notify: true,
        metrics_file: a.metrics_file,
    };
    let env = crate::report::env(quiet, 1);
    let (s, stopped) = coffer::service::archive(spec, options, a.metrics_listen.as_deref(), &env)?;
    super::say(quiet, s.line(stopped));
    Ok(())
}

fn list(a: BinlogListArgs, quiet: bool) -> Result<()> {
    let keys = Some(a.key.sources()).filter(coffer::keys::KeySources::any);
    let mut show = |s: &coffer::repo::archive::ListedSegment| {
        if !a.json {
            println!("{}", s.line());
        }
    };
    let listing = coffer::repo::archive::list(&a.prefix, keys.as_ref(), &mut show, &crate::report::env(quiet, 1))?;
    if a.json {
        println!("{}", listing.to_json());
    }
    Ok(listing.unread_error().map_or(Ok(()), Err)?)
}

fn fetch(a: FetchArgs, quiet: bool) -> Result<()> {
    let written = coffer::binlog::fetch(
        &a.prefix,
        a.from.as_deref(),
        &a.to_dir,
        &a.key.sources(),
        &crate::report::env(quiet, 1),
    )?;
    let (n, dir) = (written.len(), a.to_dir.display());
    super::say(quiet, format_args!("wrote {n} binary log files into {dir}: {}", written.join(", ")));
    Ok(())
}

fn show(a: ShowArgs, quiet: bool) -> Result<()> {
    let (from, until) = (a.from.as_deref(), a.until.as_deref());
    let spec = coffer::binlog::show::ShowSpec::new(a.prefix, &a.table, from, until, a.key.sources())?;
    let mut each = |t: &coffer::binlog::show::Shown| println!("{}", t.render(a.json));
    let summary = coffer::binlog::show::show(&spec, &mut each, &crate::report::env(quiet, 1))?;
    println!("{}", summary.render(&spec, a.json));
    Ok(())
}
