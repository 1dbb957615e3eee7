//! Point-in-time recovery: the newest backup before a target, restored and prepared, then the
//! archived binary log replayed into it up to the target, through one client session of a
//! private server (docs/FORMAT.md Appendix C.4 says exactly where replay stops).
//!
//! Nothing is written to the target until the whole plan holds: a backup before the target,
//! an archive that covers the way from the backup's binlog position to the target without a
//! gap, every segment read and checked. The backup is restored, prepared and replayed beside
//! the target, and takes its place only when replay has ended cleanly.

use super::applier::Replay;
use super::beside::Beside;
use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::repo::chain::Known;
use crate::repo::recovery::stop::{gather, Gathered};
use crate::repo::recovery::{gtid_text, parse_gtids, Route, Until};
use crate::restore::RestoreSpec;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::engine::PrepareOption;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use super::applier::Applier;

/// A point-in-time restore, as a user asks for it.
#[derive(Debug, Clone)]
pub struct PitrSpec {
    /// The prefix the backups are under.
    pub backups: String,
    /// The prefix of the binary log archive.
    pub binlogs: String,
    /// Where replay stops.
    pub until: Until,
    /// The target directory, secrets, owner, --force, durability.
    pub restore: RestoreSpec,
    /// The engine's prepare options (also the replay server's).
    pub options: Vec<PrepareOption>,
    /// Restore and prepare, write the binary logs beside the target, and give the replay's
    /// commands instead of running them.
    pub print_replay: bool,
    /// What applies the log.
    pub applier: Applier,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PitrSummary {
    /// The backups restored (a chain: full first).
    pub backups: Vec<String>,
    /// Where replay started: the backup's binlog position.
    pub start: (String, u32),
    /// Where replay stopped.
    pub stop: (String, u32),
    /// Events replayed.
    pub events: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// Bytes of the events replayed.
    pub bytes: u64,
    /// The GTID of the last transaction replayed.
    pub last_gtid: Option<String>,
    /// Its time (Unix seconds, the source's clock).
    pub last_time: Option<i64>,
    /// The server's GTID position after replay (set as its `gtid_slave_pos`).
    pub gtid_state: String,
    /// Seconds to restore and prepare.
    pub restore_seconds: f64,
    /// Seconds to replay (server start, replay, shutdown).
    pub replay_seconds: f64,
    /// With `print_replay`: where the binary logs are.
    pub binlog_dir: Option<PathBuf>,
    /// With `print_replay`: the commands that replay them.
    pub commands: Option<String>,
}

impl PitrSummary {
    /// The line that says what the restore did into `to`: where the binary logs to replay are
    /// (with `print_replay`), or what was replayed.
    pub fn line(&self, to: &Path) -> String {
        let backup = self.backups.last().map(String::as_str).unwrap_or_default();
        let ((start, start_at), (stop, stop_at)) = (&self.start, &self.stop);
        if let Some(dir) = &self.binlog_dir {
            return format!(
                "restored and prepared {backup} into {}; the binary logs to replay ({start}:{start_at} .. {stop}:{stop_at}, {} transactions) are in {}",
                to.display(),
                self.transactions,
                dir.display()
            );
        }
        let last = match (&self.last_gtid, self.last_time) {
            (Some(g), Some(t)) => format!("; the last transaction: GTID {g} at {} UTC", crate::text::utc(t)),
            _ => String::new(),
        };
        format!(
            "restored {backup} and replayed {} events ({} transactions, {}) from {start}:{start_at} to {stop}:{stop_at}{last}; \
             GTID position {}; restore {:.1} s, replay {:.1} s, into {}",
            self.events,
            self.transactions,
            crate::text::human(self.bytes),
            if self.gtid_state.is_empty() { "none" } else { &self.gtid_state },
            self.restore_seconds,
            self.replay_seconds,
            to.display()
        )
    }
}

/// Refuses `backups` unless it is a prefix (`s3://B/P/`, `file:///D/`): a point-in-time
/// recovery reads the backups under one.
pub fn check_backups_prefix(backups: &str) -> Result<()> {
    if backups.ends_with('/') && matches!(Location::parse(backups), Location::Object(_)) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{backups}: point-in-time recovery reads the backups under a prefix (s3://B/P/, file:///D/)"
    )))
}

/// Plans the restore: the backup, and the binary log up to the target, read and checked into a
/// private directory beside the target. Then restores, prepares and replays (or, with
/// `print_replay`, gives the commands).
pub fn restore_until(spec: &PitrSpec, env: &Env) -> Result<PitrSummary> {
    let to = &spec.restore.to;
    if !spec.restore.force && std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        crate::bail!("{} is not empty: refusing to restore into it (use --force)", to.display());
    }
    super::applier::host(spec.restore.owner.as_deref(), env)?;
    let unlocks = crate::keys::unlocks(&spec.restore.keys, env)?;
    let Route { archive, chain, start, found_stop } =
        crate::repo::recovery::route(&spec.backups, &spec.binlogs, &spec.until, &unlocks, env)?;
    let backup = chain.last().expect("a chain ends at its backup");
    let from = backup.info.binlog.clone().expect("a backup with a binlog position");
    // A prune keeps what this restore reads from now on: the chain, and the log from its file.
    let read: Vec<&Location> = chain.iter().map(|k| &k.location).collect();
    let _lease = crate::repo::lease::for_reading(&read, Some(&start.0), "restore", env)?;
    super::applier::same_server(&spec.binlogs, &archive, &backup.info, &backup.shown(), &start)?;
    // The binary log, read and checked before anything else is written.
    let logs = Beside::create(to, "binlog", env.report.as_ref())?;
    let Gathered { walk, stop, files, ids, one_session } =
        gather(&archive, &start, &spec.until, found_stop.as_ref(), &logs.path)
            .map_err(|e| crate::room::explain(e, to, None))?;
    if let Some(why) = one_session {
        one_session_refused(spec, &why, env)?;
    }
    env.report.say(&format!(
        "restoring {} ({}, binlog {}:{}), then replaying its binary log to {} ({}:{})",
        backup.shown(),
        backup.what(),
        start.0,
        start.1,
        spec.until.shown(),
        stop.0,
        stop.1
    ));

    let mut state = parse_gtids(from.gtid.as_deref().unwrap_or_default()).unwrap_or_default();
    state.extend(walk.applied.iter().map(|(d, v)| (*d, *v)));
    let mut summary = PitrSummary {
        backups: chain.iter().map(Known::shown).collect(),
        start: start.clone(),
        stop: stop.clone(),
        events: walk.events,
        transactions: walk.transactions,
        bytes: walk.bytes,
        last_gtid: walk.last_gtid.map(|(d, s, n)| format!("{d}-{s}-{n}")),
        last_time: walk.last_time,
        gtid_state: gtid_text(&state),
        ..Default::default()
    };

    let t = Instant::now();
    let (staging, _) = crate::server::prepare::stage_chain(&chain, &unlocks, &spec.restore, &spec.options, env)?;
    summary.restore_seconds = t.elapsed().as_secs_f64();
    let mut replay = Replay::new(
        &staging.path,
        &logs.path,
        &files,
        (&start, &stop),
        &summary.gtid_state,
        &spec.options,
        spec.restore.owner.as_deref(),
    )?;
    replay.applier = spec.applier;
    replay.signed = unlocks.iter().any(|u| matches!(u, Unlock::Signer(_)));
    replay.server_id = (1..).map(|n: u32| u32::MAX - n).find(|id| !ids.contains(id)).unwrap_or(2);
    if spec.print_replay {
        return print_replay(spec, staging, logs, replay, summary);
    }
    let t = Instant::now();
    replay.run(env, &mut |_| Ok(()))?;
    summary.replay_seconds = t.elapsed().as_secs_f64();
    write_report(&staging.path, &summary)?;
    staging.replace(spec.restore.force, spec.restore.sync)?;
    Ok(summary)
}

/// `--print-replay`: the restored backup takes the target's place, its binary log goes beside
/// it (`TARGET.binlog`), and the summary gives the commands that replay it.
fn print_replay(
    spec: &PitrSpec,
    staging: Beside,
    logs: Beside,
    replay: Replay,
    mut summary: PitrSummary,
) -> Result<PitrSummary> {
    let to = &spec.restore.to;
    let dir = beside_name(to, "binlog");
    if dir.exists() {
        crate::bail!("{} exists: move it away to have the binary logs written there", dir.display());
    }
    staging.replace(spec.restore.force, spec.restore.sync)?;
    let replay = Replay { datadir: to.clone(), ..replay };
    crate::server::private::write_options(&logs.path, "replay", &replay.options)?;
    logs.keep_as(&dir)?;
    let replay = Replay { logs: dir.clone(), ..replay };
    summary.commands = Some(replay.commands());
    summary.binlog_dir = Some(dir);
    Ok(summary)
}

/// The log holds what one client session cannot replay (`why`): refused before anything is
/// restored with `--replay-with client`, a warning with `--print-replay` (whose commands
/// replay through one client session).
fn one_session_refused(spec: &PitrSpec, why: &str, env: &Env) -> Result<()> {
    let limit = format!(
        "{why}: MariaDB refuses to change gtid_domain_id in a session that holds a temporary table (error 1953)"
    );
    if spec.print_replay {
        env.report.warn(&format!("the printed replay (one client session) will fail: {limit}"));
    } else if spec.applier == Applier::Client {
        crate::bail!(
            "--replay-with client cannot replay this binary log in one session: {limit}; replay with --replay-with \
             sql-thread (the default)"
        );
    }
    Ok(())
}

/// `TARGET.binlog`, beside the target.
fn beside_name(to: &Path, what: &str) -> PathBuf {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "restore".into());
    to.with_file_name(format!("{name}.{what}"))
}

/// `coffer-pitr.json` in the restored datadir: what was replayed.
const REPORT: &str = "coffer-pitr.json";

fn write_report(dir: &Path, s: &PitrSummary) -> Result<()> {
    let path = dir.join(REPORT);
    std::fs::write(&path, serde_json::to_vec_pretty(s)?).with_context(|| format!("cannot write {}", path.display()))
}
