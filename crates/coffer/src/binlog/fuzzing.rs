//! Entry points for the fuzz target `repo_records` (`fuzz/fuzz_targets/repo_records.rs`): the
//! archiver's cutting of a dump into segments, and the readers of what a binary log holds.

use super::segment::{after, gtid_state_of, position_of, take, Open};
use coffer_mysql::client::EventHeader;
use coffer_mysql::events::Gtids;

/// A segment as the archiver would seal it.
#[derive(Debug)]
pub struct Cut {
    pub file: String,
    pub start: u32,
    pub end: u32,
    pub closed: bool,
    pub bytes: Vec<u8>,
    pub events: u64,
    pub gtid_list: Option<Gtids>,
    pub gtid_before: Option<Gtids>,
    pub gtid_state: Option<Gtids>,
    pub committed: Option<Gtids>,
}

impl From<Open> for Cut {
    fn from(o: Open) -> Self {
        Cut {
            file: o.name.file,
            start: o.name.start,
            end: o.name.end,
            closed: o.name.closed,
            bytes: o.bytes,
            events: o.events,
            gtid_list: o.gtid_list,
            gtid_before: o.gtid_before,
            gtid_state: o.gtid_state,
            committed: o.committed,
        }
    }
}

/// The position a GTID_LIST event gives.
pub fn gtid_list_of(e: &[u8]) -> Option<Gtids> {
    gtid_state_of(e).as_ref().map(position_of)
}

/// Feeds `stream` (events as a dump sends them, one after another; a last one cut short is not
/// sent) to a segment opened at `file`:`start`, as the archiver does: a segment is sealed when
/// its file ends (ROTATE, STOP, the server going on to another file) or at `max` bytes. Returns
/// the segments sealed, the one left open (if it holds events), and the error that stopped the
/// stream (in one line), if one did.
pub fn cut(file: &str, start: u32, stream: &[u8], max: usize) -> (Vec<Cut>, Option<String>) {
    let mut seg = Open::new(file.to_owned(), start);
    let mut sealed = Vec::new();
    let mut rest = stream;
    while let Some(size) = rest.get(9..13).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize) {
        let Some(e) = rest.get(..size) else { break };
        rest = &rest[size..];
        let step = EventHeader::parse(e).map_err(crate::Error::other).and_then(|h| {
            let (left, _gap) = take(&mut seg, &h, e)?;
            sealed.extend(left.map(Cut::from));
            if !seg.bytes.is_empty() && (seg.name.closed || seg.bytes.len() >= max) {
                let next = after(&seg, &h, e)?;
                sealed.push(std::mem::replace(&mut seg, next).into());
            }
            Ok(())
        });
        if let Err(err) = step {
            return (sealed, Some(err.one_line()));
        }
    }
    if !seg.bytes.is_empty() {
        sealed.push(seg.into());
    }
    (sealed, None)
}

/// Whether a segment's object name agrees with its sealed description (`said`, any JSON), as
/// a reader checks it; why not, in one line.
pub fn named_as_said(name: &str, said: &serde_json::Value) -> Result<(), String> {
    crate::repo::archive::named_as_said(name, said).map_err(|e| e.one_line())
}

/// The set a MySQL PREVIOUS_GTIDS event's body gives, as a description holds it, and whether
/// that text reads back as the same set.
pub fn previous_gtids(body: &[u8]) -> Option<(String, bool)> {
    use crate::repo::archive::gtid_set;
    let set = gtid_set::from_previous_gtids(body)?;
    let text = gtid_set::text(&set);
    let same = gtid_set::parse(&text)
        .is_some_and(|back| back.iter().filter(|(_, v)| !v.is_empty()).eq(set.iter().filter(|(_, v)| !v.is_empty())));
    Some((text, same))
}
