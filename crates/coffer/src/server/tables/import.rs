//! The live server's side of a table restore: everything checked first (nothing on the server
//! changes when a check fails), then each table imported in one session that writes nothing to
//! the server's binary log (its replicas are not told to discard their copy) and checks no
//! foreign key (a parent's tablespace may be discarded):
//!
//! - a table the server lacks (or a new name, `--rename`) is created from the backup's own
//!   definition (under a new name without its foreign keys, dropped on the private server
//!   first: their constraint names are unique per database, and the original's hold them);
//! - a table the server has is replaced only once a table made like it has imported the
//!   backup's tablespace (then dropped): what InnoDB refuses, it refuses while the table is whole;
//! - a table's tablespace is discarded, the exported `.ibd` and `.cfg` are written into the
//!   server's datadir (its owner, mode 0660), and imported; a partitioned table's partitions go
//!   one by one through a placeholder table and `EXCHANGE PARTITION` (MariaDB discards no
//!   partitioned tablespace);
//! - full-text indexes are rebuilt (an import leaves them unusable: DISCARD drops their
//!   auxiliary tablespaces), by dropping them with a rebuild, then adding them;
//! - `CHECK TABLE` must say OK and the rows must be as many as the backup's server counted;
//!   then `ANALYZE TABLE` (an import leaves the statistics empty).

use super::export::{literal, run, shape, value, Export, Exported, Shape};
use crate::error::{Context, Error, Result};
use coffer_mysql::client::Client;
use coffer_mysql::tables::{quote, TableName};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// How long coffer waits for one statement's answer: an IMPORT, a CHECK TABLE or a rebuild of
/// a large table takes long, and the server goes on with it whatever coffer does.
const STATEMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Seconds a statement waits for another session's lock on a table before it is refused
/// (error 1205), rather than the server's default of a day: while DISCARD waits for a
/// transaction that holds the table, every query of the application on it queues behind.
const LOCK_WAIT: u32 = 10;

/// A session with the live server, and its datadir on this host.
pub(crate) struct Live {
    pub(crate) client: Client,
    pub(crate) datadir: PathBuf,
    /// The databases whose directory was proven to be the server's, on this host.
    proven: std::collections::BTreeSet<String>,
}

/// One table's import, planned.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// The backup's table.
    pub(crate) from: Exported,
    /// The name it takes on the server.
    pub(crate) into: TableName,
    /// Create it (the server has no such table)?
    pub(crate) create: bool,
}

/// What one import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The backup's table.
    pub from: String,
    /// The table on the server.
    pub into: String,
    /// Created (else its rows were replaced).
    pub created: bool,
    /// Its rows, checked equal to the backup's.
    pub rows: u64,
    /// Partitions exchanged (none: not partitioned).
    pub partitions: usize,
    /// Full-text indexes rebuilt.
    pub fulltext: usize,
    /// Bytes written into the server's datadir.
    pub bytes: u64,
    /// Foreign keys the backup's table had that this one was created without (`--rename`).
    pub foreign_keys_left_out: Vec<String>,
}

impl Live {
    /// Connects, and keeps the session's statements out of the binary log.
    pub(crate) fn connect(reach: &crate::source::Reach) -> Result<Live> {
        let mut client = reach.connect(STATEMENT_WAIT).map_err(|e| {
            Error::other(e).context(format!("cannot connect to the server at {}", shown(&reach.target)))
        })?;
        run(&mut client, "SET SESSION sql_log_bin = 0", "the restore's statements must stay out of the server's binary log (its replicas would discard their tables): the user needs SUPER or BINLOG ADMIN")?;
        run(&mut client, "SET SESSION foreign_key_checks = 0", "cannot turn the session's foreign key checks off")?;
        // DISCARD waits for other sessions' locks on the table: a day, by default.
        run(
            &mut client,
            &format!("SET SESSION lock_wait_timeout = {LOCK_WAIT}"),
            "cannot set the session's lock wait",
        )?;
        let datadir =
            value(&mut client, "SELECT @@datadir", "cannot ask the server for its datadir")?.unwrap_or_default();
        let datadir = PathBuf::from(datadir);
        if !datadir.is_absolute() || !datadir.is_dir() {
            crate::bail!(
                "the server's datadir {} is not a directory on this host: coffer writes the tables' files there, so it runs on the server's host",
                crate::text::escape(datadir.as_os_str().as_encoded_bytes())
            );
        }
        Ok(Live { client, datadir, proven: Default::default() })
    }

    /// How many replicas the server has connected (none when it will not say).
    pub(crate) fn replicas(&mut self) -> usize {
        self.client.query("SHOW SLAVE HOSTS").map(|rows| rows.len()).unwrap_or(0)
    }

    /// Checks every table of `export` against the server, as it will be imported (renamed by
    /// `renames`; an existing table only with `replace`); what would fail is refused here.
    pub(crate) fn plan(
        &mut self,
        export: &Export,
        renames: &[(TableName, TableName)],
        replace: bool,
    ) -> Result<Vec<Step>> {
        let c = &mut self.client;
        let page_size = value(c, "SELECT @@innodb_page_size", "cannot read the server's page size")?;
        if page_size.as_deref() != Some(export.page_size.to_string().as_str()) {
            crate::bail!(
                "the server's innodb_page_size is {}, the backup's {}: InnoDB imports no tablespace of another page size",
                page_size.unwrap_or_default(),
                export.page_size
            );
        }
        let per_table = value(c, "SELECT @@innodb_file_per_table", "cannot read the server's innodb_file_per_table")?;
        if per_table.as_deref() != Some("1") {
            crate::bail!("the server has innodb_file_per_table off: a table it creates has no tablespace of its own to import into");
        }
        let mut steps = Vec::new();
        for t in &export.tables {
            steps.push(self.check(t, renamed(&t.name, renames), replace, export.lsn)?);
        }
        Ok(steps)
    }

    /// What can be refused before the backup is read: a table that exists (without
    /// `replace`), a database the server lacks.
    pub(crate) fn refuse_early(
        &mut self,
        chosen: &std::collections::BTreeSet<TableName>,
        renames: &[(TableName, TableName)],
        replace: bool,
    ) -> Result<()> {
        for t in chosen {
            let into = renamed(t, renames);
            let live = shape(&mut self.client, &into)?;
            self.refuse_existing(t, &into, live.is_some(), replace)?;
        }
        Ok(())
    }

    fn refuse_existing(&mut self, t: &TableName, into: &TableName, exists: bool, replace: bool) -> Result<()> {
        self.prove_database(&into.db)?;
        if exists && !replace {
            crate::bail!(
                "{} exists on the server: --replace puts the backup's rows in its place, --rename {}={}_restored restores it beside",
                into.shown(),
                t.shown(),
                into.shown()
            );
        }
        Ok(())
    }

    /// The database's directory is a directory (not a link: the files are written through it
    /// without following one) of this host that the server keeps its tables in: a table
    /// created there (logging nothing) appears in it, and goes.
    fn prove_database(&mut self, db: &str) -> Result<()> {
        if self.proven.contains(db) {
            return Ok(());
        }
        let path = self.datadir.join(coffer_mysql::tables::encode(db));
        if std::fs::symlink_metadata(&path).is_err() {
            crate::bail!("the server has no database {} (no {}): create it first", quote(db), path.display());
        }
        let dir = open_dir(&self.datadir, &coffer_mysql::tables::encode(db)).map_err(|e| {
            e.context(format!("{} must be a directory of the server's datadir, not a link", path.display()))
        })?;
        let probe = holder(&TableName { db: db.to_owned(), table: "probe".into() })?;
        run(
            &mut self.client,
            &format!("CREATE TABLE {} (id INT) ENGINE=InnoDB", probe.quoted()),
            "cannot create a probe table",
        )?;
        let here = nix::sys::stat::fstatat(
            &dir,
            format!("{}.frm", probe.file_stem().1).as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        let _ = self.client.query(&format!("DROP TABLE IF EXISTS {}", probe.quoted()));
        if here.is_err() {
            crate::bail!(
                "the server keeps its tables elsewhere than {} on this host: coffer writes into the server's datadir, so it runs on the server's host",
                path.display()
            );
        }
        self.proven.insert(db.to_owned());
        Ok(())
    }

    fn check(&mut self, t: &Exported, into: TableName, replace: bool, lsn: u64) -> Result<Step> {
        if t.subpartitioned {
            crate::bail!("{} has subpartitions: MariaDB exchanges no subpartitioned partition, so it is not restored into a running server (use --to DIR)", t.name.shown());
        }
        let live = shape(&mut self.client, &into)?;
        self.refuse_existing(&t.name, &into, live.is_some(), replace)?;
        if let Some(live) = &live {
            let differences = differences(&t.shape, live, &t.partitions, &self.partitions(&into)?);
            if !differences.is_empty() {
                crate::bail!(
                    "{} on the server differs from the backup's: {}; restore it beside with --rename",
                    into.shown(),
                    differences.join("; ")
                );
            }
        }
        if let Some(key) = t.shape.key_id {
            self.check_key(&into, key, lsn)?;
        }
        Ok(Step { from: t.clone(), into, create: live.is_none() })
    }

    fn partitions(&mut self, t: &TableName) -> Result<Vec<String>> {
        let rows = run(
            &mut self.client,
            &format!(
                "SELECT PARTITION_NAME FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} \
                 AND PARTITION_NAME IS NOT NULL ORDER BY PARTITION_ORDINAL_POSITION",
                literal(&t.db),
                literal(&t.table)
            ),
            &format!("cannot read the partitions of {}", t.shown()),
        )?;
        Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
    }

    /// The server holds the key the tablespace is encrypted with (a temporary table asks for
    /// it and leaves nothing), and its log is ahead of every page of the export (InnoDB
    /// refuses an encrypted page from its future).
    fn check_key(&mut self, t: &TableName, key: u32, lsn: u64) -> Result<()> {
        let c = &mut self.client;
        let probe = TableName { db: t.db.clone(), table: "coffer_key_probe".into() };
        let create = format!(
            "CREATE TEMPORARY TABLE {} (id INT) ENGINE=InnoDB ENCRYPTED=YES ENCRYPTION_KEY_ID={key}",
            probe.quoted()
        );
        if let Err(e) = c.query(&create) {
            if e.to_string().contains("errno: 140") {
                crate::bail!(
                    "{}'s tablespace is encrypted with key {key}, which the server's key management does not hold: it cannot read it",
                    t.shown()
                );
            }
            return Err(Error::other(e).context(format!("cannot ask the server for encryption key {key}")));
        }
        let _ = c.query(&format!("DROP TEMPORARY TABLE IF EXISTS {}", probe.quoted()));
        let live = value(
            c,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_LSN_CURRENT'",
            "cannot read the server's log sequence number",
        )?;
        let live: u64 = live.and_then(|l| l.parse().ok()).unwrap_or(0);
        if live <= lsn {
            crate::bail!(
                "{} is encrypted and its pages may be as new as log sequence number {lsn}, but the server is at {live}: InnoDB \
                 refuses encrypted pages from its future (restore into the server the backup is of, or one that has written more)",
                t.shown()
            );
        }
        Ok(())
    }

    /// Imports each step's table (see the module's documentation).
    pub(crate) fn import(&mut self, steps: &[Step], export_dir: &Path) -> Result<Vec<Imported>> {
        let mut done: Vec<Imported> = Vec::new();
        for step in steps {
            let imported = self.import_one(step, export_dir).map_err(|e| {
                let before = match done.is_empty() {
                    true => String::new(),
                    false => {
                        let names: Vec<&str> = done.iter().map(|d| d.into.as_str()).collect();
                        format!(" (restored before it: {})", names.join(", "))
                    }
                };
                e.context(format!(
                    "cannot restore {} into {} on the server{before}",
                    step.from.name.shown(),
                    step.into.shown()
                ))
            })?;
            done.push(imported);
        }
        Ok(done)
    }

    fn import_one(&mut self, step: &Step, export_dir: &Path) -> Result<Imported> {
        let (t, into) = (&step.from, &step.into);
        if step.create {
            let create = create_statement(&t.create, &t.name, into)?;
            run(&mut self.client, &format!("USE {}", quote(&into.db)), "cannot use the table's database")?;
            run(&mut self.client, &create, "cannot create the table from the backup's definition")?;
        }
        let mut bytes = 0;
        if t.partitions.is_empty() {
            let stem = t.name.file_stem().1;
            if step.create {
                // A table coffer created goes again if its import fails: nothing changed.
                let imported = self.replace_tablespace(into, export_dir, &t.name, &stem, false);
                if imported.is_err() {
                    let _ = self.client.query(&format!("DROP TABLE IF EXISTS {}", into.quoted()));
                }
                bytes += imported?;
            } else {
                self.trial(into, export_dir, t, &stem)?;
                bytes += self.replace_tablespace(into, export_dir, &t.name, &stem, true)?;
            }
        } else {
            for p in &t.exported {
                bytes += self.exchange_partition(into, p, export_dir, t)?;
            }
        }
        if !t.shape.fulltext.is_empty() {
            self.rebuild_fulltext(into, &t.shape)?;
        }
        let rows = self.verify(into, &t.partition_clause(), t.rows)?;
        Ok(Imported {
            from: t.name.shown(),
            into: into.shown(),
            created: step.create,
            rows,
            partitions: t.exported.len(),
            fulltext: t.shape.fulltext.len(),
            bytes,
            foreign_keys_left_out: t.foreign_keys_left_out.clone(),
        })
    }

    /// DISCARD, the export's files `stem.ibd` and `stem.cfg` written as `table`'s, IMPORT; the
    /// `.cfg` the import leaves is removed. The bytes written.
    /// A failure once the tablespace is discarded says so when `live` (a table of the
    /// application's, not one coffer made).
    fn replace_tablespace(
        &mut self,
        table: &TableName,
        export_dir: &Path,
        of: &TableName,
        stem: &str,
        live: bool,
    ) -> Result<u64> {
        let c = &mut self.client;
        run(c, &format!("ALTER TABLE {} DISCARD TABLESPACE", table.quoted()), "cannot discard the table's tablespace")?;
        let (db, name) = table.file_stem();
        let dir = open_dir(&self.datadir, &db)?;
        let remove = |ext: &str| {
            let _ =
                nix::unistd::unlinkat(&dir, format!("{name}.{ext}").as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        };
        let (mut bytes, mut wrote) = (0, Vec::new());
        let mut imported = Ok(Vec::new());
        for ext in ["ibd", "cfg"] {
            let from = super::export::exported_path(export_dir, of, &format!("{stem}.{ext}"));
            match write_into(&dir, &format!("{name}.{ext}"), &from, ext == "cfg") {
                Ok(n) => {
                    bytes += n;
                    wrote.push(ext);
                }
                Err(e) => {
                    let place = self.datadir.join(&db);
                    imported = Err(e.context(format!("cannot write {} into {}", from.display(), place.display())));
                    break;
                }
            }
        }
        if imported.is_ok() {
            imported =
                run(c, &format!("ALTER TABLE {} IMPORT TABLESPACE", table.quoted()), "the server refused the import");
        }
        // The .cfg the import leaves; on a failure, the .ibd written too: the table stays
        // discarded, with no file that a later import would take for its own.
        if wrote.contains(&"cfg") {
            remove("cfg");
        }
        if let Err(e) = imported {
            if wrote.contains(&"ibd") {
                remove("ibd");
            }
            if live {
                return Err(e.context(format!(
                    "{} is left discarded (its rows cannot be read) until an import succeeds: the same command with \
                     --replace imports it again",
                    table.shown()
                )));
            }
            return Err(e);
        }
        Ok(bytes)
    }

    /// Imports the export into a table made like `table` (then dropped), before `table`'s own
    /// tablespace is discarded: whatever the server refuses (a definition that differs in what
    /// the checks before do not compare, a file it cannot read) is refused while `table` is as
    /// it was.
    fn trial(&mut self, table: &TableName, export_dir: &Path, t: &Exported, stem: &str) -> Result<()> {
        let trial = holder(table)?;
        let c = &mut self.client;
        run(c, &format!("CREATE TABLE {} LIKE {}", trial.quoted(), table.quoted()), "cannot create a trial table")?;
        let tried = self.replace_tablespace(&trial, export_dir, &t.name, stem, false);
        let _ = self.client.query(&format!("DROP TABLE IF EXISTS {}", trial.quoted()));
        tried.map(|_| ()).map_err(|e| {
            e.context(format!("{} is unchanged: a table like it refused the backup's tablespace", table.shown()))
        })
    }

    /// One partition of a partitioned table: a placeholder table like it without partitioning
    /// gets the partition's tablespace, then changes places with the partition, then goes.
    fn exchange_partition(
        &mut self,
        table: &TableName,
        partition: &str,
        export_dir: &Path,
        t: &Exported,
    ) -> Result<u64> {
        let holder = holder(table)?;
        let c = &mut self.client;
        run(
            c,
            &format!("CREATE TABLE {} LIKE {}", holder.quoted(), table.quoted()),
            "cannot create a placeholder table",
        )?;
        let result = (|| {
            run(
                &mut self.client,
                &format!("ALTER TABLE {} REMOVE PARTITIONING", holder.quoted()),
                "cannot make the placeholder table",
            )?;
            let stem = format!("{}#P#{}", t.name.file_stem().1, coffer_mysql::tables::encode(partition));
            let bytes = self.replace_tablespace(&holder, export_dir, &t.name, &stem, false)?;
            run(
                &mut self.client,
                &format!(
                    "ALTER TABLE {} EXCHANGE PARTITION {} WITH TABLE {}",
                    table.quoted(),
                    quote(partition),
                    holder.quoted()
                ),
                &format!("cannot exchange partition {partition}"),
            )?;
            Ok(bytes)
        })();
        let _ = self.client.query(&format!("DROP TABLE IF EXISTS {}", holder.quoted()));
        result
    }

    /// Full-text indexes dropped with a rebuild of the table, then added again (one
    /// statement each: dropping and adding in one fails, and dropping alone then adding
    /// crashes 10.11: see docs/RELIABILITY.md).
    fn rebuild_fulltext(&mut self, table: &TableName, shape: &Shape) -> Result<()> {
        let drops: Vec<String> = shape.fulltext.iter().map(|(name, _)| format!("DROP INDEX {}", quote(name))).collect();
        run(
            &mut self.client,
            &format!("ALTER TABLE {} {}, FORCE", table.quoted(), drops.join(", ")),
            "cannot drop the imported full-text indexes",
        )?;
        let adds: Vec<String> = shape
            .fulltext
            .iter()
            .map(|(name, cols)| {
                let cols: Vec<String> = cols.iter().map(|c| quote(c)).collect();
                format!("ADD FULLTEXT KEY {} ({})", quote(name), cols.join(", "))
            })
            .collect();
        run(
            &mut self.client,
            &format!("ALTER TABLE {} {}", table.quoted(), adds.join(", ")),
            "cannot rebuild the full-text indexes",
        )?;
        Ok(())
    }

    /// CHECK TABLE says OK, the rows are as many as the backup's, statistics are rebuilt.
    fn verify(&mut self, table: &TableName, partitions: &str, rows: u64) -> Result<u64> {
        let c = &mut self.client;
        let checked = run(c, &format!("CHECK TABLE {}", table.quoted()), "cannot check the imported table")?;
        let verdict = checked.last().and_then(|r| r.get(3).cloned().flatten()).unwrap_or_default();
        if verdict != "OK" {
            crate::bail!(
                "CHECK TABLE {} says {:?} after the import",
                table.shown(),
                crate::text::escape(verdict.as_bytes())
            );
        }
        let count = value(
            c,
            &format!("SELECT COUNT(*) FROM {}{partitions}", table.quoted()),
            "cannot count the imported rows",
        )?;
        let count: u64 = count.and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        if count != rows {
            crate::bail!("{} holds {count} rows after the import, the backup's {rows}", table.shown());
        }
        run(c, &format!("ANALYZE TABLE {}", table.quoted()), "cannot analyze the imported table")?;
        Ok(count)
    }
}

/// A table of coffer's beside `table`: `T_coffer_RANDOM`, within the 64 characters of a name.
pub(crate) fn holder(table: &TableName) -> Result<TableName> {
    let mut id = [0u8; 4];
    coffer_crypto::random(&mut id).map_err(Error::other)?;
    let base: String = table.table.chars().take(40).collect();
    Ok(TableName { db: table.db.clone(), table: format!("{base}_coffer_{}", coffer_crypto::hex(&id)) })
}

/// A server's address, as messages say it.
fn shown(target: &coffer_mysql::client::Target) -> String {
    match target {
        coffer_mysql::client::Target::Socket(p) => p.display().to_string(),
        coffer_mysql::client::Target::Tcp { host, port } => format!("{host}:{port}"),
    }
}

/// The name `t` takes on the server.
fn renamed(t: &TableName, renames: &[(TableName, TableName)]) -> TableName {
    renames.iter().find(|(from, _)| from == t).map_or_else(|| t.clone(), |(_, to)| to.clone())
}

/// How the live table differs from the backup's, said column by column.
pub(crate) fn differences(backup: &Shape, live: &Shape, backup_parts: &[String], live_parts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let shown = |c: Option<&super::export::Column>| {
        c.map_or("none".to_owned(), |c| {
            format!("`{}` {}{}", c.name, c.column_type, if c.nullable == "NO" { " NOT NULL" } else { "" })
        })
    };
    for i in 0..backup.columns.len().max(live.columns.len()) {
        let (b, l) = (backup.columns.get(i), live.columns.get(i));
        if b != l {
            out.push(format!("column {}: server {}, backup {}", i + 1, shown(l), shown(b)));
        }
    }
    if !backup.row_format.eq_ignore_ascii_case(&live.row_format) {
        out.push(format!("ROW_FORMAT: server {}, backup {}", live.row_format, backup.row_format));
    }
    let names = |s: &Shape| s.fulltext.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if names(backup) != names(live) {
        out.push(format!("full-text indexes: server {:?}, backup {:?}", names(live), names(backup)));
    }
    if backup_parts != live_parts {
        out.push(format!("partitions: server {live_parts:?}, backup {backup_parts:?}"));
    }
    let options = |s: &Shape| {
        let o = s.create_options.to_ascii_lowercase();
        (o.contains("page_compressed"), o.contains("encrypted"))
    };
    if options(backup) != options(live) {
        out.push(format!("options: server {:?}, backup {:?}", live.create_options, backup.create_options));
    }
    out
}

/// The backup's `CREATE TABLE` of `from` as the statement that creates `into`: only the name
/// replaced, where SHOW CREATE TABLE writes it (nothing inside the definition is rewritten:
/// the text is the backup's server's, quoted by it).
pub(crate) fn create_statement(create: &str, from: &TableName, into: &TableName) -> Result<String> {
    let head = format!("CREATE TABLE {} (", quote(&from.table));
    let Some(body) = create.strip_prefix(&head) else {
        crate::bail!("the backup's definition of {} does not begin as SHOW CREATE TABLE writes it", from.shown());
    };
    Ok(format!("CREATE TABLE {} ({body}", into.quoted()))
}

/// The database directory `db` of the datadir, opened without following a link.
fn open_dir(datadir: &Path, db: &str) -> Result<OwnedFd> {
    let root =
        openat(nix::fcntl::AT_FDCWD, datadir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open {}", datadir.display()))?;
    openat(&root, db, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("cannot open {}", datadir.join(db).display()))
}

/// Writes `from` as `name` in `dir` (a name that must not exist, except a `.cfg` left over by an
/// import, which goes first), with the directory's owner and mode 0660, flushed. Its bytes.
fn write_into(dir: &OwnedFd, name: &str, from: &Path, replace_stale: bool) -> Result<u64> {
    if replace_stale {
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    // The owner of the table's definition (the server wrote it), else of the directory.
    let frm = format!("{}.frm", name.rsplit_once('.').map_or(name, |(stem, _)| stem));
    let owner =
        nix::sys::stat::fstatat(dir, frm.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).or_else(|_| fstat(dir))?;
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o660),
    )
    .with_context(|| format!("cannot create {name} (a file of that name is there)"))?;
    nix::unistd::fchown(&fd, Some(owner.st_uid.into()), Some(owner.st_gid.into()))?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o660))?;
    let mut out = std::fs::File::from(fd);
    let mut src = std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let bytes = std::io::copy(&mut src, &mut out)?;
    out.flush()?;
    out.sync_all()?;
    nix::unistd::fsync(dir)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::super::export::Column;
    use super::*;

    fn name(db: &str, t: &str) -> TableName {
        TableName { db: db.into(), table: t.into() }
    }

    #[test]
    fn the_backups_definition_creates_the_table_under_its_new_name() {
        let create = "CREATE TABLE `child` (\n  `id` int(11) NOT NULL,\n  CONSTRAINT `FOREIGN KEY (x)` FOREIGN KEY (`id`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
        let same = create_statement(create, &name("shop", "child"), &name("shop", "child")).unwrap();
        assert_eq!(same, create.replacen("`child`", "`shop`.`child`", 1));
        let renamed = create_statement(create, &name("shop", "child"), &name("shop", "c`r")).unwrap();
        assert!(renamed.starts_with("CREATE TABLE `shop`.`c``r` ("), "{renamed}");
        assert_eq!(
            &renamed["CREATE TABLE `shop`.`c``r` (".len()..],
            &create["CREATE TABLE `child` (".len()..],
            "the body as it was"
        );
        assert!(create_statement("CREATE TABLE `other` (x)", &name("shop", "child"), &name("shop", "child")).is_err());
    }

    #[test]
    fn differences_are_said_column_by_column() {
        let col = |n: &str, t: &str| Column { name: n.into(), column_type: t.into(), nullable: "YES".into() };
        let backup = Shape {
            columns: vec![col("id", "int(11)"), col("v", "int(11)")],
            row_format: "Dynamic".into(),
            ..Default::default()
        };
        let mut live = backup.clone();
        assert!(differences(&backup, &live, &[], &[]).is_empty());
        live.columns[1] = col("v", "bigint(20)");
        live.columns.push(col("c", "int(11)"));
        live.row_format = "Compact".into();
        let d = differences(&backup, &live, &[], &["p0".into()]);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(d[0], "column 2: server `v` bigint(20), backup `v` int(11)");
        assert_eq!(d[1], "column 3: server `c` int(11), backup none");
    }
}
