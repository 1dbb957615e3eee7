//! Object storage as a sink and a source of coffer images: S3 and the stores that speak its
//! protocol (MinIO, Ceph RGW, R2), Google Cloud Storage, Azure Blob Storage, and `file://`,
//! through the `object_store` crate.
//!
//! The rest of coffer reads and writes plain byte streams ([`std::io::Read`],
//! [`std::io::Write`]); this crate turns them into multipart uploads with several parts in
//! flight ([`ObjectWriter`]) and ranged GETs fetched ahead in parallel ([`ObjectReader`]), on a
//! small private async runtime. Memory stays bounded by the number of parts in flight times the
//! part size, whatever the size of the image.

mod aws;
mod create;
mod s3copy;

use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// How to reach a store and how hard to push it.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// An S3-compatible endpoint (`--s3-endpoint`, `COFFER_S3_ENDPOINT`): path-style requests,
    /// and plain HTTP allowed because it was asked for explicitly.
    pub endpoint: Option<String>,
    /// Parts uploaded, or ranges downloaded, at once.
    pub concurrency: usize,
    /// Size of each uploaded part and downloaded range.
    pub part_size: usize,
    /// How long a request is retried (with backoff) before its error is reported, beyond
    /// the time its first attempt may take ([`StoreOptions::timeout`]).
    pub retry_timeout: Duration,
    /// How many times a failed request is sent again (0: never).
    pub retries: usize,
    /// How long one attempt of a request may take, its body included.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            concurrency: 8,
            part_size: 16 << 20,
            retry_timeout: Duration::from_secs(60),
            retries: 10,
            // object_store's 30 s is too short for parts: 8 parts of 16 MiB in flight share the
            // link, so 128 MiB must move in 30 s (4.5 MB/s, 36 Mbit/s). 300 s holds down to
            // 0.45 MB/s (3.6 Mbit/s).
            timeout: Duration::from_secs(300),
        }
    }
}

/// `size` if S3 takes parts of that size (5 MiB to 5 GiB), for `--part-size`.
pub fn part_size(size: u64) -> Result<u64, String> {
    if !(5 << 20..=5 << 30).contains(&size) {
        return Err("a part size must be between 5M and 5G".into());
    }
    Ok(size)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0}: not an object URL (s3://BUCKET/KEY, gs://BUCKET/KEY, az://CONTAINER/KEY, file:///PATH)")]
    BadUrl(String),
    #[error("{0}")]
    Usage(String),
    #[error("{what} {url}: {detail}")]
    Store { what: &'static str, url: String, detail: String },
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{url}: {size} bytes, more than the {max} it may hold")]
    TooLarge { url: String, size: u64, max: u64 },
    #[error("interrupted by a signal")]
    Interrupted,
}

/// Is `s` an object URL rather than a local path?
pub fn is_url(s: &str) -> bool {
    ["s3://", "gs://", "az://", "azure://", "abfs://", "abfss://", "file://"].iter().any(|p| s.starts_with(p))
}

const UPLOAD: &str = "cannot upload";
const COMPLETE: &str = "cannot complete the upload of";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes every transfer in progress fail with [`StoreError::Interrupted`] at its next step, so
/// that uploads are aborted on the way out (for a SIGINT handler: async-signal-safe).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-store")
            .enable_all()
            .build()
            .expect("an async runtime for object storage")
    })
}

/// An object (or, with a trailing '/', a prefix) in a store.
#[derive(Debug, Clone)]
pub struct Object {
    store: Arc<dyn ObjectStore>,
    /// S3 only: what server-side copies need.
    s3: Option<Arc<s3copy::S3Direct>>,
    path: ObjectPath,
    url: String,
    opts: StoreOptions,
}

/// The first bytes of an object, and what identifies the version they were read from.
#[derive(Debug, Clone)]
pub struct Head {
    pub bytes: Vec<u8>,
    /// The object's whole size.
    pub size: u64,
    pub etag: Option<String>,
}

/// How an object's first bytes were replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Bytes this host sent (the new first bytes, and what a part needed around them).
    pub uploaded: u64,
    /// Bytes the store copied on its own side (S3), not moving through this host.
    pub copied_by_server: u64,
}

impl Object {
    /// Parses `url` and connects (lazily: nothing is sent until the first request).
    pub fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        use object_store::client::ClientConfigKey::Timeout;
        let parsed = url::Url::parse(url).map_err(|_| StoreError::BadUrl(url.into()))?;
        // object_store counts the retry window from the first attempt's start: an attempt that
        // stalled for the whole timeout is retried too (the window is counted after it).
        let window = opts.retry_timeout + opts.timeout;
        // object_store draws each wait between 100 ms and `base` times the last: with its base
        // of 2 the waits hardly grow, 10 retries were spent in about 2 s, and a store out for 3 s
        // failed the job. With 4 they about double, up to 15 s: spread over the retry window.
        let backoff = object_store::BackoffConfig { base: 4.0, ..Default::default() };
        let retry = RetryConfig { backoff, retry_timeout: window, max_retries: opts.retries };
        let timeout = format!("{}ms", opts.timeout.as_millis().max(1));
        let bad = |e: object_store::Error| StoreError::Usage(format!("{url}: {e}"));
        let mut s3 = None;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                // The image authenticates itself (every frame's AEAD): hashing every part for the
                // request signature as well would spend a core for nothing.
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_config(object_store::aws::AmazonS3ConfigKey::Client(Timeout), &timeout)
                    .with_unsigned_payload(true);
                b = aws::aws_files(b);
                if let Some(ep) = &opts.endpoint {
                    b = b
                        .with_endpoint(ep)
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(ep.starts_with("http://"));
                }
                let client = aws::s3_client_options(&b)?;
                b = b.with_client_options(client.clone());
                let built = Arc::new(b.clone().build().map_err(bad)?);
                let bucket = parsed.host_str().unwrap_or_default();
                s3 = Some(Arc::new(aws::s3_direct(&b, bucket, Arc::clone(&built), client, opts).map_err(bad)?));
                built
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_config(object_store::gcp::GoogleConfigKey::Client(Timeout), &timeout)
                    .build()
                    .map_err(bad)?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .with_config(object_store::azure::AzureConfigKey::Client(Timeout), &timeout)
                    .build()
                    .map_err(bad)?,
            ),
            // Durable when a put returns (the file and its directory fsynced): without it an
            // object reported stored is lost to a power cut (tests/power_cut.rs).
            "file" => Arc::new(object_store::local::LocalFileSystem::new().with_fsync(true)),
            _ => return Err(StoreError::BadUrl(url.into())),
        };
        let key = match parsed.scheme() {
            "file" => parsed.path().to_owned(),
            _ => parsed.path().trim_start_matches('/').to_owned(),
        };
        let path = ObjectPath::parse(&key).map_err(|e| StoreError::Usage(format!("{url}: {e}")))?;
        Ok(Self { store, s3, path, url: url.to_owned(), opts: opts.clone() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A URL ending in '/' names a prefix, under which coffer names new objects itself.
    pub fn is_prefix(&self) -> bool {
        self.url.ends_with('/')
    }

    /// The object `name` under this prefix.
    pub fn child(&self, name: &str) -> Self {
        let url = format!("{}{name}", self.url);
        let path = self.path.clone().join(name);
        Self { store: Arc::clone(&self.store), s3: self.s3.clone(), path, url, opts: self.opts.clone() }
    }

    /// The object named as this one with `suffix` added (`x.coffer` → `x.coffer.meta`).
    pub fn with_suffix(&self, suffix: &str) -> Self {
        let url = format!("{}{suffix}", self.url);
        // As `open` reads keys (parsed, not re-encoded); a parsed key with a plain suffix parses.
        let key = format!("{}{suffix}", self.path.as_ref());
        let path = ObjectPath::parse(&key).unwrap_or_else(|_| ObjectPath::from(key));
        Self { store: Arc::clone(&self.store), s3: self.s3.clone(), path, url, opts: self.opts.clone() }
    }

    /// Stores `bytes` as this object, in one request (small objects).
    pub fn put(&self, bytes: Vec<u8>) -> Result<(), StoreError> {
        runtime().block_on(self.store.put(&self.path, PutPayload::from(bytes))).map(|_| ()).map_err(self.err(UPLOAD))
    }

    /// The whole object, in one request (small objects).
    pub fn get(&self) -> Result<Vec<u8>, StoreError> {
        let got = runtime().block_on(async { self.store.get(&self.path).await?.bytes().await });
        got.map(|b| b.to_vec()).map_err(self.err("cannot read"))
    }

    /// The whole object if it holds at most `max` bytes, in one ranged request of `max + 1`
    /// bytes: whoever can write the object chooses its size, so a larger one is refused
    /// ([`StoreError::TooLarge`]) without being downloaded.
    pub fn get_at_most(&self, max: u64) -> Result<Vec<u8>, StoreError> {
        let opts = object_store::GetOptions { range: Some((0..max.saturating_add(1)).into()), ..Default::default() };
        let got = runtime().block_on(async {
            let r = self.store.get_opts(&self.path, opts).await?;
            let size = r.meta.size;
            if size > max {
                return Ok((None, size));
            }
            Ok::<_, object_store::Error>((Some(r.bytes().await?), size))
        });
        match got.map_err(self.err("cannot read"))? {
            (Some(bytes), _) if bytes.len() as u64 <= max => Ok(bytes.to_vec()),
            (_, size) => Err(StoreError::TooLarge { url: self.url.clone(), size, max }),
        }
    }

    /// The object's first `len` bytes, its size and its ETag, in one request.
    pub fn read_head(&self, len: u64) -> Result<Head, StoreError> {
        let opts = object_store::GetOptions { range: Some((0..len).into()), ..Default::default() };
        let got = runtime().block_on(async {
            let r = self.store.get_opts(&self.path, opts).await?;
            let meta = r.meta.clone();
            Ok::<_, object_store::Error>((r.bytes().await?, meta))
        });
        let (bytes, meta) = got.map_err(self.err("cannot read"))?;
        if bytes.len() as u64 != len.min(meta.size) {
            return Err(StoreError::Store {
                what: "cannot read",
                url: self.url.clone(),
                detail: format!("{len} bytes asked, {} came", bytes.len()),
            });
        }
        Ok(Head { bytes: bytes.to_vec(), size: meta.size, etag: meta.e_tag })
    }

    /// Replaces the object's first bytes (`old`, as read by [`Object::read_head`]) with `new`
    /// (as long). On S3 the rest is copied by the server from the object itself, and the new
    /// object replaces the old only if it is still the version read; elsewhere the rest is
    /// streamed through this host (down and up again, never stored here), and a change of
    /// the object meanwhile is refused before the new one is completed.
    pub fn replace_head(&self, old: &Head, new: &[u8]) -> Result<Replaced, StoreError> {
        if new.len() != old.bytes.len() {
            return Err(StoreError::Usage("the new first bytes must be as long as the old".into()));
        }
        let len = new.len() as u64;
        let etag = old.etag.clone();
        match (&self.s3, &etag) {
            (Some(s3), Some(etag)) if old.size > s3copy::MIN_PART => {
                // Part 1 is the new bytes and the object's own next bytes up to S3's minimum part.
                let mut first = new.to_vec();
                first.extend(self.read_range_if(len..s3copy::MIN_PART, etag)?);
                let key = self.path.as_ref().to_owned();
                let copied = runtime()
                    .block_on(s3.replace_prefix(&key, old.size, etag, first))
                    .map_err(|detail| StoreError::Store { what: "cannot rewrite", url: self.url.clone(), detail })?;
                Ok(Replaced { uploaded: s3copy::MIN_PART, copied_by_server: copied })
            }
            _ => {
                let mut w = self.writer();
                w.write_all(new).map_err(|e| self.io_err(e))?;
                let mut rest = self.range_reader(len, old.size - len);
                io::copy(&mut rest, &mut w).map_err(|e| self.io_err(e))?;
                let now = runtime().block_on(self.store.head(&self.path)).map_err(self.err("cannot read"))?;
                if now.e_tag != etag {
                    return Err(StoreError::Store {
                        what: "cannot rewrite",
                        url: self.url.clone(),
                        detail: "the object changed meanwhile; it was left as it is".into(),
                    });
                }
                w.finish()?;
                Ok(Replaced { uploaded: old.size, copied_by_server: 0 })
            }
        }
    }

    /// Bytes `range` of the object, if its ETag is still `etag`.
    fn read_range_if(&self, range: std::ops::Range<u64>, etag: &str) -> Result<Vec<u8>, StoreError> {
        let opts = object_store::GetOptions {
            range: Some(range.clone().into()),
            if_match: Some(etag.to_owned()),
            ..Default::default()
        };
        let got = runtime().block_on(async { self.store.get_opts(&self.path, opts).await?.bytes().await });
        let bytes = got.map_err(self.err("cannot read"))?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(StoreError::Store { what: "cannot read", url: self.url.clone(), detail: "short range".into() });
        }
        Ok(bytes.to_vec())
    }

    fn io_err(&self, e: io::Error) -> StoreError {
        if interrupted() {
            return StoreError::Interrupted;
        }
        StoreError::Store { what: "cannot rewrite", url: self.url.clone(), detail: e.to_string() }
    }

    fn err(&self, what: &'static str) -> impl Fn(object_store::Error) -> StoreError + '_ {
        move |e| match e {
            // Writing, "not found" can only be the bucket (or container).
            object_store::Error::NotFound { .. } if what == UPLOAD => {
                StoreError::Store { what, url: self.url.clone(), detail: "no such bucket (or no access to it)".into() }
            }
            object_store::Error::NotFound { .. } => StoreError::NotFound(self.url.clone()),
            // 403 and 401: said in the words people use; no retry cures them.
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                StoreError::Store { what, url: self.url.clone(), detail: format!("access denied: {}", one_line(&e)) }
            }
            // Said with the setting that bounds it: a slow link needs a longer one.
            e if http_kind(&e) == Some(object_store::client::HttpErrorKind::Timeout) => StoreError::Store {
                what,
                url: self.url.clone(),
                detail: format!(
                    "timed out: a request took longer than --store-timeout ({} s): {}",
                    self.opts.timeout.as_secs(),
                    one_line(&e)
                ),
            },
            // Stores answer a taken name with 409, 412 or 304 (object_store maps them here).
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
                if what == UPLOAD || what == COMPLETE =>
            {
                StoreError::AlreadyExists(self.url.clone())
            }
            e => StoreError::Store { what, url: self.url.clone(), detail: one_line(&e) },
        }
    }

    /// The object's size; [`StoreError::NotFound`] if there is none.
    pub fn size(&self) -> Result<u64, StoreError> {
        let meta = runtime().block_on(self.store.head(&self.path)).map_err(self.err("cannot read"))?;
        Ok(meta.size)
    }

    pub fn exists(&self) -> Result<bool, StoreError> {
        match self.size() {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The objects directly under this prefix, in name order.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let prefix = (!self.path.as_ref().is_empty()).then_some(&self.path);
        let found = runtime().block_on(self.store.list_with_delimiter(prefix)).map_err(self.err("cannot list"))?;
        let mut out: Vec<Listed> = found
            .objects
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_owned();
                Some(Listed { object: self.child(&name), name, size: m.size, modified: m.last_modified.timestamp() })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn delete(&self) -> Result<(), StoreError> {
        runtime().block_on(self.store.delete(&self.path)).map_err(self.err("cannot delete"))
    }

    /// A writer whose bytes become this object only when [`ObjectWriter::finish`] succeeds,
    /// replacing what is there.
    pub fn writer(&self) -> ObjectWriter {
        self.new_writer(false)
    }

    fn new_writer(&self, create: bool) -> ObjectWriter {
        ObjectWriter {
            obj: self.clone(),
            upload: None,
            buf: Vec::with_capacity(self.opts.part_size),
            inflight: VecDeque::new(),
            written: 0,
            done: false,
            create,
            first: Vec::new(),
        }
    }

    /// A writer whose bytes become this object only if no object has its name when
    /// [`ObjectWriter::finish`] completes it ([`StoreError::AlreadyExists`] otherwise): S3
    /// (`If-None-Match: *`) and `file://` decide at completion, atomically; GCS and Azure
    /// only for objects of one part, and by a check before the upload otherwise.
    pub fn creator(&self) -> ObjectWriter {
        self.new_writer(true)
    }

    /// Stores `bytes` as this object, in one request, only if no object has its name
    /// ([`StoreError::AlreadyExists`] otherwise).
    pub fn put_new(&self, bytes: Vec<u8>) -> Result<(), StoreError> {
        match self.put_create(PutPayload::from(bytes.clone())) {
            // An earlier attempt stored it, its answer lost: the object is these bytes.
            (Err(_), true) if self.holds(bytes.len() as u64, &bytes) => Ok(()),
            (put, _) => put,
        }
    }

    /// Is this object now `size` bytes that begin with `first`? How a request whose answer was
    /// lost tells that it was done (an upload completed, a header rewritten): the bytes
    /// compared hold what the writer made unique (a coffer image's random id and key slots).
    pub fn holds(&self, size: u64, first: &[u8]) -> bool {
        runtime().block_on(holds(self.store.as_ref(), &self.path, size, first))
    }

    /// The prefix `name/` under this prefix.
    pub fn sub_prefix(&self, name: &str) -> Self {
        let url = format!("{}{name}/", self.url);
        let path = self.path.clone().join(name);
        Self { store: Arc::clone(&self.store), s3: self.s3.clone(), path, url, opts: self.opts.clone() }
    }

    fn is_local(&self) -> bool {
        self.url.starts_with("file://")
    }

    /// A reader of the whole object, fetching ranges ahead in parallel.
    pub fn reader(&self) -> Result<ObjectReader, StoreError> {
        let size = self.size()?;
        Ok(self.range_reader(0, size))
    }

    /// A reader of the `len` bytes from `offset` (the object must hold them).
    pub fn range_reader(&self, offset: u64, len: u64) -> ObjectReader {
        ObjectReader {
            obj: self.clone(),
            size: len,
            next: offset,
            end: offset + len,
            pending: VecDeque::new(),
            cur: Vec::new(),
            pos: 0,
        }
    }

    /// The `buf.len()` bytes at `offset`, in one request.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StoreError> {
        let range = offset..offset + buf.len() as u64;
        let bytes = runtime().block_on(self.store.get_range(&self.path, range)).map_err(self.err("cannot read"))?;
        if bytes.len() != buf.len() {
            return Err(StoreError::Store {
                what: "cannot read",
                url: self.url.clone(),
                detail: format!("{} bytes asked at {offset}, {} came", buf.len(), bytes.len()),
            });
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }
}

/// [`Object::holds`], for the store's own requests.
async fn holds(store: &dyn ObjectStore, path: &ObjectPath, size: u64, first: &[u8]) -> bool {
    let len = first.len() as u64;
    if len == 0 || len > size {
        return len == 0 && store.head(path).await.is_ok_and(|m| m.size == size);
    }
    let opts = object_store::GetOptions { range: Some((0..len).into()), ..Default::default() };
    let Ok(got) = store.get_opts(path, opts).await else { return false };
    got.meta.size == size && got.bytes().await.is_ok_and(|b| b.as_ref() == first)
}

/// An object found under a prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    pub object: Object,
    /// Its name under the prefix.
    pub name: String,
    pub size: u64,
    /// Last modified, Unix seconds.
    pub modified: i64,
}

/// The kind of the HTTP failure under `e`, if it is one.
fn http_kind(e: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            return Some(h.kind());
        }
        cause = c.source();
    }
    None
}

/// The first line of an error and its causes, for a one-line report.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s.replace('\n', " ")
}

/// As an I/O error of kind Other: never `Interrupted`, which `write_all` and `read_exact` retry.
fn to_io(e: StoreError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Uploads a stream as one object: a single PUT if it fits in one part, else a multipart upload
/// with up to `concurrency` parts in flight. Nothing appears under the object's name until
/// [`ObjectWriter::finish`]; dropped unfinished (an error, an interrupt), it aborts the upload,
/// which removes the parts already sent.
pub struct ObjectWriter {
    obj: Object,
    upload: Option<Box<dyn MultipartUpload>>,
    buf: Vec<u8>,
    inflight: VecDeque<JoinHandle<object_store::Result<()>>>,
    written: u64,
    done: bool,
    /// Complete only if the name is free ([`Object::creator`]).
    create: bool,
    /// The first bytes written: an upload whose conditional completion is refused may have
    /// completed on an earlier attempt whose answer was lost; these bytes tell.
    first: Vec<u8>,
}

/// How many first bytes tell an object written by this writer from another's ([`Object::holds`]:
/// a coffer image's header holds its random 16-byte id at offset 24, and its key slots, each
/// with a random salt, in its first 64 KiB).
pub(crate) const FIRST_BYTES: usize = 64 << 10;

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter").field("url", &self.obj.url).field("written", &self.written).finish()
    }
}

impl ObjectWriter {
    fn send_part(&mut self) -> Result<(), StoreError> {
        if interrupted() {
            return Err(StoreError::Interrupted);
        }
        if self.upload.is_none() {
            let conditional = match self.create {
                true => create::start(&self.obj.store, self.obj.s3.as_ref(), self.obj.is_local(), &self.obj.path),
                false => None,
            };
            let up = match conditional {
                Some(started) => started,
                None => runtime().block_on(self.obj.store.put_multipart(&self.obj.path)),
            };
            self.upload = Some(up.map_err(self.obj.err(UPLOAD))?);
        }
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(self.obj.opts.part_size));
        let fut = self.upload.as_mut().expect("started").put_part(PutPayload::from(part));
        self.inflight.push_back(runtime().spawn(fut));
        while self.inflight.len() >= self.obj.opts.concurrency.max(1) {
            self.wait_one()?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), StoreError> {
        let Some(h) = self.inflight.pop_front() else { return Ok(()) };
        let r = runtime().block_on(h).map_err(|e| StoreError::Usage(format!("upload task: {e}")))?;
        r.map_err(self.obj.err(UPLOAD))
    }

    /// Completes the object; returns its size.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        if interrupted() {
            return Err(StoreError::Interrupted);
        }
        let completed = if self.upload.is_none() {
            let body = PutPayload::from(std::mem::take(&mut self.buf));
            match self.create {
                true => self.obj.put_create(body).0,
                false => runtime()
                    .block_on(self.obj.store.put(&self.obj.path, body))
                    .map(|_| ())
                    .map_err(self.obj.err(UPLOAD)),
            }
        } else {
            if !self.buf.is_empty() {
                self.send_part()?;
            }
            while !self.inflight.is_empty() {
                self.wait_one()?;
            }
            let up = self.upload.as_mut().expect("started");
            runtime().block_on(up.complete()).map(|_| ()).map_err(self.obj.err(COMPLETE))
        };
        match completed {
            Ok(()) => {}
            // A retried request whose first attempt succeeded (its answer lost) finds its own
            // object there, as "already exists" or as any refusal (S3: no such upload any more;
            // some stores: access denied): the object tells.
            Err(StoreError::AlreadyExists(_) | StoreError::Store { .. })
                if self.create && self.obj.holds(self.written, &self.first) => {}
            Err(e) => return Err(e),
        }
        self.done = true;
        Ok(self.written)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.obj.opts.part_size - self.buf.len();
        let n = data.len().min(room);
        if self.first.len() < FIRST_BYTES {
            let more = (FIRST_BYTES - self.first.len()).min(n);
            self.first.extend_from_slice(&data[..more]);
        }
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == self.obj.opts.part_size {
            self.send_part().map_err(to_io)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for h in self.inflight.drain(..) {
            h.abort();
        }
        if let Some(up) = self.upload.as_mut() {
            let _ = runtime().block_on(up.abort());
        }
    }
}

/// Reads an object (or a range of it) front to back, `concurrency` ranges of `part_size`
/// fetched ahead.
pub struct ObjectReader {
    obj: Object,
    size: u64,
    /// Where the next range to fetch starts, and where the reader stops.
    next: u64,
    end: u64,
    pending: VecDeque<JoinHandle<object_store::Result<Vec<u8>>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader").field("url", &self.obj.url).field("size", &self.size).finish()
    }
}

impl ObjectReader {
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn fetch_ahead(&mut self) {
        while self.pending.len() < self.obj.opts.concurrency.max(1) && self.next < self.end {
            let end = (self.next + self.obj.opts.part_size as u64).min(self.end);
            let (store, path) = (Arc::clone(&self.obj.store), self.obj.path.clone());
            let range = self.next..end;
            self.pending.push_back(runtime().spawn(async move {
                let bytes = store.get_range(&path, range.clone()).await?;
                if bytes.len() as u64 != range.end - range.start {
                    return Err(object_store::Error::Generic {
                        store: "coffer",
                        source: format!("a range of {} bytes came back with {}", range.end - range.start, bytes.len())
                            .into(),
                    });
                }
                Ok(bytes.to_vec())
            }));
            self.next = end;
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            if interrupted() {
                return Err(to_io(StoreError::Interrupted));
            }
            self.fetch_ahead();
            let Some(h) = self.pending.pop_front() else { return Ok(0) };
            let r = runtime().block_on(h).map_err(|e| io::Error::other(format!("download task: {e}")))?;
            self.cur = r.map_err(|e| to_io(self.obj.err("cannot read")(e)))?;
            self.pos = 0;
            self.fetch_ahead();
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        for h in self.pending.drain(..) {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path, name: &str, opts: &StoreOptions) -> Object {
        Object::open(&format!("file://{}/{name}", dir.display()), opts).unwrap()
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("s3://b/k") && is_url("gs://b/k") && is_url("az://c/k") && is_url("file:///tmp/x"));
        assert!(!is_url("/tmp/x") && !is_url("-") && !is_url("s3:/b") && !is_url("http://x"));
        assert!(matches!(Object::open("nope://b/k", &StoreOptions::default()), Err(StoreError::BadUrl(_))));
    }

    #[test]
    fn round_trips_through_parts_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { part_size: 5 << 20, concurrency: 3, ..StoreOptions::default() };
        let data: Vec<u8> = (0..(17 << 20) + 123).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        for len in [0, 1, 5 << 20, data.len()] {
            let obj = local(dir.path(), &format!("o{len}"), &opts);
            let mut w = obj.writer();
            for piece in data[..len].chunks(1_000_003) {
                w.write_all(piece).unwrap();
            }
            assert!(!obj.exists().unwrap(), "nothing visible before finish");
            assert_eq!(w.finish().unwrap(), len as u64);
            let mut back = Vec::new();
            let mut r = obj.reader().unwrap();
            assert_eq!(r.len(), len as u64);
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, &data[..len]);
            let prefix = Object::open(&format!("file://{}/", dir.path().display()), &opts).unwrap();
            assert!(prefix.list().unwrap().iter().any(|l| l.name == format!("o{len}") && l.size == len as u64));
            if len > 10 {
                let mut mid = Vec::new();
                obj.range_reader(3, len as u64 - 10).read_to_end(&mut mid).unwrap();
                assert_eq!(mid, &data[3..len - 7]);
                let mut b = [0u8; 5];
                obj.read_exact_at(&mut b, 5).unwrap();
                assert_eq!(b, data[5..10]);
                assert!(obj.read_exact_at(&mut b, len as u64 - 2).is_err());
            }
        }
    }

    #[test]
    fn heads_are_replaced_and_a_changed_object_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { part_size: 5 << 20, concurrency: 2, ..StoreOptions::default() };
        let obj = local(dir.path(), "img", &opts);
        let data: Vec<u8> = (0..(11 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let mut w = obj.writer();
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        let head = obj.read_head(16).unwrap();
        assert_eq!((head.bytes.as_slice(), head.size), (&data[..16], data.len() as u64));
        assert!(obj.replace_head(&head, b"short").is_err(), "lengths must match");
        let done = obj.replace_head(&head, &[0xAA; 16]).unwrap();
        // No server-side copy here: streamed through.
        assert_eq!(done, Replaced { uploaded: data.len() as u64, copied_by_server: 0 });
        let mut back = Vec::new();
        obj.reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back[..16], [0xAA; 16]);
        assert!(back[16..] == data[16..]);
        // `head` was read from the object as it was: refused now, nothing changed.
        std::thread::sleep(Duration::from_millis(20));
        let stale = obj.replace_head(&head, &[0xBB; 16]);
        assert!(matches!(stale, Err(StoreError::Store { .. })), "{stale:?}");
        let mut again = Vec::new();
        obj.reader().unwrap().read_to_end(&mut again).unwrap();
        assert!(again == back);
    }

    #[test]
    fn an_unfinished_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { part_size: 5 << 20, concurrency: 2, ..StoreOptions::default() };
        let obj = local(dir.path(), "gone", &opts);
        let mut w = obj.writer();
        w.write_all(&vec![7u8; 12 << 20]).unwrap();
        drop(w);
        assert!(!obj.exists().unwrap());
        assert!(matches!(obj.reader(), Err(StoreError::NotFound(_))));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_object_is_told_by_its_size_and_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let obj = local(dir.path(), "h", &StoreOptions::default());
        assert!(!obj.holds(3, b"abc"), "no object");
        obj.put(b"abcdef".to_vec()).unwrap();
        assert!(obj.holds(6, b"abc") && obj.holds(6, b"abcdef") && obj.holds(6, b""));
        assert!(!obj.holds(5, b"abc") && !obj.holds(6, b"abd") && !obj.holds(6, b"abcdefg"));
    }

    #[test]
    fn a_creator_never_replaces_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { part_size: 5 << 20, concurrency: 2, ..StoreOptions::default() };
        for len in [10usize, 12 << 20] {
            let obj = local(dir.path(), &format!("x{len}"), &opts);
            // Two uploads under one name, started together: the first to complete wins.
            let (mut a, mut b) = (obj.creator(), obj.creator());
            a.write_all(&vec![1u8; len]).unwrap();
            b.write_all(&vec![2u8; len]).unwrap();
            assert_eq!(a.finish().unwrap(), len as u64);
            assert!(matches!(b.finish(), Err(StoreError::AlreadyExists(_))));
            let mut back = Vec::new();
            obj.reader().unwrap().read_to_end(&mut back).unwrap();
            assert!(back.iter().all(|b| *b == 1) && back.len() == len);
            // An overwriting writer still replaces.
            let mut c = obj.writer();
            c.write_all(b"new").unwrap();
            c.finish().unwrap();
            assert_eq!(obj.size().unwrap(), 3);
            assert!(matches!(obj.put_new(b"again".to_vec()), Err(StoreError::AlreadyExists(_))));
        }
        // Nothing but the objects is left: no staging file of the refused uploads.
        let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["x10", "x12582912"]);
    }
}
