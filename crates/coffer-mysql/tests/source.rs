//! xbstreams into images and back: interleaved files, sparse chunks, empty files, directories;
//! and streams that must be refused.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, Suite};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer};
use coffer_image::*;
use coffer_mysql::source::{Defaults, XbstreamSource};
use coffer_mysql::xbstream::{write_chunk, ChunkType};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

fn key() -> MasterKey {
    MasterKey::from_bytes([3; 32])
}

fn defaults() -> Defaults {
    Defaults { uid: 0, gid: 0, uname: vec![], gname: vec![], mtime: 1_700_000_000 }
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed)).collect()
}

/// Writes an image of the xbstream `xb` with chunks of `chunk` bytes; restores it; returns the
/// restored files and the source's summary.
fn round_trip(
    xb: Vec<u8>,
    chunk: u32,
) -> Result<(BTreeMap<String, Vec<u8>>, coffer_mysql::source::StreamSummary), ImageError> {
    let params = ImageParams::random(Suite::Aes256Gcm, Codec::Zstd, 1, chunk, 1).unwrap();
    let mut source = XbstreamSource::new(Cursor::new(xb), defaults());
    let mut image = Vec::new();
    write_image(&mut source, &mut image, &params, &[SlotSecret::Key(key())], 2, &NoProgress, None)?;
    let summary = source.summary();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r");
    let mut input = Cursor::new(&image[..]);
    let opened = open_stream(&mut input, &[Unlock::Key(key())])?;
    let opts = RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: false };
    let mut v = RestoreVisitor::new(Restorer::create(&target, opts).unwrap());
    read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false })?;
    v.restorer.finish()?;
    Ok((files(&target, &target), summary))
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

#[test]
fn interleaved_files_restore_whole() {
    let log = bytes(70_000, 1);
    let data = bytes(50_000, 2);
    let mut xb = Vec::new();
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 0, &[], &log[..30_000]);
    write_chunk(&mut xb, ChunkType::Payload, b"db/t1.ibd", 0, &[], &data[..20_000]);
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 30_000, &[], &log[30_000..40_000]);
    write_chunk(&mut xb, ChunkType::Payload, b"db/t1.ibd", 20_000, &[], &data[20_000..]);
    write_chunk(&mut xb, ChunkType::Eof, b"db/t1.ibd", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Eof, b"db/empty.frm", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"ib_logfile0", 40_000, &[], &log[40_000..]);
    write_chunk(&mut xb, ChunkType::Eof, b"ib_logfile0", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_checkpoints", 0, &[], b"backup_type = full-backuped\n");
    write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_checkpoints", 0, &[], &[]);
    for chunk in [4096, 8192, 1 << 20] {
        let (got, summary) = round_trip(xb.clone(), chunk).unwrap();
        assert_eq!(got["ib_logfile0"], log, "chunk size {chunk}");
        assert_eq!(got["db/t1.ibd"], data);
        assert_eq!(got["db/empty.frm"], b"");
        assert_eq!(summary.files, 4);
        assert_eq!(summary.kept["xtrabackup_checkpoints"], b"backup_type = full-backuped\n");
    }
}

#[test]
fn sparse_chunks_keep_their_holes() {
    let mut xb = Vec::new();
    let a = bytes(5_000, 3);
    let b = bytes(3_000, 4);
    write_chunk(&mut xb, ChunkType::Payload, b"pc.ibd", 0, &[], &a);
    // 5,000 bytes of data, then a 16 KiB hole, 1,000 bytes, a 4 KiB hole, 2,000 bytes, a trailing 8 KiB hole.
    write_chunk(&mut xb, ChunkType::Sparse, b"pc.ibd", 5_000, &[(16384, 1000), (4096, 2000), (8192, 0)], &b);
    write_chunk(&mut xb, ChunkType::Eof, b"pc.ibd", 0, &[], &[]);
    let mut want = a.clone();
    want.resize(5_000 + 16384, 0);
    want.extend_from_slice(&b[..1000]);
    want.resize(want.len() + 4096, 0);
    want.extend_from_slice(&b[1000..]);
    want.resize(want.len() + 8192, 0);
    for chunk in [4096, 1 << 20] {
        let (got, _) = round_trip(xb.clone(), chunk).unwrap();
        assert_eq!(got["pc.ibd"].len(), want.len());
        assert_eq!(got["pc.ibd"], want);
    }
}

#[test]
fn streams_that_cannot_be_a_backup_are_refused() {
    let mut base = Vec::new();
    write_chunk(&mut base, ChunkType::Payload, b"a", 0, &[], &[1; 100]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (base.clone(), "cut short"),
        (
            [base.clone(), {
                let mut v = Vec::new();
                write_chunk(&mut v, ChunkType::Payload, b"a", 50, &[], &[1; 10]);
                v
            }]
            .concat(),
            "out of order",
        ),
        (
            {
                let mut v = Vec::new();
                write_chunk(&mut v, ChunkType::Payload, b"../etc/passwd", 0, &[], &[1; 10]);
                write_chunk(&mut v, ChunkType::Eof, b"../etc/passwd", 0, &[], &[]);
                v
            },
            "refused",
        ),
        (
            {
                let mut v = base.clone();
                let n = v.len();
                v[n - 5] ^= 1;
                v
            },
            "CRC-32",
        ),
        (
            {
                let mut v = base.clone();
                write_chunk(&mut v, ChunkType::Eof, b"a", 0, &[], &[]);
                write_chunk(&mut v, ChunkType::Payload, b"a", 100, &[], &[1; 10]);
                v
            },
            "after its end",
        ),
    ];
    for (xb, want) in cases {
        let err = round_trip(xb, 4096).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Files of random sizes, cut into random runs of chunks, interleaved at random: the
        /// image restores every file exactly, whatever the chunk size of the image.
        #[test]
        fn any_interleaving_restores_exactly(
            sizes in proptest::collection::vec(0usize..40_000, 1..5),
            cuts in proptest::collection::vec(1usize..9_000, 1..12),
            order in proptest::collection::vec(0usize..5, 0..40),
            chunk in prop_oneof![Just(4096u32), Just(8192), Just(65536)],
        ) {
            let files: Vec<(String, Vec<u8>)> =
                sizes.iter().enumerate().map(|(i, &n)| (format!("d{}/f{i}", i % 2), bytes(n, i as u8))).collect();
            // Each file's chunks, in order.
            let mut pending: Vec<std::collections::VecDeque<(u64, Vec<u8>)>> = files
                .iter()
                .enumerate()
                .map(|(i, (_, data))| {
                    let mut q = std::collections::VecDeque::new();
                    let mut at = 0;
                    let mut k = i;
                    while at < data.len() {
                        let n = cuts[k % cuts.len()].min(data.len() - at);
                        q.push_back((at as u64, data[at..at + n].to_vec()));
                        at += n;
                        k += 1;
                    }
                    q
                })
                .collect();
            let mut xb = Vec::new();
            let emit = |i: usize, pending: &mut Vec<std::collections::VecDeque<(u64, Vec<u8>)>>, xb: &mut Vec<u8>| {
                if let Some((off, data)) = pending[i].pop_front() {
                    write_chunk(xb, ChunkType::Payload, files[i].0.as_bytes(), off, &[], &data);
                }
            };
            for &o in &order {
                emit(o % files.len(), &mut pending, &mut xb);
            }
            for i in 0..files.len() {
                while !pending[i].is_empty() {
                    emit(i, &mut pending, &mut xb);
                }
                write_chunk(&mut xb, ChunkType::Eof, files[i].0.as_bytes(), 0, &[], &[]);
            }
            write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_info", 0, &[], b"tool_name = mariabackup\n");
            write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_info", 0, &[], &[]);
            let (got, _) = round_trip(xb, chunk).unwrap();
            for (name, data) in &files {
                prop_assert_eq!(&got[name], data, "{}", name);
            }
        }
    }
}
