//! The validate job: the InnoDB pages of an image (streamed, every frame authenticated, nothing
//! written), of a directory, or of tablespace files.

use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::read::Counting;
use crate::Env;
use coffer_format::{EntryKind, EntryMeta};
use coffer_fs::walk::Walker;
use coffer_image::{open_stream, read_stream, ImageError, ReadOptions, Visitor};
use coffer_innodb::{classify, validate_files, FileReport, Kind, Options, PageStream, Policy, Space, Target};
use std::collections::BTreeMap;
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
        reports.extend(validate_files(&disk_targets, Options { policy: spec.policy, threads: env.threads }, &|n| {
            progress.advance(n)
        }));
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
    };
    let result = read_stream(&mut input, &image, &mut visitor, ReadOptions { threads: env.threads, skip_data: false });
    progress.finish();
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
