//! The plaintext of a CHUNK frame: a fixed prefix, the (possibly compressed) data, and the table
//! of data segments. Data comes before the table so a writer can read file bytes straight into
//! their final place and, without compression, seal them in place.
//!
//! ```text
//! off len field
//!   0   1 codec
//!   1   3 reserved (0)
//!   4   4 raw_len: bytes of data after decompression (= sum of segment lengths)
//!   8   8 range_start: file offset where this chunk's range starts
//!  16   8 range_end: file offset where it ends (for the LAST chunk: the file's size)
//!  24   4 segment count n
//!  28   4 stored_len: bytes of data as stored
//!  32     data[stored_len]
//!         n x (offset u64, len u32): where the decompressed data goes, in order
//! ```
//! Bytes of the range that no segment covers are holes. Ranges of consecutive chunks of a file
//! are contiguous and the first starts at 0, so the chunks tile the file exactly.

use crate::codec::{put_u32, put_u64, Reader};
use crate::{invalid, Codec, FormatError};

pub const CHUNK_PREFIX_LEN: usize = 32;
pub const SEGMENT_LEN: usize = 12;
/// Most segments one chunk may list (keeps the table inside the frame body slack). Readers
/// refuse a chunk with more, and writers cut chunks so that none has more: both use this
/// constant, through [`check_chunk`].
pub const MAX_SEGMENTS: usize = 16384;

// A chunk's plaintext beyond its data (prefix and the longest segment table) fits the slack a
// frame body has above the chunk size, so a writer's frame buffer always holds it.
const _: () = assert!(CHUNK_PREFIX_LEN + MAX_SEGMENTS * SEGMENT_LEN <= crate::frame::BODY_SLACK);

/// A run of data bytes at a file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u32,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub codec: Codec,
    pub raw_len: u32,
    pub range_start: u64,
    pub range_end: u64,
    pub segments: u32,
    pub stored_len: u32,
}

impl ChunkHeader {
    pub fn encode_into(&self, out: &mut [u8]) {
        out[0] = self.codec as u8;
        out[1..4].fill(0);
        put_u32(out, 4, self.raw_len);
        put_u64(out, 8, self.range_start);
        put_u64(out, 16, self.range_end);
        put_u32(out, 24, self.segments);
        put_u32(out, 28, self.stored_len);
    }

    /// Total plaintext length of a chunk with this header.
    pub fn plaintext_len(&self) -> usize {
        CHUNK_PREFIX_LEN + self.stored_len as usize + self.segments as usize * SEGMENT_LEN
    }
}

/// Writes a segment table.
pub fn encode_segments(segments: &[Segment], out: &mut [u8]) {
    for (i, s) in segments.iter().enumerate() {
        put_u64(out, i * SEGMENT_LEN, s.offset);
        put_u32(out, i * SEGMENT_LEN + 8, s.len);
    }
}

/// A parsed chunk plaintext: the header, the stored data and the segments.
#[derive(Debug)]
pub struct ParsedChunk<'a> {
    pub header: ChunkHeader,
    /// Offset of the stored data within the plaintext.
    pub data_at: usize,
    pub data: &'a [u8],
    pub segments: Vec<Segment>,
}

/// Checks what a reader requires of a chunk, beyond its layout: at most `chunk_size` bytes
/// of data and [`MAX_SEGMENTS`] segments, a range that does not end before it starts, and
/// segments that are non-empty, in order, apart, inside the range and add up to the data.
/// Readers check every chunk with it, and the writer every chunk before it seals it, so an
/// image that is written is one that is read.
pub fn check_chunk(header: &ChunkHeader, segments: &[Segment], chunk_size: u32) -> Result<(), FormatError> {
    check_header(header, chunk_size)?;
    if segments.len() != header.segments as usize {
        return Err(invalid("chunk", format!("{} segments listed, {} counted", segments.len(), header.segments)));
    }
    check_segments(header, segments)
}

fn check_header(header: &ChunkHeader, chunk_size: u32) -> Result<(), FormatError> {
    const WHAT: &str = "chunk";
    if header.raw_len > chunk_size {
        return Err(invalid(WHAT, format!("{} data bytes exceed the chunk size {chunk_size}", header.raw_len)));
    }
    if header.segments as usize > MAX_SEGMENTS {
        return Err(invalid(WHAT, format!("{} segments", header.segments)));
    }
    if header.range_end < header.range_start {
        return Err(invalid(WHAT, "range ends before it starts"));
    }
    if header.codec == Codec::None && header.stored_len != header.raw_len {
        return Err(invalid(WHAT, "uncompressed data whose stored and raw lengths differ"));
    }
    Ok(())
}

fn check_segments(header: &ChunkHeader, segments: &[Segment]) -> Result<(), FormatError> {
    const WHAT: &str = "chunk";
    let mut pos = header.range_start;
    let mut total = 0u64;
    for s in segments {
        if s.len == 0
            || s.offset < pos
            || s.offset.checked_add(u64::from(s.len)).is_none_or(|end| end > header.range_end)
        {
            return Err(invalid(WHAT, "segments overlap, are empty, or leave the chunk's range"));
        }
        pos = s.end();
        total += u64::from(s.len);
    }
    if total != u64::from(header.raw_len) {
        return Err(invalid(WHAT, "segment lengths do not add up to the data length"));
    }
    Ok(())
}

/// Parses and checks a chunk plaintext. `chunk_size` caps `raw_len`.
pub fn parse_chunk(plain: &[u8], chunk_size: u32) -> Result<ParsedChunk<'_>, FormatError> {
    const WHAT: &str = "chunk";
    let mut r = Reader::new(plain, WHAT);
    let codec_byte = r.u8()?;
    let codec = Codec::from_u8(codec_byte).ok_or_else(|| invalid(WHAT, format!("unknown codec {codec_byte}")))?;
    r.zeros(3, "bytes 1..4")?;
    let header = ChunkHeader {
        codec,
        raw_len: r.u32()?,
        range_start: r.u64()?,
        range_end: r.u64()?,
        segments: r.u32()?,
        stored_len: r.u32()?,
    };
    // Before anything is allocated: the segment count is capped here.
    check_header(&header, chunk_size)?;
    let data_at = r.position();
    let data = r.take(header.stored_len as usize)?;
    let mut segments = Vec::with_capacity(header.segments as usize);
    for _ in 0..header.segments {
        segments.push(Segment { offset: r.u64()?, len: r.u32()? });
    }
    check_segments(&header, &segments)?;
    r.finish()?;
    Ok(ParsedChunk { header, data_at, data, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(h: ChunkHeader, data: &[u8], segs: &[Segment]) -> Vec<u8> {
        let mut out = vec![0u8; h.plaintext_len()];
        h.encode_into(&mut out);
        out[32..32 + data.len()].copy_from_slice(data);
        encode_segments(segs, &mut out[32 + data.len()..]);
        out
    }

    #[test]
    fn dense_chunk_round_trip() {
        let h =
            ChunkHeader { codec: Codec::None, raw_len: 3, range_start: 10, range_end: 13, segments: 1, stored_len: 3 };
        let b = build(h, b"abc", &[Segment { offset: 10, len: 3 }]);
        assert_eq!(&b[..4], &[0, 0, 0, 0]);
        assert_eq!(&b[4..8], &3u32.to_le_bytes());
        assert_eq!(&b[8..16], &10u64.to_le_bytes());
        assert_eq!(&b[32..35], b"abc");
        assert_eq!(&b[35..43], &10u64.to_le_bytes());
        let p = parse_chunk(&b, 4096).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.data, b"abc");
        assert_eq!(p.segments, vec![Segment { offset: 10, len: 3 }]);
    }

    #[test]
    fn sparse_and_empty_chunks() {
        let h = ChunkHeader {
            codec: Codec::None,
            raw_len: 2,
            range_start: 0,
            range_end: 1 << 40,
            segments: 2,
            stored_len: 2,
        };
        let segs = [Segment { offset: 5, len: 1 }, Segment { offset: 1 << 39, len: 1 }];
        parse_chunk(&build(h, b"xy", &segs), 4096).unwrap();
        let empty =
            ChunkHeader { codec: Codec::None, raw_len: 0, range_start: 7, range_end: 7, segments: 0, stored_len: 0 };
        assert!(parse_chunk(&build(empty, b"", &[]), 4096).unwrap().segments.is_empty());
    }

    #[test]
    fn inconsistent_chunks_are_rejected() {
        let h =
            ChunkHeader { codec: Codec::None, raw_len: 2, range_start: 0, range_end: 10, segments: 2, stored_len: 2 };
        let overlap = [Segment { offset: 0, len: 2 }, Segment { offset: 1, len: 0 }];
        assert!(parse_chunk(&build(h, b"xy", &overlap), 4096).is_err());
        let outside = [Segment { offset: 0, len: 1 }, Segment { offset: 10, len: 1 }];
        assert!(parse_chunk(&build(h, b"xy", &outside), 4096).is_err());
        let big = ChunkHeader { raw_len: 5000, stored_len: 5000, segments: 0, ..h };
        assert!(parse_chunk(&build(big, &[0; 5000], &[]), 4096).is_err());
        let sums = ChunkHeader { segments: 1, ..h };
        assert!(parse_chunk(&build(sums, b"xy", &[Segment { offset: 0, len: 1 }]), 4096).is_err());
    }

    #[test]
    fn writer_and_reader_share_the_segment_limit() {
        let segs: Vec<Segment> = (0..=MAX_SEGMENTS as u64).map(|i| Segment { offset: 2 * i, len: 1 }).collect();
        let shape = |n: usize| ChunkHeader {
            codec: Codec::None,
            raw_len: n as u32,
            range_start: 0,
            range_end: 2 * n as u64,
            segments: n as u32,
            stored_len: n as u32,
        };
        check_chunk(&shape(MAX_SEGMENTS), &segs[..MAX_SEGMENTS], 1 << 20).unwrap();
        assert!(check_chunk(&shape(MAX_SEGMENTS + 1), &segs, 1 << 20).is_err());
        // What check_chunk accepts, parse_chunk reads back.
        let h = shape(MAX_SEGMENTS);
        let b = build(h, &vec![7u8; MAX_SEGMENTS], &segs[..MAX_SEGMENTS]);
        assert_eq!(parse_chunk(&b, 1 << 20).unwrap().segments.len(), MAX_SEGMENTS);
        let b = build(shape(MAX_SEGMENTS + 1), &vec![7u8; MAX_SEGMENTS + 1], &segs);
        assert!(parse_chunk(&b, 1 << 20).is_err());
        // A table that does not match its count is refused too.
        assert!(check_chunk(&shape(2), &segs[..1], 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_chunk(&bytes, 1 << 20);
        }
    }
}
