//! The walks of `stop` on synthetic logs: where replay stops, for each target.

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
            let gtid =
                |seq: u64, domain: u32, flags: u8| [&seq.to_le_bytes()[..], &domain.to_le_bytes(), &[flags]].concat();
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
    let stop =
        |t| time_stop(&names, &restart, &mut |i| Ok(lg.segments[i].1.clone()), std::slice::from_ref(&lg.gtid(1)), t);
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
    gathered_walk(lg, until, start).map(|(at, _)| at)
}

/// [`gathered`], and the walk of the events replayed.
fn gathered_walk(lg: &Log, until: &Until, start: &(String, u32)) -> Result<((String, u32), Walk)> {
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
                return Ok((at, g.walk));
            }
            written.take(&e);
        }
        if let Some(at) = g.segment_end(seg)? {
            return Ok((at, g.walk));
        }
    }
    match g.held_at_end() {
        Some(at) => Ok((at, g.walk)),
        None => Err(Error::msg("the archive ends")),
    }
}

/// Issue 30: `--until-gtid G --exclusive` stops at G's GTID event, between transactions:
/// every transaction before it applied (the walk counts them, and G not), G and nothing after.
#[test]
fn an_exclusive_gtid_stops_at_its_gtid_event() {
    use Item::*;
    let lg = log(&[
        ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Rotate(102)]),
        ("binlog.000002", &[Fd(102), Tx1(102, 1), Tx(103, 3), Cut, Tx(104, 4), Tx(105, 5)]),
    ]);
    let from = ("binlog.000001".to_string(), 4);
    let before = |n| Until::BeforeGtid((0, 1, n));
    let (at, walk) = gathered_walk(&lg, &before(3), &from).unwrap();
    assert_eq!(at, lg.gtid(3), "at 0-1-3's GTID event");
    assert_eq!((walk.transactions, walk.last_gtid, walk.open), (3, Some((1, 1, 1)), false));
    assert_eq!(walk.applied, Gtids::from([(0, (1, 2)), (1, (1, 1))]), "0-1-3 not applied");
    // Across a segment's cut, and the inclusive form's stop is the next one's.
    assert_eq!(gathered(&lg, &before(4), &from).unwrap(), lg.gtid(4));
    assert_eq!(gathered(&lg, &Until::Gtid(Gtids::from([(0, (1, 3))])), &from).unwrap(), lg.gtid(4));
    // From a backup exactly there: nothing to replay.
    assert_eq!(gathered(&lg, &before(3), &lg.gtid(3)).unwrap(), lg.gtid(3));
    // Never met: the archive ends; passed (the same number from another server): refused.
    assert!(gathered(&lg, &before(9), &from).unwrap_err().to_string().contains("the archive ends"));
    let err = gathered(&lg, &Until::BeforeGtid((0, 2, 3)), &from).unwrap_err().to_string();
    assert!(err.contains("GTID 0-2-3 is not in the archived binary log") && err.contains("0-1-3"), "{err}");
}

/// A crash left 0-1-3 unfinished; the restarted server gave 3 to its next transaction, after
/// one of domain 1: the stop is before the restarted server's 0-1-3, and the domain 1
/// transaction logged before it is applied. An archive that ends inside the transaction named
/// stops before it.
#[test]
fn an_exclusive_gtid_a_crash_freed_is_before_the_restarted_servers_transaction() {
    use Item::*;
    let lg = log(&[
        ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Unfinished(102, 3)]),
        ("binlog.000002", &[Fd(103), Tx1(103, 1), Tx(104, 3), Tx(105, 4)]),
    ]);
    let from = ("binlog.000001".to_string(), 4);
    assert_eq!(lg.gtid(3).0, "binlog.000002");
    let (at, walk) = gathered_walk(&lg, &Until::BeforeGtid((0, 1, 3)), &from).unwrap();
    assert_eq!(at, lg.gtid(3));
    assert_eq!(walk.applied, Gtids::from([(0, (1, 2)), (1, (1, 1))]));
    // The archive ends inside 0-1-3: everything before it is known.
    let open = log(&[("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Unfinished(102, 3)])]);
    let (at, walk) = gathered_walk(&open, &Until::BeforeGtid((0, 1, 3)), &from).unwrap();
    assert_eq!((at, walk.transactions, walk.open), (open.gtid(3), 2, false));
}

/// `--until-position F:P --exclusive` takes only a GTID event's start (what `binlog show`
/// prints as START): replay stops there; anywhere else is refused, saying why.
#[test]
fn an_exclusive_position_must_be_where_a_transaction_begins() {
    use Item::*;
    let lg = log(&[
        ("binlog.000001", &[Fd(100), Tx(100, 1), Tx(101, 2), Rotate(102)]),
        ("binlog.000002", &[Fd(102), Tx(103, 3), Cut, Tx(104, 4)]),
    ]);
    let from = ("binlog.000001".to_string(), 4);
    let before = |(f, p): (String, u32)| Until::BeforePosition(f, p);
    for n in [2, 3, 4] {
        let (at, walk) = gathered_walk(&lg, &before(lg.gtid(n)), &from).unwrap();
        assert_eq!((at, walk.transactions), (lg.gtid(n), n - 1), "before {n}");
    }
    // Inside a transaction (after its GTID event), at a file's start, after the ROTATE.
    let (f, p) = lg.gtid(2);
    let err = gathered(&lg, &before((f.clone(), p + 27)), &from).unwrap_err().to_string();
    assert!(err.contains("no transaction begins there: it is inside the transaction of GTID 0-1-2"), "{err}");
    assert!(err.contains(&format!("begins at {f}:{p}")), "{err}");
    for (file, pos) in [("binlog.000002", 4), ("binlog.000001", lg.segments[0].0.end)] {
        let err = gathered(&lg, &before((file.into(), pos)), &from).unwrap_err().to_string();
        assert!(err.contains("no transaction begins there (the first event"), "{file}:{pos}: {err}");
    }
    // The inclusive form takes these.
    assert_eq!(gathered(&lg, &Until::Position("binlog.000002".into(), 4), &from).unwrap().0, "binlog.000002");
    // Past the archive's end: not reached.
    let end = lg.segments.last().unwrap().0.end;
    assert!(gathered(&lg, &before(("binlog.000002".into(), end)), &from).is_err());
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
