//! Recreates entries beneath a target directory, safely and durably.
//!
//! Safety: every path is resolved one component at a time from the target's directory handle,
//! with `O_NOFOLLOW`, so neither `..`, an absolute path, nor a symlink (one already in the target
//! or one the image created earlier) can make an entry land outside the target.
//!
//! Atomicity: a file is written under a temporary name (`.coffer-tmp-N`) and renamed into place
//! only when complete, with its mode, owner and times set; a restore in progress leaves a marker
//! file ([`MARKER`]) in the target that is removed last, once everything is durable.
//!
//! Durability without an `fsync` per file (one disk flush each): large files are written with
//! `O_DIRECT` by a background thread as their data arrives (see [`crate::sink`]), and completed
//! (size, owner, mode, times, rename) behind their last block without the restore waiting for
//! it; small files go through the page cache. At the end the whole file system is flushed once
//! with `syncfs`, and the marker's removal is made durable with an `fsync` of the target.

use crate::owner::NameCache;
use crate::sink::{is_aligned, set_direct, AlignedStage};
use crate::{io_err, nix_err, FsError};
use coffer_format::entry::check_relative_path;
use coffer_format::{EntryKind, EntryMeta};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, syncfs, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Present in the target while a restore is running or after one failed.
pub const MARKER: &str = ".coffer-restore-incomplete";
/// Beside the marker while a received restore runs: what is durable so far (see
/// `coffer_image::journal`).
pub const JOURNAL: &str = ".coffer-receive-journal";
/// Prefix of the temporary names files are written under.
const TMP_PREFIX: &str = ".coffer-tmp-";

/// Start writeback after this many bytes of a file, so the final flush has little left to do.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Files at least this large are written with O_DIRECT when the restore is durable: their data
/// skips the page cache (see [`crate::sink`]) and is on disk before the final flush. Smaller
/// files go through the page cache, where one synchronous write each would cost more.
const DIRECT_MIN: u64 = 256 << 10;
/// Files written in parts that may wait for their next part at once (each holds a descriptor).
const MAX_PAUSED: usize = 4096;

/// Whose files the restored entries become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Leave them to the user running the restore (what a non-root user can do).
    Current,
    /// The image's owners: by name where this host knows the name, else by number (like tar).
    Preserve,
    /// One user and group for everything (`--owner`).
    Fixed(u32, u32),
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Allow a non-empty target and replace existing entries.
    pub force: bool,
    /// Require an empty (or absent) target and keep the [`MARKER`] while working (full restores;
    /// off for extracting single entries into an existing directory).
    pub whole_tree: bool,
    pub ownership: Ownership,
    /// Flush everything to stable storage before [`Restorer::finish`] returns.
    pub durable: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Data bytes written (holes excluded).
    pub bytes: u64,
}

struct OpenFile {
    file: Arc<File>,
    /// The final path, for messages.
    shown: Arc<PathBuf>,
    rel: Vec<u8>,
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

/// Writes entries beneath a target directory; see the module documentation.
pub struct Restorer {
    root_path: PathBuf,
    root: OwnedFd,
    opts: RestoreOptions,
    names: NameCache,
    parent: Option<(Vec<u8>, OwnedFd)>,
    file: Option<OpenFile>,
    dirs: Vec<EntryMeta>,
    root_meta: Option<EntryMeta>,
    restored_files: HashSet<Vec<u8>>,
    /// Files written in parts, between two parts: still under their temporary names.
    paused: std::collections::HashMap<Vec<u8>, OpenFile>,
    tmp_counter: u64,
    pid: u32,
    stage: AlignedStage,
    stats: RestoreStats,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer").field("root", &self.root_path).field("stats", &self.stats).finish_non_exhaustive()
    }
}

fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn time(sec: i64, nsec: u32) -> TimeSpec {
    TimeSpec::new(sec, i64::from(nsec))
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Restorer {
    /// Prepares `target`: creates it if absent; refuses a non-empty one unless `force` (for whole
    /// trees); leaves the marker in it.
    pub fn create(target: &Path, opts: RestoreOptions) -> Result<Self, FsError> {
        match std::fs::symlink_metadata(target) {
            Ok(md) if md.is_dir() => {
                if opts.whole_tree && !opts.force {
                    let mut entries = std::fs::read_dir(target).map_err(io_err("read directory", target))?;
                    if entries.next().is_some() {
                        return Err(FsError::TargetNotEmpty(target.into()));
                    }
                }
            }
            Ok(_) => return Err(FsError::NotADirectory(target.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(target).map_err(io_err("create directory", target))?;
            }
            Err(e) => return Err(io_err("stat", target)(e)),
        }
        let root = nix::fcntl::open(target, dir_flags(), Mode::empty()).map_err(nix_err("open", target))?;
        let this = Self {
            root_path: target.into(),
            root,
            opts,
            names: NameCache::default(),
            parent: None,
            file: None,
            dirs: Vec::new(),
            root_meta: None,
            restored_files: HashSet::new(),
            paused: Default::default(),
            tmp_counter: 0,
            pid: std::process::id(),
            stage: AlignedStage::default(),
            stats: RestoreStats::default(),
        };
        if this.opts.whole_tree {
            let fd = openat(
                &this.root,
                MARKER,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(nix_err("create", target.join(MARKER)))?;
            let note =
                b"A coffer restore into this directory is running or did not finish: its contents are incomplete.\n";
            File::from(fd).write_all_at(note, 0).map_err(io_err("write", target.join(MARKER)))?;
        }
        Ok(this)
    }

    pub fn stats(&self) -> RestoreStats {
        self.stats
    }

    fn shown(&self, rel: &[u8]) -> PathBuf {
        self.root_path.join(os(rel))
    }

    fn unsafe_entry(rel: &[u8], detail: impl Into<String>) -> FsError {
        FsError::Unsafe { path: String::from_utf8_lossy(rel).into_owned(), detail: detail.into() }
    }

    /// A handle on directory `rel` (relative to the target), opened component by component
    /// without following symlinks; missing directories are created (mode 0700 until their own
    /// entry, if any, sets the real mode) when `create` is set.
    fn dir_fd(&mut self, rel: &[u8], create: bool) -> Result<BorrowedFd<'_>, FsError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        if self.parent.as_ref().is_none_or(|(p, _)| p != rel) {
            let mut cur = nix::unistd::dup(&self.root).map_err(nix_err("dup", &self.root_path))?;
            let mut end = 0;
            for comp in rel.split(|&b| b == b'/') {
                end += comp.len();
                let so_far = &rel[..end];
                end += 1;
                let next = match openat(&cur, os(comp), dir_flags(), Mode::empty()) {
                    Err(Errno::ENOENT) if create => {
                        mkdirat(&cur, os(comp), Mode::from_bits_truncate(0o700))
                            .map_err(nix_err("create directory", self.shown(so_far)))?;
                        openat(&cur, os(comp), dir_flags(), Mode::empty())
                    }
                    other => other,
                };
                cur = match next {
                    Ok(fd) => fd,
                    Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                        return Err(Self::unsafe_entry(
                            rel,
                            format!(
                                "{} is a symlink or not a directory; refusing to go through it",
                                String::from_utf8_lossy(so_far)
                            ),
                        ))
                    }
                    Err(e) => return Err(nix_err("open directory", self.shown(so_far))(e)),
                };
            }
            self.parent = Some((rel.to_vec(), cur));
        }
        Ok(self.parent.as_ref().expect("just set").1.as_fd())
    }

    fn next_tmp(&mut self) -> Vec<u8> {
        self.tmp_counter += 1;
        format!("{TMP_PREFIX}{}-{}", self.pid, self.tmp_counter).into_bytes()
    }

    fn owner_of(&mut self, meta: &EntryMeta) -> Option<(Uid, Gid)> {
        match self.opts.ownership {
            Ownership::Current => None,
            Ownership::Fixed(u, g) => Some((Uid::from_raw(u), Gid::from_raw(g))),
            Ownership::Preserve => {
                let uid = self.names.uid_of(&meta.uname).unwrap_or(meta.uid);
                let gid = self.names.gid_of(&meta.gname).unwrap_or(meta.gid);
                Some((Uid::from_raw(uid), Gid::from_raw(gid)))
            }
        }
    }

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
        assert!(self.file.is_none(), "begin called while a file is open");
        if meta.path.is_empty() {
            if meta.kind != EntryKind::Dir {
                return Err(Self::unsafe_entry(b"", "the root entry is not a directory"));
            }
            self.root_meta = Some(meta.clone());
            return Ok(());
        }
        let rel = meta.path.as_slice();
        check_relative_path(rel).map_err(|e| Self::unsafe_entry(rel, e.to_string()))?;
        if self.opts.whole_tree && (rel == MARKER.as_bytes() || rel == JOURNAL.as_bytes()) {
            return Err(Self::unsafe_entry(rel, "a name coffer keeps for its own bookkeeping"));
        }
        let (parent, name) = split_parent(rel);
        let force = self.opts.force;
        if !self.opts.whole_tree && !meta.continues {
            // Extracting into a directory that may hold anything: fail before writing data.
            // (A whole-tree restore starts empty or with --force; renames refuse to replace.)
            self.check_clobber(parent, name, rel, meta.kind)?;
        }
        match meta.kind {
            EntryKind::Dir => {
                let shown = self.shown(rel);
                let dir = self.dir_fd(parent, true)?;
                match mkdirat(dir, os(name), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => replace_with_dir(dir, name, force, &shown)?,
                    Err(e) => return Err(nix_err("create directory", shown)(e)),
                }
                self.dirs.push(meta.clone());
                self.stats.dirs += 1;
            }
            EntryKind::Symlink => {
                let tmp = self.next_tmp();
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
                place(dir, &tmp, name, force, &shown)?;
                self.stats.symlinks += 1;
            }
            EntryKind::HardLink => {
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
                let tmp = self.next_tmp();
                let shown = self.shown(rel);
                let dir = self.dir_fd(parent, true)?;
                linkat(&tdir, os(tname), dir, os(&tmp), AtFlags::empty())
                    .map_err(nix_err("create hard link", shown.clone()))?;
                place(dir, &tmp, name, force, &shown)?;
                self.stats.hardlinks += 1;
            }
            EntryKind::File if meta.continues => {
                let Some(f) = self.paused.remove(rel) else {
                    return Err(Self::unsafe_entry(rel, "continues a file that is not paused"));
                };
                self.file = Some(f);
            }
            EntryKind::File => {
                let tmp = self.next_tmp();
                let shown = self.shown(rel);
                let dir = self.dir_fd(parent, true)?;
                let fd = openat(
                    dir,
                    os(&tmp),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(nix_err("create", shown))?;
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
            }
        }
        Ok(())
    }

    /// Writes data of the open file at `offset`; skipped ranges stay holes.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let f = self.file.as_mut().expect("write without an open file");
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
        let mut f = self.file.take().expect("pause_file without an open file");
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
        let f = self.file.take().expect("end_file without an open file");
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
            mode: f.meta.mode,
            mtime: time(f.meta.mtime_sec, f.meta.mtime_nsec),
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

    fn discard(&mut self, f: &OpenFile) {
        self.stage.reset();
        let (parent, _) = split_parent(&f.rel);
        if let Ok(dir) = self.dir_fd(parent, false) {
            let _ = unlinkat(dir, os(&f.tmp), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Waits for queued writes and deferred file completions; their first error.
    fn settle(&mut self) -> Result<(), FsError> {
        self.stage.wait()
    }

    /// Makes everything restored so far durable: queued writes and renames done, the file
    /// system flushed. Only between entries, with no file open or paused.
    pub fn checkpoint(&mut self) -> Result<(), FsError> {
        assert!(self.file.is_none() && self.paused.is_empty(), "checkpoint inside a file");
        self.settle()?;
        if self.opts.durable {
            syncfs(&self.root).map_err(nix_err("flush file system of", &self.root_path))?;
        }
        Ok(())
    }

    /// Takes over an entry an earlier, interrupted restore into this target completed: hard
    /// links may point at its files, and its directories get their metadata at the end.
    pub fn adopt(&mut self, meta: &EntryMeta) {
        match meta.kind {
            EntryKind::File if !meta.continues => {
                self.restored_files.insert(meta.path.clone());
            }
            EntryKind::Dir if meta.path.is_empty() => self.root_meta = Some(meta.clone()),
            EntryKind::Dir => self.dirs.push(meta.clone()),
            _ => {}
        }
    }

    /// Removes what an interrupted restore left under temporary names (a process killed before
    /// it could clean up). Returns how many.
    pub fn sweep_temporaries(&mut self) -> Result<u64, FsError> {
        fn sweep(dir: &Path, removed: &mut u64) -> Result<(), FsError> {
            for e in std::fs::read_dir(dir).map_err(io_err("read directory", dir))? {
                let e = e.map_err(io_err("read directory", dir))?;
                let ty = e.file_type().map_err(io_err("stat", e.path()))?;
                if ty.is_dir() {
                    sweep(&e.path(), removed)?;
                } else if e.file_name().as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                    std::fs::remove_file(e.path()).map_err(io_err("remove", e.path()))?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        sweep(&self.root_path, &mut removed)?;
        Ok(removed)
    }

    /// The path of the file being written, if any.
    pub fn current_file(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| self.shown(&f.rel))
    }

    /// Sets directory metadata (deepest first, now that nothing more is created in them), flushes
    /// everything, and removes the marker.
    pub fn finish(mut self) -> Result<RestoreStats, FsError> {
        assert!(self.file.is_none(), "finish called while a file is open");
        self.settle()?;
        if let Some(rel) = self.paused.keys().next() {
            return Err(Self::unsafe_entry(rel, "a file paused and never completed"));
        }
        // Entries arrive parents first, so the reverse order sets every child before its parent.
        for meta in std::mem::take(&mut self.dirs).iter().rev() {
            let (parent, name) = split_parent(&meta.path);
            let shown = self.shown(&meta.path);
            let dir = self.dir_fd(parent, false)?;
            let fd =
                openat(dir, os(name), dir_flags(), Mode::empty()).map_err(nix_err("open directory", shown.clone()))?;
            self.apply_dir_meta(&fd, meta, &shown)?;
        }
        if self.opts.durable {
            syncfs(&self.root).map_err(nix_err("flush file system of", &self.root_path))?;
        }
        if self.opts.whole_tree {
            unlinkat(&self.root, MARKER, UnlinkatFlags::NoRemoveDir)
                .map_err(nix_err("remove", self.root_path.join(MARKER)))?;
        }
        if let Some(meta) = self.root_meta.take() {
            let root = nix::unistd::dup(&self.root).map_err(nix_err("dup", &self.root_path))?;
            let shown = self.root_path.clone();
            self.apply_dir_meta(&root, &meta, &shown)?;
        }
        if self.opts.durable {
            nix::unistd::fsync(&self.root).map_err(nix_err("flush", &self.root_path))?;
        }
        Ok(self.stats)
    }

    fn apply_dir_meta(&mut self, fd: &OwnedFd, meta: &EntryMeta, shown: &Path) -> Result<(), FsError> {
        if let Some((u, g)) = self.owner_of(meta) {
            fchown(fd, Some(u), Some(g)).map_err(nix_err("chown", shown))?;
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(nix_err("chmod", shown))?;
        futimens(fd, &TimeSpec::UTIME_NOW, &time(meta.mtime_sec, meta.mtime_nsec))
            .map_err(nix_err("set times of", shown))
    }
}

impl Drop for Restorer {
    /// An unfinished restore removes the file it was writing (which never got its final name);
    /// the marker stays, saying the target is incomplete.
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            self.discard(&f);
        }
        for (_, f) in std::mem::take(&mut self.paused) {
            self.discard(&f);
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
        place(dir, &self.tmp, &self.name, self.force, shown)
    }
}

/// Renames a finished entry from its temporary name to its name: replacing what is there only
/// with `force` (and never a directory).
fn place(dir: BorrowedFd<'_>, tmp: &[u8], name: &[u8], force: bool, shown: &Path) -> Result<(), FsError> {
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
    use super::*;

    fn meta(kind: EntryKind, path: &str) -> EntryMeta {
        EntryMeta {
            kind,
            continues: false,
            mode: if kind == EntryKind::Dir { 0o755 } else { 0o640 },
            uid: 0,
            gid: 0,
            mtime_sec: 1_600_000_000,
            mtime_nsec: 5,
            size: 0,
            path: path.as_bytes().to_vec(),
            target: vec![],
            uname: vec![],
            gname: vec![],
        }
    }

    fn opts() -> RestoreOptions {
        RestoreOptions { force: false, whole_tree: true, ownership: Ownership::Current, durable: true }
    }

    #[test]
    fn restores_files_dirs_links_and_holes() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("out");
        let mut r = Restorer::create(&target, opts()).unwrap();
        assert!(target.join(MARKER).exists());
        r.begin(&meta(EntryKind::Dir, "")).unwrap();
        r.begin(&meta(EntryKind::Dir, "d")).unwrap();
        r.begin(&meta(EntryKind::File, "d/f")).unwrap();
        r.write(1 << 20, b"tail").unwrap();
        r.end_file(2 << 20).unwrap();
        let mut l = meta(EntryKind::Symlink, "d/l");
        l.target = b"/etc/passwd".to_vec();
        r.begin(&l).unwrap();
        let mut h = meta(EntryKind::HardLink, "h");
        h.target = b"d/f".to_vec();
        r.begin(&h).unwrap();
        let stats = r.finish().unwrap();
        assert_eq!((stats.files, stats.dirs, stats.symlinks, stats.hardlinks, stats.bytes), (1, 1, 1, 1, 4));
        assert!(!target.join(MARKER).exists());
        let f = std::fs::metadata(target.join("d/f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(f.len(), 2 << 20);
        assert!(f.blocks() * 512 < 1 << 20, "the hole stayed a hole");
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_600_000_000, 5));
        assert_eq!(f.nlink(), 2);
        assert_eq!(std::fs::read_link(target.join("d/l")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(std::fs::metadata(target.join("d")).unwrap().mtime(), 1_600_000_000);
    }

    #[test]
    fn refuses_to_go_through_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let target = t.path().join("out");
        let mut r = Restorer::create(&target, opts()).unwrap();
        let mut l = meta(EntryKind::Symlink, "evil");
        l.target = outside.as_os_str().as_bytes().to_vec();
        r.begin(&l).unwrap();
        let err = r.begin(&meta(EntryKind::File, "evil/pwned")).unwrap_err();
        assert!(matches!(err, FsError::Unsafe { .. }), "{err}");
        let err = r.begin(&meta(EntryKind::Dir, "evil/sub")).unwrap_err();
        assert!(matches!(err, FsError::Unsafe { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let mut h = meta(EntryKind::HardLink, "h");
        h.target = b"evil".to_vec();
        assert!(matches!(r.begin(&h), Err(FsError::Unsafe { .. })));
        let mut bad = meta(EntryKind::File, "x");
        bad.path = b"../escape".to_vec();
        assert!(matches!(r.begin(&bad), Err(FsError::Unsafe { .. })));
    }

    #[test]
    fn non_empty_target_needs_force_and_existing_files_are_kept() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("keep"), b"precious").unwrap();
        assert!(matches!(Restorer::create(t.path(), opts()), Err(FsError::TargetNotEmpty(_))));
        let mut o = opts();
        o.whole_tree = false;
        let mut r = Restorer::create(t.path(), o.clone()).unwrap();
        assert!(r.begin(&meta(EntryKind::File, "keep")).is_err());
        assert_eq!(std::fs::read(t.path().join("keep")).unwrap(), b"precious");
        o.force = true;
        let mut r = Restorer::create(t.path(), o).unwrap();
        r.begin(&meta(EntryKind::File, "keep")).unwrap();
        r.write(0, b"new").unwrap();
        r.end_file(3).unwrap();
        r.finish().unwrap();
        assert_eq!(std::fs::read(t.path().join("keep")).unwrap(), b"new");
    }

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
