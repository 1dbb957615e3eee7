//! Errors to exit codes: the table is `coffer::Error::exit_code` (documented in the README and in
//! `--help`); this prints the error and applies it.

use coffer_image::ImageError;
use std::process::ExitCode;

use coffer::error::exit::FAILURE;

/// Fails with a usage error (exit code 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(coffer::Error::usage(msg))
}

/// The exit code of `err`: the library's table (`coffer::Error::exit_code`), for the first
/// cause that is a library error or an image error.
pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<coffer::Error>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<ImageError>() {
            return coffer::error::image_exit_code(e);
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
