//! Holding a flow of bytes to a rate (`--limit-rate`): what a backup reads, what a restore
//! writes, what `send` puts on the wire. One limiter, shared by every thread that moves the
//! flow's bytes.
//!
//! Each piece is accounted when it moves, and the mover then waits until the bytes accounted
//! so far are due at the rate (a virtual-clock token bucket, "GCRA"). The schedule may lag
//! the clock by at most [`RateLimit::SLACK`]: time spent reading or writing between pieces is
//! absorbed, so the rate is held over the whole run, while a flow that was idle (a slow
//! source, a stalled peer) catches up with a burst of at most a quarter second's bytes, never
//! more.

use crate::source::{ChunkReader, PlannedRead, Span};
use crate::FsError;
use coffer_format::Segment;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most so many bytes per second, over any stretch of a quarter second or more (plus one
/// piece).
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    /// When the bytes accounted so far are due; `None` before the first piece.
    due: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// How far the schedule may fall behind the clock: the most credit a flow can gather.
    pub const SLACK: Duration = Duration::from_millis(250);

    /// A limit of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self { bytes_per_sec: bytes_per_sec.max(1), due: Mutex::new(None) }
    }

    /// The rate, in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Accounts `n` bytes and waits until they are due.
    pub fn take(&self, n: u64) {
        if let Some(wait) = self.reserve(n, Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    /// Accounts `n` bytes at `now`; how long the caller must wait for them.
    fn reserve(&self, n: u64, now: Instant) -> Option<Duration> {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.bytes_per_sec);
        let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = now.checked_sub(Self::SLACK).unwrap_or(now);
        let from = match *due {
            Some(d) => d.max(earliest),
            None => now,
        };
        let next = from + cost;
        *due = Some(next);
        next.checked_duration_since(now).filter(|w| !w.is_zero())
    }
}

/// A file's or a stream's chunks read at most at a shared rate: each chunk is accounted as it
/// is read, or as it is planned for a worker to read (the reading thread waits before handing
/// it on, so the workers' reads follow the same pace).
pub struct Paced {
    inner: Box<dyn ChunkReader>,
    limit: Arc<RateLimit>,
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl Paced {
    /// `inner`, read at most at `limit`.
    pub fn new(inner: Box<dyn ChunkReader>, limit: Arc<RateLimit>) -> Self {
        Self { inner, limit }
    }
}

impl ChunkReader for Paced {
    fn next_chunk(&mut self, buf: &mut [u8], segments: &mut Vec<Segment>) -> Result<Span, FsError> {
        let span = self.inner.next_chunk(buf, segments)?;
        self.limit.take(span.len as u64);
        Ok(span)
    }

    fn plan_chunk(&mut self, limit: usize, segments: &mut Vec<Segment>) -> Option<(Span, PlannedRead)> {
        let planned = self.inner.plan_chunk(limit, segments)?;
        self.limit.take(planned.1.len() as u64);
        Some(planned)
    }

    fn set_align(&mut self, align: u64) {
        self.inner.set_align(align);
    }

    fn file(&self) -> Option<&std::fs::File> {
        self.inner.file()
    }

    fn paused(&self) -> bool {
        self.inner.paused()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Option<Duration>) -> u128 {
        d.map_or(0, |d| d.as_millis())
    }

    #[test]
    fn pieces_are_due_at_the_rate() {
        let l = RateLimit::new(1000);
        let t0 = Instant::now();
        assert_eq!(ms(l.reserve(100, t0)), 100, "the first piece is not free");
        assert_eq!(ms(l.reserve(100, t0 + Duration::from_millis(100))), 100);
        // Time spent between pieces (a read) is absorbed: still due at 300 ms.
        assert_eq!(ms(l.reserve(100, t0 + Duration::from_millis(250))), 50);
        // Several threads at once each get their own slot.
        assert_eq!(ms(l.reserve(100, t0 + Duration::from_millis(300))), 100);
        assert_eq!(ms(l.reserve(100, t0 + Duration::from_millis(300))), 200);
    }

    #[test]
    fn an_idle_flow_gathers_at_most_the_slack() {
        let l = RateLimit::new(1000);
        let t0 = Instant::now();
        l.reserve(100, t0);
        // Ten seconds later: a quarter second of credit, not ten.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve(250, later), None);
        assert_eq!(ms(l.reserve(100, later)), 100);
    }

    #[test]
    fn take_waits() {
        let l = RateLimit::new(1 << 20);
        let t0 = Instant::now();
        for _ in 0..4 {
            l.take(64 << 10);
        }
        assert!(t0.elapsed() >= Duration::from_millis(240), "{:?}", t0.elapsed());
    }
}
