//! The jobs' reports on the terminal: lines and warnings on stderr (none with -q), progress
//! bars when stderr is a terminal.

use crate::progress::Bar;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Prints what a job says, as `coffer: ...` lines on stderr.
#[derive(Debug)]
pub struct Terminal {
    quiet: bool,
    /// Progress bars may be drawn (not beside a JSON report on stdout).
    bars: bool,
    /// The newest progress bar: an engine's log lines show beside it.
    bar: Mutex<Option<Bar>>,
}

impl coffer::Report for Terminal {
    fn say(&self, line: &str) {
        crate::cmd::say(self.quiet, line);
    }

    fn warn(&self, msg: &str) {
        crate::cmd::warn(self.quiet, msg);
    }

    fn ready(&self, line: &str) {
        eprintln!("coffer: {line}");
    }

    fn engine_line(&self, engine: &str, line: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // A line beside the bar, while one is drawn.
            Some(Bar(bar)) if !bar.is_hidden() && !bar.is_finished() => bar.set_message(line.to_owned()),
            _ => eprintln!("{engine}: {line}"),
        }
    }

    fn progress(&self, total: Option<u64>, what: &str) -> Arc<dyn coffer::Progress> {
        let bar = Bar::new(self.quiet || !self.bars, total, what);
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Arc::new(bar)
    }

    fn shows_progress(&self) -> bool {
        !self.quiet && self.bars && std::io::stderr().is_terminal()
    }
}

impl coffer::Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// What this run's jobs run with.
pub fn env(quiet: bool, threads: usize) -> coffer::Env {
    env_with_bars(quiet, threads, true)
}

/// [`env`], with progress bars or without.
pub fn env_with_bars(quiet: bool, threads: usize, bars: bool) -> coffer::Env {
    coffer::Env {
        threads,
        store: crate::store::options(),
        abort_uploads_on_signals: true,
        report: Arc::new(Terminal { quiet, bars, bar: Mutex::new(None) }),
    }
}
