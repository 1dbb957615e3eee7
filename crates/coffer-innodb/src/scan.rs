//! Validating whole files: in parallel from disk (across files and within each, in page
//! ranges), or as a stream of bytes in order (stdin, or a file inside an image).

use crate::page::{all_zero, check_page, Policy, Scratch};
use crate::report::{table_name, FileReport, Status, Tally};
use crate::space::{fil, Space, SpaceError};
use coffer_fs::read::{AlignedBuf, RangeReader};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a file is, judged by its name (as the servers name their files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A tablespace: file-per-table `.ibd`, undo tablespace, `mysql.ibd`, general tablespace.
    Tablespace,
    /// Part `n` (1, 2, ...) of the system tablespace (`ibdata1`, `ibdata2`, ...).
    System(u32),
    /// Not validated, and why.
    Other(&'static str),
}

/// Classifies a file by its name.
pub fn classify(name: &str) -> Kind {
    let base = name.rsplit('/').next().unwrap_or(name);
    if let Some(n) = base.strip_prefix("ibdata").and_then(|n| n.parse::<u32>().ok()) {
        return Kind::System(n);
    }
    if base.ends_with(".ibd") || is_undo(base) {
        return Kind::Tablespace;
    }
    if base == "ibtmp1" || base.ends_with(".ibt") {
        return Kind::Other("temporary tablespace: recreated at every start, never read back");
    }
    if base.starts_with("ib_logfile") || base.starts_with("#ib_redo") || name.contains("#innodb_redo/") {
        return Kind::Other("redo log");
    }
    if base.ends_with(".dblwr") {
        return Kind::Other("doublewrite file");
    }
    Kind::Other("not an InnoDB tablespace")
}

/// MariaDB `undo001`, MySQL `undo_001`, and MySQL 8's explicit `*.ibu`.
fn is_undo(base: &str) -> bool {
    let digits = base.strip_prefix("undo_").or_else(|| base.strip_prefix("undo"));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) || base.ends_with(".ibu")
}

/// One file to validate.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    /// The name to report (as given, or relative to a directory).
    pub display: String,
    /// Validate whatever the name says (explicit `--innodb` files).
    pub force_innodb: bool,
    /// The (device, inode) a directory walk found at `path`: the file validated must be that
    /// one, opened without following a symlink, not one swapped in since.
    pub walked: Option<(u64, u64)>,
}

/// Opens a target: a walked file without following a final symlink, and only if it is still
/// the file the walk found.
fn open_target(t: &Target) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Some(id) = t.walked else { return File::open(&t.path) };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(&t.path)?;
    let md = file.metadata()?;
    if (md.dev(), md.ino()) != id {
        return Err(std::io::Error::other("replaced while it was validated"));
    }
    Ok(file)
}

/// `O_NOFOLLOW | O_NONBLOCK` (a FIFO swapped in does not block the open).
fn libc_nofollow() -> i32 {
    libc::O_NOFOLLOW | libc::O_NONBLOCK
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub policy: Policy,
    pub threads: usize,
}

/// Pages per read: 4 MiB.
const RANGE_BYTES: u64 = 4 << 20;

struct Prepared {
    reader: RangeReader,
    space: Space,
    /// Pages in this file.
    pages: u64,
    /// Bytes after the last whole page.
    tail: u64,
}

enum Slot {
    Done(FileReport),
    Pending { report: FileReport, prepared: Prepared },
}

fn page0_report(display: String, bytes: u64, reason: String) -> FileReport {
    let mut tally = Tally::default();
    tally.add_corrupt(0, 0, reason);
    FileReport { path: display, status: Status::Corrupt, table: None, format: None, bytes, tally, note: None }
        .conclude()
}

/// The space of `ibdata{n}` (n > 1), which has no FSP header of its own: ibdata1's, with the
/// page numbering continuing after ibdata1..ibdata{n-1} (found beside it).
pub fn continuation_space(path: &std::path::Path, n: u32) -> Result<Space, String> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    use std::os::unix::fs::OpenOptionsExt;
    let first = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nofollow())
        .open(dir.join("ibdata1"))
        .map_err(|e| format!("ibdata{n} needs ibdata1 beside it: {e}"))?;
    let mut space = read_space(&first).map_err(|e| format!("ibdata1: {e}"))?;
    let mut pages = 0;
    for k in 1..n {
        let len =
            std::fs::symlink_metadata(dir.join(format!("ibdata{k}"))).map_err(|e| format!("ibdata{k}: {e}"))?.len();
        pages += len / u64::from(space.physical_size);
    }
    space.first_page = pages;
    Ok(space)
}

/// Reads what is needed up front: page 0 (and TRX_SYS for ibdata1).
fn prepare(t: &Target) -> Slot {
    let kind = if t.force_innodb { Kind::Tablespace } else { classify(&t.display) };
    let kind = match (kind, t.force_innodb) {
        (Kind::System(n), _) => Kind::System(n),
        (Kind::Other(why), false) => {
            let bytes = std::fs::symlink_metadata(&t.path).map(|m| m.len()).unwrap_or(0);
            return Slot::Done(FileReport::not_checked(t.display.clone(), bytes, why));
        }
        _ => Kind::Tablespace,
    };
    let open = open_target(t).and_then(|f| f.metadata().map(|m| (f, m.len())));
    let (file, bytes) = match open {
        Ok(x) => x,
        Err(e) => return Slot::Done(page0_report(t.display.clone(), 0, format!("cannot read: {e}"))),
    };
    let space = match kind {
        Kind::System(n) if n > 1 => continuation_space(&t.path, n),
        _ => read_space(&file).map_err(|e| format!("page 0: {e}")),
    };
    let mut space = match space {
        Ok(s) => s,
        Err(why) => return Slot::Done(page0_report(t.display.clone(), bytes, why)),
    };
    let size = u64::from(space.physical_size);
    // The first file of the system tablespace, by its name or (validate --innodb) its space id.
    if kind == Kind::System(1) || (space.space_id == 0 && !matches!(kind, Kind::System(_))) {
        let mut page5 = vec![0u8; size as usize];
        if file.read_exact_at(&mut page5, 5 * size).is_ok() {
            space.note_trx_sys(&page5);
        }
    }
    let pages = bytes / size;
    let report = FileReport {
        path: t.display.clone(),
        status: Status::Ok,
        table: table_name(&t.display),
        format: Some(space.describe()),
        bytes,
        tally: Tally::default(),
        note: None,
    };
    let reader = RangeReader::new(file, &t.path);
    Slot::Pending { report, prepared: Prepared { reader, space, pages, tail: bytes % size } }
}

fn read_space(file: &File) -> Result<Space, SpaceError> {
    let mut head = vec![0u8; 64 * 1024];
    let n = read_up_to(file, &mut head, 0).map_err(|_| SpaceError::Short)?;
    Space::from_page0(&head[..n])
}

fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Validates files in parallel: every thread takes the next 4 MiB page range of any file.
/// `progress` is called with bytes as ranges complete. Reports come back in the given order.
pub fn validate_files(targets: &[Target], opts: Options, progress: &(dyn Fn(u64) + Sync)) -> Vec<FileReport> {
    let slots: Vec<Slot> = targets.iter().map(prepare).collect();
    // (slot, first page index in the file, page count)
    let mut jobs = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        if let Slot::Pending { prepared, .. } = slot {
            let per = (RANGE_BYTES / u64::from(prepared.space.physical_size)).max(1);
            let mut start = 0;
            while start < prepared.pages {
                let count = per.min(prepared.pages - start);
                jobs.push((i, start, count));
                start += count;
            }
        }
    }
    let next = AtomicUsize::new(0);
    let tallies: Mutex<Vec<Tally>> = Mutex::new(vec![Tally::default(); slots.len()]);
    let errors: Mutex<Vec<(usize, u64, String)>> = Mutex::new(Vec::new());
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.max(1) {
            scope.spawn(|| {
                let mut buf = AlignedBuf::default();
                let mut scratch = Scratch::default();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(slot, start, count)) = jobs.get(j) else { break };
                    let Slot::Pending { prepared: p, .. } = &slots[slot] else { unreachable!() };
                    let size = u64::from(p.space.physical_size);
                    let len = (count * size) as usize;
                    let data = match p.reader.read(&mut buf, start * size, len) {
                        Ok(d) if d.len() == len => d,
                        other => {
                            let why = match other {
                                Ok(_) => "the file shrank while it was read".to_string(),
                                Err(e) => format!("cannot read pages {start}..{}: {e}", start + count),
                            };
                            errors.lock().expect("lock").push((slot, start, why));
                            continue;
                        }
                    };
                    let mut tally = Tally::default();
                    for (k, page) in data.chunks_exact(size as usize).enumerate() {
                        let index = start + k as u64;
                        let verdict = check_page(&p.space, p.space.first_page + index, page, opts.policy, &mut scratch);
                        tally.add(p.space.first_page + index, index * size, verdict);
                    }
                    progress(count * size);
                    done.fetch_add(count * size, Ordering::Relaxed);
                    tallies.lock().expect("lock")[slot].merge(tally);
                }
            });
        }
    });
    let mut tallies = tallies.into_inner().expect("lock");
    for (slot, start, why) in errors.into_inner().expect("lock") {
        let size = match &slots[slot] {
            Slot::Pending { prepared, .. } => u64::from(prepared.space.physical_size),
            Slot::Done(_) => 0,
        };
        tallies[slot].add_corrupt(start, start * size, why);
    }
    slots
        .into_iter()
        .zip(tallies)
        .map(|(slot, tally)| match slot {
            Slot::Done(r) => r,
            Slot::Pending { mut report, prepared } => {
                report.tally = tally;
                finish_file(&mut report, &prepared.space, prepared.pages, prepared.tail);
                report.conclude()
            }
        })
        .collect()
}

/// Whole-file checks once every page is seen: a last partial page, and fewer pages than the
/// header says the space has (a truncated copy).
fn finish_file(report: &mut FileReport, space: &Space, pages: u64, tail: u64) {
    let size = u64::from(space.physical_size);
    if tail > 0 {
        report.tally.add_corrupt(
            space.first_page + pages,
            pages * size,
            format!("the file ends {tail} bytes into this page: truncated"),
        );
    }
    let header = u64::from(space.size_in_header);
    if space.first_page == 0
        && header > pages
        && !report.path.rsplit('/').next().is_some_and(|b| b.starts_with("ibdata"))
    {
        report.tally.add_corrupt(
            pages,
            pages * size,
            format!("the file has {pages} pages but its header says {header}: {} pages are missing", header - pages),
        );
    }
}

/// Validates a file whose bytes arrive in order (stdin, a file inside an image). Offsets may
/// jump ahead (holes, read as zeros) but never back.
#[derive(Debug)]
pub struct PageStream {
    report: FileReport,
    policy: Policy,
    space: Option<Space>,
    /// A space to use instead of reading page 0 (ibdata2 and later).
    given: Option<Space>,
    buf: Vec<u8>,
    pos: u64,
    page_index: u64,
    scratch: Scratch,
    dead: bool,
}

impl PageStream {
    /// `given`: for a continuation of the system tablespace, ibdata1's space.
    pub fn new(display: String, policy: Policy, given: Option<Space>) -> Self {
        let report = FileReport {
            table: table_name(&display),
            path: display,
            status: Status::Ok,
            format: given.as_ref().map(Space::describe),
            bytes: 0,
            tally: Tally::default(),
            note: None,
        };
        Self {
            report,
            policy,
            space: given.clone(),
            given,
            buf: Vec::new(),
            pos: 0,
            page_index: 0,
            scratch: Scratch::default(),
            dead: false,
        }
    }

    /// The space, once page 0 has been read.
    pub fn space(&self) -> Option<&Space> {
        self.space.as_ref()
    }

    /// Pages seen so far.
    pub fn pages(&self) -> u64 {
        self.page_index
    }

    fn page_size(&mut self) -> Option<usize> {
        if let Some(s) = &self.space {
            return Some(s.physical_size as usize);
        }
        if self.buf.len() < fil::FSP_FLAGS + 4 {
            return None;
        }
        match Space::physical_size_from_prefix(&self.buf) {
            Ok(size) => Some(size as usize),
            Err(e) => {
                self.fail_page0(e.to_string());
                None
            }
        }
    }

    fn fail_page0(&mut self, why: String) {
        self.report.tally.add_corrupt(0, 0, format!("page 0: {why}"));
        self.dead = true;
    }

    /// Feeds the bytes at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) {
        if offset > self.pos {
            self.zeros(offset - self.pos);
        }
        self.feed(data);
    }

    fn zeros(&mut self, mut n: u64) {
        static ZERO: [u8; 65536] = [0; 65536];
        while n > 0 {
            if self.dead {
                // Nothing more is checked: only the position moves.
                self.pos = self.pos.saturating_add(n);
                return;
            }
            let size = self.space.as_ref().map(|s| u64::from(s.physical_size));
            if let (Some(size), true) = (size, self.buf.is_empty()) {
                // Whole empty pages of a hole are counted, not built nor walked one by one
                // (an image may declare a hole of 2^62 bytes).
                let whole = n / size;
                self.count_empty_hole_pages(whole, size);
                n -= whole * size;
                if n == 0 {
                    return;
                }
            }
            // Up to the next page boundary (or, before page 0 is known, a block of zeros).
            let room = size.map_or(ZERO.len() as u64, |size| size - self.buf.len() as u64 % size);
            let k = n.min(room).min(ZERO.len() as u64) as usize;
            self.feed(&ZERO[..k]);
            n -= k as u64;
        }
    }

    /// Counts `count` all-zero pages from the current one: empty, or skipped in the doublewrite
    /// buffer (those few are judged one by one).
    fn count_empty_hole_pages(&mut self, count: u64, size: u64) {
        let space = self.space.as_ref().expect("known");
        let first = space.first_page + self.page_index;
        let end = first.saturating_add(count);
        let doublewrite: u64 =
            space.doublewrite.iter().map(|r| r.end.min(end).saturating_sub(r.start.max(first))).sum();
        self.report.tally.pages += count - doublewrite;
        self.report.tally.empty += count - doublewrite;
        if doublewrite > 0 {
            *self.report.tally.skipped.entry("doublewrite buffer").or_default() += doublewrite;
            self.report.tally.pages += doublewrite;
        }
        self.page_index += count;
        self.pos = self.pos.saturating_add(count * size);
    }

    fn feed(&mut self, mut data: &[u8]) {
        self.pos += data.len() as u64;
        while !data.is_empty() && !self.dead {
            let size = match self.page_size() {
                Some(s) => s,
                None if self.dead => return,
                None => {
                    let k = (fil::FSP_FLAGS + 4 - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    continue;
                }
            };
            if self.buf.is_empty() && data.len() >= size && self.space.is_some() {
                // Whole pages in the input are checked where they lie, without a copy.
                let (page, rest) = data.split_at(size);
                self.check(page);
                data = rest;
                continue;
            }
            let k = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.buf.len() == size {
                let page = std::mem::take(&mut self.buf);
                self.check(&page);
                self.buf = page;
                self.buf.clear();
            }
        }
    }

    fn check(&mut self, page: &[u8]) {
        if self.space.is_none() {
            match Space::from_page0(page) {
                Ok(s) => {
                    self.report.format = Some(s.describe());
                    self.space = Some(s);
                }
                Err(e) => {
                    self.fail_page0(e.to_string());
                    return;
                }
            }
        }
        let space = self.space.as_ref().expect("known");
        let size = u64::from(space.physical_size);
        let page_no = space.first_page + self.page_index;
        let verdict = check_page(space, page_no, page, self.policy, &mut self.scratch);
        self.report.tally.add(page_no, self.page_index * size, verdict);
        // Any stream of space 0 (ibdata1 by name, or a tablespace read from stdin).
        if self.given.is_none() && page_no == 5 {
            self.space.as_mut().expect("known").note_trx_sys(page);
        }
        self.page_index += 1;
    }

    /// Ends the file, `size` bytes long (the rest after the last data is a hole).
    pub fn finish(mut self, size: u64) -> FileReport {
        if size > self.pos {
            self.zeros(size - self.pos);
        }
        self.report.bytes = size;
        if let (Some(space), false) = (self.space.clone(), self.dead) {
            let tail = self.buf.len() as u64;
            finish_file(&mut self.report, &space, self.page_index, tail);
        } else if !self.dead && size > 0 {
            self.report.tally.add_corrupt(0, 0, "page 0: the file is shorter than one page".into());
        } else if size == 0 {
            self.report.note = Some("empty file".into());
        }
        self.report.conclude()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(classify("sbtest/sbtest1.ibd"), Kind::Tablespace);
        assert_eq!(classify("ibdata1"), Kind::System(1));
        assert_eq!(classify("ibdata12"), Kind::System(12));
        assert_eq!(classify("undo001"), Kind::Tablespace);
        assert_eq!(classify("undo_002"), Kind::Tablespace);
        assert_eq!(classify("mysql.ibd"), Kind::Tablespace);
        assert!(matches!(classify("ibtmp1"), Kind::Other(_)));
        assert!(matches!(classify("ib_logfile0"), Kind::Other(_)));
        assert!(matches!(classify("db/t.frm"), Kind::Other(_)));
        assert!(matches!(classify("undo"), Kind::Other(_)));
    }
}

/// Checks the pages of one file chunk by chunk, on any thread and in any order (used while a
/// backup reads the file). Chunks should start and end on page boundaries; pages they cut are
/// left unchecked.
#[derive(Debug, Clone)]
pub struct ChunkChecker {
    space: Space,
    policy: Policy,
}

/// What one chunk's pages showed.
#[derive(Debug, Default)]
pub struct ChunkResult {
    pub pages: u64,
    pub corrupt: Vec<crate::report::CorruptPage>,
}

impl ChunkChecker {
    /// Reads page 0 (and the TRX_SYS page of ibdata1, or ibdata1 beside `path` for later ibdata
    /// files) of the tablespace open as `file` (found at `path`), which `name` (its path in the
    /// backup) classifies.
    pub fn open(file: &File, path: &std::path::Path, name: &str, policy: Policy) -> Option<Result<Self, String>> {
        let kind = classify(name);
        let space = match kind {
            Kind::Other(_) => return None,
            Kind::System(n) if n > 1 => continuation_space(path, n),
            _ => Ok(file).and_then(|f| {
                let mut space = read_space(f).map_err(|e| format!("page 0: {e}"))?;
                if kind == Kind::System(1) {
                    let mut page5 = vec![0u8; space.physical_size as usize];
                    if f.read_exact_at(&mut page5, 5 * u64::from(space.physical_size)).is_ok() {
                        space.note_trx_sys(&page5);
                    }
                }
                Ok(space)
            }),
        };
        Some(space.map(|space| Self { space, policy }))
    }

    /// True if any of the `count` pages from `page_no` is in the doublewrite buffer (those are
    /// judged one by one).
    fn in_doublewrite(&self, page_no: u64, count: u64) -> bool {
        let end = page_no.saturating_add(count);
        self.space.doublewrite.iter().any(|r| r.start < end && page_no < r.end)
    }

    /// The page size chunks should be multiples of.
    pub fn page_size(&self) -> u64 {
        u64::from(self.space.physical_size)
    }

    /// Checks the whole pages of the range `[start, end)` of the file, whose data `data` fills
    /// `segments` (the rest of the range is holes). `last`: the range ends the file.
    pub fn check(&self, start: u64, end: u64, segments: &[(u64, u32)], data: &[u8], last: bool) -> ChunkResult {
        let size = self.page_size();
        let mut result = ChunkResult::default();
        let mut scratch = Scratch::default();
        let mut page = vec![0u8; size as usize];
        let first = start.div_ceil(size);
        let mut seg = 0usize;
        let mut seg_data = 0usize;
        let mut p = first;
        loop {
            let (lo, hi) = (p.saturating_mul(size), p.saturating_add(1).saturating_mul(size));
            if hi > end || hi == u64::MAX {
                if last && lo < end {
                    result.pages += 1;
                    result.corrupt.push(crate::report::CorruptPage {
                        page: self.space.first_page + p,
                        offset: lo,
                        reason: format!("the file ends {} bytes into this page: truncated", end - lo),
                    });
                }
                break;
            }
            // Fill the page from the segments that overlap it; the rest are holes.
            page.fill(0);
            while seg < segments.len() && segments[seg].0 + u64::from(segments[seg].1) <= lo {
                seg_data += segments[seg].1 as usize;
                seg += 1;
            }
            let (mut s, mut at) = (seg, seg_data);
            while s < segments.len() && segments[s].0 < hi {
                let (off, len) = (segments[s].0, u64::from(segments[s].1));
                let from = off.max(lo);
                let to = (off + len).min(hi);
                let src = at + (from - off) as usize;
                page[(from - lo) as usize..(to - lo) as usize].copy_from_slice(&data[src..src + (to - from) as usize]);
                at += len as usize;
                s += 1;
            }
            result.pages += 1;
            let page_no = self.space.first_page + p;
            if let crate::page::Verdict::Corrupt(problems) =
                check_page(&self.space, page_no, &page, self.policy, &mut scratch)
            {
                let reason = problems.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ");
                result.corrupt.push(crate::report::CorruptPage { page: page_no, offset: lo, reason });
            }
            p += 1;
            // A hole (no segment before `next`) holds zero pages: the one just checked stands for
            // the rest, counted without a loop (an image may declare holes of 2^62 bytes).
            let next = segments.get(s).map_or(end, |x| x.0.min(end));
            let hole_pages = if page_no > self.space.first_page && s == seg && all_zero(&page) {
                (next / size).saturating_sub(p)
            } else {
                0
            };
            if hole_pages > 0 && !self.in_doublewrite(self.space.first_page + p, hole_pages) {
                result.pages += hole_pages;
                p += hole_pages;
            }
        }
        result
    }
}
