//! The index, taken in piece by piece and parsed record by record.

use coffer_format::entry::MAX_PATH_LEN;
use coffer_format::IndexRecord;

/// The fixed fields of an index record (FORMAT.md §5.4).
pub(crate) const RECORD_FIXED_LEN: usize = 48;
/// The longest entry metadata (§5.2): fixed fields, path, target, user and group names.
const MAX_META_LEN: usize = 40 + 2 + MAX_PATH_LEN + 2 + MAX_PATH_LEN + 1 + 255 + 1 + 255;

/// How long `r` is in the index: its fixed fields and its metadata as encoded.
pub(crate) fn record_len(r: &IndexRecord) -> u64 {
    (RECORD_FIXED_LEN + r.meta.encoded_len()) as u64
}

/// The index, taken in piece by piece: records are parsed and handed on as they complete, so
/// the index is never held whole (at most one record cut between two pieces waits), and the
/// pieces may add up to no more than `budget` bytes (what the image declares the index holds),
/// checked before each piece is decompressed.
#[derive(Debug)]
pub(crate) struct IndexRecords {
    pending: Vec<u8>,
    budget: u64,
    /// Records parsed so far.
    pub(crate) count: u64,
}

impl IndexRecords {
    pub(crate) fn new(budget: u64) -> Self {
        Self { pending: Vec::new(), budget, count: 0 }
    }

    /// Makes room for a piece of `raw_len` bytes; false if the index would outgrow its budget.
    pub(crate) fn admit(&mut self, raw_len: u64) -> bool {
        match self.budget.checked_sub(raw_len) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// Adds a decompressed piece and hands every record it completes to `each` (which may
    /// refuse it with a message).
    pub(crate) fn push(
        &mut self,
        piece: &[u8],
        each: &mut dyn FnMut(IndexRecord) -> Result<(), String>,
    ) -> Result<(), String> {
        self.pending.extend_from_slice(piece);
        let mut at = 0;
        while self.pending.len() - at >= RECORD_FIXED_LEN {
            let meta_len = u32::from_le_bytes(self.pending[at + 28..at + 32].try_into().expect("4 bytes")) as usize;
            if meta_len > MAX_META_LEN {
                return Err(format!("index: a record of {meta_len} bytes of metadata"));
            }
            let len = RECORD_FIXED_LEN + meta_len;
            if self.pending.len() - at < len {
                break;
            }
            let mut records = IndexRecord::parse_all(&self.pending[at..at + len]).map_err(|e| format!("index: {e}"))?;
            at += len;
            // `len` bytes that parse hold exactly one record.
            let Some(record) = records.pop() else { return Err("index: an empty record".into()) };
            self.count += 1;
            each(record)?;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// The index is complete: nothing may be left of a record.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match IndexRecord::parse_all(&self.pending) {
            _ if self.pending.is_empty() => Ok(()),
            Err(e) => Err(format!("index: {e}")),
            Ok(_) => Err("index: a record cut short".into()),
        }
    }
}
