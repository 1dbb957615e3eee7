//! A job's run in a metrics file: timed from its start, written once at its end.

use super::metrics::Run;
use crate::Error;
use std::path::PathBuf;

/// A job's metrics, from its start; written by [`MetricsFile::finish`] if a file was named.
#[derive(Debug)]
pub struct MetricsFile {
    path: Option<PathBuf>,
    run: Run,
}

impl MetricsFile {
    /// Starts timing `command`, labelled with `profile` if one is used; the run is written to
    /// `path` at the end, if one is given.
    pub fn start(path: Option<PathBuf>, command: &str, profile: Option<&str>) -> Self {
        MetricsFile { path, run: Run::new(command, profile) }
    }

    /// The run, to set gauges on now (for values known before the end, or on failure too:
    /// see [`super::gauges`]).
    pub fn run(&mut self) -> &mut Run {
        &mut self.run
    }

    /// Writes the run (success or failure) and passes `result` on; `fill` adds the gauges of a
    /// successful run. A metrics file that cannot be written fails a run that succeeded
    /// (monitoring would otherwise miss it silently); a run that failed keeps its own error,
    /// and the metrics file's goes to `unwritten`.
    pub fn finish<T, E: From<Error>>(
        mut self,
        result: Result<T, E>,
        fill: impl FnOnce(&mut Run, &T),
        unwritten: impl FnOnce(&Error),
    ) -> Result<T, E> {
        let Some(path) = self.path.take() else { return result };
        if let Ok(v) = &result {
            fill(&mut self.run, v);
        }
        match (self.run.write(&path, result.is_ok()), result) {
            (Ok(()), result) => result,
            (Err(e), Ok(_)) => Err(e.context("the run succeeded, but its metrics were not written").into()),
            (Err(e), Err(failed)) => {
                unwritten(&e);
                Err(failed)
            }
        }
    }
}
