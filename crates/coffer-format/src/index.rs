//! The index: one record per entry, in entry order, telling a seeking reader where each entry's
//! frames are. It is stored compressed and encrypted in INDEX frames whose plaintext is
//! `codec u8 | reserved u8[3] | raw_len u32 | data`; the decompressed pieces, concatenated, form
//! the record stream.
//!
//! ```text
//! record := frame_offset u64 | first_seq u64 | frames_len u64 | chunks u32 | meta_len u32
//!           | size u64 | data_bytes u64 | meta[meta_len]
//! ```

use crate::codec::{put_u32, Reader, Writer};
use crate::{invalid, Codec, EntryMeta, FormatError};

pub const INDEX_PREFIX_LEN: usize = 8;
const RECORD_FIXED_LEN: usize = 48;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    /// Image offset of the entry's ENTRY frame.
    pub frame_offset: u64,
    /// Sequence number of the ENTRY frame.
    pub first_seq: u64,
    /// Bytes from the ENTRY frame's start to the end of its last CHUNK frame.
    pub frames_len: u64,
    /// Number of CHUNK frames (0 for anything but a file).
    pub chunks: u32,
    /// Logical size (files; 0 otherwise).
    pub size: u64,
    /// Bytes of data stored, holes excluded.
    pub data_bytes: u64,
    pub meta: EntryMeta,
}

impl IndexRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut meta = Vec::new();
        self.meta.encode(&mut meta);
        Writer::new(out)
            .u64(self.frame_offset)
            .u64(self.first_seq)
            .u64(self.frames_len)
            .u32(self.chunks)
            .u32(meta.len() as u32)
            .u64(self.size)
            .u64(self.data_bytes)
            .bytes(&meta);
    }

    /// Parses a whole record stream.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Self>, FormatError> {
        let mut r = Reader::new(bytes, "index record");
        // Every record takes at least RECORD_FIXED_LEN + 40 bytes, which caps the allocation.
        let mut out = Vec::with_capacity(bytes.len() / (RECORD_FIXED_LEN + 40));
        while r.remaining() > 0 {
            let frame_offset = r.u64()?;
            let first_seq = r.u64()?;
            let frames_len = r.u64()?;
            let chunks = r.u32()?;
            let meta_len = r.u32()? as usize;
            let size = r.u64()?;
            let data_bytes = r.u64()?;
            let meta = EntryMeta::parse(r.take(meta_len)?)?;
            out.push(Self { frame_offset, first_seq, frames_len, chunks, size, data_bytes, meta });
        }
        Ok(out)
    }
}

/// Writes the INDEX plaintext prefix.
pub fn encode_index_prefix(codec: Codec, raw_len: u32, out: &mut [u8]) {
    out[0] = codec as u8;
    out[1..4].fill(0);
    put_u32(out, 4, raw_len);
}

/// Parses an INDEX plaintext: its codec, raw length (capped by `chunk_size`) and stored data.
pub fn parse_index_part(plain: &[u8], chunk_size: u32) -> Result<(Codec, u32, &[u8]), FormatError> {
    let mut r = Reader::new(plain, "index frame");
    let codec_byte = r.u8()?;
    let codec =
        Codec::from_u8(codec_byte).ok_or_else(|| invalid("index frame", format!("unknown codec {codec_byte}")))?;
    r.zeros(3, "bytes 1..4")?;
    let raw_len = r.u32()?;
    if raw_len > chunk_size {
        return Err(invalid("index frame", "raw length exceeds the chunk size"));
    }
    let data = r.take(r.remaining())?;
    if codec == Codec::None && data.len() != raw_len as usize {
        return Err(invalid("index frame", "uncompressed data whose stored and raw lengths differ"));
    }
    Ok((codec, raw_len, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKind;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip() {
        let meta = EntryMeta {
            kind: EntryKind::Dir,
            continues: false,
            mode: 0o750,
            uid: 0,
            gid: 0,
            mtime_sec: -1,
            mtime_nsec: 0,
            size: 0,
            path: b"sbtest".to_vec(),
            target: vec![],
            uname: vec![],
            gname: vec![],
        };
        let recs = vec![
            IndexRecord {
                frame_offset: 16384,
                first_seq: 0,
                frames_len: 80,
                chunks: 0,
                size: 0,
                data_bytes: 0,
                meta: meta.clone(),
            },
            IndexRecord {
                frame_offset: 16464,
                first_seq: 1,
                frames_len: 900,
                chunks: 2,
                size: 1 << 33,
                data_bytes: 7,
                meta,
            },
        ];
        let mut out = vec![];
        for r in &recs {
            r.encode(&mut out);
        }
        assert_eq!(&out[..8], &16384u64.to_le_bytes());
        assert_eq!(IndexRecord::parse_all(&out).unwrap(), recs);
        assert!(IndexRecord::parse_all(&out[..out.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexRecord::parse_all(&bytes);
            let _ = parse_index_part(&bytes, 1 << 20);
        }
    }
}
