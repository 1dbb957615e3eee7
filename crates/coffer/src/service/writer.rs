//! A long-running job's metrics file, written from a thread of its own.

use super::metrics::Run;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A long-running command's metrics file, written from a thread of its own: the command hands
/// over its latest state and goes on, so that a held lock or a slow disk delays the metrics
/// only, never the work. A state not yet written when a newer one comes is dropped.
pub(crate) struct Background {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    next: Option<(Run, bool)>,
    closing: bool,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Background {
    /// Starts the writer of `path`; a write that fails is said on `report`, once until one
    /// succeeds again.
    pub(crate) fn spawn(path: PathBuf, report: Arc<dyn crate::Report>) -> Self {
        let shared = Arc::new(Shared { pending: Mutex::new(Pending::default()), wake: Condvar::new() });
        let (from, to) = (shared.clone(), path.clone());
        let thread = std::thread::spawn(move || {
            let mut failed = false;
            while let Some((run, ok)) = from.take() {
                match run.write(&to, ok) {
                    Err(e) if !failed => {
                        report.warn(&format!("cannot write the metrics file: {}", e.one_line()));
                        failed = true;
                    }
                    Err(_) => {}
                    Ok(()) => failed = false,
                }
            }
        });
        Background { path, shared, thread: Mutex::new(Some(thread)) }
    }

    /// Hands over the state to write next (in place of one still waiting); never waits for
    /// the file.
    pub(crate) fn submit(&self, run: Run, ok: bool) {
        self.shared.lock().next = Some((run, ok));
        self.shared.wake.notify_one();
    }

    /// Stops the writer (after the write it is doing, if any: states still waiting are
    /// dropped) and writes `run` a last time, here, so that it is the last one written.
    pub(crate) fn finish(&self, run: &Run, ok: bool) -> crate::Result<()> {
        self.close();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        run.write(&self.path, ok)
    }

    fn close(&self) {
        let mut p = self.shared.lock();
        p.closing = true;
        p.next = None;
        self.shared.wake.notify_one();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Not joined: a write under way may wait for a lock, and the process is ending.
        self.close();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next state to write, waiting for one; `None` once closing.
    fn take(&self) -> Option<(Run, bool)> {
        let mut p = self.lock();
        loop {
            if p.closing {
                return None;
            }
            if let Some(next) = p.next.take() {
                return Some(next);
            }
            p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);

    impl crate::Report for Warnings {
        fn say(&self, _: &str) {}
        fn warn(&self, msg: &str) {
            self.0.lock().unwrap().push(msg.to_owned());
        }
        fn engine_line(&self, _: &str, _: &str) {}
        fn progress(&self, _: Option<u64>, _: &str) -> Arc<dyn crate::Progress> {
            Arc::new(crate::Silent)
        }
    }

    fn run_with(value: f64) -> Run {
        let mut run = Run::new("binlog-archive", None);
        run.set("coffer_binlog_archive_segments", "Segments.", value);
        run
    }

    /// A held lock delays the file only: handing over returns at once, the writer says once
    /// that it could not write, and the end writes the last state.
    #[test]
    fn the_writer_never_holds_up_the_work() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        run_with(0.0).write(&path, true).unwrap();
        let lock = std::fs::File::open(dir.path().join(".m.prom.lock")).unwrap();
        let held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();

        let warnings = Arc::new(Warnings::default());
        let writer = Background::spawn(path.clone(), warnings.clone());
        let started = Instant::now();
        for i in 1..=50 {
            writer.submit(run_with(f64::from(i)), true);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(30);
        while warnings.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no warning");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(held);
        writer.finish(&run_with(99.0), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("coffer_binlog_archive_segments{command=\"binlog-archive\"} 99\n"), "{text}");
        let said = warnings.0.lock().unwrap().clone();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("cannot write the metrics file: cannot lock "), "{said:?}");
    }
}
