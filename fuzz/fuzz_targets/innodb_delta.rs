//! Arbitrary bytes as an incremental delta (`NAME.delta`) and its `.meta`, as mariabackup and
//! xtrabackup write them: the `.meta` text parsed, the delta's block headers, page lists, pages
//! and the page size inferred without a `.meta`. Checked: no panic, no allocation beyond a page
//! size (128 KiB while inferring, 4 bytes per page of the delta for the chunk checker); the same
//! report however the bytes arrive; the chunk checker (the backup-time one, chunks in any order)
//! counts the same pages as the stream.
//!
//! Input: byte 0 picks the `.meta` (bits 0-1: 0 none, inferred from the delta; 1 the text that
//! follows, its length in byte 1; 2 and 3 a real one, 16K full_crc32 or 4K compressed), bits 2-7
//! the piece size the stream is fed in; the rest is the delta.
#![no_main]

use coffer_innodb::delta::{cross_check, infer, parse_header, DeltaChecker, DeltaMeta, DeltaStream, MetaSource};
use coffer_innodb::Policy;
use libfuzzer_sys::fuzz_target;

fn stream(meta: Option<&DeltaMeta>, delta: &[u8], piece: usize) -> (coffer_innodb::FileReport, MetaSource) {
    let mut s = DeltaStream::new("db/t.ibd.delta".into(), Policy::Auto, meta);
    let mut pos = 0u64;
    for c in delta.chunks(piece.max(1)) {
        s.write_at(pos, c);
        pos += c.len() as u64;
    }
    s.finish(pos)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let real = |page_size, zip_size| Some(DeltaMeta { page_size, zip_size, space_id: Some(5), space_flags: None });
    let (meta, delta) = match mode & 3 {
        0 => (None, rest),
        1 => {
            let Some((&n, rest)) = rest.split_first() else { return };
            let n = usize::from(n).min(rest.len());
            (DeltaMeta::parse(&rest[..n]).ok(), &rest[n..])
        }
        2 => (real(16384, 0), rest),
        _ => (real(4096, 4096), rest),
    };
    let piece = 1 + usize::from(mode >> 2) * 97;
    let (report, source) = stream(meta.as_ref(), delta, piece);
    let (whole, whole_source) = stream(meta.as_ref(), delta, delta.len());
    assert_eq!(report, whole, "the same report however the bytes arrive");
    assert_eq!(source, whole_source);

    let read = |at: u64, buf: &mut [u8]| -> std::io::Result<usize> {
        let at = (at as usize).min(delta.len());
        let n = buf.len().min(delta.len() - at);
        buf[..n].copy_from_slice(&delta[at..at + n]);
        Ok(n)
    };
    let len = delta.len() as u64;
    match DeltaChecker::open(&read, len, meta.as_ref(), Policy::Auto) {
        Ok(checker) => {
            let step = checker.page_size() * (1 + u64::from(mode >> 5));
            let mut pages = 0;
            let mut start = len.div_ceil(step) * step;
            // Last chunk first: any order.
            loop {
                let end = (start + step).min(len);
                if start < end || (start == 0 && len == 0) {
                    let chunk = &delta[start as usize..end as usize];
                    pages += checker.check(start, end, &[(start, chunk.len() as u32)], chunk, end == len).pages;
                }
                if start == 0 {
                    break;
                }
                start -= step;
            }
            assert_eq!(pages, report.tally.pages, "the chunk checker counts the pages the stream does");
        }
        Err(_) => assert_eq!(report.tally.pages, 1, "a delta that cannot be read is one finding"),
    }

    if let (MetaSource::Inferred(inferred), Some(m)) = (source, meta) {
        let mut r = report.clone();
        cross_check(&mut r, &inferred, &m);
    }
    let _ = infer(delta, true);
    let _ = parse_header(delta, 0);
});
