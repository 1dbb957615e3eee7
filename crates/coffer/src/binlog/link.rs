//! The archiver's link to the server: connecting (TLS as asked), the server's binary log files,
//! where a run starts from the archive's end, and what the server says of itself.

use super::{plain, ArchiveSpec, Gap, LogPlace, Previous, READ_TIMEOUT};
use crate::error::{Context, Result};
use crate::repo::archive::{continues, SegmentName};
use coffer_mysql::client::{Client, ClientError, ResultCap};
use coffer_mysql::events::{parse_gtids, Gtids};
use coffer_mysql::meta::{binlog_file_number as file_number, is_binlog_file_name};

pub(super) fn connect(spec: &ArchiveSpec) -> Result<Client> {
    crate::source::reach(&spec.server)?
        .connect(READ_TIMEOUT)
        .map_err(|e| plain(e, "no answer").context("cannot connect to the server"))
}

/// The server's binary logs and their sizes.
pub(super) fn server_logs(c: &mut Client) -> Result<Vec<(String, u64)>> {
    let rows = c
        .query("SHOW BINARY LOGS")
        .map_err(|e| plain(e, "no answer"))
        .context("cannot list the server's binary logs")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let name = r.first()?.clone()?;
            let size = r.get(1)?.as_deref()?.parse().ok()?;
            is_binlog_file_name(&name).then_some((name, size))
        })
        .collect())
}

/// Where a run starts: after the archive's last segment, or at the server's first log; and the
/// files purged in between, if any.
pub(super) fn start_point(last: Option<&SegmentName>, logs: &[(String, u64)]) -> Result<(LogPlace, Option<Gap>)> {
    let Some((first, _)) = logs.first() else { crate::bail!("the server has no binary log (is log_bin on?)") };
    let Some(last) = last else { return Ok(((first.clone(), 4), None)) };
    if let Some(i) = logs.iter().position(|(n, _)| *n == last.file) {
        // A file ends with its ROTATE, or (after a crash) where the server started the next.
        let complete = last.closed || (u64::from(last.end) >= logs[i].1 && i + 1 < logs.len());
        return Ok(match logs.get(i + 1).filter(|_| complete) {
            Some((next, _)) => ((next.clone(), 4), None),
            None if complete => crate::bail!("the archive has {} whole; the server has no later file", last.file),
            None => ((last.file.clone(), last.end), None),
        });
    }
    // The server no longer has the file the archive ends in.
    let Some((next, _)) = logs.iter().find(|(n, _)| file_number(n) > file_number(&last.file)) else {
        crate::bail!("the server has no binary log after {}, where the archive ends", last.file);
    };
    let whole = continues(last, &SegmentName { file: next.clone(), start: 4, end: 5, closed: false });
    let gap = (!whole).then(|| {
        let from =
            if last.closed { format!("the end of {}", last.file) } else { format!("{} at {}", last.file, last.end) };
        (from, format!("the start of {next}"))
    });
    Ok(((next.clone(), 4), gap))
}

/// A file whose end the server cannot send, its last event torn by a crash (reading it, the
/// server says ERROR 1236, "binlog truncated in the middle of event"), where the archive ends
/// in it: the file, and where its whole events end.
pub(super) type Torn = (String, u32);

/// The server cannot send the rest of a file: a crash tore its last event.
pub(super) fn torn(e: &ClientError) -> bool {
    matches!(e, ClientError::Server { code: 1236, message, .. } if message.contains("truncated in the middle of event"))
}

/// Where a run starts ([`start_point`]); but where the archive ends at `torn`, found earlier in
/// this run, at the next file's start. And, when the run starts at the next file after one
/// the archive holds though it ends with neither ROTATE nor STOP (a crash), that file as the
/// server reports it (said in the next file's first segment, Appendix C).
pub(super) fn begin(
    last: Option<&SegmentName>,
    logs: &[(String, u64)],
    torn: Option<&Torn>,
) -> Result<(LogPlace, Option<Gap>, Option<Previous>)> {
    let torn = torn.filter(|(f, at)| last.is_some_and(|l| !l.closed && l.file == *f && l.end == *at));
    let next = torn.and_then(|(f, _)| {
        let i = logs.iter().position(|(n, _)| n == f)?;
        logs.get(i + 1).map(|(n, _)| (n.clone(), 4))
    });
    let ((file, pos), gap) = match next {
        Some(at) => (at, None),
        None => start_point(last, logs)?,
    };
    let previous = last
        .filter(|l| !l.closed && l.file != file && pos == 4)
        .and_then(|l| logs.iter().find(|(name, _)| *name == l.file))
        .map(|(name, size)| Previous { file: name.clone(), size: *size, torn_at: torn.map(|t| t.1) });
    Ok(((file, pos), gap, previous))
}

/// The archived server, as each segment's description names it.
#[derive(Debug, Clone, Default)]
pub(super) struct Source {
    pub(super) version: String,
    pub(super) hostname: Option<String>,
    pub(super) server_id: Option<u64>,
}

/// The server's name and id (global variables: no privilege needed).
pub(super) fn source_of(c: &mut Client) -> Source {
    let row = c
        .query_capped("SELECT @@hostname, @@server_id", ResultCap::FEW)
        .ok()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default();
    let hostname = row.first().cloned().flatten().filter(|h| h.len() <= 255).map(|h| crate::text::escape(h.as_bytes()));
    let server_id = row.get(1).cloned().flatten().and_then(|v| v.parse().ok());
    Source { version: c.server_version().to_owned(), hostname, server_id }
}

/// MariaDB's GTID position at a place of its binary log (`None`: not MariaDB, or the file is
/// gone). The file name is one `is_binlog_file_name` accepts: no quote reaches the SQL.
pub(super) fn gtid_position_at(c: &mut Client, file: &str, pos: u32) -> Option<Gtids> {
    if !is_binlog_file_name(file) {
        return None;
    }
    let rows = c.query_capped(&format!("SELECT BINLOG_GTID_POS('{file}', {pos})"), ResultCap::FEW).ok()?;
    let text = rows.into_iter().next()?.into_iter().next()??;
    parse_gtids(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_start_where_the_archive_ends() {
        let logs = vec![("b.000002".to_owned(), 500u64), ("b.000003".to_owned(), 900)];
        assert_eq!(start_point(None, &logs).unwrap(), (("b.000002".into(), 4), None));
        assert_eq!(
            start_point(Some(&seg("b.000002", 4, 300, false)), &logs).unwrap(),
            (("b.000002".into(), 300), None)
        );
        // A file archived whole: the next one.
        assert_eq!(start_point(Some(&seg("b.000002", 4, 500, true)), &logs).unwrap(), (("b.000003".into(), 4), None));
        // Ended without a ROTATE (a crash) where the server went on with the next file.
        assert_eq!(start_point(Some(&seg("b.000002", 4, 500, false)), &logs).unwrap(), (("b.000003".into(), 4), None));
        // The newest file, archived as far as it goes: it may grow.
        assert_eq!(
            start_point(Some(&seg("b.000003", 4, 900, false)), &logs).unwrap(),
            (("b.000003".into(), 900), None)
        );
        // The archive ends with a whole file the server purged, right before its oldest: no gap.
        assert_eq!(start_point(Some(&seg("b.000001", 4, 50, true)), &logs).unwrap(), (("b.000002".into(), 4), None));
        // A file purged before its end was archived, or whole files: a gap.
        let (at, gap) = start_point(Some(&seg("b.000001", 4, 50, false)), &logs).unwrap();
        assert_eq!(
            (at, gap),
            (("b.000002".into(), 4), Some(("b.000001 at 50".into(), "the start of b.000002".into())))
        );
        let (_, gap) = start_point(Some(&seg("b.000000", 4, 50, true)), &logs).unwrap();
        assert_eq!(gap, Some(("the end of b.000000".into(), "the start of b.000002".into())));
        // Another base name is not the next file.
        let (_, gap) = start_point(Some(&seg("a.000001", 4, 50, true)), &logs).unwrap();
        assert!(gap.is_some());
        // A file archived whole is complete, and the server has nothing after it yet.
        let one = vec![("b.000002".to_owned(), 500u64)];
        assert!(start_point(Some(&seg("b.000002", 4, 500, true)), &one).is_err());
        assert!(start_point(None, &[]).is_err());
    }

    /// Issue 28, part 4: after a crash, the next file's start, saying what the server has of
    /// the crashed one; past a torn last event (found in this run), too.
    #[test]
    fn after_a_crash_the_next_file_and_what_the_server_had() {
        let logs = vec![("b.000002".to_owned(), 900u64), ("b.000003".to_owned(), 300)];
        let previous = |size, torn_at| Some(Previous { file: "b.000002".into(), size, torn_at });
        // All of it archived: the next file, the size said.
        let at = seg("b.000002", 4, 900, false);
        assert_eq!(begin(Some(&at), &logs, None).unwrap(), (("b.000003".into(), 4), None, previous(900, None)));
        // More on the server: the rest first.
        let at = seg("b.000002", 4, 700, false);
        assert_eq!(begin(Some(&at), &logs, None).unwrap(), (("b.000002".into(), 700), None, None));
        // The rest is a torn event: the next file, where it is torn said.
        let torn_at = ("b.000002".to_owned(), 700);
        let got = begin(Some(&at), &logs, Some(&torn_at)).unwrap();
        assert_eq!(got, (("b.000003".into(), 4), None, previous(900, Some(700))));
        // A torn place the archive does not end at is not this one.
        let elsewhere = ("b.000002".to_owned(), 650);
        assert_eq!(begin(Some(&at), &logs, Some(&elsewhere)).unwrap().0, ("b.000002".into(), 700));
        // A closed file says nothing of itself.
        let closed = seg("b.000002", 4, 900, true);
        assert_eq!(begin(Some(&closed), &logs, None).unwrap().2, None);
        let err = |code, message: &str| ClientError::Server { code, state: "HY000".into(), message: message.into() };
        assert!(torn(&err(1236, "binlog truncated in the middle of event; consider out of disk space on master")));
        assert!(!torn(&err(1236, "Could not find first log file name in binary log index file")));
    }

    fn seg(f: &str, start: u32, end: u32, closed: bool) -> SegmentName {
        SegmentName { file: f.into(), start, end, closed }
    }
}
