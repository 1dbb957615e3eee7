//! An output file that appears under its name only when complete.

use crate::error::{Context, Error, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Written under a temporary name in the same directory; [`AtomicFile::commit`] flushes it to
/// disk and renames it into place. Dropped uncommitted, it removes itself.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file of `path` with `mode`; refuses an existing `path` unless
    /// `force`.
    pub fn create(path: &Path, force: bool, mode: u32) -> Result<Self> {
        if !force && std::fs::symlink_metadata(path).is_ok() {
            return Err(Error::msg(format!("{} already exists (use --force to replace it)", path.display())));
        }
        let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = dir.join(coffer_fs::tmp::temp_name(&name.to_string_lossy(), std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        // Held while the file is written, so that no other run takes it for a leftover.
        coffer_fs::tmp::lock(&file);
        Ok(Self { file: Some(file), tmp, path: path.into(), committed: false })
    }

    /// Removes the temporary files of `path` that killed runs left beside it (never one a
    /// running process writes); returns their paths.
    pub fn remove_stale(path: &Path) -> Vec<PathBuf> {
        let (Some(name), dir) = (path.file_name(), path.parent().filter(|p| !p.as_os_str().is_empty())) else {
            return Vec::new();
        };
        coffer_fs::tmp::remove_stale(dir.unwrap_or(Path::new(".")), &name.to_string_lossy()).unwrap_or_default()
    }

    /// The temporary file being written.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until committed")
    }

    /// Flushes the file to disk and renames it into place (durably).
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("open until committed");
        file.sync_all().with_context(|| format!("cannot flush {}", self.tmp.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot rename {} to {}", self.tmp.display(), self.path.display()))?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot flush directory {}", dir.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Write for &AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
