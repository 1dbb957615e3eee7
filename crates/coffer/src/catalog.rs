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

pub use crate::retention::{Chained, Policy};

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
    let keyless = if unlocks.is_none() { chains(&backups, env) } else { Vec::new() };
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

pub(crate) fn prefix(url: &str, env: &Env) -> Result<coffer_store::Object> {
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

/// The time in a name like `2026-11-24T08-00-00Z.coffer` (or, as coffer names backups since
/// two may start in one second, `2026-11-24T08-00-00Z-1a2b3c4d.coffer`).
pub(crate) fn name_time(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".coffer")?;
    let t = match stem.rsplit_once("Z-") {
        Some((t, tag)) if tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()) => t,
        _ => stem.strip_suffix('Z')?,
    };
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
    sealed_of(listed, unlocks, env).map(|(_, info)| info)
}

/// What a key proves of a backup: its header's creation time (Unix seconds), and its
/// description, as [`description_of`] reads it.
pub(crate) fn sealed_of(
    listed: &coffer_store::Listed,
    unlocks: &[Unlock],
    env: &Env,
) -> Result<(i64, Option<coffer_mysql::meta::BackupInfo>)> {
    let head = listed.object.read_head(DATA_OFFSET)?;
    let opened = coffer_image::open_header(&head.bytes, unlocks)?;
    let created = opened.header.created;
    if let Ok(Some(r)) = record(listed, &opened) {
        return Ok((created, serde_json::from_value(r["backup"].clone()).ok()));
    }
    let info = crate::read::info_with(&Location::Object(listed.object.url().to_owned()), unlocks, env)?;
    Ok((created, info.backup))
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

/// Where each backup sits in its chain, as its catalog record says in the clear (read without
/// a key: for people, and for a prune without a key, which keeps more when in doubt).
pub fn chains(found: &[Backup], env: &Env) -> Vec<Chained> {
    found
        .iter()
        .map(|b| {
            record_chain(&b.listed)
                .unwrap_or_else(|e| {
                    env.report.warn(&format!("{}: its catalog record: {}", b.listed.object.url(), e.one_line()));
                    None
                })
                .unwrap_or(Chained::Unknown)
        })
        .collect()
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
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3c.coffer"), Some(1_795_507_200));
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3.coffer"), None);
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3g.coffer"), None);
    }
}
