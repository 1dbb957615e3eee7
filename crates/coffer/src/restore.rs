//! The restore and extract jobs: an image's entries recreated beneath a directory (safely:
//! nothing lands outside it), or one file to a writer; and the prepare step of a server backup.

use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::read::Counting;
use crate::text::human;
use crate::Env;
use coffer_format::{EntryKind, EntryMeta, IndexRecord};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer, JOURNAL, MARKER};
use coffer_image::journal::{self, Journal, JournalState, ResumePoint};
use coffer_image::{
    open_stream, read_stream, read_stream_from, ImageError, IndexedImage, ReadOptions, ReadSummary, RestoreVisitor,
    StreamVisitor, Visitor,
};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A restore of a whole image, as a user asks for it. The default restores durably (`sync`).
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// The image.
    pub image: Option<Location>,
    /// The directory to restore into (created if absent).
    pub to: PathBuf,
    /// The secrets that open the image.
    pub keys: KeySources,
    /// Owner of everything restored, `USER[:GROUP]` (default: the image's as root, else the
    /// user running the restore).
    pub owner: Option<String>,
    /// Keep set-uid and set-gid bits even when the owner applied is not the image's.
    pub keep_setuid: bool,
    /// Restore into a directory that is not empty, replacing what the image holds.
    pub force: bool,
    /// Flush everything to disk before reporting success.
    pub sync: bool,
    /// Write file data at most at this many bytes per second (each backup of a chain in turn).
    pub limit_rate: Option<u64>,
}

impl Default for RestoreSpec {
    fn default() -> Self {
        Self {
            image: None,
            to: PathBuf::new(),
            keys: KeySources::default(),
            owner: None,
            keep_setuid: false,
            force: false,
            sync: true,
            limit_rate: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// What was read of the image.
    pub read: ReadSummary,
    /// Files restored.
    pub files: u64,
    /// Where.
    pub to: PathBuf,
    /// Flushed to disk.
    pub synced: bool,
    /// How long it took.
    pub seconds: f64,
}

impl RestoreSummary {
    /// The line that says what the restore did.
    pub fn line(&self) -> String {
        format!(
            "restored {} entries ({} files, {}) into {}{}, {:.1} s, {}",
            self.read.entries,
            self.files,
            human(self.read.logical_bytes),
            self.to.display(),
            if self.synced { ", flushed to disk" } else { " (not flushed: --no-sync)" },
            self.seconds,
            crate::text::rate(self.read.logical_bytes, self.seconds)
        )
    }
}

impl RestoreSummary {
    /// What the restore did, as `restore --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "to": self.to,
            "entries": self.read.entries,
            "files": self.files,
            "logical_bytes": self.read.logical_bytes,
            "synced": self.synced,
            "seconds": self.seconds,
        })
    }
}

/// The owner a restore applies.
fn ownership(owner: Option<&str>) -> Result<Ownership> {
    match owner {
        Some(spec) => {
            let (u, g) =
                coffer_fs::owner::lookup_owner(spec).map_err(|e| Error::usage(format!("--owner {spec}: {e}")))?;
            Ok(Ownership::Fixed(u, g))
        }
        None if nix::unistd::geteuid().is_root() => Ok(Ownership::Preserve),
        None => Ok(Ownership::Current),
    }
}

/// Restores the image `spec.image` into `spec.to`.
pub fn restore(spec: &RestoreSpec, env: &Env) -> Result<RestoreSummary> {
    let image = spec.image.as_ref().ok_or_else(|| Error::usage("no image to restore"))?;
    let _lease = crate::repo::lease::for_reading(&[image], None, "restore", env)?;
    let keys = crate::keys::unlocks(&spec.keys, env)?;
    let needed = check_room(image, spec, &keys, env)?;
    let (input, len) = image.open_stream(env)?;
    restore_unlocked(input, len, spec, None, &keys, false, env).map_err(|mut e| {
        crate::read::name_packed_entries(&mut e, image, &keys, env);
        full_disk(e, spec, needed)
    })
}

/// `e` said as the disk filling where it is that: what the restore still had to write is what
/// it needs less what it left in the target (all of it its own, unless --force).
pub(crate) fn full_disk(e: Error, spec: &RestoreSpec, needed: Option<u64>) -> Error {
    if !crate::room::is_full(&e) {
        return e;
    }
    let left = needed.filter(|_| !spec.force).map(|n| n.saturating_sub(crate::room::used(&spec.to)));
    crate::room::explain(e, &spec.to, left)
}

/// Refuses a restore whose files do not fit where it writes them, before anything is written;
/// the bytes it needs, where the image's index says. Not with --force (nor over an interrupted
/// restore): what the target holds is freed as it is replaced, which free space cannot tell.
pub(crate) fn check_room(
    image: &Location,
    spec: &RestoreSpec,
    keys: &[coffer_crypto::Unlock],
    env: &Env,
) -> Result<Option<u64>> {
    // An image whose index cannot be read (cut short, damaged) is restored as far as it goes,
    // and the reader says what is wrong with it. A store that refuses (access denied, no such
    // object) refuses the restore's reads too: the job ends at this first one.
    let (needed, entries) = match crate::read::files_bytes(image, keys, env) {
        Ok(Some(found)) => found,
        Err(e) if crate::store::refused_for_good(&e) => return Err(e),
        Ok(None) | Err(_) => return Ok(None),
    };
    if spec.force || coffer_fs::restore::holds_marker(&spec.to) {
        return Ok(Some(needed));
    }
    let what = format!("the restore of {}", image.shown());
    // Its entries, and the marker.
    crate::room::check_entries(&spec.to, needed, entries + 1, &what)?;
    Ok(Some(needed))
}

/// A received restore keeps a journal in its target, so that an interrupted transfer can be
/// resumed (see `coffer_image::journal`).
#[derive(Debug)]
pub struct Journaling {
    /// What the target's journal held when the transfer began, if anything.
    pub state: Option<JournalState>,
    /// The sender asked to go on from there (`send --resume`).
    pub resume: bool,
    /// Data between checkpoints.
    pub every: u64,
}

/// What a target holds from an interrupted received restore: its journal, if the restore's
/// marker is there too (a complete restore removes both).
pub fn interrupted(target: &Path) -> Result<Option<JournalState>> {
    if !coffer_fs::restore::holds_marker(target) {
        return Ok(None);
    }
    Ok(journal::load(&target.join(JOURNAL))?)
}

/// How a restore begins: from the first entry or from a checkpoint.
enum Start {
    Fresh,
    From(ResumePoint),
}

/// Prepares the target of a journaled restore: resumed (the same image from its checkpoint, or
/// a new image on top of the files already there) or fresh.
fn journaled(
    j: &Journaling,
    image_id: &[u8; 16],
    target: &Path,
    mut opts: RestoreOptions,
    env: &Env,
) -> Result<(RestoreVisitor, Start)> {
    let path = target.join(JOURNAL);
    let Some(state) = j.state.as_ref().filter(|_| j.resume) else {
        if j.state.is_some() && !opts.force {
            crate::bail!(
                "{} holds an interrupted transfer: `coffer send --resume` continues it; --force replaces it",
                target.display()
            );
        }
        // An interrupted restore of this image whose journal never became durable, or was
        // already gone (a power cut before the first checkpoint or after the last): its marker
        // names the image, and all of it is restored again over what is there. Another
        // image's marker, or one naming none, is refused as a restore refuses it.
        let restorer = Restorer::create_for(target, opts, *image_id)
            .with_context(|| format!("cannot restore into {}", target.display()))?;
        if restorer.resumed() {
            env.report.say(&format!("{} holds no journal to resume from: restoring all of it again", target.display()));
        }
        let mut journal = Journal::create(&path)?;
        journal.begin_image(image_id)?;
        return Ok((RestoreVisitor::new(restorer).with_journal(journal, j.every), Start::Fresh));
    };
    // Our own interrupted restore: what it completed may be replaced, what it left half-done goes.
    opts.force = true;
    let mut restorer = Restorer::create_for(target, opts, *image_id)
        .with_context(|| format!("cannot restore into {}", target.display()))?;
    restorer.sweep_temporaries().with_context(|| format!("cannot clean up {}", target.display()))?;
    let mut journal = Journal::reopen(&path, state)?;
    for r in &state.earlier {
        restorer.adopt(&r.meta);
    }
    let same_image = state.image_id.as_ref() == Some(image_id);
    let start = match (&state.point, same_image) {
        (Some(point), true) => {
            for r in &point.records {
                restorer.adopt(&r.meta);
            }
            env.report.say(&format!(
                "resuming the restore into {} after {} entries ({} of files already there)",
                target.display(),
                point.at.entries,
                human(point.at.logical_bytes)
            ));
            Start::From(point.clone())
        }
        (point, same) => {
            // A new image of what the target lacks (a resumed directory transfer), or the same
            // image again from its start (nothing of it was durable).
            for r in point.iter().flat_map(|p| p.records.iter()) {
                restorer.adopt(&r.meta);
            }
            if !same {
                journal.begin_image(image_id)?;
            }
            Start::Fresh
        }
    };
    Ok((RestoreVisitor::new(restorer).with_journal(journal, j.every), start))
}

/// Restores the image read from `input` (a file, stdin, a network stream) as `spec` says
/// (`spec.image` is not used); with `journaling`, resumably.
pub fn restore_from<R: Read + Send>(
    input: R,
    len: Option<u64>,
    spec: &RestoreSpec,
    journaling: Option<&Journaling>,
    env: &Env,
) -> Result<RestoreSummary> {
    let keys = crate::keys::unlocks(&spec.keys, env)?;
    restore_unlocked(input, len, spec, journaling, &keys, false, env)
}

/// [`restore_from`] with the secrets unlocked; with `keep_marker`, the marker stays in the
/// target, naming the image, for the caller to remove once its own work on the tree is done
/// (a prepare: until then the same restore run again continues it).
pub(crate) fn restore_unlocked<R: Read + Send>(
    input: R,
    len: Option<u64>,
    spec: &RestoreSpec,
    journaling: Option<&Journaling>,
    keys: &[coffer_crypto::Unlock],
    keep_marker: bool,
    env: &Env,
) -> Result<RestoreSummary> {
    let ownership = ownership(spec.owner.as_deref())?;
    let progress = env.report.progress(len, "restore");
    let mut input = Counting { inner: input, progress: progress.clone() };
    // The key is checked before the target is touched.
    let image = open_stream(&mut input, keys)?;
    for w in image.warnings.iter().chain(&image.notes) {
        env.report.warn(w);
    }
    let to = &spec.to;
    let opts = RestoreOptions { force: spec.force, whole_tree: true, ownership, durable: spec.sync };
    let (mut visitor, start) = match journaling {
        Some(j) => journaled(j, &image.header.image_id, to, opts, env)?,
        None => {
            // The marker names the image: the same restore run again continues an interrupted
            // one; over another image's (or one that does not say), only --force goes.
            let id = image.header.image_id;
            let restorer = Restorer::create_for(to, opts, id).map_err(|e| match e {
                e @ coffer_fs::FsError::Interrupted { .. } => Error::from(e),
                e => Error::from(e).context(format!("cannot restore into {}", to.display())),
            })?;
            if restorer.resumed() {
                env.report.say(&format!(
                    "continuing the interrupted restore of image {} into {}",
                    coffer_crypto::hex(&id),
                    to.display()
                ));
            }
            (RestoreVisitor::new(restorer), Start::Fresh)
        }
    };
    visitor.restorer.set_keep_setuid(spec.keep_setuid);
    visitor.restorer.set_keep_marker(keep_marker);
    visitor.restorer.set_rate_limit(spec.limit_rate.map(|r| std::sync::Arc::new(coffer_fs::rate::RateLimit::new(r))));
    let swept = visitor.restorer.swept();
    if swept > 0 {
        env.report
            .warn(&format!("removed {swept} temporary file(s) that an interrupted restore left in {}", to.display()));
    }
    let started = Instant::now();
    let read_opts = ReadOptions { threads: env.threads, skip_data: false };
    let result = match start {
        Start::Fresh => read_stream(&mut input, &image, &mut visitor, read_opts),
        Start::From(point) => read_stream_from(&mut input, &image, point, &mut visitor, read_opts),
    };
    let read = match result {
        Ok(s) => s,
        Err(e) => {
            progress.finish();
            let stats = visitor.restorer.stats();
            let current = visitor.restorer.current_file();
            drop(visitor);
            let unfinished = current.map(|p| format!("; {} was not restored", p.display())).unwrap_or_default();
            return Err(Error::from(e).context(format!(
                "restore into {} is incomplete ({} files complete{unfinished}; {} marks the directory as incomplete)",
                to.display(),
                stats.files,
                MARKER
            )));
        }
    };
    if let Some(journal) = visitor.take_journal() {
        // Gone before the marker: a complete restore leaves neither.
        std::fs::remove_file(journal.path()).with_context(|| format!("cannot remove {}", journal.path().display()))?;
    }
    let stats =
        visitor.restorer.finish().with_context(|| format!("cannot complete the restore into {}", to.display()))?;
    progress.finish();
    Ok(RestoreSummary {
        read,
        files: stats.files,
        to: to.clone(),
        synced: spec.sync,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Does `path` select `entry` (the entry itself, or something under a selected directory)?
fn selects(path: &[u8], entry: &[u8]) -> bool {
    entry == path || (entry.starts_with(path) && entry.get(path.len()) == Some(&b'/'))
}

fn normalize(p: &str) -> Vec<u8> {
    let p = p.trim_start_matches("./").trim_end_matches('/');
    p.as_bytes().to_vec()
}

/// Passes on only the selected entries (streaming extract).
struct Filter<'a> {
    inner: &'a mut dyn Visitor,
    paths: &'a [Vec<u8>],
    found: Vec<bool>,
    on: bool,
}

impl Visitor for Filter<'_> {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        self.on = false;
        for (i, p) in self.paths.iter().enumerate() {
            if !meta.path.is_empty() && selects(p, &meta.path) {
                self.found[i] = true;
                self.on = true;
            }
        }
        if self.on {
            self.inner.entry(meta)?;
        }
        Ok(())
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        if self.on {
            self.inner.data(offset, data)?;
        }
        Ok(())
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        if self.on {
            self.inner.end_file(size)?;
        }
        Ok(())
    }
    // A file in parts (xbstream backups): the restorer keeps a part aside until the next one.
    fn pause_file(&mut self, end: u64) -> Result<(), ImageError> {
        if self.on {
            self.inner.pause_file(end)?;
        }
        Ok(())
    }
}

/// Presents a file entry under another name: a hard link whose target was not extracted gets
/// the target's contents (every part of it, for a file in parts).
struct Renamed<'a> {
    inner: &'a mut dyn Visitor,
    meta: EntryMeta,
}

impl Visitor for Renamed<'_> {
    fn entry(&mut self, part: &EntryMeta) -> Result<(), ImageError> {
        let size = if part.continues { part.size } else { self.meta.size };
        self.inner.entry(&EntryMeta { continues: part.continues, size, ..self.meta.clone() })
    }
    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        self.inner.data(offset, data)
    }
    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        self.inner.end_file(size)
    }
    fn pause_file(&mut self, end: u64) -> Result<(), ImageError> {
        self.inner.pause_file(end)
    }
}

/// An extract of some entries, as a user asks for it.
#[derive(Debug, Clone, Default)]
pub struct ExtractSpec {
    /// The image.
    pub image: Option<Location>,
    /// The entries: a path selects the entry and, for a directory, everything under it.
    pub paths: Vec<String>,
    /// The directory to extract into; `None`: the one file selected to standard output.
    pub to: Option<PathBuf>,
    /// The secrets that open the image.
    pub keys: KeySources,
    /// Owner of what is extracted (see [`RestoreSpec::owner`]).
    pub owner: Option<String>,
    /// Keep set-uid and set-gid bits even when the owner applied is not the image's.
    pub keep_setuid: bool,
    /// Replace files that exist.
    pub force: bool,
}

/// Extracts the entries `spec.paths` select from the image: through its index where it has
/// one (only those entries are read), else by reading it through.
pub fn extract(spec: &ExtractSpec, env: &Env) -> Result<()> {
    extract_selected(spec, env).map_err(|e| match &spec.to {
        Some(dir) => crate::room::explain(e, dir, None),
        None => e,
    })
}

fn extract_selected(spec: &ExtractSpec, env: &Env) -> Result<()> {
    let location = spec.image.as_ref().ok_or_else(|| Error::usage("no image to extract from"))?;
    let keys = crate::keys::unlocks(&spec.keys, env)?;
    let paths: Vec<Vec<u8>> = spec.paths.iter().map(|p| normalize(p)).collect();
    if paths.iter().any(|p| p.is_empty()) {
        return Err(Error::usage("an empty path selects nothing; use `coffer restore` for the whole image"));
    }
    let ownership = ownership(spec.owner.as_deref())?;
    let threads = env.threads;
    // The image is opened (and the key checked) before anything is created.
    let source = match location.open_indexed(&keys, env)? {
        Some(image) => {
            for w in image.image().warnings.iter().chain(&image.image().notes) {
                env.report.warn(w);
            }
            Source::Indexed(Box::new(image))
        }
        None => {
            let (mut input, _) = location.open_stream(env)?;
            let image = open_stream(&mut input, &keys)?;
            Source::Stream(input, Box::new(image))
        }
    };
    if let Source::Indexed(image) = &source {
        let (_, found) = select(image.records(), &paths);
        report_missing(&paths, &found)?;
    }

    let mut sink = match &spec.to {
        Some(dir) => {
            let opts = RestoreOptions { force: spec.force, whole_tree: false, ownership, durable: true };
            let mut restorer =
                Restorer::create(dir, opts).with_context(|| format!("cannot extract into {}", dir.display()))?;
            restorer.set_keep_setuid(spec.keep_setuid);
            Sink::Dir(Box::new(RestoreVisitor::new(restorer)))
        }
        None => {
            if paths.len() != 1 {
                return Err(Error::usage("--stdout takes exactly one file"));
            }
            let fd = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned().context("cannot use stdout")?;
            Sink::Stdout(StreamVisitor::new(BufWriter::with_capacity(1 << 20, std::fs::File::from(fd))))
        }
    };

    let found = match source {
        Source::Stream(mut input, image) => {
            let mut filter =
                Filter { inner: sink.visitor(), paths: &paths, found: vec![false; paths.len()], on: false };
            read_stream(&mut input, &image, &mut filter, ReadOptions { threads, skip_data: false })?;
            filter.found
        }
        Source::Indexed(image) => {
            let (chosen, found) = select(image.records(), &paths);
            extract_indexed(&image, &chosen, sink.visitor(), spec.to.is_none(), threads)?;
            found
        }
    };
    report_missing(&paths, &found)?;
    match sink {
        Sink::Dir(v) => {
            v.restorer.finish()?;
        }
        Sink::Stdout(v) => v.into_inner().flush().context("cannot write to stdout")?,
    }
    Ok(())
}

fn report_missing(paths: &[Vec<u8>], found: &[bool]) -> Result<()> {
    let missing: Vec<String> =
        paths.iter().zip(found).filter(|(_, f)| !**f).map(|(p, _)| String::from_utf8_lossy(p).into_owned()).collect();
    if !missing.is_empty() {
        crate::bail!("not in the image: {}", missing.join(", "));
    }
    Ok(())
}

/// Where extracted entries come from.
enum Source {
    Stream(Box<dyn Read + Send>, Box<coffer_image::OpenedImage>),
    Indexed(Box<IndexedImage>),
}

/// Which records the paths select, and which paths selected anything.
fn select(records: &[IndexRecord], paths: &[Vec<u8>]) -> (Vec<usize>, Vec<bool>) {
    let mut found = vec![false; paths.len()];
    let chosen = (0..records.len())
        .filter(|&i| {
            let path = &records[i].meta.path;
            let mut hit = false;
            for (j, p) in paths.iter().enumerate() {
                if !path.is_empty() && selects(p, path) {
                    found[j] = true;
                    hit = true;
                }
            }
            hit
        })
        .collect();
    (chosen, found)
}

/// Where extracted entries go.
enum Sink {
    Dir(Box<RestoreVisitor>),
    Stdout(StreamVisitor<BufWriter<std::fs::File>>),
}

impl Sink {
    fn visitor(&mut self) -> &mut dyn Visitor {
        match self {
            Sink::Dir(v) => v.as_mut(),
            Sink::Stdout(v) => v,
        }
    }
}

/// The records of the file the hard link `records[link]` names: its first part (the latest
/// before the link, else the first in the image) and the parts that continue it.
fn link_target_parts(records: &[IndexRecord], link: usize) -> Result<Vec<usize>> {
    let target = &records[link].meta.target;
    let is_start = |r: &IndexRecord| r.meta.path == *target && r.meta.kind == EntryKind::File && !r.meta.continues;
    let first = records[..link]
        .iter()
        .rposition(is_start)
        .or_else(|| records.iter().position(is_start))
        .context("hard link target missing from the index")?;
    let mut parts = vec![first];
    for (j, r) in records.iter().enumerate().skip(first + 1) {
        if r.meta.path == *target && r.meta.kind == EntryKind::File {
            if !r.meta.continues {
                break;
            }
            parts.push(j);
        }
    }
    Ok(parts)
}

fn extract_indexed(
    image: &IndexedImage,
    chosen: &[usize],
    sink: &mut dyn Visitor,
    to_stdout: bool,
    threads: usize,
) -> Result<()> {
    let records = image.records();
    // A file written in parts has one record per part; it is still one file.
    let files = chosen.iter().filter(|&&i| !records[i].meta.continues).count();
    if to_stdout && (files != 1 || records[chosen[0]].meta.kind == EntryKind::Dir) {
        return Err(Error::usage("--stdout takes exactly one file"));
    }
    let extracted: std::collections::HashSet<&[u8]> = chosen.iter().map(|&i| records[i].meta.path.as_slice()).collect();
    // Runs of entries read together: the entries of a pack come from one read of it.
    let mut run = Vec::new();
    for &i in chosen {
        let rec: &IndexRecord = &records[i];
        if rec.meta.kind == EntryKind::HardLink && !extracted.contains(rec.meta.target.as_slice()) {
            image.read_entries(&std::mem::take(&mut run), sink, threads)?;
            let parts = link_target_parts(records, i)?;
            let last = parts.last().map_or(0, |&j| records[j].size);
            let meta = EntryMeta { kind: EntryKind::File, size: last, target: vec![], ..rec.meta.clone() };
            let mut renamed = Renamed { inner: sink, meta };
            for j in parts {
                image.read_entry(j, &mut renamed, threads)?;
            }
        } else {
            run.push(i);
        }
    }
    image.read_entries(&run, sink, threads)?;
    Ok(())
}

/// Restores into `to` (a new directory) only the entries of `location` whose path `keep`
/// chooses, reading through the image's index only their frames. An image without an index
/// (a stream) is refused: choosing is what the index is for.
pub(crate) fn restore_chosen(
    location: &Location,
    unlocks: &[coffer_crypto::Unlock],
    to: &Path,
    owner: Option<&str>,
    keep: &dyn Fn(&[u8]) -> bool,
    env: &Env,
) -> Result<RestoreSummary> {
    let Some(image) = location.open_indexed(unlocks, env)? else {
        crate::bail!(
            "{}: restoring some tables reads an image through its index (a file or an object)",
            location.shown()
        );
    };
    for w in image.image().warnings.iter().chain(&image.image().notes) {
        env.report.warn(w);
    }
    let records = image.records();
    let chosen: Vec<usize> =
        (0..records.len()).filter(|&i| !records[i].meta.path.is_empty() && keep(&records[i].meta.path)).collect();
    let mut frames: Vec<(u64, u64)> =
        chosen.iter().map(|&i| (records[i].frame_offset, records[i].frames_len)).collect();
    frames.dedup();
    let files: Vec<&IndexRecord> =
        chosen.iter().map(|&i| &records[i]).filter(|r| r.meta.kind == EntryKind::File).collect();
    let read = ReadSummary {
        entries: chosen.iter().filter(|&&i| !records[i].meta.continues).count() as u64,
        files: files.iter().filter(|r| !r.meta.continues).count() as u64,
        logical_bytes: files.iter().filter(|r| !r.meta.continues).fold(0u64, |s, r| s.saturating_add(r.size)),
        data_bytes: files.iter().fold(0u64, |s, r| s.saturating_add(r.data_bytes)),
        image_bytes: frames.iter().fold(0u64, |s, f| s.saturating_add(f.1)),
        ..Default::default()
    };
    let started = Instant::now();
    let opts = RestoreOptions { force: false, whole_tree: false, ownership: ownership(owner)?, durable: false };
    let restorer = Restorer::create(to, opts).with_context(|| format!("cannot restore into {}", to.display()))?;
    let mut visitor = RestoreVisitor::new(restorer);
    extract_indexed(&image, &chosen, &mut visitor, false, env.threads)
        .with_context(|| format!("cannot restore from {}", location.shown()))?;
    let stats =
        visitor.restorer.finish().with_context(|| format!("cannot complete the restore into {}", to.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RestoreSummary { read, files: stats.files, to: to.to_owned(), synced: false, seconds })
}
