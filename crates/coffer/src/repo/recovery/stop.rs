//! Where replay stops: the archive walked in log order, for the stop of `--until TIME`
//! ([`time_stop`]) and for the events replayed up to any target ([`gather`]), with what one
//! client session could not replay ([`OneSession`]).

use super::Until;
use crate::error::{Context, Error, Result};
use crate::repo::archive::{Archive, Join, SegmentName};
use coffer_mysql::events::{
    checksummed_len, creates_temporary_table, events, gtid_of, Event, Gtid, Gtids, Walk, GTID, ROTATE, STOP,
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
        let mut stopped = None;
        for e in events_of(seg, &bytes)? {
            if let Some(at) = g.event(seg, &e)? {
                stopped = Some(at);
                break;
            }
            written.take(&e);
        }
        if let Some(f) = out.as_mut() {
            write_to(f, &dir.join(&seg.file), seg, &bytes, stopped.as_ref())?;
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
    // The archive ends inside the transaction an exclusive stop is before: it ends there.
    if let Some(stop) = g.held_at_end() {
        if let Some(f) = out.as_mut() {
            f.set_len(u64::from(stop.1)).with_context(|| format!("cannot write {}", dir.join(&stop.0).display()))?;
        }
        return Ok(Gathered { stop, files, ids: g.ids, one_session: g.session.refused, walk: g.walk });
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

/// Writes the events of `seg` (`bytes`) into its rebuilt file `out` (at `path`), up to the
/// stop if it is in this file: an exclusive stop held from an earlier segment of the file
/// ([`Gather::held`]) cuts what was written of it already.
fn write_to(
    out: &mut std::fs::File,
    path: &Path,
    seg: &SegmentName,
    bytes: &[u8],
    stop: Option<&(String, u32)>,
) -> Result<()> {
    let cannot = || format!("cannot write {}", path.display());
    let kept = match stop {
        Some((file, at)) if *file == seg.file => (at.saturating_sub(seg.start) as usize).min(bytes.len()),
        _ => bytes.len(),
    };
    std::io::Write::write_all(out, &bytes[..kept]).with_context(cannot)?;
    if let Some((_, at)) = stop.filter(|(file, at)| *file == seg.file && *at < seg.start) {
        out.set_len(u64::from(*at)).with_context(cannot)?;
    }
    Ok(())
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
    /// `BeforeGtid`: where the named transaction's GTID event is, and the walk before it, held
    /// until the transaction ends (a crash may leave it unfinished, to be dropped, and its
    /// number go to the restarted server's next transaction: the stop is before that one).
    held: Option<((String, u32), Walk)>,
}

impl<'a> Gather<'a> {
    fn new(until: &'a Until, start: &'a (String, u32), stop: Option<&(String, u32)>) -> Result<Self> {
        let target = match (until, stop) {
            (Until::Position(f, p) | Until::BeforePosition(f, p), _) => Some((file_number(f), *p)),
            (Until::Time(_), Some((f, p))) => Some((file_number(f), *p)),
            (Until::Time(_), None) => crate::bail!("{}: no stop position was found for it", until.shown()),
            (Until::Gtid(_) | Until::BeforeGtid(_), _) => None,
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
            held: None,
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
            if reached {
                self.transaction_begins(seg, e)?;
            }
            if reached || (matches!(until, Until::Gtid(_)) && self.pending.is_empty()) {
                return Ok(Some(self.boundary.clone()));
            }
        } else if reached {
            return Err(self.inside_transaction());
        }
        let was_open = self.walk.open;
        let before = (matches!(until, Until::BeforeGtid(_)) && e.header.type_code == GTID && !was_open)
            .then(|| self.walk.clone());
        self.walk.take(e);
        self.ids.insert(e.header.server_id);
        self.session.take(&seg.file, e);
        if let Until::Gtid(target) = until {
            self.gtid_event(target, e, was_open)?;
        }
        if let Until::BeforeGtid(target) = until {
            if let Some(stop) = self.before_gtid(*target, e, was_open, before)? {
                return Ok(Some(stop));
            }
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

    /// The stop reached inside a transaction: why replay cannot stop there.
    fn inside_transaction(&self) -> Error {
        let until = self.until;
        let (file, pos) = &self.boundary;
        let gtid = self.walk.current.map(|(d, s, n)| format!("{d}-{s}-{n}")).unwrap_or_default();
        Error::msg(match until {
            Until::BeforePosition(..) => format!(
                "{}: no transaction begins there: it is inside the transaction of GTID {gtid}, which begins at \
                 {file}:{pos}",
                until.shown()
            ),
            Until::Position(..) => format!(
                "{}: the position is inside a transaction (GTID {gtid}); replay stops between transactions, at \
                 {file}:{pos} or after this one",
                until.shown()
            ),
            _ => format!(
                "{}: the stop found is inside a transaction (GTID {gtid}) from the backup's position",
                until.shown()
            ),
        })
    }

    /// `BeforePosition`, the position reached between transactions: it must be where `e`, a
    /// GTID event, starts.
    fn transaction_begins(&self, seg: &SegmentName, e: &Event) -> Result<()> {
        let Until::BeforePosition(f, p) = self.until else { return Ok(()) };
        if (file_number(&seg.file), e.start) != (file_number(f), *p) || e.header.type_code != GTID {
            crate::bail!(
                "{}: no transaction begins there (the first event from there on is at {}:{}, of type {}); \
                 --exclusive takes the position of a GTID event, as `coffer binlog show` prints it",
                self.until.shown(),
                seg.file,
                e.start,
                e.header.type_code
            );
        }
        Ok(())
    }

    /// `BeforeGtid`: a GTID event of the domain past the target is an error; at the target's
    /// GTID event, the place and the walk are held; where its transaction ends, replay stops at
    /// the place held, the walk as it was there (`before`: before `e`, a GTID event between
    /// transactions). Called after `e` is taken.
    fn before_gtid(
        &mut self,
        (d, s, n): Gtid,
        e: &Event,
        was_open: bool,
        before: Option<Walk>,
    ) -> Result<Option<(String, u32)>> {
        if e.header.type_code == GTID && self.walk.open && !was_open {
            // A transaction held and not ended before this one began was dropped (a crash).
            self.held = None;
            if let Some(g @ (_, gs, gn)) = self.walk.current.filter(|(gd, ..)| *gd == d) {
                if let (true, Some(before)) = (g == (d, s, n), before) {
                    self.held = Some((self.boundary.clone(), before));
                } else if gn > n || (gn == n && gs != s) {
                    crate::bail!(
                        "GTID {d}-{s}-{n} is not in the archived binary log: domain {d} goes from before it to \
                         {d}-{gs}-{gn}"
                    );
                }
            }
        }
        if was_open && !self.walk.open && self.walk.last_gtid == Some((d, s, n)) {
            if let Some((at, before)) = self.held.take() {
                self.walk = before;
                return Ok(Some(at));
            }
        }
        Ok(None)
    }

    /// At the archive's end, inside the transaction held: the stop held, the walk before it.
    fn held_at_end(&mut self) -> Option<(String, u32)> {
        let Until::BeforeGtid(target) = self.until else { return None };
        if !(self.walk.open && self.walk.current == Some(*target)) {
            return None;
        }
        let (at, before) = self.held.take()?;
        self.walk = before;
        Some(at)
    }

    /// Whether `seg` ends at or past the position replay stops at.
    fn reached_end(&self, seg: &SegmentName) -> bool {
        self.target.is_some_and(|t| (file_number(&seg.file), seg.end) >= t)
    }

    /// At the end of `seg` (every event taken): where replay stops if it stops there.
    fn segment_end(&mut self, seg: &SegmentName) -> Result<Option<(String, u32)>> {
        if let Until::Position(f, p) | Until::BeforePosition(f, p) = self.until {
            if seg.closed && seg.file == *f && seg.end < *p {
                crate::bail!("{}: not in the log, {f} ends at {}", self.until.shown(), seg.end);
            }
        }
        if self.walk.open {
            return Ok(None);
        }
        self.boundary = (seg.file.clone(), seg.end);
        // An exclusive stop is found at its GTID event, never at a segment's end.
        let done = match (self.target, self.until) {
            (_, Until::BeforeGtid(_) | Until::BeforePosition(..)) => false,
            (Some(t), _) => (file_number(&seg.file), seg.end) >= t,
            (None, _) => self.pending.is_empty(),
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
mod tests;
