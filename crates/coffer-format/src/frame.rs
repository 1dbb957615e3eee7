//! Frames: everything after the two header copies is a sequence of frames.
//!
//! ```text
//! frame  := kind u8 | flags u8 | members u16 | body_len u32 | body[body_len]
//! body   := AEAD(payload key, nonce(seq), aad, plaintext) || tag      (ENTRY, CHUNK, INDEX, PACK)
//!         | END fields (40 bytes) || tag                              (END)
//! nonce  := 0x00000000 || seq as u64 big-endian                       (12 bytes)
//! aad    := image_id[16] | seq u64 | frame header[8] | entry_no u64 | part_no u64   (48 bytes)
//! ```
//! `seq` is the frame's position in the image (0 for the first frame after the headers). It is
//! never stored (except in END, see [`EndFields`]): a reader counts frames, so a dropped,
//! duplicated or reordered frame fails to authenticate. `members` is the number of entries a
//! PACK frame holds (version 2) and 0 in every other frame; it is authenticated with the header.

use crate::codec::{put_u64, Reader, Writer};
use crate::{invalid, FormatError, TAG_LEN};

pub const FRAME_HEADER_LEN: usize = 8;
/// Set on the last CHUNK of an entry and on the last INDEX frame.
pub const FLAG_LAST: u8 = 0x01;
/// Set, with `FLAG_LAST`, on the last CHUNK of an entry whose file is not complete: a later
/// entry with the `CONTINUES` flag and the same path carries on from where this one ends.
pub const FLAG_PAUSE: u8 = 0x02;
/// Extra room above the chunk size that a frame body may take (entry metadata, segment tables).
pub const BODY_SLACK: usize = 256 * 1024;
pub const AAD_LEN: usize = 48;
pub const END_FIELDS_LEN: usize = 40;
/// The END frame is always exactly this long, so a seeking reader finds it at `len - 64`.
pub const END_FRAME_LEN: usize = FRAME_HEADER_LEN + END_FIELDS_LEN + TAG_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Metadata of one entry (file, directory, symlink, hard link).
    Entry = 1,
    /// A piece of a file's contents.
    Chunk = 2,
    /// A piece of the index.
    Index = 3,
    /// The last frame: counts, and where the index starts.
    End = 4,
    /// Several whole entries, metadata and contents (format version 2, see [`crate::pack`]).
    Pack = 5,
}

impl FrameKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Entry),
            2 => Some(Self::Chunk),
            3 => Some(Self::Index),
            4 => Some(Self::End),
            5 => Some(Self::Pack),
            _ => None,
        }
    }
}

/// The 8 plaintext bytes in front of every frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    /// Entries in a PACK frame (1..=65535); 0 in other frames.
    pub members: u16,
    pub body_len: u32,
}

impl FrameHeader {
    pub fn new(kind: FrameKind, last: bool, body_len: usize) -> Self {
        Self { kind, flags: if last { FLAG_LAST } else { 0 }, members: 0, body_len: body_len as u32 }
    }

    pub fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    /// The last chunk of a part, not of the file (see [`FLAG_PAUSE`]).
    pub fn is_pause(&self) -> bool {
        self.flags & FLAG_PAUSE != 0
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0] = self.kind as u8;
        out[1] = self.flags;
        out[2..4].copy_from_slice(&self.members.to_le_bytes());
        out[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        out
    }

    /// Parses and checks a frame header; `chunk_size` (from the authenticated image header) caps
    /// the body length, so no allocation is ever larger than the image declared.
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN], chunk_size: u32) -> Result<Self, FormatError> {
        const WHAT: &str = "frame header";
        let kind =
            FrameKind::from_u8(bytes[0]).ok_or_else(|| invalid(WHAT, format!("unknown frame kind {}", bytes[0])))?;
        let flags = bytes[1];
        let allowed = match kind {
            FrameKind::Chunk => FLAG_LAST | FLAG_PAUSE,
            FrameKind::Index => FLAG_LAST,
            FrameKind::Entry | FrameKind::End | FrameKind::Pack => 0,
        };
        if flags & !allowed != 0 || (flags & FLAG_PAUSE != 0 && flags & FLAG_LAST == 0) {
            return Err(FormatError::Reserved { what: WHAT, field: "flags" });
        }
        let members = u16::from_le_bytes([bytes[2], bytes[3]]);
        match kind {
            FrameKind::Pack if members == 0 => return Err(invalid(WHAT, "a pack of no entries")),
            FrameKind::Pack => {}
            _ if members != 0 => return Err(FormatError::Reserved { what: WHAT, field: "bytes 2..4" }),
            _ => {}
        }
        let body_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let (min, max) = match kind {
            FrameKind::End => (END_FIELDS_LEN + TAG_LEN, END_FIELDS_LEN + TAG_LEN),
            _ => (TAG_LEN, max_body_len(chunk_size)),
        };
        if !(min..=max).contains(&(body_len as usize)) {
            return Err(invalid(WHAT, format!("body length {body_len} outside {min}..={max}")));
        }
        Ok(Self { kind, flags, members, body_len })
    }
}

/// The largest body a frame of an image with this chunk size may have.
pub fn max_body_len(chunk_size: u32) -> usize {
    chunk_size as usize + BODY_SLACK + TAG_LEN
}

/// The AEAD nonce of frame `seq`: unique per frame, and the data key is unique per image.
pub fn nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// Where a frame belongs: entry number (0-based; for a PACK frame, that of its first entry; for
/// INDEX and END frames, the number of entries) and part number (0 for an ENTRY or a PACK, 1..
/// for an entry's chunks, 0.. for INDEX frames, 0 for END).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub seq: u64,
    pub entry_no: u64,
    pub part_no: u64,
}

/// The associated data of a frame.
pub fn aad(image_id: &[u8; 16], pos: Position, header: &FrameHeader) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..16].copy_from_slice(image_id);
    put_u64(&mut a, 16, pos.seq);
    a[24..32].copy_from_slice(&header.encode());
    put_u64(&mut a, 32, pos.entry_no);
    put_u64(&mut a, 40, pos.part_no);
    a
}

/// The plaintext fields of the END frame (authenticated as associated data, not encrypted).
///
/// ```text
/// seq u64 (this frame's seq) | entry_count u64 | index_offset u64 | index_frames u64 | total_size u64
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndFields {
    pub seq: u64,
    pub entry_count: u64,
    /// Image offset of the first INDEX frame.
    pub index_offset: u64,
    pub index_frames: u64,
    /// Sum of the logical sizes of all files.
    pub total_size: u64,
}

impl EndFields {
    pub fn encode(&self) -> [u8; END_FIELDS_LEN] {
        let mut out = Vec::with_capacity(END_FIELDS_LEN);
        Writer::new(&mut out)
            .u64(self.seq)
            .u64(self.entry_count)
            .u64(self.index_offset)
            .u64(self.index_frames)
            .u64(self.total_size);
        out.try_into().expect("40 bytes")
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "end frame");
        let f = Self {
            seq: r.u64()?,
            entry_count: r.u64()?,
            index_offset: r.u64()?,
            index_frames: r.u64()?,
            total_size: r.u64()?,
        };
        r.finish()?;
        Ok(f)
    }

    /// The associated data of the END frame: the common prefix followed by the fields.
    pub fn aad(&self, image_id: &[u8; 16], header: &FrameHeader) -> Vec<u8> {
        let pos = Position { seq: self.seq, entry_no: self.entry_count, part_no: 0 };
        let mut a = aad(image_id, pos, header).to_vec();
        a.extend_from_slice(&self.encode());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let h = FrameHeader::new(FrameKind::Chunk, true, 1000);
        let b = h.encode();
        assert_eq!(b, [2, 1, 0, 0, 0xe8, 0x03, 0, 0]);
        assert_eq!(FrameHeader::parse(&b, 4096).unwrap(), h);
    }

    #[test]
    fn header_rejects_what_version_1_does_not_define() {
        let cs = 1 << 20;
        assert!(FrameHeader::parse(&[9, 0, 0, 0, 32, 0, 0, 0], cs).is_err(), "unknown kind");
        assert!(FrameHeader::parse(&[1, 1, 0, 0, 32, 0, 0, 0], cs).is_err(), "LAST on an entry");
        assert!(FrameHeader::parse(&[2, 4, 0, 0, 32, 0, 0, 0], cs).is_err(), "unknown flag");
        assert!(FrameHeader::parse(&[2, 2, 0, 0, 32, 0, 0, 0], cs).is_err(), "PAUSE without LAST");
        assert!(FrameHeader::parse(&[2, 3, 0, 0, 32, 0, 0, 0], cs).unwrap().is_pause());
        assert!(FrameHeader::parse(&[3, 2, 0, 0, 32, 0, 0, 0], cs).is_err(), "PAUSE on an index frame");
        assert!(FrameHeader::parse(&[2, 0, 1, 0, 32, 0, 0, 0], cs).is_err(), "reserved");
        assert!(FrameHeader::parse(&[2, 0, 0, 0, 15, 0, 0, 0], cs).is_err(), "shorter than a tag");
        let too_big = (max_body_len(cs) as u32 + 1).to_le_bytes();
        assert!(FrameHeader::parse(&[2, 0, 0, 0, too_big[0], too_big[1], too_big[2], too_big[3]], cs).is_err());
        assert!(FrameHeader::parse(&[4, 0, 0, 0, 57, 0, 0, 0], cs).is_err(), "END has a fixed size");
        assert!(FrameHeader::parse(&[4, 0, 0, 0, 56, 0, 0, 0], cs).is_ok());
        let pack = FrameHeader::parse(&[5, 0, 3, 1, 32, 0, 0, 0], cs).unwrap();
        assert_eq!((pack.kind, pack.members), (FrameKind::Pack, 259));
        assert_eq!(pack.encode(), [5, 0, 3, 1, 32, 0, 0, 0]);
        assert!(FrameHeader::parse(&[5, 0, 0, 0, 32, 0, 0, 0], cs).is_err(), "a pack of nothing");
        assert!(FrameHeader::parse(&[5, 1, 1, 0, 32, 0, 0, 0], cs).is_err(), "LAST on a pack");
        assert!(FrameHeader::parse(&[2, 1, 1, 0, 32, 0, 0, 0], cs).is_err(), "members of a chunk");
    }

    #[test]
    fn nonce_is_the_big_endian_sequence_number() {
        assert_eq!(nonce(0x0102), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn aad_layout() {
        let h = FrameHeader::new(FrameKind::Entry, false, 40);
        let a = aad(&[7; 16], Position { seq: 3, entry_no: 4, part_no: 5 }, &h);
        assert_eq!(&a[..16], &[7; 16]);
        assert_eq!(&a[16..24], &3u64.to_le_bytes());
        assert_eq!(&a[24..32], &h.encode());
        assert_eq!(&a[32..40], &4u64.to_le_bytes());
        assert_eq!(&a[40..48], &5u64.to_le_bytes());
    }

    #[test]
    fn end_fields_round_trip() {
        let e = EndFields { seq: 1, entry_count: 2, index_offset: 3, index_frames: 4, total_size: 5 };
        assert_eq!(EndFields::parse(&e.encode()).unwrap(), e);
        assert_eq!(END_FRAME_LEN, 64);
    }
}
