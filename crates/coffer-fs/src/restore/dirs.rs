//! Directory handles along the path last used: entries are reached one component at a time
//! from the target, without following symlinks, and the deepest few handles are kept open.

use super::{os, Restorer};
use crate::at::{dir_flags, id_of, open_in, reopen_parent, OPEN_DIRS};
use crate::{nix_err, FsError};
use nix::errno::Errno;
use nix::sys::stat::{fstat, mkdirat, Mode};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// A directory on the path cached by [`Restorer::dir_fd`].
pub(super) struct Level {
    /// End of its path in `Restorer::open_path`.
    end: usize,
    id: (u64, u64),
    /// Kept for the deepest [`OPEN_DIRS`] levels; the deepest always has one.
    fd: Option<OwnedFd>,
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 64 <= n && a[i..i + 64] == b[i..i + 64] {
        i += 64;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl Restorer {
    /// A handle on directory `rel` (relative to the target), opened component by component
    /// without following symlinks; missing directories are created (mode 0700 until their own
    /// entry, if any, sets the real mode) when `create` is set.
    ///
    /// Handles are cached along the last path asked for: the components it shares with `rel`
    /// are not opened again. Only the deepest [`OPEN_DIRS`] are kept open; a shallower one is
    /// reopened through `..` of the one below it when that is the same directory (device and
    /// inode) as before, else from the target down.
    pub(super) fn dir_fd(&mut self, rel: &[u8], create: bool) -> Result<BorrowedFd<'_>, FsError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        // Levels of the cached path that are also directories of `rel`.
        let m = common_prefix(&self.open_path, rel);
        let mut keep = self.levels.partition_point(|l| l.end < m);
        if self.levels.get(keep).is_some_and(|l| l.end == m && rel.get(m).is_none_or(|&b| b == b'/')) {
            keep += 1;
        }
        if keep > 0 && self.levels[keep - 1].fd.is_none() && !self.reopen_up(keep - 1) {
            keep = 0;
        }
        self.levels.truncate(keep);
        self.open_path.truncate(self.levels.last().map_or(0, |l| l.end));
        let mut start = self.levels.last().map_or(0, |l| l.end + 1);
        while start < rel.len() {
            let end = rel[start..].iter().position(|&b| b == b'/').map_or(rel.len(), |p| start + p);
            let comp = os(&rel[start..end]);
            let so_far = &rel[..end];
            let cur = match self.levels.last() {
                None => self.root.as_fd(),
                Some(Level { fd: Some(fd), .. }) => fd.as_fd(),
                Some(Level { fd: None, .. }) => {
                    return Err(Self::unsafe_entry(rel, "lost the handle of a directory on the way"))
                }
            };
            let next = match open_in(cur, comp, dir_flags()) {
                Err(Errno::ENOENT) if create => {
                    mkdirat(cur, comp, Mode::from_bits_truncate(0o700))
                        .map_err(nix_err("create directory", self.shown(so_far)))?;
                    open_in(cur, comp, dir_flags())
                }
                other => other,
            };
            let fd = match next {
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
            let st = fstat(&fd).map_err(nix_err("stat", self.shown(so_far)))?;
            if !self.open_path.is_empty() {
                self.open_path.push(b'/');
            }
            self.open_path.extend_from_slice(comp.as_bytes());
            self.levels.push(Level { end: self.open_path.len(), id: id_of(&st), fd: Some(fd) });
            if let Some(far) = self.levels.len().checked_sub(OPEN_DIRS + 1) {
                self.levels[far].fd = None;
            }
            start = end + 1;
        }
        match self.levels.last() {
            Some(Level { fd: Some(fd), .. }) => Ok(fd.as_fd()),
            _ => Err(Self::unsafe_entry(rel, "lost the handle of a directory on the way")),
        }
    }

    /// Gives level `to` a handle again, through `..` from the nearest deeper level that has
    /// one, each step checked to reach the directory it reached before. False if that fails or
    /// would take more steps than opening it from the target down.
    fn reopen_up(&mut self, to: usize) -> bool {
        let Some(mut j) = (to + 1..self.levels.len()).find(|&j| self.levels[j].fd.is_some()) else { return false };
        if j - to > to + 1 {
            return false;
        }
        while j > to {
            let up = match &self.levels[j].fd {
                Some(child) => reopen_parent(child.as_fd(), self.levels[j - 1].id),
                None => return false,
            };
            match up {
                Ok(Some(fd)) => self.levels[j - 1].fd = Some(fd),
                _ => return false,
            }
            j -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, opts};
    use super::*;
    use coffer_format::EntryKind;
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::fstatat;
    use std::fs::File;
    use std::io::Read;

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
    fn deep_trees_restore_with_few_handles() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("out");
        let mut r = Restorer::create(&target, opts()).unwrap();
        r.begin(&meta(EntryKind::Dir, "")).unwrap();
        let depth = 5 * OPEN_DIRS + 3;
        let mut path = String::new();
        for i in 0..depth {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&format!("{:0>40}", i));
            let mut d = meta(EntryKind::Dir, &path);
            d.mode = 0o750 + (i as u32 % 2) * 5;
            r.begin(&d).unwrap();
            if i % 7 == 0 || i == depth - 1 {
                r.begin(&meta(EntryKind::File, &format!("{path}/f"))).unwrap();
                r.write(0, path.as_bytes()).unwrap();
                r.end_file(path.len() as u64).unwrap();
            }
            assert!(r.levels.iter().filter(|l| l.fd.is_some()).count() <= OPEN_DIRS);
        }
        // A file at a shallow level after the deepest: the handles are found again.
        r.begin(&meta(EntryKind::File, &format!("{:0>40}/late", 0))).unwrap();
        r.end_file(0).unwrap();
        r.finish().unwrap();
        assert!(path.len() > 4096, "longer than PATH_MAX");
        // Read back through handles (the path is longer than PATH_MAX).
        let mut dir = nix::fcntl::open(&target, dir_flags(), Mode::empty()).unwrap();
        for (i, comp) in path.split('/').enumerate() {
            let st = fstatat(&dir, comp, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
            assert_eq!(st.st_mode & 0o7777, 0o750 + (i as u32 % 2) * 5, "level {i}");
            dir = openat(&dir, comp, dir_flags(), Mode::empty()).unwrap();
        }
        let mut bottom = String::new();
        File::from(openat(&dir, "f", OFlag::O_RDONLY, Mode::empty()).unwrap()).read_to_string(&mut bottom).unwrap();
        assert_eq!(bottom, path);
    }
}
