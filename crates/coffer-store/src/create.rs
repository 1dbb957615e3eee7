//! Uploads that create an object only if none is there, for stores whose multipart uploads
//! cannot say so through `object_store` (its multipart completion always overwrites).
//!
//! - S3: the parts go through `object_store`'s low-level multipart API, and the completion is
//!   sent here with `If-None-Match: *` (S3, MinIO and R2 refuse it with 412 when the key
//!   exists; two racing uploads: the first to complete wins).
//! - `file://`: the parts go to a private name beside the object, which is then linked to the
//!   object's name only if that name is free (a hard link: atomic, never replacing).
//!
//! Other stores (GCS, Azure) check that the name is free before the upload, as before: a race
//! the later upload can still win there (docs/SECURITY.md says so).

use crate::s3copy::S3Direct;
use crate::{runtime, StoreError, UPLOAD};
use async_trait::async_trait;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, PutResult, UploadPart};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A multipart upload to S3 that completes only if the key is free.
#[derive(Debug)]
pub(crate) struct S3Create {
    direct: Arc<S3Direct>,
    path: ObjectPath,
    id: MultipartId,
    /// The parts' ids, by index, as their uploads finish.
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
}

impl S3Create {
    pub(crate) async fn start(direct: Arc<S3Direct>, path: ObjectPath) -> object_store::Result<Self> {
        let id = direct.s3.create_multipart(&path).await?;
        Ok(Self { direct, path, id, parts: Arc::default() })
    }
}

#[async_trait]
impl MultipartUpload for S3Create {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let idx = {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            parts.push(None);
            parts.len() - 1
        };
        let (s3, path, id, parts) =
            (Arc::clone(&self.direct.s3), self.path.clone(), self.id.clone(), self.parts.clone());
        Box::pin(async move {
            let part = s3.put_part(&path, &id, idx, data).await?;
            parts.lock().unwrap_or_else(|e| e.into_inner())[idx] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts: Option<Vec<String>> = {
            let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            parts.iter().map(|p| p.as_ref().map(|p| p.content_id.clone())).collect()
        };
        let generic = |source: String| object_store::Error::Generic { store: "S3", source: source.into() };
        let parts = parts.ok_or_else(|| generic("CompleteMultipartUpload: a part was not uploaded".into()))?;
        test_pause().await;
        match self.direct.complete_if_absent(self.path.as_ref(), &self.id, &parts).await {
            Ok(()) => Ok(PutResult { e_tag: None, version: None, extensions: Default::default() }),
            Err(crate::s3copy::Completion::Exists) => {
                Err(object_store::Error::AlreadyExists { path: self.path.to_string(), source: "412".into() })
            }
            Err(crate::s3copy::Completion::Failed(why)) => Err(generic(why)),
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.direct.s3.abort_multipart(&self.path, &self.id).await
    }
}

/// A multipart upload to a local file system that links the object into place only if its
/// name is free.
#[derive(Debug)]
pub(crate) struct LocalCreate {
    store: Arc<dyn ObjectStore>,
    staging: ObjectPath,
    path: ObjectPath,
    upload: Box<dyn MultipartUpload>,
}

impl LocalCreate {
    pub(crate) async fn start(store: Arc<dyn ObjectStore>, path: ObjectPath) -> object_store::Result<Self> {
        let name = path.filename().unwrap_or("object");
        // Not `*.coffer`: listings never take it for a backup while it is written.
        let staging_name = format!(".{name}.coffer-upload-{:016x}", rand_u64());
        let staging = path.parent().unwrap_or_default().join(staging_name.as_str());
        let upload = object_store::ObjectStoreExt::put_multipart(store.as_ref(), &staging).await?;
        Ok(Self { store, staging, path, upload })
    }
}

#[async_trait]
impl MultipartUpload for LocalCreate {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let done = self.upload.complete().await?;
        test_pause().await;
        let opts =
            object_store::RenameOptions { target_mode: object_store::RenameTargetMode::Create, ..Default::default() };
        match self.store.rename_opts(&self.staging, &self.path, opts).await {
            Ok(()) => Ok(done),
            Err(e) => {
                let _ = self.store.delete(&self.staging).await;
                Err(e)
            }
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let aborted = self.upload.abort().await;
        let _ = self.store.delete(&self.staging).await;
        aborted
    }
}

impl crate::Object {
    /// A PUT that creates the object only if the name is free (`If-None-Match: *`), sent again
    /// when its answer is lost (a reset, a timeout), which `object_store` does not do for a
    /// conditional PUT: the condition makes it safe. Says whether it was sent more than once
    /// (then "already exists" may be this very PUT).
    pub(crate) fn put_create(&self, body: PutPayload) -> (Result<(), StoreError>, bool) {
        let started = std::time::Instant::now();
        let (window, mut wait) = (self.opts.retry_timeout + self.opts.timeout, Duration::from_millis(100));
        for attempt in 0.. {
            let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
            let put = runtime().block_on(self.store.put_opts(&self.path, body.clone(), opts));
            match put {
                Err(e) if answer_lost(&e) && attempt < self.opts.retries && started.elapsed() + wait < window => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(15));
                }
                put => return (put.map(|_| ()).map_err(self.err(UPLOAD)), attempt > 0),
            }
        }
        unreachable!("the loop returns")
    }
}

/// Was the request sent and its answer lost (a reset, a timeout), rather than refused?
fn answer_lost(e: &object_store::Error) -> bool {
    use object_store::client::HttpErrorKind;
    matches!(crate::http_kind(e), Some(HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Unknown))
}

/// The tests hold a completion back, to see another upload to the same name win.
async fn test_pause() {
    if let Some(ms) = std::env::var("COFFER_TEST_PAUSE_BEFORE_CREATE_MS").ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// A random number for private names (not a secret).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// Starts a multipart upload that creates `path` only if it is free, where the store allows;
/// `None` where it does not (the caller falls back to an overwriting upload).
pub(crate) fn start(
    store: &Arc<dyn ObjectStore>,
    direct: Option<&Arc<S3Direct>>,
    local: bool,
    path: &ObjectPath,
) -> Option<object_store::Result<Box<dyn MultipartUpload>>> {
    if let Some(direct) = direct {
        let started = runtime().block_on(S3Create::start(Arc::clone(direct), path.clone()));
        return Some(started.map(|u| Box::new(u) as Box<dyn MultipartUpload>));
    }
    local.then(|| {
        runtime()
            .block_on(LocalCreate::start(Arc::clone(store), path.clone()))
            .map(|u| Box::new(u) as Box<dyn MultipartUpload>)
    })
}
