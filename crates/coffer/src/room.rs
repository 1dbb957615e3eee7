//! Room on a local file system: what a job that writes there checks before it starts (where it
//! knows how much it will write), and what it says when the disk fills anyway: the file
//! system by its mount point, what it has free, and the bytes missing where they are known.

use crate::error::{Error, Result};
use crate::text::human;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file system, as a job writing to it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Bytes this process may still write there (root may use the blocks kept for it).
    pub free: u64,
    /// The size of its blocks: what a write that fails for room lacks at least.
    pub block: u64,
    /// Inodes this process may still take (new files, directories, links); `None` where the
    /// file system does not count them.
    pub inodes: Option<u64>,
}

/// The file system that holds `path`, or would hold it (that of its nearest existing ancestor).
pub fn of(path: &Path) -> Result<Room> {
    let existing = nearest_existing(path);
    let s = nix::sys::statvfs::statvfs(&existing)
        .map_err(|e| Error::from(std::io::Error::from(e)))
        .map_err(|e| e.context(format!("cannot stat the file system of {}", existing.display())))?;
    // The field widths differ between targets.
    #[allow(clippy::useless_conversion)]
    let blocks =
        if nix::unistd::geteuid().is_root() { u64::from(s.blocks_free()) } else { u64::from(s.blocks_available()) };
    #[allow(clippy::useless_conversion)]
    let size = u64::from(s.fragment_size());
    #[allow(clippy::useless_conversion)]
    let inodes = (u64::from(s.files()) > 0).then(|| u64::from(s.files_available()));
    Ok(Room { mount: mount_point(&existing), free: blocks.saturating_mul(size), block: size.max(1), inodes })
}

/// Refuses, before anything is written, a job (`what`) that needs `needed` bytes where `path`
/// has less room; the file system it checked otherwise.
pub fn check(path: &Path, needed: u64, what: &str) -> Result<Room> {
    check_entries(path, needed, 0, what)
}

/// [`check`], for a job that also creates `entries` names (each takes an inode).
pub fn check_entries(path: &Path, needed: u64, entries: u64, what: &str) -> Result<Room> {
    let room = of(path)?;
    if let Some(inodes) = room.inodes.filter(|&n| entries > n) {
        return Err(Error::msg(format!(
            "{what} creates {entries} files and directories and the file system at {} has {inodes} inodes free: {} missing",
            room.mount.display(),
            entries - inodes
        )));
    }
    if needed > room.free {
        return Err(Error::msg(format!(
            "{what} needs {} and the file system at {} has {} free: {} missing",
            human(needed),
            room.mount.display(),
            human(room.free),
            human(needed - room.free)
        )));
    }
    Ok(room)
}

/// `e` as the disk filling, where it is that (ENOSPC, or a quota): it names the file system of
/// `path` and what it has free, and the bytes missing where the job knows what it still had to
/// write (`left`). Any other error is returned as it is.
pub fn explain(e: Error, path: &Path, left: Option<u64>) -> Error {
    // Said once, by the layer nearest the write.
    if !is_full(&e) || e.one_line().contains("the file system at ") {
        return e;
    }
    let Ok(room) = of(path) else { return e };
    if room.inodes == Some(0) {
        let text = format!("the file system at {} ran out of inodes ({} free)", room.mount.display(), human(room.free));
        return e.context(text);
    }
    let missing = match left {
        Some(n) => format!(", at least {} missing", human(n.saturating_sub(room.free).max(room.block))),
        None => String::new(),
    };
    e.context(format!(
        "the file system at {} ran out of room ({} free now{missing})",
        room.mount.display(),
        human(room.free)
    ))
}

/// [`explain`] for an I/O error (a writer's), which stays an I/O error of the same kind.
pub fn explain_io(e: std::io::Error, path: &Path) -> std::io::Error {
    if !full_io(&e) && !e.to_string().contains(&format!("(os error {ENOSPC})")) {
        return e;
    }
    let Ok(room) = of(path) else { return e };
    let text = if room.inodes == Some(0) {
        format!("the file system at {} ran out of inodes ({} free): {e}", room.mount.display(), human(room.free))
    } else {
        format!("the file system at {} ran out of room ({} free now): {e}", room.mount.display(), human(room.free))
    };
    std::io::Error::new(e.kind(), text)
}

/// Is `e`, beneath any context, the disk being full (ENOSPC, EDQUOT)?
pub fn is_full(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if full_io(io) {
                return true;
            }
            cause = io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static));
            continue;
        }
        cause = match c.downcast_ref::<Error>() {
            // Transparent variants show their inner error: look at it, not past it.
            Some(Error::Other(inner)) => Some(inner.as_ref()),
            Some(Error::Image(inner)) => Some(inner),
            Some(Error::Context { source, .. }) => Some(source.as_ref()),
            _ => c.source(),
        };
    }
    // Some layers keep only the text of the error beneath them.
    let line = e.one_line();
    [ENOSPC, EDQUOT].iter().any(|n| line.contains(&format!("(os error {n})")))
}

fn full_io(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(n) if n == ENOSPC || n == EDQUOT)
}

const ENOSPC: i32 = nix::errno::Errno::ENOSPC as i32;
const EDQUOT: i32 = nix::errno::Errno::EDQUOT as i32;

/// The bytes the files under `dir` take on its file system (what a job that failed there left
/// of what it wrote); 0 if there is no `dir`.
pub fn used(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else { return 0 };
    let mut sum = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != top.dev() {
                continue;
            }
            if m.is_dir() {
                todo.push(entry.path());
            } else {
                sum = sum.saturating_add(m.blocks().saturating_mul(512));
            }
        }
    }
    sum
}

/// `path` if it exists, else its nearest existing ancestor (`.` for a relative path with none).
fn nearest_existing(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut p = abs.as_path();
    loop {
        if std::fs::symlink_metadata(p).is_ok() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return PathBuf::from("."),
        }
    }
}

/// The mount point of the file system that holds the existing `path`: the last directory up
/// from it on the same device.
fn mount_point(path: &Path) -> PathBuf {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(dev) = std::fs::metadata(&path).map(|m| m.dev()) else { return path };
    let mut at = path.as_path();
    while let Some(parent) = at.parent() {
        if std::fs::metadata(parent).map(|m| m.dev()).ok() != Some(dev) {
            break;
        }
        at = parent;
    }
    at.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_found_beneath_contexts_and_text() {
        let io = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        assert!(is_full(&Error::from(io).context("write x").context("restore failed")));
        let fs = coffer_fs::FsError::Io {
            op: "write",
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(nix::errno::Errno::EDQUOT as i32),
        };
        assert!(is_full(&Error::from(fs).context("restore")));
        assert!(is_full(&Error::msg("the transfer failed: No space left on device (os error 28)")));
        assert!(!is_full(&Error::from(std::io::Error::other("disk")).context("x")));
        assert!(!is_full(&Error::msg("os error 2")));
    }

    #[test]
    fn the_room_of_a_path_yet_to_be_made_is_its_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let room = of(&dir.path().join("a/b/c")).unwrap();
        assert!(room.block >= 512, "{room:?}");
        assert!(dir.path().canonicalize().unwrap().starts_with(&room.mount));
        let err = check(dir.path(), u64::MAX, "the restore of x").unwrap_err().one_line();
        assert!(err.contains("the restore of x needs") && err.contains("missing"), "{err}");
        assert!(err.contains(&format!("the file system at {} has", room.mount.display())), "{err}");
    }
}
