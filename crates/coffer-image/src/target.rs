//! Visitors that put an image's contents somewhere.

use crate::error::{io, ImageError, Location};
use crate::journal::{Checkpoint, Journal};
use crate::read::Visitor;
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::restore::Restorer;
use std::io::Write;

/// Restores entries into a directory through a [`Restorer`], and, with a [`Journal`], records
/// what is durable every so often so that an interrupted restore can be resumed.
#[derive(Debug)]
pub struct RestoreVisitor {
    pub restorer: Restorer,
    journal: Option<(Journal, u64)>,
    since_checkpoint: u64,
    /// A file entry has begun and not yet ended or paused: the restorer takes calls in this
    /// order only (and asserts it), so calls out of order are refused here, whatever their cause.
    open: bool,
}

impl RestoreVisitor {
    pub fn new(restorer: Restorer) -> Self {
        Self { restorer, journal: None, since_checkpoint: 0, open: false }
    }

    /// Flushes what was restored and records a checkpoint after every `every` bytes of data
    /// (0: after every entry).
    pub fn with_journal(mut self, journal: Journal, every: u64) -> Self {
        self.journal = Some((journal, every));
        self
    }

    /// The journal, to be removed once the restore is complete.
    pub fn take_journal(&mut self) -> Option<Journal> {
        self.journal.take().map(|(j, _)| j)
    }
}

/// A call the restorer cannot take now.
fn out_of_order(what: &str) -> ImageError {
    ImageError::Corrupt { at: Location::default(), detail: format!("{what} (entries out of order)") }
}

impl Visitor for RestoreVisitor {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        if self.open {
            return Err(out_of_order("an entry begins while a file is open"));
        }
        self.restorer.begin(meta)?;
        self.open = meta.kind == EntryKind::File;
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        if !self.open {
            return Err(out_of_order("data outside a file"));
        }
        self.since_checkpoint += data.len() as u64;
        Ok(self.restorer.write(offset, data)?)
    }
    fn checkpoint(&mut self, at: &Checkpoint<'_>) -> Result<(), ImageError> {
        if self.open {
            return Err(out_of_order("a checkpoint inside a file"));
        }
        let Some((journal, every)) = self.journal.as_mut() else { return Ok(()) };
        if self.since_checkpoint < *every {
            return Ok(());
        }
        // Durable first, then recorded: the journal never claims more than the disk holds.
        self.restorer.checkpoint()?;
        journal.checkpoint(at)?;
        self.since_checkpoint = 0;
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        if !std::mem::take(&mut self.open) {
            return Err(out_of_order("the end of a file that is not open"));
        }
        Ok(self.restorer.end_file(size)?)
    }
    fn pause_file(&mut self, _end: u64) -> Result<(), ImageError> {
        if !std::mem::take(&mut self.open) {
            return Err(out_of_order("a pause of a file that is not open"));
        }
        Ok(self.restorer.pause_file()?)
    }
}

/// Writes one file's contents to a stream, holes as zeros.
#[derive(Debug)]
pub struct StreamVisitor<W> {
    out: W,
    pos: u64,
    zeros: Vec<u8>,
}

impl<W: Write> StreamVisitor<W> {
    pub fn new(out: W) -> Self {
        Self { out, pos: 0, zeros: vec![0u8; 64 * 1024] }
    }

    fn fill_to(&mut self, offset: u64) -> Result<(), ImageError> {
        while self.pos < offset {
            let n = (offset - self.pos).min(self.zeros.len() as u64) as usize;
            self.out.write_all(&self.zeros[..n]).map_err(io("write", "output"))?;
            self.pos += n as u64;
        }
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Visitor for StreamVisitor<W> {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        if meta.kind != EntryKind::File {
            return Err(ImageError::Usage(format!(
                "{:?} is a {}, not a file: only files can go to stdout",
                String::from_utf8_lossy(&meta.path),
                meta.kind.name()
            )));
        }
        // A continuation carries on where the previous part of the same file stopped.
        if !meta.continues {
            self.pos = 0;
        }
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        self.fill_to(offset)?;
        self.out.write_all(data).map_err(io("write", "output"))?;
        self.pos += data.len() as u64;
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        self.fill_to(size)?;
        self.out.flush().map_err(io("write", "output"))
    }
    fn pause_file(&mut self, end: u64) -> Result<(), ImageError> {
        self.fill_to(end)
    }
}
