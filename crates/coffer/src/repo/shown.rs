//! The catalog and the prune plan as people and `--json` read them: one line per backup, per
//! chain and for the binary log archive; the plan's rows. Names come from the bucket's listing,
//! the rest from records: control characters are shown escaped, never sent to a terminal.

use super::catalog::Catalog;
use super::prune::PrunePlan;
use super::retention::Chained;
use super::Backup;
use crate::text::{escape, human, utc};
use coffer_mysql::meta::{BackupKind, ChainLink};
use serde_json::{json, Value};

fn esc(s: &str) -> String {
    escape(s.as_bytes())
}

impl Chained {
    /// The backup's place in its chain, for people: `full 1a2b3c4d`, `incremental 2 of
    /// 1a2b3c4d`, `full` (alone) or `(chain unknown)`.
    pub fn text(&self) -> String {
        match self {
            Chained::Link(l) => {
                let full = short(&l.full);
                match l.kind {
                    BackupKind::Full => format!("full {full}"),
                    k => format!("{} {} of {full}", k.name(), l.depth),
                }
            }
            Chained::Alone => "full".into(),
            Chained::Unknown => "(chain unknown)".into(),
        }
    }

    /// The link as JSON (null when there is none).
    pub fn json(&self) -> Value {
        match self {
            Chained::Link(l) => serde_json::to_value(l).unwrap_or_default(),
            _ => Value::Null,
        }
    }
}

/// The first 8 characters of a backup id, escaped (ids come from images anyone with a
/// recipient could have written).
fn short(id: &str) -> String {
    escape(id.chars().take(8).collect::<String>().as_bytes())
}

impl Catalog {
    /// The lines `catalog` prints: one per backup, one per chain, then the binary log archive
    /// and its gaps.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.rows.iter().map(|v| row_line(v, self.archive.is_some())).collect();
        lines.extend(chain_summaries(&self.rows));
        if let Some(a) = &self.archive {
            let when = a.last_time.map(|t| format!(" ({} UTC)", utc(t))).unwrap_or_default();
            let names = if a.by_names { NAMES_ONLY } else { "" };
            lines.push(format!(
                "binlog archive {}: {} segments, {}, {}:{} .. {}:{}{when}{names}",
                esc(&a.prefix),
                a.segments,
                human(a.bytes),
                esc(&a.first.0),
                a.first.1,
                esc(&a.last.0),
                a.last.1
            ));
            for (from, to) in &a.gaps {
                lines.push(format!(
                    "binlog archive GAP: nothing between {}:{} and {}:{} (recovery cannot cross it)",
                    esc(&from.0),
                    from.1,
                    esc(&to.0),
                    to.1
                ));
            }
        }
        lines
    }

    /// What `catalog` prints on stdout: its [`lines`](Self::lines), or with `json` its rows as
    /// one JSON array.
    pub fn shown(&self, json: bool) -> Vec<String> {
        if json {
            return vec![Value::Array(self.rows.clone()).to_string()];
        }
        self.lines()
    }

    /// Fails when some backups could not be read with the key given.
    pub fn outcome(&self) -> crate::error::Result<()> {
        match self.unread {
            0 => Ok(()),
            n => crate::bail!("{n} of {} backups could not be read with the key given (see above)", self.backups.len()),
        }
    }

    /// "N backups, SIZE under PREFIX": what the catalog found.
    pub fn total(&self, prefix: &str) -> String {
        let total: u64 = self.backups.iter().map(|b| b.listed.size).sum();
        format!("{} backups, {} under {prefix}", self.backups.len(), human(total))
    }
}

/// What a catalog read without a key says of the binlog archive's files.
const NAMES_ONLY: &str = " (by the segments' names: without a key, no sealed description says where each file ends)";

/// A backup of the catalog as one line.
pub(crate) fn row_line(v: &Value, archived: bool) -> String {
    let mut line = format!(
        "{}  {:>10}  {}",
        v["time"].as_str().unwrap_or_default(),
        human(v["bytes"].as_u64().unwrap_or(0)),
        esc(v["name"].as_str().unwrap_or_default())
    );
    if let Ok(link) = serde_json::from_value::<ChainLink>(v["chain"].clone()) {
        line.push_str(&format!("  {}", Chained::Link(link).text()));
    }
    if let Some(b) = v.get("backup").filter(|b| !b.is_null()) {
        if let Some(server) = b["server_version"].as_str() {
            line.push_str(&format!("  {}", esc(server)));
        }
        if let (Some(from), Some(to)) = (b["from_lsn"].as_u64(), b["to_lsn"].as_u64()) {
            line.push_str(&format!("  LSN {from}..{to}"));
        }
        if let Some(file) = b["binlog"]["file"].as_str() {
            line.push_str(&format!("  binlog {}:{}", esc(file), b["binlog"]["position"]));
        }
    }
    if let Ok(w) = serde_json::from_value::<crate::repo::recovery::Window>(v["pitr"].clone()) {
        let when = w.to_time.map(|t| format!(" ({} UTC)", utc(t))).unwrap_or_default();
        let names = if w.by_names { NAMES_ONLY } else { "" };
        line.push_str(&format!("  recoverable to {}:{}{when}{names}", esc(&w.to.0), w.to.1));
    } else if archived && v["backup"]["binlog"].is_object() {
        line.push_str("  recoverable to its own point only (its binary log is not archived)");
    }
    // Asked of the primary (`catalog --primary`): has, purged, diverged or ?.
    if let Some(said) = v["primary_binlog"].as_str() {
        line.push_str(&format!("  primary: {said}"));
    }
    line
}

/// One line per chain: its full, how many backups follow it and how deep, their bytes and LSNs.
fn chain_summaries(rows: &[Value]) -> Vec<String> {
    let mut chains: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for v in rows {
        if let Some(full) = v["chain"]["full"].as_str() {
            chains.entry(full.to_owned()).or_default().push(v);
        }
    }
    chains
        .iter()
        .map(|(full, members)| {
            let depth = members.iter().filter_map(|v| v["chain"]["depth"].as_u64()).max().unwrap_or(0);
            let bytes: u64 = members.iter().filter_map(|v| v["bytes"].as_u64()).sum();
            let has_full = members.iter().any(|v| v["chain"]["kind"] == "full");
            let lsn_to = members.iter().filter_map(|v| v["backup"]["to_lsn"].as_u64()).max();
            format!(
                "chain {}: {} + {} later backup(s), depth {depth}, {}{}",
                short(full),
                if has_full { "full" } else { "FULL MISSING" },
                members.len() - usize::from(has_full),
                human(bytes),
                lsn_to.map(|l| format!(", up to LSN {l}")).unwrap_or_default()
            )
        })
        .collect()
}

impl PrunePlan {
    /// The backups the plan deletes (those kept for no reason).
    pub fn doomed(&self) -> Vec<&Backup> {
        self.backups.iter().filter(|(_, w, _)| w.is_empty()).map(|(b, _, _)| b).collect()
    }

    /// The plan's backups as `--json` rows.
    pub fn rows(&self) -> Vec<Value> {
        let row = |(b, why, chain): &(Backup, Vec<String>, Chained)| {
            json!({
                "name": b.listed.name,
                "time": utc(b.time),
                "bytes": b.listed.size,
                "keep": !why.is_empty(),
                "reasons": why,
                "chain": chain.json(),
            })
        };
        self.backups.iter().map(row).collect()
    }

    /// The plan's backups for people: `keep (reasons)` or `delete`, time, name, chain.
    pub fn lines(&self) -> Vec<String> {
        let line = |(b, why, chain): &(Backup, Vec<String>, Chained)| {
            let what = if why.is_empty() { "delete".to_owned() } else { format!("keep ({})", why.join(", ")) };
            format!("{what:<24} {}  {}  {}", utc(b.time), esc(&b.listed.name), chain.text())
        };
        self.backups.iter().map(line).collect()
    }

    /// The `--json` document: the plan's rows, whether it was refused, the segments deleted.
    pub fn to_json(&self, dry_run: bool, refused: Option<&String>) -> Value {
        let names: Vec<&str> = self.segments.iter().map(|s| s.listed.name.as_str()).collect();
        json!({"dry_run": dry_run, "refused": refused, "backups": self.rows(), "binlog_segments_deleted": names})
    }

    /// What a dry run of the plan says: how much would be deleted.
    pub fn dry_run_line(&self) -> String {
        format!(
            "--dry-run: {} of {} backups and {} binary log segments would be deleted; nothing was",
            self.doomed().len(),
            self.backups.len(),
            self.segments.len()
        )
    }

    /// Carries the plan out: its backups that go, then its segments, oldest first (an
    /// interrupted prune leaves the archive whole from some file on).
    pub fn carry_out(&self) -> crate::error::Result<Pruned> {
        let doomed = self.doomed();
        let freed = self.apply(&doomed)?;
        let segments: Vec<&Backup> = self.segments.iter().collect();
        let freed_logs = self.apply(&segments)?;
        Ok(Pruned { backups: doomed.len(), of: self.backups.len(), freed, segments: segments.len(), freed_logs })
    }

    /// Which binary log segments the plan deletes, for people.
    pub fn segments_line(&self) -> String {
        let segments = &self.segments;
        let bytes: u64 = segments.iter().map(|s| s.listed.size).sum();
        match (segments.first(), segments.last()) {
            (Some(a), Some(b)) => format!(
                "delete {} binary log segments ({}): {} .. {}",
                segments.len(),
                human(bytes),
                esc(&a.listed.name),
                esc(&b.listed.name)
            ),
            _ => "no binary log segment is older than the recovery window needs".into(),
        }
    }
}

/// What a prune deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Backups deleted.
    pub backups: usize,
    /// Backups there were.
    pub of: usize,
    /// Their bytes.
    pub freed: u64,
    /// Binary log segments deleted.
    pub segments: usize,
    /// Their bytes.
    pub freed_logs: u64,
}

impl Pruned {
    /// What the prune did, for people.
    pub fn line(&self) -> String {
        format!(
            "deleted {} of {} backups ({}) and {} binary log segments ({})",
            self.backups,
            self.of,
            human(self.freed),
            self.segments,
            human(self.freed_logs)
        )
    }
}
