//! Issue 13, item 6: whatever an xbstream's sparse maps look like, the image coffer writes of it
//! is one coffer reads back. The writer and the reader share `coffer_format::chunk::MAX_SEGMENTS`;
//! a chunk with more data runs than that is split, never written (an image `verify` and
//! `restore` refuse) and never a panic.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::chunk::MAX_SEGMENTS;
use coffer_format::{Codec, Suite};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer};
use coffer_image::*;
use coffer_mysql::source::{Defaults, XbstreamSource};
use coffer_mysql::xbstream::{write_chunk, ChunkType};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

fn key() -> MasterKey {
    MasterKey::from_bytes([5; 32])
}

fn defaults() -> Defaults {
    Defaults { uid: 0, gid: 0, uname: vec![], gname: vec![], mtime: 1_700_000_000 }
}

/// The image of `xb`, written with chunks of `chunk` bytes.
fn image_of(xb: Vec<u8>, chunk: u32, codec: Codec) -> Result<Vec<u8>, ImageError> {
    let params = ImageParams::random(Suite::Aes256Gcm, codec, 1, chunk, 1).unwrap();
    let mut source = XbstreamSource::new(Cursor::new(xb), defaults());
    let mut image = Vec::new();
    write_image(&mut source, &mut image, &params, &[SlotSecret::Key(key())], 2, &NoProgress, None)?;
    Ok(image)
}

/// Verifies the image (every frame, the index against the frames), then restores it; returns
/// the restored files.
fn verify_and_restore(image: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: 2, skip_data: false })?;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r");
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    let opts = RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: false };
    let mut v = RestoreVisitor::new(Restorer::create(&target, opts).unwrap());
    read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false })?;
    v.restorer.finish()?;
    Ok(files(&target, &target))
}

fn files(root: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(root, &p));
        } else if !p.ends_with(".coffer-restore-incomplete") {
            out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// One sparse chunk of `runs` runs of `len` bytes, each after a hole of `hole` bytes; returns
/// the xbstream and the file it describes.
fn many_runs(runs: usize, hole: u32, len: u32) -> (Vec<u8>, Vec<u8>) {
    let map: Vec<(u32, u32)> = vec![(hole, len); runs];
    let payload: Vec<u8> = (0..runs * len as usize).map(|i| (i % 251) as u8 + 1).collect();
    let mut want = Vec::with_capacity(runs * (hole + len) as usize);
    for run in payload.chunks(len as usize) {
        want.resize(want.len() + hole as usize, 0);
        want.extend_from_slice(run);
    }
    let mut xb = Vec::new();
    write_chunk(&mut xb, ChunkType::Sparse, b"db/pc.ibd", 0, &map, &payload);
    write_chunk(&mut xb, ChunkType::Eof, b"db/pc.ibd", 0, &[], &[]);
    (xb, want)
}

#[test]
fn more_runs_than_a_chunk_may_list_restore() {
    // 20,000 runs of 8 bytes fit a 1 MiB chunk's data, not its segment table: the image
    // used to be written (exit 0) and then refused by verify and restore.
    let (xb, want) = many_runs(20_000, 24, 8);
    let image = image_of(xb, 1 << 20, Codec::Zstd).unwrap();
    let got = verify_and_restore(&image).unwrap();
    assert_eq!(got["db/pc.ibd"], want);
}

#[test]
fn a_million_runs_neither_panic_nor_make_an_unreadable_image() {
    // 1,000,000 one-byte runs: the segment table (12 MB) overran the frame buffer and a
    // worker panicked (exit 101).
    let (xb, want) = many_runs(1_000_000, 3, 1);
    let image = image_of(xb, 4 << 20, Codec::Lz4).unwrap();
    let got = verify_and_restore(&image).unwrap();
    assert_eq!(got["db/pc.ibd"].len(), want.len());
    assert!(got["db/pc.ibd"] == want);
}

#[test]
fn exactly_the_limit_and_one_more() {
    for runs in [MAX_SEGMENTS - 1, MAX_SEGMENTS, MAX_SEGMENTS + 1, 2 * MAX_SEGMENTS + 1] {
        let (xb, want) = many_runs(runs, 1, 2);
        for codec in [Codec::None, Codec::Zstd] {
            let image = image_of(xb.clone(), 1 << 20, codec).unwrap();
            let got = verify_and_restore(&image).unwrap_or_else(|e| panic!("{runs} runs, {codec:?}: {e}"));
            assert_eq!(got["db/pc.ibd"], want, "{runs} runs");
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A file as xbstream chunks: each chunk dense or sparse (a map of (hole, data) runs).
    #[derive(Debug, Clone)]
    enum Piece {
        Dense(usize),
        Sparse(Vec<(u32, u32)>),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            (0usize..3000).prop_map(Piece::Dense),
            proptest::collection::vec((0u32..5000, 0u32..40), 0..400).prop_map(Piece::Sparse),
            // Many tiny runs, apart: with a chunk of 64 KiB or more, past the segment limit.
            (1usize..40_000, 1u32..4, 1u32..3).prop_map(|(n, hole, len)| Piece::Sparse(vec![(hole, len); n])),
        ]
    }

    /// Builds the xbstream of `files` (each a list of pieces), interleaving their chunks
    /// round-robin, and what each file must restore as.
    fn build(files: &[Vec<Piece>], seed: u8) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
        let mut xb = Vec::new();
        let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let names: Vec<String> = (0..files.len()).map(|i| format!("d{}/f{i}.ibd", i % 2)).collect();
        let longest = files.iter().map(Vec::len).max().unwrap_or(0);
        let mut byte = seed;
        let mut next = || {
            byte = byte.wrapping_mul(31).wrapping_add(7);
            byte
        };
        for step in 0..longest {
            for (i, pieces) in files.iter().enumerate() {
                let Some(p) = pieces.get(step) else { continue };
                let content = want.entry(names[i].clone()).or_default();
                let offset = content.len() as u64;
                match p {
                    Piece::Dense(n) => {
                        let data: Vec<u8> = (0..*n).map(|_| next()).collect();
                        write_chunk(&mut xb, ChunkType::Payload, names[i].as_bytes(), offset, &[], &data);
                        content.extend_from_slice(&data);
                    }
                    Piece::Sparse(map) => {
                        let mut payload = Vec::new();
                        for &(hole, len) in map {
                            content.resize(content.len() + hole as usize, 0);
                            let data: Vec<u8> = (0..len).map(|_| next()).collect();
                            content.extend_from_slice(&data);
                            payload.extend_from_slice(&data);
                        }
                        write_chunk(&mut xb, ChunkType::Sparse, names[i].as_bytes(), offset, map, &payload);
                    }
                }
            }
        }
        for name in &names {
            want.entry(name.clone()).or_default();
            write_chunk(&mut xb, ChunkType::Eof, name.as_bytes(), 0, &[], &[]);
        }
        (xb, want)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any xbstream, sparse maps included, gives an image that verifies and restores every
        /// file exactly, at any chunk size and with any codec.
        #[test]
        fn any_xbstream_reads_back_exactly(
            files in proptest::collection::vec(proptest::collection::vec(piece(), 0..6), 1..4),
            chunk in prop_oneof![Just(4096u32), Just(8192), Just(65536), Just(1 << 20)],
            codec in prop_oneof![Just(Codec::None), Just(Codec::Zstd), Just(Codec::Lz4)],
            seed: u8,
        ) {
            let (xb, want) = build(&files, seed);
            let image = image_of(xb, chunk, codec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got = verify_and_restore(&image).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.len(), want.len());
            for (name, data) in &want {
                prop_assert!(&got[name] == data, "{} differs ({} bytes restored, {} expected)", name, got[name].len(), data.len());
            }
        }
    }
}
