//! `restore --tables` on real servers (issue 30): a live MariaDB (binary log, GTIDs,
//! file_key_management) under sysbench, with tables of every kind (common::tables; `inst`
//! altered instantly before the backup), a full and an incremental backup under an S3 prefix
//! taken while sysbench writes, and the binary log archived after four mistakes: a table
//! dropped, one truncated, two with a bad UPDATE (one a foreign key's parent). Each is put back
//! into the running server as it was just before its mistake (--until-position of the
//! mistake's GTID event) while sysbench keeps writing; nothing else changes and the server
//! never restarts. Then every kind at once from the chain into a fresh server, the `--to DIR`
//! export imported by hand with the statements coffer prints, and `list --tables`.

mod common;

use common::mariadb::Server;
use common::s3::S3;
use common::scenario::*;
use common::table_scene::{self as scene, coffer_in, json, Load};
use common::*;
use common::{live, tables};
use std::collections::BTreeMap;
use std::path::Path;

const PREFIX: &str = "s3://tables/prod/";
const BINLOGS: &str = "s3://tables/prod/binlog/";

/// Every table the source has besides sysbench's: the kinds and the big one no restore reads.
fn all_tables() -> Vec<String> {
    let mut t = tables::tables(true);
    t.push("big.blob".into());
    t
}

/// A mistake made on the live server: the table, where its GTID event starts, the table's
/// checksum just before it, and whether the table is still there (restored with --replace).
struct Mistake {
    table: &'static str,
    position: String,
    before: String,
    exists: bool,
}

#[test]
fn mistakes_are_undone_in_the_running_server_and_every_kind_restores_elsewhere() {
    if !live::tools() {
        return;
    }
    let Some(s3) = S3::start() else { return };
    s3.bucket("tables");
    let fx = Fixture::new();
    let keys = scene::key_file(&fx);
    let (server, port) = source(&fx, &keys);
    let mut load = Load::start(&server);

    // A full, changes, an incremental: sysbench writes throughout.
    let full = backup(&s3, &fx, port, false);
    server.sql(
        "UPDATE kinds.plain SET n = n + 1000 WHERE id <= 100; INSERT INTO kinds.part VALUES (9001, '2025-05-05', 'inc'); \
         INSERT INTO kinds.ft (body) VALUES ('added after the full word7'); UPDATE kinds.enc SET v = 'inc' WHERE id = 1; \
         DELETE FROM kinds.rc WHERE id > 2900; INSERT INTO kinds.child VALUES (4001, 7, 1); UPDATE kinds.inst SET c = 8 WHERE id < 9;",
    );
    let at_inc = tables::checksums(&server, &tables::tables(true));
    let matches = server.sql("SELECT COUNT(*) FROM kinds.ft WHERE MATCH(body) AGAINST('word7')");
    let inc = backup(&s3, &fx, port, true);
    assert_eq!(inc["kind"], "incremental", "{inc}");
    let lsn_at_inc = tables::lsn(&server);

    let mistakes = mistakes(&server);
    for m in &mistakes {
        assert_ne!(at_inc[m.table], m.before, "{}: written after the backup, so only a replay gives it back", m.table);
    }
    let archived = coffer_in(s3.coffer(), &strs(&archive_args(&fx, &socket_args(&server), BINLOGS, &[])));
    assert_eq!(archived.0, 0, "{}", archived.2);

    undo_each(&s3, &fx, &server, &mistakes, &mut load);
    load.stop();
    assert_eq!(scene::leftovers(&server, &["kinds"]), Vec::<String>::new());
    import_session_not_logged(&server);

    let fresh = into_a_fresh_server(&s3, &fx, &keys, &at_inc, &matches, lsn_at_inc);
    by_hand(&s3, &fx, &fresh, &at_inc, &matches);
    listed(&s3, &fx, inc["output"].as_str().unwrap(), full["image_bytes"].as_u64().unwrap());
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The live server: ROW binary log, keys 1 and 2 (tables encrypted when they say so), a backup
/// and a replication user, the kinds, sysbench's tables, and 24 MB of random bytes in big.blob.
fn source(fx: &Fixture, keys: &Path) -> (Server, u16) {
    let mut opts = vec!["--binlog-format=ROW".to_string()];
    opts.extend(tables::key_options(keys));
    let Source { mut server, port, opts } = Scenario::new(fx).opts(&strs(&opts)).backup_user().repl().start();
    tables::create(&server, true);
    // Instantly, before the backup: the backup's tablespace carries the instant metadata.
    server.sql("SET SESSION alter_algorithm = INSTANT; ALTER TABLE kinds.inst ADD COLUMN c INT DEFAULT 7");
    // No restore needs it: were it read, read_bytes would show it (random bytes do not compress).
    server.sql(
        "CREATE DATABASE big; CREATE TABLE big.blob (id INT PRIMARY KEY, b BLOB); \
         INSERT INTO big.blob SELECT seq, RANDOM_BYTES(1024) FROM big.seq_1_to_24000",
    );
    Load::prepare(&server);
    // A restart checkpoints: else the backup's redo holds every row written since the server
    // was made (big.blob's too), which any restore must read.
    server.stop();
    let server = Server::open(&fx.path("src"), &opts);
    (server, port)
}

/// A backup under PREFIX (`incremental` or full) as JSON.
fn backup(s3: &S3, fx: &Fixture, port: u16, incremental: bool) -> serde_json::Value {
    let mut args = live::backup_args(fx, port, PREFIX);
    args.push("--json".into());
    if incremental {
        args.push("--incremental".into());
    }
    json(&coffer_in(s3.coffer(), &strs(&args)))
}

/// Writes the replay must carry (and some it must not), then the three mistakes, each after a
/// snapshot of its table's checksum; then more writes.
fn mistakes(server: &Server) -> Vec<Mistake> {
    let sum = |t: &str| tables::checksums(server, &[t])[t].clone();
    let at = |gtid: &str| scene::gtid_event_start(server, gtid);
    server.sql(
        "INSERT INTO kinds.part VALUES (9002, '2018-03-03', 'after'); UPDATE kinds.part SET v = 'moved' WHERE id <= 50; \
         INSERT INTO kinds.ft (body) VALUES ('written after the backup word7'); UPDATE kinds.enc SET v = 'later' WHERE id <= 10; \
         UPDATE kinds.bystander SET v = v + 1 WHERE id <= 10; UPDATE kinds.plain SET n = 5 WHERE id = 7;",
    );
    let part = sum("kinds.part");
    let dropped = tables::drop_table(server, "kinds.part");
    server.sql(
        "INSERT INTO kinds.ft (body) VALUES ('second word7 entry'); DELETE FROM kinds.enc WHERE id > 2990; \
         UPDATE kinds.parent SET name = 'renamed' WHERE id = 3;",
    );
    let ft = sum("kinds.ft");
    let truncated = tables::truncate(server, "kinds.ft");
    server
        .sql("INSERT INTO kinds.enc VALUES (5001, 'late'); INSERT INTO kinds.ft (body) VALUES ('after the truncate')");
    let enc = sum("kinds.enc");
    let updated = tables::bad_update(server, "kinds.enc", "v = 'oops'");
    server.sql("INSERT INTO kinds.parent VALUES (501, 'late'); UPDATE kinds.child SET x = 0 WHERE id = 1");
    // A parent of a foreign key: its tablespace is discarded with the checks off.
    let parent = sum("kinds.parent");
    let orphaned = tables::bad_update(server, "kinds.parent", "name = 'oops'");
    server.sql("INSERT INTO kinds.bystander VALUES (5001, 1); UPDATE kinds.enc SET v = 'after' WHERE id = 5001");
    vec![
        Mistake { table: "kinds.part", position: at(&dropped), before: part, exists: false },
        Mistake { table: "kinds.ft", position: at(&truncated), before: ft, exists: true },
        Mistake { table: "kinds.enc", position: at(&updated), before: enc, exists: true },
        Mistake { table: "kinds.parent", position: at(&orphaned), before: parent, exists: true },
    ]
}

/// Each mistake undone in turn while sysbench writes: the table as it was just before it, every
/// other table as it was, the server never restarted, far less read than the images hold.
fn undo_each(s3: &S3, fx: &Fixture, server: &Server, mistakes: &[Mistake], load: &mut Load) {
    let (sock, key) = (server.socket.display().to_string(), fx.key());
    let mut expected = tables::checksums(server, &all_tables());
    let uptime = tables::uptime(server);
    for m in mistakes {
        let mut args = vec!["restore", PREFIX, "--tables", m.table, "--into-server", &sock];
        args.extend(["--until-position", &m.position, "--key-file", &key, "--json"]);
        if m.exists {
            args.push("--replace");
        }
        let got = coffer_in(s3.coffer(), &args);
        let report = json(&got);
        eprintln!("{}: {}", m.table, got.2.trim());
        assert_eq!(report["backups"].as_array().map(Vec::len), Some(2), "the chain: {report}");
        assert_eq!(report["tables"][0]["name"], m.table, "{report}");
        let imported = &report["imported"][0];
        assert_eq!((imported["into"].as_str(), imported["created"].as_bool()), (Some(m.table), Some(!m.exists)));
        assert!(report["replayed"].is_array(), "replayed to {}: {report}", m.position);
        let (read, held) = (report["read_bytes"].as_u64().unwrap(), report["image_bytes"].as_u64().unwrap());
        eprintln!("{}: read {read} of {held} bytes", m.table);
        assert!(read > 0 && read * 2 < held, "read {read} of {held}: more than the table needs");

        expected.insert(m.table.to_owned(), m.before.clone());
        assert_eq!(tables::checksums(server, &all_tables()), expected, "after restoring {}", m.table);
        assert!(tables::uptime(server) >= uptime, "the server restarted");
        assert!(load.running(), "sysbench stopped during the restore of {}", m.table);
        assert_eq!(scene::leftovers(server, &["kinds"]), Vec::<String>::new(), "after {}", m.table);
    }
    let ft = server.sql("SELECT COUNT(*) FROM kinds.ft WHERE MATCH(body) AGAINST('second')");
    assert_eq!(ft.trim(), "1", "the restored full-text index finds the row written just before the TRUNCATE");
    let parts = server.sql("SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_NAME = 'part'");
    assert_eq!(parts.trim(), "3");
}

/// The import session wrote nothing to the server's binary log (its replicas keep their tables).
fn import_session_not_logged(server: &Server) {
    for file in scene::names(&server.datadir).iter().filter(|n| n.starts_with("binlog.0")) {
        let events = server.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
        for l in events.lines() {
            assert!(!l.contains("TABLESPACE") && !l.contains("coffer"), "logged: {l}");
        }
    }
}

/// Every kind at once, from the chain (no --until: its newest backup), into a fresh server that
/// lacks them (created from the backup's definitions): as the source was at the incremental.
fn into_a_fresh_server(
    s3: &S3,
    fx: &Fixture,
    keys: &Path,
    at_inc: &BTreeMap<String, String>,
    matches: &str,
    lsn: u64,
) -> Server {
    let fresh = Server::start(&fx.path("fresh"), &tables::key_options(keys));
    let (sock, key) = (fresh.socket.display().to_string(), fx.key());
    let enc = |quiet: &[&str]| {
        let mut args = quiet.to_vec();
        args.extend(["restore", PREFIX, "--tables", "kinds.enc", "--into-server", &sock, "--key-file", &key]);
        coffer_in(s3.coffer(), &args)
    };
    scene::refused(&enc(&["--quiet"]), "the server has no database `kinds`");
    fresh.sql("CREATE DATABASE kinds");
    // An encrypted page imports only into a server whose log is past it: refused before.
    let before = scene::state(&fresh, &["kinds"], &[] as &[&str]);
    scene::refused(&enc(&["--quiet"]), "kinds.enc is encrypted and its pages may be as new as log sequence number");
    assert_eq!(scene::state(&fresh, &["kinds"], &[] as &[&str]), before);
    assert_eq!(scene::leftovers(&fresh, &["kinds"]), Vec::<String>::new());
    scene::write_past(&fresh, lsn);
    let got =
        coffer_in(s3.coffer(), &["restore", PREFIX, "--tables", "kinds.*", "--into-server", &sock, "--key-file", &key]);
    assert_eq!(got.0, 0, "{}", got.2);
    eprintln!("kinds.* into a fresh server: {}", got.2.trim());
    assert_eq!(&tables::checksums(&fresh, &tables::tables(true)), at_inc);
    let found = fresh.sql("SELECT COUNT(*) FROM kinds.ft WHERE MATCH(body) AGAINST('word7')");
    assert_eq!(found, matches, "MATCH on the restored full-text index");
    let child = tables::definition(&fresh, "kinds.child");
    assert!(child.contains("CONSTRAINT `fk_child_parent` FOREIGN KEY (`pid`) REFERENCES `parent`"), "{child}");
    assert!(tables::definition(&fresh, "kinds.inst").contains("`c` int(11) DEFAULT 7"));
    for t in tables::tables(true) {
        assert!(fresh.sql(&format!("CHECK TABLE {t}")).contains("\tstatus\tOK"), "{t}");
    }
    assert_eq!(scene::leftovers(&fresh, &["kinds"]), Vec::<String>::new());
    fresh
}

/// `--to DIR`: the files and import.sql (also printed); its statements, run by hand in one
/// `mariadb` session (the copies it asks for done with the client's `system`), on `fresh` after
/// the tables are dropped, give the same tables again.
fn by_hand(s3: &S3, fx: &Fixture, fresh: &Server, at_inc: &BTreeMap<String, String>, matches: &str) {
    let dir = fx.path("export");
    let (to, key) = (dir.display().to_string(), fx.key());
    let chosen = "kinds.part,kinds.ft,kinds.child,kinds.enc";
    let got = coffer_in(s3.coffer(), &["restore", PREFIX, "--tables", chosen, "--to", &to, "--key-file", &key]);
    assert_eq!(got.0, 0, "{}", got.2);
    let sql = std::fs::read_to_string(dir.join("import.sql")).unwrap();
    assert!(got.1.contains(sql.trim()), "the statements printed are import.sql's:\n{}", got.1);
    for f in ["part#P#p0.ibd", "part#P#p2.cfg", "ft.ibd", "ft.cfg", "child.ibd", "enc.ibd", "enc.cfg"] {
        assert!(dir.join("kinds").join(f).is_file(), "{f} in {}", dir.display());
    }
    fresh.sql("DROP TABLE kinds.child, kinds.part, kinds.ft, kinds.enc");
    let script = runnable(&sql, &fresh.datadir);
    let out = std::process::Command::new(common::mariadb::which("mariadb").unwrap())
        .arg(format!("--socket={}", fresh.socket.display()))
        .args(["-uroot", "--batch"])
        .stdin(std::fs::File::open(write_script(fx, &script)).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
    let four: Vec<&str> = chosen.split(',').collect();
    let want: BTreeMap<String, String> = four.iter().map(|t| (t.to_string(), at_inc[*t].clone())).collect();
    assert_eq!(tables::checksums(fresh, &four), want);
    let found = fresh.sql("SELECT COUNT(*) FROM kinds.ft WHERE MATCH(body) AGAINST('word7')");
    assert_eq!(found, matches, "MATCH after the import by hand");
}

fn write_script(fx: &Fixture, script: &str) -> std::path::PathBuf {
    let path = fx.path("import-by-hand.sql");
    std::fs::write(&path, script).unwrap();
    path
}

/// import.sql with each `-- copy ...` line done as it says, by the client's `system`.
fn runnable(sql: &str, datadir: &Path) -> String {
    let mut out = String::new();
    for line in sql.lines() {
        let Some(copy) = line.strip_prefix("-- copy ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let words: Vec<&str> = copy.split_whitespace().collect();
        let ibd = words[0];
        let copies: Vec<(String, String)> = match words.iter().position(|w| *w == "as") {
            // "-- copy D/db/t#P#p.ibd and .cfg into the server's datadir as db/t_p.ibd and db/t_p.cfg (owner, ...)"
            Some(at) => vec![
                (ibd.to_owned(), words[at + 1].to_owned()),
                (ibd.replace(".ibd", ".cfg"), words[at + 3].to_owned()),
            ],
            // "-- copy D/db/t.ibd and D/db/t.cfg into the server's datadir db/, owned by its user, mode 0660"
            None => {
                let db = words.iter().find(|w| w.ends_with("/,")).unwrap().trim_end_matches("/,");
                let name = |p: &str| format!("{db}/{}", Path::new(p).file_name().unwrap().to_str().unwrap());
                vec![(ibd.to_owned(), name(ibd)), (words[2].to_owned(), name(words[2]))]
            }
        };
        for (from, to) in copies {
            let to = datadir.join(to);
            out.push_str(&format!("system cp '{from}' '{}' && chmod 660 '{}'\n", to.display(), to.display()));
        }
    }
    out
}

/// `list IMAGE --tables`: every table with its size, `part` with its partitions; as JSON too.
fn listed(s3: &S3, fx: &Fixture, image: &str, full_bytes: u64) {
    let key = fx.key();
    let (code, out, err) = coffer_in(s3.coffer(), &["list", image, "--tables", "--key-file", &key]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kinds.part (3 partitions)"), "{out}");
    for t in all_tables().iter().chain(scene::SYSBENCH.map(String::from).iter()) {
        assert!(out.lines().any(|l| l.trim_end().ends_with(t.as_str()) || l.contains(&format!("{t} "))), "{t}:\n{out}");
    }
    assert!(!out.contains("mysql.") && !out.contains("FTS_"), "{out}");
    let (code, out, err) = coffer_in(s3.coffer(), &["list", image, "--tables", "--json", "--key-file", &key]);
    assert_eq!(code, 0, "{err}");
    let held: serde_json::Value = serde_json::from_str(&out).unwrap();
    let part = held.as_array().unwrap().iter().find(|t| t["name"]["table"] == "part").expect("part listed");
    // In the order of the image's files, not the definition's.
    let mut partitions: Vec<&str> = part["partitions"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    partitions.sort();
    assert_eq!(partitions, ["p0", "p1", "p2"], "{part}");
    let blob = held.as_array().unwrap().iter().find(|t| t["name"]["table"] == "blob").expect("big.blob listed");
    eprintln!("list --tables: big.blob {} bytes in the incremental; the full image {full_bytes} bytes", blob["bytes"]);
}

/// A table dropped after a full backup (a file:// prefix, no chain) comes back as it was just
/// before its DROP, named by `target` (given the DROP's GTID and the start of its GTID event);
/// the server's other tables untouched.
fn back_to_before_the_drop(target: impl Fn(&str, &str) -> Vec<String>) {
    let fx = Fixture::new();
    let Source { server, port, .. } = Scenario::new(&fx).opts(&["--binlog-format=ROW"]).backup_user().repl().start();
    tables::create(&server, false);
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    server.sql("INSERT INTO kinds.plain (v, n) VALUES ('after', 1); UPDATE kinds.plain SET n = 3 WHERE id < 10");
    let before = tables::checksums(&server, &["kinds.plain"]);
    let gtid = tables::drop_table(&server, "kinds.plain");
    server.sql("UPDATE kinds.bystander SET v = 0 WHERE id = 1");
    live::coffer_ok(&archive_args(&fx, &socket_args(&server), &format!("{prefix}binlog/"), &[]));
    let others: Vec<String> = tables::tables(false).into_iter().filter(|t| t != "kinds.plain").collect();
    let unchanged = tables::checksums(&server, &others);
    let (sock, key) = (server.socket.display().to_string(), fx.key());
    let target = target(&gtid, &scene::gtid_event_start(&server, &gtid));
    let mut args = vec!["restore", &prefix, "--tables", "kinds.plain", "--into-server", &sock, "--key-file", &key];
    args.extend(target.iter().map(String::as_str));
    let got = coffer_in(coffer(), &args);
    assert_eq!(got.0, 0, "{target:?}: {}", got.2);
    assert_eq!(tables::checksums(&server, &["kinds.plain"]), before, "{target:?}");
    assert_eq!(tables::checksums(&server, &others), unchanged);
    assert_eq!(scene::leftovers(&server, &["kinds"]), Vec::<String>::new());
}

#[test]
fn a_dropped_table_comes_back_to_just_before_its_drop_by_position() {
    if live::tools() {
        back_to_before_the_drop(|_, at| vec!["--until-position".into(), at.into()]);
    }
}

#[test]
fn a_dropped_table_comes_back_to_just_before_its_drop_by_gtid_exclusive() {
    if live::tools() {
        back_to_before_the_drop(|gtid, _| vec!["--until-gtid".into(), gtid.into(), "--exclusive".into()]);
    }
}
