//! Walks a directory tree depth-first in byte order of names, so the same tree always gives the
//! same entries in the same order: a directory's entry comes before its contents, and the first
//! name of a hard-linked file carries the data while later names become hard-link entries.

use crate::owner::NameCache;
use crate::{io_err, FsError};
use coffer_format::entry::MAX_PATH_LEN;
use coffer_format::{EntryKind, EntryMeta};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One entry of the tree.
#[derive(Debug)]
pub struct WalkItem {
    pub meta: EntryMeta,
    /// Where to read a regular file's contents from.
    pub source: Option<PathBuf>,
    /// Whether the file has holes (allocated less than its size), so readers look for them.
    pub sparse: bool,
}

struct DirState {
    rel: Vec<u8>,
    abs: PathBuf,
    names: Vec<OsString>,
    next: usize,
}

/// Iterator over the entries under a root directory, the root itself first (with an empty path).
pub struct Walker {
    root: PathBuf,
    started: bool,
    stack: Vec<DirState>,
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

impl Walker {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            started: false,
            stack: Vec::new(),
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

    fn meta(&mut self, kind: EntryKind, path: Vec<u8>, md: &Metadata) -> EntryMeta {
        EntryMeta {
            kind,
            continues: false,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime_sec: md.mtime(),
            mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
            size: if kind == EntryKind::File { md.size() } else { 0 },
            path,
            target: Vec::new(),
            uname: self.names.user_name(md.uid()),
            gname: self.names.group_name(md.gid()),
        }
    }

    fn open_dir(&self, rel: Vec<u8>, abs: PathBuf) -> Result<DirState, FsError> {
        let mut names = std::fs::read_dir(&abs)
            .map_err(io_err("read directory", &abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("read directory", &abs))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(DirState { rel, abs, names, next: 0 })
    }

    fn start(&mut self) -> Result<WalkItem, FsError> {
        // The root is followed if it is a symlink (a datadir is often a link to a bigger disk);
        // symlinks inside the tree are stored as links.
        let md = std::fs::metadata(&self.root).map_err(io_err("stat", &self.root))?;
        if !md.is_dir() {
            return Err(FsError::NotADirectory(self.root.clone()));
        }
        let dir = self.open_dir(Vec::new(), self.root.clone())?;
        self.stack.push(dir);
        Ok(WalkItem { meta: self.meta(EntryKind::Dir, Vec::new(), &md), source: None, sparse: false })
    }

    fn visit(&mut self, rel: Vec<u8>, abs: PathBuf) -> Result<Option<WalkItem>, FsError> {
        let md = std::fs::symlink_metadata(&abs).map_err(io_err("stat", &abs))?;
        if rel.len() > MAX_PATH_LEN {
            return Err(FsError::Changed { path: abs, detail: "path longer than 65535 bytes".into() });
        }
        let ft = md.file_type();
        let item = if ft.is_dir() {
            let dir = self.open_dir(rel.clone(), abs)?;
            self.stack.push(dir);
            WalkItem { meta: self.meta(EntryKind::Dir, rel, &md), source: None, sparse: false }
        } else if ft.is_file() {
            let id = (md.dev(), md.ino());
            if self.exclude.contains(&id) {
                return Ok(None);
            }
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&id).cloned() {
                    let mut meta = self.meta(EntryKind::HardLink, rel, &md);
                    meta.target = first;
                    return Ok(Some(WalkItem { meta, source: None, sparse: false }));
                }
                self.links.insert(id, rel.clone());
            }
            let sparse = md.blocks() * 512 < md.size();
            WalkItem { meta: self.meta(EntryKind::File, rel, &md), source: Some(abs), sparse }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&abs).map_err(io_err("read link", &abs))?;
            let mut meta = self.meta(EntryKind::Symlink, rel, &md);
            meta.target = target.into_os_string().into_vec();
            WalkItem { meta, source: None, sparse: false }
        } else if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
            self.skipped.push(abs);
            return Ok(None);
        } else {
            return Ok(None);
        };
        Ok(Some(item))
    }

    fn step(&mut self) -> Result<Option<WalkItem>, FsError> {
        if !self.started {
            self.started = true;
            return self.start().map(Some);
        }
        while let Some(top) = self.stack.last_mut() {
            if top.next == top.names.len() {
                self.stack.pop();
                continue;
            }
            let name = std::mem::take(&mut top.names[top.next]);
            top.next += 1;
            let abs = top.abs.join(&name);
            let mut rel = top.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            if let Some(item) = self.visit(rel, abs)? {
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
                self.stack.clear();
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
    fn a_file_is_not_a_tree() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(Walker::new(f.path()).next(), Some(Err(FsError::NotADirectory(_)))));
    }
}
