//! The file-system ends of coffer's pipeline.
//!
//! - [`walk`]: entries of a directory tree, in a stable order, with hard links and owners, read
//!   through directory handles so that nothing outside the tree is ever opened.
//! - [`source`]: cutting a file (sparse-aware) or a stream into chunks.
//! - [`rate`]: holding what is read or written to a rate (`--limit-rate`).
//! - [`ioprio`]: the I/O scheduling class of the process (`--io-priority`).
//! - [`sync`]: making names durable (flushing the directory that holds them).
//! - [`tmp`]: output files under temporary names, and removing those a killed run left.
//! - [`private`]: private working directories, locked while in use, and removing those a
//!   killed run left.
//! - [`trust`]: whether another user could change a file coffer trusts (a program, a key).
//! - [`restore`]: recreating entries under a target directory without ever leaving it, and
//!   making the result durable with one `syncfs` instead of an `fsync` per file.
//!
//! Linux-first: `SEEK_DATA`/`SEEK_HOLE`, `syncfs` and `sync_file_range` are used where they exist.

pub(crate) mod at;
pub mod confine;
pub mod ioprio;
pub mod owner;
pub mod private;
pub mod rate;
pub mod read;
pub mod restore;
pub mod sink;
pub mod source;
pub mod sync;
pub mod tmp;
pub mod trust;
pub mod walk;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{}: target directory is not empty (use --force to restore into it anyway)", .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Another restore holds the target's lock: it is writing there now.
    #[error("{}: another restore is writing into it now (it holds the target's lock): refusing to write beside it", .0.display())]
    Running(PathBuf),
    /// A whole-tree restore of `image` into a target holding files and the marker of an
    /// interrupted restore it may not continue: of another image, one that does not say, or one
    /// still running.
    #[error("{}", restore::refusal(path, marked, image, *running))]
    Interrupted { path: PathBuf, marked: restore::MarkedBy, image: [u8; 16], running: bool },
    /// The image asks for something that would write outside the target, or through a symlink.
    #[error("unsafe entry {path:?}: {detail}")]
    Unsafe { path: String, detail: String },
    #[error("{}: {detail}", path.display())]
    Changed { path: PathBuf, detail: String },
}

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.into();
    move |source| FsError::Io { op, path, source }
}

pub(crate) fn nix_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(nix::Error) -> FsError {
    let path = path.into();
    move |e| FsError::Io { op, path, source: std::io::Error::from(e) }
}
