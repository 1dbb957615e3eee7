//! Images in object storage: the options of this run, and the adapters between objects and the
//! image reader and writer.

use crate::cli::StoreArgs;
use anyhow::{Context, Result};
use coffer_store::{Object, StoreOptions};
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

static OPTIONS: OnceLock<StoreOptions> = OnceLock::new();

/// Takes this run's object storage options (once, before any command runs).
pub fn configure(args: &StoreArgs) {
    let _ = OPTIONS.set(StoreOptions {
        endpoint: args.s3_endpoint.clone().filter(|e| !e.is_empty()),
        concurrency: args.upload_concurrency.max(1),
        part_size: args.part_size as usize,
        retry_timeout: Duration::from_secs(args.store_retry_timeout),
    });
}

fn options() -> StoreOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

/// The object `path` names, if it is an object URL.
pub fn object(path: &Path) -> Result<Option<Object>> {
    let Some(url) = path.to_str().filter(|s| coffer_store::is_url(s)) else { return Ok(None) };
    Ok(Some(Object::open(url, &options())?))
}

/// An object read at any offset, for reads through the index.
#[derive(Debug)]
pub struct ObjectAccess {
    pub object: Object,
    pub len: u64,
}

impl coffer_image::RandomAccess for ObjectAccess {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.object.read_exact_at(buf, offset).map_err(std::io::Error::other)
    }
    fn range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.object.range_reader(offset, len)))
    }
}

/// Opens an image through its index: a file, or an object (ranged reads of its header, index
/// and the entries asked for).
pub fn open_indexed(path: &Path, keys: &[coffer_crypto::Unlock]) -> Result<coffer_image::IndexedImage> {
    match object(path)? {
        Some(object) => {
            let len = object.size().with_context(|| format!("cannot open {}", path.display()))?;
            Ok(coffer_image::IndexedImage::open_with(Box::new(ObjectAccess { object, len }), path, keys)?)
        }
        None => Ok(coffer_image::IndexedImage::open(path, keys)?),
    }
}

/// Stops object transfers at the first SIGINT or SIGTERM, so that an upload is aborted (no parts
/// left behind) on the way out; a second signal ends the process at once.
pub fn abort_on_signals() {
    extern "C" fn on_signal(_: nix::libc::c_int) {
        coffer_store::interrupt();
    }
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESETHAND, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}
