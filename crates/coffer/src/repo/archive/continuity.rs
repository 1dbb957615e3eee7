//! Continuity where the server restarted: what the archive lacks between a file that ends
//! with neither ROTATE nor STOP and the next file's start, read from the sealed descriptions
//! either side (GTID positions and states, the crashed file's size); and how every reader
//! joins one segment to the next ([`join`]).

use super::gtid_set::{self, GtidSet};
use super::{continues, restarted, SegmentName};
use crate::error::Error;
use coffer_mysql::events::{parse_gtids, Gtids};

/// The binlog state in full: per (domain, server id), the last sequence number logged, as
/// MariaDB's GTID_LIST holds it. A position ([`Gtids`]) keeps only each domain's highest,
/// which cannot show another server's lower GTID missing (`gtid_strict_mode` off).
pub type GtidState = std::collections::BTreeMap<(u32, u32), u64>;

/// A description holds a state of at most this many entries (a larger one is left out, null,
/// and continuity is then read per domain, as for older segments): a description is read
/// whole, and at most 64 KiB of it (each entry at most 43 bytes as text).
pub const STATE_MAX: usize = 256;

/// `domain-server-seq` of each entry, joined by commas (a domain may appear more than once).
pub fn state_text(s: &GtidState) -> String {
    s.iter().map(|((d, sv), n)| format!("{d}-{sv}-{n}")).collect::<Vec<_>>().join(",")
}

/// A state as [`state_text`] writes it; `None` if it is not one, or names a (domain, server)
/// twice.
pub fn parse_state(text: &str) -> Option<GtidState> {
    let mut out = GtidState::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut n = part.splitn(3, '-');
        let (d, sv, q) = (n.next()?.parse().ok()?, n.next()?.parse().ok()?, n.next()?.parse().ok()?);
        if out.insert((d, sv), q).is_some() {
            return None;
        }
    }
    Some(out)
}

/// The GTIDs either side of a restart in full, where both descriptions hold them.
#[derive(Debug, Clone, Copy)]
pub enum Full<'a> {
    /// MariaDB: the archive's committed state and the next file's GTID_LIST, per (domain,
    /// server id).
    Servers(&'a GtidState, &'a GtidState),
    /// MySQL: the archive's committed set and the next file's PREVIOUS_GTIDS.
    Mysql(&'a GtidSet, &'a GtidSet),
}

/// What the archive lacks where the server restarted after `crashed` (the last segment of the
/// file it left without ROTATE or STOP), or `None`: nothing. `committed` is the GTID position
/// after the last transaction that ended in `crashed`; `list` the next file's GTID_LIST (the
/// restarted server's binlog state, which holds only transactions that ended: crash recovery
/// drops an unfinished one); `size` the crashed file's size as the restarted server reported
/// it, and `torn_at` where its last whole event ends when the server could not send the rest
/// (an event torn). Each domain must be where the list says; without GTIDs, the archive must
/// hold every byte the server had. The bytes past a torn event are taken as an unfinished
/// transaction's only where GTID continuity proves it: the server cannot send past a corrupt
/// event in the middle of a file either. `full`: the same two in full ([`Full`]), where both
/// descriptions hold them: then each server's GTID is compared, not only each domain's
/// highest (MariaDB), or the GTID sets (MySQL, which has no positions).
pub fn missing_at_restart(
    crashed: &SegmentName,
    committed: Option<&Gtids>,
    list: Option<&Gtids>,
    full: Option<Full>,
    size: Option<u64>,
    torn_at: Option<u64>,
) -> Option<String> {
    let (file, end) = (&crashed.file, u64::from(crashed.end));
    let domains = match (full, committed, list) {
        (Some(Full::Servers(c, l)), _, _) => Some(servers_missing(c, l)),
        (Some(Full::Mysql(c, l)), _, _) => Some(gtid_set::missing(c, l)),
        (None, Some(c), Some(l)) => Some(domains_missing(c, l)),
        _ => None,
    };
    let continuous = domains.as_ref().is_some_and(Vec::is_empty);
    let mut missing = Vec::new();
    match (size, torn_at) {
        (_, Some(torn)) if torn > end => {
            missing.push(format!("{file} bytes {end}..{torn} (whole events the restarted server's file has)"))
        }
        (Some(size), Some(torn)) if size > torn && !continuous => missing.push(format!(
            "{file} bytes {torn}..{size} past an event torn at {torn} (the restarted server's file has {size}, and no \
             GTID continuity shows that only an unfinished transaction was there)"
        )),
        (Some(size), None) if size > end => {
            missing.push(format!("{file} bytes {end}..{size} (the restarted server's file has {size})"))
        }
        _ => {}
    }
    match domains {
        Some(d) => missing.extend(d),
        None if size.is_some() => {}
        None => missing.push(format!(
            "what the server had of {file} after {end} (no GTID positions either side, no size of the file)"
        )),
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// Each domain whose position in the archive (`committed`) is not where the restarted server's
/// log goes on (`list`): what is missing there, in words.
fn domains_missing(c: &Gtids, l: &Gtids) -> Vec<String> {
    let mut missing = Vec::new();
    let domains: std::collections::BTreeSet<&u32> = c.keys().chain(l.keys()).collect();
    for d in domains {
        let gtid = |(s, n): &(u32, u64)| format!("{d}-{s}-{n}");
        let why = match (c.get(d), l.get(d)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) if a.1 < b.1 => format!(
                "domain {d}: sequence {}..{} (the archive ends at {}, the restarted server's log goes on after {})",
                a.1 + 1,
                b.1,
                gtid(a),
                gtid(b)
            ),
            (None, Some(b)) => {
                format!(
                    "domain {d}: sequence 1..{} (the archive has none of it, the server went on after {})",
                    b.1,
                    gtid(b)
                )
            }
            (Some(a), Some(b)) => {
                format!("domain {d}: the archive has {}, the restarted server's log goes on after {}", gtid(a), gtid(b))
            }
            (Some(a), None) => {
                format!("domain {d}: the archive has {}, the restarted server's log has no such domain", gtid(a))
            }
            (None, None) => continue,
        };
        missing.push(why);
    }
    missing
}

/// Each (domain, server) whose last GTID in the archive (`c`) is not the one the restarted
/// server's binlog state holds (`l`): what is missing there, in words.
fn servers_missing(c: &GtidState, l: &GtidState) -> Vec<String> {
    let keys: std::collections::BTreeSet<&(u32, u32)> = c.keys().chain(l.keys()).collect();
    let mut missing = Vec::new();
    for &(d, s) in keys {
        let gtid = |n: &u64| format!("{d}-{s}-{n}");
        let why = match (c.get(&(d, s)), l.get(&(d, s))) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) if a < b => format!(
                "domain {d}: sequence {}..{b} of server {s} (the archive ends at {}, the restarted server's log goes on \
                 after {})",
                a + 1,
                gtid(a),
                gtid(b)
            ),
            (None, Some(b)) => format!(
                "domain {d}: sequence 1..{b} of server {s} (the archive has none of that server's, the server went on \
                 after {})",
                gtid(b)
            ),
            (Some(a), Some(b)) => format!(
                "domain {d} server {s}: the archive has {}, the restarted server's log goes on after {}",
                gtid(a),
                gtid(b)
            ),
            (Some(a), None) => {
                format!("domain {d} server {s}: the archive has {}, the restarted server's log has none of that server", gtid(a))
            }
            (None, None) => continue,
        };
        missing.push(why);
    }
    missing
}

/// How a segment follows the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// It takes up where the one before ends ([`continues`]), or it is the first.
    Continues,
    /// The server restarted after a crash between them, and the archive lacks nothing.
    Restart,
    /// Something is missing between them: what, in words.
    Gap(String),
}

impl Join {
    /// Something is missing before the segment.
    pub fn is_gap(&self) -> bool {
        matches!(self, Join::Gap(_))
    }

    /// How `b` follows `a`, with their descriptions where they were read: at a restart, by
    /// continuity ([`missing_at_restart`]).
    pub fn of(
        a: &SegmentName,
        a_said: Option<&serde_json::Value>,
        b: &SegmentName,
        b_said: Option<&serde_json::Value>,
    ) -> Self {
        if continues(a, b) {
            // Across files, a key's word that the file ends there, not the name's alone.
            return match a_said {
                Some(said) if a.file != b.file && said["closed"].as_bool() != Some(true) => {
                    Join::Gap(unproven(a, "its description does not say the file ends there"))
                }
                _ => Join::Continues,
            };
        }
        let between = format!("between {}:{} and {}:{}", a.file, a.end, b.file, b.start);
        if !restarted(a, b) {
            return Join::Gap(format!(
                "nothing is archived {between} (the server purged those binary logs before they were archived)"
            ));
        }
        let (Some(a_said), Some(b_said)) = (a_said, b_said) else {
            return Join::Gap(format!(
                "{} ends {between} with neither ROTATE nor STOP (a crash, or a lost tail: a key tells them apart)",
                a.file
            ));
        };
        let gtids = |v: &serde_json::Value| v.as_str().and_then(parse_gtids);
        let committed = gtids(&a_said["gtid_committed"]).or_else(|| gtids(&a_said["gtid_after"]));
        let list = gtids(&b_said["gtid_list"]).or_else(|| gtids(&b_said["gtid_before"]));
        let state = |v: &serde_json::Value| v.as_str().and_then(parse_state);
        let (c_state, l_state) = (state(&a_said["gtid_committed_state"]), state(&b_said["gtid_list_state"]));
        let previous = &b_said["previous_file"];
        let same = previous["file"].as_str() == Some(a.file.as_str());
        let (size, torn_at) =
            (previous["size"].as_u64().filter(|_| same), previous["torn_at"].as_u64().filter(|_| same));
        let set = |v: &serde_json::Value| v.as_str().and_then(gtid_set::parse);
        let (c_set, l_set) = (set(&a_said["gtids_executed"]), set(&b_said["previous_gtids"]));
        let full = match (&c_state, &l_state, &c_set, &l_set) {
            (Some(c), Some(l), _, _) => Some(Full::Servers(c, l)),
            (_, _, Some(c), Some(l)) => Some(Full::Mysql(c, l)),
            _ => None,
        };
        match missing_at_restart(a, committed.as_ref(), list.as_ref(), full, size, torn_at) {
            None => Join::Restart,
            Some(m) => Join::Gap(format!("the server restarted after a crash {between}, and the archive lacks {m}")),
        }
    }
}

/// A file complete by its segments' names only: what the archive is known to hold of it.
fn unproven(a: &SegmentName, why: &str) -> String {
    format!(
        "{} ends at {} by its segments' names only, and {why}: the archive is known complete to {}:{}",
        a.file, a.end, a.file, a.end
    )
}

/// A segment's description, or why it could not be read, as [`join`] reads it.
pub(crate) type Said = std::result::Result<serde_json::Value, String>;

/// How `b` follows `a`: the one rule by which `binlog list`, `binlog fetch`, `catalog` and
/// point-in-time recovery decide it. With a key (`read`: `read(0)` reads `a`'s description,
/// `read(1)` `b`'s), a file is complete only where `a`'s sealed description says it is closed
/// (a name can be changed by copying an object), or where a restart is proven with nothing
/// missing ([`Join::of`]); a description that cannot be read is a gap there. Without a key
/// (`None`), a file's completeness rests on the names, and a restart is a gap.
pub(crate) fn join(a: &SegmentName, b: &SegmentName, read: Option<&mut dyn FnMut(usize) -> Said>) -> Join {
    let across = continues(a, b) && a.file != b.file;
    let Some(read) = read.filter(|_| across || restarted(a, b)) else {
        return Join::of(a, None, b, None);
    };
    let unread = |why: String| {
        Join::Gap(if across {
            unproven(a, &why)
        } else {
            format!(
                "{} ends between {}:{} and {}:{} with neither ROTATE nor STOP, and {why}",
                a.file, a.file, a.end, b.file, b.start
            )
        })
    };
    let x = match read(0) {
        Ok(x) => x,
        Err(why) => return unread(why),
    };
    if across {
        return Join::of(a, Some(&x), b, None);
    }
    match read(1) {
        Ok(y) => Join::of(a, Some(&x), b, Some(&y)),
        Err(why) => unread(why),
    }
}

/// Why a description could not be read, as a gap says it.
pub(crate) fn unread_why(name: &str, e: &Error) -> String {
    format!("the description of {name} cannot be read: {}", e.one_line())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::archive::tests::seg;

    /// Issue 28, part 4: a server that crashed leaves a file with neither ROTATE nor STOP; the
    /// next file's GTID_LIST says where the log goes on. Nothing missing, per domain: crossed.
    #[test]
    fn a_restart_is_crossed_when_each_domain_goes_on_where_the_archive_ends() {
        let g = |t: &str| parse_gtids(t).unwrap();
        let crashed = seg("b.000001", 4, 5000, false);
        let missing = |c: &str, l: &str, size| missing_at_restart(&crashed, Some(&g(c)), Some(&g(l)), None, size, None);
        // Two domains, both where the list says; the server's file no longer than the archive's.
        assert_eq!(missing("0-1-100,1-2-7", "0-1-100,1-2-7", Some(5000)), None);
        assert_eq!(missing("0-1-100,1-2-7", "0-1-100,1-2-7", None), None);
        // One domain behind: its sequence numbers named, and the other domain not.
        let why = missing("0-1-100,1-2-7", "0-1-100,1-2-9", None).unwrap();
        assert_eq!(
            why,
            "domain 1: sequence 8..9 (the archive ends at 1-2-7, the restarted server's log goes on after 1-2-9)"
        );
        // A tail lost: the bytes too, as the restarted server reported its file.
        let why = missing("0-1-100", "0-1-120", Some(9000)).unwrap();
        assert!(
            why.starts_with(
                "b.000001 bytes 5000..9000 (the restarted server's file has 9000); domain 0: sequence 101..120"
            ),
            "{why}"
        );
        // A domain that first appears after the crash (not in the list): nothing missing; one
        // the archive never saw, though the list has it: all of it is missing.
        assert_eq!(missing("0-1-100", "0-1-100", None), None);
        let why = missing("0-1-100", "0-1-100,2-3-4", None).unwrap();
        assert!(why.starts_with("domain 2: sequence 1..4 (the archive has none of it"), "{why}");
        // A new server_id after the restart: the list ends with the old one's GTID, which the
        // archive holds; another server's at the same number is another transaction.
        assert_eq!(missing("0-1-100", "0-1-100", None), None);
        let why = missing("0-1-100", "0-2-100", None).unwrap();
        assert!(why.contains("the archive has 0-1-100, the restarted server's log goes on after 0-2-100"), "{why}");
        // The archive past the list: a transaction the restarted server does not have (its
        // recovery truncated the file): no continuity to prove.
        assert!(missing("0-1-101", "0-1-100", None).is_some());
        assert!(missing("0-1-100,5-1-1", "0-1-100", None).unwrap().contains("no such domain"));
        // Without GTIDs, bytes decide: the whole file archived, or not.
        assert_eq!(missing_at_restart(&crashed, None, None, None, Some(5000), None), None);
        assert!(missing_at_restart(&crashed, None, Some(&g("0-1-1")), None, None, None)
            .unwrap()
            .contains("no GTID positions"));
        assert!(missing_at_restart(&crashed, None, None, None, Some(6000), None).unwrap().contains("bytes 5000..6000"));
    }

    /// Issue 28, part 4 (second round): a domain written by two servers (`gtid_strict_mode`
    /// off). A position keeps only the domain's highest sequence number, so server 1's lower
    /// GTID lost from the crashed file's tail showed nowhere when the file's size was not
    /// recorded; the states in full, per (domain, server), show it.
    #[test]
    fn a_lower_gtid_of_another_server_lost_at_a_restart_is_a_gap_naming_it() {
        let (a, b) = (seg("b.000001", 4, 5000, false), seg("b.000002", 4, 300, false));
        let before = serde_json::json!({"gtid_committed": "0-2-100", "gtid_committed_state": "0-1-50,0-2-100"});
        let lost = serde_json::json!({"gtid_list": "0-2-100", "gtid_list_state": "0-1-51,0-2-100"});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&lost)) else { panic!("crossed") };
        assert_eq!(
            why,
            "the server restarted after a crash between b.000001:5000 and b.000002:4, and the archive lacks domain 0: \
             sequence 51..51 of server 1 (the archive ends at 0-1-50, the restarted server's log goes on after 0-1-51)"
        );
        // Nothing lost: crossed.
        let whole = serde_json::json!({"gtid_list": "0-2-100", "gtid_list_state": "0-2-100,0-1-50"});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&whole)), Join::Restart);
        // A server the archive never saw in the domain, and one the restarted server has not.
        let more = serde_json::json!({"gtid_list": "0-2-100", "gtid_list_state": "0-1-50,0-2-100,0-3-7"});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&more)) else { panic!("crossed") };
        assert!(why.ends_with("domain 0: sequence 1..7 of server 3 (the archive has none of that server's, the server went on after 0-3-7)"), "{why}");
        let fewer = serde_json::json!({"gtid_list": "0-2-100", "gtid_list_state": "0-2-100"});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&fewer)) else { panic!("crossed") };
        assert!(why.ends_with("the restarted server's log has none of that server"), "{why}");
        // Server 1's lower GTID logged last: the domain's last GTID is not its highest, which a
        // position per domain took for a gap; per server, nothing is missing.
        let last = serde_json::json!({"gtid_committed": "0-1-51", "gtid_committed_state": "0-1-51,0-2-100"});
        let went_on = serde_json::json!({"gtid_list": "0-2-100", "gtid_list_state": "0-1-51,0-2-100"});
        assert_eq!(Join::of(&a, Some(&last), &b, Some(&went_on)), Join::Restart);
        // Either state missing (an older segment, or one past the bound): per domain, as before.
        let older = serde_json::json!({"gtid_list": "0-2-100"});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&older)), Join::Restart);
        // States as text: a domain more than once, a (domain, server) once.
        let st = parse_state("0-1-50,0-2-100,3-1-1").unwrap();
        assert_eq!(st.get(&(0, 1)), Some(&50));
        assert_eq!(state_text(&st), "0-1-50,0-2-100,3-1-1");
        assert_eq!(parse_state(""), Some(GtidState::new()));
        for bad in ["0-1-50,0-1-51", "0-1", "x-1-2", "0-1-2-3x"] {
            assert_eq!(parse_state(bad), None, "{bad}");
        }
        assert!(state_text(&(0..STATE_MAX as u32).map(|s| ((u32::MAX, s), u64::MAX)).collect()).len() < 1 << 14);
    }

    /// Issue 28, part 4 (second round): MySQL has no GTID positions; its PREVIOUS_GTIDS set
    /// plays the part of GTID_LIST. A restart with every GTID archived is crossed (it was a
    /// gap, "no GTID positions either side"); one with GTIDs lost is a gap naming them.
    #[test]
    fn a_mysql_restart_is_crossed_by_its_previous_gtids() {
        let (a, b) = (seg("b.000001", 4, 5000, false), seg("b.000002", 4, 300, false));
        let sid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let before = serde_json::json!({"gtids_executed": format!("{sid}:1-8")});
        let after = serde_json::json!({"previous_gtids": format!("{sid}:1-8")});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&after)), Join::Restart);
        let lost = serde_json::json!({"previous_gtids": format!("{sid}:1-10")});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&lost)) else { panic!("crossed") };
        assert!(
            why.ends_with(&format!(
                "the archive lacks GTIDs {sid}:9-10 (the restarted server's log went on after them)"
            )),
            "{why}"
        );
        // A size that the archive lacks is said as well.
        let longer = serde_json::json!({"previous_gtids": format!("{sid}:1-8"), "previous_file": {"file": "b.000001", "size": 5100}});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&longer)) else { panic!("crossed") };
        assert!(why.ends_with("b.000001 bytes 5000..5100 (the restarted server's file has 5100)"), "{why}");
    }

    /// Which boundaries are restarts, and how the descriptions decide them: the crashed file's
    /// last transaction ended (`gtid_committed`, else `gtid_after` of older segments), the
    /// next file's GTID_LIST and the size the restarted server reported.
    #[test]
    fn restarts_are_told_from_gaps_by_the_descriptions_either_side() {
        let (a, b) = (seg("b.000001", 4, 5000, false), seg("b.000002", 4, 300, false));
        assert!(restarted(&a, &b) && !continues(&a, &b));
        assert!(!restarted(&seg("b.000001", 4, 5000, true), &b), "a closed file continues");
        assert!(!restarted(&a, &seg("b.000003", 4, 300, false)), "a file missing");
        assert!(!restarted(&a, &seg("b.000002", 90, 300, false)), "not the next file's start");
        assert!(!restarted(&seg("a.000001", 4, 50, false), &b), "another log");
        // The crashed file's last segment ends inside a transaction (0-1-101, dropped by the
        // server's crash recovery): its committed position is the one that counts.
        let before = serde_json::json!({"gtid_after": "0-1-101", "gtid_committed": "0-1-100"});
        let after = serde_json::json!({"gtid_list": "0-1-100", "previous_file": {"file": "b.000001", "size": 5000}});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&after)), Join::Restart);
        assert!(Join::of(&a, None, &b, None).is_gap(), "not read: not proven");
        let older = serde_json::json!({"gtid_after": "0-1-100"});
        assert_eq!(Join::of(&a, Some(&older), &b, Some(&after)), Join::Restart);
        let longer = serde_json::json!({"gtid_list": "0-1-100", "previous_file": {"file": "b.000001", "size": 7000}});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&longer)) else { panic!() };
        assert_eq!(
            why,
            "the server restarted after a crash between b.000001:5000 and b.000002:4, and the archive lacks b.000001 \
             bytes 5000..7000 (the restarted server's file has 7000)"
        );
        // Past a torn last event the server had nothing to send: not missing.
        let torn = serde_json::json!({"gtid_list": "0-1-100", "previous_file": {"file": "b.000001", "size": 7000, "torn_at": 5000}});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&torn)), Join::Restart);
        // Past a torn event, with no GTID positions either side (a server without GTIDs, or a
        // corrupt event in the middle of the file: the server cannot send past either), the
        // bytes after it are not known to be an unfinished transaction's: a gap naming both.
        let none = serde_json::json!({});
        let untold = serde_json::json!({"previous_file": {"file": "b.000001", "size": 7000, "torn_at": 5000}});
        let Join::Gap(why) = Join::of(&a, Some(&none), &b, Some(&untold)) else { panic!("crossed") };
        assert!(
            why.ends_with(
                "the archive lacks b.000001 bytes 5000..7000 past an event torn at 5000 (the restarted \
             server's file has 7000, and no GTID continuity shows that only an unfinished transaction was there)"
            ),
            "{why}"
        );
        // And where the domains do not continue, the bytes too.
        let behind = serde_json::json!({"gtid_list": "0-1-120", "previous_file": {"file": "b.000001", "size": 7000, "torn_at": 5000}});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&behind)) else { panic!("crossed") };
        assert!(
            why.contains("bytes 5000..7000 past an event torn at 5000") && why.contains("sequence 101..120"),
            "{why}"
        );
        // Whole events the archive lacks before the torn one.
        let short = serde_json::json!({"gtid_list": "0-1-100", "previous_file": {"file": "b.000001", "size": 7000, "torn_at": 6000}});
        let Join::Gap(why) = Join::of(&a, Some(&before), &b, Some(&short)) else { panic!("crossed") };
        assert!(why.contains("b.000001 bytes 5000..6000"), "{why}");
        // The size of another file is not this one's.
        let other = serde_json::json!({"gtid_list": "0-1-100", "previous_file": {"file": "b.000000", "size": 7000}});
        assert_eq!(Join::of(&a, Some(&before), &b, Some(&other)), Join::Restart);
        let Join::Gap(why) = Join::of(&seg("b.000001", 4, 100, true), None, &seg("b.000003", 4, 9, false), None) else {
            panic!()
        };
        assert!(why.starts_with("nothing is archived between b.000001:100 and b.000003:4"), "{why}");
    }
}
