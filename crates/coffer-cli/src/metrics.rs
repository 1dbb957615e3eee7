//! `--metrics-file`: a command's run written for node_exporter's textfile collector (see
//! `coffer::service::MetricsFile`).

use anyhow::Result;
use coffer::service::metrics::Run;
use coffer::service::MetricsFile;
use std::path::PathBuf;

/// Starts timing `command` (labelled with the profile in use, if any).
pub fn start(path: Option<PathBuf>, command: &str) -> MetricsFile {
    MetricsFile::start(path, command, crate::config::profile_name())
}

/// Writes the run and passes `result` on (`MetricsFile::finish`); a metrics file that cannot
/// be written is said on stderr when the run failed too.
pub fn finish<T>(metrics: MetricsFile, result: Result<T>, fill: impl FnOnce(&mut Run, &T)) -> Result<T> {
    metrics.finish(result, fill, |e| eprintln!("coffer: error: cannot write the metrics file: {e}"))
}
