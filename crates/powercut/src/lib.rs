//! `powercut`: a FUSE file system for tests that loses, on a simulated power cut, everything a
//! program did not make durable.
//!
//! The file system lives in memory (see [`model`]). Writes, creates, renames and unlinks change
//! what programs see at once; only `fsync`/`fdatasync` of a file (its data, size and, for
//! `fsync`, metadata) and `fsyncdir` of a directory (its entries) make them durable. A new
//! file's name needs its directory synced, a new directory's name its parent's. [`Control::cut`]
//! replaces what is seen by what is durable, as a machine that lost power and came back would.
//!
//! What does not reach it: `syncfs(2)` and `sync(2)` send nothing to a FUSE daemon (the kernel's
//! `fuse_sync_fs` returns at once unless `fc->sync_fs` is set, which only virtiofs and, since
//! Linux 6.18, `fuseblk` mounts do; fuser mounts type `fuse`), and neither does
//! `sync_file_range(2)`; so a program that relies on them for durability loses its data here,
//! as it would on sshfs or s3fs. The harness's own tests check the `syncfs` part.
//!
//! Control: [`Control::durable_ops`] counts durability points, [`Control::cut_after`] arms a cut
//! after the Nth (that one is applied; every later change fails with EIO, as writes to a dead
//! disk would, until [`Control::cut`]), and [`Control::cut`] cuts now.

pub mod model;

mod fs;

use fs::{root_meta, PowerFs};
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use model::Model;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the file system and its [`Control`] share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) model: Model,
    /// Durability points applied since the last reset.
    pub(crate) ops: u64,
    /// After this durability point, the power is considered gone.
    pub(crate) cut_after: Option<u64>,
    /// The power is gone: changes fail with EIO until the cut is taken.
    pub(crate) tripped: bool,
    /// Changes refused since the power went.
    pub(crate) refused: u64,
    /// One line per durability point: its number, the call and the path.
    pub(crate) log: Vec<String>,
}

/// The test's handle on a mounted file system.
#[derive(Debug, Clone)]
pub struct Control {
    state: Arc<Mutex<State>>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Durability points (`fsync`, `fdatasync`, `fsyncdir`) applied since the last reset.
    pub fn durable_ops(&self) -> u64 {
        self.lock().ops
    }

    /// The durability points so far, one line each (`N fsync /path`).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Changes refused with EIO because the power was gone.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Whether an armed cut has been reached.
    pub fn tripped(&self) -> bool {
        self.lock().tripped
    }

    /// Arms the cut: durability point `n` is applied, then every change fails with EIO.
    /// `Some(0)` trips at once.
    pub fn cut_after(&self, n: Option<u64>) {
        let mut s = self.lock();
        s.cut_after = n;
        s.tripped = n.is_some_and(|n| n <= s.ops);
    }

    /// The power cut: what programs see becomes what was durable. The power comes back: changes
    /// work again, and nothing is armed.
    pub fn cut(&self) {
        let mut s = self.lock();
        s.model.cut();
        s.tripped = false;
        s.cut_after = None;
    }

    /// An empty file system again, counters at zero (inode numbers are not reused).
    pub fn reset(&self) {
        let mut s = self.lock();
        s.model.reset(root_meta());
        s.ops = 0;
        s.cut_after = None;
        s.tripped = false;
        s.refused = 0;
        s.log.clear();
    }
}

/// A mounted file system; unmounted when dropped.
#[derive(Debug)]
pub struct Mount {
    session: Option<BackgroundSession>,
    path: PathBuf,
    control: Control,
}

impl Mount {
    /// Mounts an empty file system on `path` (an existing directory). Needs /dev/fuse and the
    /// right to mount (root, or fusermount3). Only the user who mounts it may use it.
    pub fn new(path: &Path) -> io::Result<Mount> {
        Self::start(path, false)
    }

    /// [`Mount::new`], open to every user, with permissions checked by the kernel from each
    /// file's mode and owner as a local file system checks them (`allow_other`,
    /// `default_permissions`; root may always mount so): for jobs run as another user.
    pub fn for_everyone(path: &Path) -> io::Result<Mount> {
        Self::start(path, true)
    }

    fn start(path: &Path, everyone: bool) -> io::Result<Mount> {
        let state = State {
            model: Model::new(root_meta()),
            ops: 0,
            cut_after: None,
            tripped: false,
            refused: 0,
            log: Vec::new(),
        };
        let state = Arc::new(Mutex::new(state));
        let fs = PowerFs { state: state.clone() };
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("powercut".into()), MountOption::Subtype("powercut".into())];
        if everyone {
            config.mount_options.push(MountOption::DefaultPermissions);
            config.acl = SessionACL::All;
        }
        let session = fuser::spawn_mount(fs, path, &config)?;
        Ok(Mount { session: Some(session), path: path.into(), control: Control { state } })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
