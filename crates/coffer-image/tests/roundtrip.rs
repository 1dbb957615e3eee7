//! In-process round trips through every path: threads, chunk sizes at the edges, codecs,
//! streaming vs indexed reads. Each must restore exactly the tree it was given.

use coffer_crypto::{MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, Suite};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer};
use coffer_fs::walk::Walker;
use coffer_image::*;
use std::io::{Cursor, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn key() -> MasterKey {
    MasterKey::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap()
}

fn make_tree(root: &Path, chunk: usize) {
    std::fs::create_dir_all(root.join("db/sub")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("one"), b"x").unwrap();
    let patterned: Vec<u8> = (0..(3 * chunk + 17)).map(|i| (i % 7) as u8).collect();
    std::fs::write(root.join("db/three_chunks"), &patterned).unwrap();
    for (name, len) in [("exact1", chunk), ("minus1", chunk - 1), ("plus1", chunk + 1), ("exact2", 2 * chunk)] {
        let mut v = vec![0u8; len];
        coffer_crypto::random(&mut v).unwrap();
        std::fs::write(root.join("db").join(name), v).unwrap();
    }
    std::fs::write(root.join("db/sub/name with spaces\nand newline"), b"odd").unwrap();
    // Large enough to be restored with O_DIRECT, and not a multiple of any block size.
    let mut big = vec![0u8; (1 << 20) + 4097];
    coffer_crypto::random(&mut big).unwrap();
    std::fs::write(root.join("db/big.ibd"), big).unwrap();
    std::os::unix::fs::symlink("../one", root.join("db/link")).unwrap();
    std::fs::hard_link(root.join("one"), root.join("db/sub/hard")).unwrap();
    let f = std::fs::File::create(root.join("sparse")).unwrap();
    f.set_len(50 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"middle", 20 << 20).unwrap();
}

/// (path, kind, size, mode, mtime, content hash or link target) of every entry.
fn snapshot(root: &Path) -> Vec<(String, String, u64, u32, i64, Vec<u8>)> {
    let mut out = vec![];
    for item in Walker::new(root) {
        let item = item.unwrap();
        let m = &item.meta;
        if m.path.is_empty() || m.path.starts_with(b".coffer") {
            continue;
        }
        let full = root.join(std::str::from_utf8(&m.path).unwrap());
        let content = match m.kind {
            coffer_format::EntryKind::File => coffer_crypto::sha256(&std::fs::read(&full).unwrap()).to_vec(),
            _ => m.target.clone(),
        };
        let md = std::fs::symlink_metadata(&full).unwrap();
        let mtime = if m.kind == coffer_format::EntryKind::Dir { 0 } else { md.mtime() };
        out.push((
            String::from_utf8_lossy(&m.path).into_owned(),
            m.kind.name().to_owned(),
            md.size(),
            md.mode() & 0o7777,
            mtime,
            content,
        ));
    }
    out
}

fn backup(root: &Path, codec: Codec, chunk: u32, threads: usize) -> Vec<u8> {
    let params = ImageParams::random(Suite::Aes256Gcm, codec, 1, chunk, 1).unwrap();
    let mut out = Vec::new();
    write_image(
        &mut DirSource::new(Walker::new(root)),
        &mut out,
        &params,
        &[SlotSecret::Key(key())],
        threads,
        &NoProgress,
        None,
    )
    .unwrap();
    out
}

fn restore(image: &[u8], target: &Path, threads: usize) -> ReadSummary {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[Unlock::Key(key())]).unwrap();
    let restorer = Restorer::create(
        target,
        RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: true },
    )
    .unwrap();
    let mut v = RestoreVisitor::new(restorer);
    let summary = read_stream(&mut input, &opened, &mut v, ReadOptions { threads, skip_data: false }).unwrap();
    v.restorer.finish().unwrap();
    summary
}

#[test]
fn every_shape_restores_the_same_tree() {
    let src = tempfile::tempdir().unwrap();
    let chunk = 4096u32;
    make_tree(src.path(), chunk as usize);
    let want = snapshot(src.path());
    for codec in [Codec::None, Codec::Zstd, Codec::Lz4] {
        for threads in [1, 2, 3] {
            let image = backup(src.path(), codec, chunk, threads);
            let dst = tempfile::tempdir().unwrap();
            let target = dst.path().join("r");
            let summary = restore(&image, &target, threads);
            assert_eq!(snapshot(&target), want, "{codec:?} threads {threads}");
            assert_eq!(summary.image_bytes, image.len() as u64);
            let sparse = std::fs::metadata(target.join("sparse")).unwrap();
            assert!(sparse.blocks() * 512 < 1 << 20, "holes restored as holes");
        }
    }
}

#[test]
fn indexed_reads_find_each_entry() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 4096);
    let image = backup(src.path(), Codec::Zstd, 4096, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.coffer");
    std::fs::write(&path, &image).unwrap();
    let idx = IndexedImage::open(&path, &[Unlock::Key(key())]).unwrap();
    let i = idx.records().iter().position(|r| r.meta.path == b"db/three_chunks").unwrap();
    let mut v = StreamVisitor::new(Vec::new());
    idx.read_entry(i, &mut v, 2).unwrap();
    assert_eq!(v.into_inner(), std::fs::read(src.path().join("db/three_chunks")).unwrap());
    let s = idx.records().iter().position(|r| r.meta.path == b"sparse").unwrap();
    assert_eq!(idx.records()[s].size, 50 << 20);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A random tree: (relative path, contents) files in a few directories, some sparse.
    fn tree() -> impl Strategy<Value = Vec<(String, Vec<u8>, bool)>> {
        let name = "[a-z]{1,6}";
        let file = (prop::collection::vec(name, 1..4), prop::collection::vec(any::<u8>(), 0..20_000), any::<bool>());
        prop::collection::vec(file, 0..12).prop_map(|files| {
            let mut seen = std::collections::HashSet::new();
            let mut dirs = std::collections::HashSet::new();
            files
                .into_iter()
                .filter_map(|(parts, data, sparse)| {
                    let path = parts.join("/");
                    // A path can't be both a file and a directory.
                    let prefixes: Vec<String> = (1..parts.len()).map(|i| parts[..i].join("/")).collect();
                    if seen.contains(&path) || dirs.contains(&path) || prefixes.iter().any(|p| seen.contains(p)) {
                        return None;
                    }
                    seen.insert(path.clone());
                    dirs.extend(prefixes);
                    Some((path, data, sparse))
                })
                .collect()
        })
    }

    fn build(root: &Path, files: &[(String, Vec<u8>, bool)]) {
        std::fs::create_dir_all(root).unwrap();
        for (path, data, sparse) in files {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            let f = std::fs::File::create(&full).unwrap();
            if *sparse {
                // The data lands after a 1 MiB hole, and the file is large enough for O_DIRECT.
                f.set_len(1 << 20).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, data, 1 << 20).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, data, 3 << 20).unwrap();
            } else {
                std::os::unix::fs::FileExt::write_all_at(&f, data, 0).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
        #[test]
        fn random_trees_round_trip(files in tree(), chunk in 4096u32..40_000, threads in 1usize..4, codec in 0u8..3) {
            let codec = coffer_format::Codec::from_u8(codec).unwrap();
            let src = tempfile::tempdir().unwrap();
            build(src.path(), &files);
            let image = backup(src.path(), codec, chunk, threads);
            let dst = tempfile::tempdir().unwrap();
            let target = dst.path().join("r");
            restore(&image, &target, threads);
            prop_assert_eq!(snapshot(&target), snapshot(src.path()));
        }
    }
}

/// A restore cut short anywhere, then resumed from its journal's last checkpoint with only the
/// frames after it, ends with the same tree and summary as an uninterrupted one.
#[test]
fn an_interrupted_restore_resumes_from_its_journal() {
    use coffer_image::journal::{self, Journal, JOURNAL};
    let src = tempfile::tempdir().unwrap();
    let chunk = 4096u32;
    make_tree(src.path(), chunk as usize);
    let want = snapshot(src.path());
    let image = backup(src.path(), Codec::Zstd, chunk, 2);
    let full = {
        let dst = tempfile::tempdir().unwrap();
        restore(&image, &dst.path().join("r"), 2)
    };
    let opts = RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: false };
    let data_offset = coffer_format::DATA_OFFSET as usize;
    let mut resumed_from = Vec::new();
    // Cuts all over the image, and many in its last part (after the large file).
    let cuts =
        (data_offset..image.len()).step_by(image.len() / 23).chain((image.len() - 40_000..image.len()).step_by(1500));
    for cut in cuts {
        let dst = tempfile::tempdir().unwrap();
        let target = dst.path().join("r");
        let mut input = Cursor::new(&image[..cut]);
        let opened = open_stream(&mut input, &[Unlock::Key(key())]).unwrap();
        let restorer = Restorer::create(&target, opts.clone()).unwrap();
        let mut j = Journal::create(&target.join(JOURNAL)).unwrap();
        j.begin_image(&opened.header.image_id).unwrap();
        let mut v = RestoreVisitor::new(restorer).with_journal(j, 0);
        let err = read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false }).unwrap_err();
        assert!(matches!(err, ImageError::Truncated { .. }), "{err}");
        drop(v);
        let state = journal::load(&target.join(JOURNAL)).unwrap().unwrap();
        assert_eq!(state.image_id, Some(opened.header.image_id));
        let Some(point) = state.point.clone() else { continue };
        assert!(point.at.offset as usize <= cut);
        resumed_from.push(point.at.offset);

        // Again, from the checkpoint: the header region, then the frames after it.
        let mut restorer = Restorer::create(&target, RestoreOptions { force: true, ..opts.clone() }).unwrap();
        restorer.sweep_temporaries().unwrap();
        for r in &point.records {
            restorer.adopt(&r.meta);
        }
        let j = Journal::reopen(&target.join(JOURNAL), &state).unwrap();
        let mut v = RestoreVisitor::new(restorer).with_journal(j, 0);
        let mut rest = Cursor::new(&image[..data_offset]).chain(Cursor::new(&image[point.at.offset as usize..]));
        let opened = open_stream(&mut rest, &[Unlock::Key(key())]).unwrap();
        let summary =
            read_stream_from(&mut rest, &opened, point.clone(), &mut v, ReadOptions { threads: 2, skip_data: false })
                .unwrap();
        assert_eq!(
            (summary.entries, summary.files, summary.logical_bytes, summary.data_bytes, summary.image_bytes),
            (full.entries, full.files, full.logical_bytes, full.data_bytes, full.image_bytes)
        );
        assert_eq!(summary.records, full.records);
        v.restorer.finish().unwrap();
        assert_eq!(snapshot(&target), want, "cut at {cut}");

        // Frames from anywhere else than the checkpoint are refused.
        let dst2 = tempfile::tempdir().unwrap();
        let mut bad = Cursor::new(&image[..data_offset]).chain(Cursor::new(&image[point.at.offset as usize + 1..]));
        let opened = open_stream(&mut bad, &[Unlock::Key(key())]).unwrap();
        let mut v = RestoreVisitor::new(Restorer::create(&dst2.path().join("r"), opts.clone()).unwrap());
        let err = read_stream_from(&mut bad, &opened, point, &mut v, ReadOptions { threads: 2, skip_data: false })
            .unwrap_err();
        assert!(err.is_integrity(), "{err}");
    }
    // The cuts hit checkpoints all over the image, not only the first one.
    resumed_from.dedup();
    assert!(resumed_from.len() >= 5, "{resumed_from:?}");
}
