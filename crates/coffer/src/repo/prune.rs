//! The prune job: which backups under a prefix go, by the rules of `crate::repo::retention`, with
//! what the listing, the keys, and the other jobs' leases (`crate::repo::lease`) say; then the
//! deletions, each made only while the prune's own lease holds.

use crate::error::{Error, Result};
use crate::keys::KeySources;
use crate::names::name_time;
use crate::repo::lease::{Body, Lease};
use crate::repo::retention::{backup_time, Candidate, Chained, Policy, Rules, State};
use crate::repo::{backups, Backup};
use crate::Env;
use coffer_crypto::Unlock;
use coffer_format::DATA_OFFSET;
use coffer_image::catalog::RECORD_SUFFIX;
use coffer_mysql::meta::binlog_file_number;
use std::time::{Duration, Instant};

/// Point-in-time recovery that prune keeps: any moment of the last `window` seconds, from the
/// archive under `binlogs`.
#[derive(Debug, Clone)]
pub struct KeepPitr {
    /// Seconds back from now.
    pub window: i64,
    /// The binary log archive's prefix.
    pub binlogs: String,
}

impl KeepPitr {
    /// `--keep-pitr SPAN` (in seconds), if given, from the archive under `binlogs` [default:
    /// `prefix` + binlog/].
    pub fn given(window: Option<i64>, binlogs: Option<&str>, prefix: &str) -> Option<Self> {
        let binlogs = binlogs.map_or_else(|| crate::repo::recovery::default_binlog_prefix(prefix), str::to_owned);
        window.map(|window| KeepPitr { window, binlogs })
    }
}

/// What prune keeps and deletes.
#[derive(Debug)]
pub struct PrunePlan {
    /// The backups, newest first, each with the reasons it is kept (none: it goes) and its
    /// chain as far as it is known.
    pub backups: Vec<(Backup, Vec<String>, Chained)>,
    /// With `KeepPitr`: the archive's segments that go (whole files older than the file of
    /// the backup the window starts from), oldest first.
    pub segments: Vec<Backup>,
    /// Set when the plan deletes every backup, or the newest: it is carried out only when
    /// that is asked for by name.
    pub refusal: Option<String>,
    /// The prune's lease (none for a dry run), held while the plan is carried out.
    lease: Option<Lease>,
    /// When the other jobs' leases were read: the plan is good for a lease's life from then.
    planned: Instant,
}

/// The plan of a prune of `url` (see `crate::repo::retention` for the rules). Unless `dry_run`, the
/// prune's lease is put first, then the other jobs' leases are read: a backup another job uses
/// is kept, and a second prune is refused.
pub fn prune_plan(
    url: &str,
    policy: Policy,
    pitr: Option<&KeepPitr>,
    keys: Option<&KeySources>,
    dry_run: bool,
    env: &Env,
) -> Result<PrunePlan> {
    if policy.is_empty() && pitr.is_none() {
        return Err(Error::usage(
            "prune needs --keep-last, --keep-daily, --keep-weekly or --keep-pitr (it will not delete every backup)",
        ));
    }
    crate::repo::prefix(url, env)?;
    let unlocks = match keys {
        Some(k) => Some(crate::keys::unlocks(k, env)?),
        None => None,
    };
    if pitr.is_some() && unlocks.is_none() {
        return Err(Error::usage(
            "--keep-pitr needs the key: the backups' binlog positions are in their sealed descriptions",
        ));
    }
    let lease = if dry_run { None } else { Some(Lease::take(url, "prune", env)?) };
    let planned = Instant::now();
    let leases = crate::repo::lease::active(url, env)?;
    let mine = lease.as_ref().map(Lease::name);
    if let Some((_, other)) = leases.iter().find(|(n, b)| b.job == "prune" && Some(n.as_str()) != mine) {
        crate::bail!(
            "another prune is running under {url} ({}, its lease runs to {} UTC): one prune at a time",
            other.who(),
            crate::text::utc(other.expires)
        );
    }
    // Listed after the leases are read: a backup that a lease names is listed.
    let found = backups(url, env)?;
    let mut listed: Vec<(Backup, Candidate)> = found
        .into_iter()
        .map(|b| {
            let c = candidate(&b, unlocks.as_deref(), env);
            (Backup { time: c.time, ..b }, c)
        })
        .collect();
    listed.sort_by(|a, b| b.1.time.cmp(&a.1.time).then_with(|| b.1.name.cmp(&a.1.name)));
    let (found, candidates): (Vec<Backup>, Vec<Candidate>) = listed.into_iter().unzip();
    let now = crate::repo::lease::now();
    let rules = Rules {
        policy,
        pitr_start: pitr.map(|p| now - p.window),
        now,
        in_use: leases
            .iter()
            .filter(|(_, b)| b.job != "prune")
            .flat_map(|(_, b)| b.protects.iter().map(|n| (n.clone(), b.who())))
            .collect(),
    };
    let plan = crate::repo::retention::plan(&candidates, &rules);
    for w in &plan.warnings {
        env.report.warn(w);
    }
    let segments = match pitr {
        Some(p) => pitr_segments(&candidates, plan.pitr_base, p, &leases, env)?,
        None => Vec::new(),
    };
    let refusal = plan.refusal(&candidates);
    let chains = candidates.iter().map(|c| chain_of(&c.state)).collect::<Vec<_>>();
    let backups = found.into_iter().zip(plan.reasons).zip(chains).map(|((b, r), c)| (b, r, c)).collect();
    Ok(PrunePlan { backups, segments, refusal, lease, planned })
}

/// What is known of a listed backup: with a key, what its sealed header and description say
/// (or that it does not open); without one, what its catalog record says in the clear.
fn candidate(b: &Backup, unlocks: Option<&[Unlock]>, env: &Env) -> Candidate {
    let named = name_time(&b.listed.name);
    let (time, state) = if b.listed.size <= DATA_OFFSET {
        let why = format!("not a coffer image ({} bytes)", b.listed.size);
        (backup_time(named, None, b.listed.modified), State::Unreadable(why))
    } else if let Some(unlocks) = unlocks {
        match crate::repo::records::sealed_of(&b.listed, unlocks, env) {
            Ok((created, info)) => {
                let chain = match info.as_ref().and_then(|i| i.chain.clone()) {
                    Some(link) if link.is_consistent() => Chained::Link(link),
                    // A sealed link no writer makes: its chain is not known.
                    Some(_) => Chained::Unknown,
                    None => Chained::Alone,
                };
                let binlog = info.and_then(|i| i.binlog).map(|p| (binlog_file_number(&p.file), p.position));
                (backup_time(named, Some(created), b.listed.modified), State::Sealed { chain, binlog })
            }
            Err(e) => (backup_time(named, None, b.listed.modified), State::Unreadable(e.one_line())),
        }
    } else {
        let chain = crate::repo::records::chains(std::slice::from_ref(b), env).pop().unwrap_or(Chained::Unknown);
        (backup_time(named, None, b.listed.modified), State::Unverified(chain))
    };
    Candidate { name: b.listed.name.clone(), time, state }
}

fn chain_of(state: &State) -> Chained {
    match state {
        State::Sealed { chain, .. } | State::Unverified(chain) => chain.clone(),
        State::Unreadable(_) => Chained::Unknown,
    }
}

/// The archive's segments that go: whole files older than the file of the backup the window
/// starts from, and older than any file a job replays from. None at all when a backup could
/// not be read (it might be the one the window needs), or when that backup's position is past
/// the archive's end (a description no server wrote).
fn pitr_segments(
    candidates: &[Candidate],
    base: Option<usize>,
    p: &KeepPitr,
    leases: &[(String, Body)],
    env: &Env,
) -> Result<Vec<Backup>> {
    if candidates.iter().any(|c| matches!(c.state, State::Unreadable(_))) {
        env.report.warn("a backup under the prefix could not be read: no binary log is deleted");
        return Ok(Vec::new());
    }
    let Some(State::Sealed { binlog: Some((file, _)), .. }) = base.map(|i| &candidates[i].state) else {
        return Ok(Vec::new());
    };
    let replayed = leases.iter().filter_map(|(_, b)| b.binlog_from.as_deref()).map(binlog_file_number);
    let keep_from = replayed.fold(*file, u64::min);
    let segments = crate::repo::archive::segments(&p.binlogs, env)?;
    let last = segments.iter().map(|(s, _)| binlog_file_number(&s.file)).max().unwrap_or(0);
    if *file > last.saturating_add(1) {
        env.report.warn(&format!(
            "{}, the backup the recovery window starts from, says binlog file {file}, past the archive's last ({last}): \
             no binary log is deleted",
            crate::text::escape(candidates[base.unwrap_or(0)].name.as_bytes())
        ));
        return Ok(Vec::new());
    }
    Ok(segments
        .into_iter()
        .filter(|(s, _)| binlog_file_number(&s.file) < keep_from)
        .map(|(_, listed)| Backup { time: listed.modified, listed })
        .collect())
}

impl PrunePlan {
    /// Deletes `doomed` (each catalog record first, so that a record never outlives its
    /// image), while the plan is good: the prune's lease held, and within a lease's life of
    /// reading the others' (a backup that named its parent after that waits for this prune to
    /// end, a lease's life at most). Returns the bytes freed.
    pub fn apply(&self, doomed: &[&Backup]) -> Result<u64> {
        let good_for = Duration::from_secs((crate::repo::lease::LIFE - 2 * 60) as u64);
        let mut freed = 0;
        for (n, b) in doomed.iter().enumerate() {
            let lapsed = self.lease.as_ref().is_some_and(|l| !l.held());
            if lapsed || self.planned.elapsed() > good_for {
                crate::bail!(
                    "the prune ran longer than its plan is good for ({} s): stopped after deleting {n}; run it again",
                    self.planned.elapsed().as_secs()
                );
            }
            let record = b.listed.object.with_suffix(RECORD_SUFFIX);
            match record.delete() {
                Ok(()) | Err(coffer_store::StoreError::NotFound(_)) => {}
                // The store's error names the object ("cannot delete URL: ...").
                Err(e) => return Err(Error::from(e)),
            }
            match b.listed.object.delete() {
                Ok(()) | Err(coffer_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(Error::from(e)),
            }
            freed += b.listed.size;
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_in_time_is_kept_from_the_archive_beside_the_backups_unless_named() {
        assert!(KeepPitr::given(None, None, "s3://b/p/").is_none());
        let beside = KeepPitr::given(Some(3600), None, "s3://b/p/").unwrap();
        assert_eq!((beside.window, beside.binlogs.as_str()), (3600, "s3://b/p/binlog/"));
        assert_eq!(KeepPitr::given(Some(1), Some("s3://b/logs/"), "s3://b/p/").unwrap().binlogs, "s3://b/logs/");
    }
}
