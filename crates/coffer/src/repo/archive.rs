//! The binary log archive under a prefix: segments, each a sealed image whose object name says
//! where it lies, `FILE_START_END.coffer` (positions in the server's file, ten digits), or
//! `FILE_START_END-closed.coffer` when the file is complete (it ends with the file's ROTATE
//! event, or its STOP event at a clean shutdown, or the server went on to the next file): the
//! archive's extent and end are found from a listing, with no local state.

use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::meta::{binlog_file_number as file_number, is_binlog_file_name};

/// The entry of a segment image that holds the events, as the server's file holds them.
pub const EVENTS_ENTRY: &str = "events";

/// The entry that describes the segment.
pub const SEGMENT_ENTRY: &str = "coffer-binlog.json";

mod continuity;
pub(crate) mod gtid_set;

pub(crate) use continuity::{join, unread_why, Said};
pub use continuity::{missing_at_restart, parse_state, state_text, Full, GtidState, Join, STATE_MAX};

/// The first 4 bytes of every binary log file; a segment's events come after them.
pub const BINLOG_MAGIC: &[u8; 4] = b"\xfebin";

/// Where a segment lies in the server's binary log, as its object name says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// The server's file.
    pub file: String,
    /// Where the segment's first event starts in it.
    pub start: u32,
    /// Where its last event ends.
    pub end: u32,
    /// The file is complete: the segment ends with its ROTATE or STOP event, or the server
    /// went on to the next file after it.
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

/// `next` takes up exactly where `previous` ends: in the same file where it ends, or at the
/// start of the next file (same base name, number plus one) after a complete one.
pub fn continues(previous: &SegmentName, next: &SegmentName) -> bool {
    if previous.file == next.file {
        return previous.end == next.start;
    }
    previous.closed && next_file_start(previous, next)
}

/// `next` starts the file after `previous`'s (same base name, number plus one).
fn next_file_start(previous: &SegmentName, next: &SegmentName) -> bool {
    let base = |f: &str| f.rsplit_once('.').map(|(b, _)| b.to_owned());
    next.start == 4
        && base(&previous.file) == base(&next.file)
        && file_number(&next.file) == file_number(&previous.file) + 1
}

/// The server went on to the file after `previous`'s, which ended with neither ROTATE nor
/// STOP as archived: a restart after a crash, or a tail the archive lacks. Continuity decides
/// ([`missing_at_restart`]).
pub fn restarted(previous: &SegmentName, next: &SegmentName) -> bool {
    !previous.closed && next_file_start(previous, next)
}

/// The segments under `prefix`, in log order.
pub fn segments(prefix: &str, env: &Env) -> Result<Vec<(SegmentName, coffer_store::Listed)>> {
    let url = prefix_url(prefix)?;
    // The store's error names the prefix ("cannot list URL: ...", "URL does not exist").
    let listed = coffer_store::Object::open(url, &env.store)?.list()?;
    let mut out: Vec<_> = listed.into_iter().filter_map(|l| SegmentName::parse(&l.name).map(|s| (s, l))).collect();
    out.sort_by_key(|(s, _)| s.key());
    Ok(out)
}

/// One segment of a [`Listing`].
#[derive(Debug)]
pub struct ListedSegment {
    /// Where it lies.
    pub name: SegmentName,
    /// Its size.
    pub bytes: u64,
    /// It does not continue the segment before it: what is missing between them.
    pub gap_before: Option<String>,
    /// The server restarted after a crash before it, and nothing is missing (read with keys).
    pub restart_before: bool,
    /// Its description, read with the keys given (none given: `None`), or why it could not be.
    pub description: Option<Result<serde_json::Value>>,
}

/// The segments under a prefix, in log order, with the gaps between them and, with keys, what
/// each describes.
#[derive(Debug)]
pub struct Listing {
    /// The segments.
    pub segments: Vec<ListedSegment>,
}

/// Lists the segments under `prefix`; with `keys`, reads each one's description. `each` sees
/// every segment as soon as it is read (a long listing shows as it goes).
pub fn list(
    prefix: &str,
    keys: Option<&crate::keys::KeySources>,
    each: &mut dyn FnMut(&ListedSegment),
    env: &Env,
) -> Result<Listing> {
    let found = segments(prefix, env)?;
    let unlocks = keys.map(|k| crate::keys::unlocks(k, env)).transpose()?;
    let mut listed: Vec<ListedSegment> = Vec::new();
    let said = |d: &Option<Result<serde_json::Value>>, n: &SegmentName| match d {
        Some(Ok(v)) => Ok(v.clone()),
        Some(Err(e)) => Err(unread_why(&n.object_name(), e)),
        None => Err(format!("the description of {} was not read", n.object_name())),
    };
    for (name, object) in &found {
        let description = unlocks.as_ref().map(|u| description(object, u, env));
        let join = match listed.last() {
            None => Join::Continues,
            Some(p) => {
                let mut read = |j: usize| if j == 0 { said(&p.description, &p.name) } else { said(&description, name) };
                join(&p.name, name, unlocks.is_some().then_some(&mut read as &mut dyn FnMut(usize) -> Said))
            }
        };
        listed.push(ListedSegment {
            restart_before: join == Join::Restart,
            gap_before: match join {
                Join::Gap(what) => Some(what),
                _ => None,
            },
            name: name.clone(),
            bytes: object.size,
            description,
        });
        each(listed.last().expect("just pushed"));
    }
    Ok(Listing { segments: listed })
}

/// The description's fields a listing shows.
const DESCRIBED: [&str; 7] =
    ["events", "first_event_time", "last_event_time", "gtid_before", "gtid_after", "server", "checksum"];

impl ListedSegment {
    /// Its line: name, positions, size, completeness, a gap before it, and what it describes
    /// (or why that could not be read).
    pub fn line(&self) -> String {
        let esc = |s: &str| crate::text::escape(s.as_bytes());
        let s = &self.name;
        let detail = match &self.description {
            None => String::new(),
            Some(Ok(d)) => {
                let time = |k: &str| d[k].as_i64().map(crate::text::utc).unwrap_or_default();
                format!(
                    "  {} .. {}  GTID {} .. {}  server {}",
                    time("first_event_time"),
                    time("last_event_time"),
                    esc(d["gtid_before"].as_str().unwrap_or("?")),
                    esc(d["gtid_after"].as_str().unwrap_or("?")),
                    d["server"]["server_id"]
                )
            }
            Some(Err(e)) => format!("  ({})", e.one_line()),
        };
        let before = match (&self.gap_before, self.restart_before) {
            (Some(what), _) => format!("  (gap before) {what}"),
            (None, true) => "  (restart before, nothing missing)".into(),
            (None, false) => String::new(),
        };
        format!(
            "{}  {:>10} .. {:<10}  {:>10}{}{before}{detail}",
            esc(&s.file),
            s.start,
            s.end,
            crate::text::human(self.bytes),
            if s.closed { "  complete" } else { "" },
        )
    }

    /// It, as `binlog list --json` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.name;
        let mut row = serde_json::json!({"file": s.file, "start": s.start, "end": s.end, "closed": s.closed,
            "bytes": self.bytes, "gap_before": self.gap_before.is_some(), "restart_before": self.restart_before});
        if let Some(what) = &self.gap_before {
            row["gap"] = serde_json::json!(what);
        }
        match &self.description {
            None => {}
            Some(Ok(d)) => DESCRIBED.iter().for_each(|k| row[k] = d[k].clone()),
            Some(Err(e)) => row["error"] = serde_json::json!(e.one_line()),
        }
        row
    }
}

impl Listing {
    /// The listing as `binlog list --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.segments.iter().map(ListedSegment::to_json).collect())
    }

    /// The error of a listing with segments whose description could not be read, if it has any.
    pub fn unread_error(&self) -> Option<Error> {
        let unread = self.segments.iter().filter(|s| matches!(s.description, Some(Err(_)))).count();
        (unread > 0).then(|| {
            Error::msg(format!(
                "{unread} of {} segments could not be read with the key given (see above)",
                self.segments.len()
            ))
        })
    }
}

pub(crate) fn prefix_url(prefix: &str) -> Result<&str> {
    match Location::parse(prefix) {
        Location::Object(_) if prefix.ends_with('/') => Ok(prefix),
        _ => Err(Error::usage(format!(
            "{prefix}: binary logs are archived under an object prefix (s3://B/P/, file:///D/)"
        ))),
    }
}

/// A segment's description (`coffer-binlog.json`, Appendix C), read through its index.
pub fn description(
    listed: &coffer_store::Listed,
    unlocks: &[coffer_crypto::Unlock],
    env: &Env,
) -> Result<serde_json::Value> {
    let location = Location::Object(listed.object.url().to_owned());
    let bytes = read_entry(&location, unlocks, SEGMENT_ENTRY, 1 << 16, env)?;
    let said =
        serde_json::from_slice(&bytes).map_err(|e| Error::msg(format!("{}: its description: {e}", listed.name)))?;
    named_as_said(&listed.name, &said)?;
    Ok(said)
}

/// Refuses a segment whose name (which anyone who can write the store can change, copying
/// an object) says other than its sealed description: its file, positions, or that the file
/// is complete. A field an older description lacks is not compared.
pub(crate) fn named_as_said(name: &str, said: &serde_json::Value) -> Result<()> {
    let Some(s) = SegmentName::parse(name) else { return Ok(()) };
    let fields = [
        ("file", said["file"].as_str().is_none_or(|f| f == s.file)),
        ("start", said["start"].as_u64().is_none_or(|p| p == u64::from(s.start))),
        ("end", said["end"].as_u64().is_none_or(|p| p == u64::from(s.end))),
        ("closed", said["closed"].as_bool().is_none_or(|c| c == s.closed)),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, same)| !same) {
        crate::bail!(
            "{name}: its name is not its description's (its {field} is {}): the object was renamed or copied there",
            said[field]
        );
    }
    Ok(())
}

/// One entry of an image, whole, through its index; refused if its record says it holds more
/// than `max` bytes.
pub(crate) fn read_entry(
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

/// The archive's segments, in log order, with what reads them, and how each follows the one
/// before it.
pub(crate) struct Archive<'a> {
    pub segments: Vec<(SegmentName, coffer_store::Listed)>,
    pub joins: Vec<Join>,
    pub unlocks: &'a [Unlock],
    pub env: &'a Env,
}

impl<'a> Archive<'a> {
    /// The archive of `segments`, each join decided by [`join`]: with `unlocks`, the
    /// descriptions where a file ends are read (one small read per file, two at a restart);
    /// without, names decide, and a restart is a gap (nothing shows what is missing).
    pub(crate) fn new(
        segments: Vec<(SegmentName, coffer_store::Listed)>,
        unlocks: &'a [Unlock],
        env: &'a Env,
    ) -> Result<Self> {
        let mut archive = Archive { segments, joins: Vec::new(), unlocks, env };
        let mut joins = vec![Join::Continues; archive.segments.len().min(1)];
        for i in 1..archive.segments.len() {
            let (a, b) = (&archive.segments[i - 1].0, &archive.segments[i].0);
            // One description that cannot be read is a gap there, not the whole archive
            // unreadable: targets before it are still reached.
            let mut read = |j: usize| {
                let k = i - 1 + j;
                archive.description(k).map_err(|e| unread_why(&archive.segments[k].1.name, &e))
            };
            let keyed = !unlocks.is_empty();
            joins.push(join(a, b, keyed.then_some(&mut read as &mut dyn FnMut(usize) -> Said)));
        }
        archive.joins = joins;
        Ok(archive)
    }

    /// The segments' names, in log order.
    pub(crate) fn names(&self) -> Vec<SegmentName> {
        self.segments.iter().map(|(s, _)| s.clone()).collect()
    }

    pub(crate) fn location(&self, i: usize) -> Location {
        Location::Object(self.segments[i].1.object.url().to_owned())
    }

    /// The events of segment `i`, exactly as long as its name says.
    pub(crate) fn events(&self, i: usize) -> Result<Vec<u8>> {
        let (s, listed) = &self.segments[i];
        let want = u64::from(s.end - s.start);
        let bytes = crate::repo::archive::read_entry(&self.location(i), self.unlocks, EVENTS_ENTRY, want, self.env)?;
        if bytes.len() as u64 != want {
            crate::bail!("{}: it holds {} bytes, its name says {want}", listed.name, bytes.len());
        }
        Ok(bytes)
    }

    /// The description of segment `i`.
    pub(crate) fn description(&self, i: usize) -> Result<serde_json::Value> {
        crate::repo::archive::description(&self.segments[i].1, self.unlocks, self.env)
    }

    /// The time of the last event of segment `i`, from its description.
    pub(crate) fn last_time(&self, i: usize) -> Result<i64> {
        let v = self.description(i)?;
        v["last_event_time"]
            .as_i64()
            .ok_or_else(|| Error::msg(format!("{}: its description has no last_event_time", self.segments[i].1.name)))
    }

    /// The first segment whose events reach `(file, pos)` (the one that holds the event
    /// starting there, or ends there).
    pub(crate) fn find(&self, file: &str, pos: u32) -> Option<usize> {
        let at = (file_number(file), pos);
        self.segments.iter().position(|(s, _)| (file_number(&s.file), s.end) >= at)
    }

    /// The first segment of `file` if the archive holds it from its start.
    pub(crate) fn file_start(&self, file: &str) -> Option<usize> {
        self.segments.iter().position(|(s, _)| s.file == file && s.start == 4)
    }
}

/// A new binary log file `dir/name` (never one that exists), its magic number written.
pub(crate) fn new_log_file(dir: &std::path::Path, name: &str) -> Result<std::fs::File> {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, BINLOG_MAGIC).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn seg(f: &str, start: u32, end: u32, closed: bool) -> SegmentName {
        SegmentName { file: f.into(), start, end, closed }
    }

    #[test]
    fn a_listing_shows_gaps_descriptions_and_what_could_not_be_read() {
        let listed = |name, bytes, gap: bool, description| ListedSegment {
            name,
            bytes,
            gap_before: gap.then(|| "nothing is archived between x and y".to_owned()),
            restart_before: false,
            description,
        };
        let d = serde_json::json!({"events": 3, "first_event_time": 0, "last_event_time": 60, "gtid_before": "0-1-1",
            "gtid_after": "0-1-4", "server": {"server_id": 7}, "checksum": "crc32", "other": 1});
        let listing = Listing {
            segments: vec![
                listed(seg("binlog.000001", 4, 100, true), 2048, false, None),
                listed(seg("binlog.000003", 4, 50, false), 10, true, Some(Ok(d))),
                listed(seg("binlog.000003", 50, 90, false), 10, false, Some(Err(Error::msg("wrong key")))),
            ],
        };
        let lines: Vec<String> = listing.segments.iter().map(ListedSegment::line).collect();
        assert_eq!(lines[0], format!("binlog.000001  {:>10} .. {:<10}  {:>10}  complete", 4, 100, "2.00 KiB"));
        assert!(
            lines[1]
                .ends_with("  (gap before) nothing is archived between x and y  1970-01-01 00:00:00 .. 1970-01-01 00:01:00  GTID 0-1-1 .. 0-1-4  server 7"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with("  (wrong key)"), "{}", lines[2]);
        let json = listing.to_json();
        assert_eq!(json[0]["gap_before"], false);
        assert_eq!(
            (&json[1]["gap_before"], &json[1]["gap"]),
            (&serde_json::json!(true), &serde_json::json!("nothing is archived between x and y"))
        );
        assert_eq!(json[1]["server"]["server_id"], 7);
        assert!(json[1].get("other").is_none());
        assert_eq!(json[2]["error"], "wrong key");
        let unread = listing.unread_error().expect("one unread");
        assert_eq!(unread.to_string(), "1 of 3 segments could not be read with the key given (see above)");
    }

    /// Review of issue 28: a listing that fails names its prefix once, not "cannot list X:
    /// cannot list X"; and the magic every rebuilt file starts with is the server's.
    #[test]
    fn a_failed_listing_names_its_prefix_once() {
        let dir = tempfile::tempdir().unwrap();
        // A name that is not UTF-8: the local store cannot list it.
        let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff.coffer");
        std::fs::write(dir.path().join(odd), b"x").unwrap();
        let file = dir.path();
        let prefix = format!("file://{}/", file.display());
        let err = segments(&prefix, &Env::default()).unwrap_err().one_line();
        assert_eq!(err.matches(&file.display().to_string()).count(), 1, "{err}");
        assert_eq!(BINLOG_MAGIC, &[0xfe, 0x62, 0x69, 0x6e]);
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
            // Names reach SQL (BINLOG_GTID_POS, CHANGE MASTER): no quote gets through.
            "bin'log.000001_0000000004_0000000009.coffer",
            "binlog.000001');DROP TABLE t;--.000002_0000000004_0000000009.coffer",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn continuity_by_names() {
        // In a file: where the previous ends.
        assert!(continues(&seg("b.000001", 4, 100, false), &seg("b.000001", 100, 200, false)));
        assert!(!continues(&seg("b.000001", 4, 100, false), &seg("b.000001", 120, 200, false)));
        assert!(!continues(&seg("b.000001", 4, 100, false), &seg("b.000001", 90, 200, false)));
        // Across files: a complete file, then the next one's start.
        assert!(continues(&seg("b.000001", 4, 100, true), &seg("b.000002", 4, 50, false)));
        assert!(continues(&seg("b.999999", 4, 100, true), &seg("b.1000000", 4, 50, false)));
        assert!(!continues(&seg("b.000001", 4, 100, false), &seg("b.000002", 4, 50, false)), "not complete");
        assert!(!continues(&seg("b.000001", 4, 100, true), &seg("b.000003", 4, 50, false)), "a file missing");
        assert!(!continues(&seg("b.000001", 4, 100, true), &seg("b.000002", 60, 90, false)), "not its start");
        assert!(!continues(&seg("b.000001", 4, 100, true), &seg("c.000002", 4, 50, false)), "another log");
        assert!(!continues(&seg("b.000002", 4, 100, true), &seg("b.000001", 4, 50, false)));
    }

    /// Review of issue 28, part 4: a description that cannot be read at a restart makes that
    /// restart a gap, not the archive unreadable (catalog, fetch and PITR before it go on).
    #[test]
    fn an_unreadable_description_at_a_restart_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let names = [seg("b.000001", 4, 100, true), seg("b.000002", 4, 5000, false), seg("b.000003", 4, 300, false)];
        for n in &names {
            std::fs::write(dir.path().join(n.object_name()), b"not an image").unwrap();
        }
        let env = Env::default();
        let prefix = format!("file://{}/", dir.path().display());
        let found = segments(&prefix, &env).unwrap();
        let unlocks = [Unlock::Key(coffer_crypto::MasterKey::generate().unwrap())];
        let archive = Archive::new(found, &unlocks, &env).expect("the archive, with gaps");
        assert_eq!(archive.joins[0], Join::Continues);
        // The file its name says complete is not shown complete by the key either.
        let Join::Gap(why) = &archive.joins[1] else { panic!("{:?}", archive.joins[1]) };
        assert!(
            why.starts_with(
                "b.000001 ends at 100 by its segments' names only, and the description of \
                 b.000001_0000000004_0000000100-closed.coffer cannot be read: "
            ) && why.ends_with(": the archive is known complete to b.000001:100"),
            "{why}"
        );
        let Join::Gap(why) = &archive.joins[2] else { panic!("{:?}", archive.joins[2]) };
        assert!(
            why.starts_with(
                "b.000002 ends between b.000002:5000 and b.000003:4 with neither ROTATE nor STOP, and the description \
                 of b.000002_0000000004_0000005000.coffer cannot be read: "
            ) && !why.contains('\n'),
            "{why}"
        );
    }

    /// Review of issue 28, part 4: an object renamed (a segment copied under another name) is
    /// refused where its description is read: its name is not what the key sealed.
    #[test]
    fn a_segment_named_other_than_its_description_is_refused() {
        let name = "b.000001_0000000004_0000005000-closed.coffer";
        let said = serde_json::json!({"file": "b.000001", "start": 4, "end": 5000, "closed": true});
        assert!(named_as_said(name, &said).is_ok());
        assert!(named_as_said(name, &serde_json::json!({})).is_ok(), "an older description");
        let open = serde_json::json!({"file": "b.000001", "start": 4, "end": 5000, "closed": false});
        let err = named_as_said(name, &open).unwrap_err().to_string();
        assert_eq!(
            err,
            "b.000001_0000000004_0000005000-closed.coffer: its name is not its description's (its closed is false): \
             the object was renamed or copied there"
        );
        let other = serde_json::json!({"file": "b.000002", "start": 4, "end": 5000, "closed": true});
        assert!(named_as_said(name, &other).unwrap_err().to_string().contains("its file is \"b.000002\""));
        let moved = serde_json::json!({"file": "b.000001", "start": 4, "end": 4000, "closed": true});
        assert!(named_as_said(name, &moved).unwrap_err().to_string().contains("its end is 4000"));
    }
}
