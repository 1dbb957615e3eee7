//! A store outage while following the server: the segment that could not be stored is held in
//! memory (it is bounded by the segment size) and its store retried, with waits growing from
//! [`FIRST_WAIT`] to [`LAST_WAIT`], while reading from the server pauses (the server keeps its
//! logs; what it sent meanwhile waits in the connection). One warning when the outage starts,
//! one when it ends.

use super::{seal, stopping, ArchiveSpec, Open, Run, Source, REPORT_EVERY};
use crate::error::{exit, Error, Result};
use crate::report::ArchivePhase;
use crate::store::{store_error, LASTING};
use crate::Env;
use coffer_store::StoreError;
use std::time::{Duration, Instant};

/// The first wait before a held segment's store is tried again (doubled after each failed
/// attempt, up to the last). The store's own retries (`--store-retries`) come first, inside
/// each attempt.
const FIRST_WAIT: Duration = Duration::from_secs(5);
const LAST_WAIT: Duration = Duration::from_secs(60);

/// Is `e`, a failure to store a segment under `prefix`, one that waiting may cure: an object
/// store that errs, stalls or cannot be reached? Not: a refusal (access denied, no such bucket:
/// a configuration to fix, better said by a run that ends, which a supervisor reports), a
/// local file system (`file://`: a full disk ends the run as any job's does), nor a failure of
/// the sealing itself (keys, usage).
pub(super) fn passing(prefix: &str, e: &Error) -> bool {
    if prefix.starts_with("file://") || e.exit_code() != exit::FAILURE {
        return false;
    }
    // A prefix that does not exist is a bucket that does not (a prefix with no object lists
    // empty).
    if matches!(store_error(e), Some(StoreError::NotFound(_))) {
        return false;
    }
    let text = e.one_line();
    !LASTING.iter().any(|m| text.contains(m)) && !refused(&text)
}

/// Does the store's answer in `text` refuse the request itself: a status 4xx other than 408
/// (timeout) and 429 (too many requests)? (object_store says "status code: 404 Not Found".)
fn refused(text: &str) -> bool {
    text.match_indices("status code: ").any(|(at, m)| {
        let code: u16 = text[at + m.len()..].chars().take(3).collect::<String>().parse().unwrap_or(0);
        (400..500).contains(&code) && code != 408 && code != 429
    })
}

/// Stores `seg` ([`seal`]); following, through an outage of the store: the segment is held and
/// its store tried again until it succeeds, a lasting refusal ends the run, or a stop is asked
/// for (then the error says what was not stored). Failed, `seg` holds no events any more.
pub(super) fn store(
    spec: &ArchiveSpec,
    seg: &mut Open,
    source: &Source,
    run: &mut Run,
    env: &Env,
) -> Result<(u64, u64)> {
    let mut outage: Option<(Instant, u32)> = None;
    let mut wait = FIRST_WAIT;
    loop {
        let e = match seal(spec, seg, source, env) {
            Ok(stored) => {
                if let Some((since, attempts)) = outage {
                    env.report.warn(&format!(
                        "the store answers again: stored {} {}..{}, held for {} s ({} attempts); archiving on",
                        seg.name.file,
                        seg.name.start,
                        seg.name.end,
                        since.elapsed().as_secs(),
                        attempts + 1
                    ));
                    run.state.phase = ArchivePhase::Streaming;
                    run.state.unstored_bytes = 0;
                }
                // The outage is over: its error no longer says why anything fails.
                run.state.last_error = None;
                return Ok(stored);
            }
            Err(e) => e,
        };
        let held = seg.bytes.len() as u64;
        if !spec.follow || stopping(spec) || !passing(&spec.prefix, &e) {
            seg.bytes = Vec::new();
            run.state.unstored_bytes = 0;
            return Err(match outage {
                Some((since, _)) if stopping(spec) => e.context(format!(
                    "stopped in a store outage of {} s: {} {}..{} ({held} bytes of events) not stored",
                    since.elapsed().as_secs(),
                    seg.name.file,
                    seg.name.start,
                    seg.name.end
                )),
                _ => e,
            });
        }
        let attempts = match &mut outage {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                env.report.warn(&format!(
                    "{}; holding {} {}..{} ({held} bytes) and trying again, from every {} s up to every {} s; \
                     reading from the server paused",
                    e.one_line(),
                    seg.name.file,
                    seg.name.start,
                    seg.name.end,
                    FIRST_WAIT.as_secs(),
                    LAST_WAIT.as_secs()
                ));
                outage.insert((Instant::now(), 1)).1
            }
        };
        run.state.phase = ArchivePhase::StoreOutage;
        run.state.last_error = Some(format!("{} (attempt {attempts})", e.one_line()));
        run.state.unstored_bytes = held;
        run.report(None, env);
        pause(spec, wait, run, env);
        wait = (wait * 2).min(LAST_WAIT);
    }
}

/// Waits `wait`, in slices: the state goes on being reported (the loop is alive, a watchdog is
/// fed), and a stop is heard.
fn pause(spec: &ArchiveSpec, wait: Duration, run: &mut Run, env: &Env) {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if stopping(spec) {
            return;
        }
        std::thread::sleep(left.min(REPORT_EVERY));
        run.tick(None, env);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive under `prefix`, and a segment of 1000 bytes to store there.
    fn segment_for(prefix: String) -> (ArchiveSpec, Open, Source) {
        let key = coffer_crypto::MasterKey::from_hex(&"01".repeat(32)).unwrap();
        let spec = ArchiveSpec {
            server: Default::default(),
            prefix,
            keys: crate::keys::KeySources { master_keys: vec![key], ..Default::default() },
            seal: Default::default(),
            follow: true,
            segment_time: Duration::from_secs(60),
            segment_size: 1 << 20,
            server_id: 1,
            stop: None,
        };
        let mut seg = Open::new("b.000001".into(), 4);
        seg.bytes = vec![7u8; 1000];
        seg.name.end = 1004;
        let source = Source { version: "10.11.0-MariaDB".into(), hostname: None, server_id: Some(1) };
        (spec, seg, source)
    }

    /// Issue 28, part 1: once a segment is stored, the error of an outage (or of a link) that
    /// is over no longer shows in the state a supervisor reads.
    #[test]
    fn a_stored_segment_clears_the_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, mut seg, source) = segment_for(format!("file://{}/", dir.path().display()));
        let mut run = Run::default();
        run.state.last_error = Some("cannot store the segment s3://b/p/x: 503 (attempt 3)".into());
        let (events, _) = store(&spec, &mut seg, &source, &mut run, &Env::default()).unwrap();
        assert_eq!(events, 1000);
        assert_eq!(run.state.last_error, None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the segment and its record");
    }

    /// Issue 28 (second round): a segment that could not be stored was said as "backup of
    /// memory failed"; its line names the segment object.
    #[test]
    fn a_failed_store_names_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, mut seg, source) = segment_for(format!("file://{}/", dir.path().display()));
        let object = seg.name.object_name();
        // A directory where the object goes: the image is written, and cannot be put there.
        std::fs::create_dir(dir.path().join(&object)).unwrap();
        let e = store(&spec, &mut seg, &source, &mut Run::default(), &Env::default()).unwrap_err();
        let line = e.one_line();
        eprintln!("{line}");
        assert!(line.contains(&format!("backup of the segment {object} failed")), "{line}");
        assert!(!line.contains("memory"), "{line}");
    }

    /// Issue 28, part 1: which failures to store a segment a following archiver waits out.
    #[test]
    fn store_outages_are_waited_out_and_refusals_are_not() {
        let store = |detail: &str| {
            Error::from(coffer_store::StoreError::Store {
                what: "cannot write",
                url: "s3://b/p/x".into(),
                detail: detail.into(),
            })
            .context("cannot store the segment s3://b/p/x")
        };
        let s3 = "s3://b/p/";
        assert!(passing(s3, &store("Server returned non-2XX status code: 503 Service Unavailable: SlowDown")));
        assert!(passing(s3, &store("error sending request: connection reset")));
        assert!(passing(s3, &store("request timed out")));
        let denied = "The operation lacked the necessary privileges to complete for path x: 403 Forbidden";
        assert!(!passing(s3, &store(denied)));
        assert!(!passing(s3, &store("The operation lacked valid authentication credentials for path x: 401")));
        assert!(!passing(s3, &store("no such bucket (or no access to it)")));
        assert!(!passing(
            s3,
            &store("CompleteMultipartUpload: access denied: 403 Forbidden AccessDenied: Access Denied")
        ));
        let listed = "Error performing GET http://s/b?list-type=2 - Server returned non-2xx status code: 404 Not Found: NoSuchBucket";
        assert!(!passing(s3, &store(listed)));
        assert!(passing(s3, &store("Server returned non-2xx status code: 429 Too Many Requests")));
        assert!(passing(s3, &store("Server returned non-2xx status code: 408 Request Timeout")));
        // The archive's listing: a prefix that does not exist is a bucket that does not.
        let listing = Error::from(StoreError::NotFound("s3://b/p/".into())).context("cannot list s3://b/p/");
        assert!(!passing(s3, &listing));
        // A local file system: a full disk ends the run, as any job's.
        assert!(!passing("file:///d/", &store("No space left on device (os error 28)")));
        // The sealing itself: keys, usage.
        assert!(!passing(s3, &Error::usage("no key given")));
        let key = Error::from(coffer_image::ImageError::WrongKey).context("cannot store the segment s3://b/p/x");
        assert!(!passing(s3, &key));
    }
}
