//! Per-worker compression state. Contexts are reused across chunks: creating a zstd context per
//! chunk costs more than compressing a small one.

use coffer_format::Codec;

/// Compresses chunks with one codec at one level.
pub struct Compressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
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
        Self { codec, zstd }
    }

    /// Compresses `src` into `dst`; `None` unless the result is smaller than `src` (so
    /// incompressible data is stored as is). `dst` must have room for the codec's worst case
    /// (lz4 refuses to start otherwise); a frame buffer always has.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<(Codec, usize)> {
        if src.is_empty() || dst.is_empty() {
            return None;
        }
        let n = match self.codec {
            Codec::None => return None,
            Codec::Zstd => self.zstd.as_mut().expect("zstd context").compress_to_buffer(src, dst).ok()?,
            Codec::Lz4 => lz4_flex::block::compress_into(src, dst).ok()?,
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
    fn incompressible_data_is_refused() {
        let mut src = vec![0u8; 65536];
        coffer_crypto::random(&mut src).unwrap();
        let mut dst = vec![0u8; 2 * src.len()];
        assert!(Compressor::new(Codec::Zstd, 1).compress(&src, &mut dst).is_none());
        assert!(Compressor::new(Codec::Lz4, 1).compress(&src, &mut dst).is_none());
    }
}
