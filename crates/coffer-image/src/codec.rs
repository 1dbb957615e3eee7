//! Per-worker compression state. Contexts are reused across chunks: creating a zstd context per
//! chunk costs more than compressing a small one.

use coffer_format::Codec;

/// Compresses chunks with one codec at one level.
pub struct Compressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// lz4 output when the caller's buffer is shorter than lz4's worst case (which lz4 needs
    /// to start): only with the largest chunks, whose frame slack is less than that.
    spill: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("codec", &self.codec).finish()
    }
}

impl Compressor {
    pub fn new(codec: Codec, level: i32) -> Self {
        let zstd = (codec == Codec::Zstd)
            .then(|| zstd::bulk::Compressor::new(level).expect("zstd accepts every level in its range"));
        Self { codec, zstd, spill: Vec::new() }
    }

    /// Compresses `src` into `dst`; `None` unless the result is smaller than `src` (so
    /// incompressible data is stored as is) and fits `dst`. Any `dst` will do: lz4, which
    /// refuses to start without room for its worst case (`src` plus 1/255th, more than a 64 MiB
    /// chunk's frame slack), then compresses into a buffer of its own, copied if it fits.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<(Codec, usize)> {
        if src.is_empty() || dst.is_empty() {
            return None;
        }
        let n = match self.codec {
            Codec::None => return None,
            Codec::Zstd => self.zstd.as_mut()?.compress_to_buffer(src, dst).ok()?,
            Codec::Lz4 if dst.len() >= lz4_flex::block::get_maximum_output_size(src.len()) => {
                lz4_flex::block::compress_into(src, dst).ok()?
            }
            Codec::Lz4 => {
                self.spill.resize(lz4_flex::block::get_maximum_output_size(src.len()), 0);
                let n = lz4_flex::block::compress_into(src, &mut self.spill).ok()?;
                dst.get_mut(..n)?.copy_from_slice(self.spill.get(..n)?);
                n
            }
        };
        (n < src.len()).then_some((self.codec, n))
    }
}

/// Decompresses chunks of any codec.
pub struct Decompressor {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decompressor")
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decompressor {
    pub fn new() -> Self {
        let mut zstd = zstd::bulk::Decompressor::new().expect("zstd decompression context");
        // A chunk is at most 64 MiB: refuse frames that ask for a larger window.
        zstd.window_log_max(27).expect("valid window log");
        Self { zstd }
    }

    /// Decompresses `src` into exactly `dst.len()` bytes.
    pub fn decompress(&mut self, codec: Codec, src: &[u8], dst: &mut [u8]) -> Result<(), String> {
        let n = match codec {
            Codec::None => {
                if src.len() != dst.len() {
                    return Err("stored length differs from data length".into());
                }
                dst.copy_from_slice(src);
                src.len()
            }
            Codec::Zstd => self.zstd.decompress_to_buffer(src, dst).map_err(|e| format!("zstd: {e}"))?,
            Codec::Lz4 => lz4_flex::block::decompress_into(src, dst).map_err(|e| format!("lz4: {e}"))?,
        };
        if n != dst.len() {
            return Err(format!("decompressed to {n} bytes, expected {}", dst.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_codec() {
        let src: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Codec::Zstd, Codec::Lz4] {
            let mut c = Compressor::new(codec, 1);
            let mut dst = vec![0u8; 2 * src.len()];
            let (got, n) = c.compress(&src, &mut dst).expect("compressible");
            assert_eq!(got, codec);
            let mut out = vec![0u8; src.len()];
            Decompressor::new().decompress(codec, &dst[..n], &mut out).unwrap();
            assert_eq!(out, src);
            let mut short = vec![0u8; src.len() + 1];
            assert!(Decompressor::new().decompress(codec, &dst[..n], &mut short).is_err());
        }
    }

    #[test]
    fn the_largest_chunks_compress_with_lz4_too() {
        // A 64 MiB chunk in its frame buffer: lz4's worst case is 257 KiB more than the chunk,
        // and the frame has 256 KiB of slack. lz4 refused to start, and such chunks were stored
        // uncompressed.
        let chunk = coffer_format::MAX_CHUNK_SIZE as usize;
        let src: Vec<u8> = (0..chunk).map(|i| (i / 512) as u8).collect();
        let room =
            chunk + coffer_format::frame::BODY_SLACK + coffer_format::TAG_LEN - coffer_format::chunk::CHUNK_PREFIX_LEN;
        assert!(room < lz4_flex::block::get_maximum_output_size(chunk));
        let mut dst = vec![0u8; room];
        let (codec, n) = Compressor::new(Codec::Lz4, 1).compress(&src, &mut dst).expect("compressible");
        assert_eq!(codec, Codec::Lz4);
        let mut out = vec![0u8; chunk];
        Decompressor::new().decompress(Codec::Lz4, &dst[..n], &mut out).unwrap();
        assert!(out == src);
        // Output that would not fit the buffer is not written: stored as is.
        assert!(Compressor::new(Codec::Lz4, 1).compress(&src, &mut [0u8; 16]).is_none());
    }

    #[test]
    fn incompressible_data_is_refused() {
        let mut src = vec![0u8; 65536];
        coffer_crypto::random(&mut src).unwrap();
        let mut dst = vec![0u8; 2 * src.len()];
        assert!(Compressor::new(Codec::Zstd, 1).compress(&src, &mut dst).is_none());
        assert!(Compressor::new(Codec::Lz4, 1).compress(&src, &mut dst).is_none());
    }
}
