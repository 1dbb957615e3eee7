//! The backup job: a source, sealed into an image at a location.

use crate::error::{Context, Error, Result};
use crate::inspect::InnodbInspector;
use crate::keys::{KeySources, SealOptions};
use crate::location::{ImageOut, Location, OutOptions};
use crate::report::ImageProgress;
use crate::source::SourceSpec;
use crate::text::human;
use crate::{Env, PageCounts};
use coffer_format::{Codec, Suite};
use coffer_image::{write_image, ImageParams, WriteSummary};
use coffer_mysql::meta::BackupKind;
use std::path::PathBuf;
use std::time::Instant;

/// How a backup compresses its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The codec.
    pub codec: Codec,
    /// Its level (zstd: -7..=22, default 1; the others have one level).
    pub level: Option<i32>,
}

impl Default for Compression {
    fn default() -> Self {
        Self { codec: Codec::Zstd, level: None }
    }
}

impl Compression {
    /// The codec and a checked level.
    fn checked(self) -> Result<(Codec, i32)> {
        match self.codec {
            Codec::Zstd => {
                let level = self.level.unwrap_or(1);
                if !(-7..=22).contains(&level) {
                    return Err(Error::usage(format!("zstd level {level} is outside -7..=22")));
                }
                Ok((Codec::Zstd, level))
            }
            codec => Ok((codec, 0)),
        }
    }
}

/// A backup, as a user asks for it.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    /// What to back up.
    pub source: SourceSpec,
    /// Where the image goes.
    pub output: Location,
    /// Replacing, and the TLS settings of a receiver.
    pub out: OutOptions,
    /// The secrets the image is sealed for.
    pub keys: KeySources,
    /// Recipients, a keyring key, a signing key, passphrase costs.
    pub seal: SealOptions,
    /// The AEAD (default: AES-256-GCM, or ChaCha20-Poly1305 without AES instructions).
    pub cipher: Option<Suite>,
    /// How data is compressed.
    pub compression: Compression,
    /// Bytes of data per chunk.
    pub chunk_size: u32,
    /// Files of at most this many bytes (and directories, links) are packed together, several
    /// to a frame; `Some(0)` packs nothing and writes a format version 1 image; `None` takes
    /// the default (a quarter of the chunk size, at most 256 KiB).
    pub pack_limit: Option<u32>,
    /// Check InnoDB pages while reading them.
    pub validate: bool,
    /// Refuse the backup if a page is corrupt (else each is a warning).
    pub fail_on_corrupt: bool,
    /// Full, incremental or differential (a hot backup of a server only).
    pub chain: crate::repo::chain::ChainRequest,
    /// Read the source's contents at most at this many bytes per second (a server's: its
    /// engine's stream). A receiver's rate is `out.tls`'s.
    pub limit_rate: Option<u64>,
}

impl BackupSpec {
    /// A backup of `source` to `output` with the defaults (zstd 1, 1 MiB chunks, pages checked);
    /// give it at least one secret in `keys`.
    pub fn new(source: SourceSpec, output: Location) -> Self {
        Self {
            source,
            output,
            out: OutOptions::default(),
            keys: KeySources::default(),
            seal: SealOptions::default(),
            cipher: None,
            compression: Compression::default(),
            chunk_size: 1 << 20,
            pack_limit: None,
            validate: true,
            fail_on_corrupt: false,
            chain: crate::repo::chain::ChainRequest::default(),
            limit_rate: None,
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The image as written (entries, files, bytes).
    pub image: WriteSummary,
    /// Where it went, as messages show it (an object under a prefix: with its name).
    pub output: String,
    /// What was backed up, as messages show it.
    pub source: String,
    /// The codec used.
    pub codec: Codec,
    /// The AEAD used.
    pub suite: Suite,
    /// How long it took.
    pub seconds: f64,
    /// The bytes a receiver says it stored (a TLS destination).
    pub stored: Option<u64>,
    /// What the InnoDB page check found.
    pub pages: PageCounts,
    /// Sockets, FIFOs and devices left out.
    pub skipped: Vec<PathBuf>,
    /// A backup of a server: full, incremental or differential.
    pub kind: Option<BackupKind>,
}

impl BackupSummary {
    /// The lines that say what the backup did: the image written, and the InnoDB pages checked
    /// (if any were).
    pub fn lines(&self) -> Vec<String> {
        let ratio = self.image.image_bytes as f64 / self.image.logical_bytes.max(1) as f64;
        let mut lines = vec![format!(
            "backed up {} entries ({} files, {}) to {}: {} ({:.1}% of the input), {} {}, {:.1} s, {}",
            self.image.entries,
            self.image.files,
            human(self.image.logical_bytes),
            self.output,
            human(self.image.image_bytes),
            ratio * 100.0,
            self.codec.name(),
            self.suite.name(),
            self.seconds,
            crate::text::rate(self.image.logical_bytes, self.seconds),
        )];
        let counts = &self.pages;
        if counts.files > 0 {
            let found = if counts.corrupt == 0 {
                "all valid".to_string()
            } else {
                format!(
                    "{} corrupt pages in {} files (see the warnings above; `coffer validate` lists them)",
                    counts.corrupt,
                    counts.corrupt_files.len()
                )
            };
            lines.push(format!("checked {} InnoDB pages in {} files: {found}", counts.pages, counts.files));
        }
        lines
    }

    /// The warnings about what was left out.
    pub fn warnings(&self) -> Vec<String> {
        let left_out = |p: &PathBuf| format!("left out {}: sockets, FIFOs and devices are not backed up", p.display());
        self.skipped.iter().map(left_out).collect()
    }

    /// What the backup did, as `backup --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let escape = crate::text::escape;
        serde_json::json!({
            "output": self.output,
            "source": self.source,
            "entries": self.image.entries,
            "files": self.image.files,
            "logical_bytes": self.image.logical_bytes,
            "image_bytes": self.image.image_bytes,
            "stored_bytes": self.stored,
            "codec": self.codec.name(),
            "cipher": self.suite.name(),
            "seconds": self.seconds,
            "kind": self.kind.map(BackupKind::name),
            "innodb": {
                "files": self.pages.files,
                "pages": self.pages.pages,
                "corrupt_pages": self.pages.corrupt,
                "corrupt_files": self.pages.corrupt_files.iter().map(|f| escape(f)).collect::<Vec<_>>(),
            },
            "skipped": self.skipped.iter().map(|p| escape(p.as_os_str().as_encoded_bytes())).collect::<Vec<_>>(),
        })
    }
}

/// The AEAD to use: the one asked for, else the fastest constant-time one on this CPU.
fn suite(cipher: Option<Suite>, env: &Env) -> Suite {
    cipher.unwrap_or_else(|| {
        let s = coffer_crypto::default_suite();
        if s == Suite::ChaCha20Poly1305 {
            env.report.say(
                "note: this CPU has no AES instructions, so the image uses chacha20-poly1305 (faster and constant-time here)",
            );
        }
        s
    })
}

/// Backs up `spec.source` into an image at `spec.output`.
pub fn backup(spec: &BackupSpec, env: &Env) -> Result<BackupSummary> {
    if spec.out.tls.as_ref().is_some_and(|t| t.resume) && !spec.source.is_dir() {
        return Err(Error::usage(
            "--resume continues the transfer of an image file or a directory; a hot backup or a stream \
             cannot be continued by a second run (a backup's redo log starts where its own run started): \
             send it again without --resume",
        ));
    }
    let sealed = Sealing::prepare(spec, env)?;
    // Under a prefix, a lease says what the backup builds on, so that a prune keeps it.
    let lease = match &spec.output {
        Location::Object(url) if spec.chain.mode != crate::repo::chain::Mode::Full => {
            crate::repo::lease::Lease::try_take(crate::repo::lease::prefix_of(url), "backup", &[], None, env)
        }
        _ => None,
    };
    // A receiver is dialled (and has accepted us) before any source is opened.
    let out = spec.output.create(&spec.out, env, env.report.as_ref())?;
    backup_into(spec, sealed, out, lease.as_ref(), env)
}

/// Backs up `spec.source` into `out` (any place, a program's own included); `spec.output` is
/// not used.
pub fn backup_to(spec: &BackupSpec, out: Box<dyn ImageOut + '_>, env: &Env) -> Result<BackupSummary> {
    let sealed = Sealing::prepare(spec, env)?;
    backup_into(spec, sealed, out, None, env)
}

/// The image's parameters and secrets, read before anything is opened.
struct Sealing {
    params: ImageParams,
    secrets: Vec<coffer_crypto::SlotSecret>,
}

impl Sealing {
    fn prepare(spec: &BackupSpec, env: &Env) -> Result<Self> {
        let secrets = crate::keys::backup_secrets(&spec.keys, &spec.seal, env)?;
        let signing_key = match &spec.seal.signing_key {
            Some(p) => Some(crate::keys::read_signing_key(p, spec.keys.allow_insecure_key_file)?),
            None => None,
        };
        let (codec, level) = spec.compression.checked()?;
        let suite = suite(spec.cipher, env);
        let mut params = ImageParams::random(suite, codec, level, spec.chunk_size, secrets.len())?;
        params.signing_key = signing_key;
        if let Some(limit) = spec.pack_limit {
            if limit > spec.chunk_size / 2 {
                return Err(crate::Error::usage(format!(
                    "--pack-limit {limit} is more than half the chunk size {}",
                    spec.chunk_size
                )));
            }
            params.pack_limit = limit;
        }
        Ok(Self { params, secrets })
    }
}

fn backup_into(
    spec: &BackupSpec,
    sealed: Sealing,
    mut out: Box<dyn ImageOut + '_>,
    lease: Option<&crate::repo::lease::Lease>,
    env: &Env,
) -> Result<BackupSummary> {
    let Sealing { params, secrets } = sealed;
    let shown = out.shown();
    // The progress display exists before the source: a server's engine logs from its start.
    let first = env.report.progress(None, "backup");
    let chain = chain_plan(spec, env)?;
    let mut opened = crate::source::open(&spec.source, out.as_ref(), chain.as_ref(), env)?;
    let parent = parent_under(&spec.output, opened.parent.as_ref(), env)?;
    if let (Some(lease), Some((_, name, _))) = (lease, &parent) {
        if let Err(e) = lease.protect(std::slice::from_ref(name), None) {
            env.report.warn(&format!("{} (checked again before the backup is kept)", e.one_line()));
        }
    }
    if let Some(rate) = spec.limit_rate {
        opened.source = Box::new(crate::source::PacedSource::new(opened.source, rate));
    }
    let progress = if opened.total.is_some() {
        // The size is known: a bar with a total replaces the spinner, which goes without a trace.
        first.finish();
        env.report.progress(opened.total, "backup")
    } else {
        first
    };
    let inspector = InnodbInspector {
        fail_on_corrupt: spec.fail_on_corrupt,
        report: env.report.clone(),
        counts: Default::default(),
    };
    let inspect: Option<&dyn coffer_image::Inspect> = if spec.validate { Some(&inspector) } else { None };
    let started = Instant::now();
    let written = write_image(
        opened.source.as_mut(),
        &mut out,
        &params,
        &secrets,
        env.threads,
        &ImageProgress(progress.clone()),
        inspect,
    )
    .map_err(|e| opened.source.cause_of_failure().unwrap_or(e))
    .map_err(Error::from)
    .and_then(|s| match &parent {
        // Visible only once what it builds on is known to be kept.
        Some((prefix, _, object)) => crate::repo::lease::check_parent(prefix, object, lease, env).map(|()| s),
        None => Ok(s),
    })
    .and_then(|s| out.finish().map(|()| s));
    progress.finish();
    let image = written.with_context(|| format!("backup of {} failed; no image was left at {}", opened.name, shown))?;
    let description = opened.source.description();
    let kind = description.as_deref().and_then(backup_kind);
    let record = if out.keeps_records() {
        catalog_record(&params, &image, &opened.name, description)
            .map_err(|e| env.report.warn(&format!(
                "the backup is complete, but its catalog record was not stored ({}): `coffer catalog` reads its index instead",
                e.one_line()
            )))
            .ok()
    } else {
        None
    };
    let stored = out.commit(record, env.report.as_ref())?;
    Ok(BackupSummary {
        image,
        output: shown,
        source: opened.name,
        codec: params.codec,
        suite: params.suite,
        seconds: started.elapsed().as_secs_f64(),
        stored,
        pages: inspector.counts.into_inner().unwrap_or_else(|e| e.into_inner()),
        skipped: opened.source.skipped().to_vec(),
        kind,
    })
}

/// The parent of a backup written under a prefix, when it is an object under the same prefix:
/// the prefix, its name there, and the object.
fn parent_under(
    output: &Location,
    parent: Option<&Location>,
    env: &Env,
) -> Result<Option<(String, String, coffer_store::Object)>> {
    let (Location::Object(out), Some(Location::Object(p))) = (output, parent) else { return Ok(None) };
    let prefix = crate::repo::lease::prefix_of(out);
    let Some(name) = p.strip_prefix(prefix).filter(|n| !n.contains('/')) else { return Ok(None) };
    Ok(Some((prefix.to_owned(), name.to_owned(), coffer_store::Object::open(p, &env.store)?)))
}

/// The kind of the backup a server backup's description (JSON) describes: its place in a
/// chain, else what the engine says it took.
fn backup_kind(description: &[u8]) -> Option<BackupKind> {
    let info: coffer_mysql::meta::BackupInfo = serde_json::from_slice(description).ok()?;
    Some(match (&info.chain, info.backup_type.as_deref()) {
        (Some(link), _) => link.kind,
        (None, Some("incremental")) => BackupKind::Incremental,
        _ => BackupKind::Full,
    })
}

/// The backups an incremental or differential backup may build on: those named with `--base`,
/// and those beside its output (under its prefix, or in its directory).
fn chain_plan(spec: &BackupSpec, env: &Env) -> Result<Option<crate::source::ChainPlan>> {
    let request = &spec.chain;
    if request.mode == crate::repo::chain::Mode::Full {
        return Ok(None);
    }
    if !matches!(spec.source, SourceSpec::Server(_)) {
        return Err(Error::usage("--incremental and --differential take a hot backup of a server (--mysql)"));
    }
    let unlocks = crate::keys::unlocks(&spec.keys, env)
        .context("an incremental backup reads its parent's description: give a secret that opens it")?;
    // The parent is the one named, else among the backups where this one goes.
    let around = match &spec.output {
        Location::Object(_) | Location::File(_) if request.base.is_empty() => spec.output.clone(),
        _ => Location::Stdio,
    };
    let mut neighbours = crate::repo::chain::neighbours(&around, &request.base, &unlocks, env)?;
    // An image being replaced (--force) is no parent of its replacement.
    neighbours.known.retain(|k| k.location != spec.output);
    for (shown, why, _) in &neighbours.unread {
        env.report.warn(&format!("{shown} is not a candidate parent: {why}"));
    }
    Ok(Some(crate::source::ChainPlan {
        mode: request.mode,
        max_chain: request.max_chain.unwrap_or(crate::repo::chain::DEFAULT_MAX_CHAIN),
        neighbours,
    }))
}

/// The catalog record stored beside an image in object storage (docs/FORMAT.md §9, "Catalog
/// record"): what `coffer catalog` shows of a backup, sealed under the image's keys.
fn catalog_record(
    params: &ImageParams,
    summary: &WriteSummary,
    source: &str,
    description: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let backup: serde_json::Value = description.and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default();
    let json = serde_json::json!({
        "created": params.created,
        "image_bytes": summary.image_bytes,
        "entries": summary.entries,
        "files": summary.files,
        "logical_bytes": summary.logical_bytes,
        "codec": params.codec.name(),
        "cipher": params.suite.name(),
        "source": source,
        "backup": backup,
    });
    let bytes = serde_json::to_vec(&json)?;
    Ok(match crate::repo::records::links_of(&json["backup"]) {
        Some(links) => coffer_image::catalog::seal_linked_record(&params.keys(), &params.image_id, &bytes, &links)?,
        None => coffer_image::catalog::seal_record(&params.keys(), &params.image_id, &bytes)?,
    })
}

/// A program's own writer as a place for an image (memory, a pipe it holds).
#[derive(Debug)]
pub struct WriterOut<W>(pub W);

impl<W: std::io::Write> std::io::Write for WriterOut<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: std::io::Write + Send> ImageOut for WriterOut<W> {
    fn shown(&self) -> String {
        "(the caller's writer)".to_owned()
    }
    fn finish(&mut self) -> Result<()> {
        Ok(self.0.flush()?)
    }
    fn commit(self: Box<Self>, _: Option<Vec<u8>>, _: &dyn crate::Report) -> Result<Option<u64>> {
        Ok(None)
    }
}
