//! Judging a delta's pages against the space its `.meta` (or its page 0) describes, and
//! inferring its page size when no `.meta` came first.

use super::{parse_header, DeltaError, DeltaMeta, MAGIC, MAGIC_LAST};
use crate::checksum::be32;
use crate::page::{check_page, Policy, Scratch, Verdict};
use crate::space::{decode_flags, fil, page_type, Format, Space};

/// Every physical page size a delta can have, smallest first.
const ALL_SIZES: [u32; 7] = [1024, 2048, 4096, 8192, 16384, 32768, 65536];

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
    pub(super) space: Space,
    /// The checksum format is known.
    pub(super) decided: bool,
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

    /// Settles the checksum format for good (a [`DeltaChecker`](super::DeltaChecker) judges chunks on any thread),
    /// guessing from `sample` (a page of the delta) if no page decided it.
    pub(super) fn freeze(mut self, sample: Option<&[u8]>) -> Space {
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
    /// More of the delta is needed (at most [`INFER_MAX`](super::INFER_MAX) bytes).
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
