//! The marker an unfinished restore leaves in its target, the temporary names entries are
//! written under, and sweeping the temporaries a killed restore left.

use super::{Restorer, MARKER};
use crate::at::{dir_flags, open_in, DirStack};
use crate::tmp::process_exists;
use crate::{io_err, nix_err, FsError};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

/// Prefix of the temporary names files are written under: `.coffer-tmp-TOKEN-PID-N`.
const TMP_PREFIX: &str = ".coffer-tmp-";
/// The marker's line that holds the target's temporary-name token (16 hex digits).
const MARKER_TOKEN: &[u8] = b"token ";
/// The marker's text, and the line it has when the restore created the target directory (so a
/// resumed restore still treats the target as its own).
const MARKER_NOTE: &[u8] =
    b"A coffer restore into this directory is running or did not finish: its contents are incomplete.\n";
const MARKER_CREATED: &[u8] = b"The restore created this directory.\n";

/// The process id in `name` if it is one of this target's temporary names, exactly
/// `.coffer-tmp-TOKEN-PID-N` (TOKEN the target's, in 16 hex digits; PID and N decimal).
fn temporary_pid(name: &[u8], token: u64) -> Option<i32> {
    let rest = name.strip_prefix(TMP_PREFIX.as_bytes())?.strip_prefix(format!("{token:016x}-").as_bytes())?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, n) = (&rest[..dash], &rest[dash + 1..]);
    let digits = |d: &[u8]| !d.is_empty() && d.len() <= 20 && d.iter().all(u8::is_ascii_digit);
    if !digits(pid) || !digits(n) {
        return None;
    }
    std::str::from_utf8(pid).ok()?.parse::<i32>().ok().filter(|&p| p > 0)
}

/// What an interrupted restore's marker says.
#[derive(Default)]
pub(super) struct Marker {
    pub(super) present: bool,
    /// The restore created the target directory.
    pub(super) created: bool,
    /// The token of the temporary names it wrote (none in a marker of another user, or of a
    /// coffer before tokens: its temporaries are left alone).
    pub(super) token: Option<u64>,
}

pub(super) fn read_marker(root: BorrowedFd<'_>) -> Marker {
    let Ok(fd) = open_in(root, OsStr::new(MARKER), OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
        return Marker::default();
    };
    // Only a marker of this user's own restore may say the directory or the temporaries are
    // the restore's.
    let ours = fstat(&fd).is_ok_and(|st| st.st_uid == nix::unistd::geteuid().as_raw());
    let mut text = Vec::new();
    if !ours || File::from(fd).take(4096).read_to_end(&mut text).is_err() {
        return Marker { present: true, ..Marker::default() };
    }
    let token = text.split(|&b| b == b'\n').find_map(|line| {
        let hex = line.strip_prefix(MARKER_TOKEN)?;
        (hex.len() == 16).then_some(())?;
        u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    });
    Marker { present: true, created: text.windows(MARKER_CREATED.len()).any(|w| w == MARKER_CREATED), token }
}

/// A random token for temporary names (from the kernel's generator).
pub(super) fn new_token() -> Result<u64, FsError> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(FsError::Io {
            op: "get random bytes for",
            path: "temporary names".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(u64::from_le_bytes(b))
}

/// Takes an exclusive lock on the directory without waiting; false if another process holds
/// one (or the file system has no locks).
pub(super) fn try_lock(dir: &OwnedFd) -> bool {
    // SAFETY: flock only reads its integer arguments; the descriptor is open for the call.
    unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl Restorer {
    /// Leaves the marker in the target: its note, whether the restore created the target, and
    /// the token of its temporary names.
    pub(super) fn write_marker(&self) -> Result<(), FsError> {
        let fd = openat(
            &self.root,
            MARKER,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(nix_err("create", self.root_path.join(MARKER)))?;
        let mut note = MARKER_NOTE.to_vec();
        if !self.target_existed {
            note.extend_from_slice(MARKER_CREATED);
        }
        note.extend_from_slice(format!("{}{:016x}\n", String::from_utf8_lossy(MARKER_TOKEN), self.token).as_bytes());
        File::from(fd).write_all_at(&note, 0).map_err(io_err("write", self.root_path.join(MARKER)))
    }

    /// The name a new entry is created under: its own (direct names), else a temporary one
    /// it is renamed from once complete.
    pub(super) fn new_name(&mut self, name: &[u8]) -> Vec<u8> {
        if self.direct_names {
            name.to_vec()
        } else {
            self.next_tmp()
        }
    }

    fn next_tmp(&mut self) -> Vec<u8> {
        self.tmp_counter += 1;
        format!("{TMP_PREFIX}{:016x}-{}-{}", self.token, self.pid, self.tmp_counter).into_bytes()
    }

    /// Removes what an interrupted restore left under temporary names (a process killed before
    /// it could clean up): entries named exactly `.coffer-tmp-TOKEN-PID-N` (this target's token)
    /// that are files or symlinks,
    /// at any depth. While this restore holds the target's lock no other restore writes there,
    /// so all are removed; without the lock, only those of processes that no longer exist.
    /// Done once per restorer (before anything is restored); returns how many were removed.
    pub fn sweep_temporaries(&mut self) -> Result<u64, FsError> {
        if let Some(n) = self.swept {
            return Ok(n);
        }
        let mine = |pid: i32| i64::from(pid) == i64::from(self.pid) && self.tmp_counter > 0;
        let root = nix::unistd::dup(&self.root).map_err(nix_err("dup", &self.root_path))?;
        let mut stack = DirStack::new(&self.root_path, root)?;
        let mut removed = 0;
        loop {
            let Some(name) = stack.next_name() else {
                if !stack.pop()? {
                    break;
                }
                continue;
            };
            let Some(dir) = stack.fd() else { break };
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(nix_err("stat", stack.shown(&name))(e)),
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR {
                match open_in(dir, &name, dir_flags()) {
                    Ok(fd) => {
                        let st = fstat(&fd).map_err(nix_err("stat", stack.shown(&name)))?;
                        stack.push(&name, fd, &st)?;
                    }
                    // Replaced meanwhile: not followed.
                    Err(Errno::ELOOP) | Err(Errno::ENOTDIR) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(nix_err("open directory", stack.shown(&name))(e)),
                }
                continue;
            }
            if kind != SFlag::S_IFREG && kind != SFlag::S_IFLNK {
                continue;
            }
            let Some(pid) = temporary_pid(name.as_bytes(), self.token) else { continue };
            if mine(pid) || !(self.locked || i64::from(pid) == i64::from(self.pid) || !process_exists(pid)) {
                continue;
            }
            match unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => removed += 1,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(nix_err("remove", stack.shown(&name))(e)),
            }
        }
        self.swept = Some(removed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::opts;
    use super::super::RestoreOptions;
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_forced_restore_sweeps_only_coffer_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dead = {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            c.wait().unwrap();
            c.id()
        };
        // Without an interrupted restore's marker nothing is swept; the restore leaves one,
        // with the target's token.
        std::fs::write(root.join(format!(".coffer-tmp-{dead}-1")), b"x").unwrap();
        let r = Restorer::create(root, RestoreOptions { force: true, ..opts() }).unwrap();
        assert_eq!(r.swept(), 0);
        let token = format!("{:016x}", r.token);
        drop(r);
        assert!(root.join(format!(".coffer-tmp-{dead}-1")).exists());
        assert_eq!(
            read_marker(File::open(root).unwrap().as_fd()).token.map(|t| format!("{t:016x}")),
            Some(token.clone())
        );

        std::fs::create_dir_all(root.join(format!("a/b/.coffer-tmp-{token}-1-1"))).unwrap();
        for name in [
            format!("a/b/.coffer-tmp-{token}-{dead}-7"),
            format!(".coffer-tmp-{token}-{dead}-1"),
            format!(".coffer-tmp-{token}-1-2"),
            format!(".coffer-tmp-{token}-x-1"),
            format!(".coffer-tmp-{token}-12-"),
            format!(".coffer-tmp-{token}-12-3-4"),
            // An entry of an image named like a temporary, without the target's token.
            format!(".coffer-tmp-0123456789abcdef-{dead}-1"),
            "a/keep".into(),
        ] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join(format!("a/.coffer-tmp-{token}-{dead}-9"))).unwrap();
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };

        // Another process holds the target's lock: only temporaries of dead processes go.
        let held = File::open(root).unwrap();
        assert!(try_lock(&OwnedFd::from(held.try_clone().unwrap())));
        let r = Restorer::create(root, RestoreOptions { force: true, ..opts() }).unwrap();
        assert_eq!(r.swept(), 3);
        assert_eq!(format!("{:016x}", r.token), token, "the token is kept");
        drop(r);
        assert_eq!(names("a/b"), vec![format!(".coffer-tmp-{token}-1-1")]);
        assert!(root.join(format!(".coffer-tmp-{token}-1-2")).exists(), "process 1 is alive");
        drop(held);

        // With the lock, every temporary is stale.
        let r = Restorer::create(root, RestoreOptions { force: true, ..opts() }).unwrap();
        assert_eq!(r.swept(), 1);
        drop(r);
        let mut want = vec![
            ".coffer-restore-incomplete".to_string(),
            format!(".coffer-tmp-{dead}-1"),
            format!(".coffer-tmp-0123456789abcdef-{dead}-1"),
            format!(".coffer-tmp-{token}-12-"),
            format!(".coffer-tmp-{token}-12-3-4"),
            format!(".coffer-tmp-{token}-x-1"),
            "a".into(),
        ];
        want.sort();
        assert_eq!(names(""), want);
        assert_eq!(names("a"), vec!["b", "keep"]);
        assert!(root.join(format!("a/b/.coffer-tmp-{token}-1-1")).is_dir(), "directories are never swept");
    }
}
