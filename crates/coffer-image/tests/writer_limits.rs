//! Issue 13, item 6 and its class: the writer never writes what the reader refuses. A source
//! that hands the writer a chunk a reader would refuse (too many segments, a range that does
//! not follow the last, sizes that add up past 2^64) fails the backup with an error; it neither
//! panics nor ends in an image that `verify` and `restore` refuse.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::chunk::MAX_SEGMENTS;
use coffer_format::{Codec, EntryKind, EntryMeta, Segment, Suite};
use coffer_fs::source::{ChunkReader, Span};
use coffer_fs::FsError;
use coffer_image::*;
use std::io::Cursor;

fn key() -> MasterKey {
    MasterKey::from_bytes([9; 32])
}

fn file(path: &str) -> EntryMeta {
    EntryMeta {
        kind: EntryKind::File,
        continues: false,
        mode: 0o640,
        uid: 0,
        gid: 0,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: 0,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: vec![],
        gname: vec![],
    }
}

/// One chunk, as given: `runs` one-byte segments two bytes apart, from `start`, to `end`.
struct OneChunk {
    runs: usize,
    start: u64,
    end: u64,
}

impl ChunkReader for OneChunk {
    fn next_chunk(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<Span, FsError> {
        segments.clear();
        let n = self.runs.min(buf.len());
        buf[..n].fill(1);
        segments.extend((0..n as u64).map(|i| Segment { offset: self.start + 2 * i, len: 1 }));
        Ok(Span { range_start: self.start, range_end: self.end, len: n, last: true })
    }
}

/// Files, each one chunk.
struct Files(Vec<(EntryMeta, OneChunk)>);

impl EntrySource for Files {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (meta, chunk) = self.0.remove(0);
        Ok(Some(SourceItem { meta, data: Some(Box::new(chunk)), source: None, opened: None }))
    }
}

fn write(files: Vec<(EntryMeta, OneChunk)>, chunk_size: u32) -> Result<Vec<u8>, ImageError> {
    let params = ImageParams::random(Suite::Aes256Gcm, Codec::Zstd, 1, chunk_size, 1)?;
    let mut image = Vec::new();
    write_image(&mut Files(files), &mut image, &params, &[SlotSecret::Key(key())], 2, &NoProgress, None)?;
    Ok(image)
}

/// The error of a write that must fail (not the image, if one was written: it is large).
#[track_caller]
fn refused(written: Result<Vec<u8>, ImageError>) -> ImageError {
    match written {
        Ok(image) => panic!("an image of {} bytes was written", image.len()),
        Err(e) => e,
    }
}

fn verify(image: &[u8]) -> Result<ReadSummary, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: 2, skip_data: false })
}

#[test]
fn a_chunk_of_more_segments_than_a_reader_takes_is_an_error() {
    // At the limit: written and read back.
    let ok = OneChunk { runs: MAX_SEGMENTS, start: 0, end: 2 * MAX_SEGMENTS as u64 };
    let image = write(vec![(file("a"), ok)], 1 << 20).unwrap();
    assert_eq!(verify(&image).unwrap().data_bytes, MAX_SEGMENTS as u64);
    // One more used to give an image verify refuses; 1,000,000 more, a worker's panic (the
    // segment table ran past the frame buffer).
    for runs in [MAX_SEGMENTS + 1, 1_000_000] {
        let bad = OneChunk { runs, start: 0, end: 2 * runs as u64 };
        let err = refused(write(vec![(file("a"), bad)], 4 << 20));
        assert!(err.to_string().contains("segments"), "{runs}: {err}");
    }
}

#[test]
fn chunks_must_follow_one_another() {
    let gap = OneChunk { runs: 1, start: 10, end: 20 };
    let err = refused(write(vec![(file("a"), gap)], 4096));
    assert!(err.to_string().contains("expected from 0"), "{err}");
}

#[test]
fn sizes_that_add_up_past_2_64_are_an_error() {
    // Two sparse files of 2^63 bytes each (XFS allows files that large): the reader refuses an
    // image whose sizes add up past 2^64, so the writer does not write one.
    let huge = || OneChunk { runs: 0, start: 0, end: 1 << 63 };
    let err = refused(write(vec![(file("a"), huge()), (file("b"), huge())], 4096));
    assert!(err.to_string().contains("2^64"), "{err}");
    let image = write(vec![(file("a"), huge())], 4096).unwrap();
    assert_eq!(verify(&image).unwrap().logical_bytes, 1 << 63);
}

#[test]
fn chunk_sizes_a_reader_refuses_are_refused() {
    for size in [0, 4095, (64 << 20) + 1] {
        let one = OneChunk { runs: 1, start: 0, end: 1 };
        refused(write(vec![(file("a"), one)], size));
    }
}
