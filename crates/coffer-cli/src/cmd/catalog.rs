//! `coffer catalog` and `coffer prune`: the backups under a prefix of an object store
//! (`coffer::catalog`), printed.

use super::human;
use crate::cli::{CatalogArgs, PruneArgs};
use anyhow::Result;
use serde_json::json;

pub fn catalog(args: CatalogArgs, quiet: bool) -> Result<()> {
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let coffer::catalog::Catalog { backups: found, rows, unread } =
        coffer::catalog::catalog(&args.prefix, keys.as_ref(), &crate::report::env(quiet, 1))?;
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
    let esc = |s: &str| coffer::text::escape(s.as_bytes());
    for v in &rows {
        let mut line = format!(
            "{}  {:>10}  {}",
            v["time"].as_str().unwrap_or_default(),
            human(v["bytes"].as_u64().unwrap_or(0)),
            esc(v["name"].as_str().unwrap_or_default())
        );
        if let Ok(link) = serde_json::from_value::<coffer_mysql::meta::ChainLink>(v["chain"].clone()) {
            line.push_str(&format!("  {}", chain_columns(&coffer::catalog::Chained::Link(link)).0));
        }
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
    for line in chain_summaries(&rows) {
        println!("{line}");
    }
    if !quiet {
        let total: u64 = found.iter().map(|b| b.listed.size).sum();
        eprintln!("coffer: {} backups, {} under {}", found.len(), human(total), args.prefix);
    }
    outcome
}

pub fn prune(args: PruneArgs, quiet: bool) -> Result<()> {
    let policy = coffer::catalog::Policy {
        last: args.keep_last.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
    };
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let planned = coffer::catalog::prune_plan(&args.prefix, policy, keys.as_ref(), &crate::report::env(quiet, 1))?;
    let mut rows = Vec::new();
    for (b, why, chain) in &planned {
        let (kind, link) = chain_columns(chain);
        rows.push(json!({
            "name": b.listed.name,
            "time": coffer::text::utc(b.time),
            "bytes": b.listed.size,
            "keep": !why.is_empty(),
            "reasons": why,
            "chain": link,
        }));
        if !args.json && !quiet {
            let what = if why.is_empty() { "delete".to_owned() } else { format!("keep ({})", why.join(", ")) };
            let name = coffer::text::escape(b.listed.name.as_bytes());
            eprintln!("coffer: {what:<24} {}  {name}  {kind}", coffer::text::utc(b.time));
        }
    }
    let doomed: Vec<&coffer::catalog::Backup> =
        planned.iter().filter(|(_, w, _)| w.is_empty()).map(|(b, _, _)| b).collect();
    if args.json {
        println!("{}", json!({"dry_run": args.dry_run, "backups": rows}));
    }
    if args.dry_run {
        if !quiet {
            eprintln!("coffer: --dry-run: {} of {} backups would be deleted; nothing was", doomed.len(), planned.len());
        }
        return Ok(());
    }
    let freed = coffer::catalog::prune_apply(&doomed)?;
    if !quiet {
        eprintln!("coffer: deleted {} of {} backups ({})", doomed.len(), planned.len(), human(freed));
    }
    Ok(())
}

/// A backup's place in its chain, for people (`full 1a2b3c4d`, `incremental 2 of 1a2b3c4d`)
/// and as JSON.
fn chain_columns(chain: &coffer::catalog::Chained) -> (String, serde_json::Value) {
    match chain {
        coffer::catalog::Chained::Link(l) => {
            let full = short(&l.full);
            let text = match l.kind {
                coffer_mysql::meta::BackupKind::Full => format!("full {full}"),
                k => format!("{} {} of {full}", k.name(), l.depth),
            };
            (text, serde_json::to_value(l).unwrap_or_default())
        }
        coffer::catalog::Chained::Alone => ("full".into(), serde_json::Value::Null),
        coffer::catalog::Chained::Unknown => ("(chain unknown)".into(), serde_json::Value::Null),
    }
}

/// One line per chain: its full, how many backups follow it and how deep, their bytes and LSNs.
fn chain_summaries(rows: &[serde_json::Value]) -> Vec<String> {
    let mut chains: std::collections::BTreeMap<String, Vec<&serde_json::Value>> = Default::default();
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

/// The first 8 characters of a backup id, escaped (ids come from images anyone with a
/// recipient could have written).
fn short(id: &str) -> String {
    coffer::text::escape(id.chars().take(8).collect::<String>().as_bytes())
}
