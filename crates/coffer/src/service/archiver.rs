//! What the binary log archiver's state ([`ArchiveState`]) says to a supervisor: the status line
//! systemd shows, and the gauges of the run.

use super::metrics::Run;
use crate::report::{ArchivePhase, ArchiveState};
use std::time::{SystemTime, UNIX_EPOCH};

/// The status line systemd shows for `state`.
pub(super) fn status_text(s: &ArchiveState) -> String {
    match s.phase {
        ArchivePhase::Connecting => "connecting to the server".into(),
        ArchivePhase::Ended => "stopping".into(),
        ArchivePhase::Reconnecting => format!("reconnecting: {}", s.last_error.as_deref().unwrap_or_default()),
        ArchivePhase::StoreOutage => format!(
            "store outage, {} held at {}:{}: {}",
            crate::text::human(s.unstored_bytes),
            s.file,
            s.position,
            s.last_error.as_deref().unwrap_or_default()
        ),
        ArchivePhase::Streaming => {
            let lag = s.lag.map(|l| format!(", lag {} s", l.as_secs())).unwrap_or_default();
            let gaps = match s.gaps {
                0 => String::new(),
                1 => ", 1 gap".into(),
                n => format!(", {n} gaps"),
            };
            let stored = match s.segments {
                1 => "1 segment".to_owned(),
                n => format!("{n} segments"),
            };
            format!("archiving {}:{}{lag}; {stored} stored{gaps}", s.file, s.position)
        }
    }
}

/// The run's gauges for `state`.
pub(super) fn set_gauges(run: &mut Run, s: &ArchiveState) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    run.set(
        "coffer_binlog_archive_connected",
        "1 while the archiver is connected and the binary log streams, else 0.",
        f64::from(u8::from(s.phase == ArchivePhase::Streaming)),
    );
    run.set(
        "coffer_binlog_archive_unstored_bytes",
        "Bytes of binary log events received but not yet stored (held through a store outage).",
        s.unstored_bytes as f64,
    );
    if let Some(lag) = s.lag {
        run.set(
            "coffer_binlog_archive_lag_seconds",
            "How far the archive is behind the server: seconds since the archive last held all of its binary log (docs/METRICS.md).",
            lag.as_secs_f64().floor(),
        );
    }
    run.set("coffer_binlog_archive_segments", "Binary log segments stored by this run.", s.segments as f64);
    run.set(
        "coffer_binlog_archive_gaps",
        "Gaps found by this run: binary logs the server purged before they were archived.",
        s.gaps as f64,
    );
    if let Some(t) = s.last_segment_at {
        run.set(
            "coffer_binlog_archive_last_segment_timestamp_seconds",
            "When this run last stored a segment (Unix seconds).",
            secs(t).floor(),
        );
    }
    run.set("coffer_bytes_read", "Bytes read (binlog-archive: binary log events stored).", s.bytes as f64);
    run.set("coffer_bytes_written", "Bytes written (binlog-archive: sealed segments stored).", s.stored_bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 28, part 1: a store outage shows in the status and the gauges.
    #[test]
    fn a_store_outage_is_shown() {
        let s = ArchiveState {
            phase: ArchivePhase::StoreOutage,
            file: "b.000002".into(),
            position: 1010777,
            unstored_bytes: 39058,
            last_error: Some("cannot store the segment s3://b/x: 503 (attempt 2)".into()),
            ..ArchiveState::default()
        };
        assert_eq!(
            status_text(&s),
            "store outage, 38.14 KiB held at b.000002:1010777: cannot store the segment s3://b/x: 503 (attempt 2)"
        );
        let mut run = Run::new("binlog-archive", None);
        set_gauges(&mut run, &s);
        let text = run.render(true, 0.0, "");
        assert!(text.contains("coffer_binlog_archive_unstored_bytes{command=\"binlog-archive\"} 39058"), "{text}");
        assert!(text.contains("coffer_binlog_archive_connected{command=\"binlog-archive\"} 0"), "{text}");
    }
}
