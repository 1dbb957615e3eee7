//! `coffer catalog` and `coffer prune`: the backups under a prefix of an object store
//! (`coffer::repo::catalog`), printed.

use super::human;
use crate::cli::{CatalogArgs, PruneArgs};
use anyhow::Result;
use serde_json::json;

pub fn catalog(args: CatalogArgs, quiet: bool) -> Result<()> {
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let coffer::repo::catalog::Catalog { backups: found, rows, unread, archive } = coffer::repo::catalog::catalog(
        &args.prefix,
        args.binlogs.as_deref(),
        keys.as_ref(),
        &crate::report::env(quiet, 1),
    )?;
    let outcome = match unread {
        0 => Ok(()),
        n => Err(anyhow::anyhow!("{n} of {} backups could not be read with the key given (see above)", found.len())),
    };
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return outcome;
    }
    let esc = |s: &str| coffer::text::escape(s.as_bytes());
    for v in &rows {
        println!("{}", row_line(v, archive.is_some()));
    }
    for line in chain_summaries(&rows) {
        println!("{line}");
    }
    if let Some(a) = &archive {
        let when = a.last_time.map(|t| format!(" ({} UTC)", coffer::text::utc(t))).unwrap_or_default();
        println!(
            "binlog archive {}: {} segments, {}, {}:{} .. {}:{}{when}",
            esc(&a.prefix),
            a.segments,
            human(a.bytes),
            esc(&a.first.0),
            a.first.1,
            esc(&a.last.0),
            a.last.1
        );
        for (from, to) in &a.gaps {
            println!(
                "binlog archive GAP: nothing between {}:{} and {}:{} (recovery cannot cross it)",
                esc(&from.0),
                from.1,
                esc(&to.0),
                to.1
            );
        }
    }
    if !quiet {
        let total: u64 = found.iter().map(|b| b.listed.size).sum();
        eprintln!("coffer: {} backups, {} under {}", found.len(), human(total), args.prefix);
    }
    outcome
}

/// A backup of the catalog as one line. Names come from the bucket's listing, the rest from
/// records: control characters are shown escaped, never sent to the terminal.
fn row_line(v: &serde_json::Value, archived: bool) -> String {
    let esc = |s: &str| coffer::text::escape(s.as_bytes());
    let mut line = format!(
        "{}  {:>10}  {}",
        v["time"].as_str().unwrap_or_default(),
        human(v["bytes"].as_u64().unwrap_or(0)),
        esc(v["name"].as_str().unwrap_or_default())
    );
    if let Ok(link) = serde_json::from_value::<coffer_mysql::meta::ChainLink>(v["chain"].clone()) {
        line.push_str(&format!("  {}", chain_columns(&coffer::repo::catalog::Chained::Link(link)).0));
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
    if let Ok(w) = serde_json::from_value::<coffer::repo::recovery::Window>(v["pitr"].clone()) {
        let when = w.to_time.map(|t| format!(" ({} UTC)", coffer::text::utc(t))).unwrap_or_default();
        line.push_str(&format!("  recoverable to {}:{}{when}", esc(&w.to.0), w.to.1));
    } else if archived && v["backup"]["binlog"].is_object() {
        line.push_str("  recoverable to its own point only (its binary log is not archived)");
    }
    line
}

pub fn prune(args: PruneArgs, quiet: bool) -> Result<()> {
    let mut metrics = crate::metrics::start(args.metrics_file.clone(), "prune");
    let result = prune_run(args, quiet, &mut metrics);
    crate::metrics::finish(metrics, result, |_, _| {})
}

fn prune_run(args: PruneArgs, quiet: bool, metrics: &mut coffer::service::MetricsFile) -> Result<()> {
    let policy = coffer::repo::catalog::Policy {
        last: args.keep_last.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
    };
    let keys = Some(args.key.sources()).filter(coffer::keys::KeySources::any);
    let pitr = args.keep_pitr.map(|window| coffer::repo::prune::KeepPitr {
        window,
        binlogs: args.binlogs.clone().unwrap_or_else(|| coffer::repo::recovery::default_binlog_prefix(&args.prefix)),
    });
    let env = crate::report::env(quiet, 1);
    let plan = coffer::repo::prune::prune_plan(&args.prefix, policy, pitr.as_ref(), keys.as_ref(), args.dry_run, &env)?;
    let segments = &plan.segments;
    let rows = plan_rows(&plan, !args.json && !quiet);
    coffer::service::gauges::prune_plan(metrics.run(), &plan);
    let refused = plan.refusal.as_ref().filter(|_| !args.allow_deleting_newest);
    if args.json {
        let names: Vec<&str> = segments.iter().map(|s| s.listed.name.as_str()).collect();
        println!(
            "{}",
            json!({"dry_run": args.dry_run, "refused": refused, "backups": rows, "binlog_segments_deleted": names})
        );
    }
    if let Some(why) = refused {
        return Err(anyhow::anyhow!("{why}: refusing (--allow-deleting-newest carries it out); nothing was deleted"));
    }
    if !args.json && !quiet && pitr.is_some() {
        say_segments(segments);
    }
    let doomed: Vec<&coffer::repo::Backup> =
        plan.backups.iter().filter(|(_, w, _)| w.is_empty()).map(|(b, _, _)| b).collect();
    if args.dry_run {
        if !quiet {
            eprintln!(
                "coffer: --dry-run: {} of {} backups and {} binary log segments would be deleted; nothing was",
                doomed.len(),
                plan.backups.len(),
                segments.len()
            );
        }
        return Ok(());
    }
    let freed = plan.apply(&doomed)?;
    // Oldest first: an interrupted prune leaves the archive whole from some file on.
    let segments: Vec<&coffer::repo::Backup> = segments.iter().collect();
    let freed_logs = plan.apply(&segments)?;
    coffer::service::gauges::pruned(metrics.run(), doomed.len(), segments.len(), freed + freed_logs);
    if !quiet {
        eprintln!(
            "coffer: deleted {} of {} backups ({}) and {} binary log segments ({})",
            doomed.len(),
            plan.backups.len(),
            human(freed),
            segments.len(),
            human(freed_logs)
        );
    }
    Ok(())
}

/// The plan's backups as `--json` rows, each also said on stderr if `say`.
fn plan_rows(plan: &coffer::repo::prune::PrunePlan, say: bool) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for (b, why, chain) in &plan.backups {
        let (kind, link) = chain_columns(chain);
        rows.push(json!({
            "name": b.listed.name,
            "time": coffer::text::utc(b.time),
            "bytes": b.listed.size,
            "keep": !why.is_empty(),
            "reasons": why,
            "chain": link,
        }));
        if say {
            let what = if why.is_empty() { "delete".to_owned() } else { format!("keep ({})", why.join(", ")) };
            let name = coffer::text::escape(b.listed.name.as_bytes());
            eprintln!("coffer: {what:<24} {}  {name}  {kind}", coffer::text::utc(b.time));
        }
    }
    rows
}

/// Says which binary log segments the plan deletes.
fn say_segments(segments: &[coffer::repo::Backup]) {
    let bytes: u64 = segments.iter().map(|s| s.listed.size).sum();
    match (segments.first(), segments.last()) {
        (Some(a), Some(b)) => eprintln!(
            "coffer: delete {} binary log segments ({}): {} .. {}",
            segments.len(),
            human(bytes),
            coffer::text::escape(a.listed.name.as_bytes()),
            coffer::text::escape(b.listed.name.as_bytes())
        ),
        _ => eprintln!("coffer: no binary log segment is older than the recovery window needs"),
    }
}

/// A backup's place in its chain, for people (`full 1a2b3c4d`, `incremental 2 of 1a2b3c4d`)
/// and as JSON.
fn chain_columns(chain: &coffer::repo::catalog::Chained) -> (String, serde_json::Value) {
    match chain {
        coffer::repo::catalog::Chained::Link(l) => {
            let full = short(&l.full);
            let text = match l.kind {
                coffer_mysql::meta::BackupKind::Full => format!("full {full}"),
                k => format!("{} {} of {full}", k.name(), l.depth),
            };
            (text, serde_json::to_value(l).unwrap_or_default())
        }
        coffer::repo::catalog::Chained::Alone => ("full".into(), serde_json::Value::Null),
        coffer::repo::catalog::Chained::Unknown => ("(chain unknown)".into(), serde_json::Value::Null),
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
