//! Making a restore durable. Where the file system honours `syncfs` (ext4, xfs, btrfs, tmpfs:
//! a local disk's whole cache is written and flushed at once), one `syncfs` does it. FUSE file
//! systems (sshfs, s3fs, ...) never see a `syncfs`: the kernel sends the daemon nothing for it
//! (only virtiofs and, since Linux 6.18, fuseblk get one; both are treated as FUSE here), so
//! there every file and directory is `fsync`ed, which the daemon does receive. Found on the
//! power-cut file system of `crates/powercut`: with `syncfs` alone, a restore said done and
//! the tree was gone after a cut.

use super::MARKER;
use crate::at::dir_flags;
use crate::{io_err, nix_err, FsError};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, FUSE_SUPER_MAGIC};
use nix::unistd::fsync;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Does `syncfs` on the file system of `dir` reach stable storage? Not on FUSE; where the
/// type cannot be read, it is assumed to.
pub(super) fn syncfs_reaches_disk(dir: BorrowedFd<'_>) -> bool {
    fstatfs(dir).map(|s| s.filesystem_type() != FUSE_SUPER_MAGIC).unwrap_or(true)
}

/// `fsync` of every directory under `root` (each after its entries), and of `root` itself;
/// with `files`, of every regular file too. Symlinks and special files are made durable with
/// the directory that names them. A restore flushes its files as it completes them, through
/// the descriptor it wrote them with, and its directories before it gives them their modes:
/// a user other than root could open neither again once a mode such as 0000 is set.
pub(super) fn sync_tree(root: BorrowedFd<'_>, shown: &Path, files: bool) -> Result<(), FsError> {
    let names = |fd: BorrowedFd<'_>, p: &Path| crate::at::list(fd).map_err(nix_err("read directory", p));
    let mut stack: Vec<(OwnedFd, PathBuf, Vec<OsString>)> = Vec::new();
    let top = nix::unistd::dup(root).map_err(nix_err("dup", shown))?;
    let first = names(top.as_fd(), shown)?;
    stack.push((top, shown.to_path_buf(), first));
    while let Some((dir, path, rest)) = stack.last_mut() {
        let Some(name) = rest.pop() else {
            fsync(&*dir).map_err(nix_err("flush", path.as_path()))?;
            stack.pop();
            continue;
        };
        let at = path.join(&name);
        let st = match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(nix_err("stat", at)(e)),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFDIR {
            let fd = openat(dir.as_fd(), name.as_os_str(), dir_flags(), Mode::empty())
                .map_err(nix_err("open directory", at.clone()))?;
            let inner = names(fd.as_fd(), &at)?;
            stack.push((fd, at, inner));
        } else if kind == SFlag::S_IFREG && files {
            let fd = open_file(dir.as_fd(), &name).map_err(nix_err("open", at.clone()))?;
            fsync(&fd).map_err(nix_err("flush", at))?;
        }
    }
    Ok(())
}

/// A regular file opened to be flushed: for reading, or, for a file its mode lets us only
/// write (a non-root restore of mode 0200), for writing.
fn open_file(dir: BorrowedFd<'_>, name: &OsString) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    match openat(dir, name.as_os_str(), flags | OFlag::O_RDONLY, Mode::empty()) {
        Err(Errno::EACCES) => openat(dir, name.as_os_str(), flags | OFlag::O_WRONLY, Mode::empty()),
        r => r,
    }
}

/// Makes the marker and the target's own name durable before anything is restored, so a cut
/// can never leave restored entries without the marker that says they are incomplete:
/// the marker, the target, and each directory whose new entry leads to it (`created`: the
/// directories from the first one that existed down to the target's parent).
pub(super) fn marker_durable(root: BorrowedFd<'_>, shown: &Path, created: &[PathBuf]) -> Result<(), FsError> {
    let marker = openat(root, MARKER, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(nix_err("open", shown.join(MARKER)))?;
    fsync(&marker).map_err(nix_err("flush", shown.join(MARKER)))?;
    fsync(root).map_err(nix_err("flush", shown))?;
    for dir in created {
        crate::sync::sync_dir(dir).map_err(io_err("flush", dir))?;
    }
    Ok(())
}
