//! The error of every job, and the one table from errors to exit codes.
//!
//! An [`Error`] keeps the context of each step that led to it (what was being done, outermost
//! first), so that it prints as one line: `cannot restore into /x: /x/a: permission denied`.

use coffer_image::ImageError;
use std::fmt::Display;

/// A job's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A mistake in how the job was asked for, found after the arguments were parsed.
    #[error("{0}")]
    Usage(String),
    /// InnoDB validation found corrupt pages.
    #[error("{0}")]
    CorruptPages(String),
    /// Reading or writing an image failed (its kind decides the exit code).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A failure described by its message alone.
    #[error("{0}")]
    Failed(String),
    /// A failure of a lower layer (file system, object store, network, engine).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// `source`, while doing what `context` says.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// The process exit codes (documented in the README and in `coffer --help`).
pub mod exit {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// A mistake in how coffer was called.
    pub const USAGE: u8 = 2;
    /// No secret given opens the image, or its signer is not the one required.
    pub const WRONG_KEY: u8 = 3;
    /// The image is damaged or was tampered with.
    pub const CORRUPT: u8 = 4;
    /// InnoDB validation found corrupt pages.
    pub const CORRUPT_PAGES: u8 = 5;
}

impl Error {
    /// The image error inside this one (under any context), to add to what it says.
    pub fn image_error_mut(&mut self) -> Option<&mut ImageError> {
        match self {
            Error::Image(e) => Some(e),
            Error::Context { source, .. } => source.image_error_mut(),
            _ => None,
        }
    }

    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// A failure described by `msg`.
    pub fn msg(msg: impl Display) -> Self {
        Error::Failed(msg.to_string())
    }

    /// Wraps any lower-layer error.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Other(Box::new(e))
    }

    /// This error, while doing what `context` says.
    pub fn context(self, context: impl Display) -> Self {
        Error::Context { context: context.to_string(), source: Box::new(self) }
    }

    /// The exit code for this error: the first cause, outermost first, that decides one.
    pub fn exit_code(&self) -> u8 {
        exit_code(self)
    }

    /// The error and its causes on one line, without repeats.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// The exit code of any error (a program's own, wrapping coffer's): the first cause, outermost
/// first, that decides one; [`exit::FAILURE`] if none does.
pub fn exit_code(err: &(dyn std::error::Error + 'static)) -> u8 {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(code) = decided(e) {
            return code;
        }
        cause = match e.downcast_ref::<Error>() {
            // Transparent variants show their inner error's text: look at it, not past it.
            Some(Error::Image(inner)) => return image_exit_code(inner),
            Some(Error::Other(inner)) => Some(inner.as_ref()),
            Some(Error::Context { source, .. }) => Some(source.as_ref()),
            _ => e.source(),
        };
    }
    exit::FAILURE
}

/// The exit code a cause decides, if it decides one.
fn decided(e: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(e) = e.downcast_ref::<ImageError>() {
        return Some(image_exit_code(e));
    }
    match e.downcast_ref::<Error>()? {
        Error::Usage(_) => Some(exit::USAGE),
        Error::CorruptPages(_) => Some(exit::CORRUPT_PAGES),
        Error::Image(i) => Some(image_exit_code(i)),
        _ => None,
    }
}

/// The exit code of an image error.
pub fn image_exit_code(e: &ImageError) -> u8 {
    match e {
        ImageError::WrongKey | ImageError::SlotsNotTried(_) | ImageError::Unsigned | ImageError::ForeignSigner(_) => {
            exit::WRONG_KEY
        }
        ImageError::Refused(_) => exit::CORRUPT_PAGES,
        e if e.is_integrity() => exit::CORRUPT,
        ImageError::Usage(_) => exit::USAGE,
        _ => exit::FAILURE,
    }
}

/// `err` and its causes on one line, each once: "context: cause: cause".
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let text = e.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

macro_rules! from_lower {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Other(Box::new(e))
            }
        }
    )*};
}

from_lower!(
    std::io::Error,
    std::num::ParseIntError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    coffer_format::FormatError,
    coffer_crypto::CryptoError,
    coffer_fs::FsError,
    coffer_mysql::engine::EngineError,
    coffer_mysql::meta::MetaError,
    coffer_mysql::xbstream::XbError,
    coffer_net::pki::PkiError,
    coffer_net::tls::TlsError,
    coffer_net::wire::WireError,
    coffer_store::StoreError,
    nix::Error,
    serde_json::Error,
);

/// Adds context to a failure, as each step of a job says what it was doing.
pub trait Context<T> {
    /// On failure, says what was being done.
    fn context(self, context: impl Display) -> Result<T>;
    /// On failure, says what was being done (the text made only then).
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}

/// Returns early with a failure described by a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::msg(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_outermost_deciding_cause() {
        let wrong = Error::from(ImageError::WrongKey).context("cannot open x");
        assert_eq!(wrong.exit_code(), exit::WRONG_KEY);
        assert_eq!(Error::usage("no").context("a").context("b").exit_code(), exit::USAGE);
        assert_eq!(Error::CorruptPages("p".into()).exit_code(), exit::CORRUPT_PAGES);
        assert_eq!(Error::msg("plain").exit_code(), exit::FAILURE);
        let io = Error::from(std::io::Error::other("disk")).context("cannot write");
        assert_eq!(io.exit_code(), exit::FAILURE);
        let refused = Error::from(ImageError::Refused("corrupt page".into())).context("backup failed");
        assert_eq!(refused.exit_code(), exit::CORRUPT_PAGES);
    }

    /// A caller's error that names a cause (as a program's context around a job's error does).
    #[derive(Debug)]
    struct Around(&'static str, Error);

    impl std::fmt::Display for Around {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Around {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn a_callers_error_around_a_job_error_has_its_exit_code_and_line() {
        let e = Around("while asked", Error::from(ImageError::WrongKey).context("cannot open x"));
        assert_eq!(exit_code(&e), exit::WRONG_KEY);
        assert_eq!(exit_code(&Around("outer", Error::usage("no"))), exit::USAGE);
        assert_eq!(exit_code(&Around("outer", Error::msg("plain"))), exit::FAILURE);
        assert_eq!(exit_code(&std::io::Error::other("disk")), exit::FAILURE);
        assert_eq!(one_line(&Around("cannot go on", Error::msg("x is gone"))), "cannot go on: x is gone");
        assert_eq!(one_line(&Around("x is gone", Error::msg("x is gone"))), "x is gone");
    }

    #[test]
    fn one_line_joins_contexts_without_repeats() {
        let e = Error::from(std::io::Error::other("disk full")).context("cannot write out").context("backup failed");
        assert_eq!(e.one_line(), "backup failed: cannot write out: disk full");
        let e = Error::msg("x is gone").context("x is gone");
        assert_eq!(e.one_line(), "x is gone");
    }
}
