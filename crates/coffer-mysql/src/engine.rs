//! Driving the physical backup engine the server trusts: `mariabackup` (`mariadb-backup`) for
//! MariaDB, `xtrabackup` for MySQL and Percona Server. coffer reads the engine's xbstream from
//! its standard output; the engine's only files go to a private scratch directory that coffer
//! creates (mode 0700) and removes.

use crate::meta::ServerIdentity;
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
    /// A program found where another user could change it.
    #[error(
        "refusing to run {program}: {why}, and coffer runs no program another user could change (fix that, or put a trusted directory first on PATH)",
        program = .0.display(),
        why = .1
    )]
    Untrusted(PathBuf, coffer_fs::trust::Untrusted),
    #[error(
        "refusing to make the engine's scratch directory in {place}: {why}, and another user could put theirs in its place (choose another --scratch-dir or TMPDIR)",
        place = .0.display(),
        why = .1
    )]
    UntrustedScratch(PathBuf, coffer_fs::trust::Untrusted),
    #[error("cannot connect to the server: {0}")]
    Connect(String),
    #[error("{engine} failed ({status}): {last}")]
    Failed { engine: String, status: String, last: String },
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
    /// The backup's own option file (`backup-my.cnf`, from the image) holds what coffer does
    /// not pass to the engine.
    #[error("{}, line {line}: {reason}", file.display())]
    BackupOptions { file: PathBuf, line: usize, reason: String },
    #[error("--prepare-option {0:?}: {1}")]
    PrepareOption(String, &'static str),
    #[error(
        "the encryption key file {path} named by the backup does not exist here: give its path on this host with --prepare-option {option}=PATH",
        path = .0.display(),
        option = .1
    )]
    KeyFileMissing(PathBuf, &'static str),
}

pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let op = op.into();
    move |source| EngineError::Io { op, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Mariabackup,
    Xtrabackup,
}

impl EngineKind {
    /// Every engine, in the order a command line lists them.
    pub const ALL: [EngineKind; 2] = [Self::Mariabackup, Self::Xtrabackup];

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

    /// The binary: the first of its names found on PATH (see [`find_program`]).
    pub fn binary(self) -> Result<PathBuf, EngineError> {
        let (names, package): (&[&str], _) = match self {
            Self::Mariabackup => (&["mariadb-backup", "mariabackup"], "mariadb-backup"),
            Self::Xtrabackup => (&["xtrabackup"], "percona-xtrabackup-80"),
        };
        find_program(names, &[])?.ok_or_else(|| EngineError::Missing(self.name().into(), package))
    }
}

/// An executable file named `name` in `dir`.
fn executable_in(dir: &Path, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
}

/// The first of `names` found on PATH (each name, then in the directories `also`), as its
/// real path (no symbolic link left to swap between this check and its start), or nothing.
/// It is refused if another user could change it: PATH may be another user's (`su -m`, `sudo
/// -E`), and coffer, often root, would run their program. The file and every directory above
/// it must belong to root or coffer's user and be writable by no one else
/// (`coffer_fs::trust`).
pub fn find_program(names: &[&str], also: &[&str]) -> Result<Option<PathBuf>, EngineError> {
    find_in(&std::env::var_os("PATH").unwrap_or_default(), names, also)
}

/// [`find_program`] with `path` for PATH.
fn find_in(path: &std::ffi::OsStr, names: &[&str], also: &[&str]) -> Result<Option<PathBuf>, EngineError> {
    let found = names.iter().find_map(|n| {
        std::env::split_paths(path)
            .filter(|d| d.is_absolute())
            .chain(also.iter().map(PathBuf::from))
            .find_map(|d| executable_in(&d, n))
    });
    let Some(found) = found else { return Ok(None) };
    let untrusted = |u| EngineError::Untrusted(found.clone(), u);
    coffer_fs::trust::check_dirs(&found).map_err(untrusted)?;
    let real = std::fs::canonicalize(&found).map_err(io(format!("resolve {}", found.display())))?;
    let md = std::fs::metadata(&real).map_err(io(format!("inspect {}", real.display())))?;
    coffer_fs::trust::check(&real, &md, false).map_err(untrusted)?;
    coffer_fs::trust::check_dirs(&real).map_err(untrusted)?;
    Ok(Some(real))
}

/// Directories for the programs coffer starts to look in, if they look (none of the MySQL
/// programs does).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What of coffer's environment a program it starts keeps: the time zone, the locale, the
/// temporary directory (coffer's own scratch space is there too).
const KEPT_ENV: [&str; 4] = ["TZ", "LANG", "LANGUAGE", "TMPDIR"];

/// Gives `cmd` (a MySQL or MariaDB program) an environment of coffer's making: the variables
/// of [`KEPT_ENV`] and `LC_*`, [`SYSTEM_PATH`], and `HOME`, `USER` and `LOGNAME` of the user
/// coffer runs as, from the user database, never from its environment (as ssh finds `~/.ssh`).
/// Their environment decides a lot: `~/.my.cnf` (`$HOME`: under `sudo -E` another user's file,
/// whose `plugin-dir` and `default-auth` would have root load their library, and whose
/// `[mariadb-backup]` group changes the backup), `$MYSQL_HOME/my.cnf`, client plugins loaded
/// at start (`LIBMYSQL_PLUGINS` from `MARIADB_PLUGIN_DIR`), the server to reach
/// (`MYSQL_UNIX_PORT`, `MYSQL_HOST`), a password (`MYSQL_PWD`), the modes of the files a server
/// creates (`UMASK`).
pub fn program_env(cmd: &mut Command) {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        let kept = name.to_str().is_some_and(|n| KEPT_ENV.contains(&n) || n.starts_with("LC_"));
        if kept {
            cmd.env(name, value);
        }
    }
    cmd.env("PATH", SYSTEM_PATH);
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::geteuid()) {
        cmd.env("HOME", &user.dir).env("USER", &user.name).env("LOGNAME", &user.name);
    }
}

/// How to reach the server. The password is never put on a command line: it goes into an
/// option file in the scratch directory (mode 0600), read by the client and the engine. The
/// socket, host, port and user go on their command lines, after the option files: what the
/// user named wins over any option file (`~/.my.cnf` is read after `--defaults-extra-file`
/// and would otherwise send the backup to another server, or as another user). Which
/// `~/.my.cnf`: that of the user coffer runs as, never `$HOME`'s (see [`program_env`]).
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub socket: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An option file given by the user (`--defaults-file`): the only one both programs read,
    /// with coffer's own.
    pub defaults_file: Option<PathBuf>,
    /// TLS to the server.
    pub tls: Option<ServerTls>,
}

/// How a connection to the server must be protected, with the meanings MySQL gives
/// `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Encrypted, the server's certificate not checked.
    Required,
    /// Encrypted, the server's certificate signed by the CA given.
    VerifyCa,
    /// As VerifyCa, and the certificate names the host connected to.
    VerifyIdentity,
}

/// TLS to the server: the mode, the CA that signs its certificate, and our own certificate and
/// key if it asks for one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTls {
    /// Default: VerifyCa with a CA, else Required.
    pub mode: Option<SslMode>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Whose option names a program takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `mariadb`, `mariabackup`: `--ssl`, `--ssl-verify-server-cert`.
    MariaDb,
    /// `mysql`, `xtrabackup`: `--ssl-mode`.
    MySql,
}

impl ServerTls {
    /// The mode asked for, or the one the files given imply.
    pub fn mode(&self) -> SslMode {
        self.mode.unwrap_or(if self.ca.is_some() { SslMode::VerifyCa } else { SslMode::Required })
    }

    /// Refuses settings that cannot mean what they say.
    pub fn check(&self) -> Result<(), EngineError> {
        let bad = |why: &str| Err(EngineError::Connect(why.to_owned()));
        if self.mode() != SslMode::Required && self.ca.is_none() {
            return bad(
                "--ssl-mode VERIFY_CA and VERIFY_IDENTITY need --ssl-ca (the CA that signs the server's certificate)",
            );
        }
        if self.cert.is_some() != self.key.is_some() {
            return bad("--ssl-cert and --ssl-key go together");
        }
        for f in [&self.ca, &self.cert, &self.key].into_iter().flatten() {
            if !f.is_file() {
                return bad(&format!("{} is not a readable file", f.display()));
            }
        }
        Ok(())
    }

    /// The options that ask a program of `dialect` for this protection. MariaDB's programs
    /// have no CA-only check: `--ssl-verify-server-cert` checks the CA and the host name, so
    /// VERIFY_CA is as strict as VERIFY_IDENTITY with them. Nor can they keep REQUIRED: with
    /// `--ssl` alone they go on in plaintext (the password's answer included) when a man in
    /// the middle takes TLS out of the server's greeting (tried with MariaDB 10.11's tools), so
    /// REQUIRED is refused for them.
    pub fn args(&self, dialect: Dialect) -> Result<Vec<String>, EngineError> {
        let mut out = Vec::new();
        match (dialect, self.mode()) {
            (Dialect::MariaDb, SslMode::Required) => return Err(EngineError::Connect(
                "--ssl-mode REQUIRED cannot be kept by MariaDB's own programs (mariadb-backup, the mariadb client): \
                     without a CA to check they go on in plaintext, password included, when a man in the middle \
                     strips TLS; give --ssl-ca (VERIFY_CA)"
                    .to_owned(),
            )),
            (Dialect::MariaDb, _) => out.extend(["--ssl".to_owned(), "--ssl-verify-server-cert".to_owned()]),
            (Dialect::MySql, m) => out.push(format!(
                "--ssl-mode={}",
                match m {
                    SslMode::Required => "REQUIRED",
                    SslMode::VerifyCa => "VERIFY_CA",
                    SslMode::VerifyIdentity => "VERIFY_IDENTITY",
                }
            )),
        }
        for (name, file) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if let Some(f) = file {
                out.push(format!("--ssl-{name}={}", f.display()));
            }
        }
        Ok(out)
    }
}

/// The dialect of the client program at `path`: `mariadb`'s, or that of a `mysql` that may be
/// MariaDB's under another name (Debian links one to the other).
fn client_dialect(path: &Path) -> Dialect {
    if path.file_name().is_some_and(|n| n == "mariadb") {
        return Dialect::MariaDb;
    }
    let mut cmd = Command::new(path);
    program_env(&mut cmd);
    let version = cmd.arg("--version").stdin(Stdio::null()).output();
    match version {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("MariaDB") => Dialect::MariaDb,
        _ => Dialect::MySql,
    }
}

impl EngineKind {
    /// The engine that made a backup, by its description (mariabackup unless it says
    /// xtrabackup).
    pub fn of_backup(info: &crate::meta::BackupInfo) -> Self {
        if info.engine.as_deref() == Some("xtrabackup") {
            Self::Xtrabackup
        } else {
            Self::Mariabackup
        }
    }

    /// The dialect of the engine's options.
    pub fn dialect(self) -> Dialect {
        match self {
            EngineKind::Mariabackup => Dialect::MariaDb,
            EngineKind::Xtrabackup => Dialect::MySql,
        }
    }
}

/// The engine's private directory: created empty, mode 0700, with the lock file of a
/// `coffer_fs::private::PrivateDir` (it holds the password's or a key file password's option
/// file); removed when dropped, or by [`sweep_scratch`] after a killed run.
#[derive(Debug)]
pub struct Scratch {
    dir: coffer_fs::private::PrivateDir,
}

/// The name of the engine's scratch directories: `coffer-engine-RANDOM`.
const SCRATCH_PREFIX: &str = "coffer-engine";

impl Scratch {
    /// Makes the directory in `parent` (default: the temporary directory), which another user
    /// must not be able to change: they could put a directory of theirs in its place, and the
    /// engine would read their option file (`--scratch-dir` and `TMPDIR` come from the user,
    /// maybe another one under `sudo -E`). A sticky one (`/tmp`) is fine.
    pub fn create(parent: Option<&Path>) -> Result<Self, EngineError> {
        let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let untrusted = |u| EngineError::UntrustedScratch(parent.clone(), u);
        let real = std::fs::canonicalize(&parent).map_err(io(format!("inspect {}", parent.display())))?;
        let md = std::fs::metadata(&real).map_err(io(format!("inspect {}", real.display())))?;
        coffer_fs::trust::check(&real, &md, true).map_err(untrusted)?;
        coffer_fs::trust::check_dirs(&real).map_err(untrusted)?;
        let dir = coffer_fs::private::PrivateDir::create(&real, SCRATCH_PREFIX).map_err(|e| EngineError::Io {
            op: format!("create a scratch directory in {}", parent.display()),
            source: std::io::Error::other(e),
        })?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the scratch directories in `parent` (default: the temporary directory) that killed
/// runs left; returns their paths.
pub fn sweep_scratch(parent: Option<&Path>) -> Vec<PathBuf> {
    let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    coffer_fs::private::sweep(&parent, SCRATCH_PREFIX, &mut |_| {})
}

impl Connection {
    /// Writes the `[client]` option file (mode 0600) into `scratch` and returns the options
    /// that must lead the command lines of the client and the engine.
    ///
    /// Without `--defaults-file`, the programs read the host's option files and coffer's as
    /// `--defaults-extra-file`. With it, they read one file alone (and ignore
    /// `--defaults-extra-file`, which would lose the password): coffer's, which includes the
    /// user's first.
    pub fn option_args(&self, scratch: &Scratch) -> Result<Vec<String>, EngineError> {
        let mut cnf = String::new();
        if let Some(f) = &self.defaults_file {
            cnf.push_str(&include_line(f)?);
        }
        cnf.push_str("[client]\n");
        if let Some(p) = &self.password {
            // A line break would end the value and start an option line of its own.
            if p.chars().any(char::is_control) {
                return Err(EngineError::Connect(
                    "the password holds a line break or another control character".into(),
                ));
            }
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
        let which = if self.defaults_file.is_some() { "defaults-file" } else { "defaults-extra-file" };
        let mut args = vec![format!("--{which}={}", path.display())];
        if let Some(s) = &self.socket {
            args.push(format!("--socket={}", s.display()));
        }
        if let Some(h) = &self.host {
            args.push(format!("--host={h}"));
        }
        if let Some(p) = self.port {
            args.push(format!("--port={p}"));
        }
        if let Some(u) = &self.user {
            args.push(format!("--user={u}"));
        }
        Ok(args)
    }
}

/// `!include FILE` for the user's `--defaults-file`: an absolute path on one line, of a file
/// that opens (the programs skip an include they cannot read without a word).
fn include_line(file: &Path) -> Result<String, EngineError> {
    let bad = |why: &str| EngineError::Connect(format!("--defaults-file {}: {why}", file.display()));
    let abs = std::path::absolute(file).map_err(|e| bad(&e.to_string()))?;
    let text = abs.to_str().ok_or_else(|| bad("not UTF-8"))?;
    if text.chars().any(char::is_control) || text.trim_end() != text {
        return Err(bad("a control character or a blank at its end"));
    }
    std::fs::File::open(&abs).map_err(|e| bad(&e.to_string()))?;
    Ok(format!("!include {text}\n"))
}

/// The output of `sql` run through the `mariadb` (or `mysql`) client with the options of
/// [`Connection::option_args`]: rows of tab-separated columns.
fn query(options: &[String], tls: Option<&ServerTls>, sql: &str) -> Result<String, EngineError> {
    let client = find_program(&["mariadb", "mysql"], &[])?
        .ok_or_else(|| EngineError::Missing("the mariadb or mysql client".into(), "mariadb-client"))?;
    let tls_args = tls.map(|t| t.args(client_dialect(&client))).transpose()?.unwrap_or_default();
    let mut cmd = Command::new(&client);
    program_env(&mut cmd);
    let out = cmd
        .args(options)
        .args(tls_args)
        .args(["--batch", "--skip-column-names", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {}", client.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(EngineError::Connect(err.lines().last().unwrap_or("the client failed").trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The server's version string.
pub fn server_version(options: &[String], tls: Option<&ServerTls>) -> Result<String, EngineError> {
    Ok(query(options, tls, "SELECT VERSION()")?.trim().to_owned())
}

/// The server's identity (see [`ServerIdentity`]) and its current LSN, if it tells.
pub fn server_identity(
    options: &[String],
    tls: Option<&ServerTls>,
    mysql: bool,
) -> Result<(ServerIdentity, Option<u64>), EngineError> {
    // One row: host, datadir, server_id, version, uuid, born, LSN.
    let sql = if mysql {
        "SELECT @@hostname, @@datadir, @@server_id, VERSION(), @@server_uuid, NULL, \
         (SELECT count FROM information_schema.innodb_metrics WHERE name = 'log_lsn_current')"
    } else {
        "SELECT @@hostname, @@datadir, @@server_id, VERSION(), NULL, \
         (SELECT UNIX_TIMESTAMP(create_time) FROM information_schema.tables \
           WHERE table_schema = 'mysql' AND table_name = 'global_priv'), \
         (SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'INNODB_LSN_CURRENT')"
    };
    let row = query(options, tls, sql)?;
    let line = row.lines().next().unwrap_or_default();
    let lsn = line.split('\t').nth(6).and_then(|v| v.trim().parse().ok());
    Ok((ServerIdentity::parse_row(line), lsn))
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

/// Option names whose values the engine's log must not show: mariabackup lists the options it
/// gives the key management plugin ("Encryption plugin parameter : '--NAME=VALUE'"), and those
/// include the password of an encrypted key file (`file_key_management_filekey`) or a vault
/// token (`hashicorp_key_management_token`).
const SECRET_NAMES: [&str; 4] = ["filekey", "token", "password", "secret"];

/// A line of the engine's log with the value of every secret option masked (up to the next
/// quote, space or end of line).
pub fn redact(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut from = 0;
    let mut i = 0;
    while let Some(eq) = line[i..].iter().position(|b| *b == b'=').map(|p| p + i) {
        let name_start = line[..eq]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
            .map_or(0, |p| p + 1);
        let name = line[name_start..eq].to_ascii_lowercase();
        // '--NAME=VALUE' in quotes: the value ends at the closing quote; else at a blank.
        let quote = line[..name_start].last().copied().filter(|b| matches!(b, b'\'' | b'"'));
        let end = line[eq + 1..]
            .iter()
            .position(|b| match quote {
                Some(q) => *b == q || matches!(b, b'\r' | b'\n'),
                None => matches!(b, b'\'' | b'"' | b' ' | b'\t' | b'\r' | b'\n'),
            })
            .map_or(line.len(), |p| p + eq + 1);
        let secret = SECRET_NAMES.iter().any(|s| name.ends_with(s.as_bytes()));
        if secret && end > eq + 1 {
            let o = out.get_or_insert_with(Vec::new);
            o.extend_from_slice(&line[from..=eq]);
            o.extend_from_slice(b"<redacted>");
            from = end;
        }
        i = end.max(eq + 1);
    }
    match out {
        Some(mut o) => {
            o.extend_from_slice(&line[from..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(line),
    }
}

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
        program_env(&mut cmd);
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
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                if let Some(f) = option_file.take() {
                    let _ = std::fs::remove_file(f);
                }
                let line = redact(&buf).into_owned();
                buf.clear();
                on_line(String::from_utf8_lossy(&line).trim_end());
                let mut log = sink.lock().expect("lock");
                if log.len() + line.len() <= LOG_MAX {
                    log.extend_from_slice(&line);
                }
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
    /// Has the engine exited, or does it within `within`?
    pub fn exits_within(&mut self, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => return false,
            }
        }
    }

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
///
/// The engine reads its options from one file only, which coffer writes into a private scratch
/// directory: the backup's own `backup-my.cnf` (its InnoDB geometry and, for a server that
/// encrypts, the key management plugin and its settings), checked by [`prepare_options`], with
/// the user's `options` in place of its values. Never the host's configuration (`/etc/mysql`,
/// `~/.my.cnf`): a prepare depends on the backup, not on the host it runs on.
pub fn prepare(
    engine: EngineKind,
    dir: &Path,
    options: &[PrepareOption],
    on_line: &dyn Fn(&str),
) -> Result<Vec<u8>, EngineError> {
    prepare_step(engine, dir, &PrepareStep::Only, options, on_line)
}

/// One prepare of a chain (docs/FORMAT.md §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareStep {
    /// A full backup restored alone.
    Only,
    /// The full backup of a chain that incrementals follow.
    ChainFull,
    /// An incremental applied to the prepared full (restored into this directory; `last`: the
    /// chain's last).
    Apply { incremental_dir: PathBuf, last: bool },
}

/// The engine's arguments for `step` (after its option file): mariabackup (10.5 and later)
/// prepares the full and applies each incremental with a plain `--prepare`; xtrabackup 8.0
/// needs `--apply-log-only` on every step but the last (and a plain `--prepare` after an
/// `--apply-log-only` one corrupts since 8.0.30, so the last step must be the last apply).
pub fn prepare_args(engine: EngineKind, dir: &Path, step: &PrepareStep) -> Vec<String> {
    let mut args = vec!["--prepare".to_owned()];
    let not_last = match step {
        PrepareStep::Only => false,
        PrepareStep::ChainFull => true,
        PrepareStep::Apply { last, .. } => !last,
    };
    if engine == EngineKind::Xtrabackup && not_last {
        args.push("--apply-log-only".into());
    }
    args.push(format!("--target-dir={}", dir.display()));
    if let PrepareStep::Apply { incremental_dir, .. } = step {
        args.push(format!("--incremental-dir={}", incremental_dir.display()));
    }
    args
}

/// Runs one prepare `step` on `dir` (see [`prepare`] for the option file).
pub fn prepare_step(
    engine: EngineKind,
    dir: &Path,
    step: &PrepareStep,
    options: &[PrepareOption],
    on_line: &dyn Fn(&str),
) -> Result<Vec<u8>, EngineError> {
    let text = prepare_options(dir, options)?;
    let scratch = Scratch::create(None)?;
    let file = scratch.path().join(PREPARE_FILE);
    write_private(&file, &text)?;
    let mut args = vec![format!("--defaults-file={}", file.display())];
    args.extend(prepare_args(engine, dir, step));
    run_to_end(engine, &args, on_line)
}

/// The option file of a prepare, in the scratch directory.
const PREPARE_FILE: &str = "prepare.cnf";

pub use crate::options::{prepare_options, server_options, PrepareOption, ServerOptions, BACKUP_OPTIONS};

/// A file of mode 0600 holding `text`.
fn write_private(path: &Path, text: &str) -> Result<(), EngineError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("create {}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(io(format!("write {}", path.display())))
}

/// Runs `ENGINE --move-back --target-dir DIR --datadir DATADIR`, with no option file at all
/// (`--no-defaults`): every file goes into DATADIR, wherever the host's configuration keeps
/// its redo log or undo tablespaces.
pub fn move_back(
    engine: EngineKind,
    dir: &Path,
    datadir: &Path,
    on_line: &dyn Fn(&str),
) -> Result<Vec<u8>, EngineError> {
    let args = [
        "--no-defaults".into(),
        "--move-back".into(),
        format!("--target-dir={}", dir.display()),
        format!("--datadir={}", datadir.display()),
    ];
    run_to_end(engine, &args, on_line)
}

/// Makes the program `cmd` starts die with coffer: SIGKILL when the thread that starts it ends
/// (PR_SET_PDEATHSIG fires when the parent *thread* exits, so the caller starts it from a thread
/// that lives as long as the program), or at once if coffer is already gone. With `user` (uid,
/// gid), the program runs as that user (no other group) instead of coffer's: the credentials
/// change first, since a change of credentials clears the death signal.
pub fn die_with_coffer(cmd: &mut Command, user: Option<(u32, u32)>) {
    use nix::unistd::{Gid, Uid};
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec; it only makes system calls
    // that are async-signal-safe (no allocation, no lock).
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                nix::unistd::setgroups(&[Gid::from_raw(gid)])?;
                nix::unistd::setgid(Gid::from_raw(gid))?;
                nix::unistd::setuid(Uid::from_raw(uid))?;
            }
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // coffer ended before the signal was set: nothing would stop this program.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Runs the engine with `args` (the first says which option file it reads, if any) to its
/// end; its output, secrets masked, passed to `on_line` and returned.
fn run_to_end(engine: EngineKind, args: &[String], on_line: &dyn Fn(&str)) -> Result<Vec<u8>, EngineError> {
    let bin = engine.binary()?;
    let mut cmd = Command::new(&bin);
    program_env(&mut cmd);
    // This thread waits for the engine (output), so it outlives it: see die_with_coffer.
    die_with_coffer(&mut cmd, None);
    let out = cmd.args(args).stdin(Stdio::null()).output().map_err(io(format!("run {}", bin.display())))?;
    let log: Vec<u8> = [out.stdout, out.stderr]
        .concat()
        .split_inclusive(|b| *b == b'\n')
        .flat_map(|l| redact(l).into_owned())
        .collect();
    for line in String::from_utf8_lossy(&log).lines() {
        on_line(line);
    }
    if !out.status.success() {
        let text = String::from_utf8_lossy(&log);
        // The engine's last error, not the note on its threads it prints as it exits.
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains("[ERROR]"))
            .or_else(|| text.lines().rev().find(|l| l.contains("rror") && !l.contains("my_thread_global_end")))
            .or_else(|| text.lines().last())
            .unwrap_or("")
            .trim()
            .to_owned();
        return Err(EngineError::Failed { engine: engine.name().into(), status: out.status.to_string(), last });
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_goes_into_the_option_file() {
        let scratch = Scratch::create(None).unwrap();
        let mut conn = Connection {
            socket: Some("/run/s.sock".into()),
            host: Some("db1".into()),
            port: Some(3307),
            user: Some("backup".into()),
            password: Some("p\"w".into()),
            defaults_file: None,
            tls: None,
        };
        let args = conn.option_args(&scratch).unwrap();
        let file = scratch.path().join(OPTION_FILE);
        let expected = [
            format!("--defaults-extra-file={}", file.display()),
            "--socket=/run/s.sock".into(),
            "--host=db1".into(),
            "--port=3307".into(),
            "--user=backup".into(),
        ];
        assert_eq!(args, expected);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "[client]\npassword=\"p\\\"w\"\n");
        // The user's own option file: read through coffer's, which alone is named.
        conn.defaults_file = Some("/nonexistent/my.cnf".into());
        let err = conn.option_args(&scratch).unwrap_err().to_string();
        assert!(err.starts_with("cannot connect to the server: --defaults-file /nonexistent/my.cnf: "), "{err}");
        let mine = scratch.path().join("mine.cnf");
        std::fs::write(&mine, "[client]\nuser=from-mine\n").unwrap();
        conn.defaults_file = Some(mine.clone());
        let args = conn.option_args(&scratch).unwrap();
        assert_eq!(args[0], format!("--defaults-file={}", file.display()));
        assert_eq!(args[1..], expected[1..]);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("!include {}\n[client]\npassword=\"p\\\"w\"\n", mine.display()));
        // What the client makes of it: the user's options and the password (a program given
        // --defaults-file ignores --defaults-extra-file).
        if let Ok(Some(client)) = find_program(&["mariadb"], &[]) {
            let out = Command::new(client).arg(&args[0]).arg("--print-defaults").output().unwrap();
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(printed.contains("--user=from-mine --password=p\"w"), "{printed}");
        }
    }

    #[test]
    fn a_program_another_user_could_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (open, closed) = (t.path().join("open"), t.path().join("closed"));
        for (d, mode) in [(&open, 0o777), (&closed, 0o755)] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("prog"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(d.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        let err = find_in(&path(&[&open, &closed]), &["prog"], &[]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "refusing to run {}: {} is writable by",
                open.join("prog").display(),
                open.display()
            )),
            "{err}"
        );
        let found = find_in(&path(&[&closed, &open]), &["prog"], &[]).unwrap().unwrap();
        assert_eq!(found, closed.join("prog").canonicalize().unwrap());
        // A link in a trusted directory to a program others can change; relative PATH entries.
        std::os::unix::fs::symlink(open.join("prog"), closed.join("link")).unwrap();
        assert!(matches!(find_in(&path(&[&closed]), &["link"], &[]), Err(EngineError::Untrusted(..))));
        assert!(find_in(&path(&[Path::new("closed")]), &["prog"], &[]).unwrap().is_none());
        assert!(find_in(&path(&[]), &["prog"], &[closed.to_str().unwrap()]).unwrap().is_some());
    }

    #[test]
    fn programs_get_an_environment_of_coffers_making() {
        let mut cmd = Command::new("/usr/bin/env");
        program_env(&mut cmd);
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap();
        assert!(out.lines().any(|l| l == format!("HOME={}", me.dir.display())), "{out}");
        assert!(out.lines().any(|l| l == format!("USER={}", me.name)), "{out}");
        assert!(out.lines().any(|l| l == format!("PATH={SYSTEM_PATH}")), "{out}");
        // Cargo's variables, as any other, stay behind.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some() && !out.contains("CARGO"), "{out}");
    }

    /// TLS settings in each dialect, with MySQL's meanings and defaults.
    #[test]
    fn tls_options_in_both_dialects() {
        let ca = Some(PathBuf::from("/pki/ca.pem"));
        let t = |mode, ca: &Option<PathBuf>| ServerTls { mode, ca: ca.clone(), ..Default::default() };
        assert_eq!(t(None, &ca).mode(), SslMode::VerifyCa, "a CA given: verify it");
        assert_eq!(t(None, &None).mode(), SslMode::Required);
        assert_eq!(
            t(Some(SslMode::VerifyIdentity), &ca).args(Dialect::MySql).unwrap(),
            ["--ssl-mode=VERIFY_IDENTITY", "--ssl-ca=/pki/ca.pem"]
        );
        assert_eq!(t(Some(SslMode::VerifyCa), &ca).args(Dialect::MySql).unwrap()[0], "--ssl-mode=VERIFY_CA");
        assert_eq!(t(Some(SslMode::Required), &None).args(Dialect::MySql).unwrap(), ["--ssl-mode=REQUIRED"]);
        assert_eq!(
            t(Some(SslMode::VerifyCa), &ca).args(Dialect::MariaDb).unwrap(),
            ["--ssl", "--ssl-verify-server-cert", "--ssl-ca=/pki/ca.pem"]
        );
        // MariaDB's programs cannot keep REQUIRED (they fall back to plaintext): refused.
        let required = t(Some(SslMode::Required), &None).args(Dialect::MariaDb).unwrap_err().to_string();
        assert!(required.contains("--ssl-ca"), "{required}");
        let with_cert = ServerTls {
            cert: Some("/c.pem".into()),
            key: Some("/k.pem".into()),
            ..t(None, &Some("/pki/ca.pem".into()))
        };
        assert_eq!(
            with_cert.args(Dialect::MariaDb).unwrap(),
            ["--ssl", "--ssl-verify-server-cert", "--ssl-ca=/pki/ca.pem", "--ssl-cert=/c.pem", "--ssl-key=/k.pem"]
        );
        // Verifying needs a CA; a certificate needs its key; files must exist.
        assert!(t(Some(SslMode::VerifyIdentity), &None).check().is_err());
        assert!(ServerTls { cert: Some("/c.pem".into()), ..Default::default() }.check().is_err());
        assert!(t(None, &Some("/nonexistent/ca.pem".into())).check().is_err());
    }

    /// mariabackup prepares and applies with plain --prepare; xtrabackup 8.0 with
    /// --apply-log-only on every step but the last (never after it).
    #[test]
    fn chain_prepares_take_the_arguments_each_engine_needs() {
        let t = Path::new("/r/t");
        let apply = |last| PrepareStep::Apply { incremental_dir: "/r/i".into(), last };
        let m = |step: &PrepareStep| prepare_args(EngineKind::Mariabackup, t, step).join(" ");
        let x = |step: &PrepareStep| prepare_args(EngineKind::Xtrabackup, t, step).join(" ");
        assert_eq!(m(&PrepareStep::Only), "--prepare --target-dir=/r/t");
        assert_eq!(m(&PrepareStep::ChainFull), "--prepare --target-dir=/r/t");
        assert_eq!(m(&apply(false)), "--prepare --target-dir=/r/t --incremental-dir=/r/i");
        assert_eq!(m(&apply(true)), "--prepare --target-dir=/r/t --incremental-dir=/r/i");
        assert_eq!(x(&PrepareStep::Only), "--prepare --target-dir=/r/t");
        assert_eq!(x(&PrepareStep::ChainFull), "--prepare --apply-log-only --target-dir=/r/t");
        assert_eq!(x(&apply(false)), "--prepare --apply-log-only --target-dir=/r/t --incremental-dir=/r/i");
        assert_eq!(x(&apply(true)), "--prepare --target-dir=/r/t --incremental-dir=/r/i");
    }

    #[test]
    fn a_program_dies_with_the_thread_that_started_it_and_runs_as_the_user_given() {
        use nix::sys::wait::{waitpid, WaitStatus};
        let pid = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            die_with_coffer(&mut cmd, None);
            cmd.arg("30").spawn().unwrap().id()
        })
        .join()
        .unwrap();
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let started = std::time::Instant::now();
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGKILL, false));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        if nix::unistd::geteuid().is_root() {
            let mut cmd = Command::new("sh");
            die_with_coffer(&mut cmd, Some((65534, 65534)));
            let out = cmd.args(["-c", "id -u; id -g; id -G"]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "65534\n65534\n65534\n");
        }
    }

    #[test]
    fn secrets_are_masked_in_the_engines_log() {
        let line = b"[00] Encryption plugin parameter :  '--file_key_management_filekey=s3cret pass'\n";
        assert_eq!(
            &*redact(line),
            &b"[00] Encryption plugin parameter :  '--file_key_management_filekey=<redacted>'\n"[..]
        );
        let line = b"x --hashicorp-key-management-token=abc y --file_key_management_filename=/k a=b";
        assert_eq!(
            &*redact(line),
            &b"x --hashicorp-key-management-token=<redacted> y --file_key_management_filename=/k a=b"[..]
        );
        assert!(matches!(redact(b"filekey= nothing"), std::borrow::Cow::Borrowed(_)));
    }
}
