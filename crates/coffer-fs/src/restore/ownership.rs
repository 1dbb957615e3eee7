//! Owner and mode of restored entries, as far as the image is trusted.

use super::{time, Ownership, Restorer};
use crate::{nix_err, FsError};
use coffer_format::{EntryKind, EntryMeta};
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, Gid, Uid};
use std::os::fd::OwnedFd;
use std::path::Path;

impl Restorer {
    pub(super) fn owner_of(&mut self, meta: &EntryMeta) -> Option<(Uid, Gid)> {
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

    /// The mode to give an entry: the image's, without set-uid and set-gid bits (unless asked to
    /// keep them) and without write permission for others (but on sticky directories) when
    /// the owner applied is not the image's: with `--owner`, or restored by another user.
    pub(super) fn mode_of(&mut self, meta: &EntryMeta) -> u32 {
        let foreign = match self.opts.ownership {
            Ownership::Preserve => false,
            Ownership::Fixed(..) => true,
            Ownership::Current => {
                let uid = self.names.uid_of(&meta.uname).unwrap_or(meta.uid);
                let gid = self.names.gid_of(&meta.gname).unwrap_or(meta.gid);
                (uid, gid) != (self.euid, self.egid)
            }
        };
        let mut mode = meta.mode & 0o7777;
        if foreign {
            if !self.keep_setuid {
                mode &= !0o6000;
            }
            if !(meta.kind == EntryKind::Dir && mode & 0o1000 != 0) {
                mode &= !0o002;
            }
        }
        mode
    }

    pub(super) fn apply_dir_meta(
        &mut self,
        fd: &OwnedFd,
        meta: &EntryMeta,
        shown: &Path,
        mode: bool,
    ) -> Result<(), FsError> {
        if let Some((u, g)) = self.owner_of(meta) {
            fchown(fd, Some(u), Some(g)).map_err(nix_err("chown", shown))?;
        }
        if mode {
            let mode = self.mode_of(meta);
            fchmod(fd, Mode::from_bits_truncate(mode)).map_err(nix_err("chmod", shown))?;
        }
        futimens(fd, &TimeSpec::UTIME_NOW, &time(meta.mtime_sec, meta.mtime_nsec))
            .map_err(nix_err("set times of", shown))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{meta, mode, opts};
    use super::*;

    /// Entries owned, in the image, by someone other than the restoring user.
    fn foreign(kind: EntryKind, path: &str, mode: u32) -> EntryMeta {
        let mut m = meta(kind, path);
        m.mode = mode;
        m.uid = nix::unistd::geteuid().as_raw().wrapping_add(4242);
        m
    }

    #[test]
    fn a_foreign_image_gets_no_setuid_bits_nor_writable_directories() {
        let t = tempfile::tempdir().unwrap();
        let restore = |keep: bool, target: &Path| {
            let mut r = Restorer::create(target, opts()).unwrap();
            r.set_keep_setuid(keep);
            r.begin(&foreign(EntryKind::Dir, "", 0o777)).unwrap();
            r.begin(&foreign(EntryKind::Dir, "open", 0o777)).unwrap();
            r.begin(&foreign(EntryKind::Dir, "tmp", 0o1777)).unwrap();
            r.begin(&foreign(EntryKind::Dir, "shared", 0o2775)).unwrap();
            r.begin(&foreign(EntryKind::File, "suid", 0o4755)).unwrap();
            r.end_file(0).unwrap();
            r.begin(&foreign(EntryKind::File, "sgid", 0o2777)).unwrap();
            r.end_file(0).unwrap();
            let mut mine = meta(EntryKind::File, "mine");
            (mine.mode, mine.uid, mine.gid) =
                (0o4755, nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
            r.begin(&mine).unwrap();
            r.end_file(0).unwrap();
            r.finish().unwrap();
        };
        let out = t.path().join("out");
        restore(false, &out);
        assert_eq!(mode(&out.join("suid")), 0o755);
        assert_eq!(mode(&out.join("sgid")), 0o775);
        assert_eq!(mode(&out.join("open")), 0o775);
        assert_eq!(mode(&out.join("tmp")), 0o1777, "a sticky directory stays writable");
        assert_eq!(mode(&out.join("shared")), 0o775);
        assert_eq!(mode(&out), 0o775, "the target the restore created");
        assert_eq!(mode(&out.join("mine")), 0o4755, "the restoring user's own image is trusted");

        let kept = t.path().join("kept");
        restore(true, &kept);
        assert_eq!(mode(&kept.join("suid")), 0o4755);
        assert_eq!(mode(&kept.join("sgid")), 0o2775);
        assert_eq!(mode(&kept.join("open")), 0o775, "--keep-setuid keeps only those bits");

        // A target that was there before keeps its mode, whatever the image says.
        let before = t.path().join("before");
        std::fs::create_dir(&before).unwrap();
        std::fs::set_permissions(&before, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        let mut r = Restorer::create(&before, opts()).unwrap();
        let mut root = meta(EntryKind::Dir, "");
        root.mode = 0o777;
        r.begin(&root).unwrap();
        r.finish().unwrap();
        assert_eq!(mode(&before), 0o750);
    }
}
