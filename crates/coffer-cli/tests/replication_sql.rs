//! Issue 13, item 2: `coffer info --replication` prints SQL built from the image. An xbstream
//! whose `xtrabackup_binlog_info` names `binlog.000001\'; DROP DATABASE important; --` gave a
//! CHANGE MASTER statement that, piped into `mariadb`, dropped the database. Now coffer prints
//! nothing and says why on one line; statements it does print hold each value as one literal.

mod common;

use coffer_mysql::xbstream::{write_chunk, ChunkType};
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

const HOSTILE: &str = "binlog.000001\\'; DROP DATABASE important; --";

/// An image of an xbstream holding one data file and the engine's files, with `binlog_info`.
fn image(fx: &Fixture, name: &str, binlog_info: &str) -> String {
    let mut xb = Vec::new();
    write_chunk(&mut xb, ChunkType::Payload, b"ibdata1", 0, &[], &[7; 5000]);
    write_chunk(&mut xb, ChunkType::Eof, b"ibdata1", 0, &[], &[]);
    let info = b"tool_name = mariabackup\ntool_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB-log\n";
    write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_info", 0, &[], info);
    write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_info", 0, &[], &[]);
    write_chunk(&mut xb, ChunkType::Payload, b"xtrabackup_binlog_info", 0, &[], binlog_info.as_bytes());
    write_chunk(&mut xb, ChunkType::Eof, b"xtrabackup_binlog_info", 0, &[], &[]);
    let img = fx.s(name);
    let (code, _, err) = run_with_stdin(&["backup", "--xbstream", "-", "-o", &img, "--key-file", &fx.key()], &xb);
    assert_eq!(code, 0, "{err}");
    img
}

#[test]
fn injected_binlog_coordinates_print_no_sql() {
    let fx = Fixture::new();
    let hostile = [
        format!("{HOSTILE}\t4\t0-1-2\n"),
        "binlog.000001\t4\t0-1-2'; DROP DATABASE important; --\n".to_owned(),
        "binlog.000001\t4\t0-1-2\\'; DROP DATABASE important; --\n".to_owned(),
    ];
    for (i, binlog_info) in hostile.iter().enumerate() {
        let img = image(&fx, &format!("h{i}.coffer"), binlog_info);
        let (code, out, err) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
        assert_ne!(code, 0, "{binlog_info:?} was printed:\n{}", String::from_utf8_lossy(&out));
        assert!(out.is_empty(), "no SQL at all: {}", String::from_utf8_lossy(&out));
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains("refusing to print SQL"), "{err}");
    }
    // What a server writes is printed as before.
    let img = image(&fx, "ok.coffer", "binlog.000002\t4567\t0-1-99\n");
    let (code, out, err) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let sql = String::from_utf8(out).unwrap();
    assert!(sql.contains("CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=4567;"), "{sql}");
    assert!(sql.contains("SET GLOBAL gtid_slave_pos='0-1-99';"), "{sql}");
}

#[test]
fn printed_statements_run_on_a_real_server_and_drop_nothing() {
    if !common::mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let server = common::mariadb::Server::start(&fx.path("db"), &[]);
    server.sql("CREATE DATABASE important");
    // The exploit: whatever `info --replication` prints for the hostile image, piped
    // into the client, leaves the database in place.
    let img = image(&fx, "hostile.coffer", &format!("{HOSTILE}\t4\t0-1-2\n"));
    let (_, sql, _) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
    pipe(&server, "", &sql);
    assert_eq!(
        server.sql("SHOW DATABASES LIKE 'important'").trim(),
        "important",
        "dropped by {}",
        String::from_utf8_lossy(&sql)
    );

    let img = image(&fx, "ok.coffer", "binlog.000002\t4567\t0-1-99\n");
    let (code, sql, err) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    for mode in ["", "NO_BACKSLASH_ESCAPES"] {
        let out = pipe(&server, mode, &sql);
        assert!(out.status.success(), "sql_mode '{mode}': {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(server.sql("SHOW DATABASES LIKE 'important'").trim(), "important");
    }
    let status = server.sql("SELECT @@gtid_slave_pos");
    assert_eq!(status.trim(), "0-1-99");
}

/// Runs `sql` through the `mariadb` client with this `sql_mode`, as `coffer info | mariadb` does.
fn pipe(server: &common::mariadb::Server, mode: &str, sql: &[u8]) -> std::process::Output {
    let mut client = Command::new(common::mariadb::which("mariadb").unwrap())
        .arg(format!("--socket={}", server.socket.display()))
        .args(["-uroot", &format!("--init-command=SET SESSION sql_mode='{mode}'")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.stdin.take().unwrap().write_all(sql).unwrap();
    client.wait_with_output().unwrap()
}

/// Without a server's description, or without a binary log position in it, there is no SQL to
/// print: one line each, exit 1.
#[test]
fn an_image_without_a_position_prints_no_sql_and_says_why() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("tree")).unwrap();
    std::fs::write(fx.path("tree/a"), b"a").unwrap();
    let dir = fx.s("tree.coffer");
    let (code, _, err) = run(&["backup", &fx.s("tree"), "-o", &dir, "--key-file", &fx.key()]);
    assert_eq!(code, 0, "{err}");
    let no_log = image(&fx, "nolog.coffer", "");
    for (img, why) in [
        (dir, "this image is not a backup of a server (it has no coffer-backup.json)"),
        (no_log, "the backup recorded no binary log position (was log_bin on?)"),
    ] {
        let (code, out, err) = run(&["info", &img, "--replication", "--key-file", &fx.key()]);
        assert_eq!((code, out.is_empty(), err.as_str()), (1, true, format!("coffer: error: {why}\n").as_str()));
    }
}
