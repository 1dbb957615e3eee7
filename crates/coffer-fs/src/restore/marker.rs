//! The marker an unfinished restore leaves in its target, the temporary names entries are
//! written under, and sweeping the temporaries a killed restore left.

use super::{Restorer, MARKER, MARKER_NEW};
use crate::at::{dir_flags, open_in, DirStack};
use crate::tmp::process_exists;
use crate::{io_err, nix_err, FsError};
use nix::errno::Errno;
use nix::fcntl::renameat;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

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

/// The marker's line that names the image being restored (its id, 32 hex digits), so that the
/// same restore run again may continue it.
const MARKER_IMAGE: &[u8] = b"image ";
/// The most of a marker that is read: coffer writes fewer than 200 bytes, and the marker may lie
/// in a directory others can write to. A longer one is read as naming nothing.
const MARKER_MAX: u64 = 4096;

/// What an interrupted restore's marker says.
#[derive(Default)]
pub(super) struct Marker {
    pub(super) present: bool,
    /// A regular file of this user: what it says may be trusted.
    pub(super) ours: bool,
    /// The restore created the target directory.
    pub(super) created: bool,
    /// The token of the temporary names it wrote (none in a marker of another user, or of a
    /// coffer before tokens: its temporaries are left alone).
    pub(super) token: Option<u64>,
    /// The image it restored (none in a marker of a coffer before markers named images).
    pub(super) image: Option<[u8; 16]>,
}

/// Whose interrupted restore a target's marker says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedBy {
    /// A restore of this image id.
    Image([u8; 16]),
    /// A restore that does not say its image (the marker of an older coffer, of a received
    /// restore, which its journal resumes, or one cut short).
    Unnamed,
    /// A marker this user did not write (another user's, or not a regular file): not believed.
    Stranger,
}

impl Marker {
    pub(super) fn marked_by(&self) -> MarkedBy {
        match (self.ours, self.image) {
            (false, _) => MarkedBy::Stranger,
            (true, Some(id)) => MarkedBy::Image(id),
            (true, None) => MarkedBy::Unnamed,
        }
    }
}

/// An image id as coffer shows it (`coffer info`): 32 lowercase hex digits.
pub(crate) fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a whole-tree restore of `image` refuses `path`, which holds files and the marker of an
/// interrupted restore (one line).
pub(crate) fn refusal(path: &std::path::Path, marked: &MarkedBy, image: &[u8; 16], running: bool) -> String {
    let p = path.display();
    match marked {
        MarkedBy::Image(id) if id == image && running => format!(
            "{p} holds a restore of image {} that is still running (its lock is held, or its file system has no locks): refusing to write beside it",
            hex_id(id)
        ),
        MarkedBy::Image(id) => format!(
            "{p} is not empty: it holds an interrupted restore of image {}, not of this one ({}): --force restores this one over it",
            hex_id(id),
            hex_id(image)
        ),
        MarkedBy::Unnamed => format!(
            "{p} is not empty: it holds an interrupted restore ({MARKER}) that names no image (an older coffer's, or a transfer's): --force restores over it"
        ),
        MarkedBy::Stranger => format!(
            "{p} is not empty: it holds an interrupted restore ({MARKER}) that another user marked: --force restores over it"
        ),
    }
}

/// What the text of a marker of ours says: whether the restore created the target, its token,
/// and its image. Any bytes: what is not exactly a line coffer writes says nothing, and an
/// image named twice is named by neither line.
fn parse_marker(text: &[u8]) -> Marker {
    let hex = |line: &[u8], prefix: &[u8], len: usize| -> Option<u128> {
        let digits = line.strip_prefix(prefix).filter(|d| d.len() == len && d.iter().all(u8::is_ascii_hexdigit))?;
        u128::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let lines = || text.split(|&b| b == b'\n');
    let token = lines().find_map(|l| hex(l, MARKER_TOKEN, 16)).and_then(|t| u64::try_from(t).ok());
    let mut images = lines().filter_map(|l| hex(l, MARKER_IMAGE, 32));
    let image = match (images.next(), images.next()) {
        (Some(id), None) => Some(id.to_be_bytes()),
        _ => None,
    };
    // A line of its own, as the writer puts it (not those words inside another line).
    let created = lines().any(|l| Some(l) == MARKER_CREATED.strip_suffix(b"\n"));
    Marker { present: true, ours: true, created, token, image }
}

/// A marker found in a target: whose it may be, and what it says.
enum Found {
    Absent,
    /// Not a regular file of this user (or it cannot be read): what it says is not believed.
    Stranger,
    /// This user's: its text, or none if longer than [`MARKER_MAX`].
    Ours(Option<Vec<u8>>),
}

/// The marker in the directory `root`, never followed through a symlink nor blocked on by a
/// FIFO planted there, and never read past [`MARKER_MAX`]. The one test of whether a target
/// holds a marker: [`read_marker`], [`read_marker_text`], `holds_marker`.
fn find_marker(root: BorrowedFd<'_>) -> Found {
    let Ok(fd) = open_in(root, OsStr::new(MARKER), OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
        return Found::Absent;
    };
    // Only a marker of this user's own restore may say the directory, the temporaries or the
    // image are the restore's.
    let ours = fstat(&fd).is_ok_and(|st| {
        st.st_uid == nix::unistd::geteuid().as_raw()
            && SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
    });
    let mut text = Vec::new();
    if !ours || File::from(fd).take(MARKER_MAX + 1).read_to_end(&mut text).is_err() {
        return Found::Stranger;
    }
    Found::Ours(Some(text).filter(|t| t.len() as u64 <= MARKER_MAX))
}

pub(super) fn read_marker(root: BorrowedFd<'_>) -> Marker {
    match find_marker(root) {
        Found::Absent => Marker::default(),
        Found::Stranger => Marker { present: true, ..Marker::default() },
        Found::Ours(None) => Marker { present: true, ours: true, ..Marker::default() },
        Found::Ours(Some(text)) => parse_marker(&text),
    }
}

/// The text of this user's marker in `root`, if there is one.
fn read_marker_text(root: BorrowedFd<'_>) -> Option<Vec<u8>> {
    match find_marker(root) {
        Found::Ours(text) => text,
        _ => None,
    }
}

/// Whether the directory `root` holds a marker (anyone's: see [`find_marker`]).
pub(super) fn holds_marker(root: BorrowedFd<'_>) -> bool {
    !matches!(find_marker(root), Found::Absent)
}

/// Puts a marker saying `note` in the directory `root` (shown as `shown`): written under
/// [`MARKER_NEW`] (flushed, with `durable`), then renamed over whatever marker is there. The
/// caller makes the new name durable.
fn put_marker(root: BorrowedFd<'_>, shown: &Path, note: &[u8], durable: bool) -> Result<(), FsError> {
    let new = shown.join(MARKER_NEW);
    // A leftover of a run cut before its rename: coffer's own name, never followed.
    match unlinkat(root, MARKER_NEW, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(nix_err("remove", new)(e)),
    }
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd =
        openat(root, MARKER_NEW, flags, Mode::from_bits_truncate(0o600)).map_err(nix_err("create", new.clone()))?;
    let file = File::from(fd);
    let written = file.write_all_at(note, 0).map_err(io_err("write", new.clone())).and_then(|()| {
        // Its bytes before its name: the rename never shows an empty marker.
        if durable {
            file.sync_all().map_err(io_err("flush", new.clone()))?;
        }
        renameat(root, MARKER_NEW, root, MARKER).map_err(nix_err("rename into place", shown.join(MARKER)))
    });
    if written.is_err() {
        let _ = unlinkat(root, MARKER_NEW, UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// Leaves a marker that names no image in the directory `dir`, durably, unless one is there:
/// for a tree others wrote that is incomplete (a copy-back that failed half-way). Only
/// `--force` restores over it.
pub fn mark_incomplete(dir: &Path) -> Result<(), FsError> {
    let root = nix::fcntl::open(dir, dir_flags(), Mode::empty()).map_err(nix_err("open", dir))?;
    if holds_marker(root.as_fd()) {
        return Ok(());
    }
    put_marker(root.as_fd(), dir, MARKER_NOTE, true)?;
    nix::unistd::fsync(&root).map_err(nix_err("flush", dir))
}

/// For the fuzz targets: what the marker ([`MARKER`]) in `root` says, read as a restore reads it (at
/// most 4 KiB, only a regular file of this user): whose restore, whether it created the target,
/// and its token.
#[doc(hidden)]
pub fn fuzz_read_marker(root: BorrowedFd<'_>) -> (MarkedBy, bool, Option<u64>) {
    let m = read_marker(root);
    (m.marked_by(), m.created, m.token)
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
    /// Leaves the marker in the target: its note, whether the restore created the target, the
    /// token of its temporary names, and the image restored (when the caller named it). A
    /// marker already there that says the same is left as it is; one that says otherwise is
    /// replaced whole, by a rename: rewritten in place (`O_TRUNC`), a power cut could leave it
    /// empty on ext4, losing the token of the temporaries it names.
    pub(super) fn write_marker(&self) -> Result<(), FsError> {
        let mut note = MARKER_NOTE.to_vec();
        if !self.target_existed {
            note.extend_from_slice(MARKER_CREATED);
        }
        note.extend_from_slice(format!("{}{:016x}\n", String::from_utf8_lossy(MARKER_TOKEN), self.token).as_bytes());
        if let Some(id) = &self.image {
            note.extend_from_slice(format!("{}{}\n", String::from_utf8_lossy(MARKER_IMAGE), hex_id(id)).as_bytes());
        }
        if read_marker_text(self.root.as_fd()).is_some_and(|old| old == note) {
            return Ok(());
        }
        put_marker(self.root.as_fd(), &self.root_path, &note, self.opts.durable)
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

    #[test]
    fn a_marker_is_never_rewritten_in_place() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("out");
        let (a, b) = ([0xa1; 16], [0xb2; 16]);
        drop(Restorer::create_for(&target, opts(), a).unwrap());
        std::fs::write(target.join("f"), b"half").unwrap();
        // A second name of the marker's inode: what a rewrite in place would change too.
        let witness = t.path().join("witness");
        std::fs::hard_link(target.join(MARKER), &witness).unwrap();
        let first = std::fs::read(&witness).unwrap();
        let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();

        // The same image continued: the marker says the same, and is left as it is.
        let r = Restorer::create_for(&target, opts(), a).unwrap();
        assert!(r.resumed());
        drop(r);
        assert_eq!(inode(&target.join(MARKER)), inode(&witness), "not rewritten");
        assert_eq!(std::fs::read(target.join(MARKER)).unwrap(), first);

        // Another image, forced: a new marker takes the old one's place whole (never truncated
        // in place, where a power cut could leave it empty and its token lost).
        drop(Restorer::create_for(&target, RestoreOptions { force: true, ..opts() }, b).unwrap());
        assert_eq!(std::fs::read(&witness).unwrap(), first, "the old marker's bytes were rewritten in place");
        let now = std::fs::read_to_string(target.join(MARKER)).unwrap();
        assert!(now.contains(&format!("image {}\n", "b2".repeat(16))), "{now}");
        let token = read_marker(File::open(&target).unwrap().as_fd()).token;
        assert_eq!(token, parse_marker(&first).token, "the token is kept");
        assert!(!target.join(super::super::MARKER_NEW).exists());

        // A leftover of a rewrite cut before its rename is coffer's, and replaced.
        std::fs::write(target.join(super::super::MARKER_NEW), b"stale").unwrap();
        drop(Restorer::create_for(&target, RestoreOptions { force: true, ..opts() }, a).unwrap());
        assert!(!target.join(super::super::MARKER_NEW).exists());
        assert_eq!(read_marker(File::open(&target).unwrap().as_fd()).image, Some(a));
    }

    const NOTE: &str =
        "A coffer restore into this directory is running or did not finish: its contents are incomplete.\n";

    #[test]
    fn markers_old_and_new_are_read_and_hostile_bytes_name_nothing() {
        let id: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";
        let hex = "0123456789abcdeffedcba9876543210";
        let read = |text: String| parse_marker(text.as_bytes());
        // Before tokens, before images, and now.
        let m = read(NOTE.into());
        assert!(m.present && m.ours && !m.created && m.token.is_none() && m.image.is_none());
        assert_eq!(m.marked_by(), MarkedBy::Unnamed);
        let m = read(format!("{NOTE}The restore created this directory.\ntoken 00000000000000aa\n"));
        assert!(m.created && m.token == Some(0xaa) && m.image.is_none());
        assert!(!read(format!("{NOTE}not: The restore created this directory.\n")).created, "a line of its own");
        let m = read(format!("{NOTE}token 00000000000000aa\nimage {hex}\n"));
        assert_eq!((m.token, m.image, m.marked_by()), (Some(0xaa), Some(id), MarkedBy::Image(id)));
        assert_eq!(read(format!("image {}\n", hex.to_uppercase())).image, Some(id), "upper case is hex too");
        // Not exactly a line coffer writes: names nothing.
        for bad in [
            format!("image {hex} \n"),
            format!(" image {hex}\n"),
            format!("image {}\n", &hex[1..]),
            format!("image {hex}0\n"),
            format!("image +{}\n", &hex[1..]),
            format!("image {}g\n", &hex[1..]),
            format!("image\t{hex}\n"),
            format!("image {hex}\nimage {}\n", "f".repeat(32)),
            format!("image {}\u{e9}\n", &hex[2..]),
        ] {
            assert_eq!(read(bad.clone()).image, None, "{bad:?}");
        }
        // The same id twice is one image; a token of the wrong length is none.
        assert_eq!(read(format!("image {hex}\nimage {hex}\n")).image, None, "named twice: by neither line");
        assert_eq!(read("token +0000000000000aa\ntoken 0aa\n".into()).token, None);
        // Hostile bytes never panic, whatever they hold.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(round % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pick = [b'\n', b'i', b'a', b'0', b' ', 0, 0xff, (x >> 32) as u8];
                bytes.push(pick[(x % 8) as usize]);
            }
            if round % 3 == 0 {
                bytes.splice(0..0, format!("image {hex}").bytes());
            }
            let m = parse_marker(&bytes);
            assert!(m.image.is_none() || m.image == Some(id));
        }
    }

    #[test]
    fn a_marker_too_long_or_not_a_file_names_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = || File::open(t.path()).unwrap();
        let hex = "00112233445566778899aabbccddeeff";
        std::fs::write(t.path().join(MARKER), format!("image {hex}\n{}", "x".repeat(5000))).unwrap();
        let m = read_marker(root().as_fd());
        assert!(m.present && m.ours && m.image.is_none() && m.token.is_none());
        std::fs::remove_file(t.path().join(MARKER)).unwrap();
        nix::unistd::mkfifo(&t.path().join(MARKER), Mode::from_bits_truncate(0o600)).unwrap();
        let m = read_marker(root().as_fd());
        assert!(m.present && !m.ours, "a FIFO is no marker to believe, and reading it does not block");
        std::fs::remove_file(t.path().join(MARKER)).unwrap();
        std::fs::create_dir(t.path().join(MARKER)).unwrap();
        assert_eq!(read_marker(root().as_fd()).marked_by(), MarkedBy::Stranger);
        std::fs::remove_dir(t.path().join(MARKER)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join(MARKER)).unwrap();
        assert!(!read_marker(root().as_fd()).ours, "a symlink is not followed");
    }
}
