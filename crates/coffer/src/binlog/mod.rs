//! Binary log archiving: the server's binary log pulled over the replication protocol (as a
//! replica does, so a log the server encrypts arrives decrypted and is sealed here), cut into
//! segments, each sealed as an image under a prefix; and fetched back as files.
//!
//! A segment's object name says where it lies, `FILE_START_END.coffer` (positions in the
//! server's file, ten digits), or `FILE_START_END-closed.coffer` when the file is complete (it
//! ends with the file's ROTATE event, or its STOP event at a clean shutdown, or the server went
//! on to the next file): the archive's end is found from a listing, with no local state, and a
//! new run continues exactly there.

use crate::error::{Context, Error, Result};
use crate::keys::{KeySources, SealOptions};
use crate::location::Location;
use crate::repo::archive::{prefix_url, read_entry, segments, Archive, Join, SegmentName, EVENTS_ENTRY, SEGMENT_ENTRY};
use crate::report::{ArchivePhase, ArchiveState};
use crate::source::{ServerOptions, SourceSpec};
use crate::Env;
use coffer_mysql::client::{event, ClientError, DUMP_NON_BLOCK, DUMP_SEND_ANNOTATE_ROWS};
use coffer_mysql::events::gtid_text;
use coffer_mysql::meta::binlog_file_number as file_number;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[doc(hidden)]
pub mod fuzzing;
mod link;
mod outage;
mod segment;
pub mod show;
mod statement;

use link::{begin, connect, gtid_position_at, server_logs, source_of, torn, Source, Torn};
use segment::{after, take, LogPlace, Open, Previous};

/// An archive run, as a user asks for it.
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    /// The server (socket, or host and port; user; password file).
    pub server: ServerOptions,
    /// The prefix segments go under (`s3://B/P/`, `file:///D/`).
    pub prefix: String,
    /// The secrets segments are sealed for.
    pub keys: KeySources,
    /// Recipients, a signing key, passphrase costs.
    pub seal: SealOptions,
    /// Keep reading as the server writes (else stop at the end of its log).
    pub follow: bool,
    /// Close a segment after this long (with --follow).
    pub segment_time: Duration,
    /// Close a segment at this many bytes.
    pub segment_size: u64,
    /// The replica id coffer uses (unique among the server's replicas).
    pub server_id: u32,
    /// With `follow`: set (by a signal handler, say) to end the run. What was received is
    /// stored first, and the run ends without an error, within a second or so (or, while
    /// connecting, within the connection timeout).
    pub stop: Option<&'static AtomicBool>,
}

/// What an archive run did.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSummary {
    /// Segments stored.
    pub segments: u64,
    /// Bytes of events in them.
    pub bytes: u64,
    /// Bytes of sealed segments written (the objects' sizes).
    pub stored_bytes: u64,
    /// Where the archive ends now.
    pub end: Option<SegmentName>,
    /// Files the server purged before they were archived (the first such gap).
    pub gap: Option<Gap>,
    /// Gaps found in this run.
    pub gaps: u64,
}

impl ArchiveSummary {
    /// The line that says what the run stored (`stopped`: a signal ended it).
    pub fn line(&self, stopped: bool) -> String {
        let end = self.end.as_ref().map(|e| format!("; the archive ends at {} {}", e.file, e.end)).unwrap_or_default();
        let stopped = if stopped { "stopped; " } else { "" };
        format!("{stopped}archived {} segments ({}){end}", self.segments, crate::text::human(self.bytes))
    }
}

/// How often at most the state is reported while events stream.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// An archive run's counts and state, and when they were last reported.
#[derive(Default)]
struct Run {
    summary: ArchiveSummary,
    state: ArchiveState,
    /// The archive is known to hold every event the server logged up to this moment
    /// ([`ArchiveState::lag`]).
    complete_at: Option<SystemTime>,
    reported: Option<Instant>,
    /// A file whose last event a crash tore, where the archive ends in it (found in this run),
    /// and the run goes on from the next file.
    torn: Option<Torn>,
    again: bool,
    /// The archive's listing failed: where to start is not known yet.
    listing_failed: bool,
}

impl Run {
    /// Reports the state now; `at` is the segment being filled, if a dump is streaming.
    fn report(&mut self, at: Option<&SegmentName>, env: &Env) {
        if let Some(at) = at {
            if self.state.file != at.file {
                self.state.file.clone_from(&at.file);
            }
            self.state.position = at.end;
        }
        let s = &mut self.state;
        s.segments = self.summary.segments;
        s.bytes = self.summary.bytes;
        s.stored_bytes = self.summary.stored_bytes;
        s.gaps = self.summary.gaps;
        s.lag = self.complete_at.map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
        self.reported = Some(Instant::now());
        env.report.archive_state(&self.state);
    }

    /// Reports the state if it has not been for [`REPORT_EVERY`].
    fn tick(&mut self, at: Option<&SegmentName>, env: &Env) {
        if self.reported.is_none_or(|r| r.elapsed() >= REPORT_EVERY) {
            self.report(at, env);
        }
    }

    /// The archive holds every event the server logged up to `t`.
    fn complete_to(&mut self, t: SystemTime) {
        self.complete_at = Some(self.complete_at.map_or(t, |c| c.max(t)));
    }
}

/// A stop was asked for ([`ArchiveSpec::stop`]).
fn stopping(spec: &ArchiveSpec) -> bool {
    spec.stop.is_some_and(|s| s.load(Ordering::SeqCst))
}

/// An event's timestamp as a time.
fn event_time(t: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(t))
}

/// Binary logs purged before they were archived: where the gap starts and ends, as messages
/// say them ("the end of binlog.000003", "the start of binlog.000006").
pub type Gap = (String, String);

/// Seals `seg` under the prefix; returns the bytes of its events and of the sealed image.
fn seal(spec: &ArchiveSpec, seg: &mut Open, source: &Source, env: &Env) -> Result<(u64, u64)> {
    let len = seg.bytes.len();
    let description = serde_json::json!({
        "kind": "binlog-segment",
        "server_version": source.version,
        "server": {"hostname": source.hostname, "server_id": source.server_id},
        "checksum": seg.checksum,
        "gtid_before": seg.gtid_before.as_ref().map(gtid_text),
        "gtid_after": seg.gtid_state.as_ref().map(gtid_text),
        "file": seg.name.file,
        "start": seg.name.start,
        "end": seg.name.end,
        "events": seg.events,
        "first_event_time": seg.first_time,
        "last_event_time": seg.last_time,
        "closed": seg.name.closed,
        "gtid_first": gtid_text(&seg.gtid_first),
        "gtid_last": gtid_text(&seg.gtid_last),
        "gtid_list": seg.gtid_list.as_ref().map(gtid_text),
        "gtid_committed": seg.committed.as_ref().map(gtid_text),
        "gtid_list_state": segment::state_field(seg.list_state.as_ref()),
        "gtid_committed_state": segment::state_field(seg.committed_state.as_ref()),
        "previous_gtids": crate::repo::archive::gtid_set::field(seg.previous_gtids.as_ref()),
        "gtids_executed": crate::repo::archive::gtid_set::field(seg.executed.as_ref()),
        "previous_file": seg.previous.as_ref().map(|p| serde_json::json!({"file": p.file, "size": p.size, "torn_at": p.torn_at})),
        "sha256": coffer_crypto::hex(&coffer_crypto::sha256(&seg.bytes)),
    });
    // The events move into the image, shared with its source: a segment is held once.
    let files = vec![
        (EVENTS_ENTRY.to_owned(), std::sync::Arc::new(std::mem::take(&mut seg.bytes))),
        (SEGMENT_ENTRY.to_owned(), std::sync::Arc::new(serde_json::to_vec_pretty(&description)?)),
    ];
    let url = format!("{}{}", spec.prefix, seg.name.object_name());
    // Named in what a failure says: "backup of the segment b.000002-... failed".
    let name = format!("the segment {}", seg.name.object_name());
    let mut b = crate::backup::BackupSpec::new(SourceSpec::Memory { name, files }, Location::Object(url.clone()));
    b.keys = spec.keys.clone();
    b.seal = spec.seal.clone();
    b.validate = false;
    let warnings = crate::report::WarningsOf { what: url.clone(), to: env.report.clone() };
    let quiet = crate::Env { report: std::sync::Arc::new(warnings), ..env.clone() };
    let stored = match crate::backup::backup(&b, &quiet) {
        Ok(stored) => stored,
        Err(e) => {
            // The events back into the segment: it may be stored again (a store outage).
            // The job has returned, its source dropped: the bytes are ours alone again.
            if let SourceSpec::Memory { mut files, .. } = b.source {
                let events = files.swap_remove(0).1;
                seg.bytes = std::sync::Arc::try_unwrap(events).unwrap_or_else(|shared| shared.as_ref().clone());
            }
            return Err(e.context(format!("cannot store the segment {url}")));
        }
    };
    env.report.say(&format!(
        "archived {} {}..{} ({} events, {} bytes{})",
        seg.name.file,
        seg.name.start,
        seg.name.end,
        seg.events,
        len,
        if seg.name.closed { ", file complete" } else { "" }
    ));
    Ok((len as u64, stored.image.image_bytes))
}

/// How long a read waits: with a heartbeat asked for every [`HEARTBEAT`], this long without a
/// byte from the server means the link is dead.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The heartbeat period asked of the server: an idle stream still speaks this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The first wait before connecting again (doubled after each failed attempt, up to the last).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LAST_BACKOFF: Duration = Duration::from_secs(60);

/// Archives the server's binary log under `spec.prefix`, from where the archive ends. Its
/// state goes to `env.report` as it runs ([`ArchiveState`]).
pub fn archive(spec: &ArchiveSpec, env: &Env) -> Result<ArchiveSummary> {
    prefix_url(&spec.prefix)?;
    let mut run = Run::default();
    run.report(None, env);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut streamed = false;
        match archive_once(spec, &mut run, &mut streamed, env) {
            // A torn tail found: the run goes on from the next file.
            Ok(()) if std::mem::take(&mut run.again) => continue,
            Ok(()) => break,
            Err(e) if spec.follow && stopping(spec) => {
                // Asked to stop: a link broken on the way out (a signal cuts a read short) is
                // no failure.
                if !reconnectable(&e) {
                    run.state.phase = ArchivePhase::Ended;
                    run.state.last_error = Some(e.one_line());
                    run.report(None, env);
                    return Err(e);
                }
                break;
            }
            Err(e) if spec.follow && (reconnectable(&e) || run.listing_failed && outage::passing(&spec.prefix, &e)) => {
                // A link that carried events before it broke starts the waits over.
                if streamed {
                    backoff = FIRST_BACKOFF;
                }
                env.report.warn(&format!("{}; reconnecting in {:.1} s", e.one_line(), backoff.as_secs_f64()));
                run.state.phase = ArchivePhase::Reconnecting;
                run.state.last_error = Some(e.one_line());
                run.report(None, env);
                // The wait in slices: the state goes on being reported (the loop is alive),
                // and a stop is heard.
                let until = Instant::now() + backoff;
                while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                    if stopping(spec) {
                        break;
                    }
                    std::thread::sleep(left.min(REPORT_EVERY));
                    run.tick(None, env);
                }
                if stopping(spec) {
                    break;
                }
                backoff = (backoff * 2).min(LAST_BACKOFF);
            }
            Err(e) => {
                // Said before the error that ends the run: the gap is not found again later.
                if let (Some(g), false) = (&run.summary.gap, spec.follow) {
                    env.report.warn(&gap_text(g));
                }
                run.state.phase = ArchivePhase::Ended;
                run.state.last_error = Some(e.one_line());
                run.report(None, env);
                return Err(e);
            }
        }
    }
    run.state.phase = ArchivePhase::Ended;
    run.report(None, env);
    let summary = run.summary;
    // Following, each gap was a warning when found; a run to the log's end fails on one.
    if let (Some(g), false) = (&summary.gap, spec.follow) {
        return Err(Error::msg(format!(
            "a gap in the archive: {} ({} segments archived after it); point-in-time recovery cannot cross it",
            gap_text(g),
            summary.segments
        )));
    }
    Ok(summary)
}

/// What a gap is, in words.
fn gap_text((from, to): &Gap) -> String {
    format!("the server purged its binary log from {from} to {to} before it was archived")
}

/// Errors of the link (and of a server shutting down or out of connections), after which a
/// run following the server connects again.
fn reconnectable(e: &Error) -> bool {
    match client_error(e) {
        Some(ClientError::Io(_)) => true,
        // Too many connections; shutting down; killed (a server shutting down kills its
        // replicas' dump threads).
        Some(ClientError::Server { code, .. }) => matches!(code, 1040 | 1053 | 1077 | 1078 | 1079 | 1927),
        _ => false,
    }
}

/// The client's error that caused `e`, under any context. (`Error::Other` is transparent: the
/// source it gives is its inner error's source, so the inner error is looked at here.)
fn client_error(e: &Error) -> Option<&ClientError> {
    match e {
        Error::Other(inner) => inner.downcast_ref(),
        Error::Context { source, .. } => client_error(source),
        _ => None,
    }
}

/// A client error said plainly: a read that timed out is a server that said nothing for
/// [`READ_TIMEOUT`] (`silence` says what that means where it happened).
pub(super) fn plain(e: ClientError, silence: &str) -> Error {
    use std::io::ErrorKind;
    let e = match e {
        ClientError::Io(io) => {
            let text = match io.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    format!("nothing from the server in {} s ({silence})", READ_TIMEOUT.as_secs())
                }
                ErrorKind::UnexpectedEof => "the server closed the connection".into(),
                _ => io.to_string(),
            };
            ClientError::Io(std::io::Error::new(io.kind(), text))
        }
        e => e,
    };
    Error::other(e)
}

fn archive_once(spec: &ArchiveSpec, run: &mut Run, streamed: &mut bool, env: &Env) -> Result<()> {
    let mut c = connect(spec)?;
    let source = source_of(&mut c);
    let logs = server_logs(&mut c)?;
    let last = archive_end(spec, run, env)?;
    let ((file, pos), gap, previous) = begin(last.as_ref(), &logs, run.torn.as_ref())?;
    if let Some(g) = gap {
        found_gap(g, spec, run, env);
    }
    // Asked before the dump: once it starts, the connection carries only events.
    let state = gtid_position_at(&mut c, &file, pos);
    let flags = DUMP_SEND_ANNOTATE_ROWS | if spec.follow { 0 } else { DUMP_NON_BLOCK };
    c.dump(&file, pos, spec.server_id, flags, HEARTBEAT)
        .map_err(|e| plain(e, "no answer").context("cannot ask for the binary log"))?;
    let mut seg = Open {
        gtid_before: state.clone(),
        committed: state.clone(),
        gtid_state: state,
        previous,
        ..Open::new(file, pos)
    };
    run.state.phase = ArchivePhase::Streaming;
    run.report(Some(&seg.name), env);
    let mut sealing = Duration::ZERO;
    let result = (|| -> Result<()> {
        loop {
            if spec.follow && stopping(spec) {
                return Ok(());
            }
            let next = match c.next_event() {
                Err(e) if torn(&e) && logs.last().is_some_and(|(f, _)| *f != seg.name.file) => {
                    let (file, at) = (seg.name.file.clone(), seg.name.end);
                    env.report.warn(&format!(
                        "{file} ends at {at} with an event torn by a crash (the server cannot send the rest); \
                         the log goes on in the next file"
                    ));
                    (run.torn, run.again) = (Some((file, at)), true);
                    return Ok(());
                }
                next => next.map_err(|e| {
                    plain(e, "no event and no heartbeat: the link is dead").context("the binary log stream broke")
                })?,
            };
            let Some((h, e)) = next else {
                if spec.follow {
                    // A server shutting down ends its replicas' streams: connect again.
                    let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server ended the stream");
                    return Err(Error::other(ClientError::Io(eof)).context("the binary log stream broke"));
                }
                return Ok(());
            };
            *streamed = true;
            let (left, gap) = take(&mut seg, &h, &e)?;
            if h.in_file() {
                run.state.last_event_time = Some(event_time(h.timestamp));
            }
            if let Some(g) = gap {
                found_gap(g, spec, run, env);
            }
            if let Some(mut left) = left {
                keep(spec, &mut left, &source, run, env)?;
            }
            // A heartbeat: the server has had nothing to send for a while; if all that came is
            // stored, the archive holds its whole log.
            if h.type_code == event::HEARTBEAT && seg.bytes.is_empty() {
                run.complete_to(SystemTime::now());
            }
            let full = seg.bytes.len() as u64 >= spec.segment_size;
            // Cut early by what the last seal took, so that a segment's first event is stored
            // within the segment time of its arrival.
            let old = spec.follow && seg.opened.elapsed() + sealing >= spec.segment_time;
            if !seg.bytes.is_empty() && (seg.name.closed || full || old) {
                // The next segment's time starts at the cut, not after the seal.
                let cut = Instant::now();
                keep(spec, &mut seg, &source, run, env)?;
                sealing = cut.elapsed().min(spec.segment_time / 2);
                seg = after(&seg, &h, &e)?;
                seg.opened = cut;
            }
            run.tick(Some(&seg.name), env);
        }
    })();
    // What arrived whole is kept, whatever ended the stream.
    if !seg.bytes.is_empty() {
        keep(spec, &mut seg, &source, run, env)?;
    }
    result
}

/// Where the archive ends: its last segment stored, from a listing (or, none listed, this
/// run's).
fn archive_end(spec: &ArchiveSpec, run: &mut Run, env: &Env) -> Result<Option<SegmentName>> {
    let listed = segments(&spec.prefix, env);
    // The store out (a following run waits it out, as a broken link: nothing is held yet).
    run.listing_failed = listed.is_err();
    Ok(listed?.pop().map(|s| s.0).or_else(|| run.summary.end.clone()))
}

/// Notes a gap: said now when following (the run goes on), else by the error that ends the run.
fn found_gap(g: Gap, spec: &ArchiveSpec, run: &mut Run, env: &Env) {
    if spec.follow {
        env.report.warn(&format!("{}; point-in-time recovery cannot cross it; archiving on", gap_text(&g)));
    }
    run.summary.gap.get_or_insert(g);
    run.summary.gaps += 1;
    run.report(None, env);
}

/// Seals `seg` (through a store outage, when following) and counts it.
fn keep(spec: &ArchiveSpec, seg: &mut Open, source: &Source, run: &mut Run, env: &Env) -> Result<()> {
    let (bytes, stored) = outage::store(spec, seg, source, run, env)?;
    let s = &mut run.summary;
    s.bytes += bytes;
    s.stored_bytes += stored;
    s.segments += 1;
    s.end = Some(seg.name.clone());
    run.state.last_segment_at = Some(SystemTime::now());
    run.complete_to(event_time(seg.last_time));
    run.report(Some(&seg.name), env);
    Ok(())
}

/// Writes the archived binary log files from `from` (a file name; default the first) into
/// `to_dir`, each as the server wrote it. Returns the files written. They appear under their
/// names only once every one is complete and flushed, all together: a fetch that fails (a full
/// disk, an object missing, a flush or a rename refused) leaves none, and the same fetch run
/// again starts afresh.
pub fn fetch(
    prefix: &str,
    from: Option<&str>,
    to_dir: &std::path::Path,
    keys: &KeySources,
    env: &Env,
) -> Result<Vec<String>> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    let archive = Archive::new(segments(prefix, env)?, &unlocks, env)?;
    let found = &archive.segments;
    let first = found.iter().position(|(s, _)| from.is_none_or(|f| file_number(&s.file) >= file_number(f)));
    let first = first.unwrap_or(found.len());
    let wanted = &found[first..];
    // Whole files only, and none missing between them (a restart after a crash is crossed
    // when nothing is): checked before anything is written.
    if let Some(Join::Gap(what)) = archive.joins.iter().skip(first + 1).find(|j| j.is_gap()) {
        crate::bail!("the archive has a gap: {what}");
    }
    // Its name, and the levels created for it, are durable before any file is written there.
    coffer_fs::sync::create_dirs_durably(to_dir).with_context(|| format!("cannot create {}", to_dir.display()))?;
    let names: Vec<SegmentName> = wanted.iter().map(|(s, _)| s.clone()).collect();
    let needed = room_for_logs(&names, to_dir, env)?;
    let mut done: Vec<crate::atomic::AtomicFile> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    let mut out: Option<(crate::atomic::AtomicFile, String, u32)> = None;
    let fetched = (|| -> Result<()> {
        for (s, listed) in wanted {
            let location = Location::Object(listed.object.url().to_owned());
            // What the name declares bounds what is read: a segment is never larger than that.
            let events = read_entry(&location, &unlocks, EVENTS_ENTRY, u64::from(s.end - s.start), env)?;
            if events.len() as u64 != u64::from(s.end - s.start) {
                crate::bail!("{}: it holds {} bytes, its name says {}", listed.name, events.len(), s.end - s.start);
            }
            let continues = matches!(&out, Some((_, f, end)) if *f == s.file && *end == s.start);
            if !continues {
                if s.start != 4 {
                    crate::bail!(
                        "{}: the archive has no segment before it (a gap at {} {})",
                        listed.name,
                        s.file,
                        s.start
                    );
                }
                let file = crate::atomic::AtomicFile::create(&to_dir.join(&s.file), false, 0o666)?;
                let path = to_dir.join(&s.file);
                std::io::Write::write_all(&mut &file, crate::repo::archive::BINLOG_MAGIC)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                done.extend(out.replace((file, s.file.clone(), 4)).map(|(f, _, _)| f));
                written.push(s.file.clone());
            }
            let (f, name, end) = out.as_mut().expect("opened");
            std::io::Write::write_all(&mut &*f, &events)
                .with_context(|| format!("cannot write {}", to_dir.join(&*name).display()))?;
            *end = s.end;
        }
        done.extend(out.take().map(|(f, _, _)| f));
        // Flushed and renamed into place only now that every file is whole, all or none.
        crate::atomic::AtomicFile::commit_all(std::mem::take(&mut done))
    })();
    // Failed, the temporaries go first: what is free then is what the fetch lacked.
    drop((out, done));
    fetched.map_err(|e| crate::room::explain(e, to_dir, Some(needed)))?;
    Ok(written)
}

/// Refuses, before anything is written, a fetch of the segments `names` into `dir` that would
/// replace a file there, or that does not fit; the bytes it writes. Leftovers of a fetch that
/// was killed are removed.
fn room_for_logs(names: &[SegmentName], dir: &std::path::Path, env: &Env) -> Result<u64> {
    let mut needed = 0u64;
    let mut files: Vec<&str> = Vec::new();
    for s in names {
        needed += u64::from(s.end - s.start);
        if files.last() != Some(&s.file.as_str()) {
            files.push(&s.file);
            needed += 4;
        }
    }
    for f in &files {
        let path = dir.join(f);
        if std::fs::symlink_metadata(&path).is_ok() {
            crate::bail!("{} already exists: `binlog fetch` replaces no file", path.display());
        }
        for left in crate::atomic::AtomicFile::remove_stale(&path) {
            env.report.warn(&format!("removed {}, which an interrupted fetch left", left.display()));
        }
    }
    let what = format!("fetching {} binary log file{}", files.len(), if files.len() == 1 { "" } else { "s" });
    crate::room::check(dir, needed, &what)?;
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_links_are_reconnected_and_refusals_are_not() {
        let io = |kind| ClientError::Io(std::io::Error::new(kind, "x"));
        // Built as the archiver builds them: a client error in `Error::Other`, with context.
        let timeout = plain(io(std::io::ErrorKind::WouldBlock), "no event and no heartbeat: the link is dead")
            .context("the binary log stream broke");
        assert!(reconnectable(&timeout));
        assert_eq!(
            timeout.one_line(),
            "the binary log stream broke: nothing from the server in 10 s (no event and no heartbeat: the link is dead)"
        );
        let eof = plain(io(std::io::ErrorKind::UnexpectedEof), "x").context("cannot connect to the server");
        assert!(reconnectable(&eof));
        assert_eq!(eof.one_line(), "cannot connect to the server: the server closed the connection");
        let server = |code| ClientError::Server { code, state: "HY000".into(), message: "m".into() };
        assert!(reconnectable(&plain(server(1927), "x").context("c")), "killed at a shutdown");
        assert!(!reconnectable(&plain(server(1236), "x").context("c")), "purged: no use trying again");
        assert!(!reconnectable(&plain(server(1045), "x")), "access denied");
        assert!(!reconnectable(&Error::msg("an event ends at 5")));
        assert!(!reconnectable(&Error::from(std::io::Error::other("disk full")).context("cannot store")));
    }
}
