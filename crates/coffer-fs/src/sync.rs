//! Making names durable. A new, renamed or removed entry survives a power cut only once the
//! directory that holds it is flushed (fsync(2): "an explicit fsync() on a file descriptor for
//! the directory is also needed"); a new directory likewise needs its parent flushed. The one
//! place coffer does this, for every job that writes beside a user's files.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The directory that holds `path`: its parent, or `.` for a bare name.
pub fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Flushes the entries of the directory `dir`.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Flushes the directory that holds `path`, so that its name (created, renamed, or removed)
/// survives a power cut.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(parent_of(path))
}

/// Creates the directory `dir` and its missing parents; the directories whose entries that
/// changed, from `dir`'s parent up to the first that existed (`.` for a relative path's
/// first level). Flushing each of them ([`sync_dir`]) makes `dir`'s name durable.
pub fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut at = dir;
    while !at.exists() {
        let parent = parent_of(at);
        changed.push(parent.to_path_buf());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    Ok(changed)
}

/// [`create_dirs`], then each directory whose entries changed flushed, deepest first: `dir`
/// and the levels created for it survive a power cut.
pub fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    for changed in create_dirs(dir)? {
        sync_dir(&changed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_levels_created_and_their_parents_are_named() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path();
        assert_eq!(create_dirs(&base.join("a/b/c")).unwrap(), [base.join("a/b"), base.join("a"), base.to_path_buf()]);
        assert!(base.join("a/b/c").is_dir());
        assert_eq!(create_dirs(&base.join("a/b/c")).unwrap(), Vec::<PathBuf>::new(), "nothing created");
        assert_eq!(create_dirs(&base.join("a/d")).unwrap(), [base.join("a")]);
        assert_eq!(parent_of(Path::new("x")), Path::new("."));
        assert_eq!(parent_of(Path::new("/x")), Path::new("/"));
        sync_parent(&base.join("a/d")).unwrap();
    }

    #[test]
    fn a_relative_path_names_the_current_directory() {
        // Run in a child process: the current directory is the whole process's.
        if std::env::var_os("COFFER_FS_SYNC_CHILD").is_none() {
            let t = tempfile::tempdir().unwrap();
            let me = std::env::current_exe().unwrap();
            let ok = std::process::Command::new(me)
                .args(["--exact", "sync::tests::a_relative_path_names_the_current_directory", "--nocapture"])
                .env("COFFER_FS_SYNC_CHILD", "1")
                .current_dir(t.path())
                .status()
                .unwrap();
            assert!(ok.success());
            assert!(t.path().join("r/s").is_dir());
            return;
        }
        assert_eq!(create_dirs(Path::new("r/s")).unwrap(), [PathBuf::from("r"), PathBuf::from(".")]);
        create_dirs_durably(Path::new("r/s")).unwrap();
    }
}
