//! coffer's replication client (`coffer_mysql::client`) against a real MariaDB server: the
//! binary log read as a replica reads it, reassembled into files byte-identical to the
//! server's own (ANNOTATE_ROWS events included), and the server's refusals reported.

mod common;

use coffer_mysql::client::{event, Client, ClientError, Target, DUMP_NON_BLOCK, DUMP_SEND_ANNOTATE_ROWS};
use common::live::{binlog_options, free_port};
use common::mariadb::{self, Server};
use common::*;
use std::time::Duration;

/// A server with the binary log on, on a loopback port, with the options `extra` (later ones
/// win), and a replication user `repl` (password `repl-pw`) allowed from `from`.
fn binlog_server(fx: &Fixture, port: u16, from: &str, extra: &[String]) -> Server {
    let mut opts = binlog_options(port, &[]);
    opts.extend_from_slice(extra);
    let server = Server::start(&fx.path("src"), &opts);
    server.sql(&format!(
        "CREATE USER 'repl'@'{from}' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'{from}';"
    ));
    server
}

/// The name a real ROTATE event points to: after the 19-byte header, an 8-byte position, the
/// name, and the 4-byte checksum.
fn rotated_to(e: &[u8]) -> String {
    String::from_utf8(e[19 + 8..e.len() - 4].to_vec()).unwrap()
}

#[test]
fn binlogs_are_read_as_a_replica_reads_them_byte_identical() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let port = free_port();
    let server = binlog_server(&fx, port, "127.0.0.1", &["--binlog-format=ROW".into()]);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v MEDIUMTEXT); \
         INSERT INTO d.t SELECT seq, REPEAT('x', 100) FROM d.seq_1_to_500; \
         BEGIN; INSERT INTO d.t VALUES (1001, 'a'); UPDATE d.t SET v = 'b' WHERE id < 10; DELETE FROM d.t WHERE id = 3; COMMIT; \
         FLUSH BINARY LOGS; \
         CREATE TEMPORARY TABLE d.tmp (id INT); INSERT INTO d.tmp VALUES (1); INSERT INTO d.t SELECT id + 2000, 'tmp' FROM d.tmp; \
         INSERT INTO d.t VALUES (5000, REPEAT('y', 100000)); \
         FLUSH BINARY LOGS; INSERT INTO d.t VALUES (6000, 'active');",
    );
    let target = Target::Tcp { host: "127.0.0.1".into(), port };
    let timeout = Duration::from_secs(10);

    // Wrong password: the server's refusal, as it says it.
    let err = Client::connect(&target, "repl", b"wrong", timeout, None).unwrap_err();
    assert!(matches!(err, ClientError::Server { code: 1045, .. }), "{err}");

    let mut c = Client::connect(&target, "repl", b"repl-pw", timeout, None).unwrap();
    assert!(c.server_version().contains("MariaDB"), "{}", c.server_version());
    let rows = c.query("SHOW BINARY LOGS").unwrap();
    let names: Vec<String> = rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(names, ["binlog.000001", "binlog.000002", "binlog.000003"]);

    // The whole log, from the first file, reassembled file by file.
    c.dump("binlog.000001", 4, 4242, DUMP_NON_BLOCK | DUMP_SEND_ANNOTATE_ROWS, Duration::from_secs(1)).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = vec![("binlog.000001".into(), b"\xfebin".to_vec())];
    let mut annotations = 0;
    while let Some((h, e)) = c.next_event().unwrap() {
        if !h.in_file() {
            continue;
        }
        annotations += usize::from(h.type_code == 0xa0);
        let (_, bytes) = files.last_mut().unwrap();
        assert_eq!(h.log_pos as usize, bytes.len() + e.len(), "events are contiguous");
        bytes.extend_from_slice(&e);
        if h.type_code == event::ROTATE {
            files.push((rotated_to(&e), b"\xfebin".to_vec()));
        }
    }
    assert!(annotations > 0, "ANNOTATE_ROWS events came");
    assert_eq!(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), names);
    // The closed files are the server's, byte for byte; the active one may differ in one byte:
    // the in-use flag of its format description, which the server clears when it sends it.
    for (name, bytes) in &files[..2] {
        let disk = std::fs::read(server.datadir.join(name)).unwrap();
        assert!(disk == *bytes, "{name}: {} bytes read, {} on disk", bytes.len(), disk.len());
    }
    let (name, bytes) = &files[2];
    let disk = std::fs::read(server.datadir.join(name)).unwrap();
    assert_eq!(disk.len(), bytes.len(), "{name}");
    let differing: Vec<usize> =
        disk.iter().zip(bytes).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    assert!(differing.len() <= 1, "{name}: bytes {differing:?} differ");

    // A file the server does not have: its refusal (1236), one line.
    let mut c = Client::connect(&target, "repl", b"repl-pw", timeout, None).unwrap();
    c.dump("binlog.999999", 4, 4243, DUMP_NON_BLOCK, Duration::from_secs(1)).unwrap();
    let err = c.next_event().unwrap_err();
    assert!(matches!(&err, ClientError::Server { code: 1236, .. }), "{err}");
    assert!(err.to_string().contains("Could not find first log file name"), "{err}");
}

/// `coffer binlog archive` twice with writes and a rotation in between: the second run
/// continues exactly where the first ended (found from the segments' names, no local state);
/// `binlog fetch` gives files byte-identical to the server's. Binary logs purged before they
/// were archived are a gap: said, exit 1, and shown by `binlog list`.
#[test]
fn archives_continue_where_they_end_and_fetch_the_servers_files() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let port = free_port();
    let server = binlog_server(&fx, port, "127.0.0.1", &[]);
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t SELECT seq, REPEAT('x', 100) FROM d.seq_1_to_500; FLUSH BINARY LOGS; \
         INSERT INTO d.t SELECT seq + 1000, 'second' FROM d.seq_1_to_50;",
    );
    fx.write_secret("pw", "repl-pw\n");
    let prefix = format!("file://{}/", fx.path("arch").display());
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    let (pw, key, port) = (fx.s("pw"), fx.key(), port.to_string());
    let archive = || {
        let args = ["binlog", "archive", "-h", "127.0.0.1", "-P", &port, "-u", "repl", "--password-file", &pw];
        run(&[&args[..], &["-o", &prefix, "--key-file", &key, "--segment-size", "8K"]].concat())
    };
    let (code, _, err) = archive();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("archived") && err.contains("file complete"), "{err}");
    // More writes, a rotation, more writes: the next run takes up exactly where it ended.
    server.sql("INSERT INTO d.t SELECT seq + 2000, 'third' FROM d.seq_1_to_300; FLUSH BINARY LOGS; INSERT INTO d.t VALUES (9999, 'last');");
    let (code, _, err) = archive();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = archive();
    assert_eq!(code, 0, "nothing new is no error: {err}");

    let list = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert!(!list.contains("gap"), "{list}");
    // The second run continued binlog.000002 where the first had stopped, mid-file.
    assert!(list.lines().count() >= 4, "{list}");
    assert!(list.lines().any(|l| l.starts_with("binlog.000002") && !l.contains(" 4 ..")), "{list}");
    let out = fx.path("fetched");
    expect(0, &["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &key]);
    let names: Vec<String> =
        server.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 3);
    for (i, name) in names.iter().enumerate() {
        let (disk, got) = (std::fs::read(server.datadir.join(name)).unwrap(), std::fs::read(out.join(name)).unwrap());
        assert_eq!(disk.len(), got.len(), "{name}");
        let differing = disk.iter().zip(&got).filter(|(a, b)| a != b).count();
        // The active file's format description says "in use" on disk, not in the stream.
        assert!(differing == 0 || (i == names.len() - 1 && differing == 1), "{name}: {differing} bytes differ");
    }
    // Each segment says which GTIDs it holds (MariaDB gives every transaction one).
    let closed = std::fs::read_dir(fx.path("arch"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-closed.coffer"))
        .unwrap();
    let d = run(&["extract", closed.to_str().unwrap(), "coffer-binlog.json", "--stdout", "--key-file", &key]);
    let d: serde_json::Value = serde_json::from_slice(&d.1).unwrap();
    assert!(d["gtid_last"].as_str().unwrap().starts_with("0-1-"), "{d}");
    assert_eq!(d["closed"], true, "{d}");
    // Existing files are not replaced.
    let (code, _, err) = run(&["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &key]);
    assert_eq!(code, 1, "{err}");

    // Purged before archived: a gap, said, and shown.
    server.sql(
        "INSERT INTO d.t VALUES (10001, 'lost'); FLUSH BINARY LOGS; INSERT INTO d.t VALUES (10002, 'lost'); \
         FLUSH BINARY LOGS; INSERT INTO d.t VALUES (10003, 'kept');",
    );
    let newest = server.sql("SHOW MASTER STATUS").split('\t').next().unwrap().to_owned();
    server.sql(&format!("PURGE BINARY LOGS TO '{newest}'"));
    let (code, _, err) = archive();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gap in the archive") && err.contains("point-in-time recovery cannot cross it"), "{err}");
    let list = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert!(list.lines().last().unwrap().contains("(gap before)") || list.contains("(gap before)"), "{list}");
}

/// A server that encrypts its binary log (`encrypt_binlog` with `file_key_management`): the
/// archive holds the events as the server sends them to a replica, decrypted, so the fetched
/// files are read by `mariadb-binlog` without the server's key file. And an archiver following
/// the server, killed (SIGKILL) mid-segment and started again, leaves no gap and no duplicate.
#[test]
fn encrypted_binlogs_archive_readable_and_a_killed_follower_resumes() {
    if !mariadb::available() || mariadb::which("mariadb-binlog").is_none() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("keys")).unwrap();
    let keys = fx.path("keys/keys.txt");
    mariadb::write_key_file(&keys, None);
    let port = free_port();
    let server = binlog_server(
        &fx,
        port,
        "127.0.0.1",
        &[
            "--plugin-load-add=file_key_management".into(),
            format!("--file-key-management-filename={}", keys.display()),
            "--encrypt-binlog=ON".into(),
        ],
    );
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t VALUES (1, 'secret-marker-1');",
    );
    let on_disk = std::fs::read(server.datadir.join("binlog.000001")).unwrap();
    assert!(!on_disk.windows(15).any(|w| w == b"secret-marker-1"), "the server's file is encrypted");
    fx.write_secret("pw", "repl-pw\n");
    let prefix = format!("file://{}/", fx.path("arch").display());
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    let (pw, key, port) = (fx.s("pw"), fx.key(), port.to_string());
    let base = ["binlog", "archive", "-h", "127.0.0.1", "-P", &port, "-u", "repl", "--password-file", &pw];
    let args: Vec<&str> = [&base[..], &["-o", &prefix, "--key-file", &key]].concat();

    // Following, with one-second segments; writes arrive while it runs; then SIGKILL.
    let mut follower = coffer()
        .args(&args)
        .args(["--follow", "--segment-time", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for i in 2..12 {
        server.sql(&format!("INSERT INTO d.t VALUES ({i}, 'secret-marker-{i}')"));
        std::thread::sleep(Duration::from_millis(300));
    }
    server.sql("FLUSH BINARY LOGS; INSERT INTO d.t VALUES (100, 'after the rotation');");
    std::thread::sleep(Duration::from_millis(1500));
    follower.kill().unwrap();
    let _ = follower.wait();
    server.sql("INSERT INTO d.t VALUES (200, 'while no archiver ran')");
    // A new run takes up where the killed one had sealed its last segment.
    expect(0, &args);

    let out = fx.path("fetched");
    expect(0, &["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &key]);
    // No key file here: mariadb-binlog reads the archive's files as they are.
    let read = std::process::Command::new(mariadb::which("mariadb-binlog").unwrap())
        .arg("--no-defaults")
        .arg("--base64-output=never")
        .arg(out.join("binlog.000001"))
        .arg(out.join("binlog.000002"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let text = String::from_utf8_lossy(&read.stdout);
    for marker in ["secret-marker-1'", "secret-marker-11'", "after the rotation", "while no archiver ran"] {
        assert!(text.contains(marker), "{marker} in the replayable log");
    }
    // Every event once: the file sizes are the server's.
    for name in ["binlog.000001", "binlog.000002"] {
        assert_eq!(
            std::fs::metadata(out.join(name)).unwrap().len(),
            std::fs::metadata(server.datadir.join(name)).unwrap().len(),
            "{name}"
        );
    }
}

/// The archiver's connection over TLS to a server that accepts nothing else: without TLS the
/// server refuses; VERIFY_IDENTITY with our CA works; another CA is refused; a host the
/// certificate does not name passes VERIFY_CA (the CA only) and fails VERIFY_IDENTITY.
#[test]
fn the_archiver_speaks_verified_tls() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "db"]);
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("other"), "--name", "db"]);
    let port = free_port();
    let server = binlog_server(
        &fx,
        port,
        "%",
        &[
            // 127.0.0.2 reaches the same server under a name its certificate does not hold.
            "--bind-address=127.0.0.1,127.0.0.2".into(),
            format!("--ssl-ca={}", fx.s("pki/ca.crt")),
            format!("--ssl-cert={}", fx.s("pki/db.crt")),
            format!("--ssl-key={}", fx.s("pki/db.key")),
            "--require-secure-transport=ON".into(),
        ],
    );
    server.sql("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1);");
    fx.write_secret("pw", "repl-pw\n");
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    let prefix = format!("file://{}/", fx.path("arch").display());
    let (pw, key, port) = (fx.s("pw"), fx.key(), port.to_string());
    let (ca, other) = (fx.s("pki/ca.crt"), fx.s("other/ca.crt"));
    let archive = |host: &str, tls: &[&str]| {
        let args = ["binlog", "archive", "-h", host, "-P", &port, "-u", "repl", "--password-file", &pw];
        run(&[&args[..], &["-o", &prefix, "--key-file", &key], tls].concat())
    };
    // Without TLS (the archiver never falls back to it unasked): MariaDB 10.11 refuses such a
    // connection as "Access denied".
    let (code, _, err) = archive("127.0.0.1", &[]);
    assert_eq!(code, 1, "{err}");
    assert!((err.contains("insecure transport") || err.contains("Access denied")) && err.lines().count() == 1, "{err}");
    let (code, _, err) = archive("127.0.0.1", &["--ssl-mode", "VERIFY_IDENTITY", "--ssl-ca", &other]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS") && err.lines().count() == 1, "{err}");
    let (code, _, err) = archive("127.0.0.2", &["--ssl-mode", "VERIFY_IDENTITY", "--ssl-ca", &ca]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS"), "{err}");
    let (code, _, err) = archive("127.0.0.2", &["--ssl-mode", "VERIFY_CA", "--ssl-ca", &ca]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = archive("127.0.0.1", &["--ssl-mode", "VERIFY_IDENTITY", "--ssl-ca", &ca]);
    assert_eq!(code, 0, "{err}");
    assert!(server.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'").split('\t').nth(1).unwrap().trim() != "0");
}
