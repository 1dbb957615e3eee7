//! Header changes in place, interrupted header writes, header backups, and rekey.

use coffer_crypto::{seal_slot, MasterKey, SlotSecret, Unlock};
use coffer_format::{Codec, Suite, DATA_OFFSET, HEADER_SIZE};
use coffer_image::*;
use std::io::Cursor;
use std::os::unix::fs::FileExt;

fn key(b: u8) -> MasterKey {
    MasterKey::from_bytes([b; 32])
}

/// A small stream image under key 1, written to a file.
fn image_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let params = ImageParams::random(Suite::Aes256Gcm, Codec::Zstd, 1, 4096, 1).unwrap();
    let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let meta = coffer_format::EntryMeta {
        kind: coffer_format::EntryKind::File,
        continues: false,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 0,
        path: b"data".to_vec(),
        target: vec![],
        uname: vec![],
        gname: vec![],
    };
    let mut out = Vec::new();
    write_image(
        &mut StreamSource::new(meta, Cursor::new(data.clone())),
        &mut out,
        &params,
        &[SlotSecret::Key(key(1))],
        2,
        &NoProgress,
        None,
    )
    .unwrap();
    let path = dir.join("i.coffer");
    std::fs::write(&path, &out).unwrap();
    (path, data)
}

fn contents(image: &[u8], unlock: Unlock) -> Result<Vec<u8>, ImageError> {
    let mut input = Cursor::new(image);
    let opened = open_stream(&mut input, &[unlock])?;
    let mut v = StreamVisitor::new(Vec::new());
    read_stream(&mut input, &opened, &mut v, ReadOptions { threads: 2, skip_data: false })?;
    Ok(v.into_inner())
}

fn add_slot(file: &HeaderFile, with: MasterKey, new: MasterKey, crash: &mut dyn FnMut(usize)) -> coffer_format::Header {
    let opened = open_header(&file.region().unwrap(), &[Unlock::Key(with)]).unwrap();
    let mut slots = opened.header.slots.clone();
    let free = slots.iter().position(|s| s.is_empty()).unwrap();
    slots[free] =
        seal_slot(opened.header.suite, &SlotSecret::Key(new), &opened.data_key, &opened.header.image_id, [9; 32], 0)
            .unwrap();
    file.write_slots(&opened, slots, crash).unwrap()
}

#[test]
fn slot_changes_touch_only_the_header_region() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = image_file(dir.path());
    let before = std::fs::read(&path).unwrap();
    let file = HeaderFile::open(&path).unwrap();
    assert!(HeaderFile::open(&path).is_err(), "a second writer is locked out");
    let header = add_slot(&file, key(1), key(2), &mut |_| {});
    assert_eq!(header.generation, 2);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[DATA_OFFSET as usize..], before[DATA_OFFSET as usize..], "data region byte-identical");
    assert_ne!(after[..DATA_OFFSET as usize], before[..DATA_OFFSET as usize]);
    assert_eq!(contents(&after, Unlock::Key(key(1))).unwrap(), data);
    assert_eq!(contents(&after, Unlock::Key(key(2))).unwrap(), data);
    assert!(matches!(contents(&after, Unlock::Key(key(3))), Err(ImageError::WrongKey)));
    let chosen = choose_header(&after).unwrap();
    assert!(chosen.warnings.is_empty(), "{:?}", chosen.warnings);
}

#[test]
fn an_interrupted_rewrite_leaves_an_image_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = image_file(dir.path());
    let old = std::fs::read(&path).unwrap();
    let file = HeaderFile::open(&path).unwrap();
    add_slot(&file, key(1), key(2), &mut |_| {});
    drop(file);
    let new = std::fs::read(&path).unwrap();
    // Copy 1 was written first (copy 0 was in use). Crash after it: copy 1 new, copy 0 old.
    let mut crashed = old.clone();
    crashed[HEADER_SIZE..2 * HEADER_SIZE].copy_from_slice(&new[HEADER_SIZE..2 * HEADER_SIZE]);
    assert_eq!(contents(&crashed, Unlock::Key(key(2))).unwrap(), data, "the newer generation is used");
    assert_eq!(choose_header(&crashed).unwrap().stale_copy, Some(0));
    // Crash in the middle of the first write: copy 1 torn, copy 0 old and intact.
    let mut torn = old.clone();
    torn[HEADER_SIZE..HEADER_SIZE + 4096].copy_from_slice(&new[HEADER_SIZE..HEADER_SIZE + 4096]);
    assert_eq!(contents(&torn, Unlock::Key(key(1))).unwrap(), data);
    assert!(matches!(contents(&torn, Unlock::Key(key(2))), Err(ImageError::WrongKey)), "the old header rules");
    // Crash in the middle of the second write: copy 0 torn, copy 1 new.
    let mut torn2 = new.clone();
    torn2[..4096].copy_from_slice(&old[..4096]);
    assert_eq!(contents(&torn2, Unlock::Key(key(2))).unwrap(), data);
    // The next rewrite starts from the good copy and writes the torn one first.
    std::fs::write(&path, &torn2).unwrap();
    let file = HeaderFile::open(&path).unwrap();
    let mut order = vec![];
    add_slot(&file, key(2), key(3), &mut |c| order.push(c));
    assert_eq!(order, [0, 1]);
    let healed = std::fs::read(&path).unwrap();
    let chosen = choose_header(&healed).unwrap();
    assert!(chosen.warnings.is_empty() && chosen.stale_copy.is_none());
    assert_eq!(contents(&healed, Unlock::Key(key(3))).unwrap(), data);
}

#[test]
fn header_backups_restore_and_reject_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = image_file(dir.path());
    let original = std::fs::read(&path).unwrap();
    let backup = HeaderBackup::of_region(&original[..DATA_OFFSET as usize]).unwrap().encode();
    assert_eq!(backup.len(), HeaderBackup::LEN);
    let parsed = HeaderBackup::parse(&backup).unwrap();
    for at in [0, 9, 20, 100, 9000, HeaderBackup::LEN - 1] {
        let mut b = backup.clone();
        b[at] ^= 1;
        assert!(HeaderBackup::parse(&b).is_err(), "byte {at}");
    }
    // Wipe both header copies, then put the backup back.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&vec![0u8; DATA_OFFSET as usize], 0).unwrap();
    assert!(contents(&std::fs::read(&path).unwrap(), Unlock::Key(key(1))).is_err());
    HeaderFile::open(&path).unwrap().write_region(&parsed.region, 0, &mut |_| {}).unwrap();
    assert_eq!(contents(&std::fs::read(&path).unwrap(), Unlock::Key(key(1))).unwrap(), data);
}

#[test]
fn rekey_shares_nothing_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = image_file(dir.path());
    let old = std::fs::read(&path).unwrap();
    let mut input = Cursor::new(&old[..]);
    let opened = open_stream(&mut input, &[Unlock::Key(key(1))]).unwrap();
    let h = &opened.header;
    let params = ImageParams::random(Suite::ChaCha20Poly1305, h.codec, h.level.into(), h.chunk_size, 1).unwrap();
    let mut out = Vec::new();
    let n = rekey(&mut input, &mut out, &opened, &params, &[SlotSecret::Key(key(2))], 2, &NoProgress).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(out.len(), old.len(), "same frames, same sizes");
    assert_eq!(contents(&out, Unlock::Key(key(2))).unwrap(), data);
    assert!(matches!(contents(&out, Unlock::Key(key(1))), Err(ImageError::WrongKey)));
    let new_opened = open_stream(&mut Cursor::new(&out[..]), &[Unlock::Key(key(2))]).unwrap();
    assert_ne!(new_opened.header.image_id, opened.header.image_id);
    assert_eq!(new_opened.header.suite, Suite::ChaCha20Poly1305);
    assert_eq!(new_opened.header.created, opened.header.created, "still the backup's date");
    // No 16-byte block of ciphertext survives.
    let old_blocks: std::collections::HashSet<&[u8]> = old[DATA_OFFSET as usize..].chunks(16).collect();
    let shared = out[DATA_OFFSET as usize..].chunks(16).filter(|b| b.len() == 16 && old_blocks.contains(b)).count();
    assert!(shared < 4, "{shared} blocks shared (frame headers aside)");
    // A tampered or truncated input fails and says where.
    let mut bad = old.clone();
    bad[DATA_OFFSET as usize + 100] ^= 1;
    let mut input = Cursor::new(&bad[..]);
    let opened = open_stream(&mut input, &[Unlock::Key(key(1))]).unwrap();
    let err = rekey(&mut input, Vec::new(), &opened, &params, &[SlotSecret::Key(key(2))], 2, &NoProgress).unwrap_err();
    assert!(err.is_integrity(), "{err}");
    let mut input = Cursor::new(&old[..old.len() - 10]);
    let opened = open_stream(&mut input, &[Unlock::Key(key(1))]).unwrap();
    let err = rekey(&mut input, Vec::new(), &opened, &params, &[SlotSecret::Key(key(2))], 2, &NoProgress).unwrap_err();
    assert!(matches!(err, ImageError::Truncated { .. }), "{err}");
}
