//! Creating directories, symlinks and hard links, and placing entries under their names.

use super::{os, out_of_order, split_parent, time, Restorer, JOURNAL, MARKER};
use crate::{nix_err, FsError};
use coffer_format::entry::check_relative_path;
use coffer_format::{EntryKind, EntryMeta};
use nix::errno::Errno;
use nix::fcntl::{renameat, renameat2, AtFlags, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, UnlinkatFlags};
use std::os::fd::BorrowedFd;
use std::path::Path;

impl Restorer {
    /// Fails if `name` exists in `parent` and we may not replace it; directories may pre-exist
    /// for directory entries.
    fn check_clobber(&mut self, parent: &[u8], name: &[u8], rel: &[u8], kind: EntryKind) -> Result<(), FsError> {
        let force = self.opts.force;
        let shown = self.shown(rel);
        let dir = self.dir_fd(parent, true)?;
        match fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(nix_err("stat", shown)(e)),
            Ok(st) => {
                let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                match (kind == EntryKind::Dir, is_dir) {
                    (true, true) => Ok(()),
                    (false, true) => {
                        Err(FsError::Io { op: "replace", path: shown, source: std::io::Error::from(Errno::EISDIR) })
                    }
                    _ if force => {
                        if kind == EntryKind::Dir {
                            unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir).map_err(nix_err("remove", shown))?;
                        }
                        Ok(())
                    }
                    _ => Err(FsError::Io {
                        op: "refusing to overwrite (use --force)",
                        path: shown,
                        source: std::io::Error::from(Errno::EEXIST),
                    }),
                }
            }
        }
    }

    /// Starts an entry. For a file, follow with [`Restorer::write`] calls and
    /// [`Restorer::end_file`].
    pub fn begin(&mut self, meta: &EntryMeta) -> Result<(), FsError> {
        if self.file.is_some() {
            return Err(out_of_order("an entry began while a file was open"));
        }
        if meta.path.is_empty() {
            if meta.kind != EntryKind::Dir {
                return Err(Self::unsafe_entry(b"", "the root entry is not a directory"));
            }
            self.root_meta = Some(meta.clone());
            return Ok(());
        }
        let rel = meta.path.as_slice();
        check_relative_path(rel).map_err(|e| Self::unsafe_entry(rel, e.to_string()))?;
        let own = [MARKER, JOURNAL, crate::private::LOCK];
        if self.opts.whole_tree && own.iter().any(|n| rel == n.as_bytes()) {
            return Err(Self::unsafe_entry(rel, "a name coffer keeps for its own bookkeeping"));
        }
        let (parent, name) = split_parent(rel);
        if !self.opts.whole_tree && !meta.continues {
            // Extracting into a directory that may hold anything: fail before writing data.
            // (A whole-tree restore starts empty or with --force; renames refuse to replace.)
            self.check_clobber(parent, name, rel, meta.kind)?;
        }
        match meta.kind {
            EntryKind::Dir => self.create_dir(meta, parent, name),
            EntryKind::Symlink => self.create_symlink(meta, parent, name),
            EntryKind::HardLink => self.create_hard_link(meta, parent, name),
            EntryKind::File if meta.continues => self.resume_file(rel),
            EntryKind::File => self.create_file(meta, parent, name),
        }
    }

    /// A directory entry: created with mode 0700 (its own is set by [`Restorer::finish`]), or
    /// kept if one is there.
    fn create_dir(&mut self, meta: &EntryMeta, parent: &[u8], name: &[u8]) -> Result<(), FsError> {
        let rel = meta.path.as_slice();
        let force = self.opts.force;
        let shown = self.shown(rel);
        let dir = self.dir_fd(parent, true)?;
        match mkdirat(dir, os(name), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => replace_with_dir(dir, name, force, &shown)?,
            Err(e) => return Err(nix_err("create directory", shown)(e)),
        }
        self.dirs.push(meta.clone());
        self.stats.dirs += 1;
        Ok(())
    }

    /// A symlink entry, with its owner and time, placed under its name.
    fn create_symlink(&mut self, meta: &EntryMeta, parent: &[u8], name: &[u8]) -> Result<(), FsError> {
        let rel = meta.path.as_slice();
        let force = self.opts.force;
        let tmp = self.new_name(name);
        let owner = self.owner_of(meta);
        let shown = self.shown(rel);
        let dir = self.dir_fd(parent, true)?;
        symlinkat(os(&meta.target), dir, os(&tmp)).map_err(nix_err("create symlink", shown.clone()))?;
        if let Some((u, g)) = owner {
            fchownat(dir, os(&tmp), Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(nix_err("chown", shown.clone()))?;
        }
        let t = time(meta.mtime_sec, meta.mtime_nsec);
        nix::sys::stat::utimensat(
            dir,
            os(&tmp),
            &TimeSpec::UTIME_NOW,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(nix_err("set times of", shown.clone()))?;
        if tmp != name {
            place(dir, &tmp, name, force, &shown)?;
        }
        self.stats.symlinks += 1;
        Ok(())
    }

    /// A hard link entry: only to a file this restore (or the one it resumes) completed.
    fn create_hard_link(&mut self, meta: &EntryMeta, parent: &[u8], name: &[u8]) -> Result<(), FsError> {
        let rel = meta.path.as_slice();
        let force = self.opts.force;
        // The target's rename into place may still be queued.
        self.settle()?;
        if !self.restored_files.contains(&meta.target) {
            return Err(Self::unsafe_entry(
                rel,
                format!(
                    "hard link to {:?}, which is not a file restored before it",
                    String::from_utf8_lossy(&meta.target)
                ),
            ));
        }
        let (tparent, tname) = split_parent(&meta.target);
        let tdir = nix::unistd::dup(self.dir_fd(tparent, false)?).map_err(nix_err("dup", &self.root_path))?;
        let tmp = self.new_name(name);
        let shown = self.shown(rel);
        let dir = self.dir_fd(parent, true)?;
        linkat(&tdir, os(tname), dir, os(&tmp), AtFlags::empty())
            .map_err(exists_refused(nix_err("create hard link", shown.clone()), &shown))?;
        if tmp != name {
            place(dir, &tmp, name, force, &shown)?;
            // rename(2) onto another name of the same file does nothing: when the run this one
            // resumes had made this very link, the temporary name would stay.
            match unlinkat(dir, os(&tmp), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(nix_err("remove", shown)(e)),
            }
        }
        self.stats.hardlinks += 1;
        Ok(())
    }
}

/// A name that exists where a new entry is created under its own name: the same refusal as a
/// rename into place gives.
pub(super) fn exists_refused<'a>(
    other: impl FnOnce(Errno) -> FsError + 'a,
    shown: &'a Path,
) -> impl FnOnce(Errno) -> FsError + 'a {
    move |e| match e {
        Errno::EEXIST => FsError::Io {
            op: "refusing to overwrite (use --force)",
            path: shown.into(),
            source: std::io::Error::from(Errno::EEXIST),
        },
        e => other(e),
    }
}

/// Renames a finished entry from its temporary name to its name: replacing what is there only
/// with `force` (and never a directory).
pub(super) fn place(dir: BorrowedFd<'_>, tmp: &[u8], name: &[u8], force: bool, shown: &Path) -> Result<(), FsError> {
    let refused = || FsError::Io {
        op: "refusing to overwrite (use --force)",
        path: shown.into(),
        source: std::io::Error::from(Errno::EEXIST),
    };
    if !force {
        match renameat2(dir, os(tmp), dir, os(name), RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EEXIST) => {
                let _ = unlinkat(dir, os(tmp), UnlinkatFlags::NoRemoveDir);
                return Err(refused());
            }
            // File systems without RENAME_NOREPLACE: look first.
            Err(Errno::EINVAL) => {
                if fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                    let _ = unlinkat(dir, os(tmp), UnlinkatFlags::NoRemoveDir);
                    return Err(refused());
                }
            }
            Err(e) => return Err(nix_err("rename into place", shown)(e)),
        }
    }
    renameat(dir, os(tmp), dir, os(name)).map_err(nix_err("rename into place", shown))
}

/// `name` exists where a directory entry goes: fine if it is a directory; replaced with one
/// under `force`; refused otherwise.
fn replace_with_dir(dir: BorrowedFd<'_>, name: &[u8], force: bool, shown: &Path) -> Result<(), FsError> {
    let st = fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_err("stat", shown))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        return Ok(());
    }
    if !force {
        return Err(FsError::Io {
            op: "refusing to overwrite (use --force)",
            path: shown.into(),
            source: std::io::Error::from(Errno::EEXIST),
        });
    }
    unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir).map_err(nix_err("remove", shown))?;
    mkdirat(dir, os(name), Mode::from_bits_truncate(0o700)).map_err(nix_err("create directory", shown))
}
