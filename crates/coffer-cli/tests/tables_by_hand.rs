//! The single-table restore a DBA does by hand today, on real MariaDB, for every kind of table
//! issue 30 names: `mariadb-backup --backup`, `--prepare --export`, then on the running server
//! CREATE TABLE / DISCARD TABLESPACE / copy the .ibd and .cfg / IMPORT TABLESPACE. What works is
//! proven (each table equals its checksum at the backup, every other table untouched, the
//! server never restarted, nothing written to its binary log); what the server itself refuses or
//! gets wrong is pinned, with its own error text, so that coffer's refusals and recipes rest on
//! it. The facts behind each step: /work/helpers/30/findings.md.

mod common;

use common::mariadb::{self, Server};
use common::tables::{self, *};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The import session's settings: nothing to the binary log (replicas keep their copy), and a
/// table other tables reference may be discarded.
const SESSION: &str = "SET SESSION sql_log_bin = 0, foreign_key_checks = 0;";

/// A server with the binary log (ROW), keys 1 and 2 of `keys`, in `fx`'s `name`.
fn server(fx: &Fixture, name: &str, keys: &Path) -> Server {
    let mut opts: Vec<String> = ["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"].map(String::from).into();
    opts.extend(key_options(keys));
    Server::start(&fx.path(name), &opts)
}

/// An origin with every kind of table, its checksums, its backup prepared with --export.
fn origin(fx: &Fixture) -> (Server, BTreeMap<String, String>, std::path::PathBuf) {
    mariadb::write_key_file(&fx.path("keys"), None);
    let src = server(fx, "src", &fx.path("keys"));
    let sums = tables::create(&src, true);
    let backup = backup_exported(&src, &fx.path("backup"));
    (src, sums, backup)
}

/// Copies the backup's `kinds/<from>.ibd` (and its .cfg, with `cfg`) to `kinds/<to>.*` in
/// `server`'s datadir, mode 0660 (the test server runs as this user: no chown).
fn place(server: &Server, backup: &Path, from: &str, to: &str, cfg: bool) {
    use std::os::unix::fs::PermissionsExt;
    let exts: &[&str] = if cfg { &["ibd", "cfg"] } else { &["ibd"] };
    for ext in exts {
        let dest = server.datadir.join(DB).join(format!("{to}.{ext}"));
        std::fs::copy(backup.join(DB).join(format!("{from}.{ext}")), &dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o660)).unwrap();
    }
}

/// The backup's definition of `kinds.<t>` made on `server` (the database must exist).
fn create_as_backed_up(server: &Server, definition: &str) {
    server.sql(&format!("{SESSION} USE {DB}; {definition}"));
}

/// DISCARD, the backup's files in, IMPORT, the leftover .cfg removed (IMPORT keeps it), CHECK.
fn import(server: &Server, backup: &Path, t: &str) {
    server.sql(&format!("{SESSION} ALTER TABLE {DB}.{t} DISCARD TABLESPACE"));
    place(server, backup, t, t, true);
    server.sql(&format!("{SESSION} ALTER TABLE {DB}.{t} IMPORT TABLESPACE"));
    let cfg = server.datadir.join(DB).join(format!("{t}.cfg"));
    assert!(cfg.exists(), "IMPORT TABLESPACE removed the .cfg: the recipe's cleanup step is moot");
    std::fs::remove_file(cfg).unwrap();
    let check = server.sql(&format!("CHECK TABLE {DB}.{t}"));
    assert!(check.trim_end().ends_with("OK"), "CHECK TABLE {t}: {check}");
}

/// A partitioned table, partition by partition: a placeholder without partitioning takes each
/// partition's files, then EXCHANGE PARTITION swaps it in (whole-table DISCARD is refused).
fn import_partitions(server: &Server, backup: &Path) {
    let whole = try_sql(server, &format!("{SESSION} ALTER TABLE {DB}.part DISCARD TABLESPACE"));
    let err = whole.expect_err("DISCARD TABLESPACE of a partitioned table");
    assert!(err.contains("ERROR 1031") && err.contains("doesn't have this option"), "{err}");
    for p in PARTITIONS {
        server.sql(&format!(
            "{SESSION} CREATE TABLE {DB}.part_x LIKE {DB}.part; ALTER TABLE {DB}.part_x REMOVE PARTITIONING; \
             ALTER TABLE {DB}.part_x DISCARD TABLESPACE"
        ));
        place(server, backup, &format!("part#P#{p}"), "part_x", true);
        server.sql(&format!(
            "{SESSION} ALTER TABLE {DB}.part_x IMPORT TABLESPACE; \
             ALTER TABLE {DB}.part EXCHANGE PARTITION {p} WITH TABLE {DB}.part_x; DROP TABLE {DB}.part_x"
        ));
    }
    let left: Vec<_> = std::fs::read_dir(server.datadir.join(DB))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part_x"))
        .collect();
    assert!(left.is_empty(), "the placeholder left files: {left:?}");
}

/// FULLTEXT: the import keeps the rows but not the index (DISCARD dropped its auxiliary
/// tables): MATCH fails until the index is dropped with a rebuild, then added again.
fn import_fulltext(server: &Server, backup: &Path) {
    import(server, backup, "ft");
    let search = format!("SELECT COUNT(*) FROM {DB}.ft WHERE MATCH(body) AGAINST('word7')");
    let err = try_sql(server, &search).expect_err("MATCH right after the import");
    assert!(err.contains("ERROR 1764") && err.contains("does not have FULLTEXT index"), "{err}");
    server.sql(&format!("{SESSION} ALTER TABLE {DB}.ft DROP INDEX fbody, FORCE"));
    server.sql(&format!("{SESSION} ALTER TABLE {DB}.ft ADD FULLTEXT KEY fbody (body)"));
    // 'word7' is in every row whose number is 7 modulo 50.
    assert_eq!(server.sql(&search).trim(), "60");
}

#[test]
fn every_kind_by_hand_into_the_running_origin() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let (src, at_backup, backup) = origin(&fx);
    let defs: BTreeMap<String, String> = tables(true).iter().map(|t| (t.clone(), definition(&src, t))).collect();
    // Writes after the backup to a table no restore touches; then the mistakes.
    src.sql("UPDATE kinds.bystander SET v = v + 1 WHERE id <= 100");
    let bystander = checksums(&src, &["kinds.bystander"]);
    let up = uptime(&src);
    for t in ["kinds.plain", "kinds.child", "kinds.part", "kinds.ft", "kinds.enc"] {
        drop_table(&src, t);
    }
    truncate(&src, "kinds.rc");
    bad_update(&src, "kinds.pc", "v = 'oops'");
    bad_update(&src, "kinds.parent", "name = 'oops'");
    let logged = src.sql("SELECT @@gtid_binlog_pos");

    for t in ["plain", "child", "part", "ft", "enc"] {
        create_as_backed_up(&src, &defs[&format!("{DB}.{t}")]);
    }
    // The server the backup came from: its LSN is past every page of the backup, which an
    // encrypted tablespace needs (see the younger server below).
    assert!(lsn(&src) > max_page_lsn(&backup.join("kinds/enc.ibd"), 16384));
    for t in ["plain", "child", "enc", "rc", "pc"] {
        import(&src, &backup, t);
    }
    // A table others reference: DISCARD needs foreign_key_checks=0.
    let err = try_sql(&src, "ALTER TABLE kinds.parent DISCARD TABLESPACE").expect_err("DISCARD of a parent");
    assert!(err.contains("ERROR 1451"), "{err}");
    import(&src, &backup, "parent");
    import_partitions(&src, &backup);
    import_fulltext(&src, &backup);

    let restored: Vec<String> = tables(true).into_iter().filter(|t| t != "kinds.bystander").collect();
    let now = checksums(&src, &restored);
    for t in &restored {
        assert_eq!(now[t], at_backup[t], "{t} differs from the backup");
    }
    assert_eq!(checksums(&src, &["kinds.bystander"]), bystander, "a table no restore touched changed");
    assert_eq!(src.sql("SELECT @@gtid_binlog_pos"), logged, "the import session wrote to the binary log");
    assert!(uptime(&src) >= up, "the server restarted");
}
