//! `coffer info`: what an image holds (`coffer::read::info`), printed; with --replication, the
//! statements that make a restored server a replica.

use crate::cli::InfoArgs;
use anyhow::Result;

pub fn info(args: InfoArgs, quiet: bool) -> Result<()> {
    let image = coffer::Location::from_path(&args.image);
    super::refuse_terminal(&image)?;
    let info = coffer::read::info(&image, &args.key.sources(), &crate::report::env(quiet, 2))?;
    if args.replication {
        print!("{}", info.replication()?);
        return Ok(());
    }
    if args.json {
        println!("{}", info.to_json());
        return Ok(());
    }
    info.lines().iter().for_each(|l| println!("{l}"));
    Ok(())
}
