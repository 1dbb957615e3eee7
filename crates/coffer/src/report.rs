//! How a job tells its caller what happens while it runs: lines for the user, warnings, and
//! progress. The job never prints; the `coffer` binary prints to stderr (or not, with -q).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    /// The binary log archiver's state ([`crate::report::ArchiveState`]): at its start, when
    /// it connects, stores a segment, finds a gap or loses its link, and at least once a second
    /// while its loop is alive (a supervisor's watchdog can be fed from here). Nothing by
    /// default.
    fn archive_state(&self, _state: &crate::report::ArchiveState) {}
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

/// Passes on only the warnings of a job run inside another, each after `what` it concerns (the
/// archiver's segments: their lines are the archiver's own, their warnings are not to be lost).
pub(crate) struct WarningsOf {
    pub(crate) what: String,
    pub(crate) to: Arc<dyn Report>,
}

impl Report for WarningsOf {
    fn say(&self, _: &str) {}
    fn warn(&self, msg: &str) {
        self.to.warn(&format!("{}: {msg}", self.what));
    }
    fn engine_line(&self, _: &str, _: &str) {}
    fn progress(&self, _: Option<u64>, _: &str) -> Arc<dyn Progress> {
        Arc::new(Silent)
    }
}

/// A job's progress as the image layer counts it.
pub(crate) struct ImageProgress(pub Arc<dyn Progress>);

impl coffer_image::Progress for ImageProgress {
    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
}

/// The archiver's state while it runs, as [`crate::Report::archive_state`] receives it: when
/// the run starts, when a dump starts streaming, after each segment stored, at each gap and
/// each broken link, and at least every second while its loop is alive (the server sends a
/// heartbeat every second when it has nothing else to send, and the waits before connecting
/// again are cut into slices), so a supervisor's watchdog can be fed from it.
#[derive(Debug, Clone, Default)]
pub struct ArchiveState {
    /// Where the run is.
    pub phase: ArchivePhase,
    /// Where the archiver has read the server's binary log to: the file (empty before the
    /// first dump starts) ...
    pub file: String,
    /// ... and the end of the last event received in it.
    pub position: u32,
    /// The timestamp of the newest event received in this run (the server's clock: when its
    /// statement began).
    pub last_event_time: Option<SystemTime>,
    /// How far the archive is behind the server: now minus the latest moment up to which the
    /// archive is known to hold every event the server logged. That moment moves (a) to the
    /// newest stored event's timestamp when a segment is stored, and (b) to now when the server
    /// sends a heartbeat while every event received is stored (a server sends one only when it
    /// has had nothing to send for a second: it is caught up). So: caught up and idle, under a
    /// second; under steady writes it climbs to about the segment time between stores and
    /// drops at each; reading a backlog, the age of the newest event stored; with the link
    /// down, it grows from where it was. `None` until the run's first store or heartbeat.
    /// Event timestamps are the server's clock: a clock difference between the hosts adds to
    /// it (a negative lag shows as zero).
    pub lag: Option<Duration>,
    /// Segments stored in this run.
    pub segments: u64,
    /// Bytes of events in them.
    pub bytes: u64,
    /// Bytes of sealed segments written (the objects' sizes).
    pub stored_bytes: u64,
    /// When this run last stored a segment.
    pub last_segment_at: Option<SystemTime>,
    /// Gaps found in this run (binary logs purged before they were archived).
    pub gaps: u64,
    /// Why the link is down (while reconnecting), why the store refuses (in a store outage),
    /// why either last failed, or why the run failed; one line.
    pub last_error: Option<String>,
    /// Bytes of events received but not stored: a segment held through a store outage.
    pub unstored_bytes: u64,
}

/// Where an archive run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArchivePhase {
    /// Connecting for the first time.
    #[default]
    Connecting,
    /// Connected, and the server's binary log streams (a dump started).
    Streaming,
    /// The link broke, or connecting failed ([`ArchiveState::last_error`] says why): waiting
    /// to connect again, or connecting.
    Reconnecting,
    /// Following, a segment could not be stored ([`ArchiveState::last_error`] says why): it
    /// is held in memory and its store retried, reading from the server paused meanwhile.
    StoreOutage,
    /// The run is over: the end of the log reached, stopped, or failed (with
    /// [`ArchiveState::last_error`]); the last state reported.
    Ended,
}
