//! The repository: what lies under a prefix of an object store (`file://` included), read as
//! coffer wrote it. Backups and their names and times, catalog records and the sealed
//! descriptions a key opens, chains and their links, the binary log archive and its extent,
//! windows of recovery, retention plans, and the leases of the jobs that share it.
//!
//! This floor knows nothing of jobs: it lists, reads and plans, and the one thing it deletes is
//! what a prune's plan names, under the prune's lease; the jobs above (backup, restore, the
//! archiver, the server wing) act on what it says. See docs/ARCHITECTURE.md.

pub mod archive;
pub mod catalog;
pub mod chain;
pub mod lease;
pub mod prune;
pub mod records;
pub mod recovery;
pub mod retention;
pub mod shown;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::names::name_time;
use crate::Env;

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
    // The store's error names the prefix ("cannot list URL: ...").
    let listed = prefix(url, env)?.list()?;
    let mut out: Vec<Backup> = listed
        .into_iter()
        .filter(|l| l.name.ends_with(".coffer"))
        .map(|l| Backup { time: name_time(&l.name).unwrap_or(l.modified), listed: l })
        .collect();
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.listed.name.cmp(&a.listed.name)));
    Ok(out)
}
