//! What a backup reads: a directory tree, one file, a stream, an xbstream, or a live server
//! through its backup engine, each built from one [`SourceSpec`].

use crate::error::{Context, Error, Result};
use crate::location::{ImageOut, Location};
use crate::repo::chain::Decision;
use crate::Env;
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::source::{ChunkReader, StreamChunker};
use coffer_fs::walk::Walker;
use coffer_image::{DirSource, EntrySource, FileSource, ImageError, SourceItem, StreamSource};
use coffer_mysql::engine::{Connection, EngineKind, EngineRun, Scratch, ServerTls, SslMode};
use coffer_mysql::meta::{BackupInfo, ServerIdentity, LOG_ENTRY, META_ENTRY};
use coffer_mysql::source::{Defaults, XbstreamSource};
use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What to back up.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A directory tree, or one regular file (stored under `name`, default its file name).
    Path {
        /// The directory or file.
        path: PathBuf,
        /// The entry name of a single file.
        name: Option<String>,
    },
    /// Standard input, stored as one file entry named `name` (default "stdin").
    Stdin {
        /// The entry name.
        name: Option<String>,
    },
    /// An xbstream (`mariabackup --backup --stream=xbstream` output) from a file, or from
    /// standard input for `-`.
    Xbstream(PathBuf),
    /// A hot backup of a running server, through mariabackup or xtrabackup.
    Server(Box<ServerOptions>),
    /// Files held in memory (name, contents), stored in this order (a binary log segment:
    /// never written to disk in the clear). Shared with the source, not copied: the caller
    /// gets its bytes back once the job has returned (`Arc::try_unwrap`).
    Memory {
        /// What the files are, as messages name it ("the segment b.000002-...").
        name: String,
        /// The files.
        files: Vec<(String, std::sync::Arc<Vec<u8>>)>,
    },
}

impl SourceSpec {
    /// What a backup is asked to read: the server if given, else the xbstream if given, else
    /// the file or directory at `path` (standard input for none or `-`), stored as `name`.
    pub fn given(
        server: Option<ServerOptions>,
        xbstream: Option<PathBuf>,
        path: Option<&Path>,
        name: Option<String>,
    ) -> Self {
        match (server, xbstream, path) {
            (Some(server), _, _) => SourceSpec::Server(Box::new(server)),
            (None, Some(xb), _) => SourceSpec::Xbstream(xb),
            (None, None, Some(p)) if p != Path::new("-") => SourceSpec::Path { path: p.into(), name },
            _ => SourceSpec::Stdin { name },
        }
    }

    /// Reads standard input (which must then not be a terminal)?
    pub fn reads_stdin(&self) -> bool {
        matches!(self, SourceSpec::Stdin { .. }) || matches!(self, SourceSpec::Xbstream(p) if p == Path::new("-"))
    }

    /// Is this a directory on this host (which a transfer can resume)?
    pub fn is_dir(&self) -> bool {
        matches!(self, SourceSpec::Path { path, .. } if path.is_dir())
    }
}

/// How to reach a server for a hot backup, and the engine's own options.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The server's socket.
    pub socket: Option<PathBuf>,
    /// The server's host (TCP).
    pub host: Option<String>,
    /// The server's port (TCP).
    pub port: Option<u16>,
    /// The user to connect as.
    pub user: Option<String>,
    /// A file holding the password (one line).
    pub password_file: Option<PathBuf>,
    /// An option file for the client and the engine.
    pub defaults_file: Option<PathBuf>,
    /// The engine (default: by the server's version).
    pub engine: Option<EngineKind>,
    /// Extra options for the engine.
    pub engine_args: Vec<String>,
    /// Where the engine keeps its own few files.
    pub scratch_dir: Option<PathBuf>,
    /// TLS to the server (for the client and the engine).
    pub tls: Option<coffer_mysql::engine::ServerTls>,
}

/// TLS to a server from `--ssl-mode`, `--ssl-ca`, `--ssl-cert` and `--ssl-key`: none unless a
/// mode, a CA or a certificate is given (a key alone asks for nothing: it goes with a
/// certificate).
pub fn server_tls(
    mode: Option<SslMode>,
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Option<ServerTls> {
    let given = mode.is_some() || ca.is_some() || cert.is_some();
    given.then(|| ServerTls { mode, ca: ca.clone(), cert: cert.clone(), key: key.clone() })
}

/// Where and how a client reaches a server: its socket, or its host with TLS as asked; the
/// user (root unless given) and the password.
pub(crate) struct Reach {
    pub target: coffer_mysql::client::Target,
    pub user: String,
    pub password: zeroize::Zeroizing<String>,
    pub tls: Option<coffer_mysql::client::Tls>,
}

impl Reach {
    /// A session with the server.
    pub(crate) fn connect(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<coffer_mysql::client::Client, coffer_mysql::client::ClientError> {
        coffer_mysql::client::Client::connect(
            &self.target,
            &self.user,
            self.password.as_bytes(),
            timeout,
            self.tls.as_ref(),
        )
    }
}

/// How to reach the server `server` names (the password file read, the TLS settings checked).
pub(crate) fn reach(server: &ServerOptions) -> Result<Reach> {
    use coffer_mysql::client::Target;
    let conn = connection(server)?;
    let target = match (&conn.socket, &conn.host) {
        (Some(s), _) => Target::Socket(s.clone()),
        (None, Some(h)) => Target::Tcp { host: h.clone(), port: conn.port.unwrap_or(3306) },
        _ => return Err(Error::usage("give the server's socket (-S) or host (-h)")),
    };
    let tls = match (&conn.tls, &target) {
        (Some(t), Target::Tcp { host, .. }) => Some(client_tls(t, host)?),
        (Some(_), Target::Socket(_)) => {
            return Err(Error::usage("TLS (--ssl-*) is for TCP connections (-h), not a socket"))
        }
        (None, _) => None,
    };
    let user = conn.user.clone().unwrap_or_else(|| "root".into());
    Ok(Reach { target, user, password: zeroize::Zeroizing::new(conn.password.clone().unwrap_or_default()), tls })
}

/// The client's TLS for the settings `t` (MySQL's `--ssl-mode` meanings).
fn client_tls(t: &ServerTls, host: &str) -> Result<coffer_mysql::client::Tls> {
    use coffer_net::tls::DbVerify;
    let verify = match t.mode() {
        SslMode::Required => DbVerify::None,
        SslMode::VerifyCa => DbVerify::Ca,
        SslMode::VerifyIdentity => DbVerify::Identity,
    };
    let ours = t.cert.as_deref().zip(t.key.as_deref());
    let config = coffer_net::tls::db_client_config(verify, t.ca.as_deref(), ours).map_err(Error::other)?;
    Ok(coffer_mysql::client::Tls { config, host: host.to_owned() })
}

/// A source opened for a backup.
pub(crate) struct Opened {
    pub source: Box<dyn EntrySource>,
    /// The bytes it will read, when known up front.
    pub total: Option<u64>,
    /// What messages call it.
    pub name: String,
    /// The engine's scratch directory, kept until the backup is done.
    pub _scratch: Option<Scratch>,
    /// The backup this one builds on (an incremental's or differential's parent).
    pub parent: Option<Location>,
}

/// Opens `spec` for a backup into `out` (a directory backup leaves out the image itself, and
/// what a receiver already holds of an interrupted transfer).
pub(crate) fn open(spec: &SourceSpec, out: &dyn ImageOut, chain: Option<&ChainPlan>, env: &Env) -> Result<Opened> {
    let stdin = || -> Result<std::fs::File> {
        Ok(std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().context("cannot use stdin")?))
    };
    let opened = |source: Box<dyn EntrySource>, total, name: String| Opened {
        source,
        total,
        name,
        _scratch: None,
        parent: None,
    };
    match spec {
        SourceSpec::Server(server) => {
            let started = start_engine(server, chain, env)?;
            let name = format!("the {} server", coffer_mysql::meta::flavor(&started.version));
            let mut backup = ServerBackup::new(started.stdout, Some(started.run), Some(started.version));
            backup.identity = Some(started.identity);
            let parent = started.decision.parent.as_ref().map(|p| p.location.clone());
            backup.decision = Some(started.decision);
            Ok(Opened { source: Box::new(backup), total: None, name, _scratch: Some(started.scratch), parent })
        }
        SourceSpec::Xbstream(xb) => {
            let name = format!("the xbstream {}", xb.display());
            let input = if xb == Path::new("-") {
                stdin()?
            } else {
                std::fs::File::open(xb).with_context(|| format!("cannot open {}", xb.display()))?
            };
            Ok(opened(Box::new(ServerBackup::new(input, None, None)), None, name))
        }
        SourceSpec::Stdin { name } => {
            let name = name.clone().unwrap_or_else(|| "stdin".into());
            Ok(opened(Box::new(StreamSource::new(stdin_meta(&name), stdin()?)), None, "stdin".to_owned()))
        }
        SourceSpec::Path { path, name } => open_path(path, name.as_deref(), out, env),
        SourceSpec::Memory { name, files } => {
            let total = files.iter().map(|f| f.1.len() as u64).sum();
            let items =
                files.iter().map(|(name, bytes)| file_item(name, Shared(std::sync::Arc::clone(bytes)))).collect();
            Ok(opened(Box::new(Memory { items }), Some(total), name.clone()))
        }
    }
}

fn open_path(src: &Path, name: Option<&str>, out: &dyn ImageOut, env: &Env) -> Result<Opened> {
    let shown = src.display().to_string();
    let md = std::fs::metadata(src).with_context(|| format!("cannot back up {}", src.display()))?;
    if md.is_dir() {
        let mut walker = Walker::new(src);
        if let Some(excluded) = out.excluded()? {
            walker.exclude(&excluded);
        }
        let dir = DirSource::new(walker);
        return Ok(match out.offer() {
            Some(offer) if !offer.files.is_empty() => {
                let held = crate::net::held_files(offer)?;
                env.report.say(&format!(
                    "{} holds {} files of an interrupted transfer: sending those it lacks or that changed",
                    out.shown(),
                    held.len()
                ));
                Opened {
                    source: Box::new(Skipping { inner: dir, held }),
                    total: None,
                    name: shown,
                    _scratch: None,
                    parent: None,
                }
            }
            _ => {
                let total = if env.report.shows_progress() { tree_size(src) } else { None };
                Opened { source: Box::new(dir), total, name: shown, _scratch: None, parent: None }
            }
        });
    }
    if md.is_file() {
        let name = match name {
            Some(n) => n.as_bytes().to_vec(),
            None => src.file_name().context("the source has no file name")?.as_bytes().to_vec(),
        };
        return Ok(Opened {
            source: Box::new(FileSource::new(src, name)?),
            total: Some(md.len()),
            name: shown,
            _scratch: None,
            parent: None,
        });
    }
    Err(Error::usage(format!("{} is neither a directory nor a regular file", src.display())))
}

/// Sum of file sizes under `root`, for a progress bar's total.
fn tree_size(root: &Path) -> Option<u64> {
    Walker::new(root).map(|i| i.ok().map(|i| if i.meta.kind == EntryKind::File { i.meta.size } else { 0 })).sum()
}

/// The entry of a stream: this process's user, now, mode 0600.
fn stdin_meta(name: &str) -> EntryMeta {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let mut names = coffer_fs::owner::NameCache::default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    EntryMeta {
        kind: EntryKind::File,
        continues: false,
        mode: 0o600,
        uid,
        gid,
        mtime_sec: now.as_secs() as i64,
        mtime_nsec: now.subsec_nanos(),
        size: 0,
        path: name.as_bytes().to_vec(),
        target: vec![],
        uname: names.user_name(uid),
        gname: names.group_name(gid),
    }
}

/// A directory's entries without the files a receiver already holds unchanged (same size and
/// modification time): what a resumed directory transfer sends.
struct Skipping {
    inner: DirSource,
    held: std::collections::HashMap<Vec<u8>, EntryMeta>,
}

impl EntrySource for Skipping {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        while let Some(item) = self.inner.next_item()? {
            let m = &item.meta;
            let unchanged = m.kind == EntryKind::File
                && self
                    .held
                    .get(&m.path)
                    .is_some_and(|h| h.size == m.size && h.mtime_sec == m.mtime_sec && h.mtime_nsec == m.mtime_nsec);
            if !unchanged {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    fn skipped(&self) -> &[PathBuf] {
        self.inner.skipped()
    }
}

/// A source whose files' contents are read at most at a shared rate (`--limit-rate`): every
/// chunk of every entry is accounted, whether the reading thread reads it or plans it for a
/// worker (see `coffer_fs::rate::Paced`). A server's engine is held back by its pipe.
pub(crate) struct PacedSource {
    inner: Box<dyn EntrySource>,
    limit: std::sync::Arc<coffer_fs::rate::RateLimit>,
}

impl PacedSource {
    /// `inner`, read at most at `bytes_per_sec`.
    pub(crate) fn new(inner: Box<dyn EntrySource>, bytes_per_sec: u64) -> Self {
        Self { inner, limit: std::sync::Arc::new(coffer_fs::rate::RateLimit::new(bytes_per_sec)) }
    }
}

impl EntrySource for PacedSource {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        let mut item = self.inner.next_item()?;
        if let Some(item) = &mut item {
            if let Some(data) = item.data.take() {
                item.data = Some(Box::new(coffer_fs::rate::Paced::new(data, self.limit.clone())));
            }
        }
        Ok(item)
    }

    fn skipped(&self) -> &[PathBuf] {
        self.inner.skipped()
    }

    fn description(&self) -> Option<Vec<u8>> {
        self.inner.description()
    }

    fn cause_of_failure(&mut self) -> Option<ImageError> {
        self.inner.cause_of_failure()
    }
}

/// Entries held in memory.
struct Memory {
    items: VecDeque<SourceItem>,
}

impl EntrySource for Memory {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        Ok(self.items.pop_front())
    }
}

/// Owner and time for entries of a stream that carries none: this process's user, now.
pub(crate) fn defaults() -> Defaults {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let mut names = coffer_fs::owner::NameCache::default();
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Defaults { uid, gid, uname: names.user_name(uid), gname: names.group_name(gid), mtime }
}

/// An xbstream's entries, then the engine's log and the backup's description. For `--mysql`
/// it owns the engine: the engine's failure fails the backup (so no image is left), and if the
/// backup fails first the engine is stopped.
pub(crate) struct ServerBackup<R> {
    xb: XbstreamSource<R>,
    engine: Option<EngineRun>,
    kind: &'static str,
    server_version: Option<String>,
    tail: VecDeque<SourceItem>,
    done: bool,
    info: Option<BackupInfo>,
    /// The server, as coffer established it before the engine started.
    identity: Option<ServerIdentity>,
    /// Where the backup joins a chain.
    decision: Option<Decision>,
}

impl<R> std::fmt::Debug for ServerBackup<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBackup").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Bytes held by [`SourceSpec::Memory`] and its source at once.
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn file_item(path: &str, bytes: impl AsRef<[u8]> + Send + 'static) -> SourceItem {
    let d = defaults();
    let meta = EntryMeta {
        kind: EntryKind::File,
        continues: false,
        mode: 0o640,
        uid: d.uid,
        gid: d.gid,
        mtime_sec: d.mtime,
        mtime_nsec: 0,
        size: bytes.as_ref().len() as u64,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: d.uname,
        gname: d.gname,
    };
    let data: Box<dyn ChunkReader> = Box::new(StreamChunker::new(Cursor::new(bytes), path));
    SourceItem { meta, data: Some(data), source: None, opened: None }
}

impl<R: Read + Send + 'static> ServerBackup<R> {
    fn new(input: R, engine: Option<EngineRun>, server_version: Option<String>) -> Self {
        let kind = if engine.is_some() { "mysql" } else { "xbstream" };
        Self {
            xb: XbstreamSource::new(input, defaults()),
            engine,
            kind,
            server_version,
            tail: VecDeque::new(),
            done: false,
            info: None,
            identity: None,
            decision: None,
        }
    }

    /// The stream is over: the engine must have succeeded, and the stream must hold a whole
    /// backup (the engine writes its info file last).
    fn finish(&mut self) -> Result<(), ImageError> {
        let log = match self.engine.take() {
            Some(run) => Some(run.finish().map_err(|e| ImageError::Source(e.to_string()))?),
            None => None,
        };
        let summary = self.xb.summary();
        if !summary.kept.keys().any(|k| k == "xtrabackup_info" || k == "mariadb_backup_info") {
            return Err(ImageError::Source(
                "the xbstream ends without the engine's last file (xtrabackup_info): the backup is incomplete".into(),
            ));
        }
        let mut info = BackupInfo::from_kept(self.kind, &summary.kept);
        info.files = summary.files;
        info.bytes = summary.bytes;
        if info.server_version.is_none() {
            info.server_version = self.server_version.clone();
        }
        if let Some(d) = &self.decision {
            // The engine must have started where the parent ended: a backup that does not
            // would be restored onto pages it does not follow.
            let expected = d.from_lsn().unwrap_or(0);
            let incremental = info.backup_type.as_deref() == Some("incremental");
            let backwards = matches!((info.from_lsn, info.to_lsn), (Some(from), Some(to)) if to < from);
            if backwards || incremental != d.parent.is_some() || (incremental && info.from_lsn != Some(expected)) {
                return Err(ImageError::Source(format!(
                    "the engine's backup is {} from LSN {}, but coffer asked for {} from {expected}",
                    info.backup_type.as_deref().unwrap_or("?"),
                    info.from_lsn.map_or("?".into(), |l| l.to_string()),
                    d.link.kind.name(),
                )));
            }
            info.chain = Some(d.link.clone());
        }
        info.server = self.identity.clone();
        if let Some(log) = log {
            self.tail.push_back(file_item(LOG_ENTRY, log));
        }
        let json = serde_json::to_vec_pretty(&info).expect("serializable");
        // Readers refuse a larger description (from_kept keeps it far smaller).
        if json.len() > coffer_mysql::meta::MAX_DESCRIPTION {
            return Err(ImageError::Source(format!("the backup's description takes {} bytes: too large", json.len())));
        }
        self.tail.push_back(file_item(META_ENTRY, json));
        self.info = Some(info);
        Ok(())
    }
}

impl<R: Read + Send + 'static> EntrySource for ServerBackup<R> {
    fn next_item(&mut self) -> Result<Option<SourceItem>, ImageError> {
        if !self.done {
            match self.xb.next_item() {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => {
                    self.done = true;
                    self.finish()?;
                }
                Err(e) => {
                    // A stream cut short is most often the engine dying: its error says why.
                    if let Some(run) = self.engine.take() {
                        run.finish().map_err(|e| ImageError::Source(e.to_string()))?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(self.tail.pop_front())
    }

    fn description(&self) -> Option<Vec<u8>> {
        self.info.as_ref().and_then(|i| serde_json::to_vec(i).ok())
    }

    fn cause_of_failure(&mut self) -> Option<ImageError> {
        let mut run = self.engine.take()?;
        // An engine that died closed its stream: it is gone by now, and its log says why. One
        // still running was failed by us (the image's side): stop it, our error stands.
        if !run.exits_within(std::time::Duration::from_secs(2)) {
            run.abort();
            return None;
        }
        run.finish().err().map(|e| ImageError::Source(e.to_string()))
    }
}

impl<R> Drop for ServerBackup<R> {
    fn drop(&mut self) {
        if let Some(run) = self.engine.take() {
            run.abort();
        }
    }
}

/// The connection the options describe.
pub fn connection(args: &ServerOptions) -> Result<Connection> {
    let password = match &args.password_file {
        Some(p) => {
            let bytes = crate::keys::read_secret(p, "password file", false)?;
            let text = String::from_utf8(bytes.to_vec()).context("the password file is not UTF-8")?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => None,
    };
    // The engine changes into the datadir: a relative socket path would name another file.
    let socket = match &args.socket {
        Some(s) => Some(std::path::absolute(s).with_context(|| format!("-S {}", s.display()))?),
        None => None,
    };
    Ok(Connection {
        socket,
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        password,
        defaults_file: args.defaults_file.clone(),
        tls: match &args.tls {
            Some(t) => {
                t.check()?;
                Some(t.clone())
            }
            None => None,
        },
    })
}

/// What a hot backup is asked to be, with the backups it may build on.
#[derive(Debug)]
pub(crate) struct ChainPlan {
    pub mode: crate::repo::chain::Mode,
    pub max_chain: u32,
    pub neighbours: crate::repo::chain::Neighbours,
}

/// An engine started against the server.
struct Started {
    run: EngineRun,
    stdout: std::process::ChildStdout,
    scratch: Scratch,
    version: String,
    identity: ServerIdentity,
    decision: Decision,
}

/// Starts the engine against the server: a full backup, or, as `chain` asks and the backups it
/// holds allow, an incremental or differential one.
fn start_engine(args: &ServerOptions, chain: Option<&ChainPlan>, env: &Env) -> Result<Started> {
    let threads = env.threads;
    let conn = connection(args)?;
    // A killed backup leaves its scratch directory (the password's option file, if the engine
    // had not read it yet): the next one to use that place removes it.
    for dir in coffer_mysql::engine::sweep_scratch(args.scratch_dir.as_deref()) {
        env.report.warn(&format!("removed {}, which an interrupted run of the engine left", dir.display()));
    }
    let scratch = Scratch::create(args.scratch_dir.as_deref())?;
    let options = conn.option_args(&scratch)?;
    let tls = conn.tls.as_ref();
    let version = coffer_mysql::engine::server_version(&options, tls)?;
    let engine = args.engine.unwrap_or_else(|| EngineKind::for_version(&version));
    let mysql = coffer_mysql::meta::flavor(&version) == "MySQL";
    let (identity, lsn) = coffer_mysql::engine::server_identity(&options, tls, mysql)?;
    let decision = match chain {
        Some(plan) => {
            if lsn.is_none() {
                env.report.warn("the server did not tell its current LSN: not checked against its earlier backups'");
            }
            crate::repo::chain::decide(
                plan.mode,
                plan.max_chain,
                &plan.neighbours,
                &identity,
                lsn,
                crate::names::new_id()?,
            )
        }
        None => Decision::full(crate::names::new_id()?),
    };
    if identity.server_uuid.is_none() && identity.born.is_none() {
        env.report.warn(
            "the server's identity lacks the creation time of its system tables (grant SELECT on mysql.global_priv \
             to the backup user): a datadir rebuilt at the same path is told apart only by its LSN",
        );
    }
    if let Some(why) = &decision.fallback {
        env.report.say(&format!("taking a full backup: {why}"));
    } else if let Some(parent) = &decision.parent {
        env.report.say(&format!(
            "taking {} backup {} of the chain of full {}, from LSN {} where {} ended",
            decision.link.kind.name(),
            decision.link.depth,
            decision.link.full,
            decision.from_lsn().unwrap_or(0),
            parent.shown()
        ));
    }
    let report = env.report.clone();
    let name = engine.name();
    let on_line: Box<dyn Fn(&str) + Send> = Box::new(move |line: &str| report.engine_line(name, line));
    // The engine copies one file at a time unless told otherwise, and a copy thread does not
    // read while it writes to the pipe: one copy thread per core keeps the disk and the pipe
    // busy together (files then interleave in the stream, which the image stores as parts).
    // An --engine-arg=--parallel=N given by the user comes later and wins.
    let mut extra = vec![format!("--parallel={}", threads.max(1))];
    if let Some(from) = decision.parent.as_ref().and_then(|_| decision.from_lsn()) {
        extra.push(format!("--incremental-lsn={from}"));
    }
    extra.extend(tls.map(|t| t.args(engine.dialect())).transpose()?.unwrap_or_default());
    extra.extend(args.engine_args.iter().cloned());
    let (run, stdout) = EngineRun::backup(engine, &options, &scratch, &extra, on_line)?;
    Ok(Started { run, stdout, scratch, version, identity, decision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_comes_before_an_xbstream_before_a_path_and_stdin_is_none_or_a_dash() {
        let server = || Some(ServerOptions::default());
        let xb = || Some(PathBuf::from("x.xb"));
        let (dir, dash, name) = (Some(Path::new("/d")), Some(Path::new("-")), || Some("n".to_owned()));
        assert!(matches!(SourceSpec::given(server(), xb(), dir, None), SourceSpec::Server(_)));
        assert!(matches!(SourceSpec::given(None, xb(), dir, None), SourceSpec::Xbstream(p) if p == Path::new("x.xb")));
        let path = SourceSpec::given(None, None, dir, name());
        assert!(matches!(path, SourceSpec::Path { path, name: Some(n) } if path == Path::new("/d") && n == "n"));
        assert!(matches!(SourceSpec::given(None, None, dash, name()), SourceSpec::Stdin { name: Some(_) }));
        assert!(matches!(SourceSpec::given(None, None, None, None), SourceSpec::Stdin { name: None }));
    }

    #[test]
    fn tls_to_a_server_only_when_a_mode_a_ca_or_a_certificate_is_given() {
        let file = |f: &str| Some(PathBuf::from(f));
        assert_eq!(server_tls(None, &None, &None, &None), None);
        assert_eq!(server_tls(None, &None, &None, &file("k.pem")), None);
        let ca = server_tls(None, &file("ca.pem"), &None, &None).unwrap();
        assert_eq!((ca.mode, ca.mode()), (None, SslMode::VerifyCa));
        let mine = server_tls(None, &None, &file("c.pem"), &file("k.pem")).unwrap();
        assert_eq!((mine.mode(), mine.key), (SslMode::Required, file("k.pem")));
        let asked = server_tls(Some(SslMode::VerifyIdentity), &None, &None, &None).unwrap();
        assert_eq!(asked.mode(), SslMode::VerifyIdentity);
    }
}
