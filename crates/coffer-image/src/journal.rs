//! The receiver's journal: what a restore has made durable, so that an interrupted transfer can
//! go on from there (`coffer send --resume`) instead of starting over.
//!
//! It lives in the target directory beside the restore's marker, is appended to at checkpoints
//! (after the restored files were flushed to disk) and removed when the restore completes.
//!
//! ```text
//! journal := "COFFERJ1" | record*
//! record  := body_len u32 LE | check [8] (first 8 bytes of SHA-256(body)) | body
//! body    := 1 u8 | image_id [16]                                   an image begins
//!          | 2 u8 | offset u64 | seq u64 | entries u64 | files u64
//!                 | logical_bytes u64 | data_bytes u64 | index records ...
//! ```
//! A checkpoint carries the index records (FORMAT.md §6) of the entries completed since the
//! previous checkpoint of the same image, and where the image's next entry starts: its byte
//! offset and frame sequence number. A record cut short or damaged (a crash while appending)
//! ends the journal: everything before it still holds, as it was flushed before.

use crate::error::{io, ImageError};
use coffer_format::codec::{Reader, Writer};
use coffer_format::{EntryKind, IndexRecord};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use coffer_fs::restore::JOURNAL;

const MAGIC: &[u8; 8] = b"COFFERJ1";
const IMAGE: u8 = 1;
const CHECKPOINT: u8 = 2;
/// A bound on one record, far above any real one (a checkpoint's records for 10^6 files).
const MAX_BODY: usize = 1 << 30;

/// Where a read of an image stands just after a completed entry, and what it counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Offset of the next frame in the image (an ENTRY frame).
    pub offset: u64,
    /// Sequence number of that frame.
    pub seq: u64,
    pub entries: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub data_bytes: u64,
}

impl Totals {
    const LEN: usize = 48;

    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.offset)
            .u64(self.seq)
            .u64(self.entries)
            .u64(self.files)
            .u64(self.logical_bytes)
            .u64(self.data_bytes);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, String> {
        let mut field = || r.u64().map_err(|e| e.to_string());
        Ok(Self {
            offset: field()?,
            seq: field()?,
            entries: field()?,
            files: field()?,
            logical_bytes: field()?,
            data_bytes: field()?,
        })
    }
}

/// Where a read of an image can start again: just after a completed entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePoint {
    pub at: Totals,
    /// The index records of every entry before `at.offset`, in order.
    pub records: Vec<IndexRecord>,
}

/// What a journal says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalState {
    /// The image being restored when the journal was last written.
    pub image_id: Option<[u8; 16]>,
    /// Its last checkpoint, if it reached one.
    pub point: Option<ResumePoint>,
    /// Entries durably restored from earlier images into the same target (a resumed directory
    /// transfer sends a new image of what was missing).
    pub earlier: Vec<IndexRecord>,
}

impl JournalState {
    /// Every entry the target holds durably.
    pub fn durable(&self) -> impl Iterator<Item = &IndexRecord> {
        self.earlier.iter().chain(self.point.iter().flat_map(|p| p.records.iter()))
    }

    /// Durable regular files (whole, not parts).
    pub fn durable_files(&self) -> impl Iterator<Item = &IndexRecord> {
        self.durable().filter(|r| r.meta.kind == EntryKind::File && !r.meta.continues)
    }
}

fn check(body: &[u8]) -> [u8; 8] {
    coffer_crypto::sha256(body)[..8].try_into().expect("8 bytes")
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> ImageError {
    ImageError::Usage(format!("{}: not a coffer journal ({detail})", path.display()))
}

/// Reads a journal; `None` if there is none.
pub fn load(path: &Path) -> Result<Option<JournalState>, ImageError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a symlink: its writers refuse one too.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(path);
    let mut bytes = Vec::new();
    match file {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io("read", path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    parse(&bytes).map(Some).map_err(|e| corrupt(path, e))
}

/// Parses journal bytes; a damaged or cut tail is ignored (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<JournalState, String> {
    if bytes.get(..8) != Some(MAGIC) {
        return Err("bad magic".into());
    }
    let mut state = JournalState::default();
    let mut at = 8;
    while let Some(head) = bytes.get(at..at + 12) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 12..at + 12 + len) else { break };
        if head[4..12] != check(body) {
            break;
        }
        apply(&mut state, body)?;
        at += 12 + len;
    }
    Ok(state)
}

fn apply(state: &mut JournalState, body: &[u8]) -> Result<(), String> {
    let mut r = Reader::new(body, "journal record");
    match r.u8().map_err(|e| e.to_string())? {
        IMAGE => {
            let id = r.array().map_err(|e| e.to_string())?;
            if let Some(p) = state.point.take() {
                state.earlier.extend(p.records);
            }
            state.image_id = Some(id);
        }
        CHECKPOINT => {
            if state.image_id.is_none() {
                return Err("a checkpoint before any image".into());
            }
            let at = Totals::parse(&mut r)?;
            let new = IndexRecord::parse_all(&body[1 + Totals::LEN..]).map_err(|e| e.to_string())?;
            let point = state.point.get_or_insert_with(ResumePoint::default);
            point.records.extend(new);
            if point.records.len() as u64 != at.entries || at.offset < point.at.offset {
                return Err("a checkpoint that does not follow the previous one".into());
            }
            point.at = at;
        }
        other => return Err(format!("unknown record kind {other}")),
    }
    Ok(())
}

/// Appends to a journal, each record flushed to disk before `append` returns.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Records of the current image already in the journal.
    written: usize,
}

impl Journal {
    /// Starts a new journal (replacing any).
    pub fn create(path: &Path) -> Result<Self, ImageError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(path)
            .map_err(io("create", path))?;
        file.write_all(MAGIC).and_then(|()| file.sync_data()).map_err(io("write", path))?;
        Ok(Self { file, path: path.into(), written: 0 })
    }

    /// Goes on with an existing journal whose state was `state`: a damaged tail is cut off.
    pub fn reopen(path: &Path, state: &JournalState) -> Result<Self, ImageError> {
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        let valid = valid_len(&bytes);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc_nofollow())
            .open(path)
            .map_err(io("open", path))?;
        file.set_len(valid as u64).and_then(|()| file.sync_data()).map_err(io("truncate", path))?;
        let mut this = Self { file, path: path.into(), written: 0 };
        this.written = state.point.as_ref().map_or(0, |p| p.records.len());
        use std::io::Seek;
        this.file.seek(std::io::SeekFrom::End(0)).map_err(io("seek", path))?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new image begins (a fresh transfer into the target).
    pub fn begin_image(&mut self, image_id: &[u8; 16]) -> Result<(), ImageError> {
        let mut body = vec![IMAGE];
        body.extend_from_slice(image_id);
        self.written = 0;
        self.append(&body)
    }

    /// Records a checkpoint: `records` are all the image's entries so far (those not yet in the
    /// journal are added).
    pub fn checkpoint(&mut self, point: &Checkpoint<'_>) -> Result<(), ImageError> {
        let mut body = vec![CHECKPOINT];
        point.at.encode(&mut body);
        for r in &point.records[self.written.min(point.records.len())..] {
            r.encode(&mut body);
        }
        self.append(&body)?;
        self.written = point.records.len();
        Ok(())
    }

    fn append(&mut self, body: &[u8]) -> Result<(), ImageError> {
        if body.len() > MAX_BODY {
            return Err(ImageError::Usage("a journal record larger than 1 GiB".into()));
        }
        let mut rec = Vec::with_capacity(12 + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&check(body));
        rec.extend_from_slice(body);
        self.file.write_all(&rec).and_then(|()| self.file.sync_data()).map_err(io("write", &self.path))
    }
}

/// The length of the intact prefix of a journal.
fn valid_len(bytes: &[u8]) -> usize {
    let mut at = 8;
    while let Some(head) = bytes.get(at..at + 12) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        match bytes.get(at + 12..at + 12 + len) {
            Some(body) if head[4..12] == check(body) => at += 12 + len,
            _ => break,
        }
    }
    at.min(bytes.len())
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// How much of an image a receiver keeping it as a file (`receive -o`) holds durably: the mark
/// beside the partial file.
///
/// ```text
/// mark := "COFFERPM" | image_id [16] | durable_len u64 LE | check [8] (SHA-256 of the rest)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialMark {
    pub image_id: [u8; 16],
    pub durable_len: u64,
}

impl PartialMark {
    const MAGIC: &'static [u8; 8] = b"COFFERPM";

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Self::MAGIC.to_vec();
        b.extend_from_slice(&self.image_id);
        b.extend_from_slice(&self.durable_len.to_le_bytes());
        let c = check(&b);
        b.extend_from_slice(&c);
        b
    }

    /// `None` for anything but an intact mark.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != 40 || &b[..8] != Self::MAGIC || b[32..] != check(&b[..32]) {
            return None;
        }
        Some(Self {
            image_id: b[8..24].try_into().expect("16 bytes"),
            durable_len: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
        })
    }
}

/// What a reader hands its visitor after a complete entry, when nothing is open: enough to
/// start reading again from here.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    pub at: Totals,
    /// The records of every entry so far.
    pub records: &'a [IndexRecord],
}

impl Checkpoint<'_> {
    pub fn to_point(&self) -> ResumePoint {
        ResumePoint { at: self.at, records: self.records.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::EntryMeta;

    fn record(path: &str, offset: u64) -> IndexRecord {
        IndexRecord {
            frame_offset: offset,
            first_seq: offset / 100,
            frames_len: 100,
            chunks: 1,
            size: 10,
            data_bytes: 10,
            meta: EntryMeta {
                kind: EntryKind::File,
                continues: false,
                mode: 0o644,
                uid: 1,
                gid: 2,
                mtime_sec: 3,
                mtime_nsec: 4,
                size: 10,
                path: path.as_bytes().to_vec(),
                target: vec![],
                uname: vec![],
                gname: vec![],
            },
        }
    }

    fn cp(records: &[IndexRecord]) -> Checkpoint<'_> {
        let n = records.len() as u64;
        let at = Totals {
            offset: 16384 + 100 * n,
            seq: n * 2,
            entries: n,
            files: n,
            logical_bytes: 10 * n,
            data_bytes: 10 * n,
        };
        Checkpoint { at, records }
    }

    #[test]
    fn checkpoints_accumulate_and_a_new_image_moves_them_to_earlier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        assert_eq!(load(&path).unwrap(), None);
        let recs: Vec<_> = (0..5).map(|i| record(&format!("f{i}"), 16384 + 100 * i)).collect();
        let mut j = Journal::create(&path).unwrap();
        j.begin_image(&[1; 16]).unwrap();
        j.checkpoint(&cp(&recs[..2])).unwrap();
        j.checkpoint(&cp(&recs[..5])).unwrap();
        let state = load(&path).unwrap().unwrap();
        assert_eq!(state.image_id, Some([1; 16]));
        assert_eq!(state.point, Some(cp(&recs).to_point()));
        assert!(state.earlier.is_empty());

        // Going on with the same journal: another image on top of the first.
        let mut j = Journal::reopen(&path, &state).unwrap();
        j.begin_image(&[2; 16]).unwrap();
        j.checkpoint(&cp(&recs[..1])).unwrap();
        let state = load(&path).unwrap().unwrap();
        assert_eq!(state.image_id, Some([2; 16]));
        assert_eq!(state.earlier, recs);
        assert_eq!(state.point.as_ref().unwrap().records, recs[..1]);
        assert_eq!(state.durable_files().count(), 6);
    }

    #[test]
    fn a_cut_or_damaged_tail_is_ignored_and_cut_off_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        let recs: Vec<_> = (0..3).map(|i| record(&format!("f{i}"), 16384 + 100 * i)).collect();
        let mut j = Journal::create(&path).unwrap();
        j.begin_image(&[1; 16]).unwrap();
        j.checkpoint(&cp(&recs[..1])).unwrap();
        let good = std::fs::read(&path).unwrap();
        j.checkpoint(&cp(&recs[..3])).unwrap();
        let full = std::fs::read(&path).unwrap();
        let expect = parse(&good).unwrap();
        // Every cut inside the last record, and every flipped byte in it, leaves the first state.
        for cut in good.len()..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), expect, "cut at {cut}");
        }
        for i in good.len()..full.len() {
            let mut bad = full.clone();
            bad[i] ^= 0x40;
            assert_eq!(parse(&bad).unwrap(), expect, "flip at {i}");
        }
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let state = load(&path).unwrap().unwrap();
        let mut j = Journal::reopen(&path, &state).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good);
        j.checkpoint(&cp(&recs[..3])).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().point.unwrap().records, recs);
    }

    #[test]
    fn partial_marks_round_trip_and_damage_is_seen() {
        let m = PartialMark { image_id: [3; 16], durable_len: 1 << 40 };
        let b = m.encode();
        assert_eq!(b.len(), 40);
        assert_eq!(PartialMark::parse(&b), Some(m));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert_eq!(PartialMark::parse(&bad), None, "flip at {i}");
        }
        assert_eq!(PartialMark::parse(&b[..39]), None);
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(b"").is_err());
        assert!(parse(b"COFFERJ2").is_err());
        assert_eq!(parse(MAGIC).unwrap(), JournalState::default());
        // A checkpoint before any image, with a valid check.
        let body = [CHECKPOINT; 49];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&check(&body));
        bytes.extend_from_slice(&body);
        assert!(parse(&bytes).is_err());
    }
}
