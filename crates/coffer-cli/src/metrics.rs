//! `--metrics-file`: a command's run written for node_exporter's textfile collector (see
//! `coffer::service::metrics`).

use anyhow::Result;
use coffer::service::metrics::Run;
use std::path::PathBuf;

/// A command's metrics, from its start; written by [`Metrics::finish`] if a file was named.
#[derive(Debug)]
pub struct Metrics {
    path: Option<PathBuf>,
    run: Run,
}

impl Metrics {
    /// Starts timing `command` (labelled with the profile in use, if any).
    pub fn start(path: Option<PathBuf>, command: &str) -> Self {
        Metrics { path, run: Run::new(command, crate::config::profile_name()) }
    }

    /// The run, to set gauges on now (for values known before the end, or on failure too:
    /// `coffer::service::gauges`).
    pub fn run(&mut self) -> &mut Run {
        &mut self.run
    }

    /// Writes the run (success or failure) and passes `result` on; `fill` adds the gauges of a
    /// successful run. A metrics file that cannot be written is said on stderr, and fails a
    /// run that succeeded (monitoring would otherwise miss it silently).
    pub fn finish<T>(mut self, result: Result<T>, fill: impl FnOnce(&mut Run, &T)) -> Result<T> {
        let Some(path) = self.path.take() else { return result };
        if let Ok(v) = &result {
            fill(&mut self.run, v);
        }
        match (self.run.write(&path, result.is_ok()), result) {
            (Ok(()), result) => result,
            (Err(e), Ok(_)) => {
                Err(anyhow::Error::new(e).context("the run succeeded, but its metrics were not written"))
            }
            (Err(e), Err(failed)) => {
                eprintln!("coffer: error: cannot write the metrics file: {e}");
                Err(failed)
            }
        }
    }
}
