//! Entries and options for the restore's unit tests.

use super::*;

pub(super) fn meta(kind: EntryKind, path: &str) -> EntryMeta {
    EntryMeta {
        kind,
        continues: false,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o640 },
        uid: 0,
        gid: 0,
        mtime_sec: 1_600_000_000,
        mtime_nsec: 5,
        size: 0,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: vec![],
        gname: vec![],
    }
}

pub(super) fn opts() -> RestoreOptions {
    RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: true }
}

pub(super) fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}
