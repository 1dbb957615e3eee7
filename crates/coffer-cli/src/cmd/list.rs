//! `coffer list` and `coffer verify`: an image's entries (`coffer::read::list`), its frames
//! authenticated (`coffer::read::verify`, or its chain's with --chain), printed.

use super::refuse_terminal;
use crate::cli::{ListArgs, VerifyArgs};
use anyhow::Result;
use coffer::Location;
use serde_json::json;
use std::io::Write;

pub fn list(args: ListArgs, quiet: bool, threads: usize) -> Result<()> {
    let image = Location::from_path(&args.image);
    refuse_terminal(&image)?;
    let listing = coffer::read::list(&image, &args.key.sources(), &crate::report::env(quiet, threads))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = if args.tables && args.json {
        serde_json::to_writer_pretty(&mut out, &listing.tables())
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else if args.tables {
        listing.table_lines().iter().try_for_each(|l| writeln!(out, "{l}"))
    } else if args.json {
        serde_json::to_writer_pretty(&mut out, &listing.to_json())
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        listing.lines(args.long).try_for_each(|l| writeln!(out, "{l}"))
    };
    match result.and_then(|()| out.flush()) {
        // `coffer list | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn verify(args: VerifyArgs, quiet: bool, threads: usize) -> Result<()> {
    if args.chain {
        return verify_chain(&args, quiet, threads);
    }
    let result = verify_image(&args, quiet, threads);
    match (&result, args.json) {
        (Ok(v), true) => println!("{}", v.to_json(&args.image)),
        (Ok(v), false) if !quiet => println!("coffer: {}", v.line(&args.image)),
        (Ok(_), false) => {}
        (Err(e), true) => {
            println!(
                "{}",
                json!({"ok": false, "image": args.image, "error": format!("{e:#}"), "exit_code": crate::exit::code(e)})
            );
        }
        (Err(_), false) => {}
    }
    result.map(|_| ())
}

/// `verify --chain`: the chain resolved and its links checked, then every image verified.
fn verify_chain(args: &VerifyArgs, quiet: bool, threads: usize) -> Result<()> {
    let image = Location::from_path(&args.image);
    if matches!(image, Location::Stdio) {
        return Err(crate::exit::usage("--chain needs the image as a file or object (its chain is found beside it)"));
    }
    let env = crate::report::env(quiet, threads);
    let bases: Vec<Location> = args.base.iter().map(|b| Location::from_path(b)).collect();
    let plan = coffer::server::prepare::plan(&image, &bases, &args.key.sources(), &env)?;
    let Some(chain) = &plan.chain else {
        // A full backup (or no server backup) is a chain of its own.
        return verify(VerifyArgs { chain: false, ..args.clone() }, quiet, threads);
    };
    if !quiet && !args.json {
        eprintln!("coffer: the chain of {} backups is linked (ids, server, LSNs)", chain.len());
    }
    let verified = plan.verify_chain(&env, |member| match member.line() {
        Ok(line) if !quiet && !args.json => println!("coffer: {line}"),
        Err(line) if !args.json => eprintln!("coffer: {line}"),
        _ => {}
    });
    if args.json {
        println!("{}", verified.to_json());
    }
    Ok(verified.outcome()?)
}

fn verify_image(args: &VerifyArgs, quiet: bool, threads: usize) -> Result<coffer::read::Verified> {
    let image = Location::from_path(&args.image);
    refuse_terminal(&image)?;
    Ok(coffer::read::verify_timed(&image, &args.key.sources(), &crate::report::env(quiet, threads))?)
}
