//! One module per group of commands.

mod backup;
mod binlog;
mod catalog;
mod config;
mod drill;
mod key;
mod list;
mod net;
mod replica;
mod restore;
mod server;
mod validate;

use crate::cli::{Cli, Command};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;

pub fn run(cli: Cli) -> Result<()> {
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let quiet = cli.quiet;
    crate::store::configure(&cli.store);
    match cli.command {
        Command::Key(k) => key::run(k, quiet),
        Command::Header(h) => key::header(h, quiet),
        Command::Keyring(k) => key::keyring(k, quiet),
        Command::Rekey(a) => key::rekey(a, quiet, threads),
        Command::Backup(a) => backup::run(a, quiet, threads),
        Command::Info(a) => server::info(a, quiet),
        Command::Catalog(a) => catalog::catalog(a, quiet),
        Command::Prune(a) => catalog::prune(a, quiet),
        Command::Tls(t) => net::tls_command(t, quiet),
        Command::Binlog(b) => binlog::run(b, quiet),
        // An image is sent as it is; anything else is backed up onto the wire.
        Command::Send(a) if a.send_to.is_some() && !a.source.as_deref().is_some_and(coffer::transfer::is_image) => {
            backup::run(a, quiet, threads)
        }
        Command::Send(a) => net::send(a, quiet, threads),
        Command::Receive(a) => net::receive(a, quiet, threads),
        Command::Restore(a) => restore::restore(a, quiet, threads),
        Command::Extract(a) => restore::extract(a, quiet, threads),
        Command::List(a) => list::list(a, quiet, threads),
        Command::Verify(a) => list::verify(a, quiet, threads),
        Command::Validate(a) => validate::run(a, quiet, threads),
        Command::Drill(a) => drill::run(*a, quiet, threads),
        Command::Replica(c) => replica::run(c, quiet, threads),
        Command::Config(c) => config::run(c, cli.profile, cli.config, quiet),
        Command::Completions { shell } => {
            // Made whole first: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::config::command(), "coffer", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).context("cannot write the completions")
        }
        Command::ManPage => {
            let cmd = crate::config::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("cannot write the manual page")
        }
    }
}

/// Standard output as an unbuffered file (Rust's `Stdout` is line-buffered).
pub fn stdout_file() -> Result<File> {
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned().context("cannot use stdout")?))
}

/// Sets the I/O priority asked for on this process, before the job starts any thread or the
/// engine (Linux keeps it per thread; threads and processes inherit it from their creator).
pub fn io_priority(p: Option<crate::cli::IoPriority>) -> Result<()> {
    if let Some(p) = p {
        coffer_fs::ioprio::set_process(p).context("cannot set the I/O priority (--io-priority)")?;
    }
    Ok(())
}

/// Refuses to read an image from standard input when it is a terminal.
pub fn refuse_terminal(image: &coffer::Location) -> Result<()> {
    if *image == coffer::Location::Stdio && std::io::stdin().is_terminal() {
        return Err(crate::exit::usage("refusing to read an image from a terminal: pipe one in, or name a file"));
    }
    Ok(())
}

/// Refuses to read from standard input (`-`) when it is a terminal.
pub fn refuse_stdin_terminal(path: &std::path::Path) -> Result<()> {
    if path == std::path::Path::new("-") {
        refuse_terminal(&coffer::Location::Stdio)?;
    }
    Ok(())
}

/// Prints a line of a job's outcome, `coffer: LINE` on stderr, unless quiet.
pub fn say(quiet: bool, line: impl std::fmt::Display) {
    if !quiet {
        eprintln!("coffer: {line}");
    }
}

/// Prints a warning unless quiet.
pub fn warn(quiet: bool, msg: impl std::fmt::Display) {
    if !quiet {
        eprintln!("coffer: warning: {msg}");
    }
}
