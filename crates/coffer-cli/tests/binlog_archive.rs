//! `coffer binlog archive` against a real MariaDB through what happens to a server and its
//! network: a follower that sees the server restarted and its link cut silently reconnects and
//! leaves an archive whose files are the server's, byte for byte; binary logs purged before
//! they were archived are a gap, said once (an error without --follow, a warning with it); and
//! temporary tables and transactions that span a rotation replay from the fetched files.

mod common;

use common::mariadb::{self, Server};
use common::scenario::*;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `-h 127.0.0.1 -P PORT`: the server (or the proxy in front of it) on a loopback port.
fn tcp(port: u16) -> [String; 4] {
    ["-h".into(), "127.0.0.1".into(), "-P".into(), port.to_string()]
}

/// The server's binary log files, oldest first.
fn log_names(server: &Server) -> Vec<String> {
    server_logs(server).into_iter().map(|(name, _)| name).collect()
}

/// An archive's prefix under the fixture (created).
fn prefix(fx: &Fixture) -> String {
    std::fs::create_dir_all(fx.path("arch")).unwrap();
    format!("file://{}/", fx.path("arch").display())
}

/// A TCP proxy on a loopback port to the server's: cut, it forwards nothing more and closes
/// nothing (a peer silently gone: the archiver must notice by itself), and holds new
/// connections unanswered; restored, it forwards new connections again.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (cut.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if c.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(client);
                    continue;
                }
                // A server that is down: the client sees its connection closed.
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), c.clone());
                pipe(server, client, c.clone());
            }
        });
        Proxy { port, cut, held }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards new connections again; those held while cut are closed.
    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

/// Copies `from` to `to` until either ends; once cut, reads on and forwards nothing more.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut dead = false;
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    dead |= cut.load(Ordering::SeqCst);
                    if !dead && to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Compares the fetched files in `dir` with the server's: every closed file byte for byte;
/// the active one too, but for the in-use flag of its format description, which the server
/// clears in what it sends.
fn assert_same_files(server: &Server, dir: &std::path::Path) {
    let names = log_names(server);
    let mut fetched: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    fetched.sort();
    assert_eq!(fetched, names, "the files fetched are the server's");
    for (i, name) in names.iter().enumerate() {
        let (disk, got) = (std::fs::read(server.datadir.join(name)).unwrap(), std::fs::read(dir.join(name)).unwrap());
        assert_eq!(disk.len(), got.len(), "{name}: as long as the server's");
        let differing: Vec<usize> =
            disk.iter().zip(&got).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
        // The format description's flags start at 4 + 17; LOG_EVENT_BINLOG_IN_USE_F is 1.
        let in_use = differing == [21] && disk[21] ^ got[21] == 1;
        assert!(differing.is_empty() || (i == names.len() - 1 && in_use), "{name}: bytes {differing:?} differ");
    }
}

/// A follower with one-second segments through a server restart (the file ends with STOP; the
/// server goes on in a new file without a ROTATE) and a silent network cut (no byte and no
/// heartbeat: the read times out): it reconnects each time, saying so, and the archive has no
/// gap, and the fetched files are the server's, every byte (no event lost, none twice).
#[test]
fn a_follower_survives_restarts_and_silent_cuts_byte_identical() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let Source { mut server, port, opts } = Scenario::new(&fx).opts(&["--binlog-format=ROW"]).repl().start();
    server.sql(
        "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO d.t SELECT seq, REPEAT('x', 200) FROM d.seq_1_to_300;",
    );
    let proxy = Proxy::start(port);
    let prefix = prefix(&fx);
    let follower = Follower::start(&archive_args(&fx, &tcp(proxy.port), &prefix, &["--follow", "--segment-time", "1"]));
    for i in 0..5 {
        server.sql(&format!(
            "INSERT INTO d.t VALUES ({}, 'while following'); UPDATE d.t SET v = 'u' WHERE id = {i}",
            1000 + i
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until("the archive follows the writes", 60, &follower, caught_up(&server, &prefix));

    // A clean restart: the file ends with a STOP event, the server goes on in a new file.
    let before = follower.count("reconnecting in");
    server.stop();
    let server = Server::open(&fx.path("src"), &opts);
    server.sql("INSERT INTO d.t VALUES (2000, 'after the restart'); DELETE FROM d.t WHERE id BETWEEN 10 AND 20;");
    wait_until("the archive follows after the restart", 60, &follower, caught_up(&server, &prefix));
    assert!(follower.count("reconnecting in") > before, "{}", follower.said());
    let logs = log_names(&server);
    let stopped = std::fs::read(server.datadir.join(&logs[logs.len() - 2])).unwrap();
    assert_eq!(stopped[stopped.len() - 23 + 4], 3, "the file before the restart ends with a STOP event");

    // A silent cut: the archiver hears nothing, not even heartbeats, and must notice.
    proxy.cut();
    server.sql(
        "INSERT INTO d.t VALUES (3000, 'during the cut'); FLUSH BINARY LOGS; INSERT INTO d.t VALUES (3001, 'cut');",
    );
    wait_until("the archiver notices the dead link", 60, &follower, || {
        follower.count("nothing from the server in 10 s") > 0
    });
    proxy.restore();
    server.sql("INSERT INTO d.t VALUES (4000, 'restored'); UPDATE d.t SET v = 'w' WHERE id > 100;");
    server.sql("FLUSH BINARY LOGS; INSERT INTO d.t VALUES (5000, 'last');");
    wait_until("the archive follows after the cut", 60, &follower, caught_up(&server, &prefix));
    let said = follower.stop();
    // One line per reconnection, saying what broke and when it tries again.
    let cut_line = said.lines().find(|l| l.contains("nothing from the server in 10 s")).unwrap();
    assert!(
        cut_line.starts_with("coffer: warning: the binary log stream broke: ")
            && cut_line.contains("; reconnecting in "),
        "{said}"
    );
    assert!(!said.contains("gap"), "{said}");

    let segments = listed(&prefix, None);
    assert!(segments.iter().all(|s| s["gap_before"] == false), "{segments:?}");
    // The file the restart ended is complete (its STOP event), as its name says.
    let stopped_name = &logs[logs.len() - 2];
    assert!(segments.iter().any(|s| s["file"] == stopped_name.as_str() && s["closed"] == true), "{segments:?}");
    let out = fx.path("fetched");
    expect(0, &["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &fx.key()]);
    assert_same_files(&server, &out);
}

/// Binary logs purged before the archiver read them: without --follow the run archives what
/// is left and exits 1, one line naming the gap; `binlog list` marks the segment after it; with
/// --follow, a warning and the archiver goes on.
#[test]
fn logs_purged_before_they_are_archived_are_a_gap_said_once() {
    if !mariadb::available() {
        return;
    }
    let fx = Fixture::new();
    let Source { server, port, .. } = Scenario::new(&fx).opts(&["--binlog-format=ROW"]).repl().start();
    server.sql("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT); INSERT INTO d.t VALUES (1, 'a');");
    let prefix = prefix(&fx);
    let once = archive_args(&fx, &tcp(port), &prefix, &[]);
    let (code, _, err) = run_args(&once);
    assert_eq!(code, 0, "{err}");
    let archived_to = master_status(&server).0;
    assert!(!listed(&prefix, None).is_empty());

    let purge = |first: i32| {
        for i in first..first + 3 {
            server.sql(&format!("INSERT INTO d.t VALUES ({i}, 'lost'); FLUSH BINARY LOGS;"));
        }
        let newest = master_status(&server).0;
        server.sql(&format!("PURGE BINARY LOGS TO '{newest}'; INSERT INTO d.t VALUES ({}, 'kept');", first + 100));
        // The oldest file left (the server keeps a file until its binlog checkpoint is past).
        let left = log_names(&server).remove(0);
        assert_ne!(left, archived_to);
        left
    };
    let oldest_left = purge(10);
    let (code, _, err) = run_args(&once);
    assert_eq!(code, 1, "{err}");
    let gap_lines: Vec<&str> = err.lines().filter(|l| l.contains("gap") || l.contains("purged")).collect();
    assert_eq!(gap_lines.len(), 1, "{err}");
    let line = gap_lines[0];
    assert!(
        line.starts_with("coffer: ")
            && line.contains("gap in the archive")
            && line.contains(&format!("from {archived_to} at "))
            && line.contains(&format!("to the start of {oldest_left}"))
            && line.contains("point-in-time recovery cannot cross it"),
        "{err}"
    );
    // What the server still had was archived, and the next run starts after it, without error.
    let (code, _, err) = run_args(&once);
    assert_eq!(code, 0, "{err}");
    let segments = listed(&prefix, None);
    let marked: Vec<_> = segments.iter().filter(|s| s["gap_before"] == true).collect();
    assert_eq!(marked.len(), 1, "{segments:?}");
    assert_eq!((marked[0]["file"].as_str().unwrap(), marked[0]["start"].as_u64()), (oldest_left.as_str(), Some(4)));
    let text = String::from_utf8(run(&["binlog", "list", &prefix]).1).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("(gap before)")).count(), 1, "{text}");

    // Following: the gap is a warning, and the archiver goes on.
    let oldest_left = purge(20);
    let follower = Follower::start(&archive_args(&fx, &tcp(port), &prefix, &["--follow", "--segment-time", "1"]));
    wait_until("the follower archives past the gap", 60, &follower, caught_up(&server, &prefix));
    server.sql("INSERT INTO d.t VALUES (500, 'after the gap')");
    wait_until("the follower goes on", 60, &follower, caught_up(&server, &prefix));
    let said = follower.stop();
    let warned: Vec<&str> = said.lines().filter(|l| l.contains("purged")).collect();
    assert_eq!(warned.len(), 1, "{said}");
    assert!(
        warned[0].starts_with("coffer: warning: ")
            && warned[0].contains(&format!("to the start of {oldest_left}"))
            && warned[0].contains("archiving on"),
        "{said}"
    );
    let segments = listed(&prefix, None);
    let marked: Vec<_> = segments.iter().filter(|s| s["gap_before"] == true).collect();
    assert_eq!(marked.len(), 2, "{segments:?}");
    assert_eq!((marked[1]["file"].as_str().unwrap(), marked[1]["start"].as_u64()), (oldest_left.as_str(), Some(4)));
}

/// A session of its own on `server`'s socket (as `app`), for statements interleaved with
/// other sessions'.
fn session(server: &Server) -> coffer_mysql::client::Client {
    use coffer_mysql::client::{Client, Target};
    Client::connect(&Target::Socket(server.socket.clone()), "app", b"app-pw", Duration::from_secs(30), None).unwrap()
}

fn exec(c: &mut coffer_mysql::client::Client, sql: &str) {
    if let Err(e) = c.query(sql) {
        panic!("{sql}: {e}");
    }
}

/// A temporary table created in one file and used in the next from the same session, and a
/// transaction whose statements come before and after another session's FLUSH BINARY LOGS:
/// archived, fetched, and replayed in one client session (`mariadb-binlog F1 F2 ... | mariadb`)
/// into a fresh server, the tables are the source's (CHECKSUM TABLE). With MIXED logging (the
/// temporary table's statements are in the log) and ROW.
#[test]
fn temporary_tables_and_transactions_across_rotations_replay_from_the_archive() {
    if !mariadb::available() || mariadb::which("mariadb-binlog").is_none() {
        return;
    }
    for format in ["MIXED", "ROW"] {
        let fx = Fixture::new();
        let format_opt = format!("--binlog-format={format}");
        let Source { server, port, .. } = Scenario::new(&fx).opts(&[&format_opt]).repl().start();
        server.sql(
            "CREATE USER 'app'@'localhost' IDENTIFIED BY 'app-pw'; GRANT ALL ON *.* TO 'app'@'localhost'; \
             CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(100)); \
             CREATE TABLE d.u (id INT PRIMARY KEY AUTO_INCREMENT, v INT);",
        );
        let (mut a, mut b) = (session(&server), session(&server));
        exec(&mut a, "CREATE TEMPORARY TABLE d.tmp (id INT PRIMARY KEY, v VARCHAR(100))");
        exec(&mut a, "INSERT INTO d.tmp VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')");
        exec(&mut a, "INSERT INTO d.t SELECT id, v FROM d.tmp WHERE id <= 2");
        exec(&mut b, "FLUSH BINARY LOGS");
        // The next file: the temporary table of the file before, from the same session.
        exec(&mut a, "UPDATE d.tmp SET v = CONCAT(v, '-later')");
        exec(&mut a, "INSERT INTO d.t SELECT id, v FROM d.tmp WHERE id > 2");
        // A transaction around another session's rotation.
        exec(&mut b, "BEGIN");
        exec(&mut b, "INSERT INTO d.u (v) VALUES (1)");
        exec(&mut b, "UPDATE d.t SET v = 'in the transaction' WHERE id = 1");
        exec(&mut a, "FLUSH BINARY LOGS");
        exec(&mut b, "INSERT INTO d.u (v) VALUES (2)");
        exec(&mut b, "DELETE FROM d.t WHERE id = 2");
        exec(&mut b, "COMMIT");
        exec(&mut a, "INSERT INTO d.t SELECT id + 100, v FROM d.tmp");
        exec(&mut b, "FLUSH BINARY LOGS");
        exec(&mut a, "INSERT INTO d.t SELECT id + 200, v FROM d.tmp");
        exec(&mut a, "DROP TEMPORARY TABLE d.tmp");
        exec(&mut a, "INSERT INTO d.u (v) SELECT COUNT(*) FROM d.t");
        drop((a, b));
        let logs = log_names(&server);
        assert!(logs.len() >= 4, "{logs:?}");

        let prefix = prefix(&fx);
        let (code, _, err) = run_args(&archive_args(&fx, &tcp(port), &prefix, &["--segment-size", "4K"]));
        assert_eq!(code, 0, "{err}");
        let out = fx.path("fetched");
        expect(0, &["binlog", "fetch", &prefix, "--to-dir", out.to_str().unwrap(), "--key-file", &fx.key()]);
        assert_same_files(&server, &out);

        // The whole log, every file in one session of a fresh server.
        let fresh = Server::start(&fx.path("fresh"), &[]);
        let decoded = std::process::Command::new(mariadb::which("mariadb-binlog").unwrap())
            .arg("--no-defaults")
            .args(logs.iter().map(|l| out.join(l)))
            .output()
            .unwrap();
        assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
        if format == "MIXED" {
            let text = String::from_utf8_lossy(&decoded.stdout);
            assert!(text.contains("CREATE TEMPORARY TABLE"), "the temporary table is in the log");
        }
        let mut replay = std::process::Command::new(mariadb::which("mariadb").unwrap())
            .arg(format!("--socket={}", fresh.socket.display()))
            .arg("-uroot")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        replay.stdin.take().unwrap().write_all(&decoded.stdout).unwrap();
        let replayed = replay.wait_with_output().unwrap();
        assert!(replayed.status.success(), "{format}: {}", String::from_utf8_lossy(&replayed.stderr));
        let sums = |s: &Server| s.sql("CHECKSUM TABLE d.t, d.u; SELECT COUNT(*), GROUP_CONCAT(v ORDER BY id) FROM d.t");
        assert_eq!(sums(&fresh), sums(&server), "{format}");
        assert!(sums(&server).contains("three-later"), "{}", sums(&server));
    }
}
