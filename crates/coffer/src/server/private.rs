//! A private server on a restored datadir: what point-in-time recovery replays into and what a
//! drill checks. It listens on a socket in a private directory only (no network), starts no
//! replication, writes no binary log, takes of the image's `backup-my.cnf` only what InnoDB
//! needs (`coffer_mysql::engine::server_options`), opens nothing outside its datadir, never
//! runs as root, and dies with coffer.
//!
//! Its directories are `coffer_fs::private` directories: locked while coffer uses them, and
//! swept (with the server a killed coffer left, if one still runs) by the next drill or
//! point-in-time restore.

use crate::error::{Context, Error, Result};
use crate::Env;
use coffer_fs::private::PrivateDir;
use coffer_mysql::client::{Client, Target};
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The unprivileged user a private server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The user a private server runs as. As root: `owner` (`USER[:GROUP]`, never root), else the
/// user `mysql`; never the owner of a file of the image, which the image decides. Otherwise
/// coffer's own user (`None`: no change), which is all `owner` may then name.
pub(crate) fn server_user(owner: Option<&str>, what: &str) -> Result<Option<ServerUser>> {
    use nix::unistd::User;
    let me = nix::unistd::geteuid();
    let spec = match owner {
        None if !me.is_root() => return Ok(None),
        None => match User::from_name("mysql").ok().flatten() {
            Some(u) => return Ok(Some(ServerUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() })),
            None => {
                return Err(Error::usage(format!(
                    "{what} never runs as root, and there is no user mysql here: name its user with --owner USER"
                )))
            }
        },
        Some(spec) => spec,
    };
    let (uid, gid) = coffer_fs::owner::lookup_owner(spec).map_err(|e| Error::usage(format!("--owner {spec}: {e}")))?;
    if uid == 0 {
        return Err(Error::usage(format!("--owner {spec}: {what} never runs as root; name an unprivileged user")));
    }
    if !me.is_root() {
        if uid == me.as_raw() {
            return Ok(None);
        }
        return Err(Error::usage(format!("--owner {spec}: only root may run {what} as another user")));
    }
    let name = spec.split(':').next().unwrap_or(spec).to_owned();
    Ok(Some(ServerUser { name, uid, gid }))
}

/// Gives `path` itself (not what it holds) to the server's user.
pub(crate) fn give(path: &Path, user: Option<&ServerUser>) -> Result<()> {
    let Some(u) = user else { return Ok(()) };
    std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid))
        .with_context(|| format!("cannot give {} to the server's user {}", path.display(), u.name))
}

/// Gives `root` and everything under it to the server's user (links themselves, never what
/// they point to), but for the lock of a private directory: it stays coffer's, so that the
/// next run sweeps the directory when a killed run left it.
pub(crate) fn give_tree(root: &Path, user: Option<&ServerUser>) -> Result<()> {
    if user.is_none() {
        return Ok(());
    }
    let lock = root.join(coffer_fs::private::LOCK);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        give(&dir, user)?;
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path == lock {
                continue;
            }
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                stack.push(path);
            } else {
                give(&path, user)?;
            }
        }
    }
    Ok(())
}

/// Refuses `path` if the server's user cannot reach it (search permission on each directory
/// from the root down): say which directory stops it, before anything waits on the server.
pub(crate) fn check_reachable(path: &Path, user: Option<&ServerUser>, what: &str) -> Result<()> {
    let Some(u) = user else { return Ok(()) };
    let path = std::path::absolute(path)?;
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let m = std::fs::metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
        if !allows(&m, u, 0o1) {
            crate::bail!(
                "{what} runs as {}, which cannot reach {}: {} has mode {:o} (let it search there, or choose another directory or --owner)",
                u.name,
                path.display(),
                dir.display(),
                m.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// Does `m`'s mode give `u` the permission `perm` (0o4 read, 0o1 search), as its owner, its
/// group or another user? (Secondary groups are not counted.)
fn allows(m: &std::fs::Metadata, u: &ServerUser, perm: u32) -> bool {
    let shift = if m.uid() == u.uid {
        6
    } else if m.gid() == u.gid {
        3
    } else {
        0
    };
    m.mode() & (perm << shift) != 0
}

/// Refuses a file the private server must read (a key file) that `user` cannot read: every
/// directory on the way searchable, the file readable, by owner, group or others.
pub(crate) fn check_readable(path: &Path, user: Option<&ServerUser>, what: &str) -> Result<()> {
    let Some(u) = user else { return Ok(()) };
    if let Some(dir) = path.parent() {
        check_reachable(dir, user, what)?;
    }
    let m = std::fs::metadata(path).with_context(|| format!("cannot inspect {}", path.display()))?;
    if !allows(&m, u, 0o4) {
        crate::bail!(
            "{what} runs as {}, which cannot read {} (mode {:o}): give it read access (its group, or chown), or choose --owner",
            u.name,
            path.display(),
            m.mode() & 0o7777
        );
    }
    Ok(())
}

/// Refuses a datadir that would have its server open files outside it: a symbolic link that
/// leaves it (absolute, or through `..`), or an InnoDB link file (`.isl`: a tablespace kept
/// elsewhere). Such files come from the image, and the server runs as a user that may write
/// elsewhere (another server's datadir).
pub(crate) fn check_confined(datadir: &Path) -> Result<()> {
    let mut stack = vec![datadir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            let m = std::fs::symlink_metadata(&path)?;
            let shown = path.strip_prefix(datadir).unwrap_or(&path).display().to_string();
            if m.is_symlink() {
                let to = std::fs::read_link(&path)?;
                if to.is_absolute() || to.components().any(|c| c == std::path::Component::ParentDir) {
                    crate::bail!(
                        "the restored {shown} is a symbolic link to {}: a private server opens nothing outside its datadir",
                        crate::text::escape(to.as_os_str().as_encoded_bytes())
                    );
                }
            } else if m.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "isl") {
                crate::bail!(
                    "the restored {shown} links a tablespace kept outside the datadir (DATA DIRECTORY): a private server opens nothing outside its datadir"
                );
            }
        }
    }
    Ok(())
}

/// The first of `names` found on PATH, or in the server's usual places; refused if another user
/// could change it (`coffer_mysql::engine::find_program`).
pub(crate) fn program(names: &[&str], package: &str) -> Result<PathBuf> {
    let also = ["/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin"];
    coffer_mysql::engine::find_program(names, &also)?.ok_or_else(|| {
        Error::msg(format!("{} not found on PATH: install it (Debian: apt install {package})", names[0]))
    })
}

/// The options of a private server named `name` on `datadir`, its files in `run`:
/// `options_file` first (what it takes of the backup's own settings), then what keeps it
/// private.
pub(crate) fn private_args(options_file: &Path, datadir: &Path, run: &Path, name: &str) -> Vec<String> {
    vec![
        format!("--defaults-file={}", options_file.display()),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", run.join(format!("{name}.sock")).display()),
        format!("--pid-file={}", run.join(format!("{name}.pid")).display()),
        format!("--log-error={}", run.join(format!("{name}.err")).display()),
        format!("--tmpdir={}", run.display()),
        "--skip-networking".into(),
        "--skip-slave-start".into(),
        "--skip-log-bin".into(),
        // No password is asked on the private socket; grants load when the caller says
        // (FLUSH PRIVILEGES). It also keeps the server from loading the plugins and functions
        // the restored mysql.plugin and mysql.func name.
        "--skip-grant-tables".into(),
        // SQL run here reads and writes no file of this host through the server.
        format!("--secure-file-priv={}", run.display()),
        "--local-infile=0".into(),
        // Nothing in the restored copy runs by itself; MyISAM follows no link.
        "--event-scheduler=DISABLED".into(),
        "--skip-symbolic-links".into(),
    ]
}

/// Writes the server's option file (mode 0600) into `dir`.
pub(crate) fn write_options(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{name}.cnf"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(path)
}

/// The last line of a small text file, printable.
pub(crate) fn last_line(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(4096)..];
    let line = tail.split(|b| *b == b'\n').rev().find(|l| !l.is_empty()).unwrap_or_default();
    crate::text::escape(line)
}

/// A private directory `PREFIX-RANDOM` (0700, locked) under the temporary directory, for a
/// server's socket (whose path must be short: 108 bytes), logs and option file.
pub(crate) fn rundir(prefix: &str) -> Result<PrivateDir> {
    let tmp = std::env::temp_dir();
    // TMPDIR comes from the environment (another user's, under `sudo -E`): a directory they
    // could change would let them put theirs in place of the server's (its socket, its logs).
    let md = std::fs::metadata(&tmp).with_context(|| format!("cannot inspect {}", tmp.display()))?;
    let trusted = coffer_fs::trust::check(&tmp, &md, true).and_then(|()| coffer_fs::trust::check_dirs(&tmp));
    if let Err(u) = trusted {
        crate::bail!("{u}: another user could change the private server's directory there; set TMPDIR elsewhere");
    }
    PrivateDir::create(&tmp, prefix).map_err(|e| Error::other(e).context("cannot make a private directory"))
}

/// Removes the `PREFIX-*` directories in `parent` that a killed coffer left (first stopping a
/// server that still runs there), with a warning each; `what` names the job ("drill").
pub(crate) fn sweep(parent: &Path, prefix: &str, what: &str, env: &Env) {
    let mut stopped = Vec::new();
    let removed = coffer_fs::private::sweep(parent, prefix, &mut |dir| stopped.extend(stop_leftover(dir)));
    for dir in removed {
        env.report.warn(&format!("removed {}, which an interrupted {what} left", dir.display()));
    }
    for pid in stopped {
        env.report.warn(&format!("stopped the server (pid {pid}) an interrupted {what} left running"));
    }
}

/// Kills the server whose pid file is in `dir`, if that process is a mariadbd (or mysqld)
/// started with that very pid file; waits a few seconds for it to go. Its pid, if killed.
fn stop_leftover(dir: &Path) -> Vec<i32> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return killed };
    for pid_file in entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "pid")) {
        let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 1 || !is_server_of(pid, &pid_file) {
            continue;
        }
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            // Gone, or a zombie (no command line) that its new parent has yet to reap.
            let running = || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty());
            let deadline = Instant::now() + Duration::from_secs(5);
            while running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            killed.push(pid);
        }
    }
    killed
}

/// Is process `pid` a mariadbd or mysqld started with `--pid-file=PID_FILE`?
fn is_server_of(pid: i32, pid_file: &Path) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A binary replaced by an upgrade shows as "NAME (deleted)".
    if !["mariadbd", "mysqld"].iter().any(|s| name == *s || name.starts_with(&format!("{s} "))) {
        return false;
    }
    let want = format!("--pid-file={}", pid_file.display());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|b| *b == 0).any(|arg| arg == want.as_bytes())
}

/// How a private server named `what` is confined to `writable` (its datadir and its run
/// directory: coffer_fs::confine): as root, always. Where namespaces cannot be made (a
/// container without CAP_SYS_ADMIN, a kernel before 5.12) it runs unconfined only on data
/// whose signer was checked (`signed`), with a warning; otherwise it is refused. Without root
/// it runs as coffer's own user, confined by that user's rights.
pub(crate) fn confinement(
    writable: &[&Path],
    signed: bool,
    what: &str,
    env: &Env,
) -> Result<Option<coffer_fs::confine::Confinement>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let confined = coffer_fs::confine::Confinement::new(writable)?;
    // A trial run of `true` under the same confinement says whether the kernel allows it.
    let mut probe = Command::new(if Path::new("/bin/true").exists() { "/bin/true" } else { "/usr/bin/true" });
    confined.clone().apply(&mut probe);
    let why = match probe.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => return Ok(Some(confined)),
        Ok(s) => format!("a trial exited {s}"),
        Err(e) => e.to_string(),
    };
    if signed {
        env.report.warn(&format!(
            "{what} cannot be confined to its directories ({why}): it runs unconfined, on backups and logs whose signer was checked"
        ));
        return Ok(None);
    }
    crate::bail!(
        "{what} cannot be confined to its directories ({why}: a container without CAP_SYS_ADMIN, or a kernel before 5.12); \
         it would run SQL from the backups with the rights of its user: demand their signer (--require-signer) to run it unconfined"
    )
}

/// A private server, killed if dropped running. It stays on the thread that started it (not
/// `Send`): it dies when that thread ends (see `coffer_mysql::engine::die_with_coffer`).
pub(crate) struct Server {
    child: Child,
    socket: PathBuf,
    error_log: PathBuf,
    what: &'static str,
    _on_this_thread: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl Server {
    /// Starts `binary` with `args` (see [`private_args`]: `name` is the one given there) as
    /// `user`; `what` names it in messages ("the replay server").
    pub(crate) fn start(
        binary: &Path,
        args: &[String],
        run: &Path,
        name: &str,
        what: &'static str,
        user: Option<&ServerUser>,
        confined: Option<coffer_fs::confine::Confinement>,
    ) -> Result<Self> {
        let mut cmd = Command::new(binary);
        coffer_mysql::engine::program_env(&mut cmd);
        // Confined first (as root), then as its user (a change of credentials comes last).
        if let Some(c) = confined {
            c.apply(&mut cmd);
        }
        coffer_mysql::engine::die_with_coffer(&mut cmd, user.map(|u| (u.uid, u.gid)));
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        Ok(Server {
            child,
            socket: run.join(format!("{name}.sock")),
            error_log: run.join(format!("{name}.err")),
            what,
            _on_this_thread: PhantomData,
        })
    }

    /// The server's process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the server to accept a connection on its socket (crash recovery may take a
    /// while), or to exit.
    pub(crate) fn connect(&mut self, patience: Duration) -> Result<Client> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                crate::bail!("{} exited ({status}): {}", self.what, last_line(&self.error_log));
            }
            if self.socket.exists() {
                let target = Target::Socket(self.socket.clone());
                if let Ok(c) = Client::connect(&target, "root", b"", Duration::from_secs(600), None) {
                    return Ok(c);
                }
            }
            if started.elapsed() > patience {
                let _ = self.child.kill();
                let _ = self.child.wait();
                crate::bail!("{} did not start in {} s: {}", self.what, patience.as_secs(), last_line(&self.error_log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Another session, on a server that answers already.
    pub(crate) fn session(&self) -> Result<Client> {
        Client::connect(&Target::Socket(self.socket.clone()), "root", b"", Duration::from_secs(600), None)
            .map_err(|e| Error::other(e).context(format!("cannot connect to {}", self.what)))
    }

    /// A clean shutdown (InnoDB flushes what replay wrote), waited for.
    pub(crate) fn shutdown(mut self, mut control: Client) -> Result<()> {
        let _ = control.query("SHUTDOWN");
        drop(control);
        let status = self.child.wait()?;
        if !status.success() {
            crate::bail!("{} did not shut down cleanly ({status}): {}", self.what, last_line(&self.error_log));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_never_runs_as_root_nor_as_an_images_file_owner() {
        if !nix::unistd::geteuid().is_root() {
            // Not root: the server runs as this user, and --owner may only name it.
            assert_eq!(server_user(None, "the drill's server").unwrap(), None);
            assert!(server_user(Some("root"), "the drill's server").is_err());
            return;
        }
        let err = server_user(Some("root"), "the drill's server").unwrap_err();
        assert!(err.to_string().contains("never runs as root"), "{err}");
        assert!(server_user(Some("0:0"), "x").is_err());
        assert!(server_user(Some("no-such-user-here"), "x").is_err());
        let nobody = server_user(Some("nobody"), "x").unwrap().unwrap();
        assert_eq!((nobody.name.as_str(), nobody.uid), ("nobody", 65534));
        match nix::unistd::User::from_name("mysql").ok().flatten() {
            Some(m) => assert_eq!(server_user(None, "x").unwrap().unwrap().uid, m.uid.as_raw()),
            None => assert!(server_user(None, "x").unwrap_err().to_string().contains("--owner USER")),
        }
    }

    #[test]
    fn a_leftover_server_is_stopped_only_if_it_is_a_mariadbd_on_that_pid_file() {
        let t = tempfile::tempdir().unwrap();
        // A stand-in for the server: a shell under its name, with its pid file argument.
        let fake = t.path().join("mariadbd");
        std::fs::copy("/bin/sh", &fake).unwrap();
        let dir = t.path().join("coffer-drill-0a1b");
        std::fs::create_dir(&dir).unwrap();
        let pid_file = dir.join("drill.pid");
        let start = |program: &Path, pid_arg: &Path| {
            let child = Command::new(program)
                .args(["-c", "sleep 30; :"])
                .arg(format!("--pid-file={}", pid_arg.display()))
                .spawn()?;
            // Until it has exec'd, /proc shows the test's own command line (a busy machine
            // makes that window long): wait for the program's.
            let cmdline = format!("/proc/{}/cmdline", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !std::fs::read(&cmdline).is_ok_and(|c| c.windows(10).any(|w| w == b"--pid-file"))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok::<_, std::io::Error>(child)
        };
        // The pid file names a mariadbd of another pid file, then another program: left alone.
        let sh = t.path().join("sh");
        std::fs::copy("/bin/sh", &sh).unwrap();
        let mut others = [start(&fake, &t.path().join("other.pid")).unwrap(), start(&sh, &pid_file).unwrap()];
        for other in &others {
            std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
            assert!(stop_leftover(&dir).is_empty());
        }
        let mut ours = start(&fake, &pid_file).unwrap();
        std::fs::write(&pid_file, format!("{}\n", ours.id())).unwrap();
        assert_eq!(stop_leftover(&dir), [ours.id() as i32]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ours.wait().unwrap().signal(), Some(9));
        for other in &mut others {
            assert!(other.try_wait().unwrap().is_none(), "not a server of that directory: still running");
            other.kill().unwrap();
            other.wait().unwrap();
        }
    }

    #[test]
    fn a_datadir_with_links_out_of_it_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(data.join("db")).unwrap();
        std::fs::write(data.join("db/t.ibd"), b"x").unwrap();
        std::os::unix::fs::symlink("t.ibd", data.join("db/u.ibd")).unwrap();
        check_confined(data).unwrap();
        for (name, to) in [("db/v.ibd", "/var/lib/mysql/prod/t.ibd"), ("db2", "../elsewhere")] {
            std::os::unix::fs::symlink(to, data.join(name)).unwrap();
            let err = check_confined(data).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("outside its datadir"), "{err}");
            std::fs::remove_file(data.join(name)).unwrap();
        }
        std::fs::write(data.join("db/w.isl"), b"/var/lib/mysql/prod/w.ibd").unwrap();
        assert!(check_confined(data).unwrap_err().to_string().contains("db/w.isl"));
    }

    #[test]
    fn a_directory_the_servers_user_cannot_search_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(d.path().join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let user = ServerUser { name: "nobody".into(), uid: 65534, gid: 65534 };
        let err = check_reachable(&d.path().join("a/b"), Some(&user), "the drill's server").unwrap_err().to_string();
        assert!(
            err.contains("runs as nobody") && err.contains(&format!("{} has mode 700", d.path().join("a").display()))
        );
        std::fs::set_permissions(d.path().join("a"), std::fs::Permissions::from_mode(0o701)).unwrap();
        check_reachable(&d.path().join("a/b"), Some(&user), "x").unwrap();
        check_reachable(Path::new("/nonexistent"), None, "x").unwrap();
    }
}
