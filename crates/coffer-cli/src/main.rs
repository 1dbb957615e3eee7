//! The `coffer` binary: argument parsing, terminals, exit codes. The work is done by the
//! library crates.

mod cli;
mod cmd;
mod config;
mod exit;
mod keys;
mod metrics;
mod progress;
mod report;
mod store;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Keys pass through this process's memory: keep them out of core dumps and away from
    // other processes of the same user (ptrace). Best effort; Linux only.
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
