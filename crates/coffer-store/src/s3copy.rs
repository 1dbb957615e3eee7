//! Replacing the first bytes of an S3 object without moving the rest through this host.
//!
//! A multipart upload to the object's own key: part 1 is uploaded (the new bytes, followed by
//! the object's next bytes up to S3's 5 MiB minimum part size), every other part is copied by
//! the server from the object itself (`UploadPartCopy`, each copy conditional on the object's
//! ETag), and the upload is completed only if the object is still the one that was read
//! (`If-Match`). Until then the old object stays whole; on any failure the upload is aborted.
//!
//! `object_store` has no `UploadPartCopy`, so these requests are made here, signed with
//! `object_store`'s own SigV4 signer and sent with its HTTP client.

use futures_util::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use std::sync::Arc;
use std::time::Duration;

/// S3's smallest part (every part but the last).
pub const MIN_PART: u64 = 5 << 20;
/// S3's largest part, and its most parts per upload.
const MAX_PART: u64 = 5 << 30;
const MAX_PARTS: u64 = 10_000;
/// Copied parts are large: each is one request, and the server copies its bytes internally.
const COPY_PART: u64 = 256 << 20;

/// What server-side requests need beyond the `ObjectStore` interface.
#[derive(Debug)]
pub struct S3Direct {
    pub s3: Arc<AmazonS3>,
    /// `https://s3.REGION.amazonaws.com/BUCKET`, or the endpoint given, without a trailing '/'.
    pub bucket_url: String,
    pub bucket: String,
    pub region: String,
    pub client: HttpClient,
    /// Parts copied at once.
    pub concurrency: usize,
    /// How long a request is retried.
    pub retry_for: Duration,
    /// How many times a request is sent again.
    pub retries: usize,
}

/// A failed request: its step and the server's answer, on one line.
pub type Failure = String;

/// Bytes of a key as they go in a URL path (S3 keeps '/' as is).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The text of the first `<name>` element of an XML answer, unescaped.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Why a conditional completion did not complete.
#[derive(Debug)]
pub enum Completion {
    /// The key exists (perhaps by this very upload, if an earlier attempt's answer was lost).
    Exists,
    /// Any other refusal, in one line.
    Failed(Failure),
}

/// The body of a CompleteMultipartUpload: the parts' ETags, numbered from 1.
fn completion_body(etags: &[String]) -> Vec<u8> {
    let mut body = String::from("<CompleteMultipartUpload>");
    for (n, e) in etags.iter().enumerate() {
        body.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", n + 1, xml_escape(e)));
    }
    body.push_str("</CompleteMultipartUpload>");
    body.into_bytes()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// How the parts after the first are cut: as few as S3 allows comfortably, at most
/// [`MAX_PARTS`] - 1 of at most [`MAX_PART`].
pub fn copy_ranges(from: u64, size: u64) -> Vec<std::ops::Range<u64>> {
    let rest = size.saturating_sub(from);
    let part = copy_part().max(rest.div_ceil(MAX_PARTS - 1)).min(MAX_PART);
    (from..size).step_by(part as usize).map(|s| s..(s + part).min(size)).collect()
}

/// [`COPY_PART`]; the tests copy smaller parts (at least S3's least), to fail a copy half-way
/// through a rotation of a small image.
fn copy_part() -> u64 {
    let knob = std::env::var("COFFER_TEST_COPY_PART_BYTES").ok().and_then(|v| v.parse::<u64>().ok());
    knob.map_or(COPY_PART, |n| n.max(MIN_PART))
}

impl S3Direct {
    fn url(&self, key: &str, query: &str) -> String {
        format!("{}/{}?{query}", self.bucket_url, encode_key(key))
    }

    /// Signs and sends one request; retries what S3 says to retry (5xx, 429, a lost
    /// connection) with backoff for up to `retry_for`.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(http::HeaderMap, String), Failure> {
        self.send_status(what, method, url, headers, body).await.map_err(|(_, why)| why)
    }

    /// As [`S3Direct::send`], with the status of a refused request.
    async fn send_status(
        &self,
        what: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(http::HeaderMap, String), (StatusCode, Failure)> {
        let retry_for = self.retry_for;
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            let local = |e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, format!("{what}: {e}"));
            let credential = self.s3.credentials().get_credential().await.map_err(|e| local(&e))?;
            let mut req = Request::builder().method(method.clone()).uri(url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let mut req: HttpRequest = req.body(HttpRequestBody::from(body.clone())).map_err(|e| local(&e))?;
            AwsAuthorizer::new(&credential, "s3", &self.region).try_authorize(&mut req, None).map_err(|e| local(&e))?;
            let (status, text): (StatusCode, String) = match self.client.execute(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let (parts, body) = resp.into_parts();
                    let text = body.bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned());
                    match text {
                        // S3 may answer 200 to a copy or a completion and report the error in the body.
                        Ok(t) if status.is_success() && !t.contains("<Error>") => return Ok((parts.headers, t)),
                        Ok(t) => (status, t),
                        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
                    }
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
            };
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            tries += 1;
            if !transient || tries > self.retries || started.elapsed() + wait > retry_for {
                let reason = match (xml_text(&text, "Code"), xml_text(&text, "Message")) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c,
                    _ => text.lines().next().unwrap_or_default().to_owned(),
                };
                // Said as the store's other refusals are (`Object::err`): no retry cures it.
                let denied = match status {
                    StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "access denied: ",
                    _ => "",
                };
                return Err((status, format!("{what}: {denied}{status} {reason}")));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Rewrites `key` (`size` bytes, ETag `etag`) as `first` followed by the object's bytes from
    /// `first.len()`, copied server side. Returns the number of bytes copied by the server.
    pub async fn replace_prefix(&self, key: &str, size: u64, etag: &str, first: Vec<u8>) -> Result<u64, Failure> {
        let (_, answer) =
            self.send("CreateMultipartUpload", Method::POST, &self.url(key, "uploads="), &[], vec![]).await?;
        let upload = xml_text(&answer, "UploadId").ok_or("CreateMultipartUpload: no UploadId in the answer")?;
        let upload_q = format!("uploadId={}", encode_key(&upload));
        let result = self.parts(key, size, etag, first, &upload_q).await;
        match result {
            Ok(copied) => Ok(copied),
            Err(e) => {
                let _ = self.send("AbortMultipartUpload", Method::DELETE, &self.url(key, &upload_q), &[], vec![]).await;
                Err(e)
            }
        }
    }

    /// Completes the upload `id` of `key` (parts' ETags in order) only if `key` does not exist
    /// (`If-None-Match: *`).
    pub async fn complete_if_absent(&self, key: &str, id: &str, etags: &[String]) -> Result<(), Completion> {
        let url = self.url(key, &format!("uploadId={}", encode_key(id)));
        let headers = [("if-none-match", "*".to_owned()), ("content-type", "application/xml".to_owned())];
        match self.send_status("CompleteMultipartUpload", Method::POST, &url, &headers, completion_body(etags)).await {
            Ok(_) => Ok(()),
            // 412: the key exists. 409 (a conflicting write) and 404 (no such upload: completed
            // already, when an earlier attempt's answer was lost) may be ours or another's:
            // the caller tells by the object's bytes.
            Err((s, _))
                if [StatusCode::PRECONDITION_FAILED, StatusCode::CONFLICT, StatusCode::NOT_FOUND].contains(&s) =>
            {
                Err(Completion::Exists)
            }
            Err((_, why)) => Err(Completion::Failed(why)),
        }
    }

    async fn parts(&self, key: &str, size: u64, etag: &str, first: Vec<u8>, upload_q: &str) -> Result<u64, Failure> {
        let ranges = copy_ranges(first.len() as u64, size);
        // The new header and what follows it: what the object begins with once rewritten.
        let head = first[..first.len().min(crate::FIRST_BYTES)].to_vec();
        let source = format!("/{}/{}", self.bucket, encode_key(key));
        let first_etag = async {
            let url = self.url(key, &format!("partNumber=1&{upload_q}"));
            let (headers, _) = self.send("UploadPart", Method::PUT, &url, &[], first).await?;
            let etag = headers.get("etag").and_then(|v| v.to_str().ok());
            etag.map(str::to_owned).ok_or_else(|| "UploadPart: no ETag in the answer".to_owned())
        };
        let copies = futures_util::stream::iter(ranges.iter().enumerate().map(|(i, r)| {
            let url = self.url(key, &format!("partNumber={}&{upload_q}", i + 2));
            let headers = vec![
                ("x-amz-copy-source", source.clone()),
                ("x-amz-copy-source-range", format!("bytes={}-{}", r.start, r.end - 1)),
                ("x-amz-copy-source-if-match", etag.to_owned()),
            ];
            async move {
                if crate::interrupted() {
                    return Err("interrupted by a signal".to_owned());
                }
                let (_, answer) = self.send("UploadPartCopy", Method::PUT, &url, &headers, vec![]).await?;
                xml_text(&answer, "ETag").ok_or_else(|| "UploadPartCopy: no ETag in the answer".to_owned())
            }
        }))
        .buffered(self.concurrency.max(1))
        .try_collect::<Vec<String>>();
        let (first_etag, copied) = futures_util::future::try_join(first_etag, copies).await?;
        // The tests replace the object meanwhile, to see the completion refused.
        if let Some(ms) = std::env::var("COFFER_TEST_PAUSE_BEFORE_COMPLETE_MS").ok().and_then(|v| v.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if crate::interrupted() {
            return Err("interrupted by a signal".to_owned());
        }
        let etags: Vec<String> = std::iter::once(first_etag).chain(copied).collect();
        let url = self.url(key, upload_q);
        let headers = [("if-match", etag.to_owned()), ("content-type", "application/xml".to_owned())];
        let completed =
            self.send("CompleteMultipartUpload", Method::POST, &url, &headers, completion_body(&etags)).await;
        match completed {
            Ok(_) => {}
            // An earlier attempt may have completed it, its answer lost: the retry is refused
            // (the ETag changed, the upload is gone). The object tells whose it is now.
            Err(_) if crate::holds(self.s3.as_ref(), &object_path(key), size, &head).await => {}
            Err(e) => return Err(e),
        }
        Ok(ranges.iter().map(|r| r.end - r.start).sum())
    }
}

/// The object path of `key`, as `Object::open` parses keys.
fn object_path(key: &str) -> object_store::path::Path {
    object_store::path::Path::parse(key).unwrap_or_else(|_| object_store::path::Path::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_key("prod/2026-11-24T08-00-00Z.coffer"), "prod/2026-11-24T08-00-00Z.coffer");
        assert_eq!(encode_key("a b+c%"), "a%20b%2Bc%25");
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn xml_answers_are_read() {
        let copy = "<?xml version=\"1.0\"?><CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_text(copy, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(xml_text("<a><UploadId>u-1</UploadId></a>", "UploadId").as_deref(), Some("u-1"));
        assert_eq!(xml_text("<a><UploadId>u-1</a>", "UploadId"), None);
        assert_eq!(xml_escape("\"a&b\""), "&quot;a&amp;b&quot;");
    }

    #[test]
    fn copies_are_cut_within_s3_limits() {
        let ranges = copy_ranges(MIN_PART, 1 << 30);
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].start, MIN_PART);
        assert_eq!(ranges.last().unwrap().end, 1 << 30);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        // 5 TB, S3's largest object: under 10,000 parts, none over 5 GiB.
        let huge = copy_ranges(MIN_PART, 5 << 40);
        assert!(huge.len() < MAX_PARTS as usize);
        assert!(huge.iter().all(|r| r.end - r.start <= MAX_PART));
        assert!(copy_ranges(MIN_PART, MIN_PART).is_empty());
    }
}
