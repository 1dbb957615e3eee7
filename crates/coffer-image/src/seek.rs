//! Random access through the index: `list` and `extract` on a seekable image read the END
//! frame and the index from the end of the file, then only the frames of the entries asked for.

use crate::codec::Decompressor;
use crate::error::{io, ImageError, Location};
use crate::header::{open_header, OpenedImage};
use crate::read::{read_frames, ReadOptions, ReadSummary, Scope, Visitor};
use coffer_crypto::Unlock;
use coffer_format::frame::{self, Position, END_FIELDS_LEN, END_FRAME_LEN, FRAME_HEADER_LEN};
use coffer_format::index::parse_index_part;
use coffer_format::{EndFields, FrameHeader, FrameKind, IndexRecord, DATA_OFFSET, TAG_LEN};
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
        let record = self.records[i].clone();
        let mut range = self.source.range(record.frame_offset, record.frames_len).map_err(io("read", &self.path))?;
        let scope = Scope::Entry { record, entry_no: i as u64 };
        read_frames(&mut range, &self.image, scope, visitor, ReadOptions { threads, skip_data: false })
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
    let head: [u8; FRAME_HEADER_LEN] = buf[..FRAME_HEADER_LEN].try_into().expect("8 bytes");
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

fn read_index(
    file: &dyn RandomAccess,
    path: &Path,
    image: &OpenedImage,
    end: &EndFields,
    len: u64,
) -> Result<Vec<IndexRecord>, ImageError> {
    let end_at = len - END_FRAME_LEN as u64;
    let mut bytes = vec![0u8; (end_at - end.index_offset) as usize];
    file.read_exact_at(&mut bytes, end.index_offset).map_err(io("read", path))?;
    let mut blob = Vec::new();
    let mut decompressor = Decompressor::new();
    let mut pos = 0usize;
    for i in 0..end.index_frames {
        let offset = end.index_offset + pos as u64;
        let bad = |detail: &str| ImageError::corrupt(at(offset), format!("index frame {i}: {detail}"));
        let head: [u8; FRAME_HEADER_LEN] =
            bytes.get(pos..pos + FRAME_HEADER_LEN).ok_or_else(|| bad("missing"))?.try_into().expect("8 bytes");
        let h = FrameHeader::parse(&head, image.chunk_size()).map_err(|e| bad(&e.to_string()))?;
        let last = i + 1 == end.index_frames;
        if h.kind != FrameKind::Index || h.is_last() != last {
            return Err(bad("not the expected index frame"));
        }
        let body_end = pos + FRAME_HEADER_LEN + h.body_len as usize;
        let body = bytes.get_mut(pos + FRAME_HEADER_LEN..body_end).ok_or_else(|| bad("cut short"))?;
        let frame_pos = Position { seq: end.seq - end.index_frames + i, entry_no: end.entry_count, part_no: i };
        let aad = frame::aad(&image.header.image_id, frame_pos, &h);
        let plain = image.keys.open(frame_pos.seq, &aad, body).map_err(|_| bad("fails authentication"))?;
        let (codec, raw_len, data) = parse_index_part(plain, image.chunk_size()).map_err(|e| bad(&e.to_string()))?;
        let start = blob.len();
        blob.resize(start + raw_len as usize, 0);
        decompressor.decompress(codec, data, &mut blob[start..]).map_err(|e| bad(&e))?;
        pos = body_end;
    }
    if pos != bytes.len() {
        return Err(ImageError::corrupt(
            at(end.index_offset + pos as u64),
            "bytes between the index and the END frame",
        ));
    }
    let records =
        IndexRecord::parse_all(&blob).map_err(|e| ImageError::corrupt(at(end.index_offset), format!("index: {e}")))?;
    if records.len() as u64 != end.entry_count {
        return Err(ImageError::corrupt(at(end.index_offset), "index and END frame disagree on the number of entries"));
    }
    let mut expect = DATA_OFFSET;
    for r in &records {
        if r.frame_offset != expect || r.frames_len < (FRAME_HEADER_LEN + TAG_LEN) as u64 {
            return Err(ImageError::corrupt(at(end.index_offset), "index records do not tile the image"));
        }
        expect = r.frame_offset + r.frames_len;
    }
    if expect != end.index_offset {
        return Err(ImageError::corrupt(at(end.index_offset), "index records do not reach the index"));
    }
    Ok(records)
}
