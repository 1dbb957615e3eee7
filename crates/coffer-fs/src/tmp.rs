//! Output files written under a temporary name beside their final one,
//! `.NAME.coffer-tmp-PID`, and the cleaning up of those a killed run left behind.
//!
//! A writer holds an exclusive `flock` on its temporary file for as long as it writes it (the
//! lock goes with the process, however it ends). A leftover is removed only if it is exactly
//! such a name for the same output, a regular file of the user running coffer, nobody holds its
//! lock, and the process its name gives no longer exists: never a file another run is writing.

use crate::at::{id_of, list, open_in};
use crate::{nix_err, FsError};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The temporary name a file `name` is written under by process `pid`.
pub fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.coffer-tmp-{pid}")
}

/// The process id in `candidate` if it is exactly the temporary name of `name` (any process).
fn pid_of(candidate: &[u8], name: &str) -> Option<i32> {
    let rest = candidate.strip_prefix(b".")?.strip_prefix(name.as_bytes())?.strip_prefix(b".coffer-tmp-")?;
    if rest.is_empty() || rest.len() > 10 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse::<i32>().ok().filter(|&p| p > 0)
}

/// Takes the writer's lock on a temporary file (without waiting); false if it could not (a
/// file system without locks: the process id in the name still protects it).
pub fn lock(file: &File) -> bool {
    // SAFETY: flock only reads its integer arguments; the descriptor is open for the call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes the temporaries of `name` in `dir` that killed runs left (see the module
/// documentation); returns their paths. What cannot be looked at is left alone.
pub fn remove_stale(dir: &Path, name: &str) -> Result<Vec<PathBuf>, FsError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dirfd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(nix_err("open directory", dir))?;
    let me = nix::unistd::geteuid().as_raw();
    let mut removed = Vec::new();
    for candidate in list(dirfd.as_fd()).map_err(nix_err("read directory", dir))? {
        let Some(pid) = pid_of(candidate.as_bytes(), name) else { continue };
        // Regular files only (a symlink is refused by the open), opened without blocking.
        let Ok(fd) = open_in(dirfd.as_fd(), &candidate, OFlag::O_RDONLY | OFlag::O_NONBLOCK) else { continue };
        let Ok(st) = fstat(&fd) else { continue };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || st.st_uid != me {
            continue;
        }
        let file = File::from(fd);
        if !lock(&file) || process_exists(pid) {
            continue;
        }
        // Still the file looked at, under that name?
        let same = fstatat(&dirfd, candidate.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|now| id_of(&now) == id_of(&st));
        if same && unlinkat(&dirfd, candidate.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
            removed.push(dir.join(OsStr::from_bytes(candidate.as_bytes())));
        }
    }
    Ok(removed)
}

/// Is there a process with this id (in this process's view)? Only positive ids name one
/// process: anything else is taken as alive (`kill` would probe a process group).
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    }

    #[test]
    fn only_unlocked_temporaries_of_dead_processes_of_that_output_go() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let dead = dead_pid();
        let put = |n: &str| std::fs::write(dir.join(n), b"x").unwrap();
        put(&temp_name("db.coffer", dead));
        put(&temp_name("other.coffer", dead));
        put(&temp_name("db.coffer", 1));
        put(&format!(".db.coffer.coffer-tmp-{dead}x"));
        put(&format!(".db.coffer.coffer-tmp-{dead}.part"));
        put("db.coffer");
        // A live writer in another PID namespace would look dead here: its lock protects it.
        let locked_name = temp_name("db.coffer", dead + 1);
        put(&locked_name);
        let held = File::open(dir.join(&locked_name)).unwrap();
        assert!(lock(&held));
        std::os::unix::fs::symlink("/etc/passwd", dir.join(temp_name("db.coffer", dead + 2))).unwrap();

        let removed = remove_stale(dir, "db.coffer").unwrap();
        assert_eq!(removed, vec![dir.join(temp_name("db.coffer", dead))]);
        let mut left: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want = vec![
            temp_name("other.coffer", dead),
            temp_name("db.coffer", 1),
            format!(".db.coffer.coffer-tmp-{dead}x"),
            format!(".db.coffer.coffer-tmp-{dead}.part"),
            "db.coffer".into(),
            locked_name,
            temp_name("db.coffer", dead + 2),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
