//! The FUSE side: each request of the kernel applied to the [`Model`] under one lock.
//!
//! Every file is opened with direct I/O and every answer has a time-to-live of zero, so the
//! kernel keeps no page or attribute of its own: what a reader sees after a cut is the model.
//! `fsync`, `fsyncdir` and `flush` are implemented (fuser's defaults answer ENOSYS, which the
//! kernel takes as "this file system needs no fsync" and never asks again).

use crate::model::{Inode, Kind, Meta, Model};
use crate::State;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::ZERO;

/// The file system the kernel talks to; the test holds the same [`State`] through `Control`.
pub(crate) struct PowerFs {
    pub(crate) state: Arc<Mutex<State>>,
}

fn file_type(node: &Inode) -> FileType {
    match &node.kind {
        Kind::File(_) => FileType::RegularFile,
        Kind::Dir(_) => FileType::Directory,
        Kind::Symlink(_) => FileType::Symlink,
        Kind::Special(_) => match node.meta.mode & libc::S_IFMT {
            libc::S_IFIFO => FileType::NamedPipe,
            libc::S_IFSOCK => FileType::Socket,
            libc::S_IFCHR => FileType::CharDevice,
            _ => FileType::BlockDevice,
        },
    }
}

fn attr(ino: u64, node: &Inode) -> FileAttr {
    let size = node.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.meta.atime,
        mtime: node.meta.mtime,
        ctime: node.meta.ctime,
        crtime: node.meta.ctime,
        kind: file_type(node),
        perm: (node.meta.mode & 0o7777) as u16,
        nlink: node.nlink,
        uid: node.meta.uid,
        gid: node.meta.gid,
        rdev: match node.kind {
            Kind::Special(r) => r,
            _ => 0,
        },
        blksize: 4096,
        flags: 0,
    }
}

fn new_meta(req: &Request, mode: u32, umask: u32) -> Meta {
    let now = SystemTime::now();
    let t = mode & libc::S_IFMT;
    Meta { mode: t | (mode & !umask & 0o7777), uid: req.uid(), gid: req.gid(), atime: now, mtime: now, ctime: now }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl PowerFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state for a call that changes something: EIO once the power is (about to be) cut.
    fn lock_change(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let mut s = self.lock();
        if s.tripped {
            s.refused += 1;
            return Err(Errno::EIO);
        }
        Ok(s)
    }

    /// Creates `name` under `parent`; its attributes.
    fn make(&self, parent: INodeNo, name: &OsStr, kind: Kind, meta: Meta) -> Result<FileAttr, Errno> {
        let mut s = self.lock_change()?;
        let m = &mut s.model;
        match m.get(parent.0) {
            Some(p) if p.entries().is_some() => {}
            Some(_) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        }
        if m.lookup(parent.0, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = m.insert(parent.0, name, kind, meta);
        touch(m, parent.0);
        Ok(attr(ino, m.get(ino).expect("just inserted")))
    }

    /// A durability point: applied, counted, and the power cut armed if this was the one.
    fn durable(&self, ino: INodeNo, dir: bool, datasync: bool) -> Result<(), Errno> {
        let mut s = self.lock_change()?;
        if s.model.get(ino.0).is_none() {
            return Err(Errno::ENOENT);
        }
        if dir {
            s.model.sync_dir(ino.0);
        } else {
            s.model.sync_file(ino.0, datasync);
        }
        s.ops += 1;
        let what = if dir {
            "fsyncdir"
        } else if datasync {
            "fdatasync"
        } else {
            "fsync"
        };
        let path = s.model.visible.path_of(ino.0).unwrap_or_else(|| format!("inode {}", ino.0).into());
        let n = s.ops;
        s.log.push(format!("{n} {what} {}", path.display()));
        if s.cut_after == Some(n) {
            s.tripped = true;
        }
        Ok(())
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let mut s = self.lock_change()?;
        let m = &mut s.model;
        let ino = m.lookup(parent.0, name).ok_or(Errno::ENOENT)?;
        let node = m.get(ino).ok_or(Errno::ENOENT)?;
        match (node.entries(), want_dir) {
            (Some(e), true) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
            (Some(_), false) => return Err(Errno::EISDIR),
            (None, true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        unlink_entry(m, parent.0, name);
        Ok(())
    }

    fn rename_in(&self, from: (INodeNo, &OsStr), to: (INodeNo, &OsStr), flags: RenameFlags) -> Result<(), Errno> {
        let mut s = self.lock_change()?;
        let m = &mut s.model;
        let ino = m.lookup(from.0 .0, from.1).ok_or(Errno::ENOENT)?;
        if m.get(to.0 .0).and_then(Inode::entries).is_none() {
            return Err(Errno::ENOTDIR);
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        if let Some(old) = m.lookup(to.0 .0, to.1) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            let src_dir = m.get(ino).is_some_and(|n| n.entries().is_some());
            match m.get(old).and_then(Inode::entries) {
                Some(e) if !src_dir => return Err(if e.is_empty() { Errno::EISDIR } else { Errno::ENOTEMPTY }),
                Some(e) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
                None if src_dir => return Err(Errno::ENOTDIR),
                _ => {}
            }
            unlink_entry(m, to.0 .0, to.1);
        }
        dir_entries(m, from.0 .0).remove(from.1);
        dir_entries(m, to.0 .0).insert(to.1.to_owned(), ino);
        if m.get(ino).is_some_and(|n| n.entries().is_some()) && from.0 != to.0 {
            m.get_mut(from.0 .0).expect("checked").nlink -= 1;
            m.get_mut(to.0 .0).expect("checked").nlink += 1;
        }
        touch(m, from.0 .0);
        touch(m, to.0 .0);
        Ok(())
    }
}

fn dir_entries(m: &mut Model, dir: u64) -> &mut std::collections::BTreeMap<std::ffi::OsString, u64> {
    match &mut m.get_mut(dir).expect("checked by the caller").kind {
        Kind::Dir(e) => e,
        _ => unreachable!("checked by the caller"),
    }
}

/// Removes one name; the inode stays in the visible tree while a handle may still use it.
fn unlink_entry(m: &mut Model, parent: u64, name: &OsStr) {
    let Some(ino) = dir_entries(m, parent).remove(name) else { return };
    let is_dir = m.get(ino).is_some_and(|n| n.entries().is_some());
    if let Some(n) = m.get_mut(ino) {
        n.nlink = if is_dir { 0 } else { n.nlink.saturating_sub(1) };
        n.meta.ctime = SystemTime::now();
    }
    if is_dir {
        m.get_mut(parent).expect("checked").nlink -= 1;
    }
    touch(m, parent);
}

fn touch(m: &mut Model, ino: u64) {
    if let Some(n) = m.get_mut(ino) {
        let now = SystemTime::now();
        n.meta.mtime = now;
        n.meta.ctime = now;
    }
}

fn entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for PowerFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.lock();
        let found = s.model.lookup(parent.0, name).and_then(|i| s.model.get(i).map(|n| attr(i, n)));
        entry(reply, found.ok_or(Errno::ENOENT));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().model.get(ino.0) {
            Some(n) => reply.attr(&TTL, &attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = match self.lock_change() {
            Ok(s) => s,
            Err(e) => return reply.error(e),
        };
        let Some(n) = s.model.get_mut(ino.0) else { return reply.error(Errno::ENOENT) };
        if let Some(size) = size {
            match &mut n.kind {
                Kind::File(d) => d.resize(size as usize, 0),
                Kind::Dir(_) => return reply.error(Errno::EISDIR),
                _ => return reply.error(Errno::EINVAL),
            }
            n.meta.mtime = SystemTime::now();
        }
        if let Some(mode) = mode {
            n.meta.mode = (n.meta.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        n.meta.uid = uid.unwrap_or(n.meta.uid);
        n.meta.gid = gid.unwrap_or(n.meta.gid);
        if let Some(t) = atime {
            n.meta.atime = time(t);
        }
        if let Some(t) = mtime {
            n.meta.mtime = time(t);
        }
        n.meta.ctime = SystemTime::now();
        reply.attr(&TTL, &attr(ino.0, n));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.lock().model.get(ino.0).map(|n| &n.kind) {
            Some(Kind::Symlink(t)) => reply.data(t.as_os_str().as_encoded_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let kind = if mode & libc::S_IFMT == libc::S_IFREG { Kind::File(Vec::new()) } else { Kind::Special(rdev) };
        entry(reply, self.make(parent, name, kind, new_meta(req, mode, umask)));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let meta = new_meta(req, libc::S_IFDIR | (mode & 0o7777), umask);
        entry(reply, self.make(parent, name, Kind::Dir(Default::default()), meta));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.remove(parent, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.remove(parent, name, true));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let meta = new_meta(req, libc::S_IFLNK | 0o777, 0);
        entry(reply, self.make(parent, link_name, Kind::Symlink(target.into()), meta));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.rename_in((parent, name), (newparent, newname), flags));
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = (|| {
            let mut s = self.lock_change()?;
            let m = &mut s.model;
            if m.get(ino.0).ok_or(Errno::ENOENT)?.entries().is_some() {
                return Err(Errno::EPERM);
            }
            if m.get(newparent.0).and_then(Inode::entries).is_none() {
                return Err(Errno::ENOTDIR);
            }
            if m.lookup(newparent.0, newname).is_some() {
                return Err(Errno::EEXIST);
            }
            dir_entries(m, newparent.0).insert(newname.to_owned(), ino.0);
            touch(m, newparent.0);
            let n = m.get_mut(ino.0).expect("checked");
            n.nlink += 1;
            n.meta.ctime = SystemTime::now();
            Ok(attr(ino.0, n))
        })();
        entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().model.get(ino.0) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.lock().model.get(ino.0).map(|n| &n.kind) {
            Some(Kind::File(d)) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                reply.data(&d[start..end]);
            }
            Some(Kind::Dir(_)) => reply.error(Errno::EISDIR),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = match self.lock_change() {
            Ok(s) => s,
            Err(e) => return reply.error(e),
        };
        let Some(n) = s.model.get_mut(ino.0) else { return reply.error(Errno::ENOENT) };
        let Kind::File(d) = &mut n.kind else { return reply.error(Errno::EISDIR) };
        let at = if flags.0 & libc::O_APPEND != 0 { d.len() } else { offset as usize };
        if d.len() < at + data.len() {
            d.resize(at + data.len(), 0);
        }
        d[at..at + data.len()].copy_from_slice(data);
        let now = SystemTime::now();
        n.meta.mtime = now;
        n.meta.ctime = now;
        reply.written(data.len() as u32);
    }

    /// `close()`: nothing becomes durable (a real file system's close promises nothing either).
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        empty(reply, self.durable(ino, false, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().model.get(ino.0).and_then(Inode::entries) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOTDIR),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = self.lock();
        let Some(entries) = s.model.get(ino.0).and_then(Inode::entries) else { return reply.error(Errno::ENOTDIR) };
        let dots = [(ino.0, FileType::Directory, OsStr::new(".")), (ino.0, FileType::Directory, OsStr::new(".."))];
        let children =
            entries.iter().filter_map(|(name, &i)| s.model.get(i).map(|n| (i, file_type(n), name.as_os_str())));
        for (k, (i, t, name)) in dots.into_iter().chain(children).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), k as u64 + 1, t, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        empty(reply, self.durable(ino, true, false));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: this file system tests power, not space.
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::NO_XATTR);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let meta = new_meta(req, libc::S_IFREG | (mode & 0o7777), umask);
        match self.make(parent, name, Kind::File(Vec::new()), meta) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            if mode != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            let mut s = self.lock_change()?;
            let n = s.model.get_mut(ino.0).ok_or(Errno::ENOENT)?;
            let Kind::File(d) = &mut n.kind else { return Err(Errno::EISDIR) };
            let end = (offset + length) as usize;
            if d.len() < end {
                d.resize(end, 0);
            }
            Ok(())
        })();
        empty(reply, r);
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let Some(size) = self.lock().model.get(ino.0).map(|n| n.size() as i64) else {
            return reply.error(Errno::ENOENT);
        };
        // No holes are kept: all data up to the size, one hole at the end.
        match whence {
            libc::SEEK_DATA if offset < size => reply.offset(offset),
            libc::SEEK_HOLE if offset < size => reply.offset(size),
            libc::SEEK_DATA | libc::SEEK_HOLE => reply.error(Errno::ENXIO),
            _ => reply.error(Errno::EINVAL),
        }
    }
}

/// The root directory's metadata for a fresh tree.
pub(crate) fn root_meta() -> Meta {
    let now = SystemTime::now();
    Meta { mode: libc::S_IFDIR | 0o755, uid: 0, gid: 0, atime: now, mtime: now, ctime: now }
}
