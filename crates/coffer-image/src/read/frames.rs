//! The producer: cutting the byte stream into frames and numbering them.

use super::{Decoded, Job, Scope};
use crate::error::ImageError;
use crate::header::OpenedImage;
use crate::BufPool;
use coffer_format::frame::{Position, FRAME_HEADER_LEN};
use coffer_format::{FrameHeader, FrameKind, DATA_OFFSET};
use std::io::Read;

/// Reads as many bytes as there are, up to `buf.len()`.
pub(crate) fn read_full(input: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Numbers frames as the producer cuts them: each frame's sequence number, and the entry and
/// part it belongs to (or, for INDEX and END frames, the count of entries and the index part).
struct Numbering {
    seq: u64,
    entry_no: u64,
    part_no: u64,
    index_parts: u64,
    /// An entry has begun: the next ENTRY or PACK frame is of the next entry.
    started_entries: bool,
}

impl Numbering {
    /// Where the frames of `scope` start: their offset and numbering, and for one entry read
    /// through the index where its frames end.
    fn start(scope: &Scope) -> Result<(u64, Self, Option<u64>), ImageError> {
        let (offset, seq, entry_no, end_offset) = match scope {
            Scope::Whole => (DATA_OFFSET, 0, 0, None),
            Scope::Entry { wanted, entry_no } => {
                let Some((_, record)) = wanted.first() else {
                    return Err(ImageError::Usage("no entry to read".into()));
                };
                (record.frame_offset, record.first_seq, *entry_no, Some(record.frame_offset + record.frames_len))
            }
            // The last entry read is number entries - 1 (a checkpoint follows at least one entry).
            Scope::Resume(p) => (p.at.offset, p.at.seq, p.at.entries.saturating_sub(1), None),
        };
        let started_entries = matches!(scope, Scope::Resume(p) if p.at.entries > 0);
        Ok((offset, Self { seq, entry_no, part_no: 0, index_parts: 0, started_entries }, end_offset))
    }

    /// The position of the next frame as far as it is known before its header is read (for
    /// the message about a frame that cannot be read).
    fn guess(&self) -> Position {
        Position { seq: self.seq, entry_no: self.entry_no, part_no: self.part_no }
    }

    /// The position of the next frame, of `header`'s kind, moving the entry and part numbers on
    /// past it (the sequence number moves on once the frame is read whole).
    fn position(&mut self, header: &FrameHeader) -> Position {
        let seq = self.seq;
        match header.kind {
            FrameKind::Entry => {
                self.next_entry();
                Position { seq, entry_no: self.entry_no, part_no: 0 }
            }
            FrameKind::Chunk => {
                self.part_no += 1;
                Position { seq, entry_no: self.entry_no, part_no: self.part_no }
            }
            // The pack holds entries entry_no.. (the count is in the frame header).
            FrameKind::Pack => {
                self.next_entry();
                let pos = Position { seq, entry_no: self.entry_no, part_no: 0 };
                self.entry_no += u64::from(header.members) - 1;
                pos
            }
            FrameKind::Index | FrameKind::End => {
                let entries = if self.started_entries { self.entry_no + 1 } else { self.entry_no };
                let part = if header.kind == FrameKind::Index { self.index_parts } else { 0 };
                self.index_parts += 1;
                Position { seq, entry_no: entries, part_no: part }
            }
        }
    }

    /// An ENTRY or PACK frame begins the next entry.
    fn next_entry(&mut self) {
        if self.started_entries {
            self.entry_no += 1;
        }
        self.started_entries = true;
        self.part_no = 0;
    }
}

/// Cuts the byte stream into frames and numbers them. Problems found here (short reads, bad
/// frame headers) travel as jobs, so they are reported after everything before them.
pub(crate) fn produce(
    input: &mut (dyn Read + Send),
    feed: &coffer_pipe::Feed<Job>,
    pool: &BufPool,
    image: &OpenedImage,
    scope: &Scope,
) -> Result<(), ImageError> {
    let chunk_size = image.chunk_size();
    let (mut offset, mut numbering, end_offset) = Numbering::start(scope)?;
    loop {
        if end_offset == Some(offset) {
            return Ok(());
        }
        let pos_guess = numbering.guess();
        let mut head = [0u8; FRAME_HEADER_LEN];
        let n = read_full(input, &mut head).map_err(crate::error::io("read", "image"))?;
        if n < FRAME_HEADER_LEN {
            let what = if n == 0 {
                "the image ends without its END frame: it is incomplete"
            } else {
                "the image ends inside a frame header"
            };
            feed.send(Job::bad(offset + n as u64, pos_guess, true, what))?;
            return Ok(());
        }
        let header = match FrameHeader::parse(&head, chunk_size) {
            Ok(h) => h,
            Err(e) => {
                feed.send(Job::bad(offset, pos_guess, false, e.to_string()))?;
                return Ok(());
            }
        };
        if header.kind == FrameKind::Pack && image.header.version < 2 {
            feed.send(Job::bad(offset, pos_guess, false, "a PACK frame in a version 1 image"))?;
            return Ok(());
        }
        let pos = numbering.position(&header);
        let mut buf = pool.get();
        buf[..FRAME_HEADER_LEN].copy_from_slice(&head);
        let body_end = FRAME_HEADER_LEN + header.body_len as usize;
        let got = read_full(input, &mut buf[FRAME_HEADER_LEN..body_end]).map_err(crate::error::io("read", "image"))?;
        if got < header.body_len as usize {
            pool.put(buf);
            feed.send(Job::bad(offset + (FRAME_HEADER_LEN + got) as u64, pos, true, "the image ends inside a frame"))?;
            return Ok(());
        }
        feed.send(Job { offset, header: Some(header), pos, buf, decoded: Decoded::Pending })?;
        offset += body_end as u64;
        numbering.seq += 1;
        if header.kind == FrameKind::End {
            let mut extra = [0u8; 1];
            if read_full(input, &mut extra).map_err(crate::error::io("read", "image"))? > 0 {
                feed.send(Job::bad(offset, pos, false, "unexpected bytes after the END frame"))?;
            }
            return Ok(());
        }
    }
}
