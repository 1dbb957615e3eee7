//! `coffer info`: what an image holds (`coffer::read::info`), printed; with --replication, the
//! statements that make a restored server a replica.

use crate::cli::InfoArgs;
use anyhow::{Context, Result};

pub fn info(args: InfoArgs, quiet: bool) -> Result<()> {
    let image = coffer::Location::from_path(&args.image);
    super::refuse_terminal(&image)?;
    let info = coffer::read::info(&image, &args.key.sources(), &crate::report::env(quiet, 2))?;
    if args.replication {
        let backup = info.backup.context("this image is not a backup of a server (it has no coffer-backup.json)")?;
        // Refused (one line) unless every value is what a server writes: the SQL is meant to be
        // piped into a client.
        let sql =
            backup.replication_statements()?.context("the backup recorded no binary log position (was log_bin on?)")?;
        print!("{sql}");
        return Ok(());
    }
    if args.json {
        println!("{}", info.to_json());
        return Ok(());
    }
    info.lines().iter().for_each(|l| println!("{l}"));
    Ok(())
}
