//! Incremental backups of mariabackup and xtrabackup: per tablespace, `NAME.delta` (the pages
//! changed since the base backup) and `NAME.meta` (their size and space id).
//!
//! `NAME.meta` is text, `key = value` a line: `page_size`, `zip_size` (0, or the compressed page
//! size), `space_id`, and from Percona XtraBackup 8.0 `space_flags`. MariaDB writes the physical
//! size twice for ROW_FORMAT=COMPRESSED tables (`page_size = 4096`, `zip_size = 4096`); older
//! writers the logical size in `page_size`. Either way the pages of the delta are `zip_size`
//! bytes if it is not 0, else `page_size` bytes.
//!
//! `NAME.delta` is a sequence of blocks (the engines' `write_filt.cc`, and the apply loop of
//! `xtrabackup.cc`): a header page starting with `xtra` (`XTRA` for the last block), then
//! big-endian u32 page numbers, ended by `0xFFFFFFFF` unless all `page/4 - 1` slots are used,
//! then that many pages. Every block but the last is full (the engines flush only full blocks,
//! and their apply asserts it); the last may list no page at all (nothing changed).
//!
//! [`DeltaParser`] takes a delta's bytes as they arrive and yields its pages; [`DeltaStream`]
//! validates them into a [`FileReport`]; [`DeltaChecker`] validates a delta read from a file in
//! chunks, in any order (a backup reading the file). A delta need not hold page 0: the pages are
//! judged against the space the `.meta` describes, refined by page 0 when it is there, and the
//! checksum format (full_crc32 or not, which MariaDB's `.meta` does not say) is taken from the
//! first page that validates under one of them. Without its `.meta` (an image where the delta
//! comes first), [`infer`] finds the page size from the delta itself: the one under which its
//! first page is a valid page with the number the header lists.

use crate::checksum::be32;
use crate::page::{check_page, Policy, Scratch, Verdict};
use crate::report::{table_name, CorruptPage, FileReport, Status, Tally};
use crate::scan::{classify, ChunkResult, Kind};
use crate::space::{decode_flags, fil, page_type, Format, Space};

/// The first bytes of every block but the last.
pub const MAGIC: [u8; 4] = *b"xtra";
/// The first bytes of the last block.
pub const MAGIC_LAST: [u8; 4] = *b"XTRA";
/// Ends the page list of a block that is not full.
pub const TERMINATOR: u32 = 0xFFFF_FFFF;
/// A `.meta` is a few dozen bytes; anything longer is not one.
pub const META_MAX: usize = 4096;
/// Page sizes of uncompressed tablespaces.
const PAGE_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];
/// Page sizes of ROW_FORMAT=COMPRESSED tablespaces (KEY_BLOCK_SIZE 1 to 16).
const ZIP_SIZES: [u32; 5] = [1024, 2048, 4096, 8192, 16384];
/// Every physical page size a delta can have, smallest first.
const ALL_SIZES: [u32; 7] = [1024, 2048, 4096, 8192, 16384, 32768, 65536];
/// What [`infer`] needs at most: a 64K header and the first 64K page.
pub const INFER_MAX: usize = 2 * 65536;
/// Pages [`DeltaChecker::open`] reads to tell the checksum format when nothing else does.
const PROBE_PAGES: usize = 8;

/// Why a `.meta` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("longer than {META_MAX} bytes: not a delta's .meta")]
    TooLong,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("{0} is given twice")]
    Duplicate(&'static str),
    #[error("no page_size")]
    NoPageSize,
    #[error("page_size {0} is not a page size (4K to 64K, or the zip_size)")]
    PageSize(u64),
    #[error("zip_size {0} is not a compressed page size (0, or 1K to 16K)")]
    ZipSize(u64),
    #[error(
        "page_size {page_size} with zip_size {zip_size}: compressed pages need a page size from the zip_size to 16K"
    )]
    Sizes { page_size: u32, zip_size: u32 },
    #[error("space_flags {flags:#x} {why}")]
    Flags { flags: u32, why: String },
}

/// What a `.meta` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaMeta {
    /// `page_size`: the logical page size, or (MariaDB, compressed tables) the physical one.
    pub page_size: u32,
    /// `zip_size`: the compressed page size, 0 for uncompressed tablespaces.
    pub zip_size: u32,
    /// `space_id` (absent from XtraBackup 2.0.1 and older).
    pub space_id: Option<u32>,
    /// `space_flags` (Percona XtraBackup 8.0).
    pub space_flags: Option<u32>,
}

impl DeltaMeta {
    /// Parses a `.meta` (hostile input: bounded, every value checked). Unknown keys are ignored,
    /// as the engines do.
    pub fn parse(text: &[u8]) -> Result<Self, MetaError> {
        if text.len() > META_MAX {
            return Err(MetaError::TooLong);
        }
        let mut values: [Option<u64>; 4] = [None; 4];
        const KEYS: [&str; 4] = ["page_size", "zip_size", "space_id", "space_flags"];
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let shown = || String::from_utf8_lossy(line).into_owned();
            let Some(eq) = line.iter().position(|&b| b == b'=') else {
                return Err(MetaError::Line { line: i + 1, why: format!("{:?} is not `key = value`", shown()) });
            };
            let (key, value) = (line[..eq].trim_ascii(), line[eq + 1..].trim_ascii());
            let Some(k) = KEYS.iter().position(|name| name.as_bytes() == key) else { continue };
            let Some(v) = number(value) else {
                return Err(MetaError::Line {
                    line: i + 1,
                    why: format!("{} is not a number: {:?}", KEYS[k], shown()),
                });
            };
            if k >= 2 && v > u64::from(u32::MAX) {
                return Err(MetaError::Line { line: i + 1, why: format!("{} {v} is out of range", KEYS[k]) });
            }
            if values[k].replace(v).is_some() {
                return Err(MetaError::Duplicate(KEYS[k]));
            }
        }
        let [page_size, zip_size, space_id, space_flags] = values;
        let page_size = page_size.ok_or(MetaError::NoPageSize)?;
        let zip_size = zip_size.unwrap_or(0);
        if zip_size != 0 && !ZIP_SIZES.iter().any(|&z| u64::from(z) == zip_size) {
            return Err(MetaError::ZipSize(zip_size));
        }
        let zip_size = zip_size as u32;
        let page_ok = PAGE_SIZES.iter().any(|&p| u64::from(p) == page_size)
            || (zip_size != 0 && page_size == u64::from(zip_size));
        if !page_ok {
            return Err(MetaError::PageSize(page_size));
        }
        let page_size = page_size as u32;
        if zip_size != 0 && !(zip_size..=16384).contains(&page_size) {
            return Err(MetaError::Sizes { page_size, zip_size });
        }
        // Both were checked to fit in 32 bits.
        let meta = Self {
            page_size,
            zip_size,
            space_id: space_id.map(|v| v as u32),
            space_flags: space_flags.map(|v| v as u32),
        };
        if let Some(flags) = meta.space_flags {
            let (_, _, physical) =
                decode_flags(flags).map_err(|_| MetaError::Flags { flags, why: "is not a valid flag word".into() })?;
            if physical != meta.physical_size() {
                return Err(MetaError::Flags {
                    flags,
                    why: format!("say {physical}-byte pages, page_size and zip_size {}", meta.physical_size()),
                });
            }
        }
        Ok(meta)
    }

    /// The size of a page in the delta (and of its block headers).
    pub fn physical_size(&self) -> u32 {
        if self.zip_size != 0 {
            self.zip_size
        } else {
            self.page_size
        }
    }

    /// The page size of the buffer pool, as far as the `.meta` tells: for a compressed table of
    /// MariaDB's (which writes its compressed size twice) 16K, the only size such tables have in
    /// practice; page 0, when the delta holds it, says for sure.
    fn logical_size(&self) -> u32 {
        match self.space_flags.and_then(|f| decode_flags(f).ok()) {
            Some((_, logical, _)) => logical,
            None if self.zip_size != 0 && self.page_size == self.zip_size => 16384,
            None => self.page_size,
        }
    }
}

/// A decimal number of at most 20 digits, nothing else.
fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The tablespace `name` (a path) is the delta of: `db/t.ibd` for `db/t.ibd.delta`, if it is an
/// InnoDB file's name.
pub fn delta_of(name: &str) -> Option<&str> {
    name.strip_suffix(".delta").filter(|stem| !matches!(classify(stem), Kind::Other(_)))
}

/// The tablespace `name` is the `.meta` of: `db/t.ibd` for `db/t.ibd.meta`.
pub fn meta_of(name: &str) -> Option<&str> {
    name.strip_suffix(".meta").filter(|stem| !matches!(classify(stem), Kind::Other(_)))
}

/// Reads the `.meta` beside the delta at `delta` (`X.meta` for `X.delta`), without following a
/// symlink or blocking on a FIFO, at most [`META_MAX`] bytes of it. `Ok(None)`: there is none.
pub fn read_meta_beside(delta: &std::path::Path) -> Result<Option<DeltaMeta>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(name) = delta.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".delta")) else {
        return Ok(None);
    };
    let path = delta.with_file_name(format!("{name}.meta"));
    let shown = format!("{name}.meta");
    let file =
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("its {shown} cannot be read: {e}")),
        };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(format!("its {shown} is not a regular file"));
    }
    let mut text = Vec::new();
    file.take(META_MAX as u64 + 1).read_to_end(&mut text).map_err(|e| format!("its {shown} cannot be read: {e}"))?;
    DeltaMeta::parse(&text).map(Some).map_err(|e| format!("its {shown} is unusable: {e}"))
}

/// What is wrong with the structure of a delta. After it, nothing more of the delta can be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the block header at byte {offset} starts with \"{}\", not \"xtra\" or \"XTRA\"", found.escape_ascii())]
    Magic { offset: u64, found: [u8; 4] },
    #[error(
        "the block at byte {offset} lists {pages} pages but is not the last (\"xtra\"): the engines write only full blocks of {full} pages before the last"
    )]
    ShortBlock { offset: u64, pages: usize, full: usize },
    #[error("the delta ends {have} bytes into the block at byte {offset}, which is {need} bytes long: truncated")]
    Truncated {
        offset: u64,
        need: u64,
        have: u64,
        /// The first page the cut leaves incomplete, if the block's header was read.
        page: Option<u32>,
    },
    #[error("the delta ends at byte {offset} without its last block (\"XTRA\"): truncated")]
    NoLastBlock { offset: u64 },
    #[error("{bytes} bytes after the last block (\"XTRA\"), from byte {offset}")]
    Trailing { offset: u64, bytes: u64 },
    #[error("empty file: a delta holds at least one block header")]
    Empty,
}

impl DeltaError {
    /// Where in the delta the problem is.
    pub fn offset(&self) -> u64 {
        match *self {
            Self::Magic { offset, .. }
            | Self::ShortBlock { offset, .. }
            | Self::NoLastBlock { offset }
            | Self::Trailing { offset, .. } => offset,
            Self::Truncated { offset, have, .. } => offset + have,
            Self::Empty => 0,
        }
    }

    /// The tablespace page the problem is in, if it is in one.
    pub fn page(&self) -> Option<u32> {
        match *self {
            Self::Truncated { page, .. } => page,
            _ => None,
        }
    }
}

/// A block header: whether it is the last block, and the pages the block holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub last: bool,
    pub pages: Vec<u32>,
}

/// Reads the block header `header` (one physical page, at `offset` in the delta).
pub fn parse_header(header: &[u8], offset: u64) -> Result<BlockHeader, DeltaError> {
    let found: [u8; 4] = header.get(..4).and_then(|m| m.try_into().ok()).unwrap_or_default();
    let last = match found {
        MAGIC => false,
        MAGIC_LAST => true,
        _ => return Err(DeltaError::Magic { offset, found }),
    };
    let full = (header.len() / 4).saturating_sub(1);
    let mut pages = Vec::new();
    for slot in 1..=full {
        let v = be32(header, slot * 4);
        if v == TERMINATOR {
            break;
        }
        pages.push(v);
    }
    if !last && pages.len() != full {
        return Err(DeltaError::ShortBlock { offset, pages: pages.len(), full });
    }
    Ok(BlockHeader { last, pages })
}

/// One page of a delta.
#[derive(Debug, Clone, Copy)]
pub struct DeltaPage<'a> {
    /// Its number in the tablespace, as the block header lists it.
    pub page_no: u32,
    /// Its byte offset in the delta.
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// What a whole delta held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeltaSummary {
    pub blocks: u64,
    pub pages: u64,
}

/// Reads a delta whose bytes arrive in order, yielding its pages. Holds one page at most.
#[derive(Debug)]
pub struct DeltaParser {
    size: usize,
    /// Bytes taken so far.
    pos: u64,
    /// Where the current block (or, after the last, the trailing bytes) starts.
    block_at: u64,
    /// The header being read.
    header: Vec<u8>,
    /// The current block, once its header is read, and its next page.
    block: Option<BlockHeader>,
    next: usize,
    /// A page split across inputs.
    page: Vec<u8>,
    /// The last block has ended; what comes after is counted.
    done: bool,
    trailing: u64,
    failed: Option<DeltaError>,
    summary: DeltaSummary,
}

impl DeltaParser {
    /// A parser for pages (and block headers) of `physical_size` bytes, 1K to 64K.
    pub fn new(physical_size: u32) -> Self {
        let size = physical_size.clamp(1024, 65536) as usize;
        Self {
            size,
            pos: 0,
            block_at: 0,
            header: Vec::with_capacity(size),
            block: None,
            next: 0,
            page: Vec::new(),
            done: false,
            trailing: 0,
            failed: None,
            summary: DeltaSummary::default(),
        }
    }

    /// Bytes taken so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The last block has been read: anything more is trailing garbage.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The structure is broken: nothing more is read.
    pub fn failed(&self) -> Option<&DeltaError> {
        self.failed.as_ref()
    }

    /// Takes the next bytes of the delta, calling `on_page` for every page completed. An error
    /// stops the parser: it is returned again by every later call and by [`Self::finish`].
    pub fn feed(&mut self, mut data: &[u8], on_page: &mut dyn FnMut(DeltaPage<'_>)) -> Result<(), DeltaError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let size = self.size;
        while !data.is_empty() {
            if self.done {
                self.trailing += data.len() as u64;
                self.pos += data.len() as u64;
                break;
            }
            let Some(block) = &self.block else {
                let k = (size - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..k]);
                data = &data[k..];
                self.pos += k as u64;
                if self.header.len() == size {
                    let header = parse_header(&self.header, self.block_at);
                    self.header.clear();
                    match header {
                        Ok(b) => {
                            self.summary.blocks += 1;
                            self.next = 0;
                            if b.pages.is_empty() {
                                self.end_block(b.last);
                            } else {
                                self.block = Some(b);
                            }
                        }
                        Err(e) => {
                            self.failed = Some(e.clone());
                            return Err(e);
                        }
                    }
                }
                continue;
            };
            let page_no = block.pages[self.next];
            let count = block.pages.len();
            let offset = self.block_at + (1 + self.next as u64) * size as u64;
            if self.page.is_empty() && data.len() >= size {
                // A whole page in the input is handed over where it lies, without a copy.
                on_page(DeltaPage { page_no, offset, bytes: &data[..size] });
                data = &data[size..];
                self.pos += size as u64;
            } else {
                let k = (size - self.page.len()).min(data.len());
                self.page.extend_from_slice(&data[..k]);
                data = &data[k..];
                self.pos += k as u64;
                if self.page.len() < size {
                    continue;
                }
                on_page(DeltaPage { page_no, offset, bytes: &self.page });
                self.page.clear();
            }
            self.summary.pages += 1;
            self.next += 1;
            if self.next == count {
                let last = self.block.take().is_some_and(|b| b.last);
                self.end_block(last);
            }
        }
        Ok(())
    }

    fn end_block(&mut self, last: bool) {
        self.block_at = self.pos;
        self.done = last;
    }

    /// Takes `n` zero bytes (a hole), with work bounded whatever `n`: zeros are read as pages
    /// (handed to `on_page`) only up to the next block header, which zeros break.
    pub fn zeros(&mut self, mut n: u64, on_page: &mut dyn FnMut(DeltaPage<'_>)) -> Result<(), DeltaError> {
        static ZERO: [u8; 65536] = [0; 65536];
        while n > 0 {
            if self.failed.is_some() || self.done {
                // Past the end, or nothing more to read: only the position moves.
                if self.done && self.failed.is_none() {
                    self.trailing = self.trailing.saturating_add(n);
                }
                self.pos = self.pos.saturating_add(n);
                return self.failed.clone().map_or(Ok(()), Err);
            }
            let k = n.min(ZERO.len() as u64) as usize;
            self.feed(&ZERO[..k], on_page)?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Ends the delta: an error if it stopped inside a block, before its last block, or went on
    /// after it.
    pub fn finish(self) -> Result<DeltaSummary, DeltaError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.pos == 0 {
            return Err(DeltaError::Empty);
        }
        if self.done {
            return match self.trailing {
                0 => Ok(self.summary),
                bytes => Err(DeltaError::Trailing { offset: self.block_at, bytes }),
            };
        }
        let size = self.size as u64;
        let have = self.pos - self.block_at;
        match &self.block {
            None if self.header.is_empty() => Err(DeltaError::NoLastBlock { offset: self.pos }),
            None => Err(DeltaError::Truncated { offset: self.block_at, need: size, have, page: None }),
            Some(b) => Err(DeltaError::Truncated {
                offset: self.block_at,
                need: (1 + b.pages.len() as u64) * size,
                have,
                page: b.pages.get(self.next).copied(),
            }),
        }
    }
}

/// Extent size in pages (1 MiB extents up to 16K pages, 64 pages above).
fn pages_per_extent(size: u32) -> u64 {
    if size <= 16384 {
        u64::from((1 << 20) / size)
    } else {
        64
    }
}

/// Where the doublewrite buffer of a system tablespace is when its TRX_SYS page (5) is not in
/// the delta: the second and third extents, where every InnoDB creates it with the system
/// tablespace. Its pages are copies of other pages, and a delta holds them (mariabackup copies
/// every page written since the base backup).
fn default_doublewrite(physical: u32) -> Vec<std::ops::Range<u64>> {
    let e = pages_per_extent(physical);
    vec![e..2 * e, 2 * e..3 * e]
}

/// True if `verdict` on page `no` shows the page was read with the right layout: valid, or not
/// verifiable (encrypted with a key we do not have) but carrying its own number.
fn fits(verdict: &Verdict, page: &[u8], no: u32) -> bool {
    match verdict {
        Verdict::Valid { .. } => true,
        Verdict::Unverifiable(_) => be32(page, fil::PAGE_NO) == no,
        _ => false,
    }
}

/// The checksum layout a page that validates under none looks like: full_crc32 keeps the low
/// LSN word 8 bytes from the end, the classic layout 4 bytes from the end.
fn likely_format(page: &[u8]) -> Format {
    let n = page.len();
    let lsn = be32(page, fil::LSN + 4);
    if be32(page, n - 8) == lsn && be32(page, n - 4) != lsn {
        Format::FullCrc32 { compression: None }
    } else {
        Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false }
    }
}

/// Checksum layouts a page of `size` bytes may have.
fn formats_for(size: u32) -> Vec<Format> {
    let mut v = vec![
        Format::FullCrc32 { compression: None },
        Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false },
    ];
    if size <= 16384 {
        v.push(Format::Classic { zip_size: Some(size), page_compressed: false, mysql_encrypted: false });
    }
    v
}

/// Judges the pages of one delta, deciding its space as they come: from the `.meta`, then page
/// 0 if the delta holds it, and the checksum format from the first page valid under one.
#[derive(Debug)]
pub struct DeltaJudge {
    space: Space,
    /// The checksum format is known.
    decided: bool,
    /// The space id is known (from the `.meta`, else from the first page).
    id_known: bool,
    policy: Policy,
    scratch: Scratch,
}

impl DeltaJudge {
    /// A judge for the delta `meta` describes.
    pub fn new(meta: &DeltaMeta, policy: Policy) -> Self {
        let (format, decided) = match meta.space_flags.and_then(|f| decode_flags(f).ok()) {
            Some((format, ..)) => (format, true),
            // ROW_FORMAT=COMPRESSED spaces are never full_crc32.
            None if meta.zip_size != 0 => (
                Format::Classic { zip_size: Some(meta.zip_size), page_compressed: false, mysql_encrypted: false },
                true,
            ),
            None => (Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false }, false),
        };
        let physical = meta.physical_size();
        let space_id = meta.space_id.unwrap_or(u32::MAX);
        let space = Space {
            space_id,
            flags: meta.space_flags.unwrap_or(0),
            format,
            logical_size: meta.logical_size(),
            physical_size: physical,
            size_in_header: 0,
            mariadb_encrypted: false,
            first_page: 0,
            doublewrite: if space_id == 0 { default_doublewrite(physical) } else { Vec::new() },
        };
        Self { space, decided, id_known: meta.space_id.is_some(), policy, scratch: Scratch::default() }
    }

    /// A judge whose checksum format is already known (found by [`infer`]).
    pub fn with_format(meta: &DeltaMeta, format: Format, policy: Policy) -> Self {
        let mut judge = Self::new(meta, policy);
        judge.space.format = format;
        judge.decided = true;
        judge
    }

    /// The space the pages are judged against so far.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// A description: "MariaDB full_crc32, 16K", ...
    pub fn describe(&self) -> String {
        match self.space.format {
            Format::Classic { zip_size: Some(z), .. } if self.space.flags == 0 => {
                format!("ROW_FORMAT=COMPRESSED, {}K pages", z / 1024)
            }
            _ if !self.decided => format!("{}K pages", self.space.physical_size / 1024),
            _ => self.space.describe(),
        }
    }

    /// Judges page `page_no` (one physical page). `Err`: a finding about the delta itself (its
    /// page 0 contradicts its `.meta`), reported in place of a verdict.
    pub fn judge(&mut self, page_no: u32, page: &[u8]) -> Result<Verdict, String> {
        if page.len() != self.space.physical_size as usize {
            return Err(format!("a page of {} bytes, not {}", page.len(), self.space.physical_size));
        }
        if !self.id_known {
            self.id_known = true;
            self.set_space_id(be32(page, fil::SPACE_ID));
        }
        if page_no == 0 {
            if let Ok(s) = Space::from_page0(page) {
                if s.physical_size != self.space.physical_size {
                    return Err(format!(
                        "page 0's flags {:#x} say {}-byte pages, but the delta's are {} bytes (its .meta)",
                        s.flags, s.physical_size, self.space.physical_size
                    ));
                }
                let doublewrite = std::mem::take(&mut self.space.doublewrite);
                self.space = Space { space_id: self.space.space_id, doublewrite, ..s };
                self.decided = true;
            }
        }
        let no = u64::from(page_no);
        if !self.decided {
            for format in formats_for(self.space.physical_size) {
                if matches!(format, Format::Classic { zip_size: Some(_), .. }) {
                    continue;
                }
                let trial = Space { format, ..self.space.clone() };
                if fits(&check_page(&trial, no, page, Policy::Auto, &mut self.scratch), page, page_no) {
                    self.space.format = format;
                    self.decided = true;
                    break;
                }
            }
        }
        let verdict = if self.decided {
            check_page(&self.space, no, page, self.policy, &mut self.scratch)
        } else {
            let trial = Space { format: likely_format(page), ..self.space.clone() };
            check_page(&trial, no, page, self.policy, &mut self.scratch)
        };
        if page_no == 5 && self.space.space_id == 0 && matches!(verdict, Verdict::Valid { .. }) {
            // The system tablespace's TRX_SYS page says where the doublewrite buffer is.
            let mut found = self.space.clone();
            found.doublewrite.clear();
            found.note_trx_sys(page);
            if !found.doublewrite.is_empty() || crate::checksum::be16(page, fil::TYPE) == page_type::TRX_SYS {
                self.space.doublewrite = found.doublewrite;
            }
        }
        Ok(verdict)
    }

    fn set_space_id(&mut self, id: u32) {
        self.space.space_id = id;
        if id == 0 && self.space.doublewrite.is_empty() {
            self.space.doublewrite = default_doublewrite(self.space.physical_size);
        }
    }

    /// Settles the checksum format for good (a [`DeltaChecker`] judges chunks on any thread),
    /// guessing from `sample` (a page of the delta) if no page decided it.
    fn freeze(mut self, sample: Option<&[u8]>) -> Space {
        if !self.decided {
            self.space.format = sample.map_or(
                Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false },
                likely_format,
            );
        }
        self.space
    }
}

/// What [`infer`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inference {
    /// More of the delta is needed (at most [`INFER_MAX`] bytes).
    NeedMore,
    /// The delta's page size, as a `.meta` would give it, and its checksum format.
    Found { meta: DeltaMeta, format: Format },
    /// No page size fits: the header, or the first page, is damaged.
    Failed(String),
}

/// Finds a delta's page size without its `.meta`, from its first bytes (`prefix`; `complete`:
/// the whole delta): the smallest size under which the first block header is well formed and the
/// first page is a valid page carrying the number the header lists. A delta that lists no page
/// is as long as one header.
pub fn infer(prefix: &[u8], complete: bool) -> Inference {
    if prefix.len() < 4 {
        return match (complete, prefix.is_empty()) {
            (false, _) => Inference::NeedMore,
            (true, true) => Inference::Failed(DeltaError::Empty.to_string()),
            (true, false) => Inference::Failed("the delta is shorter than a block header".into()),
        };
    }
    let found: [u8; 4] = prefix[..4].try_into().unwrap_or_default();
    if found != MAGIC && found != MAGIC_LAST {
        return Inference::Failed(DeltaError::Magic { offset: 0, found }.to_string());
    }
    let mut scratch = Scratch::default();
    for size in ALL_SIZES {
        let p = size as usize;
        if prefix.len() < p {
            if complete {
                break;
            }
            return Inference::NeedMore;
        }
        let Ok(header) = parse_header(&prefix[..p], 0) else { continue };
        let meta = |zip: bool, id| DeltaMeta {
            page_size: size,
            zip_size: if zip { size } else { 0 },
            space_id: id,
            space_flags: None,
        };
        let Some(&first) = header.pages.first() else {
            match (header.last, complete, prefix.len() == p) {
                (true, true, true) => {
                    let format = Format::Classic { zip_size: None, page_compressed: false, mysql_encrypted: false };
                    return Inference::Found { meta: meta(false, None), format };
                }
                (true, false, true) => return Inference::NeedMore,
                _ => continue,
            }
        };
        if prefix.len() < 2 * p {
            if complete {
                continue;
            }
            return Inference::NeedMore;
        }
        let page = &prefix[p..2 * p];
        let id = be32(page, fil::SPACE_ID);
        for format in formats_for(size) {
            let zip = matches!(format, Format::Classic { zip_size: Some(_), .. });
            let mut space = DeltaJudge::new(&meta(zip, Some(id)), Policy::Auto).space;
            space.format = format;
            if fits(&check_page(&space, u64::from(first), page, Policy::Auto, &mut scratch), page, first) {
                return Inference::Found { meta: meta(zip, Some(id)), format };
            }
        }
    }
    Inference::Failed(
        "no page size (1K to 64K) fits the delta: its first page is valid under none, or its block header is damaged"
            .into(),
    )
}

/// Where a delta report's `.meta` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSource {
    /// The `.meta` was read before the delta.
    Given,
    /// Inferred from the delta itself ([`infer`]); a `.meta` that comes later is checked against
    /// it ([`cross_check`]).
    Inferred(DeltaMeta),
}

enum State {
    /// Collecting the first bytes to infer the page size from.
    Inferring(Vec<u8>),
    Parsing {
        parser: DeltaParser,
        judge: Box<DeltaJudge>,
    },
    /// The structure broke (reported): nothing more is read.
    Stopped,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Inferring(_) => "Inferring",
            State::Parsing { .. } => "Parsing",
            State::Stopped => "Stopped",
        })
    }
}

/// Validates a delta whose bytes arrive in order (a file inside an image), like
/// [`crate::PageStream`] does a tablespace. Offsets may jump ahead (holes, read as zeros).
#[derive(Debug)]
pub struct DeltaStream {
    report: FileReport,
    policy: Policy,
    state: State,
    pos: u64,
    source: MetaSource,
}

impl DeltaStream {
    /// `meta`: the delta's `.meta`, if it came first; without it the page size is inferred.
    pub fn new(display: String, policy: Policy, meta: Option<&DeltaMeta>) -> Self {
        let report = FileReport {
            table: table_name(display.strip_suffix(".delta").unwrap_or(&display)),
            path: display,
            status: Status::Ok,
            format: None,
            bytes: 0,
            tally: Tally::default(),
            note: None,
        };
        let (state, source) = match meta {
            Some(m) => (
                State::Parsing {
                    parser: DeltaParser::new(m.physical_size()),
                    judge: Box::new(DeltaJudge::new(m, policy)),
                },
                MetaSource::Given,
            ),
            None => (
                State::Inferring(Vec::new()),
                MetaSource::Inferred(DeltaMeta { page_size: 0, zip_size: 0, space_id: None, space_flags: None }),
            ),
        };
        Self { report, policy, state, pos: 0, source }
    }

    /// Pages read so far.
    pub fn pages(&self) -> u64 {
        self.report.tally.pages
    }

    /// A finding that is not about the delta's bytes (its `.meta` is unreadable, ...).
    pub fn add_problem(&mut self, reason: String) {
        self.report.tally.add_corrupt(0, 0, reason);
    }

    /// Feeds the bytes at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) {
        if offset > self.pos {
            self.zeros(offset - self.pos);
        }
        self.pos += data.len() as u64;
        self.feed(data);
    }

    fn zeros(&mut self, n: u64) {
        self.pos = self.pos.saturating_add(n);
        self.feed_zeros(n);
    }

    fn feed_zeros(&mut self, n: u64) {
        match &mut self.state {
            State::Parsing { parser, judge } => {
                let tally = &mut self.report.tally;
                if let Err(e) = parser.zeros(n, &mut |p: DeltaPage<'_>| record(tally, judge, p)) {
                    self.stop(e);
                }
            }
            State::Inferring(prefix) => {
                // Zeros break a block header: the first ones are enough to tell.
                let k = (INFER_MAX - prefix.len()).min(n.min(INFER_MAX as u64) as usize);
                prefix.resize(prefix.len() + k, 0);
                self.try_infer(false);
                // A full prefix always concludes: the rest goes to the parser, if any.
                if n > k as u64 && !matches!(self.state, State::Inferring(_)) {
                    self.feed_zeros(n - k as u64);
                }
            }
            State::Stopped => {}
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Parsing { parser, judge } => {
                let tally = &mut self.report.tally;
                let result = parser.feed(data, &mut |p: DeltaPage<'_>| record(tally, judge, p));
                if let Err(e) = result {
                    self.stop(e);
                }
            }
            State::Inferring(prefix) => {
                let k = (INFER_MAX - prefix.len()).min(data.len());
                prefix.extend_from_slice(&data[..k]);
                let rest = &data[k..];
                self.try_infer(false);
                if !rest.is_empty() {
                    self.feed(rest);
                }
            }
            State::Stopped => {}
        }
    }

    fn try_infer(&mut self, complete: bool) {
        let State::Inferring(prefix) = &mut self.state else { return };
        match infer(prefix, complete) {
            Inference::NeedMore => {}
            Inference::Failed(why) => {
                self.report.tally.add_corrupt(0, 0, format!("{why} (no .meta came before it)"));
                self.state = State::Stopped;
            }
            Inference::Found { meta, format } => {
                let prefix = std::mem::take(prefix);
                self.source = MetaSource::Inferred(meta);
                self.state = State::Parsing {
                    parser: DeltaParser::new(meta.physical_size()),
                    judge: Box::new(DeltaJudge::with_format(&meta, format, self.policy)),
                };
                self.feed(&prefix);
            }
        }
    }

    fn stop(&mut self, e: DeltaError) {
        self.report.tally.add_corrupt(e.page().map_or(0, u64::from), e.offset(), e.to_string());
        self.state = State::Stopped;
    }

    /// Ends the delta, `size` bytes long (the rest after the last data is a hole). Returns its
    /// report and where its page size came from.
    pub fn finish(mut self, size: u64) -> (FileReport, MetaSource) {
        if size > self.pos {
            self.zeros(size - self.pos);
        }
        self.try_infer(true);
        self.report.bytes = size;
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Parsing { parser, judge } => {
                self.report.format = Some(format!("incremental delta, {}", judge.describe()));
                match parser.finish() {
                    Ok(s) if s.pages == 0 => {
                        self.report.note = Some("no page changed since the base backup".into());
                    }
                    Ok(_) => {}
                    Err(e) => self.stop(e),
                }
            }
            State::Inferring(_) | State::Stopped => {}
        }
        (self.report.conclude(), self.source)
    }
}

/// Judges one page into `tally`.
fn record(tally: &mut Tally, judge: &mut DeltaJudge, p: DeltaPage<'_>) {
    match judge.judge(p.page_no, p.bytes) {
        Ok(verdict) => tally.add(u64::from(p.page_no), p.offset, verdict),
        Err(why) => tally.add_corrupt(u64::from(p.page_no), p.offset, why),
    }
}

/// Checks a `.meta` that came after its delta against what the delta showed: a finding added to
/// the delta's report if they disagree (the engines would apply the delta with the `.meta`'s
/// page size).
pub fn cross_check(report: &mut FileReport, inferred: &DeltaMeta, meta: &DeltaMeta) {
    let mut problems = Vec::new();
    if inferred.page_size != 0 && inferred.physical_size() != meta.physical_size() {
        problems.push(format!(
            "its .meta says {}-byte pages, but the delta's pages are {} bytes",
            meta.physical_size(),
            inferred.physical_size()
        ));
    }
    if let (Some(a), Some(b)) = (inferred.space_id, meta.space_id) {
        if a != b && inferred.page_size != 0 {
            problems.push(format!("its .meta says space id {b}, but the delta's first page is of space {a}"));
        }
    }
    if problems.is_empty() {
        return;
    }
    let mut r = report.clone();
    for p in problems {
        r.tally.add_corrupt(0, 0, p);
    }
    *report = r.conclude();
}

/// The layout of a delta on disk: its blocks, read from their headers.
#[derive(Debug)]
struct Block {
    /// Offset of the header.
    start: u64,
    last: bool,
    pages: Vec<u32>,
}

/// Checks the pages of a delta file chunk by chunk, on any thread and in any order (a backup
/// reading the file). Its block headers are read up front, one read per block (4 bytes of
/// memory per page of the delta). Chunks should start and end on page boundaries.
#[derive(Debug)]
pub struct DeltaChecker {
    size: u64,
    len: u64,
    blocks: Vec<Block>,
    /// The structural problem that ended the scan, if any.
    problem: Option<DeltaError>,
    space: Space,
    policy: Policy,
    format: String,
}

/// Reads up to `buf.len()` bytes at `at`, as many as there are.
fn read_full(
    read_at: &dyn Fn(u64, &mut [u8]) -> std::io::Result<usize>,
    at: u64,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read_at(at + n as u64, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl DeltaChecker {
    /// Reads the layout of the delta of `len` bytes that `read_at` reads (like
    /// `FileExt::read_at`), and decides its space from `meta` (else inferred), page 0, TRX_SYS
    /// and the first pages. `Err`: the delta cannot be read at all (reported once).
    pub fn open(
        read_at: &dyn Fn(u64, &mut [u8]) -> std::io::Result<usize>,
        len: u64,
        meta: Option<&DeltaMeta>,
        policy: Policy,
    ) -> Result<Self, String> {
        let io = |e: std::io::Error| format!("cannot read the delta: {e}");
        let (meta, judge) = match meta {
            Some(m) => (*m, DeltaJudge::new(m, policy)),
            None => {
                let mut prefix = vec![0u8; (len.min(INFER_MAX as u64)) as usize];
                let n = read_full(read_at, 0, &mut prefix).map_err(io)?;
                prefix.truncate(n);
                match infer(&prefix, n as u64 == len) {
                    Inference::Found { meta, format } => (meta, DeltaJudge::with_format(&meta, format, policy)),
                    Inference::Failed(why) => return Err(format!("{why} (no .meta beside it)")),
                    Inference::NeedMore => return Err("the delta changed while it was read".into()),
                }
            }
        };
        let size = u64::from(meta.physical_size());
        let mut blocks = Vec::new();
        let mut problem = None;
        let mut header = vec![0u8; size as usize];
        let mut pos = 0u64;
        loop {
            if pos >= len {
                problem = match blocks.last() {
                    None => Some(DeltaError::Empty),
                    Some(Block { last: false, .. }) => Some(DeltaError::NoLastBlock { offset: pos }),
                    Some(_) => None,
                };
                break;
            }
            let n = read_full(read_at, pos, &mut header).map_err(io)?;
            if (n as u64) < size {
                problem = Some(DeltaError::Truncated { offset: pos, need: size, have: n as u64, page: None });
                break;
            }
            let h = match parse_header(&header, pos) {
                Ok(h) => h,
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            let need = (1 + h.pages.len() as u64) * size;
            let end = pos + need;
            if end > len {
                let have = len - pos;
                let page = h.pages.get((have / size).saturating_sub(1) as usize).copied();
                problem = Some(DeltaError::Truncated { offset: pos, need, have, page });
                blocks.push(Block { start: pos, last: h.last, pages: h.pages });
                break;
            }
            let last = h.last;
            blocks.push(Block { start: pos, last, pages: h.pages });
            pos = end;
            if last {
                if pos < len {
                    problem = Some(DeltaError::Trailing { offset: pos, bytes: len - pos });
                }
                break;
            }
        }
        let mut checker =
            Self { size, len, blocks, problem, space: judge.space.clone(), policy, format: String::new() };
        checker.space = checker.settle(read_at, judge).map_err(io)?;
        Ok(checker)
    }

    /// [`Self::open`] on a file.
    pub fn open_file(file: &std::fs::File, meta: Option<&DeltaMeta>, policy: Policy) -> Result<Self, String> {
        use std::os::unix::fs::FileExt;
        let len = file.metadata().map_err(|e| format!("cannot read the delta: {e}"))?.len();
        Self::open(&|at, buf| file.read_at(buf, at), len, meta, policy)
    }

    /// Decides the space: page 0 and TRX_SYS if the delta holds them, then the first pages until
    /// one tells the checksum format.
    fn settle(
        &mut self,
        read_at: &dyn Fn(u64, &mut [u8]) -> std::io::Result<usize>,
        mut judge: DeltaJudge,
    ) -> std::io::Result<Space> {
        let mut page = vec![0u8; self.size as usize];
        let mut sample = None;
        let wanted: Vec<(u32, u64)> = {
            let all = self.pages().filter(|&(_, at)| at + self.size <= self.len);
            let mut v: Vec<(u32, u64)> = all.clone().filter(|&(no, _)| no == 0 || no == 5).take(2).collect();
            v.extend(all.take(PROBE_PAGES));
            v
        };
        for (no, at) in wanted {
            if judge.decided && no != 5 {
                continue;
            }
            if read_full(read_at, at, &mut page)? < page.len() {
                break;
            }
            let _ = judge.judge(no, &page);
            sample.get_or_insert_with(|| page.clone());
        }
        self.format = format!("incremental delta, {}", judge.describe());
        Ok(judge.freeze(sample.as_deref()))
    }

    /// Every (page number, offset) the blocks list.
    fn pages(&self) -> impl Iterator<Item = (u32, u64)> + Clone + '_ {
        self.blocks.iter().flat_map(move |b| {
            b.pages.iter().enumerate().map(move |(i, &no)| (no, b.start + (1 + i as u64) * self.size))
        })
    }

    /// The page size chunks should be multiples of.
    pub fn page_size(&self) -> u64 {
        self.size
    }

    /// "incremental delta, MariaDB full_crc32, 16K", ...
    pub fn describe(&self) -> &str {
        &self.format
    }

    /// Checks the whole pages of the range `[start, end)` of the delta, whose data `data` fills
    /// `segments` (the rest of the range is holes). `last`: the range ends the file. Block
    /// headers are checked against those read up front; a structural problem is reported with
    /// the chunk it lies in.
    pub fn check(&self, start: u64, end: u64, segments: &[(u64, u32)], data: &[u8], last: bool) -> ChunkResult {
        let size = self.size;
        let mut result = ChunkResult::default();
        let mut scratch = Scratch::default();
        let mut page = vec![0u8; size as usize];
        if let Some(p) = &self.problem {
            let at = p.offset();
            if (start <= at && at < end) || (last && at >= end) {
                result.pages += 1;
                let page = p.page().map_or(0, u64::from);
                result.corrupt.push(CorruptPage { page, offset: at, reason: p.to_string() });
            }
        }
        let mut lo = start.div_ceil(size).saturating_mul(size);
        while lo.saturating_add(size) <= end && lo < self.len {
            // The block holding `lo`: the last that starts at or before it.
            let b = self.blocks.partition_point(|b| b.start <= lo);
            let Some(block) = b.checked_sub(1).map(|b| &self.blocks[b]) else { break };
            let index = (lo - block.start) / size;
            if index > block.pages.len() as u64 {
                // After the last block (trailing bytes), or after a broken header.
                break;
            }
            fill(&mut page, lo, segments, data);
            if index == 0 {
                let same = parse_header(&page, lo).is_ok_and(|h| h.last == block.last && h.pages == block.pages);
                if !same {
                    result.pages += 1;
                    result.corrupt.push(CorruptPage {
                        page: 0,
                        offset: lo,
                        reason: "the block header changed while the delta was read".into(),
                    });
                }
            } else {
                let no = block.pages[(index - 1) as usize];
                result.pages += 1;
                let verdict = check_page(&self.space, u64::from(no), &page, self.policy, &mut scratch);
                if let Verdict::Corrupt(problems) = verdict {
                    let reason = problems.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ");
                    result.corrupt.push(CorruptPage { page: u64::from(no), offset: lo, reason });
                }
            }
            lo += size;
        }
        result
    }
}

/// Fills `page` (at `lo` in the file) from the segments that overlap it; the rest are holes.
fn fill(page: &mut [u8], lo: u64, segments: &[(u64, u32)], data: &[u8]) {
    page.fill(0);
    let hi = lo + page.len() as u64;
    let mut at = 0usize;
    for &(off, len) in segments {
        let seg_end = off + u64::from(len);
        if off < hi && lo < seg_end {
            let from = off.max(lo);
            let to = seg_end.min(hi);
            let src = at + (from - off) as usize;
            if let Some(bytes) = data.get(src..src + (to - from) as usize) {
                page[(from - lo) as usize..(to - lo) as usize].copy_from_slice(bytes);
            }
        }
        at += len as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: usize, last: bool, pages: &[u32]) -> Vec<u8> {
        let mut h = vec![0u8; size];
        h[..4].copy_from_slice(if last { &MAGIC_LAST } else { &MAGIC });
        for (i, p) in pages.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&p.to_be_bytes());
        }
        if pages.len() < size / 4 - 1 {
            h[4 + 4 * pages.len()..8 + 4 * pages.len()].copy_from_slice(&TERMINATOR.to_be_bytes());
        }
        h
    }

    #[test]
    fn meta_of_mariadb_and_percona() {
        let m = DeltaMeta::parse(b"page_size = 16384\nzip_size = 0 \nspace_id = 5\n").unwrap();
        assert_eq!(m, DeltaMeta { page_size: 16384, zip_size: 0, space_id: Some(5), space_flags: None });
        let m = DeltaMeta::parse(b"page_size = 4096\nzip_size = 4096 \nspace_id = 6\n").unwrap();
        assert_eq!((m.physical_size(), m.logical_size()), (4096, 16384));
        let m = DeltaMeta::parse(b"page_size = 16384\nzip_size = 8192\nspace_id = 9\nspace_flags = 41\n").unwrap();
        assert_eq!((m.physical_size(), m.logical_size(), m.space_flags), (8192, 16384, Some(0x29)));
        // XtraBackup 2.0.1 and older: no space id; CRLF and unknown keys are fine.
        let m = DeltaMeta::parse(b"page_size = 8192\r\nfuture = x\r\n").unwrap();
        assert_eq!((m.page_size, m.zip_size, m.space_id), (8192, 0, None));
    }

    #[test]
    fn bad_metas_are_refused() {
        let err = |t: &[u8]| DeltaMeta::parse(t).unwrap_err();
        assert_eq!(err(b"zip_size = 0\n"), MetaError::NoPageSize);
        assert_eq!(err(b"page_size = 16000\n"), MetaError::PageSize(16000));
        assert_eq!(err(b"page_size = 1024\n"), MetaError::PageSize(1024));
        assert_eq!(err(b"page_size = 16384\nzip_size = 3000\n"), MetaError::ZipSize(3000));
        assert_eq!(err(b"page_size = 65536\nzip_size = 8192\n"), MetaError::Sizes { page_size: 65536, zip_size: 8192 });
        assert_eq!(err(b"page_size = 16384\npage_size = 16384\n"), MetaError::Duplicate("page_size"));
        assert!(matches!(err(b"page_size = -1\n"), MetaError::Line { line: 1, .. }));
        assert!(matches!(err(b"page_size = 99999999999999999999999\n"), MetaError::Line { .. }));
        assert!(matches!(err(b"page_size 16384\n"), MetaError::Line { .. }));
        assert!(matches!(err(b"page_size = 16384\nspace_id = 4294967296\n"), MetaError::Line { .. }));
        assert_eq!(err(&vec![b' '; META_MAX + 1]), MetaError::TooLong);
        // Flags that say 8K pages beside a 16K page size; flags that are no flag word.
        assert!(matches!(err(b"page_size = 16384\nspace_flags = 41\n"), MetaError::Flags { .. }));
        assert!(matches!(err(b"page_size = 16384\nspace_flags = 4294967295\n"), MetaError::Flags { .. }));
    }

    #[test]
    fn names() {
        assert_eq!(delta_of("db/t.ibd.delta"), Some("db/t.ibd"));
        assert_eq!(delta_of("ibdata1.delta"), Some("ibdata1"));
        assert_eq!(delta_of("undo001.delta"), Some("undo001"));
        assert_eq!(delta_of("db/t.frm.delta"), None);
        assert_eq!(delta_of("db/t.ibd"), None);
        assert_eq!(meta_of("db/t.ibd.meta"), Some("db/t.ibd"));
        assert_eq!(meta_of("x.coffer.meta"), None);
    }

    #[test]
    fn headers() {
        let h = header(1024, true, &[3, 9]);
        assert_eq!(parse_header(&h, 0).unwrap(), BlockHeader { last: true, pages: vec![3, 9] });
        let full: Vec<u32> = (0..255).collect();
        assert_eq!(parse_header(&header(1024, false, &full), 0).unwrap().pages.len(), 255);
        assert_eq!(
            parse_header(&header(1024, false, &[1]), 2048).unwrap_err(),
            DeltaError::ShortBlock { offset: 2048, pages: 1, full: 255 }
        );
        let mut bad = header(1024, true, &[]);
        bad[0] = b'y';
        assert!(matches!(parse_header(&bad, 0), Err(DeltaError::Magic { offset: 0, .. })));
    }

    /// Pages of a delta, fed in pieces of every size: the same pages, the same verdict on the
    /// structure.
    #[test]
    fn parser_yields_the_same_pages_however_the_bytes_arrive() {
        let full: Vec<u32> = (100..355).collect();
        let mut delta = header(1024, false, &full);
        for &p in &full {
            delta.extend(std::iter::repeat_n((p % 251) as u8, 1024));
        }
        delta.extend(header(1024, true, &[7, 8]));
        delta.extend([7u8; 1024]);
        delta.extend([8u8; 1024]);
        for piece in [1, 3, 1000, 1024, 4096, delta.len()] {
            let mut parser = DeltaParser::new(1024);
            let mut seen = Vec::new();
            for c in delta.chunks(piece) {
                parser
                    .feed(c, &mut |p| {
                        assert!(p.bytes.iter().all(|&b| b == p.bytes[0]));
                        seen.push((p.page_no, p.offset, p.bytes[0]));
                    })
                    .unwrap();
            }
            assert_eq!(parser.finish().unwrap(), DeltaSummary { blocks: 2, pages: 257 });
            assert_eq!(seen.len(), 257);
            assert_eq!(seen[0], (100, 1024, 100));
            assert_eq!(seen[256], (8, 256 * 1024 + 2 * 1024, 8));
        }
    }

    #[test]
    fn structural_errors() {
        let finish = |bytes: &[u8]| {
            let mut p = DeltaParser::new(1024);
            p.feed(bytes, &mut |_| {}).and_then(|()| p.finish())
        };
        assert_eq!(finish(b""), Err(DeltaError::Empty));
        let mut d = header(1024, true, &[1, 2]);
        d.extend([0u8; 1024 + 100]);
        assert_eq!(finish(&d), Err(DeltaError::Truncated { offset: 0, need: 3072, have: 2148, page: Some(2) }));
        assert_eq!(finish(&d[..500]), Err(DeltaError::Truncated { offset: 0, need: 1024, have: 500, page: None }));
        let full: Vec<u32> = (0..255).collect();
        let mut d = header(1024, false, &full);
        d.extend(vec![0u8; 255 * 1024]);
        assert_eq!(finish(&d), Err(DeltaError::NoLastBlock { offset: 256 * 1024 }));
        d.extend(header(1024, true, &[]));
        assert_eq!(finish(&d), Ok(DeltaSummary { blocks: 2, pages: 255 }));
        d.extend(b"junk");
        assert_eq!(finish(&d), Err(DeltaError::Trailing { offset: 257 * 1024, bytes: 4 }));
        // A hole of any size is bounded work.
        let mut p = DeltaParser::new(1024);
        p.feed(&header(1024, true, &[]), &mut |_| {}).unwrap();
        p.zeros(1 << 62, &mut |_| {}).unwrap();
        assert_eq!(p.finish(), Err(DeltaError::Trailing { offset: 1024, bytes: 1 << 62 }));
        let mut p = DeltaParser::new(65536);
        assert!(matches!(p.zeros(1 << 62, &mut |_| {}), Err(DeltaError::Magic { .. })));
        // Zeros inside a block are pages (all zero), up to the next header.
        let mut p = DeltaParser::new(1024);
        p.feed(&header(1024, false, &(0..255).collect::<Vec<u32>>()), &mut |_| {}).unwrap();
        let mut zero_pages = 0;
        let hole = p.zeros(1 << 62, &mut |page| {
            assert!(page.bytes.iter().all(|&b| b == 0));
            zero_pages += 1;
        });
        assert_eq!((hole, zero_pages), (Err(DeltaError::Magic { offset: 256 * 1024, found: [0; 4] }), 255));
    }
}
