//! Reading an image front to back, from a file or a pipe: the producer frames the byte stream,
//! workers authenticate, decrypt and decompress, and the consumer checks the structure (entry
//! order, contiguous chunks, last-chunk flags, the index against what was seen, the END frame)
//! while handing entries and data to a [`Visitor`] in order.
//!
//! Layout: `frames` (the producer), `decode` (the workers), `check` (the consumer) and `index`
//! (the index, taken in record by record).

mod check;
mod decode;
mod frames;
mod index;

pub(crate) use frames::{produce, read_full};
pub(crate) use index::{record_len, IndexRecords, RECORD_FIXED_LEN};

use crate::error::{ImageError, Location};
use crate::header::OpenedImage;
use crate::journal::{Checkpoint, ResumePoint};
use crate::BufPool;
use check::Checker;
use coffer_format::frame::{self, Position, FRAME_HEADER_LEN};
use coffer_format::pack::PackedEntry;
use coffer_format::{EndFields, EntryMeta, FrameHeader, IndexRecord, Segment};
use decode::Worker;
use std::io::Read;

/// Receives an image's entries and data, in image order.
pub trait Visitor {
    /// An entry begins. For files, data and then `end_file` follow.
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError>;
    /// File data at `offset`; ranges not given are holes.
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError>;
    /// The file is complete and `size` bytes long.
    fn end_file(&mut self, size: u64) -> Result<(), ImageError>;
    /// This part of the file ends at `end`; a later entry with `continues` set carries it on
    /// (its `size` is `end`). Until then other entries come.
    fn pause_file(&mut self, _end: u64) -> Result<(), ImageError> {
        Ok(())
    }
    /// An entry is complete and nothing is open or paused: a read could start again here.
    /// Called after every such entry; the visitor decides whether to make it durable.
    fn checkpoint(&mut self, _at: &Checkpoint<'_>) -> Result<(), ImageError> {
        Ok(())
    }
}

/// A visitor that does nothing: for `verify`.
#[derive(Debug, Default)]
pub struct NullVisitor;

impl Visitor for NullVisitor {
    fn entry(&mut self, _: &EntryMeta) -> Result<(), ImageError> {
        Ok(())
    }
    fn data(&mut self, _: u64, _: &[u8]) -> Result<(), ImageError> {
        Ok(())
    }
    fn end_file(&mut self, _: u64) -> Result<(), ImageError> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub threads: usize,
    /// Authenticate chunk frames but neither decompress them nor pass their data on (listing).
    pub skip_data: bool,
}

/// What the frame stream holds.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// A whole image from the first frame to END.
    Whole,
    /// The frames of one entry, or of entries packed in one frame, found through the index:
    /// `entry_no` is the number of the first entry of the frame; `wanted` holds the entries to
    /// hand on, each with its place in the frame (0 unless packed; increasing) and its record
    /// (at least one; every record names the same frames).
    Entry { entry_no: u64, wanted: Vec<(u64, IndexRecord)> },
    /// A whole image, from a checkpoint on (the frames before it were read earlier).
    Resume(ResumePoint),
}

impl Scope {
    /// The record of the (first) entry read through the index: where its frames are.
    fn scoped(&self) -> Option<&IndexRecord> {
        match self {
            Scope::Entry { wanted, .. } => wanted.first().map(|(_, r)| r),
            _ => None,
        }
    }
}

/// What a complete read saw.
#[derive(Debug, Clone, Default)]
pub struct ReadSummary {
    pub entries: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub data_bytes: u64,
    pub image_bytes: u64,
    pub records: Vec<IndexRecord>,
}

/// What a worker made of a frame. Chunk data and index pieces are in the job's buffer (at
/// `data_at`, or `len` bytes from `at`), decompressed.
pub(crate) enum Decoded {
    Pending,
    Entry(EntryMeta),
    Chunk {
        range_start: u64,
        range_end: u64,
        data_at: usize,
        segments: Vec<Segment>,
    },
    Index {
        at: usize,
        len: usize,
    },
    /// A pack's entries; their contents are at `at + data` in the buffer.
    Pack {
        at: usize,
        members: Vec<PackedEntry>,
    },
    End(EndFields),
    Bad {
        truncated: bool,
        detail: String,
    },
}

pub(crate) struct Job {
    pub(crate) offset: u64,
    pub(crate) header: Option<FrameHeader>,
    pub(crate) pos: Position,
    pub(crate) buf: Vec<u8>,
    pub(crate) decoded: Decoded,
}

impl Job {
    fn bad(offset: u64, pos: Position, truncated: bool, detail: impl Into<String>) -> Self {
        Job { offset, header: None, pos, buf: Vec::new(), decoded: Decoded::Bad { truncated, detail: detail.into() } }
    }
    pub(crate) fn frame_len(&self) -> u64 {
        self.header.map_or(0, |h| (FRAME_HEADER_LEN + h.body_len as usize) as u64)
    }
}

/// Runs the read pipeline over `input`, positioned at the first frame of `scope`.
pub(crate) fn read_frames(
    input: &mut (dyn Read + Send),
    image: &OpenedImage,
    scope: Scope,
    visitor: &mut dyn Visitor,
    opts: ReadOptions,
) -> Result<ReadSummary, ImageError> {
    let chunk_size = image.chunk_size();
    let pool = BufPool::new(FRAME_HEADER_LEN + frame::max_body_len(chunk_size));
    let mut checker = Checker::new(visitor, &pool, scope.clone(), opts.skip_data);
    let make_worker = || {
        let mut w = Worker::new(image, pool.get(), opts.skip_data);
        move |job: &mut Job| w.decode(job)
    };
    let producer = |feed: &coffer_pipe::Feed<Job>| produce(input, feed, &pool, image, &scope);
    coffer_pipe::run(coffer_pipe::Shape::for_threads(opts.threads), producer, make_worker, |job| checker.accept(job))?;
    if !checker.complete {
        let at = checker.location(0);
        return Err(ImageError::Truncated { at, detail: "the frames stop before the entry is complete".into() });
    }
    if let Scope::Entry { wanted, .. } = &scope {
        let got = checker.seen.split_off(checker.seen.len().saturating_sub(wanted.len()));
        let unlike = |(got, (_, r)): (&IndexRecord, &(u64, IndexRecord))| {
            got.meta != r.meta || got.chunks != r.chunks || got.size != r.size
        };
        if got.len() != wanted.len() || got.iter().zip(wanted).any(unlike) {
            let offset = wanted.first().map_or(0, |(_, r)| r.frame_offset);
            return Err(ImageError::corrupt(
                Location { offset, ..Location::default() },
                "the entry does not match its index record",
            ));
        }
    }
    Ok(checker.summary)
}
