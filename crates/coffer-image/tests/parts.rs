//! Files written in parts (streams whose files interleave, such as xbstream): a part ends with a
//! paused chunk and a later entry continues the file. Restores, indexed reads and the reader's
//! checks.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, EntryKind, EntryMeta, Segment, Suite};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer};
use coffer_fs::source::{ChunkReader, Span};
use coffer_fs::FsError;
use coffer_image::*;
use std::io::Cursor;

fn key() -> MasterKey {
    MasterKey::from_bytes([1; 32])
}

fn meta(path: &str, continues: bool, start: u64) -> EntryMeta {
    EntryMeta {
        kind: EntryKind::File,
        continues,
        mode: 0o640,
        uid: 0,
        gid: 0,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: start,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: vec![],
        gname: vec![],
    }
}

/// Bytes `data` placed from `start`, as one part; `pause` if the file goes on later.
struct Part {
    data: Vec<u8>,
    at: usize,
    start: u64,
    pause: bool,
}

impl ChunkReader for Part {
    fn next_chunk(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<Span, FsError> {
        segments.clear();
        let n = (self.data.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        let from = self.start + self.at as u64;
        if n > 0 {
            segments.push(Segment { offset: from, len: n as u32 });
        }
        self.at += n;
        Ok(Span { range_start: from, range_end: from + n as u64, len: n, last: self.at == self.data.len() })
    }
    fn paused(&self) -> bool {
        self.pause
    }
}

struct Parts(std::vec::IntoIter<(EntryMeta, Vec<u8>, bool)>);

impl EntrySource for Parts {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        Ok(self.0.next().map(|(meta, data, pause)| {
            let start = if meta.continues { meta.size } else { 0 };
            SourceItem { meta, data: Some(Box::new(Part { data, at: 0, start, pause })), source: None, opened: None }
        }))
    }
}

/// (metadata, data, paused) of each entry, in image order.
type PartList = Vec<(EntryMeta, Vec<u8>, bool)>;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn image(parts: PartList) -> Vec<u8> {
    let params = ImageParams::random(Suite::Aes256Gcm, Codec::Zstd, 1, 4096, 1).unwrap();
    let mut out = Vec::new();
    write_image(&mut Parts(parts.into_iter()), &mut out, &params, &[SlotSecret::Key(key())], 2, &NoProgress, None)
        .unwrap();
    out
}

fn restore(image: &[u8], target: &std::path::Path) -> Result<ReadSummary, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    let opts = RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: true };
    let mut v = RestoreVisitor::new(Restorer::create(target, opts).unwrap());
    let summary = read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false })?;
    v.restorer.finish()?;
    Ok(summary)
}

/// log: part 1 (10,000 bytes, paused), data (whole), log: part 2 (paused), other, log: part 3.
fn interleaved() -> (PartList, Vec<u8>) {
    let (a, b, c) = (bytes(10_000, 1), bytes(5_000, 2), bytes(300_000, 3));
    let log = [a.clone(), b.clone(), c.clone()].concat();
    let parts = vec![
        (meta("log", false, 0), a, true),
        (meta("db/data", false, 0), bytes(20_000, 9), false),
        (meta("log", true, 10_000), b, true),
        (meta("other", false, 0), Vec::new(), false),
        (meta("log", true, 15_000), c, false),
    ];
    (parts, log)
}

#[test]
fn a_file_in_parts_restores_whole() {
    let (mut parts, log) = interleaved();
    check_restores(parts.clone(), &log);
    // Announced as large, the file is written with O_DIRECT until its first pause.
    parts[0].0.size = 1 << 20;
    check_restores(parts, &log);
}

fn check_restores(parts: PartList, log: &[u8]) {
    let img = image(parts);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r");
    let summary = restore(&img, &target).unwrap();
    assert_eq!(std::fs::read(target.join("log")).unwrap(), log);
    assert_eq!(std::fs::read(target.join("db/data")).unwrap(), bytes(20_000, 9));
    assert_eq!(summary.files, 3, "a file counts once");
    assert_eq!(summary.logical_bytes, log.len() as u64 + 20_000);
    // Through the index: every part of the file, in order, into one stream.
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, &img).unwrap();
    let idx = IndexedImage::open(&path, &[Unlock::Key(key())]).unwrap();
    let mut v = StreamVisitor::new(Vec::new());
    for (i, r) in idx.records().iter().enumerate() {
        if r.meta.path == b"log" {
            idx.read_entry(i, &mut v, 2).unwrap();
        }
    }
    assert_eq!(v.into_inner(), log);
    assert_eq!(std::fs::metadata(target.join("log")).unwrap().len(), log.len() as u64);
}

#[test]
fn the_reader_refuses_parts_that_do_not_join() {
    let (mut parts, _) = interleaved();
    // A continuation from the wrong offset.
    parts[2].0.size = 9_999;
    let img = image(parts);
    let dir = tempfile::tempdir().unwrap();
    let err = restore(&img, &dir.path().join("a")).unwrap_err();
    assert!(err.is_integrity() && err.to_string().contains("paused at 10000"), "{err}");
    assert!(!dir.path().join("a/log").exists(), "nothing under the final name");

    // A continuation of nothing, a paused file never completed, a new file over a paused one.
    let (parts, _) = interleaved();
    let cases = [
        (vec![parts[2].clone()], "not paused"),
        (parts[..2].to_vec(), "never completed"),
        (vec![parts[0].clone(), (meta("log", false, 0), vec![1], false)], "name of a paused one"),
    ];
    for (case, want) in cases {
        let img = image(case);
        let target = dir.path().join(format!("t{}", want.len()));
        let err = restore(&img, &target).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

/// Files of a stream start without a size: past 256 KiB they go on with O_DIRECT, through
/// pauses on a block boundary, and back through the page cache after one elsewhere.
#[test]
fn stream_files_of_unknown_size_restore_whole() {
    let (a, b, c) = (bytes(270_336, 4), bytes(100_001, 5), bytes(500_000, 6));
    let big = [a.clone(), b.clone(), c.clone()].concat();
    let parts = vec![
        (meta("big", false, 0), a, true),
        (meta("x", false, 0), bytes(50_000, 7), false),
        (meta("big", true, 270_336), b, true),
        (meta("big2", false, 0), bytes(600_000, 8), false),
        (meta("big", true, 370_337), c, false),
    ];
    let img = image(parts);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = dir.path().join("r");
    restore(&img, &target).unwrap();
    assert_eq!(std::fs::read(target.join("big")).unwrap(), big);
    assert_eq!(std::fs::read(target.join("x")).unwrap(), bytes(50_000, 7));
    assert_eq!(std::fs::read(target.join("big2")).unwrap(), bytes(600_000, 8));
}
