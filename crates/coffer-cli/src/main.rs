//! The `coffer` binary: argument parsing, terminals, exit codes. The work is done by the
//! library crates.

mod cli;
mod cmd;
mod exit;
mod keys;
mod output;
mod progress;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
