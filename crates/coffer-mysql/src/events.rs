//! Binary log events as point-in-time recovery walks them: each event checked to end where
//! its header says, and transactions told apart (MariaDB's GTID event opens one; an XID
//! event, a `COMMIT`/`ROLLBACK` query, or the one statement of a standalone transaction ends
//! it). Every byte comes from an archive segment, which anyone who can seal one may have
//! written: nothing here reads past an event or panics.

use crate::client::EventHeader;
use std::collections::BTreeMap;

/// A GTID: (domain, server id, sequence number).
pub type Gtid = (u32, u32, u64);
/// A GTID position (MariaDB): per replication domain, the server id and sequence number.
pub type Gtids = BTreeMap<u32, (u32, u64)>;

/// Event types that mark transactions and files.
pub const QUERY: u8 = 2;
pub const STOP: u8 = 3;
pub const ROTATE: u8 = 4;
pub const XID: u8 = 16;
/// MariaDB's GTID event.
pub const GTID: u8 = 0xa2;
/// MariaDB's GTID_LIST event: the binlog state before its file.
pub const GTID_LIST: u8 = 0xa3;

/// `domain-server-seq` joined by commas, as MariaDB writes positions.
pub fn gtid_text(g: &Gtids) -> String {
    g.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect::<Vec<_>>().join(",")
}

/// A MariaDB GTID list (`0-1-100,1-2-5`; empty: none); `None` if it is not one, or names a
/// domain twice.
pub fn parse_gtids(text: &str) -> Option<Gtids> {
    let mut out = Gtids::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut n = part.splitn(3, '-');
        let (d, s, q) = (n.next()?.parse().ok()?, n.next()?.parse().ok()?, n.next()?.parse().ok()?);
        if out.insert(d, (s, q)).is_some() {
            return None;
        }
    }
    Some(out)
}

/// CRC-32 (ISO-HDLC), as the binary log's checksums.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Where an event's checksum starts: when its last 4 bytes are the CRC-32 of what comes
/// before them, and more than `min` bytes do.
pub fn checksummed_len(e: &[u8], min: usize) -> Option<usize> {
    let n = e.len().checked_sub(4).filter(|n| *n > min)?;
    (crc32(&e[..n]) == u32::from_le_bytes(e[n..].try_into().expect("4 bytes"))).then_some(n)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("{file} at {at}: an event cut short")]
    Cut { file: String, at: u64 },
    #[error("{file} at {at}: the event says it ends at {says}, not {ends}")]
    Misplaced { file: String, at: u64, says: u32, ends: u64 },
}

/// One event: where it starts in its file, its header and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub start: u32,
    pub header: EventHeader,
    pub bytes: &'a [u8],
}

/// The events of `bytes`, which start at `start` of `file`, each checked to end where its
/// header says.
pub fn events<'a>(file: &str, start: u32, bytes: &'a [u8]) -> Result<Vec<Event<'a>>, EventError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let here = u64::from(start) + at as u64;
        let rest = &bytes[at..];
        let cut = || EventError::Cut { file: file.to_owned(), at: here };
        let size = rest
            .get(9..13)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize)
            .filter(|&n| n >= EventHeader::LEN && n <= rest.len())
            .ok_or_else(cut)?;
        let e = &rest[..size];
        let header = EventHeader::parse(e).map_err(|_| cut())?;
        let ends = here + size as u64;
        let event_start = u32::try_from(here).map_err(|_| cut())?;
        if u64::from(header.log_pos) != ends {
            return Err(EventError::Misplaced { file: file.to_owned(), at: here, says: header.log_pos, ends });
        }
        out.push(Event { start: event_start, header, bytes: e });
        at += size;
    }
    Ok(out)
}

/// A GTID event's GTID and whether it opens a transaction of one statement (no BEGIN): its
/// body is seq u64, domain u32, flags u8 (bit 0: standalone).
pub fn gtid_of(e: &Event) -> Option<(Gtid, bool)> {
    let body = e.bytes.get(EventHeader::LEN..EventHeader::LEN + 13)?;
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let domain = u32::from_le_bytes(body[8..12].try_into().ok()?);
    Some(((domain, e.header.server_id, seq), body[12] & 1 != 0))
}

/// Does a QUERY event end a transaction (`COMMIT`, `ROLLBACK`, with or without a checksum)?
fn ends_transaction(e: &Event) -> bool {
    let b = e.bytes;
    [0usize, 4].iter().any(|&cut| {
        let text = &b[..b.len().saturating_sub(cut)];
        text.ends_with(b"COMMIT") || text.ends_with(b"ROLLBACK")
    })
}

/// The statement of a QUERY event (its text, and the checksum if the file has one): after the
/// header, the post-header (thread id u32, exec time u32, db length u8, error code u16,
/// status variables length u16), the status variables, and the db name with its NUL.
pub fn query_text<'a>(e: &Event<'a>) -> Option<&'a [u8]> {
    let post = e.bytes.get(EventHeader::LEN..EventHeader::LEN + 13)?;
    let db_len = usize::from(post[8]);
    let vars_len = usize::from(u16::from_le_bytes([post[11], post[12]]));
    e.bytes.get(EventHeader::LEN + 13 + vars_len + db_len + 1..)
}

/// Might a QUERY event create a temporary table (its statement names both CREATE and
/// TEMPORARY, in any case)? Errs on the side of yes: a statement that merely mentions both
/// words counts.
pub fn creates_temporary_table(e: &Event) -> bool {
    if e.header.type_code != QUERY {
        return false;
    }
    let Some(text) = query_text(e) else { return false };
    let has = |word: &[u8]| text.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    has(b"create") && has(b"temporary")
}

/// More event types `binlog show` reads.
pub const FORMAT_DESCRIPTION: u8 = 15;
pub const TABLE_MAP: u8 = 19;
/// MariaDB's ANNOTATE_ROWS: the statement that row events which follow it come from.
pub const ANNOTATE_ROWS: u8 = 160;
/// MariaDB's QUERY with its statement compressed (`log_bin_compress`).
pub const QUERY_COMPRESSED: u8 = 165;

/// What a row event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RowsKind {
    Insert,
    Update,
    Delete,
}

impl RowsKind {
    /// The kind of a row event's type: MySQL's pre-GA (20-22), v1 (23-25), v2 (30-32) and
    /// partial update (39), MariaDB's compressed v1 and v2 (166-171); `None` for others.
    pub fn of(type_code: u8) -> Option<Self> {
        match type_code {
            20 | 23 | 30 | 166 | 169 => Some(RowsKind::Insert),
            21 | 24 | 31 | 39 | 167 | 170 => Some(RowsKind::Update),
            22 | 25 | 32 | 168 | 171 => Some(RowsKind::Delete),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            RowsKind::Insert => "INSERT",
            RowsKind::Update => "UPDATE",
            RowsKind::Delete => "DELETE",
        }
    }
}

/// An event's body: after the header, without the checksum when its last 4 bytes are the
/// CRC-32 of the rest (a file's FORMAT_DESCRIPTION says whether it has them; the CRC itself
/// tells as well, and needs no state).
pub fn body<'a>(e: &Event<'a>) -> &'a [u8] {
    let end = checksummed_len(e.bytes, EventHeader::LEN).unwrap_or(e.bytes.len());
    e.bytes.get(EventHeader::LEN..end).unwrap_or_default()
}

/// The length of table ids in TABLE_MAP and row events, from a FORMAT_DESCRIPTION event: 4
/// where TABLE_MAP's post-header is 6 bytes (servers before 5.1.4), else 6.
pub fn table_id_len(fd: &Event) -> usize {
    // binlog version u16, server version [50], create time u32, header length u8, then the
    // post-header length of each type, from type 1.
    match fd.bytes.get(EventHeader::LEN + 57 + usize::from(TABLE_MAP) - 1) {
        Some(6) => 4,
        _ => 6,
    }
}

fn table_id(b: &[u8], id_len: usize) -> Option<u64> {
    let raw = b.get(..id_len)?;
    Some(raw.iter().rev().fold(0u64, |n, x| n << 8 | u64::from(*x)))
}

/// A TABLE_MAP event's table id, database and table names: table id, flags u16, then each
/// name as a length byte, the name and a NUL.
pub fn table_map_of<'a>(e: &Event<'a>, id_len: usize) -> Option<(u64, &'a [u8], &'a [u8])> {
    let b = body(e);
    let id = table_id(b, id_len)?;
    let at = id_len + 2;
    let db_len = usize::from(*b.get(at)?);
    let db = b.get(at + 1..at + 1 + db_len)?;
    let at = at + 1 + db_len + 1;
    let t_len = usize::from(*b.get(at)?);
    let table = b.get(at + 1..at + 1 + t_len)?;
    Some((id, db, table))
}

/// A row event's table id (its first post-header field).
pub fn rows_table_id(e: &Event, id_len: usize) -> Option<u64> {
    table_id(body(e), id_len)
}

/// A QUERY event's default database and statement (without the checksum; of a
/// QUERY_COMPRESSED event, the compressed bytes): after the post-header (as [`query_text`]
/// reads it), the status variables, the database name and its NUL.
pub fn query_of<'a>(e: &Event<'a>) -> Option<(&'a [u8], &'a [u8])> {
    let b = body(e);
    let post = b.get(..13)?;
    let db_len = usize::from(post[8]);
    let vars_len = usize::from(u16::from_le_bytes([post[11], post[12]]));
    let db = b.get(13 + vars_len..13 + vars_len + db_len)?;
    let text = b.get(13 + vars_len + db_len + 1..)?;
    Some((db, text))
}

/// Events taken in log order, knowing where transactions begin and end.
#[derive(Debug, Default, Clone)]
pub struct Walk {
    /// Inside a transaction (after its GTID event, before its end).
    pub open: bool,
    /// The open transaction is one statement: it ends with its next QUERY event.
    standalone: bool,
    pub events: u64,
    /// Transactions begun.
    pub transactions: u64,
    pub bytes: u64,
    /// The last transaction ended, and when the last one began (the event's seconds).
    pub last_gtid: Option<Gtid>,
    pub last_time: Option<i64>,
    /// Each domain's last transaction ended.
    pub applied: Gtids,
    /// The GTID of the open transaction.
    pub current: Option<Gtid>,
}

impl Walk {
    /// Takes `e` in.
    pub fn take(&mut self, e: &Event) {
        self.events += 1;
        self.bytes += e.bytes.len() as u64;
        match e.header.type_code {
            GTID => {
                if let Some((g, standalone)) = gtid_of(e) {
                    self.open = true;
                    self.standalone = standalone;
                    self.current = Some(g);
                    self.transactions += 1;
                    self.last_time = Some(i64::from(e.header.timestamp));
                }
            }
            XID => self.close(),
            QUERY if self.open && (self.standalone || ends_transaction(e)) => self.close(),
            _ => {}
        }
    }

    fn close(&mut self) {
        self.open = false;
        if let Some(g @ (d, s, n)) = self.current.take() {
            self.applied.insert(d, (s, n));
            self.last_gtid = Some(g);
        }
    }
}

/// Walks `bytes` (events from `start` of `file`); for fuzzing and tests.
pub fn walk(file: &str, start: u32, bytes: &[u8]) -> Result<Walk, EventError> {
    let mut w = Walk::default();
    for e in events(file, start, bytes)? {
        w.take(&e);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(type_code: u8, start: u32, body: &[u8]) -> Vec<u8> {
        let size = (EventHeader::LEN + body.len() + 4) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&100u32.to_le_bytes());
        e.push(type_code);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&(start + size).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        e.extend_from_slice(&[0; 4]);
        e
    }

    #[test]
    fn transactions_are_walked_from_their_events() {
        let mut log = Vec::new();
        let mut at = 4u32;
        let mut push = |t: u8, body: &[u8], log: &mut Vec<u8>| {
            let e = event(t, at, body);
            at += e.len() as u32;
            log.extend_from_slice(&e);
        };
        let gtid = |seq: u64, flags: u8| [&seq.to_le_bytes()[..], &0u32.to_le_bytes(), &[flags]].concat();
        push(GTID, &gtid(7, 0), &mut log);
        push(QUERY, b"....BEGIN", &mut log);
        push(XID, &[0; 8], &mut log);
        push(GTID, &gtid(8, 1), &mut log);
        push(QUERY, b"....CREATE TABLE t (a INT)", &mut log);
        push(GTID, &gtid(9, 0), &mut log);
        push(QUERY, b"....BEGIN", &mut log);
        push(QUERY, b"....ROLLBACK", &mut log);
        push(GTID, &gtid(10, 0), &mut log);
        let found = events("binlog.000001", 4, &log).unwrap();
        let mut w = Walk::default();
        let mut open_after = Vec::new();
        for e in &found {
            w.take(e);
            open_after.push(w.open);
        }
        assert_eq!(open_after, [true, true, false, true, false, true, true, false, true]);
        assert_eq!(w.transactions, 4);
        assert_eq!(w.last_gtid, Some((0, 1, 9)));
        assert_eq!(w.current, Some((0, 1, 10)));
        assert_eq!(w.applied.get(&0), Some(&(1, 9)));
        // A cut or a lying event is refused, never read past.
        assert!(matches!(events("b.000001", 4, &log[..log.len() - 1]), Err(EventError::Cut { .. })));
        let mut lying = log.clone();
        lying[13] ^= 1;
        assert!(matches!(events("b.000001", 4, &lying), Err(EventError::Misplaced { .. })));
        let mut huge = log.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(walk("b.000001", 4, &huge).is_err());
        assert!(walk("b.000001", u32::MAX - 2, &log).is_err());
    }

    #[test]
    fn statements_that_create_temporary_tables_are_seen() {
        // Post-header: thread 7, exec time 0, the db name's length, error 0, 3 bytes of status
        // variables; then they, the db name and its NUL, the statement.
        let query = |db: &str, text: &str| {
            let mut body =
                [&7u32.to_le_bytes()[..], &0u32.to_le_bytes(), &[db.len() as u8], &0u16.to_le_bytes()].concat();
            body.extend_from_slice(&3u16.to_le_bytes());
            body.extend_from_slice(b"\x01\x02\x03");
            body.extend_from_slice(db.as_bytes());
            body.push(0);
            body.extend_from_slice(text.as_bytes());
            event(QUERY, 4, &body)
        };
        let found = |bytes: &[u8]| creates_temporary_table(&events("b.000001", 4, bytes).unwrap()[0]);
        let e = query("db", "CREATE TEMPORARY TABLE t (a INT)");
        let text = query_text(&events("b.000001", 4, &e).unwrap()[0]).unwrap();
        assert_eq!(text, b"CREATE TEMPORARY TABLE t (a INT)\0\0\0\0");
        assert!(found(&e));
        assert!(found(&query("db", "create /* x */ temporary table if not exists t select 1")));
        assert!(!found(&query("db", "CREATE TABLE t (a INT)")));
        // The server's own DROP when a session ends creates nothing.
        assert!(!found(&query("db", "DROP /*!40005 TEMPORARY */ TABLE IF EXISTS `t`")));
        // The db name is not the statement; a short event has none; other events are not queries.
        assert!(!found(&query("temporary", "CREATE TABLE t (a INT)")));
        assert!(!found(&event(QUERY, 4, b"TEMPORARY CREATE")));
        assert!(!found(&event(XID, 4, b"CREATE TEMPORARY TABLE t (a INT) ....")));
    }

    #[test]
    fn row_events_and_table_maps_are_read() {
        // TABLE_MAP: id 0x010203040506, flags, "db" NUL, "t1" NUL, then column data.
        let map = event(TABLE_MAP, 4, b"\x06\x05\x04\x03\x02\x01\0\0\x02db\0\x02t1\0\x01\x03");
        let e = &events("b.000001", 4, &map).unwrap()[0];
        assert_eq!(table_map_of(e, 6), Some((0x0102_0304_0506, &b"db"[..], &b"t1"[..])));
        assert_eq!(table_map_of(e, 4).map(|m| m.0), Some(0x0304_0506));
        let rows = event(31, 4, b"\x06\x05\x04\x03\x02\x01\0\0\x02\0");
        let e = &events("b.000001", 4, &rows).unwrap()[0];
        assert_eq!((RowsKind::of(31), rows_table_id(e, 6)), (Some(RowsKind::Update), Some(0x0102_0304_0506)));
        assert_eq!([23, 30, 166, 169].map(RowsKind::of), [Some(RowsKind::Insert); 4]);
        assert_eq!([25, 32, 168, 171].map(RowsKind::of), [Some(RowsKind::Delete); 4]);
        assert_eq!([2, 19, 26, 165].map(RowsKind::of), [None; 4]);
        // A name longer than the event: nothing.
        let short = event(TABLE_MAP, 4, b"\x06\x05\x04\x03\x02\x01\0\0\x09db");
        assert_eq!(table_map_of(&events("b.000001", 4, &short).unwrap()[0], 6), None);
        // The checksum is no part of the statement when it is one.
        let mut q =
            [&7u32.to_le_bytes()[..], &0u32.to_le_bytes(), &[2], &0u16.to_le_bytes(), &0u16.to_le_bytes()].concat();
        q.extend_from_slice(b"db\0DROP TABLE t");
        let mut e = event(QUERY, 4, &q);
        let n = e.len() - 4;
        let crc = crc32(&e[..n]);
        e[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(query_of(&events("b.000001", 4, &e).unwrap()[0]), Some((&b"db"[..], &b"DROP TABLE t"[..])));
    }

    proptest::proptest! {
        /// Hostile bytes: whatever an event holds, the readers `binlog show` uses stay inside it.
        #[test]
        fn random_events_never_panic(t in proptest::prelude::any::<u8>(), bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96), id_len in 4usize..=6) {
            let e = event(t, 4, &bytes);
            let e = &events("b.000001", 4, &e).unwrap()[0];
            let _ = (table_map_of(e, id_len), rows_table_id(e, id_len), query_of(e), table_id_len(e), body(e));
            let _ = (RowsKind::of(t), gtid_of(e), query_text(e));
        }
    }
}
