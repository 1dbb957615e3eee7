//! Random access through the index: `list` and `extract` on a seekable image read the END
//! frame and the index from the end of the file, then only the frames of the entries asked for.

use crate::codec::Decompressor;
use crate::error::{io, ImageError, Location};
use crate::header::{open_header, OpenedImage};
use crate::read::{read_frames, record_len, IndexRecords, ReadOptions, ReadSummary, Scope, Visitor, RECORD_FIXED_LEN};
use coffer_crypto::Unlock;
use coffer_format::frame::{self, Position, END_FIELDS_LEN, END_FRAME_LEN, FRAME_HEADER_LEN};
use coffer_format::index::{parse_index_part, INDEX_PREFIX_LEN};
use coffer_format::pack::{MAX_INDEX_RATIO, MAX_MEMBERS};
use coffer_format::{EndFields, EntryKind, FrameHeader, FrameKind, IndexRecord, DATA_OFFSET, TAG_LEN};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes that can be read at any offset: an image file, an object in a store.
pub trait RandomAccess: Send + Sync + std::fmt::Debug {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    /// The `len` bytes from `offset`, as a stream (an entry's frames).
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send + '_>>;
}

#[derive(Debug)]
struct FileAccess {
    file: File,
    len: u64,
}

impl RandomAccess for FileAccess {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let mut f = self.file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f.take(len)))
    }
}

/// An image opened through its index.
#[derive(Debug)]
pub struct IndexedImage {
    source: Box<dyn RandomAccess>,
    path: PathBuf,
    image: OpenedImage,
    end: EndFields,
    records: Vec<IndexRecord>,
    len: u64,
}

fn at(offset: u64) -> Location {
    Location { offset, ..Location::default() }
}

impl IndexedImage {
    pub fn open(path: &Path, unlocks: &[Unlock]) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(io("open", path))?;
        let len = file.metadata().map_err(io("stat", path))?.len();
        Self::open_with(Box::new(FileAccess { file, len }), path, unlocks)
    }

    /// Opens an image read through `source`; `name` names it in messages.
    pub fn open_with(source: Box<dyn RandomAccess>, name: &Path, unlocks: &[Unlock]) -> Result<Self, ImageError> {
        let len = source.len();
        let mut region = vec![0u8; DATA_OFFSET.min(len) as usize];
        source.read_exact_at(&mut region, 0).map_err(io("read", name))?;
        let image = open_header(&region, unlocks)?;
        let end = read_end(source.as_ref(), name, &image, len)?;
        let records = read_index(source.as_ref(), name, &image, &end, len)?;
        Ok(Self { source, path: name.into(), image, end, records, len })
    }

    pub fn image(&self) -> &OpenedImage {
        &self.image
    }

    pub fn records(&self) -> &[IndexRecord] {
        &self.records
    }

    pub fn end(&self) -> &EndFields {
        &self.end
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Reads the frames of entry `i` only, authenticating each, and hands them to `visitor`.
    pub fn read_entry(&self, i: usize, visitor: &mut dyn Visitor, threads: usize) -> Result<ReadSummary, ImageError> {
        self.read_entries(&[i], visitor, threads)
    }

    /// Reads the frames of `entries` (in increasing order) only, authenticating each, and hands
    /// them to `visitor` in that order. Entries packed in one frame are taken from one read of
    /// it: a pack of n entries is read once, not n times.
    pub fn read_entries(
        &self,
        entries: &[usize],
        visitor: &mut dyn Visitor,
        threads: usize,
    ) -> Result<ReadSummary, ImageError> {
        let mut summary = ReadSummary::default();
        let mut rest = entries;
        while let Some(&i) = rest.first() {
            let Some(record) = self.records.get(i) else {
                return Err(ImageError::Usage(format!("entry {i} of an image of {} entries", self.records.len())));
            };
            // A packed entry's frame is its pack's, which starts with the first entry sharing it
            // (the records of a frame are consecutive: the index was checked to tile the image).
            let first =
                i - self.records[..i].iter().rev().take_while(|r| r.frame_offset == record.frame_offset).count();
            let mut wanted = vec![((i - first) as u64, record.clone())];
            let mut taken = 1;
            while let Some(&j) = rest.get(taken) {
                match self.records.get(j) {
                    Some(r) if j > rest[taken - 1] && r.frame_offset == record.frame_offset => {
                        wanted.push(((j - first) as u64, r.clone()))
                    }
                    _ => break,
                }
                taken += 1;
            }
            rest = &rest[taken..];
            let mut range =
                self.source.range(record.frame_offset, record.frames_len).map_err(io("read", &self.path))?;
            let scope = Scope::Entry { entry_no: first as u64, wanted };
            let s = read_frames(&mut range, &self.image, scope, visitor, ReadOptions { threads, skip_data: false })?;
            summary.entries += s.entries;
            summary.files += s.files;
            summary.logical_bytes = summary.logical_bytes.saturating_add(s.logical_bytes);
            summary.data_bytes = summary.data_bytes.saturating_add(s.data_bytes);
        }
        Ok(summary)
    }
}

fn read_end(file: &dyn RandomAccess, path: &Path, image: &OpenedImage, len: u64) -> Result<EndFields, ImageError> {
    let incomplete = || ImageError::Truncated {
        at: at(len),
        detail: "no END frame at the end of the file: the image is incomplete".into(),
    };
    if len < DATA_OFFSET + END_FRAME_LEN as u64 {
        return Err(incomplete());
    }
    let mut buf = [0u8; END_FRAME_LEN];
    let end_at = len - END_FRAME_LEN as u64;
    file.read_exact_at(&mut buf, end_at).map_err(io("read", path))?;
    let mut head = [0u8; FRAME_HEADER_LEN];
    head.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
    match FrameHeader::parse(&head, image.chunk_size()) {
        Ok(h) if h.kind == FrameKind::End => {
            let fields = EndFields::parse(&buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + END_FIELDS_LEN])
                .map_err(|e| ImageError::corrupt(at(end_at), e.to_string()))?;
            let aad = fields.aad(&image.header.image_id, &h);
            image
                .keys
                .open(fields.seq, &aad, &mut buf[FRAME_HEADER_LEN + END_FIELDS_LEN..])
                .map_err(|_| ImageError::corrupt(at(end_at), "END frame fails authentication"))?;
            if fields.index_offset < DATA_OFFSET
                || fields.index_offset >= end_at
                || fields.index_frames == 0
                || fields.index_frames > fields.seq
            {
                return Err(ImageError::corrupt(at(end_at), "END frame points outside the image"));
            }
            Ok(fields)
        }
        _ => Err(incomplete()),
    }
}

/// The smallest an index record can be: its fixed fields and the shortest metadata.
const MIN_RECORD_LEN: u64 = RECORD_FIXED_LEN as u64 + 47;
/// The smallest a frame can be: its header and a tag.
const MIN_FRAME_LEN: u64 = (FRAME_HEADER_LEN + TAG_LEN) as u64;
/// The smallest an INDEX frame can be: its header, the piece's prefix and a tag.
const MIN_INDEX_FRAME_LEN: u64 = (FRAME_HEADER_LEN + INDEX_PREFIX_LEN + TAG_LEN) as u64;

/// How many bytes of records the index may hold, and whether the image packs entries (version
/// 2): what END declares bounds everything read. An END frame that counts more entries or index
/// frames than the image has room for is refused.
fn index_budget(image: &OpenedImage, end: &EndFields, len: u64) -> Result<(u64, bool), ImageError> {
    let end_at = len - END_FRAME_LEN as u64;
    let index_len = end_at - end.index_offset;
    let entries_len = end.index_offset - DATA_OFFSET;
    // What END declares bounds everything read: every entry takes a frame before the index,
    // every index frame its minimum, and each record is at most its entry's frames plus its
    // fixed fields (the metadata is in the ENTRY frame).
    // In a version 2 image, entries share PACK frames and their metadata is compressed there;
    // the records of a frame take at most MAX_INDEX_RATIO times its length (FORMAT.md §5.7).
    let packs = image.header.version >= 2;
    let budget = if packs {
        entries_len.saturating_mul(MAX_INDEX_RATIO)
    } else {
        entries_len.saturating_add(end.entry_count.saturating_mul(RECORD_FIXED_LEN as u64 - MIN_FRAME_LEN))
    };
    let most_entries = if packs { budget / MIN_RECORD_LEN } else { entries_len / MIN_FRAME_LEN };
    if end.entry_count > most_entries || end.index_frames > index_len / MIN_INDEX_FRAME_LEN {
        return Err(ImageError::corrupt(at(len - END_FRAME_LEN as u64), "END frame counts more than the image holds"));
    }
    Ok((budget, packs))
}

/// Reads the index frame by frame (never the whole index at once) and checks each record as it
/// arrives: the records must tile the frames before the index, fit the frames they describe,
/// chain the parts of files, and add up (without overflowing) to END's total size.
fn read_index(
    file: &dyn RandomAccess,
    path: &Path,
    image: &OpenedImage,
    end: &EndFields,
    len: u64,
) -> Result<Vec<IndexRecord>, ImageError> {
    let (budget, packs) = index_budget(image, end, len)?;
    let end_at = len - END_FRAME_LEN as u64;
    let index_len = end_at - end.index_offset;
    let mut input = file.range(end.index_offset, index_len).map_err(io("read", path))?;
    let chunk_size = image.chunk_size();
    // Both grow to the largest frame and piece read (each capped by the chunk size).
    let mut body = Vec::new();
    let mut piece = Vec::new();
    let mut decompressor = Decompressor::new();
    let mut index = IndexRecords::new(budget);
    let mut check = RecordCheck::new(end.index_offset, packs);
    let mut records = Vec::new();
    let mut pos = end.index_offset;
    for i in 0..end.index_frames {
        let offset = pos;
        let bad = |detail: &str| ImageError::corrupt(at(offset), format!("index frame {i}: {detail}"));
        let mut head = [0u8; FRAME_HEADER_LEN];
        read_or(&mut input, &mut head, path, || bad("missing"))?;
        let h = FrameHeader::parse(&head, chunk_size).map_err(|e| bad(&e.to_string()))?;
        let last = i + 1 == end.index_frames;
        if h.kind != FrameKind::Index || h.is_last() != last {
            return Err(bad("not the expected index frame"));
        }
        body.resize(h.body_len as usize, 0);
        read_or(&mut input, &mut body, path, || bad("cut short"))?;
        let frame_pos = Position { seq: end.seq - end.index_frames + i, entry_no: end.entry_count, part_no: i };
        let aad = frame::aad(&image.header.image_id, frame_pos, &h);
        let plain = image.keys.open(frame_pos.seq, &aad, &mut body).map_err(|_| bad("fails authentication"))?;
        let (codec, raw_len, data) = parse_index_part(plain, chunk_size).map_err(|e| bad(&e.to_string()))?;
        if !index.admit(u64::from(raw_len)) {
            return Err(ImageError::corrupt(at(end.index_offset), "the index is longer than END frame allows"));
        }
        piece.resize(raw_len as usize, 0);
        decompressor.decompress(codec, data, &mut piece).map_err(|e| bad(&e))?;
        index
            .push(&piece, &mut |r| {
                if records.len() as u64 >= end.entry_count {
                    return Err("index and END frame disagree on the number of entries".into());
                }
                check.record(&r)?;
                records.push(r);
                Ok(())
            })
            .map_err(|e| ImageError::corrupt(at(end.index_offset), e))?;
        pos += (FRAME_HEADER_LEN + h.body_len as usize) as u64;
    }
    if pos != end_at {
        return Err(ImageError::corrupt(at(pos), "bytes between the index and the END frame"));
    }
    index.finish().map_err(|e| ImageError::corrupt(at(end.index_offset), e))?;
    if records.len() as u64 != end.entry_count {
        return Err(ImageError::corrupt(at(end.index_offset), "index and END frame disagree on the number of entries"));
    }
    if check.expect != end.index_offset {
        return Err(ImageError::corrupt(at(end.index_offset), "index records do not reach the index"));
    }
    if check.total != end.total_size {
        return Err(ImageError::corrupt(at(end_at), "END frame's total size does not match the index"));
    }
    Ok(records)
}

/// Fills `buf` from `input`; a short read is the image's fault (`short`), not an I/O error.
fn read_or(
    input: &mut dyn Read,
    buf: &mut [u8],
    path: &Path,
    short: impl FnOnce() -> ImageError,
) -> Result<(), ImageError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(short()),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// What the records read so far establish.
struct RecordCheck {
    index_offset: u64,
    /// The image may pack entries (version 2).
    packs: bool,
    /// The frame of the previous record: a packed entry shares it with the entries before it.
    previous: Option<(u64, u64, u64)>,
    /// Index bytes of the records of that frame so far, and how many there are.
    frame_index_bytes: u64,
    frame_records: usize,
    /// The previous record was of a packed entry (no chunk of its own).
    previous_packed: bool,
    /// Records checked so far.
    seen: u64,
    /// Where the next record's frames must start.
    expect: u64,
    /// Sum of the parts' sizes (FORMAT.md §5.1: each part's bytes count once).
    total: u64,
    /// Where each file's latest part ends, by path.
    ends: std::collections::HashMap<Vec<u8>, u64>,
}

impl RecordCheck {
    fn new(index_offset: u64, packs: bool) -> Self {
        Self {
            index_offset,
            packs,
            previous: None,
            frame_index_bytes: 0,
            frame_records: 0,
            previous_packed: false,
            seen: 0,
            expect: DATA_OFFSET,
            total: 0,
            ends: Default::default(),
        }
    }

    fn record(&mut self, r: &IndexRecord) -> Result<(), String> {
        let frame = (r.frame_offset, r.first_seq, r.frames_len);
        // A later entry of the pack the previous record's entry is in starts no new frame.
        let starts = if self.packs && self.previous == Some(frame) { r.frame_offset } else { self.expect };
        let frames_end = r.frame_offset.checked_add(r.frames_len).filter(|&e| e <= self.index_offset);
        let Some(frames_end) = frames_end.filter(|_| r.frame_offset == starts && r.frames_len >= MIN_FRAME_LEN) else {
            return Err("index records do not tile the image".into());
        };
        let shared = starts != self.expect;
        // Only packed entries (no chunk of their own) share a frame, at most a PACK's count of
        // them; only the first entry may be the root (as the streaming reader checks).
        let packed = r.chunks == 0;
        self.frame_records = if shared { self.frame_records + 1 } else { 1 };
        if shared && !(packed && self.previous_packed) || self.frame_records > MAX_MEMBERS {
            return Err("index records do not tile the image".into());
        }
        if r.meta.path.is_empty() && self.seen > 0 {
            return Err("the index holds a root directory entry that is not the first entry".into());
        }
        self.seen += 1;
        self.previous_packed = packed;
        self.previous = Some(frame);
        // The metadata is the ENTRY frame's plaintext (or in a pack, within MAX_INDEX_RATIO of
        // its length); each chunk has a frame of its own.
        let meta_len = record_len(r) - RECORD_FIXED_LEN as u64;
        self.frame_index_bytes = if shared { self.frame_index_bytes } else { 0 } + record_len(r);
        let meta_fits = if self.packs {
            self.frame_index_bytes <= MAX_INDEX_RATIO * r.frames_len
        } else {
            meta_len + MIN_FRAME_LEN <= r.frames_len
        };
        if !meta_fits || (u64::from(r.chunks) + 1) * MIN_FRAME_LEN > r.frames_len {
            return Err(format!("the record of {:?} does not fit its frames", String::from_utf8_lossy(&r.meta.path)));
        }
        if r.meta.kind == EntryKind::File {
            let start = if r.meta.continues { r.meta.size } else { 0 };
            if r.meta.continues && self.ends.get(&r.meta.path) != Some(&start) {
                return Err(format!(
                    "{:?} continues from byte {start}, where no part of it ends",
                    String::from_utf8_lossy(&r.meta.path)
                ));
            }
            // A file with no chunk of its own is packed: whole, and without holes.
            let fits =
                |p: u64| if packed { self.packs && !r.meta.continues && r.data_bytes == p } else { r.data_bytes <= p };
            let part = r.size.checked_sub(start).filter(|&p| fits(p));
            let Some(part) = part else {
                return Err(format!(
                    "the record of {:?} gives impossible sizes",
                    String::from_utf8_lossy(&r.meta.path)
                ));
            };
            self.total = self.total.checked_add(part).ok_or("the sizes in the index add up to more than 2^64 bytes")?;
            self.ends.insert(r.meta.path.clone(), r.size);
        } else if r.chunks != 0 || r.size != 0 || r.data_bytes != 0 {
            return Err(format!(
                "the record of {:?}, a {}, gives it data",
                String::from_utf8_lossy(&r.meta.path),
                r.meta.kind.name()
            ));
        }
        self.expect = frames_end;
        Ok(())
    }
}
