//! Records of issue 28 that come from outside coffer: a restore's marker (anyone who can write
//! the target directory), a lease (anyone who can write the store), a binary log segment's
//! sealed description and its object name, the GTID_LIST event of a server's binary log, and a
//! dump's events cut into segments, with an event torn at a file's end. The first byte picks
//! the parser (see `seeds.sh` for one real input of each):
//!
//! - 0: the bytes as a marker file, read as a restore reads one; checked against a model of
//!   the format (at most 4 KiB; the first token line; an image named by exactly one line).
//! - 1: a marker as coffer writes it (flags, token, image from the first 25 bytes), then the
//!   rest appended: must read back as written.
//! - 2: a lease (FORMAT.md 9.5): whatever parses writes back the same, and names its job in
//!   one line; a refusal is one line.
//! - 3: two segment names (19 bytes) and two descriptions (JSON, one after the other): how the
//!   second follows the first; a restart is never taken past whole events the restarted
//!   server's file has; every gap and refusal is one line; a description that says what its
//!   name says is accepted.
//! - 4: a GTID_LIST event: its position is the highest sequence number of each domain of the
//!   entries it counts, and round-trips.
//! - 5: a dump's events (byte 1: segment size, byte 2: where to tear the last event), cut into
//!   segments as the archiver cuts them: each holds whole events that end where its name says,
//!   and its last event torn at any byte is found cut where the whole ones end.
//! - 6: an object name, as a listing gives one: a segment name round-trips.
#![no_main]

use coffer::binlog::fuzzing::{cut, gtid_list_of, named_as_said, previous_gtids, Cut};
use coffer::repo::archive::{continues, restarted, Join, SegmentName};
use coffer::repo::lease::Body;
use coffer_fs::restore::{fuzz_read_marker, MarkedBy, MARKER};
use coffer_mysql::events::{events, EventError, Gtids};
use libfuzzer_sys::fuzz_target;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 7 {
        0 => marker(rest),
        1 => marker_written(rest),
        2 => lease(rest),
        3 => description(rest),
        4 => {
            gtid_list(rest);
            // The same bytes as a MySQL PREVIOUS_GTIDS body: bounded by them, and its text
            // (what a description keeps) reads back as the same set.
            if let Some((text, same)) = previous_gtids(rest) {
                assert!(same, "a GTID set round-trips through its text: {text}");
                assert!(!text.contains('\n'));
            }
        }
        5 => segments(rest),
        _ => {
            if let Some(name) = std::str::from_utf8(rest).ok().and_then(SegmentName::parse) {
                assert_eq!(name.object_name(), std::str::from_utf8(rest).unwrap(), "segment names round-trip");
            }
        }
    }
});

const NOTE: &[u8] =
    b"A coffer restore into this directory is running or did not finish: its contents are incomplete.\n";
const CREATED: &[u8] = b"The restore created this directory.\n";

/// A directory of this process for the marker (tmpfs where there is one).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        let d = PathBuf::from(format!("{base}/coffer-fuzz-marker-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn read_marker(text: &[u8]) -> (MarkedBy, bool, Option<u64>) {
    std::fs::write(dir().join(MARKER), text).unwrap();
    let root = std::fs::File::open(dir()).unwrap();
    fuzz_read_marker(root.as_fd())
}

/// `digits` hex digits after `prefix`, the whole line.
fn hex_line(line: &[u8], prefix: &[u8], digits: usize) -> Option<u128> {
    let d = line.strip_prefix(prefix)?;
    (d.len() == digits && d.iter().all(u8::is_ascii_hexdigit))
        .then(|| u128::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap())
}

fn marker(text: &[u8]) {
    let got = read_marker(text);
    if text.len() > 4096 {
        assert_eq!(got, (MarkedBy::Unnamed, false, None), "a marker over 4 KiB says nothing");
        return;
    }
    let token = text.split(|&b| b == b'\n').find_map(|l| hex_line(l, b"token ", 16)).map(|t| t as u64);
    let images: Vec<u128> = text.split(|&b| b == b'\n').filter_map(|l| hex_line(l, b"image ", 32)).collect();
    let by = match images[..] {
        [id] => MarkedBy::Image(id.to_be_bytes()),
        _ => MarkedBy::Unnamed,
    };
    let created = text.split(|&b| b == b'\n').any(|l| Some(l) == CREATED.strip_suffix(b"\n"));
    assert_eq!(got, (by, created, token));
}

fn marker_written(data: &[u8]) {
    let Some((fields, junk)) = data.split_at_checked(25) else { return };
    let created = fields[0] & 1 != 0;
    let token = u64::from_le_bytes(fields[1..9].try_into().unwrap());
    let image: [u8; 16] = fields[9..25].try_into().unwrap();
    let named = fields[0] & 2 != 0;
    let mut text = NOTE.to_vec();
    if created {
        text.extend_from_slice(CREATED);
    }
    text.extend_from_slice(format!("token {token:016x}\n").as_bytes());
    if named {
        let hex: String = image.iter().map(|b| format!("{b:02x}")).collect();
        text.extend_from_slice(format!("image {hex}\n").as_bytes());
    }
    let written = text.len();
    text.extend_from_slice(junk);
    let (by, c, t) = read_marker(&text);
    if text.len() > 4096 {
        return;
    }
    assert_eq!(t, Some(token), "the first token line is the marker's");
    let mentions = |s: &[u8]| junk.windows(s.len()).any(|w| w == s);
    if !mentions(b"image") {
        assert_eq!(by, if named { MarkedBy::Image(image) } else { MarkedBy::Unnamed });
    }
    if !mentions(b"created") {
        assert_eq!(c, created);
    }
    assert!(written <= 200, "coffer writes fewer than 200 bytes");
}

fn lease(bytes: &[u8]) {
    match serde_json::from_slice::<Body>(bytes) {
        Ok(b) => {
            assert!(!b.who().contains('\n'), "a lease's job is named in one line");
            for now in [i64::MIN, 0, b.expires, i64::MAX] {
                let _ = b.active(now);
            }
            let again: Body = serde_json::from_slice(&serde_json::to_vec(&b).unwrap()).unwrap();
            assert_eq!(again, b, "leases round-trip");
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a lease refused in one line"),
    }
}

/// A segment name from 9 bytes: file number, start, end (its top bit: closed).
fn name_of(b: &[u8]) -> SegmentName {
    let end = u32::from_le_bytes(b[5..9].try_into().unwrap());
    SegmentName {
        file: format!("binlog.{:06}", b[0]),
        start: u32::from_le_bytes(b[1..5].try_into().unwrap()),
        end: end & 0x7fff_ffff,
        closed: end >> 31 == 1,
    }
}

fn description(data: &[u8]) {
    let Some((names, json)) = data.split_at_checked(19) else { return };
    let (a, b) = (name_of(&names[..9]), name_of(&names[9..18]));
    let mut values = serde_json::Deserializer::from_slice(json).into_iter::<serde_json::Value>();
    let said_a = values.next().and_then(Result::ok);
    let said_b = values.next().and_then(Result::ok);
    let join = Join::of(&a, said_a.as_ref(), &b, said_b.as_ref());
    // Across files, a description read with the key must say the file ends there: a name
    // alone (which anyone who can write the store can copy) does not make a file complete.
    let closed_as_said = a.file == b.file || said_a.as_ref().is_none_or(|s| s["closed"].as_bool() == Some(true));
    if continues(&a, &b) {
        match closed_as_said {
            true => assert_eq!(join, Join::Continues),
            false => assert!(matches!(join, Join::Gap(_)), "{join:?}"),
        }
    }
    if let Join::Gap(why) = &join {
        assert!(!why.contains('\n'), "a gap is said in one line");
    }
    if join == Join::Restart {
        assert!(restarted(&a, &b));
        let previous = &said_b.as_ref().unwrap()["previous_file"];
        if previous["file"].as_str() == Some(a.file.as_str()) {
            assert!(
                previous["torn_at"].as_u64().is_none_or(|t| t <= u64::from(a.end)),
                "no restart past whole events the restarted server's file has"
            );
        }
    }
    for (name, said) in [(&a, &said_a), (&b, &said_b)] {
        let object = name.object_name();
        if let Some(said) = said {
            if let Err(why) = named_as_said(&object, said) {
                assert!(!why.contains('\n'), "a renamed segment is refused in one line");
            }
        }
        let own = serde_json::json!({"file": name.file, "start": name.start, "end": name.end, "closed": name.closed});
        assert_eq!(named_as_said(&object, &own), Ok(()), "a description that says what its name says");
    }
}

fn list_event(g: &Gtids) -> Vec<u8> {
    let mut e = vec![0u8; 19];
    e[4] = 0xa3;
    e.extend_from_slice(&(g.len() as u32).to_le_bytes());
    for (d, (s, n)) in g {
        e.extend_from_slice(&d.to_le_bytes());
        e.extend_from_slice(&s.to_le_bytes());
        e.extend_from_slice(&n.to_le_bytes());
    }
    e
}

fn gtid_list(e: &[u8]) {
    let Some(g) = gtid_list_of(e) else { return };
    let count = (u32::from_le_bytes(e[19..23].try_into().unwrap()) & 0x0fff_ffff) as usize;
    let entries: Vec<(u32, u32, u64)> = e[23..]
        .chunks_exact(16)
        .take(count)
        .map(|c| {
            let (d, s, n) = (&c[..4], &c[4..8], &c[8..]);
            (
                u32::from_le_bytes(d.try_into().unwrap()),
                u32::from_le_bytes(s.try_into().unwrap()),
                u64::from_le_bytes(n.try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(entries.len(), count, "a count the event cannot hold is refused");
    for (d, (_, n)) in &g {
        assert_eq!(entries.iter().filter(|x| x.0 == *d).map(|x| x.2).max(), Some(*n), "each domain's highest");
    }
    assert!(entries.iter().all(|x| g.contains_key(&x.0)));
    assert_eq!(gtid_list_of(&list_event(&g)).as_ref(), Some(&g), "a position round-trips");
}

fn segments(data: &[u8]) {
    let [size, tear, stream @ ..] = data else { return };
    let (file, start) = ("binlog.000001", 4);
    let (sealed, error) = cut(file, start, stream, 64usize << (size % 12));
    if let Some(e) = &error {
        assert!(!e.contains('\n'), "the stream stops in one line: {e}");
    }
    assert!(sealed.iter().map(|s| s.bytes.len()).sum::<usize>() <= stream.len());
    for s in &sealed {
        check_segment(s, *tear);
    }
}

fn check_segment(s: &Cut, tear: u8) {
    assert!(!s.bytes.is_empty());
    assert_eq!(u64::from(s.end) - u64::from(s.start), s.bytes.len() as u64, "a segment ends where its events do");
    let name = SegmentName { file: s.file.clone(), start: s.start, end: s.end, closed: s.closed };
    assert_eq!(SegmentName::parse(&name.object_name()), Some(name), "its object name says where it lies");
    let whole = events(&s.file, s.start, &s.bytes).expect("a sealed segment holds whole events");
    assert_eq!(whole.len() as u64, s.events);
    if s.gtid_list.is_some() {
        assert!(s.gtid_state.is_some() && s.committed.is_some());
    }
    // Its last event torn by a crash: read as cut where the whole events end.
    let last = whole.last().unwrap();
    let keep = s.bytes.len() - last.bytes.len() + usize::from(tear) % last.bytes.len();
    let cut_at = u64::from(last.start);
    match events(&s.file, s.start, &s.bytes[..keep]) {
        Ok(v) if keep == s.bytes.len() - last.bytes.len() => assert_eq!(v.len(), whole.len() - 1),
        Err(EventError::Cut { at, .. }) => assert_eq!(at, cut_at, "a torn event is found where it starts"),
        other => panic!("a torn event read as {other:?}"),
    }
}
