//! The one table from errors to exit codes (documented in the README and in `--help`).

use coffer_image::ImageError;
use std::process::ExitCode;

pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const WRONG_KEY: u8 = 3;
pub const CORRUPT: u8 = 4;
pub const CORRUPT_PAGES: u8 = 5;

/// A mistake in how coffer was called, found after argument parsing.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// Validation found corrupt InnoDB pages (exit code 5).
#[derive(Debug)]
pub struct CorruptPages(pub String);

impl std::fmt::Display for CorruptPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for CorruptPages {}

/// Fails with a usage error (exit code 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<coffer::Error>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<ImageError>() {
            return match e {
                ImageError::WrongKey
                | ImageError::SlotsNotTried(_)
                | ImageError::Unsigned
                | ImageError::ForeignSigner(_) => WRONG_KEY,
                ImageError::Refused(_) => CORRUPT_PAGES,
                e if e.is_integrity() => CORRUPT,
                ImageError::Usage(_) => USAGE,
                _ => FAILURE,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return USAGE;
        }
        if cause.downcast_ref::<CorruptPages>().is_some() {
            return CORRUPT_PAGES;
        }
    }
    FAILURE
}

/// Prints the error as one line (context, then causes) and returns its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("coffer: error: {}", one_line(err));
    ExitCode::from(code(err))
}

/// The error and its causes on one line, without repeats.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut first = true;
    for cause in err.chain() {
        let text = cause.to_string();
        if !first {
            if line.ends_with(&text) {
                continue;
            }
            line.push_str(": ");
        }
        line.push_str(&text);
        first = false;
    }
    line
}
