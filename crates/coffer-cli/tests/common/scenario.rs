//! What the server tests set up again and again, in one place: a source server built step by
//! step (`Scenario`: the binary log, a backup user, a replication user, sysbench tables, a
//! marker table, rows), the archiver following it (`Follower`), the archive's segments, the
//! state at a marker, and a restored datadir's state.
#![allow(dead_code)]

use super::live::{self, binlog_options, free_port};
use super::mariadb::{self, Server};
use super::*;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows in `d.t` across two binary log files of about a megabyte each.
pub const TWO_LOGS: &str = "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
    INSERT INTO d.t SELECT seq, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000; FLUSH BINARY LOGS; \
    INSERT INTO d.t SELECT seq + 1000, REPEAT(MD5(seq), 30) FROM d.seq_1_to_1000;";

/// A source server to be started in `fx`'s `src`, with the binary log on, on a loopback port.
pub struct Scenario<'a> {
    fx: &'a Fixture,
    port: u16,
    opts: Vec<String>,
    sysbench: bool,
    backup: bool,
    repl: bool,
    sql: Vec<String>,
}

/// The started source: the server, its port, and the options it runs with (for a restart).
pub struct Source {
    pub server: Server,
    pub port: u16,
    pub opts: Vec<String>,
}

impl<'a> Scenario<'a> {
    pub fn new(fx: &'a Fixture) -> Self {
        Self { fx, port: free_port(), opts: vec![], sysbench: false, backup: false, repl: false, sql: vec![] }
    }

    /// Server options besides the binary log's (later ones win).
    pub fn opts(mut self, opts: &[&str]) -> Self {
        self.opts.extend(opts.iter().map(|s| s.to_string()));
        self
    }

    /// `live::source`: a backup user, sysbench tables, a compressed and a page-compressed table.
    pub fn sysbench(mut self) -> Self {
        self.sysbench = true;
        self
    }

    /// A backup user (its password in the fixture's `pw`), and the engine's `scratch`.
    pub fn backup_user(mut self) -> Self {
        self.backup = true;
        self
    }

    /// A user `repl` that may read the binary log, over the socket or loopback TCP (its
    /// password in the fixture's `repl-pw`).
    pub fn repl(mut self) -> Self {
        self.repl = true;
        self
    }

    /// `sbtest.marker (id, at DATETIME)`, the rows the point-in-time tests mark instants with.
    pub fn marker(self) -> Self {
        self.sql("CREATE DATABASE IF NOT EXISTS sbtest; CREATE TABLE sbtest.marker (id INT PRIMARY KEY, at DATETIME);")
    }

    /// SQL run once the users are made.
    pub fn sql(mut self, sql: &str) -> Self {
        self.sql.push(sql.to_owned());
        self
    }

    pub fn start(self) -> Source {
        let fx = self.fx;
        let server = if self.sysbench {
            live::source(fx, self.port, &self.opts)
        } else {
            Server::start(
                &fx.path("src"),
                &binlog_options(self.port, &[]).into_iter().chain(self.opts.clone()).collect::<Vec<_>>(),
            )
        };
        if self.backup && !self.sysbench {
            server.sql(&users(
                "backup",
                "secret-pw",
                "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION CLIENT, SELECT",
            ));
            fx.write_secret("pw", "secret-pw\n");
        }
        if self.backup || self.sysbench {
            std::fs::create_dir_all(fx.path("scratch")).unwrap();
        }
        if self.repl {
            server.sql(&users("repl", "repl-pw", "REPLICATION SLAVE, BINLOG MONITOR"));
            fx.write_secret("repl-pw", "repl-pw\n");
        }
        for sql in self.sql.iter().filter(|s| !s.trim().is_empty()) {
            server.sql(sql);
        }
        let opts = binlog_options(self.port, &[]).into_iter().chain(self.opts).collect();
        Source { server, port: self.port, opts }
    }
}

/// `user` (password `pw`) granted `grants`, from the socket and from loopback TCP.
fn users(user: &str, pw: &str, grants: &str) -> String {
    ["localhost", "127.0.0.1"]
        .map(|host| {
            format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY '{pw}'; GRANT {grants} ON *.* TO '{user}'@'{host}';")
        })
        .concat()
}

impl Source {
    /// The sysbench tables, `sbtest.marker` last (its checksum last in a snapshot).
    pub fn tables_marker_last(&self) -> Vec<String> {
        let mut t = live::tables(&self.server);
        t.retain(|n| n != "sbtest.marker");
        t.push("sbtest.marker".into());
        t
    }
}

/// `-S SOCKET`, to reach `server`.
pub fn socket_args(server: &Server) -> [String; 2] {
    ["-S".into(), server.socket.display().to_string()]
}

/// `coffer binlog archive` as `repl`, reaching the server with `conn` (`-S SOCKET` or
/// `-h HOST -P PORT`), into `prefix`, with `more`.
pub fn archive_args(fx: &Fixture, conn: &[String], prefix: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["binlog", "archive"].map(String::from).into();
    args.extend_from_slice(conn);
    let (pw, key) = (fx.s("repl-pw"), fx.key());
    args.extend(["-u", "repl", "--password-file", &pw, "-o", prefix, "--key-file", &key].map(String::from));
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Runs coffer with `args`: (exit code, stdout, stderr).
pub fn run_args(args: &[String]) -> (i32, Vec<u8>, String) {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// An archiver running with --follow, its stderr collected.
pub struct Follower {
    child: std::process::Child,
    lines: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Self {
        let mut c = coffer();
        c.args(args);
        Self::spawn(c)
    }

    /// `cmd` (coffer, its arguments and environment set) started as a follower.
    pub fn spawn(mut cmd: std::process::Command) -> Self {
        let mut child = cmd.stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(String::new()));
        let (stderr, into) = (child.stderr.take().unwrap(), lines.clone());
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut all = into.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Follower { child, lines, reader: Some(reader) }
    }

    /// Is it still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops it with SIGTERM, as a supervisor does; waits (at most `secs`) for it to exit, and
    /// for its stderr to be read to the end: its exit code and all it said.
    pub fn term(mut self, secs: u64) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.running() {
            assert!(Instant::now() < deadline, "still running {secs} s after SIGTERM:\n{}", self.said());
            std::thread::sleep(Duration::from_millis(50));
        }
        let code = self.child.wait().unwrap().code();
        // The pipe's writer is gone: the reader reaches its end.
        let reader = self.reader.take().unwrap();
        while !reader.is_finished() {
            assert!(Instant::now() < deadline, "its stderr not read to the end within {secs} s");
            std::thread::sleep(Duration::from_millis(50));
        }
        (code, self.said())
    }

    pub fn said(&self) -> String {
        self.lines.lock().unwrap().clone()
    }

    /// Lines it printed that contain `what`.
    pub fn count(&self, what: &str) -> usize {
        self.said().lines().filter(|l| l.contains(what)).count()
    }

    /// Stops it (it never ends by itself); fails if it had ended.
    pub fn stop(mut self) -> String {
        let status = self.child.try_wait().unwrap();
        assert!(status.is_none(), "the follower ended ({status:?}):\n{}", self.said());
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        self.said()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to `secs`, which no passing run comes near) until `done`; else fails, saying
/// `what` and the follower's lines.
#[track_caller]
pub fn wait_until(what: &str, secs: u64, log: &Follower, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s; the archiver said:\n{}", log.said());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `binlog list PREFIX --json` (with the key if given).
pub fn listed(prefix: &str, key: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["binlog", "list", prefix, "--json"];
    if let Some(k) = key {
        args.extend(["--key-file", k]);
    }
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_slice::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
}

/// The server's current binary log file and position.
pub fn master_status(server: &Server) -> (String, u64) {
    let status = server.sql("SHOW MASTER STATUS");
    let mut cols = status.split('\t');
    (cols.next().unwrap().to_owned(), cols.next().unwrap().trim().parse().unwrap())
}

/// The server's binary log files and sizes, oldest first.
pub fn server_logs(server: &Server) -> Vec<(String, u64)> {
    let logs = server.sql("SHOW BINARY LOGS");
    logs.lines()
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap().to_owned(), cols.next().unwrap().trim().parse().unwrap())
        })
        .collect()
}

/// The archive at `prefix` holds the server's binary log up to where it is now.
pub fn caught_up<'a>(server: &'a Server, prefix: &'a str) -> impl FnMut() -> bool + 'a {
    move || {
        let (file, position) = master_status(server);
        listed(prefix, None).last().is_some_and(|s| s["file"] == file.as_str() && s["end"] == position)
    }
}

/// The state at a marker, read under FLUSH TABLES WITH READ LOCK in one session: the GTID
/// position, the binlog position, every table's checksum, the time; the lock is held into the
/// next second, so that everything after it is stamped later.
pub struct Mark {
    pub gtid: String,
    pub position: String,
    pub checksums: String,
    pub time: i64,
}

pub fn mark(server: &Server, tables: &[String], marker: u32) -> Mark {
    server.sql(&format!("INSERT INTO sbtest.marker VALUES ({marker}, NOW())"));
    let out = server.sql(&format!(
        "FLUSH TABLES WITH READ LOCK; SELECT @@gtid_binlog_pos; SHOW MASTER STATUS; CHECKSUM TABLE {}; \
         SELECT UNIX_TIMESTAMP(); SELECT SLEEP(1.2); UNLOCK TABLES;",
        tables.join(", ")
    ));
    let lines: Vec<&str> = out.lines().collect();
    let status: Vec<&str> = lines[1].split('\t').collect();
    let n = tables.len();
    Mark {
        gtid: lines[0].trim().to_owned(),
        position: format!("{}:{}", status[0], status[1]),
        checksums: lines[2..2 + n].join("\n"),
        time: lines[2 + n].trim().parse().unwrap(),
    }
}

/// "2026-11-27 14:02:59" in UTC.
pub fn utc(t: i64) -> String {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%F %T"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A server on a restored datadir (`dir/data`), its tables' checksums and markers; it is no
/// replica of anything (the replay's replication settings are gone).
pub fn restored_state(dir: &Path, tables: &[String]) -> (String, String) {
    let server = Server::open(dir, &[]);
    assert_eq!(server.sql("SHOW SLAVE STATUS").trim(), "", "no replication left configured");
    let sums = live::checksums(&server, tables).trim_end().to_owned();
    let markers = server.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM sbtest.marker");
    (sums, markers.trim().to_owned())
}

/// The server's binary log files and what a fetch wrote into `dir` are the same (but for the
/// active file's "in use" flag, which the stream does not carry).
#[track_caller]
pub fn fetched_as_on_the_server(server: &Server, dir: &Path) {
    let logs: Vec<String> = server_logs(server).into_iter().map(|(name, _)| name).collect();
    assert_eq!(tmpfs::names(dir), logs);
    for (i, name) in logs.iter().enumerate() {
        let (disk, got) = (std::fs::read(server.datadir.join(name)).unwrap(), std::fs::read(dir.join(name)).unwrap());
        assert_eq!(disk.len(), got.len(), "{name}");
        let differing = disk.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert!(differing == 0 || (i == logs.len() - 1 && differing == 1), "{name}: {differing} bytes differ");
    }
}

/// Waits (at most `secs` seconds, then kills it) for `child` to exit; its output.
pub fn wait_exit(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {secs} s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The client `mariadb` on `server`'s socket, as root.
pub fn client(server: &Server) -> std::process::Command {
    let mut c = std::process::Command::new(mariadb::which("mariadb").unwrap());
    c.arg(format!("--socket={}", server.socket.display())).arg("-uroot");
    c
}
