//! The consumer: checking the structure of the decoded frames and feeding the visitor.

use super::{record_len, Decoded, IndexRecords, Job, ReadSummary, Scope, Visitor};
use crate::error::{ImageError, Location, PackPlace};
use crate::journal::{Checkpoint, Totals};
use crate::BufPool;
use coffer_format::frame::Position;
use coffer_format::pack::{index_bytes, PackedEntry, MAX_INDEX_RATIO};
use coffer_format::{EndFields, EntryKind, EntryMeta, FrameKind, IndexRecord, Segment};
use std::ops::Range;

struct OpenFile {
    path: String,
    chunks: u64,
    /// Where this entry's data begins (0, or a continuation's offset).
    start: u64,
    next_range: u64,
}

/// Checks the order and consistency of decoded frames and feeds the visitor.
pub(super) struct Checker<'a> {
    visitor: &'a mut dyn Visitor,
    pool: &'a BufPool,
    scope: Scope,
    skip_data: bool,
    file: Option<OpenFile>,
    last_entry: Option<String>,
    pub(super) seen: Vec<IndexRecord>,
    /// The index as it arrives, checked record by record against `seen`.
    index: Option<IndexRecords>,
    index_offset: Option<u64>,
    index_parts: u64,
    index_done: bool,
    end: Option<EndFields>,
    pub(super) summary: ReadSummary,
    pub(super) complete: bool,
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

impl<'a> Checker<'a> {
    /// A checker feeding `visitor` the frames of `scope`: from a checkpoint on, with what the
    /// read before it saw.
    pub(super) fn new(visitor: &'a mut dyn Visitor, pool: &'a BufPool, scope: Scope, skip_data: bool) -> Self {
        let (seen, last_entry, summary) = match &scope {
            Scope::Resume(p) => (
                p.records.clone(),
                p.records.last().map(|r| String::from_utf8_lossy(&r.meta.path).into_owned()),
                ReadSummary {
                    entries: p.at.entries,
                    files: p.at.files,
                    logical_bytes: p.at.logical_bytes,
                    data_bytes: p.at.data_bytes,
                    ..ReadSummary::default()
                },
            ),
            _ => (Vec::new(), None, ReadSummary::default()),
        };
        Checker {
            visitor,
            pool,
            scope,
            skip_data,
            file: None,
            last_entry,
            seen,
            index: None,
            index_offset: None,
            index_parts: 0,
            index_done: false,
            end: None,
            summary,
            complete: false,
            paused: Default::default(),
        }
    }

    pub(super) fn location(&self, offset: u64) -> Location {
        match &self.file {
            Some(f) => Location { offset, entry: Some(f.path.clone()), chunk: Some(f.chunks + 1), pack: None },
            None => Location { offset, entry: self.last_entry.clone(), chunk: None, pack: None },
        }
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> ImageError {
        ImageError::corrupt(self.location(offset), detail)
    }

    pub(super) fn accept(&mut self, mut job: Job) -> Result<(), ImageError> {
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
