//! Images in object storage: the options of this run, and the adapters between objects and the
//! image reader and writer.

use crate::cli::StoreArgs;
use anyhow::Result;
use coffer_store::{Object, StoreOptions};
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

/// This run's object storage options.
pub fn options() -> StoreOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

/// The object `path` names, if it is an object URL.
pub fn object(path: &Path) -> Result<Option<Object>> {
    let Some(url) = path.to_str().filter(|s| coffer_store::is_url(s)) else { return Ok(None) };
    Ok(Some(Object::open(url, &options())?))
}

/// Stops object transfers at the first SIGINT or SIGTERM (see `coffer::store`).
pub fn abort_on_signals() {
    coffer::store::abort_on_signals();
}
