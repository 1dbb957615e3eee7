//! Packed entries (format version 2): trees of many tiny files round trip, a packed file is read
//! through the index from its PACK alone, files that change size while read, and hostile packs.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, EntryKind, FrameKind, Suite};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer};
use coffer_fs::walk::Walker;
use coffer_image::craft::{chunk_plaintext, meta, pack_plaintext, FrameSealer};
use coffer_image::*;
use std::io::{Cursor, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

fn backup_with(source: &mut dyn EntrySource, chunk: u32, codec: Codec) -> Result<Vec<u8>, ImageError> {
    let params = ImageParams::random(Suite::Aes256Gcm, codec, 1, chunk, 1)?;
    let mut out = Vec::new();
    write_image(source, &mut out, &params, &[SlotSecret::Key(key())], 2, &NoProgress, None)?;
    Ok(out)
}

fn restore(image: &[u8], target: &Path) -> Result<ReadSummary, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    let opts = RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: false };
    let mut v = RestoreVisitor::new(Restorer::create(target, opts).unwrap());
    let summary = read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false })?;
    v.restorer.finish().map_err(ImageError::Fs)?;
    Ok(summary)
}

/// (kind, offset, members) of every frame after the header region.
fn frames(image: &[u8]) -> Vec<(u8, usize, u16)> {
    let mut at = 16384;
    let mut out = vec![];
    while at < image.len() {
        out.push((image[at], at, u16::from_le_bytes([image[at + 2], image[at + 3]])));
        at += 8 + u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    out
}

/// (path, size, mode, mtime, inode-group, contents) of every entry below `root`.
fn snapshot(root: &Path) -> Vec<(String, u64, u32, i64, Vec<u8>)> {
    let mut out = vec![];
    for item in Walker::new(root) {
        let m = item.unwrap().meta;
        if m.path.is_empty() || m.path.starts_with(b".coffer") {
            continue;
        }
        let full = root.join(std::str::from_utf8(&m.path).unwrap());
        let md = std::fs::symlink_metadata(&full).unwrap();
        let content = match m.kind {
            EntryKind::File => std::fs::read(&full).unwrap(),
            _ => m.target.clone(),
        };
        // A directory's size and mtime are the file system's own.
        let (size, mtime) = if m.kind == EntryKind::Dir { (0, 0) } else { (md.size(), md.mtime()) };
        out.push((String::from_utf8_lossy(&m.path).into_owned(), size, md.mode() & 0o7777, mtime, content));
    }
    out
}

#[test]
fn fifty_thousand_tiny_files_round_trip() {
    // 64 KiB chunks: files of at most 16 KiB are packed.
    let (chunk, limit) = (64 * 1024u32, 16 * 1024usize);
    let src = tempfile::tempdir().unwrap();
    let sizes = [0, 1, 2, 100, 16384 - 1, 16384, 16384 + 1, 4096, 511, 0, 33];
    for i in 0..50_000usize {
        let dir = src.path().join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir(&dir).unwrap();
        }
        let name = dir.join(format!("f{i}"));
        if i % 997 == 996 {
            // A hard link to a file met earlier (in this directory or another).
            std::fs::hard_link(src.path().join(format!("d{:03}/f{}", (i - 500) % 100, i - 500)), &name).unwrap();
            continue;
        }
        // Mostly a few bytes; every 50th file around the pack limit or a page.
        let len = if i % 50 == 0 { sizes[(i / 50) % sizes.len()] } else { i % 23 };
        let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        std::fs::write(&name, data).unwrap();
    }
    let want = snapshot(src.path());
    let image = backup_with(&mut DirSource::new(Walker::new(src.path())), chunk, Codec::Zstd).unwrap();
    assert_eq!(&image[8..10], &[2, 0], "a version 2 image");
    let fr = frames(&image);
    let packs = fr.iter().filter(|f| f.0 == FrameKind::Pack as u8).count();
    let packed: usize = fr.iter().map(|f| f.2 as usize).sum();
    assert!(packed > 49_000 && packs < 1_000, "{packed} entries in {packs} packs");
    // Only files over the limit have ENTRY frames of their own.
    let entries = fr.iter().filter(|f| f.0 == FrameKind::Entry as u8).count();
    let over = want.iter().filter(|w| w.4.len() > limit).count();
    assert!(entries <= over, "{entries} ENTRY frames, {over} files over the limit");

    let dst = tempfile::tempdir().unwrap();
    let summary = restore(&image, &dst.path().join("r")).unwrap();
    let got = snapshot(&dst.path().join("r"));
    assert_eq!(got.len(), want.len());
    if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
        panic!("restored {:?}, backed up {:?}", (&g.0, g.1, g.2, g.3), (&w.0, w.1, w.2, w.3));
    }
    assert_eq!(summary.entries as usize, want.len() + 1, "and the root");
    let linked = dst.path().join("r/d096/f996");
    assert_eq!(std::fs::metadata(linked).unwrap().nlink(), 2, "hard links stay links");

    // Through the index: every 1000th entry alone.
    let path = dst.path().join("i.coffer");
    std::fs::write(&path, &image).unwrap();
    let idx = IndexedImage::open(&path, &[Unlock::Key(key())]).unwrap();
    for i in (1..idx.records().len()).step_by(1000) {
        let r = &idx.records()[i];
        if r.meta.kind != EntryKind::File {
            idx.read_entry(i, &mut NullVisitor, 1).unwrap();
            continue;
        }
        let mut v = StreamVisitor::new(Vec::new());
        idx.read_entry(i, &mut v, 1).unwrap();
        let want = &want.iter().find(|w| w.0.as_bytes() == r.meta.path.as_slice()).unwrap().4;
        assert_eq!(&v.into_inner(), want, "{}", String::from_utf8_lossy(&r.meta.path));
    }
}

/// Random access that counts the bytes it reads.
#[derive(Debug)]
struct CountingAccess {
    bytes: Vec<u8>,
    read: Arc<AtomicU64>,
}

impl RandomAccess for CountingAccess {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = offset as usize;
        let src = self.bytes.get(at..at + buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let (at, end) = (offset as usize, (offset + len) as usize);
        let slice = self.bytes.get(at..end).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        Ok(Box::new(CountingRead { inner: slice, read: Arc::clone(&self.read) }))
    }
}

struct CountingRead<'a> {
    inner: &'a [u8],
    read: Arc<AtomicU64>,
}

impl Read for CountingRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn a_packed_file_is_extracted_from_its_pack_alone() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        let mut data = vec![0u8; 1000 + i];
        coffer_crypto::random(&mut data).unwrap();
        std::fs::write(src.path().join(format!("t{i:04}.ibd")), data).unwrap();
    }
    let image = backup_with(&mut DirSource::new(Walker::new(src.path())), 1 << 20, Codec::Zstd).unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let access = CountingAccess { bytes: image.clone(), read: Arc::clone(&read) };
    let idx = IndexedImage::open_with(Box::new(access), Path::new("counted"), &[Unlock::Key(key())]).unwrap();
    let k = idx.records().iter().position(|r| r.meta.path == b"t1234.ibd").unwrap();
    let record = idx.records()[k].clone();
    assert_eq!(record.chunks, 0, "packed");
    let sharing = idx.records().iter().filter(|r| r.frame_offset == record.frame_offset).count();
    assert!(sharing > 100, "{sharing} entries share its pack");
    read.store(0, Ordering::Relaxed);
    let mut v = StreamVisitor::new(Vec::new());
    idx.read_entry(k, &mut v, 2).unwrap();
    assert_eq!(v.into_inner(), std::fs::read(src.path().join("t1234.ibd")).unwrap());
    // One frame read: the pack, nothing before or after it.
    assert_eq!(read.load(Ordering::Relaxed), record.frames_len);
    assert!(record.frames_len < image.len() as u64 / 2);
}

/// A single file opened (and its size taken) before it changes, as a walk opens it.
struct Changing(Option<(coffer_format::EntryMeta, std::fs::File, std::path::PathBuf)>);

impl EntrySource for Changing {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        let Some((meta, file, path)) = self.0.take() else { return Ok(None) };
        let chunker = coffer_fs::source::FileChunker::from_file(file, &path, false).map_err(ImageError::Fs)?;
        // Changed after it was opened and sized, before a worker reads it.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(if path.ends_with("grows") { 5000 } else { 10 }).unwrap();
        Ok(Some(SourceItem { meta, data: Some(Box::new(chunker)), source: Some(path), opened: None }))
    }
}

#[test]
fn files_that_change_size_while_read() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["grows", "shrinks"] {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![b'a'; 1000]).unwrap();
        let mut m = meta(EntryKind::File, name.as_bytes());
        m.size = 1000;
        let file = std::fs::File::open(&path).unwrap();
        let result = backup_with(&mut Changing(Some((m, file, path))), 1 << 20, Codec::Zstd);
        if name == "grows" {
            // The size it had when it was opened: a consistent prefix, packed.
            let image = result.unwrap();
            assert_eq!(frames(&image)[0].0, FrameKind::Pack as u8);
            let out = dir.path().join("out");
            restore(&image, &out).unwrap();
            assert_eq!(std::fs::read(out.join("grows")).unwrap(), vec![b'a'; 1000]);
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("shrinks") && err.contains("shrank"), "{err}");
        }
    }
}

fn stream(image: &[u8]) -> Result<ReadSummary, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: 2, skip_data: false })
}

fn indexed(image: &[u8]) -> Result<(), ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, image).unwrap();
    let idx = IndexedImage::open(&path, &[Unlock::Key(key())])?;
    for i in 0..idx.records().len() {
        idx.read_entry(i, &mut NullVisitor, 1)?;
    }
    Ok(())
}

/// Seals `build`'s frames, then an index and END as a writer would, and reads the image both
/// ways: both must refuse it as corrupt.
fn refused(what: &str, version: u16, build: impl FnOnce(&mut FrameSealer)) {
    let mut s = FrameSealer::with_version(&key(), 4096, version).unwrap();
    build(&mut s);
    s.auto_index();
    s.auto_end();
    let image = s.into_bytes();
    match stream(&image) {
        Err(ImageError::Corrupt { .. }) => {}
        other => panic!("{what}: the stream read gave {other:?}"),
    }
    assert!(indexed(&image).is_err(), "{what}: read through the index");
}

fn member(m: &coffer_format::EntryMeta, data: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    coffer_format::pack::encode_member(m, data, &mut out);
    out
}

#[test]
fn hostile_packs_are_refused() {
    let file = |p: &[u8]| meta(EntryKind::File, p);
    // Sanity: a valid pack reads both ways.
    let mut s = FrameSealer::new(&key(), 4096).unwrap();
    s.pack(&[(file(b"a"), b"1"), (meta(EntryKind::Dir, b"d"), b"")]);
    s.auto_index();
    s.auto_end();
    let good = s.into_bytes();
    assert_eq!(stream(&good).unwrap().files, 1);
    indexed(&good).unwrap();

    refused("a PACK in a version 1 image", 1, |s| s.pack(&[(file(b"a"), b"1")]));
    refused("more members than counted", 2, |s| {
        let raw = [member(&file(b"a"), b"1"), member(&file(b"b"), b"2")].concat();
        s.frame_of(FrameKind::Pack, 0, 1, &pack_plaintext(&raw));
    });
    refused("fewer members than counted", 2, |s| {
        s.frame_of(FrameKind::Pack, 0, 3, &pack_plaintext(&member(&file(b"a"), b"1")));
    });
    refused("a directory with contents", 2, |s| {
        s.frame_of(FrameKind::Pack, 0, 1, &pack_plaintext(&member(&meta(EntryKind::Dir, b"d"), b"x")));
    });
    refused("a part of a file", 2, |s| {
        let mut m = file(b"a");
        m.continues = true;
        s.frame_of(FrameKind::Pack, 0, 1, &pack_plaintext(&member(&m, b"x")));
    });
    refused("a root that is not the first entry", 2, |s| {
        s.pack(&[(file(b"a"), b"1"), (meta(EntryKind::Dir, b""), b"")]);
    });
    refused("a pack inside a file", 2, |s| {
        s.entry(&file(b"big"));
        s.chunk((0, 1), b"x", false, false);
        s.pack(&[(file(b"a"), b"1")]);
    });
    refused("a chunk after a pack", 2, |s| {
        s.pack(&[(file(b"a"), b"1")]);
        s.frame(FrameKind::Chunk, 1, &chunk_plaintext((1, 2), b"x"));
    });
    refused("raw length over the chunk size", 2, |s| {
        let raw = member(&file(b"a"), &[0; 4090]);
        s.frame_of(FrameKind::Pack, 0, 1, &pack_plaintext(&raw));
    });
    refused("more metadata than 32 times the frame", 2, |s| {
        // Many empty files with long names, compressed far below 1/32 of their index.
        let long = [b'n'; 200];
        let raw: Vec<u8> = (0..15u8).flat_map(|i| member(&file(&[&long[..], &[b'a' + i]].concat()), b"")).collect();
        let stored = zstd::bulk::compress(&raw, 19).unwrap();
        let mut plain = vec![1, 0, 0, 0];
        plain.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        plain.extend_from_slice(&stored);
        s.frame_of(FrameKind::Pack, 0, 15, &plain);
    });
}
