//! The file system's state, without FUSE: what a program sees, and what would be left after a
//! power cut.
//!
//! Two trees of inodes share inode numbers. `visible` is what every call sees and changes;
//! `durable` changes only at durability points: `fsync`/`fdatasync` of a file copy its data
//! and size (and, for `fsync`, its metadata), `fsyncdir` of a directory copies its entries. An
//! inode a durable directory names but that was never synced itself survives empty (a file of
//! size 0, a directory without entries), as a journalled create does. A power cut replaces
//! `visible` by `durable` and drops what no durable directory reaches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::SystemTime;

pub const ROOT: u64 = 1;

/// What kind of inode, with its contents.
#[derive(Debug, Clone)]
pub enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
    Symlink(PathBuf),
    /// A fifo, socket or device: `mode` says which.
    Special(u32),
}

/// Everything about an inode except its contents.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Permission bits and file type (`S_IFMT`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub kind: Kind,
    pub meta: Meta,
    pub nlink: u32,
}

impl Inode {
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(d) => d.len() as u64,
            Kind::Dir(e) => e.len() as u64,
            Kind::Symlink(t) => t.as_os_str().len() as u64,
            Kind::Special(_) => 0,
        }
    }

    pub fn entries(&self) -> Option<&BTreeMap<OsString, u64>> {
        match &self.kind {
            Kind::Dir(e) => Some(e),
            _ => None,
        }
    }

    /// What survives of an inode a durable directory names but nobody synced.
    fn skeleton(&self) -> Inode {
        let kind = match &self.kind {
            Kind::File(_) => Kind::File(Vec::new()),
            Kind::Dir(_) => Kind::Dir(BTreeMap::new()),
            k => k.clone(),
        };
        Inode { kind, meta: self.meta, nlink: self.nlink }
    }
}

/// One tree of inodes.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: HashMap<u64, Inode>,
}

impl Tree {
    /// A tree holding only an empty root directory.
    pub fn new(root_meta: Meta) -> Self {
        let root = Inode { kind: Kind::Dir(BTreeMap::new()), meta: root_meta, nlink: 2 };
        Tree { nodes: HashMap::from([(ROOT, root)]) }
    }

    /// Drops the inodes no directory reachable from the root names, and counts links again.
    fn collect(&mut self) {
        let mut links: HashMap<u64, u32> = HashMap::from([(ROOT, 2)]);
        let mut seen = HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            let children: Vec<u64> =
                self.nodes[&dir].entries().map(|e| e.values().copied().collect()).unwrap_or_default();
            for child in children {
                let Some(node) = self.nodes.get(&child) else { continue };
                let is_dir = matches!(node.kind, Kind::Dir(_));
                *links.entry(child).or_insert(if is_dir { 1 } else { 0 }) += 1;
                if is_dir {
                    *links.entry(dir).or_insert(2) += 1;
                }
                if seen.insert(child) && is_dir {
                    todo.push(child);
                }
            }
        }
        self.nodes.retain(|ino, _| seen.contains(ino));
        // Entries naming an inode the tree lacks would be dangling: drop them.
        let present: HashSet<u64> = self.nodes.keys().copied().collect();
        for node in self.nodes.values_mut() {
            if let Kind::Dir(e) = &mut node.kind {
                e.retain(|_, ino| present.contains(ino));
            }
        }
        for (ino, node) in &mut self.nodes {
            node.nlink = links.get(ino).copied().unwrap_or(1);
        }
    }

    /// One path from the root to `ino`, for logs.
    pub fn path_of(&self, ino: u64) -> Option<PathBuf> {
        if ino == ROOT {
            return Some(PathBuf::from("/"));
        }
        let mut todo = vec![(ROOT, PathBuf::from("/"))];
        while let Some((dir, path)) = todo.pop() {
            for (name, &child) in self.nodes.get(&dir)?.entries().into_iter().flatten() {
                let p = path.join(name);
                if child == ino {
                    return Some(p);
                }
                if self.nodes.get(&child).is_some_and(|n| n.entries().is_some()) {
                    todo.push((child, p));
                }
            }
        }
        None
    }
}

/// The visible and the durable tree.
#[derive(Debug, Clone)]
pub struct Model {
    pub visible: Tree,
    pub durable: Tree,
    next_ino: u64,
}

impl Model {
    pub fn new(root_meta: Meta) -> Self {
        let t = Tree::new(root_meta);
        Model { visible: t.clone(), durable: t, next_ino: ROOT + 1 }
    }

    /// Empties both trees. Inode numbers are never reused, so a kernel that still remembers an
    /// old inode cannot confuse it with a new one.
    pub fn reset(&mut self, root_meta: Meta) {
        let t = Tree::new(root_meta);
        self.visible = t.clone();
        self.durable = t;
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.visible.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.visible.nodes.get_mut(&ino)
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.get(parent)?.entries()?.get(name).copied()
    }

    /// Adds a new inode under `parent` (which must be a directory without `name`).
    pub fn insert(&mut self, parent: u64, name: &OsStr, kind: Kind, meta: Meta) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = matches!(kind, Kind::Dir(_));
        self.visible.nodes.insert(ino, Inode { kind, meta, nlink: if is_dir { 2 } else { 1 } });
        let p = self.get_mut(parent).expect("parent checked by the caller");
        if is_dir {
            p.nlink += 1;
        }
        if let Kind::Dir(e) = &mut p.kind {
            e.insert(name.to_owned(), ino);
        }
        ino
    }

    /// `fsync` (`datasync` false) or `fdatasync` of a file.
    pub fn sync_file(&mut self, ino: u64, datasync: bool) {
        let Some(v) = self.visible.nodes.get(&ino) else { return };
        match self.durable.nodes.get_mut(&ino) {
            Some(d) => {
                if let (Kind::File(dd), Kind::File(vd)) = (&mut d.kind, &v.kind) {
                    dd.clone_from(vd);
                }
                if !datasync {
                    d.meta = v.meta;
                }
            }
            None => {
                let mut d = v.clone();
                if let Kind::Dir(e) = &mut d.kind {
                    e.clear();
                }
                self.durable.nodes.insert(ino, d);
            }
        }
    }

    /// `fsyncdir`: the directory's entries and metadata become durable; inodes they name that
    /// the durable tree lacks enter it empty.
    pub fn sync_dir(&mut self, ino: u64) {
        let Some(v) = self.visible.nodes.get(&ino) else { return };
        let Some(entries) = v.entries().cloned() else { return self.sync_file(ino, false) };
        for child in entries.values() {
            if !self.durable.nodes.contains_key(child) {
                if let Some(c) = self.visible.nodes.get(child) {
                    self.durable.nodes.insert(*child, c.skeleton());
                }
            }
        }
        let d = self.durable.nodes.entry(ino).or_insert_with(|| v.skeleton());
        d.meta = v.meta;
        d.kind = Kind::Dir(entries);
    }

    /// The power cut: only what was made durable is left.
    pub fn cut(&mut self) {
        self.durable.collect();
        self.visible = self.durable.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        let t = SystemTime::UNIX_EPOCH;
        Meta { mode: 0o644, uid: 0, gid: 0, atime: t, mtime: t, ctime: t }
    }

    fn file(m: &mut Model, parent: u64, name: &str, data: &[u8]) -> u64 {
        m.insert(parent, OsStr::new(name), Kind::File(data.to_vec()), meta())
    }

    fn data(m: &Model, parent: u64, name: &str) -> Option<Vec<u8>> {
        match &m.get(m.lookup(parent, OsStr::new(name))?)?.kind {
            Kind::File(d) => Some(d.clone()),
            _ => None,
        }
    }

    #[test]
    fn only_synced_data_and_entries_survive_a_cut() {
        let mut m = Model::new(meta());
        let f = file(&mut m, ROOT, "f", b"one");
        m.sync_file(f, true);
        m.cut();
        assert_eq!(data(&m, ROOT, "f"), None, "its name was never synced");

        let f = file(&mut m, ROOT, "f", b"one");
        m.sync_dir(ROOT);
        m.cut();
        assert_eq!(data(&m, ROOT, "f"), Some(Vec::new()), "a durable name, data never synced");

        let Kind::File(d) = &mut m.get_mut(f).unwrap().kind else { unreachable!() };
        d.extend_from_slice(b"two");
        m.sync_file(f, true);
        let Kind::File(d) = &mut m.get_mut(f).unwrap().kind else { unreachable!() };
        d.extend_from_slice(b"lost");
        m.cut();
        assert_eq!(data(&m, ROOT, "f"), Some(b"two".to_vec()));
    }

    #[test]
    fn a_new_directory_needs_its_parent_synced_and_drops_with_what_it_holds() {
        let mut m = Model::new(meta());
        let d = m.insert(ROOT, OsStr::new("d"), Kind::Dir(BTreeMap::new()), meta());
        let f = file(&mut m, d, "f", b"x");
        m.sync_file(f, false);
        m.sync_dir(d);
        m.cut();
        assert!(m.lookup(ROOT, OsStr::new("d")).is_none());
        assert_eq!(m.durable.nodes.len(), 1, "unreachable inodes are collected");
        let d = m.insert(ROOT, OsStr::new("d"), Kind::Dir(BTreeMap::new()), meta());
        m.sync_dir(ROOT);
        m.cut();
        assert_eq!(m.get(d).and_then(Inode::entries).map(BTreeMap::len), Some(0));
        assert_eq!(m.get(ROOT).unwrap().nlink, 3);
    }
}
