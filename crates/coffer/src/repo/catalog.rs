//! The catalog and prune jobs: the backups under a prefix of an object store, what each holds,
//! and which a retention policy keeps.

use super::records::{chains, record};
use super::{backups, Backup};
use crate::error::Result;
use crate::keys::KeySources;
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_format::DATA_OFFSET;
use serde_json::json;

pub use crate::repo::retention::{Chained, Policy};

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
    pub archive: Option<crate::repo::recovery::Overview>,
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
    let binlogs = binlogs.map_or_else(|| crate::repo::recovery::default_binlog_prefix(url), str::to_owned);
    let archive = match crate::repo::recovery::windows(&binlogs, &positions, unlocks.as_deref(), env) {
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
