//! Tables as a server backup's files name them, and as users name them.
//!
//! A MariaDB (or MySQL 5.7) datadir keeps a table `db.t` of the InnoDB file-per-table kind in
//! `db/t.frm` (its definition) and `db/t.ibd` (its tablespace); a partitioned table has one
//! tablespace per partition, `db/t#P#p0.ibd` (and `#SP#` for subpartitions) and `db/t.par`; a
//! tablespace elsewhere leaves `db/t.isl`; an export adds `db/t.cfg` (`.cfp` for MySQL's
//! encrypted ones); an incremental backup holds `db/t.ibd.delta` and `db/t.ibd.meta` in place of
//! the tablespace. The full-text index of a table lives in auxiliary tablespaces named after the
//! table's id (`db/FTS_<id>_..._INDEX_1.ibd`), not its name. Names that are not plain letters,
//! digits and `_` are written in MariaDB's file-name encoding (`@0024` for `$`).
//!
//! Everything here reads names only: the bytes are an image's (hostile), so nothing is trusted
//! that does not parse.

use std::collections::{BTreeMap, BTreeSet};

/// The schemas of the server itself: never restored as user tables.
pub const SYSTEM_SCHEMAS: [&str; 3] = ["mysql", "performance_schema", "sys"];

/// The longest name of a database or table (MariaDB's limit, in characters).
pub const MAX_NAME: usize = 64;

/// A table, by the names SQL gives it (decoded from file names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TableName {
    /// The database.
    pub db: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// `db.t`, as messages say it.
    pub fn shown(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// `` `db`.`t` ``, as SQL names it (backquotes doubled).
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.db), quote(&self.table))
    }

    /// The directory and the base name its files have in a datadir (`db`, `t`), encoded.
    pub fn file_stem(&self) -> (String, String) {
        (encode(&self.db), encode(&self.table))
    }
}

/// An identifier quoted for SQL: in backquotes, a backquote doubled. Any text is safe so.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// What a table's file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.ibd` (or `.new`, as mariadb-backup names one created since the last checkpoint): a
    /// tablespace (the table's, or one partition's).
    Tablespace,
    /// `.frm`: the table's definition.
    Definition,
    /// `.par`: the partitioning of a partitioned table.
    Partitioning,
    /// `.isl`: a link to a tablespace kept elsewhere.
    Link,
    /// `.cfg` or `.cfp`: what an export says of a tablespace.
    Export,
    /// `.ibd.delta` or `.ibd.meta`: an incremental backup's pages of a tablespace.
    Delta,
    /// Another engine's file (`.MYD`, `.MYI`, `.MAD`, `.MAI`, `.CSV`, `.ARZ`, triggers' `.TRG`).
    Other,
}

/// A file of a table, read from its path in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// The table.
    pub table: TableName,
    /// The partition (`p0`, or `p0#SP#sp0` for a subpartition), for a partition's file.
    pub partition: Option<String>,
    /// What the file is.
    pub kind: FileKind,
}

/// The file `path` (`db/name.ext`, relative to a datadir) as a table's, if it is one. Files at
/// the top, deeper files, `db.opt`, the server's temporary tables (`#sql...`), full-text
/// auxiliaries (see [`is_fulltext_auxiliary`]) and names that do not decode are no table's.
pub fn table_file(path: &[u8]) -> Option<TableFile> {
    let path = std::str::from_utf8(path).ok()?;
    let (db, file) = path.split_once('/')?;
    if file.contains('/') || db.is_empty() || is_fulltext_auxiliary(file) || file.starts_with("#sql") {
        return None;
    }
    let (stem, kind) = split_extension(file)?;
    let (name, partition) = match find_ignore_case(stem, "#P#") {
        Some(at) => {
            let parts: Option<Vec<String>> = stem[at + 3..].split("#SP#").map(decode).collect();
            (&stem[..at], Some(parts?.join("#SP#")))
        }
        None => (stem, None),
    };
    if name.is_empty() {
        return None;
    }
    Some(TableFile { table: TableName { db: decode(db)?, table: decode(name)? }, partition, kind })
}

/// Is `file` (a name in a database's directory) a tablespace of a full-text index, named after
/// its table's id (`FTS_0000000000000123_...`)?
pub fn is_fulltext_auxiliary(file: &str) -> bool {
    file.starts_with("FTS_") && file.len() > 20 && file.as_bytes()[4..20].iter().all(u8::is_ascii_hexdigit)
}

fn split_extension(file: &str) -> Option<(&str, FileKind)> {
    for (suffix, kind) in [(".ibd.delta", FileKind::Delta), (".ibd.meta", FileKind::Delta)] {
        if let Some(stem) = file.strip_suffix(suffix) {
            return Some((stem, kind));
        }
    }
    let (stem, ext) = file.rsplit_once('.')?;
    let kind = match ext {
        // mariadb-backup names a tablespace created since the last checkpoint `.new`.
        "ibd" | "new" => FileKind::Tablespace,
        "frm" => FileKind::Definition,
        "par" => FileKind::Partitioning,
        "isl" => FileKind::Link,
        "cfg" | "cfp" => FileKind::Export,
        "MYD" | "MYI" | "MAD" | "MAI" | "CSV" | "CSM" | "ARZ" | "ARM" | "TRG" => FileKind::Other,
        _ => return None,
    };
    Some((stem, kind))
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// A name as MariaDB writes it into a file name: letters, digits and `_` as they are (ASCII
/// letters only), every other character as `@` and four hex digits of its code point. (MariaDB
/// writes some letters of other scripts in a shorter form of its own, which [`decode`] refuses:
/// such names are named in that form.)
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if (c as u32) <= 0xFFFF {
            out.push_str(&format!("@{:04x}", c as u32));
        } else {
            // Outside MariaDB's names (its identifiers are in the basic plane).
            out.push_str(&format!("@{:04x}", 0xFFFD));
        }
    }
    out
}

/// A file name's part decoded into the name SQL gives: `@` and four hex digits is that code
/// point; `None` for another `@` form, a character a file name of MariaDB's never holds, or a
/// name longer than a server allows.
pub fn decode(file: &str) -> Option<String> {
    let mut out = String::with_capacity(file.len());
    let mut rest = file;
    while let Some(c) = rest.chars().next() {
        if c == '@' {
            let hex = rest.get(1..5)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            rest = &rest[5..];
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            rest = &rest[1..];
        } else {
            return None;
        }
    }
    // Control characters name no table coffer restores: they would break the lines and
    // comments the name is shown in.
    (!out.is_empty() && out.chars().count() <= MAX_NAME && !out.chars().any(char::is_control)).then_some(out)
}

/// The tables a user names: `db.t1,db.t2,db2.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Each pattern: a database, and a table (`None`: all of the database's).
    pub patterns: Vec<(String, Option<String>)>,
}

/// Why a selection of tables is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectionError(String);

impl std::str::FromStr for Selection {
    type Err = SelectionError;
    fn from_str(text: &str) -> Result<Self, SelectionError> {
        let mut patterns = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let refuse = |why: &str| SelectionError(format!("--tables {part}: {why}"));
            let (db, table) = split_name(part).ok_or_else(|| refuse("name a table as DB.TABLE or DB.*"))?;
            if db.is_empty() || table.is_empty() || db.chars().count() > MAX_NAME || table.chars().count() > MAX_NAME {
                return Err(refuse("a database and a table name of 1 to 64 characters"));
            }
            if [&db, &table].iter().any(|n| n.contains('/') || n.chars().any(char::is_control)) {
                return Err(refuse("a name with / or a control character is no table coffer restores"));
            }
            if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(&db)) {
                return Err(refuse("the server's own schemas are not restored table by table"));
            }
            patterns.push((db, (table != "*").then_some(table)));
        }
        if patterns.is_empty() {
            return Err(SelectionError("--tables names no table".into()));
        }
        Ok(Selection { patterns })
    }
}

/// `db.t`, each part plain or in backquotes (`` `a.b`.`c``d` ``: a doubled backquote is one).
fn split_name(text: &str) -> Option<(String, String)> {
    let (db, rest) = identifier(text)?;
    let (table, rest) = identifier(rest.strip_prefix('.')?)?;
    rest.is_empty().then_some((db, table))
}

/// The identifier `text` begins with, and what follows it.
fn identifier(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('`') else {
        let end = text.find('.').unwrap_or(text.len());
        return Some((text[..end].to_owned(), &text[end..]));
    };
    let mut name = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '`' {
            name.push(c);
        } else if chars.peek().is_some_and(|(_, n)| *n == '`') {
            chars.next();
            name.push('`');
        } else {
            return Some((name, &quoted[i + 1..]));
        }
    }
    None
}

/// `--rename DB.T=DB.T2`: a table and its new name.
pub fn parse_rename(text: &str) -> Result<(TableName, TableName), SelectionError> {
    let exact = |part: &str| -> Result<TableName, SelectionError> {
        let s: Selection = part.parse()?;
        match s.patterns.as_slice() {
            [(db, Some(table))] => Ok(TableName { db: db.clone(), table: table.clone() }),
            _ => Err(SelectionError(format!("--rename {text}: name one table on each side of ="))),
        }
    };
    let (from, to) = text.split_once('=').ok_or_else(|| SelectionError(format!("--rename {text}: DB.T=DB.T2")))?;
    Ok((exact(from)?, exact(to)?))
}

impl Selection {
    /// Does the selection name `t`?
    pub fn matches(&self, t: &TableName) -> bool {
        self.patterns.iter().any(|(db, table)| *db == t.db && table.as_ref().is_none_or(|n| *n == t.table))
    }

    /// The tables of `held` it names, and the patterns that name none of them.
    pub fn resolve<'a>(&self, held: impl Iterator<Item = &'a TableName>) -> (BTreeSet<TableName>, Vec<String>) {
        let held: BTreeSet<&TableName> = held.collect();
        let chosen: BTreeSet<TableName> = held.iter().filter(|t| self.matches(t)).map(|t| (*t).clone()).collect();
        let unmatched = self
            .patterns
            .iter()
            .filter(|(db, table)| !chosen.iter().any(|t| t.db == *db && table.as_ref().is_none_or(|n| *n == t.table)))
            .map(|(db, table)| format!("{db}.{}", table.as_deref().unwrap_or("*")))
            .collect();
        (chosen, unmatched)
    }
}

/// Does a restore of the tables `chosen` need the backup's file `path`? Everything that is no
/// user table's (the files at the top: system tablespace, redo, undo, the engine's and coffer's
/// descriptions; the server's own schemas; each database's directory and `db.opt`), the chosen
/// tables' files, and the full-text auxiliaries of their databases (named by table id, which
/// only the dictionary maps).
pub fn needed_for(path: &[u8], chosen: &BTreeSet<TableName>) -> bool {
    let Ok(text) = std::str::from_utf8(path) else { return false };
    let Some((db, file)) = text.split_once('/') else { return true };
    if SYSTEM_SCHEMAS.contains(&db) {
        return true;
    }
    if file.contains('/') {
        return false;
    }
    if file == "db.opt" {
        return true;
    }
    if is_fulltext_auxiliary(file.split('.').next().unwrap_or_default()) {
        return decode(db).is_some_and(|db| chosen.iter().any(|t| t.db == db));
    }
    table_file(path).is_some_and(|f| chosen.contains(&f.table))
}

/// A table a backup holds, as its index says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldTable {
    /// Its name.
    pub name: TableName,
    /// Its partitions (none: not partitioned).
    pub partitions: Vec<String>,
    /// The bytes of its files.
    pub bytes: u64,
    /// Has it a tablespace of its own (`.ibd`; or incremental pages of one)?
    pub tablespace: bool,
    /// Other engines' files (not InnoDB: not restored table by table).
    pub other_engine: bool,
}

/// The user tables among a backup's files (`(path, size)`), by name, with their sizes.
pub fn held<'a>(files: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<HeldTable> {
    let mut by_name: BTreeMap<TableName, HeldTable> = BTreeMap::new();
    for (path, size) in files {
        let Some(f) = table_file(path) else { continue };
        if SYSTEM_SCHEMAS.contains(&f.table.db.as_str()) {
            continue;
        }
        let t = by_name.entry(f.table.clone()).or_insert_with(|| HeldTable {
            name: f.table.clone(),
            partitions: Vec::new(),
            bytes: 0,
            tablespace: false,
            other_engine: false,
        });
        t.bytes = t.bytes.saturating_add(size);
        t.tablespace |= matches!(f.kind, FileKind::Tablespace | FileKind::Delta);
        t.other_engine |= f.kind == FileKind::Other && !path.ends_with(b".TRG");
        if let Some(p) = f.partition.filter(|_| matches!(f.kind, FileKind::Tablespace | FileKind::Delta)) {
            if !t.partitions.contains(&p) {
                t.partitions.push(p);
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(db: &str, t: &str) -> TableName {
        TableName { db: db.into(), table: t.into() }
    }

    #[test]
    fn files_name_their_tables_and_partitions() {
        let f = table_file(b"sbtest/sbtest1.ibd").unwrap();
        assert_eq!((f.table, f.partition, f.kind), (name("sbtest", "sbtest1"), None, FileKind::Tablespace));
        let f = table_file(b"shop/orders#P#p2019.ibd").unwrap();
        assert_eq!((f.table, f.partition.as_deref()), (name("shop", "orders"), Some("p2019")));
        let f = table_file(b"shop/orders#P#p0#SP#p0sp1.ibd.delta").unwrap();
        assert_eq!((f.partition.as_deref(), f.kind), (Some("p0#SP#p0sp1"), FileKind::Delta));
        assert_eq!(table_file(b"my@002ddb/a@0024b.frm").unwrap().table, name("my-db", "a$b"));
        for none in [
            &b"ibdata1"[..],
            b"db/db.opt",
            b"db/#sql-1a2b_3.ibd",
            b"db/FTS_0000000000000123_0000000000000456_INDEX_1.ibd",
            b"db/sub/t.ibd",
            b"db/t.txt",
            b"db/a@zzzzb.ibd",
            b"db/.ibd",
            b"\xff/t.ibd",
        ] {
            assert_eq!(table_file(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn names_encode_as_mariadb_writes_them_and_back() {
        assert_eq!(encode("sbtest1"), "sbtest1");
        assert_eq!(encode("a-b c$"), "a@002db@0020c@0024");
        assert_eq!(decode("a@002db@0020c@0024").as_deref(), Some("a-b c$"));
        assert_eq!(decode("t@0060x").as_deref(), Some("t`x"));
        assert_eq!(decode("t@0G"), None);
        assert_eq!(decode(&"a".repeat(65)), None);
        assert_eq!(decode("@0000"), None);
        assert_eq!(decode("x@000aDROP"), None, "a newline in a name");
    }

    #[test]
    fn selections_parse_and_refuse() {
        let s: Selection = "db.t1, db.t2,db2.*,`a.b`.`c``d`".parse().unwrap();
        assert_eq!(s.patterns.len(), 4);
        assert!(s.matches(&name("db", "t1")) && s.matches(&name("db2", "x")) && !s.matches(&name("db", "t3")));
        assert!(!s.matches(&name("db", "T1")), "names are matched as given");
        for bad in ["", "db", "db.", ".t", "mysql.user", "db.a/b", &format!("db.{}", "x".repeat(65))] {
            assert!(bad.parse::<Selection>().is_err(), "{bad}");
        }
        let held = [name("db", "t1"), name("db", "t2"), name("db3", "z")];
        let (chosen, unmatched) = s.resolve(held.iter());
        assert_eq!(chosen.len(), 2);
        assert_eq!(unmatched, ["db2.*", "a.b.c`d"]);
    }

    #[test]
    fn a_restore_of_some_tables_reads_the_rest_of_the_server_but_no_other_table() {
        let chosen: BTreeSet<_> = [name("db", "t1"), name("db", "p")].into();
        for needed in [
            &b"ibdata1"[..],
            b"ib_logfile0",
            b"undo001",
            b"coffer-backup.json",
            b"mysql/user.MAD",
            b"mysql/innodb_table_stats.ibd",
            b"db/db.opt",
            b"db/t1.frm",
            b"db/t1.ibd",
            b"db/t1.ibd.delta",
            b"db/p#P#p1.ibd",
            b"db/p#P#p2.new",
            b"db/p.par",
            b"db/FTS_0000000000000123_0000000000000456_INDEX_1.ibd",
        ] {
            assert!(needed_for(needed, &chosen), "{}", String::from_utf8_lossy(needed));
        }
        for not in [
            &b"db/t2.ibd"[..],
            b"db/t2.frm",
            b"db/t11.ibd",
            b"other/t1.ibd",
            b"other/FTS_0000000000000123_0000000000000456_INDEX_1.ibd",
            b"db/x/y",
        ] {
            assert!(!needed_for(not, &chosen), "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn held_tables_group_their_files() {
        let files: Vec<(&[u8], u64)> = vec![
            (b"db/t.frm", 1),
            (b"db/t.ibd", 100),
            (b"db/p.frm", 1),
            (b"db/p.par", 1),
            (b"db/p#P#p0.ibd", 10),
            (b"db/p#P#p1.ibd", 20),
            (b"db/m.MYD", 5),
            (b"mysql/user.frm", 1),
            (b"ibdata1", 1000),
        ];
        let held = held(files.into_iter());
        assert_eq!(held.len(), 3);
        assert_eq!((held[0].name.table.as_str(), held[0].other_engine, held[0].tablespace), ("m", true, false));
        assert_eq!((held[1].bytes, held[1].partitions.len()), (32, 2));
        assert_eq!((held[2].bytes, held[2].tablespace), (101, true));
    }

    proptest::proptest! {
        #[test]
        fn any_path_is_read_without_panic(path in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = table_file(&path);
            let _ = needed_for(&path, &BTreeSet::new());
        }

        #[test]
        fn encoded_names_decode_to_themselves(s in "[a-zA-Z0-9_ $.,`-]{1,64}") {
            proptest::prop_assert_eq!(decode(&encode(&s)), Some(s));
        }
    }
}
