//! Running as a service: what a supervisor sees of a long-running job (the binary log
//! archiver), beyond the lines it says.
//!
//! A [`Service`] is a [`Report`] that passes every line on to another report and tells the
//! job's state to a supervisor: systemd's notifications (READY=1 once the archiver streams,
//! STATUS= lines, WATCHDOG=1 while its loop is alive, STOPPING=1 at the end; see
//! [`Notifier`]), and the run's gauges as Prometheus metrics, in a file for node_exporter's
//! textfile collector ([`metrics`]) and over HTTP (`GET /metrics` on a listener of the
//! program's). Any program that runs a job can put one in its [`crate::Env::report`]:
//!
//! ```no_run
//! # fn main() -> coffer::Result<()> {
//! use coffer::service::{Service, ServiceOptions};
//! use std::sync::Arc;
//!
//! let options = ServiceOptions {
//!     command: "binlog-archive".into(),
//!     notify: true,
//!     metrics_file: Some("/var/lib/node_exporter/coffer.prom".into()),
//!     ..Default::default()
//! };
//! let service = Service::start(options, Arc::new(coffer::Silent));
//! service.serve_metrics(std::net::TcpListener::bind("127.0.0.1:9187")?);
//! let env = coffer::Env { report: service.clone(), ..Default::default() };
//! # let spec: coffer::binlog::ArchiveSpec = todo!();
//! let summary = service.finish(coffer::binlog::archive(&spec, &env))?;
//! # Ok(())
//! # }
//! ```

mod archiver;
mod file;
pub mod gauges;
mod http;
pub mod metrics;
mod notify;
mod signals;
mod writer;

pub use file::MetricsFile;
pub use notify::Notifier;
pub use signals::stop_on_signals;

use crate::binlog::{ArchiveSpec, ArchiveSummary};
use crate::report::{ArchivePhase, ArchiveState};
use crate::{Context, Env, Progress, Report, Result};
use metrics::Run;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use writer::Background;

/// How often the metrics file is written when nothing else changes.
const WRITE_EVERY: Duration = Duration::from_secs(30);
/// How long at most the archive loop goes without reporting its state, when it is alive
/// (`coffer::report::ArchiveState`).
const LOOP_WAKES: Duration = Duration::from_secs(1);
/// How often at most STATUS= changes while nothing but the lag or position does.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What a [`Service`] tells, and where.
#[derive(Debug, Default)]
pub struct ServiceOptions {
    /// The metrics' `command` label ("binlog-archive").
    pub command: String,
    /// The metrics' `profile` label, if the run uses a profile.
    pub profile: Option<String>,
    /// Notify the service manager `$NOTIFY_SOCKET` names, if set (see [`Notifier::from_env`]).
    pub notify: bool,
    /// Write the metrics into this file (see [`metrics`]), from a thread of its own: the job
    /// never waits for the file.
    pub metrics_file: Option<PathBuf>,
}

/// A report sink for a job run as a service: lines go on to the report it wraps; the job's
/// state goes to systemd and into metrics (see the [module](self)).
pub struct Service {
    /// The report the lines go to.
    inner: Arc<dyn Report>,
    notifier: Option<Notifier>,
    /// The metrics file's writer: the archive loop never waits for the file.
    metrics_file: Option<Background>,
    gauges: Mutex<Gauges>,
    told: Mutex<Told>,
}

/// The metrics of the run so far.
struct Gauges {
    run: Run,
    /// Streaming, or connecting for the first time: `coffer_last_run_success` 1.
    healthy: bool,
    /// The phase before the end: a follower stopped in any other than streaming did not
    /// archive when it was stopped.
    live: ArchivePhase,
}

/// What was last told, and when.
#[derive(Default)]
struct Told {
    ready: bool,
    pinged: Option<Instant>,
    status: String,
    status_at: Option<Instant>,
    phase: Option<ArchivePhase>,
    /// When the metrics file's writer was last handed the state, and its segments then.
    written: Option<Instant>,
    written_segments: u64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("metrics_file", &self.metrics_file).finish_non_exhaustive()
    }
}

impl Service {
    /// A service reporting to `inner`, as `options` say. A notification socket that cannot be
    /// reached is a warning on `inner`, not an error: the job runs without it.
    pub fn start(options: ServiceOptions, inner: Arc<dyn Report>) -> Arc<Self> {
        let notifier = match options.notify.then(Notifier::from_env).transpose() {
            Ok(n) => n.flatten(),
            Err(e) => {
                inner.warn(&format!("cannot notify the service manager: {e}"));
                None
            }
        };
        let mut run = Run::new(&options.command, options.profile.as_deref());
        archiver::set_gauges(&mut run, &ArchiveState::default());
        let metrics_file = options.metrics_file.map(|path| Background::spawn(path, inner.clone()));
        Arc::new(Service {
            inner,
            notifier,
            metrics_file,
            gauges: Mutex::new(Gauges { run, healthy: true, live: ArchivePhase::Connecting }),
            told: Mutex::new(Told::default()),
        })
    }

    /// Serves the metrics at `GET /metrics` on `listener`, from a thread of its own (one client
    /// at a time, each given 2 s to send at most 8 KiB of request; 404 for any other path).
    pub fn serve_metrics(self: &Arc<Self>, listener: TcpListener) {
        let me = self.clone();
        http::serve_metrics(listener, Arc::new(move || me.render()));
    }

    /// The metrics as [`Service::serve_metrics`] serves them.
    pub fn render(&self) -> String {
        let g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64().floor());
        g.run.render(g.healthy, now, "")
    }

    /// Hands the state over to the metrics file's writer, if a file was named.
    fn hand_over(&self, told: &mut Told, ok: bool) {
        let Some(writer) = &self.metrics_file else { return };
        let run = self.gauges.lock().unwrap_or_else(|e| e.into_inner()).run.clone();
        told.written = Some(Instant::now());
        writer.submit(run, ok);
    }

    /// Says the end of an archive run, `result`: STOPPING=1, and the metrics written a last
    /// time. A metrics file that cannot be written fails a run that succeeded (monitoring would
    /// otherwise miss it silently); the failure of a run that failed is a warning.
    pub fn finish(&self, result: Result<ArchiveSummary>) -> Result<ArchiveSummary> {
        if let Some(n) = &self.notifier {
            let status = match &result {
                Ok(s) => format!("STATUS=stopped: {} segments archived", s.segments),
                Err(e) => format!("STATUS=failed: {}", e.one_line()),
            };
            let _ = n.send(&["STOPPING=1".into(), status]);
        }
        let Some(writer) = &self.metrics_file else { return result };
        let (run, ok) = {
            let mut g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            // Stopped by a signal while connecting, reconnecting or in a store outage, a
            // follower ends well (it was asked to) but archived nothing at the end: its metrics
            // say so, or one restarted over and over would look healthy.
            let ok = result.is_ok() && !(signals::stop_requested() && g.live != ArchivePhase::Streaming);
            g.healthy = ok;
            (g.run.clone(), ok)
        };
        match (writer.finish(&run, ok), result) {
            (Ok(()), result) => result,
            (Err(e), Ok(_)) => Err(e.context("the run succeeded, but its metrics were not written")),
            (Err(e), Err(failed)) => {
                self.inner.warn(&format!("cannot write the metrics file: {}", e.one_line()));
                Err(failed)
            }
        }
    }

    /// Tells systemd what `s` changes: READY=1 at the first stream, STATUS= when it changes
    /// (at most every [`STATUS_EVERY`] unless the phase changes), WATCHDOG=1 when due.
    fn notify(&self, n: &Notifier, told: &mut Told, s: &ArchiveState, changed: bool, now: Instant) {
        let mut lines = Vec::new();
        if s.phase == ArchivePhase::Streaming && !told.ready {
            lines.push("READY=1".to_owned());
            told.ready = true;
        }
        let status = archiver::status_text(s);
        if status != told.status && (changed || told.status_at.is_none_or(|t| now - t >= STATUS_EVERY)) {
            lines.push(format!("STATUS={status}"));
            told.status = status;
            told.status_at = Some(now);
        }
        if let Some(every) = n.watchdog() {
            // The loop's own progress, never a metrics write, says it is alive. Reports come
            // at least every LOOP_WAKES: a ping that is due by the next one is sent now, so
            // that pings come at most `every` apart.
            if told.pinged.is_none_or(|t| now - t + LOOP_WAKES >= every) {
                lines.push("WATCHDOG=1".to_owned());
                told.pinged = Some(now);
            }
        }
        if !lines.is_empty() {
            let _ = n.send(&lines);
        }
    }
}

/// Runs the binary log archiver as a service (`binlog archive`): a [`Service`] around `env`'s
/// report, its metrics also served at `http://ADDR/metrics` if `metrics_listen` names an
/// address, and, with `spec.follow`, stopped by SIGTERM or SIGINT (see [`stop_on_signals`]:
/// what was received is stored, uploads are not aborted). The summary, and whether a signal
/// stopped the run.
pub fn archive(
    mut spec: ArchiveSpec,
    options: ServiceOptions,
    metrics_listen: Option<&str>,
    env: &Env,
) -> Result<(ArchiveSummary, bool)> {
    let service = Service::start(options, env.report.clone());
    if let Some(addr) = metrics_listen {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
        service.serve_metrics(listener);
    }
    let mut env = env.clone();
    if spec.follow {
        // A follower is stopped by a signal: it stores what it received and ends well (a
        // second signal ends it at once).
        spec.stop = Some(stop_on_signals());
        env.abort_uploads_on_signals = false;
    }
    env.report = service.clone();
    let summary = service.finish(crate::binlog::archive(&spec, &env))?;
    Ok((summary, spec.stop.is_some_and(|s| s.load(Ordering::SeqCst))))
}

impl Report for Service {
    fn say(&self, line: &str) {
        self.inner.say(line);
    }
    fn warn(&self, msg: &str) {
        self.inner.warn(msg);
    }
    fn ready(&self, line: &str) {
        self.inner.ready(line);
    }
    fn engine_line(&self, engine: &str, line: &str) {
        self.inner.engine_line(engine, line);
    }
    fn progress(&self, total: Option<u64>, what: &str) -> Arc<dyn Progress> {
        self.inner.progress(total, what)
    }
    fn shows_progress(&self) -> bool {
        self.inner.shows_progress()
    }

    fn archive_state(&self, s: &ArchiveState) {
        let now = Instant::now();
        let phase = s.phase;
        let healthy = !matches!(phase, ArchivePhase::Reconnecting | ArchivePhase::StoreOutage);
        {
            let mut g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            archiver::set_gauges(&mut g.run, s);
            g.healthy = healthy;
            if phase != ArchivePhase::Ended {
                g.live = phase;
            }
        }
        // The end is told by `finish`, with the run's result.
        if phase == ArchivePhase::Ended {
            return;
        }
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let changed = told.phase != Some(phase);
        if let Some(n) = &self.notifier {
            self.notify(n, &mut told, s, changed, now);
        }
        // The file (handed over to its writer's thread): not before the first connection has
        // succeeded or failed; then at each segment, each change of phase, and every WRITE_EVERY.
        let due = changed || s.segments != told.written_segments || told.written.is_none_or(|t| now - t >= WRITE_EVERY);
        told.phase = Some(phase);
        if phase != ArchivePhase::Connecting && due {
            told.written_segments = s.segments;
            self.hand_over(&mut told, healthy);
        }
    }
}
