//! What the repository says of each backup: its catalog record (beside the image, its links in
//! the clear, the rest sealed), and its sealed description, read with a key from the record or
//! through the image's index.

use super::retention::Chained;
use super::Backup;
use crate::error::{Context, Result};
use crate::location::Location;
use crate::Env;
use coffer_crypto::Unlock;
use coffer_format::DATA_OFFSET;
use coffer_image::catalog::RECORD_SUFFIX;
use coffer_mysql::meta::ChainLink;

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
pub(crate) fn record(
    listed: &coffer_store::Listed,
    opened: &coffer_image::OpenedImage,
) -> Result<Option<serde_json::Value>> {
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
