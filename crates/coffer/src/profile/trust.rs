//! Whose config file is obeyed: one that only root and the reader can have written.

use crate::{Error, Result};
use std::fs::{File, Metadata};
use std::path::Path;

/// Opens a config file that only root and the reader (the effective user) can have written, as
/// ssh and git demand of theirs: a profile names commands coffer runs (`key-command`) and files
/// it reads, so a file another user could change would run their commands as this user. The
/// file is opened once and checked through its descriptor, then every directory up to `/`.
pub(super) fn open_trusted(path: &Path) -> Result<(File, Metadata)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let unreadable = |e: std::io::Error| Error::usage(format!("cannot read the config file {}: {e}", path.display()));
    let refuse = |why: String| Error::usage(format!("refusing the config file {}: {why}", path.display()));
    // The directories checked are those of the real path: no symlink is left in it to swap.
    let real = std::fs::canonicalize(path).map_err(unreadable)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&real)
        .map_err(unreadable)?;
    let md = file.metadata().map_err(unreadable)?;
    if !md.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    trusted(&real, &md, "it", false).map_err(refuse)?;
    for (n, dir) in real.ancestors().skip(1).enumerate() {
        let dmd = std::fs::symlink_metadata(dir).map_err(unreadable)?;
        // Others can write to /tmp, but its sticky bit keeps them from renaming or removing
        // what is not theirs: enough above the file, not for the file's own directory.
        let sticky = n > 0 && dmd.mode() & 0o1000 != 0;
        trusted(dir, &dmd, &format!("its directory {}", dir.display()), sticky).map_err(refuse)?;
    }
    Ok((file, md))
}

/// Why `what` (at `path`) is not to be trusted: owned by another user than root and the
/// effective one, or writable by group or others (unless `sticky`).
fn trusted(path: &Path, md: &std::fs::Metadata, what: &str, sticky: bool) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let owner = md.uid();
    if owner != 0 && owner != me {
        let whom = if me == 0 {
            "not root, and as root coffer obeys only root's files: name one with --config (sudo -H and su - \
             give root's HOME), or chown root"
                .to_owned()
        } else {
            format!(
                "not root or you (uid {me}), and a profile names what coffer runs: use a file of your own, \
                 or chown {me}"
            )
        };
        return Err(format!("{what} is owned by {}, {whom} {}", user_name(owner), path.display()));
    }
    if md.mode() & 0o022 != 0 && !sticky {
        let fix = if md.mode() & 0o1000 != 0 {
            "move the file into a directory of its own".to_owned()
        } else {
            format!("chmod go-w {}", path.display())
        };
        return Err(format!(
            "group or others can write {what} (mode {:04o}), and a profile names what coffer runs: {fix}",
            md.mode() & 0o7777
        ));
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
