//! Server backups: `backup --mysql` (drives the engine), `backup --xbstream`, `info`, and the
//! prepare and copy-back steps of `restore`.

use super::open_input;
use crate::cli::{EngineArg, InfoArgs, ServerArgs};
use crate::progress::Bar;
use anyhow::{bail, Context, Result};
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::source::{ChunkReader, StreamChunker};
use coffer_image::{EntrySource, ImageError, SourceItem};
use coffer_mysql::engine::{Connection, EngineKind, EngineRun, Scratch};
use coffer_mysql::meta::{BackupInfo, LOG_ENTRY, META_ENTRY};
use coffer_mysql::source::{Defaults, XbstreamSource};
use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::path::Path;

/// Owner and time for entries of a stream that carries none: this process's user, now.
pub fn defaults() -> Defaults {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let mut names = coffer_fs::owner::NameCache::default();
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Defaults { uid, gid, uname: names.user_name(uid), gname: names.group_name(gid), mtime }
}

/// An xbstream's entries, then the engine's log and the backup's description. For `--mysql`
/// it owns the engine: the engine's failure fails the backup (so no image is left), and if the
/// backup fails first the engine is stopped.
pub struct ServerBackup<R> {
    xb: XbstreamSource<R>,
    engine: Option<EngineRun>,
    kind: &'static str,
    server_version: Option<String>,
    tail: VecDeque<SourceItem>,
    done: bool,
    pub info: Option<BackupInfo>,
}

impl<R> std::fmt::Debug for ServerBackup<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBackup").field("kind", &self.kind).finish_non_exhaustive()
    }
}

fn file_item(path: &str, bytes: Vec<u8>) -> SourceItem {
    let d = defaults();
    let meta = EntryMeta {
        kind: EntryKind::File,
        continues: false,
        mode: 0o640,
        uid: d.uid,
        gid: d.gid,
        mtime_sec: d.mtime,
        mtime_nsec: 0,
        size: bytes.len() as u64,
        path: path.as_bytes().to_vec(),
        target: vec![],
        uname: d.uname,
        gname: d.gname,
    };
    let data: Box<dyn ChunkReader> = Box::new(StreamChunker::new(Cursor::new(bytes), path));
    SourceItem { meta, data: Some(data), source: None, opened: None }
}

impl<R: Read + Send + 'static> ServerBackup<R> {
    pub fn new(input: R, engine: Option<EngineRun>, server_version: Option<String>) -> Self {
        let kind = if engine.is_some() { "mysql" } else { "xbstream" };
        Self {
            xb: XbstreamSource::new(input, defaults()),
            engine,
            kind,
            server_version,
            tail: VecDeque::new(),
            done: false,
            info: None,
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
}

impl<R> Drop for ServerBackup<R> {
    fn drop(&mut self) {
        if let Some(run) = self.engine.take() {
            run.abort();
        }
    }
}

/// The connection described by the command line.
pub fn connection(args: &ServerArgs) -> Result<Connection> {
    let password = match &args.password_file {
        Some(p) => {
            let bytes = crate::keys::read_secret(p, "password file", false)?;
            let text = String::from_utf8(bytes.to_vec()).context("the password file is not UTF-8")?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => None,
    };
    Ok(Connection {
        socket: args.socket.clone(),
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        password,
        defaults_file: args.defaults_file.clone(),
    })
}

/// Starts the engine against the server; returns the run, its xbstream, the scratch directory
/// and the server's version.
pub fn start_engine(
    args: &ServerArgs,
    quiet: bool,
    threads: usize,
    bar: &Bar,
) -> Result<(EngineRun, std::process::ChildStdout, Scratch, String)> {
    let conn = connection(args)?;
    let scratch = Scratch::create(args.scratch_dir.as_deref())?;
    let options = conn.option_args(&scratch)?;
    let version = coffer_mysql::engine::server_version(&options)?;
    let engine = match args.engine {
        Some(EngineArg::Mariabackup) => EngineKind::Mariabackup,
        Some(EngineArg::Xtrabackup) => EngineKind::Xtrabackup,
        None => EngineKind::for_version(&version),
    };
    let show = bar.clone();
    let name = engine.name();
    let on_line: Box<dyn Fn(&str) + Send> = Box::new(move |line: &str| {
        if quiet {
            return;
        }
        if show.is_hidden() {
            eprintln!("{name}: {line}");
        } else {
            show.message(line);
        }
    });
    // The engine copies one file at a time unless told otherwise, and a copy thread does not
    // read while it writes to the pipe: one copy thread per core keeps the disk and the pipe
    // busy together (files then interleave in the stream, which the image stores as parts).
    // An --engine-arg=--parallel=N given by the user comes later and wins.
    let mut extra = vec![format!("--parallel={}", threads.max(1))];
    extra.extend(args.engine_args.iter().cloned());
    let (run, stdout) = EngineRun::backup(engine, &options, &scratch, &extra, on_line)?;
    Ok((run, stdout, scratch, version))
}

/// What `info` reports of an image: its header, backup description, files and bytes.
pub type ImageInfo = (coffer_format::Header, Option<BackupInfo>, u64, u64);

/// Reads the backup description of an image (its `coffer-backup.json` entry).
fn read_info(args: &InfoArgs, quiet: bool) -> Result<ImageInfo> {
    let unlocks = crate::keys::unlocks(&args.key, quiet)?;
    read_info_with(&args.image, &unlocks)
}

/// [`read_info`] with secrets already read (for many images: `catalog`).
pub fn read_info_with(image: &Path, unlocks: &[coffer_crypto::Unlock]) -> Result<ImageInfo> {
    let mut out = coffer_image::StreamVisitor::new(Vec::new());
    if image != Path::new("-") {
        let idx = crate::store::open_indexed(image, unlocks)?;
        let records = super::list::fold_parts(idx.records().to_vec())?;
        let files = records.iter().filter(|r| r.meta.kind == EntryKind::File).count() as u64;
        // The index was checked: its files' sizes add up to END's total, which fits.
        let bytes = records.iter().fold(0u64, |sum, r| sum.saturating_add(r.size));
        let found = idx.records().iter().position(|r| r.meta.path == META_ENTRY.as_bytes());
        let info = match found {
            Some(i) if idx.records()[i].size > MAX_DESCRIPTION => return Err(too_large().into()),
            Some(i) => {
                idx.read_entry(i, &mut out, 1)?;
                Some(serde_json::from_slice(&out.into_inner()).context("the image's backup description is malformed")?)
            }
            None => None,
        };
        return Ok((idx.image().header.clone(), info, files, bytes));
    }
    let (mut input, _) = open_input(image)?;
    let opened = coffer_image::open_stream(&mut input, unlocks)?;
    let mut v = MetaGrabber { out: &mut out, on: false, files: 0, bytes: 0 };
    coffer_image::read_stream(&mut input, &opened, &mut v, coffer_image::ReadOptions { threads: 2, skip_data: false })?;
    let (files, bytes) = (v.files, v.bytes);
    let bytes_out = out.into_inner();
    let info = if bytes_out.is_empty() { None } else { Some(serde_json::from_slice(&bytes_out).context("malformed")?) };
    Ok((opened.header, info, files, bytes))
}

/// Passes only the metadata entry on; counts files.
struct MetaGrabber<'a> {
    out: &'a mut coffer_image::StreamVisitor<Vec<u8>>,
    on: bool,
    files: u64,
    bytes: u64,
}

impl coffer_image::Visitor for MetaGrabber<'_> {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        self.on = meta.path == META_ENTRY.as_bytes();
        if meta.kind == EntryKind::File && !meta.continues {
            self.files += 1;
        }
        if self.on {
            self.out.entry(meta)?;
        }
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        if self.on {
            if offset.saturating_add(data.len() as u64) > MAX_DESCRIPTION {
                return Err(too_large());
            }
            self.out.data(offset, data)?;
        }
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        // The reader checked that the files' sizes add up without overflowing.
        self.bytes = self.bytes.saturating_add(size);
        if self.on {
            if size > MAX_DESCRIPTION {
                return Err(too_large());
            }
            self.out.end_file(size)?;
        }
        Ok(())
    }
}

/// The backup description is a few KiB of JSON; it is read into memory, so no larger than this.
const MAX_DESCRIPTION: u64 = coffer_mysql::meta::MAX_DESCRIPTION as u64;

fn too_large() -> ImageError {
    let detail = format!("its {META_ENTRY} entry is larger than {} bytes", MAX_DESCRIPTION);
    ImageError::Corrupt { at: coffer_image::Location::default(), detail }
}

pub fn info(args: InfoArgs, quiet: bool) -> Result<()> {
    let (header, info, files, bytes) = read_info(&args, quiet)?;
    if args.replication {
        let info = info.context("this image is not a backup of a server (it has no coffer-backup.json)")?;
        // Refused (one line) unless every value is what a server writes: the SQL is meant to be
        // piped into a client.
        let sql =
            info.replication_statements()?.context("the backup recorded no binary log position (was log_bin on?)")?;
        print!("{sql}");
        return Ok(());
    }
    let slots: Vec<String> = header
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| format!("{i}: {}", coffer_crypto::slot::describe(s)))
        .collect();
    if args.json {
        let v = serde_json::json!({
            "image_id": coffer_crypto::hex(&header.image_id),
            "created": super::list::utc(header.created),
            "cipher": header.suite.name(),
            "compression": header.codec.name(),
            "key_slots": slots,
            "files": files,
            "bytes": bytes,
            "backup": info,
        });
        println!("{v}");
        return Ok(());
    }
    println!("image        {}  created {}", coffer_crypto::hex(&header.image_id), super::list::utc(header.created));
    println!("contents     {files} files, {}", super::human(bytes));
    println!("encryption   {}, compression {}", header.suite.name(), header.codec.name());
    for s in &slots {
        println!("key slot     {s}");
    }
    let Some(i) = info else {
        println!("backup       not a backup of a server (no coffer-backup.json)");
        return Ok(());
    };
    // The description comes from the image: control characters are shown escaped, never sent
    // to the terminal.
    let esc = |s: &str| super::list::escape(s.as_bytes());
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "unknown".into(), esc);
    println!("server       {}", opt(&i.server_version));
    println!("engine       {} {}", opt(&i.engine), opt(&i.engine_version));
    println!("taken        {} to {}", opt(&i.start_time), opt(&i.end_time));
    let lsn = |v: Option<u64>| v.map_or("unknown".into(), |n| n.to_string());
    println!("LSN          {} to {} (last {})", lsn(i.from_lsn), lsn(i.to_lsn), lsn(i.last_lsn));
    match &i.binlog {
        Some(b) => println!(
            "binlog       {}:{}{}",
            esc(&b.file),
            b.position,
            b.gtid.as_ref().map(|g| format!("  GTID {}", esc(g))).unwrap_or_default()
        ),
        None => println!("binlog       none recorded"),
    }
    if let Some(g) = &i.galera {
        println!("galera       {}", esc(g));
    }
    Ok(())
}

/// After a restore: `ENGINE --prepare` (with the user's `options`), then optionally
/// `--move-back` into a datadir.
pub fn prepare(
    dir: &Path,
    options: &[coffer_mysql::engine::PrepareOption],
    copy_back_to: Option<&Path>,
    force: bool,
    quiet: bool,
) -> Result<()> {
    let meta_path = dir.join(META_ENTRY);
    // Restored from the image: read at most what a writer may store (the file itself was
    // opened without following a symlink by the restorer, but its size is the image's word).
    let info: Option<BackupInfo> = std::fs::File::open(&meta_path).ok().and_then(|f| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(f, coffer_mysql::meta::MAX_DESCRIPTION as u64 + 1),
            &mut bytes,
        )
        .ok()?;
        (bytes.len() <= coffer_mysql::meta::MAX_DESCRIPTION).then(|| serde_json::from_slice(&bytes).ok())?
    });
    let engine = match info.as_ref().and_then(|i| i.engine.as_deref()) {
        Some("xtrabackup") => EngineKind::Xtrabackup,
        Some(_) => EngineKind::Mariabackup,
        None if dir.join("xtrabackup_checkpoints").exists() => EngineKind::Mariabackup,
        None => bail!("{} is not a backup of a server (no xtrabackup_checkpoints): nothing to prepare", dir.display()),
    };
    let show = |line: &str| {
        if !quiet {
            eprintln!("{}: {line}", engine.name());
        }
    };
    let started = std::time::Instant::now();
    coffer_mysql::engine::prepare(engine, dir, options, &show)
        .context("prepare failed; the restored files are left as they are")?;
    if !quiet {
        eprintln!(
            "coffer: prepared {} with {} in {:.1} s",
            dir.display(),
            engine.name(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(datadir) = copy_back_to {
        if std::fs::read_dir(datadir).is_ok_and(|mut d| d.next().is_some()) && !force {
            bail!("{} is not empty: refusing to copy back into it (use --force)", datadir.display());
        }
        coffer_mysql::engine::move_back(engine, dir, datadir, &show).context("copy-back failed")?;
        if !quiet {
            eprintln!("coffer: moved the prepared backup into {}", datadir.display());
        }
    }
    Ok(())
}
