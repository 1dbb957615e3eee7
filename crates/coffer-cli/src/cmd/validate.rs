//! `coffer validate`: InnoDB pages in an image (streaming, nothing written), a directory, or
//! tablespace files.

use super::{human, open_input, open_stream_input, rate};
use crate::cli::ValidateArgs;
use crate::exit::{usage, CorruptPages};
use crate::progress::{Bar, CountingReader};
use anyhow::{Context, Result};
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::walk::Walker;
use coffer_image::{open_stream, read_stream, ImageError, ReadOptions, Visitor};
use coffer_innodb::{classify, validate_files, FileReport, Kind, Options, PageStream, Policy, Space, Status, Target};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

pub fn run(args: ValidateArgs, quiet: bool, threads: usize) -> Result<()> {
    let policy = match &args.checksum_algorithm {
        Some(name) => Policy::parse(name).ok_or_else(|| usage(format!("unknown checksum algorithm {name}")))?,
        None => Policy::Auto,
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut image_error = None;
    let mut disk_targets = Vec::new();
    for path in &args.paths {
        let is_stdin = path == Path::new("-");
        if args.innodb && is_stdin {
            reports.push(validate_stdin_tablespace(policy)?);
        } else if args.innodb {
            disk_targets.push(Target {
                path: path.clone(),
                display: path.display().to_string(),
                force_innodb: true,
                walked: None,
            });
        } else if !is_stdin && path.is_dir() {
            disk_targets.extend(walk_targets(path)?);
        } else if is_stdin || is_image(path)? {
            let (reps, err) = validate_image(path, &args, policy, quiet, threads)?;
            reports.extend(reps);
            if err.is_some() {
                image_error = err;
                break;
            }
        } else {
            disk_targets.push(Target {
                path: path.clone(),
                display: path.display().to_string(),
                force_innodb: true,
                walked: None,
            });
        }
    }
    if !disk_targets.is_empty() {
        let total: u64 = disk_targets.iter().filter_map(|t| std::fs::metadata(&t.path).ok()).map(|m| m.len()).sum();
        let bar = Bar::new(quiet || args.json, Some(total), "validate");
        reports.extend(validate_files(&disk_targets, Options { policy, threads }, &|n| bar.inc(n)));
        bar.finish();
    }
    let secs = started.elapsed().as_secs_f64();
    let outcome = summarize(&reports, secs);
    if args.json {
        print_json(&reports, &outcome, args.max_corrupt_pages, image_error.as_ref())?;
    } else {
        print_text(&reports, &outcome, args.max_corrupt_pages, quiet)?;
    }
    if let Some(e) = image_error {
        return Err(e);
    }
    if outcome.corrupt_pages > 0 {
        return Err(anyhow::Error::new(CorruptPages(format!(
            "{} corrupt InnoDB page{} in {} file{}",
            outcome.corrupt_pages,
            plural(outcome.corrupt_pages),
            outcome.corrupt_files,
            plural(outcome.corrupt_files)
        ))));
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn is_image(path: &Path) -> Result<bool> {
    if let Some(object) = crate::store::object(path)? {
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

fn validate_stdin_tablespace(policy: Policy) -> Result<FileReport> {
    let (mut input, _) = open_input(Path::new("-"))?;
    let mut stream = PageStream::new("-".into(), policy, false, None);
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
fn validate_image(
    path: &Path,
    args: &ValidateArgs,
    policy: Policy,
    quiet: bool,
    threads: usize,
) -> Result<(Vec<FileReport>, Option<anyhow::Error>)> {
    let keys = crate::keys::unlocks(&args.key, quiet)?;
    let (file, len) = open_stream_input(path)?;
    let bar = Bar::new(quiet || args.json, len, "validate");
    let mut input = CountingReader { inner: file, bar: bar.clone() };
    let image = open_stream(&mut input, &keys)?;
    let mut visitor = ImageValidator {
        policy,
        current: None,
        current_path: Vec::new(),
        reports: Vec::new(),
        system: BTreeMap::new(),
        paused: Default::default(),
    };
    let result = read_stream(&mut input, &image, &mut visitor, ReadOptions { threads, skip_data: false });
    bar.finish();
    let mut reports = visitor.reports;
    for note in &image.notes {
        super::warn(quiet, note);
    }
    if let Some(w) = image.warnings.first() {
        let e = ImageError::Corrupt { at: coffer_image::Location::default(), detail: w.clone() };
        return Ok((reports, Some(anyhow::Error::new(e))));
    }
    match result {
        Ok(_) => Ok((reports, None)),
        Err(e) => {
            if let Some(current) = visitor.current.take() {
                reports.push(current.cut_short());
            }
            Ok((reports, Some(anyhow::Error::new(e).context(format!("image {} failed validation", path.display())))))
        }
    }
}

enum Current {
    Pages { stream: Box<PageStream>, system: Option<u32> },
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
            Current::Skip(r) => *r,
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
}

impl ImageValidator {
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
        self.current = Some(match classify(&name) {
            Kind::Other(why) => Current::Skip(Box::new(FileReport::not_checked(display, meta.size, why))),
            Kind::Tablespace => {
                Current::Pages { stream: Box::new(PageStream::new(display, self.policy, false, None)), system: None }
            }
            Kind::System(1) => {
                Current::Pages { stream: Box::new(PageStream::new(display, self.policy, true, None)), system: Some(1) }
            }
            Kind::System(n) => match self.continuation(n) {
                Some(space) => Current::Pages {
                    stream: Box::new(PageStream::new(display, self.policy, true, Some(space))),
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
        if let Some(Current::Pages { stream, .. }) = &mut self.current {
            stream.write_at(offset, data);
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

struct Outcome {
    files: u64,
    innodb_files: u64,
    not_checked: u64,
    pages: u64,
    bytes: u64,
    corrupt_pages: u64,
    corrupt_files: u64,
    unverifiable_pages: u64,
    seconds: f64,
}

fn summarize(reports: &[FileReport], seconds: f64) -> Outcome {
    let checked = |r: &&FileReport| r.status != Status::NotChecked;
    Outcome {
        files: reports.len() as u64,
        innodb_files: reports.iter().filter(checked).count() as u64,
        not_checked: reports.iter().filter(|r| r.status == Status::NotChecked).count() as u64,
        pages: reports.iter().map(|r| r.tally.pages).sum(),
        bytes: reports.iter().filter(checked).map(|r| r.bytes).sum(),
        corrupt_pages: reports.iter().map(|r| r.tally.corrupt.len() as u64).sum(),
        corrupt_files: reports.iter().filter(|r| r.status == Status::Corrupt).count() as u64,
        unverifiable_pages: reports.iter().map(|r| r.tally.unverifiable_pages()).sum(),
        seconds,
    }
}

fn print_text(reports: &[FileReport], o: &Outcome, max: Option<usize>, quiet: bool) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in reports {
        let table = r.table.as_ref().map(|t| format!(" ({t})")).unwrap_or_default();
        match r.status {
            Status::Corrupt => {
                let n = r.tally.corrupt.len();
                writeln!(out, "ERROR: {} is corrupt and has : {n} corrupt page{}{table}", r.path, plural(n as u64))?;
                let listed = max.unwrap_or(usize::MAX).min(n);
                for c in &r.tally.corrupt[..listed] {
                    writeln!(out, "  page {} at byte {}: {}", c.page, c.offset, c.reason)?;
                }
                if listed < n {
                    writeln!(out, "  ... and {} more corrupt pages (--max-corrupt-pages {})", n - listed, listed)?;
                }
            }
            Status::Unverifiable => {
                writeln!(out, "WARNING: {} could not be verified{table}: {}", r.path, r.note.as_deref().unwrap_or(""))?;
            }
            Status::Ok if !quiet => {
                let extra = r.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
                writeln!(out, "ok           {}  {} pages, {}{table}{extra}", r.path, r.tally.pages, r.algorithm())?;
            }
            Status::NotChecked if !quiet => {
                writeln!(out, "not checked  {}  {}", r.path, r.note.as_deref().unwrap_or(""))?;
            }
            _ => {}
        }
    }
    if !quiet || o.corrupt_pages > 0 {
        writeln!(
            out,
            "coffer: validated {} files ({} InnoDB, {} not checked): {} pages, {}; {} corrupt page{} in {} file{}{}; {:.1} s, {}",
            o.files,
            o.innodb_files,
            o.not_checked,
            o.pages,
            human(o.bytes),
            o.corrupt_pages,
            plural(o.corrupt_pages),
            o.corrupt_files,
            plural(o.corrupt_files),
            if o.unverifiable_pages > 0 { format!("; {} pages not verifiable", o.unverifiable_pages) } else { String::new() },
            o.seconds,
            rate(o.bytes, o.seconds)
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_json(
    reports: &[FileReport],
    o: &Outcome,
    max: Option<usize>,
    image_error: Option<&anyhow::Error>,
) -> Result<()> {
    let files: Vec<_> = reports
        .iter()
        .map(|r| {
            let listed = max.unwrap_or(usize::MAX).min(r.tally.corrupt.len());
            let pages: Vec<_> =
                r.tally.corrupt[..listed].iter().map(|c| json!({"page": c.page, "offset": c.offset, "reason": c.reason})).collect();
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
        })
        .collect();
    let doc = json!({
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
            "image_error": image_error.map(|e| format!("{e:#}")),
        },
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}
