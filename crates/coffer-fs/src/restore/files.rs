//! Writing file data: O_DIRECT for large files, writeback as they grow, files written in parts,
//! and completing each file (size, owner, mode, times, name) behind its last block.

use super::entries::{exists_refused, place};
use super::{os, out_of_order, split_parent, time, Restorer};
use crate::sink::{is_aligned, set_direct};
use crate::{io_err, nix_err, FsError};
use coffer_format::EntryMeta;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Start writeback after this many bytes of a file, so the final flush has little left to do.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Files at least this large are written with O_DIRECT when the restore is durable: their data
/// skips the page cache (see [`crate::sink`]) and is on disk before the final flush. Smaller
/// files go through the page cache, where one synchronous write each would cost more.
const DIRECT_MIN: u64 = 256 << 10;
/// Files written in parts that may wait for their next part at once (each holds a descriptor).
const MAX_PAUSED: usize = 4096;

pub(super) struct OpenFile {
    file: Arc<File>,
    /// The final path, for messages.
    shown: Arc<PathBuf>,
    pub(super) rel: Vec<u8>,
    tmp: Vec<u8>,
    meta: EntryMeta,
    /// Written with O_DIRECT through the restorer's stage.
    direct: bool,
    /// Padding past the data was written (O_DIRECT before a pause): set the length at the end.
    padded: bool,
    /// O_DIRECT may still be tried (durable restores; not after the file system refused it).
    may_direct: bool,
    written_to: u64,
    kicked_to: u64,
}

impl Restorer {
    /// A file entry: created under its new name (see [`Restorer::new_name`]), written with
    /// O_DIRECT if large and durable, and open for [`Restorer::write`].
    pub(super) fn create_file(&mut self, meta: &EntryMeta, parent: &[u8], name: &[u8]) -> Result<(), FsError> {
        let rel = meta.path.as_slice();
        let tmp = self.new_name(name);
        let shown = self.shown(rel);
        let dir = self.dir_fd(parent, true)?;
        let fd = openat(
            dir,
            os(&tmp),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(exists_refused(nix_err("create", shown.clone()), &shown))?;
        let file = Arc::new(File::from(fd));
        let direct = self.opts.durable && meta.size >= DIRECT_MIN && set_direct(&file, true);
        let may_direct = self.opts.durable && (direct || meta.size < DIRECT_MIN);
        self.file = Some(OpenFile {
            file,
            shown: Arc::new(self.shown(rel)),
            rel: rel.to_vec(),
            tmp,
            meta: meta.clone(),
            direct,
            padded: false,
            may_direct,
            written_to: 0,
            kicked_to: 0,
        });
        Ok(())
    }

    /// A continuation entry: the paused file `rel` is open again.
    pub(super) fn resume_file(&mut self, rel: &[u8]) -> Result<(), FsError> {
        let Some(f) = self.paused.remove(rel) else {
            return Err(Self::unsafe_entry(rel, "continues a file that is not paused"));
        };
        self.file = Some(f);
        Ok(())
    }

    /// Writes data of the open file at `offset`; skipped ranges stay holes.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let f = self.file.as_mut().ok_or_else(|| out_of_order("data without an open file"))?;
        if !f.direct && f.may_direct && f.written_to >= DIRECT_MIN && offset == f.written_to && is_aligned(offset) {
            // A file whose size was not known when it began (a stream) and that turned out large:
            // what came so far goes to disk from the page cache, the rest with O_DIRECT.
            if f.written_to > f.kicked_to {
                start_writeback(&f.file, f.kicked_to, f.written_to - f.kicked_to);
                f.kicked_to = f.written_to;
            }
            f.direct = set_direct(&f.file, true);
            f.may_direct = f.direct;
        }
        if f.direct {
            self.stage.write_at(&f.file, &f.shown, offset, data)?;
        } else {
            f.file.write_all_at(data, offset).map_err(io_err("write", f.shown.as_ref()))?;
        }
        f.written_to = f.written_to.max(offset + data.len() as u64);
        self.stats.bytes += data.len() as u64;
        if let Some(limit) = &self.limit {
            limit.take(data.len() as u64);
        }
        if !f.direct && self.opts.durable && f.written_to - f.kicked_to >= WRITEBACK_STEP {
            // A large file that could not use O_DIRECT: start its writeback as it grows.
            start_writeback(&f.file, f.kicked_to, f.written_to - f.kicked_to);
            f.kicked_to = f.written_to;
        }
        Ok(())
    }

    /// Ends a part of the open file: it stays under its temporary name until a continuation
    /// entry carries on and its last part ends with [`Restorer::end_file`].
    pub fn pause_file(&mut self) -> Result<(), FsError> {
        let mut f = self.file.take().ok_or_else(|| out_of_order("a file paused that was not open"))?;
        if f.direct {
            // The stage serves one file at a time: write out this one's blocks. At a block
            // boundary that is all (the next part starts a new block); elsewhere the last block
            // went out padded, and the file goes on through the page cache.
            let done: crate::sink::Deferred = Box::new(|_| Ok(()));
            self.stage.finish_then(&f.file, &f.shown, done)?;
            if !is_aligned(f.written_to) {
                self.settle()?;
                set_direct(&f.file, false);
                f.direct = false;
                f.padded = true;
            }
        }
        if self.paused.len() >= MAX_PAUSED {
            self.discard(&f);
            return Err(Self::unsafe_entry(&f.rel, format!("more than {MAX_PAUSED} files paused at once")));
        }
        self.paused.insert(f.rel.clone(), f);
        Ok(())
    }

    /// Completes the open file: sets its size (a trailing hole), owner, mode and times, and
    /// renames it into place.
    pub fn end_file(&mut self, size: u64) -> Result<(), FsError> {
        let f = self.file.take().ok_or_else(|| out_of_order("a file ended that was not open"))?;
        let result = self.complete(&f, size);
        if result.is_err() {
            self.discard(&f);
        }
        result
    }

    fn complete(&mut self, f: &OpenFile, size: u64) -> Result<(), FsError> {
        let finish = Finish {
            truncate: f.direct || f.padded || f.written_to != size,
            force: self.opts.force,
            size,
            owner: self.owner_of(&f.meta),
            mode: self.mode_of(&f.meta),
            mtime: time(f.meta.mtime_sec, f.meta.mtime_nsec),
            sync: self.sync_each,
            name: split_parent(&f.rel).1.to_vec(),
            tmp: f.tmp.clone(),
        };
        let (parent, _) = split_parent(&f.rel);
        if f.direct {
            // The last blocks may still be on their way to the disk: completing the file is
            // queued behind them instead of waited for.
            let dir = nix::unistd::dup(self.dir_fd(parent, false)?).map_err(nix_err("dup", &self.root_path))?;
            let (file, shown) = (Arc::clone(&f.file), Arc::clone(&f.shown));
            self.stage.finish_then(
                &f.file,
                &f.shown,
                Box::new(move |ok| {
                    let result = if ok { finish.apply(&file, dir.as_fd(), &shown) } else { Ok(()) };
                    if !ok || result.is_err() {
                        let _ = unlinkat(&dir, os(&finish.tmp), UnlinkatFlags::NoRemoveDir);
                    }
                    result
                }),
            )?;
        } else {
            if self.opts.durable && f.meta.size >= DIRECT_MIN && f.written_to > f.kicked_to {
                start_writeback(&f.file, f.kicked_to, f.written_to - f.kicked_to);
            }
            let shown = Arc::clone(&f.shown);
            let dir = self.dir_fd(parent, false)?;
            finish.apply(&f.file, dir, &shown)?;
        }
        self.restored_files.insert(f.rel.clone());
        self.stats.files += 1;
        Ok(())
    }

    pub(super) fn discard(&mut self, f: &OpenFile) {
        self.stage.reset();
        let (parent, _) = split_parent(&f.rel);
        if let Ok(dir) = self.dir_fd(parent, false) {
            let _ = unlinkat(dir, os(&f.tmp), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// What completes a file once its data is written: size, owner, mode, times, and its name.
struct Finish {
    /// Set the length: a trailing hole, or padding written by O_DIRECT, needs it.
    truncate: bool,
    force: bool,
    size: u64,
    owner: Option<(Uid, Gid)>,
    mode: u32,
    mtime: TimeSpec,
    /// Flush the file now, through the descriptor it was written with (see `durable`).
    sync: bool,
    name: Vec<u8>,
    tmp: Vec<u8>,
}

impl Finish {
    fn apply(&self, file: &File, dir: BorrowedFd<'_>, shown: &Path) -> Result<(), FsError> {
        if self.truncate {
            file.set_len(self.size).map_err(io_err("truncate", shown))?;
        }
        if let Some((u, g)) = self.owner {
            fchown(file, Some(u), Some(g)).map_err(nix_err("chown", shown))?;
        }
        fchmod(file, Mode::from_bits_truncate(self.mode)).map_err(nix_err("chmod", shown))?;
        futimens(file, &TimeSpec::UTIME_NOW, &self.mtime).map_err(nix_err("set times of", shown))?;
        if self.sync {
            // Here, not later by name: a mode such as 0000 lets a user other than root open the
            // file no more once it is set.
            file.sync_all().map_err(io_err("flush", shown))?;
        }
        if self.tmp == self.name {
            return Ok(());
        }
        place(dir, &self.tmp, &self.name, self.force, shown)
    }
}

fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments. It is a hint: errors surface in
    // the final syncfs, so its result is ignored here.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, opts};
    use super::super::MARKER;
    use super::*;
    use coffer_format::EntryKind;

    #[test]
    fn an_abandoned_file_leaves_no_trace_but_the_marker() {
        let t = tempfile::tempdir().unwrap();
        let mut r = Restorer::create(t.path(), opts()).unwrap();
        r.begin(&meta(EntryKind::File, "half")).unwrap();
        r.write(0, b"partial").unwrap();
        drop(r);
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(MARKER)]);
    }
}
