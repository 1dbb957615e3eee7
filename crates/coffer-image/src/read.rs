//! Reading an image front to back, from a file or a pipe: the producer frames the byte stream,
//! workers authenticate, decrypt and decompress, and the consumer checks the structure (entry
//! order, contiguous chunks, last-chunk flags, the index against what was seen, the END frame)
//! while handing entries and data to a [`Visitor`] in order.

use crate::codec::Decompressor;
use crate::error::{ImageError, Location, PackPlace};
use crate::header::OpenedImage;
use crate::journal::{Checkpoint, ResumePoint, Totals};
use crate::BufPool;
use coffer_format::chunk::parse_chunk;
use coffer_format::entry::MAX_PATH_LEN;
use coffer_format::frame::{self, Position, END_FIELDS_LEN, FRAME_HEADER_LEN};
use coffer_format::index::{parse_index_part, INDEX_PREFIX_LEN};
use coffer_format::pack::{index_bytes, parse_members, parse_pack, PackedEntry, MAX_INDEX_RATIO, PACK_PREFIX_LEN};
use coffer_format::{EndFields, EntryKind, EntryMeta, FrameHeader, FrameKind, IndexRecord, Segment, DATA_OFFSET};
use std::io::Read;
use std::ops::Range;

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

/// Reads as many bytes as there are, up to `buf.len()`.
pub(crate) fn read_full(input: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Numbers frames as the producer cuts them: each frame's sequence number, and the entry and
/// part it belongs to (or, for INDEX and END frames, the count of entries and the index part).
struct Numbering {
    seq: u64,
    entry_no: u64,
    part_no: u64,
    index_parts: u64,
    /// An entry has begun: the next ENTRY or PACK frame is of the next entry.
    started_entries: bool,
}

impl Numbering {
    /// Where the frames of `scope` start: their offset and numbering, and for one entry read
    /// through the index where its frames end.
    fn start(scope: &Scope) -> Result<(u64, Self, Option<u64>), ImageError> {
        let (offset, seq, entry_no, end_offset) = match scope {
            Scope::Whole => (DATA_OFFSET, 0, 0, None),
            Scope::Entry { wanted, entry_no } => {
                let Some((_, record)) = wanted.first() else {
                    return Err(ImageError::Usage("no entry to read".into()));
                };
                (record.frame_offset, record.first_seq, *entry_no, Some(record.frame_offset + record.frames_len))
            }
            // The last entry read is number entries - 1 (a checkpoint follows at least one entry).
            Scope::Resume(p) => (p.at.offset, p.at.seq, p.at.entries.saturating_sub(1), None),
        };
        let started_entries = matches!(scope, Scope::Resume(p) if p.at.entries > 0);
        Ok((offset, Self { seq, entry_no, part_no: 0, index_parts: 0, started_entries }, end_offset))
    }

    /// The position of the next frame as far as it is known before its header is read (for
    /// the message about a frame that cannot be read).
    fn guess(&self) -> Position {
        Position { seq: self.seq, entry_no: self.entry_no, part_no: self.part_no }
    }

    /// The position of the next frame, of `header`'s kind, moving the entry and part numbers on
    /// past it (the sequence number moves on once the frame is read whole).
    fn position(&mut self, header: &FrameHeader) -> Position {
        let seq = self.seq;
        match header.kind {
            FrameKind::Entry => {
                self.next_entry();
                Position { seq, entry_no: self.entry_no, part_no: 0 }
            }
            FrameKind::Chunk => {
                self.part_no += 1;
                Position { seq, entry_no: self.entry_no, part_no: self.part_no }
            }
            // The pack holds entries entry_no.. (the count is in the frame header).
            FrameKind::Pack => {
                self.next_entry();
                let pos = Position { seq, entry_no: self.entry_no, part_no: 0 };
                self.entry_no += u64::from(header.members) - 1;
                pos
            }
            FrameKind::Index | FrameKind::End => {
                let entries = if self.started_entries { self.entry_no + 1 } else { self.entry_no };
                let part = if header.kind == FrameKind::Index { self.index_parts } else { 0 };
                self.index_parts += 1;
                Position { seq, entry_no: entries, part_no: part }
            }
        }
    }

    /// An ENTRY or PACK frame begins the next entry.
    fn next_entry(&mut self) {
        if self.started_entries {
            self.entry_no += 1;
        }
        self.started_entries = true;
        self.part_no = 0;
    }
}

/// Cuts the byte stream into frames and numbers them. Problems found here (short reads, bad
/// frame headers) travel as jobs, so they are reported after everything before them.
pub(crate) fn produce(
    input: &mut (dyn Read + Send),
    feed: &coffer_pipe::Feed<Job>,
    pool: &BufPool,
    image: &OpenedImage,
    scope: &Scope,
) -> Result<(), ImageError> {
    let chunk_size = image.chunk_size();
    let (mut offset, mut numbering, end_offset) = Numbering::start(scope)?;
    loop {
        if end_offset == Some(offset) {
            return Ok(());
        }
        let pos_guess = numbering.guess();
        let mut head = [0u8; FRAME_HEADER_LEN];
        let n = read_full(input, &mut head).map_err(crate::error::io("read", "image"))?;
        if n < FRAME_HEADER_LEN {
            let what = if n == 0 {
                "the image ends without its END frame: it is incomplete"
            } else {
                "the image ends inside a frame header"
            };
            feed.send(Job::bad(offset + n as u64, pos_guess, true, what))?;
            return Ok(());
        }
        let header = match FrameHeader::parse(&head, chunk_size) {
            Ok(h) => h,
            Err(e) => {
                feed.send(Job::bad(offset, pos_guess, false, e.to_string()))?;
                return Ok(());
            }
        };
        if header.kind == FrameKind::Pack && image.header.version < 2 {
            feed.send(Job::bad(offset, pos_guess, false, "a PACK frame in a version 1 image"))?;
            return Ok(());
        }
        let pos = numbering.position(&header);
        let mut buf = pool.get();
        buf[..FRAME_HEADER_LEN].copy_from_slice(&head);
        let body_end = FRAME_HEADER_LEN + header.body_len as usize;
        let got = read_full(input, &mut buf[FRAME_HEADER_LEN..body_end]).map_err(crate::error::io("read", "image"))?;
        if got < header.body_len as usize {
            pool.put(buf);
            feed.send(Job::bad(offset + (FRAME_HEADER_LEN + got) as u64, pos, true, "the image ends inside a frame"))?;
            return Ok(());
        }
        feed.send(Job { offset, header: Some(header), pos, buf, decoded: Decoded::Pending })?;
        offset += body_end as u64;
        numbering.seq += 1;
        if header.kind == FrameKind::End {
            let mut extra = [0u8; 1];
            if read_full(input, &mut extra).map_err(crate::error::io("read", "image"))? > 0 {
                feed.send(Job::bad(offset, pos, false, "unexpected bytes after the END frame"))?;
            }
            return Ok(());
        }
    }
}

struct Worker<'a> {
    image: &'a OpenedImage,
    decompressor: Decompressor,
    scratch: Vec<u8>,
    skip_data: bool,
}

impl Worker<'_> {
    fn decode(&mut self, job: &mut Job) {
        let Some(header) = job.header else { return };
        job.decoded = match self.try_decode(job, header) {
            Ok(d) => d,
            Err(detail) => Decoded::Bad { truncated: false, detail },
        };
    }

    fn try_decode(&mut self, job: &mut Job, header: FrameHeader) -> Result<Decoded, String> {
        let image_id = self.image.header.image_id;
        let chunk_size = self.image.chunk_size();
        let body_end = FRAME_HEADER_LEN + header.body_len as usize;
        if header.kind == FrameKind::End {
            let fields = EndFields::parse(&job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + END_FIELDS_LEN])
                .map_err(|e| e.to_string())?;
            let aad = fields.aad(&image_id, &header);
            self.image
                .keys
                .open(fields.seq, &aad, &mut job.buf[FRAME_HEADER_LEN + END_FIELDS_LEN..body_end])
                .map_err(|_| "END frame fails authentication".to_string())?;
            return Ok(Decoded::End(fields));
        }
        let aad = frame::aad(&image_id, job.pos, &header);
        let plain_len = self
            .image
            .keys
            .open(job.pos.seq, &aad, &mut job.buf[FRAME_HEADER_LEN..body_end])
            .map_err(|_| "frame fails authentication (altered, moved, or from another image)".to_string())?
            .len();
        let plain = &job.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plain_len];
        match header.kind {
            FrameKind::Entry => Ok(Decoded::Entry(EntryMeta::parse(plain).map_err(|e| e.to_string())?)),
            FrameKind::Index => {
                // Decompressed into a frame buffer (a piece is at most a chunk), never a fresh
                // allocation: how much of the index a read takes in is the checker's to bound.
                let (codec, raw_len, data) = parse_index_part(plain, chunk_size).map_err(|e| e.to_string())?;
                let (raw, stored) = (raw_len as usize, data.len());
                let at = FRAME_HEADER_LEN + INDEX_PREFIX_LEN;
                if codec == coffer_format::Codec::None {
                    return Ok(Decoded::Index { at, len: raw });
                }
                self.decompressor.decompress(codec, &job.buf[at..at + stored], &mut self.scratch[..raw])?;
                std::mem::swap(&mut job.buf, &mut self.scratch);
                Ok(Decoded::Index { at: 0, len: raw })
            }
            FrameKind::Chunk => {
                let chunk = parse_chunk(plain, chunk_size).map_err(|e| e.to_string())?;
                let (h, segments) = (chunk.header, chunk.segments);
                let data_at = FRAME_HEADER_LEN + chunk.data_at;
                if self.skip_data || h.codec == coffer_format::Codec::None {
                    return Ok(Decoded::Chunk {
                        range_start: h.range_start,
                        range_end: h.range_end,
                        data_at,
                        segments,
                    });
                }
                let raw = h.raw_len as usize;
                self.decompressor.decompress(
                    h.codec,
                    &job.buf[data_at..data_at + h.stored_len as usize],
                    &mut self.scratch[..raw],
                )?;
                std::mem::swap(&mut job.buf, &mut self.scratch);
                Ok(Decoded::Chunk { range_start: h.range_start, range_end: h.range_end, data_at: 0, segments })
            }
            FrameKind::Pack => {
                let (codec, raw_len, data) = parse_pack(plain, chunk_size).map_err(|e| e.to_string())?;
                let (raw, stored) = (raw_len as usize, data.len());
                let mut at = FRAME_HEADER_LEN + PACK_PREFIX_LEN;
                if codec != coffer_format::Codec::None {
                    self.decompressor.decompress(codec, &job.buf[at..at + stored], &mut self.scratch[..raw])?;
                    std::mem::swap(&mut job.buf, &mut self.scratch);
                    at = 0;
                }
                let members =
                    parse_members(&job.buf[at..at + raw], header.members.into()).map_err(|e| e.to_string())?;
                Ok(Decoded::Pack { at, members })
            }
            FrameKind::End => Err("an END frame where a sealed frame was expected".into()),
        }
    }
}

/// The fixed fields of an index record (FORMAT.md §5.4).
pub(crate) const RECORD_FIXED_LEN: usize = 48;
/// The longest entry metadata (§5.2): fixed fields, path, target, user and group names.
const MAX_META_LEN: usize = 40 + 2 + MAX_PATH_LEN + 2 + MAX_PATH_LEN + 1 + 255 + 1 + 255;

/// How long `r` is in the index: its fixed fields and its metadata as encoded.
pub(crate) fn record_len(r: &IndexRecord) -> u64 {
    (RECORD_FIXED_LEN + r.meta.encoded_len()) as u64
}

/// The index, taken in piece by piece: records are parsed and handed on as they complete, so
/// the index is never held whole (at most one record cut between two pieces waits), and the
/// pieces may add up to no more than `budget` bytes (what the image declares the index holds),
/// checked before each piece is decompressed.
#[derive(Debug)]
pub(crate) struct IndexRecords {
    pending: Vec<u8>,
    budget: u64,
    /// Records parsed so far.
    pub(crate) count: u64,
}

impl IndexRecords {
    pub(crate) fn new(budget: u64) -> Self {
        Self { pending: Vec::new(), budget, count: 0 }
    }

    /// Makes room for a piece of `raw_len` bytes; false if the index would outgrow its budget.
    pub(crate) fn admit(&mut self, raw_len: u64) -> bool {
        match self.budget.checked_sub(raw_len) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// Adds a decompressed piece and hands every record it completes to `each` (which may
    /// refuse it with a message).
    pub(crate) fn push(
        &mut self,
        piece: &[u8],
        each: &mut dyn FnMut(IndexRecord) -> Result<(), String>,
    ) -> Result<(), String> {
        self.pending.extend_from_slice(piece);
        let mut at = 0;
        while self.pending.len() - at >= RECORD_FIXED_LEN {
            let meta_len = u32::from_le_bytes(self.pending[at + 28..at + 32].try_into().expect("4 bytes")) as usize;
            if meta_len > MAX_META_LEN {
                return Err(format!("index: a record of {meta_len} bytes of metadata"));
            }
            let len = RECORD_FIXED_LEN + meta_len;
            if self.pending.len() - at < len {
                break;
            }
            let mut records = IndexRecord::parse_all(&self.pending[at..at + len]).map_err(|e| format!("index: {e}"))?;
            at += len;
            // `len` bytes that parse hold exactly one record.
            let Some(record) = records.pop() else { return Err("index: an empty record".into()) };
            self.count += 1;
            each(record)?;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// The index is complete: nothing may be left of a record.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match IndexRecord::parse_all(&self.pending) {
            _ if self.pending.is_empty() => Ok(()),
            Err(e) => Err(format!("index: {e}")),
            Ok(_) => Err("index: a record cut short".into()),
        }
    }
}

struct OpenFile {
    path: String,
    chunks: u64,
    /// Where this entry's data begins (0, or a continuation's offset).
    start: u64,
    next_range: u64,
}

/// Checks the order and consistency of decoded frames and feeds the visitor.
struct Checker<'a> {
    visitor: &'a mut dyn Visitor,
    pool: &'a BufPool,
    scope: Scope,
    skip_data: bool,
    file: Option<OpenFile>,
    last_entry: Option<String>,
    seen: Vec<IndexRecord>,
    /// The index as it arrives, checked record by record against `seen`.
    index: Option<IndexRecords>,
    index_offset: Option<u64>,
    index_parts: u64,
    index_done: bool,
    end: Option<EndFields>,
    summary: ReadSummary,
    complete: bool,
    /// Files whose last part so far ended with a pause: path and where they stopped.
    paused: std::collections::HashMap<Vec<u8>, u64>,
}

/// The sizes a chunk moves on, each checked not to overflow (see `Checker::chunk_sums`).
struct ChunkSums {
    /// Chunks of the entry's record.
    rec_chunks: u32,
    /// Data bytes of the entry's record.
    rec_data: u64,
    /// Data bytes of the whole read.
    total_data: u64,
    /// Logical bytes of the whole read (0 unless the chunk is a file's last).
    total_logical: u64,
}

impl Checker<'_> {
    fn location(&self, offset: u64) -> Location {
        match &self.file {
            Some(f) => Location { offset, entry: Some(f.path.clone()), chunk: Some(f.chunks + 1), pack: None },
            None => Location { offset, entry: self.last_entry.clone(), chunk: None, pack: None },
        }
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> ImageError {
        ImageError::corrupt(self.location(offset), detail)
    }

    fn accept(&mut self, mut job: Job) -> Result<(), ImageError> {
        let decoded = std::mem::replace(&mut job.decoded, Decoded::Pending);
        // The entry before a pack, for its message if it fails (its own entries move it on).
        let pack = job.header.filter(|h| h.kind == FrameKind::Pack);
        let last_entry = pack.and_then(|_| self.last_entry.clone());
        let result = self.check(&job, decoded);
        self.pool.put(std::mem::take(&mut job.buf));
        // A PACK that fails names the entries it holds (by number: their names are inside it).
        match (result, pack) {
            (Err(ImageError::Corrupt { mut at, detail }), Some(h)) => {
                at.entry = last_entry;
                at.chunk = None;
                at.pack = Some(PackPlace { first: job.pos.entry_no, count: h.members.into(), names: vec![] });
                Err(ImageError::Corrupt { at, detail })
            }
            (result, _) => result,
        }
    }

    fn check(&mut self, job: &Job, decoded: Decoded) -> Result<(), ImageError> {
        let offset = job.offset;
        let frame_end = offset + job.frame_len();
        if self.complete && !matches!(decoded, Decoded::Bad { .. }) {
            return Err(self.corrupt(offset, "frames after the end"));
        }
        match decoded {
            Decoded::Pending => Err(self.corrupt(offset, "a frame that was not decoded")),
            Decoded::Bad { truncated: true, detail } => {
                Err(ImageError::Truncated { at: self.location(offset), detail })
            }
            Decoded::Bad { truncated: false, detail } => Err(self.corrupt(offset, detail)),
            Decoded::Entry(meta) => self.check_entry(job, frame_end, meta),
            Decoded::Chunk { range_start, range_end, data_at, segments } => {
                self.check_chunk(job, frame_end, range_start..range_end, data_at, &segments)
            }
            Decoded::Index { at, len } => self.check_index(job, at, len),
            Decoded::Pack { at, members } => self.check_pack(job, frame_end, at, members),
            Decoded::End(fields) => self.check_end(offset, frame_end, job.pos, fields),
        }
    }

    /// An ENTRY frame: in its place (no file open, before the index, the root first) and, read
    /// through the index, the entry its record describes; handed on, and a file opened.
    fn check_entry(&mut self, job: &Job, frame_end: u64, meta: EntryMeta) -> Result<(), ImageError> {
        let offset = job.offset;
        if self.file.is_some() {
            return Err(self.corrupt(offset, "the previous file ends without its last chunk"));
        }
        if self.index_offset.is_some() {
            return Err(self.corrupt(offset, "an entry after the index"));
        }
        if meta.path.is_empty() && job.pos.entry_no != 0 {
            return Err(self.corrupt(offset, "a root directory entry that is not the first entry"));
        }
        // Read through the index, the entry must be the one its record describes before
        // anything of it is handed on.
        let unlike = |w: &[(u64, IndexRecord)]| w.len() != 1 || w[0].0 != 0 || w[0].1.meta != meta;
        if matches!(&self.scope, Scope::Entry { wanted, .. } if unlike(wanted)) {
            return Err(self.corrupt(offset, "the entry does not match its index record"));
        }
        let path = String::from_utf8_lossy(&meta.path).into_owned();
        self.last_entry = Some(path.clone());
        self.check_continuation(offset, &meta)?;
        self.visitor.entry(&meta)?;
        self.summary.entries += 1;
        if meta.kind == EntryKind::File {
            let start = if meta.continues { meta.size } else { 0 };
            self.file = Some(OpenFile { path, chunks: 0, start, next_range: start });
        }
        self.seen.push(IndexRecord {
            frame_offset: offset,
            first_seq: job.pos.seq,
            frames_len: frame_end - offset,
            chunks: 0,
            size: 0,
            data_bytes: 0,
            meta,
        });
        self.entry_done_if_scoped(frame_end);
        self.offer_checkpoint(frame_end, job.pos.seq + 1)
    }

    /// A CHUNK frame: the next bytes of the open file and, read through the index, within the
    /// entry's record; its data handed on, and the file (or its part) ended by its last chunk.
    fn check_chunk(
        &mut self,
        job: &Job,
        frame_end: u64,
        range: Range<u64>,
        data_at: usize,
        segments: &[Segment],
    ) -> Result<(), ImageError> {
        let offset = job.offset;
        let (range_start, range_end) = (range.start, range.end);
        let (file_start, next_range) = match &self.file {
            Some(f) => (f.start, f.next_range),
            None => return Err(self.corrupt(offset, "a chunk outside a file")),
        };
        if range_start != next_range {
            let detail = format!("chunk covers bytes from {range_start}, expected from {next_range}");
            return Err(self.corrupt(offset, detail));
        }
        // Segments lie in [range_start, range_end) and add up to at most a chunk.
        let data_len: u64 = segments.iter().map(|s| u64::from(s.len)).sum();
        let last = job.header.is_some_and(|h| h.is_last());
        let pause = job.header.is_some_and(|h| h.is_pause());
        // range_end >= range_start = next_range >= file_start.
        let sums = self.chunk_sums(offset, data_len, last.then(|| range_end - file_start))?;
        // Through the index, the chunks must stay within the size and count of the
        // entry's record (which the index checked) before their data is handed on.
        if let Some(record) = self.scope.scoped() {
            if range_end > record.size || (last && range_end != record.size) || sums.rec_chunks > record.chunks {
                return Err(self.corrupt(offset, "the entry does not match its index record"));
            }
        }
        if let Some(file) = self.file.as_mut() {
            file.next_range = range_end;
            file.chunks += 1;
        }
        self.hand_on(job, data_at, segments)?;
        let Some(rec) = self.seen.last_mut() else {
            return Err(self.corrupt(offset, "a chunk before any entry"));
        };
        rec.chunks = sums.rec_chunks;
        rec.data_bytes = sums.rec_data;
        rec.frames_len = frame_end - rec.frame_offset;
        self.summary.data_bytes = sums.total_data;
        if last {
            self.file = None;
            rec.size = range_end;
            self.summary.logical_bytes = sums.total_logical;
            if pause {
                self.paused.insert(rec.meta.path.clone(), range_end);
                self.visitor.pause_file(range_end)?;
            } else {
                self.summary.files += 1;
                self.visitor.end_file(range_end)?;
            }
            self.entry_done_if_scoped(frame_end);
            self.offer_checkpoint(frame_end, job.pos.seq + 1)?;
        }
        Ok(())
    }

    /// The entry's record and the read's totals with a chunk of `data_len` bytes added, and for
    /// the last chunk of a file the `logical` bytes of the file. Every size an image gives is
    /// checked before it is added: a hostile image must not make a total wrap around (and a
    /// reader report less than it holds).
    fn chunk_sums(&self, offset: u64, data_len: u64, logical: Option<u64>) -> Result<ChunkSums, ImageError> {
        let Some(rec) = self.seen.last() else { return Err(self.corrupt(offset, "a chunk before any entry")) };
        let rec_chunks = rec.chunks.checked_add(1);
        let rec_data = rec.data_bytes.checked_add(data_len);
        let total_data = self.summary.data_bytes.checked_add(data_len);
        let total_logical = match logical {
            Some(len) => self.summary.logical_bytes.checked_add(len),
            None => Some(0),
        };
        let (Some(rec_chunks), Some(rec_data), Some(total_data), Some(total_logical)) =
            (rec_chunks, rec_data, total_data, total_logical)
        else {
            return Err(self.corrupt(offset, "the sizes in the image add up to more than 2^64 bytes"));
        };
        Ok(ChunkSums { rec_chunks, rec_data, total_data, total_logical })
    }

    /// Hands a chunk's segments, which lie from `data_at` in the job's buffer, to the visitor
    /// (unless the read skips data).
    fn hand_on(&mut self, job: &Job, data_at: usize, segments: &[Segment]) -> Result<(), ImageError> {
        let mut at = data_at;
        for s in segments {
            if !self.skip_data {
                self.visitor.data(s.offset, &job.buf[at..at + s.len as usize])?;
            }
            at += s.len as usize;
        }
        Ok(())
    }

    /// An INDEX frame: the next piece of the index, after the last file ends, checked record by
    /// record against the entries seen as it arrives.
    fn check_index(&mut self, job: &Job, at: usize, len: usize) -> Result<(), ImageError> {
        let offset = job.offset;
        if self.file.is_some() {
            return Err(self.corrupt(offset, "the last file ends without its last chunk"));
        }
        if self.index_done || job.pos.part_no != self.index_parts {
            return Err(self.corrupt(offset, "index frames out of order"));
        }
        let index_offset = *self.index_offset.get_or_insert(offset);
        self.index_parts += 1;
        self.index_done = job.header.is_some_and(|h| h.is_last());
        let bad =
            |detail: String| ImageError::corrupt(Location { offset: index_offset, ..Location::default() }, detail);
        // No entry comes after the index: it must be the records of the entries seen,
        // exactly, and is checked against them as it arrives.
        let seen = &self.seen;
        let index = self
            .index
            .get_or_insert_with(|| IndexRecords::new(seen.iter().map(record_len).fold(0, u64::saturating_add)));
        if !index.admit(len as u64) {
            return Err(bad("the index is longer than the records of the entries before it".into()));
        }
        let mut k = index.count as usize;
        index
            .push(&job.buf[at..at + len], &mut |record| {
                let expected = seen.get(k);
                k += 1;
                match expected {
                    Some(r) if *r == record => Ok(()),
                    _ => Err("the index does not match the entries".into()),
                }
            })
            .map_err(bad)
    }

    /// A PACK frame: in its place like an ENTRY frame, its entries' metadata bounded by its size,
    /// and each entry checked and handed on (read through the index: only those wanted).
    fn check_pack(
        &mut self,
        job: &Job,
        frame_end: u64,
        at: usize,
        members: Vec<PackedEntry>,
    ) -> Result<(), ImageError> {
        let offset = job.offset;
        if self.file.is_some() {
            return Err(self.corrupt(offset, "the previous file ends without its last chunk"));
        }
        if self.index_offset.is_some() {
            return Err(self.corrupt(offset, "an entry after the index"));
        }
        if index_bytes(members.iter().map(|m| &m.meta)) > MAX_INDEX_RATIO * (frame_end - offset) {
            return Err(self.corrupt(offset, "a pack whose entries' metadata is too large for its size"));
        }
        // Read through the index: only the entries wanted, each checked against its record.
        let mut wanted = match &self.scope {
            Scope::Entry { wanted, .. } if wanted.iter().any(|(m, _)| *m >= members.len() as u64) => {
                return Err(self.corrupt(offset, "the entry does not match its index record"))
            }
            Scope::Entry { wanted, .. } => Some(wanted.clone().into_iter().peekable()),
            _ => None,
        };
        for (i, packed) in members.into_iter().enumerate() {
            let expected = match wanted.as_mut() {
                None => None,
                Some(w) => match w.next_if(|(m, _)| *m == i as u64) {
                    Some((_, record)) => Some(record),
                    None => continue,
                },
            };
            let first = job.pos.entry_no == 0 && i == 0;
            self.packed_entry(offset, frame_end, job, first, packed, expected.as_ref(), &job.buf[at..])?;
        }
        if wanted.is_some_and(|mut w| w.next().is_some()) {
            return Err(self.corrupt(offset, "the entry does not match its index record"));
        }
        self.entry_done_if_scoped(frame_end);
        self.offer_checkpoint(frame_end, job.pos.seq + 1)
    }

    /// One entry of a pack: checked as an ENTRY frame and its chunks are (and against its index
    /// record, `expected`, when read through the index), then handed on whole.
    #[allow(clippy::too_many_arguments)]
    fn packed_entry(
        &mut self,
        offset: u64,
        frame_end: u64,
        job: &Job,
        first: bool,
        packed: PackedEntry,
        expected: Option<&IndexRecord>,
        raw: &[u8],
    ) -> Result<(), ImageError> {
        let PackedEntry { meta, data } = packed;
        let len = data.len() as u64;
        if meta.path.is_empty() && !first {
            return Err(self.corrupt(offset, "a root directory entry that is not the first entry"));
        }
        let size = if meta.kind == EntryKind::File { len } else { 0 };
        if let Some(record) = expected {
            if record.meta != meta || record.chunks != 0 || record.size != size || record.data_bytes != len {
                return Err(self.corrupt(offset, "the entry does not match its index record"));
            }
        }
        self.last_entry = Some(String::from_utf8_lossy(&meta.path).into_owned());
        self.check_continuation(offset, &meta)?;
        let (Some(data_bytes), Some(logical_bytes)) =
            (self.summary.data_bytes.checked_add(len), self.summary.logical_bytes.checked_add(len))
        else {
            return Err(self.corrupt(offset, "the sizes in the image add up to more than 2^64 bytes"));
        };
        self.visitor.entry(&meta)?;
        self.summary.entries += 1;
        if meta.kind == EntryKind::File {
            if len > 0 && !self.skip_data {
                self.visitor.data(0, &raw[data])?;
            }
            self.summary.data_bytes = data_bytes;
            self.summary.logical_bytes = logical_bytes;
            self.summary.files += 1;
            self.visitor.end_file(len)?;
        }
        self.seen.push(IndexRecord {
            frame_offset: offset,
            first_seq: job.pos.seq,
            frames_len: frame_end - offset,
            chunks: 0,
            size,
            data_bytes: len,
            meta,
        });
        Ok(())
    }

    /// A continuation must carry on a paused file from where it stopped; a new file must not
    /// share its path with a paused one. (Reading one entry through the index, the index record
    /// vouches for it instead.)
    fn check_continuation(&mut self, offset: u64, meta: &EntryMeta) -> Result<(), ImageError> {
        if matches!(self.scope, Scope::Entry { .. }) || meta.kind != EntryKind::File {
            return Ok(());
        }
        match (meta.continues, self.paused.remove(&meta.path)) {
            (true, Some(end)) if end == meta.size => Ok(()),
            (true, Some(end)) => {
                Err(self.corrupt(offset, format!("a continuation from byte {}, the file paused at {end}", meta.size)))
            }
            (true, None) => Err(self.corrupt(offset, "a continuation of a file that is not paused")),
            (false, Some(_)) => Err(self.corrupt(offset, "a new file with the name of a paused one")),
            (false, None) => Ok(()),
        }
    }

    /// Tells the visitor that a whole-image read could start again at `frame_end`, if nothing
    /// is open there.
    fn offer_checkpoint(&mut self, frame_end: u64, next_seq: u64) -> Result<(), ImageError> {
        if matches!(self.scope, Scope::Entry { .. })
            || self.file.is_some()
            || !self.paused.is_empty()
            || self.index_offset.is_some()
        {
            return Ok(());
        }
        let s = &self.summary;
        let at = Totals {
            offset: frame_end,
            seq: next_seq,
            entries: s.entries,
            files: s.files,
            logical_bytes: s.logical_bytes,
            data_bytes: s.data_bytes,
        };
        self.visitor.checkpoint(&Checkpoint { at, records: &self.seen })
    }

    fn entry_done_if_scoped(&mut self, frame_end: u64) {
        if let Some(record) = self.scope.scoped() {
            if self.file.is_none() && frame_end == record.frame_offset + record.frames_len {
                self.complete = true;
            }
        }
    }

    fn check_end(&mut self, offset: u64, frame_end: u64, pos: Position, end: EndFields) -> Result<(), ImageError> {
        let bad = |detail: &str| Err(ImageError::corrupt(Location { offset, ..Location::default() }, detail));
        if !self.index_done {
            return bad("END frame before the index is complete");
        }
        if let Some(path) = self.paused.keys().next() {
            return bad(&format!("{:?} was paused and never completed", String::from_utf8_lossy(path)));
        }
        if end.seq != pos.seq
            || end.entry_count != self.summary.entries
            || end.index_frames != self.index_parts
            || Some(end.index_offset) != self.index_offset
        {
            return bad("END frame does not match the frames before it");
        }
        let index_at = Location { offset: end.index_offset, ..Location::default() };
        let Some(index) = self.index.as_ref() else { return bad("END frame before the index") };
        index.finish().map_err(|e| ImageError::corrupt(index_at.clone(), e))?;
        if index.count != self.seen.len() as u64 {
            return Err(ImageError::corrupt(index_at, "the index does not match the entries"));
        }
        if end.total_size != self.summary.logical_bytes {
            return bad("END frame's total size does not match the files");
        }
        self.summary.records = std::mem::take(&mut self.seen);
        self.summary.image_bytes = frame_end;
        self.end = Some(end);
        self.complete = true;
        Ok(())
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
    let mut checker = Checker {
        visitor,
        pool: &pool,
        scope: scope.clone(),
        skip_data: opts.skip_data,
        file: None,
        last_entry: None,
        seen: Vec::new(),
        index: None,
        index_offset: None,
        index_parts: 0,
        index_done: false,
        end: None,
        summary: ReadSummary::default(),
        complete: false,
        paused: Default::default(),
    };
    if let Scope::Resume(p) = &scope {
        checker.seen = p.records.clone();
        checker.last_entry = p.records.last().map(|r| String::from_utf8_lossy(&r.meta.path).into_owned());
        checker.summary = ReadSummary {
            entries: p.at.entries,
            files: p.at.files,
            logical_bytes: p.at.logical_bytes,
            data_bytes: p.at.data_bytes,
            ..ReadSummary::default()
        };
    }
    let make_worker = || {
        let mut w = Worker { image, decompressor: Decompressor::new(), scratch: pool.get(), skip_data: opts.skip_data };
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
