use super::{human, open_input, open_stream_input, rate, stdout_file, warn};
use crate::cli::{ExtractArgs, RestoreArgs};
use crate::exit::usage;
use crate::progress::{Bar, CountingReader};
use anyhow::{anyhow, bail, Context, Result};
use coffer_format::{EntryKind, EntryMeta, IndexRecord};
use coffer_fs::restore::{Ownership, RestoreOptions, Restorer, JOURNAL, MARKER};
use coffer_image::journal::{self, Journal, JournalState, ResumePoint};
use coffer_image::{
    open_stream, read_stream, read_stream_from, ImageError, IndexedImage, ReadOptions, RestoreVisitor, StreamVisitor,
    Visitor,
};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

fn ownership(owner: Option<&str>) -> Result<Ownership> {
    match owner {
        Some(spec) => {
            let (u, g) = coffer_fs::owner::lookup_owner(spec).map_err(|e| usage(format!("--owner {spec}: {e}")))?;
            Ok(Ownership::Fixed(u, g))
        }
        None if nix::unistd::geteuid().is_root() => Ok(Ownership::Preserve),
        None => Ok(Ownership::Current),
    }
}

pub fn restore(args: RestoreArgs, quiet: bool, threads: usize) -> Result<()> {
    let (input, len) = open_stream_input(&args.image)?;
    restore_from(input, len, &args, None, quiet, threads).map(|_| ())
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
    if !target.join(MARKER).exists() {
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
    quiet: bool,
) -> Result<(RestoreVisitor, Start)> {
    let path = target.join(JOURNAL);
    let Some(state) = j.state.as_ref().filter(|_| j.resume) else {
        if j.state.is_some() && !opts.force {
            bail!(
                "{} holds an interrupted transfer: `coffer send --resume` continues it; --force replaces it",
                target.display()
            );
        }
        let restorer =
            Restorer::create(target, opts).with_context(|| format!("cannot restore into {}", target.display()))?;
        let mut journal = Journal::create(&path)?;
        journal.begin_image(image_id)?;
        return Ok((RestoreVisitor::new(restorer).with_journal(journal, j.every), Start::Fresh));
    };
    // Our own interrupted restore: what it completed may be replaced, what it left half-done goes.
    opts.force = true;
    let mut restorer =
        Restorer::create(target, opts).with_context(|| format!("cannot restore into {}", target.display()))?;
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
            if !quiet {
                eprintln!(
                    "coffer: resuming the restore into {} after {} entries ({} of files already there)",
                    target.display(),
                    point.at.entries,
                    human(point.at.logical_bytes)
                );
            }
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

/// Restores the image read from `input` (a file, stdin, a network stream) as `args` say;
/// returns the bytes of files restored.
pub fn restore_from<R: std::io::Read + Send>(
    input: R,
    len: Option<u64>,
    args: &RestoreArgs,
    journaling: Option<&Journaling>,
    quiet: bool,
    threads: usize,
) -> Result<u64> {
    let keys = crate::keys::unlocks(&args.key, quiet)?;
    let ownership = ownership(args.owner.as_deref())?;
    let bar = Bar::new(quiet, len, "restore");
    let mut input = CountingReader { inner: input, bar: bar.clone() };
    // The key is checked before the target is touched.
    let image = open_stream(&mut input, &keys)?;
    for w in image.warnings.iter().chain(&image.notes) {
        warn(quiet, w);
    }
    let opts = RestoreOptions { force: args.force, whole_tree: true, ownership, durable: !args.no_sync };
    let (mut visitor, start) = match journaling {
        Some(j) => journaled(j, &image.header.image_id, &args.to, opts, quiet)?,
        None => {
            let restorer = Restorer::create(&args.to, opts)
                .with_context(|| format!("cannot restore into {}", args.to.display()))?;
            (RestoreVisitor::new(restorer), Start::Fresh)
        }
    };
    visitor.restorer.set_keep_setuid(args.keep_setuid);
    let swept = visitor.restorer.swept();
    if swept > 0 {
        let shown = args.to.display();
        warn(quiet, format!("removed {swept} temporary file(s) that an interrupted restore left in {shown}"));
    }
    let started = Instant::now();
    let read_opts = ReadOptions { threads, skip_data: false };
    let result = match start {
        Start::Fresh => read_stream(&mut input, &image, &mut visitor, read_opts),
        Start::From(point) => read_stream_from(&mut input, &image, point, &mut visitor, read_opts),
    };
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            bar.finish();
            let stats = visitor.restorer.stats();
            let current = visitor.restorer.current_file();
            drop(visitor);
            let unfinished = current.map(|p| format!("; {} was not restored", p.display())).unwrap_or_default();
            return Err(anyhow!(e).context(format!(
                "restore into {} is incomplete ({} files complete{unfinished}; {} marks the directory as incomplete)",
                args.to.display(),
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
        visitor.restorer.finish().with_context(|| format!("cannot complete the restore into {}", args.to.display()))?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "coffer: restored {} entries ({} files, {}) into {}{}, {:.1} s, {}",
            summary.entries,
            stats.files,
            human(summary.logical_bytes),
            args.to.display(),
            if args.no_sync { " (not flushed: --no-sync)" } else { ", flushed to disk" },
            secs,
            rate(summary.logical_bytes, secs)
        );
    }
    if args.prepare {
        let copy_back = if args.copy_back { args.datadir.as_deref() } else { None };
        super::server::prepare(&args.to, &args.prepare_options, copy_back, args.force, quiet)?;
    }
    Ok(summary.logical_bytes)
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

pub fn extract(args: ExtractArgs, quiet: bool, threads: usize) -> Result<()> {
    let keys = crate::keys::unlocks(&args.key, quiet)?;
    let paths: Vec<Vec<u8>> = args.paths.iter().map(|p| normalize(p)).collect();
    if paths.iter().any(|p| p.is_empty()) {
        return Err(usage("an empty path selects nothing; use `coffer restore` for the whole image"));
    }
    let ownership = ownership(args.owner.as_deref())?;
    // The image is opened (and the key checked) before anything is created.
    let source = if args.image == Path::new("-") {
        let (mut file, _) = open_input(&args.image)?;
        let image = open_stream(&mut file, &keys)?;
        Source::Stream(file, Box::new(image))
    } else {
        let image = crate::store::open_indexed(&args.image, &keys)?;
        for w in image.image().warnings.iter().chain(&image.image().notes) {
            warn(quiet, w);
        }
        Source::Indexed(Box::new(image))
    };
    if let Source::Indexed(image) = &source {
        let (_, found) = select(image.records(), &paths);
        report_missing(&paths, &found)?;
    }

    let mut sink = match &args.to {
        Some(dir) => {
            let opts = RestoreOptions { force: args.force, whole_tree: false, ownership, durable: true };
            let mut restorer =
                Restorer::create(dir, opts).with_context(|| format!("cannot extract into {}", dir.display()))?;
            restorer.set_keep_setuid(args.keep_setuid);
            Sink::Dir(Box::new(RestoreVisitor::new(restorer)))
        }
        None => {
            if paths.len() != 1 {
                return Err(usage("--stdout takes exactly one file"));
            }
            Sink::Stdout(StreamVisitor::new(BufWriter::with_capacity(1 << 20, stdout_file()?)))
        }
    };

    let found = match source {
        Source::Stream(mut input, image) => {
            let mut filter =
                Filter { inner: sink.visitor(), paths: &paths, found: vec![false; paths.len()], on: false };
            read_stream(&mut input, &image, &mut filter, ReadOptions { threads, skip_data: false })?;
            filter.found
        }
        Source::Indexed(image) => extract_indexed(&image, &paths, sink.visitor(), args.stdout, threads)?,
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
        bail!("not in the image: {}", missing.join(", "));
    }
    Ok(())
}

/// Where extracted entries come from.
enum Source {
    Stream(std::fs::File, Box<coffer_image::OpenedImage>),
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
    paths: &[Vec<u8>],
    sink: &mut dyn Visitor,
    to_stdout: bool,
    threads: usize,
) -> Result<Vec<bool>> {
    let records = image.records();
    let (chosen, found) = select(records, paths);
    // A file written in parts has one record per part; it is still one file.
    let files = chosen.iter().filter(|&&i| !records[i].meta.continues).count();
    if to_stdout && (files != 1 || records[chosen[0]].meta.kind == EntryKind::Dir) {
        return Err(usage("--stdout takes exactly one file"));
    }
    let extracted: std::collections::HashSet<&[u8]> = chosen.iter().map(|&i| records[i].meta.path.as_slice()).collect();
    for &i in &chosen {
        let rec: &IndexRecord = &records[i];
        if rec.meta.kind == EntryKind::HardLink && !extracted.contains(rec.meta.target.as_slice()) {
            let parts = link_target_parts(records, i)?;
            let last = parts.last().map_or(0, |&j| records[j].size);
            let meta = EntryMeta { kind: EntryKind::File, size: last, target: vec![], ..rec.meta.clone() };
            let mut renamed = Renamed { inner: sink, meta };
            for j in parts {
                image.read_entry(j, &mut renamed, threads)?;
            }
        } else {
            image.read_entry(i, sink, threads)?;
        }
    }
    Ok(found)
}
