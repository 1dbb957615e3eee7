//! coffer's jobs as a library: back up, restore, and the rest, between the places images live.
//!
//! The `coffer` binary parses a command line into the values this crate takes (a [`Location`],
//! a [`SourceSpec`], [`keys::KeySources`]), calls one job, and prints its typed summary. Any
//! program can do the same.
//!
//! - [`location`]: where images are written to and read from (a file, `-`, an object, a TLS
//!   receiver), parsed once from what a user writes.
//! - [`source`]: what a backup reads (a directory, a file, a stream, an xbstream, a server).
//! - [`keys`], [`keyring`]: where secrets come from.
//! - [`backup`], [`restore`], [`read`], [`validate`], [`catalog`], [`slots`],
//!   [`transfer`]: the jobs.
//! - [`error`]: the one error type, and the one table from errors to exit codes.
//! - [`report`]: how a job tells its caller what happens while it runs.
//!
//! ```
//! # fn main() -> coffer::Result<()> {
//! use coffer::backup::{backup_to, BackupSpec, WriterOut};
//!
//! // A directory to back up, and a key the program holds.
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir(dir.path().join("data"))?;
//! std::fs::write(dir.path().join("data/t1.ibd"), b"a tablespace")?;
//! let key = coffer_crypto::MasterKey::generate()?;
//!
//! // Back it up into memory (the location of the spec is not used: the image goes to the writer).
//! let mut spec = BackupSpec::new(
//!     coffer::SourceSpec::Path { path: dir.path().join("data"), name: None },
//!     coffer::Location::Stdio,
//! );
//! spec.keys.master_keys.push(key.clone());
//! let env = coffer::Env::default();
//! let mut image = Vec::new();
//! let summary = backup_to(&spec, Box::new(WriterOut(&mut image)), &env)?;
//! assert_eq!(summary.image.files, 1);
//! assert_eq!(summary.image.image_bytes, image.len() as u64);
//!
//! // Restore it elsewhere, from memory.
//! let mut restore = coffer::restore::RestoreSpec { to: dir.path().join("restored"), ..Default::default() };
//! restore.keys.master_keys.push(key);
//! let restored = coffer::restore::restore_from(&image[..], Some(image.len() as u64), &restore, None, &env)?;
//! assert_eq!(restored.files, 1);
//! assert_eq!(std::fs::read(dir.path().join("restored/t1.ibd"))?, b"a tablespace");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod atomic;
pub mod backup;
mod beside;
pub mod binlog;
pub mod catalog;
pub mod chain;
pub mod drill;
pub mod error;
mod inspect;
pub mod keyring;
pub mod keys;
pub mod lease;
pub mod location;
pub mod net;
pub mod pitr;
pub mod profile;
pub mod prune;
pub mod read;
pub mod report;
pub mod restore;
pub mod retention;
mod server;
pub mod service;
pub mod slots;
pub mod source;
pub mod store;
pub mod text;
pub mod transfer;
pub mod validate;

pub use atomic::AtomicFile;
pub use error::{Context, Error, Result};
pub use inspect::PageCounts;
pub use location::{ImageOut, Location, OutOptions};
pub use report::{Progress, Report, Silent};
pub use source::{ServerOptions, SourceSpec};

use std::sync::Arc;

/// What every job runs with: threads, object storage options, and where it reports.
#[derive(Clone)]
pub struct Env {
    /// Worker threads for compression, encryption and checks.
    pub threads: usize,
    /// How objects are reached (endpoint, upload concurrency, part size, retries).
    pub store: coffer_store::StoreOptions,
    /// Abort uploads at the first SIGINT or SIGTERM (the process's own signals: a program
    /// sets this only if coffer may take them over).
    pub abort_uploads_on_signals: bool,
    /// Where the job says what happens.
    pub report: Arc<dyn Report>,
}

impl Default for Env {
    /// One thread per core, default object storage settings, nothing reported.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            store: coffer_store::StoreOptions::default(),
            abort_uploads_on_signals: false,
            report: Arc::new(Silent),
        }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("threads", &self.threads).field("store", &self.store).finish_non_exhaustive()
    }
}
