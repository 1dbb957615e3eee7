//! `coffer catalog` and `coffer prune`: the backups under a prefix of an object store.

use super::human;
use crate::cli::{CatalogArgs, PruneArgs};
use crate::exit::usage;
use anyhow::{Context, Result};
use coffer_crypto::Unlock;
use coffer_format::DATA_OFFSET;
use coffer_image::catalog::RECORD_SUFFIX;
use serde_json::json;
use std::path::Path;

/// A backup under the prefix: an object whose name ends in `.coffer`.
struct Backup {
    listed: coffer_store::Listed,
    /// Unix seconds: from the name coffer gives backups under a prefix, else the object's
    /// modification time.
    time: i64,
}

fn prefix(url: &str) -> Result<coffer_store::Object> {
    if !url.ends_with('/') {
        return Err(usage(format!("{url}: a prefix ends with '/'")));
    }
    crate::store::object(Path::new(url))?.ok_or_else(|| usage(format!("{url} is not an object URL")))
}

fn backups(url: &str) -> Result<Vec<Backup>> {
    let listed = prefix(url)?.list().with_context(|| format!("cannot list {url}"))?;
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

pub fn catalog(args: CatalogArgs, quiet: bool) -> Result<()> {
    let found = backups(&args.prefix)?;
    // Secrets are read (and a passphrase asked for) once, for every backup.
    let unlocks = if args.key.any() { Some(crate::keys::unlocks(&args.key, quiet)?) } else { None };
    let mut rows = Vec::new();
    let mut unread = 0;
    for b in &found {
        let mut v = json!({
            "name": b.listed.name,
            "url": b.listed.object.url(),
            "bytes": b.listed.size,
            "time": super::list::utc(b.time),
        });
        if let Some(unlocks) = &unlocks {
            // One backup that does not open (another key, damage) does not hide the others.
            if let Err(e) = details(&b.listed, unlocks, &mut v, quiet) {
                let why = crate::exit::one_line(&e);
                super::warn(quiet, format!("{}: {why}", b.listed.object.url()));
                v["error"] = json!(why);
                unread += 1;
            }
        }
        rows.push(v);
    }
    let outcome = match unread {
        0 => Ok(()),
        n => Err(anyhow::anyhow!("{n} of {} backups could not be read with the key given (see above)", found.len())),
    };
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return outcome;
    }
    // Names come from the bucket's listing, the rest from records: control characters are
    // shown escaped, never sent to the terminal.
    let esc = |s: &str| super::list::escape(s.as_bytes());
    for v in &rows {
        let mut line = format!(
            "{}  {:>10}  {}",
            v["time"].as_str().unwrap_or_default(),
            human(v["bytes"].as_u64().unwrap_or(0)),
            esc(v["name"].as_str().unwrap_or_default())
        );
        if let Some(b) = v.get("backup").filter(|b| !b.is_null()) {
            let s = |k: &str| b[k].as_str().map(str::to_owned);
            if let Some(server) = s("server_version") {
                line.push_str(&format!("  {}", esc(&server)));
            }
            if let (Some(from), Some(to)) = (b["from_lsn"].as_u64(), b["to_lsn"].as_u64()) {
                line.push_str(&format!("  LSN {from}..{to}"));
            }
            if let Some(file) = b["binlog"]["file"].as_str() {
                line.push_str(&format!("  binlog {}:{}", esc(file), b["binlog"]["position"]));
            }
        }
        println!("{line}");
    }
    if !quiet {
        let total: u64 = found.iter().map(|b| b.listed.size).sum();
        eprintln!("coffer: {} backups, {} under {}", found.len(), human(total), args.prefix);
    }
    outcome
}

/// What a key shows of a backup: read from its catalog record (the image's header and the
/// record: two small requests), or, without a record that matches the image, through the
/// image's index.
fn details(listed: &coffer_store::Listed, unlocks: &[Unlock], v: &mut serde_json::Value, quiet: bool) -> Result<()> {
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
        Err(e) => super::warn(quiet, format!("{}: {e:#}; reading its index instead", listed.object.url())),
    }
    // Through the index: the header, END frame, index and the backup's description.
    let (_, desc, files, bytes) = super::server::read_info_with(Path::new(listed.object.url()), unlocks)?;
    v["files"] = json!(files);
    v["data_bytes"] = json!(bytes);
    v["backup"] = serde_json::to_value(&desc).unwrap_or_default();
    v["metadata"] = json!("index");
    Ok(())
}

/// The backup's catalog record, if it has one; an error if it has one that does not belong to
/// the image as it is now.
fn record(listed: &coffer_store::Listed, opened: &coffer_image::OpenedImage) -> Result<Option<serde_json::Value>> {
    let Some(r) = read_record(&listed.object, opened)? else { return Ok(None) };
    if r["image_bytes"].as_u64() != Some(listed.size) {
        anyhow::bail!(
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
    // Records are small; whoever can write to the bucket (no key needed) chooses this object's
    // size, so it is read with a cap, never whole.
    let bytes = match image.with_suffix(RECORD_SUFFIX).get_at_most(coffer_image::catalog::MAX_RECORD_BYTES) {
        Ok(b) => b,
        Err(coffer_store::StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let json = coffer_image::catalog::open_record(&opened.keys, &opened.header.image_id, &bytes)?;
    Ok(Some(serde_json::from_slice(&json).context("catalog record: malformed JSON")?))
}

/// How many of each kind to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub last: usize,
    pub daily: usize,
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

pub fn prune(args: PruneArgs, quiet: bool) -> Result<()> {
    let policy = Policy {
        last: args.keep_last.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
    };
    if policy.last + policy.daily + policy.weekly == 0 {
        return Err(usage("prune needs --keep-last, --keep-daily or --keep-weekly (it will not delete every backup)"));
    }
    let found = backups(&args.prefix)?;
    let times: Vec<i64> = found.iter().map(|b| b.time).collect();
    let reasons = plan(&times, policy);
    let mut rows = Vec::new();
    for (b, why) in found.iter().zip(&reasons) {
        rows.push(json!({
            "name": b.listed.name,
            "time": super::list::utc(b.time),
            "bytes": b.listed.size,
            "keep": !why.is_empty(),
            "reasons": why,
        }));
        if !args.json && !quiet {
            let what = if why.is_empty() { "delete".to_owned() } else { format!("keep ({})", why.join(", ")) };
            let name = super::list::escape(b.listed.name.as_bytes());
            eprintln!("coffer: {what:<24} {}  {name}", super::list::utc(b.time));
        }
    }
    let doomed: Vec<&Backup> = found.iter().zip(&reasons).filter(|(_, w)| w.is_empty()).map(|(b, _)| b).collect();
    if args.json {
        println!("{}", json!({"dry_run": args.dry_run, "backups": rows}));
    }
    if args.dry_run {
        if !quiet {
            eprintln!("coffer: --dry-run: {} of {} backups would be deleted; nothing was", doomed.len(), found.len());
        }
        return Ok(());
    }
    for b in &doomed {
        // The record first, so that a record never outlives its image (an image without one is
        // still cataloged, through its index).
        let record = b.listed.object.with_suffix(RECORD_SUFFIX);
        match record.delete() {
            Ok(()) | Err(coffer_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot delete {}", record.url()))),
        }
        b.listed.object.delete().with_context(|| format!("cannot delete {}", b.listed.object.url()))?;
    }
    if !quiet {
        let freed: u64 = doomed.iter().map(|b| b.listed.size).sum();
        eprintln!("coffer: deleted {} of {} backups ({})", doomed.len(), found.len(), human(freed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_times() {
        assert_eq!(name_time("1970-01-01T00-00-00Z.coffer"), Some(0));
        assert_eq!(name_time("2026-11-24T08-00-00Z.coffer"), Some(1_795_507_200)); // date -d 2026-11-24T08:00:00Z +%s
        assert_eq!(super::super::list::utc(name_time("2024-02-29T23-59-59Z.coffer").unwrap()), "2024-02-29 23:59:59");
        assert_eq!(name_time("db.coffer"), None);
        assert_eq!(name_time("2026-13-01T00-00-00Z.coffer"), None);
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
