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
        PageCompression::Lzma => xz_into(src, out)?,
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

/// The most memory an xz stream may ask for: liblzma's presets 0-9 need at most 94 MiB to
/// compress and 65 MiB to decompress (preset 9's 64 MiB dictionary); a page declaring more is
/// refused before anything that size is allocated.
const XZ_MEMORY_LIMIT: u64 = 72 << 20;

/// Decodes one xz stream into `out`, stopping at its end: output past a page is an error
/// (a few bytes of LZMA2 can declare gigabytes), and so is a dictionary past [`XZ_MEMORY_LIMIT`].
fn xz_into(src: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    use xz2::stream::{Action, Status, Stream};
    let mut xz = Stream::new_stream_decoder(XZ_MEMORY_LIMIT, 0).map_err(|e| failed(format!("lzma: {e}")))?;
    let status = xz.process(src, out, Action::Finish).map_err(|e| failed(format!("lzma: {e}")))?;
    let written = xz.total_out() as usize;
    match status {
        Status::StreamEnd => Ok(written),
        _ if written == out.len() => Err(failed("lzma: longer than a page")),
        _ => Err(failed("lzma: the stream does not end")),
    }
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
        // A payload longer than a page (incompressible test data) gets a larger frame.
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
        let xz = xz(&original, 6);
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

    fn xz(data: &[u8], preset: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = xz2::write::XzEncoder::new(&mut out, preset);
        std::io::Write::write_all(&mut enc, data).unwrap();
        enc.finish().unwrap();
        out
    }

    #[test]
    fn xz_that_would_grow_past_a_page_stops_at_the_page() {
        // 64 MiB of zeros fit in a few kilobytes of xz: decoding stops at the page (the old
        // decoder gave the same error, after holding all 64 MiB; a 64 KiB page could hold
        // gigabytes).
        let bomb = xz(&vec![0u8; 64 << 20], 0);
        assert!(bomb.len() < 16000, "{}", bomb.len());
        let mut out = vec![0u8; 16384];
        let err = mariadb_page(&page_with(4, &bomb), &mut out).unwrap_err();
        assert_eq!(err, DecompressError::Failed("lzma: longer than a page".into()));
    }

    #[test]
    fn xz_declaring_a_huge_dictionary_is_refused() {
        // The xz stream of a 1.5 GiB dictionary (LZMA2 dictionary byte 40): refused by the
        // memory limit, not allocated.
        let mut opts = xz2::stream::LzmaOptions::new_preset(0).unwrap();
        opts.dict_size(1536 << 20);
        let mut filters = xz2::stream::Filters::new();
        filters.lzma2(&opts);
        let enc = xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::None).unwrap();
        let mut big = Vec::new();
        let mut w = xz2::write::XzEncoder::new_stream(&mut big, enc);
        std::io::Write::write_all(&mut w, &[7u8; 16384]).unwrap();
        w.finish().unwrap();
        let mut out = vec![0u8; 16384];
        let err = mariadb_page(&page_with(4, &big), &mut out).unwrap_err();
        assert!(matches!(&err, DecompressError::Failed(m) if m.starts_with("lzma: ")), "{err:?}");
        // The same data with an ordinary dictionary decodes.
        let mut out2 = vec![0u8; 16384];
        mariadb_page(&page_with(4, &xz(&[7u8; 16384], 6)), &mut out2).unwrap();
        assert_eq!(out2, vec![7u8; 16384]);
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
