//! Reading an image front to back, from a file or a pipe: the producer frames the byte stream,
//! workers authenticate, decrypt and decompress, and the consumer checks the structure (entry
//! order, contiguous chunks, last-chunk flags, the index against what was seen, the END frame)
//! while handing entries and data to a [`Visitor`] in order.

use crate::codec::Decompressor;
use crate::error::{ImageError, Location};
use crate::header::OpenedImage;
use crate::journal::{Checkpoint, ResumePoint, Totals};
use crate::BufPool;
use coffer_format::chunk::parse_chunk;
use coffer_format::frame::{self, Position, END_FIELDS_LEN, FRAME_HEADER_LEN};
use coffer_format::index::parse_index_part;
use coffer_format::{EndFields, EntryKind, EntryMeta, FrameHeader, FrameKind, IndexRecord, Segment, DATA_OFFSET};
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
    /// The frames of one entry, found through the index.
    Entry { record: IndexRecord, entry_no: u64 },
    /// A whole image, from a checkpoint on (the frames before it were read earlier).
    Resume(ResumePoint),
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

pub(crate) enum Decoded {
    Pending,
    Entry(EntryMeta),
    Chunk { range_start: u64, range_end: u64, data_at: usize, segments: Vec<Segment> },
    Index(Vec<u8>),
    End(EndFields),
    Bad { truncated: bool, detail: String },
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

/// Cuts the byte stream into frames and numbers them. Problems found here (short reads, bad
/// frame headers) travel as jobs, so they are reported after everything before them.
pub(crate) fn produce(
    input: &mut (dyn Read + Send),
    feed: &coffer_pipe::Feed<Job>,
    pool: &BufPool,
    chunk_size: u32,
    scope: &Scope,
) -> Result<(), ImageError> {
    let (mut offset, mut seq, mut entry_no, end_offset) = match scope {
        Scope::Whole => (DATA_OFFSET, 0, 0, None),
        Scope::Entry { record, entry_no } => {
            (record.frame_offset, record.first_seq, *entry_no, Some(record.frame_offset + record.frames_len))
        }
        // The last entry read is number entries - 1 (a checkpoint follows at least one entry).
        Scope::Resume(p) => (p.at.offset, p.at.seq, p.at.entries.saturating_sub(1), None),
    };
    let mut part_no = 0u64;
    let mut index_parts = 0u64;
    let mut started_entries = matches!(scope, Scope::Resume(p) if p.at.entries > 0);
    loop {
        if end_offset == Some(offset) {
            return Ok(());
        }
        let pos_guess = Position { seq, entry_no, part_no };
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
        let pos = match header.kind {
            FrameKind::Entry => {
                if started_entries {
                    entry_no += 1;
                }
                started_entries = true;
                part_no = 0;
                Position { seq, entry_no, part_no: 0 }
            }
            FrameKind::Chunk => {
                part_no += 1;
                Position { seq, entry_no, part_no }
            }
            FrameKind::Index | FrameKind::End => {
                let entries = if started_entries { entry_no + 1 } else { entry_no };
                let part = if header.kind == FrameKind::Index { index_parts } else { 0 };
                index_parts += 1;
                Position { seq, entry_no: entries, part_no: part }
            }
        };
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
        seq += 1;
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
                let (codec, raw_len, data) = parse_index_part(plain, chunk_size).map_err(|e| e.to_string())?;
                let mut out = vec![0u8; raw_len as usize];
                self.decompressor.decompress(codec, data, &mut out)?;
                Ok(Decoded::Index(out))
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
            FrameKind::End => unreachable!(),
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
    index: Vec<u8>,
    index_offset: Option<u64>,
    index_parts: u64,
    index_done: bool,
    end: Option<EndFields>,
    summary: ReadSummary,
    complete: bool,
    /// Files whose last part so far ended with a pause: path and where they stopped.
    paused: std::collections::HashMap<Vec<u8>, u64>,
}

impl Checker<'_> {
    fn location(&self, offset: u64) -> Location {
        match &self.file {
            Some(f) => Location { offset, entry: Some(f.path.clone()), chunk: Some(f.chunks + 1) },
            None => Location { offset, entry: self.last_entry.clone(), chunk: None },
        }
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> ImageError {
        ImageError::corrupt(self.location(offset), detail)
    }

    fn accept(&mut self, mut job: Job) -> Result<(), ImageError> {
        let decoded = std::mem::replace(&mut job.decoded, Decoded::Pending);
        let result = self.check(&job, decoded);
        self.pool.put(std::mem::take(&mut job.buf));
        result
    }

    fn check(&mut self, job: &Job, decoded: Decoded) -> Result<(), ImageError> {
        let offset = job.offset;
        let frame_end = offset + job.frame_len();
        if self.complete && !matches!(decoded, Decoded::Bad { .. }) {
            return Err(self.corrupt(offset, "frames after the end"));
        }
        match decoded {
            Decoded::Pending => unreachable!("every job is decoded"),
            Decoded::Bad { truncated: true, detail } => {
                Err(ImageError::Truncated { at: self.location(offset), detail })
            }
            Decoded::Bad { truncated: false, detail } => Err(self.corrupt(offset, detail)),
            Decoded::Entry(meta) => {
                if self.file.is_some() {
                    return Err(self.corrupt(offset, "the previous file ends without its last chunk"));
                }
                if self.index_offset.is_some() {
                    return Err(self.corrupt(offset, "an entry after the index"));
                }
                if meta.path.is_empty() && job.pos.entry_no != 0 {
                    return Err(self.corrupt(offset, "a root directory entry that is not the first entry"));
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
            Decoded::Chunk { range_start, range_end, data_at, segments } => {
                let Some(file) = self.file.as_mut() else {
                    return Err(self.corrupt(offset, "a chunk outside a file"));
                };
                if range_start != file.next_range {
                    let detail = format!("chunk covers bytes from {range_start}, expected from {}", file.next_range);
                    return Err(self.corrupt(offset, detail));
                }
                file.next_range = range_end;
                file.chunks += 1;
                let mut at = data_at;
                let mut data_len = 0u64;
                for s in &segments {
                    if !self.skip_data {
                        self.visitor.data(s.offset, &job.buf[at..at + s.len as usize])?;
                    }
                    at += s.len as usize;
                    data_len += u64::from(s.len);
                }
                let rec = self.seen.last_mut().expect("a file entry is open");
                rec.chunks += 1;
                rec.data_bytes += data_len;
                rec.frames_len = frame_end - rec.frame_offset;
                self.summary.data_bytes += data_len;
                if job.header.is_some_and(|h| h.is_last()) {
                    let file = self.file.take().expect("a file is open");
                    rec.size = range_end;
                    self.summary.logical_bytes += range_end - file.start;
                    if job.header.is_some_and(|h| h.is_pause()) {
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
            Decoded::Index(piece) => {
                if self.file.is_some() {
                    return Err(self.corrupt(offset, "the last file ends without its last chunk"));
                }
                if self.index_done || job.pos.part_no != self.index_parts {
                    return Err(self.corrupt(offset, "index frames out of order"));
                }
                self.index_offset.get_or_insert(offset);
                self.index_parts += 1;
                self.index.extend_from_slice(&piece);
                self.index_done = job.header.is_some_and(|h| h.is_last());
                Ok(())
            }
            Decoded::End(fields) => self.check_end(offset, frame_end, job.pos, fields),
        }
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
        if let Scope::Entry { record, .. } = &self.scope {
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
        let records = IndexRecord::parse_all(&self.index).map_err(|e| {
            ImageError::corrupt(Location { offset: end.index_offset, ..Location::default() }, format!("index: {e}"))
        })?;
        if records != self.seen {
            return Err(ImageError::corrupt(
                Location { offset: end.index_offset, ..Location::default() },
                "the index does not match the entries",
            ));
        }
        if end.total_size != self.summary.logical_bytes {
            return bad("END frame's total size does not match the files");
        }
        self.summary.records = records;
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
        index: Vec::new(),
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
    let producer = |feed: &coffer_pipe::Feed<Job>| produce(input, feed, &pool, chunk_size, &scope);
    coffer_pipe::run(coffer_pipe::Shape::for_threads(opts.threads), producer, make_worker, |job| checker.accept(job))?;
    if !checker.complete {
        let at = checker.location(0);
        return Err(ImageError::Truncated { at, detail: "the frames stop before the entry is complete".into() });
    }
    if let Scope::Entry { record, .. } = &scope {
        let got = checker.seen.pop().expect("one entry was read");
        if got.meta != record.meta || got.chunks != record.chunks || got.size != record.size {
            return Err(ImageError::corrupt(
                Location { offset: record.frame_offset, ..Location::default() },
                "the entry does not match its index record",
            ));
        }
    }
    Ok(checker.summary)
}
