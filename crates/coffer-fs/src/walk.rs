//! Walks a directory tree depth-first in byte order of names, so the same tree always gives the
//! same entries in the same order: a directory's entry comes before its contents, and the first
//! name of a hard-linked file carries the data while later names become hard-link entries.
//!
//! Only the root is opened by its path (and followed if it is a symlink). Everything under it
//! is opened from its directory's handle without following symlinks (see `crate::at`), and
//! a regular file is opened by the walk itself: its contents are read from that handle, never
//! reopened by path. A subdirectory swapped for a symlink while the walk runs (by someone who
//! can write in the tree) is refused, so nothing outside the tree is ever read, at any depth.

use crate::at::{dir_flags, id_of, open_in, DirStack};
use crate::owner::NameCache;
use crate::{nix_err, FsError};
use coffer_format::entry::MAX_PATH_LEN;
use coffer_format::{EntryKind, EntryMeta};
use nix::errno::Errno;
use nix::fcntl::{fcntl, readlinkat, FcntlArg, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One entry of the tree.
#[derive(Debug)]
pub struct WalkItem {
    pub meta: EntryMeta,
    /// Where a regular file is, for messages (its contents are read from [`WalkItem::file`]).
    pub source: Option<PathBuf>,
    /// A regular file, opened by the walk without following symlinks: the file `meta`
    /// describes. Read its contents from here.
    pub file: Option<File>,
    /// Whether the file has holes (allocated less than its size), so readers look for them.
    pub sparse: bool,
}

/// Iterator over the entries under a root directory, the root itself first (with an empty path).
pub struct Walker {
    root: PathBuf,
    started: bool,
    stack: Option<DirStack>,
    links: HashMap<(u64, u64), Vec<u8>>,
    names: NameCache,
    exclude: HashSet<(u64, u64)>,
    /// Sockets, FIFOs and devices met on the way, which an image does not hold.
    pub skipped: Vec<PathBuf>,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker").field("root", &self.root).finish_non_exhaustive()
    }
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn changed(path: PathBuf, detail: &str) -> FsError {
    FsError::Changed { path, detail: detail.into() }
}

/// The path of the entry `name` of the current directory, relative to the root; refused past
/// the longest path the format holds.
fn entry_path(stack: &DirStack, name: &OsStr) -> Result<Vec<u8>, FsError> {
    // Paths for messages are made only when needed: at depth they are long.
    let mut rel = Vec::with_capacity(stack.rel().len() + 1 + name.len());
    rel.extend_from_slice(stack.rel());
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name.as_bytes());
    if rel.len() > MAX_PATH_LEN {
        return Err(changed(stack.shown(name), "path longer than 65535 bytes"));
    }
    Ok(rel)
}

/// Opens the directory `name` in `dir` (the current directory of `stack`) without following a
/// symlink: its handle and what it is (the directory the walk reads from now on).
fn open_dir(stack: &DirStack, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(OwnedFd, FileStat), FsError> {
    let fd = match open_in(dir, name, dir_flags()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
            return Err(changed(stack.shown(name), "is no longer a directory (replaced while it was backed up)"))
        }
        Err(e) => return Err(nix_err("open directory", stack.shown(name))(e)),
    };
    // What the walk reads from now on is this handle's directory: describe that one.
    let st = fstat(&fd).map_err(|e| nix_err("stat", stack.shown(name))(e))?;
    Ok((fd, st))
}

/// Opens the regular file `name` in `dir` (the current directory of `stack`) for reading: its
/// handle and what it is, refused if something else took its place.
fn open_file(stack: &DirStack, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(OwnedFd, FileStat), FsError> {
    // Non-blocking: if a FIFO took the file's place, opening it must not hang.
    let fd = match open_in(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(changed(stack.shown(name), "is no longer a regular file")),
        Err(e) => return Err(nix_err("open", stack.shown(name))(e)),
    };
    let st = fstat(&fd).map_err(|e| nix_err("stat", stack.shown(name))(e))?;
    if kind_of(&st) != SFlag::S_IFREG {
        return Err(changed(stack.shown(name), "is no longer a regular file"));
    }
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_RDONLY)).map_err(|e| nix_err("open", stack.shown(name))(e))?;
    Ok((fd, st))
}

/// The target of the symlink `name` in `dir` (the current directory of `stack`).
fn read_link(stack: &DirStack, dir: BorrowedFd<'_>, name: &OsStr) -> Result<std::ffi::OsString, FsError> {
    match readlinkat(dir, name) {
        Ok(t) => Ok(t),
        Err(Errno::EINVAL) => Err(changed(stack.shown(name), "is no longer a symlink")),
        Err(e) => Err(nix_err("read link", stack.shown(name))(e)),
    }
}

impl Walker {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            started: false,
            stack: None,
            links: HashMap::new(),
            names: NameCache::default(),
            exclude: HashSet::new(),
            skipped: Vec::new(),
        }
    }

    /// Leaves out the file with this metadata (the image being written, if it lies in the tree).
    pub fn exclude(&mut self, md: &Metadata) {
        self.exclude.insert((md.dev(), md.ino()));
    }

    #[allow(clippy::useless_conversion)] // time_t and its nanoseconds are narrower on some targets
    fn meta(&mut self, kind: EntryKind, path: Vec<u8>, st: &FileStat) -> EntryMeta {
        EntryMeta {
            kind,
            continues: false,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime_sec: i64::from(st.st_mtime),
            mtime_nsec: i64::from(st.st_mtime_nsec).clamp(0, 999_999_999) as u32,
            size: if kind == EntryKind::File { u64::try_from(st.st_size).unwrap_or(0) } else { 0 },
            path,
            target: Vec::new(),
            uname: self.names.user_name(st.st_uid),
            gname: self.names.group_name(st.st_gid),
        }
    }

    fn start(&mut self) -> Result<WalkItem, FsError> {
        // The root is followed if it is a symlink (a datadir is often a link to a bigger disk);
        // symlinks inside the tree are stored as links.
        let root = &self.root;
        let fd = match nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR) => return Err(FsError::NotADirectory(root.clone())),
            Err(e) => return Err(nix_err("open", root)(e)),
        };
        let st = fstat(&fd).map_err(nix_err("stat", root))?;
        self.stack = Some(DirStack::new(root, fd)?);
        Ok(WalkItem { meta: self.meta(EntryKind::Dir, Vec::new(), &st), source: None, file: None, sparse: false })
    }

    /// The entry `name` of the current directory.
    fn visit(&mut self, name: &OsStr) -> Result<Option<WalkItem>, FsError> {
        let Some(stack) = self.stack.as_mut() else { return Ok(None) };
        let Some(dir) = stack.fd() else { return Ok(None) };
        let rel = entry_path(stack, name)?;
        let st = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| nix_err("stat", stack.shown(name))(e))?;
        let kind = kind_of(&st);
        if kind == SFlag::S_IFDIR {
            let (fd, st) = open_dir(stack, dir, name)?;
            stack.push(name, fd, &st)?;
            return Ok(Some(WalkItem {
                meta: self.meta(EntryKind::Dir, rel, &st),
                source: None,
                file: None,
                sparse: false,
            }));
        }
        if kind == SFlag::S_IFREG {
            if self.exclude.contains(&id_of(&st)) {
                return Ok(None);
            }
            let (fd, st) = open_file(stack, dir, name)?;
            let id = id_of(&st);
            if self.exclude.contains(&id) {
                return Ok(None);
            }
            if st.st_nlink > 1 {
                if let Some(first) = self.links.get(&id).cloned() {
                    let mut meta = self.meta(EntryKind::HardLink, rel, &st);
                    meta.target = first;
                    return Ok(Some(WalkItem { meta, source: None, file: None, sparse: false }));
                }
                self.links.insert(id, rel.clone());
            }
            let shown = stack.shown(name);
            let size = u64::try_from(st.st_size).unwrap_or(0);
            let sparse = u64::try_from(st.st_blocks).unwrap_or(u64::MAX).saturating_mul(512) < size;
            let meta = self.meta(EntryKind::File, rel, &st);
            return Ok(Some(WalkItem { meta, source: Some(shown), file: Some(File::from(fd)), sparse }));
        }
        if kind == SFlag::S_IFLNK {
            let target = read_link(stack, dir, name)?;
            let mut meta = self.meta(EntryKind::Symlink, rel, &st);
            meta.target = target.into_vec();
            return Ok(Some(WalkItem { meta, source: None, file: None, sparse: false }));
        }
        if kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK || kind == SFlag::S_IFBLK || kind == SFlag::S_IFCHR {
            self.skipped.push(stack.shown(name));
        }
        Ok(None)
    }

    fn step(&mut self) -> Result<Option<WalkItem>, FsError> {
        if !self.started {
            self.started = true;
            return self.start().map(Some);
        }
        while let Some(stack) = self.stack.as_mut() {
            let Some(name) = stack.next_name() else {
                if !stack.pop()? {
                    self.stack = None;
                }
                continue;
            };
            if let Some(item) = self.visit(&name)? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }
}

impl Iterator for Walker {
    type Item = Result<WalkItem, FsError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => None,
            Err(e) => {
                self.stack = None;
                Some(Err(e))
            }
        }
    }
}

/// The path of an entry under `root`, for messages.
pub fn display_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_byte_order_with_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("b")).unwrap();
        std::fs::write(root.join("b/z"), b"z").unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        std::fs::hard_link(root.join("a"), root.join("c")).unwrap();
        std::os::unix::fs::symlink("a", root.join("d")).unwrap();
        let items: Vec<_> = Walker::new(root).map(|r| r.unwrap()).collect();
        let got: Vec<_> =
            items.iter().map(|i| (String::from_utf8_lossy(&i.meta.path).into_owned(), i.meta.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("".into(), EntryKind::Dir),
                ("a".into(), EntryKind::File),
                ("b".into(), EntryKind::Dir),
                ("b/z".into(), EntryKind::File),
                ("c".into(), EntryKind::HardLink),
                ("d".into(), EntryKind::Symlink),
            ]
        );
        assert_eq!(items[4].meta.target, b"a");
        assert_eq!(items[5].meta.target, b"a");
        assert_eq!(items[1].meta.size, 1);
    }

    #[test]
    fn a_symlinked_root_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let items: Vec<_> = Walker::new(dir.path().join("link")).map(|r| r.unwrap()).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].meta.path, b"f");
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_never_followed() {
        use std::io::Read;
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(root.join("sub/f"), b"inside").unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        let swap = || {
            std::fs::rename(root.join("sub"), t.path().join("old")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        };

        // Swapped once the walk is inside: it goes on in the directory it opened.
        let mut w = Walker::new(&root);
        assert_eq!(w.next().unwrap().unwrap().meta.path, b"");
        assert_eq!(w.next().unwrap().unwrap().meta.path, b"sub");
        swap();
        let mut f = w.next().unwrap().unwrap();
        assert_eq!(f.meta.path, b"sub/f");
        let mut data = String::new();
        f.file.take().unwrap().read_to_string(&mut data).unwrap();
        assert_eq!(data, "inside");
        assert!(w.next().is_none());

        // Swapped before the walk gets there: a symlink, stored as one.
        std::fs::remove_file(root.join("sub")).unwrap();
        std::fs::rename(t.path().join("old"), root.join("sub")).unwrap();
        let mut w = Walker::new(&root);
        assert_eq!(w.next().unwrap().unwrap().meta.path, b"");
        swap();
        let items: Vec<_> = w.map(|i| i.unwrap()).collect();
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].meta.kind, items[0].meta.path.as_slice()), (EntryKind::Symlink, &b"sub"[..]));
    }

    #[test]
    fn a_file_is_not_a_tree() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(Walker::new(f.path()).next(), Some(Err(FsError::NotADirectory(_)))));
    }
}
