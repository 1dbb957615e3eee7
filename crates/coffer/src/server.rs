//! A private server on a restored datadir: what point-in-time recovery replays into and what a
//! drill checks. It listens on a socket in a private directory only (no network), starts no
//! replication, writes no binary log, and runs as the owner of the files restored.

use crate::error::{Context, Error, Result};
use coffer_mysql::client::{Client, Target};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The owner of the files restored into `datadir` (its system tablespace's, else its own).
pub(crate) fn owner_of(datadir: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(datadir.join("ibdata1")).or_else(|_| std::fs::metadata(datadir));
    m.map(|m| (m.uid(), m.gid())).unwrap_or((0, 0))
}

/// The user a server on `datadir` runs as, when coffer runs as root (a server refuses to run
/// as root unasked): the owner of its files.
pub(crate) fn user_for(datadir: &Path) -> Option<String> {
    nix::unistd::geteuid().is_root().then(|| {
        let (uid, _) = owner_of(datadir);
        nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or_else(|| "root".to_owned(), |u| u.name)
    })
}

/// The first of `names` found on PATH, or in the server's usual places.
pub(crate) fn program(names: &[&str], package: &str) -> Result<PathBuf> {
    for n in names {
        if let Some(p) = coffer_mysql::engine::which(n) {
            return Ok(p);
        }
        for dir in ["/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin"] {
            let p = Path::new(dir).join(n);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::msg(format!("{} not found on PATH: install it (Debian: apt install {package})", names[0])))
}

/// The options of a private server named `name` on `datadir`, its files in `run`:
/// `options_file` first (the backup's own settings), then what keeps it private.
pub(crate) fn private_args(
    options_file: &Path,
    datadir: &Path,
    run: &Path,
    name: &str,
    user: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
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
        // (FLUSH PRIVILEGES).
        "--skip-grant-tables".into(),
        // SQL run here reads and writes no file of this host through the server.
        format!("--secure-file-priv={}", run.display()),
    ];
    args.extend(user.map(|u| format!("--user={u}")));
    args
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

/// A private directory (0700) under the temporary directory, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

pub(crate) fn tempdir(what: &str) -> Result<TempDir> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::env::temp_dir().join(format!("{what}-{}", &crate::chain::new_id()?[..12]));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(TempDir(path))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private server, killed if dropped running.
pub(crate) struct Server {
    child: Child,
    socket: PathBuf,
    error_log: PathBuf,
    what: &'static str,
}

impl Server {
    /// Starts `binary` with `args` (see [`private_args`]: `name` is the one given there); `what`
    /// names it in messages ("the replay server").
    pub(crate) fn start(binary: &Path, args: &[String], run: &Path, name: &str, what: &'static str) -> Result<Self> {
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        Ok(Server { child, socket: run.join(format!("{name}.sock")), error_log: run.join(format!("{name}.err")), what })
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
