//! Driving the physical backup engine the server trusts: `mariabackup` (`mariadb-backup`) for
//! MariaDB, `xtrabackup` for MySQL and Percona Server. coffer reads the engine's xbstream from
//! its standard output; the engine's only files go to a private scratch directory that coffer
//! creates (mode 0700) and removes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{0} not found on PATH: install it (Debian: apt install {1})")]
    Missing(String, &'static str),
    #[error("cannot connect to the server: {0}")]
    Connect(String),
    #[error("{engine} failed ({status}): {last}")]
    Failed { engine: String, status: String, last: String },
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let op = op.into();
    move |source| EngineError::Io { op, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Mariabackup,
    Xtrabackup,
}

impl EngineKind {
    /// The engine for a server version string.
    pub fn for_version(version: &str) -> Self {
        if crate::meta::flavor(version) == "MariaDB" {
            Self::Mariabackup
        } else {
            Self::Xtrabackup
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mariabackup => "mariabackup",
            Self::Xtrabackup => "xtrabackup",
        }
    }

    /// The binary: the first of its names found on PATH.
    pub fn binary(self) -> Result<PathBuf, EngineError> {
        let (names, package): (&[&str], _) = match self {
            Self::Mariabackup => (&["mariadb-backup", "mariabackup"], "mariadb-backup"),
            Self::Xtrabackup => (&["xtrabackup"], "percona-xtrabackup-80"),
        };
        names.iter().find_map(|n| which(n)).ok_or_else(|| EngineError::Missing(self.name().into(), package))
    }
}

/// A program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// How to reach the server. The password is never put on a command line: it goes into an
/// option file in the scratch directory (mode 0600), read by the client and the engine.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub socket: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An option file given by the user (`--defaults-file`), passed first to both programs.
    pub defaults_file: Option<PathBuf>,
}

/// The engine's private directory: created empty, mode 0700; removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn create(parent: Option<&Path>) -> Result<Self, EngineError> {
        let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let mut n = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut n));
        let path = parent.join(format!("coffer-engine-{}-{:016x}", std::process::id(), u64::from_le_bytes(n)));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(io(format!("create {}", path.display())))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Connection {
    /// Writes the `[client]` option file (mode 0600) into `scratch` and returns the options
    /// that must lead the command lines of the client and the engine.
    pub fn option_args(&self, scratch: &Scratch) -> Result<Vec<String>, EngineError> {
        let mut cnf = String::from("[client]\n");
        if let Some(s) = &self.socket {
            cnf.push_str(&format!("socket={}\n", s.display()));
        }
        if let Some(h) = &self.host {
            cnf.push_str(&format!("host={h}\n"));
        }
        if let Some(p) = self.port {
            cnf.push_str(&format!("port={p}\n"));
        }
        if let Some(u) = &self.user {
            cnf.push_str(&format!("user={u}\n"));
        }
        if let Some(p) = &self.password {
            // Option-file quoting: backslashes and quotes escaped inside double quotes.
            cnf.push_str(&format!("password=\"{}\"\n", p.replace('\\', "\\\\").replace('"', "\\\"")));
        }
        let path = scratch.path().join(OPTION_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("create {}", path.display())))?;
        f.write_all(cnf.as_bytes()).map_err(io(format!("write {}", path.display())))?;
        let mut args = Vec::new();
        if let Some(f) = &self.defaults_file {
            args.push(format!("--defaults-file={}", f.display()));
        }
        args.push(format!("--defaults-extra-file={}", path.display()));
        Ok(args)
    }
}

/// The server's version string, asked through the `mariadb` (or `mysql`) client with the
/// options of [`Connection::option_args`].
pub fn server_version(options: &[String]) -> Result<String, EngineError> {
    let client = ["mariadb", "mysql"]
        .iter()
        .find_map(|n| which(n))
        .ok_or_else(|| EngineError::Missing("the mariadb or mysql client".into(), "mariadb-client"))?;
    let out = Command::new(&client)
        .args(options)
        .args(["--batch", "--skip-column-names", "-e", "SELECT VERSION()"])
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {}", client.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(EngineError::Connect(err.lines().last().unwrap_or("the client failed").trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running engine: its xbstream on `stdout`, its standard error collected (and passed to a
/// callback line by line).
#[derive(Debug)]
pub struct EngineRun {
    pub engine: EngineKind,
    child: Child,
    stderr: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<u8>>>,
}

const PIPE_SIZES: [nix::libc::c_int; 3] = [32 << 20, 16 << 20, 1 << 20];

/// The `[client]` option file in the scratch directory.
const OPTION_FILE: &str = "client.cnf";

/// Most of the engine's log kept in memory (and in the image).
const LOG_MAX: usize = 64 << 20;

impl EngineRun {
    /// Starts `ENGINE --backup --stream=xbstream` against the server.
    pub fn backup(
        engine: EngineKind,
        options: &[String],
        scratch: &Scratch,
        extra: &[String],
        on_line: Box<dyn Fn(&str) + Send>,
    ) -> Result<(Self, ChildStdout), EngineError> {
        let bin = engine.binary()?;
        let target = scratch.path().join("target");
        let tmp = scratch.path().join("tmp");
        for d in [&target, &tmp] {
            std::fs::DirBuilder::new().mode(0o700).create(d).map_err(io(format!("create {}", d.display())))?;
        }
        let mut cmd = Command::new(&bin);
        cmd.args(options)
            .arg("--backup")
            .arg("--stream=xbstream")
            .arg(format!("--target-dir={}", target.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(io(format!("run {}", bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        // The engine reads a chunk (about 10 MiB), then writes it to the pipe and reads nothing
        // until the write is done: with the default 64 KiB pipe, it waits for coffer to drain
        // nearly the whole chunk. A pipe that holds a whole chunk lets it go back to reading at
        // once. Above /proc/sys/fs/pipe-max-size (1 MiB) only a privileged process may ask;
        // best effort.
        for size in PIPE_SIZES {
            if nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size)).is_ok() {
                break;
            }
        }
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        // The option file holds the password: gone as soon as the engine has read its options
        // (it reports its version right after), so a coffer killed mid-backup leaves no copy.
        let mut option_file = Some(scratch.path().join(OPTION_FILE));
        let thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Some(f) = option_file.take() {
                    let _ = std::fs::remove_file(f);
                }
                let text = String::from_utf8_lossy(&line);
                on_line(text.trim_end());
                let mut log = sink.lock().expect("lock");
                if log.len() + line.len() <= LOG_MAX {
                    log.extend_from_slice(&line);
                }
                line.clear();
            }
        });
        Ok((Self { engine, child, stderr: Some(thread), log }, stdout))
    }

    /// Waits for the engine; its log, or an error naming its exit status and last log line.
    pub fn finish(mut self) -> Result<Vec<u8>, EngineError> {
        let status = self.child.wait().map_err(io("wait for the engine"))?;
        if let Some(t) = self.stderr.take() {
            let _ = t.join();
        }
        let log = std::mem::take(&mut *self.log.lock().expect("lock"));
        if !status.success() {
            let text = String::from_utf8_lossy(&log);
            let last = text
                .lines()
                .rev()
                .find(|l| l.contains("rror") || l.contains("FATAL") || l.contains("failed"))
                .or_else(|| text.lines().last())
                .unwrap_or("no output")
                .trim()
                .to_owned();
            return Err(EngineError::Failed { engine: self.engine.name().into(), status: status.to_string(), last });
        }
        Ok(log)
    }

    /// Stops the engine (after coffer failed): kills it and reaps it.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.stderr.take() {
            let _ = t.join();
        }
    }
}

/// Runs `ENGINE --prepare --target-dir DIR` (MEB's apply-log): makes a restored backup a
/// consistent data directory.
pub fn prepare(engine: EngineKind, dir: &Path, on_line: &dyn Fn(&str)) -> Result<Vec<u8>, EngineError> {
    run_to_end(engine, &["--prepare".into(), format!("--target-dir={}", dir.display())], on_line)
}

/// Runs `ENGINE --move-back --target-dir DIR --datadir DATADIR`.
pub fn move_back(
    engine: EngineKind,
    dir: &Path,
    datadir: &Path,
    on_line: &dyn Fn(&str),
) -> Result<Vec<u8>, EngineError> {
    let args =
        ["--move-back".into(), format!("--target-dir={}", dir.display()), format!("--datadir={}", datadir.display())];
    run_to_end(engine, &args, on_line)
}

fn run_to_end(engine: EngineKind, args: &[String], on_line: &dyn Fn(&str)) -> Result<Vec<u8>, EngineError> {
    let bin = engine.binary()?;
    let out = Command::new(&bin)
        .arg("--no-defaults")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {}", bin.display())))?;
    let log = [out.stdout, out.stderr].concat();
    for line in String::from_utf8_lossy(&log).lines() {
        on_line(line);
    }
    if !out.status.success() {
        let text = String::from_utf8_lossy(&log);
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains("rror"))
            .or_else(|| text.lines().last())
            .unwrap_or("")
            .trim()
            .to_owned();
        return Err(EngineError::Failed { engine: engine.name().into(), status: out.status.to_string(), last });
    }
    Ok(log)
}
