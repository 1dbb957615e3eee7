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

/// The options of a server with the binary log (ROW) and the keys of `keys`.
fn options(keys: &Path) -> Vec<String> {
    let mut opts: Vec<String> = ["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"].map(String::from).into();
    opts.extend(key_options(keys));
    opts
}

/// A server with the binary log (ROW), keys 1 and 2 of `keys`, in `fx`'s `name`.
fn server(fx: &Fixture, name: &str, keys: &Path) -> Server {
    Server::start(&fx.path(name), &options(keys))
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

/// Writes on `server` (not logged) until its LSN passes `need`.
fn grow_lsn(server: &Server, need: u64) {
    server.sql(&format!("{SESSION} CREATE TABLE {DB}.filler (id INT PRIMARY KEY AUTO_INCREMENT, v LONGTEXT)"));
    for _ in 0..200 {
        if lsn(server) > need {
            return;
        }
        server.sql(&format!("{SESSION} INSERT INTO {DB}.filler (v) VALUES (REPEAT('x', 1000000))"));
    }
    panic!("the LSN did not pass {need}");
}

/// An encrypted tablespace keeps its page LSNs through IMPORT: a server whose LSN is behind
/// them refuses it ("in the future"), and leaves the table discarded; past them, it imports.
fn encrypted_needs_a_later_lsn(
    young: &Server,
    backup: &Path,
    defs: &BTreeMap<String, String>,
    sums: &BTreeMap<String, String>,
) {
    let need = max_page_lsn(&backup.join("kinds/enc.ibd"), 16384);
    assert!(lsn(young) < need, "the younger server's LSN is already past the backup's pages");
    create_as_backed_up(young, &defs[ENCRYPTED]);
    young.sql(&format!("{SESSION} ALTER TABLE {ENCRYPTED} DISCARD TABLESPACE"));
    place(young, backup, "enc", "enc", true);
    let err = try_sql(young, &format!("{SESSION} ALTER TABLE {ENCRYPTED} IMPORT TABLESPACE")).expect_err("IMPORT");
    assert!(err.contains("ERROR 1034") && err.contains("is corrupt"), "{err}");
    assert!(young.error_log().contains("is in the future!"), "{}", young.error_log());
    let err = try_sql(young, &format!("SELECT COUNT(*) FROM {ENCRYPTED}")).expect_err("a discarded table");
    assert!(err.contains("ERROR 1814") && err.contains("discarded"), "{err}");
    grow_lsn(young, need);
    place(young, backup, "enc", "enc", true);
    young.sql(&format!("{SESSION} ALTER TABLE {ENCRYPTED} IMPORT TABLESPACE"));
    assert_eq!(checksums(young, &[ENCRYPTED]), BTreeMap::from([(ENCRYPTED.to_owned(), sums[ENCRYPTED].clone())]));
}

/// Definitions that differ are found only by IMPORT, after the destructive DISCARD; without
/// the .cfg nothing is checked and the rows come out wrong; a new table of the backup's own
/// definition takes the file.
fn definitions_must_match(
    young: &Server,
    backup: &Path,
    defs: &BTreeMap<String, String>,
    sums: &BTreeMap<String, String>,
) {
    create_as_backed_up(young, &defs["kinds.inst"]);
    young.sql(&format!("SET alter_algorithm = INSTANT; ALTER TABLE {DB}.inst ADD COLUMN c INT DEFAULT 5"));
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.inst DISCARD TABLESPACE"));
    place(young, backup, "inst", "inst", true);
    let err = try_sql(young, &format!("{SESSION} ALTER TABLE {DB}.inst IMPORT TABLESPACE")).expect_err("IMPORT");
    assert!(err.contains("ERROR 1808") && err.contains("Column c not found in tablespace"), "{err}");
    std::fs::remove_file(young.datadir.join("kinds/inst.cfg")).unwrap();
    let warned = said(young, &format!("{SESSION} ALTER TABLE {DB}.inst IMPORT TABLESPACE"));
    assert!(warned.contains("without schema verification"), "{warned}");
    assert!(young.sql(&format!("CHECK TABLE {DB}.inst")).trim_end().ends_with("OK"));
    assert_ne!(young.sql(&format!("SELECT COUNT(*) FROM {DB}.inst WHERE c = 5")).trim(), "3000", "rows right");

    let renamed = defs["kinds.inst"].replacen("CREATE TABLE `inst`", "CREATE TABLE `inst_restored`", 1);
    create_as_backed_up(young, &renamed);
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.inst_restored DISCARD TABLESPACE"));
    place(young, backup, "inst", "inst_restored", true);
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.inst_restored IMPORT TABLESPACE"));
    assert_eq!(checksums(young, &["kinds.inst_restored"])["kinds.inst_restored"], sums["kinds.inst"]);

    let compact = format!("{} ROW_FORMAT=COMPACT", defs["kinds.plain"]);
    create_as_backed_up(young, &compact);
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.plain DISCARD TABLESPACE"));
    place(young, backup, "plain", "plain", true);
    let err = try_sql(young, &format!("{SESSION} ALTER TABLE {DB}.plain IMPORT TABLESPACE")).expect_err("IMPORT");
    assert!(err.contains("ERROR 1808") && err.contains("Table flags don't match"), "{err}");

    create_as_backed_up(young, &defs["kinds.ft"]);
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.ft DISCARD TABLESPACE"));
    place(young, backup, "ft", "ft", false);
    let err = try_sql(young, &format!("{SESSION} ALTER TABLE {DB}.ft IMPORT TABLESPACE")).expect_err("IMPORT");
    assert!(err.contains("ERROR 1815") && err.contains("Drop all secondary indexes"), "{err}");
}

/// Foreign keys: a referenced table's DISCARD needs foreign_key_checks=0; a copy under another
/// name clashes on the constraint's name (schema-wide) unless the name is left out. And
/// without sql_log_bin=0 the DISCARD and IMPORT go to the binary log (to the replicas).
fn foreign_keys_and_the_binary_log(
    young: &Server,
    backup: &Path,
    defs: &BTreeMap<String, String>,
    sums: &BTreeMap<String, String>,
) {
    create_as_backed_up(young, &defs["kinds.parent"]);
    create_as_backed_up(young, &defs["kinds.child"]);
    let err = try_sql(young, "ALTER TABLE kinds.parent DISCARD TABLESPACE").expect_err("DISCARD of a parent");
    assert!(err.contains("ERROR 1451") && err.contains("foreign key constraint fails"), "{err}");

    let renamed = defs["kinds.child"].replacen("CREATE TABLE `child`", "CREATE TABLE `child_restored`", 1);
    let clash = said(young, &format!("USE {DB}; {renamed}"));
    assert!(clash.contains("errno: 121") && clash.contains("duplicate name, CONSTRAINT `fk_child_parent`"), "{clash}");
    create_as_backed_up(young, &renamed.replace("CONSTRAINT `fk_child_parent` ", ""));
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.child_restored DISCARD TABLESPACE"));
    place(young, backup, "child", "child_restored", true);
    young.sql(&format!("{SESSION} ALTER TABLE {DB}.child_restored IMPORT TABLESPACE"));
    assert_eq!(checksums(young, &["kinds.child_restored"])["kinds.child_restored"], sums["kinds.child"]);

    young.sql(&format!("USE {DB}; {}", defs["kinds.pc"]));
    young.sql("ALTER TABLE kinds.pc DISCARD TABLESPACE");
    place(young, backup, "pc", "pc", true);
    young.sql("ALTER TABLE kinds.pc IMPORT TABLESPACE");
    let events = young.sql("SHOW BINLOG EVENTS");
    for statement in ["ALTER TABLE kinds.pc DISCARD TABLESPACE", "ALTER TABLE kinds.pc IMPORT TABLESPACE"] {
        assert!(events.contains(statement), "not in the binary log: {statement}\n{events}");
    }
}

#[test]
fn what_a_younger_server_refuses_or_gets_wrong() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let (src, at_backup, backup) = origin(&fx);
    let defs: BTreeMap<String, String> = tables(true).iter().map(|t| (t.clone(), definition(&src, t))).collect();
    drop(src);
    let young = server(&fx, "young", &fx.path("keys"));
    young.sql("CREATE DATABASE kinds");
    let up = uptime(&young);
    encrypted_needs_a_later_lsn(&young, &backup, &defs, &at_backup);
    definitions_must_match(&young, &backup, &defs, &at_backup);
    foreign_keys_and_the_binary_log(&young, &backup, &defs, &at_backup);
    assert!(uptime(&young) >= up, "the server restarted");

    // A server without key id 2 refuses the table's definition; a probe (a temporary table,
    // nothing logged, nothing left) tells beforehand; the file itself does not decrypt.
    write_key_file_without_2(&fx.path("keys1"));
    let nokey = server(&fx, "nokey", &fx.path("keys1"));
    nokey.sql("CREATE DATABASE kinds");
    let refused = said(&nokey, &format!("USE {DB}; {}", defs[ENCRYPTED]));
    assert!(refused.contains("errno: 140") && refused.contains("ENCRYPTION_KEY_ID 2 not available"), "{refused}");
    let probe = |id: u32| {
        try_sql(
            &nokey,
            &format!("{SESSION} CREATE TEMPORARY TABLE {DB}.probe (id INT) ENCRYPTED=YES ENCRYPTION_KEY_ID={id}"),
        )
    };
    assert!(probe(2).is_err_and(|e| e.contains("errno: 140")));
    assert!(probe(1).is_ok());
    grow_lsn(&nokey, max_page_lsn(&backup.join("kinds/enc.ibd"), 16384));
    create_as_backed_up(&nokey, &defs[ENCRYPTED].replace("`ENCRYPTION_KEY_ID`='2'", "`ENCRYPTION_KEY_ID`='1'"));
    nokey.sql(&format!("{SESSION} ALTER TABLE {ENCRYPTED} DISCARD TABLESPACE"));
    place(&nokey, &backup, "enc", "enc", true);
    let err = try_sql(&nokey, &format!("{SESSION} ALTER TABLE {ENCRYPTED} IMPORT TABLESPACE")).expect_err("IMPORT");
    assert!(err.contains("ERROR 1296") && err.contains("decryption failed"), "{err}");
}

/// After a FULLTEXT table's import, dropping its FULLTEXT index and then adding it back, in two
/// statements without a rebuild between, kills MariaDB 10.11 (an InnoDB assertion on the
/// auxiliary tables DISCARD dropped): coffer's recipe (`DROP INDEX ..., FORCE` first) must
/// never be shortened to this. Should a MariaDB release fix it, this test says so.
#[test]
fn fulltext_index_dropped_then_added_after_import_kills_the_server() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let (src, _, backup) = origin(&fx);
    let def = definition(&src, "kinds.ft");
    drop(src);
    let victim = server(&fx, "victim", &fx.path("keys"));
    victim.sql("CREATE DATABASE kinds");
    create_as_backed_up(&victim, &def);
    import(&victim, &backup, "ft");
    victim.sql(&format!("{SESSION} ALTER TABLE {DB}.ft DROP INDEX fbody"));
    let err = try_sql(&victim, &format!("{SESSION} ALTER TABLE {DB}.ft ADD FULLTEXT KEY fbody (body)"))
        .expect_err("ADD FULLTEXT after DROP INDEX on an imported table");
    assert!(err.contains("ERROR 2013"), "{err}");
    let log = victim.error_log();
    assert!(log.contains("Failing assertion: sym_node->table != NULL"), "{log}");
}

/// Copies the directory `from` to `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// What a restore of `tables` (of `kinds`) needs from one backup of a chain: the top-level
/// files, the system schemas, and of `kinds` only those tables' files (any suffix: .ibd, .new,
/// .ibd.delta, .ibd.meta, .frm, .par; partitions' `t#P#p`) and the database's FULLTEXT
/// auxiliary tables (their names carry the table id, not the name; without them the private
/// server dies on the first write to a FULLTEXT table).
fn partial(backup: &Path, to: &Path, tables: &[&str]) {
    std::fs::create_dir_all(to.join(DB)).unwrap();
    for e in std::fs::read_dir(backup).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().unwrap().is_dir() {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        } else if ["mysql", "performance_schema", "sys"].contains(&name.as_str()) {
            copy_tree(&e.path(), &to.join(&name));
        }
    }
    for e in std::fs::read_dir(backup.join(DB)).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let wanted = name == "db.opt"
            || name.starts_with("FTS_")
            || tables.iter().any(|t| name.starts_with(&format!("{t}.")) || name.starts_with(&format!("{t}#P#")));
        if wanted {
            std::fs::copy(backup.join(DB).join(&name), to.join(DB).join(&name)).unwrap();
        }
    }
}

fn prepare(args: &[String]) {
    let tool = mariadb::which("mariadb-backup").unwrap();
    let out = std::process::Command::new(tool).arg("--prepare").args(args).output().unwrap();
    assert!(out.status.success(), "mariadb-backup --prepare {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The origin's binary log from `start` to `stop` as the private server's relay logs.
fn relay_logs(origin: &Server, datadir: &Path, start: &str, stop: &(String, u64)) {
    let logs: Vec<String> =
        origin.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    let from = logs.iter().position(|l| l == start).expect("the backup's binary log");
    let to = logs.iter().position(|l| *l == stop.0).expect("the stop's binary log");
    let mut index = String::new();
    for (i, log) in logs[from..=to].iter().enumerate() {
        let relay = format!("relay.{:06}", i + 1);
        let mut bytes = std::fs::read(origin.datadir.join(log)).unwrap();
        if *log == stop.0 {
            bytes.truncate(stop.1 as usize);
        }
        std::fs::write(datadir.join(&relay), bytes).unwrap();
        index.push_str(&format!("./{relay}\n"));
    }
    std::fs::write(datadir.join("relay.index"), index).unwrap();
}

/// The SQL thread applies the relay logs from the backup's position until the stop; an error
/// stops it (MASTER_POS_WAIT gives NULL), and the test fails with the server's own message.
fn replay(private: &Server, start: &(String, u64), stop: &(String, u64)) {
    private.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='replay.invalid', MASTER_USER='none', MASTER_USE_GTID=no, \
         MASTER_LOG_FILE='{}', MASTER_LOG_POS={}, RELAY_LOG_FILE='relay.000001', RELAY_LOG_POS={}; \
         START SLAVE SQL_THREAD",
        start.0, start.1, start.1
    ));
    for _ in 0..24 {
        let reached = private.sql(&format!("SELECT MASTER_POS_WAIT('{}', {}, 5)", stop.0, stop.1));
        match reached.trim() {
            "-1" => continue,
            "NULL" => panic!("replay stopped: {}", private.sql("SHOW SLAVE STATUS")),
            _ => {
                private.sql("STOP SLAVE; RESET SLAVE ALL");
                return;
            }
        }
    }
    panic!("replay did not reach {stop:?} in two minutes");
}

/// Holds `FLUSH TABLES ... FOR EXPORT` on `tables` of `private` while their .ibd and .cfg
/// (partitions' too) are copied to `to`/kinds, then UNLOCK TABLES (which deletes the .cfg).
fn export_locked(private: &Server, tables: &[&str], to: &Path) {
    use std::io::{BufRead, Write};
    let mut client = private.session();
    let mut stdin = client.stdin.take().unwrap();
    let list: Vec<String> = tables.iter().map(|t| format!("{DB}.{t}")).collect();
    writeln!(stdin, "FLUSH TABLES {} FOR EXPORT; SELECT 'locked';", list.join(", ")).unwrap();
    let stdout = client.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let said = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("FLUSH TABLES ... FOR EXPORT answered");
    assert_eq!(said.trim(), "locked");
    std::fs::create_dir_all(to.join(DB)).unwrap();
    for e in std::fs::read_dir(private.datadir.join(DB)).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let table = name.split(['.', '#']).next().unwrap();
        if tables.contains(&table) && (name.ends_with(".ibd") || name.ends_with(".cfg")) {
            std::fs::copy(private.datadir.join(DB).join(&name), to.join(DB).join(&name)).unwrap();
        }
    }
    writeln!(stdin, "UNLOCK TABLES;").unwrap();
    drop(stdin);
    assert!(client.wait().unwrap().success(), "the export session failed");
}

/// The tables the point-in-time test restores.
const SELECTED: [&str; 4] = ["plain", "part", "ft", "enc"];

fn selected() -> Vec<String> {
    SELECTED.iter().map(|t| format!("{DB}.{t}")).collect()
}

fn backup_to(server: &Server, dir: &Path, base: Option<&Path>) {
    let mut args = vec![
        "--backup".to_owned(),
        format!("--socket={}", server.socket.display()),
        "--user=root".into(),
        format!("--target-dir={}", dir.display()),
    ];
    args.extend(base.map(|b| format!("--incremental-basedir={}", b.display())));
    let out = std::process::Command::new(mariadb::which("mariadb-backup").unwrap()).args(&args).output().unwrap();
    assert!(out.status.success(), "mariadb-backup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The origin through a full and an incremental backup, writes after each (rows of restored
/// and other tables, a transaction touching both), the state just before the mistake (a bad
/// UPDATE), the mistake's position and GTID, and more writes (a DROP) after it.
struct Chain {
    src: Server,
    before: BTreeMap<String, String>,
    stop: (String, u64),
    gtid: String,
    bystander: BTreeMap<String, String>,
}

fn chain(fx: &Fixture) -> Chain {
    mariadb::write_key_file(&fx.path("keys"), None);
    let mut src = server(fx, "src", &fx.path("keys"));
    tables::create(&src, true);
    // A restart checkpoints: the backups then hold t.ibd and t.ibd.delta, not t.new.
    src.stop();
    let src = Server::open(&fx.path("src"), &options(&fx.path("keys")));
    backup_to(&src, &fx.path("full"), None);
    src.sql(
        "USE kinds; INSERT INTO plain (v, n) VALUES ('after full', 1); UPDATE part SET v = 'u1' WHERE id IN (5, 1500, 2500); \
         INSERT INTO ft (body) VALUES ('after the full'); UPDATE enc SET v = 'u1' WHERE id <= 10; \
         INSERT INTO bystander VALUES (5001, 1);",
    );
    backup_to(&src, &fx.path("inc"), Some(&fx.path("full")));
    src.sql(
        "USE kinds; INSERT INTO plain (v, n) VALUES ('after inc', 2); UPDATE bystander SET v = -v WHERE id <= 10; \
         BEGIN; INSERT INTO plain (v, n) VALUES ('with bystander', 3); INSERT INTO bystander VALUES (5002, 2); COMMIT; \
         INSERT INTO ft (body) VALUES ('after the incremental'); UPDATE part SET v = 'u2' WHERE id IN (6, 1600, 2600); \
         UPDATE enc SET v = 'u2' WHERE id > 2990; ALTER TABLE bystander ADD COLUMN w INT;",
    );
    let before = checksums(&src, &selected());
    let stop = common::scenario::master_status(&src);
    let gtid = bad_update(&src, "kinds.plain", "v = 'oops'");
    drop_table(&src, "kinds.ft");
    src.sql(
        "INSERT INTO kinds.plain (v, n) VALUES ('after the mistake', 4); UPDATE kinds.bystander SET v = 0 WHERE id = 1",
    );
    let bystander = checksums(&src, &["kinds.bystander"]);
    Chain { src, before, stop, gtid, bystander }
}

/// The selected tables' part of the chain, prepared, on a private server that replays the
/// origin's binary log to the mistake with replicate-do-table filters, then exported; returns
/// the FULLTEXT table's definition there.
fn replayed_and_exported(fx: &Fixture, c: &Chain, export: &Path) -> String {
    let (full, inc) = (fx.path("p_full"), fx.path("p_inc"));
    partial(&fx.path("full"), &full, &SELECTED);
    partial(&fx.path("inc"), &inc, &SELECTED);
    prepare(&[format!("--target-dir={}", full.display())]);
    prepare(&[format!("--target-dir={}", full.display()), format!("--incremental-dir={}", inc.display())]);
    let datadir = fx.path("private").join("data");
    std::fs::create_dir_all(fx.path("private")).unwrap();
    std::fs::rename(&full, &datadir).unwrap();
    // The tables of other databases and of kinds' others are absent: not even a stub.
    assert!(!datadir.join("kinds/bystander.ibd").exists() && !datadir.join("kinds/parent.ibd").exists());
    let info = std::fs::read_to_string(inc.join("xtrabackup_binlog_info")).unwrap();
    let mut cols = info.split_whitespace();
    let start = (cols.next().unwrap().to_owned(), cols.next().unwrap().parse::<u64>().unwrap());
    relay_logs(&c.src, &datadir, &start.0, &c.stop);
    let mut opts = key_options(&fx.path("keys"));
    opts.extend(
        ["--server-id=99", "--relay-log=relay", "--relay-log-index=relay.index", "--relay-log-purge=0"]
            .map(String::from),
    );
    opts.push("--skip-slave-start".into());
    opts.extend(selected().iter().map(|t| format!("--replicate-do-table={t}")));
    let mut private = Server::open(&fx.path("private"), &opts);
    replay(&private, &start, &c.stop);
    assert_eq!(checksums(&private, &selected()), c.before, "the replay did not reach the state before the mistake");
    // Filtered transactions (the bystander's) count too: the position is the one just before the mistake.
    let (head, seq) = c.gtid.rsplit_once('-').unwrap();
    let previous = format!("{head}-{}", seq.parse::<u64>().unwrap() - 1);
    assert_eq!(private.sql("SELECT @@gtid_slave_pos").trim(), previous);
    let ft = definition(&private, "kinds.ft");
    export_locked(&private, &SELECTED, export);
    private.stop();
    ft
}

/// What coffer's `restore --tables ... --until-gtid` does, by hand: a partial chain, a private
/// server replaying to just before the mistake, FLUSH TABLES ... FOR EXPORT, the import into
/// the running origin. Each table equals its state before the mistake; the others are untouched.
#[test]
fn partial_chain_replayed_to_just_before_the_mistake_by_hand() {
    if !common::live::tools() {
        return;
    }
    let fx = Fixture::new();
    let c = chain(&fx);
    let export = fx.path("export");
    let ft = replayed_and_exported(&fx, &c, &export);
    let up = uptime(&c.src);
    assert!(lsn(&c.src) > max_page_lsn(&export.join("kinds/enc.ibd"), 16384), "the origin is behind the export");
    create_as_backed_up(&c.src, &ft);
    import(&c.src, &export, "plain");
    import(&c.src, &export, "enc");
    import_partitions(&c.src, &export);
    import_fulltext(&c.src, &export);
    assert_eq!(checksums(&c.src, &selected()), c.before);
    assert_eq!(checksums(&c.src, &["kinds.bystander"]), c.bystander, "a table no restore touched changed");
    assert!(uptime(&c.src) >= up, "the server restarted");
}
