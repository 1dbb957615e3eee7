//! A live MariaDB source for the hot-backup tests: a server with the binary log on, a backup
//! user, sysbench tables; and the commands the tests run against it.

use super::mariadb::{self, Server};
use super::*;
use std::process::{Command, Stdio};

/// MariaDB, mariadb-backup and sysbench, or a skip (a failure when CI requires them).
pub fn tools() -> bool {
    if !mariadb::available() {
        return false;
    }
    let found = ["mariadb-backup", "sysbench", "mariadb-binlog"].iter().all(|b| mariadb::which(b).is_some());
    if !found {
        assert!(
            std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(),
            "mariadb-backup, mariadb-binlog and sysbench are required"
        );
        eprintln!("skipped: mariadb-backup or sysbench is not installed");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The options of a server with the binary log on, on a loopback port, with `extra` (later
/// ones win).
pub fn binlog_options(port: u16, extra: &[&str]) -> Vec<String> {
    let mut opts: Vec<String> = vec![
        "--log-bin=binlog".into(),
        "--server-id=1".into(),
        "--skip-networking=0".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--port={port}"),
    ];
    opts.extend(extra.iter().map(|s| s.to_string()));
    opts
}

/// A source server with the binary log on, reachable on a loopback port, with a backup user,
/// sysbench tables, a ROW_FORMAT=COMPRESSED and a PAGE_COMPRESSED table; and the options `extra`.
pub fn source(fx: &Fixture, port: u16, extra: &[String]) -> Server {
    let mut opts = binlog_options(port, &[]);
    opts.extend_from_slice(extra);
    let server = Server::start(&fx.path("src"), &opts);
    server.sql(
        "CREATE DATABASE sbtest; \
         CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY 'secret-pw'; \
         CREATE USER 'backup'@'localhost' IDENTIFIED BY 'secret-pw'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'backup'@'127.0.0.1'; \
         GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'backup'@'localhost'; \
         CREATE TABLE sbtest.zipped (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8; \
         CREATE TABLE sbtest.pagecomp (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT) PAGE_COMPRESSED=1; \
         INSERT INTO sbtest.zipped (v) SELECT REPEAT(CONCAT('row ', seq), 40) FROM sbtest.seq_1_to_3000; \
         INSERT INTO sbtest.pagecomp (v) SELECT REPEAT(CONCAT('page ', seq), 40) FROM sbtest.seq_1_to_3000;",
    );
    sysbench(&server, "prepare", &[]).wait().unwrap();
    fx.write_secret("pw", "secret-pw\n");
    server
}

pub fn sysbench(server: &Server, action: &str, extra: &[&str]) -> std::process::Child {
    Command::new(mariadb::which("sysbench").unwrap())
        .arg("oltp_read_write")
        .arg(format!("--mysql-socket={}", server.socket.display()))
        .args(["--mysql-user=root", "--mysql-db=sbtest", "--tables=4", "--table-size=20000", "--threads=2"])
        .args(extra)
        .arg(action)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub fn tables(server: &Server) -> Vec<String> {
    let list = server.sql("SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables WHERE table_schema = 'sbtest' ORDER BY 1");
    list.lines().map(str::to_owned).collect()
}

pub fn checksums(server: &Server, tables: &[String]) -> String {
    server.sql(&format!("CHECKSUM TABLE {}", tables.join(", ")))
}

pub fn backup_args(fx: &Fixture, port: u16, image: &str) -> Vec<String> {
    [
        "backup",
        "--mysql",
        "-h",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-u",
        "backup",
        "--password-file",
        &fx.s("pw"),
        "-o",
        image,
        "--key-file",
        &fx.key(),
        "--scratch-dir",
        &fx.s("scratch"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn coffer_ok(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    expect(0, &refs)
}

/// Replays `src`'s binary log from `file`:`pos` into `dst`: read from its files, or (`remote`,
/// for a binary log the server encrypts) through the server.
pub fn replay(src: &Server, dst: &Server, file: &str, pos: u64, remote: bool) {
    let logs: Vec<String> =
        src.sql("SHOW BINARY LOGS").lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
    let from = logs.iter().position(|l| *l == file).expect("the recorded binlog exists");
    let (source, files): (String, Vec<String>) = if remote {
        (format!("--read-from-remote-server --socket={} -uroot", src.socket.display()), logs[from..].to_vec())
    } else {
        (String::new(), logs[from..].iter().map(|l| src.datadir.join(l).display().to_string()).collect())
    };
    let replay = format!(
        "{} {source} --start-position={pos} {} | {} --socket={} -uroot",
        mariadb::which("mariadb-binlog").unwrap().display(),
        files.join(" "),
        mariadb::which("mariadb").unwrap().display(),
        dst.socket.display()
    );
    let out = Command::new("sh").arg("-c").arg(&replay).output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
}
