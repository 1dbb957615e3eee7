//! Sealing frames from raw plaintexts, for tests and fuzzing: images that coffer's writer never
//! makes (hostile indexes, sizes that overflow, files in odd parts), valid for a known key so
//! that the reader's checks behind the AEAD can be exercised. Not part of the API.

use crate::error::ImageError;
use crate::header::ImageParams;
use coffer_crypto::{DataKey, ImageKeys, MasterKey, SlotSecret};
use coffer_format::chunk::{encode_segments, ChunkHeader, CHUNK_PREFIX_LEN, SEGMENT_LEN};
use coffer_format::frame::{self, Position, FLAG_LAST, FLAG_PAUSE};
use coffer_format::index::{encode_index_prefix, INDEX_PREFIX_LEN};
use coffer_format::{Codec, EndFields, EntryKind, EntryMeta, FrameHeader, FrameKind, IndexRecord, Suite, TAG_LEN};

/// Appends sealed frames to a header region, numbering them as a reader counts them (sequence
/// number, entry number, part number), so every frame opens whatever its plaintext. It also
/// keeps, as far as the plaintexts parse, the index records a writer would have kept, for
/// [`FrameSealer::auto_index`] and [`FrameSealer::auto_end`].
#[derive(Debug)]
pub struct FrameSealer {
    keys: ImageKeys,
    image_id: [u8; 16],
    chunk_size: u32,
    out: Vec<u8>,
    seq: u64,
    entry_no: u64,
    started: bool,
    part_no: u64,
    index_parts: u64,
    index_offset: Option<u64>,
    records: Vec<IndexRecord>,
    /// Sum of the parts' sizes, wrapping (a hostile image may make it overflow).
    total: u64,
}

impl FrameSealer {
    /// An image for `key` (one key slot) with chunk size `chunk_size`; its image id and data key
    /// are fixed, so the same frames give the same bytes.
    pub fn new(key: &MasterKey, chunk_size: u32) -> Result<Self, ImageError> {
        Self::with_version(key, chunk_size, coffer_format::VERSION)
    }

    /// Like [`FrameSealer::new`], with a header of format `version` (1 or 2).
    pub fn with_version(key: &MasterKey, chunk_size: u32, version: u16) -> Result<Self, ImageError> {
        let mut params = ImageParams::random(Suite::Aes256Gcm, Codec::None, 0, chunk_size, 1)?;
        params.pack_limit = if version >= 2 { params.pack_limit.max(1) } else { 0 };
        params.image_id = [0x5a; 16];
        params.data_key = DataKey::from_bytes([0x3c; 32]);
        params.slot_salts = vec![[0x11; 32]];
        params.created = 0;
        let keys = params.keys();
        let slots = params.seal_slots(&[SlotSecret::Key(key.clone())])?;
        let out = params.header_region(slots, &keys);
        Ok(Self {
            keys,
            image_id: params.image_id,
            chunk_size,
            out,
            seq: 0,
            entry_no: 0,
            started: false,
            part_no: 0,
            index_parts: 0,
            index_offset: None,
            records: Vec::new(),
            total: 0,
        })
    }

    /// The image so far.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// The index records of the entries sealed so far, as a writer keeps them.
    pub fn records(&self) -> &[IndexRecord] {
        &self.records
    }

    /// Appends bytes as they are (junk, a cut frame).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Seals `plain` as the next frame of `kind` with `flags` (FLAG_LAST, FLAG_PAUSE). Its
    /// position is where a reader expects the next frame of that kind.
    pub fn frame(&mut self, kind: FrameKind, flags: u8, plain: &[u8]) {
        self.frame_of(kind, flags, 0, plain)
    }

    /// Like [`FrameSealer::frame`], with `members` in the frame header (a PACK's count).
    pub fn frame_of(&mut self, kind: FrameKind, flags: u8, members: u16, plain: &[u8]) {
        let offset = self.out.len() as u64;
        let pos = match kind {
            FrameKind::Pack => {
                if self.started {
                    self.entry_no += 1;
                }
                self.started = true;
                self.part_no = 0;
                let pos = Position { seq: self.seq, entry_no: self.entry_no, part_no: 0 };
                self.entry_no += u64::from(members.max(1)) - 1;
                pos
            }
            FrameKind::Entry => {
                if self.started {
                    self.entry_no += 1;
                }
                self.started = true;
                self.part_no = 0;
                Position { seq: self.seq, entry_no: self.entry_no, part_no: 0 }
            }
            FrameKind::Chunk => {
                self.part_no += 1;
                Position { seq: self.seq, entry_no: self.entry_no, part_no: self.part_no }
            }
            FrameKind::Index | FrameKind::End => {
                let entries = self.entries();
                let part = if kind == FrameKind::Index { self.index_parts } else { 0 };
                self.index_parts += 1;
                self.index_offset.get_or_insert(offset);
                Position { seq: self.seq, entry_no: entries, part_no: part }
            }
        };
        let header = FrameHeader { kind, flags, members, body_len: (plain.len() + TAG_LEN) as u32 };
        let mut body = plain.to_vec();
        let tag = self.keys.seal(self.seq, &frame::aad(&self.image_id, pos, &header), &mut body);
        self.out.extend_from_slice(&header.encode());
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&tag);
        self.seq += 1;
        self.keep_record(kind, flags, members, offset, pos.seq, plain);
    }

    fn entries(&self) -> u64 {
        if self.started {
            self.entry_no + 1
        } else {
            0
        }
    }

    fn keep_record(&mut self, kind: FrameKind, flags: u8, members: u16, offset: u64, seq: u64, plain: &[u8]) {
        let end = self.out.len() as u64;
        match kind {
            FrameKind::Entry => {
                if let Ok(meta) = EntryMeta::parse(plain) {
                    self.records.push(IndexRecord {
                        frame_offset: offset,
                        first_seq: seq,
                        frames_len: end - offset,
                        chunks: 0,
                        size: 0,
                        data_bytes: 0,
                        meta,
                    });
                }
            }
            FrameKind::Chunk => {
                let Ok(chunk) = coffer_format::chunk::parse_chunk(plain, self.chunk_size) else { return };
                let Some(rec) = self.records.last_mut() else { return };
                rec.chunks = rec.chunks.wrapping_add(1);
                rec.data_bytes = rec.data_bytes.wrapping_add(u64::from(chunk.header.raw_len));
                rec.frames_len = end - rec.frame_offset;
                if flags & FLAG_LAST != 0 {
                    let start = if rec.meta.continues { rec.meta.size } else { 0 };
                    rec.size = chunk.header.range_end;
                    self.total = self.total.wrapping_add(rec.size.wrapping_sub(start));
                }
            }
            FrameKind::Pack => {
                let Ok((_, _, raw)) = coffer_format::pack::parse_pack(plain, self.chunk_size) else { return };
                let Ok(members) = coffer_format::pack::parse_members(raw, members.into()) else { return };
                for m in members {
                    let len = m.data.len() as u64;
                    self.total = self.total.wrapping_add(len);
                    self.records.push(IndexRecord {
                        frame_offset: offset,
                        first_seq: seq,
                        frames_len: end - offset,
                        chunks: 0,
                        size: if m.meta.kind == EntryKind::File { len } else { 0 },
                        data_bytes: len,
                        meta: m.meta,
                    });
                }
            }
            FrameKind::Index | FrameKind::End => {}
        }
    }

    /// Seals a PACK frame (uncompressed) of these entries and contents.
    pub fn pack(&mut self, entries: &[(EntryMeta, &[u8])]) {
        let mut raw = Vec::new();
        for (meta, data) in entries {
            coffer_format::pack::encode_member(meta, data, &mut raw);
        }
        self.frame_of(FrameKind::Pack, 0, entries.len() as u16, &pack_plaintext(&raw));
    }

    /// Seals a file entry's chunk: `data` stored uncompressed at `range.0`, covering `range`.
    pub fn chunk(&mut self, range: (u64, u64), data: &[u8], last: bool, pause: bool) {
        self.frame(FrameKind::Chunk, chunk_flags(last, pause), &chunk_plaintext(range, data));
    }

    /// Seals an ENTRY frame for `meta`.
    pub fn entry(&mut self, meta: &EntryMeta) {
        let mut plain = Vec::new();
        meta.encode(&mut plain);
        self.frame(FrameKind::Entry, 0, &plain);
    }

    /// Seals the index of the records kept so far, in uncompressed pieces of at most a chunk.
    pub fn auto_index(&mut self) {
        let mut blob = Vec::new();
        for r in &self.records {
            r.encode(&mut blob);
        }
        let piece_len = (self.chunk_size as usize).max(1);
        let pieces: Vec<Vec<u8>> =
            if blob.is_empty() { vec![Vec::new()] } else { blob.chunks(piece_len).map(<[u8]>::to_vec).collect() };
        for (i, piece) in pieces.iter().enumerate() {
            let last = if i + 1 == pieces.len() { FLAG_LAST } else { 0 };
            self.frame(FrameKind::Index, last, &index_plaintext(Codec::None, piece.len() as u32, piece));
        }
    }

    /// The END frame's fields as a writer would set them from the frames so far (the total
    /// size summed with wrapping).
    pub fn end_fields(&self) -> EndFields {
        let index_frames = self.index_parts;
        EndFields {
            seq: self.seq,
            entry_count: self.entries(),
            index_offset: self.index_offset.unwrap_or(self.out.len() as u64),
            index_frames,
            total_size: self.total,
        }
    }

    /// Seals an END frame with `fields` as they are.
    pub fn end(&mut self, fields: &EndFields) {
        let header = FrameHeader {
            kind: FrameKind::End,
            flags: 0,
            members: 0,
            body_len: (frame::END_FIELDS_LEN + TAG_LEN) as u32,
        };
        let tag = self.keys.seal(fields.seq, &fields.aad(&self.image_id, &header), &mut []);
        self.out.extend_from_slice(&header.encode());
        self.out.extend_from_slice(&fields.encode());
        self.out.extend_from_slice(&tag);
        self.seq += 1;
    }

    /// Seals the END frame a writer would write after the frames so far.
    pub fn auto_end(&mut self) {
        let fields = self.end_fields();
        self.end(&fields);
    }
}

/// Frame flags of a chunk.
pub fn chunk_flags(last: bool, pause: bool) -> u8 {
    (if last { FLAG_LAST } else { 0 }) | (if pause { FLAG_PAUSE } else { 0 })
}

/// A CHUNK plaintext holding `data` uncompressed, as one segment at `range.0` (none if empty).
pub fn chunk_plaintext(range: (u64, u64), data: &[u8]) -> Vec<u8> {
    let n = u32::from(!data.is_empty());
    let h = ChunkHeader {
        codec: Codec::None,
        raw_len: data.len() as u32,
        range_start: range.0,
        range_end: range.1,
        segments: n,
        stored_len: data.len() as u32,
    };
    let mut p = vec![0u8; CHUNK_PREFIX_LEN + data.len() + n as usize * SEGMENT_LEN];
    h.encode_into(&mut p);
    p[CHUNK_PREFIX_LEN..CHUNK_PREFIX_LEN + data.len()].copy_from_slice(data);
    if !data.is_empty() {
        let seg = [coffer_format::Segment { offset: range.0, len: data.len() as u32 }];
        encode_segments(&seg, &mut p[CHUNK_PREFIX_LEN + data.len()..]);
    }
    p
}

/// An INDEX plaintext: `stored` is the piece as stored with `codec`, `raw_len` its length
/// decompressed.
pub fn index_plaintext(codec: Codec, raw_len: u32, stored: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; INDEX_PREFIX_LEN];
    encode_index_prefix(codec, raw_len, &mut p);
    p.extend_from_slice(stored);
    p
}

/// Entry metadata with everything but kind and path zero or empty.
pub fn meta(kind: EntryKind, path: &[u8]) -> EntryMeta {
    EntryMeta {
        kind,
        continues: false,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 0,
        path: path.to_vec(),
        target: vec![],
        uname: vec![],
        gname: vec![],
    }
}

/// The plaintext of an uncompressed PACK frame of `raw` member bytes.
pub fn pack_plaintext(raw: &[u8]) -> Vec<u8> {
    let mut plain = vec![0u8; coffer_format::pack::PACK_PREFIX_LEN];
    coffer_format::pack::encode_pack_prefix(Codec::None, raw.len() as u32, &mut plain);
    plain.extend_from_slice(raw);
    plain
}

/// The plaintext of a PACK frame of `raw` member bytes compressed with `codec` (stored as they
/// are if they do not compress).
pub fn pack_plaintext_with(codec: Codec, raw: &[u8]) -> Vec<u8> {
    let mut stored = vec![0u8; raw.len()];
    let Some((codec, n)) = crate::codec::Compressor::new(codec, 3).compress(raw, &mut stored) else {
        return pack_plaintext(raw);
    };
    let mut plain = vec![0u8; coffer_format::pack::PACK_PREFIX_LEN];
    coffer_format::pack::encode_pack_prefix(codec, raw.len() as u32, &mut plain);
    plain.extend_from_slice(&stored[..n]);
    plain
}
