//! Restoring single tables: from a backup (or its chain) only what the tables need is read —
//! their files, and what is no user table's (system tablespace, redo, undo, the server's own
//! schemas) — prepared beside a scratch path, opened by a private server (which, for a point in
//! time, first replays the archived binary log for those tables only), and exported there. The
//! export goes into a running server (`export` then `import`: checked first, imported in one
//! session), or into a directory with the statements that import it by hand.

pub mod export;
pub mod import;

use super::applier::{Applier, Replay};
use super::beside::Beside;
use crate::error::{Context, Error, Result};
use crate::keys::KeySources;
use crate::location::Location;
use crate::repo::chain::Known;
use crate::repo::recovery::Until;
use crate::restore::RestoreSpec;
use crate::source::ServerOptions;
use crate::Env;
use coffer_mysql::engine::PrepareOption;
use coffer_mysql::tables::{Selection, TableName};
use export::Export;
use import::{Imported, Live};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the tables go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A running server (on this host: its datadir is written).
    Server(Box<ServerOptions>),
    /// A directory: the exported files and the statements that import them.
    Dir(PathBuf),
}

/// A restore of some tables, as a user asks for it.
#[derive(Debug, Clone)]
pub struct TablesSpec {
    /// A prefix (its newest backup; with `until`, the newest before the target) or an image.
    pub source: String,
    /// Other images of the chain, where they are not beside the image.
    pub bases: Vec<Location>,
    /// The tables.
    pub tables: Selection,
    /// Where they go.
    pub into: Destination,
    /// Only these partitions of the one (partitioned) table named (none: every partition).
    pub partitions: Vec<String>,
    /// New names on the server (`--rename db.t=db.t2`).
    pub renames: Vec<(TableName, TableName)>,
    /// Replace tables the server has.
    pub replace: bool,
    /// To a point in time: the target, and the archive's prefix.
    pub until: Option<(Until, String)>,
    /// The secrets that open the backups (and the archive).
    pub keys: KeySources,
    /// The private server's user (default: mysql as root).
    pub owner: Option<String>,
    /// The engine's prepare options (also the private server's).
    pub options: Vec<PrepareOption>,
    /// Where the tables are restored and prepared [default: beside the server's datadir, or
    /// beside the directory].
    pub scratch: Option<PathBuf>,
    /// Write into a directory that is not empty.
    pub force: bool,
}

/// A table restored.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoredTable {
    /// `db.t`, as the backup names it.
    pub name: String,
    /// Its rows.
    pub rows: u64,
}

/// What a restore of tables did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TablesSummary {
    /// The backups read (a chain: full first).
    pub backups: Vec<String>,
    /// The tables restored, with their rows as the backup's server counted them.
    pub tables: Vec<RestoredTable>,
    /// Bytes of the images read (their frames), and bytes their images hold.
    pub read_bytes: u64,
    /// The bytes the images hold in all.
    pub image_bytes: u64,
    /// With a point in time: the transactions replayed (for all tables; the chosen applied),
    /// and where replay stopped.
    pub replayed: Option<(u64, String)>,
    /// Into a server: what each import did.
    pub imported: Vec<Imported>,
    /// Into a directory: where, and the statements that import the files by hand.
    pub dir: Option<PathBuf>,
    /// The statements (into a directory).
    pub statements: Option<String>,
    /// Seconds in all.
    pub seconds: f64,
}

impl TablesSummary {
    /// The line that says what was restored.
    pub fn line(&self) -> String {
        let tables: Vec<String> = self.tables.iter().map(|t| format!("{} ({} rows)", t.name, t.rows)).collect();
        let into = match (&self.dir, self.imported.is_empty()) {
            (Some(dir), _) => format!("exported into {}", dir.display()),
            _ => {
                let done: Vec<String> = self
                    .imported
                    .iter()
                    .map(|i| {
                        let how = if i.created { "created" } else { "replaced" };
                        let fks = match i.foreign_keys_left_out.is_empty() {
                            true => String::new(),
                            false => format!(", without its foreign keys {}", i.foreign_keys_left_out.join(", ")),
                        };
                        format!("{} as {} ({how}{fks})", i.from, i.into)
                    })
                    .collect();
                format!("imported into the server: {}", done.join(", "))
            }
        };
        let replay = self
            .replayed
            .as_ref()
            .map(|(n, at)| format!(", their binary log replayed to {at} (their part of {n} transactions)"))
            .unwrap_or_default();
        format!(
            "restored {} from {}{replay}; {}; read {} of {} ({:.1}%), {:.1} s",
            tables.join(", "),
            self.backups.last().map(String::as_str).unwrap_or_default(),
            into,
            crate::text::human(self.read_bytes),
            crate::text::human(self.image_bytes),
            100.0 * self.read_bytes as f64 / self.image_bytes.max(1) as f64,
            self.seconds
        )
    }
}

/// The server `--into-server` names: a socket (a path) or `HOST[:PORT]`.
pub fn server_at(
    at: &str,
    user: Option<String>,
    password_file: Option<PathBuf>,
    tls: Option<coffer_mysql::engine::ServerTls>,
) -> Result<ServerOptions> {
    let mut server = ServerOptions { user, password_file, tls, ..Default::default() };
    if at.starts_with('/') || at.starts_with('.') {
        server.socket = Some(PathBuf::from(at));
        return Ok(server);
    }
    let (host, port) = match at.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            (h, Some(p.parse::<u16>().map_err(|_| Error::usage(format!("--into-server {at}: a port is a number")))?))
        }
        _ => (at, None),
    };
    if host.is_empty() {
        return Err(Error::usage("--into-server names a socket (a path) or HOST[:PORT]"));
    }
    (server.host, server.port) = (Some(host.trim_matches(['[', ']']).to_owned()), port);
    Ok(server)
}

/// Restores the tables `spec` names (see the module's documentation). Nothing is written into a
/// server until every check holds; a directory appears only when complete.
pub fn restore_tables(spec: &TablesSpec, env: &Env) -> Result<TablesSummary> {
    let started = Instant::now();
    super::applier::host(spec.owner.as_deref(), env)?;
    let unlocks = crate::keys::unlocks(&spec.keys, env)?;
    // The server is reached first: what it refuses is said before anything is read.
    let mut live = match &spec.into {
        Destination::Server(server) => Some(Live::connect(&crate::source::reach(server)?)?),
        Destination::Dir(dir) => {
            if !spec.force && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                crate::bail!("{} is not empty: refusing to export into it (use --force)", dir.display());
            }
            None
        }
    };
    let scratch = scratch(spec, live.as_ref())?;
    let logs = Beside::create(&scratch, "binlog", env.report.as_ref())?;
    let planned = plan(spec, &unlocks, &logs.path, env)?;
    let chosen = choose(spec, &planned.chain, &unlocks, env)?;
    if let Some(live) = live.as_mut() {
        live.refuse_early(&chosen, &spec.renames, spec.replace)?;
    }
    let image_bytes = check_room(&planned.chain, &unlocks, &chosen, &scratch, env)?;
    let mut summary = TablesSummary { backups: planned.chain.iter().map(Known::shown).collect(), ..Default::default() };
    let restore = RestoreSpec {
        image: None,
        to: scratch.clone(),
        keys: spec.keys.clone(),
        owner: spec.owner.clone(),
        keep_setuid: false,
        force: true,
        sync: false,
        limit_rate: None,
    };
    let keep = |path: &[u8]| coffer_mysql::tables::needed_for(path, &chosen);
    let (staging, restores) =
        super::prepare::stage_chosen(&planned.chain, &unlocks, &restore, &spec.options, &keep, env)?;
    for r in &restores {
        summary.read_bytes = summary.read_bytes.saturating_add(r.read.image_bytes);
    }
    summary.image_bytes = image_bytes;
    let out = Beside::create(&scratch, "export", env.report.as_ref())?;
    let export = open_and_export(spec, &planned, &staging.path, &logs.path, &chosen, &out.path, &unlocks, env)?;
    drop(staging);
    summary.tables = export.tables.iter().map(|t| RestoredTable { name: t.name.shown(), rows: t.rows }).collect();
    summary.replayed = planned.replay.as_ref().map(|r| (r.transactions, format!("{}:{}", r.stop.0, r.stop.1)));
    match (&spec.into, live) {
        (Destination::Server(_), Some(mut live)) => {
            let steps = live.plan(&export, &spec.renames, spec.replace)?;
            summary.imported = live.import(&steps, &out.path)?;
            let replicas = live.replicas();
            if replicas > 0 {
                env.report.warn(&format!(
                    "the server has {replicas} replica(s): the restore is not in its binary log, so they still have the tables \
                     as they were; restore them there too (or their next writes diverge)"
                ));
            }
        }
        (Destination::Dir(dir), _) => {
            let statements = by_hand(&export, &std::path::absolute(dir)?)?;
            let path = out.path.join("import.sql");
            std::fs::write(&path, &statements).with_context(|| format!("cannot write {}", path.display()))?;
            out.replace(spec.force, true)?;
            summary.dir = Some(dir.clone());
            summary.statements = Some(statements);
        }
        _ => unreachable!("a server destination is connected first"),
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Where the private directories go: `--scratch-dir`, else beside the directory exported into,
/// else beside the server's datadir (in its parent: another file system where the datadir is
/// mounted, whose room `--scratch-dir` chooses).
fn scratch(spec: &TablesSpec, live: Option<&Live>) -> Result<PathBuf> {
    let target = match (&spec.scratch, &spec.into, live) {
        (Some(dir), _, _) => dir.join("coffer-tables"),
        (None, Destination::Dir(dir), _) => dir.clone(),
        (None, Destination::Server(_), Some(live)) => {
            let parent = live.datadir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
            parent.join("coffer-tables")
        }
        (None, Destination::Server(_), None) => unreachable!("a server destination is connected first"),
    };
    Ok(target)
}

/// Refuses a restore whose chosen files (of every backup of the chain), and the export of the
/// tables beside them, do not fit where they are restored, before anything is written; the
/// bytes of the images (what a full restore would read).
fn check_room(
    chain: &[Known],
    unlocks: &[coffer_crypto::Unlock],
    chosen: &BTreeSet<TableName>,
    scratch: &Path,
    env: &Env,
) -> Result<u64> {
    let (mut needed, mut entries, mut tables, mut images) = (0u64, 0u64, 0u64, 0u64);
    for k in chain {
        let Some(idx) = k.location.open_indexed(unlocks, env)? else { continue };
        images = images.saturating_add(idx.len());
        for r in idx.records().iter().filter(|r| coffer_mysql::tables::needed_for(&r.meta.path, chosen)) {
            needed = needed.saturating_add(r.data_bytes);
            entries += u64::from(!r.meta.continues);
            if coffer_mysql::tables::table_file(&r.meta.path).is_some_and(|f| chosen.contains(&f.table)) {
                tables = tables.saturating_add(r.data_bytes);
            }
        }
    }
    // The export: the tables' files once more.
    let what = format!("the restore of {} table(s) beside {}", chosen.len(), scratch.display());
    crate::room::check_entries(scratch, needed.saturating_add(tables), entries, &what)?;
    Ok(images)
}

/// The replay of a point-in-time restore of tables.
struct PlannedReplay {
    files: Vec<String>,
    start: (String, u32),
    stop: (String, u32),
    transactions: u64,
    ids: std::collections::BTreeSet<u32>,
    signed: bool,
}

/// The backups to read (and, to a point in time, the binary log, gathered into `logs`).
struct Planned {
    chain: Vec<Known>,
    replay: Option<PlannedReplay>,
    _lease: Option<crate::repo::lease::Lease>,
    _plan: Option<super::prepare::Plan>,
}

fn plan(spec: &TablesSpec, unlocks: &[coffer_crypto::Unlock], logs: &Path, env: &Env) -> Result<Planned> {
    let (chain, replay, lease, kept) = match &spec.until {
        None => {
            let image = super::prepare::newest_or_image(
                &spec.source,
                "tables are restored from a prefix or an image (a file or an object)",
                env,
            )?;
            let plan = super::prepare::plan(&image, &spec.bases, &spec.keys, env)?;
            (plan.members(&image, env)?, None, None, Some(plan))
        }
        Some((until, binlogs)) => {
            super::pitr::check_backups_prefix(&spec.source)?;
            let route = crate::repo::recovery::route(&spec.source, binlogs, until, unlocks, env)?;
            let read: Vec<&Location> = route.chain.iter().map(|k| &k.location).collect();
            let lease = crate::repo::lease::for_reading(&read, Some(&route.start.0), "restore", env)?;
            let backup = route.chain.last().expect("a chain ends at its backup");
            super::applier::same_server(binlogs, &route.archive, &backup.info, &backup.shown(), &route.start)?;
            let g = crate::repo::recovery::stop::gather(
                &route.archive,
                &route.start,
                until,
                route.found_stop.as_ref(),
                logs,
            )?;
            env.report.say(&format!(
                "restoring the tables from {} (binlog {}:{}), then replaying their binary log to {} ({}:{})",
                backup.shown(),
                route.start.0,
                route.start.1,
                until.shown(),
                g.stop.0,
                g.stop.1
            ));
            let replay = PlannedReplay {
                files: g.files,
                start: route.start.clone(),
                stop: g.stop,
                transactions: g.walk.transactions,
                ids: g.ids,
                signed: unlocks.iter().any(|u| matches!(u, coffer_crypto::Unlock::Signer(_))),
            };
            (route.chain, Some(replay), lease, None)
        }
    };
    Ok(Planned { chain, replay, _lease: lease, _plan: kept })
}

/// The tables of the backup the selection names (the last backup of the chain's index says
/// which it holds); a pattern that names none, or a table of another engine, is refused.
fn choose(
    spec: &TablesSpec,
    chain: &[Known],
    unlocks: &[coffer_crypto::Unlock],
    env: &Env,
) -> Result<BTreeSet<TableName>> {
    let last = chain.last().expect("a chain ends at its backup");
    let Some(idx) = last.location.open_indexed(unlocks, env)? else {
        crate::bail!("{}: restoring some tables reads an image through its index (a file or an object)", last.shown());
    };
    let records = crate::read::fold_parts(idx.records().to_vec())?;
    let held = coffer_mysql::tables::held(records.iter().map(|r| (r.meta.path.as_slice(), r.size)));
    let (chosen, unmatched) = spec.tables.resolve(held.iter().map(|t| &t.name));
    if !unmatched.is_empty() {
        crate::bail!("{} holds no table {}", last.shown(), unmatched.join(", "));
    }
    let mut chosen = chosen;
    let not_innodb: Vec<_> =
        held.iter().filter(|t| chosen.contains(&t.name) && (t.other_engine || !t.tablespace)).collect();
    for t in not_innodb {
        let named =
            spec.tables.patterns.iter().any(|(db, table)| *db == t.name.db && table.as_ref() == Some(&t.name.table));
        if named {
            crate::bail!(
                "{} is not an InnoDB table of its own tablespace in {}: only those are restored table by table",
                t.name.shown(),
                last.shown()
            );
        }
        env.report.warn(&format!("{} is not an InnoDB table of its own tablespace: left out", t.name.shown()));
        chosen.remove(&t.name);
    }
    if chosen.is_empty() {
        crate::bail!("--tables names no InnoDB table of its own tablespace in {}", last.shown());
    }
    if !spec.partitions.is_empty() && chosen.len() != 1 {
        crate::bail!("--partitions names the partitions of one table; --tables names {}", chosen.len());
    }
    for (i, (from, to)) in spec.renames.iter().enumerate() {
        if !chosen.contains(from) {
            crate::bail!("--rename {}: not among the tables restored", from.shown());
        }
        if chosen.contains(to) || spec.renames[..i].iter().any(|(f, t)| t == to || f == from) {
            crate::bail!(
                "--rename {}={}: another table restored has that name, or is renamed twice",
                from.shown(),
                to.shown()
            );
        }
    }
    Ok(chosen)
}

/// Opens the prepared tables on a private server (replaying their binary log first, for a
/// point in time) and exports them into `out`.
#[allow(clippy::too_many_arguments)]
fn open_and_export(
    spec: &TablesSpec,
    planned: &Planned,
    datadir: &Path,
    logs: &Path,
    chosen: &BTreeSet<TableName>,
    out: &Path,
    unlocks: &[coffer_crypto::Unlock],
    env: &Env,
) -> Result<Export> {
    let none = (String::new(), 0);
    let (files, start, stop) = match &planned.replay {
        Some(r) => (r.files.clone(), &r.start, &r.stop),
        None => (Vec::new(), &none, &none),
    };
    let mut replay = Replay::new(datadir, logs, &files, (start, stop), "", &spec.options, spec.owner.as_deref())?;
    replay.applier = Applier::SqlThread;
    replay.signed = unlocks.iter().any(|u| matches!(u, coffer_crypto::Unlock::Signer(_)));
    if let Some(r) = &planned.replay {
        replay.signed = r.signed;
        replay.server_id = (1..).map(|n: u32| u32::MAX - n).find(|id| !r.ids.contains(id)).unwrap_or(2);
        replay.only_tables = chosen.iter().map(|t| format!("{}.{}", t.db, t.table)).collect();
    }
    let tables: Vec<TableName> = chosen.iter().cloned().collect();
    let mut export = None;
    replay.run(env, &mut |c| {
        let renamed: Vec<TableName> = spec.renames.iter().map(|(from, _)| from.clone()).collect();
        export = Some(export::export(c, datadir, &tables, &spec.partitions, &renamed, out)?);
        Ok(())
    })?;
    let export = export.ok_or_else(|| Error::msg("the backup's server exported nothing"))?;
    if planned.replay.is_some() {
        for t in &export.tables {
            if let Some(parent) = t.cascades_from.iter().find(|p| !chosen.contains(p)) {
                crate::bail!(
                    "{}'s foreign key takes changes from {} (ON DELETE/UPDATE CASCADE or SET NULL), which the binary log \
                     does not hold for {}: restore {} too (--tables {},{})",
                    t.name.shown(),
                    parent.shown(),
                    t.name.shown(),
                    parent.shown(),
                    t.name.shown(),
                    parent.shown()
                );
            }
        }
    }
    Ok(export)
}

/// The statements that import the export in `dir` by hand, as coffer would.
fn by_hand(export: &Export, dir: &Path) -> Result<String> {
    let mut s = String::from(
        "-- Import by hand, in one session of the server (its user needs SUPER or BINLOG ADMIN for sql_log_bin).\n\
         SET SESSION sql_log_bin = 0, foreign_key_checks = 0;\n",
    );
    for t in &export.tables {
        let (db, stem) = t.name.file_stem();
        s.push_str(&format!("\n-- {} ({} rows): create it if the server lacks it\n", t.name.shown(), t.rows));
        s.push_str(&format!("USE {};\n{};\n", coffer_mysql::tables::quote(&t.name.db), t.create));
        if t.partitions.is_empty() {
            s.push_str(&format!("ALTER TABLE {} DISCARD TABLESPACE;\n", t.name.quoted()));
            s.push_str(&format!(
                "-- copy {0}/{1}/{2}.ibd and {0}/{1}/{2}.cfg into the server's datadir {1}/, owned by its user, mode 0660\n",
                dir.display(),
                db,
                stem
            ));
            s.push_str(&format!("ALTER TABLE {} IMPORT TABLESPACE;\n", t.name.quoted()));
            s.push_str(&format!("-- then remove {db}/{stem}.cfg from the server's datadir: the import leaves it\n"));
        } else {
            for p in &t.exported {
                let h = import::holder(&t.name)?;
                let holder = h.quoted();
                s.push_str(&format!(
                    "CREATE TABLE {holder} LIKE {0};\nALTER TABLE {holder} REMOVE PARTITIONING;\nALTER TABLE {holder} DISCARD TABLESPACE;\n\
                     -- copy {1}/{2}/{3}#P#{4}.ibd and .cfg into the server's datadir as {2}/{6}.ibd and {2}/{6}.cfg (owner, mode 0660)\n\
                     ALTER TABLE {holder} IMPORT TABLESPACE;\nALTER TABLE {0} EXCHANGE PARTITION {5} WITH TABLE {holder};\nDROP TABLE {holder};\n",
                    t.name.quoted(),
                    dir.display(),
                    db,
                    stem,
                    coffer_mysql::tables::encode(p),
                    coffer_mysql::tables::quote(p),
                    h.file_stem().1
                ));
            }
        }
        for (name, cols) in &t.shape.fulltext {
            let cols: Vec<String> = cols.iter().map(|c| coffer_mysql::tables::quote(c)).collect();
            s.push_str(&format!(
                "-- the import leaves the full-text index unusable: rebuild it (two statements; never DROP INDEX alone)\n\
                 ALTER TABLE {0} DROP INDEX {1}, FORCE;\nALTER TABLE {0} ADD FULLTEXT KEY {1} ({2});\n",
                t.name.quoted(),
                coffer_mysql::tables::quote(name),
                cols.join(", ")
            ));
        }
        s.push_str(&format!("CHECK TABLE {0};\nANALYZE TABLE {0};\n", t.name.quoted()));
    }
    s.push_str("\nSET SESSION sql_log_bin = 1, foreign_key_checks = 1;\n");
    Ok(s)
}
