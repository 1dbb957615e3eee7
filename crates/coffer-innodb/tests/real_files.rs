//! The validator against tablespaces written by real MySQL and MariaDB servers (tests/data,
//! see SOURCES.md): every file validates clean with the algorithms SOURCES.md lists, and a byte
//! flipped in any region of any page is reported on exactly that page.

use coffer_innodb::checksum::{self, be32};
use coffer_innodb::*;
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// (file, pages, valid pages by algorithm, empty pages), as SOURCES.md lists them.
type Expected = (&'static str, u64, &'static [(Algo, u64)], u64);
const FILES: &[Expected] = &[
    ("mariadb-server/mysql-test/std_data/mysql80/ibdata1_4096", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/ibdata1_8192", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/ibdata1_16384", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/ibdata1_32768", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/ibdata1_65536", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/t1.ibd", 1, &[(Algo::Crc32, 1)], 0),
    ("mariadb-server/mysql-test/std_data/mysql80/t2.ibd", 7, &[(Algo::Crc32, 5)], 2),
    ("innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd", 7, &[(Algo::Innodb, 5)], 2),
    ("innodb_ruby/spec/data/sakila/compact/sakila/film.ibd", 21, &[(Algo::Innodb, 20)], 1),
    ("innodb_ruby/spec/data/sakila/redundant/sakila/country.ibd", 6, &[(Algo::Innodb, 4)], 2),
    ("innodb_ruby/spec/data/sakila/5.7/sakila/film.ibd", 21, &[(Algo::Crc32, 20)], 1),
    ("innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd", 22, &[(Algo::Crc32, 21)], 1),
    ("innodb_ruby/spec/data/sakila/8.0/sys/sys_config.ibd", 7, &[(Algo::Crc32, 5)], 2),
    ("innodb_ruby/spec/data/sakila/8.4/sakila/inventory.ibd", 28, &[(Algo::Crc32, 27)], 1),
    (
        "innodb-java-reader/innodb-java-reader/src/test/resources/testsuite/mysql56/simple/emp.ibd",
        19,
        &[(Algo::Innodb, 17)],
        2,
    ),
    (
        "innodb-java-reader/innodb-java-reader/src/test/resources/testsuite/mysql80/pk/tb24_sk.ibd",
        46,
        &[(Algo::Crc32, 45)],
        1,
    ),
    ("idb-utils/tests/fixtures/mysql9/mysql90_compressed.ibd", 7, &[(Algo::ZipCrc32, 5)], 2),
    ("idb-utils/tests/fixtures/mysql9/mysql91_compressed.ibd", 7, &[(Algo::ZipCrc32, 5)], 2),
    ("idb-utils/tests/fixtures/mysql9/mysql90_standard.ibd", 7, &[(Algo::Crc32, 5)], 2),
    ("fae/mysql/fae_dummy/fae_text_areas.ibd", 15, &[(Algo::FullCrc32, 11)], 4),
    ("fae/mysql/fae_dummy/fae_users.ibd", 9, &[(Algo::FullCrc32, 9)], 0),
    ("fae/mysql/mysql/innodb_index_stats.ibd", 10, &[(Algo::FullCrc32, 8)], 2),
    ("fae/mysql/mysql/transaction_registry.ibd", 7, &[(Algo::FullCrc32, 7)], 0),
];

fn validate(path: &Path, display: &str) -> FileReport {
    let t = Target { path: path.into(), display: display.into(), force_innodb: true, walked: None };
    validate_files(&[t], Options { policy: Policy::Auto, threads: 2 }, &|_| {}).remove(0)
}

/// MariaDB's test suite cut this MySQL 8.0 tablespace to its first page (SOURCES.md: "truncated
/// to page 0"); its header still says 7 pages. Every page present is valid, and the validator
/// rightly reports the 6 missing ones, which both innochecksums cannot see.
const TRUNCATED: &str = "mariadb-server/mysql-test/std_data/mysql80/t1.ibd";

/// The findings an unmodified file must have: none, except the missing pages of TRUNCATED.
fn baseline(rel: &str) -> Vec<u64> {
    if rel == TRUNCATED {
        vec![1]
    } else {
        vec![]
    }
}

#[test]
fn every_real_file_validates_clean_with_its_algorithms() {
    for &(rel, pages, algos, empty) in FILES {
        let r = validate(&data(rel), rel);
        let corrupt: Vec<u64> = r.tally.corrupt.iter().map(|c| c.page).collect();
        assert_eq!(corrupt, baseline(rel), "{rel}: {:?}", r.tally.corrupt);
        if rel == TRUNCATED {
            assert!(r.tally.corrupt[0].reason.contains("header says 7: 6 pages are missing"), "{:?}", r.tally.corrupt);
        } else {
            assert_eq!(r.status, Status::Ok, "{rel}");
        }
        let pages = pages + baseline(rel).len() as u64;
        assert_eq!(r.tally.pages, pages, "{rel}");
        assert_eq!(r.tally.empty, empty, "{rel}");
        let want: Vec<(Algo, u64)> = algos.to_vec();
        let got: Vec<(Algo, u64)> = r.tally.valid.iter().map(|(a, n)| (*a, *n)).collect();
        assert_eq!(got, want, "{rel}");
    }
}

/// Offsets to flip in a page of physical size `n`: header (the previous-page pointer), body,
/// trailer, and the checksum field (the key version in full_crc32 pages; covered by its CRC).
fn regions(n: usize) -> [(&'static str, usize); 4] {
    [("header", 9), ("body", n / 2 + 3), ("trailer", n - 1), ("checksum field", 1)]
}

#[test]
fn a_flipped_byte_in_any_region_is_reported_on_exactly_that_page() {
    let dir = tempfile::tempdir().unwrap();
    for &(rel, pages, _, _) in FILES {
        let original = std::fs::read(data(rel)).unwrap();
        let n = original.len() / pages as usize;
        for page in 0..pages as usize {
            for (region, at) in regions(n) {
                let mut bad = original.clone();
                bad[page * n + at] ^= 0x20;
                let path = dir.path().join("flipped.ibd");
                std::fs::write(&path, &bad).unwrap();
                let r = validate(&path, rel);
                let corrupt: Vec<u64> = r.tally.corrupt.iter().map(|c| c.page).collect();
                let mut want = vec![page as u64];
                want.extend(baseline(rel));
                assert_eq!(corrupt, want, "{rel} page {page} {region}: {:?}", r.tally.corrupt);
                assert_eq!(r.tally.corrupt[0].offset, (page * n) as u64);
                assert_eq!(r.status, Status::Corrupt);
            }
        }
    }
}

#[test]
fn known_answer_values_from_real_pages() {
    let page = |rel: &str, n: usize, p: usize| std::fs::read(data(rel)).unwrap()[p * n..(p + 1) * n].to_vec();
    let p = page("mariadb-server/mysql-test/std_data/mysql80/ibdata1_4096", 4096, 0);
    assert_eq!(checksum::crc32(&p), 0x1cf2_8d1e);
    assert_eq!(checksum::innodb_new(&p), 0x8406_f59d);
    assert_eq!(checksum::innodb_old(&p), 0xc40e_9550);
    assert_eq!(checksum::crc32_legacy_be(&p), 0xdc62_d411);
    let p = page("mariadb-server/mysql-test/std_data/mysql80/ibdata1_65536", 65536, 0);
    assert_eq!(checksum::crc32(&p), 0x5301_3b68);
    let p = page("mariadb-server/mysql-test/std_data/mysql80/t2.ibd", 16384, 3);
    assert_eq!(checksum::crc32(&p), 0x97f5_f118);
    let p = page("innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd", 16384, 0);
    assert_eq!((checksum::innodb_new(&p), checksum::innodb_old(&p)), (0x48e8_5e5b, 0xf355_a8f2));
    assert_eq!(checksum::crc32(&p), 0xb8a5_7e37);
    let p = page("innodb_ruby/spec/data/sakila/5.7/sakila/film.ibd", 16384, 4);
    assert_eq!(checksum::crc32(&p), 0x656c_9cff);
    let p = page("idb-utils/tests/fixtures/mysql9/mysql90_compressed.ibd", 8192, 0);
    assert_eq!((checksum::zip_crc32(&p), checksum::zip_adler(&p)), (0x1b51_8b1d, 0xb272_32c8));
    let p = page("idb-utils/tests/fixtures/mysql9/mysql90_compressed.ibd", 8192, 4);
    assert_eq!(checksum::zip_crc32(&p), 0xd44d_8da8);
    let p = page("fae/mysql/fae_dummy/fae_users.ibd", 16384, 0);
    assert_eq!((checksum::full_crc32(&p), be32(&p, 16380)), (0x6477_4071, 0x6477_4071));
    assert_eq!((be32(&p, 20), be32(&p, 16376)), (0x0001_6cac, 0x0001_6cac));
    let p = page("fae/mysql/fae_dummy/fae_users.ibd", 16384, 3);
    assert_eq!(checksum::full_crc32(&p), 0x7b1d_5a20);
}

#[test]
fn strict_policies_name_the_algorithm_they_found() {
    let rel = "innodb_ruby/spec/data/sakila/5.0/sakila/actor.ibd";
    let t = Target { path: data(rel), display: rel.into(), force_innodb: true, walked: None };
    let strict = validate_files(std::slice::from_ref(&t), Options { policy: Policy::StrictCrc32, threads: 1 }, &|_| {})
        .remove(0);
    assert_eq!(strict.status, Status::Corrupt);
    assert_eq!(strict.tally.corrupt.len(), 5);
    assert!(
        strict.tally.corrupt[0].reason.contains("valid innodb checksum, but crc32 was required"),
        "{}",
        strict.tally.corrupt[0].reason
    );
    let ok = validate_files(&[t], Options { policy: Policy::StrictInnodb, threads: 1 }, &|_| {}).remove(0);
    assert_eq!(ok.status, Status::Ok);
}

#[test]
fn streaming_gives_the_same_verdicts_as_reading_from_disk() {
    for &(rel, ..) in FILES {
        let bytes = std::fs::read(data(rel)).unwrap();
        let disk = validate(&data(rel), rel);
        for piece in [1usize, 7, 4096, 100_000] {
            let mut s = PageStream::new(rel.into(), Policy::Auto, None);
            for (i, chunk) in bytes.chunks(piece).enumerate() {
                s.write_at((i * piece) as u64, chunk);
            }
            let streamed = s.finish(bytes.len() as u64);
            assert_eq!(streamed.tally, disk.tally, "{rel} in pieces of {piece}");
        }
    }
}

#[test]
fn truncated_and_shortened_files_are_reported() {
    let rel = "innodb_ruby/spec/data/sakila/8.4/sakila/inventory.ibd";
    let bytes = std::fs::read(data(rel)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ibd");
    // Cut inside page 20: page 20 is incomplete, and the header's size no longer fits.
    std::fs::write(&path, &bytes[..20 * 16384 + 100]).unwrap();
    let r = validate(&path, "t.ibd");
    assert_eq!(r.status, Status::Corrupt);
    assert!(r.tally.corrupt.iter().any(|c| c.page == 20 && c.reason.contains("truncated")), "{:?}", r.tally.corrupt);
    assert!(r.tally.corrupt.iter().any(|c| c.reason.contains("pages are missing")), "{:?}", r.tally.corrupt);
}

/// A chunk whose range is one page of data and then a hole of 2^50 bytes (an image may declare
/// such a sparse file): the hole's zero pages are counted, not checked one by one, so the
/// check ends at once instead of running 2^36 page checks.
#[test]
fn a_huge_hole_is_counted_not_walked() {
    let path = data("innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd");
    let bytes = std::fs::read(&path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let checker = ChunkChecker::open(&file, &path, "sakila/film.ibd", Policy::Auto).unwrap().unwrap();
    let size = checker.page_size();
    let end = 1u64 << 50;
    let page0 = &bytes[..size as usize];
    let r = checker.check(0, end, &[(0, size as u32)], page0, true);
    assert_eq!(r.pages, end / size);
    assert!(r.corrupt.is_empty(), "{:?}", r.corrupt.first());
    // A hole between two runs of data, and a file that ends inside a page after the hole.
    let data2 = [page0, &bytes[size as usize..2 * size as usize]].concat();
    let r = checker.check(0, 10 * size + 100, &[(0, size as u32), (5 * size, size as u32)], &data2, true);
    assert_eq!(r.pages, 11);
    assert_eq!(r.corrupt.len(), 2, "page 5 holds page 1's bytes, and the file is cut in page 10");
    assert_eq!(r.corrupt.iter().map(|c| c.page).collect::<Vec<_>>(), [5, 10]);
}

/// The same through the streaming validator (`coffer validate` of an image): a file whose
/// declared size leaves a hole of 2^50 bytes after its pages is judged at once, its hole's
/// pages counted as empty; and a dead stream (page 0 unreadable) skips a hole without walking.
#[test]
fn a_streamed_huge_hole_is_counted_not_walked() {
    let bytes = std::fs::read(data("innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd")).unwrap();
    let mut stream = PageStream::new("sakila/film.ibd".into(), Policy::Auto, None);
    stream.write_at(0, &bytes);
    let end = 1u64 << 50;
    let report = stream.finish(end);
    assert!(report.tally.corrupt.is_empty(), "{:?}", report.tally.corrupt.first());
    assert_eq!(report.tally.pages, end / 16384);
    let mut dead = PageStream::new("x.ibd".into(), Policy::Auto, None);
    dead.write_at(0, &[0xff; 64]);
    dead.write_at(1 << 62, b"x");
    assert!(!dead.finish((1 << 62) + 1).tally.corrupt.is_empty());
}

/// A file a directory walk found is validated only if the path still leads to it: a symlink or
/// another file swapped in at that path since the walk is reported, not read.
#[test]
fn a_walked_file_swapped_since_the_walk_is_not_read() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let real = data("innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd");
    let copy = t.path().join("film.ibd");
    std::fs::copy(&real, &copy).unwrap();
    let md = std::fs::metadata(&copy).unwrap();
    let walked = Some((md.dev(), md.ino()));
    let run = |path: &Path| {
        let t = Target { path: path.into(), display: "sakila/film.ibd".into(), force_innodb: false, walked };
        validate_files(&[t], Options { policy: Policy::Auto, threads: 1 }, &|_| {}).remove(0)
    };
    assert_eq!(run(&copy).status, Status::Ok, "the walked file itself");

    // The path now a symlink to the same file: not followed.
    let link = t.path().join("link.ibd");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    let r = run(&link);
    assert_eq!(r.status, Status::Corrupt);
    assert!(r.tally.corrupt[0].reason.contains("cannot read"), "{r:?}");

    // Another file at the path.
    let other = t.path().join("other.ibd");
    std::fs::copy(&real, &other).unwrap();
    let r = run(&other);
    assert_eq!(r.status, Status::Corrupt);
    assert!(r.tally.corrupt[0].reason.contains("replaced while it was validated"), "{r:?}");
}
