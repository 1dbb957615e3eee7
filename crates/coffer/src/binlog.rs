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
use crate::repo::archive::{
    continues, gaps, new_log_file, prefix_url, read_entry, segments, SegmentName, EVENTS_ENTRY, SEGMENT_ENTRY,
};
use crate::report::{ArchivePhase, ArchiveState};
use crate::source::{ServerOptions, SourceSpec};
use crate::Env;
use coffer_mysql::client::{
    event, Client, ClientError, EventHeader, ResultCap, Target, DUMP_NON_BLOCK, DUMP_SEND_ANNOTATE_ROWS,
};
use coffer_mysql::events::{
    gtid_text, parse_gtids, Gtid, Gtids, GTID as GTID_EVENT, GTID_LIST as GTID_LIST_EVENT, STOP as STOP_EVENT,
};
use coffer_mysql::meta::{binlog_file_number as file_number, is_binlog_file_name};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

fn target(server: &ServerOptions) -> Result<Target> {
    match (&server.socket, &server.host) {
        (Some(s), _) => Ok(Target::Socket(std::path::absolute(s)?)),
        (None, Some(h)) => Ok(Target::Tcp { host: h.clone(), port: server.port.unwrap_or(3306) }),
        _ => Err(Error::usage("give the server's socket (-S) or host (-h)")),
    }
}

fn connect(spec: &ArchiveSpec) -> Result<Client> {
    let conn = crate::source::connection(&spec.server)?;
    let user = conn.user.clone().unwrap_or_else(|| "root".into());
    let password = conn.password.clone().unwrap_or_default();
    let target = target(&spec.server)?;
    let tls = match (&conn.tls, &target) {
        (Some(t), Target::Tcp { host, .. }) => Some(tls(t, host)?),
        (Some(_), Target::Socket(_)) => {
            return Err(Error::usage("TLS (--ssl-*) is for TCP connections (-h), not a socket"))
        }
        (None, _) => None,
    };
    Client::connect(&target, &user, password.as_bytes(), READ_TIMEOUT, tls.as_ref())
        .map_err(|e| plain(e, "no answer").context("cannot connect to the server"))
}

/// The client's TLS for the settings `t` (MySQL's `--ssl-mode` meanings).
fn tls(t: &coffer_mysql::engine::ServerTls, host: &str) -> Result<coffer_mysql::client::Tls> {
    use coffer_mysql::engine::SslMode;
    use coffer_net::tls::DbVerify;
    let verify = match t.mode() {
        SslMode::Required => DbVerify::None,
        SslMode::VerifyCa => DbVerify::Ca,
        SslMode::VerifyIdentity => DbVerify::Identity,
    };
    let ours = t.cert.as_deref().zip(t.key.as_deref());
    let config = coffer_net::tls::db_client_config(verify, t.ca.as_deref(), ours).map_err(Error::other)?;
    Ok(coffer_mysql::client::Tls { config, host: host.to_owned() })
}

/// The server's binary logs and their sizes.
fn server_logs(c: &mut Client) -> Result<Vec<(String, u64)>> {
    let rows = c
        .query("SHOW BINARY LOGS")
        .map_err(|e| plain(e, "no answer"))
        .context("cannot list the server's binary logs")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let name = r.first()?.clone()?;
            let size = r.get(1)?.as_deref()?.parse().ok()?;
            is_binlog_file_name(&name).then_some((name, size))
        })
        .collect())
}

/// A place in the server's binary log: a file and a position in it.
type LogPlace = (String, u32);
/// Binary logs purged before they were archived: where the gap starts and ends, as messages
/// say them ("the end of binlog.000003", "the start of binlog.000006").
pub type Gap = (String, String);

/// Where a run starts: after the archive's last segment, or at the server's first log; and the
/// files purged in between, if any.
fn start_point(last: Option<&SegmentName>, logs: &[(String, u64)]) -> Result<(LogPlace, Option<Gap>)> {
    let Some((first, _)) = logs.first() else { crate::bail!("the server has no binary log (is log_bin on?)") };
    let Some(last) = last else { return Ok(((first.clone(), 4), None)) };
    if let Some(i) = logs.iter().position(|(n, _)| *n == last.file) {
        // A file ends with its ROTATE, or (after a crash) where the server started the next.
        let complete = last.closed || (u64::from(last.end) >= logs[i].1 && i + 1 < logs.len());
        return Ok(match logs.get(i + 1).filter(|_| complete) {
            Some((next, _)) => ((next.clone(), 4), None),
            None if complete => crate::bail!("the archive has {} whole; the server has no later file", last.file),
            None => ((last.file.clone(), last.end), None),
        });
    }
    // The server no longer has the file the archive ends in.
    let Some((next, _)) = logs.iter().find(|(n, _)| file_number(n) > file_number(&last.file)) else {
        crate::bail!("the server has no binary log after {}, where the archive ends", last.file);
    };
    let whole = continues(last, &SegmentName { file: next.clone(), start: 4, end: 5, closed: false });
    let gap = (!whole).then(|| {
        let from =
            if last.closed { format!("the end of {}", last.file) } else { format!("{} at {}", last.file, last.end) };
        (from, format!("the start of {next}"))
    });
    Ok(((next.clone(), 4), gap))
}

/// The GTID a MariaDB GTID event starts.
fn gtid_of(h: &EventHeader, e: &[u8]) -> Option<Gtid> {
    let event = coffer_mysql::events::Event { start: 0, header: *h, bytes: e };
    coffer_mysql::events::gtid_of(&event).map(|(g, _)| g)
}

/// The position a GTID_LIST event gives (the state before its file): a count (low 28 bits),
/// then (domain u32, server u32, seq u64) each; bounded by the event's size.
fn gtid_list_of(e: &[u8]) -> Option<Gtids> {
    let body = e.get(EventHeader::LEN..)?;
    let count = (u32::from_le_bytes(body.get(..4)?.try_into().ok()?) & 0x0fff_ffff) as usize;
    let entries = body.get(4..)?;
    if count > entries.len() / 16 {
        return None;
    }
    // The list is the binlog state (one entry per domain and server); a position keeps each
    // domain's highest sequence number.
    let mut out = Gtids::new();
    for c in entries.chunks_exact(16).take(count) {
        let d = u32::from_le_bytes(c[..4].try_into().expect("4"));
        let s = u32::from_le_bytes(c[4..8].try_into().expect("4"));
        let n = u64::from_le_bytes(c[8..16].try_into().expect("8"));
        if out.get(&d).is_none_or(|(_, m)| *m < n) {
            out.insert(d, (s, n));
        }
    }
    Some(out)
}

/// A segment being filled.
struct Open {
    name: SegmentName,
    bytes: Vec<u8>,
    events: u64,
    first_time: Option<u32>,
    last_time: u32,
    opened: Instant,
    /// The first and last GTID of each domain in the segment.
    gtid_first: Gtids,
    gtid_last: Gtids,
    /// The position at the start of the file, if the segment holds its GTID_LIST event.
    gtid_list: Option<Gtids>,
    /// The server's GTID position where the segment starts, and as it goes (MariaDB: from
    /// BINLOG_GTID_POS where a run starts, the file's GTID_LIST, then each GTID event).
    gtid_before: Option<Gtids>,
    gtid_state: Option<Gtids>,
    /// The file's checksum algorithm, from its FORMAT_DESCRIPTION event.
    checksum: Option<&'static str>,
}

impl Open {
    fn new(file: String, start: u32) -> Self {
        Open {
            name: SegmentName { file, start, end: start, closed: false },
            bytes: Vec::new(),
            events: 0,
            first_time: None,
            last_time: 0,
            opened: Instant::now(),
            gtid_first: Gtids::new(),
            gtid_last: Gtids::new(),
            gtid_list: None,
            gtid_before: None,
            gtid_state: None,
            checksum: None,
        }
    }

    /// The segment that follows this one at `file`:`start`: the GTID position goes on, and
    /// the checksum algorithm within the file.
    fn next(&self, file: String, start: u32) -> Self {
        let checksum = if file == self.name.file { self.checksum } else { None };
        Open {
            gtid_before: self.gtid_state.clone(),
            gtid_state: self.gtid_state.clone(),
            checksum,
            ..Open::new(file, start)
        }
    }
}

/// The archived server, as each segment's description names it.
#[derive(Debug, Clone, Default)]
struct Source {
    version: String,
    hostname: Option<String>,
    server_id: Option<u64>,
}

/// The server's name and id (global variables: no privilege needed).
fn source_of(c: &mut Client) -> Source {
    let row = c
        .query_capped("SELECT @@hostname, @@server_id", ResultCap::FEW)
        .ok()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default();
    let hostname = row.first().cloned().flatten().filter(|h| h.len() <= 255).map(|h| crate::text::escape(h.as_bytes()));
    let server_id = row.get(1).cloned().flatten().and_then(|v| v.parse().ok());
    Source { version: c.server_version().to_owned(), hostname, server_id }
}

/// MariaDB's GTID position at a place of its binary log (`None`: not MariaDB, or the file is
/// gone). The file name is one `is_binlog_file_name` accepts: no quote reaches the SQL.
fn gtid_position_at(c: &mut Client, file: &str, pos: u32) -> Option<Gtids> {
    if !is_binlog_file_name(file) {
        return None;
    }
    let rows = c.query_capped(&format!("SELECT BINLOG_GTID_POS('{file}', {pos})"), ResultCap::FEW).ok()?;
    let text = rows.into_iter().next()?.into_iter().next()??;
    parse_gtids(&text)
}

/// The checksum algorithm of a FORMAT_DESCRIPTION event: CRC32 when its last 4 bytes are the
/// CRC-32 of the rest.
fn checksum_of(e: &[u8]) -> &'static str {
    match coffer_mysql::events::checksummed_len(e, EventHeader::LEN) {
        Some(_) => "CRC32",
        None => "NONE",
    }
}

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
        "sha256": coffer_crypto::hex(&coffer_crypto::sha256(&seg.bytes)),
    });
    // The events move into the image: a segment is held once, not twice.
    let files = vec![
        (EVENTS_ENTRY.to_owned(), std::mem::take(&mut seg.bytes)),
        (SEGMENT_ENTRY.to_owned(), serde_json::to_vec_pretty(&description)?),
    ];
    let url = format!("{}{}", spec.prefix, seg.name.object_name());
    let mut b = crate::backup::BackupSpec::new(SourceSpec::Memory(files), Location::Object(url.clone()));
    b.keys = spec.keys.clone();
    b.seal = spec.seal.clone();
    b.validate = false;
    let quiet = crate::Env { report: std::sync::Arc::new(crate::Silent), ..env.clone() };
    let stored = crate::backup::backup(&b, &quiet).with_context(|| format!("cannot store the segment {url}"))?;
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
const READ_TIMEOUT: Duration = Duration::from_secs(10);
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
            Err(e) if spec.follow && reconnectable(&e) => {
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
fn plain(e: ClientError, silence: &str) -> Error {
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
    let last = segments(&spec.prefix, env)?.pop().map(|s| s.0);
    let ((file, pos), gap) = start_point(last.as_ref().or(run.summary.end.as_ref()), &logs)?;
    if let Some(g) = gap {
        found_gap(g, spec, run, env);
    }
    // Asked before the dump: once it starts, the connection carries only events.
    let state = gtid_position_at(&mut c, &file, pos);
    let flags = DUMP_SEND_ANNOTATE_ROWS | if spec.follow { 0 } else { DUMP_NON_BLOCK };
    c.dump(&file, pos, spec.server_id, flags, HEARTBEAT)
        .map_err(|e| plain(e, "no answer").context("cannot ask for the binary log"))?;
    let mut seg = Open { gtid_before: state.clone(), gtid_state: state, ..Open::new(file, pos) };
    run.state.phase = ArchivePhase::Streaming;
    run.report(Some(&seg.name), env);
    let mut sealing = Duration::ZERO;
    let result = (|| -> Result<()> {
        loop {
            if spec.follow && stopping(spec) {
                return Ok(());
            }
            let next = c.next_event().map_err(|e| {
                plain(e, "no event and no heartbeat: the link is dead").context("the binary log stream broke")
            })?;
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

/// Notes a gap: said now when following (the run goes on), else by the error that ends the run.
fn found_gap(g: Gap, spec: &ArchiveSpec, run: &mut Run, env: &Env) {
    if spec.follow {
        env.report.warn(&format!("{}; point-in-time recovery cannot cross it; archiving on", gap_text(&g)));
    }
    run.summary.gap.get_or_insert(g);
    run.summary.gaps += 1;
    run.report(None, env);
}

/// Seals `seg` and counts it.
fn keep(spec: &ArchiveSpec, seg: &mut Open, source: &Source, run: &mut Run, env: &Env) -> Result<()> {
    let (bytes, stored) = seal(spec, seg, source, env)?;
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

/// Takes an event of the dump into `seg`. A ROTATE the server makes up (where a dump starts,
/// and at the start of each file) naming another file than `seg`'s moves `seg` there: the
/// server went on without a ROTATE of the file's (it ended with its STOP event, or after a
/// crash, or the run started at its end). Returns the segment so left if it holds events (to
/// be sealed: complete, as the server read its file to the end), and a gap if the server did
/// not go on to the next file's start.
fn take(seg: &mut Open, h: &EventHeader, e: &[u8]) -> Result<(Option<Open>, Option<Gap>)> {
    if h.type_code == event::ROTATE && !h.in_file() {
        let (file, at) = rotate_target(e)?;
        if file == seg.name.file {
            return Ok((None, None));
        }
        let follows = continues(
            &SegmentName { closed: true, ..seg.name.clone() },
            &SegmentName { file: file.clone(), start: at, end: at.saturating_add(1), closed: false },
        );
        let gap = (!follows).then(|| (format!("{} at {}", seg.name.file, seg.name.end), format!("{file} at {at}")));
        let next = seg.next(file, at);
        let mut left = std::mem::replace(seg, next);
        left.name.closed = follows;
        return Ok(((!left.bytes.is_empty()).then_some(left), gap));
    }
    if h.type_code == event::FORMAT_DESCRIPTION {
        seg.checksum = Some(checksum_of(e));
    }
    if h.in_file() {
        append(seg, h, e)?;
    }
    Ok((None, None))
}

/// The segment after `seg`, sealed after the event `e`: the next file's after its ROTATE; after
/// a STOP event, the same file's end until the server names the next file.
fn after(seg: &Open, h: &EventHeader, e: &[u8]) -> Result<Open> {
    Ok(match h.type_code {
        event::ROTATE if seg.name.closed => {
            let (file, at) = rotate_target(e)?;
            seg.next(file, at)
        }
        _ => seg.next(seg.name.file.clone(), seg.name.end),
    })
}

/// Adds an event of the server's file to the segment, checking that it follows the last.
fn append(seg: &mut Open, h: &EventHeader, e: &[u8]) -> Result<()> {
    let expected = u64::from(seg.name.end) + e.len() as u64;
    if u64::from(h.log_pos) != expected {
        crate::bail!(
            "{}: an event ends at {}, but the archive is at {} and the event is {} bytes",
            seg.name.file,
            h.log_pos,
            seg.name.end,
            e.len()
        );
    }
    seg.bytes.extend_from_slice(e);
    seg.name.end = h.log_pos;
    seg.events += 1;
    seg.first_time.get_or_insert(h.timestamp);
    seg.last_time = h.timestamp;
    // The file's last event: the ROTATE to the next, or the STOP of a clean shutdown.
    seg.name.closed = matches!(h.type_code, event::ROTATE | STOP_EVENT);
    match h.type_code {
        GTID_EVENT => {
            if let Some((domain, server, seq)) = gtid_of(h, e) {
                seg.gtid_first.entry(domain).or_insert((server, seq));
                seg.gtid_last.insert(domain, (server, seq));
                if let Some(state) = seg.gtid_state.as_mut() {
                    state.insert(domain, (server, seq));
                }
            }
        }
        GTID_LIST_EVENT => {
            // The position before the file: where a segment starts at the file's start.
            seg.gtid_list = gtid_list_of(e);
            if seg.gtid_list.is_some() {
                seg.gtid_state = seg.gtid_list.clone();
                if seg.name.start == 4 {
                    seg.gtid_before = seg.gtid_list.clone();
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The file and position a ROTATE event names (the file's own, or one the server makes up to
/// say where it reads next): after the header, the 8-byte position, then the name, then a
/// checksum when the event's last 4 bytes are the CRC-32 of what comes before them.
fn rotate_target(e: &[u8]) -> Result<(String, u32)> {
    let at = EventHeader::LEN + 8;
    let position = e.get(EventHeader::LEN..at).ok_or_else(|| Error::msg("a ROTATE event too short to name a file"))?;
    let position = u64::from_le_bytes(position.try_into().expect("8 bytes"));
    let end = coffer_mysql::events::checksummed_len(e, at).unwrap_or(e.len());
    let name = std::str::from_utf8(&e[at.min(end)..end])
        .ok()
        .filter(|n| is_binlog_file_name(n))
        .ok_or_else(|| Error::msg("a ROTATE event names no binary log file"))?;
    let position = u32::try_from(position)
        .ok()
        .filter(|p| *p >= 4)
        .ok_or_else(|| Error::msg(format!("a ROTATE event names {name} at {position}, not a position in a file")))?;
    Ok((name.to_owned(), position))
}

/// Writes the archived binary log files from `from` (a file name; default the first) into
/// `to_dir`, each as the server wrote it. Returns the files written.
pub fn fetch(
    prefix: &str,
    from: Option<&str>,
    to_dir: &std::path::Path,
    keys: &KeySources,
    env: &Env,
) -> Result<Vec<String>> {
    let unlocks = crate::keys::unlocks(keys, env)?;
    let found = segments(prefix, env)?;
    let wanted: Vec<_> =
        found.iter().filter(|(s, _)| from.is_none_or(|f| file_number(&s.file) >= file_number(f))).collect();
    // Whole files only, and none missing between them: checked before anything is written.
    let names: Vec<SegmentName> = wanted.iter().map(|(s, _)| s.clone()).collect();
    if let Some((a, b)) = gaps(&names).first() {
        crate::bail!(
            "the archive has a gap: nothing between {} {} and {} {} (purged before it was archived)",
            a.file,
            a.end,
            b.file,
            b.start
        );
    }
    std::fs::create_dir_all(to_dir).with_context(|| format!("cannot create {}", to_dir.display()))?;
    let mut written: Vec<String> = Vec::new();
    let mut out: Option<(std::fs::File, String, u32)> = None;
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
                crate::bail!("{}: the archive has no segment before it (a gap at {} {})", listed.name, s.file, s.start);
            }
            out = Some((new_log_file(to_dir, &s.file)?, s.file.clone(), 4));
            written.push(s.file.clone());
        }
        let (f, _, end) = out.as_mut().expect("opened");
        std::io::Write::write_all(f, &events)?;
        *end = s.end;
    }
    if let Some((f, _, _)) = out {
        f.sync_all()?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_mysql::events::crc32;

    #[test]
    fn gtid_events() {
        let header = |type_code: u8, body: &[u8]| {
            let mut e = vec![0u8; 19];
            e[4] = type_code;
            e[5..9].copy_from_slice(&7u32.to_le_bytes());
            e.extend_from_slice(body);
            e.extend_from_slice(&[0; 4]);
            let len = e.len() as u32;
            e[9..13].copy_from_slice(&len.to_le_bytes());
            (EventHeader::parse(&e).unwrap(), e)
        };
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(0);
        let (h, e) = header(GTID_EVENT, &body);
        assert_eq!(gtid_of(&h, &e), Some((3, 7, 42)));
        // The binlog state: per domain, the highest sequence of any server is the position.
        let mut list = 4u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 100u64), (3, 7, 41), (3, 9, 40), (0, 2, 99)] {
            list.extend_from_slice(&d.to_le_bytes());
            list.extend_from_slice(&s.to_le_bytes());
            list.extend_from_slice(&n.to_le_bytes());
        }
        let (_, e) = header(GTID_LIST_EVENT, &list);
        assert_eq!(gtid_text(&gtid_list_of(&e).unwrap()), "0-1-100,3-7-41");
        // A count the event cannot hold is refused; short events give nothing.
        let (_, e) = header(GTID_LIST_EVENT, &1000u32.to_le_bytes());
        assert_eq!(gtid_list_of(&e), None);
        assert_eq!(gtid_of(&h, &e[..20]), None);

        // A segment's GTID position runs on from where it started, into the next segment.
        let mut seg = Open::new("b.000002".into(), 100);
        seg.gtid_before = parse_gtids("0-1-100,3-7-41");
        seg.gtid_state = seg.gtid_before.clone();
        let (mut h, mut e) = header(GTID_EVENT, &body);
        h.log_pos = 100 + e.len() as u32;
        e[13..17].copy_from_slice(&h.log_pos.to_le_bytes());
        append(&mut seg, &h, &e).unwrap();
        assert_eq!(seg.gtid_state.as_ref().map(gtid_text).as_deref(), Some("0-1-100,3-7-42"));
        assert_eq!(seg.gtid_before.as_ref().map(gtid_text).as_deref(), Some("0-1-100,3-7-41"));
        let next = seg.next("b.000002".into(), seg.name.end);
        assert_eq!(next.gtid_before.as_ref().map(gtid_text).as_deref(), Some("0-1-100,3-7-42"));
    }

    #[test]
    fn runs_start_where_the_archive_ends() {
        let logs = vec![("b.000002".to_owned(), 500u64), ("b.000003".to_owned(), 900)];
        assert_eq!(start_point(None, &logs).unwrap(), (("b.000002".into(), 4), None));
        assert_eq!(
            start_point(Some(&seg("b.000002", 4, 300, false)), &logs).unwrap(),
            (("b.000002".into(), 300), None)
        );
        // A file archived whole: the next one.
        assert_eq!(start_point(Some(&seg("b.000002", 4, 500, true)), &logs).unwrap(), (("b.000003".into(), 4), None));
        // Ended without a ROTATE (a crash) where the server went on with the next file.
        assert_eq!(start_point(Some(&seg("b.000002", 4, 500, false)), &logs).unwrap(), (("b.000003".into(), 4), None));
        // The newest file, archived as far as it goes: it may grow.
        assert_eq!(
            start_point(Some(&seg("b.000003", 4, 900, false)), &logs).unwrap(),
            (("b.000003".into(), 900), None)
        );
        // The archive ends with a whole file the server purged, right before its oldest: no gap.
        assert_eq!(start_point(Some(&seg("b.000001", 4, 50, true)), &logs).unwrap(), (("b.000002".into(), 4), None));
        // A file purged before its end was archived, or whole files: a gap.
        let (at, gap) = start_point(Some(&seg("b.000001", 4, 50, false)), &logs).unwrap();
        assert_eq!(
            (at, gap),
            (("b.000002".into(), 4), Some(("b.000001 at 50".into(), "the start of b.000002".into())))
        );
        let (_, gap) = start_point(Some(&seg("b.000000", 4, 50, true)), &logs).unwrap();
        assert_eq!(gap, Some(("the end of b.000000".into(), "the start of b.000002".into())));
        // Another base name is not the next file.
        let (_, gap) = start_point(Some(&seg("a.000001", 4, 50, true)), &logs).unwrap();
        assert!(gap.is_some());
        // A file archived whole is complete, and the server has nothing after it yet.
        let one = vec![("b.000002".to_owned(), 500u64)];
        assert!(start_point(Some(&seg("b.000002", 4, 500, true)), &one).is_err());
        assert!(start_point(None, &[]).is_err());
    }

    fn seg(f: &str, start: u32, end: u32, closed: bool) -> SegmentName {
        SegmentName { file: f.into(), start, end, closed }
    }

    /// An event as a server sends it: header, body, CRC-32.
    fn event_bytes(type_code: u8, log_pos: u32, flags: u16, body: &[u8]) -> (EventHeader, Vec<u8>) {
        let mut e = vec![0u8; EventHeader::LEN];
        e[4] = type_code;
        e[5..9].copy_from_slice(&1u32.to_le_bytes());
        e[13..17].copy_from_slice(&log_pos.to_le_bytes());
        e[17..19].copy_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        let len = e.len() as u32 + 4;
        e[9..13].copy_from_slice(&len.to_le_bytes());
        let crc = crc32(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        (EventHeader::parse(&e).unwrap(), e)
    }

    /// A ROTATE naming `file` at `at`: the server's made-up one, or (`artificial` false) the
    /// file's own, found at `from` in it.
    fn rotate(file: &str, at: u64, artificial: bool, from: u32) -> (EventHeader, Vec<u8>) {
        let mut body = at.to_le_bytes().to_vec();
        body.extend_from_slice(file.as_bytes());
        if artificial {
            event_bytes(event::ROTATE, 0, event::FLAG_ARTIFICIAL, &body)
        } else {
            let len = (EventHeader::LEN + body.len() + 4) as u32;
            event_bytes(event::ROTATE, from + len, 0, &body)
        }
    }

    fn fake_rotate(file: &str, at: u64) -> (EventHeader, Vec<u8>) {
        rotate(file, at, true, 0)
    }

    /// An event of `len` bytes (all told) at `at` in its file.
    fn plain_event(type_code: u8, at: u32, len: u32) -> (EventHeader, Vec<u8>) {
        event_bytes(type_code, at + len, 0, &vec![7; len as usize - EventHeader::LEN - 4])
    }

    #[test]
    fn rotate_events_and_their_checksums() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let (_, e) = fake_rotate("binlog.000007", 4);
        assert_eq!(rotate_target(&e).unwrap(), ("binlog.000007".into(), 4));
        // Without a checksum (binlog_checksum=NONE): the name runs to the end.
        let (_, e) = fake_rotate("binlog.0000000008", 1234);
        assert_eq!(rotate_target(&e[..e.len() - 4]).unwrap(), ("binlog.0000000008".into(), 1234));
        assert_eq!(rotate_target(&e).unwrap(), ("binlog.0000000008".into(), 1234));
        for bad in
            [fake_rotate("not a binlog", 4).1, fake_rotate("binlog.000001", 2).1, fake_rotate("b.000001", 1 << 40).1]
        {
            assert!(rotate_target(&bad).is_err());
        }
        assert!(rotate_target(&[0; 20]).is_err());
    }

    /// Events in, segments out: a file that ends with STOP (a clean shutdown) is complete, and
    /// the server's made-up ROTATE to the next file moves the open segment there.
    #[test]
    fn files_end_with_rotate_or_stop_and_the_stream_moves_on() {
        let mut open = Open::new("b.000001".into(), 4);
        let fd = plain_event(event::FORMAT_DESCRIPTION, 4, 100);
        let (h, e) = fake_rotate("b.000001", 4);
        assert!(matches!(take(&mut open, &h, &e).unwrap(), (None, None)));
        take(&mut open, &fd.0, &fd.1).unwrap();
        let ev = plain_event(2, 104, 50);
        take(&mut open, &ev.0, &ev.1).unwrap();
        assert!(!open.name.closed);
        let stop = plain_event(STOP_EVENT, 154, 23);
        take(&mut open, &stop.0, &stop.1).unwrap();
        assert_eq!(open.name, seg("b.000001", 4, 177, true), "a STOP ends the file");
        // Sealed; what follows it waits at the file's end for the server to name the next.
        let mut open = after(&open, &stop.0, &stop.1).unwrap();
        assert_eq!((open.name.file.as_str(), open.name.start), ("b.000001", 177));
        let (h, e) = fake_rotate("b.000002", 4);
        assert!(matches!(take(&mut open, &h, &e).unwrap(), (None, None)));
        assert_eq!((open.name.file.as_str(), open.name.start), ("b.000002", 4));
        let fd = plain_event(event::FORMAT_DESCRIPTION, 4, 100);
        take(&mut open, &fd.0, &fd.1).unwrap();
        // A real ROTATE ends the file, and names the next.
        let (h, e) = rotate("b.000003", 4, false, 104);
        take(&mut open, &h, &e).unwrap();
        assert!(open.name.closed);
        let next = after(&open, &h, &e).unwrap();
        assert_eq!((next.name.file.as_str(), next.name.start), ("b.000003", 4));

        // A run that starts within a file the server then leaves without a STOP (a crash):
        // the segment left is complete, the next opens at the next file's start.
        let mut open = Open::new("b.000005".into(), 300);
        let (h, e) = fake_rotate("b.000005", 300);
        take(&mut open, &h, &e).unwrap();
        // The format description sent where a dump starts within a file is made up (log_pos 0).
        let fd0 = event_bytes(event::FORMAT_DESCRIPTION, 0, 0, &[1; 80]);
        take(&mut open, &fd0.0, &fd0.1).unwrap();
        assert!(open.bytes.is_empty());
        let ev = plain_event(2, 300, 60);
        take(&mut open, &ev.0, &ev.1).unwrap();
        let (h, e) = fake_rotate("b.000006", 4);
        let (left, gap) = take(&mut open, &h, &e).unwrap();
        let left = left.unwrap();
        assert_eq!((left.name.clone(), gap), (seg("b.000005", 300, 360, true), None));
        assert_eq!((open.name.file.as_str(), open.name.start, open.bytes.len()), ("b.000006", 4, 0));
        // A position that does not follow is refused, whatever the file.
        let bad = plain_event(2, 200, 60);
        assert!(take(&mut open, &bad.0, &bad.1).is_err());
        // The server skipping a file: a gap, said.
        let (h, e) = fake_rotate("b.000008", 4);
        let (left, gap) = take(&mut open, &h, &e).unwrap();
        assert!(left.is_none());
        assert_eq!(gap, Some(("b.000006 at 4".into(), "b.000008 at 4".into())));
        // Heartbeats are no events of the file.
        let hb = event_bytes(event::HEARTBEAT, 4, 0, b"b.000008");
        take(&mut open, &hb.0, &hb.1).unwrap();
        assert!(open.bytes.is_empty());
    }

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
