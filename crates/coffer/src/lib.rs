//! coffer's jobs as a library: back up, restore, and the rest, between the places images live.
//!
//! The `coffer` binary parses a command line into the values this crate takes (a [`Location`],
//! a [`SourceSpec`], [`keys::KeySources`]), calls one job, and prints its typed summary. Any
//! program can do the same. The crate is built in floors; a module uses only its own floor and
//! those below it, and no two modules use each other (docs/ARCHITECTURE.md draws it, and
//! `tests/house.rs` checks it):
//!
//! - foundations: [`error`] (the one error type and the one table from errors to exit codes),
//!   [`report`] (how a job tells its caller what happens), [`text`], [`names`].
//! - secrets: [`keyring`], [`keys`].
//! - images and places: [`location`] (a file, `-`, an object, a TLS receiver), [`store`],
//!   [`net`], [`read`] (opening an image: list, verify, info).
//! - the repository ([`repo`]): what lies under a prefix, read and planned, never acted on.
//! - the jobs: [`backup`] (from a [`source`]), [`restore`], [`validate`], [`transfer`],
//!   [`slots`], [`binlog`] (the archiver).
//! - the server wing ([`server`]): prepare and chain restores, point-in-time recovery, seeding
//!   a replica, drills.
//! - services and profiles: [`service`] (a report sink for a job run as a service: systemd,
//!   Prometheus metrics), [`profile`] (configuration files whose keys are the commands' options).
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
pub mod binlog;
pub mod error;
mod inspect;
pub mod keyring;
pub mod keys;
pub mod location;
pub mod names;
pub mod net;
pub mod profile;
pub mod read;
pub mod repo;
pub mod report;
pub mod restore;
pub mod room;
pub mod server;
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
