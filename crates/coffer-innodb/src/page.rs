//! The verdict on one page: valid (by which algorithm), empty, corrupt (and why), or not
//! verifiable (and why). Follows the servers' own rules (notes §3-§6), reporting every problem
//! found rather than the first.

use crate::checksum::{self, be16, be32, NONE_MAGIC};
use crate::decompress::{self, DecompressError};
use crate::space::{fil, page_type, Format, Space};
use std::fmt;

/// Which checksums a classic page may carry (`--checksum-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Whatever the tablespace's flags say; for classic spaces any valid algorithm, as the
    /// servers' non-strict modes accept.
    #[default]
    Auto,
    Crc32,
    StrictCrc32,
    Innodb,
    StrictInnodb,
    None,
    StrictNone,
    FullCrc32,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "crc32" => Self::Crc32,
            "strict_crc32" => Self::StrictCrc32,
            "innodb" => Self::Innodb,
            "strict_innodb" => Self::StrictInnodb,
            "none" => Self::None,
            "strict_none" => Self::StrictNone,
            "full_crc32" => Self::FullCrc32,
            _ => return None,
        })
    }

    /// The one family a strict policy allows.
    fn strict(self) -> Option<Family> {
        match self {
            Self::StrictCrc32 => Some(Family::Crc32),
            Self::StrictInnodb => Some(Family::Innodb),
            Self::StrictNone => Some(Family::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Crc32,
    Innodb,
    None,
}

/// How a valid page was checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Crc32,
    Crc32BigEndian,
    Innodb,
    None,
    FullCrc32,
    ZipCrc32,
    ZipCrc32BigEndian,
    ZipInnodb,
    ZipNone,
    /// MariaDB encryption: the crc32 of the encrypted page, at bytes 30..34.
    EncryptedCrc32,
    EncryptedZipCrc32,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "crc32",
            Self::Crc32BigEndian => "crc32 (legacy big-endian)",
            Self::Innodb => "innodb",
            Self::None => "none",
            Self::FullCrc32 => "full_crc32",
            Self::ZipCrc32 => "crc32 (compressed page)",
            Self::ZipCrc32BigEndian => "crc32 legacy big-endian (compressed page)",
            Self::ZipInnodb => "innodb adler32 (compressed page)",
            Self::ZipNone => "none (compressed page)",
            Self::EncryptedCrc32 => "crc32 of the encrypted page",
            Self::EncryptedZipCrc32 => "crc32 of the encrypted compressed page",
        }
    }

    fn family(self) -> Family {
        match self {
            Self::Innodb | Self::ZipInnodb => Family::Innodb,
            Self::None | Self::ZipNone => Family::None,
            _ => Family::Crc32,
        }
    }
}

/// What is wrong with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Stored checksum field(s) and the values computed for this page.
    Checksum {
        stored: Vec<u32>,
        computed: Vec<(&'static str, u32)>,
    },
    /// The low 32 bits of the LSN in the header and in the trailer differ: a torn write.
    Lsn {
        header: u32,
        trailer: u32,
    },
    PageNumber {
        found: u32,
        expected: u64,
    },
    SpaceId {
        found: u32,
        expected: u32,
    },
    /// A page valid under another algorithm than the strict one required.
    Strict {
        found: Algo,
        required: &'static str,
    },
    /// A compressed page's size or data is damaged.
    Compression(String),
    /// A page whose checksum fields and LSN are zero, but not its other bytes.
    NotEmpty,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Checksum { stored, computed } => {
                let stored: Vec<String> = stored.iter().map(|v| format!("{v:#010x}")).collect();
                let computed: Vec<String> = computed.iter().map(|(n, v)| format!("{n} {v:#010x}")).collect();
                write!(f, "checksum mismatch: stored {}, computed {}", stored.join("/"), computed.join(", "))
            }
            Problem::Lsn { header, trailer } => {
                write!(f, "LSN mismatch: header {header:#010x}, trailer {trailer:#010x} (torn page)")
            }
            Problem::PageNumber { found, expected } => {
                write!(f, "page number {found} in the header, expected {expected} at this position")
            }
            Problem::SpaceId { found, expected } => write!(f, "space id {found} in the header, expected {expected}"),
            Problem::Strict { found, required } => {
                write!(f, "valid {} checksum, but {required} was required", found.name())
            }
            Problem::Compression(why) => write!(f, "compressed page damaged: {why}"),
            Problem::NotEmpty => f.write_str("checksum fields and LSN are zero but the page is not empty"),
        }
    }
}

/// The verdict on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `inside`: the checksum was found inside a page_compressed page, after decompressing it.
    Valid {
        algo: Algo,
        inside: Option<&'static str>,
    },
    /// Never written (all zero).
    Empty,
    Corrupt(Vec<Problem>),
    /// Cannot be checked here (encrypted with a key we do not have, or a compression
    /// algorithm this build does not read): neither fine nor corrupt.
    Unverifiable(String),
    /// Not checked on purpose (the doublewrite buffer's copies of other pages).
    Skipped(&'static str),
}

/// Per-thread scratch space (decompressed pages).
#[derive(Debug, Default)]
pub struct Scratch {
    page: Vec<u8>,
}

/// Checks page `page_no` (its number in the tablespace) of `space`. `page` is one physical page.
pub fn check_page(space: &Space, page_no: u64, page: &[u8], policy: Policy, scratch: &mut Scratch) -> Verdict {
    debug_assert_eq!(page.len(), space.physical_size as usize);
    if space.doublewrite.iter().any(|r| r.contains(&page_no)) {
        return Verdict::Skipped("doublewrite buffer");
    }
    match space.format {
        Format::FullCrc32 { .. } => check_full_crc32(space, page_no, page),
        Format::Classic { zip_size: Some(_), .. } => check_zip(space, page_no, page, policy),
        Format::Classic { .. } => check_classic(space, page_no, page, policy, scratch),
    }
}

/// True if every byte is zero; compares 8 bytes at a time (it runs on every page).
pub fn all_zero(bytes: &[u8]) -> bool {
    let (words, tail) = bytes.as_chunks::<8>();
    words.iter().all(|w| u64::from_ne_bytes(*w) == 0) && tail.iter().all(|&b| b == 0)
}

fn position_problems(space: &Space, page_no: u64, page: &[u8], check_space_id: bool, out: &mut Vec<Problem>) {
    let found = be32(page, fil::PAGE_NO);
    if u64::from(found) != page_no {
        out.push(Problem::PageNumber { found, expected: page_no });
    }
    if check_space_id {
        let id = be32(page, fil::SPACE_ID);
        if id != space.space_id {
            out.push(Problem::SpaceId { found: id, expected: space.space_id });
        }
    }
}

fn check_full_crc32(space: &Space, page_no: u64, page: &[u8]) -> Verdict {
    let n = page.len();
    let t = be16(page, fil::TYPE);
    let compressed = t & 0x8000 != 0;
    let mut problems = Vec::new();
    let payload = if compressed {
        let s = usize::from(t & 0x7FFF) * 256;
        if s < fil::DATA + 4 || s >= n {
            return Verdict::Corrupt(vec![Problem::Compression(format!("payload size {s} in the page type field"))]);
        }
        s
    } else {
        if all_zero(page) {
            return Verdict::Empty;
        }
        n
    };
    let stored = be32(page, payload - 4);
    let computed = checksum::full_crc32(&page[..payload]);
    if stored != computed {
        problems.push(Problem::Checksum { stored: vec![stored], computed: vec![("full_crc32", computed)] });
    }
    let key_version = be32(page, fil::SPACE_OR_CHKSUM);
    let plain = !compressed && key_version == 0;
    if plain {
        let (header, trailer) = (be32(page, fil::LSN + 4), be32(page, n - 8));
        if header != trailer {
            problems.push(Problem::Lsn { header, trailer });
        }
    }
    // The space id lies inside the encrypted or compressed part otherwise.
    position_problems(space, page_no, page, plain, &mut problems);
    if problems.is_empty() {
        Verdict::Valid { algo: Algo::FullCrc32, inside: None }
    } else {
        Verdict::Corrupt(problems)
    }
}

fn check_zip(space: &Space, page_no: u64, page: &[u8], policy: Policy) -> Verdict {
    if all_zero(page) {
        return Verdict::Empty;
    }
    let mut problems = Vec::new();
    position_problems(space, page_no, page, true, &mut problems);
    let t = be16(page, fil::TYPE);
    if matches!(
        t,
        page_type::MYSQL_ENCRYPTED | page_type::MYSQL_COMPRESSED_AND_ENCRYPTED | page_type::MYSQL_ENCRYPTED_RTREE
    ) {
        return if problems.is_empty() { mysql_encrypted() } else { Verdict::Corrupt(problems) };
    }
    let stored = be32(page, fil::SPACE_OR_CHKSUM);
    let crc = checksum::zip_crc32(page);
    let key_version = be32(page, fil::FLUSH_LSN_OR_KEY_VERSION);
    let found = if key_version != 0 && be32(page, fil::FLUSH_LSN_OR_KEY_VERSION + 4) == crc {
        Some(Algo::EncryptedZipCrc32)
    } else if stored == crc {
        Some(Algo::ZipCrc32)
    } else if stored == NONE_MAGIC {
        Some(Algo::ZipNone)
    } else if stored == checksum::zip_adler(page) {
        Some(Algo::ZipInnodb)
    } else if stored == checksum::zip_crc32_legacy_be(page) {
        Some(Algo::ZipCrc32BigEndian)
    } else {
        None
    };
    finish(found, policy, problems, || Problem::Checksum {
        stored: vec![stored],
        computed: vec![("crc32", crc), ("innodb", checksum::zip_adler(page))],
    })
}

fn mysql_encrypted() -> Verdict {
    Verdict::Unverifiable("encrypted with MySQL TDE: its checksum needs the tablespace key".into())
}

/// Turns the algorithm found (if any) into a verdict under `policy`.
fn finish(
    found: Option<Algo>,
    policy: Policy,
    mut problems: Vec<Problem>,
    mismatch: impl FnOnce() -> Problem,
) -> Verdict {
    match (found, policy.strict()) {
        (None, _) => problems.push(mismatch()),
        (Some(algo), Some(required))
            if algo.family() != required && algo != Algo::EncryptedCrc32 && algo != Algo::EncryptedZipCrc32 =>
        {
            let name = match required {
                Family::Crc32 => "crc32",
                Family::Innodb => "innodb",
                Family::None => "none",
            };
            problems.push(Problem::Strict { found: algo, required: name });
        }
        (Some(algo), _) if problems.is_empty() => return Verdict::Valid { algo, inside: None },
        _ => {}
    }
    Verdict::Corrupt(problems)
}

fn check_classic(space: &Space, page_no: u64, page: &[u8], policy: Policy, scratch: &mut Scratch) -> Verdict {
    let n = page.len();
    // Empty: every byte zero except [26, 34), which page 0 of ibdata and some writers fill.
    if all_zero(&page[..26]) && all_zero(&page[34..]) {
        return Verdict::Empty;
    }
    let mut problems = Vec::new();
    position_problems(space, page_no, page, true, &mut problems);
    match be16(page, fil::TYPE) {
        page_type::MYSQL_ENCRYPTED | page_type::MYSQL_COMPRESSED_AND_ENCRYPTED | page_type::MYSQL_ENCRYPTED_RTREE => {
            return if problems.is_empty() { mysql_encrypted() } else { Verdict::Corrupt(problems) };
        }
        page_type::MARIADB_PAGE_COMPRESSED_ENCRYPTED => {
            return if problems.is_empty() {
                Verdict::Unverifiable(
                    "encrypted page_compressed page: MariaDB keeps no checksum outside the encryption".into(),
                )
            } else {
                Verdict::Corrupt(problems)
            };
        }
        page_type::MARIADB_PAGE_COMPRESSED => {
            if be32(page, fil::SPACE_OR_CHKSUM) != NONE_MAGIC {
                problems.push(Problem::Compression("page_compressed page without its 0xDEADBEEF marker".into()));
                return Verdict::Corrupt(problems);
            }
            scratch.page.resize(space.logical_size as usize, 0);
            let result = decompress::mariadb_page(page, &mut scratch.page).map(|a| a.name());
            return inner(space, page_no, policy, result, problems, scratch);
        }
        page_type::MYSQL_COMPRESSED => {
            scratch.page.resize(space.logical_size as usize, 0);
            let result = decompress::mysql_page(page, &mut scratch.page);
            return inner(space, page_no, policy, result, problems, scratch);
        }
        _ => {}
    }
    let (header, trailer) = (be32(page, fil::LSN + 4), be32(page, n - 4));
    if header != trailer {
        problems.push(Problem::Lsn { header, trailer });
    }
    let (f1, f2) = (be32(page, fil::SPACE_OR_CHKSUM), be32(page, n - 8));
    if f1 == 0 && f2 == 0 && be32(page, fil::LSN) == 0 && header == 0 {
        // MySQL's rule: zero checksums and LSN mean "empty", and an empty page is all zero.
        problems.push(Problem::NotEmpty);
        return Verdict::Corrupt(problems);
    }
    let crc = checksum::crc32(page);
    let key_version = be32(page, fil::FLUSH_LSN_OR_KEY_VERSION);
    let found = if key_version != 0 && be32(page, fil::FLUSH_LSN_OR_KEY_VERSION + 4) == crc {
        // MariaDB encryption: the page is ciphertext; its checksum at 30 covers it.
        Some(Algo::EncryptedCrc32)
    } else {
        classic_algo(page, f1, f2, crc, policy)
    };
    finish(found, policy, problems, || Problem::Checksum {
        stored: vec![f1, f2],
        computed: vec![
            ("crc32", crc),
            ("innodb", checksum::innodb_new(page)),
            ("innodb-old", checksum::innodb_old(page)),
        ],
    })
}

/// The algorithm a classic page's checksum fields match, tried in the order the policy prefers.
fn classic_algo(page: &[u8], f1: u32, f2: u32, crc: u32, policy: Policy) -> Option<Algo> {
    let crc32 = || (f1 == crc && f2 == crc).then_some(Algo::Crc32);
    let none = || (f1 == NONE_MAGIC && f2 == NONE_MAGIC).then_some(Algo::None);
    let innodb = || {
        // Field 2 may also hold the LSN's high word (very old InnoDB), field 1 zero (< 4.0.14);
        // MariaDB also accepts a mix of innodb and none values.
        let old_ok = f2 == checksum::innodb_old(page) || f2 == be32(page, fil::LSN) || f2 == NONE_MAGIC;
        let new_ok = f1 == checksum::innodb_new(page) || f1 == 0 || f1 == NONE_MAGIC;
        (old_ok && new_ok && !(f1 == NONE_MAGIC && f2 == NONE_MAGIC)).then_some(Algo::Innodb)
    };
    let be = || {
        let v = checksum::crc32_legacy_be(page);
        (f1 == v && f2 == v).then_some(Algo::Crc32BigEndian)
    };
    match policy {
        Policy::Innodb | Policy::StrictInnodb => innodb().or_else(none).or_else(crc32).or_else(be),
        Policy::None | Policy::StrictNone => none().or_else(crc32).or_else(innodb).or_else(be),
        _ => crc32().or_else(none).or_else(innodb).or_else(be),
    }
}

/// The verdict on a decompressed page, or on the failure to decompress it.
fn inner(
    space: &Space,
    page_no: u64,
    policy: Policy,
    result: Result<&'static str, DecompressError>,
    mut problems: Vec<Problem>,
    scratch: &mut Scratch,
) -> Verdict {
    match result {
        Err(DecompressError::Unsupported(why)) => {
            if problems.is_empty() {
                Verdict::Unverifiable(why)
            } else {
                Verdict::Corrupt(problems)
            }
        }
        Err(DecompressError::Failed(why)) => {
            problems.push(Problem::Compression(why));
            Verdict::Corrupt(problems)
        }
        Ok(algo) => {
            let page = std::mem::take(&mut scratch.page);
            let verdict = check_classic(space, page_no, &page, policy, scratch);
            scratch.page = page;
            match verdict {
                Verdict::Valid { algo: a, .. } if problems.is_empty() => Verdict::Valid { algo: a, inside: Some(algo) },
                Verdict::Valid { .. } | Verdict::Empty => Verdict::Corrupt(problems),
                Verdict::Corrupt(inner) => {
                    problems.extend(inner);
                    Verdict::Corrupt(problems)
                }
                other => other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        for s in ["auto", "crc32", "strict_crc32", "innodb", "strict_innodb", "none", "strict_none", "full_crc32"] {
            assert!(Policy::parse(s).is_some(), "{s}");
        }
        assert!(Policy::parse("adler").is_none());
    }
}
