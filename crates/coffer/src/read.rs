//! The jobs that read an image without restoring it: list its entries, verify every frame,
//! show what it holds.

use crate::error::Context;
use crate::error::{Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::text::{escape, human, utc};
use crate::Env;
use coffer_crypto::Unlock;
use coffer_format::{EntryKind, EntryMeta, Header, IndexRecord};
use coffer_image::{open_stream, read_stream, ImageError, NullVisitor, ReadOptions, ReadSummary};
use coffer_mysql::meta::{BackupInfo, META_ENTRY};
use serde_json::json;
use std::io::Read;

/// An image's entries, as `list` shows them.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The image's header.
    pub header: Header,
    /// One record per entry; a file written in parts has one record (see [`fold_parts`]).
    pub records: Vec<IndexRecord>,
    /// The image's size.
    pub image_bytes: u64,
}

/// Lists the entries of the image at `image`: through its index for a file or an object, by a
/// full read for a stream. The image's warnings and notes are reported.
pub fn list(image: &Location, keys: &KeySources, env: &Env) -> Result<Listing> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    let (header, records, image_bytes) = match image.open_indexed(&unlocks, env)? {
        Some(idx) => {
            for w in idx.image().warnings.iter().chain(&idx.image().notes) {
                env.report.warn(w);
            }
            (idx.image().header.clone(), idx.records().to_vec(), idx.len())
        }
        None => {
            let (mut input, _) = image.open_stream(env)?;
            let opened = open_stream(&mut input, &unlocks)?;
            let options = ReadOptions { threads: env.threads, skip_data: true };
            let summary = read_stream(&mut input, &opened, &mut NullVisitor, options)?;
            (opened.header, summary.records, summary.image_bytes)
        }
    };
    Ok(Listing { header, records: fold_parts(records)?, image_bytes })
}

impl Listing {
    /// The lines `list` prints: each entry's path, or with `long` its type and mode, owner,
    /// group, size, time and path (and a link's target), as `ls -l` shows them. Names come
    /// from the image: control characters are shown escaped.
    pub fn lines(&self, long: bool) -> impl Iterator<Item = String> + '_ {
        self.records.iter().filter(|r| !r.meta.path.is_empty()).map(move |r| {
            let m = &r.meta;
            let path = escape(&m.path);
            if !long {
                return path;
            }
            let link = match m.kind {
                EntryKind::Symlink => format!(" -> {}", escape(&m.target)),
                EntryKind::HardLink => format!(" link to {}", escape(&m.target)),
                _ => String::new(),
            };
            format!(
                "{} {:>8}/{:<8} {:>14} {} {path}{link}",
                mode_string(m.kind, m.mode),
                owner(&m.uname, m.uid),
                owner(&m.gname, m.gid),
                r.size,
                utc(m.mtime_sec)
            )
        })
    }

    /// The user tables of a server backup, from its entries: names, partitions, bytes.
    pub fn tables(&self) -> Vec<coffer_mysql::tables::HeldTable> {
        let files = self.records.iter().filter(|r| r.meta.kind == EntryKind::File);
        coffer_mysql::tables::held(files.map(|r| (r.meta.path.as_slice(), r.size)))
    }

    /// The lines `list --tables` prints: each table's bytes and name (names from the image,
    /// escaped), its partitions, and whether `restore --tables` takes it.
    pub fn table_lines(&self) -> Vec<String> {
        let tables = self.tables();
        let mut lines: Vec<String> = tables
            .iter()
            .map(|t| {
                let parts = match t.partitions.len() {
                    0 => String::new(),
                    n => format!(" ({n} partitions)"),
                };
                let note = if t.other_engine || !t.tablespace {
                    " (not InnoDB file-per-table: not restored alone)"
                } else {
                    ""
                };
                format!("{:>10}  {}{parts}{note}", human(t.bytes), escape(t.name.shown().as_bytes()))
            })
            .collect();
        let bytes = tables.iter().fold(0u64, |s, t| s.saturating_add(t.bytes));
        lines.push(format!("{} tables, {}", tables.len(), human(bytes)));
        lines
    }

    /// The listing as `list --json` prints it: the image's header, and every entry.
    pub fn to_json(&self) -> serde_json::Value {
        let header = &self.header;
        let entries: Vec<_> = self.records.iter().map(entry_json).collect();
        json!({
            "image": {
                "format_version": header.version,
                "image_id": coffer_crypto::hex(&header.image_id),
                "cipher": header.suite.name(),
                "compression": header.codec.name(),
                "level": header.level,
                "chunk_size": header.chunk_size,
                "created": header.created,
                "key_slots": header.slots.iter().filter(|s| !s.is_empty()).count(),
                "bytes": self.image_bytes,
            },
            "entries": entries,
        })
    }
}

fn entry_json(r: &IndexRecord) -> serde_json::Value {
    let m = &r.meta;
    let mut e = json!({
        "path": String::from_utf8_lossy(&m.path),
        "type": m.kind.name(),
        "size": r.size,
        "stored_data_bytes": r.data_bytes,
        "chunks": r.chunks,
        "frame_offset": r.frame_offset,
        "mode": format!("{:04o}", m.mode),
        "uid": m.uid,
        "gid": m.gid,
        "user": String::from_utf8_lossy(&m.uname),
        "group": String::from_utf8_lossy(&m.gname),
        "mtime": m.mtime_sec,
        "mtime_nsec": m.mtime_nsec,
    });
    if std::str::from_utf8(&m.path).is_err() {
        e["path_hex"] = json!(coffer_crypto::hex(&m.path));
    }
    if !m.target.is_empty() {
        e["target"] = json!(String::from_utf8_lossy(&m.target));
    }
    e
}

/// `drwxr-x---`: the type and mode bits as `ls` shows them.
fn mode_string(kind: EntryKind, mode: u32) -> String {
    let t = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::HardLink => 'h',
        EntryKind::File => '-',
    };
    let mut s: Vec<char> = std::iter::once(t)
        .chain("rwxrwxrwx".chars().enumerate().map(|(i, c)| if mode & (1 << (8 - i)) != 0 { c } else { '-' }))
        .collect();
    // Set-uid, set-gid and sticky show in the execute columns, as ls shows them.
    for (bit, col, on, off) in [(0o4000, 3, 's', 'S'), (0o2000, 6, 's', 'S'), (0o1000, 9, 't', 'T')] {
        if mode & bit != 0 {
            s[col] = if s[col] == 'x' { on } else { off };
        }
    }
    s.into_iter().collect()
}

/// An owner's name, or its id when the image recorded none.
fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape(name)
    }
}

/// One record per file: the parts of a file written in parts (xbstream backups) are folded into
/// its first record (size from the last part, chunks and data bytes summed). Sums that overflow
/// are the image's doing: it is refused as corrupt.
pub fn fold_parts(records: Vec<IndexRecord>) -> Result<Vec<IndexRecord>> {
    let mut out: Vec<IndexRecord> = Vec::with_capacity(records.len());
    let mut first: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for r in records {
        if r.meta.continues {
            if let Some(&i) = first.get(&r.meta.path) {
                let f = &mut out[i];
                let (Some(chunks), Some(data_bytes)) =
                    (f.chunks.checked_add(r.chunks), f.data_bytes.checked_add(r.data_bytes))
                else {
                    let detail = format!("the parts of {:?} add up to too much", String::from_utf8_lossy(&r.meta.path));
                    let at = coffer_image::Location { offset: r.frame_offset, ..Default::default() };
                    return Err(Error::from(ImageError::Corrupt { at, detail }));
                };
                (f.size, f.chunks, f.data_bytes) = (r.size, chunks, data_bytes);
                continue;
            }
        }
        if r.meta.kind == EntryKind::File {
            first.insert(r.meta.path.clone(), out.len());
        }
        out.push(r);
    }
    Ok(out)
}

/// Reads the whole image at `image`, authenticating every frame and decompressing every chunk,
/// and writes nothing. A damaged header copy fails it too (the data is readable, but damage is
/// damage).
pub fn verify(image: &Location, keys: &KeySources, env: &Env) -> Result<ReadSummary> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    verify_with(image, &unlocks, env)
}

/// An image verified: its summary and the seconds it took, as `verify` shows them.
#[derive(Debug, Clone)]
pub struct Verified {
    /// What was read.
    pub summary: ReadSummary,
    /// Seconds taken.
    pub seconds: f64,
}

impl Verified {
    /// `verify --json`'s document, for the image named `image`.
    pub fn to_json(&self, image: &std::path::Path) -> serde_json::Value {
        let s = &self.summary;
        json!({"ok": true, "image": image, "entries": s.entries, "files": s.files, "bytes": s.logical_bytes, "data_bytes": s.data_bytes, "image_bytes": s.image_bytes, "seconds": self.seconds})
    }

    /// `verify`'s line, for the image named `image`.
    pub fn line(&self, image: &std::path::Path) -> String {
        let s = &self.summary;
        format!(
            "{} is intact: {} entries, {} files, {} of data, every frame authenticated ({} image bytes) in {:.1} s, {}",
            image.display(),
            s.entries,
            s.files,
            human(s.logical_bytes),
            s.image_bytes,
            self.seconds,
            crate::text::rate(s.image_bytes, self.seconds)
        )
    }
}

impl Verified {
    /// Runs `verify`, timed.
    pub fn timed(verify: impl FnOnce() -> Result<ReadSummary>) -> Result<Verified> {
        let started = std::time::Instant::now();
        let summary = verify()?;
        Ok(Verified { summary, seconds: started.elapsed().as_secs_f64() })
    }
}

/// [`verify`], timed.
pub fn verify_timed(image: &Location, keys: &KeySources, env: &Env) -> Result<Verified> {
    Verified::timed(|| verify(image, keys, env))
}

/// One image of a chain, verified (`verify --chain`).
#[derive(Debug)]
pub struct ChainMember {
    /// The image, as messages show it.
    pub image: String,
    /// What it is in its chain (`full`, `incremental 1`...).
    pub kind: String,
    /// What verifying it found.
    pub result: Result<Verified>,
}

impl ChainMember {
    /// Its row of `verify --chain --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (image, kind) = (&self.image, &self.kind);
        match &self.result {
            Ok(Verified { summary: s, seconds }) => {
                json!({"ok": true, "image": image, "kind": kind, "entries": s.entries, "image_bytes": s.image_bytes, "seconds": seconds})
            }
            Err(e) => {
                json!({"ok": false, "image": image, "kind": kind, "error": e.one_line(), "exit_code": e.exit_code()})
            }
        }
    }

    /// Its line: that it is intact, or (`Err`) why it is not.
    pub fn line(&self) -> std::result::Result<String, String> {
        let (image, kind) = (&self.image, &self.kind);
        match &self.result {
            Ok(Verified { summary: s, seconds }) => Ok(format!(
                "{image} ({kind}) is intact: {} entries, {} image bytes, {seconds:.1} s",
                s.entries, s.image_bytes
            )),
            Err(e) => Err(format!("{image} ({kind}): {}", e.one_line())),
        }
    }
}

/// The images of a chain, each verified (`verify --chain`), full first.
#[derive(Debug, Default)]
pub struct ChainVerified {
    /// Each image, in the chain's order.
    pub members: Vec<ChainMember>,
}

impl ChainVerified {
    /// `verify --chain --json`: whether every image is intact, and each one's row.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self.members.iter().map(ChainMember::to_json).collect();
        json!({"ok": self.members.iter().all(|m| m.result.is_ok()), "chain": rows})
    }

    /// The first failure of an image, if one failed.
    pub fn outcome(self) -> Result<()> {
        self.members.into_iter().find_map(|m| m.result.err()).map_or(Ok(()), Err)
    }
}

/// [`verify`] with secrets already read (for many images: a chain).
pub fn verify_with(image: &Location, unlocks: &[Unlock], env: &Env) -> Result<ReadSummary> {
    let (file, len) = image.open_stream(env)?;
    let progress = env.report.progress(len, "verify");
    let mut input = Counting { inner: file, progress: progress.clone() };
    let opened = open_stream(&mut input, unlocks)?;
    let summary =
        read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads: env.threads, skip_data: false });
    progress.finish();
    let summary = summary.map_err(|e| {
        let mut e = Error::from(e);
        name_packed_entries(&mut e, image, unlocks, env);
        e
    })?;
    for note in &opened.notes {
        env.report.warn(note);
    }
    if let Some(w) = opened.warnings.first() {
        return Err(Error::from(ImageError::Corrupt { at: coffer_image::Location::default(), detail: w.clone() }));
    }
    Ok(summary)
}

/// A PACK frame that fails to open shows none of the names it holds: where the image has an
/// index (a file, an object) that still opens, the error names the entries of the damaged pack
/// (found by the offset, so even a pack whose frame header was damaged is named).
pub(crate) fn name_packed_entries(error: &mut Error, image: &Location, unlocks: &[Unlock], env: &Env) {
    let Some(ImageError::Corrupt { at, .. }) = error.image_error_mut() else { return };
    if matches!(image, Location::Stdio) || at.pack.as_ref().is_some_and(|p| !p.names.is_empty()) {
        return;
    }
    let Ok(Some(idx)) = image.open_indexed(unlocks, env) else { return };
    let within = |r: &IndexRecord| r.frame_offset <= at.offset && at.offset - r.frame_offset < r.frames_len;
    let Some(first) = idx.records().iter().position(within) else { return };
    let hit: Vec<&IndexRecord> = idx.records()[first..].iter().take_while(|r| within(r)).collect();
    let packed = hit.len() > 1 || hit.iter().any(|r| r.chunks == 0 && r.meta.kind == EntryKind::File);
    if at.pack.is_none() && !packed {
        return;
    }
    let names = hit.iter().map(|r| String::from_utf8_lossy(&r.meta.path).into_owned()).collect();
    at.pack = Some(coffer_image::PackPlace { first: first as u64, count: hit.len() as u64, names });
}

/// What `info` shows of an image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Its header.
    pub header: coffer_format::Header,
    /// The description of the server backup it holds (`coffer-backup.json`), if it is one.
    pub backup: Option<BackupInfo>,
    /// Files it holds.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl ImageInfo {
    /// The statements that make a server restored from it a replica of the source (`info
    /// --replication`). Refused, in one line, unless every value is what a server writes: the
    /// SQL is meant to be piped into a client.
    pub fn replication(&self) -> Result<String> {
        let not_server = || Error::msg("this image is not a backup of a server (it has no coffer-backup.json)");
        let no_position = || Error::msg("the backup recorded no binary log position (was log_bin on?)");
        self.backup.as_ref().ok_or_else(not_server)?.replication_statements()?.ok_or_else(no_position)
    }

    /// The image's key slots in use, described: `0: passphrase (argon2id ...)`.
    pub fn slots(&self) -> Vec<String> {
        let used = self.header.slots.iter().enumerate().filter(|(_, s)| !s.is_empty());
        used.map(|(i, s)| format!("{i}: {}", coffer_crypto::slot::describe(s))).collect()
    }

    /// What `info --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let header = &self.header;
        json!({
            "image_id": coffer_crypto::hex(&header.image_id),
            "created": utc(header.created),
            "cipher": header.suite.name(),
            "compression": header.codec.name(),
            "key_slots": self.slots(),
            "files": self.files,
            "bytes": self.bytes,
            "backup": self.backup,
        })
    }

    /// The lines `info` prints: the image, its contents, encryption and key slots, and the
    /// server backup it holds. The description comes from the image: control characters are
    /// shown escaped, never sent to a terminal.
    pub fn lines(&self) -> Vec<String> {
        let header = &self.header;
        let mut out = vec![
            format!("image        {}  created {}", coffer_crypto::hex(&header.image_id), utc(header.created)),
            format!("contents     {} files, {}", self.files, human(self.bytes)),
            format!("encryption   {}, compression {}", header.suite.name(), header.codec.name()),
        ];
        out.extend(self.slots().iter().map(|s| format!("key slot     {s}")));
        let Some(i) = &self.backup else {
            out.push("backup       not a backup of a server (no coffer-backup.json)".into());
            return out;
        };
        let esc = |s: &str| escape(s.as_bytes());
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "unknown".into(), esc);
        out.push(format!("server       {}", opt(&i.server_version)));
        out.push(format!("engine       {} {}", opt(&i.engine), opt(&i.engine_version)));
        out.push(format!("taken        {} to {}", opt(&i.start_time), opt(&i.end_time)));
        let lsn = |v: Option<u64>| v.map_or("unknown".into(), |n| n.to_string());
        out.push(format!("LSN          {} to {} (last {})", lsn(i.from_lsn), lsn(i.to_lsn), lsn(i.last_lsn)));
        out.push(match &i.binlog {
            Some(b) => format!(
                "binlog       {}:{}{}",
                esc(&b.file),
                b.position,
                b.gtid.as_ref().map(|g| format!("  GTID {}", esc(g))).unwrap_or_default()
            ),
            None => "binlog       none recorded".into(),
        });
        if let Some(g) = &i.galera {
            out.push(format!("galera       {}", esc(g)));
        }
        out
    }
}

/// Reads what `info` shows of the image at `image`: through its index (a few small reads)
/// where it has one, else by reading it through.
pub fn info(image: &Location, keys: &KeySources, env: &Env) -> Result<ImageInfo> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    info_with(image, &unlocks, env)
}

/// What a restore of an image writes, where its index says (a few small reads): its files'
/// data (holes left out), and its entries; `None` for an image without an index, which would be
/// read through.
pub fn files_bytes(image: &Location, unlocks: &[Unlock], env: &Env) -> Result<Option<(u64, u64)>> {
    let Some(idx) = image.open_indexed(unlocks, env)? else { return Ok(None) };
    let files = idx.records().iter().filter(|r| r.meta.kind == EntryKind::File);
    let bytes = files.fold(0u64, |sum, r| sum.saturating_add(r.data_bytes));
    // A file in parts is one file; a hard link takes no inode of its own.
    let entries = idx.records().iter().filter(|r| !r.meta.continues && r.meta.kind != EntryKind::HardLink).count();
    Ok(Some((bytes, entries as u64)))
}

/// [`info`] with secrets already read (for many images: `catalog`).
pub fn info_with(image: &Location, unlocks: &[Unlock], env: &Env) -> Result<ImageInfo> {
    let mut out = coffer_image::StreamVisitor::new(Vec::new());
    if let Some(idx) = image.open_indexed(unlocks, env)? {
        let records = fold_parts(idx.records().to_vec())?;
        let files = records.iter().filter(|r| r.meta.kind == EntryKind::File).count() as u64;
        // The index was checked: its files' sizes add up to END's total, which fits.
        let bytes = records.iter().fold(0u64, |sum, r| sum.saturating_add(r.size));
        let found = idx.records().iter().position(|r| r.meta.path == META_ENTRY.as_bytes());
        let backup = match found {
            Some(i) if idx.records()[i].size > MAX_DESCRIPTION => return Err(too_large().into()),
            Some(i) => {
                idx.read_entry(i, &mut out, 1)?;
                Some(serde_json::from_slice(&out.into_inner()).context("the image's backup description is malformed")?)
            }
            None => None,
        };
        return Ok(ImageInfo { header: idx.image().header.clone(), backup, files, bytes });
    }
    let (mut input, _) = image.open_stream(env)?;
    let opened = coffer_image::open_stream(&mut input, unlocks)?;
    let mut v = MetaGrabber { out: &mut out, on: false, files: 0, bytes: 0 };
    coffer_image::read_stream(&mut input, &opened, &mut v, coffer_image::ReadOptions { threads: 2, skip_data: false })?;
    let (files, bytes) = (v.files, v.bytes);
    let bytes_out = out.into_inner();
    let backup =
        if bytes_out.is_empty() { None } else { Some(serde_json::from_slice(&bytes_out).context("malformed")?) };
    Ok(ImageInfo { header: opened.header, backup, files, bytes })
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

/// A reader that counts the bytes read as progress.
pub(crate) struct Counting<R> {
    pub inner: R,
    pub progress: std::sync::Arc<dyn crate::Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string(EntryKind::Dir, 0o750), "drwxr-x---");
        assert_eq!(mode_string(EntryKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::File, 0o2640), "-rw-r-S---");
    }

    #[test]
    fn a_chain_is_intact_only_if_every_image_is_and_fails_with_the_first_failure() {
        let member = |image: &str, result: Result<Verified>| ChainMember {
            image: image.into(),
            kind: "incremental 1".into(),
            result,
        };
        let intact = || Ok(Verified { summary: ReadSummary { entries: 3, ..Default::default() }, seconds: 0.5 });
        let good = ChainVerified { members: vec![member("full.coffer", intact()), member("inc1.coffer", intact())] };
        assert_eq!(good.to_json()["ok"], true);
        assert_eq!(good.to_json()["chain"][1]["entries"], 3);
        assert!(good.outcome().is_ok());
        let bad = ChainVerified {
            members: vec![
                member("full.coffer", intact()),
                member("inc1.coffer", Err(Error::from(ImageError::WrongKey))),
                member("inc2.coffer", Err(Error::msg("second"))),
            ],
        };
        assert_eq!(bad.to_json()["ok"], false);
        assert_eq!(bad.to_json()["chain"][1]["exit_code"], 3);
        assert_eq!(bad.outcome().unwrap_err().exit_code(), crate::error::exit::WRONG_KEY);
    }
}
