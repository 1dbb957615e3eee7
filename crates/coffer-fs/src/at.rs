//! Resolving names from directory handles, one component at a time and never through a
//! symlink, and walking trees of any depth with a bounded number of open descriptors.
//!
//! A path is only ever used to open the top of a tree (the directory named on the command
//! line, or a restore's target). Below it every directory and file is opened by its name
//! relative to its parent's handle with `O_NOFOLLOW` (through `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it), so a directory swapped
//! for a symlink while coffer works is refused instead of followed.
//!
//! Depth is not limited by `PATH_MAX` nor by the descriptor limit: a walk keeps handles on the
//! deepest [`OPEN_DIRS`] directories only, and reopens a shallower one through `..` of its
//! child, accepted only if it is the same directory (device and inode) as the one opened on the
//! way down.

use crate::{nix_err, FsError};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat, Mode};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Directory handles a walk keeps open at most (besides the one it is in).
pub(crate) const OPEN_DIRS: usize = 32;

/// Set once `openat2` turned out to be missing (Linux before 5.6) or filtered out.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Flags to open a directory handle with.
pub(crate) fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// (device, inode): what identifies a file while it exists.
#[allow(clippy::useless_conversion)] // dev_t and ino_t are narrower on some targets
pub(crate) fn id_of(st: &FileStat) -> (u64, u64) {
    (u64::from(st.st_dev), u64::from(st.st_ino))
}

/// Is `name` a single component that names something inside a directory?
fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/')
}

/// Opens `name`, one component of `dir`, without following a symlink (`ELOOP` if it is one).
/// `O_NOFOLLOW` and `O_CLOEXEC` are added to `flags`. A name that is empty, `.`, `..` or holds
/// a `/` is refused with `EINVAL`: nothing opened this way leaves `dir`.
pub(crate) fn open_in(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    open_in_with(dir, name, flags, !NO_OPENAT2.load(Ordering::Relaxed))
}

fn open_in_with(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag, try_openat2: bool) -> nix::Result<OwnedFd> {
    if !is_plain_name(name.as_bytes()) {
        return Err(Errno::EINVAL);
    }
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if try_openat2 {
        let resolve =
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        match openat2(dir, name, OpenHow::new().flags(flags).resolve(resolve)) {
            // Not in this kernel, or refused by a seccomp filter (containers): openat from now on.
            Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::E2BIG) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // A flag this kernel's openat2 does not take (openat ignores unknown ones).
            Err(Errno::EINVAL) => {}
            other => return other,
        }
    }
    openat(dir, name, flags, Mode::empty())
}

/// The names in a directory (without `.` and `..`), in byte order.
pub(crate) fn list(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    // A handle of its own: reading moves the offset, which a duplicate would share.
    let mut d = Dir::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for e in d.iter() {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Reopens the parent of `child` through its `..`, accepted only if it is the directory `id`.
/// `None` if it is not (the tree was moved meanwhile).
pub(crate) fn reopen_parent(child: BorrowedFd<'_>, id: (u64, u64)) -> nix::Result<Option<OwnedFd>> {
    let fd = openat(child, "..", dir_flags(), Mode::empty())?;
    Ok((id_of(&fstat(&fd)?) == id).then_some(fd))
}

struct Frame<F> {
    fd: F,
    id: (u64, u64),
    names: std::vec::IntoIter<OsString>,
    /// Length of this directory's path in [`DirStack::rel`].
    rel_len: usize,
}

/// A depth-first position in a directory tree: the directories from the root to the current
/// one, each with the names not visited yet. Handles stay open on the current directory and
/// the [`OPEN_DIRS`] above it.
pub(crate) struct DirStack {
    top: Option<Frame<OwnedFd>>,
    below: Vec<Frame<Option<OwnedFd>>>,
    /// The current directory's path relative to the root ("" at the root).
    rel: Vec<u8>,
    root: PathBuf,
}

impl DirStack {
    /// Starts at the directory `fd`, shown in messages as `root`.
    pub(crate) fn new(root: &Path, fd: OwnedFd) -> Result<Self, FsError> {
        let st = fstat(&fd).map_err(nix_err("stat", root))?;
        let names = list(fd.as_fd()).map_err(nix_err("read directory", root))?;
        let top = Frame { fd, id: id_of(&st), names: names.into_iter(), rel_len: 0 };
        Ok(Self { top: Some(top), below: Vec::new(), rel: Vec::new(), root: root.into() })
    }

    /// The current directory's handle; `None` once the walk is over.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.top.as_ref().map(|t| t.fd.as_fd())
    }

    /// The current directory's path relative to the root.
    pub(crate) fn rel(&self) -> &[u8] {
        &self.rel
    }

    /// `name` in the current directory, as a path for messages.
    pub(crate) fn shown(&self, name: &OsStr) -> PathBuf {
        let mut p = self.root.join(OsStr::from_bytes(&self.rel));
        p.push(name);
        p
    }

    /// The next name of the current directory not visited yet.
    pub(crate) fn next_name(&mut self) -> Option<OsString> {
        self.top.as_mut().and_then(|t| t.names.next())
    }

    /// Enters `name`, a directory of the current one that the caller opened as `fd` (with
    /// [`open_in`]): its names are read, and it becomes the current directory.
    pub(crate) fn push(&mut self, name: &OsStr, fd: OwnedFd, st: &FileStat) -> Result<(), FsError> {
        let names = list(fd.as_fd()).map_err(|e| nix_err("read directory", self.shown(name))(e))?;
        let Some(parent) = self.top.take() else {
            return Err(FsError::Changed { path: self.shown(name), detail: "entered after the walk ended".into() });
        };
        self.below.push(Frame { fd: Some(parent.fd), id: parent.id, names: parent.names, rel_len: parent.rel_len });
        if let Some(far) = self.below.len().checked_sub(OPEN_DIRS + 1) {
            self.below[far].fd = None;
        }
        if !self.rel.is_empty() {
            self.rel.push(b'/');
        }
        self.rel.extend_from_slice(name.as_bytes());
        self.top = Some(Frame { fd, id: id_of(st), names: names.into_iter(), rel_len: self.rel.len() });
        Ok(())
    }

    /// Leaves the current directory for its parent; false if it was the root (the walk is
    /// over). A parent whose handle was let go is reopened through `..` and must be the
    /// directory it was.
    pub(crate) fn pop(&mut self) -> Result<bool, FsError> {
        let Some(child) = self.top.take() else { return Ok(false) };
        let Some(parent) = self.below.pop() else { return Ok(false) };
        self.rel.truncate(parent.rel_len);
        let fd = match parent.fd {
            Some(fd) => fd,
            None => {
                let shown = self.root.join(OsStr::from_bytes(&self.rel));
                match reopen_parent(child.fd.as_fd(), parent.id).map_err(nix_err("open directory", &shown))? {
                    Some(fd) => fd,
                    None => return Err(FsError::Changed { path: shown, detail: "was moved while it was read".into() }),
                }
            }
        };
        self.top = Some(Frame { fd, id: parent.id, names: parent.names, rel_len: parent.rel_len });
        Ok(true)
    }

    /// How deep the current directory is (0 at the root).
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.below.len()
    }

    /// Open directory handles held.
    #[cfg(test)]
    pub(crate) fn open_handles(&self) -> usize {
        self.below.iter().filter(|f| f.fd.is_some()).count() + usize::from(self.top.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn open_in_refuses_symlinks_and_paths_with_and_without_openat2() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", t.path().join("l")).unwrap();
        std::os::unix::fs::symlink("d/f", t.path().join("lf")).unwrap();
        let root = open_dir(t.path());
        for with in [true, false] {
            let o = |name: &str, flags| open_in_with(root.as_fd(), OsStr::new(name), flags, with);
            assert!(o("d", dir_flags()).is_ok());
            assert!(o("d", OFlag::O_RDONLY).is_ok());
            // With O_DIRECTORY the kernel may say ENOTDIR instead of ELOOP.
            assert!(matches!(o("l", dir_flags()), Err(Errno::ELOOP) | Err(Errno::ENOTDIR)), "openat2 {with}");
            assert!(matches!(o("lf", OFlag::O_RDONLY), Err(Errno::ELOOP)), "openat2 {with}");
            for bad in ["d/f", "..", ".", "", "/etc"] {
                assert_eq!(o(bad, OFlag::O_RDONLY).unwrap_err(), Errno::EINVAL, "{bad:?}");
            }
        }
    }

    #[test]
    fn a_deep_walk_holds_few_handles_and_checks_what_it_reopens() {
        let t = tempfile::tempdir().unwrap();
        let depth = 3 * OPEN_DIRS + 5;
        let mut p = t.path().to_path_buf();
        for _ in 0..depth {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::create_dir(t.path().join("e")).unwrap();
        let mut s = DirStack::new(t.path(), open_dir(t.path())).unwrap();
        let mut seen = vec![];
        let mut most = 0;
        loop {
            let Some(name) = s.next_name() else {
                if !s.pop().unwrap() {
                    break;
                }
                continue;
            };
            let fd = open_in(s.fd().unwrap(), &name, dir_flags()).unwrap();
            let st = fstat(&fd).unwrap();
            s.push(&name, fd, &st).unwrap();
            seen.push(s.rel().len());
            most = most.max(s.open_handles());
            assert!(s.depth() <= depth);
        }
        assert_eq!(seen.len(), depth + 1);
        assert_eq!(*seen.iter().max().unwrap(), 2 * depth - 1);
        assert!(most <= OPEN_DIRS + 1, "{most} handles");

        // The directory above is moved away while the walk is deep: its `..` is another one.
        let mut s = DirStack::new(t.path(), open_dir(t.path())).unwrap();
        for _ in 0..OPEN_DIRS + 3 {
            let name = s.next_name().unwrap();
            let fd = open_in(s.fd().unwrap(), &name, dir_flags()).unwrap();
            let st = fstat(&fd).unwrap();
            s.push(&name, fd, &st).unwrap();
        }
        let elsewhere = t.path().join("e/moved");
        std::fs::rename(t.path().join("d"), &elsewhere).unwrap();
        let mut err = None;
        for _ in 0..OPEN_DIRS + 3 {
            if let Err(e) = s.pop() {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("a moved directory is noticed");
        assert!(matches!(err, FsError::Changed { .. }), "{err}");
    }
}
