//! Confinement of a program that runs what coffer does not trust: a private server on a
//! restored datadir replays a binary log and opens tables an image described. In a mount
//! namespace of its own every file system is read-only but the directories it is given, and in
//! a network namespace of its own it has no network: whatever SQL it runs (a forged event's
//! `SET GLOBAL general_log_file`, a `DATA DIRECTORY` table) writes nothing elsewhere, however
//! much the user it runs as may write on the host.
//!
//! The namespaces are made between fork and exec (the parent is untouched), which needs
//! CAP_SYS_ADMIN (root); [`Confinement::apply`] installs that step into a `Command`.

use crate::FsError;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// `mount_setattr(2)`, Linux 5.12: the same number on every architecture but alpha and mips.
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The directories a confined program may write to.
#[derive(Debug, Clone)]
pub struct Confinement {
    writable: Vec<CString>,
}

impl Confinement {
    /// A confinement that leaves `writable` (existing directories) writable, and nothing else.
    pub fn new(writable: &[&Path]) -> Result<Self, FsError> {
        let mut dirs = Vec::new();
        for d in writable {
            let real = std::fs::canonicalize(d).map_err(crate::io_err("resolve", *d))?;
            // A path has no NUL byte.
            dirs.push(CString::new(real.as_os_str().as_bytes()).map_err(|e| crate::io_err("resolve", *d)(e.into()))?);
        }
        Ok(Self { writable: dirs })
    }

    /// Makes the program `cmd` starts run confined. Its start fails (the spawn returns the
    /// error) where the namespaces cannot be made: without CAP_SYS_ADMIN, in a container that
    /// forbids them, on a kernel before 5.12.
    pub fn apply(self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and makes only system
        // calls, on values made before the fork (no allocation, no lock).
        unsafe {
            cmd.pre_exec(move || confine(&self.writable));
        }
    }
}

/// Checks a system call's return value.
fn check(ret: libc::c_long) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn confine(writable: &[CString]) -> std::io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    let root = c"/".as_ptr();
    // SAFETY: plain system calls on NUL-terminated strings and a struct that outlive them.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET).into())?;
        // Nothing done here reaches the host's mounts.
        check(libc::mount(null, root, null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()).into())?;
        for d in writable {
            check(libc::mount(d.as_ptr(), d.as_ptr(), null, libc::MS_BIND | libc::MS_REC, std::ptr::null()).into())?;
        }
        let attr = |set: u64, clr: u64| MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
        let ro = attr(libc::MOUNT_ATTR_RDONLY, 0);
        let size = std::mem::size_of::<MountAttr>();
        check(libc::syscall(SYS_MOUNT_SETATTR, libc::AT_FDCWD, root, AT_RECURSIVE, &ro as *const MountAttr, size))?;
        let rw = attr(0, libc::MOUNT_ATTR_RDONLY);
        for d in writable {
            check(libc::syscall(SYS_MOUNT_SETATTR, libc::AT_FDCWD, d.as_ptr(), 0u32, &rw as *const MountAttr, size))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: a confined shell writes in its directory, nowhere else, and has no network.
    #[test]
    fn a_confined_program_writes_only_where_it_may() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: confinement needs root");
            return;
        }
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let script = format!(
            "echo ok > {a}/in && ! echo no > {o}/out 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null && echo done",
            a = allowed.path().display(),
            o = other.path().display()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script]);
        Confinement::new(&[allowed.path()]).unwrap().apply(&mut cmd);
        let out = match cmd.output() {
            Ok(o) => o,
            // A container that forbids namespaces: what coffer says then is the caller's test.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done", "{out:?}");
        assert!(allowed.path().join("in").exists());
        assert!(!other.path().join("out").exists());
        // The host's mounts are as they were.
        std::fs::write(other.path().join("host"), b"x").unwrap();
    }
}
