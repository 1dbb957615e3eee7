//! `coffer info`: what an image holds (`coffer::read::info`), printed; with --replication, the
//! statements that make a restored server a replica.

use crate::cli::InfoArgs;
use anyhow::{Context, Result};

pub fn info(args: InfoArgs, quiet: bool) -> Result<()> {
    let image = coffer::Location::from_path(&args.image);
    super::refuse_terminal(&image)?;
    let coffer::read::ImageInfo { header, backup: info, files, bytes } =
        coffer::read::info(&image, &args.key.sources(), &crate::report::env(quiet, 2))?;
    if args.replication {
        let info = info.context("this image is not a backup of a server (it has no coffer-backup.json)")?;
        // Refused (one line) unless every value is what a server writes: the SQL is meant to be
        // piped into a client.
        let sql =
            info.replication_statements()?.context("the backup recorded no binary log position (was log_bin on?)")?;
        print!("{sql}");
        return Ok(());
    }
    let slots: Vec<String> = header
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| format!("{i}: {}", coffer_crypto::slot::describe(s)))
        .collect();
    if args.json {
        let v = serde_json::json!({
            "image_id": coffer_crypto::hex(&header.image_id),
            "created": coffer::text::utc(header.created),
            "cipher": header.suite.name(),
            "compression": header.codec.name(),
            "key_slots": slots,
            "files": files,
            "bytes": bytes,
            "backup": info,
        });
        println!("{v}");
        return Ok(());
    }
    println!("image        {}  created {}", coffer_crypto::hex(&header.image_id), coffer::text::utc(header.created));
    println!("contents     {files} files, {}", super::human(bytes));
    println!("encryption   {}, compression {}", header.suite.name(), header.codec.name());
    for s in &slots {
        println!("key slot     {s}");
    }
    let Some(i) = info else {
        println!("backup       not a backup of a server (no coffer-backup.json)");
        return Ok(());
    };
    // The description comes from the image: control characters are shown escaped, never sent
    // to the terminal.
    let esc = |s: &str| coffer::text::escape(s.as_bytes());
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "unknown".into(), esc);
    println!("server       {}", opt(&i.server_version));
    println!("engine       {} {}", opt(&i.engine), opt(&i.engine_version));
    println!("taken        {} to {}", opt(&i.start_time), opt(&i.end_time));
    let lsn = |v: Option<u64>| v.map_or("unknown".into(), |n| n.to_string());
    println!("LSN          {} to {} (last {})", lsn(i.from_lsn), lsn(i.to_lsn), lsn(i.last_lsn));
    match &i.binlog {
        Some(b) => println!(
            "binlog       {}:{}{}",
            esc(&b.file),
            b.position,
            b.gtid.as_ref().map(|g| format!("  GTID {}", esc(g))).unwrap_or_default()
        ),
        None => println!("binlog       none recorded"),
    }
    if let Some(g) = &i.galera {
        println!("galera       {}", esc(g));
    }
    Ok(())
}
