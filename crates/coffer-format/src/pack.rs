//! The plaintext of a PACK frame (format version 2): several whole entries, their metadata and
//! their contents, compressed together, so thousands of small files share chunks (and their
//! redundancy) instead of each paying a frame, a compression context and a tag of its own.
//!
//! ```text
//! plaintext := codec u8 | reserved u8[3] (0) | raw_len u32 | data (the rest)
//! raw       := member{count}                      (data decompressed: exactly raw_len bytes)
//! member    := meta_len u32 | data_len u32 | meta[meta_len] | contents[data_len]
//! ```
//! `count` is the frame header's member count (bytes 2..4, authenticated with the frame). A
//! member's metadata is an ENTRY plaintext (FORMAT.md §5.2); only a file has contents, and a
//! packed file is whole (never a CONTINUES part) and dense (no holes).

use crate::codec::{put_u32, Reader};
use crate::{invalid, Codec, EntryKind, EntryMeta, FormatError};
use std::ops::Range;

/// Codec and raw length in front of the stored data.
pub const PACK_PREFIX_LEN: usize = 8;
/// Metadata length and contents length in front of each member.
pub const MEMBER_HEAD_LEN: usize = 8;
/// Most entries one PACK frame holds (its count is a u16 of the frame header).
pub const MAX_MEMBERS: usize = u16::MAX as usize;
/// The index records of the entries of one frame (48 bytes and the metadata each) take at most
/// this many times the frame's length. Metadata compresses in a pack, and a reader holds every
/// record: the rule bounds what it holds by the size of the image it reads (a writer stores a
/// pack that would break it uncompressed, which always keeps it).
pub const MAX_INDEX_RATIO: u64 = 32;
/// The fixed fields of an index record (FORMAT.md §5.4).
pub const RECORD_FIXED_LEN: u64 = 48;

/// What the index records of `metas` take, to be checked against [`MAX_INDEX_RATIO`].
pub fn index_bytes<'a>(metas: impl IntoIterator<Item = &'a EntryMeta>) -> u64 {
    metas.into_iter().map(|m| RECORD_FIXED_LEN + m.encoded_len() as u64).sum()
}

/// Writes the PACK plaintext prefix.
pub fn encode_pack_prefix(codec: Codec, raw_len: u32, out: &mut [u8]) {
    out[0] = codec as u8;
    out[1..4].fill(0);
    put_u32(out, 4, raw_len);
}

/// Writes a member's head (the metadata and contents follow it).
pub fn encode_member_head(meta_len: u32, data_len: u32, out: &mut [u8]) {
    put_u32(out, 0, meta_len);
    put_u32(out, 4, data_len);
}

/// Appends one member (head, metadata, contents) to `out`: what a writer lays out in place.
pub fn encode_member(meta: &EntryMeta, data: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; MEMBER_HEAD_LEN];
    encode_member_head(meta.encoded_len() as u32, data.len() as u32, &mut head);
    out.extend_from_slice(&head);
    meta.encode(out);
    out.extend_from_slice(data);
}

/// Parses a PACK plaintext: its codec, raw length (at most `chunk_size`) and stored data.
pub fn parse_pack(plain: &[u8], chunk_size: u32) -> Result<(Codec, u32, &[u8]), FormatError> {
    const WHAT: &str = "pack frame";
    let mut r = Reader::new(plain, WHAT);
    let codec_byte = r.u8()?;
    let codec = Codec::from_u8(codec_byte).ok_or_else(|| invalid(WHAT, format!("unknown codec {codec_byte}")))?;
    r.zeros(3, "bytes 1..4")?;
    let raw_len = r.u32()?;
    if raw_len > chunk_size {
        return Err(invalid(WHAT, format!("{raw_len} raw bytes exceed the chunk size {chunk_size}")));
    }
    let data = r.take(r.remaining())?;
    if codec == Codec::None && data.len() != raw_len as usize {
        return Err(invalid(WHAT, "uncompressed data whose stored and raw lengths differ"));
    }
    Ok((codec, raw_len, data))
}

/// One entry of a pack: its metadata and where its contents are in the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedEntry {
    pub meta: EntryMeta,
    pub data: Range<usize>,
}

/// Parses the decompressed bytes of a pack of `count` members: exactly `count`, nothing after
/// the last, contents only for files, and no file in parts.
pub fn parse_members(raw: &[u8], count: usize) -> Result<Vec<PackedEntry>, FormatError> {
    const WHAT: &str = "pack member";
    if count == 0 || count > MAX_MEMBERS {
        return Err(invalid(WHAT, format!("{count} members")));
    }
    let mut r = Reader::new(raw, WHAT);
    // Every member takes at least its head and the shortest metadata: that caps the allocation.
    let mut out = Vec::with_capacity(count.min(raw.len() / (MEMBER_HEAD_LEN + 40) + 1));
    for _ in 0..count {
        let meta_len = r.u32()? as usize;
        let data_len = r.u32()? as usize;
        let meta = EntryMeta::parse(r.take(meta_len)?)?;
        let start = r.position();
        r.take(data_len)?;
        if meta.kind != EntryKind::File && data_len != 0 {
            return Err(invalid(WHAT, format!("a {} with contents", meta.kind.name())));
        }
        if meta.continues {
            return Err(invalid(WHAT, "a part of a file in parts"));
        }
        out.push(PackedEntry { meta, data: start..start + data_len });
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(kind: EntryKind, path: &str) -> EntryMeta {
        EntryMeta {
            kind,
            continues: false,
            mode: 0o640,
            uid: 1,
            gid: 2,
            mtime_sec: 3,
            mtime_nsec: 4,
            size: 0,
            path: path.as_bytes().to_vec(),
            target: vec![],
            uname: vec![],
            gname: vec![],
        }
    }

    #[test]
    fn members_round_trip_and_layout() {
        let mut raw = vec![];
        encode_member(&meta(EntryKind::Dir, "d"), b"", &mut raw);
        encode_member(&meta(EntryKind::File, "d/f"), b"abc", &mut raw);
        // The head: metadata length (40 fixed bytes, path "d", empty target and names), then 0.
        assert_eq!(&raw[..8], &[47, 0, 0, 0, 0, 0, 0, 0]);
        let got = parse_members(&raw, 2).unwrap();
        assert_eq!(got[0].meta, meta(EntryKind::Dir, "d"));
        assert_eq!(&raw[got[1].data.clone()], b"abc");
        assert!(parse_members(&raw, 1).is_err(), "trailing member");
        assert!(parse_members(&raw, 3).is_err(), "missing member");
        assert!(parse_members(&raw[..raw.len() - 1], 2).is_err(), "cut contents");
        assert!(parse_members(&raw, 0).is_err(), "an empty pack");
    }

    #[test]
    fn refuses_contents_of_a_directory_and_parts_of_files() {
        let mut raw = vec![];
        encode_member(&meta(EntryKind::Dir, "d"), b"x", &mut raw);
        assert!(parse_members(&raw, 1).is_err());
        let mut part = meta(EntryKind::File, "f");
        part.continues = true;
        let mut raw = vec![];
        encode_member(&part, b"x", &mut raw);
        assert!(parse_members(&raw, 1).is_err());
    }

    #[test]
    fn prefix_is_checked() {
        let mut p = [0u8; 10];
        encode_pack_prefix(Codec::None, 2, &mut p);
        assert_eq!(parse_pack(&p, 4096).unwrap(), (Codec::None, 2, &p[8..]));
        p[1] = 1;
        assert!(parse_pack(&p, 4096).is_err(), "reserved byte");
        encode_pack_prefix(Codec::None, 3, &mut p);
        assert!(parse_pack(&p, 4096).is_err(), "stored and raw lengths differ");
        encode_pack_prefix(Codec::Zstd, 5000, &mut p);
        assert!(parse_pack(&p, 4096).is_err(), "more than a chunk");
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), count in 0usize..70000) {
            let _ = parse_members(&bytes, count);
            let _ = parse_pack(&bytes, 4096);
        }
    }
}
