//! Places images live, parsed once from what a user writes, and opened for writing.
//!
//! | written | place |
//! |---|---|
//! | `-` | standard input or output |
//! | `s3://B/K`, `gs://B/K`, `az://C/K`, `file:///P` | an object (a prefix if it ends in `/`) |
//! | `tls://HOST:PORT` | a receiver (`coffer receive`) over TLS 1.3 |
//! | anything else | a file of this host |
//!
//! A new place is one [`ImageOut`] type and one parse rule in [`Location::parse`].

use crate::atomic::AtomicFile;
use crate::error::{Context, Error, Result};
use crate::net::{Outgoing, Stalling, TlsOptions};
use crate::report::Report;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_fs::sink::DirectWriter;
use coffer_image::IndexedImage;
use coffer_net::wire::Offer;
use coffer_store::Object;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A place an image is written to or read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file of this host.
    File(PathBuf),
    /// Standard input or output (`-`).
    Stdio,
    /// An object or, ending in `/`, a prefix under which a backup is named by its time.
    Object(String),
    /// A receiver over TLS, `HOST:PORT`.
    Tls(String),
}

/// The scheme of a TLS receiver.
pub const TLS_SCHEME: &str = "tls://";

impl Location {
    /// What `text` names (see the module documentation).
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            Location::Stdio
        } else if coffer_store::is_url(text) {
            Location::Object(text.to_owned())
        } else if let Some(peer) = text.strip_prefix(TLS_SCHEME) {
            Location::Tls(peer.to_owned())
        } else {
            Location::File(text.into())
        }
    }

    /// Where a backup writes: to the receiver at `to` (`HOST:PORT`) if given, else to what
    /// `output` names, else to standard output.
    pub fn output(to: Option<&str>, output: Option<&Path>) -> Self {
        match (to, output) {
            (Some(to), _) => Location::Tls(to.to_owned()),
            (None, Some(out)) => Location::from_path(out),
            (None, None) => Location::Stdio,
        }
    }

    /// What `path` names: [`Location::parse`] of its text, a file if it is not UTF-8.
    pub fn from_path(path: &Path) -> Self {
        match path.to_str() {
            Some(text) => Self::parse(text),
            None => Location::File(path.into()),
        }
    }

    /// The place as messages show it.
    pub fn shown(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Stdio => "-".to_owned(),
            Location::Object(url) => url.clone(),
            Location::Tls(peer) => peer.clone(),
        }
    }

    /// Opens the image here to read it from its start: a file, standard input, or an object;
    /// with its length when known.
    pub fn open_stream(&self, env: &Env) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        match self {
            Location::Stdio => {
                let fd = std::io::stdin().as_fd().try_clone_to_owned().context("cannot use stdin")?;
                Ok((Box::new(std::fs::File::from(fd)), None))
            }
            Location::File(path) => {
                let (file, len) = open_file(path)?;
                Ok((Box::new(file), len))
            }
            Location::Object(url) => {
                let object = Object::open(url, &env.store)?;
                let reader = object.reader().with_context(|| format!("cannot open {url}"))?;
                let len = reader.len();
                Ok((Box::new(reader), Some(len)))
            }
            Location::Tls(peer) => Err(not_readable(peer)),
        }
    }

    /// Opens the image here through its index (a file, or ranged reads of an object); `None`
    /// where only a stream can be read (standard input).
    pub fn open_indexed(&self, unlocks: &[Unlock], env: &Env) -> Result<Option<IndexedImage>> {
        match self {
            Location::Stdio => Ok(None),
            Location::File(path) => Ok(Some(IndexedImage::open(path, unlocks)?)),
            Location::Object(url) => {
                let object = Object::open(url, &env.store)?;
                Ok(Some(crate::store::open_indexed_object(object, Path::new(url), unlocks)?))
            }
            Location::Tls(peer) => Err(not_readable(peer)),
        }
    }

    /// Opens the place to write a new image into.
    pub fn create(&self, opts: &OutOptions, settings: &Env, report: &dyn Report) -> Result<Box<dyn ImageOut>> {
        match self {
            Location::File(path) => Ok(Box::new(FileOut::create(path, opts, report)?)),
            Location::Stdio => Ok(Box::new(StdoutOut::open()?)),
            Location::Object(url) => Ok(Box::new(ObjectOut::create(url, opts, settings)?)),
            Location::Tls(peer) => {
                let tls = opts.tls.as_ref().ok_or_else(|| {
                    Error::usage(format!("{TLS_SCHEME}{peer} needs this end's certificate and key (--cert, --key)"))
                })?;
                Ok(Box::new(TlsOut::dial(peer, tls)?))
            }
        }
    }
}

/// A receiver is written to; images are read from a TLS peer by `coffer receive`.
fn not_readable(peer: &str) -> Error {
    Error::usage(format!(
        "{TLS_SCHEME}{peer} is where images are sent; to read one from the network, run `coffer receive`"
    ))
}

/// A file holding an image, with its length when it is a regular file.
pub fn open_file(path: &Path) -> Result<(std::fs::File, Option<u64>)> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let md = f.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
    if md.is_dir() {
        return Err(Error::usage(format!("{} is a directory, not an image", path.display())));
    }
    Ok((f, md.is_file().then_some(md.len())))
}

/// How a new image is written.
#[derive(Debug, Clone)]
pub struct OutOptions {
    /// Replace what is there.
    pub force: bool,
    /// The certificates and transfer settings, for a TLS receiver.
    pub tls: Option<TlsOptions>,
    /// The job writing ("backup", "rekey"), as messages name it.
    pub job: &'static str,
}

impl Default for OutOptions {
    fn default() -> Self {
        Self { force: false, tls: None, job: "backup" }
    }
}

/// A new image on its way to its place. Dropped before [`ImageOut::commit`], it leaves
/// nothing that looks like an image there (a temporary file removed, an upload aborted, a
/// receiver that never gets its end).
pub trait ImageOut: Write + Send {
    /// The place as messages show it (an object under a prefix: with its name).
    fn shown(&self) -> String;
    /// The file of this host being written, which a backup of a directory must leave out.
    fn excluded(&self) -> Result<Option<std::fs::Metadata>> {
        Ok(None)
    }
    /// What a receiver already holds of an interrupted transfer (with `resume`).
    fn offer(&self) -> Option<&Offer> {
        None
    }
    /// Is a catalog record kept beside the image (object storage)?
    fn keeps_records(&self) -> bool {
        false
    }
    /// Gets every byte written to the place; a failure here fails the job.
    fn finish(&mut self) -> Result<()>;
    /// Makes the image visible under its name and stores `record` beside it; returns what the
    /// place reports it stored (a receiver's byte count).
    fn commit(self: Box<Self>, record: Option<Vec<u8>>, report: &dyn Report) -> Result<Option<u64>>;
}

/// A file: written with O_DIRECT under a temporary name, renamed when complete.
struct FileOut {
    path: PathBuf,
    file: AtomicFile,
    writer: Option<DirectWriter>,
}

impl FileOut {
    fn create(path: &Path, opts: &OutOptions, report: &dyn Report) -> Result<Self> {
        for left in AtomicFile::remove_stale(path) {
            report.warn(&format!("removed {}, which an interrupted {} left", left.display(), opts.job));
        }
        let file = AtomicFile::create(path, opts.force, 0o600)?;
        let out = file.file().try_clone().context("cannot use the output file")?;
        Ok(Self { path: path.into(), writer: Some(DirectWriter::new(out, path.into())), file })
    }
}

/// Writing after `finish`: a job's mistake, reported as an error rather than a panic.
fn finished() -> std::io::Error {
    std::io::Error::other("the image was already finished")
}

/// Committing before `finish`: nothing incomplete is put in place.
fn unfinished() -> Error {
    Error::msg("the image was not finished: nothing was put in place")
}

impl Write for FileOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.as_mut().ok_or_else(finished)?.write(buf).map_err(|e| crate::room::explain_io(e, &self.path))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().ok_or_else(finished)?.flush().map_err(|e| crate::room::explain_io(e, &self.path))
    }
}

impl ImageOut for FileOut {
    fn shown(&self) -> String {
        self.path.display().to_string()
    }
    fn excluded(&self) -> Result<Option<std::fs::Metadata>> {
        Ok(Some(self.file.file().metadata().context("cannot stat the output")?))
    }
    fn finish(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.writer.take().ok_or_else(finished)?.finish().map_err(|e| crate::room::explain(e.into(), &path, None))?;
        Ok(())
    }
    fn commit(self: Box<Self>, _: Option<Vec<u8>>, _: &dyn Report) -> Result<Option<u64>> {
        if self.writer.is_some() {
            return Err(unfinished());
        }
        let path = self.path.clone();
        self.file.commit().map_err(|e| crate::room::explain(e, &path, None))?;
        Ok(None)
    }
}

/// Standard output, unbuffered by Rust (its `Stdout` is line-buffered), in large writes.
struct StdoutOut(BufWriter<std::fs::File>);

impl StdoutOut {
    fn open() -> Result<Self> {
        let fd = std::io::stdout().as_fd().try_clone_to_owned().context("cannot use stdout")?;
        Ok(Self(BufWriter::with_capacity(1 << 18, std::fs::File::from(fd))))
    }
}

impl Write for StdoutOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ImageOut for StdoutOut {
    fn shown(&self) -> String {
        "-".to_owned()
    }
    fn finish(&mut self) -> Result<()> {
        Ok(self.0.flush()?)
    }
    fn commit(self: Box<Self>, _: Option<Vec<u8>>, _: &dyn Report) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// An object: a multipart upload, completed only when the image is whole.
struct ObjectOut {
    object: Object,
    writer: Option<coffer_store::ObjectWriter>,
    /// The job writing, as its messages name it.
    job: &'static str,
}

impl ObjectOut {
    fn create(url: &str, opts: &OutOptions, settings: &Env) -> Result<Self> {
        let object = Object::open(url, &settings.store)?;
        let named = !object.is_prefix();
        // A prefix: the backup is named by its start time, so names sort by time.
        let object = if named { object } else { object.child(&crate::names::backup_name()?) };
        if named && !opts.force && object.exists().with_context(|| format!("cannot reach {}", object.url()))? {
            return Err(Error::msg(format!("{} already exists (use --force to replace it)", object.url())));
        }
        if settings.abort_uploads_on_signals {
            crate::store::abort_on_signals();
        }
        // Without --force the object is created only if its name is still free when the upload
        // completes (another job may take it meanwhile): never replaced.
        let writer = Some(if opts.force { object.writer() } else { object.creator() });
        Ok(Self { object, writer, job: opts.job })
    }
}

impl ObjectOut {
    /// The file a `file://` object is, whose file system may fill.
    fn local(&self) -> Option<&Path> {
        self.object.url().strip_prefix("file://").map(Path::new)
    }

    fn explained(&self, e: std::io::Error) -> std::io::Error {
        match self.local() {
            Some(path) => crate::room::explain_io(e, path),
            None => e,
        }
    }
}

impl Write for ObjectOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.writer.as_mut().ok_or_else(finished)?.write(buf);
        written.map_err(|e| self.explained(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.writer.as_mut().ok_or_else(finished)?.flush();
        flushed.map_err(|e| self.explained(e))
    }
}

impl ImageOut for ObjectOut {
    fn shown(&self) -> String {
        self.object.url().to_owned()
    }
    fn keeps_records(&self) -> bool {
        true
    }
    fn finish(&mut self) -> Result<()> {
        // Visible under its name only once complete; dropped on failure, the upload is aborted.
        let finished = self.writer.take().ok_or_else(finished)?.finish().map_err(Error::from);
        finished.map(drop).map_err(|e| match self.local() {
            Some(path) => crate::room::explain(e, path, None),
            None => e,
        })
    }
    fn commit(self: Box<Self>, record: Option<Vec<u8>>, report: &dyn Report) -> Result<Option<u64>> {
        if self.writer.is_some() {
            return Err(unfinished());
        }
        let beside = self.object.with_suffix(coffer_image::catalog::RECORD_SUFFIX);
        let Some(record) = record else {
            // No record of this image: none of an image it replaced may stay beside it.
            let _ = beside.delete();
            return Ok(None);
        };
        if let Err(e) = beside.put(record) {
            let why = crate::error::one_line(&e);
            report.warn(&match self.job {
                "rekey" => format!("the source's catalog record was not carried over ({why}): `coffer catalog` reads the new image's index instead"),
                job => format!("the {job} is complete, but its catalog record was not stored ({why}): `coffer catalog` reads its index instead"),
            });
        }
        Ok(None)
    }
}

/// A receiver over TLS: dialled (and its acceptance of us awaited) when opened.
struct TlsOut {
    peer: String,
    tls: TlsOptions,
    stream: Option<BufWriter<Stalling<Outgoing>>>,
    offer: Option<Offer>,
}

impl TlsOut {
    fn dial(peer: &str, tls: &TlsOptions) -> Result<Self> {
        let (stream, offer) = crate::net::dial(peer, tls)?;
        let stream = BufWriter::with_capacity(1 << 20, Stalling::new(stream, tls.stall_timeout));
        Ok(Self { peer: peer.to_owned(), tls: tls.clone(), stream: Some(stream), offer })
    }

    fn stream(&mut self) -> std::io::Result<&mut BufWriter<Stalling<Outgoing>>> {
        self.stream.as_mut().ok_or_else(finished)
    }
}

impl Write for TlsOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream()?.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream()?.flush()
    }
}

impl ImageOut for TlsOut {
    fn shown(&self) -> String {
        self.peer.clone()
    }
    fn offer(&self) -> Option<&Offer> {
        self.offer.as_ref()
    }
    fn finish(&mut self) -> Result<()> {
        Ok(self.stream()?.flush()?)
    }
    fn commit(mut self: Box<Self>, _: Option<Vec<u8>>, _: &dyn Report) -> Result<Option<u64>> {
        let stream = self.stream.take().ok_or_else(finished)?;
        let outgoing = stream.into_inner().map_err(|e| Error::from(e.into_error()))?.into_inner();
        Ok(Some(crate::net::finish_send(outgoing, &self.peer, &self.tls)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_writes_to_a_receiver_else_the_output_else_stdout() {
        let out = Some(Path::new("s3://b/p/"));
        assert_eq!(Location::output(Some("h:1"), out), Location::Tls("h:1".into()));
        assert_eq!(Location::output(None, out), Location::Object("s3://b/p/".into()));
        assert_eq!(Location::output(None, Some(Path::new("-"))), Location::Stdio);
        assert_eq!(Location::output(None, None), Location::Stdio);
    }

    #[test]
    fn each_place_has_one_parse_rule() {
        assert_eq!(Location::parse("-"), Location::Stdio);
        assert_eq!(Location::parse("s3://b/k.coffer"), Location::Object("s3://b/k.coffer".into()));
        assert_eq!(Location::parse("file:///srv/b/"), Location::Object("file:///srv/b/".into()));
        assert_eq!(Location::parse("tls://db2:4444"), Location::Tls("db2:4444".into()));
        assert_eq!(Location::parse("./x.coffer"), Location::File("./x.coffer".into()));
        assert_eq!(Location::parse("db2:4444"), Location::File("db2:4444".into()), "a file may have a colon");
        assert_eq!(Location::parse("tls://db2:4444").shown(), "db2:4444");
    }
}
