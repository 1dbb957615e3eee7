//! Images in object storage: the options of this run.

use crate::cli::StoreArgs;
use coffer_store::StoreOptions;
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
        retries: args.store_retries,
        timeout: Duration::from_secs(args.store_timeout),
    });
}

/// This run's object storage options.
pub fn options() -> StoreOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}
