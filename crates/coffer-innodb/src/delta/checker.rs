//! Validating a delta read from a file in chunks, in any order (a backup reading the file).

use super::{infer, parse_header, DeltaError, DeltaJudge, DeltaMeta, Inference, INFER_MAX};
use crate::page::{check_page, Policy, Scratch, Verdict};
use crate::report::CorruptPage;
use crate::scan::ChunkResult;
use crate::space::Space;

/// Pages [`DeltaChecker::open`] reads to tell the checksum format when nothing else does.
const PROBE_PAGES: usize = 8;

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
