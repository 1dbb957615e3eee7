//! Formats no public sample exists for (shared/testdata SOURCES.md §7): pages built from real
//! ones following the servers' own write paths, then checked. The real-server tests
//! (coffer-cli/tests/mariadb_pages.rs) cover the MariaDB formats with pages MariaDB wrote.

use coffer_innodb::checksum;
use coffer_innodb::*;
use proptest::prelude::*;
use std::path::Path;

fn file(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)).unwrap()
}

const CRC_FILE: &str = "innodb_ruby/spec/data/sakila/8.0/sakila/film.ibd";
const ZIP_FILE: &str = "idb-utils/tests/fixtures/mysql9/mysql90_compressed.ibd";
const FULL_FILE: &str = "fae/mysql/fae_dummy/fae_users.ibd";

fn space_of(bytes: &[u8]) -> Space {
    Space::from_page0(bytes).unwrap()
}

fn put(page: &mut [u8], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn check(space: &Space, no: u64, page: &[u8], policy: Policy) -> Verdict {
    check_page(space, no, page, policy, &mut Scratch::default())
}

fn crc_page() -> (Space, Vec<u8>) {
    let f = file(CRC_FILE);
    (space_of(&f), f[4 * 16384..5 * 16384].to_vec())
}

#[test]
fn none_and_big_endian_crc32_pages() {
    let (space, mut page) = crc_page();
    let n = page.len();
    put(&mut page, 0, checksum::NONE_MAGIC);
    put(&mut page, n - 8, checksum::NONE_MAGIC);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::None, inside: None });
    assert!(
        matches!(check(&space, 4, &page, Policy::StrictCrc32), Verdict::Corrupt(p) if matches!(p[0], Problem::Strict { .. }))
    );
    assert_eq!(check(&space, 4, &page, Policy::StrictNone), Verdict::Valid { algo: Algo::None, inside: None });
    let be = checksum::crc32_legacy_be(&page);
    put(&mut page, 0, be);
    put(&mut page, n - 8, be);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::Crc32BigEndian, inside: None });
}

#[test]
fn compressed_page_checksum_forms() {
    let f = file(ZIP_FILE);
    let space = space_of(&f);
    let mut page = f[4 * 8192..5 * 8192].to_vec();
    let adler = checksum::zip_adler(&page);
    put(&mut page, 0, adler);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::ZipInnodb, inside: None });
    put(&mut page, 0, checksum::NONE_MAGIC);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::ZipNone, inside: None });
    assert!(matches!(check(&space, 4, &page, Policy::StrictCrc32), Verdict::Corrupt(_)));
}

#[test]
fn mysql_encrypted_pages_are_unverifiable_not_fine() {
    let (space, mut page) = crc_page();
    for t in [15u16, 16, 17] {
        page[24..26].copy_from_slice(&t.to_be_bytes());
        assert!(matches!(check(&space, 4, &page, Policy::Auto), Verdict::Unverifiable(_)), "type {t}");
        // The clear header is still checked.
        assert!(matches!(check(&space, 5, &page, Policy::Auto), Verdict::Corrupt(_)));
    }
}

/// MariaDB encryption of a non-full_crc32 page: key version at 26, body [38, n-8) encrypted,
/// trailer clear, crc32 of the result at 30.
fn mariadb_encrypt(page: &mut [u8]) {
    let n = page.len();
    put(page, 26, 7);
    for (i, b) in page[38..n - 8].iter_mut().enumerate() {
        *b ^= (i as u8).wrapping_mul(31) ^ 0xA5;
    }
    let crc = checksum::crc32(page);
    put(page, 30, crc);
}

#[test]
fn mariadb_encrypted_pages_verify_without_the_key() {
    let (space, mut page) = crc_page();
    mariadb_encrypt(&mut page);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::EncryptedCrc32, inside: None });
    assert_eq!(
        check(&space, 4, &page, Policy::StrictCrc32),
        Verdict::Valid { algo: Algo::EncryptedCrc32, inside: None }
    );
    page[1000] ^= 1;
    assert!(matches!(check(&space, 4, &page, Policy::Auto), Verdict::Corrupt(_)));
}

#[test]
fn mariadb_page_compressed_pages_are_decompressed_and_checked() {
    let (space, original) = crc_page();
    let space =
        Space { format: Format::Classic { zip_size: None, page_compressed: true, mysql_encrypted: false }, ..space };
    let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&original, 6);
    let mut page = vec![0u8; 16384];
    page[..38].copy_from_slice(&original[..38]);
    put(&mut page, 0, checksum::NONE_MAGIC);
    page[24..26].copy_from_slice(&34354u16.to_be_bytes());
    page[26..34].copy_from_slice(&1u64.to_be_bytes());
    page[38..40].copy_from_slice(&(zlib.len() as u16).to_be_bytes());
    page[40..40 + zlib.len()].copy_from_slice(&zlib);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::Crc32, inside: Some("zlib") });
    // What innochecksum skips: damage inside the compressed data.
    let mut bad = page.clone();
    bad[40 + zlib.len() / 2] ^= 0x10;
    assert!(matches!(check(&space, 4, &bad, Policy::Auto), Verdict::Corrupt(_)));
    // A page that decompresses but whose inner checksum is wrong.
    let mut inner = original.clone();
    inner[5000] ^= 1;
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&inner, 6);
    let mut bad = page.clone();
    bad[38..40].copy_from_slice(&(z.len() as u16).to_be_bytes());
    bad[40..].fill(0);
    bad[40..40 + z.len()].copy_from_slice(&z);
    assert!(
        matches!(check(&space, 4, &bad, Policy::Auto), Verdict::Corrupt(p) if matches!(p[0], Problem::Checksum { .. }))
    );
}

#[test]
fn mysql_transparent_compression_is_decompressed_and_checked() {
    let (space, original) = crc_page();
    let body = miniz_oxide::deflate::compress_to_vec_zlib(&original[38..], 6);
    let mut page = vec![0u8; 16384];
    page[..38].copy_from_slice(&original[..38]);
    page[24..26].copy_from_slice(&14u16.to_be_bytes());
    page[26] = 1;
    page[27] = 1;
    page[28..30].copy_from_slice(&original[24..26]);
    page[30..32].copy_from_slice(&((16384 - 38) as u16).to_be_bytes());
    page[32..34].copy_from_slice(&(body.len() as u16).to_be_bytes());
    page[38..38 + body.len()].copy_from_slice(&body);
    assert_eq!(check(&space, 4, &page, Policy::Auto), Verdict::Valid { algo: Algo::Crc32, inside: Some("zlib") });
    page[27] = 9;
    assert!(matches!(check(&space, 4, &page, Policy::Auto), Verdict::Unverifiable(_)));
}

#[test]
fn full_crc32_page_compressed_pages_are_checked_over_the_compressed_size() {
    let f = file(FULL_FILE);
    let space = space_of(&f);
    let mut page = f[3 * 16384..4 * 16384].to_vec();
    // A page_compressed image of 1024 bytes: type 0x8000 | 1024/256, CRC at 1020.
    page[24..26].copy_from_slice(&(0x8000u16 | 4).to_be_bytes());
    page[1024..].fill(0);
    let crc = checksum::crc32c(&page[..1020]);
    put(&mut page, 1020, crc);
    assert_eq!(check(&space, 3, &page, Policy::Auto), Verdict::Valid { algo: Algo::FullCrc32, inside: None });
    page[500] ^= 4;
    assert!(matches!(check(&space, 3, &page, Policy::Auto), Verdict::Corrupt(_)));
    page[24..26].copy_from_slice(&(0x8000u16 | 64).to_be_bytes());
    assert!(
        matches!(check(&space, 3, &page, Policy::Auto), Verdict::Corrupt(p) if matches!(p[0], Problem::Compression(_)))
    );
}

/// The bytes of a page that its checks cover, by format.
fn checked(space: &Space, n: usize, at: usize) -> bool {
    match space.format {
        Format::FullCrc32 { .. } => true,
        // The LSN [16, 24) and [26, 34) are outside the compressed-page checksum.
        Format::Classic { zip_size: Some(_), .. } => !(16..24).contains(&at) && !(26..34).contains(&at),
        // [26, 34) is outside both classic checksums (flush LSN, or MariaDB's key version).
        Format::Classic { .. } => !(26..34).contains(&at) || at >= n,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
    #[test]
    fn a_random_bit_flip_in_the_checked_range_is_always_detected(which in 0usize..3, page_no in 0u64..7, bit in 0usize..(16384 * 8)) {
        let rel = [CRC_FILE, ZIP_FILE, FULL_FILE][which];
        let f = file(rel);
        let space = space_of(&f);
        let n = space.physical_size as usize;
        let at = (bit / 8) % n;
        prop_assume!(checked(&space, n, at));
        let mut page = f[page_no as usize * n..(page_no as usize + 1) * n].to_vec();
        let before = check(&space, page_no, &page, Policy::Auto);
        prop_assume!(matches!(before, Verdict::Valid { .. }));
        page[at] ^= 1 << (bit % 8);
        let after = check(&space, page_no, &page, Policy::Auto);
        prop_assert!(matches!(after, Verdict::Corrupt(_)), "{rel} page {page_no} byte {at}: {after:?}");
    }
}
