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

fn main() -> std::process::ExitCode {
    // Keys pass through this process's memory: keep them out of core dumps and away from
    // other processes of the same user (ptrace). Best effort; Linux only.
    let _ = nix::sys::prctl::set_dumpable(false);
    let command = config::command();
    let argv = match config::apply(&command, std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => return exit::report(&e),
    };
    let matches = command.get_matches_from(argv);
    let cli = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
