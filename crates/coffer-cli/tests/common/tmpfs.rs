//! A small file system for the disk-full tests: a tmpfs of a given size, mounted by root,
//! unmounted when dropped. Without root (or where mount fails) the tests that need one are
//! skipped with a message, unless COFFER_REQUIRE_TMPFS=1, which makes that a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `size` (as mount takes it: `10m`, `512k`) at `at`, created if absent.
    pub fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(at)
            .stdin(Stdio::null())
            .output();
        let why = match &out {
            Ok(o) if o.status.success() => return Some(Self { path: at.to_owned() }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(std::env::var_os("COFFER_REQUIRE_TMPFS").is_none(), "COFFER_REQUIRE_TMPFS=1 and no tmpfs: {why}");
        eprintln!("skipped: no tmpfs at {} (root mounts one): {why}", at.display());
        None
    }

    /// The same file system, grown (or shrunk) to `size`, what it holds kept.
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot resize the tmpfs at {}", self.path.display());
    }

    /// Bytes free on it (root's view: what coffer, run as root, may write).
    pub fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.path).unwrap();
        #[allow(clippy::useless_conversion)]
        let free = u64::from(s.blocks_free()) * u64::from(s.fragment_size());
        free
    }

    /// A file that takes all but `leave` bytes of what is free (a multiple of the page size).
    pub fn ballast(&self, leave: u64) -> PathBuf {
        let path = self.path.join("ballast");
        let len = self.free().checked_sub(leave).expect("room for the ballast");
        assert_eq!(len % 4096, 0, "page-sized ballast");
        std::fs::write(&path, vec![0x5a; len as usize]).unwrap();
        assert_eq!(self.free(), leave, "the ballast leaves exactly {leave} bytes");
        path
    }

    /// The shown path, for a command line.
    pub fn s(&self, rel: &str) -> String {
        self.path.join(rel).to_str().unwrap().to_owned()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Names in `dir` (hidden ones too), sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// The one line a failed command printed (`coffer: error: ...`); fails the test if there are
/// more error lines, or none.
#[track_caller]
pub fn error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("coffer: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    eprintln!("{}", errors[0]);
    errors[0].to_owned()
}

/// Asserts that `line` names the file system mounted at `fs`.
#[track_caller]
pub fn names_the_fs(line: &str, fs: &Tmpfs) {
    let mount = fs.path.canonicalize().unwrap();
    assert!(line.contains(&format!("the file system at {} ", mount.display())), "names {}: {line}", mount.display());
}
