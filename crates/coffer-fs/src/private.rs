//! Private working directories that hold plaintext while a job runs (a drill's restored datadir,
//! a private server's socket and logs, an engine's option file), and the removal of those a
//! killed run left behind.
//!
//! A directory is made as `PREFIX-RANDOM`, mode 0700, with a lock file ([`LOCK`]) that names
//! the process using it and that this process holds an exclusive `flock` on for as long as the
//! directory exists (the lock goes with the process, however it ends). [`sweep`] removes a
//! `PREFIX-*` directory only if its lock file is a regular file of the user running coffer,
//! nobody holds its lock, and the process it names no longer exists: never a directory another
//! run is using. A directory without a lock file (being made, or not coffer's) is left alone.

use crate::{io_err, FsError};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file in a private directory: the PID of the process using it, `flock`ed by it.
pub const LOCK: &str = ".coffer-lock";

/// A private directory (mode 0700), locked while this value lives and removed when dropped.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    // Held open (close-on-exec: no child keeps it) for its lock; released after the removal.
    _lock: File,
}

impl PrivateDir {
    /// Makes `parent/PREFIX-RANDOM` with its lock file.
    pub fn create(parent: &Path, prefix: &str) -> Result<Self, FsError> {
        let path = parent.join(format!("{prefix}-{:016x}", random()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(io_err("create directory", &path))?;
        match lock_in(&path) {
            Ok(lock) => Ok(Self { path, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The lock file of a new directory: written and locked under another name, then renamed, so
/// that a sweep never finds it unlocked or without its PID. (For a directory made otherwise,
/// such as one that will take a target's place: its lock file is removed, and the returned
/// file kept open, before it does.)
pub fn lock_in(dir: &Path) -> Result<File, FsError> {
    let new = dir.join(".coffer-lock.new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)
        .map_err(io_err("create", &new))?;
    // A file system without locks: the PID still protects the directory.
    let _ = crate::tmp::lock(&f);
    writeln!(f, "{}", std::process::id()).map_err(io_err("write", &new))?;
    let lock = dir.join(LOCK);
    std::fs::rename(&new, &lock).map_err(io_err("rename", &lock))?;
    Ok(f)
}

/// 64 random bits for a directory's name.
fn random() -> u64 {
    let mut n = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut n)).is_ok() {
        return u64::from_le_bytes(n);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (u64::from(std::process::id()) << 32) ^ t.as_nanos() as u64
}

/// Is `name` `PREFIX-` followed by letters, digits and dashes?
fn named(name: &[u8], prefix: &str) -> bool {
    name.strip_prefix(prefix.as_bytes())
        .and_then(|r| r.strip_prefix(b"-"))
        .is_some_and(|r| !r.is_empty() && r.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
}

/// Removes the `PREFIX-*` directories in `parent` that killed runs left (see the module
/// documentation), calling `before` with each one first (to stop what may still run in it);
/// returns their paths. What cannot be looked at is left alone.
pub fn sweep(parent: &Path, prefix: &str, before: &mut dyn FnMut(&Path)) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let me = nix::unistd::geteuid().as_raw();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !named(entry.file_name().as_bytes(), prefix) {
            continue;
        }
        let path = entry.path();
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path.join(LOCK));
        let Ok(mut lock) = lock else { continue };
        if !lock.metadata().is_ok_and(|m| m.is_file() && m.uid() == me) || !crate::tmp::lock(&lock) {
            continue;
        }
        let mut text = String::new();
        let pid = lock.read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<i32>().ok());
        match pid {
            Some(pid) if pid > 0 && !crate::tmp::process_exists(pid) => {}
            _ => continue,
        }
        before(&path);
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    }

    /// A leftover as a killed run leaves it: its lock file naming `pid`, unlocked.
    fn leftover(dir: &Path, name: &str, pid: u32) {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join(LOCK), format!("{pid}\n")).unwrap();
        std::fs::write(dir.join(name).join("ibdata1"), b"plaintext").unwrap();
    }

    #[test]
    fn a_private_directory_is_locked_and_removed_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = PrivateDir::create(t.path(), "coffer-drill").unwrap();
        let path = d.path().to_owned();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        let pid: u32 = std::fs::read_to_string(path.join(LOCK)).unwrap().trim().parse().unwrap();
        assert_eq!(pid, std::process::id());
        assert!(!crate::tmp::lock(&File::open(path.join(LOCK)).unwrap()), "held while the directory lives");
        // Ours, alive: no sweep takes it.
        assert!(sweep(t.path(), "coffer-drill", &mut |_| panic!("not a leftover")).is_empty());
        drop(d);
        assert!(!path.exists());
    }

    #[test]
    fn only_unlocked_directories_of_dead_processes_with_that_prefix_go() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let dead = dead_pid();
        leftover(dir, "coffer-drill-0a1b", dead);
        leftover(dir, "coffer-replay-0a1b", dead);
        leftover(dir, "coffer-drill-alive", 1);
        leftover(dir, "coffer-drillx-1", dead);
        leftover(dir, "coffer-drill-", dead);
        leftover(dir, "coffer-drill-a.b", dead);
        // A live run in another PID namespace would look dead here: its lock protects it.
        leftover(dir, "coffer-drill-locked", dead);
        let held = File::open(dir.join("coffer-drill-locked").join(LOCK)).unwrap();
        assert!(crate::tmp::lock(&held));
        // No lock file, an empty one, a lock file that is a link, a link to a directory.
        std::fs::create_dir(dir.join("coffer-drill-nolock")).unwrap();
        leftover(dir, "coffer-drill-empty", dead);
        std::fs::write(dir.join("coffer-drill-empty").join(LOCK), b"").unwrap();
        std::fs::create_dir(dir.join("coffer-drill-link")).unwrap();
        std::os::unix::fs::symlink(dir.join("coffer-drill-0a1b").join(LOCK), dir.join("coffer-drill-link").join(LOCK))
            .unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        leftover(elsewhere.path(), "x", dead);
        std::os::unix::fs::symlink(elsewhere.path().join("x"), dir.join("coffer-drill-sym")).unwrap();

        let mut seen = Vec::new();
        let removed = sweep(dir, "coffer-drill", &mut |p| seen.push(p.to_owned()));
        assert_eq!(removed, vec![dir.join("coffer-drill-0a1b")]);
        assert_eq!(seen, removed, "told before each removal");
        let mut left: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want: Vec<String> = [
            "coffer-replay-0a1b",
            "coffer-drill-alive",
            "coffer-drillx-1",
            "coffer-drill-",
            "coffer-drill-a.b",
            "coffer-drill-locked",
            "coffer-drill-nolock",
            "coffer-drill-empty",
            "coffer-drill-link",
            "coffer-drill-sym",
        ]
        .map(String::from)
        .into();
        want.sort();
        assert_eq!(left, want);
        assert!(elsewhere.path().join("x/ibdata1").exists(), "a link is not followed");
    }
}
