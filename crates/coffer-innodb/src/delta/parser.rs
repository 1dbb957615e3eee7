//! The block structure of a delta: block headers, and a parser that yields its pages as its
//! bytes arrive.

use super::{MAGIC, MAGIC_LAST, TERMINATOR};
use crate::checksum::be32;

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
