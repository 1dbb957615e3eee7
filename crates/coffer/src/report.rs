//! How a job tells its caller what happens while it runs: lines for the user, warnings, and
//! progress. The job never prints; the `coffer` binary prints to stderr (or not, with -q).

use std::sync::Arc;

/// Receives what a job has to say while it runs.
pub trait Report: Send + Sync {
    /// A line for the user ("backed up 12 entries ..."), printed as `coffer: LINE`.
    fn say(&self, line: &str);
    /// Something the user should know that does not fail the job.
    fn warn(&self, msg: &str);
    /// A line a supervisor waits for ("listening on ADDR"): shown even when nothing else is.
    fn ready(&self, line: &str) {
        self.say(line);
    }
    /// A line of a backup engine's log (mariabackup's), for a progress display.
    fn engine_line(&self, engine: &str, line: &str);
    /// A progress counter of bytes for one phase (`what`: "backup", "restore", ...), out of
    /// `total` when known.
    fn progress(&self, total: Option<u64>, what: &str) -> Arc<dyn Progress>;
    /// False when nothing would be shown (say and warn are dropped): lets a job skip work that
    /// only feeds the display, such as sizing a tree for a progress bar.
    fn shows_progress(&self) -> bool {
        false
    }
    /// The binary log archiver's state ([`crate::binlog::ArchiveState`]): at its start, when
    /// it connects, stores a segment, finds a gap or loses its link, and at least once a second
    /// while its loop is alive (a supervisor's watchdog can be fed from here). Nothing by
    /// default.
    fn archive_state(&self, _state: &crate::binlog::ArchiveState) {}
}

/// A count of bytes done.
pub trait Progress: Send + Sync {
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The phase is over (a bar disappears).
    fn finish(&self) {}
}

/// Says nothing: for programs that only want the result.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Report for Silent {
    fn say(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn engine_line(&self, _: &str, _: &str) {}
    fn progress(&self, _: Option<u64>, _: &str) -> Arc<dyn Progress> {
        Arc::new(Silent)
    }
}

impl Progress for Silent {
    fn advance(&self, _: u64) {}
}

/// A job's progress as the image layer counts it.
pub(crate) struct ImageProgress(pub Arc<dyn Progress>);

impl coffer_image::Progress for ImageProgress {
    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
}
