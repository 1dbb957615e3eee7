//! Point-in-time recovery: the newest backup before a target, restored and prepared, then the
//! archived binary log replayed into it up to the target, through one client session of a
//! private server (docs/FORMAT.md Appendix C.4 says exactly where replay stops).
//!
//! Nothing is written to the target until the whole plan holds: a backup before the target,
//! an archive that covers the way from the backup's binlog position to the target without a
//! gap, every segment read and checked. The backup is restored, prepared and replayed beside
//! the target, and takes its place only when replay has ended cleanly.

use crate::binlog::{continues, SegmentName, EVENTS_ENTRY};
use crate::chain::Known;
use crate::error::{Context, Error, Result};
use crate::location::Location;
use crate::restore::{Beside, RestoreSpec};
use crate::server::{last_line, program, Server, ServerUser};
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::client::Client;
use coffer_mysql::engine::PrepareOption;
use coffer_mysql::meta::binlog_file_number as file_number;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use coffer_mysql::events::{gtid_text, parse_gtids, Gtids};

mod stop;
use stop::{gather, time_stop, Gathered, TimeStop};

/// Where replay stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Unix seconds: every transaction the log holds before the first one stamped later than
    /// this second (the second itself included).
    Time(i64),
    /// The transactions up to and including these GTIDs (each domain's), and every transaction
    /// logged before the last of them ends.
    Gtid(Gtids),
    /// The log up to this position of this file: every event that ends at or before it.
    Position(String, u32),
}

impl Until {
    /// `2026-11-27 14:02:59` (UTC), with `T` for the space if wished, and a zone if given:
    /// `Z`, `UTC`, `+01:00`, `-0500`.
    pub fn parse_time(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::usage(format!(
                "--until {text:?}: {why} (expected YYYY-MM-DD HH:MM:SS, UTC unless a zone such as +01:00 is given)"
            ))
        };
        let t = text.trim();
        if t.len() < 19 || !t.is_char_boundary(19) {
            return Err(bad("too short"));
        }
        let (clock, zone) = t.split_at(19);
        let b = clock.as_bytes();
        let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
        if seps.iter().any(|&(i, c)| b[i] != c) || !(b[10] == b' ' || b[10] == b'T') {
            return Err(bad("not a date and time"));
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64> {
            let s = &clock[r];
            if s.bytes().all(|c| c.is_ascii_digit()) {
                Ok(s.parse().expect("digits"))
            } else {
                Err(bad("not a date and time"))
            }
        };
        let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
            return Err(bad("no such date or time"));
        }
        let offset = match zone.trim() {
            "" | "Z" | "UTC" | "utc" | "z" => 0,
            z if z.starts_with('.') => return Err(bad("binary log times are whole seconds")),
            z => parse_offset(z).ok_or_else(|| bad("the zone must be Z, UTC or an offset such as +01:00"))?,
        };
        Ok(Until::Time(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset))
    }

    /// `0-1-123456`, or one per domain, comma separated.
    pub fn parse_gtid(text: &str) -> Result<Self> {
        let gtids = parse_gtids(text).ok_or_else(|| {
            Error::usage(format!("--until-gtid {text:?}: expected DOMAIN-SERVER-SEQ, one per domain, comma separated"))
        })?;
        if gtids.is_empty() {
            return Err(Error::usage("--until-gtid: no GTID given"));
        }
        Ok(Until::Gtid(gtids))
    }

    /// `binlog.000042:1234`.
    pub fn parse_position(text: &str) -> Result<Self> {
        let bad =
            || Error::usage(format!("--until-position {text:?}: expected FILE:POSITION, such as binlog.000042:1234"));
        let (file, pos) = text.rsplit_once(':').ok_or_else(bad)?;
        let pos: u32 = pos.parse().map_err(|_| bad())?;
        if !coffer_mysql::meta::is_binlog_file_name(file) || pos < 4 {
            return Err(bad());
        }
        Ok(Until::Position(file.to_owned(), pos))
    }

    /// The target as messages say it.
    pub fn shown(&self) -> String {
        match self {
            Until::Time(t) => format!("{} UTC", crate::text::utc(*t)),
            Until::Gtid(g) => format!("GTID {}", gtid_text(g)),
            Until::Position(f, p) => format!("{f}:{p}"),
        }
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `+01:00`, `-0500`, `+02` in seconds east of UTC.
fn parse_offset(z: &str) -> Option<i64> {
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = if digits.len() == 4 { digits[2..].parse().ok()? } else { 0 };
    (h <= 14 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// What applies the binary log to the restored server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Applier {
    /// The server's own replication applier (its SQL thread), the log given to it as relay
    /// logs: about 4x faster than a client (docs/BENCHMARKS.md).
    #[default]
    SqlThread,
    /// `mariadb-binlog | mariadb`, one client session: what DBAs do by hand.
    Client,
}

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

/// The archive's segments, in log order, with what reads them.
struct Archive<'a> {
    segments: Vec<(SegmentName, coffer_store::Listed)>,
    unlocks: &'a [Unlock],
    env: &'a Env,
}

impl Archive<'_> {
    fn location(&self, i: usize) -> Location {
        Location::Object(self.segments[i].1.object.url().to_owned())
    }

    /// The events of segment `i`, exactly as long as its name says.
    fn events(&self, i: usize) -> Result<Vec<u8>> {
        let (s, listed) = &self.segments[i];
        let want = u64::from(s.end - s.start);
        let bytes = crate::binlog::read_entry(&self.location(i), self.unlocks, EVENTS_ENTRY, want, self.env)?;
        if bytes.len() as u64 != want {
            crate::bail!("{}: it holds {} bytes, its name says {want}", listed.name, bytes.len());
        }
        Ok(bytes)
    }

    /// The description of segment `i`.
    fn description(&self, i: usize) -> Result<serde_json::Value> {
        crate::binlog::description(&self.segments[i].1, self.unlocks, self.env)
    }

    /// The time of the last event of segment `i`, from its description.
    fn last_time(&self, i: usize) -> Result<i64> {
        let v = self.description(i)?;
        v["last_event_time"]
            .as_i64()
            .ok_or_else(|| Error::msg(format!("{}: its description has no last_event_time", self.segments[i].1.name)))
    }

    /// The first segment whose events reach `(file, pos)` (the one that holds the event
    /// starting there, or ends there).
    fn find(&self, file: &str, pos: u32) -> Option<usize> {
        let at = (file_number(file), pos);
        self.segments.iter().position(|(s, _)| (file_number(&s.file), s.end) >= at)
    }

    /// The first segment of `file` if the archive holds it from its start.
    fn file_start(&self, file: &str) -> Option<usize> {
        self.segments.iter().position(|(s, _)| s.file == file && s.start == 4)
    }
}

/// What a binary log archive holds, as `catalog` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    /// Its prefix.
    pub prefix: String,
    /// Segments, and their bytes (as stored).
    pub segments: usize,
    /// Bytes stored.
    pub bytes: u64,
    /// Where it begins and ends in the server's log.
    pub first: (String, u32),
    /// Where it ends.
    pub last: (String, u32),
    /// The time of its last event (with a key).
    pub last_time: Option<i64>,
    /// Its gaps: where each begins and ends.
    pub gaps: Vec<((String, u32), (String, u32))>,
}

/// How far a backup can be recovered: from its binlog position to the end of the archive's
/// unbroken run from there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The backup's binlog position.
    pub from: (String, u32),
    /// The last position the archive reaches from it without a gap.
    pub to: (String, u32),
    /// The time of the last event there (with a key).
    pub to_time: Option<i64>,
}

/// The archive under `binlogs` (none if it holds no segment), and each backup's window from
/// its binlog position (`None`: no position, or the archive does not hold its file from the
/// start). With secrets, the windows' end times are read (one small read per unbroken run).
pub fn windows(
    binlogs: &str,
    positions: &[Option<(String, u64)>],
    unlocks: Option<&[Unlock]>,
    env: &Env,
) -> Result<(Option<Overview>, Vec<Option<Window>>)> {
    let segments = crate::binlog::segments(binlogs, env)?;
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Ok((None, vec![None; positions.len()]));
    };
    let names: Vec<SegmentName> = segments.iter().map(|(s, _)| s.clone()).collect();
    // Each segment's run's last segment.
    let mut run_end = vec![0; names.len()];
    let mut end = names.len() - 1;
    for i in (0..names.len()).rev() {
        if i + 1 < names.len() && !continues(&names[i], &names[i + 1]) {
            end = i;
        }
        run_end[i] = end;
    }
    let empty: &[Unlock] = &[];
    let archive = Archive { segments: segments.clone(), unlocks: unlocks.unwrap_or(empty), env };
    let mut times: BTreeMap<usize, Option<i64>> = BTreeMap::new();
    let mut time_of = |i: usize| -> Option<i64> {
        unlocks?;
        *times.entry(i).or_insert_with(|| archive.last_time(i).ok())
    };
    let windows = positions
        .iter()
        .map(|p| {
            let (file, pos) = p.as_ref()?;
            let pos = u32::try_from(*pos).ok()?;
            let start = archive.file_start(file)?;
            let reach = run_end[start];
            let (s, _) = &segments[reach];
            ((file_number(&s.file), s.end) >= (file_number(file), pos)).then(|| Window {
                from: (file.clone(), pos),
                to: (s.file.clone(), s.end),
                to_time: time_of(reach),
            })
        })
        .collect();
    let overview = Overview {
        prefix: binlogs.to_owned(),
        segments: segments.len(),
        bytes: segments.iter().map(|(_, l)| l.size).sum(),
        first: (first.0.file.clone(), first.0.start),
        last: (last.0.file.clone(), last.0.end),
        last_time: time_of(segments.len() - 1),
        gaps: crate::binlog::gaps(&names).into_iter().map(|(a, b)| ((a.file, a.end), (b.file, b.start))).collect(),
    };
    Ok((Some(overview), windows))
}

/// The backups under the prefix that recorded a binlog position, oldest position first.
fn backups_with_positions(
    prefix: &str,
    unlocks: &[Unlock],
    env: &Env,
) -> Result<(Vec<Known>, crate::chain::Neighbours)> {
    let neighbours = crate::chain::neighbours(&Location::Object(prefix.to_owned()), &[], unlocks, env)?;
    for (shown, why, _) in &neighbours.unread {
        env.report.warn(&format!("{shown}: {why}"));
    }
    let mut known: Vec<Known> = neighbours.known.iter().filter(|k| k.info.binlog.is_some()).cloned().collect();
    known.sort_by_key(position_of);
    Ok((known, neighbours))
}

fn position_of(k: &Known) -> (u64, u64) {
    let b = k.info.binlog.as_ref().expect("filtered");
    (file_number(&b.file), b.position)
}

/// The archive's prefix from the backups' (`PREFIX/binlog/`).
pub fn default_binlog_prefix(backups: &str) -> String {
    format!("{}binlog/", backups)
}

/// The chain (full first) a point-in-time restore to `until` would restore: the newest backup
/// under `backups` before the target, as [`restore_until`] chooses it. For a drill's space check.
pub fn chain_until(backups: &str, binlogs: &str, until: &Until, unlocks: &[Unlock], env: &Env) -> Result<Vec<Known>> {
    let archive = Archive { segments: crate::binlog::segments(binlogs, env)?, unlocks, env };
    let (known, neighbours) = backups_with_positions(backups, unlocks, env)?;
    if archive.segments.is_empty() || known.is_empty() {
        // restore_until says why, in its words.
        return Ok(Vec::new());
    }
    let (backup, _) = choose_backup(until, &known, &archive)?;
    match backup.link.kind {
        coffer_mysql::meta::BackupKind::Full => Ok(vec![backup.clone()]),
        _ => crate::chain::resolve(backup, &neighbours),
    }
}

/// Plans the restore: the backup, and the binary log up to the target, read and checked into a
/// private directory beside the target. Then restores, prepares and replays (or, with
/// `print_replay`, gives the commands).
pub fn restore_until(spec: &PitrSpec, env: &Env) -> Result<PitrSummary> {
    let to = &spec.restore.to;
    if !spec.restore.force && std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        crate::bail!("{} is not empty: refusing to restore into it (use --force)", to.display());
    }
    replay_host(spec.restore.owner.as_deref(), env)?;
    let unlocks = crate::keys::unlocks(&spec.restore.keys, env)?;
    let archive = Archive { segments: crate::binlog::segments(&spec.binlogs, env)?, unlocks: &unlocks, env };
    if archive.segments.is_empty() {
        crate::bail!("{}: no archived binary log there", spec.binlogs);
    }
    let (backups, neighbours) = backups_with_positions(&spec.backups, &unlocks, env)?;
    if backups.is_empty() {
        crate::bail!(
            "{}: no backup there recorded a binary log position (a backup of a server with log_bin on, read with the secrets given)",
            spec.backups
        );
    }
    let (backup, found_stop) = choose_backup(&spec.until, &backups, &archive)?;
    let chain = match backup.link.kind {
        coffer_mysql::meta::BackupKind::Full => vec![backup.clone()],
        _ => crate::chain::resolve(backup, &neighbours)?,
    };
    let from = backup.info.binlog.clone().expect("filtered");
    let start = start_of(backup);
    // A prune keeps what this restore reads from now on: the chain, and the log from its file.
    let read: Vec<&Location> = chain.iter().map(|k| &k.location).collect();
    let _lease = crate::lease::for_reading(&read, Some(&start.0), "restore", env)?;
    // The archive must be of the backup's server (where both say which it is).
    let ours = backup.info.server.as_ref().and_then(|s| s.server_id);
    if let (Some(ours), Some(first)) = (ours, archive.file_start(&start.0)) {
        if let Some(theirs) = archive.description(first)?["server"]["server_id"].as_u64() {
            if theirs != ours {
                crate::bail!(
                    "{} holds the binary log of server id {theirs}, but {} is of server id {ours}",
                    spec.binlogs,
                    backup.shown()
                );
            }
        }
    }
    // The binary log, read and checked before anything else is written.
    let logs = Beside::create(to, "binlog", env.report.as_ref())?;
    let Gathered { walk, stop, files, ids, one_session } =
        gather(&archive, &start, &spec.until, found_stop.as_ref(), &logs.path)?;
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
    let (staging, _) = crate::restore::stage_chain(&chain, &unlocks, &spec.restore, &spec.options, env)?;
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
        let dir = beside_name(to, "binlog");
        if dir.exists() {
            crate::bail!("{} exists: move it away to have the binary logs written there", dir.display());
        }
        staging.replace(spec.restore.force, spec.restore.sync)?;
        let replay = Replay { datadir: to.clone(), ..replay };
        crate::server::write_options(&logs.path, "replay", &replay.options)?;
        logs.keep_as(&dir)?;
        let replay = Replay { logs: dir.clone(), ..replay };
        summary.commands = Some(replay.commands());
        summary.binlog_dir = Some(dir);
        return Ok(summary);
    }
    let t = Instant::now();
    replay.run(env)?;
    summary.replay_seconds = t.elapsed().as_secs_f64();
    write_report(&staging.path, &summary)?;
    staging.replace(spec.restore.force, spec.restore.sync)?;
    Ok(summary)
}

/// What a replay needs of this host, checked before anything is read or written: the server's
/// user (`owner`) and its programs (found, and trusted); then what killed replays left goes.
fn replay_host(owner: Option<&str>, env: &Env) -> Result<()> {
    crate::server::server_user(owner, "the replay server")?;
    program(&["mariadbd", "mysqld"], "mariadb-server")?;
    program(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?;
    program(&["mariadb", "mysql"], "mariadb-client")?;
    crate::server::sweep(&std::env::temp_dir(), RUN, "point-in-time replay", env);
    Ok(())
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

/// The newest backup whose binlog position is at or before where replay stops, and (for a
/// time) that stop, found by walking the log ([`time_stop`]): the backup is chosen by the
/// position alone.
fn choose_backup<'a>(
    until: &Until,
    backups: &'a [Known],
    archive: &Archive,
) -> Result<(&'a Known, Option<(String, u32)>)> {
    let before = |k: &Known, why: String| {
        Error::msg(format!(
            "{} is before the oldest backup that point-in-time recovery can start from ({}, binlog {}:{}{}): {why}",
            until.shown(),
            k.shown(),
            k.info.binlog.as_ref().map_or("", |b| b.file.as_str()),
            k.info.binlog.as_ref().map_or(0, |b| b.position),
            k.info.end_time.as_deref().map(|t| format!(", ended {t}")).unwrap_or_default()
        ))
    };
    let oldest = &backups[0];
    let at_or_before = |file: &str, pos: u64| backups.iter().rev().find(|k| position_of(k) <= (file_number(file), pos));
    match until {
        Until::Position(file, pos) => at_or_before(file, u64::from(*pos))
            .map(|k| (k, None))
            .ok_or_else(|| before(oldest, "nothing to replay onto".into())),
        Until::Gtid(target) => backups
            .iter()
            .rev()
            .find(|k| {
                let state = k.info.binlog.as_ref().and_then(|b| parse_gtids(b.gtid.as_deref()?)).unwrap_or_default();
                target.iter().all(|(d, (_, n))| state.get(d).is_none_or(|(_, m)| m < n))
            })
            .map(|k| (k, None))
            .ok_or_else(|| before(oldest, "every backup holds it already".into())),
        Until::Time(t) => {
            let names: Vec<SegmentName> = archive.segments.iter().map(|(s, _)| s.clone()).collect();
            let starts: Vec<(String, u32)> = backups.iter().map(start_of).collect();
            match time_stop(&names, &mut |i| archive.events(i), &starts, *t)? {
                TimeStop::Before(k, why) => Err(before(&backups[k], why)),
                TimeStop::At(file, pos) => {
                    // The walk started at a backup at or before the stop: one is found.
                    let k = at_or_before(&file, u64::from(pos))
                        .ok_or_else(|| before(oldest, "no backup was taken before it".into()))?;
                    Ok((k, Some((file, pos))))
                }
            }
        }
    }
}

/// A backup's binlog position, as a place in the log.
fn start_of(k: &Known) -> (String, u32) {
    let b = k.info.binlog.as_ref().expect("filtered");
    (b.file.clone(), u32::try_from(b.position).unwrap_or(u32::MAX))
}

/// How the replay runs: a private server on the restored datadir (as `crate::server` keeps
/// them: an unprivileged user, only what InnoDB needs of the image's options, dead with coffer),
/// the binary log given to its SQL thread or through `mariadb-binlog` into one client session.
#[derive(Debug, Clone)]
struct Replay {
    datadir: PathBuf,
    logs: PathBuf,
    files: Vec<String>,
    start: (String, u32),
    stop: (String, u32),
    gtid_state: String,
    /// The server's option file, and what it left out of the backup's.
    options: String,
    left_out: Vec<String>,
    server: PathBuf,
    binlog_tool: PathBuf,
    client: PathBuf,
    /// The server's user (`None`: coffer's own, not root).
    user: Option<ServerUser>,
    /// How the log is applied, and (by the SQL thread) the server id the replay server takes:
    /// one no event of the log carries, or it would skip them as its own.
    applier: Applier,
    server_id: u32,
    /// Were the backups and the log read with their signer checked? (Then the server may run
    /// unconfined where it cannot be confined.)
    signed: bool,
}

/// A path as one shell word.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Replay {
    /// The replay of `files` (in `logs`) from `range.0` to `range.1` into `datadir`, by a server
    /// that runs as `owner` (`restore --owner`; as root, default mysql), to which the datadir
    /// and `logs` (the printed commands' socket and logs) are given.
    fn new(
        datadir: &Path,
        logs: &Path,
        files: &[String],
        range: (&(String, u32), &(String, u32)),
        gtid_state: &str,
        options: &[PrepareOption],
        owner: Option<&str>,
    ) -> Result<Self> {
        let taken = coffer_mysql::engine::server_options(datadir, options).map_err(Error::other)?;
        let user = crate::server::server_user(owner, "the replay server")?;
        crate::server::give_tree(datadir, user.as_ref())?;
        crate::server::give(logs, user.as_ref())?;
        Ok(Replay {
            datadir: datadir.to_owned(),
            logs: logs.to_owned(),
            files: files.to_vec(),
            start: range.0.clone(),
            stop: range.1.clone(),
            gtid_state: gtid_state.to_owned(),
            options: taken.text,
            left_out: taken.left_out,
            server: program(&["mariadbd", "mysqld"], "mariadb-server")?,
            binlog_tool: program(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client")?,
            client: program(&["mariadb", "mysql"], "mariadb-client")?,
            user,
            applier: Applier::default(),
            server_id: 2,
            signed: false,
        })
    }

    /// The files replay reads: those from the backup's to the stop's (a stop at a file's
    /// first event leaves that file out).
    fn replayed(&self) -> Vec<&String> {
        let stop_at_start = self.stop.1 <= 4;
        self.files.iter().filter(|f| !(stop_at_start && **f == self.stop.0)).collect()
    }

    fn binlog_args(&self) -> Vec<String> {
        let files = self.replayed();
        let mut args = vec!["--no-defaults".to_owned(), format!("--start-position={}", self.start.1)];
        if files.last().is_some_and(|f| **f == self.stop.0) {
            args.push(format!("--stop-position={}", self.stop.1));
        }
        args.extend(files.iter().map(|f| self.logs.join(f).display().to_string()));
        args
    }

    fn server_args(&self, options_file: &Path, run: &Path) -> Vec<String> {
        let mut args = crate::server::private_args(options_file, &self.datadir, run, "replay");
        // A crash during replay throws the directory away: no need to flush each commit.
        args.extend(["--innodb-flush-log-at-trx-commit=0".into(), "--innodb-doublewrite=0".into()]);
        if self.applier == Applier::SqlThread {
            args.extend([
                format!("--server-id={}", self.server_id),
                format!("--relay-log={RELAY}"),
                format!("--relay-log-index={RELAY}.index"),
                "--relay-log-purge=0".into(),
            ]);
        }
        args
    }

    fn client_args(&self, run: &Path) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            format!("--socket={}", run.join("replay.sock").display()),
            "--user=root".into(),
            "--binary-mode".into(),
            "--local-infile=0".into(),
            "--init-command=FLUSH PRIVILEGES".into(),
        ]
    }

    /// The commands a DBA runs to replay by hand (as root, the server becomes its user itself).
    fn commands(&self) -> String {
        let words = |v: Vec<String>| v.iter().map(|a| shell_word(Path::new(a))).collect::<Vec<_>>().join(" ");
        let run = &self.logs;
        let mut server_args = self.server_args(&run.join("replay.cnf"), run);
        server_args.extend(self.user.as_ref().map(|u| format!("--user={}", u.name)));
        let sock = run.join("replay.sock");
        format!(
            "# 1. a private server on the restored datadir (no network, no replication, no binary log)\n\
             {} {} &\n\
             # 2. the binary log from the backup's position ({}:{}) to the target ({}:{}), in one client session\n\
             {} {} | {} {}\n\
             # 3. the GTID position after replay, for replicas of this server\n\
             {} --no-defaults --socket={} --user=root -e \"SET GLOBAL gtid_slave_pos = '{}'\"\n\
             # 4. a clean shutdown\n\
             {} --no-defaults --socket={} --user=root -e SHUTDOWN\n",
            shell_word(&self.server),
            words(server_args),
            self.start.0,
            self.start.1,
            self.stop.0,
            self.stop.1,
            shell_word(&self.binlog_tool),
            words(self.binlog_args()),
            shell_word(&self.client),
            words(self.client_args(run)),
            shell_word(&self.client),
            shell_word(&sock),
            self.gtid_state,
            shell_word(&self.client),
            shell_word(&sock),
        )
    }

    /// Starts the server, replays, sets the GTID position, shuts the server down cleanly.
    fn run(&self, env: &Env) -> Result<()> {
        if !self.left_out.is_empty() {
            env.report.warn(&format!(
                "the replay server takes only what InnoDB needs of the backup's backup-my.cnf; left out: {}",
                self.left_out.join(", ")
            ));
        }
        crate::server::check_confined(&self.datadir)?;
        let user = self.user.as_ref();
        // The socket's path must be short (108 bytes): a private directory under /tmp, the
        // server's own.
        let dir = crate::server::rundir(RUN)?;
        let run = dir.path();
        crate::server::give(run, user)?;
        let options = crate::server::write_options(run, "replay", &self.options)?;
        crate::server::give(&options, user)?;
        crate::server::check_reachable(&self.datadir, user, "the replay server")?;
        crate::server::check_reachable(run, user, "the replay server")?;
        // Whatever SQL the log holds writes nowhere but here.
        let confined = crate::server::confinement(&[&self.datadir, run], self.signed, "the replay server", env)?;
        let mut server = Server::start(
            &self.server,
            &self.server_args(&options, run),
            run,
            "replay",
            "the replay server",
            user,
            confined,
        )?;
        let mut control = server.connect(Duration::from_secs(600))?;
        env.report.say(&format!("replay server started on {}", self.datadir.display()));
        let replayed = match self.applier {
            _ if self.start == self.stop => Ok(()),
            Applier::Client => self.feed(run, env),
            Applier::SqlThread => self.apply(&mut control, run, env),
        };
        let result = replayed.and_then(|()| {
            if !self.gtid_state.is_empty() && coffer_mysql::meta::is_mariadb_gtid_list(&self.gtid_state) {
                control
                    .query(&format!("SET GLOBAL gtid_slave_pos = '{}'", self.gtid_state))
                    .map_err(|e| Error::other(e).context("cannot set the server's GTID position"))?;
            }
            Ok(())
        });
        let stopped = server.shutdown(control);
        result?;
        stopped
    }

    /// The log as the restored server's relay logs (links in its datadir, named in the relay
    /// log index), applied by its SQL thread from the backup's position until it reaches the
    /// stop (the last relay log ends there), then the replication settings removed.
    fn apply(&self, control: &mut Client, run: &Path, env: &Env) -> Result<()> {
        let sql = |c: &mut Client, q: &str| c.query(q).map_err(|e| Error::other(e).context(format!("replay: {q}")));
        let files = self.replayed();
        // Replication's own files, removed after replay unless the backup had them.
        let made: Vec<&str> =
            ["master.info", "relay-log.info"].into_iter().filter(|f| !self.datadir.join(f).exists()).collect();
        let give = |path: &Path| crate::server::give(path, self.user.as_ref());
        let mut index = String::new();
        let mut relays = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let name = format!("{RELAY}.{:06}", i + 1);
            let path = self.datadir.join(&name);
            if std::fs::hard_link(self.logs.join(f), &path).is_err() {
                std::fs::copy(self.logs.join(f), &path).with_context(|| format!("cannot write {}", path.display()))?;
            }
            give(&path)?;
            index.push_str(&format!("./{name}\n"));
            relays.push(name);
        }
        let index_path = self.datadir.join(format!("{RELAY}.index"));
        std::fs::write(&index_path, index).with_context(|| format!("cannot write {}", index_path.display()))?;
        give(&index_path)?;
        // Grants load first, so that GRANT and CREATE USER in the log apply. The names are
        // binary log file names (checked): no quote reaches the SQL.
        sql(control, "FLUSH PRIVILEGES")?;
        sql(
            control,
            &format!(
                "CHANGE MASTER TO MASTER_HOST='coffer-replay.invalid', MASTER_USER='none', MASTER_USE_GTID=no, \
                 MASTER_LOG_FILE='{}', MASTER_LOG_POS={}, RELAY_LOG_FILE='{}', RELAY_LOG_POS={}",
                self.start.0, self.start.1, relays[0], self.start.1
            ),
        )?;
        sql(control, "START SLAVE SQL_THREAD")?;
        // MASTER_POS_WAIT: the position reached (>= 0), -1 after the timeout, NULL when the SQL
        // thread stopped (on an error).
        let wait = format!("SELECT MASTER_POS_WAIT('{}', {}, 5)", self.stop.0, self.stop.1);
        let reached = loop {
            let rows = sql(control, &wait)?;
            match rows.first().and_then(|r| r.first()).cloned().flatten() {
                Some(n) if n == "-1" => continue,
                Some(_) => break true,
                None => break false,
            }
        };
        if !reached {
            let _ = sql(control, "STOP SLAVE");
            crate::bail!("replay failed (the server's SQL thread stopped): {}", applier_error(&run.join("replay.err")));
        }
        sql(control, "STOP SLAVE")?;
        sql(control, "RESET SLAVE ALL")?;
        let _ = std::fs::remove_file(self.datadir.join(format!("{RELAY}.index")));
        for f in made {
            let _ = std::fs::remove_file(self.datadir.join(f));
        }
        for name in relays {
            let _ = std::fs::remove_file(self.datadir.join(name));
        }
        env.report.say("replay ended");
        Ok(())
    }

    /// `mariadb-binlog ... | mariadb`: one process each, one session.
    fn feed(&self, run: &Path, env: &Env) -> Result<()> {
        let err = |name: &str| -> Result<std::fs::File> {
            std::fs::File::create(run.join(name)).with_context(|| format!("cannot create {}", run.display()))
        };
        let mut reader = Command::new(&self.binlog_tool);
        coffer_mysql::engine::program_env(&mut reader);
        let mut reader = reader
            .args(self.binlog_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err("binlog.err")?)
            .spawn()
            .with_context(|| format!("cannot run {}", self.binlog_tool.display()))?;
        let stdout = reader.stdout.take().expect("piped");
        let mut client = Command::new(&self.client);
        coffer_mysql::engine::program_env(&mut client);
        let client =
            client.args(self.client_args(run)).stdin(stdout).stdout(Stdio::null()).stderr(err("client.err")?).spawn();
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = reader.kill();
                let _ = reader.wait();
                return Err(Error::from(e).context(format!("cannot run {}", self.client.display())));
            }
        };
        let applied = client.wait()?;
        if !applied.success() {
            let _ = reader.kill();
        }
        let read = reader.wait()?;
        let last = |name: &str| last_line(&run.join(name));
        if !applied.success() {
            crate::bail!("replay failed ({}): {}", self.client.display(), last("client.err"));
        }
        if !read.success() {
            crate::bail!("replay failed ({}): {}", self.binlog_tool.display(), last("binlog.err"));
        }
        env.report.say("replay ended");
        Ok(())
    }
}

/// The SQL thread's error, as the server's error log says it ("Slave SQL: Error ..."), or the
/// log's last line.
fn applier_error(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(64 << 10)..];
    let said =
        tail.split(|b| *b == b'\n').rev().find(|l| l.windows(9).any(|w| w == b"Slave SQL")).map(crate::text::escape);
    said.unwrap_or_else(|| last_line(log))
}

/// The name of the replay server's private directories in the temporary directory:
/// `coffer-replay-RANDOM`.
const RUN: &str = "coffer-replay";

/// The relay logs' base name in the restored datadir while its SQL thread replays.
const RELAY: &str = "coffer-relay";

/// `coffer-pitr.json` in the restored datadir: what was replayed.
const REPORT: &str = "coffer-pitr.json";

fn write_report(dir: &Path, s: &PitrSummary) -> Result<()> {
    let path = dir.join(REPORT);
    std::fs::write(&path, serde_json::to_vec_pretty(s)?).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_unless_a_zone_is_given() {
        assert_eq!(Until::parse_time("1970-01-01 00:00:00").unwrap(), Until::Time(0));
        // date -u -d "2026-11-27 14:02:59" +%s
        assert_eq!(Until::parse_time("2026-11-27 14:02:59").unwrap(), Until::Time(1_795_788_179));
        assert_eq!(Until::parse_time("2026-11-27T14:02:59Z").unwrap(), Until::Time(1_795_788_179));
        assert_eq!(Until::parse_time("2026-11-27 15:02:59+01:00").unwrap(), Until::Time(1_795_788_179));
        assert_eq!(Until::parse_time("2026-11-27 09:02:59 -0500").unwrap(), Until::Time(1_795_788_179));
        assert_eq!(Until::parse_time("2024-02-29 00:00:00").unwrap(), Until::Time(1_709_164_800));
        for bad in [
            "2026-11-27",
            "2026-13-01 00:00:00",
            "2026-02-29 00:00:00",
            "2026-11-27 24:00:00",
            "2026-11-27 14:02:59.5",
            "2026-11-27 14:02:59 Europe/Paris",
            "2026-11-27 14:02:59+15:00",
            "２０２６-11-27 14:02:59",
        ] {
            assert!(Until::parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(Until::Time(1_795_788_179).shown(), "2026-11-27 14:02:59 UTC");
    }

    #[test]
    fn gtids_and_positions_parse_strictly() {
        let Until::Gtid(g) = Until::parse_gtid("0-1-123456,2-7-9").unwrap() else { panic!() };
        assert_eq!(gtid_text(&g), "0-1-123456,2-7-9");
        for bad in ["", "0-1", "0-1-x", "0-1-2,0-1-3", "a-b-c"] {
            assert!(Until::parse_gtid(bad).is_err(), "{bad}");
        }
        assert_eq!(Until::parse_position("binlog.000042:1234").unwrap(), Until::Position("binlog.000042".into(), 1234));
        for bad in [
            "binlog.000042",
            "binlog.000042:x",
            "../x.000001:5",
            "binlog.000042:2",
            "bin'log.000042:5",
            "b\\'.000001:5",
        ] {
            assert!(Until::parse_position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replay_commands_quote_what_they_name() {
        assert_eq!(shell_word(Path::new("/var/lib/x")), "/var/lib/x");
        assert_eq!(shell_word(Path::new("/tmp/a b'c")), r"'/tmp/a b'\''c'");
    }
}
