//! The page checksum algorithms of MySQL and MariaDB (shared/notes/innodb-page-checksums.md §2-3).
//! All take the physical page; all return the value as stored (big-endian on the page).

/// CRC-32C (Castagnoli), hardware-accelerated where the CPU allows.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// `crc32`: CRC-32C of [4, 26) XOR CRC-32C of [38, n-8). Stored in the first 4 and in [n-8, n-4).
pub fn crc32(page: &[u8]) -> u32 {
    let n = page.len();
    crc32c(&page[4..26]) ^ crc32c(&page[38..n - 8])
}

/// CRC-32C as MySQL 5.6 computed it in software on big-endian CPUs: every 8-byte group aligned
/// in the page is processed with its bytes reversed. MySQL still accepts such pages.
fn crc32c_legacy_be(page: &[u8], start: usize, end: usize) -> u32 {
    let mut buf = page[start..end].to_vec();
    let first = start.next_multiple_of(8);
    let mut at = first;
    while at + 8 <= end {
        buf[at - start..at - start + 8].reverse();
        at += 8;
    }
    crc32c(&buf)
}

/// The legacy big-endian variant of [`crc32`].
pub fn crc32_legacy_be(page: &[u8]) -> u32 {
    let n = page.len();
    crc32c_legacy_be(page, 4, 26) ^ crc32c_legacy_be(page, 38, n - 8)
}

const FOLD_M1: u32 = 1_463_735_687;
const FOLD_M2: u32 = 1_653_893_711;

fn fold_pair(a: u32, b: u32) -> u32 {
    ((((a ^ b ^ FOLD_M2) << 8).wrapping_add(a)) ^ FOLD_M1).wrapping_add(b)
}

/// InnoDB's `ut_fold_binary`, in wrapping 32-bit arithmetic (its low 32 bits never depend on
/// higher ones, so this equals the 64-bit C code's result truncated).
fn fold(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |h, &b| fold_pair(h, u32::from(b)))
}

/// The legacy `innodb` algorithm, field 1 ("new" formula).
pub fn innodb_new(page: &[u8]) -> u32 {
    let n = page.len();
    fold(&page[4..26]).wrapping_add(fold(&page[38..n - 8]))
}

/// The legacy `innodb` algorithm, field 2 ("old" formula): over [0, 26), field 1 included.
pub fn innodb_old(page: &[u8]) -> u32 {
    fold(&page[..26])
}

/// The value of the `none` algorithm.
pub const NONE_MAGIC: u32 = 0xDEAD_BEEF;

/// MariaDB `full_crc32`: CRC-32C of everything before the last 4 bytes of the payload.
pub fn full_crc32(payload: &[u8]) -> u32 {
    crc32c(&payload[..payload.len() - 4])
}

/// ROW_FORMAT=COMPRESSED, crc32 form: three independent CRCs of [4,16), [24,26), [34,n).
pub fn zip_crc32(page: &[u8]) -> u32 {
    crc32c(&page[4..16]) ^ crc32c(&page[24..26]) ^ crc32c(&page[34..])
}

/// ROW_FORMAT=COMPRESSED, crc32 form as big-endian MySQL 5.6 computed it.
pub fn zip_crc32_legacy_be(page: &[u8]) -> u32 {
    crc32c_legacy_be(page, 4, 16) ^ crc32c_legacy_be(page, 24, 26) ^ crc32c_legacy_be(page, 34, page.len())
}

/// ROW_FORMAT=COMPRESSED, innodb form: Adler-32 seeded with 0 (not zlib's 1), chained over
/// the same three ranges.
pub fn zip_adler(page: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (0u32, 0u32);
    for range in [&page[4..16], &page[24..26], &page[34..]] {
        // 5552 is the most bytes that cannot overflow u32 before the modulo (zlib's NMAX).
        for block in range.chunks(5552) {
            for &byte in block {
                a += u32::from(byte);
                b += a;
            }
            a %= MOD;
            b %= MOD;
        }
    }
    (b << 16) | a
}

/// Big-endian u32 at `at`.
pub fn be32(page: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

/// Big-endian u16 at `at`.
pub fn be16(page: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(page[at..at + 2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn adler_seeded_with_zero() {
        // zlib's adler32 of "Wikipedia" is 0x11E60398 (seed 1); with seed 0, A drops by 1 and B
        // by the length (9): 0x11DD0397.
        let mut page = vec![0u8; 34];
        page.extend_from_slice(b"Wikipedia");
        assert_eq!(zip_adler(&page), 0x11DD_0397);
    }

    #[test]
    fn fold_is_the_pair_fold() {
        assert_eq!(fold(&[]), 0);
        assert_eq!(fold(&[7]), fold_pair(0, 7));
        assert_eq!(fold(&[7, 9]), fold_pair(fold_pair(0, 7), 9));
    }

    #[test]
    fn legacy_be_reverses_aligned_groups_only() {
        let page: Vec<u8> = (0..64u8).collect();
        let mut manual = page[4..26].to_vec();
        manual[4..12].reverse(); // page bytes 8..16
        manual[12..20].reverse(); // 16..24
        assert_eq!(crc32c_legacy_be(&page, 4, 26), crc32c(&manual));
    }
}
