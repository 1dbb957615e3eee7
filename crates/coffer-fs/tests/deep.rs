//! Trees as deep as the format allows (paths of 64 KiB: 32,000 levels of one-letter names),
//! which no path-based call can reach: the walk and the sweep of a resumed restore go through
//! them with a bounded number of descriptors.

use coffer_format::EntryKind;
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer, MARKER};
use coffer_fs::walk::Walker;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

const DEPTH: usize = 32_000;

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The deepest directory of the chain `d/d/.../d` under `root`.
fn bottom(root: &Path, create: bool) -> OwnedFd {
    let mut dir = nix::fcntl::open(root, dir_flags(), Mode::empty()).unwrap();
    for _ in 0..DEPTH {
        if create {
            mkdirat(&dir, "d", Mode::from_bits_truncate(0o755)).unwrap();
        }
        dir = openat(&dir, "d", dir_flags(), Mode::empty()).unwrap();
    }
    dir
}

fn write_at(dir: &OwnedFd, name: &str, data: &[u8]) {
    let fd = openat(dir, name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(0o644));
    std::fs::File::from(fd.unwrap()).write_all(data).unwrap();
}

/// A temporary directory whose chain is removed from the bottom up when dropped, even after
/// a failure (removing it recursively would overflow the stack).
struct Deep(tempfile::TempDir);

impl Drop for Deep {
    fn drop(&mut self) {
        let flags = dir_flags();
        let Ok(mut dir) = nix::fcntl::open(self.0.path(), flags, Mode::empty()) else { return };
        let mut depth = 0;
        while let Ok(next) = openat(&dir, "d", flags, Mode::empty()) {
            dir = next;
            depth += 1;
        }
        // Only the deepest level holds anything but the next one.
        if let Ok(mut names) = nix::dir::Dir::openat(&dir, ".", flags, Mode::empty()) {
            let all: Vec<_> = names.iter().filter_map(|e| e.ok()).map(|e| e.file_name().to_owned()).collect();
            for n in all.iter().filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..") {
                let _ = unlinkat(&dir, n.as_c_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
        for _ in 0..depth {
            let Ok(up) = openat(&dir, "..", flags, Mode::empty()) else { return };
            let _ = unlinkat(&up, "d", UnlinkatFlags::RemoveDir);
            dir = up;
        }
    }
}

#[test]
fn a_tree_32000_levels_deep_is_walked_and_swept() {
    // On tmpfs where there is one: removing 32,000 directories from a disk mounted with
    // `discard` takes minutes, and that is not what this test measures.
    let t = Deep(tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap());
    let root = t.0.path();
    let deepest = bottom(root, true);
    write_at(&deepest, "f", b"at the bottom");
    nix::unistd::symlinkat("f", &deepest, "link").unwrap();
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let tmp = format!(".coffer-tmp-00000000000000aa-{dead}-1");
    write_at(&deepest, &tmp, b"half");
    drop(deepest);

    let (mut dirs, mut longest, mut bottom_file) = (0, 0, None);
    for item in Walker::new(root) {
        let mut item = item.unwrap();
        longest = longest.max(item.meta.path.len());
        match item.meta.kind {
            EntryKind::Dir => dirs += 1,
            EntryKind::File if item.meta.path.ends_with(b"/f") => {
                let mut data = Vec::new();
                item.file.take().unwrap().read_to_end(&mut data).unwrap();
                bottom_file = Some(data);
            }
            _ => {}
        }
    }
    assert_eq!(dirs, DEPTH + 1);
    assert_eq!(longest, 2 * DEPTH + tmp.len(), "d/d/.../d/{tmp}");
    assert_eq!(bottom_file.as_deref(), Some(&b"at the bottom"[..]));

    // An interrupted restore's marker: a forced (or resumed) restore sweeps its temporaries.
    std::fs::write(root.join(MARKER), b"interrupted\ntoken 00000000000000aa\n").unwrap();
    let opts = RestoreOptions { force: true, whole_tree: true, ownership: Ownership::Current, durable: false };
    let mut r = Restorer::create(root, opts).unwrap();
    assert_eq!(r.swept(), 1);
    assert_eq!(r.sweep_temporaries().unwrap(), 1, "once");
    drop(r);
    let deepest = bottom(root, false);
    assert!(openat(&deepest, tmp.as_str(), OFlag::O_RDONLY, Mode::empty()).is_err());
    assert!(openat(&deepest, "f", OFlag::O_RDONLY, Mode::empty()).is_ok(), "everything else stays");
}
