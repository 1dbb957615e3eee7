//! Where replay stops: the archive walked in log order, for the stop of `--until TIME`
//! ([`time_stop`]) and for the events replayed up to any target ([`gather`]), with what one
//! client session could not replay ([`OneSession`]).

use super::Until;
use crate::error::{Context, Error, Result};
use crate::repo::archive::{Archive, Join, SegmentName};
use coffer_mysql::events::{
    checksummed_len, creates_temporary_table, events, gtid_of, Event, Gtids, Walk, GTID, ROTATE, STOP,
};
use coffer_mysql::meta::binlog_file_number as file_number;
use std::collections::BTreeSet;
use std::path::Path;

/// The events of a segment, each checked to end where its header says.
fn events_of<'a>(seg: &SegmentName, bytes: &'a [u8]) -> Result<Vec<Event<'a>>> {
    events(&seg.file, seg.start, bytes).map_err(Error::other)
}

/// What walking the log for `--until TIME` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimeStop {
    /// Replay stops here: the start of the first transaction stamped later, or the archive's end.
    At(String, u32),
    /// The time is before the backup (of the positions given, this one) the walk started from:
    /// why.
    Before(usize, String),
}

/// Where replay to the time `t` stops (Appendix C.1): walking the log in order from the start
/// of the oldest backup's file (`starts`: the backups' binlog positions, oldest first; those
/// whose file the archive lacks from its start cannot be replayed from and are passed over),
/// the first GTID event, between transactions, stamped later than `t`. Stamps do not rise
/// along the log (a statement is stamped when it began, logged when it commits), so nothing is
/// searched by time: every segment from there to the stop is read. At a gap, the walk starts
/// again from the oldest backup after it (nothing replays across a gap; `joins` says how each
/// segment follows the one before it, [`Archive::joins`]).
pub(crate) fn time_stop(
    names: &[SegmentName],
    joins: &[Join],
    read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
    starts: &[(String, u32)],
    t: i64,
) -> Result<TimeStop> {
    let until = Until::Time(t);
    let usable: Vec<(usize, usize)> = (0..starts.len())
        .filter_map(|k| names.iter().position(|s| s.file == starts[k].0 && s.start == 4).map(|i| (i, k)))
        .collect();
    let Some(&(mut first, mut k)) = usable.first() else {
        return Err(not_from_start(names, &starts[0].0));
    };
    let mut crossed: Option<usize> = None;
    loop {
        let why = match walk_run(names, joins, read, first, &starts[k], t)? {
            Walked::Stop(file, pos) => return Ok(TimeStop::At(file, pos)),
            Walked::Before(why) => why,
            Walked::Gap(i) => match usable.iter().find(|(f, _)| *f >= i) {
                Some(&(f, next)) => {
                    (first, k, crossed) = (f, next, Some(i));
                    continue;
                }
                None => return Err(gap_error(&until, &joins[i], "and no backup after it to start from")),
            },
            Walked::End { open, later } => {
                let last = names.last().expect("a backup's file is in the archive");
                if open || !later {
                    crate::bail!(
                        "{} is after the last archived event ({}:{}): the archive cannot prove what happened until then",
                        until.shown(),
                        last.file,
                        last.end
                    );
                }
                return Ok(TimeStop::At(last.file.clone(), last.end));
            }
        };
        return match crossed {
            None => Ok(TimeStop::Before(k, why)),
            Some(i) => Err(gap_error(
                &until,
                &joins[i],
                &format!(
                    "and it is before the oldest backup after the gap (binlog {}:{}): {why}",
                    starts[k].0, starts[k].1
                ),
            )),
        };
    }
}

/// How a walk of one unbroken run of the archive ended.
enum Walked {
    /// At the first transaction stamped later than the time, at or after the backup's position.
    Stop(String, u32),
    /// Before the backup's position: why the backup holds what is after the time.
    Before(String),
    /// At a gap before segment `i`.
    Gap(usize),
    /// At the archive's end: inside a transaction or not, and having seen an event stamped
    /// later than the time or not.
    End { open: bool, later: bool },
}

/// Walks the archive from segment `first` (the start of the file of the backup at `from`) for
/// the first GTID event, between transactions, stamped later than `t`.
fn walk_run(
    names: &[SegmentName],
    joins: &[Join],
    read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
    first: usize,
    from: &(String, u32),
    t: i64,
) -> Result<Walked> {
    let from_at = (file_number(&from.0), from.1);
    let mut walk = Walk::default();
    let mut later = false;
    for i in first..names.len() {
        let seg = &names[i];
        if i > first && joins[i].is_gap() {
            return Ok(Walked::Gap(i));
        }
        if i > first && seg.start == 4 {
            drop_unfinished(&mut walk);
        }
        let bytes = read(i)?;
        for e in events_of(seg, &bytes)? {
            let stamp = i64::from(e.header.timestamp);
            if i == first && e.start == 4 && stamp > t {
                // Everything before the backup's file was logged before the file began: with
                // no stamps to read there, a file begun after the time cannot show that the
                // backup holds nothing later.
                return Ok(Walked::Before(format!("its binary log file {} began at {} UTC", seg.file, utc(stamp))));
            }
            if !walk.open && e.header.type_code == GTID && stamp > t {
                if (file_number(&seg.file), e.start) >= from_at {
                    return Ok(Walked::Stop(seg.file.clone(), e.start));
                }
                let gtid = gtid_of(&e).map(|((d, s, n), _)| format!("GTID {d}-{s}-{n}, ")).unwrap_or_default();
                return Ok(Walked::Before(format!(
                    "a transaction stamped {} UTC ({gtid}at {}:{}) is logged before its position",
                    utc(stamp),
                    seg.file,
                    e.start
                )));
            }
            later |= stamp > t;
            walk.take(&e);
        }
    }
    Ok(Walked::End { open: walk.open, later })
}

fn utc(t: i64) -> String {
    crate::text::utc(t)
}

/// The archive lacks `file` from its start.
fn not_from_start(names: &[SegmentName], file: &str) -> Error {
    let archived = names.first().map(|s| format!("{} {}", s.file, s.start)).unwrap_or_default();
    Error::msg(format!(
        "the archive does not hold {file} from its start, where the backup's position is (the archive begins at {archived}): \
         the binary log between was never archived"
    ))
}

/// A gap (`join`, what is missing) on the way to `until`; `tail` says what follows from it.
fn gap_error(until: &Until, join: &Join, tail: &str) -> Error {
    let what = match join {
        Join::Gap(what) => what.as_str(),
        _ => "",
    };
    Error::msg(format!("{} is beyond a gap in the archive: {what}, {tail}", until.shown()))
}

const FORMAT_DESCRIPTION: u8 = 15;

/// At the start of a file: a transaction the file before left unfinished (no XID, no COMMIT:
/// only a crash ends a file inside one, as a ROTATE comes between transactions) is no
/// transaction: the server's crash recovery dropped it, and its GTID's number goes to the
/// restarted server's next one. Returns whether there was one.
fn drop_unfinished(walk: &mut Walk) -> bool {
    if !walk.open {
        return false;
    }
    walk.open = false;
    walk.current = None;
    walk.transactions = walk.transactions.saturating_sub(1);
    true
}

/// What [`gather`] found.
pub(crate) struct Gathered {
    pub(crate) walk: Walk,
    /// Where replay stops.
    pub(crate) stop: (String, u32),
    /// The files written, in order.
    pub(crate) files: Vec<String>,
    /// The server ids of the events replayed.
    pub(crate) ids: BTreeSet<u32>,
    /// Why one client session cannot replay the events (`--replay-with client`), if it cannot.
    pub(crate) one_session: Option<String>,
}

/// Reads the archive from the start of the backup's file through the target, writing each file
/// into `dir` (as the server wrote it, up to where replay stops), and walking the events from
/// `start`: checks that the archive holds all of it, with no gap. For a time, replay stops at
/// `stop`, found by [`time_stop`].
pub(crate) fn gather(
    archive: &Archive,
    start: &(String, u32),
    until: &Until,
    stop: Option<&(String, u32)>,
    dir: &Path,
) -> Result<Gathered> {
    gather_to(archive, start, until, stop, dir, false)
}

/// [`gather`] to the end of the archive's unbroken run from `start` (a replica catching up
/// before it asks its primary for the rest): replay stops at the run's last place between
/// transactions; a transaction the run ends inside is left to the primary.
pub(crate) fn gather_run(archive: &Archive, start: &(String, u32), dir: &Path) -> Result<Gathered> {
    let first = archive.file_start(&start.0).ok_or_else(|| {
        let names: Vec<SegmentName> = archive.segments.iter().map(|(s, _)| s.clone()).collect();
        not_from_start(&names, &start.0)
    })?;
    let last =
        (first + 1..archive.segments.len()).find(|i| archive.joins[*i].is_gap()).unwrap_or(archive.segments.len());
    let end = &archive.segments[last - 1].0;
    let until = Until::Position(end.file.clone(), end.end);
    gather_to(archive, start, &until, None, dir, true)
}

fn gather_to(
    archive: &Archive,
    start: &(String, u32),
    until: &Until,
    stop: Option<&(String, u32)>,
    dir: &Path,
    open_end: bool,
) -> Result<Gathered> {
    let first = archive.file_start(&start.0).ok_or_else(|| {
        let names: Vec<SegmentName> = archive.segments.iter().map(|(s, _)| s.clone()).collect();
        not_from_start(&names, &start.0)
    })?;
    if archive.find(&start.0, start.1).is_none() {
        crate::bail!("the archive ends before {}:{}, the backup's binlog position", start.0, start.1);
    }
    let mut g = Gather::new(until, start, stop)?;
    let mut files: Vec<String> = Vec::new();
    let mut out: Option<std::fs::File> = None;
    let mut written = Written::default();
    for i in first..archive.segments.len() {
        let seg = &archive.segments[i].0;
        if i > first && archive.joins[i].is_gap() {
            let reach = format!("recovery can reach {}:{} at most", g.boundary.0, g.boundary.1);
            return Err(gap_error(until, &archive.joins[i], &reach));
        }
        // The join says the file before is complete by the key's word (its description, or a
        // restart proven), not its name alone: an object renamed `-closed` hides no lost tail.
        if let (Some(f), Some(file), 4) = (out.as_mut(), files.last(), seg.start) {
            end_file(f, &dir.join(file), &written, &mut g, &seg.file)?;
        }
        let bytes = archive.events(i)?;
        if seg.start == 4 {
            out = Some(crate::repo::archive::new_log_file(dir, &seg.file)?);
            files.push(seg.file.clone());
            written = Written::default();
        }
        let mut kept = bytes.len();
        let mut stopped = None;
        for e in events_of(seg, &bytes)? {
            if let Some(at) = g.event(seg, &e)? {
                kept = (e.start - seg.start) as usize;
                stopped = Some(at);
                break;
            }
            written.take(&e);
        }
        if let Some(f) = out.as_mut() {
            std::io::Write::write_all(f, &bytes[..kept])
                .with_context(|| format!("cannot write {}", dir.join(&seg.file).display()))?;
        }
        let stop = match stopped {
            Some(at) => Some(at),
            None => g.segment_end(seg)?,
        };
        // The run ends inside a transaction: replay stops before it, and the log given to the
        // applier ends there too (its SQL thread would go on into the transaction, and what it
        // wrote to a table without transactions would stay when it stops).
        let stop = match stop {
            None if open_end && g.reached_end(seg) => {
                if drop_unfinished(&mut g.walk) && g.boundary.0 == seg.file {
                    if let Some(f) = out.as_mut() {
                        f.set_len(u64::from(g.boundary.1))
                            .with_context(|| format!("cannot write {}", dir.join(&seg.file).display()))?;
                    }
                }
                Some(g.boundary.clone())
            }
            stop => stop,
        };
        if let Some(stop) = stop {
            return Ok(Gathered { stop, files, ids: g.ids, one_session: g.session.refused, walk: g.walk });
        }
    }
    // The archive ends before the target is reached.
    let last = &archive.segments.last().expect("not empty").0;
    Err(Error::msg(format!(
        "{} is after the last archived event ({}:{}{}): the archive cannot reach it",
        until.shown(),
        last.file,
        last.end,
        g.walk.last_gtid.map(|(d, s, n)| format!(", GTID {d}-{s}-{n}")).unwrap_or_default()
    )))
}

/// What a ROTATE made up for the end of a rebuilt file needs of its last events.
#[derive(Default)]
struct Written {
    end: u32,
    stamp: u32,
    server_id: u32,
    crc: bool,
    rotated: bool,
}

impl Written {
    fn take(&mut self, e: &Event) {
        if e.header.type_code == FORMAT_DESCRIPTION {
            self.crc = checksummed_len(e.bytes, 19).is_some();
        }
        (self.end, self.stamp, self.server_id) = (e.header.log_pos, e.header.timestamp, e.header.server_id);
        self.rotated = e.header.type_code == ROTATE;
    }
}

/// Ends the rebuilt `file` (`out`, at `path`) where the log goes on in `next`. A transaction a crash left
/// unfinished at its end is cut off ([`drop_unfinished`]): replay never sees it. A file that
/// does not end with its ROTATE (a crash, or the STOP of a clean shutdown) gets one, made up,
/// naming `next` at 4, as a replica's relay log gets one when it reconnects: from it the
/// replaying server's applier learns that the source's log goes on in `next` (without it, it
/// would wait for the stop in `file` for ever).
fn end_file(out: &mut std::fs::File, path: &Path, written: &Written, g: &mut Gather, next: &str) -> Result<()> {
    let cannot = || format!("cannot write {}", path.display());
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    let mut end = written.end;
    if drop_unfinished(&mut g.walk) && g.boundary.0 == file {
        end = g.boundary.1;
        out.set_len(u64::from(end)).with_context(cannot)?;
    }
    if written.rotated && end == written.end {
        return Ok(());
    }
    let size = 19 + 8 + next.len() + if written.crc { 4 } else { 0 };
    let mut e = written.stamp.to_le_bytes().to_vec();
    e.push(ROTATE);
    e.extend_from_slice(&written.server_id.to_le_bytes());
    e.extend_from_slice(&(size as u32).to_le_bytes());
    e.extend_from_slice(&(end + size as u32).to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(&4u64.to_le_bytes());
    e.extend_from_slice(next.as_bytes());
    if written.crc {
        let crc = coffer_mysql::events::crc32(&e);
        e.extend_from_slice(&crc.to_le_bytes());
    }
    std::io::Seek::seek(out, std::io::SeekFrom::Start(u64::from(end))).with_context(cannot)?;
    std::io::Write::write_all(out, &e).with_context(cannot)?;
    Ok(())
}

/// The walk of [`gather`], event by event, looking for where replay stops.
struct Gather<'a> {
    until: &'a Until,
    start: (u64, u32),
    start_file: &'a str,
    /// The position replay stops at (`--until-position`, and the stop found for `--until`).
    target: Option<(u64, u32)>,
    /// `--until-gtid`: the domains whose GTID is not applied yet.
    pending: Gtids,
    /// The last place between transactions.
    boundary: (String, u32),
    walk: Walk,
    ids: BTreeSet<u32>,
    session: OneSession,
}

impl<'a> Gather<'a> {
    fn new(until: &'a Until, start: &'a (String, u32), stop: Option<&(String, u32)>) -> Result<Self> {
        let target = match (until, stop) {
            (Until::Position(f, p), _) => Some((file_number(f), *p)),
            (Until::Time(_), Some((f, p))) => Some((file_number(f), *p)),
            (Until::Time(_), None) => crate::bail!("{}: no stop position was found for it", until.shown()),
            (Until::Gtid(_), _) => None,
        };
        Ok(Gather {
            until,
            start: (file_number(&start.0), start.1),
            start_file: &start.0,
            target,
            pending: match until {
                Until::Gtid(g) => g.clone(),
                _ => Gtids::new(),
            },
            boundary: start.clone(),
            walk: Walk::default(),
            ids: BTreeSet::new(),
            session: OneSession::default(),
        })
    }

    /// Takes event `e` of `seg`; where replay stops if it stops before it.
    fn event(&mut self, seg: &SegmentName, e: &Event) -> Result<Option<(String, u32)>> {
        let until = self.until;
        let here = (file_number(&seg.file), e.start);
        if here < self.start {
            if seg.file == self.start_file && e.header.log_pos > self.start.1 {
                crate::bail!(
                    "the backup's binlog position {}:{} is not where an event starts in the archive",
                    self.start_file,
                    self.start.1
                );
            }
            return Ok(None);
        }
        let reached = self.target.is_some_and(|t| here >= t);
        // Where replay may stop: between transactions.
        if !self.walk.open {
            self.boundary = (seg.file.clone(), e.start);
            if reached || (matches!(until, Until::Gtid(_)) && self.pending.is_empty()) {
                return Ok(Some(self.boundary.clone()));
            }
        } else if reached {
            let (file, pos) = &self.boundary;
            let gtid = self.walk.current.map(|(d, s, n)| format!("{d}-{s}-{n}")).unwrap_or_default();
            if let Until::Position(..) = until {
                crate::bail!(
                    "{}: the position is inside a transaction (GTID {gtid}); replay stops between transactions, at \
                     {file}:{pos} or after this one",
                    until.shown()
                );
            }
            crate::bail!(
                "{}: the stop found is inside a transaction (GTID {gtid}) from the backup's position",
                until.shown()
            );
        }
        let was_open = self.walk.open;
        self.walk.take(e);
        self.ids.insert(e.header.server_id);
        self.session.take(&seg.file, e);
        if let Until::Gtid(target) = until {
            self.gtid_event(target, e, was_open)?;
        }
        if let Until::Position(f, p) = until {
            if seg.file == *f && e.start < *p && u64::from(e.header.log_pos) > u64::from(*p) {
                crate::bail!(
                    "{}: not where an event ends (one spans {}..{})",
                    until.shown(),
                    e.start,
                    e.header.log_pos
                );
            }
        }
        if matches!(e.header.type_code, ROTATE | STOP) && !self.walk.open {
            self.boundary = (seg.file.clone(), e.header.log_pos);
        }
        Ok(None)
    }

    /// `--until-gtid`: a transaction past the target in its domain is an error; the target's
    /// domain is done when the target's transaction ends.
    fn gtid_event(&mut self, target: &Gtids, e: &Event, was_open: bool) -> Result<()> {
        if let Some((d, s, n)) = self.walk.current.filter(|_| e.header.type_code == GTID) {
            if let Some((ts, tn)) = target.get(&d).filter(|_| self.pending.contains_key(&d)) {
                if n > *tn || (n == *tn && s != *ts) {
                    crate::bail!(
                        "GTID {d}-{ts}-{tn} is not in the archived binary log: domain {d} goes from before it to \
                         {d}-{s}-{n}"
                    );
                }
            }
        }
        // Reached only when its transaction ends: one a crash left unfinished is dropped
        // ([`drop_unfinished`]), and its number goes to the restarted server's next one.
        if let Some((d, s, n)) = self.walk.last_gtid.filter(|_| was_open && !self.walk.open) {
            if target.get(&d) == Some(&(s, n)) {
                self.pending.remove(&d);
            }
        }
        Ok(())
    }

    /// Whether `seg` ends at or past the position replay stops at.
    fn reached_end(&self, seg: &SegmentName) -> bool {
        self.target.is_some_and(|t| (file_number(&seg.file), seg.end) >= t)
    }

    /// At the end of `seg` (every event taken): where replay stops if it stops there.
    fn segment_end(&mut self, seg: &SegmentName) -> Result<Option<(String, u32)>> {
        if let Until::Position(f, p) = self.until {
            if seg.closed && seg.file == *f && seg.end < *p {
                crate::bail!("{}: not in the log, {f} ends at {}", self.until.shown(), seg.end);
            }
        }
        if self.walk.open {
            return Ok(None);
        }
        self.boundary = (seg.file.clone(), seg.end);
        let done = match self.target {
            Some(t) => (file_number(&seg.file), seg.end) >= t,
            None => self.pending.is_empty(),
        };
        Ok(done.then(|| self.boundary.clone()))
    }
}

/// What `mariadb-binlog | mariadb` cannot replay in its one session: MariaDB refuses to change
/// a session's `gtid_domain_id` while the session holds a temporary table (error 1953, "inside
/// a transaction"), mariadb-binlog sets it before each transaction of another domain than the
/// one before, and the one session holds every temporary table the log creates (those logged
/// as statements), whichever session of the source made it. Drops are not followed: once a
/// temporary table may exist, any change of domain counts.
#[derive(Debug, Default)]
struct OneSession {
    /// Where a statement that may create a temporary table is.
    temporary: Option<(String, u32)>,
    /// The session's domain: the server's default (0), then each transaction's.
    domain: u32,
    /// Why the client would fail, at the first place it would.
    refused: Option<String>,
}

impl OneSession {
    fn take(&mut self, file: &str, e: &Event) {
        if self.refused.is_some() {
            return;
        }
        if self.temporary.is_none() && creates_temporary_table(e) {
            self.temporary = Some((file.to_owned(), e.start));
        }
        let Some(((d, s, n), _)) = (e.header.type_code == GTID).then(|| gtid_of(e)).flatten() else { return };
        if d != self.domain {
            if let Some((f, p)) = &self.temporary {
                self.refused = Some(format!(
                    "a statement at {f}:{p} creates a temporary table, and GTID {d}-{s}-{n} at {file}:{} is of another \
                     replication domain than the transaction before it",
                    e.start
                ));
            }
            self.domain = d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A synthetic binary log: what each file holds, cut into segments where asked.
    #[derive(Clone, Copy)]
    enum Item {
        /// The FORMAT_DESCRIPTION event (stamped when the file began).
        Fd(u32),
        /// A transaction of domain 0 (GTID, BEGIN, XID), stamped, with this sequence number.
        Tx(u32, u64),
        /// The same in domain 1.
        Tx1(u32, u64),
        /// A CREATE TEMPORARY TABLE statement (GTID, QUERY), stamped.
        Temporary(u32, u64),
        /// A transaction a crash left unfinished (GTID, BEGIN, no XID), stamped.
        Unfinished(u32, u64),
        /// The ROTATE to the next file, stamped.
        Rotate(u32),
        /// The segment ends here.
        Cut,
    }

    struct Log {
        segments: Vec<(SegmentName, Vec<u8>)>,
        /// Where each transaction's GTID event starts, by sequence number.
        at: BTreeMap<u64, (String, u32)>,
    }

    fn event(type_code: u8, stamp: u32, start: u32, body: &[u8]) -> Vec<u8> {
        let size = (19 + body.len() + 4) as u32;
        let mut e = stamp.to_le_bytes().to_vec();
        e.push(type_code);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&(start + size).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        e.extend_from_slice(&[0; 4]);
        e
    }

    fn query(text: &str) -> Vec<u8> {
        let mut body = vec![0u8; 13];
        body.extend_from_slice(b"\0");
        body.extend_from_slice(text.as_bytes());
        body
    }

    fn log(files: &[(&str, &[Item])]) -> Log {
        let mut out = Log { segments: Vec::new(), at: BTreeMap::new() };
        for (file, items) in files {
            let (mut pos, mut seg_start, mut bytes) = (4u32, 4u32, Vec::new());
            let mut closed = false;
            let cut = |out: &mut Log, start: u32, end: u32, bytes: &mut Vec<u8>, closed: bool| {
                let name = SegmentName { file: file.to_string(), start, end, closed };
                out.segments.push((name, std::mem::take(bytes)));
            };
            for item in items.iter() {
                let push = |t: u8, stamp: u32, body: &[u8], pos: &mut u32, bytes: &mut Vec<u8>| {
                    let e = event(t, stamp, *pos, body);
                    *pos += e.len() as u32;
                    bytes.extend_from_slice(&e);
                };
                let gtid = |seq: u64, domain: u32, flags: u8| {
                    [&seq.to_le_bytes()[..], &domain.to_le_bytes(), &[flags]].concat()
                };
                match *item {
                    Item::Fd(t) => push(15, t, &[0; 8], &mut pos, &mut bytes),
                    Item::Tx(t, n) | Item::Tx1(t, n) => {
                        out.at.insert(n, (file.to_string(), pos));
                        let domain = u32::from(matches!(item, Item::Tx1(..)));
                        push(GTID, t, &gtid(n, domain, 0), &mut pos, &mut bytes);
                        push(coffer_mysql::events::QUERY, t, &query("BEGIN"), &mut pos, &mut bytes);
                        push(coffer_mysql::events::XID, t, &[0; 8], &mut pos, &mut bytes);
                    }
                    Item::Unfinished(t, n) => {
                        out.at.insert(n, (file.to_string(), pos));
                        push(GTID, t, &gtid(n, 0, 0), &mut pos, &mut bytes);
                        push(coffer_mysql::events::QUERY, t, &query("BEGIN"), &mut pos, &mut bytes);
                    }
                    Item::Temporary(t, n) => {
                        out.at.insert(n, (file.to_string(), pos));
                        push(GTID, t, &gtid(n, 0, 1), &mut pos, &mut bytes);
                        push(
                            coffer_mysql::events::QUERY,
                            t,
                            &query("CREATE TEMPORARY TABLE tmp (a INT)"),
                            &mut pos,
                            &mut bytes,
                        );
                    }
                    Item::Rotate(t) => {
                        push(ROTATE, t, b"\x04\0\0\0\0\0\0\0next", &mut pos, &mut bytes);
                        closed = true;
                    }
                    Item::Cut => {
                        cut(&mut out, seg_start, pos, &mut bytes, false);
                        seg_start = pos;
                    }
                }
            }
            if !bytes.is_empty() {
                cut(&mut out, seg_start, pos, &mut bytes, closed);
            }
        }
        out
    }

    impl Log {
        fn names(&self) -> Vec<SegmentName> {
            self.segments.iter().map(|(s, _)| s.clone()).collect()
        }
        /// Where transaction `n` starts.
        fn gtid(&self, n: u64) -> (String, u32) {
            self.at[&n].clone()
        }
        /// Where replay to `t` stops, from backups at `starts`, and the segments read.
        fn stop(&self, starts: &[(String, u32)], t: i64) -> (Result<TimeStop>, Vec<usize>) {
            let mut read = Vec::new();
            let found = time_stop(
                &self.names(),
                &joins(&self.names()),
                &mut |i| {
                    read.push(i);
                    Ok(self.segments[i].1.clone())
                },
                starts,
                t,
            );
            (found, read)
        }
    }

    /// How each segment follows the one before it, by names (no descriptions).
    fn joins(names: &[SegmentName]) -> Vec<Join> {
        let mut out = vec![Join::Continues];
        out.extend(names.windows(2).map(|w| Join::of(&w[0], None, &w[1], None)));
        out.truncate(names.len());
        out
    }

    fn at(p: (String, u32)) -> TimeStop {
        TimeStop::At(p.0, p.1)
    }

    /// Issue 26, item 3: a long statement is stamped when it began and logged when it commits.
    /// The stop is the first transaction stamped later than the time in log order, wherever
    /// later segments (whose last events are stamped earlier) lie; a search by the segments'
    /// last event times landed after them.
    #[test]
    fn the_stop_for_a_time_is_found_in_log_order_within_a_segment_and_across_segments() {
        use Item::*;
        let lg = log(&[(
            "binlog.000001",
            &[
                Fd(100),
                Tx(100, 1),
                Tx(101, 2),
                Tx(105, 3),
                Tx(106, 4),
                Tx(103, 5),
                Cut,
                Tx(103, 6),
                Cut,
                Tx(103, 7),
                Tx(110, 8),
            ],
        )]);
        let b1 = lg.gtid(2);
        let b2 = lg.gtid(8);
        // Within the first segment: transaction 4 is the first stamped after 105; the long ones
        // after it (stamped 103) are not replayed, and the backup taken after them is not chosen.
        let (found, read) = lg.stop(&[b1.clone(), b2.clone()], 105);
        assert_eq!(found.unwrap(), at(lg.gtid(4)));
        assert_eq!(read, [0], "nothing after the stop is read");
        // At 103: transaction 3 (stamped 105) stops it, though later ones are stamped 103.
        assert_eq!(lg.stop(&[b1.clone(), b2.clone()], 103).0.unwrap(), at(lg.gtid(3)));
        // Across segments: the first segment holds nothing after 106; the next two end with
        // events stamped 103, and the stop is transaction 8 in the third.
        let (found, read) = lg.stop(&[b1.clone(), b2.clone()], 106);
        assert_eq!(found.unwrap(), at(lg.gtid(8)));
        assert_eq!(read, [0, 1, 2]);
        // The stop is where the second backup is: it is chosen, with nothing to replay.
        assert_eq!(lg.stop(&[b1.clone(), b2], 109).0.unwrap(), at(lg.gtid(8)));
        // Nothing stamped later than 110 anywhere, and no other event is: after the archive.
        let err = lg.stop(std::slice::from_ref(&b1), 110).0.unwrap_err().to_string();
        assert!(err.contains("after the last archived event"), "{err}");
        // Before the first backup's position, a transaction stamped later: before the backup.
        let (found, _) = lg.stop(&[lg.gtid(3)], 100);
        match found.unwrap() {
            TimeStop::Before(0, why) => {
                assert!(why.contains("stamped") && why.contains("before its position"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // The backup's file began after the time: nothing shows what is before it.
        match lg.stop(&[b1], 99).0.unwrap() {
            TimeStop::Before(0, why) => assert!(why.contains("binlog.000001 began"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_stop_for_a_time_is_found_across_files_and_gaps() {
        use Item::*;
        // The long transactions of file 1 commit into file 2 (stamped 103, after the rotation at
        // 107); the first stamped after 106 is transaction 4, in file 1.
        let lg = log(&[
            ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(105, 2), Tx(106, 3), Tx(107, 4), Rotate(107)]),
            ("binlog.000002", &[Fd(107), Tx(103, 5), Cut, Tx(103, 6), Tx(108, 7), Rotate(109)]),
            ("binlog.000003", &[Fd(109), Tx(104, 8), Tx(110, 9)]),
        ]);
        let b1 = lg.gtid(1);
        let b3 = lg.gtid(9);
        assert_eq!(lg.stop(&[b1.clone(), b3.clone()], 106).0.unwrap(), at(lg.gtid(4)));
        // After 107: file 2 starts with transactions stamped earlier; 7 is the first later.
        let (found, read) = lg.stop(&[b1.clone(), b3.clone()], 107);
        assert_eq!(found.unwrap(), at(lg.gtid(7)));
        assert_eq!(read, [0, 1, 2]);
        // After 108: into file 3, past a transaction stamped 104.
        assert_eq!(lg.stop(&[b1.clone(), b3.clone()], 108).0.unwrap(), at(lg.gtid(9)));
        // After 109: the last event stamped later is a transaction's, so the stop is its start;
        // at 110 nothing is later: after the archive.
        assert_eq!(lg.stop(std::slice::from_ref(&b1), 109).0.unwrap(), at(lg.gtid(9)));
        assert!(lg.stop(std::slice::from_ref(&b1), 110).0.is_err());
        // A backup whose file the archive lacks from its start is passed over.
        let names = lg.names();
        let (found, read) = {
            let mut read = Vec::new();
            let found = time_stop(
                &names[1..],
                &joins(&names[1..]),
                &mut |i| {
                    read.push(i + 1);
                    Ok(lg.segments[i + 1].1.clone())
                },
                &[("binlog.000001".into(), 200), b3.clone()],
                109,
            );
            (found, read)
        };
        assert_eq!(found.unwrap(), at(lg.gtid(9)));
        assert_eq!(read, [3]);

        // The second segment of file 2 lost: the walk from the first backup stops at the gap,
        // and starts again from the backup after it.
        let mut gapped = log(&[
            ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Rotate(102)]),
            ("binlog.000002", &[Fd(102), Tx(102, 3), Cut, Tx(103, 4), Rotate(104)]),
            ("binlog.000003", &[Fd(104), Tx(104, 5), Tx(106, 6), Tx(107, 7)]),
        ]);
        gapped.segments.remove(2);
        let (b1, b3) = (gapped.gtid(1), gapped.gtid(5));
        assert_eq!(gapped.stop(&[b1.clone(), b3.clone()], 101).0.unwrap(), at(gapped.gtid(3)));
        assert_eq!(gapped.stop(&[b1.clone(), b3.clone()], 106).0.unwrap(), at(gapped.gtid(7)));
        // The stop may lie in the gap: after it, the backup's file began later than the time.
        let err = gapped.stop(&[b1.clone(), b3.clone()], 103).0.unwrap_err().to_string();
        assert!(err.contains("beyond a gap") && err.contains("binlog.000002:"), "{err}");
        // No backup after the gap.
        let err = gapped.stop(&[b1], 106).0.unwrap_err().to_string();
        assert!(err.contains("beyond a gap") && err.contains("no backup after it"), "{err}");
    }

    /// Issue 28, part 4: a crash ends a file inside a transaction (no XID); the restarted
    /// server dropped it and gave its sequence number to its next one, in the next file. The
    /// walk goes on from the next file's start between transactions: the first transaction
    /// there stamped later stops it.
    #[test]
    fn an_unfinished_transaction_at_a_crashed_files_end_is_no_transaction() {
        use Item::*;
        let lg = log(&[
            ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Unfinished(102, 3)]),
            ("binlog.000002", &[Fd(103), Tx(104, 3), Tx(105, 4)]),
        ]);
        let names = lg.names();
        assert!(joins(&names)[1].is_gap(), "by names, a crash is a gap");
        let restart = [Join::Continues, Join::Restart];
        let stop = |t| {
            time_stop(&names, &restart, &mut |i| Ok(lg.segments[i].1.clone()), std::slice::from_ref(&lg.gtid(1)), t)
        };
        assert_eq!(stop(103).unwrap(), at(lg.gtid(3)), "the restarted server's 0-1-3 stamped 104");
        assert_eq!(lg.gtid(3).0, "binlog.000002");
        assert_eq!(stop(104).unwrap(), at(lg.gtid(4)));
        // A gap is not crossed.
        let gap = joins(&names);
        let err = time_stop(&names, &gap, &mut |i| Ok(lg.segments[i].1.clone()), &[lg.gtid(1)], 104).unwrap_err();
        assert!(err.to_string().contains("neither ROTATE nor STOP"), "{err}");
    }

    /// Where [`gather`]'s walk stops for `until` from `start` (its loop, on the synthetic log).
    fn gathered(lg: &Log, until: &Until, start: &(String, u32)) -> Result<(String, u32)> {
        let mut g = Gather::new(until, start, None)?;
        let mut out = tempfile::tempfile().unwrap();
        let mut written = Written::default();
        let first = lg.segments.iter().position(|(s, _)| s.file == start.0 && s.start == 4).unwrap();
        for (i, (seg, bytes)) in lg.segments.iter().enumerate().skip(first) {
            if i > first && seg.start == 4 {
                end_file(&mut out, Path::new(&lg.segments[i - 1].0.file), &written, &mut g, &seg.file)?;
                written = Written::default();
            }
            for e in events_of(seg, bytes)? {
                if let Some(at) = g.event(seg, &e)? {
                    return Ok(at);
                }
                written.take(&e);
            }
            if let Some(at) = g.segment_end(seg)? {
                return Ok(at);
            }
        }
        Err(Error::msg("the archive ends"))
    }

    /// Review of issue 28, part 4: `--until-gtid` naming the number a crash freed is the
    /// restarted server's transaction, not the unfinished one dropped: replay stops after it.
    #[test]
    fn until_the_gtid_a_crash_freed_is_until_the_restarted_servers_transaction() {
        use Item::*;
        let lg = log(&[
            ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Unfinished(102, 3)]),
            ("binlog.000002", &[Fd(103), Tx(104, 3), Tx(105, 4), Tx(106, 5)]),
        ]);
        let gtid = |n| Until::Gtid(Gtids::from([(0, (1, n))]));
        let from = ("binlog.000001".to_string(), 4);
        assert_eq!(lg.gtid(3).0, "binlog.000002");
        assert_eq!(gathered(&lg, &gtid(3), &from).unwrap(), lg.gtid(4), "after the restarted server's 0-1-3");
        // Before the crash: at the unfinished transaction, in the crashed file.
        assert_eq!(gathered(&lg, &gtid(2), &from).unwrap().0, "binlog.000001");
        assert_eq!(gathered(&lg, &gtid(4), &from).unwrap(), lg.gtid(5));
    }

    /// A rebuilt log file that cannot be written is named in the error.
    #[test]
    fn a_rebuilt_file_that_cannot_be_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("binlog.000001");
        std::fs::write(&path, b"\xfebin").unwrap();
        let mut read_only = std::fs::File::open(&path).unwrap();
        let until = Until::Position("binlog.000002".into(), 4);
        let start = ("binlog.000001".to_string(), 4);
        let mut g = Gather::new(&until, &start, None).unwrap();
        let written = Written { end: 4, ..Written::default() };
        let err = end_file(&mut read_only, &path, &written, &mut g, "binlog.000002").unwrap_err().one_line();
        assert!(err.starts_with(&format!("cannot write {}: ", path.display())), "{err}");
        // And where an unfinished transaction is cut off.
        g.walk.open = true;
        g.boundary = ("binlog.000001".into(), 4);
        let err = end_file(&mut read_only, &path, &written, &mut g, "binlog.000002").unwrap_err().one_line();
        assert!(err.starts_with(&format!("cannot write {}: ", path.display())), "{err}");
    }

    #[test]
    fn one_client_session_cannot_change_domains_while_a_temporary_table_may_exist() {
        use Item::*;
        let walk = |items: &[Item]| {
            let lg = log(&[("binlog.000001", items)]);
            let mut session = OneSession::default();
            for (seg, bytes) in &lg.segments {
                for e in events_of(seg, bytes).unwrap() {
                    session.take(&seg.file, &e);
                }
            }
            session.refused
        };
        assert_eq!(walk(&[Fd(1), Tx(1, 1), Tx1(1, 1), Tx(1, 2), Temporary(1, 3), Tx(1, 4)]), None);
        assert_eq!(walk(&[Fd(1), Tx1(1, 1), Tx1(1, 2), Temporary(1, 3)]), None, "no temporary table yet");
        let why = walk(&[Fd(1), Tx(1, 1), Temporary(1, 2), Tx(1, 3), Tx1(1, 4), Tx(1, 5)]).unwrap();
        assert!(why.contains("temporary table") && why.contains("GTID 1-1-4"), "{why}");
        // Domain 0 is the session's own: its first transaction changes nothing.
        let why = walk(&[Fd(1), Temporary(1, 1), Tx(1, 2), Tx1(1, 3)]).unwrap();
        assert!(why.contains("binlog.000001:") && why.contains("GTID 1-1-3"), "{why}");
    }
}
