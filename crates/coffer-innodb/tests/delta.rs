//! Incremental deltas (`.delta` + `.meta`) of a real MariaDB 10.11 server (tests/data/coffer,
//! see its README): every delta validates clean, with or without its `.meta`, streamed or in
//! chunks in any order; a flipped byte in any page is reported on exactly that page; truncation,
//! bad magic, trailing bytes and short blocks are reported; arbitrary bytes never panic.

use coffer_innodb::delta::*;
use coffer_innodb::{Algo, FileReport, Policy, Status};
use proptest::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coffer/mariadb-10.11-incremental")
}

/// A delta and its `.meta` (`rel`: the tablespace, e.g. "inc1/lab/t.ibd").
fn load(rel: &str) -> (DeltaMeta, Vec<u8>) {
    let meta = DeltaMeta::parse(&std::fs::read(base().join(format!("{rel}.meta"))).unwrap()).unwrap();
    let path = base().join(format!("{rel}.delta"));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) => {
            let mut v = Vec::new();
            let xz = std::fs::File::open(path.with_extension("delta.xz")).unwrap();
            xz2::read::XzDecoder::new(xz).read_to_end(&mut v).unwrap();
            v
        }
    };
    (meta, bytes)
}

/// (tablespace, pages, valid pages by algorithm, doublewrite pages skipped, format).
type Expected = (&'static str, u64, &'static [(Algo, u64)], u64, &'static str);
const REAL: &[Expected] = &[
    ("inc1/lab/t.ibd", 4, &[(Algo::FullCrc32, 4)], 0, "MariaDB full_crc32, 16K"),
    ("inc1/lab/c.ibd", 4, &[(Algo::Crc32, 4)], 0, "classic, 16K"),
    ("inc1/lab/z.ibd", 4, &[(Algo::ZipCrc32, 4)], 0, "ROW_FORMAT=COMPRESSED, 4K pages of 16K"),
    ("inc2/lab/k.ibd", 4, &[(Algo::ZipCrc32, 4)], 0, "ROW_FORMAT=COMPRESSED, 1K pages of 16K"),
    ("inc1/mysql/gtid_slave_pos.ibd", 0, &[], 0, "16K pages"),
    // Pages 64-88 are the doublewrite buffer's copies of other pages; TRX_SYS (5) is not in
    // the delta, so the buffer is where InnoDB creates it (extents 1 and 2).
    ("inc1/ibdata1", 51, &[(Algo::FullCrc32, 26)], 25, "MariaDB full_crc32, 16K"),
    // A delta of a delta: no page 0, so the checksum format comes from the page itself.
    ("inc3/lab/t.ibd", 1, &[(Algo::FullCrc32, 1)], 0, "MariaDB full_crc32, 16K"),
    ("inc3/lab/c.ibd", 1, &[(Algo::Crc32, 1)], 0, "classic, 16K"),
    ("inc3/lab/z.ibd", 0, &[], 0, "ROW_FORMAT=COMPRESSED, 4K pages"),
];

fn stream(display: &str, meta: Option<&DeltaMeta>, bytes: &[u8], piece: usize) -> (FileReport, MetaSource) {
    let mut s = DeltaStream::new(display.into(), Policy::Auto, meta);
    for (i, c) in bytes.chunks(piece.max(1)).enumerate() {
        s.write_at((i * piece.max(1)) as u64, c);
    }
    s.finish(bytes.len() as u64)
}

/// (pages, corrupt (page, offset)) of a [`DeltaChecker`] given the delta in chunks of
/// `chunk_pages` pages, last chunk first.
fn checked(meta: Option<&DeltaMeta>, bytes: &[u8], chunk_pages: u64) -> Result<(u64, Vec<(u64, u64)>), String> {
    let read = |at: u64, buf: &mut [u8]| -> std::io::Result<usize> {
        let at = (at as usize).min(bytes.len());
        let n = buf.len().min(bytes.len() - at);
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        Ok(n)
    };
    let checker = DeltaChecker::open(&read, bytes.len() as u64, meta, Policy::Auto)?;
    let step = checker.page_size() * chunk_pages.max(1);
    let len = bytes.len() as u64;
    let mut starts: Vec<u64> = (0..len.div_ceil(step).max(1)).map(|i| i * step).collect();
    starts.reverse();
    let (mut pages, mut corrupt) = (0, Vec::new());
    for start in starts {
        let end = (start + step).min(len);
        let data = &bytes[start as usize..end as usize];
        let r = checker.check(start, end, &[(start, data.len() as u32)], data, end == len);
        pages += r.pages;
        corrupt.extend(r.corrupt.iter().map(|c| (c.page, c.offset)));
    }
    corrupt.sort();
    Ok((pages, corrupt))
}

fn corrupt_of(r: &FileReport) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = r.tally.corrupt.iter().map(|c| (c.page, c.offset)).collect();
    v.sort();
    v
}

#[test]
fn real_deltas_validate_clean_with_their_meta() {
    for &(rel, pages, algos, skipped, format) in REAL {
        let (meta, bytes) = load(rel);
        for piece in [1000, 16384, bytes.len()] {
            let (r, source) = stream(&format!("{rel}.delta"), Some(&meta), &bytes, piece);
            assert_eq!(source, MetaSource::Given);
            assert_eq!(r.status, Status::Ok, "{rel}: {:?}", r.tally.corrupt);
            assert_eq!(r.tally.pages, pages, "{rel}");
            assert_eq!(r.tally.valid, algos.iter().copied().collect(), "{rel}");
            assert_eq!(r.tally.skipped.values().sum::<u64>(), skipped, "{rel}");
            assert_eq!(r.format.as_deref(), Some(format!("incremental delta, {format}").as_str()), "{rel}");
            if pages == 0 {
                assert_eq!(r.note.as_deref(), Some("no page changed since the base backup"));
            }
        }
    }
    let (r, _) = stream("lab/t.ibd.delta", Some(&load("inc1/lab/t.ibd").0), &load("inc1/lab/t.ibd").1, 4096);
    assert_eq!(r.table.as_deref(), Some("lab.t"));
}

#[test]
fn real_deltas_validate_the_same_without_their_meta() {
    for &(rel, pages, algos, _, _) in REAL {
        let (meta, bytes) = load(rel);
        let prefix = &bytes[..bytes.len().min(INFER_MAX)];
        let Inference::Found { meta: inferred, .. } = infer(prefix, prefix.len() == bytes.len()) else {
            panic!("{rel}: nothing inferred")
        };
        assert_eq!(inferred.physical_size(), meta.physical_size(), "{rel}");
        if pages > 0 {
            assert_eq!(inferred.space_id, meta.space_id, "{rel}");
        }
        for piece in [1, 777, bytes.len()] {
            if piece == 1 && bytes.len() > 100_000 {
                continue;
            }
            let (r, source) = stream(rel, None, &bytes, piece);
            assert_eq!(source, MetaSource::Inferred(inferred), "{rel}");
            assert_eq!((r.status, r.tally.pages), (Status::Ok, pages), "{rel}: {:?}", r.tally.corrupt);
            assert_eq!(r.tally.valid, algos.iter().copied().collect(), "{rel}");
            // The .meta, arriving later, agrees.
            let mut r2 = r.clone();
            cross_check(&mut r2, &inferred, &meta);
            assert_eq!(r2, r);
        }
    }
}

#[test]
fn real_deltas_validate_the_same_in_chunks_in_any_order() {
    for &(rel, pages, ..) in REAL {
        let (meta, bytes) = load(rel);
        for chunk_pages in [1, 2, 3, 64] {
            assert_eq!(checked(Some(&meta), &bytes, chunk_pages), Ok((pages, vec![])), "{rel}");
            assert_eq!(checked(None, &bytes, chunk_pages), Ok((pages, vec![])), "{rel} without .meta");
        }
    }
}

#[test]
fn a_flipped_byte_in_any_delta_page_is_reported_on_that_page() {
    for &(rel, pages, ..) in REAL {
        let (meta, bytes) = load(rel);
        let size = meta.physical_size() as usize;
        let header = parse_header(&bytes[..size], 0).unwrap();
        for (i, &no) in header.pages.iter().enumerate() {
            let at = (1 + i) * size;
            // The doublewrite buffer's pages are skipped (they are copies of other pages).
            if rel.ends_with("ibdata1") && (64..192).contains(&no) {
                continue;
            }
            for within in [0, 4, 8, 38, 200, size / 2, size - 1] {
                let mut bad = bytes.clone();
                bad[at + within] ^= 0x10;
                let expected = vec![(u64::from(no), at as u64)];
                let (r, _) = stream(rel, Some(&meta), &bad, 4096);
                assert_eq!(r.status, Status::Corrupt, "{rel} page {no} byte {within}");
                assert_eq!(corrupt_of(&r), expected, "{rel} page {no} byte {within}: {:?}", r.tally.corrupt);
                assert_eq!(r.tally.pages, pages);
                assert_eq!(checked(Some(&meta), &bad, 2), Ok((pages, expected)), "{rel} page {no} byte {within}");
            }
        }
    }
}

#[test]
fn a_wrong_page_number_in_a_block_header_is_reported_on_that_page() {
    let (meta, mut bytes) = load("inc1/lab/c.ibd");
    // The header lists 0, 1, 2, 3; make the third 9.
    bytes[12..16].copy_from_slice(&9u32.to_be_bytes());
    let (r, _) = stream("c.ibd.delta", Some(&meta), &bytes, 5000);
    assert_eq!(corrupt_of(&r), vec![(9, 3 * 16384)]);
    assert!(r.tally.corrupt[0].reason.contains("page number 2 in the header, expected 9"), "{:?}", r.tally.corrupt);
}

#[test]
fn truncated_deltas_are_reported() {
    let (meta, bytes) = load("inc1/lab/t.ibd");
    let cases: &[(usize, u64, &str)] = &[
        (100, 0, "the delta ends 100 bytes into the block at byte 0, which is 16384 bytes long: truncated"),
        (16384 + 10, 0, "the delta ends 16394 bytes into the block at byte 0, which is 81920 bytes long: truncated"),
        (3 * 16384, 2, "the delta ends 49152 bytes into the block at byte 0, which is 81920 bytes long: truncated"),
        (5 * 16384 - 1, 3, "ends 81919 bytes into the block"),
    ];
    for &(cut, page, reason) in cases {
        let (r, _) = stream("t.ibd.delta", Some(&meta), &bytes[..cut], 3000);
        assert_eq!(r.status, Status::Corrupt, "cut at {cut}");
        let last = r.tally.corrupt.iter().find(|c| c.reason.contains("truncated")).unwrap();
        assert_eq!((last.page, last.offset), (page, cut as u64), "cut at {cut}");
        assert!(last.reason.contains(reason), "{}", last.reason);
        // The pages before the cut are still checked, and fine.
        assert_eq!(r.tally.corrupt.len(), 1, "{:?}", r.tally.corrupt);
        let (_, corrupt) = checked(Some(&meta), &bytes[..cut], 1).unwrap();
        assert_eq!(corrupt, vec![(page, cut as u64)], "cut at {cut}");
    }
    let (r, _) = stream("t.ibd.delta", Some(&meta), &[], 1);
    assert!(r.tally.corrupt[0].reason.contains("empty file"), "{:?}", r.tally.corrupt);
}

#[test]
fn bad_magic_and_trailing_bytes_are_reported() {
    let (meta, bytes) = load("inc1/lab/t.ibd");
    let mut bad = bytes.clone();
    bad[0] = b'Y';
    let (r, _) = stream("t.ibd.delta", Some(&meta), &bad, 4096);
    assert_eq!(r.tally.corrupt.len(), 1);
    assert_eq!(r.tally.corrupt[0].reason, "the block header at byte 0 starts with \"YTRA\", not \"xtra\" or \"XTRA\"");
    assert_eq!(checked(Some(&meta), &bad, 1).unwrap().1, vec![(0, 0)]);
    let (r, _) = stream("t.ibd.delta", None, &bad, 4096);
    assert!(r.tally.corrupt[0].reason.contains("starts with \"YTRA\""), "{:?}", r.tally.corrupt);
    let mut long = bytes.clone();
    long.extend(b"left over");
    let (r, _) = stream("t.ibd.delta", Some(&meta), &long, 4096);
    assert_eq!(r.tally.corrupt.len(), 1);
    assert_eq!(r.tally.corrupt[0].reason, "9 bytes after the last block (\"XTRA\"), from byte 81920");
    assert_eq!(checked(Some(&meta), &long, 1).unwrap(), (5, vec![(0, 81920)]));
}

/// Real 1K compressed pages in deltas of several blocks: every block but the last is full.
#[test]
fn deltas_of_several_blocks() {
    let (meta, bytes) = load("inc2/lab/k.ibd");
    let page3 = &bytes[4 * 1024..5 * 1024];
    let block = |last: bool, n: usize| {
        let mut b = vec![0u8; 1024];
        b[..4].copy_from_slice(if last { b"XTRA" } else { b"xtra" });
        for i in 0..n {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&3u32.to_be_bytes());
        }
        if n < 255 {
            b[4 + 4 * n..8 + 4 * n].fill(0xFF);
        }
        for _ in 0..n {
            b.extend_from_slice(page3);
        }
        b
    };
    let mut delta = block(false, 255);
    delta.extend(block(false, 255));
    delta.extend(block(true, 10));
    let (r, _) = stream("k.ibd.delta", Some(&meta), &delta, 10_000);
    assert_eq!((r.status, r.tally.pages), (Status::Ok, 520), "{:?}", r.tally.corrupt);
    assert_eq!(checked(Some(&meta), &delta, 7), Ok((520, vec![])));
    let (r, _) = stream("k.ibd.delta", None, &delta, 10_000);
    assert_eq!((r.status, r.tally.pages), (Status::Ok, 520), "inferred: {:?}", r.tally.corrupt);
    // The last block full too.
    let full_last = block(true, 255);
    assert_eq!(stream("k", Some(&meta), &full_last, 999).0.tally.pages, 255);
    // A block before the last that is not full: the engines never write one.
    let mut short = block(false, 10);
    short.extend(block(true, 1));
    let (r, _) = stream("k.ibd.delta", Some(&meta), &short, 10_000);
    assert_eq!(r.tally.corrupt.len(), 1);
    assert!(r.tally.corrupt[0].reason.contains("lists 10 pages but is not the last"), "{:?}", r.tally.corrupt);
    // Ends after a full block, without its last.
    let (r, _) = stream("k.ibd.delta", Some(&meta), &block(false, 255), 10_000);
    assert_eq!(r.tally.pages, 256);
    assert!(r.tally.corrupt[0].reason.contains("without its last block"), "{:?}", r.tally.corrupt);
}

#[test]
fn a_meta_that_disagrees_with_its_delta() {
    let (meta, bytes) = load("inc1/lab/t.ibd");
    // Given first, a wrong page size reads the delta wrongly: reported, never fine.
    let wrong = DeltaMeta { page_size: 4096, zip_size: 4096, ..meta };
    let (r, _) = stream("t.ibd.delta", Some(&wrong), &bytes, 4096);
    assert_eq!(r.status, Status::Corrupt);
    // Coming after it: the delta was read with the right size, and the .meta is reported.
    let (mut r, source) = stream("t.ibd.delta", None, &bytes, 4096);
    let MetaSource::Inferred(inferred) = source else { panic!() };
    cross_check(&mut r, &inferred, &wrong);
    assert_eq!(r.status, Status::Corrupt);
    assert_eq!(r.tally.corrupt[0].reason, "its .meta says 4096-byte pages, but the delta's pages are 16384 bytes");
    let (mut r, _) = stream("t.ibd.delta", None, &bytes, 4096);
    cross_check(&mut r, &inferred, &DeltaMeta { space_id: Some(99), ..meta });
    assert!(r.tally.corrupt[0].reason.contains("says space id 99, but the delta's first page is of space 5"));
    // A wrong space id given first: every page says so.
    let (r, _) = stream("t.ibd.delta", Some(&DeltaMeta { space_id: Some(99), ..meta }), &bytes, 4096);
    assert_eq!(r.tally.corrupt.len(), 4, "{:?}", r.tally.corrupt);
}

#[test]
fn real_meta_files_parse() {
    let m = |rel: &str| load(rel).0;
    assert_eq!(m("inc1/lab/t.ibd"), DeltaMeta { page_size: 16384, zip_size: 0, space_id: Some(5), space_flags: None });
    assert_eq!(
        m("inc1/lab/z.ibd"),
        DeltaMeta { page_size: 4096, zip_size: 4096, space_id: Some(6), space_flags: None }
    );
    assert_eq!(m("inc2/lab/k.ibd").physical_size(), 1024);
    assert_eq!(m("inc1/ibdata1").space_id, Some(0));
}

fn any_meta() -> impl Strategy<Value = Option<DeltaMeta>> {
    prop_oneof![
        Just(None),
        (0usize..7, any::<bool>(), proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>())).prop_map(
            |(i, zip, id, flags)| {
                let size = 1024u32 << i;
                let zip = zip || size < 4096;
                let meta = DeltaMeta {
                    page_size: size,
                    zip_size: if zip && size <= 16384 { size } else { 0 },
                    space_id: id,
                    space_flags: flags,
                };
                let text = format!(
                    "page_size = {}\nzip_size = {}\n{}{}",
                    meta.page_size,
                    meta.zip_size,
                    id.map(|v| format!("space_id = {v}\n")).unwrap_or_default(),
                    flags.map(|v| format!("space_flags = {v}\n")).unwrap_or_default()
                );
                DeltaMeta::parse(text.as_bytes()).ok()
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        meta in any_meta(),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        magic in 0u8..3,
        piece in 1usize..5000,
        hole in proptest::option::of(0u64..(1 << 40)),
    ) {
        match magic {
            0 => {}
            1 if bytes.len() >= 4 => bytes[..4].copy_from_slice(b"XTRA"),
            _ if bytes.len() >= 4 => bytes[..4].copy_from_slice(b"xtra"),
            _ => {}
        }
        let mut s = DeltaStream::new("fuzz.ibd.delta".into(), Policy::Auto, meta.as_ref());
        let mut pos = 0u64;
        for c in bytes.chunks(piece) {
            s.write_at(pos, c);
            pos += c.len() as u64;
            if let Some(h) = hole {
                pos += h % 70_000;
            }
        }
        let _ = s.finish(pos);
        let _ = checked(meta.as_ref(), &bytes, 3);
        let _ = infer(&bytes, true);
        let _ = parse_header(&bytes, 0);
    }

    #[test]
    fn arbitrary_meta_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..300), keyed in any::<bool>()) {
        let mut t = if keyed { b"page_size = ".to_vec() } else { Vec::new() };
        t.extend(text);
        if let Ok(m) = DeltaMeta::parse(&t) {
            prop_assert!((1024..=65536).contains(&m.physical_size()));
        }
    }

    /// A real delta cut anywhere or with any byte changed is never judged clean, and never
    /// panics.
    #[test]
    fn damaged_real_deltas_are_never_clean(cut in 0usize..81920, at in 0usize..81920, xor in 1u8..=255) {
        let (meta, bytes) = load("inc1/lab/c.ibd");
        let mut bad = bytes.clone();
        bad[at] ^= xor;
        // Bytes after the page list's terminator are padding, which no engine reads, and no
        // checksum of a classic page covers its bytes 26-34 (FIL_PAGE_FILE_FLUSH_LSN).
        if !((24..16384).contains(&at) || (at >= 16384 && (26..34).contains(&(at % 16384)))) {
            let (r, _) = stream("c", Some(&meta), &bad, 4096);
            prop_assert_eq!(r.status, Status::Corrupt);
        }
        let (r, _) = stream("c", Some(&meta), &bytes[..cut], 4096);
        prop_assert_eq!(r.status, Status::Corrupt);
    }
}
