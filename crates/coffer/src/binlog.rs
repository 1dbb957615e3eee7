//! Binary log archiving: the server's binary log pulled over the replication protocol (as a
//! replica does, so a log the server encrypts arrives decrypted and is sealed here), cut into
//! segments, each sealed as an image under a prefix; and fetched back as files.
//!
//! A segment's object name says where it lies, `FILE_START_END.coffer` (positions in the
//! server's file, ten digits), or `FILE_START_END-closed.coffer` when it ends with the file's
//! ROTATE event: the archive's end is found from a listing, with no local state, and a new run
//! continues exactly there.

use crate::error::{Context, Error, Result};
use crate::keys::{KeySources, SealOptions};
use crate::location::Location;
use crate::source::{ServerOptions, SourceSpec};
use crate::Env;
use coffer_mysql::client::{event, Client, ClientError, EventHeader, Target, DUMP_NON_BLOCK, DUMP_SEND_ANNOTATE_ROWS};
use coffer_mysql::meta::is_binlog_file_name;
use std::time::{Duration, Instant};

/// The entry of a segment image that holds the events, as the server's file holds them.
pub const EVENTS_ENTRY: &str = "events";
/// The entry that describes the segment.
pub const SEGMENT_ENTRY: &str = "coffer-binlog.json";

/// Where a segment lies in the server's binary log, as its object name says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// The server's file.
    pub file: String,
    /// Where the segment's first event starts in it.
    pub start: u32,
    /// Where its last event ends.
    pub end: u32,
    /// It ends with the file's ROTATE event: the file is complete.
    pub closed: bool,
}

impl SegmentName {
    /// `binlog.000001_0000000004_0000012345.coffer`.
    pub fn object_name(&self) -> String {
        let closed = if self.closed { "-closed" } else { "" };
        format!("{}_{:010}_{:010}{closed}.coffer", self.file, self.start, self.end)
    }

    /// The segment a name says, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".coffer")?;
        let (stem, closed) = match stem.strip_suffix("-closed") {
            Some(s) => (s, true),
            None => (stem, false),
        };
        let (rest, end) = stem.rsplit_once('_')?;
        let (file, start) = rest.rsplit_once('_')?;
        let number = |s: &str| (s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?;
        let (start, end) = (number(start)?, number(end)?);
        (is_binlog_file_name(file) && start >= 4 && end > start).then(|| SegmentName {
            file: file.into(),
            start,
            end,
            closed,
        })
    }

    /// Sorts by file number, then position.
    fn key(&self) -> (u64, u32) {
        (file_number(&self.file), self.start)
    }
}

fn file_number(file: &str) -> u64 {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

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
}

/// What an archive run did.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSummary {
    /// Segments stored.
    pub segments: u64,
    /// Bytes of events in them.
    pub bytes: u64,
    /// Where the archive ends now.
    pub end: Option<SegmentName>,
    /// Files the server purged before they were archived (first and last).
    pub gap: Option<Gap>,
}

/// The segments under `prefix`, in log order.
pub fn segments(prefix: &str, env: &Env) -> Result<Vec<(SegmentName, coffer_store::Listed)>> {
    let url = prefix_url(prefix)?;
    let listed = coffer_store::Object::open(url, &env.store)?.list().with_context(|| format!("cannot list {url}"))?;
    let mut out: Vec<_> = listed.into_iter().filter_map(|l| SegmentName::parse(&l.name).map(|s| (s, l))).collect();
    out.sort_by_key(|(s, _)| s.key());
    Ok(out)
}

fn prefix_url(prefix: &str) -> Result<&str> {
    match Location::parse(prefix) {
        Location::Object(_) if prefix.ends_with('/') => Ok(prefix),
        _ => Err(Error::usage(format!(
            "{prefix}: binary logs are archived under an object prefix (s3://B/P/, file:///D/)"
        ))),
    }
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
    Client::connect(&target, &user, password.as_bytes(), Duration::from_secs(10), tls.as_ref())
        .map_err(|e| Error::other(e).context("cannot connect to the server"))
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
    let rows = c.query("SHOW BINARY LOGS").map_err(Error::other).context("cannot list the server's binary logs")?;
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
/// Binary logs purged before they were archived: the first and last, as messages say them.
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
    let whole = last.closed && file_number(next) == file_number(&last.file) + 1;
    let gap = (!whole).then(|| {
        let from =
            if last.closed { format!("after {}", last.file) } else { format!("{} from {}", last.file, last.end) };
        (from, format!("before {next}"))
    });
    Ok(((next.clone(), 4), gap))
}

/// MariaDB's GTID and GTID_LIST events.
const GTID_EVENT: u8 = 0xa2;
const GTID_LIST_EVENT: u8 = 0xa3;

/// A GTID position: per replication domain, the server id and sequence number.
type Gtids = std::collections::BTreeMap<u32, (u32, u64)>;

/// `domain-server-seq` joined by commas, as MariaDB writes positions.
fn gtid_text(g: &Gtids) -> String {
    g.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect::<Vec<_>>().join(",")
}

/// The GTID a MariaDB GTID event starts (its body: sequence number u64, domain u32).
fn gtid_of(h: &EventHeader, e: &[u8]) -> Option<(u32, u32, u64)> {
    let body = e.get(EventHeader::LEN..EventHeader::LEN + 12)?;
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let domain = u32::from_le_bytes(body[8..12].try_into().ok()?);
    Some((domain, h.server_id, seq))
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
    Some(
        entries
            .chunks_exact(16)
            .take(count)
            .map(|c| {
                let d = u32::from_le_bytes(c[..4].try_into().expect("4"));
                let s = u32::from_le_bytes(c[4..8].try_into().expect("4"));
                (d, (s, u64::from_le_bytes(c[8..16].try_into().expect("8"))))
            })
            .collect(),
    )
}

/// A segment being filled.
struct Open {
    name: SegmentName,
    bytes: Vec<u8>,
    events: u64,
    first_time: Option<u32>,
    last_time: u32,
    opened: Instant,
    rotated: bool,
    /// The first and last GTID of each domain in the segment.
    gtid_first: Gtids,
    gtid_last: Gtids,
    /// The position at the start of the file, if the segment holds its GTID_LIST event.
    gtid_list: Option<Gtids>,
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
            rotated: false,
            gtid_first: Gtids::new(),
            gtid_last: Gtids::new(),
            gtid_list: None,
        }
    }
}

/// Seals `seg` under the prefix.
fn seal(spec: &ArchiveSpec, seg: &Open, server_version: &str, env: &Env) -> Result<u64> {
    let description = serde_json::json!({
        "kind": "binlog-segment",
        "server_version": server_version,
        "file": seg.name.file,
        "start": seg.name.start,
        "end": seg.name.end,
        "events": seg.events,
        "first_event_time": seg.first_time,
        "last_event_time": seg.last_time,
        "closed": seg.rotated,
        "gtid_first": gtid_text(&seg.gtid_first),
        "gtid_last": gtid_text(&seg.gtid_last),
        "gtid_list": seg.gtid_list.as_ref().map(gtid_text),
        "sha256": coffer_crypto::hex(&coffer_crypto::sha256(&seg.bytes)),
    });
    let files = vec![
        (EVENTS_ENTRY.to_owned(), seg.bytes.clone()),
        (SEGMENT_ENTRY.to_owned(), serde_json::to_vec_pretty(&description)?),
    ];
    let url = format!("{}{}", spec.prefix, seg.name.object_name());
    let mut b = crate::backup::BackupSpec::new(SourceSpec::Memory(files), Location::Object(url.clone()));
    b.keys = spec.keys.clone();
    b.seal = spec.seal.clone();
    b.validate = false;
    let quiet = crate::Env { report: std::sync::Arc::new(crate::Silent), ..env.clone() };
    crate::backup::backup(&b, &quiet).with_context(|| format!("cannot store the segment {url}"))?;
    env.report.say(&format!(
        "archived {} {}..{} ({} events, {} bytes{})",
        seg.name.file,
        seg.name.start,
        seg.name.end,
        seg.events,
        seg.bytes.len(),
        if seg.rotated { ", file complete" } else { "" }
    ));
    Ok(seg.bytes.len() as u64)
}

/// Archives the server's binary log under `spec.prefix`, from where the archive ends.
pub fn archive(spec: &ArchiveSpec, env: &Env) -> Result<ArchiveSummary> {
    prefix_url(&spec.prefix)?;
    let mut summary = ArchiveSummary::default();
    let mut backoff = Duration::from_millis(500);
    loop {
        match archive_once(spec, &mut summary, env) {
            Ok(()) => break,
            Err(e) if spec.follow && reconnectable(&e) => {
                env.report.warn(&format!("{}; reconnecting in {:.1} s", e.one_line(), backoff.as_secs_f64()));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((from, to)) = &summary.gap {
        return Err(Error::msg(format!(
            "a gap in the archive: the binary logs {from} and {to} were purged by the server before they were archived \
             ({} segments archived after it); point-in-time recovery cannot cross it",
            summary.segments
        )));
    }
    Ok(summary)
}

/// Errors of the link, after which a run following the server connects again.
fn reconnectable(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(ClientError::Io(_)) = c.downcast_ref::<ClientError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

fn archive_once(spec: &ArchiveSpec, summary: &mut ArchiveSummary, env: &Env) -> Result<()> {
    let mut c = connect(spec)?;
    let version = c.server_version().to_owned();
    let logs = server_logs(&mut c)?;
    let last = segments(&spec.prefix, env)?.pop().map(|s| s.0);
    let ((file, pos), gap) = start_point(last.as_ref().or(summary.end.as_ref()), &logs)?;
    if let Some(g) = gap {
        env.report.warn(&format!("the server purged the binary logs {} and {} before they were archived", g.0, g.1));
        summary.gap.get_or_insert(g);
    }
    let flags = DUMP_SEND_ANNOTATE_ROWS | if spec.follow { 0 } else { DUMP_NON_BLOCK };
    c.dump(&file, pos, spec.server_id, flags, Duration::from_secs(1)).map_err(Error::other)?;
    let mut seg = Open::new(file, pos);
    let result = (|| -> Result<()> {
        loop {
            let next = c.next_event().map_err(|e| Error::other(e).context("the binary log stream broke"))?;
            let Some((h, e)) = next else { return Ok(()) };
            if h.in_file() {
                append(&mut seg, &h, &e)?;
            }
            let full = seg.bytes.len() as u64 >= spec.segment_size;
            let old = spec.follow && seg.opened.elapsed() >= spec.segment_time;
            if !seg.bytes.is_empty() && (seg.rotated || full || old) {
                summary.bytes += seal(spec, &seg, &version, env)?;
                summary.segments += 1;
                summary.end = Some(seg.name.clone());
                seg = if seg.rotated {
                    Open::new(rotated_to(&e)?, 4)
                } else {
                    Open::new(seg.name.file.clone(), seg.name.end)
                };
            }
        }
    })();
    // What arrived whole is kept, whatever ended the stream.
    if !seg.bytes.is_empty() {
        summary.bytes += seal(spec, &seg, &version, env)?;
        summary.segments += 1;
        summary.end = Some(seg.name.clone());
    }
    result
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
    seg.rotated = h.type_code == event::ROTATE;
    seg.name.closed = seg.rotated;
    match h.type_code {
        GTID_EVENT => {
            if let Some((domain, server, seq)) = gtid_of(h, e) {
                seg.gtid_first.entry(domain).or_insert((server, seq));
                seg.gtid_last.insert(domain, (server, seq));
            }
        }
        GTID_LIST_EVENT => seg.gtid_list = gtid_list_of(e),
        _ => {}
    }
    Ok(())
}

/// The file a real ROTATE event names: after the header, an 8-byte position, the name, and
/// the 4-byte checksum (servers that write checksums).
fn rotated_to(e: &[u8]) -> Result<String> {
    let body = e.get(EventHeader::LEN + 8..).unwrap_or_default();
    for cut in [4, 0] {
        if let Some(name) = body.len().checked_sub(cut).and_then(|n| std::str::from_utf8(&body[..n]).ok()) {
            if is_binlog_file_name(name) {
                return Ok(name.to_owned());
            }
        }
    }
    Err(Error::msg("a ROTATE event names no binary log file"))
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
    let wanted = found.iter().filter(|(s, _)| from.is_none_or(|f| file_number(&s.file) >= file_number(f)));
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
            let path = to_dir.join(&s.file);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(&mut f, b"\xfebin")?;
            out = Some((f, s.file.clone(), 4));
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

/// One entry of an image, whole, through its index; refused if its record says it holds more
/// than `max` bytes.
fn read_entry(
    location: &Location,
    unlocks: &[coffer_crypto::Unlock],
    name: &str,
    max: u64,
    env: &Env,
) -> Result<Vec<u8>> {
    let idx =
        location.open_indexed(unlocks, env)?.ok_or_else(|| Error::msg(format!("{}: no index", location.shown())))?;
    let i = idx
        .records()
        .iter()
        .position(|r| r.meta.path == name.as_bytes())
        .ok_or_else(|| Error::msg(format!("{}: no {name} entry", location.shown())))?;
    if idx.records()[i].size > max {
        crate::bail!(
            "{}: its {name} entry holds {} bytes, more than the {max} it may",
            location.shown(),
            idx.records()[i].size
        );
    }
    let mut out = coffer_image::StreamVisitor::new(Vec::new());
    idx.read_entry(i, &mut out, 1)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut list = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 100u64), (3, 7, 41)] {
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
    }

    #[test]
    fn segment_names() {
        let s = SegmentName { file: "binlog.000012".into(), start: 4, end: 12345, closed: false };
        assert_eq!(s.object_name(), "binlog.000012_0000000004_0000012345.coffer");
        assert_eq!(SegmentName::parse(&s.object_name()), Some(s.clone()));
        let closed = SegmentName { closed: true, ..s };
        assert_eq!(closed.object_name(), "binlog.000012_0000000004_0000012345-closed.coffer");
        assert_eq!(SegmentName::parse(&closed.object_name()), Some(closed));
        for bad in [
            "x.coffer",
            "binlog.000001_4_9.coffer",
            "binlog.000001_0000000009_0000000004.coffer",
            "../x.000001_0000000004_0000000009.coffer",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn runs_start_where_the_archive_ends() {
        let logs = vec![("b.000002".to_owned(), 500u64), ("b.000003".to_owned(), 900)];
        let seg = |f: &str, start, end, closed| SegmentName { file: f.into(), start, end, closed };
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
        assert_eq!((at, gap.is_some()), (("b.000002".into(), 4), true));
        let (_, gap) = start_point(Some(&seg("b.000000", 4, 50, true)), &logs).unwrap();
        assert!(gap.is_some());
    }
}
