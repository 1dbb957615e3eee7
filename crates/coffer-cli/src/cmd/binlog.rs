//! `coffer binlog archive|list|fetch`: the command line made into `coffer::binlog` calls.

use super::{human, warn};
use crate::cli::{ArchiveArgs, BinlogCommand, BinlogListArgs, FetchArgs};
use crate::metrics::Background;
use anyhow::{Context, Result};
use coffer::binlog::ArchiveSummary;
use coffer::metrics::Run;
use coffer::report::{ArchivePhase, ArchiveState};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn run(cmd: BinlogCommand, quiet: bool) -> Result<()> {
    match cmd {
        BinlogCommand::Archive(a) => archive(*a, quiet),
        BinlogCommand::List(a) => list(*a, quiet),
        BinlogCommand::Fetch(a) => fetch(*a, quiet),
    }
}

fn archive(a: ArchiveArgs, quiet: bool) -> Result<()> {
    let mut spec = coffer::binlog::ArchiveSpec {
        server: coffer::ServerOptions {
            socket: a.socket,
            host: a.host,
            port: a.port,
            user: a.user,
            password_file: a.password_file,
            tls: crate::cli::server_tls(a.ssl_mode, &a.ssl_ca, &a.ssl_cert, &a.ssl_key),
            ..Default::default()
        },
        prefix: a.output,
        keys: a.key.sources(),
        seal: a.seal.options(),
        follow: a.follow,
        segment_time: Duration::from_secs(a.segment_time.max(1)),
        segment_size: u64::from(a.segment_size.max(4096)),
        server_id: a.server_id,
        stop: None,
    };
    let mut env = crate::report::env(quiet, 1);
    let notifier = match crate::notify::Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            warn(quiet, format!("cannot notify the service manager: {e}"));
            None
        }
    };
    let watch = Arc::new(Watch::new(env.report.clone(), notifier, a.metrics_file));
    if let Some(addr) = &a.metrics_listen {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
        let w = watch.clone();
        crate::notify::serve_metrics(listener, Arc::new(move || w.render()));
    }
    if a.follow {
        // A follower is stopped by a signal: it stores what it received and ends well (a
        // second signal ends it at once).
        stop_on_signals();
        spec.stop = Some(&STOP);
        env.abort_uploads_on_signals = false;
    }
    env.report = watch.clone();
    let result = coffer::binlog::archive(&spec, &env);
    let s = watch.finish(result)?;
    if !quiet {
        let end = s.end.map(|e| format!("; the archive ends at {} {}", e.file, e.end)).unwrap_or_default();
        let stopped = if STOP.load(Ordering::SeqCst) { "stopped; " } else { "" };
        eprintln!("coffer: {stopped}archived {} segments ({}){end}", s.segments, human(s.bytes));
    }
    Ok(())
}

/// Set by SIGTERM or SIGINT in a following archiver.
static STOP: AtomicBool = AtomicBool::new(false);

fn stop_on_signals() {
    extern "C" fn on_signal(_: nix::libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // No SA_RESTART: a wait is cut short. SA_RESETHAND: a second signal ends the process.
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESETHAND, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

const COMMAND: &str = "binlog-archive";
/// How often the metrics file is written when nothing else changes.
const WRITE_EVERY: Duration = Duration::from_secs(30);
/// How long at most the archive loop goes without reporting its state, when it is alive
/// (`coffer::report::ArchiveState`).
const LOOP_WAKES: Duration = Duration::from_secs(1);
/// How often at most STATUS= changes while nothing but the lag or position does.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The archiver's state told beyond its lines: to systemd (readiness, status, watchdog), and
/// as metrics (a file, and what --metrics-listen serves).
struct Watch {
    /// The terminal's report, which the lines go to.
    inner: Arc<dyn coffer::Report>,
    notifier: Option<crate::notify::Notifier>,
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

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("metrics_file", &self.metrics_file).finish_non_exhaustive()
    }
}

impl Watch {
    fn new(
        inner: Arc<dyn coffer::Report>,
        notifier: Option<crate::notify::Notifier>,
        metrics_file: Option<PathBuf>,
    ) -> Self {
        let mut run = Run::new(COMMAND, crate::config::profile_name());
        set_gauges(&mut run, &ArchiveState::default());
        let metrics_file = metrics_file.map(|path| Background::spawn(path, inner.clone()));
        Watch {
            inner,
            notifier,
            metrics_file,
            gauges: Mutex::new(Gauges { run, healthy: true }),
            told: Mutex::new(Told::default()),
        }
    }

    /// The metrics as --metrics-listen serves them.
    fn render(&self) -> String {
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

    /// Says a run that ended: STOPPING=1, the metrics written a last time. A metrics file
    /// that cannot be written fails a run that succeeded.
    fn finish(&self, result: coffer::Result<ArchiveSummary>) -> Result<ArchiveSummary> {
        if let Some(n) = &self.notifier {
            let status = match &result {
                Ok(s) => format!("STATUS=stopped: {} segments archived", s.segments),
                Err(e) => format!("STATUS=failed: {}", e.one_line()),
            };
            let _ = n.send(&["STOPPING=1".into(), status]);
        }
        let Some(writer) = &self.metrics_file else { return Ok(result?) };
        let run = {
            let mut g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            g.healthy = result.is_ok();
            g.run.clone()
        };
        match (writer.finish(&run, result.is_ok()), result) {
            (Ok(()), result) => Ok(result?),
            (Err(e), Ok(_)) => {
                Err(anyhow::Error::new(e).context("the run succeeded, but its metrics were not written"))
            }
            (Err(e), Err(failed)) => {
                self.inner.warn(&format!("cannot write the metrics file: {}", e.one_line()));
                Err(failed.into())
            }
        }
    }
}

/// The status line systemd shows for `state`.
fn status_text(s: &ArchiveState) -> String {
    match s.phase {
        ArchivePhase::Connecting => "connecting to the server".into(),
        ArchivePhase::Ended => "stopping".into(),
        ArchivePhase::Reconnecting => format!("reconnecting: {}", s.last_error.as_deref().unwrap_or_default()),
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
fn set_gauges(run: &mut Run, s: &ArchiveState) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    run.set(
        "coffer_binlog_archive_connected",
        "1 while the archiver is connected and the binary log streams, else 0.",
        f64::from(u8::from(s.phase == ArchivePhase::Streaming)),
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

impl coffer::Report for Watch {
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
    fn progress(&self, total: Option<u64>, what: &str) -> Arc<dyn coffer::Progress> {
        self.inner.progress(total, what)
    }
    fn shows_progress(&self) -> bool {
        self.inner.shows_progress()
    }

    fn archive_state(&self, s: &ArchiveState) {
        let now = Instant::now();
        let phase = s.phase;
        let healthy = phase != ArchivePhase::Reconnecting;
        {
            let mut g = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            set_gauges(&mut g.run, s);
            g.healthy = healthy;
        }
        // The end is told by `finish`, with the run's result.
        if phase == ArchivePhase::Ended {
            return;
        }
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let changed = told.phase != Some(phase);
        if let Some(n) = &self.notifier {
            let mut lines = Vec::new();
            if phase == ArchivePhase::Streaming && !told.ready {
                lines.push("READY=1".to_owned());
                told.ready = true;
            }
            let status = status_text(s);
            if status != told.status && (changed || told.status_at.is_none_or(|t| now - t >= STATUS_EVERY)) {
                lines.push(format!("STATUS={status}"));
                told.status = status;
                told.status_at = Some(now);
            }
            if let Some(every) = n.watchdog() {
                // The loop's own progress, never a metrics write, says it is alive. Reports
                // come at least every LOOP_WAKES: a ping that is due by the next one
                // is sent now, so that pings come at most `every` apart.
                if told.pinged.is_none_or(|t| now - t + LOOP_WAKES >= every) {
                    lines.push("WATCHDOG=1".to_owned());
                    told.pinged = Some(now);
                }
            }
            if !lines.is_empty() {
                let _ = n.send(&lines);
            }
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

fn list(a: BinlogListArgs, quiet: bool) -> Result<()> {
    let env = crate::report::env(quiet, 1);
    let found = coffer::repo::archive::segments(&a.prefix, &env)?;
    let keys = Some(a.key.sources()).filter(coffer::keys::KeySources::any);
    let unlocks = keys.map(|k| coffer::keys::unlocks(&k, &env)).transpose()?;
    let esc = |s: &str| coffer::text::escape(s.as_bytes());
    let mut rows = Vec::new();
    let mut unread = 0;
    let mut previous: Option<&coffer::repo::archive::SegmentName> = None;
    for (s, listed) in &found {
        // A segment that does not continue the previous one follows a gap.
        let gap = previous.is_some_and(|p| !coffer::repo::archive::continues(p, s));
        let mut row = json!({"file": s.file, "start": s.start, "end": s.end, "closed": s.closed, "bytes": listed.size, "gap_before": gap});
        let mut detail = String::new();
        if let Some(unlocks) = &unlocks {
            match coffer::repo::archive::description(listed, unlocks, &env) {
                Ok(d) => {
                    for k in [
                        "events",
                        "first_event_time",
                        "last_event_time",
                        "gtid_before",
                        "gtid_after",
                        "server",
                        "checksum",
                    ] {
                        row[k] = d[k].clone();
                    }
                    let time = |k: &str| d[k].as_i64().map(coffer::text::utc).unwrap_or_default();
                    detail = format!(
                        "  {} .. {}  GTID {} .. {}  server {}",
                        time("first_event_time"),
                        time("last_event_time"),
                        esc(d["gtid_before"].as_str().unwrap_or("?")),
                        esc(d["gtid_after"].as_str().unwrap_or("?")),
                        d["server"]["server_id"]
                    );
                }
                Err(e) => {
                    unread += 1;
                    row["error"] = json!(e.one_line());
                    detail = format!("  ({})", e.one_line());
                }
            }
        }
        if !a.json {
            println!(
                "{}  {:>10} .. {:<10}  {:>10}{}{}{detail}",
                esc(&s.file),
                s.start,
                s.end,
                human(listed.size),
                if s.closed { "  complete" } else { "" },
                if gap { "  (gap before)" } else { "" }
            );
        }
        rows.push(row);
        previous = Some(s);
    }
    if a.json {
        println!("{}", serde_json::Value::Array(rows));
    }
    if unread > 0 {
        anyhow::bail!("{unread} of {} segments could not be read with the key given (see above)", found.len());
    }
    Ok(())
}

fn fetch(a: FetchArgs, quiet: bool) -> Result<()> {
    let written = coffer::binlog::fetch(
        &a.prefix,
        a.from.as_deref(),
        &a.to_dir,
        &a.key.sources(),
        &crate::report::env(quiet, 1),
    )?;
    if !quiet {
        eprintln!(
            "coffer: wrote {} binary log files into {}: {}",
            written.len(),
            a.to_dir.display(),
            written.join(", ")
        );
    }
    Ok(())
}
