use super::inspect::InnodbInspector;
use super::{human, rate, stdout_file, warn};
use crate::cli::{BackupArgs, CipherArg, CompressArg};
use crate::exit::usage;
use crate::output::AtomicFile;
use crate::progress::Bar;
use anyhow::{Context, Result};
use coffer_format::{Codec, EntryKind, EntryMeta, Suite};
use coffer_fs::sink::DirectWriter;
use coffer_fs::walk::Walker;
use coffer_image::catalog::RECORD_SUFFIX;
use coffer_image::{write_image, DirSource, EntrySource, FileSource, ImageParams, StreamSource};
use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn cipher_suite(arg: CipherArg) -> Suite {
    match arg {
        CipherArg::Aes256Gcm => Suite::Aes256Gcm,
        CipherArg::ChaCha20Poly1305 => Suite::ChaCha20Poly1305,
    }
}

fn suite(arg: Option<CipherArg>, quiet: bool) -> Suite {
    match arg {
        Some(a) => cipher_suite(a),
        None => {
            let s = coffer_crypto::default_suite();
            if s == Suite::ChaCha20Poly1305 && !quiet {
                eprintln!("coffer: note: this CPU has no AES instructions, so the image uses chacha20-poly1305 (faster and constant-time here)");
            }
            s
        }
    }
}

fn codec(args: &BackupArgs) -> Result<(Codec, i32)> {
    Ok(match args.compress {
        CompressArg::Zstd => {
            let level = args.level.unwrap_or(1);
            if !(-7..=22).contains(&level) {
                return Err(usage(format!("zstd level {level} is outside -7..=22")));
            }
            (Codec::Zstd, level)
        }
        CompressArg::Lz4 => (Codec::Lz4, 0),
        CompressArg::None => (Codec::None, 0),
    })
}

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
    fn next_item(&mut self) -> Result<Option<coffer_image::SourceItem>, coffer_image::ImageError> {
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

/// The name of a backup written under a prefix: its start time, UTC ("2026-11-24T08-00-00Z.coffer").
fn time_name() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}Z.coffer", super::list::utc(now.as_secs() as i64).replace(' ', "T").replace(':', "-"))
}

/// The catalog record stored beside an image in object storage (docs/FORMAT.md §9, "Catalog record"): what
/// `coffer catalog` shows of a backup, sealed under the image's keys.
fn catalog_record(
    params: &ImageParams,
    summary: &coffer_image::WriteSummary,
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
    let bytes = serde_json::to_vec(&json).expect("serializable");
    Ok(coffer_image::catalog::seal_record(&params.keys(), &params.image_id, &bytes)?)
}

/// Sum of file sizes under `root`, for the progress bar's total.
fn tree_size(root: &Path) -> Option<u64> {
    Walker::new(root).map(|i| i.ok().map(|i| if i.meta.kind == EntryKind::File { i.meta.size } else { 0 })).sum()
}

pub fn run(args: BackupArgs, quiet: bool, threads: usize) -> Result<()> {
    if args.tls.resume {
        let dir = args.source.as_deref().is_some_and(|p| p != Path::new("-") && p.is_dir());
        if !dir {
            return Err(usage(
                "--resume continues the transfer of an image file or a directory; a hot backup or a stream \
                 cannot be continued by a second run (a backup's redo log starts where its own run started): \
                 send it again without --resume",
            ));
        }
    }
    let secrets = crate::keys::backup_secrets(&args.key, &args.seal, quiet)?;
    let signing_key = match &args.seal.signing_key {
        Some(p) => Some(crate::keys::read_signing_key(p, args.key.allow_insecure_key_file)?),
        None => None,
    };
    let (codec, level) = codec(&args)?;
    let suite = suite(args.cipher, quiet);
    // Sending: the receiver is dialled (and has accepted us) before any source is opened.
    let (mut wire, offer) = match &args.send_to {
        Some(to) => {
            let (stream, offer) = super::net::dial(to, &args.tls.required())?;
            (Some(stream), offer)
        }
        None => (None, None),
    };
    let mut out_path = args.output.clone().unwrap_or_else(|| PathBuf::from(args.send_to.clone().unwrap_or_default()));
    let object = match wire {
        Some(_) => None,
        None => crate::store::object(&out_path)?,
    };
    let object = match object {
        Some(o) => {
            // A prefix: the backup is named by its start time, so names sort by time.
            let o = if o.is_prefix() { o.child(&time_name()) } else { o };
            if !args.force && o.exists().with_context(|| format!("cannot reach {}", o.url()))? {
                return Err(anyhow::anyhow!("{} already exists (use --force to replace it)", o.url()));
            }
            out_path = PathBuf::from(o.url());
            crate::store::abort_on_signals();
            Some(o)
        }
        None => None,
    };
    let to_stdout = wire.is_none() && out_path == Path::new("-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(usage("refusing to write an image to a terminal: use -o FILE or a pipe"));
    }
    let from_stdin = args.source.as_deref() == Some(Path::new("-")) || args.xbstream.as_deref() == Some(Path::new("-"));
    if from_stdin && std::io::stdin().is_terminal() {
        return Err(usage("refusing to read data from a terminal: pipe it in, or name a directory or file"));
    }
    let output = if to_stdout || wire.is_some() || object.is_some() {
        None
    } else {
        for left in AtomicFile::remove_stale(&out_path) {
            warn(quiet, format!("removed {}, which an interrupted backup left", left.display()));
        }
        Some(AtomicFile::create(&out_path, args.force, 0o600)?)
    };

    let show = !quiet && std::io::stderr().is_terminal();
    let bar = Bar::new(quiet, None, "backup");
    // The engine's scratch directory lives until the backup is done.
    let mut _scratch = None;
    let source_name;
    let (mut source, total): (Box<dyn EntrySource>, Option<u64>) = if args.mysql {
        let (run, stdout, scratch, version) = super::server::start_engine(&args.server, quiet, threads, &bar)?;
        _scratch = Some(scratch);
        source_name = format!("the {} server", coffer_mysql::meta::flavor(&version));
        (Box::new(super::server::ServerBackup::new(stdout, Some(run), Some(version))), None)
    } else if let Some(xb) = &args.xbstream {
        source_name = format!("the xbstream {}", xb.display());
        let input: std::fs::File = if from_stdin {
            std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().context("cannot use stdin")?)
        } else {
            std::fs::File::open(xb).with_context(|| format!("cannot open {}", xb.display()))?
        };
        (Box::new(super::server::ServerBackup::new(input, None, None)), None)
    } else if from_stdin {
        source_name = "stdin".to_owned();
        let name = args.name.clone().unwrap_or_else(|| "stdin".into());
        let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().context("cannot use stdin")?);
        (Box::new(StreamSource::new(stdin_meta(&name), stdin)), None)
    } else {
        let src = args.source.as_deref().expect("clap requires a source");
        source_name = src.display().to_string();
        let md = std::fs::metadata(src).with_context(|| format!("cannot back up {}", src.display()))?;
        if md.is_dir() {
            let mut walker = Walker::new(src);
            if let Some(out) = &output {
                walker.exclude(&out.file().metadata().context("cannot stat the output")?);
            }
            let dir = DirSource::new(walker);
            match &offer {
                Some(offer) if !offer.files.is_empty() => {
                    let held = super::net::held_files(offer)?;
                    if !quiet {
                        eprintln!(
                            "coffer: {} holds {} files of an interrupted transfer: sending those it lacks or that changed",
                            args.send_to.as_deref().unwrap_or_default(),
                            held.len()
                        );
                    }
                    (Box::new(Skipping { inner: dir, held }), None)
                }
                _ => (Box::new(dir), if show { tree_size(src) } else { None }),
            }
        } else if md.is_file() {
            let name = match &args.name {
                Some(n) => n.as_bytes().to_vec(),
                None => src.file_name().context("the source has no file name")?.as_bytes().to_vec(),
            };
            (Box::new(FileSource::new(src, name)?), Some(md.len()))
        } else {
            return Err(usage(format!("{} is neither a directory nor a regular file", src.display())));
        }
    };

    let mut params = ImageParams::random(suite, codec, level, args.chunk_size, secrets.len())?;
    params.signing_key = signing_key;
    let bar = if total.is_some() { Bar::new(quiet, total, "backup") } else { bar };
    let inspector = InnodbInspector { fail_on_corrupt: args.fail_on_corrupt, quiet, counts: Default::default() };
    let inspect: Option<&dyn coffer_image::Inspect> = if args.no_validate { None } else { Some(&inspector) };
    let started = Instant::now();
    let summary: Result<_> = match (&output, wire.as_mut(), &object) {
        (_, Some(stream), _) => {
            let sink = BufWriter::with_capacity(1 << 20, super::net::stalling(&mut *stream, args.tls.stall_timeout));
            write_image(source.as_mut(), sink, &params, &secrets, threads, &bar, inspect).map_err(Into::into)
        }
        (_, None, Some(object)) => {
            // Visible under its name only once complete; dropped on failure, the upload is aborted.
            let mut sink = object.writer();
            write_image(source.as_mut(), &mut sink, &params, &secrets, threads, &bar, inspect)
                .map_err(anyhow::Error::from)
                .and_then(|s| {
                    sink.finish()?;
                    Ok(s)
                })
        }
        (Some(file), None, None) => {
            let out = file.file().try_clone().context("cannot use the output file")?;
            let mut sink = DirectWriter::new(out, out_path.clone());
            write_image(source.as_mut(), &mut sink, &params, &secrets, threads, &bar, inspect)
                .and_then(|s| {
                    sink.finish()?;
                    Ok(s)
                })
                .map_err(Into::into)
        }
        (None, None, None) => {
            let sink = BufWriter::with_capacity(1 << 18, stdout_file()?);
            write_image(source.as_mut(), sink, &params, &secrets, threads, &bar, inspect).map_err(Into::into)
        }
    };
    bar.finish();
    let summary = summary
        .with_context(|| format!("backup of {} failed; no image was left at {}", source_name, out_path.display()))?;
    if let Some(file) = output {
        file.commit()?;
    }
    if let Some(object) = &object {
        let record = catalog_record(&params, &summary, &source_name, source.description());
        let stored = record.and_then(|r| Ok(object.with_suffix(RECORD_SUFFIX).put(r)?));
        if let Err(e) = stored {
            warn(
                quiet,
                format!(
                    "the backup is complete, but its catalog record was not stored ({}): `coffer catalog` reads its index instead",
                    crate::exit::one_line(&e)
                ),
            );
        }
    }
    if let Some(stream) = wire {
        let tls = args.tls.required();
        super::net::finish_send(stream, &out_path.display().to_string(), &tls)?;
    }
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        let ratio = summary.image_bytes as f64 / summary.logical_bytes.max(1) as f64;
        eprintln!(
            "coffer: backed up {} entries ({} files, {}) to {}: {} ({:.1}% of the input), {} {}, {:.1} s, {}",
            summary.entries,
            summary.files,
            human(summary.logical_bytes),
            out_path.display(),
            human(summary.image_bytes),
            ratio * 100.0,
            params.codec.name(),
            suite.name(),
            secs,
            rate(summary.logical_bytes, secs),
        );
    }
    let counts = inspector.counts.into_inner().expect("lock");
    if !quiet && counts.files > 0 {
        eprintln!(
            "coffer: checked {} InnoDB pages in {} files: {}",
            counts.pages,
            counts.files,
            if counts.corrupt == 0 {
                "all valid".to_string()
            } else {
                format!(
                    "{} corrupt pages in {} files (see the warnings above; `coffer validate` lists them)",
                    counts.corrupt,
                    counts.corrupt_files.len()
                )
            }
        );
    }
    for path in source.skipped() {
        warn(quiet, format!("left out {}: sockets, FIFOs and devices are not backed up", path.display()));
    }
    let _ = std::io::stderr().flush();
    Ok(())
}
