//! coffer's replication client (`coffer_mysql::client`) against a real MariaDB server: the
//! binary log read as a replica reads it, reassembled into files byte-identical to the
//! server's own (ANNOTATE_ROWS events included), and the server's refusals reported.

mod common;

use coffer_mysql::client::{event, Client, ClientError, Target, DUMP_NON_BLOCK, DUMP_SEND_ANNOTATE_ROWS};
use common::mariadb::{self, Server};
use common::*;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
    let server = Server::start(
        &fx.path("src"),
        &[
            "--log-bin=binlog".into(),
            "--server-id=1".into(),
            "--binlog-format=ROW".into(),
            "--skip-networking=0".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--port={port}"),
        ],
    );
    server.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'repl'@'127.0.0.1'; \
         CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v MEDIUMTEXT); \
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
    let err = Client::connect(&target, "repl", b"wrong", timeout).unwrap_err();
    assert!(matches!(err, ClientError::Server { code: 1045, .. }), "{err}");

    let mut c = Client::connect(&target, "repl", b"repl-pw", timeout).unwrap();
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
    let mut c = Client::connect(&target, "repl", b"repl-pw", timeout).unwrap();
    c.dump("binlog.999999", 4, 4243, DUMP_NON_BLOCK, Duration::from_secs(1)).unwrap();
    let err = c.next_event().unwrap_err();
    assert!(matches!(&err, ClientError::Server { code: 1236, .. }), "{err}");
    assert!(err.to_string().contains("Could not find first log file name"), "{err}");
}
