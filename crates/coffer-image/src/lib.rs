//! Writing and reading coffer images (format version 1, `docs/FORMAT.md`).
//!
//! One pipeline shape serves every job ([`coffer_pipe`]): a producer, parallel workers and an
//! in-order consumer. What varies are the ends: an [`EntrySource`] (a directory, a stream) and
//! a byte sink when writing; a byte source and a [`Visitor`] (a directory, stdout, nothing)
//! when reading.

pub mod catalog;
mod codec;
#[doc(hidden)]
pub mod craft;
pub mod error;
pub mod header;
pub mod journal;
pub mod read;
pub mod rewrite;
pub mod seek;
pub mod target;
pub mod write;

pub use error::{ImageError, Location, PackPlace};
pub use header::{choose_header, open_header, ChosenHeader, ImageParams, OpenedImage};
pub use read::{NullVisitor, ReadOptions, ReadSummary, Visitor};
pub use rewrite::{read_header_region, rekey, HeaderBackup, HeaderFile};
pub use seek::{IndexedImage, RandomAccess};
pub use target::{RestoreVisitor, StreamVisitor};
pub use write::{
    write_image, DirSource, EntrySource, FileSource, Findings, Inspect, InspectFile, SourceItem, StreamSource,
    WriteSummary,
};

use coffer_crypto::Unlock;
use coffer_format::{EntryMeta, DATA_OFFSET};
use std::io::Read;
use std::sync::Mutex;

/// Reports progress; called from the consumer thread.
pub trait Progress: Sync {
    /// `bytes` more of input (files' logical bytes) are done.
    fn advance(&self, _bytes: u64) {}
    /// An entry was stored.
    fn entry(&self, _meta: &EntryMeta) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Frame-sized buffers, reused: the pipeline bounds how many are in use at once, and reuse
/// spares the allocator (and, on VMs, the host) from handing out fresh pages for every chunk.
#[derive(Debug)]
pub(crate) struct BufPool {
    size: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    pub(crate) fn new(size: usize) -> Self {
        Self { size, free: Mutex::new(Vec::new()) }
    }

    pub(crate) fn get(&self) -> Vec<u8> {
        let reused = self.free.lock().expect("pool lock").pop();
        reused.unwrap_or_else(|| vec![0u8; self.size])
    }

    pub(crate) fn put(&self, buf: Vec<u8>) {
        if buf.len() == self.size {
            self.free.lock().expect("pool lock").push(buf);
        }
    }
}

/// Reads the header region from the start of a stream and unlocks the image: the first step
/// of every read, done before any output is written.
pub fn open_stream(input: &mut (dyn Read + Send), unlocks: &[Unlock]) -> Result<OpenedImage, ImageError> {
    let mut region = vec![0u8; DATA_OFFSET as usize];
    let n = read::read_full(input, &mut region).map_err(error::io("read", "image"))?;
    if n == 0 {
        return Err(ImageError::NotAnImage("the input is empty".into()));
    }
    region.truncate(n);
    open_header(&region, unlocks)
}

/// Reads a whole image from a stream positioned just after the header region (see
/// [`open_stream`]), authenticating every frame and checking the index and END frame.
pub fn read_stream(
    input: &mut (dyn Read + Send),
    image: &OpenedImage,
    visitor: &mut dyn Visitor,
    opts: ReadOptions,
) -> Result<ReadSummary, ImageError> {
    read::read_frames(input, image, read::Scope::Whole, visitor, opts)
}

/// Reads the rest of an image from a checkpoint of an earlier, interrupted read: `input` holds
/// the frames from `point.at.offset` on (after the header region, see [`open_stream`]). Checks
/// the index and END frame against the entries before the checkpoint too.
pub fn read_stream_from(
    input: &mut (dyn Read + Send),
    image: &OpenedImage,
    point: journal::ResumePoint,
    visitor: &mut dyn Visitor,
    opts: ReadOptions,
) -> Result<ReadSummary, ImageError> {
    if point.at.entries == 0 || point.at.offset < DATA_OFFSET || point.records.len() as u64 != point.at.entries {
        return Err(ImageError::Usage("an invalid resume point".into()));
    }
    read::read_frames(input, image, read::Scope::Resume(point), visitor, opts)
}
