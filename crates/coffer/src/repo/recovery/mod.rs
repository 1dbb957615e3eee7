//! Windows of recovery: how far each backup can be recovered with the archive beside it, the
//! targets a point-in-time restore takes (`--until`), and the backup and chain it starts from
//! (chosen by position; for a time, the stop found by walking the log in order: `stop`).

pub(crate) mod stop;

pub use coffer_mysql::events::{gtid_text, parse_gtids, Gtid, Gtids};

use super::archive::Archive;
use super::chain::{Known, Neighbours};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_mysql::meta::binlog_file_number as file_number;
use std::collections::BTreeMap;
use stop::{time_stop, TimeStop};

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
    /// `--until-gtid G --exclusive`: every transaction logged before this one's GTID event, and
    /// it not (Appendix C.1).
    BeforeGtid(Gtid),
    /// `--until-position F:P --exclusive`: the log before the transaction whose GTID event
    /// starts there (and only such a position).
    BeforePosition(String, u32),
}

impl Until {
    /// The target of `--until`, `--until-gtid` or `--until-position`, whichever is given
    /// (the first, if several are), parsed; `None` if none is.
    pub fn given(time: Option<&str>, gtid: Option<&str>, position: Option<&str>) -> Result<Option<Self>> {
        match (time, gtid, position) {
            (Some(t), _, _) => Self::parse_time(t).map(Some),
            (_, Some(g), _) => Self::parse_gtid(g).map(Some),
            (_, _, Some(p)) => Self::parse_position(p).map(Some),
            _ => Ok(None),
        }
    }

    /// [`Until::given`], made [`Until::exclusive`] with `exclusive` (`--exclusive`, a usage
    /// error without a target).
    pub fn chosen(
        time: Option<&str>,
        gtid: Option<&str>,
        position: Option<&str>,
        exclusive: bool,
    ) -> Result<Option<Self>> {
        match (Self::given(time, gtid, position)?, exclusive) {
            (Some(until), true) => until.exclusive().map(Some),
            (None, true) => Err(Error::usage("--exclusive goes with --until-gtid or --until-position")),
            (until, false) => Ok(until),
        }
    }

    /// The same target, exclusive (`--exclusive`): stop just before the transaction named by
    /// one GTID, or at a position where a transaction begins; a usage error for a time or
    /// several GTIDs.
    pub fn exclusive(self) -> Result<Self> {
        match self {
            Until::Gtid(g) => match g.iter().next() {
                Some((d, (s, n))) if g.len() == 1 => Ok(Until::BeforeGtid((*d, *s, *n))),
                _ => Err(Error::usage(format!(
                    "--exclusive stops before one transaction: give one GTID, not {} (transactions of several \
                     domains have no one place in the log to stop before)",
                    gtid_text(&g)
                ))),
            },
            Until::Position(f, p) => Ok(Until::BeforePosition(f, p)),
            Until::Time(_) => Err(Error::usage("--exclusive goes with --until-gtid or --until-position")),
            before => Ok(before),
        }
    }

    /// `2026-11-27 14:02:59` (UTC), with `T` for the space if wished, and a zone if given:
    /// `Z`, `UTC`, `+01:00`, `-0500`.
    pub fn parse_time(text: &str) -> Result<Self> {
        Self::parse_moment("--until", text).map(Until::Time)
    }

    /// A time as [`Until::parse_time`] reads it, in Unix seconds, given to option `option`.
    pub fn parse_moment(option: &str, text: &str) -> Result<i64> {
        let bad = |why: &str| {
            Error::usage(format!(
                "{option} {text:?}: {why} (expected YYYY-MM-DD HH:MM:SS, UTC unless a zone such as +01:00 is given)"
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
        Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
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
            Until::BeforeGtid((d, s, n)) => format!("before GTID {d}-{s}-{n}"),
            Until::BeforePosition(f, p) => format!("before the transaction at {f}:{p}"),
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
    /// Read without a key: where each file ends rests on the segments' names.
    pub by_names: bool,
}

/// How far a backup can be recovered: from its binlog position to the end of the archive's
/// unbroken run from there (each file in it complete by [`crate::repo::archive::join`]'s rule,
/// the one point-in-time recovery and `binlog fetch` follow).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The backup's binlog position.
    pub from: (String, u32),
    /// The last position the archive reaches from it without a gap.
    pub to: (String, u32),
    /// The time of the last event there (with a key).
    pub to_time: Option<i64>,
    /// Read without a key: where each file ends rests on the segments' names, which anyone who
    /// can write the store can change (with a key, their sealed descriptions say it).
    #[serde(default)]
    pub by_names: bool,
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
    let segments = crate::repo::archive::segments(binlogs, env)?;
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Ok((None, vec![None; positions.len()]));
    };
    let empty: &[Unlock] = &[];
    let archive = Archive::new(segments.clone(), unlocks.unwrap_or(empty), env)?;
    let names = archive.names();
    // Each segment's run's last segment.
    let mut run_end = vec![0; names.len()];
    let mut end = names.len() - 1;
    for i in (0..names.len()).rev() {
        if i + 1 < names.len() && archive.joins[i + 1].is_gap() {
            end = i;
        }
        run_end[i] = end;
    }
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
                by_names: unlocks.is_none(),
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
        gaps: (1..names.len())
            .filter(|i| archive.joins[*i].is_gap())
            .map(|i| ((names[i - 1].file.clone(), names[i - 1].end), (names[i].file.clone(), names[i].start)))
            .collect(),
        by_names: unlocks.is_none(),
    };
    Ok((Some(overview), windows))
}

/// The backups under the prefix that recorded a binlog position, oldest position first.
fn backups_with_positions(
    prefix: &str,
    unlocks: &[Unlock],
    env: &Env,
) -> Result<(Vec<Known>, crate::repo::chain::Neighbours)> {
    let neighbours = crate::repo::chain::neighbours(&Location::Object(prefix.to_owned()), &[], unlocks, env)?;
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

/// Where a point-in-time restore to a target starts: the archive, the chain of the newest
/// backup before the target (full first, the backup last), its binlog position, and (for a
/// time) the stop the walk found.
pub(crate) struct Route<'a> {
    /// The archive's segments, with what reads them.
    pub archive: Archive<'a>,
    /// The chain to restore.
    pub chain: Vec<Known>,
    /// Where replay starts: the backup's binlog position.
    pub start: (String, u32),
    /// Where replay stops, if the walk for a time found it.
    pub found_stop: Option<(String, u32)>,
}

/// The route of a point-in-time restore to `until` from the backups under `backups` and the
/// archive under `binlogs`; refused, saying why, if there is none.
pub(crate) fn route<'a>(
    backups: &str,
    binlogs: &str,
    until: &Until,
    unlocks: &'a [Unlock],
    env: &'a Env,
) -> Result<Route<'a>> {
    let archive = Archive::new(super::archive::segments(binlogs, env)?, unlocks, env)?;
    if archive.segments.is_empty() {
        crate::bail!("{binlogs}: no archived binary log there");
    }
    let (known, neighbours) = backups_with_positions(backups, unlocks, env)?;
    if known.is_empty() {
        crate::bail!(
            "{backups}: no backup there recorded a binary log position (a backup of a server with log_bin on, read with the secrets given)"
        );
    }
    choose_route(until, archive, &known, &neighbours)
}

/// The chain (full first) a point-in-time restore to `until` would restore: the newest backup
/// under `backups` before the target, as `route` chooses it. For a drill's space check.
pub fn chain_until(backups: &str, binlogs: &str, until: &Until, unlocks: &[Unlock], env: &Env) -> Result<Vec<Known>> {
    let archive = Archive::new(super::archive::segments(binlogs, env)?, unlocks, env)?;
    let (known, neighbours) = backups_with_positions(backups, unlocks, env)?;
    if archive.segments.is_empty() || known.is_empty() {
        // The restore says why, in its words.
        return Ok(Vec::new());
    }
    Ok(choose_route(until, archive, &known, &neighbours)?.chain)
}

fn choose_route<'a>(
    until: &Until,
    archive: Archive<'a>,
    known: &[Known],
    neighbours: &Neighbours,
) -> Result<Route<'a>> {
    let (backup, found_stop) = choose_backup(until, known, &archive)?;
    let chain = match backup.link.kind {
        coffer_mysql::meta::BackupKind::Full => vec![backup.clone()],
        _ => super::chain::resolve(backup, neighbours)?,
    };
    let start = start_of(backup);
    Ok(Route { archive, chain, start, found_stop })
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
        Until::Position(file, pos) | Until::BeforePosition(file, pos) => at_or_before(file, u64::from(*pos))
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
        // A backup that has not applied the transaction: its GTID event lies after the
        // backup's position.
        Until::BeforeGtid((d, _, n)) => backups
            .iter()
            .rev()
            .find(|k| {
                let state = k.info.binlog.as_ref().and_then(|b| parse_gtids(b.gtid.as_deref()?)).unwrap_or_default();
                state.get(d).is_none_or(|(_, m)| m < n)
            })
            .map(|k| (k, None))
            .ok_or_else(|| before(oldest, "every backup holds it already".into())),
        Until::Time(t) => {
            let starts: Vec<(String, u32)> = backups.iter().map(start_of).collect();
            match time_stop(&archive.names(), &archive.joins, &mut |i| archive.events(i), &starts, *t)? {
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
    fn the_target_given_is_the_first_of_the_three_options() {
        assert_eq!(Until::given(None, None, None).unwrap(), None);
        assert_eq!(Until::given(Some("1970-01-01 00:00:00"), Some("0-1-2"), None).unwrap(), Some(Until::Time(0)));
        assert_eq!(Until::given(None, Some("0-1-2"), None).unwrap(), Some(Until::parse_gtid("0-1-2").unwrap()));
        let at = Until::given(None, None, Some("binlog.000042:1234")).unwrap();
        assert_eq!(at, Some(Until::Position("binlog.000042".into(), 1234)));
        let bad = Until::given(None, Some("1-2"), None).unwrap_err();
        assert_eq!(bad.exit_code(), crate::error::exit::USAGE);
    }

    #[test]
    fn the_exclusive_form_is_one_gtid_or_a_position() {
        let given = |g, p| Until::given(None, g, p).unwrap().unwrap().exclusive();
        assert_eq!(given(Some("0-1-5"), None).unwrap(), Until::BeforeGtid((0, 1, 5)));
        assert_eq!(given(Some("0-1-5"), None).unwrap().shown(), "before GTID 0-1-5");
        let at = given(None, Some("binlog.000042:1234")).unwrap();
        assert_eq!(at, Until::BeforePosition("binlog.000042".into(), 1234));
        assert_eq!(at.shown(), "before the transaction at binlog.000042:1234");
        assert_eq!(at.clone().exclusive().unwrap(), at);
        let err = given(Some("0-1-5,1-1-2"), None).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(err.one_line().contains("give one GTID, not 0-1-5,1-1-2"), "{}", err.one_line());
        assert_eq!(Until::chosen(None, Some("0-1-5"), None, true).unwrap(), Some(Until::BeforeGtid((0, 1, 5))));
        assert_eq!(Until::chosen(None, None, None, true).unwrap_err().exit_code(), crate::error::exit::USAGE);
        let err = Until::Time(0).exclusive().unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert_eq!(err.one_line(), "--exclusive goes with --until-gtid or --until-position");
        let err = Until::parse_moment("--from", "2026-11-27").unwrap_err().one_line();
        assert!(err.starts_with("--from \"2026-11-27\": too short"), "{err}");
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

    /// Seals a segment `name` holding `events` (any bytes: nothing here parses them), with
    /// the description `said` (`closed` as the archiver found it), stored as `object`.
    fn sealed(
        dir: &std::path::Path,
        keys: &crate::keys::KeySources,
        object: &str,
        said: serde_json::Value,
        len: usize,
    ) {
        let files = vec![
            (crate::repo::archive::EVENTS_ENTRY.to_owned(), std::sync::Arc::new(vec![7u8; len])),
            (crate::repo::archive::SEGMENT_ENTRY.to_owned(), std::sync::Arc::new(serde_json::to_vec(&said).unwrap())),
        ];
        let url = format!("file://{}/{object}", dir.display());
        let mut b = crate::backup::BackupSpec::new(
            crate::source::SourceSpec::Memory { name: object.into(), files },
            Location::Object(url),
        );
        b.keys = keys.clone();
        b.validate = false;
        crate::backup::backup(&b, &Env::default()).unwrap();
    }

    /// Issue 28, part 4 (second round): `binlog fetch` and the catalog's "recoverable to"
    /// trusted a segment's name for its file's completeness. A segment the archiver sealed as
    /// not closed, copied under a `-closed` name (its tail lost), made fetch write a file that
    /// looked whole and the catalog reach past it. Now both follow PITR's rule (one function):
    /// with a key, the sealed description decides; without, the catalog says names decide.
    #[test]
    fn a_file_is_complete_by_its_description_for_fetch_and_the_catalog_as_for_pitr() {
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::keys::KeySources {
            master_keys: vec![coffer_crypto::MasterKey::generate().unwrap()],
            ..Default::default()
        };
        let said = |file: &str, end: u32, closed: bool| serde_json::json!({"file": file, "start": 4, "end": end, "closed": closed});
        let name = |file: &str, end: u32, closed: bool| {
            crate::repo::archive::SegmentName { file: file.into(), start: 4, end, closed }.object_name()
        };
        let store = dir.path().join("binlog");
        std::fs::create_dir(&store).unwrap();
        // b.000001 sealed as not closed at 100 (its tail, and the ROTATE, never archived), then
        // renamed `-closed`; b.000002 after it.
        sealed(&store, &keys, &name("b.000001", 100, true), said("b.000001", 100, false), 96);
        sealed(&store, &keys, &name("b.000002", 50, false), said("b.000002", 50, false), 46);
        let prefix = format!("file://{}/", store.display());
        let env = Env::default();
        let unlocks = crate::keys::unlocks(&keys, &env).unwrap();
        let from = [Some(("b.000001".to_owned(), 4u64))];
        let (overview, windows) = super::windows(&prefix, &from, Some(&unlocks), &env).unwrap();
        let w = windows[0].clone().expect("a window");
        assert_eq!(
            (w.to, w.by_names),
            (("b.000001".to_owned(), 100), false),
            "known complete to the renamed segment's end"
        );
        assert_eq!(overview.unwrap().gaps, vec![(("b.000001".to_owned(), 100), ("b.000002".to_owned(), 4))]);
        let out = dir.path().join("fetched");
        let err = crate::binlog::fetch(&prefix, None, &out, &keys, &env).unwrap_err().one_line();
        assert!(
            err.starts_with(
                "the archive has a gap: b.000001 ends at 100 by its segments' names only, and the description of "
            ) && err.contains("its name is not its description's (its closed is false)")
                && err.ends_with("the archive is known complete to b.000001:100"),
            "{err}"
        );
        assert!(!out.join("b.000001").exists(), "nothing that looks whole");
        // Without a key: names decide, and the catalog says so.
        let (overview, windows) = super::windows(&prefix, &from, None, &env).unwrap();
        assert!(overview.unwrap().by_names);
        let w = windows[0].clone().expect("a window");
        assert_eq!((w.to.clone(), w.by_names), (("b.000002".to_owned(), 50), true));
        let row = serde_json::json!({"time": "t", "bytes": 1, "name": "n", "pitr": w});
        assert!(crate::repo::shown::row_line(&row, true).ends_with("recoverable to b.000002:50 (by the segments' names: without a key, no sealed description says where each file ends)"));
        // Sealed as closed: complete, and fetched whole.
        std::fs::remove_file(store.join(name("b.000001", 100, true))).unwrap();
        sealed(&store, &keys, &name("b.000001", 100, true), said("b.000001", 100, true), 96);
        let (_, windows) = super::windows(&prefix, &from, Some(&unlocks), &env).unwrap();
        assert_eq!(windows[0].as_ref().unwrap().to, ("b.000002".to_owned(), 50));
        let files = crate::binlog::fetch(&prefix, None, &out, &keys, &env).unwrap();
        assert_eq!(files, ["b.000001", "b.000002"]);
        assert_eq!(std::fs::metadata(out.join("b.000001")).unwrap().len(), 100);
    }
}
