//! What `restore --tables --into-server` refuses (issue 30), each with exit code 1 (2 for a
//! usage error) and one line on stderr, the server unchanged (its tables, their checksums, the
//! files of their database, nothing beside its datadir): a table that exists without --replace,
//! a --rename onto a table that exists, a table the backup does not hold, the server's own
//! schemas, a server it cannot reach, a definition that differs from the backup's (an instant
//! ADD COLUMN since), an encrypted table for a server that lacks its key. And what --rename
//! restores beside the table it keeps.

mod common;

use common::mariadb::Server;
use common::scenario::*;
use common::table_scene::{self as scene, coffer_in, refused, usage};
use common::*;
use common::{live, tables};

/// Runs `restore PREFIX --tables TABLES --key-file K --quiet` with `more`.
fn restore(fx: &Fixture, prefix: &str, tables: &str, more: &[&str]) -> (i32, String, String) {
    let key = fx.key();
    let mut args = vec!["--quiet", "restore", prefix, "--tables", tables, "--key-file", &key];
    args.extend_from_slice(more);
    coffer_in(coffer(), &args)
}

#[test]
fn refusals_leave_the_server_as_it_was() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    let keys = scene::key_file(&fx);
    let opts = tables::key_options(&keys);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let Source { server, port, .. } = Scenario::new(&fx).opts(&opts).backup_user().start();
    tables::create(&server, true);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    let sock = server.socket.display().to_string();
    let all = tables::tables(true);
    let unchanged = |what: &str, before: &scene::State| {
        assert_eq!(&scene::state(&server, &["kinds"], &all), before, "{what}: the server changed");
        assert_eq!(scene::leftovers(&server, &["kinds"]), Vec::<String>::new(), "{what}");
    };
    let at_backup = scene::state(&server, &["kinds"], &all);
    let before = &at_backup;

    let got = restore(&fx, &prefix, "kinds.plain", &["--into-server", &sock]);
    refused(&got, "kinds.plain exists on the server: --replace");
    unchanged("an existing table", before);

    let got = restore(&fx, &prefix, "kinds.plain", &["--into-server", &sock, "--rename", "kinds.plain=kinds.pc"]);
    refused(&got, "kinds.pc exists on the server");
    unchanged("a rename onto an existing table", before);

    let got = restore(&fx, &prefix, "kinds.plain,kinds.nosuch", &["--into-server", &sock, "--replace"]);
    refused(&got, "holds no table kinds.nosuch");
    unchanged("a table the backup lacks", before);

    let got = restore(&fx, &prefix, "mysql.user", &["--into-server", &sock, "--replace"]);
    usage(&got, "the server's own schemas are not restored table by table");
    unchanged("mysql.user", before);

    let nowhere = fx.s("no-server.sock");
    let got = restore(&fx, &prefix, "kinds.plain", &["--into-server", &nowhere, "--replace"]);
    refused(&got, "cannot connect to the server");
    unchanged("a server out of reach", before);
    assert!(!scene::names(fx.dir.path()).iter().any(|n| n.contains("coffer")), "{:?}", scene::names(fx.dir.path()));

    // An instant ADD COLUMN on the live table since the backup: the import would fail after
    // the DISCARD (schema mismatch); refused before, column by column.
    server.sql("SET SESSION alter_algorithm = INSTANT; ALTER TABLE kinds.inst ADD COLUMN c INT DEFAULT 5");
    let before = scene::state(&server, &["kinds"], &all);
    let got = restore(&fx, &prefix, "kinds.inst", &["--into-server", &sock, "--replace"]);
    refused(&got, "kinds.inst on the server differs from the backup's");
    assert!(got.2.contains("column 4: server `c` int(11), backup none"), "{}", got.2);
    unchanged("a definition that differs", &before);

    // A secondary index dropped since the backup: the columns are the same, so only InnoDB's
    // own check at IMPORT sees it. A table made like the live one tries the import first; the
    // live table, with a row written since, is never discarded.
    server.sql("ALTER TABLE kinds.plain DROP INDEX n; INSERT INTO kinds.plain (v, n) VALUES ('since', 1)");
    let before = scene::state(&server, &["kinds"], &all);
    let got = restore(&fx, &prefix, "kinds.plain", &["--into-server", &sock, "--replace"]);
    refused(&got, "kinds.plain is unchanged: a table like it refused the backup's tablespace");
    unchanged("an index the checks do not compare", &before);
    server.sql("DELETE FROM kinds.plain WHERE v = 'since'; ALTER TABLE kinds.plain ADD KEY n (n)");

    without_the_key(&fx, &prefix);
    renamed_beside(&fx, &prefix, &server, &at_backup);
}

/// A server whose key management lacks key 2: the encrypted table is refused, nothing created.
fn without_the_key(fx: &Fixture, prefix: &str) {
    let one = scene::key_file_without_2(fx);
    let other = Server::start(&fx.path("other"), &tables::key_options(&one));
    other.sql("CREATE DATABASE kinds");
    let before = scene::state(&other, &["kinds"], &[] as &[&str]);
    let sock = other.socket.display().to_string();
    let got = restore(fx, prefix, "kinds.enc", &["--into-server", &sock]);
    refused(&got, "kinds.enc's tablespace is encrypted with key 2, which the server's key management does not hold");
    assert_eq!(scene::state(&other, &["kinds"], &[] as &[&str]), before, "the server changed");
    assert_eq!(scene::leftovers(&other, &["kinds"]), Vec::<String>::new());
}

/// --rename restores tables beside those the server keeps (one altered instantly since the
/// backup): the backup's rows under the new names (without their foreign keys, as the report
/// says), the old tables and every other one untouched.
fn renamed_beside(fx: &Fixture, prefix: &str, server: &Server, at_backup: &scene::State) {
    let sock = server.socket.display().to_string();
    server.sql("DELETE FROM kinds.child WHERE id > 100");
    let mut all = tables::tables(true);
    let before = tables::checksums(server, &all);
    let renames = ["--rename", "kinds.child=kinds.child_restored", "--rename", "kinds.inst=kinds.inst_restored"];
    let mut args = vec!["--into-server", sock.as_str(), "--json"];
    args.extend(renames);
    let report = scene::json(&restore(fx, prefix, "kinds.child,kinds.inst", &args));
    let child = report["imported"].as_array().unwrap().iter().find(|i| i["from"] == "kinds.child").unwrap();
    assert_eq!(child["foreign_keys_left_out"], serde_json::json!(["fk_child_parent"]), "{report}");
    all.extend(["kinds.child_restored".into(), "kinds.inst_restored".into()]);
    let after = tables::checksums(server, &all);
    assert_eq!(after["kinds.child_restored"], at_backup.checksums["kinds.child"], "the backup's rows");
    assert_eq!(after["kinds.inst_restored"], at_backup.checksums["kinds.inst"], "the backup's rows");
    all.truncate(all.len() - 2);
    assert_eq!(tables::checksums(server, &all), before, "the other tables");
    let def = tables::definition(server, "kinds.child_restored");
    assert!(!def.contains("FOREIGN KEY"), "the foreign key left out, as the report says: {def}");
    assert!(!tables::definition(server, "kinds.inst_restored").contains("`c`"), "the backup's definition");
    assert_eq!(scene::leftovers(server, &["kinds"]), Vec::<String>::new());
}

/// A table an application holds (a transaction that read it, not yet committed): DISCARD waits
/// for its metadata lock, and every new query on the table queues behind it. coffer gives up
/// in bounded time (its session's lock_wait_timeout, not the server's day), the table and
/// every other one unchanged. (Were coffer killed while it waits, the DISCARD would still run
/// once the lock is free, and leave the table discarded.) Its message.
fn held_table_refused() -> Option<String> {
    if !live::tools() {
        return None;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = Scenario::new(&fx).backup_user().start();
    tables::create(&server, false);
    std::fs::create_dir_all(fx.path("prod")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    server.sql("UPDATE kinds.plain SET n = 0 WHERE id = 1");
    let all = tables::tables(false);
    let before = scene::state(&server, &["kinds"], &all);
    let holder = scene::Holder::start(&server, "SELECT COUNT(*) FROM kinds.plain");
    let (sock, key) = (server.socket.display().to_string(), fx.key());
    let restore = coffer()
        .args(["--quiet", "restore", &prefix, "--tables", "kinds.plain", "--into-server", &sock, "--replace"])
        .args(["--key-file", &key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Far more than a restore of this table takes; a day is what the server's default allows.
    let out = wait_exit(restore, 180);
    let got = (out.status.code().unwrap_or(-1), String::new(), String::from_utf8_lossy(&out.stderr).into_owned());
    eprintln!("a held table: {}", got.2.trim());
    refused(&got, "kinds.plain");
    drop(holder);
    assert_eq!(scene::state(&server, &["kinds"], &all), before, "the server changed");
    assert_eq!(server.sql("SELECT COUNT(*) FROM kinds.plain").trim(), "5000", "its rows are there");
    assert_eq!(scene::leftovers(&server, &["kinds"]), Vec::<String>::new());
    Some(got.2)
}

#[test]
fn a_table_held_by_a_transaction_is_refused_in_bounded_time() {
    held_table_refused();
}

/// The message says what happened: the DISCARD itself was refused, the table is whole.
#[test]
fn a_table_held_by_a_transaction_is_not_said_to_be_discarded() {
    if let Some(said) = held_table_refused() {
        assert!(!said.contains("left discarded") && !said.contains("cannot be read"), "{said}");
    }
}
