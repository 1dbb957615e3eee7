//! Errors to exit codes: the table is `coffer::Error::exit_code` (documented in the README and in
//! `--help`); this prints the error and applies it.

use std::process::ExitCode;

/// Fails with a usage error (exit code 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(coffer::Error::usage(msg))
}

/// The exit code of `err`: the library's table, for the first cause that decides one
/// (`coffer::error::exit_code`).
pub fn code(err: &anyhow::Error) -> u8 {
    coffer::error::exit_code(err.as_ref())
}

/// Prints the error as one line (context, then causes) and returns its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("coffer: error: {}", one_line(err));
    ExitCode::from(code(err))
}

/// The error and its causes on one line, without repeats.
pub fn one_line(err: &anyhow::Error) -> String {
    coffer::error::one_line(err.as_ref())
}
