//! Images in object storage: the adapters between objects and the image reader.

use crate::error::{Context, Error, Result};
use coffer_image::ImageError;
use coffer_store::{Object, StoreError};
use std::io::Read;
use std::path::Path;

/// An object read at any offset, for reads through the index.
#[derive(Debug)]
pub struct ObjectAccess {
    /// The object.
    pub object: Object,
    /// Its size.
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

/// Opens an image object through its index (ranged reads of its header, index and the entries
/// asked for); `shown` names it in messages.
pub fn open_indexed_object(
    object: Object,
    shown: &Path,
    keys: &[coffer_crypto::Unlock],
) -> Result<coffer_image::IndexedImage> {
    let len = object.size().with_context(|| format!("cannot open {}", shown.display()))?;
    Ok(coffer_image::IndexedImage::open_with(Box::new(ObjectAccess { object, len }), shown, keys)?)
}

/// What a store's answer says that no wait or retry cures: access refused, no such bucket.
/// (object_store says 403 and 401 in these words; coffer-store says "access denied" for them,
/// and a bucket that is not there.)
pub(crate) const LASTING: [&str; 4] =
    ["lacked the necessary privileges", "lacked valid authentication", "access denied", "no such bucket"];

/// The object store's error that caused `e`, under any context, or under the I/O error of an
/// image read through its index.
pub(crate) fn store_error(e: &Error) -> Option<&StoreError> {
    match e {
        Error::Other(inner) => inner.downcast_ref(),
        Error::Context { source, .. } => store_error(source),
        Error::Image(ImageError::Io { source, .. }) => source.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// Is `e` the store refusing what was asked (access denied, no such bucket, no such object),
/// which asking again, for this or another part of the job, only hears again?
pub(crate) fn refused_for_good(e: &Error) -> bool {
    match store_error(e) {
        Some(StoreError::NotFound(_)) => true,
        Some(refused) => {
            let text = refused.to_string();
            LASTING.iter().any(|m| text.contains(m))
        }
        None => false,
    }
}

/// Stops object transfers at the first SIGINT or SIGTERM, so that an upload is aborted (no parts
/// left behind) on the way out; a second signal ends the process at once. Only when the
/// settings ask for it ([`crate::Env::abort_uploads_on_signals`]): a library does not take
/// over its program's signals unasked.
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
