//! Writing an image: entries from a source, cut into chunks by the producer, compressed and
//! sealed by the workers, written in order by the consumer, which also builds the index and
//! writes it and the END frame once the source is exhausted.

use crate::codec::Compressor;
use crate::error::{io, ImageError};
use crate::header::ImageParams;
use crate::{BufPool, Progress};
use coffer_crypto::{ImageKeys, SlotSecret};
use coffer_format::chunk::{encode_segments, CHUNK_PREFIX_LEN};
use coffer_format::frame::{self, Position, FRAME_HEADER_LEN};
use coffer_format::index::{encode_index_prefix, INDEX_PREFIX_LEN};
use coffer_format::pack::{
    encode_member_head, encode_pack_prefix, index_bytes, MAX_INDEX_RATIO, MAX_MEMBERS, MEMBER_HEAD_LEN, PACK_PREFIX_LEN,
};
use coffer_format::{
    ChunkHeader, Codec, EndFields, EntryKind, EntryMeta, FrameHeader, FrameKind, IndexRecord, Segment, TAG_LEN,
};
use coffer_fs::source::{ChunkReader, FileChunker, PlannedRead, Span, StreamChunker};
use coffer_fs::walk::Walker;
use coffer_fs::FsError;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Offset of chunk data inside a frame buffer: frame header, then the chunk prefix.
const DATA_AT: usize = FRAME_HEADER_LEN + CHUNK_PREFIX_LEN;
/// Offset of a pack's raw bytes (its members) inside a frame buffer.
const RAW_AT: usize = FRAME_HEADER_LEN + PACK_PREFIX_LEN;

/// One entry to store, with its contents if it is a file.
pub struct SourceItem {
    pub meta: EntryMeta,
    pub data: Option<Box<dyn ChunkReader>>,
    /// Where a file's contents come from on disk, for inspectors that read its head.
    pub source: Option<PathBuf>,
    /// The file the contents are read from, for inspectors: they read the same file, never one
    /// that replaced it under `source` meanwhile (if `data` does not give it, see
    /// `ChunkReader::file`).
    pub opened: Option<std::fs::File>,
}

/// Checks file contents while they are backed up (coffer validates InnoDB pages with it),
/// without a second read: workers inspect each chunk before compressing it, and the findings
/// are reported in image order.
pub trait Inspect: Sync {
    /// A checker for this file, or `None` to leave it alone. Called by the reading thread.
    fn file(&self, meta: &EntryMeta, source: &std::path::Path, file: &std::fs::File) -> Option<Arc<dyn InspectFile>>;
    /// The findings of one chunk of `path`, in image order. An error refuses the backup.
    fn report(&self, path: &[u8], findings: Findings) -> Result<(), String>;
}

/// The checker of one file; called on worker threads, chunks in any order.
pub trait InspectFile: Send + Sync {
    /// Chunks end on multiples of this (a page size), so no unit of inspection is cut.
    fn align(&self) -> u64;
    fn chunk(&self, span: &Span, segments: &[Segment], data: &[u8]) -> Findings;
}

/// What an inspector found in a chunk: units checked (pages) and problems, one line each.
#[derive(Debug, Default)]
pub struct Findings {
    pub units: u64,
    pub problems: Vec<String>,
}

impl std::fmt::Debug for SourceItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceItem").field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// Where entries come from: a directory tree, a stream, (later) an xbstream.
pub trait EntrySource: Send {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError>;
    /// Things met but not stored (sockets, FIFOs, devices), for a warning.
    fn skipped(&self) -> &[PathBuf] {
        &[]
    }
    /// What the source says of the backup once it is exhausted (a server backup's description,
    /// JSON), for the catalog record.
    fn description(&self) -> Option<Vec<u8>> {
        None
    }
    /// After the backup failed while reading this source: the cause behind it, when the
    /// source knows a truer one (a backup engine that died mid-stream says why; the stream it
    /// left is merely cut short).
    fn cause_of_failure(&mut self) -> Option<ImageError> {
        None
    }
}

/// The entries of a directory tree. The walk runs on a thread of its own, up to
/// [`WALK_AHEAD`] entries ahead of the reading: looking up names and inodes of cold files takes
/// a disk read each, which would otherwise wait behind the data reads in flight and leave the
/// workers idle (measured on 20,000 small cold files: the walking thread was the bottleneck).
#[derive(Debug)]
pub struct DirSource {
    walk: Walk,
}

/// Entries the walk may run ahead (each file among them holds a descriptor).
pub const WALK_AHEAD: usize = 128;

#[derive(Debug)]
enum Walk {
    /// Not started yet (a source that is never read spawns nothing).
    Idle(Walker),
    Running {
        items: crossbeam_channel::Receiver<Result<coffer_fs::walk::WalkItem, FsError>>,
        thread: std::thread::JoinHandle<Walker>,
    },
    /// The walk is over; the walker is kept for what it skipped.
    Done(Walker),
    Failed,
}

impl DirSource {
    pub fn new(walker: Walker) -> Self {
        Self { walk: Walk::Idle(walker) }
    }

    /// The next entry of the walk, starting it on its thread the first time.
    fn next_walked(&mut self) -> Result<Option<coffer_fs::walk::WalkItem>, ImageError> {
        if let Walk::Idle(_) = self.walk {
            let Walk::Idle(mut walker) = std::mem::replace(&mut self.walk, Walk::Failed) else { unreachable!() };
            let (tx, rx) = crossbeam_channel::bounded(WALK_AHEAD);
            let thread = std::thread::Builder::new()
                .name("coffer-walk".into())
                .spawn(move || {
                    for item in walker.by_ref() {
                        let failed = item.is_err();
                        // The reader stopped (it failed elsewhere): so does the walk.
                        if tx.send(item).is_err() || failed {
                            break;
                        }
                    }
                    walker
                })
                .map_err(crate::error::io("start a thread for", "the walk"))?;
            self.walk = Walk::Running { items: rx, thread };
        }
        let Walk::Running { items, .. } = &self.walk else { return Ok(None) };
        match items.recv() {
            Ok(Ok(item)) => Ok(Some(item)),
            Ok(Err(e)) => {
                self.walk = Walk::Failed;
                Err(e.into())
            }
            Err(_) => {
                let Walk::Running { thread, .. } = std::mem::replace(&mut self.walk, Walk::Failed) else {
                    unreachable!()
                };
                match thread.join() {
                    Ok(walker) => {
                        self.walk = Walk::Done(walker);
                        Ok(None)
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
    }
}

impl EntrySource for DirSource {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        let Some(item) = self.next_walked()? else { return Ok(None) };
        // Read from the file the walk opened and checked (never reopened by path: see
        // `Walker`); inspectors read it too (`ChunkReader::file`).
        let data: Option<Box<dyn ChunkReader>> = match (item.file, &item.source) {
            (Some(file), Some(path)) => Some(Box::new(FileChunker::walked(file, path, item.sparse, item.meta.size))),
            _ => None,
        };
        Ok(Some(SourceItem { meta: item.meta, data, source: item.source, opened: None }))
    }

    fn skipped(&self) -> &[PathBuf] {
        match &self.walk {
            Walk::Done(walker) | Walk::Idle(walker) => &walker.skipped,
            _ => &[],
        }
    }
}

/// A single regular file stored as one entry under a name of the caller's choosing.
#[derive(Debug)]
pub struct FileSource {
    item: Option<(EntryMeta, PathBuf, std::fs::File, bool)>,
}

impl FileSource {
    pub fn new(path: &std::path::Path, name: Vec<u8>) -> Result<Self, ImageError> {
        use std::os::unix::fs::MetadataExt;
        // Opened once: the metadata and the contents come from the same file, even if the
        // path is replaced meanwhile.
        let file = std::fs::File::open(path).map_err(crate::error::io("open", path))?;
        let md = file.metadata().map_err(crate::error::io("stat", path))?;
        if !md.is_file() {
            return Err(ImageError::Usage(format!("{} is not a regular file", path.display())));
        }
        let mut names = coffer_fs::owner::NameCache::default();
        let meta = EntryMeta {
            kind: EntryKind::File,
            continues: false,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime_sec: md.mtime(),
            mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
            size: md.size(),
            path: name,
            target: Vec::new(),
            uname: names.user_name(md.uid()),
            gname: names.group_name(md.gid()),
        };
        Ok(Self { item: Some((meta, path.into(), file, md.blocks() * 512 < md.size())) })
    }
}

impl EntrySource for FileSource {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        let Some((meta, path, file, sparse)) = self.item.take() else { return Ok(None) };
        let opened = file.try_clone().map_err(crate::error::io("duplicate the handle of", &path))?;
        let chunker = FileChunker::from_file(file, &path, sparse)?;
        Ok(Some(SourceItem { meta, data: Some(Box::new(chunker)), source: Some(path), opened: Some(opened) }))
    }
}

/// A single stream (stdin) stored as one file entry.
pub struct StreamSource<R> {
    stream: Option<(EntryMeta, R)>,
}

impl<R> std::fmt::Debug for StreamSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSource")
    }
}

impl<R: std::io::Read + Send + 'static> StreamSource<R> {
    pub fn new(meta: EntryMeta, reader: R) -> Self {
        Self { stream: Some((meta, reader)) }
    }
}

impl<R: std::io::Read + Send + 'static> EntrySource for StreamSource<R> {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        Ok(self.stream.take().map(|(meta, reader)| {
            let name = PathBuf::from(String::from_utf8_lossy(&meta.path).into_owned());
            SourceItem {
                meta,
                data: Some(Box::new(StreamChunker::new(reader, name)) as Box<dyn ChunkReader>),
                source: None,
                opened: None,
            }
        }))
    }
}

/// What a finished image holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub entries: u64,
    pub files: u64,
    /// Sum of the files' sizes, holes included.
    pub logical_bytes: u64,
    /// Bytes of file data read, holes excluded.
    pub data_bytes: u64,
    /// Bytes of image written.
    pub image_bytes: u64,
    pub image_id: [u8; 16],
}

struct Job {
    kind: FrameKind,
    pos: Position,
    last: bool,
    /// With `last`: the file continues in a later entry (`FLAG_PAUSE`).
    pause: bool,
    /// Data for the worker to read before sealing (dense files).
    read: Option<PlannedRead>,
    /// A worker's read failed.
    error: Option<FsError>,
    inspect: Option<Arc<dyn InspectFile>>,
    findings: Option<Findings>,
    buf: Vec<u8>,
    /// Frame length once sealed.
    len: usize,
    segments: Vec<Segment>,
    span: Span,
    meta: Option<EntryMeta>,
    /// The entries of a PACK frame, laid out in `buf` from `RAW_AT` on (`raw_len` bytes).
    members: Vec<Member>,
    raw_len: usize,
}

impl Job {
    fn new(kind: FrameKind, pos: Position, buf: Vec<u8>) -> Self {
        Job {
            kind,
            pos,
            last: false,
            pause: false,
            read: None,
            error: None,
            inspect: None,
            findings: None,
            buf,
            len: 0,
            segments: Vec::new(),
            span: Span { range_start: 0, range_end: 0, len: 0, last: false },
            meta: None,
            members: Vec::new(),
            raw_len: 0,
        }
    }
}

/// A whole entry in a PACK frame: its metadata is in the frame buffer already; a file's
/// contents go at `data_at`, read by the worker (`read`) or copied there by the producer.
struct Member {
    meta: EntryMeta,
    data_at: usize,
    len: usize,
    read: Option<PlannedRead>,
    inspect: Option<Arc<dyn InspectFile>>,
    findings: Option<Findings>,
}

/// The largest file packed by default with chunk size `chunk_size`: a quarter of a chunk, and
/// at most 256 KiB, so every pack holds at least four files and large files keep chunks of
/// their own (which read and compress on every core).
pub fn default_pack_limit(chunk_size: u32) -> u32 {
    (chunk_size / 4).min(256 * 1024)
}

/// Seals the plaintext at `buf[8..8 + plain_len]` as a frame; returns the frame length.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_frame(
    keys: &ImageKeys,
    image_id: &[u8; 16],
    pos: Position,
    kind: FrameKind,
    flags: u8,
    members: u16,
    buf: &mut [u8],
    plain_len: usize,
) -> usize {
    let fh = FrameHeader { kind, flags, members, body_len: (plain_len + TAG_LEN) as u32 };
    buf[..FRAME_HEADER_LEN].copy_from_slice(&fh.encode());
    let aad = frame::aad(image_id, pos, &fh);
    let end = FRAME_HEADER_LEN + plain_len;
    let tag = keys.seal(pos.seq, &aad, &mut buf[FRAME_HEADER_LEN..end]);
    buf[end..end + TAG_LEN].copy_from_slice(&tag);
    end + TAG_LEN
}

struct Worker<'a> {
    keys: &'a ImageKeys,
    image_id: [u8; 16],
    compressor: Compressor,
    scratch: Vec<u8>,
    meta_buf: Vec<u8>,
}

impl Worker<'_> {
    fn seal(&mut self, job: &mut Job) {
        if let Some(read) = job.read.take() {
            if let Err(e) = read.read_into(&mut job.buf[DATA_AT..]) {
                job.error = Some(e);
                return;
            }
        }
        if let Some(inspect) = job.inspect.take() {
            let data = &job.buf[DATA_AT..DATA_AT + job.span.len];
            job.findings = Some(inspect.chunk(&job.span, &job.segments, data));
        }
        let plain_len = match job.kind {
            FrameKind::Entry => {
                self.meta_buf.clear();
                job.meta.as_ref().expect("entry job has metadata").encode(&mut self.meta_buf);
                job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + self.meta_buf.len()].copy_from_slice(&self.meta_buf);
                self.meta_buf.len()
            }
            FrameKind::Chunk => self.prepare_chunk(job),
            FrameKind::Pack => match self.prepare_pack(job) {
                Ok(n) => n,
                Err(e) => {
                    job.error = Some(e);
                    return;
                }
            },
            FrameKind::Index | FrameKind::End => unreachable!("index and end frames are sealed by the writer"),
        };
        let flags = if job.last { frame::FLAG_LAST } else { 0 } | if job.pause { frame::FLAG_PAUSE } else { 0 };
        // The producer never packs more than MAX_MEMBERS entries.
        let members = job.members.len() as u16;
        job.len = seal_frame(self.keys, &self.image_id, job.pos, job.kind, flags, members, &mut job.buf, plain_len);
    }

    /// Reads the members' contents into place, inspects them, compresses the pack if that makes
    /// it smaller, and lays out the pack plaintext.
    fn prepare_pack(&mut self, job: &mut Job) -> Result<usize, FsError> {
        for m in &mut job.members {
            let data = &mut job.buf[m.data_at..m.data_at + m.len];
            if let Some(read) = m.read.take() {
                read.read_into(data)?;
            }
            if let Some(inspect) = m.inspect.take() {
                let span = Span { range_start: 0, range_end: m.len as u64, len: m.len, last: true };
                let segments = [Segment { offset: 0, len: m.len as u32 }];
                let segments = if m.len == 0 { &segments[..0] } else { &segments[..] };
                m.findings = Some(inspect.chunk(&span, segments, data));
            }
        }
        let raw = job.raw_len;
        let mut codec = Codec::None;
        let mut stored = raw;
        let (src, dst) = (&job.buf[RAW_AT..RAW_AT + raw], &mut self.scratch[RAW_AT..]);
        let index_bytes = index_bytes(job.members.iter().map(|m| &m.meta));
        if let Some((c, n)) = self.compressor.compress(src, dst) {
            // Compressed too well, the pack would carry more index than a reader accepts.
            let frame_len = (RAW_AT + n + TAG_LEN) as u64;
            if index_bytes <= MAX_INDEX_RATIO * frame_len {
                std::mem::swap(&mut job.buf, &mut self.scratch);
                codec = c;
                stored = n;
            }
        }
        encode_pack_prefix(codec, raw as u32, &mut job.buf[FRAME_HEADER_LEN..RAW_AT]);
        Ok(PACK_PREFIX_LEN + stored)
    }

    /// Compresses the chunk data if that makes it smaller, and lays out the chunk plaintext.
    fn prepare_chunk(&mut self, job: &mut Job) -> usize {
        let raw = job.span.len;
        let mut codec = Codec::None;
        let mut stored = raw;
        if raw > 1 {
            let (src, dst) = (&job.buf[DATA_AT..DATA_AT + raw], &mut self.scratch[DATA_AT..]);
            if let Some((c, n)) = self.compressor.compress(src, dst) {
                std::mem::swap(&mut job.buf, &mut self.scratch);
                codec = c;
                stored = n;
            }
        }
        let header = ChunkHeader {
            codec,
            raw_len: raw as u32,
            range_start: job.span.range_start,
            range_end: job.span.range_end,
            segments: job.segments.len() as u32,
            stored_len: stored as u32,
        };
        header.encode_into(&mut job.buf[FRAME_HEADER_LEN..DATA_AT]);
        encode_segments(&job.segments, &mut job.buf[DATA_AT + stored..]);
        header.plaintext_len()
    }
}

/// Builds index records from the frames as they are written.
struct Assembler<'a, W: Write> {
    sink: W,
    offset: u64,
    records: Vec<IndexRecord>,
    current: Option<IndexRecord>,
    pool: &'a BufPool,
    progress: &'a dyn Progress,
    inspector: Option<&'a dyn Inspect>,
    summary: WriteSummary,
}

impl<W: Write> Assembler<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.sink.write_all(bytes).map_err(io("write", "image"))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn accept(&mut self, mut job: Job) -> Result<(), ImageError> {
        if let Some(e) = job.error.take() {
            self.pool.put(std::mem::take(&mut job.buf));
            return Err(e.into());
        }
        let start = self.offset;
        let frame = std::mem::take(&mut job.buf);
        let result = self.write(&frame[..job.len]);
        self.pool.put(frame);
        result?;
        match job.kind {
            FrameKind::Entry => {
                self.records.extend(self.current.take());
                let meta = job.meta.take().expect("entry job has metadata");
                self.progress.entry(&meta);
                self.summary.entries += 1;
                self.current = Some(IndexRecord {
                    frame_offset: start,
                    first_seq: job.pos.seq,
                    frames_len: 0,
                    chunks: 0,
                    size: 0,
                    data_bytes: 0,
                    meta,
                });
            }
            FrameKind::Chunk => {
                let rec = self.current.as_mut().expect("a chunk follows an entry");
                if let (Some(findings), Some(inspector)) = (job.findings.take(), self.inspector) {
                    inspector.report(&rec.meta.path, findings).map_err(ImageError::Refused)?;
                }
                rec.chunks += 1;
                rec.data_bytes += job.span.len as u64;
                if job.last {
                    // A part's bytes count once; a file counts when its last part is written.
                    let start = if rec.meta.continues { rec.meta.size } else { 0 };
                    rec.size = job.span.range_end;
                    // The reader refuses sizes that add up past 2^64 (sparse files can claim that).
                    let total = self.summary.logical_bytes.checked_add(rec.size - start);
                    self.summary.logical_bytes =
                        total.ok_or_else(|| ImageError::Source("the files add up to more than 2^64 bytes".into()))?;
                    if !job.pause {
                        self.summary.files += 1;
                    }
                }
                self.summary.data_bytes += job.span.len as u64;
                self.progress.advance(job.span.range_end - job.span.range_start);
            }
            FrameKind::Pack => {
                self.records.extend(self.current.take());
                return self.accept_pack(job, start);
            }
            FrameKind::Index | FrameKind::End => unreachable!(),
        }
        let rec = self.current.as_mut().expect("an entry is open");
        rec.frames_len = self.offset - rec.frame_offset;
        Ok(())
    }

    /// Every member of a pack has a record of its own that points at the pack's frame.
    fn accept_pack(&mut self, job: Job, start: u64) -> Result<(), ImageError> {
        for m in job.members {
            if let (Some(findings), Some(inspector)) = (m.findings, self.inspector) {
                inspector.report(&m.meta.path, findings).map_err(ImageError::Refused)?;
            }
            self.progress.entry(&m.meta);
            self.summary.entries += 1;
            let len = m.len as u64;
            if m.meta.kind == EntryKind::File {
                self.summary.files += 1;
                self.summary.logical_bytes = self
                    .summary
                    .logical_bytes
                    .checked_add(len)
                    .ok_or_else(|| ImageError::Source("the files add up to more than 2^64 bytes".into()))?;
                self.summary.data_bytes += len;
                self.progress.advance(len);
            }
            self.records.push(IndexRecord {
                frame_offset: start,
                first_seq: job.pos.seq,
                frames_len: self.offset - start,
                chunks: 0,
                size: len,
                data_bytes: len,
                meta: m.meta,
            });
        }
        Ok(())
    }
}

/// Refuses a chunk that a reader would refuse, before it is sealed: its range must start where
/// the file's last chunk ended, and `coffer_format::chunk::check_chunk` (the reader's own
/// rules, `MAX_SEGMENTS` among them) must accept it, with room in the index's chunk count. A
/// source that breaks them fails the backup instead of writing an image that does not restore.
fn check_written(
    path: &[u8],
    span: &Span,
    segments: &[Segment],
    next_range: u64,
    chunk_size: u32,
    part_no: u64,
) -> Result<(), ImageError> {
    let refuse = |detail: String| {
        ImageError::Source(format!("{}: {detail}: a chunk no reader accepts", String::from_utf8_lossy(path)))
    };
    if span.range_start != next_range {
        return Err(refuse(format!("chunk covers bytes from {}, expected from {next_range}", span.range_start)));
    }
    if part_no > u64::from(u32::MAX) {
        return Err(refuse("more chunks than an index record counts".into()));
    }
    let raw_len = u32::try_from(span.len).map_err(|_| refuse(format!("{} bytes in one chunk", span.len)))?;
    let shape = ChunkHeader {
        codec: Codec::None,
        raw_len,
        range_start: span.range_start,
        range_end: span.range_end,
        segments: u32::try_from(segments.len()).unwrap_or(u32::MAX),
        stored_len: raw_len,
    };
    coffer_format::chunk::check_chunk(&shape, segments, chunk_size).map_err(|e| refuse(e.to_string()))
}

/// The producer's side of writing: numbers frames and entries, cuts files into chunks, and
/// gathers small whole entries into packs.
struct Producer<'a> {
    feed: &'a coffer_pipe::Feed<Job>,
    pool: &'a BufPool,
    inspector: Option<&'a dyn Inspect>,
    chunk_size: u32,
    /// Files of at most this many bytes are packed (0: nothing is, a version 1 image).
    pack_limit: usize,
    seq: u64,
    entry_no: u64,
    pack: Option<Job>,
}

impl Producer<'_> {
    fn send(&mut self, job: Job) -> Result<(), ImageError> {
        self.feed.send(job)?;
        self.seq += 1;
        Ok(())
    }

    fn position(&self, part_no: u64) -> Position {
        Position { seq: self.seq, entry_no: self.entry_no, part_no }
    }

    fn item(&mut self, item: SourceItem) -> Result<(), ImageError> {
        item.meta.check().map_err(|e| {
            ImageError::Usage(format!("cannot store {:?}: {e}", String::from_utf8_lossy(&item.meta.path)))
        })?;
        if (item.meta.kind == EntryKind::File) != item.data.is_some() {
            return Err(ImageError::Usage("a file entry needs contents, and only a file has them".into()));
        }
        let file = item.opened.as_ref().or_else(|| item.data.as_ref().and_then(|d| d.file()));
        let inspect = match (self.inspector, &item.source, file) {
            (Some(i), Some(path), Some(file)) => i.file(&item.meta, path, file),
            _ => None,
        };
        let SourceItem { meta, data, .. } = item;
        let Some(mut reader) = data else {
            if self.try_pack(&meta, 0) {
                self.add_member(meta, Contents::Nothing, None);
            } else {
                self.flush_pack()?;
                self.send_entry(meta)?;
            }
            self.entry_no += 1;
            return Ok(());
        };
        // Chunks of an inspected file end on its unit boundaries (pages).
        let mut limit = self.chunk_size as usize;
        if let Some(i) = &inspect {
            let align = i.align().max(1);
            reader.set_align(align);
            if u64::from(self.chunk_size) >= align {
                limit -= limit % align as usize;
            }
        }
        // The first chunk tells whether the file is small and whole: then it is packed.
        let mut segments = Vec::new();
        let mut buf = None;
        let (span, read) = match reader.plan_chunk(limit, &mut segments) {
            Some((span, read)) => (span, Some(read)),
            None => {
                let b = buf.insert(self.pool.get());
                (reader.next_chunk(&mut b[DATA_AT..DATA_AT + limit], &mut segments)?, None)
            }
        };
        let start = if meta.continues { meta.size } else { 0 };
        check_written(&meta.path, &span, &segments, start, self.chunk_size, 1)?;
        let whole = span.last && !reader.paused() && !meta.continues;
        let dense = span.range_end == span.len as u64 && segments.len() <= 1;
        if whole && dense && span.len <= self.pack_limit && self.try_pack(&meta, span.len) {
            let contents = match (read, &buf) {
                (Some(read), _) => Contents::Planned(read),
                (None, Some(b)) => Contents::Copied(&b[DATA_AT..DATA_AT + span.len]),
                (None, None) => Contents::Nothing,
            };
            self.add_member(meta, contents, inspect);
            if let Some(b) = buf {
                self.pool.put(b);
            }
            self.entry_no += 1;
            return Ok(());
        }
        self.flush_pack()?;
        let path = meta.path.clone();
        self.send_entry(meta)?;
        let first = Chunk { span, segments, read, buf: buf.unwrap_or_else(|| self.pool.get()) };
        self.send_chunks(&path, first, reader.as_mut(), limit, inspect, start)?;
        self.entry_no += 1;
        Ok(())
    }

    fn send_entry(&mut self, meta: EntryMeta) -> Result<(), ImageError> {
        let mut entry = Job::new(FrameKind::Entry, self.position(0), self.pool.get());
        entry.meta = Some(meta);
        self.send(entry)
    }

    /// Sends a file's chunks, the first already planned or read.
    fn send_chunks(
        &mut self,
        path: &[u8],
        first: Chunk,
        reader: &mut dyn ChunkReader,
        limit: usize,
        inspect: Option<Arc<dyn InspectFile>>,
        start: u64,
    ) -> Result<(), ImageError> {
        let mut next = Some(first);
        let mut next_range = start;
        for part_no in 1.. {
            let Chunk { span, segments, read, buf } = match next.take() {
                Some(c) => c,
                None => {
                    let mut buf = self.pool.get();
                    let mut segments = Vec::new();
                    // Dense files are read by the workers; streams and sparse files here.
                    let (span, read) = match reader.plan_chunk(limit, &mut segments) {
                        Some((span, read)) => (span, Some(read)),
                        None => (reader.next_chunk(&mut buf[DATA_AT..DATA_AT + limit], &mut segments)?, None),
                    };
                    Chunk { span, segments, read, buf }
                }
            };
            check_written(path, &span, &segments, next_range, self.chunk_size, part_no)?;
            next_range = span.range_end;
            let mut job = Job::new(FrameKind::Chunk, self.position(part_no), buf);
            job.last = span.last;
            job.pause = span.last && reader.paused();
            job.read = read;
            job.inspect = inspect.clone();
            job.segments = segments;
            job.span = span;
            self.send(job)?;
            if span.last {
                return Ok(());
            }
        }
        Ok(())
    }

    /// True if an entry with `data_len` bytes of contents can join the pack (starting a new
    /// one if the current is full); false if it is not to be packed at all.
    fn try_pack(&mut self, meta: &EntryMeta, data_len: usize) -> bool {
        if self.pack_limit == 0 || meta.continues {
            return false;
        }
        let need = MEMBER_HEAD_LEN + meta.encoded_len() + data_len;
        if need > self.chunk_size as usize {
            return false;
        }
        let full = self
            .pack
            .as_ref()
            .is_some_and(|p| p.raw_len + need > self.chunk_size as usize || p.members.len() == MAX_MEMBERS);
        if full && self.flush_pack().is_err() {
            // The pipeline stopped; the next send reports it.
            return false;
        }
        true
    }

    /// Appends an entry to the pack (opening one if needed): its head and metadata now, its
    /// contents copied now or read by a worker later.
    fn add_member(&mut self, meta: EntryMeta, contents: Contents<'_>, inspect: Option<Arc<dyn InspectFile>>) {
        let pos = self.position(0);
        let pool = self.pool;
        let pack = self.pack.get_or_insert_with(|| Job::new(FrameKind::Pack, pos, pool.get()));
        let mut encoded = Vec::with_capacity(meta.encoded_len());
        meta.encode(&mut encoded);
        let (len, read, copied) = match contents {
            Contents::Nothing => (0, None, None),
            Contents::Planned(read) => {
                read.prefetch();
                (read.len(), Some(read), None)
            }
            Contents::Copied(bytes) => (bytes.len(), None, Some(bytes)),
        };
        let at = RAW_AT + pack.raw_len;
        encode_member_head(encoded.len() as u32, len as u32, &mut pack.buf[at..at + MEMBER_HEAD_LEN]);
        let meta_at = at + MEMBER_HEAD_LEN;
        pack.buf[meta_at..meta_at + encoded.len()].copy_from_slice(&encoded);
        let data_at = meta_at + encoded.len();
        if let Some(bytes) = copied {
            pack.buf[data_at..data_at + len].copy_from_slice(bytes);
        }
        pack.raw_len = data_at + len - RAW_AT;
        pack.members.push(Member { meta, data_at, len, read, inspect, findings: None });
    }

    /// Sends the pack gathered so far, if any.
    fn flush_pack(&mut self) -> Result<(), ImageError> {
        match self.pack.take() {
            Some(pack) => self.send(pack),
            None => Ok(()),
        }
    }
}

/// What a packed entry holds: nothing (not a file, or an empty one), a file's bytes to be read
/// by a worker, or bytes read already.
enum Contents<'a> {
    Nothing,
    Planned(PlannedRead),
    Copied(&'a [u8]),
}

/// A chunk planned (read later by a worker) or read (into `buf`).
struct Chunk {
    span: Span,
    segments: Vec<Segment>,
    read: Option<PlannedRead>,
    buf: Vec<u8>,
}

/// Writes a whole image of `source` to `sink` and returns what it holds. Nothing is written
/// after an error, and an image is complete only once its END frame is written (last).
pub fn write_image<W: Write>(
    source: &mut dyn EntrySource,
    sink: W,
    params: &ImageParams,
    secrets: &[SlotSecret],
    threads: usize,
    progress: &dyn Progress,
    inspector: Option<&dyn Inspect>,
) -> Result<WriteSummary, ImageError> {
    // The reader refuses a header with a chunk size outside these bounds.
    let bounds = coffer_format::MIN_CHUNK_SIZE..=coffer_format::MAX_CHUNK_SIZE;
    if !bounds.contains(&params.chunk_size) {
        return Err(ImageError::Usage(format!("chunk size {} outside {bounds:?} bytes", params.chunk_size)));
    }
    let keys = params.keys();
    let image_id = params.image_id;
    let frame_max = FRAME_HEADER_LEN + frame::max_body_len(params.chunk_size);
    let pool = BufPool::new(frame_max);
    let mut asm = Assembler {
        sink,
        offset: 0,
        records: Vec::new(),
        current: None,
        pool: &pool,
        progress,
        inspector,
        summary: WriteSummary { image_id, ..Default::default() },
    };
    asm.write(&params.header_region(params.seal_slots(secrets)?, &keys))?;

    // (frames, entries) once the producer is done.
    let mut counts = (0u64, 0u64);
    let shape = coffer_pipe::Shape::for_threads(threads);
    let producer = |feed: &coffer_pipe::Feed<Job>| -> Result<(), ImageError> {
        let mut p = Producer {
            feed,
            pool: &pool,
            inspector,
            chunk_size: params.chunk_size,
            pack_limit: params.pack_limit.min(params.chunk_size) as usize,
            seq: 0,
            entry_no: 0,
            pack: None,
        };
        while let Some(item) = source.next_item()? {
            p.item(item)?;
        }
        p.flush_pack()?;
        counts = (p.seq, p.entry_no);
        Ok(())
    };
    let make_worker = || {
        let mut worker = Worker {
            keys: &keys,
            image_id,
            compressor: Compressor::new(params.codec, params.level),
            scratch: pool.get(),
            meta_buf: Vec::new(),
        };
        move |job: &mut Job| worker.seal(job)
    };
    coffer_pipe::run(shape, producer, make_worker, |job| asm.accept(job))?;
    let (next_seq, entries) = counts;
    asm.records.extend(asm.current.take());
    debug_assert_eq!(asm.records.len() as u64, entries);

    let index_offset = asm.offset;
    let index_frames = write_index(&mut asm, &keys, &image_id, params.chunk_size, next_seq, entries)?;
    let end = EndFields {
        seq: next_seq + index_frames,
        entry_count: entries,
        index_offset,
        index_frames,
        total_size: asm.summary.logical_bytes,
    };
    asm.write(&end_frame(&keys, &image_id, &end))?;
    asm.sink.flush().map_err(io("write", "image"))?;
    asm.summary.image_bytes = asm.offset;
    Ok(asm.summary)
}

/// Writes the index as INDEX frames (zstd-compressed pieces of at most one chunk); returns
/// how many. There is always at least one.
fn write_index<W: Write>(
    asm: &mut Assembler<'_, W>,
    keys: &ImageKeys,
    image_id: &[u8; 16],
    chunk_size: u32,
    first_seq: u64,
    entries: u64,
) -> Result<u64, ImageError> {
    let mut blob = Vec::new();
    for r in &asm.records {
        r.encode(&mut blob);
    }
    let pieces: Vec<&[u8]> = if blob.is_empty() { vec![&[][..]] } else { blob.chunks(chunk_size as usize).collect() };
    let mut compressor = Compressor::new(Codec::Zstd, 3);
    let mut buf = asm.pool.get();
    for (i, piece) in pieces.iter().enumerate() {
        let at = FRAME_HEADER_LEN + INDEX_PREFIX_LEN;
        let (codec, stored) = match compressor.compress(piece, &mut buf[at..]) {
            Some(done) => done,
            None => {
                buf[at..at + piece.len()].copy_from_slice(piece);
                (Codec::None, piece.len())
            }
        };
        encode_index_prefix(codec, piece.len() as u32, &mut buf[FRAME_HEADER_LEN..at]);
        let pos = Position { seq: first_seq + i as u64, entry_no: entries, part_no: i as u64 };
        let len = seal_frame(
            keys,
            image_id,
            pos,
            FrameKind::Index,
            if i + 1 == pieces.len() { frame::FLAG_LAST } else { 0 },
            0,
            &mut buf,
            INDEX_PREFIX_LEN + stored,
        );
        asm.write(&buf[..len])?;
    }
    asm.pool.put(buf);
    Ok(pieces.len() as u64)
}

/// The END frame: its fields in the clear, authenticated by a tag over an empty plaintext.
pub(crate) fn end_frame(keys: &ImageKeys, image_id: &[u8; 16], end: &EndFields) -> Vec<u8> {
    let fh = FrameHeader::new(FrameKind::End, false, frame::END_FIELDS_LEN + TAG_LEN);
    let mut out = fh.encode().to_vec();
    out.extend_from_slice(&end.encode());
    let tag = keys.seal(end.seq, &end.aad(image_id, &fh), &mut []);
    out.extend_from_slice(&tag);
    debug_assert_eq!(out.len(), frame::END_FRAME_LEN);
    out
}
