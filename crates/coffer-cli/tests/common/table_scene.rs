//! What the tests of `restore --tables` share (table_restore.rs, table_refusals.rs): a key file
//! the private server (user mysql) can read, a small sysbench load that keeps running, where a
//! transaction's GTID event starts in the binary log, a server's state to compare before and
//! after (tables, checksums, the files of a database, what lies beside the datadir), and coffer
//! run as a table restore.
#![allow(dead_code)]

use super::mariadb::{self, Server};
use super::tables;
use super::*;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

/// The sysbench tables of `Load`.
pub const SYSBENCH: [&str; 2] = ["sbtest.sbtest1", "sbtest.sbtest2"];

/// Keys 1 and 2 (as `mariadb::write_key_file`) in `fx/keys/keys.txt`, readable by the private
/// server coffer starts as `mysql` (mode 0644 in a 0755 directory); its path.
pub fn key_file(fx: &Fixture) -> PathBuf {
    readable(fx, "keys", |p| mariadb::write_key_file(p, None))
}

/// Key 1 only, in `fx/keys-1/keys.txt` (as readable): a server that lacks key 2.
pub fn key_file_without_2(fx: &Fixture) -> PathBuf {
    readable(fx, "keys-1", tables::write_key_file_without_2)
}

fn readable(fx: &Fixture, dir: &str, write: impl Fn(&Path)) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = fx.path(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("keys.txt");
    write(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// sysbench's oltp_read_write on `server`'s `sbtest` (2 tables of 10,000 rows, 1 thread),
/// running until stopped (at most 10 minutes); killed when dropped.
pub struct Load(Child);

impl Load {
    /// Creates `sbtest` and its tables on `server`.
    pub fn prepare(server: &Server) {
        server.sql("CREATE DATABASE IF NOT EXISTS sbtest");
        let out = sysbench(server, "prepare", &[]).stdout(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "sysbench prepare: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start(server: &Server) -> Load {
        let child =
            sysbench(server, "run", &["--time=600"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        Load(child)
    }

    /// Still writing?
    pub fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Stops it; fails if it had ended by itself (it ran throughout, or the test says so).
    pub fn stop(mut self) {
        assert!(self.running(), "sysbench ended before it was stopped: {:?}", self.0.try_wait());
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sysbench(server: &Server, action: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(mariadb::which("sysbench").unwrap());
    c.arg("oltp_read_write")
        .arg(format!("--mysql-socket={}", server.socket.display()))
        .args(["--mysql-user=root", "--mysql-db=sbtest", "--tables=2", "--table-size=10000", "--threads=1"])
        .args(extra)
        .arg(action);
    c
}

/// `FILE:POS` where the GTID event of transaction `gtid` starts in `server`'s binary log (SHOW
/// BINLOG EVENTS, newest file first): the position to stop just before it.
pub fn gtid_event_start(server: &Server, gtid: &str) -> String {
    let logs = server.sql("SHOW BINARY LOGS");
    for file in logs.lines().rev().map(|l| l.split('\t').next().unwrap()) {
        let events = server.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
        // Log_name, Pos, Event_type, Server_id, End_log_pos, Info ("BEGIN GTID 0-1-9", "GTID 0-1-9").
        let found = events.lines().map(|l| l.split('\t').collect::<Vec<_>>()).find(|c| {
            c.len() >= 6 && c[2] == "Gtid" && c[5].split_whitespace().skip_while(|w| *w != "GTID").nth(1) == Some(gtid)
        });
        if let Some(c) = found {
            return format!("{file}:{}", c[1]);
        }
    }
    panic!("no GTID event of {gtid} in the binary log")
}

/// What a table restore must leave alone on a server: the tables of each database in `dbs`
/// (SHOW TABLES), the checksums of `tables`, and the files of each database's directory.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    pub tables: BTreeMap<String, String>,
    pub checksums: BTreeMap<String, String>,
    pub files: BTreeMap<String, Vec<String>>,
}

pub fn state<S: AsRef<str>>(server: &Server, dbs: &[&str], sums: &[S]) -> State {
    let mut st = State { tables: BTreeMap::new(), checksums: BTreeMap::new(), files: BTreeMap::new() };
    for db in dbs {
        let listed = server.sql(&format!("SHOW TABLES FROM {db}"));
        st.tables.insert(db.to_string(), listed);
        st.files.insert(db.to_string(), names(&server.datadir.join(db)));
    }
    if !sums.is_empty() {
        st.checksums = tables::checksums(server, sums);
    }
    st
}

/// The names in `dir`, sorted (none if it is missing).
pub fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    n.sort();
    n
}

/// What a table restore left beside `server`'s datadir (its private directories), and in the
/// datadir's databases (a `.cfg`, a placeholder table's files): nothing, or the names.
pub fn leftovers(server: &Server, dbs: &[&str]) -> Vec<String> {
    let parent = server.datadir.parent().unwrap();
    let mut left: Vec<String> = names(parent).into_iter().filter(|n| n.contains("coffer")).collect();
    for db in dbs {
        let files = names(&server.datadir.join(db));
        left.extend(
            files.into_iter().filter(|n| n.ends_with(".cfg") || n.contains("_coffer_")).map(|n| format!("{db}/{n}")),
        );
    }
    left
}

/// Runs coffer (`cmd`: with its environment, e.g. S3's) with `args`: exit code, stdout, stderr.
pub fn coffer_in(mut cmd: Command, args: &[&str]) -> (i32, String, String) {
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// A refusal: exit 1, and stderr is one line, `coffer: error: ...` saying `says` (run with
/// --quiet: the steps before the refusal are not said).
#[track_caller]
pub fn refused(got: &(i32, String, String), says: &str) {
    let (code, _, err) = got;
    assert_eq!(*code, 1, "exit {code}, expected 1: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "one line, not: {err}");
    assert!(lines[0].starts_with("coffer: error: ") && lines[0].contains(says), "expected {says:?} in: {err}");
}

/// A usage error: exit 2, saying `says`.
#[track_caller]
pub fn usage(got: &(i32, String, String), says: &str) {
    let (code, _, err) = got;
    assert_eq!(*code, 2, "exit {code}, expected 2: {err}");
    assert!(err.contains(says), "expected {says:?} in: {err}");
}

/// The one JSON object a `--json` run printed.
#[track_caller]
pub fn json(got: &(i32, String, String)) -> serde_json::Value {
    let (code, out, err) = got;
    assert_eq!(*code, 0, "coffer failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Pushes `server`'s log sequence number past `lsn` (a younger server imports no encrypted
/// page from its future), with rows written and dropped in a database of its own.
pub fn write_past(server: &Server, lsn: u64) {
    server.sql("CREATE DATABASE pump; CREATE TABLE pump.p (id INT PRIMARY KEY AUTO_INCREMENT, b LONGBLOB)");
    for _ in 0..400 {
        if tables::lsn(server) > lsn {
            server.sql("DROP DATABASE pump");
            return;
        }
        server.sql("INSERT INTO pump.p (b) VALUES (REPEAT('x', 4000000)); DELETE FROM pump.p");
    }
    panic!("the server's LSN did not pass {lsn}");
}

/// A session that holds a transaction open on `server` (its metadata locks held until it is
/// dropped): as an application that read a table and has not committed yet.
pub struct Holder {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Holder {
    /// Begins a transaction and runs `select` (one row) in it; returns once the row came.
    pub fn start(server: &Server, select: &str) -> Holder {
        use std::io::{BufRead, Write};
        let mut child = server.session();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "BEGIN; {select};").unwrap();
        stdin.flush().unwrap();
        let mut row = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut row).unwrap();
        assert!(!row.trim().is_empty(), "the holding session's {select} returned nothing");
        Holder { child, stdin: Some(stdin) }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // End of input: the client quits, the server rolls the transaction back.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
