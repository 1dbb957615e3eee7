//! Private directories beside a restore's target: a chain or point-in-time restore works in
//! them, then one takes the target's place by rename. Made so that a user who may create names
//! in the target's parent can neither reach what they hold (decrypted data) nor have coffer
//! change the owner or mode of something of theirs, or move it into the target's place.
//!
//! What coffer trusts about the target is what it saw when the restore began ([`Place::open`]):
//! absent, or a directory (its device, inode, mode and owner). The parent is opened then, once,
//! and every later step goes through that descriptor, checking the target's name again there:
//! a target that was absent is taken with `renameat2(RENAME_NOREPLACE)`, so something created
//! meanwhile is refused, never adopted; a directory is replaced with `RENAME_EXCHANGE` only if
//! it is still the one seen (and what comes out must be it); the restored directory gets the
//! mode and owner seen at the start, never those of what appeared since. The private
//! directories are created 0700 through the parent's descriptor and removed through their own.
//!
//! Their paths are still handed to what works in them (the restorer, the engine's prepare, a
//! replay server), so nobody but root and the user running coffer may rename entries on the
//! way to them: every directory from `/` to the parent must be owned by one of them, and
//! writable by no one else unless sticky (there others can only create names: the checks above
//! make that harmless). A target whose parents fail this is refused before anything is written.

use crate::error::{Context, Error, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Tests set it to a file name: [`Beside::replace`] creates that file and waits (up to two
/// minutes) until it is removed, so a test can act at the moment coffer checks the target.
const PAUSE_BEFORE_REPLACE: &str = "COFFER_TEST_PAUSE_BEFORE_REPLACE";

/// The target as it was when the restore began: a directory.
#[derive(Debug, Clone, Copy)]
struct Seen {
    id: (u64, u64),
    mode: u32,
    uid: u32,
    gid: u32,
}

#[allow(clippy::useless_conversion)] // dev_t and ino_t are narrower on some targets
fn id_of(st: &FileStat) -> (u64, u64) {
    (u64::from(st.st_dev), u64::from(st.st_ino))
}

fn io(e: Errno) -> Error {
    Error::from(std::io::Error::from(e))
}

/// The target of a restore made beside it: its parent, held open, and what it was at the start.
#[derive(Debug)]
pub(crate) struct Place {
    parent: OwnedFd,
    /// The parent's real path, every directory on it checked (see the module documentation).
    dir: PathBuf,
    name: OsString,
    /// The target as it was given, for messages.
    shown: PathBuf,
    seen: Option<Seen>,
}

impl Place {
    /// Takes `target` as it is now: absent, or a directory on its parent's file system (not a
    /// mount point, not a link), under parents only root or this user may change.
    pub(crate) fn open(target: &Path, report: &dyn crate::Report) -> Result<Arc<Self>> {
        let place = Self::open_quiet(target)?;
        place.sweep(report);
        Ok(place)
    }

    /// Removes the private directories a killed restore to this target left beside it (their
    /// lock free, their process gone: coffer_fs::private::sweep), saying so.
    fn sweep(&self, report: &dyn crate::Report) {
        let prefix = format!(".{}.coffer", self.name.to_string_lossy());
        for left in coffer_fs::private::sweep(&self.dir, &prefix, &mut |_| {}) {
            report.warn(&format!("removed {}, which an interrupted restore left", left.display()));
        }
    }

    fn open_quiet(target: &Path) -> Result<Arc<Self>> {
        let shown = target.to_path_buf();
        let (dir, name) = match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                let real = target.canonicalize().with_context(|| format!("cannot resolve {}", target.display()))?;
                let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
                    crate::bail!("{} is the root directory: a chain cannot be restored in its place", target.display());
                };
                (trusted_dir(dir, target)?, name.to_owned())
            }
            Ok(_) => crate::bail!("{} is not a directory", target.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = target.file_name() else {
                    crate::bail!("{}: give the target by a path that ends in its name", target.display());
                };
                let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                (trusted_dir(parent, target)?, name.to_owned())
            }
            Err(e) => return Err(Error::from(e).context(format!("cannot inspect {}", target.display()))),
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let parent = nix::fcntl::open(&dir, flags, Mode::empty())
            .map_err(io)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        let on = fstat(&parent).map_err(io).with_context(|| format!("cannot inspect {}", dir.display()))?;
        let seen = match fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(io(e).context(format!("cannot inspect {}", target.display()))),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => {
                crate::bail!("{} is not a directory", target.display())
            }
            Ok(st) if st.st_dev != on.st_dev => crate::bail!(
                "{} is a mount point: a chain is restored beside its target and moved in by rename, so give a directory inside it",
                target.display()
            ),
            Ok(st) => Some(Seen { id: id_of(&st), mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid }),
        };
        Ok(Arc::new(Self { parent, dir, name, shown, seen }))
    }
}

/// `dir` by its real path (created, with its parents, if absent: as a restore creates its
/// target's), once every directory from `/` to it was found changeable only by root or this
/// user. What exists is checked before anything is created beneath it.
fn trusted_dir(dir: &Path, target: &Path) -> Result<PathBuf> {
    let mut existing = dir;
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => existing = p,
            None => break,
        }
    }
    let real = existing.canonicalize().with_context(|| format!("cannot resolve {}", existing.display()))?;
    check_ancestors(&real, target)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let real = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    check_ancestors(&real, target)?;
    Ok(real)
}

/// Refuses `real` (a real path) if a directory on it may be changed by a user other than root
/// and this one (`coffer_fs::trust`; sticky ones may be writable by others).
fn check_ancestors(real: &Path, target: &Path) -> Result<()> {
    for d in real.ancestors() {
        let m = std::fs::metadata(d).with_context(|| format!("cannot inspect {}", d.display()))?;
        if let Err(untrusted) = coffer_fs::trust::check(d, &m, true) {
            crate::bail!(
                "refusing to restore into {}: {untrusted}, so others could move what is restored beside it (give a target whose parent directories only root or you can change, or a sticky one such as /tmp)",
                target.display()
            );
        }
    }
    Ok(())
}

/// A private directory beside a target (so in its file system: what is restored there is moved,
/// not copied), removed when dropped unless it took the target's place.
pub(crate) struct Beside {
    place: Arc<Place>,
    name: OsString,
    /// Where it is, for what works in it (the restorer, the engine, a server).
    pub(crate) path: PathBuf,
    fd: OwnedFd,
    id: (u64, u64),
    kept: bool,
    /// The lock file's, held open for its `flock`.
    lock: Option<std::fs::File>,
}

impl Beside {
    /// A private directory beside `target` (see [`Place::open`]).
    pub(crate) fn create(target: &Path, what: &str, report: &dyn crate::Report) -> Result<Self> {
        Self::within(&Place::open(target, report)?, what)
    }

    /// A private directory (mode 0700) beside the target of `place`, named after it and `what`.
    pub(crate) fn within(place: &Arc<Place>, what: &str) -> Result<Self> {
        let base = place.name.to_string_lossy();
        let name = OsString::from(format!(".{base}.coffer-{what}-{}", &crate::names::new_id()?[..12]));
        let path = place.dir.join(&name);
        let failed = || format!("cannot create {}", path.display());
        mkdirat(&place.parent, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(io).with_context(failed)?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&place.parent, name.as_os_str(), flags, Mode::empty()).map_err(io).with_context(failed)?;
        let st = fstat(&fd).map_err(io).with_context(failed)?;
        let on = fstat(&place.parent).map_err(io).with_context(failed)?;
        if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_dev != on.st_dev {
            crate::bail!("{} was replaced as it was created", path.display());
        }
        fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(io).with_context(failed)?;
        let mut made = Self { place: place.clone(), name, path, fd, id: id_of(&st), kept: false, lock: None };
        // Locked while this run holds plaintext in it: a killed run's is swept by the next.
        made.lock = Some(coffer_fs::private::lock_in(&made.path)?);
        Ok(made)
    }

    /// Takes the lock file out (the directory is about to be kept); the lock itself is held
    /// until this value goes.
    fn unlock(&self) {
        let _ = unlinkat(&self.fd, coffer_fs::private::LOCK, UnlinkatFlags::NoRemoveDir);
    }

    /// Keeps this directory, renamed `dest`: a name beside the target, which must not exist.
    pub(crate) fn keep_as(mut self, dest: &Path) -> Result<()> {
        let moved = || format!("cannot move {} to {}", self.path.display(), dest.display());
        let (Some(name), true) = (dest.file_name(), dest.parent() == self.place.shown.parent()) else {
            return Err(Error::msg(moved()).context("not beside the target"));
        };
        let p = &self.place.parent;
        self.unlock();
        renameat2(p, self.name.as_os_str(), p, name, RenameFlags::RENAME_NOREPLACE).map_err(io).with_context(moved)?;
        self.kept = true;
        Ok(())
    }

    /// Puts this directory in the target's place: the target must be as it was when the restore
    /// began (absent, or the same directory: empty unless `force`, then its old contents go),
    /// and a directory replaced leaves its mode and owner of then to this one.
    pub(crate) fn replace(mut self, force: bool, sync: bool) -> Result<()> {
        pause_for_tests();
        self.unlock();
        if sync {
            // What the engine wrote and renamed here (a prepare's `.new` files, its redo log)
            // is on disk before the directory takes the target's place.
            coffer_fs::restore::flush_tree(std::os::fd::AsFd::as_fd(&self.fd), &self.path)
                .with_context(|| format!("cannot flush {}", self.path.display()))?;
        }
        let place = self.place.clone();
        let p = &place.parent;
        let target = place.shown.display();
        let Some(seen) = place.seen else {
            return match rename(p, &self.name, &place.name, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => self.took_place(sync),
                Err(Errno::EEXIST) | Err(Errno::ENOTEMPTY) => crate::bail!(
                    "{target} was created while the chain was restored: refusing to replace what was not there when the restore began"
                ),
                Err(e) => Err(io(e).context(format!("cannot move the restored chain into {target}"))),
            };
        };
        let replaced =
            || Error::msg(format!("{target} was replaced while the chain was restored: refusing to replace it"));
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let old = openat(p, place.name.as_os_str(), flags, Mode::empty()).map_err(|_| replaced())?;
        if fstat(&old).map(|st| id_of(&st)) != Ok(seen.id) {
            return Err(replaced());
        }
        if !force && !is_empty(&old, &place.dir.join(&place.name))? {
            crate::bail!("{target} was filled while the chain was restored: refusing to replace it (use --force)");
        }
        // What replaces a directory keeps the permissions and owner it had when the restore began.
        fchmod(&self.fd, Mode::from_bits_truncate(seen.mode))
            .map_err(io)
            .with_context(|| format!("cannot set the permissions of {}", self.path.display()))?;
        let _ = fchown(&self.fd, Some(Uid::from_raw(seen.uid)), Some(Gid::from_raw(seen.gid)));
        rename(p, &self.name, &place.name, RenameFlags::RENAME_EXCHANGE)
            .map_err(io)
            .with_context(|| format!("cannot move the restored chain into {target}"))?;
        // What came out must be the directory seen; anything else goes back where it was.
        let out = fstatat(p, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map(|st| id_of(&st));
        if out != Ok(seen.id) {
            let _ = rename(p, &self.name, &place.name, RenameFlags::RENAME_EXCHANGE);
            return Err(replaced());
        }
        let path = self.path.clone();
        let name = std::mem::take(&mut self.name);
        self.took_place(sync)?;
        // The old contents go (this directory's name is now theirs).
        drop(Beside { place, name, path, fd: old, id: seen.id, kept: false, lock: None });
        Ok(())
    }

    /// This directory took the target's place.
    fn took_place(mut self, sync: bool) -> Result<()> {
        self.kept = true;
        if sync {
            nix::unistd::fsync(&self.place.parent)
                .map_err(io)
                .with_context(|| format!("cannot flush {}", self.place.dir.display()))?;
        }
        Ok(())
    }
}

/// Waits while the file [`PAUSE_BEFORE_REPLACE`] names exists (it is created here), if set.
fn pause_for_tests() {
    let Some(file) = std::env::var_os(PAUSE_BEFORE_REPLACE) else { return };
    let file = PathBuf::from(file);
    if std::fs::write(&file, std::process::id().to_string()).is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `renameat2` within `dir`; where the file system does not take its flags (EINVAL), a plain
/// rename after checking what the flags would have (the target absent, or present).
fn rename(dir: &OwnedFd, from: &OsStr, to: &OsStr, flags: RenameFlags) -> nix::Result<()> {
    match renameat2(dir, from, dir, to, flags) {
        Err(Errno::EINVAL) if flags == RenameFlags::RENAME_NOREPLACE => {
            match fstatat(dir, to, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Err(Errno::ENOENT) => renameat(dir, from, dir, to),
                Ok(_) => Err(Errno::EEXIST),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// Does the directory `fd` (at `path`) hold nothing?
fn is_empty(fd: &OwnedFd, path: &Path) -> Result<bool> {
    let at = through(fd).unwrap_or_else(|| path.to_path_buf());
    let mut names = std::fs::read_dir(&at).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(names.next().is_none())
}

/// A path to the directory `fd` that leads to it whatever was renamed since (`/proc/self/fd`),
/// if there is one.
fn through(fd: &OwnedFd) -> Option<PathBuf> {
    let via = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let same = std::fs::metadata(&via).ok().zip(fstat(fd).ok()).is_some_and(|(m, st)| (m.dev(), m.ino()) == id_of(&st));
    same.then_some(via)
}

impl Drop for Beside {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // The contents through this directory's descriptor, never through a name that may lead
        // elsewhere by now; then the name, if it still is this directory.
        let p = &self.place.parent;
        let named =
            |id| fstatat(p, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| id_of(&st) == id);
        match through(&self.fd) {
            Some(via) => {
                for entry in std::fs::read_dir(&via).into_iter().flatten().flatten() {
                    let path = entry.path();
                    let _ = match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                        _ => std::fs::remove_file(&path),
                    };
                }
            }
            None if named(self.id) => {
                let _ = std::fs::remove_dir_all(&self.path);
                return;
            }
            None => return,
        }
        if named(self.id) {
            let _ = unlinkat(p, self.name.as_os_str(), UnlinkatFlags::RemoveDir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOBODY: u32 = 65534;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A parent others may create names in (sticky, as /tmp), and a target path in it.
    fn shared() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("shared");
        std::fs::create_dir(&parent).unwrap();
        chmod(&parent, 0o1777);
        (t, parent.join("data"))
    }

    /// A staged restore beside `target`: one file in a private directory.
    fn staged(target: &Path) -> Beside {
        let b = Beside::create(target, "chain", &crate::Silent).unwrap();
        std::fs::write(b.path.join("ibdata1"), b"restored").unwrap();
        b
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn owner_mode(p: &Path) -> (u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.mode() & 0o7777)
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_private_directory_is_0700_and_goes_when_dropped() {
        let (_t, target) = shared();
        let b = staged(&target);
        assert_eq!(owner_mode(&b.path).1, 0o700);
        drop(b);
        assert!(names(target.parent().unwrap()).is_empty());
    }

    #[test]
    fn an_absent_target_is_taken_and_one_created_meanwhile_is_left_alone() {
        let (_t, target) = shared();
        staged(&target).replace(false, true).unwrap();
        assert_eq!(std::fs::read(target.join("ibdata1")).unwrap(), b"restored");
        assert_eq!(owner_mode(&target).1, 0o700, "a target coffer created stays private");

        // Another user makes the target (a directory of theirs, or a link) before the rename.
        for link in [false, true] {
            let (_t, target) = shared();
            let b = staged(&target);
            if link {
                std::os::unix::fs::symlink("/etc", &target).unwrap();
            } else {
                std::fs::create_dir(&target).unwrap();
                chmod(&target, 0o777);
                if is_root() {
                    std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
                }
            }
            let before = owner_mode(&target);
            let err = b.replace(false, true).unwrap_err().to_string();
            assert!(err.contains("was created while the chain was restored"), "{err}");
            assert_eq!(owner_mode(&target), before, "what appeared is not changed");
            assert_eq!(names(target.parent().unwrap()), ["data"], "the restored data is gone");
            if !link {
                assert!(names(&target).is_empty());
            }
        }
    }

    #[test]
    fn a_directory_is_replaced_only_if_it_is_the_one_seen() {
        let (_t, target) = shared();
        std::fs::create_dir(&target).unwrap();
        chmod(&target, 0o751);
        if is_root() {
            std::os::unix::fs::lchown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let before = owner_mode(&target);
        staged(&target).replace(false, true).unwrap();
        assert_eq!(owner_mode(&target), before, "the mode and owner of the directory replaced");
        assert_eq!(names(&target), ["ibdata1"]);
        assert_eq!(names(target.parent().unwrap()), ["data"]);

        // Moved away and another put in its place: neither is touched.
        let b = staged(&target);
        std::fs::rename(&target, target.with_file_name("moved")).unwrap();
        std::fs::create_dir(&target).unwrap();
        chmod(&target, 0o777);
        let err = b.replace(true, true).unwrap_err().to_string();
        assert!(err.contains("was replaced while the chain was restored"), "{err}");
        assert_eq!(owner_mode(&target).1, 0o777);
        assert!(names(&target).is_empty());
        assert_eq!(names(&target.with_file_name("moved")), ["ibdata1"]);
    }

    #[test]
    fn a_directory_filled_meanwhile_is_replaced_only_with_force() {
        let (_t, target) = shared();
        std::fs::create_dir(&target).unwrap();
        let b = staged(&target);
        std::fs::write(target.join("old"), b"old").unwrap();
        let err = b.replace(false, true).unwrap_err().to_string();
        assert!(err.contains("was filled"), "{err}");
        assert_eq!(names(&target), ["old"]);
        staged(&target).replace(true, true).unwrap();
        assert_eq!(names(&target), ["ibdata1"]);
        assert_eq!(names(target.parent().unwrap()), ["data"], "the old contents went");
    }

    #[test]
    fn a_private_directory_swapped_for_another_takes_only_its_own_contents_away() {
        let (_t, target) = shared();
        let b = staged(&target);
        let theirs = target.with_file_name("theirs");
        std::fs::rename(&b.path, &theirs).unwrap();
        std::fs::create_dir(&b.path).unwrap();
        std::fs::write(b.path.join("planted"), b"x").unwrap();
        let path = b.path.clone();
        drop(b);
        assert_eq!(names(&path), ["planted"], "what was put in its place stays");
        assert!(names(&theirs).is_empty(), "the restored data went, wherever it was moved");
    }

    #[test]
    fn parents_others_may_change_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir_all(open.join("below")).unwrap();
        chmod(&open, 0o777);
        for target in [open.join("data"), open.join("below/data"), open.join("new/data")] {
            let err = Place::open(&target, &crate::Silent).unwrap_err().to_string();
            assert!(err.contains("is writable by group or others"), "{err}");
        }
        assert!(!open.join("new").exists(), "nothing is created under a parent refused");
        if is_root() {
            let theirs = t.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::lchown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
            let err = Place::open(&theirs.join("data"), &crate::Silent).unwrap_err().to_string();
            assert!(err.contains("(uid 65534), not root"), "{err}");
        }
        chmod(&open, 0o1777);
        Place::open(&open.join("data"), &crate::Silent).unwrap();
    }

    #[test]
    fn kept_under_a_name_that_must_be_free() {
        let (_t, target) = shared();
        let dest = target.with_file_name("data.binlog");
        std::fs::create_dir(&dest).unwrap();
        let err = staged(&target).keep_as(&dest).unwrap_err().to_string();
        assert!(err.contains("cannot move"), "{err}");
        std::fs::remove_dir(&dest).unwrap();
        staged(&target).keep_as(&dest).unwrap();
        assert_eq!(names(&dest), ["ibdata1"]);
    }
}
