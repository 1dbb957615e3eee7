//! Images sealed for a known key whose frames open but whose contents are hostile: an index
//! that inflates, sizes whose sums overflow, parts that do not chain. Both readers (streaming and
//! through the index) must refuse them as corrupt, within bounded memory, without panicking.

use coffer_crypto::{MasterKey, Unlock};
use coffer_format::{Codec, EntryKind, FrameKind};
use coffer_image::craft::{chunk_plaintext, index_plaintext, meta, FrameSealer};
use coffer_image::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts the bytes allocated, and the most held at once since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measured test at a time (the counters are process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns what it returned and the most memory it held at once beyond what was
/// held before.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

fn key() -> MasterKey {
    MasterKey::from_bytes([9; 32])
}

fn unlocks() -> [Unlock; 1] {
    [Unlock::Key(key())]
}

/// Reads `image` front to back (as from a pipe).
fn stream(image: &[u8]) -> Result<ReadSummary, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &unlocks())?;
    read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: 2, skip_data: false })
}

/// Opens `image` through its index (as a file) and reads every entry.
fn indexed(image: &[u8]) -> Result<Vec<coffer_format::IndexRecord>, ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, image).unwrap();
    let idx = IndexedImage::open(&path, &unlocks())?;
    for i in 0..idx.records().len() {
        idx.read_entry(i, &mut NullVisitor, 2)?;
    }
    Ok(idx.records().to_vec())
}

/// Opens `image` through its index only (as `list` and `info` do).
fn open_indexed(image: &[u8]) -> Result<Vec<coffer_format::IndexRecord>, ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, image).unwrap();
    Ok(IndexedImage::open(&path, &unlocks())?.records().to_vec())
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, ImageError>, what: &str) -> String {
    match r {
        Err(e @ ImageError::Corrupt { .. }) => e.to_string(),
        other => panic!("{what}: expected a corrupt image, got {other:?}"),
    }
}

/// One directory entry, then `pieces` INDEX frames that each inflate (zstd) to a whole chunk
/// of zeros: an index ~`pieces` MiB long in an image of a few KiB.
fn inflating_index(pieces: u64) -> Vec<u8> {
    let chunk_size = 1 << 20;
    let mut s = FrameSealer::new(&key(), chunk_size).unwrap();
    s.entry(&meta(EntryKind::Dir, b""));
    let zeros = zstd::bulk::compress(&vec![0u8; chunk_size as usize], 19).unwrap();
    let plain = index_plaintext(Codec::Zstd, chunk_size, &zeros);
    for i in 0..pieces {
        s.frame(FrameKind::Index, if i + 1 == pieces { 1 } else { 0 }, &plain);
    }
    s.auto_end();
    s.into_bytes()
}

#[test]
fn an_index_that_inflates_is_refused_within_bounded_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = inflating_index(256);
    assert!(image.len() < 64 << 10, "{} bytes", image.len());
    // Frame buffers (a chunk and its slack each) are all a read may hold: not the index.
    let bound = 48 << 20;
    let (r, held) = peak(|| stream(&image));
    let msg = assert_corrupt(r, "streaming");
    assert!(held < bound, "streaming held {} MiB ({msg})", held >> 20);
    let (r, held) = peak(|| indexed(&image));
    let msg = assert_corrupt(r, "through the index");
    assert!(held < bound, "through the index held {} MiB ({msg})", held >> 20);
}

/// Two files of 2^63 bytes (holes): the total is 2^64, which wraps to 0 in a u64.
fn overflowing_sizes() -> Vec<u8> {
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    for name in [&b"a"[..], b"b"] {
        s.entry(&meta(EntryKind::File, name));
        s.chunk((0, 1 << 63), &[], true, false);
    }
    s.auto_index();
    let end = s.end_fields();
    assert_eq!(end.total_size, 0, "the writer's sum wrapped");
    s.end(&end);
    s.into_bytes()
}

#[test]
fn sizes_whose_sum_overflows_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = overflowing_sizes();
    let msg = assert_corrupt(stream(&image), "streaming");
    assert!(msg.contains("2^64"), "{msg}");
    let msg = assert_corrupt(indexed(&image), "through the index");
    assert!(msg.contains("2^64"), "{msg}");
}

/// Parts of one file in two pieces whose sizes overflow only when added: 2^63 + 2^63.
#[test]
fn parts_whose_sizes_overflow_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::File, b"log"));
    s.chunk((0, 1 << 63), &[], true, true);
    let mut m = meta(EntryKind::File, b"log");
    m.continues = true;
    m.size = 1 << 63;
    s.entry(&m);
    s.chunk((1 << 63, u64::MAX), b"x", true, false);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    // 2^63 + (2^64 - 1 - 2^63) fits: this one is fine ...
    stream(&image).unwrap();
    indexed(&image).unwrap();
    // ... and one more file of 2 bytes does not.
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::File, b"log"));
    s.chunk((0, 1 << 63), &[], true, true);
    s.entry(&m);
    s.chunk((1 << 63, u64::MAX), b"x", true, false);
    s.entry(&meta(EntryKind::File, b"more"));
    s.chunk((0, 2), b"xy", true, false);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    assert_corrupt(stream(&image), "streaming");
    assert_corrupt(indexed(&image), "through the index");
}

/// The index of a continuation that does not carry on its file where it stopped: the streaming
/// reader refuses it (FORMAT.md §5.1); so must the reader through the index.
#[test]
fn a_continuation_that_does_not_chain_is_refused_through_the_index() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::File, b"log"));
    s.chunk((0, 10), b"0123456789", true, true);
    let mut m = meta(EntryKind::File, b"log");
    m.continues = true;
    m.size = 4;
    s.entry(&m);
    s.chunk((4, 8), b"abcd", true, false);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    assert_corrupt(stream(&image), "streaming");
    assert_corrupt(open_indexed(&image), "through the index");
}

/// An index that declares a size for a directory, or more chunks than its frames could hold.
#[test]
fn index_records_that_do_not_fit_their_frames_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let build = |edit: &dyn Fn(&mut coffer_format::IndexRecord)| {
        let mut s = FrameSealer::new(&key(), 4096).unwrap();
        s.entry(&meta(EntryKind::Dir, b"d"));
        s.entry(&meta(EntryKind::File, b"d/f"));
        s.chunk((0, 3), b"abc", true, false);
        let mut records = s.records().to_vec();
        let mut blob = Vec::new();
        for r in &mut records {
            edit(r);
            r.encode(&mut blob);
        }
        s.frame(FrameKind::Index, 1, &index_plaintext(Codec::None, blob.len() as u32, &blob));
        s.auto_end();
        s.into_bytes()
    };
    let fine = build(&|_| {});
    indexed(&fine).unwrap();
    stream(&fine).unwrap();
    let dir_size = build(&|r| {
        if r.meta.kind == EntryKind::Dir {
            r.size = 1 << 40;
        }
    });
    assert_corrupt(open_indexed(&dir_size), "a directory with a size");
    let chunks = build(&|r| {
        if r.meta.kind == EntryKind::File {
            r.chunks = u32::MAX;
        }
    });
    assert_corrupt(open_indexed(&chunks), "more chunks than frames");
}

#[test]
fn an_entry_number_beyond_the_index_is_an_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::Dir, b"d"));
    s.auto_index();
    s.auto_end();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, s.into_bytes()).unwrap();
    let idx = IndexedImage::open(&path, &unlocks()).unwrap();
    assert!(idx.read_entry(1, &mut NullVisitor, 1).is_err());
}

/// A sanity check of the sealer: what it writes the readers accept, with files in parts.
#[test]
fn sealed_images_read_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::Dir, b""));
    s.entry(&meta(EntryKind::File, b"log"));
    s.chunk((0, 3), b"abc", true, true);
    s.entry(&meta(EntryKind::File, b"f"));
    s.frame(FrameKind::Chunk, 1, &chunk_plaintext((0, 10), b"0123456789"));
    let mut m = meta(EntryKind::File, b"log");
    m.continues = true;
    m.size = 3;
    s.entry(&m);
    s.chunk((3, 5), b"de", true, false);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    let summary = stream(&image).unwrap();
    assert_eq!((summary.entries, summary.files, summary.logical_bytes), (4, 2, 15));
    assert_eq!(indexed(&image).unwrap(), summary.records);
}

/// An index record that promises a small file whose frames hold a large hole: read through the
/// index into memory (as `info` reads the backup's description), the frames must be held to the
/// record before any of their data is handed on, not after.
#[test]
fn an_entry_larger_than_its_record_is_refused_before_it_is_read() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.entry(&meta(EntryKind::File, b"coffer-backup.json"));
    s.chunk((0, 512 << 20), &[], true, false);
    let mut records = s.records().to_vec();
    records[0].size = 10;
    let mut blob = Vec::new();
    records[0].encode(&mut blob);
    s.frame(FrameKind::Index, 1, &index_plaintext(Codec::None, blob.len() as u32, &blob));
    let mut end = s.end_fields();
    end.total_size = 10;
    s.end(&end);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, s.into_bytes()).unwrap();
    let idx = IndexedImage::open(&path, &unlocks()).unwrap();
    let (r, held) = peak(|| {
        let mut out = StreamVisitor::new(Vec::new());
        idx.read_entry(0, &mut out, 1).map(|_| out.into_inner().len())
    });
    let msg = assert_corrupt(r, "an entry beyond its record");
    assert!(held < 48 << 20, "held {} MiB ({msg})", held >> 20);
}

/// An image in memory that counts the bytes read from it.
#[derive(Debug)]
struct Counted(Vec<u8>, std::sync::Arc<AtomicUsize>);

impl RandomAccess for Counted {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = offset as usize;
        buf.copy_from_slice(self.0.get(at..at + buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?);
        self.1.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(())
    }
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        let (from, to) = (offset as usize, (offset + len) as usize);
        self.1.fetch_add(to - from, Ordering::Relaxed);
        Ok(Box::new(self.0.get(from..to).ok_or(std::io::ErrorKind::UnexpectedEof)?))
    }
}

/// An entry as a reader hands it on: its metadata, its data (offset, bytes), its end.
type Handed = (coffer_format::EntryMeta, Vec<(u64, Vec<u8>)>, Option<u64>);

/// Every entry a reader hands on.
#[derive(Debug, Default, PartialEq)]
struct Seen(Vec<Handed>);

impl Visitor for Seen {
    fn entry(&mut self, meta: &coffer_format::EntryMeta) -> Result<(), ImageError> {
        self.0.push((meta.clone(), vec![], None));
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        self.0.last_mut().unwrap().1.push((offset, data.to_vec()));
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        self.0.last_mut().unwrap().2 = Some(size);
        Ok(())
    }
}

/// An image of `n` empty files packed in one PACK frame (names of at most 5 bytes), chunk size
/// 4 MiB: with n = 65535, the most entries a PACK holds, and the shortest members.
fn one_full_pack(n: usize) -> Vec<u8> {
    let mut s = FrameSealer::new(&key(), 4 << 20).unwrap();
    let metas: Vec<_> = (0..n).map(|i| meta(EntryKind::File, format!("{i}").as_bytes())).collect();
    let entries: Vec<_> = metas.iter().map(|m| (m.clone(), &b""[..])).collect();
    s.pack(&entries);
    s.entry(&meta(EntryKind::File, b"after"));
    s.chunk((0, 2), b"zz", true, false);
    s.auto_index();
    s.auto_end();
    s.into_bytes()
}

/// A pack of the most members a frame may count reads both ways, within memory a few times the
/// frame; through the index, all its entries come from one read of it (not one per entry: an
/// `extract` of its directory read its 3.7 MiB frame 65,535 times over, some 250 GB).
#[test]
fn a_pack_of_the_most_members_is_read_once_through_the_index() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = one_full_pack(65535);
    let (streamed, held) = peak(|| {
        let mut input = Cursor::new(&image[..]);
        let opened = open_stream(&mut input, &unlocks()).unwrap();
        let mut seen = Seen::default();
        read_stream(&mut input, &opened, &mut seen, ReadOptions { threads: 2, skip_data: false }).map(|_| seen)
    });
    let streamed = streamed.unwrap();
    assert_eq!(streamed.0.len(), 65536);
    assert!(held < 96 << 20, "streaming held {} MiB", held >> 20);

    let read = std::sync::Arc::new(AtomicUsize::new(0));
    let (idx, held) = peak(|| {
        IndexedImage::open_with(Box::new(Counted(image.clone(), read.clone())), "i".as_ref(), &unlocks()).unwrap()
    });
    assert!(held < 64 << 20, "the index held {} MiB", held >> 20);
    read.store(0, Ordering::Relaxed);
    let all: Vec<usize> = (0..idx.records().len()).collect();
    let mut seen = Seen::default();
    idx.read_entries(&all, &mut seen, 2).unwrap();
    assert_eq!(seen, streamed, "through the index, the same entries and data as streaming");
    assert!(
        read.load(Ordering::Relaxed) <= image.len(),
        "read {} bytes of {}",
        read.load(Ordering::Relaxed),
        image.len()
    );

    // Any choice of entries, in any order, is what streaming gave for them.
    for pick in [vec![0, 1, 2], vec![5, 65534, 65535], vec![65535], vec![40000, 3, 3, 7]] {
        let mut seen = Seen::default();
        idx.read_entries(&pick, &mut seen, 1).unwrap();
        let want: Vec<_> = pick.iter().map(|&i| streamed.0[i].clone()).collect();
        assert_eq!(seen.0, want, "{pick:?}");
    }
}

/// Records written into an image's index by hand, with END counting `entries`.
fn with_index(mut s: FrameSealer, records: &[coffer_format::IndexRecord], entries: u64) -> Vec<u8> {
    let mut blob = Vec::new();
    for r in records {
        r.encode(&mut blob);
    }
    let pieces: Vec<&[u8]> = blob.chunks(4096).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = u8::from(i + 1 == pieces.len());
        s.frame(FrameKind::Index, last, &index_plaintext(Codec::None, piece.len() as u32, piece));
    }
    let total = records.iter().filter(|r| r.meta.kind == EntryKind::File).map(|r| r.size).sum();
    let end = coffer_format::EndFields { entry_count: entries, total_size: total, ..s.end_fields() };
    s.end(&end);
    s.into_bytes()
}

/// What the streaming reader refuses of packs, the index refuses too when it can tell from the
/// records alone (as `list` and `info` read only those): entries sharing a frame that are not
/// packed (a file with chunks of its own), more entries in one frame than a PACK may count, a
/// root directory that is not the first entry.
#[test]
fn an_index_that_shares_frames_a_pack_could_not_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Two files, each an ENTRY frame and a chunk, whose records both name all four frames.
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    for name in [b"a", b"b"] {
        s.entry(&meta(EntryKind::File, name));
        s.chunk((0, 3), b"abc", true, false);
    }
    let frames_len = s.bytes().len() as u64 - coffer_format::DATA_OFFSET;
    let mut records = s.records().to_vec();
    for r in &mut records {
        r.frame_offset = coffer_format::DATA_OFFSET;
        r.first_seq = 0;
        r.frames_len = frames_len;
    }
    let image = with_index(s, &records, 2);
    assert_corrupt(stream(&image), "streaming");
    let msg = assert_corrupt(open_indexed(&image), "two entries in an ENTRY frame, through the index");
    assert!(msg.contains("do not tile"), "{msg}");

    // A root directory after a packed file, both in one pack.
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.pack(&[(meta(EntryKind::File, b"a"), b"1"), (meta(EntryKind::Dir, b""), b"")]);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    assert_corrupt(stream(&image), "streaming");
    let msg = assert_corrupt(open_indexed(&image), "a root that is not first, through the index");
    assert!(msg.contains("root directory"), "{msg}");

    // 65536 directories in one pack frame: a PACK that counts 65535 (and holds one big file),
    // then a directory, whose frames all records give as their pack's.
    let pack = |n: usize| {
        let mut s = FrameSealer::new(&key(), 1 << 20).unwrap();
        let mut raw = Vec::new();
        coffer_format::pack::encode_member(&meta(EntryKind::File, b"big"), &vec![7u8; 256 << 10], &mut raw);
        s.frame_of(FrameKind::Pack, 0, 65535, &coffer_image::craft::pack_plaintext(&raw));
        if n > 65535 {
            s.entry(&meta(EntryKind::Dir, b"d"));
        }
        let frames_len = s.bytes().len() as u64 - coffer_format::DATA_OFFSET;
        let records: Vec<_> = (0..n)
            .map(|i| coffer_format::IndexRecord {
                frame_offset: coffer_format::DATA_OFFSET,
                first_seq: 0,
                frames_len,
                chunks: 0,
                size: 0,
                data_bytes: 0,
                meta: meta(EntryKind::Dir, format!("{i}").as_bytes()),
            })
            .collect();
        with_index(s, &records, n as u64)
    };
    let image = pack(65536);
    assert_corrupt(stream(&image), "streaming");
    let msg = assert_corrupt(open_indexed(&image), "more entries in a frame than a pack counts, through the index");
    assert!(msg.contains("do not tile"), "{msg}");
    // As many as a pack may count is what the index cannot tell from a pack of that many.
    assert_eq!(open_indexed(&pack(65535)).unwrap().len(), 65535);
}
