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
    /// Renamed into place, and not yet committed: removed again if the commit fails.
    renamed: bool,
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
        let tmp = coffer_fs::sync::parent_of(path)
            .join(coffer_fs::tmp::temp_name(&name.to_string_lossy(), std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        // Held while the file is written, so that no other run takes it for a leftover.
        coffer_fs::tmp::lock(&file);
        Ok(Self { file: Some(file), tmp, path: path.into(), renamed: false, committed: false })
    }

    /// Removes the temporary files of `path` that killed runs left beside it (never one a
    /// running process writes); returns their paths.
    pub fn remove_stale(path: &Path) -> Vec<PathBuf> {
        let Some(name) = path.file_name() else { return Vec::new() };
        coffer_fs::tmp::remove_stale(coffer_fs::sync::parent_of(path), &name.to_string_lossy()).unwrap_or_default()
    }

    /// The temporary file being written.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until committed")
    }

    /// Flushes the file to disk and renames it into place (durably).
    pub fn commit(self) -> Result<()> {
        Self::commit_all(vec![self])
    }

    /// Commits `files` all or none: each flushed, then all renamed into place, then each of
    /// their directories flushed once. A failure before every file is renamed leaves none,
    /// under its temporary name or its own (those already renamed are removed again); once all
    /// are in place they stay, whole, and a failed directory flush is only reported.
    pub fn commit_all(mut files: Vec<AtomicFile>) -> Result<()> {
        for f in &files {
            f.file().sync_all().with_context(|| format!("cannot flush {}", f.tmp.display()))?;
        }
        for f in &mut files {
            f.file.take();
            std::fs::rename(&f.tmp, &f.path)
                .with_context(|| format!("cannot rename {} to {}", f.tmp.display(), f.path.display()))?;
            f.renamed = true;
        }
        // Every file is whole and under its name: a failed directory flush below is reported,
        // but removing them then would lose what a `--force` replaced, for nothing.
        files.iter_mut().for_each(|f| f.committed = true);
        let mut dirs: Vec<&Path> = Vec::new();
        for f in &files {
            let dir = coffer_fs::sync::parent_of(&f.path);
            if !dirs.contains(&dir) {
                coffer_fs::sync::sync_dir(dir).with_context(|| format!("cannot flush directory {}", dir.display()))?;
                dirs.push(dir);
            }
        }
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
            let _ = std::fs::remove_file(if self.renamed { &self.path } else { &self.tmp });
        }
    }
}
