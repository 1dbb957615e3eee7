//! `binlog show`: the archived log's transactions, one by one, with where each begins and ends
//! and what it did, so that a DBA finds the GTID or position of a mistake (a DROP TABLE, a
//! TRUNCATE, a bad UPDATE) and restores to just before it (`--until-gtid G --exclusive`).
//!
//! The segments are read in log order, as recovery reads them ([`Archive`]). A transaction
//! touches a table when one of its row events maps to it (TABLE_MAP), or when one of its
//! statements names it ([`super::statement`]: a match of words, not a parse).

use super::statement::names_table;
use crate::error::{Error, Result};
use crate::keys::KeySources;
use crate::repo::archive::{segments, Archive};
use crate::repo::recovery::Until;
use crate::text::escape;
use crate::Env;
use coffer_mysql::events::{self as ev, Event, RowsKind, Walk};
use std::collections::HashMap;

/// What `binlog show` reads, and which transactions it shows.
#[derive(Debug, Clone, Default)]
pub struct ShowSpec {
    /// The archive's prefix.
    pub prefix: String,
    /// Only transactions that touch one of these tables (database, table); all if empty.
    pub tables: Vec<(String, String)>,
    /// Only transactions stamped at or after this second (Unix seconds)...
    pub from: Option<i64>,
    /// ... and at or before this one.
    pub until: Option<i64>,
    /// The archive's secrets (its events are sealed).
    pub keys: KeySources,
}

impl ShowSpec {
    /// The spec of `binlog show PREFIX [--table DB.T]... [--from TIME] [--until TIME]`.
    pub fn new(
        prefix: String,
        tables: &[String],
        from: Option<&str>,
        until: Option<&str>,
        keys: KeySources,
    ) -> Result<Self> {
        let time = |option, t: Option<&str>| t.map(|t| Until::parse_moment(option, t)).transpose();
        let (from, until) = (time("--from", from)?, time("--until", until)?);
        Ok(ShowSpec { prefix, tables: Self::parse_tables(tables)?, from, until, keys })
    }

    /// `DB.T` names, as `--table` gives them (a usage error otherwise).
    pub fn parse_tables(names: &[String]) -> Result<Vec<(String, String)>> {
        names
            .iter()
            .map(|n| match n.split_once('.') {
                Some((d, t)) if !d.is_empty() && !t.is_empty() && !t.contains('.') && t != "*" => {
                    Ok((d.into(), t.into()))
                }
                _ => Err(Error::usage(format!("--table {n:?}: expected DATABASE.TABLE (one table, no wildcard)"))),
            })
            .collect()
    }
}

/// What a transaction did, in log order (consecutive row events of one kind, table and
/// statement counted as one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Part {
    /// Row events.
    Rows {
        /// What they do.
        op: RowsKind,
        /// The table's database, as the TABLE_MAP names it (`?` if none does).
        db: String,
        /// The table.
        table: String,
        /// Row events (each holds one or more rows).
        events: u64,
        /// The statement they came from, where the log says it (ANNOTATE_ROWS), cut.
        statement: Option<String>,
    },
    /// A statement (a QUERY event), escaped and cut, with its default database.
    Statement {
        /// Its default database (empty: none).
        db: String,
        /// The statement.
        text: String,
    },
}

/// One transaction of the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    /// `domain-server-seq`.
    pub gtid: String,
    /// Its GTID event's timestamp (Unix seconds): when its first statement began.
    pub time: i64,
    /// The binary log file it is in.
    pub file: String,
    /// Where its GTID event starts: what `--until-position F:START --exclusive` takes.
    pub start: u32,
    /// Where its last event ends: what `--until-position F:END` takes to include it.
    pub end: u32,
    /// What it did.
    pub parts: Vec<Part>,
    /// Parts beyond the first [`MAX_PARTS`], not kept.
    pub more_parts: u64,
}

/// Parts kept of one transaction.
pub const MAX_PARTS: usize = 100;
/// Characters kept of a statement.
const STATEMENT_CHARS: usize = 200;
/// Parts a line shows.
const LINE_PARTS: usize = 4;

impl Shown {
    /// Its line, or one JSON object.
    pub fn render(&self, json: bool) -> String {
        if json {
            serde_json::to_string(self).unwrap_or_default()
        } else {
            self.line()
        }
    }

    /// `GTID  TIME  FILE:START-END  what`.
    pub fn line(&self) -> String {
        let mut what: Vec<String> = self.parts.iter().take(LINE_PARTS).map(Part::shown).collect();
        let more = (self.parts.len().saturating_sub(LINE_PARTS)) as u64 + self.more_parts;
        if more > 0 {
            what.push(format!("and {more} more"));
        }
        let time = crate::text::utc(self.time);
        format!("{}  {time}  {}:{}-{}  {}", self.gtid, self.file, self.start, self.end, what.join("; "))
    }
}

impl Part {
    fn shown(&self) -> String {
        match self {
            Part::Rows { op, db, table, events, statement } => {
                let of = statement.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
                format!("{} {db}.{table} ({events} row event{}{of})", op.word(), if *events == 1 { "" } else { "s" })
            }
            Part::Statement { db, text } if db.is_empty() => text.clone(),
            Part::Statement { db, text } => format!("[{db}] {text}"),
        }
    }
}

/// What `binlog show` read and showed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShowSummary {
    /// Segments read.
    pub segments: usize,
    /// Transactions read (ended in the log).
    pub read: u64,
    /// Transactions shown.
    pub shown: u64,
    /// Gaps in the archive: a transaction across one is not shown.
    pub gaps: usize,
}

impl ShowSummary {
    /// Its line, or one JSON object (`segments`, `read`, `shown`, `gaps`).
    pub fn render(&self, spec: &ShowSpec, json: bool) -> String {
        if json {
            serde_json::to_string(self).unwrap_or_default()
        } else {
            self.line(spec)
        }
    }

    /// The last line of `binlog show`: what was read and shown.
    pub fn line(&self, spec: &ShowSpec) -> String {
        let tables: Vec<String> = spec.tables.iter().map(|(d, t)| format!("{d}.{t}")).collect();
        let touching = if tables.is_empty() { String::new() } else { format!(" touching {}", tables.join(", ")) };
        let gaps = if self.gaps == 0 { String::new() } else { format!(", across {} gaps", self.gaps) };
        format!("read {} transactions in {} segments{gaps}; showed {}{touching}", self.read, self.segments, self.shown)
    }
}

/// Walks the archive under `spec.prefix`, calling `each` with every transaction it shows.
pub fn show(spec: &ShowSpec, each: &mut dyn FnMut(&Shown), env: &Env) -> Result<ShowSummary> {
    if !spec.keys.any() {
        return Err(Error::usage("binlog show reads the archived events: give the archive's key"));
    }
    let unlocks = crate::keys::unlocks(&spec.keys, env)?;
    let archive = Archive::new(segments(&spec.prefix, env)?, &unlocks, env)?;
    let mut reader =
        Reader { spec, walk: Walk::default(), tx: None, maps: HashMap::new(), id_len: 6, annotation: None };
    let mut summary = ShowSummary { segments: archive.segments.len(), ..Default::default() };
    for (i, (seg, _)) in archive.segments.iter().enumerate() {
        if i > 0 && archive.joins[i].is_gap() {
            if let crate::repo::archive::Join::Gap(what) = &archive.joins[i] {
                env.report.warn(&format!("the archive has a gap: {what}"));
            }
            summary.gaps += 1;
            reader.drop_open();
        } else if seg.start == 4 {
            // A transaction a crash left unfinished at the file's end is no transaction.
            reader.drop_open();
        }
        let bytes = archive.events(i)?;
        for e in ev::events(&seg.file, seg.start, &bytes).map_err(Error::other)? {
            if let Some(done) = reader.take(&seg.file, &e) {
                summary.read += 1;
                if done.1 && spec.from.is_none_or(|f| done.0.time >= f) && spec.until.is_none_or(|u| done.0.time <= u) {
                    summary.shown += 1;
                    each(&done.0);
                }
            }
        }
    }
    Ok(summary)
}

/// The walk of `show`, event by event.
struct Reader<'a> {
    spec: &'a ShowSpec,
    walk: Walk,
    /// The open transaction, and whether it touches a table named.
    tx: Option<(Shown, bool)>,
    /// The tables of the open transaction's row events, by table id.
    maps: HashMap<u64, (String, String)>,
    /// The length of table ids in this file (from its FORMAT_DESCRIPTION).
    id_len: usize,
    /// The statement the next row events come from.
    annotation: Option<String>,
}

impl Reader<'_> {
    fn drop_open(&mut self) {
        self.walk = Walk::default();
        self.tx = None;
    }

    /// Takes `e` of `file`; the transaction it ends, if it ends one.
    fn take(&mut self, file: &str, e: &Event) -> Option<(Shown, bool)> {
        let was_open = self.walk.open;
        self.walk.take(e);
        match e.header.type_code {
            ev::FORMAT_DESCRIPTION => self.id_len = ev::table_id_len(e),
            ev::GTID => self.begin(file, e),
            ev::TABLE_MAP => {
                if let Some((id, db, table)) = ev::table_map_of(e, self.id_len) {
                    let (db, table) = (escape(db), escape(table));
                    // A table mapped is touched even without a row event of its own: a foreign
                    // key's cascade changes it, and only the parent's rows are logged.
                    if let Some((_, touches)) = self.tx.as_mut() {
                        *touches |= self
                            .spec
                            .tables
                            .iter()
                            .any(|(d, t)| db.eq_ignore_ascii_case(d) && table.eq_ignore_ascii_case(t));
                    }
                    self.maps.insert(id, (db, table));
                }
            }
            ev::ANNOTATE_ROWS => self.annotation = Some(cut(ev::body(e))),
            ev::QUERY | ev::QUERY_COMPRESSED => self.statement(e),
            t => {
                if let Some(op) = RowsKind::of(t) {
                    self.rows(op, e);
                }
            }
        }
        if was_open && !self.walk.open {
            let (mut shown, touches) = self.tx.take()?;
            shown.end = e.header.log_pos;
            return Some((shown, touches || self.spec.tables.is_empty()));
        }
        None
    }

    fn begin(&mut self, file: &str, e: &Event) {
        self.maps.clear();
        self.annotation = None;
        self.tx = ev::gtid_of(e).map(|((d, s, n), _)| {
            let shown = Shown {
                gtid: format!("{d}-{s}-{n}"),
                time: i64::from(e.header.timestamp),
                file: file.to_owned(),
                start: e.start,
                end: e.header.log_pos,
                parts: Vec::new(),
                more_parts: 0,
            };
            (shown, false)
        });
    }

    fn statement(&mut self, e: &Event) {
        let Some((db, text)) = ev::query_of(e) else { return };
        let Some((tx, touches)) = self.tx.as_mut() else { return };
        let word = String::from_utf8_lossy(text.trim_ascii());
        if ["BEGIN", "COMMIT", "ROLLBACK"].iter().any(|w| word.eq_ignore_ascii_case(w)) {
            return;
        }
        let compressed = e.header.type_code == ev::QUERY_COMPRESSED;
        // A compressed statement is not read: it is shown, for it may name the table.
        *touches |= compressed || self.spec.tables.iter().any(|(d, t)| names_table(text, db, d, t));
        let text = if compressed { "(a compressed statement, not read)".to_owned() } else { cut(text) };
        push(tx, Part::Statement { db: escape(db), text });
    }

    fn rows(&mut self, op: RowsKind, e: &Event) {
        let Some((tx, touches)) = self.tx.as_mut() else { return };
        let id = ev::rows_table_id(e, self.id_len);
        let (db, table) = match id.and_then(|id| self.maps.get(&id)) {
            Some(m) => m.clone(),
            None => ("?".into(), format!("(table id {})", id.unwrap_or_default())),
        };
        let same = |d: &str, t: &str| db.eq_ignore_ascii_case(d) && table.eq_ignore_ascii_case(t);
        *touches |= self.spec.tables.iter().any(|(d, t)| same(d, t));
        let statement = self.annotation.clone();
        if let Some(Part::Rows { op: o, db: d, table: t, events, statement: s }) = tx.parts.last_mut() {
            if (*o, &*d, &*t, &*s) == (op, &db, &table, &statement) {
                *events += 1;
                self.statement_end(e);
                return;
            }
        }
        push(tx, Part::Rows { op, db, table, events: 1, statement });
        self.statement_end(e);
    }

    /// The last row event of a statement (flag STMT_END) ends what its ANNOTATE_ROWS says.
    fn statement_end(&mut self, e: &Event) {
        if ev::body(e).get(self.id_len).is_some_and(|flags| flags & 1 != 0) {
            self.annotation = None;
        }
    }
}

fn push(tx: &mut Shown, part: Part) {
    if tx.parts.len() < MAX_PARTS {
        tx.parts.push(part);
    } else {
        tx.more_parts += 1;
    }
}

/// A statement, escaped (control characters, invalid UTF-8) and cut at [`STATEMENT_CHARS`].
fn cut(text: &[u8]) -> String {
    let text = text.trim_ascii();
    // Escaping at most quadruples a byte; more than this is never shown.
    let shown = escape(&text[..text.len().min(STATEMENT_CHARS * 4)]);
    match shown.char_indices().nth(STATEMENT_CHARS) {
        Some((i, _)) => format!("{}...", &shown[..i]),
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_escaped_and_cut() {
        assert_eq!(cut(b"  DROP TABLE t\n"), "DROP TABLE t");
        assert_eq!(cut(b"a\nb\x01\xff"), "a\\nb\\x01\\xff");
        let long = cut("é".repeat(1000).as_bytes());
        assert_eq!(long.chars().count(), STATEMENT_CHARS + 3);
        assert!(long.ends_with("..."));
        let part = Part::Rows { op: RowsKind::Update, db: "d".into(), table: "t".into(), events: 3, statement: None };
        assert_eq!(part.shown(), "UPDATE d.t (3 row events)");
        let part = Part::Statement { db: "d".into(), text: "TRUNCATE t".into() };
        assert_eq!(part.shown(), "[d] TRUNCATE t");
        let tables = ShowSpec::parse_tables(&["d.t".into(), "d.t2".into()]).unwrap();
        assert_eq!(tables, [("d".into(), "t".into()), ("d".into(), "t2".into())]);
        for bad in ["t", ".t", "d.", "a.b.c", "d.*"] {
            assert!(ShowSpec::parse_tables(&[bad.into()]).is_err(), "{bad}");
        }
    }

    /// Events at `start` on: each (type, body) with a header and a zero checksum.
    fn log(events: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, body) in events {
            let size = (19 + body.len() + 4) as u32;
            let at = 4 + out.len() as u32;
            out.extend_from_slice(&100u32.to_le_bytes());
            out.push(*t);
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&(at + size).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(body);
            let crc = ev::crc32(&out[at as usize - 4..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out
    }

    fn gtid(n: u64, standalone: bool) -> (u8, Vec<u8>) {
        (ev::GTID, [&n.to_le_bytes()[..], &0u32.to_le_bytes(), &[u8::from(standalone)]].concat())
    }

    fn query(db: &str, text: &str) -> (u8, Vec<u8>) {
        let mut b = [&0u32.to_le_bytes()[..], &0u32.to_le_bytes(), &[db.len() as u8], &[0, 0], &[0, 0]].concat();
        b.extend_from_slice(db.as_bytes());
        b.push(0);
        b.extend_from_slice(text.as_bytes());
        (ev::QUERY, b)
    }

    fn read(spec: &ShowSpec, bytes: &[u8]) -> Vec<(Shown, bool)> {
        let mut r = Reader { spec, walk: Walk::default(), tx: None, maps: HashMap::new(), id_len: 6, annotation: None };
        let found = ev::events("binlog.000001", 4, bytes).unwrap();
        found.iter().filter_map(|e| r.take("binlog.000001", e)).collect()
    }

    #[test]
    fn transactions_are_read_with_their_rows_and_statements() {
        let map = |id: u8, t: &str| {
            let mut b = vec![id, 0, 0, 0, 0, 0, 0, 0, 1, b'd', 0, t.len() as u8];
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&[0, 1, 3]);
            (ev::TABLE_MAP, b)
        };
        // Table id, flags (STMT_END: 1), then the rows (not read).
        let rows = |t: u8, id: u8, end: u8| (t, vec![id, 0, 0, 0, 0, 0, end, 0, 1, 0]);
        let bytes = log(&[
            gtid(1, false),
            query("d", "BEGIN"),
            (ev::ANNOTATE_ROWS, b"UPDATE t SET a = 0".to_vec()),
            map(7, "t"),
            rows(31, 7, 0),
            rows(31, 7, 1),
            map(8, "u"),
            rows(30, 8, 1),
            (ev::XID, vec![0; 8]),
            gtid(2, true),
            query("d", "DROP TABLE `t` /* generated by server */"),
            gtid(3, true),
            query("e", "TRUNCATE TABLE d.u"),
            gtid(4, false),
            query("d", "BEGIN"),
            query("d", "UPDATE tt SET a = 1"),
            query("d", "COMMIT"),
        ]);
        let spec = ShowSpec { tables: vec![("d".into(), "t".into())], ..Default::default() };
        let found = read(&spec, &bytes);
        let touching: Vec<&str> = found.iter().filter(|(_, t)| *t).map(|(s, _)| s.gtid.as_str()).collect();
        assert_eq!(touching, ["0-1-1", "0-1-2"], "d.t: its rows and its DROP; not d.u nor d.tt");
        let (first, _) = &found[0];
        assert_eq!(
            first.parts,
            [
                Part::Rows {
                    op: RowsKind::Update,
                    db: "d".into(),
                    table: "t".into(),
                    events: 2,
                    statement: Some("UPDATE t SET a = 0".into())
                },
                Part::Rows { op: RowsKind::Insert, db: "d".into(), table: "u".into(), events: 1, statement: None },
            ]
        );
        assert_eq!((first.start, first.end), (4, found[1].0.start), "the next begins where it ends");
        assert!(first.line().starts_with("0-1-1  1970-01-01 00:01:40  binlog.000001:4-"), "{}", first.line());
        assert!(first.line().ends_with("UPDATE d.t (2 row events: UPDATE t SET a = 0); INSERT d.u (1 row event)"));
        assert_eq!(found[3].0.line().rsplit("  ").next(), Some("[d] UPDATE tt SET a = 1"));
        let all = read(&ShowSpec::default(), &bytes);
        assert!(all.len() == 4 && all.iter().all(|(_, t)| *t), "without --table, every one");
    }

    #[test]
    fn a_cascade_touches_the_table_it_maps_without_rows_of_its_own() {
        let map = |id: u8, t: &str| {
            let mut b = vec![id, 0, 0, 0, 0, 0, 0, 0, 1, b'd', 0, t.len() as u8];
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&[0, 1, 3]);
            (ev::TABLE_MAP, b)
        };
        // DELETE FROM parent, cascading into child: both mapped, only the parent's rows logged.
        let bytes = log(&[
            gtid(1, false),
            query("d", "BEGIN"),
            map(7, "parent"),
            map(8, "child"),
            (32, vec![7, 0, 0, 0, 0, 0, 1, 0, 1, 0]),
            (ev::XID, vec![0; 8]),
            gtid(2, false),
            query("d", "BEGIN"),
            map(9, "other"),
            (32, vec![9, 0, 0, 0, 0, 0, 1, 0, 1, 0]),
            (ev::XID, vec![0; 8]),
        ]);
        let spec = ShowSpec { tables: vec![("d".into(), "child".into())], ..Default::default() };
        let touching: Vec<String> = read(&spec, &bytes).into_iter().filter(|(_, t)| *t).map(|(s, _)| s.gtid).collect();
        assert_eq!(touching, ["0-1-1"]);
    }

    proptest::proptest! {
        /// Hostile events (any type, any body) read in any order: no panic.
        #[test]
        fn any_events_are_read_without_panic(
            events in proptest::collection::vec(
                (proptest::sample::select(vec![2u8, 15, 16, 19, 23, 24, 25, 30, 31, 32, 160, 162, 165, 166, 171]),
                 proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                0..24,
            )
        ) {
            let spec = ShowSpec { tables: vec![("d".into(), "t".into())], ..Default::default() };
            for (shown, _) in read(&spec, &log(&events)) {
                let _ = shown.line();
            }
        }
    }
}
