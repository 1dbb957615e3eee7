//! MySQL's GTID sets (`uuid:1-5:7-9,...`): what a file's PREVIOUS_GTIDS event (type 35) says
//! was logged before it, the part MariaDB's GTID_LIST plays, and what the archive has
//! committed since; continuity across a MySQL restart compares the two.

use std::collections::BTreeMap;

/// Per source id (a server's UUID), its transaction numbers as intervals `[start, end)`,
/// sorted, apart, none empty.
pub type GtidSet = BTreeMap<[u8; 16], Vec<(u64, u64)>>;

/// MySQL's PREVIOUS_GTIDS event type.
pub const PREVIOUS_GTIDS: u8 = 35;
/// MySQL's GTID event type (flags u8, source id [16], transaction number i64, ...).
pub const MYSQL_GTID: u8 = 33;
/// MySQL's GTID event of a transaction without one (`gtid_mode` OFF).
pub const ANONYMOUS_GTID: u8 = 34;

/// A description holds a set of at most this many intervals in all (else null): each is at
/// most 41 bytes as text, and a description is read whole, up to 64 KiB.
pub const SET_MAX: usize = 128;

/// The set a PREVIOUS_GTIDS event's body (after the header, without a checksum) encodes:
/// n_sids u64 (its top byte 0: the untagged format), then per source id its 16 bytes,
/// n_intervals u64, and each interval's start and end (u64 each, the end not in it).
/// Bounded by the body: a count is believed only where that many entries fit in it. `None`:
/// not such a body (or the tagged format of MySQL 8.3 on, not read here).
pub fn from_previous_gtids(body: &[u8]) -> Option<GtidSet> {
    let mut r = body;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = (r.get(..n)?, r.get(n..)?);
        r = b;
        Some(a)
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let head = u64_of(take(8)?);
    if head >> 56 != 0 {
        return None;
    }
    let mut out = GtidSet::new();
    for _ in 0..head {
        let sid: [u8; 16] = take(16)?.try_into().expect("16 bytes");
        let n = u64_of(take(8)?);
        let mut intervals = Vec::new();
        for _ in 0..n {
            let (start, end) = (u64_of(take(8)?), u64_of(take(8)?));
            if start < 1 || end <= start || end > i64::MAX as u64 {
                return None;
            }
            intervals.push((start, end));
        }
        for (s, e) in intervals {
            add(&mut out, sid, s, e);
        }
    }
    Some(out)
}

/// Adds `[start, end)` of `sid` to the set.
pub fn add(set: &mut GtidSet, sid: [u8; 16], start: u64, end: u64) {
    let v = set.entry(sid).or_default();
    v.push((start, end));
    v.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for &(s, e) in v.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *v = merged;
}

/// What `a` holds that `b` does not.
pub fn minus(a: &GtidSet, b: &GtidSet) -> GtidSet {
    let mut out = GtidSet::new();
    for (sid, ours) in a {
        let theirs = b.get(sid).map(Vec::as_slice).unwrap_or_default();
        for &(mut s, e) in ours {
            for &(ts, te) in theirs {
                if te <= s || ts >= e {
                    continue;
                }
                if ts > s {
                    add(&mut out, *sid, s, ts);
                }
                s = s.max(te);
            }
            if s < e {
                add(&mut out, *sid, s, e);
            }
        }
    }
    out
}

/// MySQL's text: `uuid:1-5:7`, source ids joined by commas.
pub fn text(set: &GtidSet) -> String {
    let sid = |u: &[u8; 16]| {
        let h = coffer_crypto::hex(u);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    };
    let range = |&(s, e): &(u64, u64)| if e == s + 1 { format!("{s}") } else { format!("{s}-{}", e - 1) };
    let each = set.iter().filter(|(_, v)| !v.is_empty());
    each.map(|(u, v)| format!("{}:{}", sid(u), v.iter().map(range).collect::<Vec<_>>().join(":")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A set as [`text`] writes it; `None` if it is not one.
pub fn parse(t: &str) -> Option<GtidSet> {
    let mut out = GtidSet::new();
    for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let hex: String = it.next()?.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut sid = [0u8; 16];
        for (i, b) in sid.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        for r in it {
            let (s, e) = r.split_once('-').unwrap_or((r, r));
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            if s < 1 || e < s || e >= i64::MAX as u64 {
                return None;
            }
            add(&mut out, sid, s, e + 1);
        }
    }
    Some(out)
}

/// The set as a description holds it: null where unknown, or past [`SET_MAX`] intervals.
pub fn field(set: Option<&GtidSet>) -> Option<String> {
    set.filter(|s| s.values().map(Vec::len).sum::<usize>() <= SET_MAX).map(text)
}

/// What the archive lacks where a MySQL server restarted: the GTIDs the restarted server's
/// PREVIOUS_GTIDS (`list`) has and the archive's committed set (`done`) does not, and the
/// other way round.
pub fn missing(done: &GtidSet, list: &GtidSet) -> Vec<String> {
    let (lost, extra) = (minus(list, done), minus(done, list));
    let mut out = Vec::new();
    if !lost.is_empty() {
        out.push(format!("GTIDs {} (the restarted server's log went on after them)", text(&lost)));
    }
    if !extra.is_empty() {
        out.push(format!(
            "nothing of GTIDs {}, which the archive has and the restarted server's log does not",
            text(&extra)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] =
        [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];

    /// Known-answer bytes, as MySQL encodes `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9`
    /// (`Gtid_set::encode`: n_sids, then sid, n_intervals, [start, end) each).
    #[test]
    fn a_previous_gtids_body_is_read_within_its_length() {
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&A);
        body.extend_from_slice(&2u64.to_le_bytes());
        for v in [1u64, 6, 7, 10] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(body.len(), 8 + 16 + 8 + 32);
        assert_eq!(&body[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        let set = from_previous_gtids(&body).unwrap();
        assert_eq!(text(&set), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9");
        assert_eq!(parse(&text(&set)), Some(set.clone()));
        // Nothing before the file: no source id.
        assert_eq!(from_previous_gtids(&[0; 8]), Some(GtidSet::new()));
        // Counts the body cannot hold, cut short, intervals that are none, the tagged format.
        let mut huge = body.clone();
        huge[..8].copy_from_slice(&u64::MAX.wrapping_shr(8).to_le_bytes());
        assert_eq!(from_previous_gtids(&huge), None);
        let mut many = body.clone();
        many[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(from_previous_gtids(&many), None);
        assert_eq!(from_previous_gtids(&body[..body.len() - 1]), None);
        let mut empty = body.clone();
        empty[56..64].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(from_previous_gtids(&empty), None, "7..7 is no interval");
        let mut tagged = body.clone();
        tagged[7] = 1;
        assert_eq!(from_previous_gtids(&tagged), None);
        assert_eq!(from_previous_gtids(&[]), None);
    }

    #[test]
    fn sets_add_subtract_and_say_what_is_missing() {
        let mut done = GtidSet::new();
        add(&mut done, A, 1, 6);
        add(&mut done, A, 6, 7);
        assert_eq!(text(&done), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6");
        let list = parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9").unwrap();
        assert_eq!(text(&minus(&list, &done)), "3e11fa47-71ca-11e1-9e33-c80aa9429562:7-9");
        assert!(minus(&done, &list).is_empty());
        assert_eq!(
            missing(&done, &list),
            ["GTIDs 3e11fa47-71ca-11e1-9e33-c80aa9429562:7-9 (the restarted server's log went on after them)"]
        );
        assert!(missing(&list, &list).is_empty());
        assert!(missing(&list, &done)[0].starts_with("nothing of GTIDs 3e11fa47-71ca-11e1-9e33-c80aa9429562:7-9"));
        for bad in ["x:1-2", "3e11fa47-71ca-11e1-9e33-c80aa9429562:0", "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-4"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let wide: GtidSet = [(A, (0..=SET_MAX as u64).map(|i| (2 * i + 1, 2 * i + 2)).collect())].into();
        assert_eq!(field(Some(&wide)), None);
    }
}
