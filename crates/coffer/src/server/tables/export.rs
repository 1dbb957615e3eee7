//! The private server's side of a table restore: what each table is (its definition, columns,
//! row format, encryption key, full-text indexes, partitions, rows), then its tablespaces
//! exported (`FLUSH TABLES ... FOR EXPORT`: the `.ibd` files made consistent, a `.cfg` beside
//! each) and copied out before the lock is released (UNLOCK TABLES removes the `.cfg` files).

use crate::error::{Context, Error, Result};
use coffer_mysql::client::Client;
use coffer_mysql::tables::TableName;
use std::path::{Path, PathBuf};

/// A column, as information_schema.COLUMNS says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type, as `COLUMN_TYPE` says it (`int(11) unsigned`).
    pub column_type: String,
    /// `YES` or `NO`.
    pub nullable: String,
}

/// What a table is, as a server says it (the backup's private one, or the live one).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Shape {
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// `Dynamic`, `Compact`, `Compressed`, `Redundant`.
    pub row_format: String,
    /// The engine.
    pub engine: String,
    /// The table's options (`partitioned`, `page_compressed`, `encrypted`...).
    pub create_options: String,
    /// The key id its tablespace is encrypted with (from the tablespace, not the definition).
    pub key_id: Option<u32>,
    /// The full-text indexes: name and columns.
    pub fulltext: Vec<(String, Vec<String>)>,
}

/// A table of the backup, exported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    /// Its name.
    pub name: TableName,
    /// `SHOW CREATE TABLE`, as the backup's server says it.
    pub create: String,
    /// Its rows (`COUNT(*)` on the private server).
    pub rows: u64,
    /// What it is.
    pub shape: Shape,
    /// Its partitions, in order (none: not partitioned).
    pub partitions: Vec<String>,
    /// The partitions exported (all, unless some were asked for).
    pub exported: Vec<String>,
    /// Has it subpartitions?
    pub subpartitioned: bool,
    /// The files copied out (names in the database's directory: `t.ibd`, `t.cfg`, `t#P#p0.ibd`).
    pub files: Vec<String>,
    /// The tables its foreign keys take changes from (`ON DELETE`/`ON UPDATE` CASCADE, SET NULL
    /// or SET DEFAULT): what they do to it is not in the binary log, only their own changes.
    pub cascades_from: Vec<TableName>,
    /// Foreign keys left out of the definition (a table restored under a new name: their
    /// constraint names are the original table's on the server).
    pub foreign_keys_left_out: Vec<String>,
}

impl Exported {
    /// ` PARTITION (p1, p2)` when only some partitions are exported (their rows are counted),
    /// else nothing.
    pub(crate) fn partition_clause(&self) -> String {
        if self.exported == self.partitions {
            return String::new();
        }
        let names: Vec<String> = self.exported.iter().map(|p| coffer_mysql::tables::quote(p)).collect();
        format!(" PARTITION ({})", names.join(", "))
    }
}

/// What an export wrote, and the private server's log sequence number at the end (no page of
/// the exported files is later).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Export {
    /// The tables.
    pub tables: Vec<Exported>,
    /// The private server's `Innodb_lsn_current`.
    pub lsn: u64,
    /// Its page size.
    pub page_size: u64,
}

/// An SQL string literal for `text` that no `sql_mode` reads otherwise.
pub(crate) fn literal(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    if hex.is_empty() {
        "''".into()
    } else {
        format!("CONVERT(X'{hex}' USING utf8mb4)")
    }
}

/// Runs `sql` on `c`, saying what was being done on failure.
pub(crate) fn run(c: &mut Client, sql: &str, doing: &str) -> Result<Vec<Vec<Option<String>>>> {
    c.query(sql).map_err(|e| Error::other(e).context(doing.to_owned()))
}

/// The one value `sql` returns.
pub(crate) fn value(c: &mut Client, sql: &str, doing: &str) -> Result<Option<String>> {
    Ok(run(c, sql, doing)?.into_iter().next().and_then(|r| r.into_iter().next()).flatten())
}

/// What `t` is on the server `c` reaches; `None` when it has no such table.
pub(crate) fn shape(c: &mut Client, t: &TableName) -> Result<Option<Shape>> {
    let doing = format!("cannot read the definition of {}", t.shown());
    let filter = format!("TABLE_SCHEMA = {} AND TABLE_NAME = {}", literal(&t.db), literal(&t.table));
    let rows = run(
        c,
        &format!("SELECT ROW_FORMAT, ENGINE, CREATE_OPTIONS FROM information_schema.TABLES WHERE {filter}"),
        &doing,
    )?;
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let mut shape = Shape { row_format: field(0), engine: field(1), create_options: field(2), ..Default::default() };
    let columns = run(
        c,
        &format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS WHERE {filter} ORDER BY ORDINAL_POSITION"
        ),
        &doing,
    )?;
    shape.columns = columns
        .into_iter()
        .map(|r| {
            let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            Column { name: f(0), column_type: f(1), nullable: f(2) }
        })
        .collect();
    let fulltext = run(
        c,
        &format!(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE {filter} AND INDEX_TYPE = 'FULLTEXT' \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX"
        ),
        &doing,
    )?;
    for r in fulltext {
        let (Some(index), Some(column)) = (r.first().cloned().flatten(), r.get(1).cloned().flatten()) else { continue };
        match shape.fulltext.last_mut() {
            Some((name, columns)) if *name == index => columns.push(column),
            _ => shape.fulltext.push((index, vec![column])),
        }
    }
    let space = format!("{}/{}", t.file_stem().0, t.file_stem().1);
    let partition = format!("{space}#P#");
    let key = value(
        c,
        &format!(
            "SELECT MAX(CURRENT_KEY_ID) FROM information_schema.INNODB_TABLESPACES_ENCRYPTION WHERE ENCRYPTION_SCHEME <> 0 \
             AND (NAME = {} OR LOCATE({}, NAME) = 1)",
            literal(&space),
            literal(&partition)
        ),
        &doing,
    )?;
    shape.key_id = key.and_then(|k| k.parse().ok());
    Ok(Some(shape))
}

/// Describes every table of `tables` on the private server `c`, exports their tablespaces, and
/// copies them into `out/DB/` (DB as the datadir names it) from `datadir`, then releases them.
/// With `partitions`, only those of a partitioned table are exported (the selection has one).
pub(crate) fn export(
    c: &mut Client,
    datadir: &Path,
    tables: &[TableName],
    partitions: &[String],
    renamed: &[TableName],
    out: &Path,
) -> Result<Export> {
    let mut exported = Vec::new();
    for t in tables {
        let dropped = if renamed.contains(t) { drop_foreign_keys(c, t)? } else { Vec::new() };
        let mut e = describe(c, t)?;
        e.foreign_keys_left_out = dropped;
        if !partitions.is_empty() {
            let missing: Vec<&str> =
                partitions.iter().filter(|p| !e.partitions.contains(p)).map(String::as_str).collect();
            if !missing.is_empty() {
                crate::bail!(
                    "{} has no partition {} (it has {})",
                    t.shown(),
                    missing.join(", "),
                    e.partitions.join(", ")
                );
            }
            e.exported.retain(|p| partitions.contains(p));
            let count = value(
                c,
                &format!("SELECT COUNT(*) FROM {}{}", t.quoted(), e.partition_clause()),
                "cannot count the partitions' rows",
            )?;
            e.rows = count.and_then(|n| n.parse().ok()).unwrap_or(0);
        }
        exported.push(e);
    }
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    run(c, &format!("FLUSH TABLES {} FOR EXPORT", names.join(", ")), "cannot export the tables from the backup")?;
    let copied = exported.iter_mut().try_for_each(|e| copy_out(datadir, e, out));
    let released = run(c, "UNLOCK TABLES", "cannot release the exported tables");
    copied?;
    released?;
    let lsn = value(
        c,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_LSN_CURRENT'",
        "cannot read the log sequence number",
    )?;
    let page_size = value(c, "SELECT @@innodb_page_size", "cannot read the page size")?;
    Ok(Export {
        tables: exported,
        lsn: lsn.and_then(|l| l.parse().ok()).unwrap_or(0),
        page_size: page_size.and_then(|p| p.parse().ok()).unwrap_or(16384),
    })
}

/// The foreign keys of `t`, dropped on the private server (before its definition is read):
/// their names. Nothing of the backup's text is rewritten to leave them out.
fn drop_foreign_keys(c: &mut Client, t: &TableName) -> Result<Vec<String>> {
    let doing = format!("cannot leave out the foreign keys of {}", t.shown());
    let names: Vec<String> = run(
        c,
        &format!(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {} AND TABLE_NAME = {}",
            literal(&t.db),
            literal(&t.table)
        ),
        &doing,
    )?
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect();
    if !names.is_empty() {
        let drops: Vec<String> =
            names.iter().map(|n| format!("DROP FOREIGN KEY {}", coffer_mysql::tables::quote(n))).collect();
        run(c, "SET SESSION foreign_key_checks = 0", &doing)?;
        run(c, &format!("ALTER TABLE {} {}", t.quoted(), drops.join(", ")), &doing)?;
    }
    Ok(names)
}

/// The tables whose changes `t`'s foreign keys cascade into it.
fn cascades_from(c: &mut Client, t: &TableName) -> Result<Vec<TableName>> {
    let rows = run(
        c,
        &format!(
            "SELECT UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = {} AND TABLE_NAME = {} AND (DELETE_RULE <> 'RESTRICT' AND DELETE_RULE <> 'NO ACTION' \
             OR UPDATE_RULE <> 'RESTRICT' AND UPDATE_RULE <> 'NO ACTION')",
            literal(&t.db),
            literal(&t.table)
        ),
        &format!("cannot read the foreign keys of {}", t.shown()),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some(TableName { db: r.first()?.clone()?, table: r.get(1)?.clone()? }))
        .collect())
}

/// What `t` is on the private server, and its rows.
fn describe(c: &mut Client, t: &TableName) -> Result<Exported> {
    let doing = format!("the backup's server cannot read {}", t.shown());
    let rows = run(c, &format!("SHOW CREATE TABLE {}", t.quoted()), &doing).map_err(|e| {
        if e.to_string().contains("1146") {
            e.context(format!(
                "{} is not there (a replay to a point in time after its DROP? --exclusive stops before)",
                t.shown()
            ))
        } else {
            e
        }
    })?;
    let create = rows.into_iter().next().and_then(|r| r.into_iter().nth(1)).flatten().context(doing.clone())?;
    let shape = shape(c, t)?.context(doing.clone())?;
    if !shape.engine.eq_ignore_ascii_case("InnoDB") {
        crate::bail!(
            "{} is an {} table: only InnoDB tables are restored into a running server",
            t.shown(),
            shape.engine
        );
    }
    let count = value(c, &format!("SELECT COUNT(*) FROM {}", t.quoted()), &doing)?;
    let filter = format!("TABLE_SCHEMA = {} AND TABLE_NAME = {}", literal(&t.db), literal(&t.table));
    let parts = run(
        c,
        &format!(
            "SELECT PARTITION_NAME, SUBPARTITION_NAME FROM information_schema.PARTITIONS WHERE {filter} \
             AND PARTITION_NAME IS NOT NULL ORDER BY PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION"
        ),
        &doing,
    )?;
    let subpartitioned = parts.iter().any(|r| r.get(1).cloned().flatten().is_some());
    let partitions: Vec<String> = parts.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
    Ok(Exported {
        name: t.clone(),
        create,
        rows: count.and_then(|n| n.parse().ok()).unwrap_or(0),
        shape,
        exported: partitions.clone(),
        partitions,
        subpartitioned,
        files: Vec::new(),
        cascades_from: cascades_from(c, t)?,
        foreign_keys_left_out: Vec::new(),
    })
}

/// Copies the exported tablespaces of `e` (and their `.cfg`) out of the private datadir.
fn copy_out(datadir: &Path, e: &mut Exported, out: &Path) -> Result<()> {
    let (db, stem) = e.name.file_stem();
    let from = datadir.join(&db);
    let to = out.join(&db);
    std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut names: Vec<String> = Vec::new();
    let stems: Vec<String> = if e.partitions.is_empty() {
        vec![stem.clone()]
    } else {
        e.exported.iter().map(|p| format!("{stem}#P#{}", coffer_mysql::tables::encode(p))).collect()
    };
    for s in &stems {
        for ext in ["ibd", "cfg"] {
            names.push(format!("{s}.{ext}"));
        }
    }
    for name in &names {
        let src = from.join(name);
        copy_file(&src, &to.join(name)).with_context(|| {
            format!("cannot copy the export of {} ({}) out of the backup's server", e.name.shown(), src.display())
        })?;
    }
    e.files = names;
    Ok(())
}

/// Copies `from` (a regular file, not followed if a link: the private datadir is its server
/// user's) to `to` (new), flushed.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(from)?;
    if !src.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

/// The path of `name` of table `t` under an export's directory.
pub(crate) fn exported_path(out: &Path, t: &TableName, name: &str) -> PathBuf {
    out.join(t.file_stem().0).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_hex_whatever_the_text() {
        assert_eq!(literal("a'b\\"), "CONVERT(X'6127625c' USING utf8mb4)");
        assert_eq!(literal(""), "''");
    }
}
