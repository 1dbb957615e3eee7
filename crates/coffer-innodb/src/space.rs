//! What page 0 says about a tablespace: page sizes, format, compression, encryption
//! (shared/notes/innodb-page-checksums.md §1.4, §5).

use crate::checksum::{be16, be32};

/// Offsets in the page header (FIL header) and trailer.
pub mod fil {
    pub const SPACE_OR_CHKSUM: usize = 0;
    pub const PAGE_NO: usize = 4;
    pub const LSN: usize = 16;
    pub const TYPE: usize = 24;
    pub const FLUSH_LSN_OR_KEY_VERSION: usize = 26;
    pub const SPACE_ID: usize = 34;
    pub const DATA: usize = 38;
    /// FSP header fields on page 0.
    pub const FSP_SIZE: usize = 38 + 8;
    pub const FSP_FLAGS: usize = 38 + 16;
    pub const XDES_ARR: usize = 38 + 112;
}

/// Page types the validator treats specially.
pub mod page_type {
    pub const ALLOCATED: u16 = 0;
    pub const TRX_SYS: u16 = 7;
    pub const FSP_HDR: u16 = 8;
    pub const XDES: u16 = 9;
    /// MySQL transparent page compression (`COMPRESSION='zlib'|'lz4'`).
    pub const MYSQL_COMPRESSED: u16 = 14;
    /// MySQL TDE.
    pub const MYSQL_ENCRYPTED: u16 = 15;
    pub const MYSQL_COMPRESSED_AND_ENCRYPTED: u16 = 16;
    pub const MYSQL_ENCRYPTED_RTREE: u16 = 17;
    /// MariaDB page_compressed, non-full_crc32.
    pub const MARIADB_PAGE_COMPRESSED: u16 = 34354;
    pub const MARIADB_PAGE_COMPRESSED_ENCRYPTED: u16 = 37401;
}

/// Compression algorithms of MariaDB page_compressed tables (flag bits 5-7 in full_crc32, the
/// 8-byte number at 26 in the older format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCompression {
    Zlib,
    Lz4,
    Lzo,
    Lzma,
    Bzip2,
    Snappy,
}

impl PageCompression {
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => Self::Zlib,
            2 => Self::Lz4,
            3 => Self::Lzo,
            4 => Self::Lzma,
            5 => Self::Bzip2,
            6 => Self::Snappy,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Zlib => "zlib",
            Self::Lz4 => "lz4",
            Self::Lzo => "lzo",
            Self::Lzma => "lzma",
            Self::Bzip2 => "bzip2",
            Self::Snappy => "snappy",
        }
    }
}

/// How the pages of a tablespace are checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MariaDB 10.4+ `full_crc32` (flag bit 4); `compression` from flag bits 5-7.
    FullCrc32 { compression: Option<PageCompression> },
    /// Every other layout: MySQL 5.x-9.x, MariaDB before full_crc32, and ROW_FORMAT=COMPRESSED
    /// (`zip_size` set) everywhere.
    Classic { zip_size: Option<u32>, page_compressed: bool, mysql_encrypted: bool },
}

/// A tablespace, as page 0 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub space_id: u32,
    pub flags: u32,
    pub format: Format,
    /// Size of a page in the buffer pool.
    pub logical_size: u32,
    /// Size of a page in the file (the key block size for ROW_FORMAT=COMPRESSED).
    pub physical_size: u32,
    /// Pages the header says the space has (FSP_SIZE).
    pub size_in_header: u32,
    /// MariaDB data-at-rest encryption is set up for this space (page-0 crypt data).
    pub mariadb_encrypted: bool,
    /// Page number of the first page of this file (non-zero for ibdata2 and later).
    pub first_page: u64,
    /// Pages of the system tablespace's doublewrite buffer, which hold copies of other pages.
    pub doublewrite: Vec<std::ops::Range<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    #[error("file is shorter than one page")]
    Short,
    #[error("page 0 has page number {0}, not 0: not the first page of a tablespace")]
    NotFirstPage(u32),
    #[error("tablespace flags {0:#x} are not a valid MySQL or MariaDB flag word")]
    BadFlags(u32),
}

const CRYPT_MAGIC: [u8; 6] = [0x73, 0x0E, 0x0C, 0x52, 0x45, 0x74];

/// Extent size in pages for a page size (1 MiB extents up to 16K pages, 64 pages above).
fn pages_per_extent(page_size: u32) -> u32 {
    if page_size <= 16384 {
        (1 << 20) / page_size
    } else {
        64
    }
}

/// Byte offset on page 0 just after the extent descriptors: where MySQL keeps its encryption
/// info and MariaDB (38 bytes further) its crypt data. Extents and descriptors are sized by the
/// logical page size; a descriptor page covers as many pages as a physical page has bytes.
fn after_xdes(logical: u32, physical: u32) -> usize {
    let extent = pages_per_extent(logical);
    let entry = 24 + (2 * extent).div_ceil(8);
    fil::XDES_ARR + (entry * (physical / extent)) as usize
}

/// Decodes FSP flags into (format, logical size, physical size).
pub fn decode_flags(flags: u32) -> Result<(Format, u32, u32), SpaceError> {
    if flags & 0x10 != 0 {
        // full_crc32: bits 0-3 page size, 4 marker, 5-7 compression, nothing above.
        let ssize = flags & 0xF;
        if flags >> 8 != 0 || !(3..=7).contains(&ssize) {
            return Err(SpaceError::BadFlags(flags));
        }
        let size = 512 << ssize;
        let algo = (flags >> 5) & 7;
        let compression = match algo {
            0 => None,
            a => Some(PageCompression::from_code(u64::from(a)).ok_or(SpaceError::BadFlags(flags))?),
        };
        return Ok((Format::FullCrc32 { compression }, size, size));
    }
    let zip_ssize = (flags >> 1) & 0xF;
    let page_ssize = (flags >> 6) & 0xF;
    // Bits 0-9 as above, 10 DATA_DIR, 11-14 MySQL's SHARED, TEMPORARY, ENCRYPTION and SDI, 16
    // MariaDB's PAGE_COMPRESSION. Nothing else is ever stored.
    let known = 0x7FFF | (1 << 16);
    if flags & !known != 0 || zip_ssize > 5 || matches!(page_ssize, 1 | 2 | 5) || page_ssize > 7 {
        return decode_mariadb_101(flags);
    }
    let logical = if page_ssize == 0 { 16384 } else { 512 << page_ssize };
    let zip_size = (zip_ssize != 0).then_some(512u32 << zip_ssize);
    if zip_size.is_some_and(|z| z > logical) {
        return Err(SpaceError::BadFlags(flags));
    }
    let format =
        Format::Classic { zip_size, page_compressed: flags & (1 << 16) != 0, mysql_encrypted: flags & (1 << 13) != 0 };
    Ok((format, logical, zip_size.unwrap_or(logical)))
}

/// The layout MariaDB 10.1.0-10.1.20 wrote (converted by later servers at startup, as this
/// reader does when the word is not valid in today's layout): bit 6 PAGE_COMPRESSION, 7-10 its
/// level, 11-12 ATOMIC_WRITES, 13-16 PAGE_SSIZE, 17 DATA_DIR.
fn decode_mariadb_101(flags: u32) -> Result<(Format, u32, u32), SpaceError> {
    let zip_ssize = (flags >> 1) & 0xF;
    let page_ssize = (flags >> 13) & 0xF;
    if flags >> 18 != 0 || zip_ssize > 5 || !matches!(page_ssize, 0 | 3 | 4 | 6 | 7) {
        return Err(SpaceError::BadFlags(flags));
    }
    let logical = if page_ssize == 0 { 16384 } else { 512 << page_ssize };
    let zip_size = (zip_ssize != 0).then_some(512u32 << zip_ssize);
    if zip_size.is_some_and(|z| z > logical) {
        return Err(SpaceError::BadFlags(flags));
    }
    let format = Format::Classic { zip_size, page_compressed: flags & (1 << 6) != 0, mysql_encrypted: false };
    Ok((format, logical, zip_size.unwrap_or(logical)))
}

impl Space {
    /// The physical page size, from the flags in the first 58 bytes of page 0.
    pub fn physical_size_from_prefix(prefix: &[u8]) -> Result<u32, SpaceError> {
        if prefix.len() < fil::FSP_FLAGS + 4 {
            return Err(SpaceError::Short);
        }
        decode_flags(be32(prefix, fil::FSP_FLAGS)).map(|(_, _, physical)| physical)
    }

    /// Reads page 0 (at least one physical page).
    pub fn from_page0(page0: &[u8]) -> Result<Self, SpaceError> {
        let physical = Self::physical_size_from_prefix(page0)?;
        if page0.len() < physical as usize {
            return Err(SpaceError::Short);
        }
        let page0 = &page0[..physical as usize];
        let flags = be32(page0, fil::FSP_FLAGS);
        let (format, logical, physical) = decode_flags(flags)?;
        let page_no = be32(page0, fil::PAGE_NO);
        if page_no != 0 && page0.iter().any(|&b| b != 0) {
            return Err(SpaceError::NotFirstPage(page_no));
        }
        let crypt_at = fil::DATA + after_xdes(logical, physical);
        let mariadb_encrypted = page0.get(crypt_at..crypt_at + 8).is_some_and(|c| c[..6] == CRYPT_MAGIC && c[6] == 1);
        Ok(Self {
            space_id: be32(page0, fil::SPACE_ID),
            flags,
            format,
            logical_size: logical,
            physical_size: physical,
            size_in_header: be32(page0, fil::FSP_SIZE),
            mariadb_encrypted,
            first_page: 0,
            doublewrite: Vec::new(),
        })
    }

    pub fn is_full_crc32(&self) -> bool {
        matches!(self.format, Format::FullCrc32 { .. })
    }

    pub fn zip_size(&self) -> Option<u32> {
        match self.format {
            Format::Classic { zip_size, .. } => zip_size,
            Format::FullCrc32 { .. } => None,
        }
    }

    /// Reads the doublewrite buffer's location from the TRX_SYS page (page 5 of the system
    /// tablespace), as MariaDB's innochecksum does; those pages hold copies of other pages.
    pub fn note_trx_sys(&mut self, page5: &[u8]) {
        if self.space_id != 0
            || page5.len() != self.physical_size as usize
            || be16(page5, fil::TYPE) != page_type::TRX_SYS
        {
            return;
        }
        let at = page5.len() - 200;
        if be32(page5, at + 10) == 0x1FFF_BD5F {
            let extent = u64::from(pages_per_extent(self.physical_size));
            self.doublewrite = [be32(page5, at + 14), be32(page5, at + 18)]
                .iter()
                .map(|&start| u64::from(start)..u64::from(start) + extent)
                .collect();
        }
    }

    /// A short description: "MariaDB full_crc32, 16K", "ROW_FORMAT=COMPRESSED 8K of 16K", ...
    pub fn describe(&self) -> String {
        let k = |n: u32| format!("{}K", n / 1024);
        let mut s = match self.format {
            Format::FullCrc32 { compression } => {
                let mut s = format!("MariaDB full_crc32, {}", k(self.physical_size));
                if let Some(c) = compression {
                    s.push_str(&format!(", PAGE_COMPRESSED {}", c.name()));
                }
                s
            }
            Format::Classic { zip_size: Some(z), .. } => {
                format!("ROW_FORMAT=COMPRESSED, {} pages of {}", k(z), k(self.logical_size))
            }
            Format::Classic { page_compressed, mysql_encrypted, .. } => {
                let mut s = format!("classic, {}", k(self.physical_size));
                if page_compressed {
                    s.push_str(", MariaDB PAGE_COMPRESSED");
                }
                if mysql_encrypted {
                    s.push_str(", MySQL ENCRYPTION");
                }
                s
            }
        };
        if self.mariadb_encrypted {
            s.push_str(", MariaDB encrypted");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_words_seen_in_real_files() {
        let d = |f| decode_flags(f).unwrap();
        assert_eq!(
            d(0x0),
            (Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false }, 16384, 16384)
        );
        assert_eq!(d(0x21).1, 16384);
        assert_eq!(d(0x4021).2, 16384);
        assert_eq!(
            d(0x4029),
            (Format::Classic { zip_size: Some(8192), page_compressed: false, mysql_encrypted: false }, 16384, 8192)
        );
        for (flags, size) in [(0x48C0, 4096), (0x4900, 8192), (0x4800, 16384), (0x4980, 32768), (0x49C0, 65536)] {
            assert_eq!(d(flags).2, size, "{flags:#x}");
        }
        assert_eq!(d(0x15), (Format::FullCrc32 { compression: None }, 16384, 16384));
        assert_eq!(d(0x15 | (1 << 5)).0, Format::FullCrc32 { compression: Some(PageCompression::Zlib) });
        assert_eq!(d(0x13).2, 4096);
        assert_eq!(d(0x17).2, 65536);
    }

    #[test]
    fn mariadb_10_1_flag_words() {
        // 16K DYNAMIC, PAGE_COMPRESSED at level 6: POST_ANTELOPE | ATOMIC_BLOBS | bit 6 | 6 << 7.
        let f = 0x21 | (1 << 6) | (6 << 7);
        assert_eq!(
            decode_flags(f).unwrap(),
            (Format::Classic { zip_size: None, page_compressed: true, mysql_encrypted: false }, 16384, 16384)
        );
        // 8K pages (PAGE_SSIZE 4 at bit 13), atomic writes on (bit 11).
        assert_eq!(decode_flags(0x21 | (4 << 13) | (1 << 11)).unwrap().2, 8192);
    }

    #[test]
    fn invalid_flag_words_are_refused() {
        for f in [0x15 | 0x100, 0x12, 0x18, 0x40 | (5 << 13), 0x1 | (6 << 1), 1 << 30, 3 << 6 | 5 << 1] {
            assert!(decode_flags(f).is_err(), "{f:#x}");
        }
    }

    #[test]
    fn offsets_after_the_extent_descriptors() {
        assert_eq!(after_xdes(16384, 16384), 10390);
        assert_eq!(fil::DATA + after_xdes(16384, 16384), 10428);
        // ROW_FORMAT=COMPRESSED 8K pages of a 16K instance: 64-page extents of 40-byte entries.
        assert_eq!(after_xdes(16384, 8192), 150 + 40 * 128);
    }
}
