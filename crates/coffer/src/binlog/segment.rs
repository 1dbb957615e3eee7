//! The segment being cut: events appended as the server sends them, with the checks that keep
//! a segment exactly as the server's file holds it (positions, ROTATE and STOP, checksums).

use super::Gap;
use crate::error::{Error, Result};
use crate::repo::archive::gtid_set::{self, GtidSet, ANONYMOUS_GTID, MYSQL_GTID, PREVIOUS_GTIDS};
use crate::repo::archive::{continues, GtidState, SegmentName};
use coffer_mysql::client::{event, EventHeader};
use coffer_mysql::events::{
    Gtid, Gtids, Walk, GTID as GTID_EVENT, GTID_LIST as GTID_LIST_EVENT, QUERY, STOP as STOP_EVENT, XID,
};
use coffer_mysql::meta::is_binlog_file_name;
use std::time::Instant;

/// A place in the server's binary log: a file and a position in it.
pub(super) type LogPlace = (String, u32);

/// A segment being filled.
pub(super) struct Open {
    pub(super) name: SegmentName,
    pub(super) bytes: Vec<u8>,
    pub(super) events: u64,
    pub(super) first_time: Option<u32>,
    pub(super) last_time: u32,
    pub(super) opened: Instant,
    /// The first and last GTID of each domain in the segment.
    pub(super) gtid_first: Gtids,
    pub(super) gtid_last: Gtids,
    /// The position at the start of the file, if the segment holds its GTID_LIST event.
    pub(super) gtid_list: Option<Gtids>,
    /// The server's GTID position where the segment starts, and as it goes (MariaDB: from
    /// BINLOG_GTID_POS where a run starts, the file's GTID_LIST, then each GTID event).
    pub(super) gtid_before: Option<Gtids>,
    pub(super) gtid_state: Option<Gtids>,
    /// The file's checksum algorithm, from its FORMAT_DESCRIPTION event.
    pub(super) checksum: Option<&'static str>,
    /// The GTID position after the last transaction that ended (as `gtid_state`, but a
    /// transaction counts at its XID or COMMIT, not its GTID event: one a crash left
    /// unfinished is not in it), and the walk of the transactions that tells.
    pub(super) committed: Option<Gtids>,
    /// The file's GTID_LIST in full, and `committed` in full: per (domain, server) the last
    /// GTID, which shows another server's lower GTID where a position keeps the highest only.
    pub(super) list_state: Option<GtidState>,
    pub(super) committed_state: Option<GtidState>,
    /// MySQL: the file's PREVIOUS_GTIDS set (where the segment holds it), the set with every
    /// transaction that ended since, and the GTID of the one under way.
    pub(super) previous_gtids: Option<GtidSet>,
    pub(super) executed: Option<GtidSet>,
    pub(super) pending: Option<([u8; 16], u64)>,
    pub(super) walk: Walk,
    /// The file before this one, which the archive holds to its end though it ends with neither
    /// ROTATE nor STOP (a crash).
    pub(super) previous: Option<Previous>,
}

/// A file the server left with neither ROTATE nor STOP, as the server reported it when the
/// archiver went on to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Previous {
    pub(super) file: String,
    /// Its size (`SHOW BINARY LOGS`).
    pub(super) size: u64,
    /// Where its last whole event ends, when the rest is an event torn by the crash.
    pub(super) torn_at: Option<u32>,
}

impl Open {
    pub(super) fn new(file: String, start: u32) -> Self {
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
            committed: None,
            list_state: None,
            committed_state: None,
            previous_gtids: None,
            executed: None,
            pending: None,
            walk: Walk::default(),
            previous: None,
        }
    }

    /// The segment that follows this one at `file`:`start`: the GTID position goes on, and
    /// the checksum algorithm within the file.
    pub(super) fn next(&self, file: String, start: u32) -> Self {
        let checksum = if file == self.name.file { self.checksum } else { None };
        Open {
            gtid_before: self.gtid_state.clone(),
            gtid_state: self.gtid_state.clone(),
            committed: self.committed.clone(),
            committed_state: self.committed_state.clone(),
            executed: self.executed.clone(),
            pending: self.pending,
            walk: self.walk.clone(),
            checksum,
            ..Open::new(file, start)
        }
    }
}

/// Takes an event of the dump into `seg`. A ROTATE the server makes up (where a dump starts,
/// and at the start of each file) naming another file than `seg`'s moves `seg` there: the
/// server went on without a ROTATE of the file's (it ended with its STOP event, or after a
/// crash, or the run started at its end). Returns the segment so left if it holds events (to
/// be sealed: complete, as the server read its file to the end), and a gap if the server did
/// not go on to the next file's start.
pub(super) fn take(seg: &mut Open, h: &EventHeader, e: &[u8]) -> Result<(Option<Open>, Option<Gap>)> {
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
pub(super) fn after(seg: &Open, h: &EventHeader, e: &[u8]) -> Result<Open> {
    Ok(match h.type_code {
        event::ROTATE if seg.name.closed => {
            let (file, at) = rotate_target(e)?;
            seg.next(file, at)
        }
        _ => seg.next(seg.name.file.clone(), seg.name.end),
    })
}

/// Adds an event of the server's file to the segment, checking that it follows the last.
pub(super) fn append(seg: &mut Open, h: &EventHeader, e: &[u8]) -> Result<()> {
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
            seg.list_state = gtid_state_of(e);
            seg.gtid_list = seg.list_state.as_ref().map(position_of);
            seg.committed_state = seg.list_state.clone();
            if seg.gtid_list.is_some() {
                seg.gtid_state = seg.gtid_list.clone();
                // A new file: what the file before left unfinished is dropped.
                seg.committed = seg.gtid_list.clone();
                seg.walk = Walk::default();
                if seg.name.start == 4 {
                    seg.gtid_before = seg.gtid_list.clone();
                }
            }
        }
        _ => {}
    }
    let start = seg.name.end.saturating_sub(e.len() as u32);
    let event = coffer_mysql::events::Event { start, header: *h, bytes: e };
    mysql_gtids(seg, &event);
    seg.walk.take(&event);
    if let (false, Some((d, s, n))) = (seg.walk.open, seg.walk.last_gtid) {
        if let Some(c) = seg.committed.as_mut() {
            c.insert(d, (s, n));
        }
        if let Some(c) = seg.committed_state.as_mut() {
            c.insert((d, s), n);
        }
    }
    Ok(())
}

/// MySQL's GTIDs (no MariaDB GTID event, no GTID_LIST): the file's PREVIOUS_GTIDS starts the
/// set over (what the file before left unfinished is dropped, as by crash recovery), and each
/// transaction joins it when it ends: at its XID, or at a QUERY other than its BEGIN (a
/// COMMIT, or a statement logged as a transaction of its own).
fn mysql_gtids(seg: &mut Open, e: &coffer_mysql::events::Event) {
    let body_end = coffer_mysql::events::checksummed_len(e.bytes, EventHeader::LEN).unwrap_or(e.bytes.len());
    let body = e.bytes.get(EventHeader::LEN..body_end).unwrap_or_default();
    match e.header.type_code {
        PREVIOUS_GTIDS => {
            seg.previous_gtids = gtid_set::from_previous_gtids(body);
            seg.executed = seg.previous_gtids.clone();
            seg.pending = None;
        }
        MYSQL_GTID => {
            let sid = body.get(1..17).and_then(|b| <[u8; 16]>::try_from(b).ok());
            let gno = body.get(17..25).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            seg.pending = sid.zip(gno.filter(|g| (1..i64::MAX as u64).contains(g)));
        }
        ANONYMOUS_GTID => seg.pending = None,
        XID => end_mysql_transaction(seg),
        QUERY => {
            let crc = e.bytes.len() - body_end;
            let text = coffer_mysql::events::query_text(e).map(|t| &t[..t.len().saturating_sub(crc)]);
            if text != Some(b"BEGIN".as_slice()) {
                end_mysql_transaction(seg);
            }
        }
        _ => {}
    }
}

fn end_mysql_transaction(seg: &mut Open) {
    if let (Some(set), Some((sid, gno))) = (seg.executed.as_mut(), seg.pending.take()) {
        gtid_set::add(set, sid, gno, gno + 1);
    }
}

/// The file and position a ROTATE event names (the file's own, or one the server makes up to
/// say where it reads next): after the header, the 8-byte position, then the name, then a
/// checksum when the event's last 4 bytes are the CRC-32 of what comes before them.
pub(super) fn rotate_target(e: &[u8]) -> Result<(String, u32)> {
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

/// The GTID a MariaDB GTID event starts.
pub(super) fn gtid_of(h: &EventHeader, e: &[u8]) -> Option<Gtid> {
    let event = coffer_mysql::events::Event { start: 0, header: *h, bytes: e };
    coffer_mysql::events::gtid_of(&event).map(|(g, _)| g)
}

/// The binlog state a GTID_LIST event gives (the state before its file): a count (low 28
/// bits), then (domain u32, server u32, seq u64) each; bounded by the event's size.
pub(super) fn gtid_state_of(e: &[u8]) -> Option<GtidState> {
    let body = e.get(EventHeader::LEN..)?;
    let count = (u32::from_le_bytes(body.get(..4)?.try_into().ok()?) & 0x0fff_ffff) as usize;
    let entries = body.get(4..)?;
    if count > entries.len() / 16 {
        return None;
    }
    let mut out = GtidState::new();
    for c in entries.chunks_exact(16).take(count) {
        let d = u32::from_le_bytes(c[..4].try_into().expect("4"));
        let s = u32::from_le_bytes(c[4..8].try_into().expect("4"));
        let n = u64::from_le_bytes(c[8..16].try_into().expect("8"));
        // A (domain, server) said twice (no server does): its highest, as the position takes.
        out.entry((d, s)).and_modify(|m| *m = (*m).max(n)).or_insert(n);
    }
    Some(out)
}

/// The position a binlog state gives: each domain's highest sequence number.
pub(super) fn position_of(state: &GtidState) -> Gtids {
    let mut out = Gtids::new();
    for (&(d, s), &n) in state {
        if out.get(&d).is_none_or(|(_, m)| *m < n) {
            out.insert(d, (s, n));
        }
    }
    out
}

/// A state as a description holds it: null when unknown, or larger than
/// [`crate::repo::archive::STATE_MAX`] (readers then compare per domain).
pub(super) fn state_field(state: Option<&GtidState>) -> Option<String> {
    state.filter(|s| s.len() <= crate::repo::archive::STATE_MAX).map(crate::repo::archive::state_text)
}

/// The position a GTID_LIST event gives.
#[cfg(test)]
fn gtid_list_of(e: &[u8]) -> Option<Gtids> {
    gtid_state_of(e).as_ref().map(position_of)
}

/// The checksum algorithm of a FORMAT_DESCRIPTION event: CRC32 when its last 4 bytes are the
/// CRC-32 of the rest.
pub(super) fn checksum_of(e: &[u8]) -> &'static str {
    match coffer_mysql::events::checksummed_len(e, EventHeader::LEN) {
        Some(_) => "CRC32",
        None => "NONE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_mysql::events::{crc32, gtid_text, parse_gtids};

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

    /// Appends an event of `body` where the segment ends.
    fn push(seg: &mut Open, type_code: u8, body: &[u8]) {
        let at = seg.name.end + (EventHeader::LEN + body.len() + 4) as u32;
        let (h, e) = event_bytes(type_code, at, 0, body);
        append(seg, &h, &e).unwrap();
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

    /// `gtid_committed` (issue 28, part 4): a transaction counts when it ends; one a crash
    /// left unfinished at a file's end is not in it, and the next file's GTID_LIST starts over.
    #[test]
    fn the_committed_position_counts_transactions_that_ended() {
        let gtid = |seq: u64| [&seq.to_le_bytes()[..], &0u32.to_le_bytes(), &[0]].concat();
        let list =
            |seq: u64| [&1u32.to_le_bytes()[..], &0u32.to_le_bytes(), &1u32.to_le_bytes(), &seq.to_le_bytes()].concat();
        let text = |g: &Option<Gtids>| g.as_ref().map(gtid_text);
        let mut seg = Open::new("b.000001".into(), 4);
        push(&mut seg, GTID_LIST_EVENT, &list(4));
        push(&mut seg, GTID_EVENT, &gtid(5));
        push(&mut seg, 2, &[0; 20]);
        assert_eq!((text(&seg.gtid_state), text(&seg.committed)), (Some("0-1-5".into()), Some("0-1-4".into())));
        push(&mut seg, 16, &[0; 8]);
        assert_eq!(text(&seg.committed).as_deref(), Some("0-1-5"), "its XID");
        // Cut inside the next transaction: the next segment goes on with it.
        push(&mut seg, GTID_EVENT, &gtid(6));
        let mut next = seg.next("b.000001".into(), seg.name.end);
        assert_eq!(text(&next.committed).as_deref(), Some("0-1-5"));
        push(&mut next, 16, &[0; 8]);
        assert_eq!(text(&next.committed).as_deref(), Some("0-1-6"));
        // A crash: 0-1-7 never ends; the restarted server's file says 0-1-6 and reuses 7.
        push(&mut next, GTID_EVENT, &gtid(7));
        push(&mut next, 2, &[0; 20]);
        assert_eq!((text(&next.gtid_state), text(&next.committed)), (Some("0-1-7".into()), Some("0-1-6".into())));
        let mut after = next.next("b.000002".into(), 4);
        push(&mut after, GTID_LIST_EVENT, &list(6));
        push(&mut after, GTID_EVENT, &gtid(7));
        push(&mut after, 16, &[0; 8]);
        assert_eq!(text(&after.committed).as_deref(), Some("0-1-7"));
        assert_eq!(text(&after.gtid_before).as_deref(), Some("0-1-6"));
    }

    /// Issue 28, part 4 (second round): a domain written by two servers. The file's GTID_LIST
    /// is kept in full, and the committed state goes on per (domain, server): server 1's lower
    /// GTID, logged after server 2's higher one (`gtid_strict_mode` off), stays in it.
    #[test]
    fn the_binlog_state_is_kept_per_domain_and_server() {
        let push = |seg: &mut Open, type_code: u8, server: u32, body: &[u8]| {
            let at = seg.name.end + (EventHeader::LEN + body.len() + 4) as u32;
            let (_, mut e) = event_bytes(type_code, at, 0, body);
            e[5..9].copy_from_slice(&server.to_le_bytes());
            let n = e.len() - 4;
            let crc = crc32(&e[..n]);
            e[n..].copy_from_slice(&crc.to_le_bytes());
            append(seg, &EventHeader::parse(&e).unwrap(), &e).unwrap();
        };
        // Known-answer bytes of a GTID_LIST body: 2 entries, (0, 1, 50) and (0, 2, 100).
        let list: Vec<u8> = [
            &[2, 0, 0, 0][..],
            &[0, 0, 0, 0, 1, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 0, 2, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let gtid = |seq: u64| [&seq.to_le_bytes()[..], &0u32.to_le_bytes(), &[0]].concat();
        let text = |g: &Option<GtidState>| g.as_ref().map(crate::repo::archive::state_text);
        let mut seg = Open::new("b.000001".into(), 4);
        push(&mut seg, GTID_LIST_EVENT, 2, &list);
        assert_eq!(text(&seg.list_state).as_deref(), Some("0-1-50,0-2-100"));
        assert_eq!(seg.gtid_list.as_ref().map(gtid_text).as_deref(), Some("0-2-100"), "a position: the highest");
        push(&mut seg, GTID_EVENT, 1, &gtid(51));
        push(&mut seg, 2, 1, &[0; 20]);
        assert_eq!(text(&seg.committed_state).as_deref(), Some("0-1-50,0-2-100"), "not ended yet");
        push(&mut seg, 16, 1, &[0; 8]);
        assert_eq!(text(&seg.committed_state).as_deref(), Some("0-1-51,0-2-100"));
        // It goes on into the next segment, and into the description (bounded).
        let next = seg.next("b.000001".into(), seg.name.end);
        assert_eq!(text(&next.committed_state).as_deref(), Some("0-1-51,0-2-100"));
        assert_eq!(next.list_state, None, "only the segment that holds the GTID_LIST");
        assert_eq!(state_field(next.committed_state.as_ref()).as_deref(), Some("0-1-51,0-2-100"));
        let big: GtidState = (0..=crate::repo::archive::STATE_MAX as u32).map(|s| ((0, s), 1)).collect();
        assert_eq!(state_field(Some(&big)), None);
        // A count the event cannot hold gives nothing.
        let (_, e) = event_bytes(GTID_LIST_EVENT, 100, 0, &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(gtid_state_of(&e), None);
        // A (domain, server) said twice, the higher first (found by fuzzing): its highest, as
        // the position before the state was kept per server took it.
        let twice = [
            &[2, 0, 0, 0][..],
            &[0, 0, 0, 0, 1, 0, 0, 0, 90, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 0, 1, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let (_, e) = event_bytes(GTID_LIST_EVENT, 100, 0, &twice);
        assert_eq!(text(&gtid_state_of(&e)).as_deref(), Some("0-1-90"));
    }

    /// Issue 28, part 4 (second round): MySQL's PREVIOUS_GTIDS starts a file's GTID set, as
    /// GTID_LIST does MariaDB's; each transaction joins it when it ends, and one a crash left
    /// unfinished does not.
    #[test]
    fn mysql_previous_gtids_and_the_transactions_that_ended() {
        let sid = [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];
        let mut previous = 1u64.to_le_bytes().to_vec();
        previous.extend_from_slice(&sid);
        for v in [1u64, 1, 7] {
            previous.extend_from_slice(&v.to_le_bytes());
        }
        let gtid = |gno: u64| [&[1u8][..], &sid, &gno.to_le_bytes(), &[0; 17]].concat();
        // A QUERY event: post-header (thread, time, db length 0, error, vars length 0), the
        // database name's NUL, then the statement.
        let query = |text: &str| [&[0u8; 13][..], &[0], text.as_bytes()].concat();
        let text = |g: &Option<GtidSet>| g.as_ref().map(gtid_set::text);
        let mut seg = Open::new("b.000001".into(), 4);
        push(&mut seg, PREVIOUS_GTIDS, &previous);
        assert_eq!(text(&seg.previous_gtids).as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6"));
        push(&mut seg, MYSQL_GTID, &gtid(7));
        push(&mut seg, QUERY, &query("BEGIN"));
        assert_eq!(text(&seg.executed).as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6"), "not ended");
        push(&mut seg, XID, &[0; 8]);
        push(&mut seg, MYSQL_GTID, &gtid(8));
        push(&mut seg, QUERY, &query("CREATE TABLE t (a INT)"));
        assert_eq!(text(&seg.executed).as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8"));
        // Cut into the next segment inside a transaction that a crash leaves unfinished.
        push(&mut seg, MYSQL_GTID, &gtid(9));
        let mut next = seg.next("b.000001".into(), seg.name.end);
        push(&mut next, QUERY, &query("BEGIN"));
        assert_eq!(text(&next.executed).as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8"));
        assert_eq!(next.pending, Some((sid, 9)));
        assert_eq!(next.previous_gtids, None, "only the segment that holds the event");
        // The restarted server's next file: its set starts over, the unfinished one dropped.
        let mut after = next.next("b.000002".into(), 4);
        push(&mut after, PREVIOUS_GTIDS, &previous);
        push(&mut after, XID, &[0; 8]);
        assert_eq!(text(&after.executed).as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6"));
        // A body that does not hold what it declares gives no set.
        push(&mut after, PREVIOUS_GTIDS, &previous[..previous.len() - 8]);
        assert_eq!(after.previous_gtids, None);
    }
}
