//! The catalog and prune jobs: the backups under a prefix of an object store, what each holds,
//! and which a retention policy keeps.

use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_format::DATA_OFFSET;
use coffer_image::catalog::RECORD_SUFFIX;
use coffer_mysql::meta::ChainLink;
use serde_json::json;

/// The backups under a prefix, as `catalog` shows them.
#[derive(Debug)]
pub struct Catalog {
    /// The backups, newest first.
    pub backups: Vec<Backup>,
    /// One JSON object per backup (name, url, bytes, time; with a key: slots, files, data
    /// bytes, the backup's description, or the error that kept it from being read).
    pub rows: Vec<serde_json::Value>,
    /// Backups that could not be read with the secrets given.
    pub unread: usize,
    /// The binary log archive beside the backups, if there is one.
    pub archive: Option<crate::pitr::Overview>,
}

/// Lists the backups under `url`, and with `keys` what each holds (from its catalog record, or
/// its index when the record is missing or does not match): one backup that does not open
/// does not hide the others. With the binary log archive under `binlogs` (default: `binlog/`
/// under the prefix), each backup with a binlog position says how far it can be recovered.
pub fn catalog(url: &str, binlogs: Option<&str>, keys: Option<&KeySources>, env: &Env) -> Result<Catalog> {
    let backups = backups(url, env)?;
    // Secrets are read (and a passphrase asked for) once, for every backup.
    let unlocks = match keys {
        Some(k) => Some(crate::keys::unlocks(k, env)?),
        None => None,
    };
    let mut rows = Vec::new();
    let mut unread = 0;
    // Without a key, the records' links still say where each backup sits in its chain.
    let keyless = if unlocks.is_none() { chains(&backups, None, env) } else { Vec::new() };
    for (i, b) in backups.iter().enumerate() {
        let mut v = json!({
            "name": b.listed.name,
            "url": b.listed.object.url(),
            "bytes": b.listed.size,
            "time": crate::text::utc(b.time),
        });
        if let Some(unlocks) = &unlocks {
            if let Err(e) = details(&b.listed, unlocks, &mut v, env) {
                let why = e.one_line();
                env.report.warn(&format!("{}: {why}", b.listed.object.url()));
                v["error"] = json!(why);
                unread += 1;
            }
        }
        v["chain"] = match (v.get("backup").and_then(|b| b.get("chain")), keyless.get(i)) {
            (Some(c), _) => c.clone(),
            (None, Some(Chained::Link(l))) => serde_json::to_value(l).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        rows.push(v);
    }
    let positions: Vec<Option<(String, u64)>> = rows
        .iter()
        .map(|v| {
            Some((v["backup"]["binlog"]["file"].as_str()?.to_owned(), v["backup"]["binlog"]["position"].as_u64()?))
        })
        .collect();
    let binlogs = binlogs.map_or_else(|| crate::pitr::default_binlog_prefix(url), str::to_owned);
    let archive = match crate::pitr::windows(&binlogs, &positions, unlocks.as_deref(), env) {
        Ok((archive, windows)) => {
            for (v, w) in rows.iter_mut().zip(windows) {
                v["pitr"] = serde_json::to_value(w).unwrap_or_default();
            }
            archive
        }
        Err(e) => {
            env.report.warn(&format!("{binlogs}: {}", e.one_line()));
            None
        }
    };
    Ok(Catalog { backups, rows, unread, archive })
}

/// A backup under the prefix: an object whose name ends in `.coffer`.
#[derive(Debug)]
pub struct Backup {
    /// The object, as the listing gave it.
    pub listed: coffer_store::Listed,
    /// Unix seconds: from the name coffer gives backups under a prefix, else the object's
    /// modification time.
    pub time: i64,
}

fn prefix(url: &str, env: &Env) -> Result<coffer_store::Object> {
    if !url.ends_with('/') {
        return Err(Error::usage(format!("{url}: a prefix ends with '/'")));
    }
    match Location::parse(url) {
        Location::Object(u) => Ok(coffer_store::Object::open(&u, &env.store)?),
        _ => Err(Error::usage(format!("{url} is not an object URL"))),
    }
}

/// The backups under the prefix `url` (objects named `*.coffer`), newest first.
pub fn backups(url: &str, env: &Env) -> Result<Vec<Backup>> {
    let listed = prefix(url, env)?.list().with_context(|| format!("cannot list {url}"))?;
    let mut out: Vec<Backup> = listed
        .into_iter()
        .filter(|l| l.name.ends_with(".coffer"))
        .map(|l| Backup { time: name_time(&l.name).unwrap_or(l.modified), listed: l })
        .collect();
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.listed.name.cmp(&a.listed.name)));
    Ok(out)
}

/// The time in a name like `2026-11-24T08-00-00Z.coffer`.
fn name_time(name: &str) -> Option<i64> {
    let t = name.strip_suffix("Z.coffer")?;
    let n: Vec<i64> = t.split(['-', 'T']).map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [y, mo, d, h, mi, s] = n[..] else { return None };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// What a key shows of a backup: read from its catalog record (the image's header and the
/// record: two small requests), or, without a record that matches the image, through the
/// image's index.
fn details(listed: &coffer_store::Listed, unlocks: &[Unlock], v: &mut serde_json::Value, env: &Env) -> Result<()> {
    let head = listed.object.read_head(DATA_OFFSET)?;
    let opened = coffer_image::open_header(&head.bytes, unlocks)?;
    v["key_slots"] = json!(opened.header.slots.iter().filter(|s| !s.is_empty()).count());
    match record(listed, &opened) {
        Ok(Some(r)) => {
            v["files"] = r["files"].clone();
            v["data_bytes"] = r["logical_bytes"].clone();
            v["backup"] = r["backup"].clone();
            v["metadata"] = json!("record");
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => env.report.warn(&format!("{}: {}; reading its index instead", listed.object.url(), e.one_line())),
    }
    // Through the index: the header, END frame, index and the backup's description.
    let info = crate::read::info_with(&Location::Object(listed.object.url().to_owned()), unlocks, env)?;
    v["files"] = json!(info.files);
    v["data_bytes"] = json!(info.bytes);
    v["backup"] = serde_json::to_value(&info.backup).unwrap_or_default();
    v["metadata"] = json!("index");
    Ok(())
}

/// A server backup's description (`None`: the image holds no server backup): from its catalog
/// record when it has one that matches the image (two small reads), else through its index.
pub(crate) fn description_of(
    listed: &coffer_store::Listed,
    unlocks: &[Unlock],
    env: &Env,
) -> Result<Option<coffer_mysql::meta::BackupInfo>> {
    let head = listed.object.read_head(DATA_OFFSET)?;
    let opened = coffer_image::open_header(&head.bytes, unlocks)?;
    if let Ok(Some(r)) = record(listed, &opened) {
        return Ok(serde_json::from_value(r["backup"].clone()).ok());
    }
    Ok(crate::read::info_with(&Location::Object(listed.object.url().to_owned()), unlocks, env)?.backup)
}

/// The backup's catalog record, if it has one; an error if it has one that does not belong to
/// the image as it is now.
fn record(listed: &coffer_store::Listed, opened: &coffer_image::OpenedImage) -> Result<Option<serde_json::Value>> {
    let Some(r) = read_record(&listed.object, opened)? else { return Ok(None) };
    if r["image_bytes"].as_u64() != Some(listed.size) {
        crate::bail!(
            "catalog record: the record is of a {} byte image, the object has {}",
            r["image_bytes"],
            listed.size
        );
    }
    Ok(Some(r))
}

/// The catalog record beside `image` (opened), if there is one.
pub fn read_record(
    image: &coffer_store::Object,
    opened: &coffer_image::OpenedImage,
) -> Result<Option<serde_json::Value>> {
    let Some(bytes) = record_bytes(image)? else { return Ok(None) };
    let json = coffer_image::catalog::open_record(&opened.keys, &opened.header.image_id, &bytes)?;
    Ok(Some(serde_json::from_slice(&json).context("catalog record: malformed JSON")?))
}

/// How many of each kind to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// The newest N.
    pub last: usize,
    /// The newest of each of the last N days that have one.
    pub daily: usize,
    /// The newest of each of the last N weeks (Monday to Sunday) that have one.
    pub weekly: usize,
}

/// For backups at `times` (newest first), the reasons each is kept; none: it goes.
pub fn plan(times: &[i64], p: Policy) -> Vec<Vec<&'static str>> {
    let mut keep = vec![Vec::new(); times.len()];
    for k in keep.iter_mut().take(p.last) {
        k.push("last");
    }
    let mut by = |n: usize, reason: &'static str, period: &dyn Fn(i64) -> i64| {
        let mut seen = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let key = period(*t);
            if seen.len() < n && !seen.contains(&key) {
                seen.push(key);
                keep[i].push(reason);
            }
        }
    };
    by(p.daily, "daily", &|t| t.div_euclid(86_400));
    // 1970-01-01 was a Thursday: +3 days makes weeks start on Mondays.
    by(p.weekly, "weekly", &|t| (t.div_euclid(86_400) + 3).div_euclid(7));
    keep
}

/// What prune knows of a backup's place in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chained {
    /// Its link (from its catalog record, or with a key from its description).
    Link(ChainLink),
    /// A backup that needs no other (an image made before chains, or not of a server).
    Alone,
    /// No record says, and no key was given to read the image.
    Unknown,
}

/// The bytes of the catalog record beside `image`, if there is one. Records are small; whoever
/// can write to the bucket (no key needed) chooses this object's size, so it is read with a
/// cap, never whole.
fn record_bytes(image: &coffer_store::Object) -> Result<Option<Vec<u8>>> {
    match image.with_suffix(RECORD_SUFFIX).get_at_most(coffer_image::catalog::MAX_RECORD_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(coffer_store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The chain links of a version 2 catalog record beside a backup's image, as written by
/// [`links_of`]; read without a key.
fn record_chain(listed: &coffer_store::Listed) -> Result<Option<Chained>> {
    let Some(bytes) = record_bytes(&listed.object)? else { return Ok(None) };
    Ok(Some(match coffer_image::catalog::record_links(&bytes)? {
        Some(links) => match serde_json::from_slice::<ChainLink>(&links) {
            Ok(link) if link.is_consistent() => Chained::Link(link),
            _ => Chained::Unknown,
        },
        None => Chained::Alone,
    }))
}

/// The links a catalog record carries in the clear for a backup described by `backup` (its
/// description as JSON): its chain link, if it has one.
pub fn links_of(backup: &serde_json::Value) -> Option<Vec<u8>> {
    let link: ChainLink = serde_json::from_value(backup.get("chain")?.clone()).ok()?;
    serde_json::to_vec(&link).ok()
}

/// Where each backup sits in its chain: from its record, else (with a key) its description.
pub fn chains(found: &[Backup], unlocks: Option<&[Unlock]>, env: &Env) -> Vec<Chained> {
    found
        .iter()
        .map(|b| {
            let from_record = record_chain(&b.listed).unwrap_or_else(|e| {
                env.report.warn(&format!("{}: its catalog record: {}", b.listed.object.url(), e.one_line()));
                None
            });
            let Some(unlocks) = unlocks else { return from_record.unwrap_or(Chained::Unknown) };
            // With a key, the sealed description decides; the clear links must agree with it.
            match description_of(&b.listed, unlocks, env) {
                Ok(d) => {
                    let sealed = d.and_then(|d| d.chain).map_or(Chained::Alone, Chained::Link);
                    if from_record.as_ref().is_some_and(|c| *c != sealed) {
                        env.report.warn(&format!(
                            "{}: the chain links in its catalog record differ from its sealed description: the description is used",
                            b.listed.object.url()
                        ));
                    }
                    sealed
                }
                Err(e) => {
                    env.report.warn(&format!("{}: {}", b.listed.object.url(), e.one_line()));
                    from_record.unwrap_or(Chained::Unknown)
                }
            }
        })
        .collect()
}

/// Adds to `reasons` (of backups newest first) what chains need: every backup a kept one
/// builds on, and, for a kept backup whose chain is unknown, everything older.
pub fn keep_chains(names: &[String], chains: &[Chained], reasons: &mut [Vec<String>]) -> Vec<String> {
    let mut warnings = Vec::new();
    let index: std::collections::HashMap<&str, usize> = chains
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Chained::Link(l) => Some((l.id.as_str(), i)),
            _ => None,
        })
        .collect();
    for i in 0..chains.len() {
        if reasons[i].is_empty() {
            continue;
        }
        match &chains[i] {
            Chained::Alone => {}
            Chained::Unknown => {
                for r in reasons.iter_mut().skip(i + 1).filter(|r| r.is_empty()) {
                    r.push(format!("older than {}, whose chain is unknown", names[i]));
                }
            }
            Chained::Link(link) => {
                // Up the chain: each parent one less deep, of the same full (so the walk ends,
                // whatever the records say).
                let mut child = link;
                while let Some(p) = child.parent.as_deref() {
                    let parent = index.get(p).and_then(|&j| match &chains[j] {
                        Chained::Link(l) if l.depth.checked_add(1) == Some(child.depth) && l.full == child.full => {
                            Some((j, l))
                        }
                        _ => None,
                    });
                    let Some((j, l)) = parent else {
                        warnings.push(format!(
                            "{} needs backup {p}, which no readable record under the prefix names: everything older is kept",
                            names[i]
                        ));
                        for r in reasons.iter_mut().skip(i + 1).filter(|r| r.is_empty()) {
                            r.push(format!("older than {}, whose parent is not found", names[i]));
                        }
                        break;
                    };
                    let why = format!("needed by {}", names[i]);
                    if !reasons[j].contains(&why) {
                        reasons[j].push(why);
                    }
                    child = l;
                }
            }
        }
    }
    warnings
}

/// Point-in-time recovery that prune keeps: any moment of the last `window` seconds, from the
/// archive under `binlogs`.
#[derive(Debug, Clone)]
pub struct KeepPitr {
    /// Seconds back from now.
    pub window: i64,
    /// The binary log archive's prefix.
    pub binlogs: String,
}

/// What prune keeps and deletes.
#[derive(Debug)]
pub struct PrunePlan {
    /// The backups, each with the reasons it is kept (none: it goes) and its chain.
    pub backups: Vec<(Backup, Vec<String>, Chained)>,
    /// With `KeepPitr`: the archive's segments that go (whole files older than the file of
    /// the backup the window starts from), oldest first.
    pub segments: Vec<Backup>,
}

/// The backups under `url`, each with the reasons `policy` keeps it (none: it goes): a backup
/// that a kept one builds on is kept with it. With `pitr`, the backups of the window and the
/// newest from before its start are kept (with their chains), and the binary log from that
/// one's file on; older segments go.
pub fn prune_plan(
    url: &str,
    policy: Policy,
    pitr: Option<&KeepPitr>,
    keys: Option<&KeySources>,
    env: &Env,
) -> Result<PrunePlan> {
    if policy.last + policy.daily + policy.weekly == 0 && pitr.is_none() {
        return Err(Error::usage(
            "prune needs --keep-last, --keep-daily, --keep-weekly or --keep-pitr (it will not delete every backup)",
        ));
    }
    let found = backups(url, env)?;
    let unlocks = match keys {
        Some(k) => Some(crate::keys::unlocks(k, env)?),
        None => None,
    };
    let times: Vec<i64> = found.iter().map(|b| b.time).collect();
    let mut reasons: Vec<Vec<String>> =
        plan(&times, policy).into_iter().map(|r| r.into_iter().map(str::to_owned).collect()).collect();
    let segments = match pitr {
        Some(p) => {
            let unlocks = unlocks.as_deref().ok_or_else(|| {
                Error::usage(
                    "--keep-pitr needs the key: the backups' binlog positions are in their sealed descriptions",
                )
            })?;
            keep_for_pitr(&found, p, unlocks, &mut reasons, env)?
        }
        None => Vec::new(),
    };
    let chains = chains(&found, unlocks.as_deref(), env);
    let names: Vec<String> = found.iter().map(|b| b.listed.name.clone()).collect();
    for w in keep_chains(&names, &chains, &mut reasons) {
        env.report.warn(&w);
    }
    let backups = found.into_iter().zip(reasons).zip(chains).map(|((b, r), c)| (b, r, c)).collect();
    Ok(PrunePlan { backups, segments })
}

/// Marks the backup the window of `p` starts from ("pitr"), and returns the segments older
/// than its binlog file.
fn keep_for_pitr(
    found: &[Backup],
    p: &KeepPitr,
    unlocks: &[Unlock],
    reasons: &mut [Vec<String>],
    env: &Env,
) -> Result<Vec<Backup>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let start = now - p.window;
    // Newest first: the first with a binlog position from before the window's start.
    let mut positioned = Vec::new();
    for (i, b) in found.iter().enumerate() {
        match description_of(&b.listed, unlocks, env) {
            Ok(Some(info)) => {
                if let Some(pos) = info.binlog {
                    positioned.push((i, pos));
                }
            }
            Ok(None) => {}
            // An unreadable backup might be the one the window needs: nothing of the archive goes.
            Err(e) => {
                env.report.warn(&format!("{}: {}; no binary log is pruned", b.listed.object.url(), e.one_line()));
                return Ok(Vec::new());
            }
        }
    }
    let base = positioned.iter().find(|(i, _)| found[*i].time <= start).or_else(|| {
        let oldest = positioned.last();
        if let Some((i, _)) = oldest {
            env.report.warn(&format!(
                "no backup is older than the recovery window's start ({} UTC): it reaches back to {} only",
                crate::text::utc(start),
                crate::text::utc(found[*i].time)
            ));
        }
        oldest
    });
    let Some((i, pos)) = base else {
        env.report.warn("no backup recorded a binlog position: no binary log is pruned");
        return Ok(Vec::new());
    };
    reasons[*i].push("pitr".into());
    // The backups inside the window: recovery starts from the newest before its target.
    for (b, r) in found.iter().zip(reasons.iter_mut()) {
        if b.time > start && !r.iter().any(|x| x == "pitr") {
            r.push("pitr".into());
        }
    }
    let number = coffer_mysql::meta::binlog_file_number;
    let keep_from = number(&pos.file);
    Ok(crate::binlog::segments(&p.binlogs, env)?
        .into_iter()
        .filter(|(s, _)| number(&s.file) < keep_from)
        .map(|(_, listed)| Backup { time: listed.modified, listed })
        .collect())
}

/// Deletes `doomed` (each catalog record first, so that a record never outlives its image);
/// returns the bytes freed.
pub fn prune_apply(doomed: &[&Backup]) -> Result<u64> {
    for b in doomed {
        let record = b.listed.object.with_suffix(RECORD_SUFFIX);
        match record.delete() {
            Ok(()) | Err(coffer_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::from(e).context(format!("cannot delete {}", record.url()))),
        }
        b.listed.object.delete().with_context(|| format!("cannot delete {}", b.listed.object.url()))?;
    }
    Ok(doomed.iter().map(|b| b.listed.size).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_times() {
        assert_eq!(name_time("1970-01-01T00-00-00Z.coffer"), Some(0));
        assert_eq!(name_time("2026-11-24T08-00-00Z.coffer"), Some(1_795_507_200)); // date -d 2026-11-24T08:00:00Z +%s
        assert_eq!(crate::text::utc(name_time("2024-02-29T23-59-59Z.coffer").unwrap()), "2024-02-29 23:59:59");
        assert_eq!(name_time("db.coffer"), None);
        assert_eq!(name_time("2026-13-01T00-00-00Z.coffer"), None);
    }

    #[test]
    fn kept_backups_keep_what_they_build_on() {
        use coffer_mysql::meta::BackupKind;
        let id = |n: u8| format!("{n:032x}");
        // Newest first: inc2 <- inc1 <- full1; a differential on full1; full0 alone.
        let full1 = ChainLink::full(id(1));
        let inc1 = ChainLink::on(&full1, BackupKind::Incremental, id(2));
        let inc2 = ChainLink::on(&inc1, BackupKind::Incremental, id(3));
        let diff = ChainLink::on(&full1, BackupKind::Differential, id(4));
        let chains = vec![
            Chained::Link(inc2),
            Chained::Link(diff),
            Chained::Link(inc1),
            Chained::Link(full1),
            Chained::Alone,
            Chained::Unknown,
            Chained::Alone,
        ];
        let names: Vec<String> =
            ["inc2", "diff", "inc1", "full1", "full0", "mystery", "oldest"].map(String::from).into();
        let kept = |first: &[usize]| {
            let mut reasons: Vec<Vec<String>> =
                (0..7).map(|i| if first.contains(&i) { vec!["last".into()] } else { vec![] }).collect();
            let warnings = keep_chains(&names, &chains, &mut reasons);
            (
                reasons.iter().enumerate().filter(|(_, r)| !r.is_empty()).map(|(i, _)| i).collect::<Vec<_>>(),
                reasons,
                warnings,
            )
        };
        // Keeping the newest incremental keeps its whole chain, and nothing else.
        let (k, reasons, w) = kept(&[0]);
        assert_eq!(k, [0, 2, 3]);
        assert_eq!(reasons[3][0], "needed by inc2");
        assert!(w.is_empty());
        // The differential needs only its full.
        assert_eq!(kept(&[1]).0, [1, 3]);
        // A full alone needs nothing; a backup whose chain is unknown keeps everything older.
        assert_eq!(kept(&[4]).0, [4]);
        assert_eq!(kept(&[5]).0, [5, 6]);
        // A kept incremental whose chain cannot be followed to its full keeps everything older.
        let mut reasons = vec![vec!["last".to_owned()], vec![], vec![]];
        let w = keep_chains(&names[..3], &chains[..3], &mut reasons);
        assert!(w.iter().any(|w| w.contains("inc2 needs backup") && w.contains("everything older is kept")), "{w:?}");
        assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");
        // Forged links (a parent that is itself, depths that do not fall) end the walk at once.
        let mut forged = ChainLink::on(&ChainLink::full(id(1)), BackupKind::Incremental, id(9));
        forged.parent = Some(id(9));
        forged.depth = u32::MAX;
        let chains = vec![Chained::Link(forged), Chained::Alone];
        let mut reasons = vec![vec!["last".to_owned()], vec![]];
        let w = keep_chains(&names[..2], &chains, &mut reasons);
        assert_eq!(w.len(), 1);
        assert!(!reasons[1].is_empty(), "older backups kept");
    }

    #[test]
    fn retention_keeps_what_each_rule_asks() {
        let day = 86_400;
        // Newest first: two a day for ten days, from Sunday 2026-11-22 back.
        let sunday = name_time("2026-11-22T12-00-00Z.coffer").unwrap();
        let times: Vec<i64> = (0..20).map(|i| sunday - (i / 2) * day - (i % 2) * 3600).collect();
        let kept = |p: Policy| plan(&times, p).iter().map(|w| !w.is_empty()).collect::<Vec<_>>();
        let last3 = kept(Policy { last: 3, ..Policy::default() });
        assert_eq!(last3.iter().filter(|k| **k).count(), 3);
        assert!(last3[..3].iter().all(|k| *k));
        // Daily: the newest of each day, for 4 days.
        let daily = kept(Policy { daily: 4, ..Policy::default() });
        assert_eq!(daily.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect::<Vec<_>>(), [0, 2, 4, 6]);
        // Weekly: Sunday's week (Mon 16 - Sun 22) and the week before (Mon 9 - Sun 15).
        let weekly = kept(Policy { weekly: 5, ..Policy::default() });
        assert_eq!(weekly.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect::<Vec<_>>(), [0, 14]);
        // Rules add up; reasons are named.
        let both = plan(&times, Policy { last: 1, daily: 2, weekly: 2 });
        assert_eq!(both[0], ["last", "daily", "weekly"]);
        assert_eq!(both[2], ["daily"]);
        assert_eq!(both[14], ["weekly"]);
        assert!(both[1].is_empty() && both[19].is_empty());
    }
}
