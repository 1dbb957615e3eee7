//! Whether another user could change a file coffer is about to trust (a program it runs, a
//! key file it reads), as ssh asks of its keys and coffer of its config files: the file and
//! every directory above it must belong to root or to the user coffer runs as, and be
//! writable by no one else. A sticky directory (such as `/tmp`) may be writable by others
//! above the file's own directory: others cannot rename or remove what they do not own there.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file or directory another user could change, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path.display(), self.why)
    }
}

/// Refuses `md` (the metadata of `path`) if it belongs to a user other than root and the
/// effective one, or if group or others may write it (unless `sticky_ok` and it is sticky).
pub fn check(path: &Path, md: &std::fs::Metadata, sticky_ok: bool) -> Result<(), Untrusted> {
    let me = nix::unistd::geteuid().as_raw();
    let owner = md.uid();
    let refuse = |why: String| Err(Untrusted { path: path.to_owned(), why });
    if owner != 0 && owner != me {
        let allowed = if me == 0 { "root".to_owned() } else { format!("root or uid {me}") };
        return refuse(format!("is owned by {}, not {allowed}", user_name(owner)));
    }
    if md.mode() & 0o022 != 0 && !(sticky_ok && md.mode() & 0o1000 != 0) {
        return refuse(format!("is writable by group or others (mode {:04o})", md.mode() & 0o7777));
    }
    Ok(())
}

/// Refuses the directories above `path` (the real ones: symbolic links resolved) that another
/// user could change: its own directory, and every one up to `/` (sticky ones aside).
pub fn check_dirs(path: &Path) -> Result<(), Untrusted> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let real = std::fs::canonicalize(parent)
        .map_err(|e| Untrusted { path: parent.to_owned(), why: format!("cannot be inspected: {e}") })?;
    for (n, dir) in real.ancestors().enumerate() {
        let md = std::fs::metadata(dir)
            .map_err(|e| Untrusted { path: dir.to_owned(), why: format!("cannot be inspected: {e}") })?;
        check(dir, &md, n > 0)?;
    }
    Ok(())
}

/// "NAME (uid N)", or "uid N" for a uid without a name.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn files_and_directories_others_can_change_are_named() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        mode(&file, 0o755);
        check(&file, &std::fs::metadata(&file).unwrap(), false).unwrap();
        check_dirs(&file).unwrap();
        mode(&file, 0o775);
        let err = check(&file, &std::fs::metadata(&file).unwrap(), false).unwrap_err();
        assert_eq!(err.to_string(), format!("{} is writable by group or others (mode 0775)", file.display()));
        // Its own directory may not be writable by others, sticky or not; one above may if sticky.
        for m in [0o777, 0o1777] {
            mode(&dir, m);
            assert_eq!(check_dirs(&file).unwrap_err().path, dir);
        }
        mode(&dir, 0o755);
        mode(t.path(), 0o1777);
        check_dirs(&file).unwrap();
        mode(t.path(), 0o777);
        assert_eq!(check_dirs(&file).unwrap_err().path, t.path().canonicalize().unwrap());
        mode(t.path(), 0o700);
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            let err = check(&file, &std::fs::metadata(&file).unwrap(), false).unwrap_err();
            assert!(err.why.starts_with("is owned by") && err.why.ends_with("(uid 65534), not root"), "{err}");
        }
    }
}
