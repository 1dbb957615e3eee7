//! Decompressing the page formats whose checksum sits inside the compressed data: MariaDB's
//! page_compressed pages of non-full_crc32 spaces, and MySQL's transparent page compression.

use crate::checksum::{be16, be32};
use crate::space::{fil, PageCompression};
use std::io::Read;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// An algorithm this build cannot decompress: the page is not verifiable, not fine.
    Unsupported(String),
    /// The compressed data is damaged.
    Failed(String),
}

fn failed(what: impl std::fmt::Display) -> DecompressError {
    DecompressError::Failed(what.to_string())
}

/// Decompresses `src` with `algo` into exactly `out.len()` bytes.
fn decompress(algo: PageCompression, src: &[u8], out: &mut [u8]) -> Result<(), DecompressError> {
    let n = match algo {
        PageCompression::Zlib => {
            let v = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(src, out.len())
                .map_err(|e| failed(format!("zlib: {e}")))?;
            out[..v.len()].copy_from_slice(&v);
            v.len()
        }
        PageCompression::Lz4 => lz4_flex::block::decompress_into(src, out).map_err(|e| failed(format!("lz4: {e}")))?,
        PageCompression::Lzo => lzo::decompress_into(src, out).map_err(|e| failed(format!("lzo: {e}")))?,
        PageCompression::Snappy => {
            snap::raw::Decoder::new().decompress(src, out).map_err(|e| failed(format!("snappy: {e}")))?
        }
        PageCompression::Lzma => {
            let mut v = Vec::with_capacity(out.len());
            lzma_rs::xz_decompress(&mut std::io::Cursor::new(src), &mut v).map_err(|e| failed(format!("lzma: {e}")))?;
            if v.len() > out.len() {
                return Err(failed("lzma: longer than a page"));
            }
            out[..v.len()].copy_from_slice(&v);
            v.len()
        }
        PageCompression::Bzip2 => {
            let mut v = Vec::with_capacity(out.len());
            bzip2::read::BzDecoder::new(src)
                .take(out.len() as u64 + 1)
                .read_to_end(&mut v)
                .map_err(|e| failed(format!("bzip2: {e}")))?;
            if v.len() > out.len() {
                return Err(failed("bzip2: longer than a page"));
            }
            out[..v.len()].copy_from_slice(&v);
            v.len()
        }
    };
    if n != out.len() {
        return Err(failed(format!("{}: {n} bytes, not a page of {}", algo.name(), out.len())));
    }
    Ok(())
}

/// MariaDB page_compressed, older format (type 34354): the whole original page (header and
/// checksum included) is compressed; the algorithm is the 8-byte number at 26 and the compressed
/// length the 2 bytes at 38. Returns the original page in `out` (a page of the logical size).
pub fn mariadb_page(page: &[u8], out: &mut [u8]) -> Result<PageCompression, DecompressError> {
    let code = u64::from(be32(page, fil::FLUSH_LSN_OR_KEY_VERSION)) << 32
        | u64::from(be32(page, fil::FLUSH_LSN_OR_KEY_VERSION + 4));
    let algo =
        PageCompression::from_code(code).ok_or_else(|| failed(format!("unknown compression algorithm {code}")))?;
    let len = usize::from(be16(page, fil::DATA));
    let start = fil::DATA + 2;
    if len == 0 || start + len > page.len() {
        return Err(failed(format!("compressed length {len} does not fit the page")));
    }
    decompress(algo, &page[start..start + len], out)?;
    Ok(algo)
}

/// MySQL transparent page compression (type 14): header [0, 38) kept, version at 26, algorithm
/// at 27 (1 zlib, 2 lz4), original type at 28, original data length at 30, compressed length at
/// 32, data from 38. Rebuilds the original page in `out` (header with the original type).
pub fn mysql_page(page: &[u8], out: &mut [u8]) -> Result<&'static str, DecompressError> {
    let algo = match page[27] {
        1 => PageCompression::Zlib,
        2 => PageCompression::Lz4,
        a => return Err(DecompressError::Unsupported(format!("MySQL compression algorithm {a}"))),
    };
    let original = usize::from(be16(page, 30));
    let stored = usize::from(be16(page, 32));
    if fil::DATA + stored > page.len() || fil::DATA + original > out.len() {
        return Err(failed("compressed or original length does not fit the page"));
    }
    out.fill(0);
    out[..fil::DATA].copy_from_slice(&page[..fil::DATA]);
    out[fil::TYPE..fil::TYPE + 2].copy_from_slice(&page[28..30]);
    decompress(algo, &page[fil::DATA..fil::DATA + stored], &mut out[fil::DATA..fil::DATA + original])?;
    Ok(algo.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with(algo_code: u64, payload: &[u8]) -> Vec<u8> {
        // lzma-rs only writes literals, so its "compressed" test data needs a larger frame.
        let mut p = vec![0u8; 16384.max(40 + payload.len())];
        p[26..34].copy_from_slice(&algo_code.to_be_bytes());
        p[38..40].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[40..40 + payload.len()].copy_from_slice(payload);
        p
    }

    #[test]
    fn each_algorithm_round_trips() {
        let original: Vec<u8> = (0..16384u32).map(|i| (i % 97) as u8).collect();
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&original, 6);
        let lz4 = lz4_flex::block::compress(&original);
        let snappy = snap::raw::Encoder::new().compress_vec(&original).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(&original), &mut xz).unwrap();
        let mut bz = Vec::new();
        std::io::Read::read_to_end(
            &mut bzip2::read::BzEncoder::new(&original[..], bzip2::Compression::fast()),
            &mut bz,
        )
        .unwrap();
        for (code, data) in [(1, zlib), (2, lz4), (6, snappy), (4, xz), (5, bz)] {
            let mut out = vec![0u8; 16384];
            let algo = mariadb_page(&page_with(code, &data), &mut out).unwrap_or_else(|e| panic!("{code}: {e:?}"));
            assert_eq!(out, original, "{}", algo.name());
        }
    }

    #[test]
    fn damaged_or_foreign_data_fails() {
        let mut out = vec![0u8; 16384];
        assert!(mariadb_page(&page_with(1, b"not zlib at all"), &mut out).is_err());
        assert!(mariadb_page(&page_with(9, b"x"), &mut out).is_err());
        assert!(mariadb_page(&page_with(1, &[]), &mut out).is_err());
        let mut huge = page_with(1, b"x");
        huge[38..40].copy_from_slice(&20000u16.to_be_bytes());
        assert!(mariadb_page(&huge, &mut out).is_err());
    }
}
