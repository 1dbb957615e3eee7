//! The validate job: the InnoDB pages of an image (streamed, every frame authenticated, nothing
//! written), of a directory, or of tablespace files.
//!
//! The `.delta` files of incremental backups (mariabackup, xtrabackup) are checked page by page
//! like tablespaces. Their page size is in the `.meta` beside them, which an image may hold
//! before the delta (an engine's xbstream writes it first) or after it (a directory walk meets
//! `t.ibd.delta` before `t.ibd.meta`): in that case the page size is taken from the delta itself
//! (`coffer_innodb::delta::infer`), and the `.meta`, when it comes, is checked against it.

use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::read::Counting;
use crate::Env;
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::walk::Walker;
use coffer_image::{open_stream, read_stream, ImageError, ReadOptions, Visitor};
use coffer_innodb::delta::{
    cross_check, delta_of, meta_of, read_meta_beside, DeltaMeta, DeltaStream, MetaSource, META_MAX,
};
use coffer_innodb::{classify, validate_files, FileReport, Kind, Options, PageStream, Policy, Space, Status, Target};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A validation, as a user asks for it.
#[derive(Debug, Clone, Default)]
pub struct ValidateSpec {
    /// Images (files, objects, `-`), directories, or tablespace files.
    pub paths: Vec<PathBuf>,
    /// Read every path (`-`: standard input) as one tablespace, whatever its name.
    pub innodb: bool,
    /// The checksum algorithms accepted.
    pub policy: Policy,
    /// The secrets that open images.
    pub keys: KeySources,
}

/// The checksums accepted under `--checksum-algorithm NAME` (none given: [`Policy::Auto`]).
pub fn policy(name: Option<&str>) -> Result<Policy> {
    let Some(name) = name else { return Ok(Policy::Auto) };
    Policy::parse(name).ok_or_else(|| Error::usage(format!("unknown checksum algorithm {name}")))
}

/// What a validation found.
#[derive(Debug)]
pub struct Validation {
    /// One report per file, in the order read.
    pub reports: Vec<FileReport>,
    /// An image that failed (damaged, truncated): the reports before it are kept, and no path
    /// after it is read.
    pub image_error: Option<Error>,
    /// How long it took.
    pub seconds: f64,
}

/// Validates every path of `spec`: images streamed, directories walked, other files read as
/// tablespaces.
pub fn validate(spec: &ValidateSpec, env: &Env) -> Result<Validation> {
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut image_error = None;
    let mut disk_targets = Vec::new();
    for path in &spec.paths {
        let is_stdin = path == Path::new("-");
        let named =
            || Target { path: path.clone(), display: path.display().to_string(), force_innodb: true, walked: None };
        if spec.innodb && is_stdin {
            reports.push(validate_stdin_tablespace(spec.policy, env)?);
        } else if spec.innodb {
            disk_targets.push(named());
        } else if !is_stdin && path.is_dir() {
            disk_targets.extend(walk_targets(path)?);
        } else if is_stdin || is_image(path, env)? {
            let (reps, err) = validate_image(path, spec, env)?;
            reports.extend(reps);
            if err.is_some() {
                image_error = err;
                break;
            }
        } else {
            disk_targets.push(named());
        }
    }
    if !disk_targets.is_empty() {
        let total: u64 = disk_targets.iter().filter_map(|t| std::fs::metadata(&t.path).ok()).map(|m| m.len()).sum();
        let progress = env.report.progress(Some(total), "validate");
        let opts = Options { policy: spec.policy, threads: env.threads };
        reports.extend(validate_disk(&disk_targets, opts, spec.innodb, &|n| progress.advance(n)));
        progress.finish();
    }
    Ok(Validation { reports, image_error, seconds: started.elapsed().as_secs_f64() })
}

fn is_image(path: &Path, env: &Env) -> Result<bool> {
    if let Location::Object(url) = Location::from_path(path) {
        let object = coffer_store::Object::open(&url, &env.store)?;
        // Objects are images (validate does not read loose tablespaces from a store).
        let mut head = [0u8; 8];
        object.read_exact_at(&mut head, 0).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(coffer_format::Header::has_magic(&head));
    }
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut head).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(n == 8 && coffer_format::Header::has_magic(&head))
}

/// Validates files from disk: tablespaces in parallel (`validate_files`), incremental deltas
/// with the `.meta` beside them; reports in the order of `targets`. `innodb`: every file is a
/// tablespace, whatever its name.
fn validate_disk(targets: &[Target], opts: Options, innodb: bool, progress: &(dyn Fn(u64) + Sync)) -> Vec<FileReport> {
    enum Slot {
        Tablespace,
        Delta,
        Meta,
    }
    let slot = |t: &Target| match (innodb, delta_of(&t.display), meta_of(&t.display)) {
        (true, ..) => Slot::Tablespace,
        (false, Some(_), _) => Slot::Delta,
        (false, None, Some(_)) => Slot::Meta,
        (false, None, None) => Slot::Tablespace,
    };
    let slots: Vec<Slot> = targets.iter().map(slot).collect();
    let tablespaces: Vec<Target> =
        targets.iter().zip(&slots).filter(|(_, s)| matches!(s, Slot::Tablespace)).map(|(t, _)| t.clone()).collect();
    let deltas: Vec<&Target> =
        targets.iter().zip(&slots).filter(|(_, s)| matches!(s, Slot::Delta)).map(|(t, _)| t).collect();
    let mut tablespaces = validate_files(&tablespaces, opts, progress).into_iter();
    let mut deltas = validate_delta_files(&deltas, opts, progress).into_iter();
    targets
        .iter()
        .zip(slots)
        .filter_map(|(t, s)| match s {
            Slot::Tablespace => tablespaces.next(),
            Slot::Delta => deltas.next(),
            Slot::Meta => {
                let bytes = std::fs::symlink_metadata(&t.path).map(|m| m.len()).unwrap_or(0);
                Some(FileReport::not_checked(t.display.clone(), bytes, META_NOTE))
            }
        })
        .collect()
}

/// What `validate` says of a delta's `.meta`.
const META_NOTE: &str = "incremental delta metadata (read with its .delta)";

/// Why the delta of a later part of the system tablespace is not checked.
const CONTINUATION_NOTE: &str =
    "delta of a later part of the system tablespace: it numbers pages from the start of its file, not of the space";

/// Validates delta files from disk, several at once.
fn validate_delta_files(targets: &[&Target], opts: Options, progress: &(dyn Fn(u64) + Sync)) -> Vec<FileReport> {
    if targets.is_empty() {
        return Vec::new();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<FileReport>>> = std::sync::Mutex::new(vec![None; targets.len()]);
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, targets.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = targets.get(i) else { break };
                let report = validate_delta_file(t, opts.policy, progress);
                done.lock().expect("lock")[i] = Some(report);
            });
        }
    });
    done.into_inner().expect("lock").into_iter().flatten().collect()
}

/// Validates one delta file, with the `.meta` beside it (else its page size is inferred).
fn validate_delta_file(t: &Target, policy: Policy, progress: &(dyn Fn(u64) + Sync)) -> FileReport {
    let size = std::fs::symlink_metadata(&t.path).map(|m| m.len()).unwrap_or(0);
    if delta_of(&t.display).is_some_and(|stem| matches!(classify(stem), Kind::System(n) if n > 1)) {
        return FileReport::not_checked(t.display.clone(), size, CONTINUATION_NOTE);
    }
    let (meta, meta_problem) = match read_meta_beside(&t.path) {
        Ok(meta) => (meta, None),
        Err(why) => (None, Some(why)),
    };
    let mut stream = DeltaStream::new(t.display.clone(), policy, meta.as_ref());
    if let Some(why) = &meta_problem {
        stream.add_problem(why.clone());
    }
    let mut pos = 0u64;
    let read = open_walked(t).and_then(|mut file| {
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            stream.write_at(pos, &buf[..n]);
            pos += n as u64;
            progress(n as u64);
        }
    });
    if let Err(e) = read {
        stream.add_problem(format!("cannot read: {e}"));
    }
    let (mut report, source) = stream.finish(pos);
    if let (MetaSource::Inferred(_), None, None) = (source, meta_problem, &report.note) {
        report.note = Some("no .meta beside it: its page size was taken from the delta itself".into());
    }
    report
}

/// Opens a target: a walked file without following a final symlink (nor blocking on a FIFO),
/// and only if it is still the file the walk found.
fn open_walked(t: &Target) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(id) = t.walked else { return std::fs::File::open(&t.path) };
    let flags = nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits();
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(&t.path)?;
    let md = file.metadata()?;
    if (md.dev(), md.ino()) != id {
        return Err(std::io::Error::other("replaced while it was validated"));
    }
    Ok(file)
}

/// Every regular file under `root`, with paths relative to it.
fn walk_targets(root: &Path) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for item in Walker::new(root) {
        let item = item.with_context(|| format!("cannot read {}", root.display()))?;
        if let (EntryKind::File, Some(source), Some(file)) = (item.meta.kind, item.source, item.file) {
            // The walk's handle is closed here (a datadir has more files than descriptors); the
            // validation reopens the path and checks it is still this file.
            let md = file.metadata().with_context(|| format!("cannot stat {}", source.display()))?;
            out.push(Target {
                path: source,
                display: String::from_utf8_lossy(&item.meta.path).into_owned(),
                force_innodb: false,
                walked: Some((md.dev(), md.ino())),
            });
        }
    }
    Ok(out)
}

fn validate_stdin_tablespace(policy: Policy, env: &Env) -> Result<FileReport> {
    let (mut input, _) = Location::Stdio.open_stream(env)?;
    let mut stream = PageStream::new("-".into(), policy, None);
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    loop {
        let n = input.read(&mut buf).context("cannot read stdin")?;
        if n == 0 {
            break;
        }
        stream.write_at(pos, &buf[..n]);
        pos += n as u64;
    }
    Ok(stream.finish(pos))
}

/// Streams an image: every frame is authenticated (as `verify` does) and every page of every
/// InnoDB file checked, with nothing written. An integrity failure of the image itself is
/// returned beside the reports of the files read before it.
fn validate_image(path: &Path, spec: &ValidateSpec, env: &Env) -> Result<(Vec<FileReport>, Option<Error>)> {
    let keys = crate::keys::unlocks(&spec.keys, env)?;
    let (file, len) = Location::from_path(path).open_stream(env)?;
    let progress = env.report.progress(len, "validate");
    let mut input = Counting { inner: file, progress: progress.clone() };
    let image = open_stream(&mut input, &keys)?;
    let mut visitor = ImageValidator {
        policy: spec.policy,
        current: None,
        current_path: Vec::new(),
        reports: Vec::new(),
        system: BTreeMap::new(),
        paused: Default::default(),
        metas: HashMap::new(),
        awaiting_meta: HashMap::new(),
    };
    let result = read_stream(&mut input, &image, &mut visitor, ReadOptions { threads: env.threads, skip_data: false });
    progress.finish();
    visitor.deltas_without_meta();
    let mut reports = visitor.reports;
    for note in &image.notes {
        env.report.warn(note);
    }
    if let Some(w) = image.warnings.first() {
        let e = ImageError::Corrupt { at: coffer_image::Location::default(), detail: w.clone() };
        return Ok((reports, Some(Error::from(e))));
    }
    match result {
        Ok(_) => Ok((reports, None)),
        Err(e) => {
            if let Some(current) = visitor.current.take() {
                reports.push(current.cut_short());
            }
            Ok((reports, Some(Error::from(e).context(format!("image {} failed validation", path.display())))))
        }
    }
}

enum Current {
    Pages {
        stream: Box<PageStream>,
        system: Option<u32>,
    },
    /// An incremental delta.
    Delta(Box<DeltaStream>),
    /// A delta's `.meta` (the path of its delta, and its text so far, at most `META_MAX + 1`
    /// bytes).
    Meta {
        delta: Vec<u8>,
        text: Vec<u8>,
        report: Box<FileReport>,
    },
    Skip(Box<FileReport>),
}

impl Current {
    /// The image broke off inside this file.
    fn cut_short(self) -> FileReport {
        match self {
            Current::Pages { stream, .. } => {
                let pages = stream.pages();
                let mut r = stream.finish(0);
                r.note = Some(format!("the image is damaged inside this file; {pages} pages were checked before it"));
                r
            }
            Current::Delta(stream) => {
                let pages = stream.pages();
                let (mut r, _) = stream.finish(0);
                r.note = Some(format!("the image is damaged inside this file; {pages} pages were checked before it"));
                r
            }
            Current::Meta { report, .. } | Current::Skip(report) => *report,
        }
    }
}

/// Checks the pages of InnoDB files as an image's data arrives.
struct ImageValidator {
    policy: Policy,
    current: Option<Current>,
    current_path: Vec<u8>,
    reports: Vec<FileReport>,
    /// ibdata files seen: number → (pages, space of ibdata1).
    system: BTreeMap<u32, (u64, Option<Space>)>,
    /// Files written in parts (xbstream backups), between two parts.
    paused: std::collections::HashMap<Vec<u8>, Current>,
    /// The `.meta` files read so far, by the path of their delta.
    metas: HashMap<Vec<u8>, Result<DeltaMeta, String>>,
    /// Deltas read before their `.meta`: their report, and the page size they showed.
    awaiting_meta: HashMap<Vec<u8>, (usize, DeltaMeta)>,
}

impl ImageValidator {
    /// A delta entry: checked with its `.meta` if that came first, else with the page size it
    /// shows itself.
    fn delta(&self, display: String, stem: &str, path: &[u8], size: u64) -> Current {
        if matches!(classify(stem), Kind::System(n) if n > 1) {
            return Current::Skip(Box::new(FileReport::not_checked(display, size, CONTINUATION_NOTE)));
        }
        let (meta, problem) = match self.metas.get(path) {
            Some(Ok(m)) => (Some(*m), None),
            Some(Err(why)) => (None, Some(why.clone())),
            None => (None, None),
        };
        let mut stream = DeltaStream::new(display, self.policy, meta.as_ref());
        if let Some(why) = problem {
            stream.add_problem(why);
        }
        Current::Delta(Box::new(stream))
    }

    /// A `.meta` has been read whole: kept for its delta, or checked against the delta read
    /// before it.
    fn meta_read(&mut self, delta: Vec<u8>, text: &[u8]) {
        let meta = DeltaMeta::parse(text).map_err(|e| format!("its .meta is unusable: {e}"));
        if let Some((at, inferred)) = self.awaiting_meta.remove(&delta) {
            let report = &mut self.reports[at];
            match &meta {
                Ok(m) => cross_check(report, &inferred, m),
                Err(why) => {
                    let mut r = report.clone();
                    r.tally.add_corrupt(0, 0, why.clone());
                    *report = r.conclude();
                }
            }
        }
        self.metas.insert(delta, meta);
    }

    /// At the end of the image: the deltas whose `.meta` never came say so.
    fn deltas_without_meta(&mut self) {
        for (_, (at, _)) in self.awaiting_meta.drain() {
            let r = &mut self.reports[at];
            if r.note.is_none() {
                r.note = Some("no .meta in the image: its page size was taken from the delta itself".into());
            }
        }
    }

    /// ibdata1's space, renumbered to continue after ibdata1..ibdata{n-1}, if all were seen.
    fn continuation(&self, n: u32) -> Option<Space> {
        let mut space = self.system.get(&1)?.1.clone()?;
        space.first_page = (1..n).map(|k| self.system.get(&k).map(|(p, _)| *p)).sum::<Option<u64>>()?;
        Some(space)
    }
}

impl Visitor for ImageValidator {
    fn entry(&mut self, meta: &EntryMeta) -> Result<(), ImageError> {
        if meta.kind != EntryKind::File {
            return Ok(());
        }
        self.current_path = meta.path.clone();
        if meta.continues {
            // The reader has checked that this carries on a paused file.
            self.current = self.paused.remove(&meta.path);
            return Ok(());
        }
        let display = String::from_utf8_lossy(&meta.path).into_owned();
        let name = std::ffi::OsStr::from_bytes(&meta.path).to_string_lossy().into_owned();
        if let Some(stem) = delta_of(&name) {
            self.current = Some(self.delta(display, stem, &meta.path, meta.size));
            return Ok(());
        }
        if let Some(stem) = meta_of(&name) {
            let mut delta = stem.as_bytes().to_vec();
            delta.extend_from_slice(b".delta");
            let report = Box::new(FileReport::not_checked(display, meta.size, META_NOTE));
            self.current = Some(Current::Meta { delta, text: Vec::new(), report });
            return Ok(());
        }
        self.current = Some(match classify(&name) {
            Kind::Other(why) => Current::Skip(Box::new(FileReport::not_checked(display, meta.size, why))),
            Kind::Tablespace => {
                Current::Pages { stream: Box::new(PageStream::new(display, self.policy, None)), system: None }
            }
            Kind::System(1) => {
                Current::Pages { stream: Box::new(PageStream::new(display, self.policy, None)), system: Some(1) }
            }
            Kind::System(n) => match self.continuation(n) {
                Some(space) => Current::Pages {
                    stream: Box::new(PageStream::new(display, self.policy, Some(space))),
                    system: Some(n),
                },
                None => Current::Skip(Box::new(FileReport::not_checked(
                    display,
                    meta.size,
                    "system tablespace part whose earlier parts are not in the image",
                ))),
            },
        });
        Ok(())
    }

    fn data(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        match &mut self.current {
            Some(Current::Pages { stream, .. }) => stream.write_at(offset, data),
            Some(Current::Delta(stream)) => stream.write_at(offset, data),
            Some(Current::Meta { text, .. }) => {
                // Kept up to one byte more than a .meta may have, so a longer one is refused.
                let cap = (META_MAX + 1) as u64;
                let end = offset.saturating_add(data.len() as u64).min(cap);
                if end > text.len() as u64 {
                    text.resize(end as usize, 0);
                }
                if offset < end {
                    text[offset as usize..end as usize].copy_from_slice(&data[..(end - offset) as usize]);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end_file(&mut self, size: u64) -> Result<(), ImageError> {
        match self.current.take() {
            Some(Current::Pages { stream, system }) => {
                let space = stream.space().cloned();
                let pages = stream.pages();
                let report = stream.finish(size);
                if let Some(n) = system {
                    let pages = space.as_ref().map_or(pages, |s| size / u64::from(s.physical_size));
                    self.system.insert(n, (pages, space));
                }
                self.reports.push(report);
            }
            Some(Current::Delta(stream)) => {
                let (report, source) = stream.finish(size);
                if let MetaSource::Inferred(inferred) = source {
                    if !self.metas.contains_key(&self.current_path) {
                        self.awaiting_meta.insert(self.current_path.clone(), (self.reports.len(), inferred));
                    }
                }
                self.reports.push(report);
            }
            Some(Current::Meta { delta, mut text, mut report }) => {
                // A hole at the end reads as zeros, like any file's.
                if size > text.len() as u64 {
                    text.resize(size.min((META_MAX + 1) as u64) as usize, 0);
                }
                self.meta_read(delta, &text);
                report.bytes = size;
                self.reports.push(*report);
            }
            Some(Current::Skip(mut r)) => {
                r.bytes = size;
                self.reports.push(*r);
            }
            None => {}
        }
        Ok(())
    }

    fn pause_file(&mut self, _end: u64) -> Result<(), ImageError> {
        if let Some(current) = self.current.take() {
            self.paused.insert(self.current_path.clone(), current);
        }
        Ok(())
    }
}

/// A validation's totals, over all its files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Files read.
    pub files: u64,
    /// Of them, the InnoDB files checked.
    pub innodb_files: u64,
    /// Of them, the files not checked.
    pub not_checked: u64,
    /// Pages read.
    pub pages: u64,
    /// Bytes of the files checked.
    pub bytes: u64,
    /// Corrupt pages.
    pub corrupt_pages: u64,
    /// Files with a corrupt page.
    pub corrupt_files: u64,
    /// Pages that could not be verified.
    pub unverifiable_pages: u64,
    /// How long it took.
    pub seconds: f64,
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl Totals {
    /// The error a validation that found corrupt pages ends with, if it found any.
    pub fn corrupt_error(&self) -> Option<Error> {
        (self.corrupt_pages > 0).then(|| {
            Error::CorruptPages(format!(
                "{} corrupt InnoDB page{} in {} file{}",
                self.corrupt_pages,
                plural(self.corrupt_pages),
                self.corrupt_files,
                plural(self.corrupt_files)
            ))
        })
    }

    /// The closing line: `coffer: validated ...`.
    pub fn line(&self) -> String {
        format!(
            "coffer: validated {} files ({} InnoDB, {} not checked): {} pages, {}; {} corrupt page{} in {} file{}{}; {:.1} s, {}",
            self.files,
            self.innodb_files,
            self.not_checked,
            self.pages,
            crate::text::human(self.bytes),
            self.corrupt_pages,
            plural(self.corrupt_pages),
            self.corrupt_files,
            plural(self.corrupt_files),
            if self.unverifiable_pages > 0 {
                format!("; {} pages not verifiable", self.unverifiable_pages)
            } else {
                String::new()
            },
            self.seconds,
            crate::text::rate(self.bytes, self.seconds)
        )
    }
}

impl Validation {
    /// The totals over all files.
    pub fn totals(&self) -> Totals {
        let reports = &self.reports;
        let checked = |r: &&FileReport| r.status != Status::NotChecked;
        Totals {
            files: reports.len() as u64,
            innodb_files: reports.iter().filter(checked).count() as u64,
            not_checked: reports.iter().filter(|r| r.status == Status::NotChecked).count() as u64,
            pages: reports.iter().map(|r| r.tally.pages).sum(),
            bytes: reports.iter().filter(checked).map(|r| r.bytes).sum(),
            corrupt_pages: reports.iter().map(|r| r.tally.corrupt.len() as u64).sum(),
            corrupt_files: reports.iter().filter(|r| r.status == Status::Corrupt).count() as u64,
            unverifiable_pages: reports.iter().map(|r| r.tally.unverifiable_pages()).sum(),
            seconds: self.seconds,
        }
    }

    /// The report as text, a line each: the files (with `quiet`, only those in trouble; at
    /// most `max` corrupt pages listed a file), then the totals (with `quiet`, only if a page
    /// is corrupt).
    pub fn lines(&self, max: Option<usize>, quiet: bool) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.reports {
            let table = r.table.as_ref().map(|t| format!(" ({t})")).unwrap_or_default();
            match r.status {
                Status::Corrupt => {
                    let n = r.tally.corrupt.len();
                    out.push(format!(
                        "ERROR: {} is corrupt and has : {n} corrupt page{}{table}",
                        r.path,
                        plural(n as u64)
                    ));
                    let listed = max.unwrap_or(usize::MAX).min(n);
                    for c in &r.tally.corrupt[..listed] {
                        out.push(format!("  page {} at byte {}: {}", c.page, c.offset, c.reason));
                    }
                    if listed < n {
                        out.push(format!(
                            "  ... and {} more corrupt pages (--max-corrupt-pages {})",
                            n - listed,
                            listed
                        ));
                    }
                }
                Status::Unverifiable => {
                    let note = r.note.as_deref().unwrap_or("");
                    out.push(format!("WARNING: {} could not be verified{table}: {note}", r.path));
                }
                Status::Ok if !quiet => {
                    let extra = r.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
                    out.push(format!(
                        "ok           {}  {} pages, {}{table}{extra}",
                        r.path,
                        r.tally.pages,
                        r.algorithm()
                    ));
                }
                Status::NotChecked if !quiet => {
                    out.push(format!("not checked  {}  {}", r.path, r.note.as_deref().unwrap_or("")));
                }
                _ => {}
            }
        }
        let totals = self.totals();
        if !quiet || totals.corrupt_pages > 0 {
            out.push(totals.line());
        }
        out
    }

    /// What `validate` prints on stdout: its [`lines`](Self::lines), or with `json` the
    /// [`to_json`](Self::to_json) report, pretty.
    pub fn shown(&self, json: bool, max: Option<usize>, quiet: bool) -> Vec<String> {
        if json {
            return vec![serde_json::to_string_pretty(&self.to_json(max)).unwrap_or_default()];
        }
        self.lines(max, quiet)
    }

    /// The report as `validate --json` prints it: each file (at most `max` corrupt pages
    /// listed a file), and a summary with the image error, if any.
    pub fn to_json(&self, max: Option<usize>) -> serde_json::Value {
        use serde_json::json;
        let files: Vec<_> = self.reports.iter().map(|r| file_json(r, max)).collect();
        let o = self.totals();
        // As anyhow's `{:#}` shows an error: it and each of its causes.
        let image_error = self.image_error.as_ref().map(|e| {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        });
        json!({
            "files": files,
            "summary": {
                "files": o.files,
                "innodb_files": o.innodb_files,
                "not_checked_files": o.not_checked,
                "pages": o.pages,
                "bytes": o.bytes,
                "corrupt_pages": o.corrupt_pages,
                "corrupt_files": o.corrupt_files,
                "unverifiable_pages": o.unverifiable_pages,
                "seconds": o.seconds,
                "bytes_per_second": (o.bytes as f64 / o.seconds.max(1e-9)) as u64,
                "image_error": image_error,
            },
        })
    }
}

/// One file's report, as `validate --json` prints it.
fn file_json(r: &FileReport, max: Option<usize>) -> serde_json::Value {
    use serde_json::json;
    let listed = max.unwrap_or(usize::MAX).min(r.tally.corrupt.len());
    let pages: Vec<_> = r.tally.corrupt[..listed]
        .iter()
        .map(|c| json!({"page": c.page, "offset": c.offset, "reason": c.reason}))
        .collect();
    let valid: BTreeMap<&str, u64> = r.tally.valid.iter().map(|(a, n)| (a.name(), *n)).collect();
    json!({
        "path": r.path,
        "status": r.status.name(),
        "pages": r.tally.pages,
        "algorithm": if r.status == Status::NotChecked { serde_json::Value::Null } else { json!(r.algorithm()) },
        "corrupt_pages": pages,
        "corrupt_page_count": r.tally.corrupt.len(),
        "table": r.table,
        "format": r.format,
        "bytes": r.bytes,
        "valid_pages": valid,
        "empty_pages": r.tally.empty,
        "decompressed_pages": r.tally.decompressed,
        "unverifiable_pages": r.tally.unverifiable_pages(),
        "skipped_pages": r.tally.skipped.values().sum::<u64>(),
        "note": r.note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_algorithm_is_one_innodb_knows() {
        assert_eq!(policy(None).unwrap(), Policy::Auto);
        assert_eq!(policy(Some("strict_crc32")).unwrap(), Policy::StrictCrc32);
        let e = policy(Some("md5")).unwrap_err();
        assert_eq!((e.to_string(), e.exit_code()), ("unknown checksum algorithm md5".into(), 2));
    }

    #[test]
    fn totals_say_what_was_found() {
        let t = Totals {
            files: 3,
            innodb_files: 2,
            not_checked: 1,
            pages: 10,
            bytes: 0,
            corrupt_pages: 1,
            corrupt_files: 1,
            unverifiable_pages: 2,
            seconds: 0.0,
        };
        assert!(t.line().starts_with(
            "coffer: validated 3 files (2 InnoDB, 1 not checked): 10 pages, 0 B; 1 corrupt page in 1 file; 2 pages not verifiable; 0.0 s"
        ));
        assert_eq!(t.corrupt_error().unwrap().to_string(), "1 corrupt InnoDB page in 1 file");
        assert!(Totals { corrupt_pages: 0, ..t }.corrupt_error().is_none());
        let empty = Validation { reports: Vec::new(), image_error: None, seconds: 0.0 };
        assert_eq!(empty.totals().files, 0);
        assert_eq!(empty.lines(None, true), Vec::<String>::new());
        assert_eq!(empty.to_json(None)["summary"]["image_error"], serde_json::Value::Null);
    }
}
